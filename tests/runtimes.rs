//! Primaries pgfleet did not create, on real servers: a Debian cluster made
//! by `pg_createcluster` and already holding data is adopted (only what is
//! missing is planned, nothing outside pgfleet's block and `ALTER SYSTEM`
//! changes), replicas are added on the `debian` runtime too; a primary
//! pgfleet does not run at all (`runtime: external`) gets its role and
//! slot by SQL, and what SQL cannot do is refused at plan time.

// Tests may unwrap and print: a failure is the report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::as_postgres;
use support::fleet::{Fleet, text};

const ODOO_PASSWORD: &str = "adopted-odoo-Zx81KdPq";

/// The name Debian's tools know a data directory outside
/// /var/lib/postgresql by (pgfleet's rule: its path, `/` as `-`).
fn debian_name(data_dir: &Path) -> String {
    data_dir
        .to_string_lossy()
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c == '/' {
                '-'
            } else if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Drops the Debian clusters a test made (pgfleet's and the test's own),
/// stopping them first; runs before the fleet's own cleanup.
struct DebianClusters(Vec<String>);

impl Drop for DebianClusters {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ =
                Command::new("runuser").args(["-u", "postgres", "--", "pg_dropcluster", "--stop", "15", name]).output();
        }
    }
}

/// Every file of a Debian cluster's configuration directory, by name.
fn config_files(directory: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut pending = vec![directory.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path.strip_prefix(directory).unwrap().display().to_string();
                files.insert(name, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    files
}

/// The text with pgfleet's block taken out.
fn without_pgfleet_block(text: &str) -> String {
    let mut inside = false;
    let mut kept = String::new();
    for line in text.lines() {
        if line.starts_with("# BEGIN pgfleet") {
            inside = true;
        } else if line.starts_with("# END pgfleet") {
            inside = false;
        } else if !inside {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

/// Every file under `directory` with its contents, and every setting of
/// the server on `port` (through the default socket directory): what
/// `pgfleet import` must leave as it found.
fn hosts_snapshot(directory: &Path, port: u16) -> (BTreeMap<String, Vec<u8>>, String) {
    let mut files = BTreeMap::new();
    let mut pending = vec![directory.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = path.display().to_string();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            // The server's own files change as it runs: compared by name;
            // the configuration by contents. The state is import's to write.
            let config = ["postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf"]
                .iter()
                .any(|file| name.ends_with(file));
            if name.ends_with("state.json") || name.ends_with(".lock") {
                continue;
            }
            let is_server_file = name.contains("/primary/") && !config;
            files.insert(name, if is_server_file { Vec::new() } else { std::fs::read(&path).unwrap_or_default() });
        }
    }
    let settings = as_postgres(&format!(
        "psql -X -A -t -h /var/run/postgresql -p {port} -c \"SELECT string_agg(name || '=' || setting, ',' ORDER BY name) FROM pg_settings WHERE name <> 'application_name'\""
    ));
    (files, settings)
}

/// Asserts two snapshots are the same, naming what differs.
fn assert_same(before: &(BTreeMap<String, Vec<u8>>, String), after: &(BTreeMap<String, Vec<u8>>, String)) {
    let names = |snapshot: &(BTreeMap<String, Vec<u8>>, String)| snapshot.0.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(before), names(after), "files appeared or went");
    for (name, contents) in &before.0 {
        assert!(after.0[name] == *contents, "{name} changed");
    }
    assert_eq!(before.1, after.1, "settings changed");
}

fn owned(fleet: &Fleet) -> Vec<String> {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fleet.dir().join("state.json")).unwrap()).unwrap();
    state["owned"].as_object().unwrap().keys().cloned().collect()
}

fn psql(fleet: &Fleet, index: usize, sql: &str) -> Result<String, String> {
    fleet.psql(fleet.addresses[index], fleet.ports[index], "odoo", ODOO_PASSWORD, "shop", sql)
}

fn wait_for_row(fleet: &Fleet, index: usize, marker: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while psql(fleet, index, &format!("SELECT count(*) FROM orders WHERE id = {marker}")).ok().as_deref() != Some("1") {
        assert!(Instant::now() < deadline, "replica {index} never showed row {marker}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn config(fleet: &Fleet, runtime: &str, replica_runtime: Option<&str>) -> String {
    Environment { id: "shop", runtime, replica_runtime, image: None, poolers: false }.config(fleet)
}

/// The environment a test writes.
struct Environment<'a> {
    id: &'a str,
    runtime: &'a str,
    replica_runtime: Option<&'a str>,
    image: Option<&'a str>,
    poolers: bool,
}

impl Environment<'_> {
    fn config(&self, fleet: &Fleet) -> String {
        let runtime_key = self.replica_runtime.map(|name| format!(", runtime: {name}")).unwrap_or_default();
        let image = self.image.map(|image| format!(", image: {image}")).unwrap_or_default();
        let mut yaml = format!(
            "version: 1\nstate: {{ path: {state} }}\nhosts:\n{hosts}environments:\n  - id: {id}\n    primary: {{ host: {h0}, address: {a0}, port: {p0}, data_dir: {primary}, runtime: {runtime}{image}, tuning: none }}\n    database: {{ name: shop, owner: odoo, password: {{ env: PGFLEET_TEST_ODOO_PASSWORD }} }}\n    replication: {{ user: replicator, password: {{ env: PGFLEET_TEST_REPLICATION_PASSWORD }} }}\n",
            id = self.id,
            runtime = self.runtime,
            state = fleet.dir().join("state.json").display(),
            hosts = fleet.hosts_yaml,
            h0 = fleet.host_of[0],
            a0 = fleet.addresses[0],
            p0 = fleet.ports[0],
            primary = fleet.data_dir("primary").display(),
        );
        if self.poolers {
            yaml.push_str(&format!(
                "    pgbouncer: {{ pool_size: 5, pool_mode: session, port: {}, replica_port: {} }}\n",
                fleet.pooler_port, fleet.replica_pooler_port
            ));
        }
        yaml.push_str("    replicas:\n");
        for (index, name) in [(1, "r1"), (2, "r2")] {
            yaml.push_str(&format!(
                "      - {{ name: {name}, host: {}, address: {}, port: {}, data_dir: {}{runtime_key} }}\n",
                fleet.host_of[index],
                fleet.addresses[index],
                fleet.ports[index],
                fleet.data_dir(name).display()
            ));
        }
        yaml
    }
}

fn pgfleet(fleet: &Fleet, args: &[&str]) -> std::process::Output {
    fleet.command(args).env("PGFLEET_TEST_ODOO_PASSWORD", ODOO_PASSWORD).output().unwrap()
}

fn plan_json(fleet: &Fleet) -> serde_json::Value {
    let output = pgfleet(fleet, &["plan", "--format", "json"]);
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("plan: {}{}", text(&output.stdout), text(&output.stderr)))
}

