//! Streaming replicas: create from a base backup, rebuild when the data
//! directory holds something else, reconfigure, and remove those pgfleet
//! created that left the configuration.

use super::cluster::plan_settings;
use super::{ChangeKind, DriftClass, Planner, Presence, Refusal, password_rotates, presence};
use crate::action::Action;
use crate::address::{Address, Kind};
use crate::desired;
use crate::spec::Connect;
use crate::topology::{Environment, Replica};

/// Configure and start a replica whose data directory is in place.
fn start_standby(member: &str) -> Vec<Action> {
    let member = member.to_owned();
    vec![
        Action::WriteStandbyConfig { member: member.clone() },
        Action::Start { member: member.clone() },
        Action::WaitStreaming { member },
    ]
}

/// Build a replica from nothing.
fn build(replica: &Replica) -> Vec<Action> {
    std::iter::once(Action::BaseBackup { member: replica.name.clone(), slot: replica.slot.clone() })
        .chain(start_standby(&replica.name))
        .collect()
}

pub(super) fn plan(planner: &mut Planner<'_>, environment: &Environment, primary: Presence<'_>) {
    let primary_identifier = planner
        .observed
        .data_dir(&environment.primary.host, &environment.primary.data_dir)
        .and_then(|directory| directory.system_identifier.clone());
    let primary_probe = match primary {
        Presence::Running(probe) if !probe.in_recovery => Some(probe),
        _ => None,
    };
    let primary_locale =
        primary_probe.and_then(|probe| probe.settings.get("lc_collate")).map(|setting| setting.value.clone());
    for replica in &environment.replicas {
        let slot_lost = primary_probe.is_some_and(|probe| {
            probe.slots.iter().any(|slot| slot.name == replica.slot && slot.wal_status.as_deref() == Some("lost"))
        });
        let primary = PrimaryView {
            identifier: primary_identifier.as_deref(),
            locale: primary_locale.as_deref(),
            slot_lost,
            timeline: primary_probe.map(|probe| probe.timeline),
            writable: primary_probe.is_some(),
        };
        plan_replica(planner, environment, replica, primary);
    }
    remove_departed(planner, environment);
}

/// What a replica's plan needs to know of its primary.
struct PrimaryView<'a> {
    identifier: Option<&'a str>,
    locale: Option<&'a str>,
    /// The replica's slot lost WAL it needs: it can only be rebuilt.
    slot_lost: bool,
    /// The primary's timeline, when it runs as a primary.
    timeline: Option<u32>,
    /// It runs and accepts writes.
    writable: bool,
}

/// Stop, remove and build a replica again.
pub(super) fn rebuild_actions(replica: &Replica) -> Vec<Action> {
    let member = replica.name.clone();
    let mut actions = vec![Action::Stop { member: member.clone() }, Action::RemoveDataDir { member, and_home: false }];
    actions.extend(build(replica));
    actions
}

fn replace(planner: &mut Planner<'_>, address: Address, why: String, actions: Vec<Action>) {
    planner.change(DriftClass::Topology, address, ChangeKind::Replace, why, None, actions);
    if let Some(change) = planner.changes.last_mut() {
        change.disruption = crate::action::Disruption::Rebuild;
        change.rpo = Some("none on the primary; this replica serves no reads until it streams again".into());
    }
}

