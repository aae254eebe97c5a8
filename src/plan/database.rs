//! The application database on the primary, owned by its owner role.

use super::{ChangeKind, DriftClass, Planner, Presence};
use crate::action::Action;
use crate::address::{Address, Kind};
use crate::topology::Environment;

pub(super) fn plan(planner: &mut Planner<'_>, environment: &Environment, presence: Presence<'_>) {
    let owner = &environment.database.owner;
    let database = &environment.database.name;
    let address = Address::new(&environment.id, Kind::Database, database);
    let create = Action::CreateDatabase { name: database.clone(), owner: owner.clone() };
    match presence {
        Presence::Absent | Presence::Stopped => {
            planner.change(
                DriftClass::Config,
                address,
                ChangeKind::Create,
                "the cluster is being set up",
                None,
                vec![create],
            );
        }
        Presence::Unknown => {}
        Presence::Running(probe) if probe.in_recovery => {}
        Presence::Running(probe) => match probe.databases.iter().find(|row| &row.name == database) {
            None => planner.change(
                DriftClass::Config,
                address,
                ChangeKind::Create,
                format!("database {database} does not exist"),
                None,
                vec![create],
            ),
            Some(row) if &row.owner != owner => planner.change(
                DriftClass::Config,
                address,
                ChangeKind::Update,
                format!("owned by {}, not {owner}", row.owner),
                None,
                vec![Action::SetDatabaseOwner { name: database.clone(), owner: owner.clone() }],
            ),
            Some(_) => planner.no_op(address),
        },
    }
}
