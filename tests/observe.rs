//! Observation against real hosts: a hand-built primary behind a real sshd is
//! seen as it is; an empty host and a host whose sshd is down are values,
//! not failures.

// Tests may unwrap and print: a failure is the report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use pgfleet::config::load;
use pgfleet::observe::{ClusterObservation, HostObservation, PoolerObservation, observe};
use support::{PgServer, SshServer};

fn host_yaml(name: &str, ssh: &SshServer) -> String {
    support::host_yaml(name, ssh)
}

#[tokio::test]
async fn observe_sees_a_hand_built_primary_and_an_empty_replica_host() {
    let db1 = SshServer::start();
    let db2 = SshServer::start();
    let pg = PgServer::start(db1.address, "work_mem = '8MB'");
    let replica_dir = db2.dir().join("r1");
    let yaml = format!(
        "version: 1\nhosts:\n{}{}environments:\n  - id: prod\n    primary:\n      host: db1\n      address: {}\n      port: {}\n      data_dir: {}\n      tuning: none\n      settings: {{ work_mem: 16MB }}\n    replicas:\n      - {{ name: r1, host: db2, address: {}, data_dir: {}, connect: ssh_tunnel }}\n",
        host_yaml("db1", &db1),
        host_yaml("db2", &db2),
        pg.address,
        pg.port,
        pg.data_dir.display(),
        db2.address,
        replica_dir.display(),
    );
    let topology = load::parse("test.yaml", yaml).unwrap().resolve().unwrap();

    let observed = observe(&topology).await;

    let facts = observed.host_facts("db1").unwrap_or_else(|| panic!("db1 unreachable: {observed:?}"));
    assert_eq!(facts.pg_major, Some(15));
    let primary_dir = facts.data_dir(&pg.data_dir).unwrap();
    assert!(primary_dir.running && primary_dir.initialised_major == Some(15), "{primary_dir:?}");
    assert_eq!(primary_dir.cluster_state.as_deref(), Some("in production"));
    let ClusterObservation::Running { probe } = observed.cluster("prod.cluster.primary").unwrap() else {
        panic!("primary not probed: {observed:?}");
    };
    assert!(!probe.in_recovery);
    assert_eq!(primary_dir.system_identifier.as_deref(), Some(probe.system_identifier.as_str()));
    // The hand-set value is what the server reports, in its own unit.
    let work_mem = &probe.settings["work_mem"];
    assert_eq!((work_mem.value.as_str(), work_mem.unit.as_deref()), ("8192", Some("kB")));
    assert_eq!(probe.settings["port"].value, pg.port.to_string());
    assert!(probe.roles.iter().any(|role| role.name == "postgres" && role.superuser));
    assert!(probe.slots.is_empty());
    assert!(!probe.hba_rules.is_empty());

    let replica_facts = observed.data_dir("db2", &replica_dir).unwrap();
    assert!(!replica_facts.exists && !replica_facts.running);
    assert!(replica_facts.free_bytes.unwrap_or(0) > 0);
    assert_eq!(observed.cluster("prod.replica.r1"), Some(&ClusterObservation::Stopped));
    assert!(observed.unreachable().is_empty());
    // Observation changed nothing on the empty host.
    assert!(!replica_dir.exists());
}

#[tokio::test]
async fn a_host_whose_sshd_is_down_is_reported_unreachable_and_the_rest_observed() {
    let db1 = SshServer::start();
    let mut db2 = SshServer::start();
    let yaml = format!(
        "version: 1\nhosts:\n{}{}environments:\n  - id: a\n    primary: {{ host: db1, address: {}, data_dir: /nonexistent/a, tuning: none }}\n  - id: b\n    primary: {{ host: db2, address: {}, data_dir: /nonexistent/b, tuning: none }}\n",
        host_yaml("db1", &db1),
        host_yaml("db2", &db2),
        db1.address,
        db2.address,
    );
    let topology = load::parse("test.yaml", yaml).unwrap().resolve().unwrap();
    db2.stop();

    let observed = observe(&topology).await;

    assert!(matches!(observed.hosts["db1"], HostObservation::Reachable { .. }));
    let unreachable = observed.unreachable();
    assert_eq!(unreachable.len(), 1);
    let (host, reason, help) = unreachable[0];
    assert!(help.is_some_and(|help| help.contains("sshd")), "{help:?}");
    assert_eq!(host, "db2");
    assert!(reason.contains("db2") && reason.contains(&db2.port.to_string()), "{reason}");
    assert_eq!(observed.cluster("a.cluster.primary"), Some(&ClusterObservation::Stopped));
    assert_eq!(observed.cluster("b.cluster.primary"), None);
}

#[tokio::test]
async fn observe_reads_a_running_poolers_ini_and_admin_console() {
    let db1 = SshServer::start();
    let pg = PgServer::start(db1.address, "");
    let pooler_port = support::free_port(db1.address);
    let home = std::path::PathBuf::from(format!("{}.pgfleet", pg.data_dir.display()));
    support::as_postgres(&format!("mkdir -p {}", home.display()));
    let ini = home.join(format!("pgbouncer-{pooler_port}.ini"));
    let pidfile = home.join(format!("pgbouncer-{pooler_port}.pid"));
    let ini_text = format!(
        "[databases]\nprod = host={address} port={port} dbname=postgres\n[pgbouncer]\nlisten_addr = {address}\nlisten_port = {pooler_port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {home}/userlist.txt\nadmin_users = postgres\npidfile = {pid}\nlogfile = {home}/pgbouncer.log\n",
        address = db1.address,
        port = pg.port,
        home = home.display(),
        pid = pidfile.display(),
    );
    support::as_postgres(&format!("cat > {} <<'INI'\n{ini_text}INI", ini.display()));
    support::as_postgres(&format!("echo '\"postgres\" \"\"' > {}/userlist.txt", home.display()));
    let _bouncer = support::PgBouncer::start(&ini, &pidfile);

    let yaml = format!(
        "version: 1\nhosts:\n{}environments:\n  - id: prod\n    primary: {{ host: db1, address: {}, port: {}, data_dir: {}, tuning: none }}\n    pgbouncer: {{ pool_size: 10, port: {pooler_port} }}\n",
        host_yaml("db1", &db1),
        pg.address,
        pg.port,
        pg.data_dir.display(),
    );
    let topology = load::parse("test.yaml", yaml).unwrap().resolve().unwrap();
    let observed = observe(&topology).await;

    let facts = observed.host_facts("db1").unwrap();
    let pooler = facts.pooler(&ini).unwrap_or_else(|| panic!("{facts:?}"));
    assert!(pooler.running);
    assert_eq!(pooler.ini.as_deref(), Some(ini_text.as_str()));
    let Some(PoolerObservation::Running { admin }) = observed.poolers.get("prod.pooler.primary") else {
        panic!("admin console not read: {:?}", observed.poolers);
    };
    let prod = admin.databases.iter().find(|database| database.name == "prod").unwrap();
    assert_eq!(prod.port, Some(pg.port));
    assert!(admin.databases.iter().any(|database| database.name == "pgbouncer"));
    assert!(admin.pools.iter().any(|pool| pool.database == "pgbouncer"));
}
