//! placement: where each cluster member and pooler lives — host, address,
//! ports, runtime and file layout — computed in this one place from the
//! topology, or from state for a resource that left it. Observe, plan,
//! actions and apply all read placements from here. Pure: no I/O.

use std::path::PathBuf;

use crate::runtime::{self, ClusterLayout, Member, PoolerLayout, Runtime};
use crate::spec;
use crate::state::Owned;
use crate::topology::{Environment, Replica};

/// The name of the member the YAML's `primary:` declares.
pub const PRIMARY: &str = "primary";

/// Where a PostgreSQL cluster member lives and how it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPlacement {
    pub host: String,
    /// Where it listens on its host.
    pub address: String,
    pub port: u16,
    pub version: u32,
    pub runtime: spec::Runtime,
    pub layout: ClusterLayout,
}

impl ClusterPlacement {
    pub fn runtime(&self) -> &'static dyn Runtime {
        runtime::of(self.runtime)
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.layout.data_dir
    }
}

/// Where a pooler lives, and the cluster it fronts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolerPlacement {
    pub host: String,
    pub address: String,
    pub port: u16,
    /// Where it finds the cluster it fronts.
    pub cluster_address: String,
    pub cluster_port: u16,
    /// The member it fronts (`primary` or a replica's name).
    pub fronts: String,
    pub runtime: spec::Runtime,
    pub layout: PoolerLayout,
}

impl PoolerPlacement {
    pub fn runtime(&self) -> &'static dyn Runtime {
        runtime::of(self.runtime)
    }
}

fn identity<'a>(environment: &'a Environment, name: &'a str) -> Member<'a> {
    Member { environment: &environment.id, name, image: &environment.primary.image }
}

fn pooler_identity<'a>(environment: &'a Environment, fronts: &'a str) -> Member<'a> {
    let image = environment.pooler.as_ref().map_or(environment.primary.image.as_str(), |pooler| pooler.image.as_str());
    Member { environment: &environment.id, name: fronts, image }
}

/// The member that holds the primary role (the one the YAML declares
/// under `primary:` unless another took the role over: `roles`). Its files
/// are laid out by the member it is, whichever role it holds.
pub fn primary(environment: &Environment) -> ClusterPlacement {
    let primary = &environment.primary;
    let layout_name = primary.standby.as_ref().map_or(PRIMARY, |replica| replica.name.as_str());
    ClusterPlacement {
        host: primary.host.clone(),
        address: primary.address.clone(),
        port: primary.port,
        version: primary.version,
        runtime: primary.runtime,
        layout: runtime::of(primary.runtime).cluster_layout(
            identity(environment, layout_name),
            &primary.data_dir,
            primary.version,
        ),
    }
}

/// The member the YAML declares under `primary:`, whichever role it holds.
pub fn declared_primary(environment: &Environment) -> ClusterPlacement {
    match environment.replicas.iter().find(|replica| replica.declared_primary) {
        Some(standby) => replica(environment, standby),
        None => primary(environment),
    }
}

/// A replica of the environment (replicas run their primary's major, on
/// their own runtime).
pub fn replica(environment: &Environment, replica: &Replica) -> ClusterPlacement {
    let primary = &environment.primary;
    ClusterPlacement {
        host: replica.host.clone(),
        address: replica.address.clone(),
        port: replica.port,
        version: primary.version,
        runtime: replica.runtime,
        layout: runtime::of(replica.runtime).cluster_layout(
            identity(environment, if replica.declared_primary { PRIMARY } else { &replica.name }),
            &replica.data_dir,
            primary.version,
        ),
    }
}

/// A member by name: `primary` (the role's holder, also by its own name),
/// or a replica of the configuration.
pub fn member(environment: &Environment, name: &str) -> Option<ClusterPlacement> {
    if name == PRIMARY || name == environment.primary.name {
        return Some(primary(environment));
    }
    environment.replicas.iter().find(|candidate| candidate.name == name).map(|found| replica(environment, found))
}

/// A member pgfleet created that left the configuration, from what state
/// recorded of it (its runtime; for a record from before runtimes were
/// recorded, its primary's).
pub fn departed_member(environment: &Environment, name: &str, owned: &Owned) -> Option<ClusterPlacement> {
    let data_dir = owned.path.clone()?;
    let primary = &environment.primary;
    let kind = owned.runtime.unwrap_or(primary.runtime);
    Some(ClusterPlacement {
        host: owned.host.clone(),
        address: owned.listen.clone().unwrap_or_default(),
        port: owned.port.unwrap_or(0),
        version: primary.version,
        runtime: kind,
        layout: runtime::of(kind).cluster_layout(identity(environment, name), &data_dir, primary.version),
    })
}

/// The pooler in front of member `fronts`, when the environment has
/// poolers and that member exists.
pub fn pooler(environment: &Environment, fronts: &str) -> Option<PoolerPlacement> {
    let pooler = environment.pooler.as_ref()?;
    let cluster = member(environment, fronts)?;
    let port = if fronts == PRIMARY { pooler.port } else { pooler.replica_port };
    // The primary's pooler runs where the YAML puts it (the application's
    // host, say); a replica's, beside its replica. Its files are at the same
    // path as beside the cluster.
    let (host, address) = if fronts == PRIMARY {
        (pooler.host.clone(), pooler.address.clone())
    } else {
        (cluster.host.clone(), cluster.address.clone())
    };
    // The primary's pooler stays where the application connects when the
    // role moves: its files stay beside the member the YAML declares
    // under `primary:`, whichever member it fronts now.
    let beside = if fronts == PRIMARY { declared_primary(environment) } else { cluster.clone() };
    Some(PoolerPlacement {
        layout: beside.runtime().pooler_layout(pooler_identity(environment, fronts), &beside.layout.home, port),
        host,
        address,
        port,
        cluster_address: cluster.address,
        cluster_port: cluster.port,
        fronts: fronts.to_owned(),
        runtime: beside.runtime,
    })
}

/// A pooler pgfleet started that left the configuration.
pub fn departed_pooler(environment: &Environment, fronts: &str, owned: &Owned) -> Option<PoolerPlacement> {
    let runtime = environment.primary.runtime;
    let ini = owned.path.clone()?;
    let home = ini.parent().map(PathBuf::from)?;
    // State written before ports were recorded names the port only in the
    // ini's file name.
    let port = owned.port.or_else(|| ini.file_stem()?.to_str()?.strip_prefix("pgbouncer-")?.parse().ok())?;
    Some(PoolerPlacement {
        host: owned.host.clone(),
        address: owned.listen.clone().unwrap_or_default(),
        port,
        cluster_address: String::new(),
        cluster_port: 0,
        fronts: fronts.to_owned(),
        runtime,
        layout: runtime::of(runtime).pooler_layout(pooler_identity(environment, fronts), &home, port),
    })
}

/// Every pooler of the environment: the primary's first, then one per
/// replica in declaration order.
pub fn poolers(environment: &Environment) -> Vec<PoolerPlacement> {
    std::iter::once(PRIMARY)
        .chain(environment.replicas.iter().map(|replica| replica.name.as_str()))
        .filter_map(|fronts| pooler(environment, fronts))
        .collect()
}
