//! `pgfleet plan` against real hosts (private sshd per host, PostgreSQL 15):
//! what it lists, its exit codes, its refusals to trust a host, and that no
//! secret ever reaches its output.

// Tests may unwrap and print: a failure is the report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{PgServer, SshServer};

fn host_yaml(name: &str, ssh: &SshServer) -> String {
    support::host_yaml(name, ssh)
}

fn pgfleet(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgfleet"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("PGFLEET_TEST_SECRET", "env-secret-Zq81xLw")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A primary on db1 and two replicas on db2 and db3, all empty.
fn three_host_config(db1: &SshServer, db2: &SshServer, db3: &SshServer, secret_file: &Path) -> String {
    format!(
        "version: 1\nhosts:\n{}{}{}environments:\n  - id: prod\n    odoo_version: \"18.0\"\n    resources: {{ cpu: 1, ram_mb: 1024, disk_gb: 5 }}\n    primary: {{ host: db1, address: {}, data_dir: {} }}\n    database: {{ password: {{ env: PGFLEET_TEST_SECRET }} }}\n    replication: {{ password: {{ file: {} }} }}\n    pgbouncer: {{ pool_mode: session }}\n    replicas:\n      - {{ name: r1, host: db2, address: {}, data_dir: {}, connect: ssh_tunnel }}\n      - {{ name: r2, host: db3, address: {}, data_dir: {}, connect: ssh_tunnel, purpose: dr }}\n",
        host_yaml("db1", db1),
        host_yaml("db2", db2),
        host_yaml("db3", db3),
        db1.address,
        db1.dir().join("primary").display(),
        secret_file.display(),
        db2.address,
        db2.dir().join("r1").display(),
        db3.address,
        db3.dir().join("r2").display(),
    )
}

/// Every file under `dir`, with its size, to prove observation wrote nothing.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(directory) = stack.pop() {
        for entry in std::fs::read_dir(&directory).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|name| name != "sshd.log") {
                files.push((path.display().to_string(), entry.metadata().map(|m| m.len()).unwrap_or(0)));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn plan_against_empty_hosts_creates_everything_and_exits_2() {
    let (db1, db2, db3) = (SshServer::start(), SshServer::start(), SshServer::start());
    let work = support::shared_temp_dir("pgfleet-plan-");
    let secret_file = work.path().join("replication.secret");
    std::fs::write(&secret_file, "file-secret-Pk42vNe\n").unwrap();
    std::fs::write(work.path().join("pgfleet.yaml"), three_host_config(&db1, &db2, &db3, &secret_file)).unwrap();
    let before: Vec<_> = [&db1, &db2, &db3].iter().map(|server| listing(server.dir())).collect();

    let output = pgfleet(work.path(), &["plan", "--format", "json", "--detailed-exitcode"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["format_version"], 1);
    let changes = plan["resource_changes"].as_array().unwrap();
    let addresses: Vec<&str> = changes.iter().map(|change| change["address"].as_str().unwrap()).collect();
    for expected in [
        "prod.cluster.primary",
        "prod.hba.replication",
        "prod.role.odoo",
        "prod.role.replicator",
        "prod.database.prod",
        "prod.slot.r1",
        "prod.slot.r2",
        "prod.tunnel.r1",
        "prod.tunnel.r2",
        "prod.replica.r1",
        "prod.replica.r2",
        "prod.pooler.primary",
        "prod.pooler.r1",
        "prod.pooler.r2",
    ] {
        let change = changes
            .iter()
            .find(|change| change["address"] == expected)
            .unwrap_or_else(|| panic!("{expected} missing: {addresses:?}"));
        assert_eq!(change["action"], "create", "{expected}");
        assert!(!change["actions"].as_array().unwrap().is_empty(), "{expected} has actions");
    }
    // Dependency order: the primary first, each replica after its slot.
    let position = |address: &str| addresses.iter().position(|candidate| *candidate == address).unwrap();
    assert_eq!(position("prod.cluster.primary"), 0);
    assert!(position("prod.slot.r1") < position("prod.replica.r1"));
    assert!(position("prod.tunnel.r1") < position("prod.replica.r1"));
    assert!(position("prod.replica.r2") < position("prod.pooler.r2"));
    assert_eq!(plan["quota"], serde_json::Value::Null);
    assert_eq!(plan["unreachable"].as_array().unwrap().len(), 0);
    assert_eq!(plan["fingerprint"].as_str().unwrap().len(), 64);

    // Text: Terraform-like summary; plain exit 0 without --detailed-exitcode.
    let output = pgfleet(work.path(), &["plan"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("+ prod.replica.r1 (create; disruption: none)"), "{stdout}");
    assert!(stdout.contains("Plan: 14 to add, 0 to change, 0 to replace, 0 to destroy."), "{stdout}");

    // Observation wrote nothing on any host.
    let after: Vec<_> = [&db1, &db2, &db3].iter().map(|server| listing(server.dir())).collect();
    assert_eq!(before, after);
}

#[test]
fn plan_against_a_hand_built_primary_shows_exactly_the_changed_setting() {
    let db1 = SshServer::start();
    let work = support::shared_temp_dir("pgfleet-plan-");
    // Everything pgfleet manages matches the configuration, except
    // work_mem (reload) in the first run and max_connections (restart) in
    // the second.
    let mut pg = PgServer::start(db1.address, "work_mem = '8MB'\nmax_slot_wal_keep_size = '10GB'\n");
    let home = format!("{}.pgfleet", pg.data_dir.display());
    support::as_postgres(&format!("mkdir -p {home}"));
    pg.psql(&format!("alter system set unix_socket_directories = '{home}'"));
    pg.stop();
    pg = pg.restart_in_place();
    let config = |settings: &str| {
        format!(
            "version: 1\nhosts:\n{}environments:\n  - id: prod\n    primary: {{ host: db1, address: {}, port: {}, data_dir: {}, tuning: none, settings: {{ {settings} }} }}\n",
            host_yaml("db1", &db1),
            pg.address,
            pg.port,
            pg.data_dir.display()
        )
    };
    std::fs::write(work.path().join("pgfleet.yaml"), config("work_mem: 16MB")).unwrap();
    let output = pgfleet(work.path(), &["plan", "--format", "json", "--detailed-exitcode"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let cluster = support::change_of(&plan, "prod.cluster.primary");
    assert_eq!(cluster["action"], "update");
    assert_eq!(cluster["disruption"], "reload", "{cluster:#}");
    assert_eq!(
        cluster["actions"][0],
        serde_json::json!({"kind": "configure", "member": "primary", "set": {"work_mem": "16MB"}, "reset": []})
    );
    assert_eq!(cluster["actions"][1], serde_json::json!({"kind": "reload", "member": "primary"}));
    let diff = cluster["diff"].as_str().unwrap();
    assert!(diff.contains("-work_mem = '8MB'") && diff.contains("+work_mem = '16MB'"), "{diff}");

    std::fs::write(work.path().join("pgfleet.yaml"), config("work_mem: 8MB, max_connections: 150")).unwrap();
    let output = pgfleet(work.path(), &["plan", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let cluster = support::change_of(&plan, "prod.cluster.primary");
    assert_eq!(cluster["disruption"], "restart");
    assert_eq!(cluster["actions"][0]["set"], serde_json::json!({"max_connections": "150"}));
    assert_eq!(cluster["actions"][1], serde_json::json!({"kind": "restart", "member": "primary"}));
}

#[test]
fn untrusted_or_unreachable_hosts_fail_with_the_host_named_and_nothing_written() {
    let db1 = SshServer::start();
    let other = SshServer::start();
    let work = support::shared_temp_dir("pgfleet-plan-");
    let wrong_key = work.path().join("wrong_key");
    assert!(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&wrong_key)
            .status()
            .unwrap()
            .success()
    );
    let changed = work.path().join("changed_known_hosts");
    std::fs::write(&changed, format!("[{}]:{} {}\n", db1.address, db1.port, other.host_public_key)).unwrap();
    let unknown = work.path().join("empty_known_hosts");
    std::fs::write(&unknown, "").unwrap();
    let stopped_port = support::free_port(db1.address);

    let cases: [(&str, String, &str); 4] = [
        (
            "changed host key",
            format!(
                "port: {}, identity_file: {}, known_hosts: {}",
                db1.port,
                db1.identity_file.display(),
                changed.display()
            ),
            "differs from line 1",
        ),
        (
            "unknown host key",
            format!(
                "port: {}, identity_file: {}, known_hosts: {}",
                db1.port,
                db1.identity_file.display(),
                unknown.display()
            ),
            "unknown host key",
        ),
        (
            "stopped sshd",
            format!(
                "port: {stopped_port}, identity_file: {}, known_hosts: {}",
                db1.identity_file.display(),
                db1.known_hosts.display()
            ),
            "cannot connect",
        ),
        (
            "wrong identity",
            format!(
                "port: {}, identity_file: {}, known_hosts: {}",
                db1.port,
                wrong_key.display(),
                db1.known_hosts.display()
            ),
            "refused the key",
        ),
    ];
    let before = listing(db1.dir());
    for (case, ssh, phrase) in cases {
        let config = format!(
            "version: 1\nhosts:\n  db1:\n    address: {}\n    ssh: {{ user: postgres, {ssh} }}\nenvironments:\n  - id: prod\n    primary: {{ host: db1, address: {}, data_dir: {}, tuning: none }}\n",
            db1.address,
            db1.address,
            db1.dir().join("primary").display()
        );
        std::fs::write(work.path().join("pgfleet.yaml"), config).unwrap();
        let output = pgfleet(work.path(), &["plan", "--detailed-exitcode"]);
        let stderr = text(&output.stderr).replace('│', " ").split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(output.status.code(), Some(1), "{case}: {stderr}");
        assert!(stderr.contains("db1"), "{case}: the host is named: {stderr}");
        assert!(stderr.contains(phrase), "{case}: expected {phrase:?} in {stderr}");
        assert!(text(&output.stdout).contains("! host db1 could not be observed"), "{case}");
    }
    assert_eq!(listing(db1.dir()), before, "nothing was written on the host");
}

#[test]
fn no_secret_reaches_any_output_format_or_the_saved_plan() {
    let (db1, db2, db3) = (SshServer::start(), SshServer::start(), SshServer::start());
    let work = support::shared_temp_dir("pgfleet-plan-");
    let secret_file = work.path().join("replication.secret");
    std::fs::write(&secret_file, "file-secret-Pk42vNe\n").unwrap();
    std::fs::write(work.path().join("pgfleet.yaml"), three_host_config(&db1, &db2, &db3, &secret_file)).unwrap();
    let mut seen = String::new();
    for format in ["text", "json", "markdown"] {
        let output = pgfleet(work.path(), &["plan", "--format", format, "--out", "saved.plan"]);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        seen.push_str(&text(&output.stdout));
        seen.push_str(&text(&output.stderr));
        let saved = std::fs::read_to_string(work.path().join("saved.plan")).unwrap();
        assert!(saved.contains("prod.replica.r1"));
        seen.push_str(&saved);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(work.path().join("saved.plan")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(!seen.is_empty());
    for secret in ["env-secret-Zq81xLw", "file-secret-Pk42vNe"] {
        assert!(!seen.contains(secret), "{secret} leaked");
    }
}

/// A runtime the YAML may name but pgfleet cannot drive yet is refused by
/// `plan` from its capabilities, naming the key, and `apply` writes
/// nothing: no data directory, no state file, no lock.
#[test]
fn a_runtime_pgfleet_cannot_run_is_refused_at_plan_time_and_nothing_is_written() {
    let dir = support::shared_temp_dir("pgfleet-runtime");
    let data_dir = dir.path().join("primary");
    let config = format!(
        "version: 1\nstate: {{ path: {state} }}\nhosts:\n  here: {{ transport: local }}\nenvironments:\n  - id: prod\n    primary: {{ host: here, address: {address}, port: {port}, data_dir: {data}, runtime: external, tuning: none }}\n    pgbouncer: {{ pool_size: 5 }}\n",
        state = dir.path().join("state.json").display(),
        address = support::free_loopback_address(),
        port = 5432,
        data = data_dir.display(),
    );
    std::fs::write(dir.path().join("pgfleet.yaml"), config).unwrap();
    let before = listing(dir.path());

    for args in [&["plan"][..], &["apply", "--auto-approve"][..]] {
        let output = pgfleet(dir.path(), args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("environments[0].primary.runtime"), "located: {stderr}");
        assert!(stderr.contains("run PgBouncer with `runtime: external`"), "names the runtime as written: {stderr}");
        assert!(!stderr.contains("External"), "no Rust Debug name: {stderr}");
        assert!(!data_dir.exists(), "{args:?} created the data directory");
        assert_eq!(listing(dir.path()), before, "{args:?} wrote a file");
    }
}

/// `apply PLANFILE` runs what was reviewed: asking it to rebuild or narrow
/// the plan is refused before the plan is read or any host contacted.
#[test]
fn a_saved_plan_with_replace_or_target_is_refused_and_nothing_is_touched() {
    let dir = support::shared_temp_dir("pgfleet-saved-plan");
    std::fs::write(dir.path().join("reviewed.plan"), b"{}").unwrap();
    let before = listing(dir.path());
    for extra in [&["--replace", "prod.replica.r1"][..], &["--target", "prod.cluster.primary"][..], &["--force"][..]] {
        let mut args = vec!["apply", "reviewed.plan", "--auto-approve"];
        args.extend_from_slice(extra);
        let output = pgfleet(dir.path(), &args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("applied as it was reviewed"), "{stderr}");
        assert_eq!(listing(dir.path()), before, "{args:?} wrote a file");
    }
}

/// `plan --env a` observes only a's hosts: with b's sshd stopped it still
/// plans, and lists only a's changes; the quota still counts b, so an
/// excess b causes is reported all the same.
#[test]
fn plan_env_observes_only_that_environment_and_the_quota_still_counts_all() {
    let mut hosts = [SshServer::start(), SshServer::start()];
    let data = support::shared_temp_dir("pgfleet-plan-env-");
    assert!(Command::new("chown").arg("postgres:postgres").arg(data.path()).status().unwrap().success());
    let data_dir = |id: &str| data.path().join(format!("{id}-primary"));
    let config = |hosts: &[SshServer; 2], b_ram: u32| {
        let environment = |id: &str, host: &str, server: &SshServer, ram: u32| {
            format!(
                "  - id: {id}\n    resources: {{ cpu: 1, ram_mb: {ram}, disk_gb: 5 }}\n    primary: {{ host: {host}, address: {}, data_dir: {}, tuning: none }}\n    replication: {{ password: {{ generate: true }} }}\n",
                server.address,
                data_dir(id).display()
            )
        };
        format!(
            "version: 1\norganization: {{ name: hoster, quota: {{ cpu: 4, ram_mb: 4096, disk_gb: 100 }} }}\nhosts:\n{}{}environments:\n{}{}",
            host_yaml("ha", &hosts[0]),
            host_yaml("hb", &hosts[1]),
            environment("a", "ha", &hosts[0], 1024),
            environment("b", "hb", &hosts[1], b_ram)
        )
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pgfleet.yaml"), config(&hosts, 1024)).unwrap();
    hosts[1].stop();

    let whole = pgfleet(dir.path(), &["plan", "--format", "json"]);
    assert_eq!(whole.status.code(), Some(1), "b's host is down: {}", text(&whole.stderr));
    let only_a = pgfleet(dir.path(), &["plan", "--env", "a", "--format", "json", "--detailed-exitcode"]);
    assert_eq!(only_a.status.code(), Some(2), "{}", text(&only_a.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&only_a.stdout).unwrap();
    let addresses: Vec<String> = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["address"].as_str().unwrap().to_owned())
        .collect();
    assert!(addresses.contains(&"a.cluster.primary".to_owned()), "{addresses:?}");
    assert!(addresses.iter().all(|address| address.starts_with("a.")), "{addresses:?}");
    assert_eq!(plan["environments"], serde_json::json!(["a"]));
    assert!(plan["unreachable"].as_array().unwrap().is_empty(), "{plan}");
    // apply --env a builds a without b's host, and converges.
    let applied = pgfleet(dir.path(), &["apply", "--env", "a", "--auto-approve"]);
    assert_eq!(applied.status.code(), Some(0), "{}{}", text(&applied.stdout), text(&applied.stderr));
    let again = pgfleet(dir.path(), &["plan", "--env", "a", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    let ready = Command::new("pg_isready").args(["-h", &hosts[0].address.to_string(), "-p", "5432"]).output().unwrap();
    let stop = || {
        Command::new("runuser")
            .args(["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D"])
            .arg(data_dir("a"))
            .args(["stop", "-m", "immediate"])
            .output()
    };
    if !ready.status.success() {
        let _ = stop();
        panic!("a's primary does not answer");
    }

    let unknown = pgfleet(dir.path(), &["plan", "--env", "c"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("there is no environment `c`"), "{}", text(&unknown.stderr));

    // b's resources push the organisation over its quota: refused, even
    // when planning a alone.
    std::fs::write(dir.path().join("pgfleet.yaml"), config(&hosts, 3584)).unwrap();
    let refused = pgfleet(dir.path(), &["plan", "--env", "a"]);
    assert_eq!(refused.status.code(), Some(1));
    let _ = stop();
    assert!(text(&refused.stderr).contains("quota exceeded"), "{}", text(&refused.stderr));
}
