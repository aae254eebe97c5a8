//! What of an environment is already there, as observed: the resources
//! `pgfleet import` records as pgfleet's without touching a host. Pure.

use crate::address::Address;
use crate::inventory::{Inventory, Item};
use crate::observe::{ClusterObservation, Observed};
use crate::placement::PRIMARY;
use crate::topology::Environment;

/// The environment's resources that exist on the hosts, in inventory order.
pub fn existing(observed: &Observed, environment: &Environment) -> Vec<Address> {
    let primary = match observed.cluster(&format!("{}.cluster.{PRIMARY}", environment.id)) {
        Some(ClusterObservation::Running { probe }) if !probe.in_recovery => Some(probe.as_ref()),
        _ => None,
    };
    Inventory::of_environment(environment)
        .resources
        .into_iter()
        .filter(|resource| match &resource.item {
            Item::Member { placement, .. } => {
                matches!(observed.cluster(&resource.address.to_string()), Some(ClusterObservation::Running { .. }))
                    || observed
                        .data_dir(&placement.host, &placement.layout.data_dir)
                        .is_some_and(|directory| directory.initialised_major.is_some())
            }
            Item::Role { name, .. } => primary.is_some_and(|probe| probe.roles.iter().any(|role| role.name == *name)),
            Item::Database { name, .. } => {
                primary.is_some_and(|probe| probe.databases.iter().any(|database| database.name == *name))
            }
            Item::Slot { name, .. } => primary.is_some_and(|probe| probe.slots.iter().any(|slot| slot.name == *name)),
            // pgfleet's block: on a server pgfleet does not run there is
            // none to own, whatever rules the operator keeps.
            Item::Hba => {
                let placement = crate::placement::primary(environment);
                placement.runtime().capabilities().edit_hba
                    && observed
                        .data_dir(&placement.host, &placement.layout.data_dir)
                        .is_some_and(|directory| directory.hba_block.is_some())
            }
            Item::Pooler(placement) => observed
                .host_facts(&placement.host)
                .and_then(|facts| facts.pooler(&placement.layout.ini))
                .is_some_and(|pooler| pooler.ini.is_some() || pooler.running),
            Item::Tunnel { .. } => {
                observed.tunnels.get(&resource.address.to_string()).is_some_and(|found| found.program.is_some())
            }
            // Odoo's file is never pgfleet's.
            Item::Odoo(_) => false,
            Item::Filestore { .. } => {
                observed.filestores.get(&resource.address.to_string()).is_some_and(|found| found.job.is_some())
            }
            // Backups are made by `backup create`, not imported.
            Item::Backup => false,
        })
        .map(|resource| resource.address)
        .collect()
}