fn plan_replica(planner: &mut Planner<'_>, environment: &Environment, replica: &Replica, primary: PrimaryView<'_>) {
    let PrimaryView { identifier: primary_identifier, locale: primary_locale, slot_lost, timeline, writable } = primary;
    let Some(facts) = planner.observed.host_facts(&replica.host) else { return };
    let wanted = environment.primary.version;
    match facts.pg_major {
        Some(found) if found != wanted => {
            return planner.refuse(Refusal::MajorMismatch {
                replica: replica.name.clone(),
                host: replica.host.clone(),
                found,
                wanted,
            });
        }
        None => {
            let looked_in = crate::placement::replica(environment, replica).layout.bin_dir.display().to_string();
            return planner.refuse(Refusal::MissingBinaries { host: replica.host.clone(), wanted, looked_in });
        }
        Some(_) => {}
    }
    if let Some(locale) = primary_locale
        && !matches!(locale, "C" | "POSIX")
        && !facts.has_locale(locale)
    {
        return planner.refuse(Refusal::MissingLocale {
            replica: replica.name.clone(),
            host: replica.host.clone(),
            locale: locale.to_owned(),
        });
    }

    // Hosts are one machine when they report the same machine id, whatever
    // their addresses: only then does a primary on loopback reach a replica.
    let primary_address = &environment.primary.address;
    if replica.connect == Connect::Direct
        && crate::desired::is_loopback(primary_address)
        && !same_machine(planner, &environment.primary.host, &replica.host)
    {
        return planner.refuse(Refusal::LoopbackPrimary {
            replica: replica.name.clone(),
            replica_host: replica.host.clone(),
            primary_host: environment.primary.host.clone(),
            address: primary_address.clone(),
        });
    }

    let address = Address::new(&environment.id, Kind::Replica, &replica.name);
    let owned = planner.state.owns(&address);
    let directory = facts.data_dir(&replica.data_dir).cloned().unwrap_or_default();

    // A replica promoted outside pgfleet may hold writes its primary lacks:
    // rebuilding it (or anything else) would guess which data to keep.
    let promoted = match planner.observed.cluster(&address.to_string()) {
        Some(crate::observe::ClusterObservation::Running { probe }) if !probe.in_recovery => {
            Some(format!("it runs as a primary on timeline {}", probe.timeline))
        }
        _ => timeline
            .zip(directory.timeline)
            .filter(|(primary, found)| found > primary && !directory.standby_signal)
            .map(|(primary, found)| format!("its data is on timeline {found}, past the primary's {primary}")),
    };
    if let Some(seen) = promoted {
        return planner.refuse(Refusal::PromotedOutsidePgfleet {
            replica: address.to_string(),
            host: replica.host.clone(),
            seen,
            primary_writable: writable,
        });
    }
    let path = replica.data_dir.display().to_string();
    let rebuild = |why: String| -> Result<(String, Vec<Action>), Refusal> {
        if !owned {
            return Err(Refusal::ForeignDataDir {
                replica: replica.name.clone(),
                host: replica.host.clone(),
                path: path.clone(),
                why: why.clone(),
            });
        }
        Ok((why, rebuild_actions(replica)))
    };

    if directory.initialised_major.is_none() {
        if directory.exists && !directory.empty {
            match rebuild(format!("{path} is not empty but holds no cluster")) {
                Ok((why, actions)) => {
                    planner.change(DriftClass::Topology, address, ChangeKind::Replace, why, None, actions)
                }
                Err(_) => planner.refuse(Refusal::DataDirNotEmpty { host: replica.host.clone(), path }),
            }
            return;
        }
        planner.change(
            DriftClass::Topology,
            address,
            ChangeKind::Create,
            format!("no replica in {path} on host `{}`", replica.host),
            None,
            build(replica),
        );
        return;
    }

    let mismatch = match (primary_identifier, directory.system_identifier.as_deref()) {
        (Some(primary), Some(found)) if primary != found => {
            Some(format!("system identifier {found} is not the primary's {primary}"))
        }
        _ if !directory.standby_signal => Some("the data directory is not a standby (no standby.signal)".to_owned()),
        _ => None,
    };
    if let Some(why) = mismatch {
        match rebuild(why) {
            Ok((why, actions)) => replace(planner, address, why, actions),
            Err(refusal) => planner.refuse(refusal),
        }
        return;
    }
    // A standby of this very primary may be rebuilt whoever made it: its
    // data is the primary's.
    if slot_lost {
        let why = format!("its slot {} lost WAL the replica still needs", replica.slot);
        return replace(planner, address, why, rebuild_actions(replica));
    }

    match presence(planner.observed, &replica.host, &replica.data_dir, &address.to_string()) {
        Presence::Absent | Presence::Stopped => planner.change(
            DriftClass::Topology,
            address,
            ChangeKind::Update,
            "the replica is not running",
            None,
            start_standby(&replica.name),
        ),
        Presence::Unknown => planner.warn(Some(address), "the replica runs but pgfleet could not log in to compare it"),
        Presence::Running(probe) => {
            let settings = desired::replica_settings(environment, replica);
            plan_settings(planner, address.clone(), &replica.name, &settings, probe);
            // The passfile carries the replication password: when that
            // changes in this plan, the passfile follows (the running
            // receiver uses it at its next connection).
            let rotates = password_rotates(planner.observed, environment, &environment.replication.user);
            let stale = planner.observed.passfiles.get(&address.to_string()) == Some(&false);
            if rotates || stale {
                let reason = if rotates {
                    "the replication password changes, so the passfile follows"
                } else {
                    "the passfile does not hold the configured replication password"
                };
                match planner
                    .changes
                    .iter_mut()
                    .find(|change| change.address == address && change.action != ChangeKind::NoOp)
                {
                    Some(change) => {
                        change.actions.insert(0, Action::WriteStandbyConfig { member: replica.name.clone() })
                    }
                    None => {
                        planner.changes.retain(|change| change.address != address);
                        let actions = vec![Action::WriteStandbyConfig { member: replica.name.clone() }];
                        planner.change(DriftClass::Config, address, ChangeKind::Update, reason, None, actions);
                    }
                }
            }
        }
    }
}

