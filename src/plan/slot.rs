//! Physical replication slots on the primary: one per replica, and only
//! slots pgfleet created are ever dropped.

use super::{ChangeKind, DriftClass, Planner, Presence};
use crate::action::Action;
use crate::address::{Address, Kind};
use crate::spec::Size;
use crate::topology::Environment;

pub(super) fn plan(planner: &mut Planner<'_>, environment: &Environment, presence: Presence<'_>) {
    let probe = match presence {
        Presence::Running(probe) if !probe.in_recovery => Some(probe),
        Presence::Absent | Presence::Stopped => None,
        Presence::Running(_) | Presence::Unknown => return,
    };
    for replica in &environment.replicas {
        let address = Address::new(&environment.id, Kind::Slot, &replica.name);
        let create = vec![Action::CreateSlot { name: replica.slot.clone() }];
        let Some(probe) = probe else {
            planner.change(DriftClass::Slots, address, ChangeKind::Create, "the cluster is being set up", None, create);
            continue;
        };
        match probe.slots.iter().find(|slot| slot.name == replica.slot) {
            None => planner.change(
                DriftClass::Slots,
                address,
                ChangeKind::Create,
                format!("slot {} does not exist", replica.slot),
                None,
                create,
            ),
            Some(slot) if slot.kind != "physical" => planner.change(
                DriftClass::Slots,
                address,
                ChangeKind::Replace,
                format!("slot {} is a {} slot", slot.name, slot.kind),
                None,
                vec![Action::DropSlot { name: slot.name.clone() }, Action::CreateSlot { name: slot.name.clone() }],
            ),
            Some(slot) if slot.wal_status.as_deref() == Some("lost") => planner.change(
                DriftClass::Slots,
                address,
                ChangeKind::Replace,
                format!("slot {} lost the WAL its replica needs (wal_status = lost)", slot.name),
                None,
                vec![Action::DropSlot { name: slot.name.clone() }, Action::CreateSlot { name: slot.name.clone() }],
            ),
            Some(_) => planner.no_op(address),
        }
    }

    let Some(probe) = probe else { return };
    for slot in &probe.slots {
        let wanted = environment.replicas.iter().any(|replica| replica.slot == slot.name);
        if wanted {
            if !slot.active && slot.retained_bytes.unwrap_or(0) > 0 {
                let retained = Size::from_bytes(slot.retained_bytes.unwrap_or(0).max(0) as u64);
                planner.warn(
                    Some(Address::new(&environment.id, Kind::Slot, &slot.name)),
                    format!("slot {} is inactive and retains {retained} of WAL on the primary", slot.name),
                );
            }
            continue;
        }
        let address = owned_slot_address(planner, environment, &slot.name);
        match address {
            Some(address) => planner.change(
                DriftClass::Slots,
                address,
                ChangeKind::Delete,
                "its replica was removed from the configuration",
                None,
                vec![Action::DropSlot { name: slot.name.clone() }],
            ),
            None if !slot.active => {
                let retained = Size::from_bytes(slot.retained_bytes.unwrap_or(0).max(0) as u64);
                planner.warn(
                    None,
                    format!(
                        "slot {} on {}'s primary is not pgfleet's and is inactive, retaining {retained} of WAL",
                        slot.name, environment.id
                    ),
                );
            }
            None => {}
        }
    }
}

/// The address of a slot pgfleet created whose replica is gone.
fn owned_slot_address(planner: &Planner<'_>, environment: &Environment, slot: &str) -> Option<Address> {
    planner
        .state
        .owned
        .keys()
        .find(|address| {
            address.environment == environment.id
                && address.kind == Kind::Slot
                && crate::config::resolve::slot_name(&address.name) == slot
        })
        .cloned()
}
