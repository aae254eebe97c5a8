//! Plan renderer snapshots from fixtures: `tests/fixtures/plan/desired.yaml`
//! plus one `CASE.observed.json` (and optional `CASE.state.json`) per case,
//! covering every resource kind and action. The observations are written by
//! `fixtures_are_current` from a converged system and one mutation per case
//! (`PGFLEET_WRITE_FIXTURES=1 cargo test --test plan_fixtures`), and a test
//! fails while a committed fixture is stale.

// Tests may unwrap and print: a failure is the report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pgfleet::address::Address;
use pgfleet::config::load;
use pgfleet::desired;
use pgfleet::observe::cluster::{ClusterProbe, DatabaseRow, HbaRule, RoleRow, SenderRow, Setting, SlotRow};
use pgfleet::observe::host::{DataDirFacts, HostFacts, PoolerFacts};
use pgfleet::observe::{ClusterObservation, HostObservation, Observed};
use pgfleet::placement;
use pgfleet::plan::{self, render};
use pgfleet::state::{Owned, State};
use pgfleet::topology::Topology;

const DIR: &str = "tests/fixtures/plan";
const PRIMARY_ID: &str = "7300000000000000001";

fn topology() -> Topology {
    let text = std::fs::read_to_string(Path::new(DIR).join("desired.yaml")).unwrap();
    load::parse("desired.yaml", text).unwrap().resolve_in(Path::new("/")).unwrap()
}

fn context(name: &str) -> &'static str {
    match name {
        "shared_buffers"
        | "max_connections"
        | "listen_addresses"
        | "port"
        | "wal_level"
        | "max_wal_senders"
        | "max_replication_slots"
        | "hot_standby"
        | "unix_socket_directories" => "postmaster",
        "work_mem" | "maintenance_work_mem" | "effective_cache_size" | "random_page_cost" => "user",
        _ => "sighup",
    }
}

fn settings(desired: &BTreeMap<String, String>) -> BTreeMap<String, Setting> {
    desired
        .iter()
        .map(|(name, value)| {
            let setting = Setting {
                value: value.clone(),
                unit: None,
                context: context(name).into(),
                source: "configuration file".into(),
                pending_restart: false,
            };
            (name.clone(), setting)
        })
        .chain([(
            "lc_collate".to_owned(),
            Setting {
                value: "en_US.UTF-8".into(),
                unit: None,
                context: "internal".into(),
                source: "default".into(),
                pending_restart: false,
            },
        )])
        .collect()
}

fn hba_rule(line: &desired::HbaLine, number: i32) -> HbaRule {
    let (address, _) = line.address.split_once('/').unwrap();
    HbaRule {
        line: number,
        kind: Some(line.kind.clone()),
        databases: Some(vec![line.database.clone()]),
        users: Some(vec![line.user.clone()]),
        address: Some(address.into()),
        netmask: Some("255.255.255.255".into()),
        method: Some(line.method.clone()),
        error: None,
    }
}

