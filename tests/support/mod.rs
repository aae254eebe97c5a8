//! Real servers for integration tests. Each test host is a private sshd on
//! its own loopback address (picked free per test) with its own host key and
//! a known_hosts file written for the test; logins are as `postgres`.
//! Everything started here is stopped by pid when its guard drops, panics
//! included.

#![allow(dead_code)]

pub mod browser;
pub mod docker;
pub mod fleet;
pub mod storage_servers;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A random loopback address outside 127.0.0.0/16, so tests do not meet
/// each other or services bound to 127.0.0.1.
pub fn free_loopback_address() -> Ipv4Addr {
    loop {
        let random = RandomState::new().hash_one((std::process::id(), Instant::now()));
        let bytes = random.to_le_bytes();
        let address = Ipv4Addr::new(127, 1 + bytes[0] % 254, bytes[1], 1 + bytes[2] % 254);
        if TcpListener::bind((address, 0)).is_ok() {
            return address;
        }
    }
}

/// A port nothing listens on at `address` right now.
pub fn free_port(address: Ipv4Addr) -> u16 {
    TcpListener::bind((address, 0)).and_then(|listener| listener.local_addr()).map(|local| local.port()).expect("bind")
}

fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// A directory every user can read (sshd reads authorized_keys as the
/// login user), removed on drop.
pub fn shared_temp_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// A login user that may run commands as postgres through sudo, for
/// `become:` tests. Created on first use (the tests run as root).
pub const SUDO_USER: &str = "pgfleet-sudo";

pub fn ensure_sudo_user() {
    let exists = Command::new("id").arg(SUDO_USER).output().is_ok_and(|output| output.status.success());
    if !exists {
        let _ = Command::new("useradd").args(["-m", "-s", "/bin/bash", SUDO_USER]).status();
    }
    let rule = format!("{SUDO_USER} ALL=(postgres) NOPASSWD: ALL\n");
    let path = Path::new("/etc/sudoers.d/pgfleet-test");
    if std::fs::read_to_string(path).ok().as_deref() != Some(rule.as_str()) {
        std::fs::write(path, rule).expect("sudoers rule");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o440)).expect("chmod");
    }
}

