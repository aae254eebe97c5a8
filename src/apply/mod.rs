//! apply: runs a plan's actions in its dependency order, journaling each
//! start and end to state before going on. When an action fails, its
//! change stops, every later change that depends on it is skipped, and the
//! independent ones still run; a rerun converges.
//!
//! Independent changes run concurrently, `PARALLEL_CHANGES` at most; a
//! change starts once everything it depends on (in the resource graph) has
//! succeeded, and at most one base backup per primary runs at a time.
//! Deletions run last, one by one, in plan order (dependents first).

mod error;

use std::collections::BTreeMap;
use std::time::Instant;

use crate::action::{Action, ActionError, Context};
use crate::address::Address;
use crate::graph::ResourceGraph;
use crate::inventory::Item;
use crate::operation::Operation;
use crate::plan::{ChangeKind, Plan, ResourceChange};
use crate::state::{JournalEvent, OperationStep, Owned, Reach, State, StateError};
use crate::topology::Topology;
use crate::transport::Remote;
pub use error::ApplyError;

/// What happened to each change.
#[derive(Debug, Default)]
pub struct Outcome {
    pub done: Vec<Address>,
    pub failed: Vec<(Address, ApplyError)>,
    pub skipped: Vec<Address>,
}

impl Outcome {
    pub fn complete(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty()
    }
}

/// A journal save in progress, boxed so `Journal` can be a trait object.
pub type Saving<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StateError>> + Send + 'a>>;

/// Called at each step so the caller can persist state and show progress.
pub trait Journal {
    /// Persists `state` before apply goes on. Async, because a state store
    /// may wait on a database, and apply calls it from its scheduler.
    fn save<'a>(&'a mut self, state: &'a mut State) -> Saving<'a>;
    fn step(&mut self, address: &Address, action: &Action, result: Result<std::time::Duration, &ActionError>);
    /// A long step's bytes done so far (and the total when known), while it
    /// runs.
    fn progress(&mut self, _address: &Address, _action: &Action, _done: u64, _total: Option<u64>) {}
}

/// Runs `action`, and while it runs reports its progress to the journal
/// four times a second when it has a probe.
async fn execute_watched(
    action: &Action,
    context: &Context<'_>,
    shared: &tokio::sync::Mutex<Shared<'_>>,
) -> Result<(), ActionError> {
    let Some(probe) = action.progress_probe(context).await else { return action.execute(context).await };
    let running = action.execute(context);
    tokio::pin!(running);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        tokio::select! {
            result = &mut running => return result,
            _ = tick.tick() => {
                let Ok(remote) = context.remote(&probe.host) else { continue };
                let Ok(output) = remote.exec(&probe.command, b"", crate::transport::COMMAND_TIMEOUT).await else { continue };
                if let Ok(done) = output.stdout_text().trim().parse::<u64>() {
                    shared.lock().await.journal.progress(context.address, action, done, probe.total);
                }
            }
        }
    }
}