/// What a converged system looks like to observe.
fn converged(topology: &Topology) -> Observed {
    let mut observed = Observed::default();
    let mut facts: BTreeMap<String, HostFacts> = BTreeMap::new();
    for name in topology.hosts.keys() {
        facts.insert(
            name.clone(),
            HostFacts {
                pg_bin_dir: Some("/usr/lib/postgresql/15/bin".into()),
                pg_major: Some(15),
                locales: vec!["C".into(), "C.utf8".into(), "en_US.utf8".into()],
                pgbouncer: Some("/usr/sbin/pgbouncer".into()),
                rsync: Some("/usr/bin/rsync".into()),
                ..HostFacts::default()
            },
        );
    }
    for environment in &topology.environments {
        let primary = &environment.primary;
        let block: Vec<String> =
            desired::hba_lines(environment, &topology.hosts, None, None).iter().map(|line| line.to_string()).collect();
        let directory = |standby: bool| DataDirFacts {
            hba_block: Some(block.clone()),
            exists: true,
            empty: false,
            initialised_major: Some(15),
            system_identifier: Some(PRIMARY_ID.into()),
            timeline: Some(1),
            cluster_state: Some(if standby { "in archive recovery" } else { "in production" }.into()),
            standby_signal: standby,
            running: true,
            free_bytes: Some(50 << 30),
        };
        facts.get_mut(&primary.host).unwrap().data_dirs.insert(primary.data_dir.clone(), directory(false));
        let hba: Vec<HbaRule> = desired::hba_lines(environment, &topology.hosts, None, None)
            .iter()
            .enumerate()
            .map(|(at, line)| hba_rule(line, at as i32 + 2))
            .collect();
        let probe = ClusterProbe {
            session_source: None,
            in_recovery: false,
            system_identifier: PRIMARY_ID.into(),
            timeline: 1,
            lsn: Some("0/3000148".into()),
            settings: settings(&desired::primary_settings(environment)),
            roles: vec![
                RoleRow {
                    name: "postgres".into(),
                    login: true,
                    replication: true,
                    superuser: true,
                    password_current: None,
                },
                RoleRow {
                    name: environment.database.owner.clone(),
                    login: true,
                    replication: false,
                    superuser: false,
                    password_current: Some(true),
                },
                RoleRow {
                    name: environment.replication.user.clone(),
                    login: true,
                    replication: true,
                    superuser: false,
                    password_current: Some(true),
                },
            ],
            databases: vec![
                DatabaseRow { name: environment.database.name.clone(), owner: environment.database.owner.clone() },
                DatabaseRow { name: "postgres".into(), owner: "postgres".into() },
            ],
            hba_rules: hba.clone(),
            slots: environment
                .replicas
                .iter()
                .map(|replica| SlotRow {
                    name: replica.slot.clone(),
                    kind: "physical".into(),
                    active: true,
                    wal_status: Some("reserved".into()),
                    restart_lsn: Some("0/3000148".into()),
                    retained_bytes: Some(0),
                })
                .collect(),
            senders: environment
                .replicas
                .iter()
                .map(|replica| SenderRow {
                    application_name: replica.name.clone(),
                    client_address: Some("127.0.0.1".into()),
                    state: Some("streaming".into()),
                    sent_lsn: Some("0/3000148".into()),
                    flush_lsn: Some("0/3000148".into()),
                    replay_lsn: Some("0/3000148".into()),
                    lag_bytes: Some(0),
                    write_lag_seconds: None,
                    replay_lag_seconds: None,
                })
                .collect(),
            receiver: None,
            standby: None,
            connections: 3,
        };
        observed.clusters.insert(
            format!("{}.cluster.primary", environment.id),
            ClusterObservation::Running { probe: Box::new(probe.clone()) },
        );
        for replica in &environment.replicas {
            facts.get_mut(&replica.host).unwrap().data_dirs.insert(replica.data_dir.clone(), directory(true));
            let standby = ClusterProbe {
                in_recovery: true,
                settings: settings(&desired::replica_settings(environment, replica)),
                slots: Vec::new(),
                senders: Vec::new(),
                ..probe.clone()
            };
            observed.clusters.insert(
                format!("{}.replica.{}", environment.id, replica.name),
                ClusterObservation::Running { probe: Box::new(standby) },
            );
        }
        if let Some(pooler) = &environment.pooler {
            for place in placement::poolers(environment) {
                facts.get_mut(&place.host).unwrap().poolers.insert(
                    place.layout.ini.clone(),
                    PoolerFacts {
                        ini: Some(desired::pgbouncer_ini(environment, pooler, &place)),
                        running: true,
                        source: None,
                    },
                );
            }
        }
    }
    observed.hosts = facts.into_iter().map(|(name, facts)| (name, HostObservation::Reachable { facts })).collect();
    observed
}

fn probe_mut<'a>(observed: &'a mut Observed, address: &str) -> &'a mut ClusterProbe {
    match observed.clusters.get_mut(address) {
        Some(ClusterObservation::Running { probe }) => probe,
        _ => panic!("{address} is not running"),
    }
}

fn facts_mut<'a>(observed: &'a mut Observed, host: &str) -> &'a mut HostFacts {
    match observed.hosts.get_mut(host) {
        Some(HostObservation::Reachable { facts }) => facts,
        _ => panic!("{host} unreachable"),
    }
}

fn owning(addresses: &[(&str, &str, &str)]) -> State {
    State {
        format_version: 1,
        lineage: "00000000-fixture".into(),
        serial: 7,
        owned: addresses
            .iter()
            .map(|(address, host, path)| (address.parse::<Address>().unwrap(), Owned::at(host, PathBuf::from(path))))
            .collect(),
        last_applied_spec: None,
        journal: Vec::new(),
        environment_serials: Default::default(),
        ..State::default()
    }
}