/// Whether two hosts are one machine: by the machine ids observed, or, when
/// a host did not report one, by their configured addresses.
fn same_machine(planner: &Planner<'_>, first: &str, second: &str) -> bool {
    let observed = |host: &str| planner.observed.host_facts(host).and_then(|facts| facts.machine_id.clone());
    match (observed(first), observed(second)) {
        (Some(first), Some(second)) => first == second,
        _ => {
            let machine = |host: &str| planner.topology.hosts.get(host).map(|host| host.machine().to_owned());
            machine(first) == machine(second)
        }
    }
}

/// Replicas pgfleet created that are no longer in the configuration.
fn remove_departed(planner: &mut Planner<'_>, environment: &Environment) {
    let configured = |name: &str| environment.replicas.iter().any(|replica| replica.name == name);
    for address in planner.departed(environment, Kind::Replica, configured) {
        let member = address.name.clone();
        planner.change(
            DriftClass::Topology,
            address,
            ChangeKind::Delete,
            "removed from the configuration",
            None,
            vec![Action::Stop { member: member.clone() }, Action::RemoveDataDir { member, and_home: true }],
        );
        if let Some(change) = planner.changes.last_mut() {
            change.rpo = Some("the replica's data directory is deleted; the primary keeps all data".into());
        }
    }
}

/// Rebuilds the replicas the operator named with `--replace`, unless one
/// streams within its `rebuild_skip_if_healthy` thresholds and `force` is
/// off; returns what was decided, for the operator.
pub(super) fn replace_requested(planner: &mut Planner<'_>, requested: &[Address], force: bool) -> Vec<String> {
    let mut notes = Vec::new();
    for address in requested {
        let found = planner
            .topology
            .environment(&address.environment)
            .and_then(|environment| Some((environment, environment.replicas.iter().find(|r| r.name == address.name)?)))
            .filter(|_| address.kind == Kind::Replica);
        let Some((environment, replica)) = found else {
            planner.refuse(Refusal::NotReplaceable { address: address.to_string() });
            continue;
        };
        let health = crate::health::assess_replica(environment, replica, planner.observed, "");
        if !force && health.streams_within(&environment.health.rebuild_skip_if_healthy) {
            notes.push(format!(
                "{address} is streaming within its rebuild_skip_if_healthy thresholds: not rebuilt (use --force)"
            ));
            continue;
        }
        planner.changes.retain(|change| &change.address != address);
        replace(planner, address.clone(), "--replace".into(), rebuild_actions(replica));
    }
    notes
}
