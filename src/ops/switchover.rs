//! `pgfleet switchover` and `pgfleet failover`: move the primary role.
//! Lock the environment's state, observe, check and plan the operation
//! (`plan::role_change`), show it, run it step by step (journaled: a
//! killed run is finished by the next), then plan what the new roles need
//! and apply it, and insist that the plan is empty.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::apply::{Progress, boxed, confirm, connect_all, summary};
use super::{Error, Outcome};
use crate::action::{Action, ActionError};
use crate::address::Address;
use crate::apply::{self, Journal};
use crate::exit::Exit;
use crate::observe;
use crate::operation::Operation;
use crate::plan::role_change::{self, Candidate};
use crate::plan::{self, render};
use crate::printer::Printer;
use crate::state::{self, State, Writer};
use crate::topology::Topology;
use crate::transport::Remote;

pub struct Options<'a> {
    pub file: &'a Path,
    pub environment: &'a str,
    pub auto_approve: bool,
    pub lock_timeout: Duration,
}

/// What the operator asked for.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    Switchover { to: &'a str },
    Failover { to: Option<&'a str>, fence: bool, old_primary_is_down: bool },
    RecordOnly { to: &'a str },
}

/// When the steps that bound the application's outage finished.
#[derive(Debug, Default)]
struct Timings {
    paused: Option<Instant>,
    resumed: Option<Instant>,
    promoted: Option<Instant>,
}

/// Saves each step through the state store, shows it, and notes the times
/// of the steps the summary reports.
struct Recorder<'a, 'store> {
    writer: &'a mut Writer<'store>,
    progress: &'a Progress<'a>,
    timings: Arc<Mutex<Timings>>,
}

impl Journal for Recorder<'_, '_> {
    fn save<'a>(&'a mut self, state: &'a mut State) -> apply::Saving<'a> {
        let writer = &mut *self.writer;
        Box::pin(async move { writer.save(state).await })
    }

    fn step(&mut self, address: &Address, action: &Action, result: Result<Duration, &ActionError>) {
        if result.is_ok()
            && let Ok(mut timings) = self.timings.lock()
        {
            let now = Some(Instant::now());
            match action {
                Action::PausePooler { .. } => timings.paused = now,
                Action::ResumePooler { .. } => timings.resumed = now,
                Action::Promote { .. } => timings.promoted = now,
                _ => {}
            }
        }
        self.progress.step(address, &action.describe(), result);
    }

    fn progress(&mut self, address: &Address, action: &Action, done: u64, total: Option<u64>) {
        self.progress.bytes(address, &action.describe(), done, total);
    }
}

fn operation_id(kind: &str, environment: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{kind}:{environment}:{nanos:x}")
}

fn candidates_table(candidates: &[Candidate], chosen: &str) -> String {
    let mut text = String::from("Candidates (freshest first):\n");
    for candidate in candidates {
        let bytes = candidate
            .lost_bytes
            .map_or_else(|| "unknown (the old primary is not running)".to_owned(), |bytes| format!("{bytes} bytes"));
        let seconds = candidate.lost_seconds.map_or_else(|| "unknown".to_owned(), |seconds| format!("{seconds:.1} s"));
        let mark = if candidate.name == chosen { "→" } else { " " };
        text.push_str(&format!(
            "  {mark} {}: not received {bytes}; since its last replayed transaction {seconds}\n",
            candidate.name
        ));
    }
    text
}

fn operation_text(operation: &Operation, done: &std::collections::BTreeSet<usize>) -> String {
    let mut text = format!("pgfleet will run `{}`:\n", operation.description);
    for (index, step) in operation.steps.iter().enumerate() {
        let mark = if done.contains(&index) { "✓" } else { " " };
        text.push_str(&format!("  {mark} {:>2}. {}: {}\n", index + 1, step.address, step.action.describe()));
        for undo in &step.on_failure {
            text.push_str(&format!("         on failure: {}\n", undo.action.describe()));
        }
    }
    text
}

pub fn run(printer: &Printer, options: &Options<'_>, request: Request<'_>) -> Outcome {
    let declared = super::load_topology(options.file)?;
    if declared.environment(options.environment).is_none() {
        let known: Vec<&str> = declared.environments.iter().map(|environment| environment.id.as_str()).collect();
        return Err(Error::UnknownEnvironment { id: options.environment.to_owned(), known: known.join(", ") });
    }
    plan::check_static(&declared).map_err(Error::refused)?;
    let store = state::open(&declared.state)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Runtime { source })?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let environments = vec![options.environment.to_owned()];
    let (mut writer, mut state) =
        runtime.block_on(Writer::lock(&*store, &environments, &command, options.lock_timeout))?;
    let mut topology = crate::roles::current(&declared, &state);
    let departed = super::with_departed_hosts(&mut topology, &state);
    let connections = runtime.block_on(connect_all_reachable(&topology, &state, &departed, request))?;
    let reuse =
        observe::Options { connector: Arc::new(observe::Reuse(connections.clone())), ..observe::Options::default() };
    let observed = runtime.block_on(observe::observe_with(&topology, &reuse));

    let id = options.environment;
    let (operation, failover) = match state.pending.get(id) {
        Some(pending) => {
            printer.note(&format!("`{}` stopped part-way earlier: finishing it.", pending.description));
            (pending.clone(), None)
        }
        None => match request {
            Request::Switchover { to } => {
                let operation = role_change::switchover(&topology, &observed, id, to, &operation_id("switchover", id))
                    .map_err(|refusal| Error::RoleRefused { refusal })?;
                (operation, None)
            }
            Request::Failover { to, fence, old_primary_is_down } => {
                let planned = role_change::failover(
                    &topology,
                    &observed,
                    id,
                    to,
                    fence,
                    old_primary_is_down,
                    &operation_id("failover", id),
                )
                .map_err(|refusal| Error::RoleRefused { refusal })?;
                printer.out(&candidates_table(&planned.candidates, &planned.chosen));
                (planned.operation.clone(), Some(planned))
            }
            Request::RecordOnly { to } => {
                let operation = role_change::record_only(&topology, &observed, id, to, &operation_id("record", id))
                    .map_err(|refusal| Error::RoleRefused { refusal })?;
                (operation, None)
            }
        },
    };
    let done = state.finished_steps(&operation.id);
    printer.out(&operation_text(&operation, &done));
    if let Some(planned) = &failover {
        printer.out(&match planned.fences {
            true => "The old primary is fenced first: stopped, and left with a standby.signal so nothing restarts it as a primary.\n".to_owned(),
            false => "The old primary is not reachable: it is not fenced, on your statement that it is down (recorded).\n".to_owned(),
        });
    }
    if !state.pending.contains_key(id) && !options.auto_approve && !confirm(printer) {
        printer.note("Cancelled; nothing was changed.");
        return Ok(Exit::Error);
    }

    let hosts = boxed(&connections);
    state.record_reach(&topology.hosts);
    state.pending.insert(id.to_owned(), operation.clone());
    runtime.block_on(writer.save(&mut state))?;

    let progress = Progress::new(printer);
    let timings = Arc::new(Mutex::new(Timings::default()));
    let mut recorder = Recorder { writer: &mut writer, progress: &progress, timings: timings.clone() };
    let started = Instant::now();
    // A failover measures the first write that succeeds after the
    // promotion, while the rest of the operation (the rejoin) runs on.
    let after_roles = failover.as_ref().and_then(|planned| {
        let mut after = topology.clone();
        let environment = after.environments.iter_mut().find(|environment| environment.id == id)?;
        *environment = crate::roles::with_primary(environment, &planned.chosen)?;
        Some(after)
    });
    let finished = std::sync::atomic::AtomicBool::new(false);
    let (result, first_write) = runtime.block_on(async {
        let run = async {
            let result = apply::run_operation(&operation, &topology, &hosts, &mut state, &mut recorder).await;
            finished.store(true, std::sync::atomic::Ordering::SeqCst);
            result
        };
        let watch = async {
            let after = after_roles.as_ref()?;
            loop {
                let promoted = timings.lock().ok().and_then(|timings| timings.promoted);
                if let Some(promoted) = promoted {
                    return first_write(after, id, &hosts, promoted).await;
                }
                if finished.load(std::sync::atomic::Ordering::SeqCst) {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::join!(run, watch)
    });
    if let Err(error) = result {
        progress.finish();
        runtime.block_on(writer.save(&mut state))?;
        printer.error(&error);
        if state.pending.contains_key(id) {
            printer.note(&format!(
                "`{}` stopped after the promotion: run the same command again (or `pgfleet apply`) to finish it.",
                operation.description
            ));
            return Ok(Exit::Partial);
        }
        printer.note(&format!("`{}` was undone: nothing changed.", operation.description));
        return Ok(Exit::Error);
    }

    // The new roles: plan what they need (the siblings' upstream, slots,
    // poolers) and apply it; then nothing may be left.
    let topology = crate::roles::current(&topology, &state);
    let after = runtime.block_on(observe::observe_with(&topology, &reuse));
    let next = plan::plan(&topology, &after, &state).map_err(Error::refused)?;
    if !next.is_empty() {
        progress.println(&render::text(&next, printer.color_out()));
        let outcome = runtime.block_on(apply::apply(&next, &topology, &hosts, &mut state, &mut recorder));
        if !outcome.complete() {
            progress.finish();
            runtime.block_on(writer.save(&mut state))?;
            printer.out(&summary(&outcome));
            return Ok(Exit::Partial);
        }
    }
    progress.finish();
    let last = runtime.block_on(observe::observe_with(&topology, &reuse));
    let remaining = plan::plan(&topology, &last, &state).map_err(Error::refused)?;
    runtime.block_on(writer.save(&mut state))?;
    if !remaining.is_empty() {
        printer.out(&render::text(&remaining, printer.color_out()));
        return Err(Error::NotConverged {
            addresses: remaining.changes().map(|change| change.address.to_string()).collect::<Vec<_>>().join(", "),
        });
    }
    printer.out(&report(&topology, &state, id, started.elapsed(), &timings, first_write));
    Ok(Exit::Ok)
}

/// Connects every host; for a failover, a host that cannot be reached is
/// left out (the old primary's, most likely) rather than stopping it: the
/// preflight decides what that means.
async fn connect_all_reachable(
    topology: &Topology,
    state: &State,
    departed: &[String],
    request: Request<'_>,
) -> Result<BTreeMap<String, Arc<dyn Remote>>, Error> {
    if matches!(request, Request::Switchover { .. }) {
        return connect_all(topology, state, departed).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for host in topology.hosts.values().cloned() {
        tasks.spawn(async move { (host.name.clone(), observe::connect(&host).await) });
    }
    let mut hosts = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((name, Ok(remote))) = joined {
            hosts.insert(name, Arc::from(remote));
        }
    }
    Ok(hosts)
}

/// Seconds from the promotion to the first write that succeeds through the
/// primary's pooler (or on the primary, without one).
async fn first_write(
    topology: &Topology,
    id: &str,
    hosts: &BTreeMap<String, Box<dyn Remote>>,
    promoted: Instant,
) -> Option<Duration> {
    let environment = topology.environment(id)?;
    let address = Address::new(id, crate::address::Kind::Cluster, crate::placement::PRIMARY);
    let context = crate::action::Context { topology, environment, address: &address, owned: None, hosts };
    let owner = &environment.database.owner;
    // Read, never generated here: a measurement must not rotate a password.
    let password = match crate::secrets::read(&environment.database.password, "the application's password") {
        Ok(Some(secret)) => secret,
        _ => {
            let primary = crate::placement::primary(environment);
            let kept = context.read(&primary.host, &primary.layout.role_password_file(owner)).await.ok()??;
            crate::secrets::Secret::new(String::from_utf8_lossy(&kept).trim_end_matches(['\n', '\r']).to_owned())
        }
    };
    let (host, target_address, port) = match crate::placement::pooler(environment, crate::placement::PRIMARY) {
        Some(pooler) => (pooler.host, pooler.address, pooler.port),
        None => {
            let primary = crate::placement::primary(environment);
            (primary.host, primary.address, primary.port)
        }
    };
    let remote = hosts.get(&host)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let target = crate::sql::SqlTarget {
            address: &target_address,
            port,
            user: owner,
            database: &environment.database.name,
            password: Some(password.expose()),
        };
        if let Ok(client) = crate::sql::connect(remote.as_ref(), target).await
            && client.simple_query("SELECT txid_current()").await.is_ok()
        {
            return Some(promoted.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn report(
    topology: &Topology,
    state: &State,
    id: &str,
    elapsed: Duration,
    timings: &Mutex<Timings>,
    first_write: Option<Duration>,
) -> String {
    let Some(environment) = topology.environment(id) else { return String::new() };
    let mut text = String::new();
    if let Some(change) = state.last_role_change(id) {
        text.push_str(&format!(
            "{} complete: `{}` is the primary of {id} (was `{}`), in {:.1} s.\n",
            match change.why {
                crate::state::RoleChangeKind::Switchover => "Switchover",
                crate::state::RoleChangeKind::Failover => "Failover",
                crate::state::RoleChangeKind::Recorded => "Recording",
            },
            change.to,
            change.from,
            elapsed.as_secs_f64()
        ));
        text.push_str(&format!("  data loss: {}\n", describe_loss(change)));
        if let Some(statement) = &change.statement {
            text.push_str(&format!("  recorded: {statement}\n"));
        }
    }
    if let Ok(timings) = timings.lock()
        && let (Some(paused), Some(resumed)) = (timings.paused, timings.resumed)
    {
        text.push_str(&format!(
            "  writes paused for {:.2} s (PAUSE to RESUME)\n",
            resumed.saturating_duration_since(paused).as_secs_f64()
        ));
    }
    if let Some(first) = first_write {
        text.push_str(&format!("  first write through the pooler {:.2} s after the promotion\n", first.as_secs_f64()));
    }
    let primary = crate::placement::primary(environment);
    text.push_str(&format!("  primary: {}:{} on host `{}`\n", primary.address, primary.port, primary.host));
    if let Some(pooler) = crate::placement::pooler(environment, crate::placement::PRIMARY) {
        text.push_str(&format!("  application endpoint (unchanged): {}:{}\n", pooler.address, pooler.port));
    }
    text
}

/// The measured data loss of a role change, for people.
pub fn describe_loss(change: &crate::state::RoleChange) -> String {
    match (change.why, change.lost_bytes, change.lost_milliseconds) {
        (crate::state::RoleChangeKind::Switchover, _, _) => {
            "none (the new primary replayed the old one's shutdown checkpoint)".into()
        }
        (_, Some(bytes), Some(ms)) => {
            format!(
                "{bytes} bytes of WAL not received; {:.1} s since the last replayed transaction",
                ms as f64 / 1000.0
            )
        }
        (_, None, Some(ms)) => format!(
            "unknown in bytes (the old primary was not running); {:.1} s since the last replayed transaction",
            ms as f64 / 1000.0
        ),
        (_, Some(bytes), None) => format!("{bytes} bytes of WAL not received"),
        (_, None, None) => "not measured".into(),
    }
}
