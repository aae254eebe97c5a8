//! Issue 10 on real servers: a primary listening only on its host's
//! loopback, reached by a replica on another host through an SSH tunnel
//! pgfleet installs and supervises; and the Odoo filestore mirrored with
//! rsync over SSH by a job pgfleet installs on the replica's host.

// Tests may unwrap and print: a failure is the report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::SshServer;
use support::fleet::{Fleet, text};

/// Two SSH hosts (db1: the primary's, db2: the replica's) on one machine;
/// db1's authorized_keys is the postgres user's to edit, as
/// `~postgres/.ssh/authorized_keys` is on a real host.
fn fleet() -> Fleet {
    let address = support::free_loopback_address();
    let servers: Vec<SshServer> = (0..2).map(|_| SshServer::start_at(address)).collect();
    let authorized = servers[0].dir().join("authorized_keys");
    assert!(Command::new("chown").arg("postgres:postgres").arg(&authorized).status().unwrap().success());
    let hosts_yaml = servers
        .iter()
        .zip(["db1", "db2"])
        .map(|(server, name)| {
            format!(
                "  {name}: {{ address: {}, ssh: {{ user: postgres, port: {}, identity_file: {}, known_hosts: {}, authorized_keys: {} }} }}\n",
                server.address,
                server.port,
                server.identity_file.display(),
                server.known_hosts.display(),
                server.dir().join("authorized_keys").display(),
            )
        })
        .collect();
    Fleet::new(hosts_yaml, ["db1", "db2", "db2"], servers)
}

/// The configuration: a primary on db1, optionally r1 on db2 (through the
/// tunnel or direct), optionally the filestore mirrored to r1.
fn config(fleet: &Fleet, replica: Option<&str>, tunnel_port: u16, filestore: &str) -> String {
    let mut yaml = format!(
        "version: 1\nstate: {{ path: {state} }}\nhosts:\n{hosts}environments:\n  - id: shop\n    primary: {{ host: db1, address: {a0}, port: {p0}, data_dir: {primary}, tuning: none, settings: {{ shared_buffers: 32MB, wal_retrieve_retry_interval: 1s }} }}\n    replication: {{ user: replicator, password: {{ env: PGFLEET_TEST_REPLICATION_PASSWORD }} }}\n",
        state = fleet.dir().join("state.json").display(),
        hosts = fleet.hosts_yaml,
        a0 = fleet.addresses[0],
        p0 = fleet.ports[0],
        primary = fleet.data_dir("primary").display(),
    );
    if let Some(connect) = replica {
        yaml.push_str(&format!(
            "    replicas:\n      - {{ name: r1, host: db2, address: {}, port: {}, data_dir: {}, connect: {connect}, tunnel_port: {tunnel_port} }}\n",
            fleet.addresses[1],
            fleet.ports[1],
            fleet.data_dir("r1").display(),
        ));
    }
    yaml.push_str(filestore);
    yaml
}

fn write(fleet: &Fleet, yaml: &str) {
    std::fs::write(fleet.dir().join("pgfleet.yaml"), yaml).unwrap();
}

fn replica_sql(fleet: &Fleet, sql: &str) -> Result<String, String> {
    let password = fleet.secret("superuser.password");
    fleet.psql(fleet.addresses[1], fleet.ports[1], "postgres", &password, "postgres", sql)
}

fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what} not within {} s", within.as_secs());
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

fn streaming(fleet: &Fleet) -> bool {
    fleet.streaming() == "r1=streaming"
}

/// The row written on the primary is read on the replica.
fn check_data(fleet: &Fleet, marker: i64) {
    fleet.superuser_sql("CREATE TABLE IF NOT EXISTS orders (id bigint)");
    fleet.superuser_sql(&format!("INSERT INTO orders VALUES ({marker})"));
    wait_for(&format!("row {marker} on r1"), Duration::from_secs(20), || {
        replica_sql(fleet, &format!("SELECT count(*) FROM orders WHERE id = {marker}")).ok().as_deref() == Some("1")
    });
}

fn tunnel_dir(fleet: &Fleet) -> PathBuf {
    PathBuf::from(format!("{}-tunnel", fleet.home("r1").display()))
}

fn status_json(fleet: &Fleet) -> serde_json::Value {
    let output = fleet.pgfleet(&["status", "--format", "json"]);
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("status: {}{}", text(&output.stdout), text(&output.stderr)))
}

/// The supervisor in `dir` and everything it started.
fn helper_processes(dir: &Path) -> Vec<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join("supervise.pid")).unwrap().trim().parse().unwrap();
    let mut pids = support::descendants(pid);
    pids.push(pid);
    pids
}

