//! roles: the primary is a role, not a place. The YAML's `primary:` names
//! the member that starts with the role; after a switchover or failover
//! another member holds it, and state records which (`State::roles`).
//! Everything that reads a topology (observe, plan, apply, status, drift,
//! monitor) reads the *current* one this module makes: the configuration
//! as if it had been written with the current primary under `primary:` and
//! the member declared there among the replicas. So after a switchover the
//! plan is empty, and never flips the role back. Pure.

use crate::config::resolve::slot_name;
use crate::spec::{Connect, Purpose};
use crate::state::State;
use crate::topology::{Cluster, Environment, Replica, Topology};

/// The configuration with each environment's primary role where state
/// records it. An environment whose recorded holder is no longer a member
/// keeps its declared primary (plan refuses it: `holder_missing`).
pub fn current(topology: &Topology, state: &State) -> Topology {
    let mut current = topology.clone();
    for environment in &mut current.environments {
        if let Some(record) = state.roles.get(&environment.id)
            && let Some(swapped) = with_primary(environment, &record.primary)
        {
            *environment = swapped;
        }
    }
    current
}

/// The environments whose recorded primary is not a member of the
/// configuration: (environment, member).
pub fn holder_missing<'a>(topology: &Topology, state: &'a State) -> Vec<(&'a str, &'a str)> {
    state
        .roles
        .iter()
        .filter(|(id, record)| {
            topology.environment(id).is_some_and(|environment| with_primary(environment, &record.primary).is_none())
        })
        .map(|(id, record)| (id.as_str(), record.primary.as_str()))
        .collect()
}

/// The environment with `member` holding the primary role: unchanged when
/// it holds it already, `None` when no member has that name. The member
/// that hands the role on takes the taker's place among the replicas, as
/// the replica the YAML declares it (or, for the member declared under
/// `primary:`, a direct standby under its own name).
pub fn with_primary(environment: &Environment, member: &str) -> Option<Environment> {
    if environment.primary.name == member {
        return Some(environment.clone());
    }
    let position = environment.replicas.iter().position(|replica| replica.name == member)?;
    let mut swapped = environment.clone();
    let taker = swapped.replicas[position].clone();
    let giver = &swapped.primary;
    let demoted = match &giver.standby {
        Some(replica) => (**replica).clone(),
        None => Replica {
            name: giver.name.clone(),
            slot: slot_name(&giver.name),
            host: giver.host.clone(),
            address: giver.address.clone(),
            port: giver.port,
            data_dir: giver.data_dir.clone(),
            purpose: Purpose::Dr,
            connect: Connect::Direct,
            tunnel_port: giver.port.saturating_add(10000),
            runtime: giver.runtime,
            declared_primary: true,
            position: usize::MAX,
        },
    };
    let holder = Cluster {
        name: taker.name.clone(),
        standby: (!taker.declared_primary).then(|| Box::new(taker.clone())),
        host: taker.host.clone(),
        address: taker.address.clone(),
        port: taker.port,
        data_dir: taker.data_dir.clone(),
        runtime: taker.runtime,
        version: giver.version,
        image: giver.image.clone(),
        tier: giver.tier,
        settings: giver.settings.clone(),
    };
    swapped.primary = holder;
    swapped.replicas[position] = demoted;
    swapped.replicas.sort_by_key(|replica| replica.position);
    Some(swapped)
}

/// The member's name the YAML's `primary:` declares.
pub fn declared_primary(environment: &Environment) -> &str {
    match &environment.primary.standby {
        None => &environment.primary.name,
        Some(_) => environment
            .replicas
            .iter()
            .find(|replica| replica.declared_primary)
            .map_or(environment.primary.name.as_str(), |replica| replica.name.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        let yaml = "version: 1\nhosts:\n  a: { address: 10.0.0.1 }\n  b: { address: 10.0.0.2 }\n  c: { address: 10.0.0.3 }\nenvironments:\n  - id: e\n    primary: { name: db1, host: a, address: 10.0.0.1, data_dir: /p, tuning: none }\n    replicas:\n      - { name: r1, host: b, address: 10.0.0.2, data_dir: /r1, purpose: reporting }\n      - { name: r2, host: c, address: 10.0.0.3, data_dir: /r2, purpose: dr }\n";
        crate::config::load::parse("t.yaml", yaml.into()).unwrap().resolve_in(std::path::Path::new("/")).unwrap()
    }

    fn summary(environment: &Environment) -> (String, Vec<(String, String, bool)>) {
        (
            format!("{}@{}", environment.primary.name, environment.primary.host),
            environment
                .replicas
                .iter()
                .map(|replica| (replica.name.clone(), replica.host.clone(), replica.declared_primary))
                .collect(),
        )
    }

    /// The role moves and comes back without losing what the YAML says of
    /// each member: a round trip gives the declared environment again.
    #[test]
    fn the_role_moves_between_members_and_back_losslessly() {
        let declared = &topology().environments[0];
        let moved = with_primary(declared, "r1").unwrap();
        assert_eq!(
            summary(&moved),
            ("r1@b".into(), vec![("r2".into(), "c".into(), false), ("db1".into(), "a".into(), true)])
        );
        assert_eq!(moved.replicas[1].slot, "db1");
        assert_eq!(declared_primary(&moved), "db1");
        let onward = with_primary(&moved, "r2").unwrap();
        assert_eq!(onward.primary.name, "r2");
        let back = with_primary(&onward, "db1").unwrap();
        assert_eq!(summary(&back), summary(declared));
        assert_eq!(back.replicas[0].purpose, Purpose::Reporting, "r1 keeps its declared purpose");
        assert!(back.primary.standby.is_none());
        assert!(with_primary(declared, "nobody").is_none());
    }

    /// Layouts follow the member, not the role: the docker container of
    /// the declared primary keeps its name while it is a standby.
    #[test]
    fn layouts_follow_the_member_not_the_role() {
        let declared = &topology().environments[0];
        let moved = with_primary(declared, "r1").unwrap();
        let r1_before = crate::placement::member(declared, "r1").unwrap();
        let r1_after = crate::placement::primary(&moved);
        assert_eq!(r1_before.layout, r1_after.layout);
        let db1_before = crate::placement::primary(declared);
        let db1_after = crate::placement::member(&moved, "db1").unwrap();
        assert_eq!(db1_before.layout, db1_after.layout);
    }
}