/// A running private sshd.
pub struct SshServer {
    pub address: Ipv4Addr,
    pub port: u16,
    /// The client's private key, authorised for `postgres`.
    pub identity_file: PathBuf,
    /// A known_hosts file holding exactly this server's host key.
    pub known_hosts: PathBuf,
    pub host_public_key: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl SshServer {
    /// Starts sshd with an ed25519 host key.
    pub fn start() -> Self {
        Self::start_with_host_key("ed25519")
    }

    /// Starts sshd with a host key of the given `ssh-keygen -t` type.
    pub fn start_with_host_key(key_type: &str) -> Self {
        Self::start_with_host_keys(&[key_type])
    }

    /// Starts sshd with a host key of each type; known_hosts records only
    /// the last one.
    pub fn start_with_host_keys(key_types: &[&str]) -> Self {
        Self::start_inner(key_types, free_loopback_address())
    }

    /// Starts sshd on `address` (several may share one: hosts of one
    /// machine, as pgfleet sees them).
    pub fn start_at(address: Ipv4Addr) -> Self {
        Self::start_inner(&["ed25519"], address)
    }

    fn start_inner(key_types: &[&str], address: Ipv4Addr) -> Self {
        let dir = shared_temp_dir("pgfleet-sshd-");
        let path = |name: &str| dir.path().join(name);
        let mut host_keys = String::new();
        for (index, key_type) in key_types.iter().enumerate() {
            let name =
                if index + 1 == key_types.len() { "host_key".to_owned() } else { format!("host_key_{key_type}") };
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", key_type, "-N", "", "-C", "pgfleet-test-host", "-f"])
                .arg(path(&name)));
            host_keys.push_str(&format!("HostKey {}\n", path(&name).display()));
        }
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "pgfleet-test-client", "-f"])
            .arg(path("client_key")));
        std::fs::copy(path("client_key.pub"), path("authorized_keys")).expect("authorized_keys");
        std::fs::set_permissions(path("authorized_keys"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");

        let port = free_port(address);
        let config = format!(
            "ListenAddress {address}:{port}\n\
             {host_keys}\
             PidFile {pid}\n\
             AuthorizedKeysFile {authorized}\n\
             UsePAM yes\n\
             StrictModes no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             PermitRootLogin no\n\
             AllowUsers postgres {SUDO_USER}\n\
             AllowTcpForwarding yes\n\
             Subsystem sftp internal-sftp\n\
             LogLevel VERBOSE\n",
            pid = path("sshd.pid").display(),
            authorized = path("authorized_keys").display(),
        );
        std::fs::write(path("sshd_config"), config).expect("sshd_config");
        let host_public_key = std::fs::read_to_string(path("host_key.pub")).expect("host key").trim().to_owned();
        std::fs::write(path("known_hosts"), format!("[{address}]:{port} {host_public_key}\n")).expect("known_hosts");

        let log = std::fs::File::create(path("sshd.log")).expect("sshd.log");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(path("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start /usr/sbin/sshd (apt-get install openssh-server)");
        let mut server = SshServer {
            address,
            port,
            identity_file: path("client_key"),
            known_hosts: path("known_hosts"),
            host_public_key,
            child: Some(child),
            dir,
        };
        server.wait_until_listening();
        server
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect((self.address, self.port)).is_ok() {
                return;
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("sshd exited with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sshd did not listen on {}:{} within 10 s: {}", self.address, self.port, self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Restarts sshd with the same keys, address and port, the way a host's
    /// sshd restart with its sessions cut looks to clients: the listener and
    /// every session process it forked are killed (by pid), then a new one
    /// is started.
    pub fn restart(&mut self) {
        if let Some(child) = &self.child {
            let mut pids = descendants(child.id());
            pids.push(child.id());
            for pid in pids {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        self.stop();
        let log = std::fs::OpenOptions::new().append(true).open(self.dir.path().join("sshd.log")).expect("sshd.log");
        self.child = Some(
            Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(self.dir.path().join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("restart sshd"),
        );
        self.wait_until_listening();
    }

    /// Stops sshd (a host going down); the guard stays valid.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every process descending from `pid`, from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // The command name may hold blanks: the fields after its `)`.
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest.to_owned()) else { continue };
        if let Some(parent) = rest.split_whitespace().nth(1).and_then(|field| field.parse().ok()) {
            parents.push((child, parent));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(next) = frontier.pop() {
        for (child, parent) in &parents {
            if *parent == next && !found.contains(child) {
                found.push(*child);
                frontier.push(*child);
            }
        }
    }
    found
}

/// The change to `address` in a JSON plan.
pub fn change_of<'a>(plan: &'a serde_json::Value, address: &str) -> &'a serde_json::Value {
    plan["resource_changes"]
        .as_array()
        .and_then(|changes| changes.iter().find(|change| change["address"] == address))
        .unwrap_or_else(|| panic!("{address} is not in the plan: {plan:#}"))
}

/// pgfleet's SSH target for a test sshd, logging in as postgres.
pub fn ssh_target(server: &SshServer) -> pgfleet::topology::SshTarget {
    pgfleet::topology::SshTarget {
        address: server.address.to_string(),
        port: server.port,
        user: "postgres".into(),
        identity_file: Some(server.identity_file.clone()),
        known_hosts: server.known_hosts.clone(),
        become_user: None,
    }
}

/// A `hosts:` entry for a test sshd.
pub fn host_yaml(name: &str, server: &SshServer) -> String {
    format!(
        "  {name}:\n    address: {}\n    ssh: {{ user: postgres, port: {}, identity_file: {}, known_hosts: {} }}\n",
        server.address,
        server.port,
        server.identity_file.display(),
        server.known_hosts.display()
    )
}

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Runs a command as `postgres` (servers refuse root) and returns stdout.
pub fn as_postgres(command: &str) -> String {
    let output = Command::new("runuser")
        .args(["-u", "postgres", "--", "sh", "-c", command])
        .output()
        .unwrap_or_else(|error| panic!("runuser: {error}"));
    assert!(
        output.status.success(),
        "`{command}` failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A PostgreSQL 15 cluster made by hand for a test (initdb + pg_ctl as
/// postgres), listening on `address:port`; stopped on drop.
pub struct PgServer {
    pub address: Ipv4Addr,
    pub port: u16,
    pub data_dir: PathBuf,
    dir: tempfile::TempDir,
    running: bool,
}

impl PgServer {
    /// initdb with trust auth for local connections; `settings` are appended
    /// to postgresql.conf.
    pub fn start(address: Ipv4Addr, settings: &str) -> Self {
        let dir = shared_temp_dir("pgfleet-pg-");
        run(Command::new("chown").args(["postgres:postgres"]).arg(dir.path()));
        let data_dir = dir.path().join("data");
        let port = free_port(address);
        as_postgres(&format!(
            "{PG_BIN}/initdb -A trust -U postgres --data-checksums -D {} >/dev/null",
            data_dir.display()
        ));
        let conf = format!(
            "listen_addresses = '{address}'\nport = {port}\nunix_socket_directories = '{}'\n{settings}\n",
            dir.path().display()
        );
        as_postgres(&format!("cat >> {}/postgresql.conf <<'CONF'\n{conf}CONF", data_dir.display()));
        let mut server = PgServer { address, port, data_dir, dir, running: false };
        server.pg_ctl("start -w -t 30 -l");
        server.running = true;
        server
    }

    fn pg_ctl(&self, action: &str) {
        let log = self.dir.path().join("postgres.log");
        let action = if action.ends_with("-l") { format!("{action} {}", log.display()) } else { action.to_owned() };
        as_postgres(&format!("{PG_BIN}/pg_ctl -D {} {action} >/dev/null", self.data_dir.display()));
    }

    /// Runs SQL with psql as postgres over TCP and returns the unaligned
    /// output.
    pub fn psql(&self, sql: &str) -> String {
        as_postgres(&format!(
            "{PG_BIN}/psql -X -A -t -h {} -p {} -U postgres -d postgres -c {}",
            self.address,
            self.port,
            shell_quote(sql)
        ))
    }

    pub fn stop(&mut self) {
        if std::mem::take(&mut self.running) {
            self.pg_ctl("stop -m fast -w");
        }
    }

    /// Starts the cluster again after `stop` (e.g. for settings that need
    /// a restart).
    pub fn restart_in_place(mut self) -> Self {
        self.pg_ctl("start -w -t 30 -l");
        self.running = true;
        self
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--", "sh", "-c"])
                .arg(format!("{PG_BIN}/pg_ctl -D {} stop -m immediate -w >/dev/null 2>&1", self.data_dir.display()))
                .status();
        }
    }
}

pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A PgBouncer started by hand (as postgres, daemonised) from an ini file;
/// killed by the pid in its pid file on drop.
pub struct PgBouncer {
    pub pidfile: PathBuf,
}

impl PgBouncer {
    pub fn start(ini: &Path, pidfile: &Path) -> Self {
        as_postgres(&format!("pgbouncer -q -d {}", ini.display()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pidfile.exists() {
            assert!(Instant::now() < deadline, "pgbouncer did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        PgBouncer { pidfile: pidfile.to_owned() }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pidfile) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}
