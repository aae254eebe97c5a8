//! supervise: how a long-running helper (an SSH tunnel) or a recurring job
//! (the filestore mirror) is kept going on a host. A systemd unit (or
//! timer) where systemd runs and the service user may `sudo -n`; a cron
//! entry for recurring jobs where cron exists; otherwise a restart loop
//! with a pid file, started detached (`setsid nohup`), which restarts the
//! program a second after it exits, and stops it when the loop is
//! stopped.
//!
//! Writes shell commands only; runs nothing itself, and knows nothing of
//! what the programs do.

use std::path::Path;

use crate::transport::shell_quote;

/// The restart loop: `sh supervise.sh PIDFILE PROGRAM DELAY`, started in a
/// session of its own (`setsid`). A TERM stops its whole process group —
/// the program and whatever it started (a pause, an rsync) — then the loop.
/// `wait` returns early on a signal, so the trap runs at once even while
/// the program or the pause runs.
const LOOP: &str = r#"#!/bin/sh
# pgfleet: keeps a helper running; stop it with `kill $(cat PIDFILE)`.
pidfile=$1 program=$2 delay=$3
child=
trap 'trap - TERM INT; rm -f "$pidfile"; kill -TERM 0' TERM INT
echo $$ > "$pidfile"
while :; do
  /bin/sh "$program" &
  child=$!
  wait "$child"
  status=$?
  child=
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $program exited with status $status; again in ${delay}s"
  sleep "$delay" &
  wait $!
done
"#;

/// A program kept running: restarted when it exits.
#[derive(Debug, Clone, Copy)]
pub struct Helper<'a> {
    /// Unit name, e.g. `pgfleet-tunnel-prod-r1`.
    pub name: &'a str,
    /// Directory of its files on the host (the service user's).
    pub dir: &'a Path,
    /// The script run (with /bin/sh) and restarted.
    pub program: &'a Path,
}

/// Whether the systemd path applies, as a shell condition.
const SYSTEMD: &str = "[ -d /run/systemd/system ] && sudo -n true 2>/dev/null";

fn quoted(path: &Path) -> String {
    shell_quote(&path.to_string_lossy())
}

impl Helper<'_> {
    fn pidfile(&self) -> String {
        quoted(&self.dir.join("supervise.pid"))
    }

    fn unit(&self) -> String {
        shell_quote(&format!("/etc/systemd/system/{}.service", self.name))
    }

    /// A shell condition: true when the helper runs (its unit is active,
    /// or its loop's pid is alive and is that loop).
    pub fn is_running(&self) -> String {
        format!(
            "{{ [ -d /run/systemd/system ] && systemctl is-active --quiet {name}.service 2>/dev/null; }} || \
             {{ [ -f {pid} ] && p=$(cat {pid}) && kill -0 \"$p\" 2>/dev/null && grep -q supervise.sh /proc/\"$p\"/cmdline 2>/dev/null; }}",
            name = shell_quote(self.name),
            pid = self.pidfile(),
        )
    }

    /// Starts the helper when it does not run; with `restart`, restarts it
    /// when it does (its program changed).
    ///
    /// # Guarantees
    /// Idempotent; waits (≤ 5 s) for the loop's pid file.
    pub fn start(&self, restart: bool) -> String {
        let program = quoted(self.program);
        let dir = quoted(self.dir);
        let loop_script = quoted(&self.dir.join("supervise.sh"));
        let unit_text = format!(
            "[Unit]\nDescription=pgfleet helper {name}\nAfter=network-online.target\nWants=network-online.target\n\n\
             [Service]\nUser=$(id -un)\nExecStart=/bin/sh {program}\nRestart=always\nRestartSec=1\n\n\
             [Install]\nWantedBy=multi-user.target\n",
            name = self.name,
            program = self.program.display(),
        );
        format!(
            r#"set -e
if {SYSTEMD}; then
  cat <<UNIT | sudo -n tee {unit} >/dev/null
{unit_text}UNIT
  sudo -n systemctl daemon-reload
  sudo -n systemctl enable --now {name}.service
  {restart_unit}
  exit 0
fi
if {running}; then
  {restart_loop}
fi
if ! {running}; then
  cat > {loop_script} <<'LOOP'
{LOOP}LOOP
  setsid nohup /bin/sh {loop_script} {pid} {program} 1 </dev/null >>{dir}/supervise.log 2>&1 &
  i=0; while [ ! -f {pid} ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
fi
{running}
"#,
            unit = self.unit(),
            name = shell_quote(self.name),
            restart_unit = if restart {
                format!("sudo -n systemctl restart {}.service", shell_quote(self.name))
            } else {
                ":".into()
            },
            running = self.is_running(),
            restart_loop = if restart { self.stop_loop() } else { ":".into() },
            pid = self.pidfile(),
        )
    }

    fn stop_loop(&self) -> String {
        format!(
            "if [ -f {pid} ]; then p=$(cat {pid}); kill \"$p\" 2>/dev/null || true; i=0; \
             while kill -0 \"$p\" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; rm -f {pid}; fi",
            pid = self.pidfile()
        )
    }

    /// Stops the helper and removes its unit (its files stay: the caller
    /// removes its directory).
    pub fn stop(&self) -> String {
        format!(
            "if [ -d /run/systemd/system ] && [ -f {unit} ]; then sudo -n systemctl disable --now {name}.service; \
             sudo -n rm -f {unit}; sudo -n systemctl daemon-reload; fi\n{stop_loop}\n",
            unit = self.unit(),
            name = shell_quote(self.name),
            stop_loop = self.stop_loop(),
        )
    }
}

/// A program run every `every_seconds`, never two at once (the program
/// takes its own lock).
#[derive(Debug, Clone, Copy)]
pub struct Recurring<'a> {
    pub name: &'a str,
    pub dir: &'a Path,
    pub program: &'a Path,
    pub every_seconds: u64,
}

