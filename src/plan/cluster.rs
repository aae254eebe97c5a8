//! The primary cluster member: its data directory, process and managed
//! settings (replicas reuse the settings comparison).

use std::collections::BTreeMap;

use super::settings::{same_value, shown};
use super::{ChangeKind, DriftClass, Planner, Presence, Refusal, settings_text, unified_diff};
use crate::action::Action;
use crate::address::{Address, Kind};
use crate::desired;
use crate::observe::cluster::ClusterProbe;
use crate::placement::PRIMARY;
use crate::runtime::Need;
use crate::topology::Environment;

/// Compares managed settings with a running cluster: the settings to set,
/// whether a restart is needed, and a diff.
pub(super) struct SettingsDelta {
    pub set: BTreeMap<String, String>,
    pub restart: bool,
    pub diff: Option<String>,
    pub unknown: Vec<String>,
}

pub(super) fn settings_delta(desired: &BTreeMap<String, String>, probe: &ClusterProbe) -> SettingsDelta {
    let mut set = BTreeMap::new();
    let mut restart = false;
    let mut unknown = Vec::new();
    let mut old = BTreeMap::new();
    for (name, value) in desired {
        match probe.settings.get(name) {
            None => unknown.push(name.clone()),
            Some(observed) => {
                if observed.pending_restart {
                    restart = true;
                }
                if !same_value(value, observed) {
                    restart |= observed.context == "postmaster";
                    old.insert(name.clone(), shown(observed));
                    set.insert(name.clone(), value.clone());
                }
            }
        }
    }
    let diff = unified_diff(&settings_text(&old), &settings_text(&set), "observed", "desired");
    SettingsDelta { set, restart, diff, unknown }
}

/// Refuses what the member's runtime cannot do, naming the YAML key;
/// true when it can.
pub(super) fn runtime_allows(planner: &mut Planner<'_>, environment: &Environment, member: &str, need: Need) -> bool {
    let Some(placement) = crate::placement::member(environment, member) else { return false };
    let runtime = placement.runtime();
    if runtime.capabilities().allows(need) {
        return true;
    }
    let index = planner.topology.environment_index(&environment.id);
    let path = match environment.replicas.iter().position(|replica| replica.name == member) {
        Some(position) => format!("environments[{index}].replicas[{position}].runtime"),
        None => format!("environments[{index}].primary.runtime"),
    };
    planner.refuse(Refusal::Runtime { path, reason: runtime.refusal(need) });
    false
}

pub(super) fn plan_primary(planner: &mut Planner<'_>, environment: &Environment, presence: Presence<'_>) {
    let primary = &environment.primary;
    let address = Address::new(&environment.id, Kind::Cluster, PRIMARY);
    let settings = desired::primary_settings(environment);
    match presence {
        Presence::Absent if !runtime_allows(planner, environment, PRIMARY, Need::Initialise) => {}
        Presence::Stopped if !runtime_allows(planner, environment, PRIMARY, Need::ManageProcess) => {}
        Presence::Absent => {
            let directory = planner.observed.data_dir(&primary.host, &primary.data_dir);
            if directory.is_some_and(|directory| directory.exists && !directory.empty) {
                planner.refuse(Refusal::DataDirNotEmpty {
                    host: primary.host.clone(),
                    path: primary.data_dir.display().to_string(),
                });
                return;
            }
            planner.change(
                DriftClass::Topology,
                address,
                ChangeKind::Create,
                format!("no cluster in {} on host `{}`", primary.data_dir.display(), primary.host),
                unified_diff("", &settings_text(&settings), "observed", "desired"),
                vec![Action::InitCluster { member: PRIMARY.into() }, Action::Start { member: PRIMARY.into() }],
            );
        }
        Presence::Stopped => {
            if let Some(found) = planner
                .observed
                .data_dir(&primary.host, &primary.data_dir)
                .and_then(|directory| directory.initialised_major)
                .filter(|found| *found != primary.version)
            {
                planner.refuse(Refusal::DataDirMajor {
                    host: primary.host.clone(),
                    path: primary.data_dir.display().to_string(),
                    found,
                    wanted: primary.version,
                });
                return;
            }
            planner.change(
                DriftClass::Topology,
                address,
                ChangeKind::Update,
                "PostgreSQL is not running",
                None,
                vec![
                    Action::Configure { member: PRIMARY.into(), set: settings, reset: Vec::new() },
                    Action::Start { member: PRIMARY.into() },
                ],
            );
        }
        Presence::Unknown => planner.warn(Some(address), "PostgreSQL runs but pgfleet could not log in to compare it"),
        Presence::Running(probe) => {
            if probe.in_recovery {
                planner.warn(
                    Some(address),
                    "the primary is in recovery (it runs as a standby): pgfleet changes nothing on it",
                );
                return;
            }
            plan_settings(planner, address, PRIMARY, &settings, probe);
        }
    }
}