type Mutation = fn(&Topology, &mut Observed) -> Option<State>;

/// (case, what it changes in a converged observation, the state to plan with)
fn cases() -> Vec<(&'static str, Mutation)> {
    vec![
        ("converged", |_, _| None),
        ("empty-hosts", |topology, observed| {
            *observed = Observed {
                hosts: converged(topology)
                    .hosts
                    .into_iter()
                    .map(|(name, observation)| match observation {
                        HostObservation::Reachable { mut facts } => {
                            facts.data_dirs.clear();
                            facts.poolers.clear();
                            (name, HostObservation::Reachable { facts })
                        }
                        other => (name, other),
                    })
                    .collect(),
                clusters: BTreeMap::new(),
                poolers: BTreeMap::new(),
                userlists: BTreeMap::new(),
                passfiles: BTreeMap::new(),
                tunnels: BTreeMap::new(),
                filestores: BTreeMap::new(),
                odoo: BTreeMap::new(),
            };
            None
        }),
        ("settings-reload", |_, observed| {
            let probe = probe_mut(observed, "prod.cluster.primary");
            let work_mem = probe.settings.get_mut("work_mem").unwrap();
            work_mem.value = "4096".into();
            work_mem.unit = Some("kB".into());
            None
        }),
        ("settings-restart", |_, observed| {
            let probe = probe_mut(observed, "prod.cluster.primary");
            probe.settings.get_mut("shared_buffers").unwrap().value = "16384".into();
            probe.settings.get_mut("shared_buffers").unwrap().unit = Some("8kB".into());
            let standby = probe_mut(observed, "prod.replica.reporting");
            standby.settings.get_mut("hot_standby_feedback").unwrap().value = "off".into();
            None
        }),
        ("pending-restart", |_, observed| {
            probe_mut(observed, "prod.cluster.primary").settings.get_mut("max_connections").unwrap().pending_restart =
                true;
            None
        }),
        ("raise-max-connections", |_, observed| {
            for address in ["prod.cluster.primary", "prod.replica.reporting", "prod.replica.dr"] {
                probe_mut(observed, address).settings.get_mut("max_connections").unwrap().value = "50".into();
            }
            None
        }),
        ("lower-max-connections", |_, observed| {
            for address in ["prod.cluster.primary", "prod.replica.reporting", "prod.replica.dr"] {
                probe_mut(observed, address).settings.get_mut("max_connections").unwrap().value = "200".into();
            }
            None
        }),
        ("hba-block-edited", |topology, observed| {
            let primary = &topology.environments[0].primary;
            let directory = facts_mut(observed, "db1").data_dirs.get_mut(&primary.data_dir).unwrap();
            directory
                .hba_block
                .as_mut()
                .unwrap()
                .push("host    replication  replicator   10.0.0.99/32       trust".into());
            None
        }),
        ("passwords-rotated", |_, observed| {
            let probe = probe_mut(observed, "prod.cluster.primary");
            for role in probe.roles.iter_mut().filter(|role| role.name != "postgres") {
                role.password_current = Some(false);
            }
            None
        }),
        ("passfile-stale", |_, observed| {
            observed.passfiles.insert("prod.replica.dr".into(), false);
            observed.passfiles.insert("prod.replica.reporting".into(), true);
            None
        }),
        ("userlist-stale", |_, observed| {
            observed.userlists.insert("prod.pooler.reporting".into(), false);
            observed.userlists.insert("prod.pooler.primary".into(), true);
            None
        }),
        ("hba-and-roles", |_, observed| {
            let probe = probe_mut(observed, "prod.cluster.primary");
            probe.hba_rules.retain(|rule| rule.databases.as_deref() != Some(&["replication".to_owned()][..]));
            probe.roles.retain(|role| role.name != "odoo");
            probe.roles.iter_mut().filter(|role| role.name == "replicator").for_each(|role| role.replication = false);
            probe.databases[0].owner = "postgres".into();
            None
        }),
        ("slots", |topology, observed| {
            let probe = probe_mut(observed, "prod.cluster.primary");
            probe.slots.retain(|slot| slot.name != "reporting");
            probe.slots.iter_mut().for_each(|slot| slot.wal_status = Some("lost".into()));
            for (name, active) in [("old_replica", false), ("someone_elses", false)] {
                probe.slots.push(SlotRow {
                    name: name.into(),
                    kind: "physical".into(),
                    active,
                    wal_status: Some("extended".into()),
                    restart_lsn: Some("0/1000000".into()),
                    retained_bytes: Some(3 << 30),
                });
            }
            let _ = topology;
            Some(owning(&[("prod.slot.old_replica", "db1", "")]))
        }),
        ("replica-rebuilt-and-stopped", |topology, observed| {
            let environment = &topology.environments[0];
            let facts = facts_mut(observed, "db2");
            facts.data_dirs.get_mut(&environment.replicas[0].data_dir).unwrap().system_identifier =
                Some("7399999999999999999".into());
            let facts = facts_mut(observed, "db3");
            facts.data_dirs.get_mut(&environment.replicas[1].data_dir).unwrap().running = false;
            observed.clusters.insert("prod.replica.dr".into(), ClusterObservation::Stopped);
            Some(owning(&[("prod.replica.reporting", "db2", "/srv/pg/reporting")]))
        }),
        ("replica-foreign-cluster", |topology, observed| {
            let environment = &topology.environments[0];
            let facts = facts_mut(observed, "db2");
            facts.data_dirs.get_mut(&environment.replicas[0].data_dir).unwrap().standby_signal = false;
            None
        }),
        ("replica-departed", |_, _| {
            Some(owning(&[
                ("prod.replica.old", "db3", "/srv/pg/old"),
                ("prod.pooler.old", "db3", "/srv/pg/old.pgfleet/pgbouncer-6433.ini"),
            ]))
        }),
        ("poolers", |topology, observed| {
            let environment = &topology.environments[0];
            let ini = |fronts: &str| placement::pooler(environment, fronts).unwrap().layout.ini;
            let edit = |observed: &mut Observed, host: &str, ini: PathBuf, from: &str, to: &str, running: bool| {
                let entry = facts_mut(observed, host).poolers.get_mut(&ini).unwrap();
                entry.ini = entry.ini.as_ref().map(|text| text.replace(from, to));
                entry.running = running;
            };
            edit(observed, "db1", ini("primary"), "default_pool_size = 40", "default_pool_size = 25", true);
            edit(observed, "db2", ini("reporting"), "listen_port = 6433", "listen_port = 6435", true);
            edit(observed, "db3", ini("dr"), "", "", false);
            None
        }),
        ("refusals", |topology, observed| {
            let environment = &topology.environments[0];
            facts_mut(observed, "db2").pg_major = Some(16);
            facts_mut(observed, "db3").locales = vec!["C".into(), "C.utf8".into()];
            let facts = facts_mut(observed, "db3");
            let directory = facts.data_dirs.get_mut(&environment.replicas[1].data_dir).unwrap();
            directory.system_identifier = Some("7388888888888888888".into());
            None
        }),
        ("unreachable-replica-host", |_, observed| {
            observed.hosts.insert(
                "db3".into(),
                HostObservation::Unreachable {
                    reason: "cannot connect to host `db3` at 192.0.2.13:22: Connection refused (os error 111)".into(),
                    help: Some("check that sshd runs on the host and listens on 192.0.2.13:22".into()),
                },
            );
            observed.clusters.remove("prod.replica.dr");
            None
        }),
    ]
}

