//! apply: runs a plan's actions in its dependency order, journaling each
//! start and end to state before going on. When an action fails, its
//! change stops, every later change that depends on it is skipped, and the
//! independent ones still run; a rerun converges.
//!
//! Changes run one at a time, in plan order (so at most one base backup per
//! primary runs at once).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::action::{ActionError, Context};
use crate::address::{Address, Kind};
use crate::desired::{self, PoolerSite};
use crate::graph::ResourceGraph;
use crate::plan::{ChangeKind, Plan, ResourceChange};
use crate::state::{JournalEvent, Owned, State};
use crate::topology::Topology;
use crate::transport::Remote;

/// What happened to each change.
#[derive(Debug, Default)]
pub struct Outcome {
    pub done: Vec<Address>,
    pub failed: Vec<(Address, String)>,
    pub skipped: Vec<Address>,
}

impl Outcome {
    pub fn complete(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty()
    }
}

/// Called at each step so the caller can persist state and show progress.
pub trait Journal {
    fn save(&mut self, state: &mut State) -> Result<(), String>;
    fn step(&mut self, address: &Address, description: &str, result: Result<std::time::Duration, &ActionError>);
}

/// Where a resource pgfleet creates lives, for ownership.
fn ownership(topology: &Topology, address: &Address) -> Option<Owned> {
    let environment = topology.environment(&address.environment)?;
    let primary = &environment.primary;
    let on_primary = |path: Option<std::path::PathBuf>| Owned { host: primary.host.clone(), path };
    Some(match address.kind {
        Kind::Cluster => on_primary(Some(primary.data_dir.clone())),
        Kind::Replica => {
            let replica = environment.replicas.iter().find(|replica| replica.name == address.name)?;
            Owned { host: replica.host.clone(), path: Some(replica.data_dir.clone()) }
        }
        Kind::Pooler => {
            let pooler = environment.pooler.as_ref()?;
            let site = match address.name.as_str() {
                "primary" => PoolerSite::Primary,
                name => PoolerSite::Replica(environment.replicas.iter().find(|replica| replica.name == name)?),
            };
            let place = desired::pooler_place(environment, pooler, site);
            Owned { host: place.host.clone(), path: Some(desired::pgbouncer_ini_path(&place)) }
        }
        _ => on_primary(None),
    })
}

/// Runs `plan` on the connected `hosts`, recording ownership and the
/// journal in `state` through `journal`.
pub async fn apply(
    plan: &Plan,
    topology: &Topology,
    hosts: &BTreeMap<String, Box<dyn Remote>>,
    state: &mut State,
    journal: &mut dyn Journal,
) -> Outcome {
    let graph = ResourceGraph::build(topology);
    let mut outcome = Outcome::default();
    let mut broken: BTreeSet<Address> = BTreeSet::new();
    for change in plan.changes() {
        let blocked_by =
            graph.dependencies(&change.address).into_iter().find(|dependency| broken.contains(*dependency));
        if blocked_by.is_some() {
            broken.insert(change.address.clone());
            outcome.skipped.push(change.address.clone());
            continue;
        }
        match run_change(change, topology, hosts, state, journal).await {
            Ok(()) => outcome.done.push(change.address.clone()),
            Err(message) => {
                broken.insert(change.address.clone());
                outcome.failed.push((change.address.clone(), message));
            }
        }
    }
    outcome
}

async fn run_change(
    change: &ResourceChange,
    topology: &Topology,
    hosts: &BTreeMap<String, Box<dyn Remote>>,
    state: &mut State,
    journal: &mut dyn Journal,
) -> Result<(), String> {
    let environment = topology
        .environment(&change.address.environment)
        .ok_or_else(|| format!("environment {} is not in the configuration", change.address.environment))?;
    // Ownership is recorded before anything is created, so that a run killed
    // half-way leaves pgfleet able to finish or clean up what it started.
    if matches!(change.action, ChangeKind::Create | ChangeKind::Replace)
        && let Some(owned) = ownership(topology, &change.address)
    {
        state.owned.insert(change.address.clone(), owned);
    }
    let owned = state.owned.get(&change.address).cloned();
    for action in &change.actions {
        let kind = serde_json::to_value(action)
            .ok()
            .and_then(|value| value["kind"].as_str().map(str::to_owned))
            .unwrap_or_default();
        state.journal(&change.address, &kind, JournalEvent::Started);
        journal.save(state)?;
        let context = Context {
            topology,
            environment,
            address: &change.address,
            change: change.action,
            owned: owned.as_ref(),
            hosts,
        };
        let started = Instant::now();
        let result = action.execute(&context).await;
        journal.step(&change.address, &action.describe(), result.as_ref().map(|()| started.elapsed()));
        match result {
            Ok(()) => {
                state.journal(&change.address, &kind, JournalEvent::Finished);
                journal.save(state)?;
            }
            Err(error) => {
                state.journal(&change.address, &kind, JournalEvent::Failed);
                journal.save(state)?;
                return Err(crate::observe::error_chain(&error));
            }
        }
    }
    if change.action == ChangeKind::Delete {
        state.owned.remove(&change.address);
        journal.save(state)?;
    }
    Ok(())
}