impl Recurring<'_> {
    fn marker(&self) -> String {
        format!("# pgfleet:{}", self.name)
    }

    /// A crontab schedule for the interval, rounded to what cron can say.
    pub fn cron_schedule(&self) -> String {
        let minutes = (self.every_seconds / 60).max(1);
        match minutes {
            1 => "* * * * *".into(),
            2..=59 => format!("*/{minutes} * * * *"),
            _ if minutes < 1440 => format!("0 */{} * * *", minutes / 60),
            _ => "0 0 * * *".into(),
        }
    }

    /// The loop the pid-file path keeps running: pause, then run.
    fn loop_program(&self) -> std::path::PathBuf {
        self.dir.join("every.sh")
    }

    fn helper_name(&self) -> String {
        format!("{}-every", self.name)
    }

    /// Installs the schedule: a systemd timer, else a crontab entry of the
    /// service user, else a supervised loop.
    ///
    /// # Guarantees
    /// Idempotent: the schedule is replaced, never doubled.
    pub fn install(&self) -> String {
        let program = quoted(self.program);
        let name = shell_quote(self.name);
        let loop_program = self.loop_program();
        let helper_name = self.helper_name();
        let helper = Helper { name: &helper_name, dir: self.dir, program: &loop_program };
        format!(
            r#"set -e
if {SYSTEMD}; then
  cat <<UNIT | sudo -n tee /etc/systemd/system/{name}.service >/dev/null
[Unit]
Description=pgfleet job {plain}

[Service]
Type=oneshot
User=$(id -un)
ExecStart=/bin/sh {program_plain}
UNIT
  cat <<UNIT | sudo -n tee /etc/systemd/system/{name}.timer >/dev/null
[Unit]
Description=pgfleet schedule {plain}

[Timer]
OnActiveSec={every}s
OnUnitActiveSec={every}s

[Install]
WantedBy=timers.target
UNIT
  sudo -n systemctl daemon-reload
  sudo -n systemctl enable --now {name}.timer
  exit 0
fi
if command -v crontab >/dev/null 2>&1; then
  {{ crontab -l 2>/dev/null | grep -vF {marker} || true; echo {entry}; }} | crontab -
  exit 0
fi
cat > {loop_quoted} <<LOOP
while :; do sleep {every}; /bin/sh {program}; done
LOOP
{start}"#,
            plain = self.name,
            program_plain = self.program.display(),
            every = self.every_seconds,
            marker = shell_quote(&self.marker()),
            entry = shell_quote(&format!("{} /bin/sh {program} {}", self.cron_schedule(), self.marker())),
            loop_quoted = quoted(&loop_program),
            start = helper.start(true),
        )
    }

    /// A shell condition: true when the schedule is installed.
    pub fn is_installed(&self) -> String {
        let helper_name = self.helper_name();
        let loop_program = self.loop_program();
        let helper = Helper { name: &helper_name, dir: self.dir, program: &loop_program };
        format!(
            "{{ [ -d /run/systemd/system ] && systemctl is-enabled --quiet {name}.timer 2>/dev/null; }} || \
             {{ command -v crontab >/dev/null 2>&1 && crontab -l 2>/dev/null | grep -qF {marker}; }} || {{ {running}; }}",
            name = shell_quote(self.name),
            marker = shell_quote(&self.marker()),
            running = helper.is_running(),
        )
    }

    /// Removes the schedule, whichever way it was installed.
    pub fn remove(&self) -> String {
        let helper_name = self.helper_name();
        let loop_program = self.loop_program();
        let helper = Helper { name: &helper_name, dir: self.dir, program: &loop_program };
        format!(
            "if [ -d /run/systemd/system ] && [ -f /etc/systemd/system/{name}.timer ]; then \
             sudo -n systemctl disable --now {name}.timer; sudo -n rm -f /etc/systemd/system/{name}.timer \
             /etc/systemd/system/{name}.service; sudo -n systemctl daemon-reload; fi\n\
             if command -v crontab >/dev/null 2>&1 && crontab -l 2>/dev/null | grep -qF {marker}; then \
             crontab -l 2>/dev/null | grep -vF {marker} | crontab -; fi\n{stop}",
            name = shell_quote(self.name),
            marker = shell_quote(&self.marker()),
            stop = helper.stop(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_says_the_interval_in_whole_minutes_or_hours() {
        let every = |every_seconds| {
            Recurring { name: "n", dir: Path::new("/d"), program: Path::new("/d/p"), every_seconds }.cron_schedule()
        };
        assert_eq!(every(30), "* * * * *");
        assert_eq!(every(300), "*/5 * * * *");
        assert_eq!(every(7200), "0 */2 * * *");
        assert_eq!(every(86400 * 2), "0 0 * * *");
    }

    /// Every script, the systemd branches included (which this sandbox has
    /// no systemd to run), parses as POSIX shell.
    #[test]
    fn every_generated_script_parses_as_shell() {
        let helper =
            Helper { name: "pgfleet-tunnel-e-r1", dir: Path::new("/srv/a b"), program: Path::new("/srv/a b/t.sh") };
        let every = Recurring {
            name: "pgfleet-filestore-e-r1",
            dir: Path::new("/d"),
            program: Path::new("/d/m.sh"),
            every_seconds: 300,
        };
        for script in [
            helper.start(false),
            helper.start(true),
            helper.stop(),
            helper.is_running(),
            every.install(),
            every.is_installed(),
            every.remove(),
            LOOP.to_owned(),
        ] {
            let status = std::process::Command::new("sh").args(["-n", "-c", &script]).status().unwrap();
            assert!(status.success(), "{script}");
        }
    }
}
