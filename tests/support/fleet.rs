//! One environment (primary, replicas r1 and r2, poolers) built by the real
//! pgfleet binary on either three SSH hosts of one machine or the local
//! transport, with helpers to reach it; everything it started is stopped
//! on drop.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::SshServer;

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub const REPLICATION_PASSWORD: &str = "env-replication-Qw7tYp2Lk9";

/// A port free on every one of `addresses`.
pub fn common_free_port(addresses: &[Ipv4Addr]) -> u16 {
    loop {
        let port = super::free_port(addresses[0]);
        if addresses.iter().all(|address| std::net::TcpListener::bind((*address, port)).is_ok()) {
            return port;
        }
    }
}

/// One environment (primary, replicas r1 and r2, poolers) on either three
/// SSH hosts of one machine or the local transport.
pub struct Fleet {
    pub work: tempfile::TempDir,
    pub hosts_yaml: String,
    pub host_of: [&'static str; 3],
    /// Listen addresses of the primary, r1, r2.
    pub addresses: [Ipv4Addr; 3],
    pub ports: [u16; 3],
    pub pooler_port: u16,
    pub replica_pooler_port: u16,
    pub ssh: Vec<SshServer>,
}

impl Fleet {
    pub fn new(hosts_yaml: String, host_of: [&'static str; 3], ssh: Vec<SshServer>) -> Self {
        let work = super::shared_temp_dir("pgfleet-apply-");
        assert!(Command::new("chown").arg("postgres:postgres").arg(work.path()).status().unwrap().success());
        let addresses =
            [super::free_loopback_address(), super::free_loopback_address(), super::free_loopback_address()];
        let ports = [super::free_port(addresses[0]), super::free_port(addresses[1]), super::free_port(addresses[2])];
        let pooler_port = super::free_port(addresses[0]);
        let replica_pooler_port = common_free_port(&addresses[1..]);
        Fleet { work, hosts_yaml, host_of, addresses, ports, pooler_port, replica_pooler_port, ssh }
    }

    pub fn local() -> Self {
        Fleet::new("  here: { transport: local }\n".into(), ["here", "here", "here"], Vec::new())
    }

    /// Three sshd hosts sharing one address: one machine, three hosts.
    pub fn ssh() -> Self {
        let address = super::free_loopback_address();
        let servers: Vec<SshServer> = (0..3).map(|_| SshServer::start_at(address)).collect();
        let hosts_yaml = servers
            .iter()
            .zip(["db1", "db2", "db3"])
            .map(|(server, name)| {
                format!(
                    "  {name}: {{ address: {}, ssh: {{ user: postgres, port: {}, identity_file: {}, known_hosts: {} }} }}\n",
                    server.address,
                    server.port,
                    server.identity_file.display(),
                    server.known_hosts.display()
                )
            })
            .collect();
        Fleet::new(hosts_yaml, ["db1", "db2", "db3"], servers)
    }

    pub fn dir(&self) -> &Path {
        self.work.path()
    }

    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    pub fn home(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("{}.pgfleet", self.data_dir(name).display()))
    }

    /// The configuration with the given replicas (of r1, r2).
    pub fn config(&self, replicas: &[&str]) -> String {
        let mut yaml = format!(
            "version: 1\nstate: {{ path: {state} }}\nhosts:\n{hosts}environments:\n  - id: shop\n    odoo_version: \"18.0\"\n    primary: {{ host: {h0}, address: {a0}, port: {p0}, data_dir: {primary}, tuning: none, settings: {{ shared_buffers: 32MB, work_mem: 4MB }} }}\n    database: {{ name: shop, owner: odoo, password: {{ generate: true }} }}\n    replication: {{ user: replicator, password: {{ env: PGFLEET_TEST_REPLICATION_PASSWORD }} }}\n    pgbouncer: {{ pool_size: 5, pool_mode: session, port: {pp}, replica_port: {rp} }}\n",
            state = self.dir().join("state.json").display(),
            hosts = self.hosts_yaml,
            h0 = self.host_of[0],
            a0 = self.addresses[0],
            p0 = self.ports[0],
            primary = self.data_dir("primary").display(),
            pp = self.pooler_port,
            rp = self.replica_pooler_port,
        );
        if !replicas.is_empty() {
            yaml.push_str("    replicas:\n");
        }
        for name in replicas {
            let index = if *name == "r1" { 1 } else { 2 };
            let purpose = if *name == "r1" { "reporting" } else { "dr" };
            yaml.push_str(&format!(
                "      - {{ name: {name}, host: {}, address: {}, port: {}, data_dir: {}, purpose: {purpose} }}\n",
                self.host_of[index],
                self.addresses[index],
                self.ports[index],
                self.data_dir(name).display()
            ));
        }
        yaml
    }

