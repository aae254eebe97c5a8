//! PgBouncer in front of the primary and of each replica: its ini file is
//! compared as text, so the plan shows the exact diff.

use super::{ChangeKind, DriftClass, Planner, Refusal, password_rotates, unified_diff};
use crate::action::Action;
use crate::address::{Address, Kind};
use crate::desired::{self, POOLER_RESTART_KEYS};
use crate::placement;
use crate::topology::Environment;

/// Whether the ini lines that differ include one RELOAD cannot apply.
fn needs_restart(old: &str, new: &str) -> bool {
    let value = |text: &str, key: &str| {
        text.lines().find_map(|line| {
            line.split_once('=').filter(|(name, _)| name.trim() == key).map(|(_, value)| value.trim().to_owned())
        })
    };
    POOLER_RESTART_KEYS.iter().any(|key| value(old, key) != value(new, key))
}

pub(super) fn plan(planner: &mut Planner<'_>, environment: &Environment) {
    let Some(pooler) = &environment.pooler else { return remove_departed(planner, environment, &[]) };
    let places = placement::poolers(environment);
    // The userlist copies the owner's verifier: when the owner's password
    // changes in this plan, every pooler's userlist must follow.
    let owner_changes = password_rotates(planner.observed, environment, &environment.database.owner);
    for place in &places {
        let name = place.fronts.clone();
        let address = Address::new(&environment.id, Kind::Pooler, &name);
        let userlist_stale = owner_changes || planner.observed.userlists.get(&address.to_string()) == Some(&false);
        let Some(facts) = planner.observed.host_facts(&place.host) else { continue };
        if facts.pgbouncer.is_none() {
            planner.refuse(Refusal::MissingPgbouncer { host: place.host.clone() });
            continue;
        }
        let ini_path = &place.layout.ini;
        let wanted = desired::pgbouncer_ini(environment, pooler, place);
        let observed = facts.pooler(ini_path).cloned().unwrap_or_default();
        let shown_path = ini_path.display().to_string();
        match observed.ini {
            None => planner.change(
                DriftClass::Config,
                address,
                ChangeKind::Create,
                format!("no {shown_path} on host `{}`", place.host),
                unified_diff("", &wanted, &shown_path, "desired"),
                vec![Action::WritePoolerConfig { pooler: name.clone() }, Action::StartPooler { pooler: name.clone() }],
            ),
            Some(ini) if ini != wanted => {
                let pooler = name.clone();
                let apply = match (observed.running, needs_restart(&ini, &wanted)) {
                    (false, _) => Action::StartPooler { pooler },
                    (true, true) => Action::RestartPooler { pooler },
                    (true, false) => Action::ReloadPooler { pooler },
                };
                planner.change(
                    DriftClass::Config,
                    address,
                    ChangeKind::Update,
                    format!("{shown_path} differs"),
                    unified_diff(&ini, &wanted, &shown_path, "desired"),
                    vec![Action::WritePoolerConfig { pooler: name.clone() }, apply],
                );
            }
            Some(_) if userlist_stale => {
                let mut actions = vec![Action::WritePoolerConfig { pooler: name.clone() }];
                if !observed.running {
                    actions.push(Action::StartPooler { pooler: name.clone() });
                }
                let reason = if owner_changes {
                    "the owner's password changes, so the userlist follows (restart: PgBouncer keeps old SCRAM keys)"
                } else {
                    "userlist.txt does not hold the primary's current verifiers"
                };
                planner.change(DriftClass::Config, address, ChangeKind::Update, reason, None, actions);
                if let Some(change) = planner.changes.last_mut()
                    && observed.running
                {
                    change.disruption = crate::action::Disruption::Restart;
                }
            }
            Some(_) if !observed.running => {
                planner.change(
                    DriftClass::Health,
                    address,
                    ChangeKind::Update,
                    "PgBouncer is not running",
                    None,
                    vec![Action::StartPooler { pooler: name.clone() }],
                );
            }
            Some(_) => planner.no_op(address),
        }
    }
    let names: Vec<String> = places.into_iter().map(|place| place.fronts).collect();
    remove_departed(planner, environment, &names);
}

/// Poolers pgfleet started that the configuration no longer has.
fn remove_departed(planner: &mut Planner<'_>, environment: &Environment, keep: &[String]) {
    let departed: Vec<Address> = planner
        .state
        .owned
        .keys()
        .filter(|address| {
            address.environment == environment.id && address.kind == Kind::Pooler && !keep.contains(&address.name)
        })
        .cloned()
        .collect();
    for address in departed {
        let stop = Action::StopPooler { pooler: address.name.clone(), and_config: true };
        planner.change(
            DriftClass::Config,
            address,
            ChangeKind::Delete,
            "removed from the configuration",
            None,
            vec![stop],
        );
    }
}