fn observed_path(case: &str) -> PathBuf {
    Path::new(DIR).join(format!("{case}.observed.json"))
}

fn state_path(case: &str) -> PathBuf {
    Path::new(DIR).join(format!("{case}.state.json"))
}

#[test]
fn fixtures_are_current() {
    let topology = topology();
    let write = std::env::var_os("PGFLEET_WRITE_FIXTURES").is_some();
    for (case, mutate) in cases() {
        let mut observed = converged(&topology);
        let state = mutate(&topology, &mut observed);
        let observed_json = serde_json::to_string_pretty(&observed).unwrap() + "\n";
        let state_json = state.map(|state| serde_json::to_string_pretty(&state).unwrap() + "\n");
        if write {
            std::fs::write(observed_path(case), &observed_json).unwrap();
            match &state_json {
                Some(json) => std::fs::write(state_path(case), json).unwrap(),
                None => {
                    let _ = std::fs::remove_file(state_path(case));
                }
            }
            continue;
        }
        let committed = std::fs::read_to_string(observed_path(case)).unwrap_or_default();
        assert!(
            committed == observed_json,
            "{case}: stale fixture; run PGFLEET_WRITE_FIXTURES=1 cargo test --test plan_fixtures"
        );
        assert_eq!(std::fs::read_to_string(state_path(case)).ok(), state_json, "{case}: stale state fixture");
    }
}

