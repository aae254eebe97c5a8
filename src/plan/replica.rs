//! Streaming replicas: create from a base backup, rebuild when the data
//! directory holds something else, reconfigure, and remove those pgfleet
//! created that left the configuration.

use super::cluster::settings_delta;
use super::{ChangeKind, Planner, Presence, Refusal, presence};
use crate::action::Action;
use crate::address::{Address, Kind};
use crate::desired;
use crate::topology::{Environment, Replica};

const BUILD: [Action; 3] = [Action::WriteStandbyConfig, Action::Start, Action::WaitStreaming];

fn build(slot: &str) -> Vec<Action> {
    std::iter::once(Action::BaseBackup { slot: slot.to_owned() }).chain(BUILD).collect()
}

pub(super) fn plan(planner: &mut Planner<'_>, environment: &Environment, primary: Presence<'_>) {
    let primary_identifier = planner
        .observed
        .data_dir(&environment.primary.host, &environment.primary.data_dir)
        .and_then(|directory| directory.system_identifier.clone());
    let primary_locale = match primary {
        Presence::Running(probe) => probe.settings.get("lc_collate").map(|setting| setting.value.clone()),
        _ => None,
    };
    for replica in &environment.replicas {
        plan_replica(planner, environment, replica, primary_identifier.as_deref(), primary_locale.as_deref());
    }
    remove_departed(planner, environment);
}

fn plan_replica(
    planner: &mut Planner<'_>,
    environment: &Environment,
    replica: &Replica,
    primary_identifier: Option<&str>,
    primary_locale: Option<&str>,
) {
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
        None => return planner.refuse(Refusal::MissingBinaries { host: replica.host.clone(), wanted }),
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

    let address = Address::new(&environment.id, Kind::Replica, &replica.name);
    let owned = planner.state.owns(&address);
    let directory = facts.data_dir(&replica.data_dir).cloned().unwrap_or_default();
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
        let mut actions = vec![Action::Stop, Action::RemoveDataDir];
        actions.extend(build(&replica.slot));
        Ok((why, actions))
    };

    if directory.initialised_major.is_none() {
        if directory.exists && !directory.empty {
            match rebuild(format!("{path} is not empty but holds no cluster")) {
                Ok((why, actions)) => planner.change(address, ChangeKind::Replace, why, None, actions),
                Err(_) => planner.refuse(Refusal::DataDirNotEmpty { host: replica.host.clone(), path }),
            }
            return;
        }
        planner.change(
            address,
            ChangeKind::Create,
            format!("no replica in {path} on host `{}`", replica.host),
            None,
            build(&replica.slot),
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
            Ok((why, actions)) => {
                planner.change(address.clone(), ChangeKind::Replace, why, None, actions);
                if let Some(change) = planner.changes.last_mut() {
                    change.disruption = crate::action::Disruption::Rebuild;
                    change.rpo =
                        Some("none on the primary; this replica serves no reads until it streams again".into());
                }
            }
            Err(refusal) => planner.refuse(refusal),
        }
        return;
    }

    match presence(planner.observed, &replica.host, &replica.data_dir, &address.to_string()) {
        Presence::Absent | Presence::Stopped => {
            planner.change(address, ChangeKind::Update, "the replica is not running", None, BUILD.to_vec())
        }
        Presence::Unknown => planner.warn(Some(address), "the replica runs but pgfleet could not log in to compare it"),
        Presence::Running(probe) => {
            let delta = settings_delta(&desired::replica_settings(environment, replica), probe);
            for name in delta.unknown {
                planner.refuse(Refusal::UnknownSetting { address: address.to_string(), name });
            }
            if delta.set.is_empty() && !delta.restart {
                planner.no_op(address);
                return;
            }
            let mut actions = Vec::new();
            let reason = if delta.set.is_empty() {
                "settings changed earlier wait for a restart".to_owned()
            } else {
                format!("{} differ", delta.set.keys().cloned().collect::<Vec<_>>().join(", "))
            };
            if !delta.set.is_empty() {
                actions.push(Action::Configure { set: delta.set, reset: Vec::new() });
            }
            actions.push(if delta.restart { Action::Restart } else { Action::Reload });
            planner.change(address, ChangeKind::Update, reason, delta.diff, actions);
        }
    }
}

/// Replicas pgfleet created that are no longer in the configuration.
fn remove_departed(planner: &mut Planner<'_>, environment: &Environment) {
    let departed: Vec<Address> = planner
        .state
        .owned
        .keys()
        .filter(|address| {
            address.environment == environment.id
                && address.kind == Kind::Replica
                && !environment.replicas.iter().any(|replica| replica.name == address.name)
        })
        .cloned()
        .collect();
    for address in departed {
        planner.change(
            address,
            ChangeKind::Delete,
            "removed from the configuration",
            None,
            vec![Action::Stop, Action::RemoveDataDir],
        );
        if let Some(change) = planner.changes.last_mut() {
            change.rpo = Some("the replica's data directory is deleted; the primary keeps all data".into());
        }
    }
}