    pub fn write_config(&self, replicas: &[&str]) {
        std::fs::write(self.dir().join("pgfleet.yaml"), self.config(replicas)).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pgfleet"));
        command
            .args(args)
            .current_dir(self.dir())
            .env("NO_COLOR", "1")
            .env("PGFLEET_TEST_REPLICATION_PASSWORD", REPLICATION_PASSWORD)
            .stdin(Stdio::null());
        command
    }

    pub fn pgfleet(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub fn apply(&self) -> Output {
        let output = self.pgfleet(&["apply", "--auto-approve"]);
        assert_eq!(output.status.code(), Some(0), "apply failed:\n{}\n{}", text(&output.stdout), text(&output.stderr));
        output
    }

    /// `plan --format json`, parsed.
    pub fn plan_json(&self) -> serde_json::Value {
        let output = self.pgfleet(&["plan", "--format", "json"]);
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("plan: {}{}", text(&output.stdout), text(&output.stderr)))
    }

    pub fn plan_exit_code(&self) -> i32 {
        let output = self.pgfleet(&["plan", "--detailed-exitcode"]);
        output.status.code().unwrap_or(-1)
    }

    pub fn secret(&self, relative: &str) -> String {
        std::fs::read_to_string(self.home("primary").join(relative)).unwrap().trim().to_owned()
    }

    /// psql as `user` with `password` over TCP; Err carries stderr.
    pub fn psql(
        &self,
        address: Ipv4Addr,
        port: u16,
        user: &str,
        password: &str,
        database: &str,
        sql: &str,
    ) -> Result<String, String> {
        let output = Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-h",
                &address.to_string(),
                "-p",
                &port.to_string(),
                "-U",
                user,
                "-d",
                database,
                "-c",
                sql,
            ])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .unwrap();
        if output.status.success() { Ok(text(&output.stdout).trim().to_owned()) } else { Err(text(&output.stderr)) }
    }

    pub fn superuser_sql(&self, sql: &str) -> String {
        let password = self.secret("superuser.password");
        self.psql(self.addresses[0], self.ports[0], "postgres", &password, "postgres", sql).unwrap()
    }

    pub fn state(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir().join("state.json")).unwrap()).unwrap()
    }

    /// Rows written on the primary through its pooler are read through each
    /// replica's pooler; writes there fail.
    pub fn check_data(&self, replicas: &[&str], marker: i64) {
        let password = self.secret("role-odoo.password");
        let primary_pooler = |sql: &str| self.psql(self.addresses[0], self.pooler_port, "odoo", &password, "shop", sql);
        primary_pooler("CREATE TABLE IF NOT EXISTS orders (id bigint)").unwrap();
        primary_pooler(&format!("INSERT INTO orders VALUES ({marker})")).unwrap();
        for name in replicas {
            let index = if *name == "r1" { 1 } else { 2 };
            let replica_pooler =
                |sql: &str| self.psql(self.addresses[index], self.replica_pooler_port, "odoo", &password, "shop", sql);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if replica_pooler(&format!("SELECT count(*) FROM orders WHERE id = {marker}")).ok().as_deref()
                    == Some("1")
                {
                    break;
                }
                assert!(Instant::now() < deadline, "{name} never showed row {marker}");
                std::thread::sleep(Duration::from_millis(100));
            }
            let refused = replica_pooler("INSERT INTO orders VALUES (-1)").unwrap_err();
            assert!(refused.contains("read-only"), "{name}: {refused}");
        }
    }

    /// Builds the primary alone and gives it some data, so that a base
    /// backup of it takes a moment.
    pub fn primary_with_ballast(&self) {
        self.write_config(&[]);
        self.apply();
        self.superuser_sql(
            "CREATE TABLE ballast AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 300000) g",
        );
    }

    pub fn streaming(&self) -> String {
        self.superuser_sql("SELECT string_agg(application_name || '=' || state, ',' ORDER BY application_name) FROM pg_stat_replication")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Stop whatever the test's pgfleet started, by pid.
        for entry in std::fs::read_dir(self.work.path()).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.join("PG_VERSION").exists() {
                let _ = Command::new("runuser")
                    .args(["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D"])
                    .arg(&path)
                    .args(["stop", "-m", "immediate"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            // PgBouncer's pid files. A pid written inside a container (1, or
            // another namespace's) names some other process here: only a
            // pgbouncer that really has that pid is signalled.
            for pidfile in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                let name = pidfile.file_name().to_string_lossy().into_owned();
                let Some(pid) = std::fs::read_to_string(pidfile.path())
                    .ok()
                    .filter(|_| name.starts_with("pgbouncer") && name.ends_with(".pid"))
                    .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok())
                    .filter(|pid| *pid > 1)
                else {
                    continue;
                };
                let command = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if command.trim() == "pgbouncer" {
                    let _ = Command::new("kill").arg(pid.to_string()).status();
                }
            }
        }
    }
}