/// Where a resource pgfleet creates (or imports) lives, from the
/// inventory's placements, and how its host is reached, for ownership.
pub fn ownership(topology: &Topology, address: &Address) -> Option<Owned> {
    let environment = topology.environment(&address.environment)?;
    let resource = crate::inventory::Inventory::of_environment(environment).get(address)?.clone();
    let runtime = match &resource.item {
        Item::Member { placement, .. } => Some(placement.runtime),
        _ => None,
    };
    let owned = |host: String, path: Option<std::path::PathBuf>, listen: Option<(String, u16)>| Owned {
        reach: topology.hosts.get(&host).map(|found| Reach::from(&found.transport)),
        host,
        path,
        port: listen.as_ref().map(|(_, port)| *port),
        listen: listen.map(|(address, _)| address),
        depends_on: resource.depends_on.clone(),
        runtime,
    };
    Some(match resource.item {
        // Odoo's file is the operator's: pgfleet keeps keys in it, never
        // owns it.
        Item::Odoo(_) => return None,
        Item::Member { placement, .. } => {
            owned(placement.host, Some(placement.layout.data_dir), Some((placement.address, placement.port)))
        }
        Item::Pooler(placement) => {
            owned(placement.host, Some(placement.layout.ini), Some((placement.address, placement.port)))
        }
        Item::Tunnel { replica } => owned(
            replica.host.clone(),
            Some(crate::desired::tunnel::helper_dir(environment, replica, "tunnel")),
            Some(crate::desired::tunnel::local_end(replica)),
        ),
        Item::Filestore { replica } => match environment.replicas.iter().find(|found| found.name == replica) {
            Some(replica) => {
                owned(replica.host.clone(), Some(crate::desired::filestore::dir(environment, replica)), None)
            }
            None => owned(environment.primary.host.clone(), None, None),
        },
        Item::Role { .. } | Item::Hba | Item::Database { .. } | Item::Slot { .. } | Item::Backup => {
            owned(environment.primary.host.clone(), None, None)
        }
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
    // Operations span resources in an order of their own: after the
    // changes, one at a time, and only when every change succeeded.
    for operation in &plan.operations {
        if !outcome.complete() {
            outcome.skipped.extend(operation.steps.iter().map(|step| step.address.clone()));
            continue;
        }
        if let Err(failure) = run_operation_shared(operation, topology, hosts, &shared).await {
            outcome.failed.push((failure.address().clone(), failure));
        }
    }
    outcome
}

/// Runs an operation's steps in order, skipping those the journal records
/// as finished (a killed operation resumes). When a step fails, the
/// compensations of every step that ran are run, latest first, and the
/// operation stops: before its point of no return it is undone (a rerun
/// starts it over), after it only what holds clients (a PAUSE) is
/// released, and a rerun finishes it. Each step runs in the roles state
/// records when it starts, so the steps after `RecordPrimary` act on the
/// new primary. The operation stays in `State::pending` until it finished
/// or was undone.
pub async fn run_operation(
    operation: &Operation,
    topology: &Topology,
    hosts: &BTreeMap<String, Box<dyn Remote>>,
    state: &mut State,
    journal: &mut dyn Journal,
) -> Result<(), ApplyError> {
    let shared = tokio::sync::Mutex::new(Shared { state, journal });
    run_operation_shared(operation, topology, hosts, &shared).await
}

async fn run_operation_shared(
    operation: &Operation,
    topology: &Topology,
    hosts: &BTreeMap<String, Box<dyn Remote>>,
    shared: &tokio::sync::Mutex<Shared<'_>>,
) -> Result<(), ApplyError> {
    let done = shared.lock().await.state.finished_steps(&operation.id);
    let environment = operation.environment().to_owned();
    for (index, step) in operation.steps.iter().enumerate() {
        if done.contains(&index) {
            continue;
        }
        let journal = OperationStep {
            id: operation.id.clone(),
            step: index,
            payload: serde_json::to_value(&step.action).unwrap_or_default(),
            compensation: false,
            undoes: false,
        };
        if let Err(failure) = run_step(&step.address, &step.action, journal, topology, hosts, shared).await {
            let committed = operation.committed_before(index);
            for (undo_index, undo) in operation.compensations_for(index, committed).into_iter().enumerate() {
                let journal = OperationStep {
                    id: operation.id.clone(),
                    step: undo_index,
                    payload: serde_json::to_value(&undo.action).unwrap_or_default(),
                    compensation: true,
                    undoes: !committed,
                };
                // A compensation that fails too is reported with the step;
                // the others still run.
                if let Err(undo_failure) = run_step(&undo.address, &undo.action, journal, topology, hosts, shared).await
                {
                    return Err(ApplyError::NotUndone { failed: Box::new(failure), undo: vec![undo_failure] });
                }
            }
            if !committed {
                let mut guard = shared.lock().await;
                let Shared { state, journal } = &mut *guard;
                state.pending.remove(&environment);
                journal.save(state).await.map_err(ApplyError::journal(&step.address))?;
            }
            return Err(failure);
        }
        kill_if_asked(step.action.kind());
    }
    let mut guard = shared.lock().await;
    let Shared { state, journal } = &mut *guard;
    if state.pending.get(&environment).is_some_and(|pending| pending.id == operation.id) {
        state.pending.remove(&environment);
        if let Some(last) = operation.steps.last() {
            journal.save(state).await.map_err(ApplyError::journal(&last.address))?;
        }
    }
    Ok(())
}

/// Fault injection for the tests of a killed operation: with
/// `PGFLEET_TEST_KILL_AFTER_STEP=KIND`, pgfleet sends itself SIGKILL right
/// after a step of that kind finished and was journaled — what an
/// operator's kill -9 or a lost runner does.
fn kill_if_asked(kind: &str) {
    if std::env::var("PGFLEET_TEST_KILL_AFTER_STEP").is_ok_and(|asked| asked == kind) {
        let _ = std::process::Command::new("kill").args(["-KILL", &std::process::id().to_string()]).status();
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// One step of an operation, journaled before and after.
async fn run_step(
    address: &Address,
    action: &Action,
    journal: OperationStep,
    topology: &Topology,
    hosts: &BTreeMap<String, Box<dyn Remote>>,
    shared: &tokio::sync::Mutex<Shared<'_>>,
) -> Result<(), ApplyError> {
    let (owned, current) = {
        let mut guard = shared.lock().await;
        let Shared { state, journal: progress } = &mut *guard;
        state.journal_step(address, action.kind(), JournalEvent::Started, journal.clone());
        progress.save(state).await.map_err(ApplyError::journal(address))?;
        (state.owned.get(address).cloned(), crate::roles::current(topology, state))
    };
    let environment = current.environment(&address.environment).ok_or_else(|| ApplyError::UnknownEnvironment {
        address: address.clone(),
        environment: address.environment.clone(),
    })?;
    let context = Context { topology: &current, environment, address, owned: owned.as_ref(), hosts };
    let started = Instant::now();
    let result = execute_watched(action, &context, shared).await;
    let mut guard = shared.lock().await;
    let Shared { state, journal: progress } = &mut *guard;
    if let (Ok(()), Action::RecordPrimary { change }) = (&result, action) {
        let mut change = change.clone();
        change.at = crate::state::now();
        state.record_role_change(&address.environment, change);
    }
    progress.step(address, action, result.as_ref().map(|()| started.elapsed()));
    let event = if result.is_ok() { JournalEvent::Finished } else { JournalEvent::Failed };
    state.journal_step(address, action.kind(), event, journal);
    progress.save(state).await.map_err(ApplyError::journal(address))?;
    result.map_err(|source| ApplyError::Action { address: address.clone(), step: action.describe(), source })
}

async fn run_change(
    change: &ResourceChange,
    topology: &Topology,
    hosts: &BTreeMap<String, Box<dyn Remote>>,
    shared: &tokio::sync::Mutex<Shared<'_>>,
) -> Result<(), ApplyError> {
    let environment =
        topology.environment(&change.address.environment).ok_or_else(|| ApplyError::UnknownEnvironment {
            address: change.address.clone(),
            environment: change.address.environment.clone(),
        })?;
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
        let kind = action.kind();
        {
            let mut guard = shared.lock().await;
            let Shared { state, journal } = &mut *guard;
            state.journal(&change.address, kind, JournalEvent::Started);
            journal.save(state).await.map_err(ApplyError::journal(&change.address))?;
        }
        let context = Context { topology, environment, address: &change.address, owned: owned.as_ref(), hosts };
        let started = Instant::now();
        let result = execute_watched(action, &context, shared).await;
        let mut guard = shared.lock().await;
        let Shared { state, journal } = &mut *guard;
        journal.step(&change.address, action, result.as_ref().map(|()| started.elapsed()));
        let event = if result.is_ok() { JournalEvent::Finished } else { JournalEvent::Failed };
        state.journal(&change.address, kind, event);
        journal.save(state).await.map_err(ApplyError::journal(&change.address))?;
        if let Err(source) = result {
            return Err(ApplyError::Action { address: change.address.clone(), step: action.describe(), source });
        }
    }
    if change.action == ChangeKind::Delete {
        let mut guard = shared.lock().await;
        let Shared { state, journal } = &mut *guard;
        state.owned.remove(&change.address);
        journal.save(state).await.map_err(ApplyError::journal(&change.address))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Disruption;
    use crate::operation::{Compensation, Step};
    use crate::placement;
    use crate::transport::scripted::{Effect, Scripted};
    use crate::transport::shell_quote;

    const YAML: &str = "version: 1\nhosts:\n  h: { transport: local }\nenvironments:\n  - id: a\n    primary: { host: h, address: 127.0.0.1, data_dir: /srv/a, tuning: none }\n    replicas:\n      - { name: r1, host: h, address: 127.0.0.3, data_dir: /srv/a-r1 }\n  - id: b\n    primary: { host: h, address: 127.0.0.2, data_dir: /srv/b, tuning: none }\n";

    struct Quiet;

    impl Journal for Quiet {
        fn save<'a>(&'a mut self, _state: &'a mut State) -> Saving<'a> {
            Box::pin(async { Ok(()) })
        }

        fn step(&mut self, _: &Address, _: &Action, _: Result<std::time::Duration, &ActionError>) {}
    }

    fn topology() -> Topology {
        crate::config::load::parse("t.yaml", YAML.into()).unwrap().resolve_in(std::path::Path::new("/")).unwrap()
    }

    /// A host whose members start, stop and report running through the
    /// very commands their runtime writes.
    fn host(topology: &Topology) -> Scripted {
        let host = Scripted::new("h");
        for environment in &topology.environments {
            let members = std::iter::once(placement::PRIMARY.to_owned())
                .chain(environment.replicas.iter().map(|replica| replica.name.clone()));
            for name in members {
                let member = placement::member(environment, &name).unwrap();
                let (runtime, layout) = (member.runtime(), &member.layout);
                let flag = format!("{}.{name}", environment.id);
                let home = shell_quote(&layout.home.to_string_lossy());
                host.on(runtime.is_running(layout), Effect::Test(flag.clone()))
                    .on(runtime.start(layout), Effect::Set(flag.clone()))
                    .on(runtime.stop(layout), Effect::Clear(flag))
                    .on(format!("mkdir -p {home} && chmod 0700 {home}"), Effect::Print(String::new()));
            }
        }
        host
    }

    fn change(address: &str, action: ChangeKind, actions: Vec<Action>) -> ResourceChange {
        ResourceChange {
            address: address.parse().unwrap(),
            action,
            reason: "test".into(),
            disruption: Disruption::None,
            diff: None,
            rpo: None,
            drift: crate::plan::DriftClass::Config,
            actions,
        }
    }

    fn plan_of(changes: Vec<ResourceChange>) -> Plan {
        Plan {
            format_version: crate::plan::FORMAT_VERSION,
            resource_changes: changes,
            quota: None,
            warnings: Vec::new(),
            unreachable: Vec::new(),
            fingerprint: String::new(),
            notes: Vec::new(),
            operations: Vec::new(),
            environments: Vec::new(),
        }
    }

    fn run(topology: &Topology, host: &Scripted, plan: &Plan, state: &mut State) -> Outcome {
        let hosts: BTreeMap<String, Box<dyn Remote>> = BTreeMap::from([("h".to_owned(), Box::new(host.clone()) as _)]);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(apply(plan, topology, &hosts, state, &mut Quiet))
    }

    #[test]
    fn starting_twice_starts_once_and_journals_each_run() {
        let topology = topology();
        let host = host(&topology);
        let primary = placement::member(&topology.environments[0], "primary").unwrap();
        let start = primary.runtime().start(&primary.layout);
        let plan = plan_of(vec![change(
            "a.cluster.primary",
            ChangeKind::Update,
            vec![Action::Start { member: "primary".into() }],
        )]);
        let mut state = State::default();
        for _ in 0..2 {
            let outcome = run(&topology, &host, &plan, &mut state);
            assert!(outcome.complete(), "{:?}", outcome.failed);
        }
        assert!(host.flag("a.primary"));
        assert_eq!(host.count(&start), 1, "a running cluster is not started again: {:?}", host.ran());
        let events: Vec<JournalEvent> = state.journal.iter().map(|entry| entry.event).collect();
        assert_eq!(
            events,
            [JournalEvent::Started, JournalEvent::Finished, JournalEvent::Started, JournalEvent::Finished]
        );
        assert!(state.journal.iter().all(|entry| entry.action == "start"));
    }

    #[test]
    fn a_removal_killed_after_its_first_step_finishes_the_same_on_rerun() {
        let topology = topology();
        let replica = placement::member(&topology.environments[0], "r1").unwrap();
        let remove = format!(
            "{} && rm -rf -- {}",
            replica.runtime().remove(&replica.layout),
            shell_quote(&replica.layout.home.to_string_lossy())
        );
        let steps = || {
            vec![Action::Stop { member: "r1".into() }, Action::RemoveDataDir { member: "r1".into(), and_home: true }]
        };
        let run_from_scratch = |kill_after_first: bool| {
            let host = host(&topology);
            host.on(remove.clone(), Effect::RemoveTree(replica.layout.data_dir.clone()));
            host.set_flag("a.r1", true);
            host.put_file(&replica.layout.data_dir.join("PG_VERSION"), b"15\n");
            let mut state = State::default();
            if kill_after_first {
                let mut first = steps();
                first.truncate(1);
                run(&topology, &host, &plan_of(vec![change("a.replica.r1", ChangeKind::Delete, first)]), &mut state);
            }
            let outcome =
                run(&topology, &host, &plan_of(vec![change("a.replica.r1", ChangeKind::Delete, steps())]), &mut state);
            assert!(outcome.complete(), "{:?}", outcome.failed);
            (host.flag("a.r1"), host.file(&replica.layout.data_dir.join("PG_VERSION")), host.count(&remove))
        };
        let once = run_from_scratch(false);
        assert_eq!(once, (false, None, 1));
        assert_eq!(run_from_scratch(true), once, "a rerun after a kill ends where one run does");
    }

    #[test]
    fn a_failed_change_skips_its_dependents_and_independent_ones_still_run() {
        let topology = topology();
        let host = host(&topology);
        let a = placement::member(&topology.environments[0], "primary").unwrap();
        host.on(a.runtime().start(&a.layout), Effect::Fail(1, "could not bind".into()));
        let start =
            |address: &str| change(address, ChangeKind::Update, vec![Action::Start { member: "primary".into() }]);
        let hba = change(
            "a.hba.replication",
            ChangeKind::Update,
            vec![Action::WriteHba { member: "primary".into() }, Action::Reload { member: "primary".into() }],
        );
        let plan = plan_of(vec![start("a.cluster.primary"), hba, start("b.cluster.primary")]);
        let outcome = run(&topology, &host, &plan, &mut State::default());
        let failed: Vec<String> = outcome.failed.iter().map(|(address, _)| address.to_string()).collect();
        assert_eq!(failed, ["a.cluster.primary"]);
        assert_eq!(outcome.skipped.iter().map(ToString::to_string).collect::<Vec<_>>(), ["a.hba.replication"]);
        assert_eq!(outcome.done.iter().map(ToString::to_string).collect::<Vec<_>>(), ["b.cluster.primary"]);
        assert!(host.flag("b.primary") && !host.flag("a.primary"));
    }

    fn three_steps() -> Operation {
        let step = |address: &str, action: Action, undo: Option<Action>| Step {
            address: address.parse().unwrap(),
            action,
            on_failure: undo
                .map(|action| Compensation { address: address.parse().unwrap(), action, undo: true })
                .into_iter()
                .collect(),
            commits: false,
        };
        Operation {
            id: "op-1".into(),
            description: "stop a, start b, start r1".into(),
            steps: vec![
                step(
                    "a.cluster.primary",
                    Action::Stop { member: "primary".into() },
                    Some(Action::Start { member: "primary".into() }),
                ),
                step("b.cluster.primary", Action::Start { member: "primary".into() }, None),
                step("a.replica.r1", Action::Start { member: "r1".into() }, None),
            ],
        }
    }

    fn operation_steps(state: &State) -> Vec<(usize, bool, JournalEvent)> {
        state
            .journal
            .iter()
            .filter_map(|entry| entry.operation.as_ref().map(|step| (step.step, step.compensation, entry.event)))
            .collect()
    }

    /// The third step fails: the compensations of the steps that ran are
    /// run latest first, and a rerun starts the operation over.
    #[test]
    fn a_failed_operation_step_runs_its_compensations_and_a_rerun_starts_over() {
        let topology = topology();
        let host = host(&topology);
        let primary = placement::member(&topology.environments[0], "primary").unwrap();
        let replica = placement::member(&topology.environments[0], "r1").unwrap();
        let start_replica = replica.runtime().start(&replica.layout);
        host.on(start_replica.clone(), Effect::Fail(1, "no".into()));
        let mut plan = plan_of(Vec::new());
        plan.operations.push(three_steps());
        host.set_flag("a.primary", true);
        let mut state = State::default();

        let failed = run(&topology, &host, &plan, &mut state);
        assert_eq!(failed.failed.iter().map(|(address, _)| address.to_string()).collect::<Vec<_>>(), ["a.replica.r1"]);
        assert!(host.flag("a.primary"), "the stopped primary was started again by its compensation");
        assert_eq!(
            operation_steps(&state),
            [
                (0, false, JournalEvent::Started),
                (0, false, JournalEvent::Finished),
                (1, false, JournalEvent::Started),
                (1, false, JournalEvent::Finished),
                (2, false, JournalEvent::Started),
                (2, false, JournalEvent::Failed),
                (0, true, JournalEvent::Started),
                (0, true, JournalEvent::Finished),
            ]
        );

        host.on(start_replica, Effect::Set("a.r1".into()));
        let rerun = run(&topology, &host, &plan, &mut state);
        assert!(rerun.complete(), "{:?}", rerun.failed);
        assert!(host.flag("a.r1") && !host.flag("a.primary"));
        assert_eq!(host.count(&primary.runtime().stop(&primary.layout)), 2, "an undone operation starts over");
    }

    /// A run killed after two steps left them journaled as finished: the
    /// rerun runs only the third.
    #[test]
    fn a_killed_operation_resumes_after_its_finished_steps() {
        let topology = topology();
        let host = host(&topology);
        let primary = placement::member(&topology.environments[0], "primary").unwrap();
        let b = placement::member(&topology.environments[1], "primary").unwrap();
        let operation = three_steps();
        let mut state = State::default();
        for (index, step) in operation.steps.iter().enumerate().take(2) {
            let journal = OperationStep {
                id: operation.id.clone(),
                step: index,
                payload: serde_json::to_value(&step.action).unwrap(),
                compensation: false,
                undoes: false,
            };
            state.journal_step(&step.address, step.action.kind(), JournalEvent::Started, journal.clone());
            state.journal_step(&step.address, step.action.kind(), JournalEvent::Finished, journal);
        }
        let mut plan = plan_of(Vec::new());
        plan.operations.push(operation);
        let outcome = run(&topology, &host, &plan, &mut state);
        assert!(outcome.complete(), "{:?}", outcome.failed);
        assert!(host.flag("a.r1"));
        assert_eq!(host.count(&primary.runtime().stop(&primary.layout)), 0);
        assert_eq!(host.count(&b.runtime().start(&b.layout)), 0);
        assert_eq!(
            operation_steps(&state)[4..],
            [(2, false, JournalEvent::Started), (2, false, JournalEvent::Finished)]
        );
    }
}
