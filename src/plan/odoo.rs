//! Odoo's configuration file: its database keys compared with where the
//! primary's (and a replica's) endpoints are; a difference is rewritten and
//! Odoo restarted, after the poolers it is pointed at.

use super::{ChangeKind, DriftClass, Planner, Refusal, settings_text, unified_diff};
use crate::action::Action;
use crate::address::{Address, Kind};
use crate::desired;
use crate::topology::Environment;

pub(super) fn plan(planner: &mut Planner<'_>, environment: &Environment) {
    let Some(odoo) = &environment.odoo else { return };
    let address = Address::new(&environment.id, Kind::Odoo, "config");
    if planner.observed.host_facts(&odoo.host).is_none() {
        return; // Listed as unreachable.
    }
    let wanted = desired::odoo::settings(environment);
    let found = match planner.observed.odoo.get(&address.to_string()) {
        Some(Some(found)) => found,
        Some(None) => {
            return planner.refuse(Refusal::OdooConfigMissing {
                host: odoo.host.clone(),
                path: odoo.config.display().to_string(),
            });
        }
        None => return,
    };
    if found == &wanted {
        return planner.no_op(address);
    }
    let differs: Vec<&str> =
        wanted.iter().filter(|(key, value)| found.get(*key) != Some(*value)).map(|(key, _)| key.as_str()).collect();
    let mut actions = vec![Action::WriteOdooConfig];
    if odoo.restart.is_some() {
        actions.push(Action::RestartOdoo);
    } else {
        planner.warn(
            Some(address.clone()),
            "Odoo reads its configuration when it starts: restart it after apply (or set `odoo.restart`)",
        );
    }
    planner.change(
        DriftClass::Config,
        address,
        if found.is_empty() { ChangeKind::Create } else { ChangeKind::Update },
        format!("{} in {} on host `{}`", differs.join(", "), odoo.config.display(), odoo.host),
        unified_diff(&settings_text(found), &settings_text(&wanted), &odoo.config.display().to_string(), "desired"),
        actions,
    );
}