fn load_case(case: &str) -> (Observed, State) {
    let observed = serde_json::from_str(&std::fs::read_to_string(observed_path(case)).unwrap()).unwrap();
    let state = match std::fs::read_to_string(state_path(case)) {
        Ok(text) => serde_json::from_str(&text).unwrap(),
        Err(_) => State::default(),
    };
    (observed, state)
}

#[test]
fn plan_text_snapshots() {
    let topology = topology();
    for (case, _) in cases() {
        let (observed, state) = load_case(case);
        let rendered = match plan::plan(&topology, &observed, &state) {
            Ok(plan) => render::text(&plan, false).replace(&plan.fingerprint, "<fingerprint>"),
            Err(error) => format!("refused: {error}\n"),
        };
        insta::assert_snapshot!(case, rendered);
    }
}

#[test]
fn plan_json_and_markdown_snapshots() {
    let topology = topology();
    for case in ["settings-restart", "replica-rebuilt-and-stopped"] {
        let (observed, state) = load_case(case);
        let plan = plan::plan(&topology, &observed, &state).unwrap();
        let json = render::json(&plan).replace(&plan.fingerprint, "<fingerprint>");
        insta::assert_snapshot!(format!("{case}.json"), json);
        insta::assert_snapshot!(format!("{case}.md"), render::markdown(&plan));
    }
}

#[test]
fn converged_plans_empty_and_the_fingerprint_follows_the_observations() {
    let topology = topology();
    let (observed, state) = load_case("converged");
    let plan = plan::plan(&topology, &observed, &state).unwrap();
    assert!(plan.is_empty(), "{}", render::text(&plan, false));
    assert!(plan.resource_changes.iter().all(|change| change.actions.is_empty()));
    let (changed, _) = load_case("settings-reload");
    assert_ne!(plan::fingerprint(&observed), plan::fingerprint(&changed));
    assert_eq!(plan::fingerprint(&observed), plan.fingerprint);
}

#[test]
fn standbys_are_raised_before_and_lowered_after_their_primary() {
    let topology = topology();
    let order = |case: &str| -> Vec<String> {
        let (observed, state) = load_case(case);
        plan::plan(&topology, &observed, &state).unwrap().changes().map(|change| change.address.to_string()).collect()
    };
    assert_eq!(order("raise-max-connections"), ["prod.replica.dr", "prod.replica.reporting", "prod.cluster.primary"]);
    assert_eq!(order("lower-max-connections"), ["prod.cluster.primary", "prod.replica.dr", "prod.replica.reporting"]);
}

#[test]
fn target_keeps_the_resource_and_what_it_depends_on() {
    let topology = topology();
    let (observed, state) = load_case("empty-hosts");
    let request = plan::Request { targets: vec!["prod.replica.reporting".parse().unwrap()], ..Default::default() };
    let plan = plan::plan_with(&topology, &observed, &state, &request).unwrap();
    let addresses: Vec<String> = plan.resource_changes.iter().map(|change| change.address.to_string()).collect();
    assert_eq!(
        addresses,
        [
            "prod.cluster.primary",
            "prod.role.odoo",
            "prod.role.replicator",
            "prod.hba.replication",
            "prod.database.prod",
            "prod.slot.reporting",
            "prod.replica.reporting"
        ]
    );
}

#[test]
fn the_fingerprint_ignores_what_moves_by_itself() {
    let (observed, _) = load_case("converged");
    let mut moved = observed.clone();
    if let Some(ClusterObservation::Running { probe }) = moved.clusters.get_mut("prod.cluster.primary") {
        probe.lsn = Some("5/A0000000".into());
        probe.slots[0].retained_bytes = Some(123_456);
        probe.senders[0].flush_lsn = Some("5/90000000".into());
    }
    assert_eq!(plan::fingerprint(&observed), plan::fingerprint(&moved));
    if let Some(ClusterObservation::Running { probe }) = moved.clusters.get_mut("prod.cluster.primary") {
        probe.slots.remove(0);
    }
    assert_ne!(plan::fingerprint(&observed), plan::fingerprint(&moved), "a dropped slot makes the plan stale");
}
