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
        } else if found.program != program || !authorized || !pinned(&found.known_hosts, &found.trusted_known_hosts) {
            let why = if found.program != program {
                "the tunnel's program differs"
            } else if !authorized {
                "the tunnel's key is not authorized on the primary's host"
            } else {
                "the tunnel does not pin the host key pgfleet trusts for the primary's host"
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
            for host in [&environment.primary.host, &replica.host] {
                if planner.observed.host_facts(host).is_some_and(|facts| facts.rsync.is_none()) {
                    planner.refuse(Refusal::MissingRsync { address: address.to_string(), host: host.clone() });
                }
            }
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

/// Whether a helper pins the host key pgfleet trusts (when pgfleet's
/// known_hosts could be read; else whether it pins any).
fn pinned(found: &Option<String>, trusted: &Option<String>) -> bool {
    match (found, trusted) {
        (Some(found), Some(trusted)) => found == trusted,
        (found, None) => found.is_some(),
        (None, Some(_)) => false,
    }
}

/// Helpers pgfleet created whose replica (or mirror) left the
/// configuration.
fn remove_departed(planner: &mut Planner<'_>, environment: &Environment, kind: Kind, wanted: impl Fn(&str) -> bool) {
    for address in planner.departed(environment, kind, wanted) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Observed;
    use crate::observe::helpers::FilestoreObservation;
    use crate::state::State;

    fn topology(primary_host: &str) -> crate::topology::Topology {
        let yaml = format!(
            "version: 1\nhosts:\n  a: {{ address: 10.0.0.1 }}\n  b: {{ address: 10.0.0.2 }}\n  here: {{ transport: local }}\nenvironments:\n  - id: e\n    primary: {{ host: {primary_host}, address: 127.0.0.1, data_dir: /p, tuning: none }}\n    replicas:\n      - {{ name: r1, host: b, address: 127.0.0.1, data_dir: /r1, connect: ssh_tunnel }}\n    filestore: {{ path: /srv/filestore, mirror_to: [r1] }}\n"
        );
        crate::config::load::parse("t.yaml", yaml).unwrap().resolve_in(std::path::Path::new("/")).unwrap()
    }

    fn observed(owner: &str) -> Observed {
        let facts = crate::observe::HostObservation::Reachable {
            facts: crate::observe::host::HostFacts {
                pg_major: Some(15),
                rsync: Some("/usr/bin/rsync".into()),
                ..Default::default()
            },
        };
        let mut observed = Observed::default();
        for host in ["a", "b", "here"] {
            observed.hosts.insert(host.into(), facts.clone());
        }
        observed.tunnels.insert("e.tunnel.r1".into(), Default::default());
        observed.filestores.insert(
            "e.filestore.r1".into(),
            FilestoreObservation { source_owner: Some(owner.into()), ..Default::default() },
        );
        observed
    }

    fn mirror_actions(owner: &str) -> Vec<Action> {
        let plan = super::super::plan(&topology("a"), &observed(owner), &State::default()).unwrap();
        let change = plan.resource_changes.iter().find(|change| change.address.to_string() == "e.filestore.r1");
        change.unwrap().actions.clone()
    }

    /// A root-owned filestore is read with sudo on the primary's host; the
    /// service user's own is not; the seed runs before the schedule.
    #[test]
    fn a_mirror_reads_a_filestore_the_service_user_does_not_own_with_sudo() {
        assert_eq!(
            mirror_actions("root"),
            [
                Action::WriteMirror { replica: "r1".into(), sudo_rsync: true },
                Action::SeedMirror { replica: "r1".into() },
                Action::ScheduleMirror { replica: "r1".into() },
            ]
        );
        assert_eq!(mirror_actions("postgres")[0], Action::WriteMirror { replica: "r1".into(), sudo_rsync: false });
    }

    /// Tunnels and mirrors go through the primary host's sshd.
    #[test]
    fn a_tunnel_or_mirror_to_a_primary_host_without_ssh_is_refused() {
        let refused = super::super::plan(&topology("here"), &observed("postgres"), &State::default()).unwrap_err();
        let addresses: Vec<&str> = refused
            .refusals
            .iter()
            .filter_map(|refusal| match refusal {
                Refusal::NeedsSsh { address, .. } => Some(address.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(addresses, ["e.tunnel.r1", "e.filestore.r1"]);
    }

    fn tunnel_change(observed: &Observed, state: &State) -> Option<crate::plan::ResourceChange> {
        let plan = super::super::plan(&topology("a"), observed, state).unwrap();
        plan.resource_changes.into_iter().find(|change| change.address.to_string() == "e.tunnel.r1")
    }

    /// A tunnel as pgfleet left it is a no-op; one whose program changed is
    /// rewritten and restarted; one whose supervisor died is started.
    #[test]
    fn a_built_tunnel_is_left_alone_and_a_changed_or_dead_one_is_repaired() {
        let topology = topology("a");
        let environment = &topology.environments[0];
        let replica = &environment.replicas[0];
        let key = "ssh-ed25519 AAAA pgfleet e.tunnel.r1";
        let built = crate::observe::helpers::TunnelObservation {
            program: tunnel::tunnel_program("e.tunnel.r1", environment, replica, &topology.hosts["a"]),
            public_key: Some(key.into()),
            known_hosts: Some("10.0.0.1 ssh-ed25519 BBBB\n".into()),
            trusted_known_hosts: Some("10.0.0.1 ssh-ed25519 BBBB\n".into()),
            running: true,
            answering: true,
            authorized: Some(tunnel::tunnel_authorization(environment, key)),
        };
        let with = |tunnel: crate::observe::helpers::TunnelObservation| {
            let mut observed = observed("postgres");
            observed.tunnels.insert("e.tunnel.r1".into(), tunnel);
            observed
        };
        let state = State::default();
        assert_eq!(tunnel_change(&with(built.clone()), &state).unwrap().action, ChangeKind::NoOp);

        let changed = crate::observe::helpers::TunnelObservation { program: Some("old".into()), ..built.clone() };
        let change = tunnel_change(&with(changed), &state).unwrap();
        assert_eq!(change.action, ChangeKind::Update);
        assert_eq!(change.actions[1], Action::StartTunnel { replica: "r1".into(), restart: true });
        assert_eq!(change.disruption, crate::action::Disruption::Restart);

        let rekeyed = crate::observe::helpers::TunnelObservation {
            trusted_known_hosts: Some("10.0.0.1 ssh-ed25519 CCCC\n".into()),
            ..built.clone()
        };
        let change = tunnel_change(&with(rekeyed), &state).unwrap();
        assert!(change.reason.contains("pin"), "{}", change.reason);

        let dead = crate::observe::helpers::TunnelObservation { running: false, answering: false, ..built };
        let change = tunnel_change(&with(dead), &state).unwrap();
        assert_eq!(change.actions, [Action::StartTunnel { replica: "r1".into(), restart: false }]);
        assert_eq!(change.drift, DriftClass::Health);
    }

    /// A tunnel pgfleet created whose replica went direct is removed.
    #[test]
    fn a_tunnel_no_longer_wanted_is_removed() {
        let yaml = "version: 1\nhosts:\n  a: { address: 10.0.0.1 }\n  b: { address: 10.0.0.1 }\nenvironments:\n  - id: e\n    primary: { host: a, address: 127.0.0.1, data_dir: /p, tuning: none }\n    replicas:\n      - { name: r1, host: b, address: 127.0.0.2, data_dir: /r1 }\n";
        let topology = crate::config::load::parse("t.yaml", yaml.to_owned())
            .unwrap()
            .resolve_in(std::path::Path::new("/"))
            .unwrap();
        let mut state = State::default();
        state.owned.insert("e.tunnel.r1".parse().unwrap(), crate::state::Owned::at("b", "/r1.pgfleet-tunnel".into()));
        let plan = super::super::plan(&topology, &observed("postgres"), &state).unwrap();
        let change = plan.resource_changes.iter().find(|change| change.address.to_string() == "e.tunnel.r1").unwrap();
        assert_eq!(change.action, ChangeKind::Delete);
        assert_eq!(change.actions, [Action::RemoveHelper { replica: "r1".into() }]);
    }
}
