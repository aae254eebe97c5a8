//! The `pg_ctl` runtime: data directories pgfleet creates and drives with
//! the distribution's PostgreSQL programs and `pg_ctl`, and PgBouncer run
//! as a daemon with its own pid file. Nothing restarts these processes
//! after a reboot: it suits the sandbox and the tests.

use std::path::{Path, PathBuf};

use super::{
    BackupSource, Capabilities, ClusterLayout, Member, PoolerLayout, Runtime, home_beside, socket_in,
    unix_socket_bridge, with_suffix,
};
use crate::transport::shell_quote;

pub struct PgCtl;

fn quoted(path: &Path) -> String {
    shell_quote(&path.to_string_lossy())
}

fn bin_dir(version: u32) -> PathBuf {
    PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"))
}

/// `pg_ctl ACTION`, waiting for it to take effect; the server log goes to
/// the layout's log file.
fn pg_ctl(layout: &ClusterLayout, action: &str) -> String {
    format!(
        "{} -D {} -l {} -w -t 600 {action} >/dev/null",
        quoted(&layout.program("pg_ctl")),
        quoted(&layout.data_dir),
        quoted(&layout.log_file),
    )
}

impl Runtime for PgCtl {
    fn name(&self) -> &'static str {
        "pg_ctl"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            observe: true,
            initialise: true,
            manage_process: true,
            replicas: true,
            poolers: true,
            edit_hba: true,
        }
    }

    fn cluster_layout(&self, _member: Member<'_>, data_dir: &Path, version: u32) -> ClusterLayout {
        let home = home_beside(data_dir);
        ClusterLayout {
            version,
            data_dir: data_dir.to_owned(),
            conf_dir: data_dir.to_owned(),
            auto_conf: data_dir.join("postgresql.auto.conf"),
            hba_file: data_dir.join("pg_hba.conf"),
            log_file: home.join("postgresql.log"),
            bin_dir: bin_dir(version),
            socket_dir: Some(home.clone()),
            home,
            service: String::new(),
            image: String::new(),
        }
    }

    fn pooler_layout(&self, _member: Member<'_>, home: &Path, port: u16) -> PoolerLayout {
        PoolerLayout {
            home: home.to_owned(),
            ini: home.join(format!("pgbouncer-{port}.ini")),
            userlist: home.join("userlist.txt"),
            pid_file: home.join(format!("pgbouncer-{port}.pid")),
            log_file: home.join(format!("pgbouncer-{port}.log")),
            service: String::new(),
            image: String::new(),
        }
    }

    fn binaries_facts(&self, version: u32) -> String {
        format!(
            "bin={bin}\nif [ -x \"$bin/postgres\" ]; then echo \"pg_bin=$bin\"; echo \"pg_version=$(\"$bin/postgres\" --version)\"; fi\n",
            bin = quoted(&bin_dir(version))
        )
    }

    fn running_facts(&self, key: &str, _layout: &ClusterLayout) -> String {
        // postmaster.pid's first line is the pid, its eighth the status
        // (`ready` once it accepts connections): no connection is needed.
        format!(
            r#"if [ -f "$d/postmaster.pid" ]; then
  pid=$(head -n 1 "$d/postmaster.pid"); status=$(sed -n 8p "$d/postmaster.pid")
  kill -0 "$pid" 2>/dev/null && [ "${{status%% *}}" = ready ] && echo "{key}.running=1"
fi
"#
        )
    }

    fn controldata(&self, version: u32) -> PathBuf {
        bin_dir(version).join("pg_controldata")
    }

    fn initialise(&self, layout: &ClusterLayout, _port: u16, password_file: &Path) -> String {
        let data = quoted(&layout.data_dir);
        let building = quoted(&with_suffix(&layout.data_dir, ".pgfleet-init"));
        format!(
            "set -e\n\
             if [ -f {data}/PG_VERSION ]; then exit 0; fi\n\
             rm -rf {building}\n\
             {initdb} -D {building} --data-checksums --encoding=UTF8 --locale=C.UTF-8 \
             --auth-local=peer --auth-host=scram-sha-256 -U postgres --pwfile={password_file} >/dev/null\n\
             if [ -d {data} ]; then rmdir {data}; fi\n\
             mv {building} {data}\n",
            initdb = quoted(&layout.program("initdb")),
            password_file = quoted(password_file),
        )
    }

    fn base_backup(&self, layout: &ClusterLayout, _port: u16, source: BackupSource<'_>) -> String {
        let data = quoted(&layout.data_dir);
        let building = quoted(&with_suffix(&layout.data_dir, ".pgfleet-basebackup"));
        format!(
            "set -e\n\
             if [ -f {data}/PG_VERSION ]; then exit 0; fi\n\
             rm -rf {building}\n\
             PGPASSFILE={passfile} {pg_basebackup} -h {host} -p {port} -U {user} -D {building} \
             -X stream -S {slot} --checkpoint=fast --no-password\n\
             if [ -d {data} ]; then rmdir {data}; fi\n\
             mv {building} {data}\n",
            passfile = quoted(&layout.passfile()),
            pg_basebackup = quoted(&layout.program("pg_basebackup")),
            host = shell_quote(source.address),
            port = source.port,
            user = shell_quote(source.user),
            slot = shell_quote(source.slot),
        )
    }

    fn remove(&self, layout: &ClusterLayout) -> String {
        format!("rm -rf -- {}", quoted(&layout.data_dir))
    }

    fn admin_bridge(&self, layout: &ClusterLayout, port: u16) -> Option<String> {
        layout.socket_dir.as_deref().map(|directory| unix_socket_bridge(&socket_in(directory, port)))
    }

    fn is_running(&self, layout: &ClusterLayout) -> String {
        let pid = quoted(&layout.data_dir.join("postmaster.pid"));
        format!("[ -f {pid} ] && kill -0 \"$(head -n 1 {pid})\" 2>/dev/null")
    }

    fn start(&self, layout: &ClusterLayout) -> String {
        pg_ctl(layout, "start")
    }

    fn stop(&self, layout: &ClusterLayout) -> String {
        pg_ctl(layout, "-m fast stop")
    }

    fn restart(&self, layout: &ClusterLayout) -> String {
        // pg_ctl restart starts a stopped server too.
        pg_ctl(layout, "-m fast restart")
    }

    fn reload(&self, layout: &ClusterLayout) -> String {
        format!("{} -D {} reload >/dev/null", quoted(&layout.program("pg_ctl")), quoted(&layout.data_dir))
    }

    fn promote(&self, layout: &ClusterLayout) -> String {
        pg_ctl(layout, "promote")
    }

    fn pooler_is_running(&self, layout: &PoolerLayout) -> String {
        let pid = quoted(&layout.pid_file);
        format!("[ -f {pid} ] && kill -0 \"$(cat {pid})\" 2>/dev/null")
    }

    fn pooler_start(&self, layout: &PoolerLayout) -> String {
        format!("PATH=\"$PATH:/usr/sbin:/usr/local/sbin\" pgbouncer -q -d {}", quoted(&layout.ini))
    }

    fn pooler_reload(&self, layout: &PoolerLayout) -> String {
        format!("kill -HUP \"$(cat {})\"", quoted(&layout.pid_file))
    }

    fn pooler_stop(&self, layout: &PoolerLayout) -> String {
        let pid = quoted(&layout.pid_file);
        format!(
            "p=\"$(cat {pid})\"; kill -TERM \"$p\"; i=0; while kill -0 \"$p\" 2>/dev/null; do i=$((i+1)); [ $i -gt 300 ] && exit 1; sleep 0.1; done; rm -f {pid}"
        )
    }
}