/// The changes of a plan: address → (action, the actions' names).
fn changes(plan: &serde_json::Value) -> BTreeMap<String, (String, Vec<String>)> {
    plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|change| change["action"] != "no-op")
        .map(|change| {
            let steps = change["actions"]
                .as_array()
                .map(|steps| steps.iter().map(|step| step["kind"].as_str().unwrap_or("").to_owned()).collect())
                .unwrap_or_default();
            (change["address"].as_str().unwrap().to_owned(), (change["action"].as_str().unwrap().to_owned(), steps))
        })
        .collect()
}

/// A production-like Debian primary, made and started the Debian way,
/// listening where the YAML says, holding the application's data.
fn debian_primary_with_data(fleet: &Fleet, name: &str) {
    let data_dir = fleet.data_dir("primary");
    as_postgres(&format!("pg_createcluster 15 {name} -d {} -p {} >/dev/null", data_dir.display(), fleet.ports[0]));
    let conf = format!("/etc/postgresql/15/{name}/postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!("listen_addresses = '{}'\n", fleet.addresses[0]));
    std::fs::write(&conf, text).unwrap();
    as_postgres(&format!("pg_ctlcluster 15 {name} start"));
    as_postgres(&format!(
        "psql -X -q -p {} -c \"CREATE ROLE odoo LOGIN PASSWORD '{ODOO_PASSWORD}'\" -c 'CREATE DATABASE shop OWNER odoo'",
        fleet.ports[0]
    ));
    psql(fleet, 0, "CREATE TABLE orders (id bigint); INSERT INTO orders VALUES (1)").unwrap();
}

#[test]
fn a_debian_primary_with_data_is_adopted_and_gains_two_debian_replicas() {
    let fleet = Fleet::ssh();
    let names: Vec<String> = ["primary", "r1", "r2"].iter().map(|name| debian_name(&fleet.data_dir(name))).collect();
    let _clusters = DebianClusters(names.clone());
    debian_primary_with_data(&fleet, &names[0]);
    let conf_dir = PathBuf::from(format!("/etc/postgresql/15/{}", names[0]));
    let before = config_files(&conf_dir);
    let auto_conf = fleet.data_dir("primary").join("postgresql.auto.conf");
    let postmaster_before = as_postgres(&format!("head -n 1 {}/postmaster.pid", fleet.data_dir("primary").display()));
    std::fs::write(fleet.dir().join("pgfleet.yaml"), config(&fleet, "debian", None)).unwrap();
    let imported = pgfleet(&fleet, &["import", "--env", "shop"]);
    assert_eq!(imported.status.code(), Some(0), "{}", text(&imported.stderr));
    assert_eq!(owned(&fleet), ["shop.cluster.primary", "shop.database.shop", "shop.role.odoo"]);
    assert_eq!(config_files(&conf_dir), before, "import wrote nothing");

    // Only what is missing is planned: the replication role, the slots, the
    // hba block, the replicas, and a setting that differs (with its
    // disruption). Never an initdb, never a restart of the primary.
    let plan = plan_json(&fleet);
    let planned = changes(&plan);
    let addresses: Vec<&str> = planned.keys().map(String::as_str).collect();
    assert_eq!(
        addresses,
        [
            "shop.cluster.primary",
            "shop.hba.replication",
            "shop.replica.r1",
            "shop.replica.r2",
            "shop.role.replicator",
            "shop.slot.r1",
            "shop.slot.r2"
        ],
        "{plan:#}"
    );
    let (action, steps) = &planned["shop.cluster.primary"];
    assert_eq!(action, "update", "{plan:#}");
    assert!(!steps.iter().any(|step| step.contains("init") || step.contains("restart")), "{steps:?}");
    let primary_change = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|change| change["address"] == "shop.cluster.primary")
        .unwrap();
    assert_eq!(primary_change["disruption"], "reload", "{primary_change:#}");
    assert!(primary_change["reason"].as_str().unwrap().contains("max_slot_wal_keep_size"), "{primary_change:#}");

    let output = pgfleet(&fleet, &["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "apply:\n{}\n{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(
        as_postgres(&format!("head -n 1 {}/postmaster.pid", fleet.data_dir("primary").display())),
        postmaster_before,
        "the adopted primary was not restarted"
    );

    // The row written before adoption, and one written after, on both.
    psql(&fleet, 0, "INSERT INTO orders VALUES (2)").unwrap();
    for index in [1, 2] {
        wait_for_row(&fleet, index, 1);
        wait_for_row(&fleet, index, 2);
        assert!(psql(&fleet, index, "INSERT INTO orders VALUES (-1)").unwrap_err().contains("read-only"));
    }
    let converged = pgfleet(&fleet, &["plan", "--detailed-exitcode"]);
    assert_eq!(converged.status.code(), Some(0), "plan is empty:\n{}", text(&converged.stdout));

    // Nothing outside pgfleet's block and ALTER SYSTEM changed.
    let after = config_files(&conf_dir);
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    for (name, text) in &before {
        if name == "pg_hba.conf" {
            assert!(after[name].contains("# BEGIN pgfleet"), "{}", after[name]);
            assert_eq!(&without_pgfleet_block(&after[name]), text, "pg_hba.conf outside pgfleet's block");
        } else {
            assert_eq!(&after[name], text, "{name} changed");
        }
    }
    let altered = std::fs::read_to_string(&auto_conf).unwrap();
    assert!(altered.contains("max_slot_wal_keep_size"), "{altered}");

    // Debian's tools know the replicas, online.
    let clusters = text(&Command::new("pg_lsclusters").arg("-h").output().unwrap().stdout);
    for name in &names {
        let line = clusters.lines().find(|line| line.split_whitespace().nth(1) == Some(name.as_str()));
        assert!(line.is_some_and(|line| line.contains("online")), "{name} in:\n{clusters}");
    }
    let recovery = |index: usize| psql(&fleet, index, "SELECT pg_is_in_recovery()").unwrap();
    assert_eq!((recovery(1), recovery(2)), ("t".into(), "t".into()));
}

/// A primary pgfleet does not run: started by hand (here with the
/// distribution's programs), listening on the host's default socket
/// directory, with pg_hba.conf that the operator keeps.
struct HandRunPrimary {
    data_dir: PathBuf,
}

impl Drop for HandRunPrimary {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D"])
            .arg(&self.data_dir)
            .args(["stop", "-m", "immediate"])
            .output();
    }
}

fn hand_run_primary(fleet: &Fleet, hba: &str) -> HandRunPrimary {
    let data_dir = fleet.data_dir("primary");
    let bin = "/usr/lib/postgresql/15/bin";
    as_postgres(&format!("{bin}/initdb -D {} -A peer --auth-host=scram-sha-256 >/dev/null", data_dir.display()));
    let conf = data_dir.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "listen_addresses = '{}'\nport = {}\nunix_socket_directories = '/var/run/postgresql'\n",
        fleet.addresses[0], fleet.ports[0]
    ));
    std::fs::write(&conf, text).unwrap();
    std::fs::write(data_dir.join("pg_hba.conf"), hba).unwrap();
    as_postgres(&format!("{bin}/pg_ctl -D {0} -l {0}/server.log -w start >/dev/null", data_dir.display()));
    as_postgres(&format!(
        "psql -X -q -h /var/run/postgresql -p {} -c \"CREATE ROLE odoo LOGIN PASSWORD '{ODOO_PASSWORD}'\" -c 'CREATE DATABASE shop OWNER odoo'",
        fleet.ports[0]
    ));
    psql(fleet, 0, "CREATE TABLE orders (id bigint); INSERT INTO orders VALUES (7)").unwrap();
    HandRunPrimary { data_dir }
}