/// Settings a hot standby needs at least as high as its primary's: raised
/// on the standbys first, lowered on the primary first.
pub const STANDBY_FLOOR_SETTINGS: [&str; 5] = [
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
];

/// Compares a running cluster's settings with `desired` and plans the
/// update: ALTER SYSTEM for what differs, then a reload, or a restart when a
/// postmaster-context setting changed or one waits for a restart already.
pub(super) fn plan_settings(
    planner: &mut Planner<'_>,
    address: Address,
    member: &str,
    desired: &BTreeMap<String, String>,
    probe: &ClusterProbe,
) {
    let delta = settings_delta(desired, probe);
    if address.kind == Kind::Cluster
        && delta.set.iter().any(|(name, value)| {
            STANDBY_FLOOR_SETTINGS.contains(&name.as_str())
                && probe.settings.get(name).and_then(|setting| setting.value.parse::<f64>().ok())
                    < value.parse::<f64>().ok()
        })
    {
        planner.raises_standby_floor.push(address.environment.clone());
    }
    for name in delta.unknown {
        planner.refuse(Refusal::UnknownSetting { address: address.to_string(), name });
    }
    if delta.set.is_empty() && !delta.restart {
        return planner.no_op(address);
    }
    let reason = match delta.set.len() {
        0 => "settings changed earlier wait for a restart".to_owned(),
        1 => format!("{} differs", delta.set.keys().cloned().collect::<String>()),
        _ => format!("{} differ", delta.set.keys().cloned().collect::<Vec<_>>().join(", ")),
    };
    let runtime = planner
        .topology
        .environment(&address.environment)
        .and_then(|environment| crate::placement::member(environment, member))
        .map(|placement| placement.runtime());
    let managed = runtime.is_none_or(|runtime| runtime.capabilities().manage_process);
    if delta.restart && !managed {
        let runtime = runtime.map_or("", |runtime| runtime.name());
        if delta.set.is_empty() {
            // Someone else's change waits for their restart, not pgfleet's.
            planner.warn(
                Some(address.clone()),
                format!("settings changed earlier wait for a restart, which pgfleet leaves to whoever runs this server (`runtime: {runtime}`)"),
            );
            return planner.no_op(address);
        }
        let index = planner.topology.environment_index(&address.environment);
        let needing: Vec<&str> = delta
            .set
            .keys()
            .filter(|name| probe.settings.get(*name).is_some_and(|setting| setting.context == "postmaster"))
            .map(String::as_str)
            .collect();
        let names = if needing.is_empty() { "settings changed earlier".to_owned() } else { needing.join(", ") };
        planner.refuse(Refusal::Runtime {
            path: format!("environments[{index}].primary.settings"),
            reason: format!(
                "{names} take effect only after a restart, and pgfleet does not restart a server it does not run \
                 (`runtime: {runtime}`): set them where the server is run"
            ),
        });
        return;
    }
    let member = member.to_owned();
    let apply = if delta.restart {
        Some(Action::Restart { member: member.clone() })
    } else {
        // Configure reloads over SQL already; the runtime's reload is for
        // servers pgfleet runs (and signals whatever else changed on disk).
        managed.then(|| Action::Reload { member: member.clone() })
    };
    // Nothing to set: only settings changed earlier wait for a restart.
    let drift = if delta.set.is_empty() { DriftClass::PendingRestart } else { DriftClass::Config };
    let mut actions = Vec::new();
    if !delta.set.is_empty() {
        actions.push(Action::Configure { member, set: delta.set, reset: Vec::new() });
    }
    actions.extend(apply);
    planner.change(drift, address, ChangeKind::Update, reason, delta.diff, actions);
}
