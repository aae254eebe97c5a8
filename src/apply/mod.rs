//! apply: runs a plan's actions in its dependency order, journaling each
//! start and end to state before going on. When an action fails, its
//! change stops, every later change that depends on it is skipped, and the
//! independent ones still run; a rerun converges.
//!
//! Independent changes run concurrently, `PARALLEL_CHANGES` at most; a
//! change starts once everything it depends on (in the resource graph) has
//! succeeded, and at most one base backup per primary runs at a time.
//! Deletions run last, one by one, in plan order (dependents first).

use std::collections::BTreeMap;
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

/// Changes in flight at once.
pub const PARALLEL_CHANGES: usize = 4;

/// The state and journal, shared by the changes running at once.
struct Shared<'a> {
    state: &'a mut State,
    journal: &'a mut dyn Journal,
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
    let changes: Vec<&ResourceChange> = plan.changes().collect();
    let (ordered, deletions): (Vec<&ResourceChange>, Vec<&ResourceChange>) =
        changes.into_iter().partition(|change| change.action != ChangeKind::Delete);
    let addresses: Vec<&Address> = ordered.iter().map(|change| &change.address).collect();
    // What each change waits for: the changes of its dependencies in this plan.
    let waits_for: Vec<Vec<usize>> = ordered
        .iter()
        .map(|change| {
            graph
                .dependencies(&change.address)
                .into_iter()
                .filter(|dependency| **dependency != change.address)
                .filter_map(|dependency| addresses.iter().position(|address| *address == dependency))
                .collect()
        })
        .collect();
    let base_backup_locks: BTreeMap<&str, tokio::sync::Semaphore> = topology
        .environments
        .iter()
        .map(|environment| (environment.id.as_str(), tokio::sync::Semaphore::new(1)))
        .collect();
    let shared = tokio::sync::Mutex::new(Shared { state, journal });

    #[derive(Clone, Copy, PartialEq)]
    enum Status {
        Waiting,
        Running,
        Done,
        Broken,
    }
    let mut status = vec![Status::Waiting; ordered.len()];
    let mut outcome = Outcome::default();
    let mut running = futures_util::stream::FuturesUnordered::new();
    loop {
        for index in 0..ordered.len() {
            if status[index] != Status::Waiting {
                continue;
            }
            if waits_for[index].iter().any(|&dependency| status[dependency] == Status::Broken) {
                status[index] = Status::Broken;
                outcome.skipped.push(ordered[index].address.clone());
                continue;
            }
            let ready = waits_for[index].iter().all(|&dependency| status[dependency] == Status::Done);
            if ready && running.len() < PARALLEL_CHANGES {
                status[index] = Status::Running;
                let change = ordered[index];
                let lock = change
                    .actions
                    .iter()
                    .any(|action| matches!(action, crate::action::Action::BaseBackup { .. }))
                    .then(|| base_backup_locks.get(change.address.environment.as_str()))
                    .flatten();
                let shared = &shared;
                running.push(async move {
                    let _permit = match lock {
                        Some(lock) => lock.acquire().await.ok(),
                        None => None,
                    };
                    (index, run_change(change, topology, hosts, shared).await)
                });
            }
        }
        let Some((index, result)) = futures_util::StreamExt::next(&mut running).await else { break };
        match result {
            Ok(()) => {
                status[index] = Status::Done;
                outcome.done.push(ordered[index].address.clone());
            }
            Err(message) => {
                status[index] = Status::Broken;
                outcome.failed.push((ordered[index].address.clone(), message));
            }
        }
    }
    // Anything never started waited on a broken change.
    for (index, change) in ordered.iter().enumerate() {
        if status[index] == Status::Waiting {
            outcome.skipped.push(change.address.clone());
        }
    }
    for change in deletions {
        match run_change(change, topology, hosts, &shared).await {
            Ok(()) => outcome.done.push(change.address.clone()),
            Err(message) => outcome.failed.push((change.address.clone(), message)),
        }
    }
    outcome
}

async fn run_change(
    change: &ResourceChange,
    topology: &Topology,
    hosts: &BTreeMap<String, Box<dyn Remote>>,
    shared: &tokio::sync::Mutex<Shared<'_>>,
) -> Result<(), String> {
    let environment = topology
        .environment(&change.address.environment)
        .ok_or_else(|| format!("environment {} is not in the configuration", change.address.environment))?;
    // Ownership is recorded before anything is created, so that a run killed
    // half-way leaves pgfleet able to finish or clean up what it started.
    let owned = {
        let mut guard = shared.lock().await;
        if matches!(change.action, ChangeKind::Create | ChangeKind::Replace)
            && let Some(owned) = ownership(topology, &change.address)
        {
            guard.state.owned.insert(change.address.clone(), owned);
        }
        guard.state.owned.get(&change.address).cloned()
    };
    for action in &change.actions {
        let kind = serde_json::to_value(action)
            .ok()
            .and_then(|value| value["kind"].as_str().map(str::to_owned))
            .unwrap_or_default();
        {
            let mut guard = shared.lock().await;
            let Shared { state, journal } = &mut *guard;
            state.journal(&change.address, &kind, JournalEvent::Started);
            journal.save(state)?;
        }
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
        let mut guard = shared.lock().await;
        let Shared { state, journal } = &mut *guard;
        journal.step(&change.address, &action.describe(), result.as_ref().map(|()| started.elapsed()));
        let event = if result.is_ok() { JournalEvent::Finished } else { JournalEvent::Failed };
        state.journal(&change.address, &kind, event);
        journal.save(state)?;
        if let Err(error) = result {
            return Err(failure_text(&error));
        }
    }
    if change.action == ChangeKind::Delete {
        let mut guard = shared.lock().await;
        let Shared { state, journal } = &mut *guard;
        state.owned.remove(&change.address);
        journal.save(state)?;
    }
    Ok(())
}

/// A failed action as the summary shows it: the error and its causes, and
/// the help line that says what to do next (a plain message has no other
/// way to carry it).
fn failure_text(error: &ActionError) -> String {
    let mut text = crate::observe::error_chain(error);
    if let Some(help) = miette::Diagnostic::help(error) {
        text.push_str(&format!("\n    help: {help}"));
    }
    text
}