#[test]
fn an_external_primary_gets_role_and_slot_by_sql_and_what_it_cannot_do_is_refused() {
    let fleet = Fleet::ssh();
    let base_hba = "local all all peer\nhost all all 0.0.0.0/0 scram-sha-256\n";
    let _primary = hand_run_primary(&fleet, base_hba);
    let hba_path = fleet.data_dir("primary").join("pg_hba.conf");
    std::fs::write(fleet.dir().join("pgfleet.yaml"), config(&fleet, "external", Some("pg_ctl"))).unwrap();

    // Import records what exists and writes nothing to any host.
    let before = hosts_snapshot(fleet.dir(), fleet.ports[0]);
    let imported = pgfleet(&fleet, &["import", "--env", "shop"]);
    let said = format!("{}{}", text(&imported.stdout), text(&imported.stderr));
    assert_eq!(imported.status.code(), Some(0), "{said}");
    assert!(said.contains("shop.cluster.primary: imported"), "{said}");
    assert_eq!(owned(&fleet), ["shop.cluster.primary", "shop.database.shop", "shop.role.odoo"], "{said}");
    assert_same(&before, &hosts_snapshot(fleet.dir(), fleet.ports[0]));
    let unknown = pgfleet(&fleet, &["import", "--env", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("name one of: shop"), "{}", text(&unknown.stderr));

    // Its pg_hba.conf is the operator's: plan refuses, naming the rule to
    // add, and writes nothing.
    let refused = pgfleet(&fleet, &["plan"]);
    let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains("does not edit the pg_hba.conf"), "{said}");
    // The hosts are one machine: connections arrive from 127.0.0.1.
    let rules = "host all all 127.0.0.1/32 scram-sha-256\nhost replication replicator 127.0.0.1/32 scram-sha-256\n";
    for rule in rules.lines() {
        assert!(said.contains(rule), "{rule} in {said}");
    }
    assert_eq!(std::fs::read_to_string(&hba_path).unwrap(), base_hba);

    // A setting that needs a restart is refused too.
    let restart = config(&fleet, "external", Some("pg_ctl"))
        .replace("tuning: none", "tuning: none, settings: { max_connections: 77 }");
    std::fs::write(fleet.dir().join("pgfleet.yaml"), &restart).unwrap();
    let said = text(&pgfleet(&fleet, &["plan"]).stderr);
    assert!(said.contains("max_connections take effect only after a restart"), "{said}");
    assert!(said.contains("primary.settings"), "{said}");

    // The operator adds the rules; now the role and slots are made by SQL
    // and the replicas (which pgfleet runs) stream.
    let hba = format!("{rules}{base_hba}");
    std::fs::write(&hba_path, &hba).unwrap();
    as_postgres(&format!(
        "/usr/lib/postgresql/15/bin/pg_ctl -D {} reload >/dev/null",
        fleet.data_dir("primary").display()
    ));
    std::fs::write(fleet.dir().join("pgfleet.yaml"), config(&fleet, "external", Some("pg_ctl"))).unwrap();
    let plan = plan_json(&fleet);
    let planned = changes(&plan);
    assert!(!planned.contains_key("shop.hba.replication"), "{plan:#}");
    assert!(planned.contains_key("shop.role.replicator") && planned.contains_key("shop.slot.r1"), "{plan:#}");
    let output = pgfleet(&fleet, &["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "apply:\n{}\n{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(std::fs::read_to_string(&hba_path).unwrap(), hba, "pgfleet left the operator's pg_hba.conf alone");
    let slots = as_postgres(&format!(
        "psql -X -A -t -h /var/run/postgresql -p {} -c \"SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots\"",
        fleet.ports[0]
    ));
    assert_eq!(slots.trim(), "r1,r2");
    psql(&fleet, 0, "INSERT INTO orders VALUES (8)").unwrap();
    for index in [1, 2] {
        wait_for_row(&fleet, index, 7);
        wait_for_row(&fleet, index, 8);
    }
    let converged = pgfleet(&fleet, &["plan", "--detailed-exitcode"]);
    assert_eq!(converged.status.code(), Some(0), "plan is empty:\n{}", text(&converged.stdout));

    // A replica that leaves is removed the way it ran (pg_ctl), not by the
    // primary's runtime, which pgfleet does not drive.
    let without_r2: String = config(&fleet, "external", Some("pg_ctl"))
        .lines()
        .filter(|line| !line.contains("name: r2"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(fleet.dir().join("pgfleet.yaml"), without_r2).unwrap();
    let output = pgfleet(&fleet, &["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "apply:\n{}\n{}", text(&output.stdout), text(&output.stderr));
    assert!(!fleet.data_dir("r2").exists(), "r2's data directory is gone");
    let slots = as_postgres(&format!(
        "psql -X -A -t -h /var/run/postgresql -p {} -c \"SELECT string_agg(slot_name, ',') FROM pg_replication_slots\"",
        fleet.ports[0]
    ));
    assert_eq!(slots.trim(), "r1");
    let converged = pgfleet(&fleet, &["plan", "--detailed-exitcode"]);
    assert_eq!(converged.status.code(), Some(0), "plan is empty:\n{}", text(&converged.stdout));
}

/// The production layout of the runbook: PostgreSQL in a container named
/// by the convention, its data in a bind mount, started by hand (here with
/// this machine's image), already holding the application's data.
fn container_primary_with_data(fleet: &Fleet, container: &str) {
    let data_dir = fleet.data_dir("primary");
    let user = format!("{}:{}", as_postgres("id -u").trim(), as_postgres("id -g").trim());
    let mount = format!("{0}:{0}", fleet.dir().display());
    let docker = |args: &[&str]| {
        let output = Command::new("docker").args(args).output().unwrap();
        assert!(output.status.success(), "docker {args:?}: {}", text(&output.stderr));
    };
    docker(
        &["run", "--rm", "--network", "none", "--user", &user, "-v", &mount, support::docker::IMAGE, "initdb", "-D"]
            .into_iter()
            .chain([data_dir.to_str().unwrap(), "--auth-local=peer", "--auth-host=scram-sha-256", "-U", "postgres"])
            .collect::<Vec<_>>(),
    );
    as_postgres(&format!(
        "printf \"listen_addresses = '{}'\\nport = {}\\n\" >> {}/postgresql.conf",
        fleet.addresses[0],
        fleet.ports[0],
        data_dir.display()
    ));
    let data_mount = format!("{0}:{0}", data_dir.display());
    docker(&[
        "run",
        "-d",
        "--name",
        container,
        "--restart",
        "unless-stopped",
        "--stop-signal",
        "SIGINT",
        "--network",
        "host",
        "--user",
        &user,
        "-v",
        &data_mount,
        support::docker::IMAGE,
        "postgres",
        "-D",
        data_dir.to_str().unwrap(),
    ]);
    let admin = |sql: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let output = Command::new("docker")
                .args(["exec", "-u", "postgres", container, "psql", "-X", "-q", "-h", "/var/run/postgresql", "-p"])
                .arg(fleet.ports[0].to_string())
                .args(["-c", sql])
                .output()
                .unwrap();
            if output.status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "{sql}: {}", text(&output.stderr));
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    admin(&format!("CREATE ROLE odoo LOGIN PASSWORD '{ODOO_PASSWORD}'"));
    admin("CREATE DATABASE shop OWNER odoo");
    psql(fleet, 0, "CREATE TABLE orders (id bigint); INSERT INTO orders VALUES (1)").unwrap();
}

#[test]
fn a_primary_in_a_container_is_adopted_and_gains_replicas_and_poolers_in_containers() {
    support::docker::ensure();
    let fleet = Fleet::ssh();
    // Container names are per environment: a test of its own.
    let id = format!("d{}", fleet.ports[0]);
    let names: Vec<String> = [
        format!("postgres-primary-{id}"),
        format!("postgres-replica-{id}-r1"),
        format!("postgres-replica-{id}-r2"),
        format!("pgbouncer-{id}"),
        format!("pgbouncer-replica-{id}-r1"),
        format!("pgbouncer-replica-{id}-r2"),
    ]
    .into();
    let _containers = support::docker::Containers(names.clone());
    container_primary_with_data(&fleet, &names[0]);
    let conf = fleet.data_dir("primary").join("postgresql.conf");
    let hba = fleet.data_dir("primary").join("pg_hba.conf");
    let (conf_before, hba_before) = (std::fs::read_to_string(&conf).unwrap(), std::fs::read_to_string(&hba).unwrap());
    let environment = Environment {
        id: &id,
        runtime: "docker",
        replica_runtime: None,
        image: Some(support::docker::IMAGE),
        poolers: true,
    };
    std::fs::write(fleet.dir().join("pgfleet.yaml"), environment.config(&fleet)).unwrap();

    let plan = plan_json(&fleet);
    let planned = changes(&plan);
    assert!(!planned.contains_key(&format!("{id}.database.shop")), "{plan:#}");
    assert!(!planned.contains_key(&format!("{id}.role.odoo")), "{plan:#}");
    assert!(
        planned.values().all(|(_, steps)| !steps.iter().any(|step| step == "init_cluster" || step == "restart")),
        "{plan:#}"
    );
    for wanted in ["hba.replication", "role.replicator", "slot.r1", "replica.r1", "replica.r2", "pooler.primary"] {
        assert!(planned.contains_key(&format!("{id}.{wanted}")), "{wanted}: {plan:#}");
    }
    let output = pgfleet(&fleet, &["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "apply:\n{}\n{}", text(&output.stdout), text(&output.stderr));

    // Rows from before adoption and after, through the poolers.
    let pooler = |index: usize, port: u16, sql: &str| {
        fleet.psql(fleet.addresses[index], port, "odoo", ODOO_PASSWORD, "shop", sql)
    };
    pooler(0, fleet.pooler_port, "INSERT INTO orders VALUES (2)").unwrap();
    for index in [1, 2] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while pooler(index, fleet.replica_pooler_port, "SELECT count(*) FROM orders WHERE id IN (1, 2)").ok().as_deref()
            != Some("2")
        {
            assert!(Instant::now() < deadline, "replica {index} never showed both rows");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let converged = pgfleet(&fleet, &["plan", "--detailed-exitcode"]);
    assert_eq!(converged.status.code(), Some(0), "plan is empty:\n{}", text(&converged.stdout));

    // Everything runs in containers named by the convention, which come
    // back after a reboot of the daemon's host.
    for name in &names[1..] {
        assert_eq!(support::docker::inspect(name, "{{.State.Running}}"), "true", "{name}");
        assert_eq!(support::docker::inspect(name, "{{.HostConfig.RestartPolicy.Name}}"), "unless-stopped", "{name}");
    }
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), conf_before, "postgresql.conf is the operator's");
    assert_eq!(without_pgfleet_block(&std::fs::read_to_string(&hba).unwrap()), hba_before);
}

#[test]
fn pgfleet_creates_a_primary_in_a_container_that_restarts_with_the_daemon() {
    support::docker::ensure();
    let fleet = Fleet::ssh();
    let id = format!("d{}", fleet.ports[0]);
    let _containers = support::docker::Containers(vec![format!("postgres-primary-{id}")]);
    let environment = Environment {
        id: &id,
        runtime: "docker",
        replica_runtime: None,
        image: Some(support::docker::IMAGE),
        poolers: false,
    };
    let yaml = environment.config(&fleet);
    let yaml = &yaml[..yaml.find("    replicas:").unwrap()];
    std::fs::write(fleet.dir().join("pgfleet.yaml"), yaml).unwrap();
    let output = pgfleet(&fleet, &["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "apply:\n{}\n{}", text(&output.stdout), text(&output.stderr));
    psql(&fleet, 0, "CREATE TABLE orders (id bigint); INSERT INTO orders VALUES (5)").unwrap();
    let container = format!("postgres-primary-{id}");
    assert_eq!(support::docker::inspect(&container, "{{.HostConfig.RestartPolicy.Name}}"), "unless-stopped");
    // Stopped behind pgfleet's back: the plan starts it again, and the row is there.
    assert!(Command::new("docker").args(["stop", &container]).output().unwrap().status.success());
    let output = pgfleet(&fleet, &["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "apply:\n{}\n{}", text(&output.stdout), text(&output.stderr));
    assert_eq!(psql(&fleet, 0, "SELECT count(*) FROM orders WHERE id = 5").unwrap(), "1");
    let converged = pgfleet(&fleet, &["plan", "--detailed-exitcode"]);
    assert_eq!(converged.status.code(), Some(0), "plan is empty:\n{}", text(&converged.stdout));
}