fn alive(pids: &[u32]) -> Vec<u32> {
    pids.iter().copied().filter(|pid| Path::new(&format!("/proc/{pid}")).exists()).collect()
}

fn authorized_keys(fleet: &Fleet) -> String {
    std::fs::read_to_string(fleet.ssh[0].dir().join("authorized_keys")).unwrap()
}

#[test]
fn replica_streams_through_a_supervised_ssh_tunnel_that_survives_an_sshd_restart_and_leaves_with_it() {
    let mut fleet = fleet();
    let tunnel_port = support::free_port(fleet.addresses[1]);
    write(&fleet, &config(&fleet, Some("ssh_tunnel"), tunnel_port, ""));
    let first = fleet.apply();
    let out = text(&first.stdout);
    assert!(out.contains("shop.tunnel.r1"), "{out}");
    assert!(streaming(&fleet), "{}", fleet.streaming());
    assert_eq!(fleet.plan_exit_code(), 0, "the next plan is empty: {:#}", fleet.plan_json());
    check_data(&fleet, 1);

    // The replica connects to the tunnel's local end, never to the primary.
    let auto = std::fs::read_to_string(fleet.data_dir("r1").join("postgresql.auto.conf")).unwrap();
    let conninfo = auto.lines().find(|line| line.starts_with("primary_conninfo")).unwrap();
    assert!(conninfo.contains(&format!("host={} port={tunnel_port}", fleet.addresses[1])), "{conninfo}");
    assert!(!conninfo.contains(&fleet.addresses[0].to_string()), "{conninfo}");
    // The primary sees the stream arrive from db1's sshd (the tunnel's far end).
    let client_port = fleet.superuser_sql("SELECT client_port FROM pg_stat_replication WHERE application_name = 'r1'");
    let sockets = String::from_utf8_lossy(
        &Command::new("ss")
            .args(["-Htnp", "state", "established", "sport", "=", &format!(":{client_port}")])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(sockets.contains("sshd"), "the replication connection is not sshd's: {sockets}");
    // The key is authorized for forwarding to the primary only, no shell.
    let keys = authorized_keys(&fleet);
    assert!(keys.contains("# BEGIN pgfleet shop.tunnel.r1"), "{keys}");
    assert!(keys.contains(&format!("permitopen=\"{}:{}\"", fleet.addresses[0], fleet.ports[0])), "{keys}");
    assert!(keys.contains("command=\"/bin/false\""), "{keys}");
    assert!(!keys.contains("PRIVATE KEY"));

    // The primary's hba admits where the stream arrives from, as observed.
    let arrives =
        fleet.superuser_sql("SELECT host(client_addr) FROM pg_stat_replication WHERE application_name = 'r1'");
    let admitted = fleet.superuser_sql(
        "SELECT string_agg(address, ',') FROM pg_hba_file_rules WHERE 'replication' = ANY(database) AND error IS NULL",
    );
    assert!(admitted.split(',').any(|address| address == arrives), "{arrives} not in {admitted}");

    let status = status_json(&fleet);
    let entry = &status["environments"][0]["tunnels"][0];
    assert_eq!(entry["address"], "shop.tunnel.r1", "{status:#}");
    assert_eq!(entry["status"], "up", "{status:#}");
    assert!(entry["arrives_from"].as_str().unwrap().starts_with(&arrives), "{status:#}");
    let shown = text(&fleet.pgfleet(&["status"]).stdout);
    assert!(shown.contains("tunnel   shop.tunnel.r1") && shown.contains(" up "), "{shown}");

    // The private key stays on the replica's host: never in output or state.
    let private_key = std::fs::read_to_string(tunnel_dir(&fleet).join("id_ed25519")).unwrap();
    let body: String = private_key.lines().filter(|line| !line.starts_with("-----")).collect();
    let mut seen = format!("{}{}{shown}", text(&first.stdout), text(&first.stderr));
    seen.push_str(&std::fs::read_to_string(fleet.dir().join("state.json")).unwrap());
    seen.push_str(&text(&fleet.pgfleet(&["plan", "--format", "json"]).stdout));
    assert!(!body.is_empty() && !seen.contains(&body[..40]), "the tunnel's private key leaked");
    assert!(!seen.contains(support::fleet::REPLICATION_PASSWORD), "a secret leaked");

    // The tunnel is really used: stopping it cuts the stream.
    let pid = std::fs::read_to_string(tunnel_dir(&fleet).join("supervise.pid")).unwrap();
    assert!(Command::new("kill").arg(pid.trim()).status().unwrap().success());
    wait_for("the receiver to disconnect", Duration::from_secs(20), || !streaming(&fleet));
    let drift = fleet.pgfleet(&["drift"]);
    assert_eq!(drift.status.code(), Some(2), "{}{}", text(&drift.stdout), text(&drift.stderr));
    assert!(text(&drift.stdout).contains("shop.tunnel.r1: the tunnel is stopped"), "{}", text(&drift.stdout));
    let plan = fleet.plan_json();
    assert_eq!(support::change_of(&plan, "shop.tunnel.r1")["action"], "update", "{plan:#}");
    fleet.apply();
    wait_for("streaming after apply", Duration::from_secs(30), || streaming(&fleet));
    assert_eq!(fleet.plan_exit_code(), 0);

    // db1's sshd restarted, sessions cut: the supervisor brings the tunnel
    // back and the replica streams again, without pgfleet.
    let log = tunnel_dir(&fleet).join("supervise.log");
    let exits = || std::fs::read_to_string(&log).unwrap_or_default().matches("exited").count();
    let exits_before = exits();
    fleet.ssh[0].restart();
    wait_for("the tunnel to be cut by the sshd restart", Duration::from_secs(15), || exits() > exits_before);
    let took = wait_for("streaming again after the sshd restart", Duration::from_secs(30), || {
        streaming(&fleet)
            && replica_sql(&fleet, "SELECT status FROM pg_stat_wal_receiver").ok().as_deref() == Some("streaming")
    });
    println!("streaming again {took:?} after sshd restarted");
    check_data(&fleet, 2);

    // The replica leaves: with it its tunnel, its key's authorization, its slot.
    let processes = helper_processes(&tunnel_dir(&fleet));
    assert!(processes.len() >= 2, "the supervisor and ssh: {processes:?}");
    write(&fleet, &config(&fleet, None, tunnel_port, ""));
    let removed = fleet.apply();
    assert_eq!(alive(&processes), Vec::<u32>::new(), "the tunnel's processes outlived it");
    assert!(text(&removed.stdout).contains("shop.tunnel.r1"), "{}", text(&removed.stdout));
    assert!(!tunnel_dir(&fleet).exists());
    assert!(!authorized_keys(&fleet).contains("shop.tunnel.r1"));
    assert!(authorized_keys(&fleet).contains("pgfleet-test-client"), "other keys are kept");
    assert_eq!(fleet.superuser_sql("SELECT count(*) FROM pg_replication_slots"), "0");
    assert!(std::net::TcpStream::connect((fleet.addresses[1], tunnel_port)).is_err(), "the tunnel still listens");
    assert_eq!(fleet.plan_exit_code(), 0);
}

fn as_postgres_status(command: &str) -> (i32, String, Duration) {
    let started = Instant::now();
    let output = Command::new("runuser").args(["-u", "postgres", "--", "sh", "-c", command]).output().unwrap();
    (output.status.code().unwrap_or(-1), format!("{}{}", text(&output.stdout), text(&output.stderr)), started.elapsed())
}

fn mirror_yaml(source: &Path, mirror: &Path) -> String {
    format!(
        "    filestore: {{ path: {}, mirror_to: [r1], mirror_path: {}, every: 1h }}\n",
        source.display(),
        mirror.display()
    )
}

#[test]
fn filestore_is_seeded_then_mirrored_by_a_locked_job_that_never_deletes() {
    let fleet = fleet();
    let source = fleet.dir().join("filestore-src");
    let mirror = fleet.dir().join("filestore-mirror");
    support::as_postgres(&format!("mkdir -p {0}/ab && echo one > {0}/ab/before.bin", source.display()));
    let port = support::free_port(fleet.addresses[1]);
    write(&fleet, &config(&fleet, Some("direct"), port, &mirror_yaml(&source, &mirror)));
    let first = fleet.apply();
    assert!(text(&first.stdout).contains("shop.filestore.r1"), "{}", text(&first.stdout));
    assert_eq!(fleet.plan_exit_code(), 0, "the next plan is empty: {:#}", fleet.plan_json());
    check_data(&fleet, 1);
    // The seed copied what existed before.
    assert_eq!(std::fs::read_to_string(mirror.join("ab/before.bin")).unwrap(), "one\n");

    let dir = PathBuf::from(format!("{}-filestore", fleet.home("r1").display()));
    let job = dir.join("mirror.sh");
    let script = std::fs::read_to_string(&job).unwrap();
    assert!(script.contains("--numeric-ids --partial") && !script.contains("--delete"), "{script}");
    assert!(script.contains("flock -n") && script.contains("nice -n 19"), "{script}");

    // A new file is one behind, then mirrored by the job; one removed on
    // the primary's side stays on the replica's.
    support::as_postgres(&format!(
        "echo two > {}/after.bin && rm {}/ab/before.bin",
        source.display(),
        source.display()
    ));
    let status = status_json(&fleet);
    let entry = &status["environments"][0]["filestores"][0];
    assert_eq!(entry["files_behind"], 1, "{status:#}");
    assert_eq!(entry["last_rc"], 0, "{status:#}");
    assert_eq!(entry["scheduled"], true, "{status:#}");
    assert!(entry["last_success_age_seconds"].as_u64().unwrap() < 120, "{status:#}");
    let (rc, out, _) = as_postgres_status(&format!("/bin/sh {}", job.display()));
    assert_eq!(rc, 0, "{out}");
    assert_eq!(std::fs::read_to_string(mirror.join("after.bin")).unwrap(), "two\n");
    assert!(mirror.join("ab/before.bin").exists(), "deleted without `delete: true`");

    // A second run while one holds the lock exits at once.
    let mut holder = Command::new("runuser")
        .args(["-u", "postgres", "--", "flock"])
        .arg(dir.join("lock"))
        .args(["sleep", "10"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (rc, out, took) = as_postgres_status(&format!("/bin/sh {}", job.display()));
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(rc, 75, "{out}");
    assert!(out.contains("another run holds"), "{out}");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // drift: fresh is fine; older than twice the interval is reported.
    let drift = fleet.pgfleet(&["drift"]);
    assert_eq!(drift.status.code(), Some(0), "{}{}", text(&drift.stdout), text(&drift.stderr));
    let three_hours_ago =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 3 * 3600;
    support::as_postgres(&format!("echo {three_hours_ago} > {}/last-success", dir.display()));
    let drift = fleet.pgfleet(&["drift"]);
    assert_eq!(drift.status.code(), Some(2), "{}", text(&drift.stdout));
    assert!(
        text(&drift.stdout).contains("shop.filestore.r1: the filestore mirror is stale"),
        "{}",
        text(&drift.stdout)
    );
    let status = text(&fleet.pgfleet(&["status"]).stdout);
    assert!(status.contains("mirror   shop.filestore.r1") && status.contains("STALE"), "{status}");

    // The mirror leaves the configuration: its job and key go, the copy stays.
    let processes = helper_processes(&dir);
    write(&fleet, &config(&fleet, Some("direct"), port, ""));
    fleet.apply();
    assert_eq!(alive(&processes), Vec::<u32>::new(), "the schedule's processes outlived it");
    assert!(!dir.exists());
    assert!(!authorized_keys(&fleet).contains("shop.filestore.r1"));
    assert!(mirror.join("after.bin").exists());
    assert_eq!(fleet.plan_exit_code(), 0);
}

/// Removes a sudoers rule on drop.
struct SudoRule(PathBuf);

impl Drop for SudoRule {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An Odoo filestore the service user cannot read (root's, mode 0600): the
/// mirror reads it through `sudo -n rsync` on the primary's host, as the
/// runbook does, and the files arrive with their numeric owners kept apart
/// from what the replica's side may write.
#[test]
fn a_root_owned_filestore_is_read_through_sudo_rsync() {
    use std::os::unix::fs::PermissionsExt;
    let rule = PathBuf::from(format!("/etc/sudoers.d/pgfleet-test-rsync-{}", std::process::id()));
    std::fs::write(&rule, "postgres ALL=(root) NOPASSWD: /usr/bin/rsync\n").unwrap();
    std::fs::set_permissions(&rule, std::fs::Permissions::from_mode(0o440)).unwrap();
    let _rule = SudoRule(rule);
    let fleet = fleet();
    let source = fleet.dir().join("filestore-root");
    let mirror = fleet.dir().join("filestore-mirror");
    std::fs::create_dir_all(source.join("ab")).unwrap();
    std::fs::write(source.join("ab/secret.bin"), "root only\n").unwrap();
    std::fs::set_permissions(source.join("ab/secret.bin"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o700)).unwrap();
    let port = support::free_port(fleet.addresses[1]);
    write(&fleet, &config(&fleet, Some("direct"), port, &mirror_yaml(&source, &mirror)));
    fleet.apply();
    let dir = PathBuf::from(format!("{}-filestore", fleet.home("r1").display()));
    let script = std::fs::read_to_string(dir.join("mirror.sh")).unwrap();
    assert!(script.contains("--rsync-path='sudo -n rsync'"), "{script}");
    assert_eq!(std::fs::read_to_string(mirror.join("ab/secret.bin")).unwrap(), "root only\n");
    assert_eq!(fleet.plan_exit_code(), 0, "the next plan is empty");
}
