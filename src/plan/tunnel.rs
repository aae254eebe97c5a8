//! Replicas' SSH tunnels (`connect: ssh_tunnel`): built on the replica's
//! host, authorized on the primary's, kept running by a supervisor; and
//! removed with their replica. Also the filestore mirrors, which use the
//! same kind of key and authorization. Pure.

use super::{ChangeKind, DriftClass, Planner, Refusal};
use crate::action::Action;
use crate::address::{Address, Kind};
use crate::desired::{filestore, tunnel};
use crate::spec::Connect;
use crate::topology::Environment;

/// Whether the primary's host is reached over SSH: a tunnel or a mirror
/// goes through its sshd.
fn primary_over_ssh(planner: &mut Planner<'_>, environment: &Environment, address: &Address) -> bool {
    let host = &environment.primary.host;
    let over_ssh = planner.topology.hosts.get(host).is_some_and(|found| tunnel::ssh_login(found).is_some());
    if !over_ssh {
        planner.refuse(Refusal::NeedsSsh { address: address.to_string(), host: host.clone() });
    }
    over_ssh
}

pub(super) fn plan(planner: &mut Planner<'_>, environment: &Environment) {
    let Some(primary_host) = planner.topology.hosts.get(&environment.primary.host) else { return };
    for replica in environment.replicas.iter().filter(|replica| replica.connect == Connect::SshTunnel) {
        let address = Address::new(&environment.id, Kind::Tunnel, &replica.name);
        if !primary_over_ssh(planner, environment, &address) {
            continue;
        }
        // Without its host's observation nothing can be said of it (the
        // host is listed as unreachable).
        let Some(found) = planner.observed.tunnels.get(&address.to_string()).cloned() else { continue };
        let name = replica.name.clone();
        let program = tunnel::tunnel_program(&address.to_string(), environment, replica, primary_host);
        let authorized = found
            .public_key
            .as_deref()
            .map(|key| tunnel::tunnel_authorization(environment, key))
            .is_some_and(|line| found.authorized.as_deref() == Some(line.as_str()));
        let (local_address, local_port) = tunnel::local_end(replica);
        if found.program.is_none() {
            planner.change(
                DriftClass::Topology,
                address,
                ChangeKind::Create,
                format!(
                    "no tunnel on host `{}` ({local_address}:{local_port} → {}:{} through host `{}`)",
                    replica.host, environment.primary.address, environment.primary.port, environment.primary.host
                ),
                None,
                vec![
                    Action::WriteTunnel { replica: name.clone() },
                    Action::StartTunnel { replica: name, restart: false },
                ],
            );
        } else if found.program != program || !authorized || found.known_hosts.is_none() {
            let why = if found.program != program {
                "the tunnel's program differs"
            } else {
                "the tunnel's key is not authorized on the primary's host"
            };
            planner.change(
                DriftClass::Config,
                address,
                ChangeKind::Update,
                why,
                super::unified_diff(
                    found.program.as_deref().unwrap_or_default(),
                    program.as_deref().unwrap_or_default(),
                    "tunnel.sh",
                    "desired",
                ),
                vec![
                    Action::WriteTunnel { replica: name.clone() },
                    Action::StartTunnel { replica: name, restart: true },
                ],
            );
        } else if !found.running {
            planner.change(
                DriftClass::Health,
                address,
                ChangeKind::Update,
                "the tunnel's supervisor does not run",
                None,
                vec![Action::StartTunnel { replica: name, restart: false }],
            );
        } else {
            if !found.answering {
                planner.warn(
                    Some(address.clone()),
                    format!(
                        "the tunnel runs but {local_address}:{local_port} does not answer (its supervisor retries)"
                    ),
                );
            }
            planner.no_op(address);
        }
    }
    remove_departed(planner, environment, Kind::Tunnel, |name| {
        environment.replicas.iter().any(|replica| replica.name == name && replica.connect == Connect::SshTunnel)
    });
}

/// The filestore mirror to each replica it names.
pub(super) fn plan_filestore(planner: &mut Planner<'_>, environment: &Environment) {
    let mirrored =
        |name: &str| environment.filestore.as_ref().is_some_and(|mirror| mirror.mirror_to.iter().any(|to| to == name));
    if let (Some(mirror), Some(primary_host)) =
        (&environment.filestore, planner.topology.hosts.get(&environment.primary.host))
    {
        let service_user = tunnel::ssh_login(primary_host).map(|(_, user)| user.to_owned());
        for replica in environment.replicas.iter().filter(|replica| mirrored(&replica.name)) {
            let address = Address::new(&environment.id, Kind::Filestore, &replica.name);
            if !primary_over_ssh(planner, environment, &address) {
                continue;
            }
            let Some(found) = planner.observed.filestores.get(&address.to_string()).cloned() else { continue };
            // A source the service user does not own (root's, as Odoo's
            // packages leave it) is read with sudo on the primary's host.
            let sudo_rsync = found.source_owner.as_deref().is_some_and(|owner| Some(owner) != service_user.as_deref());
            let job = filestore::job(&address.to_string(), environment, mirror, replica, primary_host, sudo_rsync);
            let authorized = found
                .public_key
                .as_deref()
                .map(filestore::authorization)
                .is_some_and(|line| found.authorized.as_deref() == Some(line.as_str()));
            let name = replica.name.clone();
            let write = Action::WriteMirror { replica: name.clone(), sudo_rsync };
            if found.job.is_none() {
                planner.change(
                    DriftClass::Topology,
                    address,
                    ChangeKind::Create,
                    format!(
                        "no mirror of {} on host `{}` (to {}, every {})",
                        mirror.path.display(),
                        replica.host,
                        mirror.mirror_path.display(),
                        mirror.every
                    ),
                    None,
                    vec![write, Action::SeedMirror { replica: name.clone() }, Action::ScheduleMirror { replica: name }],
                );
            } else if found.job != job || !authorized || found.known_hosts.is_none() {
                let why =
                    if found.job != job { "the mirror's job differs" } else { "the mirror's key is not authorized" };
                planner.change(
                    DriftClass::Config,
                    address,
                    ChangeKind::Update,
                    why,
                    super::unified_diff(
                        found.job.as_deref().unwrap_or_default(),
                        job.as_deref().unwrap_or_default(),
                        "mirror.sh",
                        "desired",
                    ),
                    vec![write, Action::ScheduleMirror { replica: name }],
                );
            } else if !found.scheduled {
                planner.change(
                    DriftClass::Health,
                    address,
                    ChangeKind::Update,
                    "the recurring mirror job is not installed",
                    None,
                    vec![Action::ScheduleMirror { replica: name }],
                );
            } else {
                planner.no_op(address);
            }
        }
    }
    remove_departed(planner, environment, Kind::Filestore, mirrored);
}

/// Helpers pgfleet created whose replica (or mirror) left the
/// configuration.
fn remove_departed(planner: &mut Planner<'_>, environment: &Environment, kind: Kind, wanted: impl Fn(&str) -> bool) {
    let departed: Vec<Address> = planner
        .state
        .owned
        .keys()
        .filter(|address| address.environment == environment.id && address.kind == kind && !wanted(&address.name))
        .cloned()
        .collect();
    for address in departed {
        let replica = address.name.clone();
        planner.change(
            DriftClass::Topology,
            address,
            ChangeKind::Delete,
            "removed from the configuration",
            None,
            vec![Action::RemoveHelper { replica }],
        );
    }
}
