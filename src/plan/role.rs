//! Login roles on the primary: the application owner and, with replicas,
//! the replication user.

use super::{ChangeKind, DriftClass, Planner, Presence};
use crate::action::Action;
use crate::address::{Address, Kind};
use crate::topology::Environment;

pub(super) fn plan(planner: &mut Planner<'_>, environment: &Environment, presence: Presence<'_>) {
    let owner = &environment.database.owner;
    let mut roles = vec![(owner.clone(), false)];
    if !environment.replicas.is_empty() {
        roles.push((environment.replication.user.clone(), true));
    }
    for (name, replication) in roles {
        let address = Address::new(&environment.id, Kind::Role, &name);
        let create = Action::CreateRole { name: name.clone(), replication };
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
            Presence::Running(probe) => match probe.roles.iter().find(|role| role.name == name) {
                None => planner.change(
                    DriftClass::Config,
                    address,
                    ChangeKind::Create,
                    format!("role {name} does not exist"),
                    None,
                    vec![create],
                ),
                Some(role) if !role.login || (replication && !role.replication) => {
                    let missing = if role.login { "REPLICATION" } else { "LOGIN" };
                    planner.change(
                        DriftClass::Config,
                        address,
                        ChangeKind::Update,
                        format!("role {name} lacks {missing}"),
                        None,
                        vec![create],
                    );
                }
                Some(role) if role.password_current == Some(false) => planner.change(
                    DriftClass::Config,
                    address,
                    ChangeKind::Update,
                    format!("role {name}'s password is not the configured one"),
                    None,
                    vec![create],
                ),
                Some(role) => {
                    if role.password_current.is_none() {
                        planner.warn(
                            Some(address.clone()),
                            format!("the password of role {name} is not available here, so it was not compared"),
                        );
                    }
                    planner.no_op(address)
                }
            },
        }
    }
}
