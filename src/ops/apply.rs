//! `pgfleet apply`: lock state, observe, plan, confirm, run the actions, then
//! observe again and insist that the plan is empty.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::plan::{SavedPlan, sha256_hex};
use super::{Error, Outcome};
use crate::action::ActionError;
use crate::address::{Address, Kind};
use crate::apply::{self, Journal};
use crate::config::load;
use crate::exit::Exit;
use crate::observe;
use crate::plan::{self, render};
use crate::printer::Printer;
use crate::state::{self, State, Writer};
use crate::topology::Topology;
use crate::transport::Remote;

pub struct Options<'a> {
    pub file: &'a Path,
    pub plan_file: Option<&'a Path>,
    pub auto_approve: bool,
    pub lock_timeout: Duration,
    pub targets: &'a [Address],
    pub environments: &'a [String],
    pub replace: &'a [Address],
    pub force: bool,
}

/// Shows each step on stderr; knows nothing of persistence.
pub(super) struct Progress<'a> {
    printer: &'a Printer,
    spinner: Option<ProgressBar>,
    /// The step whose bytes are shown, and when they were first seen.
    copying: std::sync::Mutex<Option<(String, std::time::Instant, u64)>>,
}

impl Progress<'_> {
    pub(super) fn new(printer: &Printer) -> Progress<'_> {
        let spinner = std::io::stderr().is_terminal().then(|| {
            let spinner = ProgressBar::new_spinner();
            spinner.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            spinner.enable_steady_tick(Duration::from_millis(120));
            spinner
        });
        Progress { printer, spinner, copying: std::sync::Mutex::new(None) }
    }

    /// A long step's bytes on the spinner: done of total, and the rate
    /// since they were first seen. Off a terminal, nothing: each step
    /// still gets its one line when it ends.
    pub(super) fn bytes(&self, address: &Address, description: &str, done: u64, total: Option<u64>) {
        let Some(spinner) = &self.spinner else { return };
        let Ok(mut copying) = self.copying.lock() else { return };
        let key = address.to_string();
        let (since, first) = match &*copying {
            Some((step, since, first)) if *step == key => (*since, *first),
            _ => {
                *copying = Some((key, std::time::Instant::now(), done));
                (std::time::Instant::now(), done)
            }
        };
        let seconds = since.elapsed().as_secs_f64();
        let rate = if seconds > 0.5 {
            format!(", {}/s", super::status::human_size(((done - first.min(done)) as f64 / seconds) as u64))
        } else {
            String::new()
        };
        let of = total.map(|total| format!(" of {}", super::status::human_size(total))).unwrap_or_default();
        spinner.set_message(format!("{address}: {description}: {} copied{of}{rate}", super::status::human_size(done)));
    }

    pub(super) fn step(&self, address: &Address, description: &str, result: Result<Duration, &ActionError>) {
        if let Some(spinner) = &self.spinner {
            spinner.set_message(format!("{address}: {description}"));
        }
        let line = match result {
            Ok(elapsed) => format!("  ✓ {address}: {description} ({:.1}s)", elapsed.as_secs_f64()),
            Err(error) => format!("  ✗ {address}: {description}: {}", observe::error_chain(error)),
        };
        match &self.spinner {
            Some(spinner) => spinner.println(line),
            None => self.printer.note(&line),
        }
    }

    /// A line above the spinner (or on stderr).
    pub(super) fn println(&self, line: &str) {
        match &self.spinner {
            Some(spinner) => spinner.println(line.trim_end()),
            None => self.printer.note(line.trim_end()),
        }
    }

    pub(super) fn finish(&self) {
        if let Some(spinner) = &self.spinner {
            spinner.finish_and_clear();
        }
    }
}

/// Apply's journal: each step is saved through the state store and shown
/// by the progress reporter, two jobs that do not know of each other.
struct Recorder<'a, 'store> {
    writer: &'a mut Writer<'store>,
    progress: &'a Progress<'a>,
}

impl Journal for Recorder<'_, '_> {
    fn save<'a>(&'a mut self, state: &'a mut State) -> apply::Saving<'a> {
        let writer = &mut *self.writer;
        Box::pin(async move { writer.save(state).await })
    }

    fn step(&mut self, address: &Address, action: &crate::action::Action, result: Result<Duration, &ActionError>) {
        self.progress.step(address, &action.describe(), result);
    }

    fn progress(&mut self, address: &Address, action: &crate::action::Action, done: u64, total: Option<u64>) {
        self.progress.bytes(address, &action.describe(), done, total);
    }
}

/// One connection per host for the whole apply: its observation, its
/// actions and its final observation share them.
pub(super) async fn connect_all(
    topology: &Topology,
    state: &State,
    departed: &[String],
) -> Result<BTreeMap<String, Arc<dyn Remote>>, Error> {
    let mut tasks = tokio::task::JoinSet::new();
    for host in topology.hosts.values().cloned() {
        tasks.spawn(async move { (host.name.clone(), observe::connect(&host).await) });
    }
    let mut hosts = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok((name, connected)) = joined else { continue };
        let remote = match connected {
            Ok(remote) => remote,
            Err(source) if departed.contains(&name) => {
                let source = Box::new(source);
                return Err(Error::DepartedHostUnreachable { what: super::owned_on(state, &name), host: name, source });
            }
            Err(source) => return Err(Error::Connect(source)),
        };
        hosts.insert(name, Arc::from(remote));
    }
    Ok(hosts)
}

pub fn run(printer: &Printer, options: &Options<'_>) -> Outcome {
    if let Some(path) = options.plan_file
        && (!options.targets.is_empty()
            || !options.environments.is_empty()
            || !options.replace.is_empty()
            || options.force)
    {
        // A saved plan is what was reviewed: rebuilding or narrowing it
        // now would run something nobody saw.
        return Err(Error::SavedPlanIsFinal { path: path.display().to_string() });
    }
    let (document, saved) = match options.plan_file {
        Some(path) => {
            let bytes =
                std::fs::read(path).map_err(|source| Error::ReadPlan { path: path.display().to_string(), source })?;
            let saved: SavedPlan = serde_json::from_slice(&bytes)
                .map_err(|source| Error::PlanFormat { path: path.display().to_string(), source })?;
            let document = load::parse(&saved.config_file.display().to_string(), saved.config.clone())?;
            (document, Some(saved))
        }
        None => (load::load(options.file)?, None),
    };
    // A saved plan covers the environments it was made for.
    let environments = match &saved {
        Some(saved) => saved.plan.environments.clone(),
        None => options.environments.to_vec(),
    };
    let mut topology = super::only(document.resolve()?, &environments)?;
    check_addresses(&topology, options.targets, options.replace)?;
    plan::check_static(&topology).map_err(Error::refused)?;
    let config_hash = sha256_hex(document.source.text().as_bytes());
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let store = state::open(&topology.state)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Runtime { source })?;
    let environments: Vec<String> = topology.environments.iter().map(|environment| environment.id.clone()).collect();
    let (mut writer, mut state) =
        runtime.block_on(Writer::lock(&*store, &environments, &command, options.lock_timeout))?;

    topology = crate::roles::current(&topology, &state);
    let departed = super::with_departed_hosts(&mut topology, &state);
    let connections = runtime.block_on(connect_all(&topology, &state, &departed))?;
    let reuse =
        observe::Options { connector: Arc::new(observe::Reuse(connections.clone())), ..observe::Options::default() };
    let observed = runtime.block_on(observe::observe_with(&topology, &reuse));
    if let Some((host, reason, _)) = observed.unreachable().first() {
        return Err(Error::Unreachable {
            hosts: (*host).to_owned(),
            first: (*reason).to_owned(),
            help: "apply changes nothing while a host cannot be observed".into(),
        });
    }
    let request =
        plan::Request { targets: options.targets.to_vec(), replace: options.replace.to_vec(), force: options.force };
    let plan = match &saved {
        Some(saved) => {
            if plan::fingerprint(&observed) != saved.plan.fingerprint {
                return Err(Error::StalePlan {
                    path: options.plan_file.unwrap_or(Path::new("")).display().to_string(),
                });
            }
            saved.plan.clone()
        }
        None => plan::plan_with(&topology, &observed, &state, &request).map_err(Error::refused)?,
    };
    for note in &plan.notes {
        printer.note(note);
    }

    printer.out(&render::text(&plan, printer.color_out()));
    if plan.is_empty() {
        return Ok(Exit::Ok);
    }
    if saved.is_none() && !options.auto_approve && !confirm(printer) {
        printer.note("Apply cancelled; nothing was changed.");
        return Ok(Exit::Error);
    }

    let hosts = boxed(&connections);
    // Every host was just reached with the configuration's transport: that
    // is the record to keep for one that later leaves the configuration.
    state.record_reach(&topology.hosts);
    let progress = Progress::new(printer);
    let mut recorder = Recorder { writer: &mut writer, progress: &progress };
    let mut outcome = runtime.block_on(apply::apply(&plan, &topology, &hosts, &mut state, &mut recorder));
    // An operation that finished moved the primary role: what the new
    // roles need (slots, the siblings' upstream, poolers) is planned and
    // applied now, as the operation's own end.
    if outcome.complete() && !plan.operations.is_empty() {
        topology = crate::roles::current(&topology, &state);
        let after = runtime.block_on(observe::observe_with(&topology, &reuse));
        let next = plan::plan(&topology, &after, &state).map_err(Error::refused)?;
        if !next.is_empty() {
            progress.println(&render::text(&next, printer.color_out()));
            let more = runtime.block_on(apply::apply(&next, &topology, &hosts, &mut state, &mut recorder));
            outcome.done.extend(more.done);
            outcome.failed.extend(more.failed);
            outcome.skipped.extend(more.skipped);
        }
    }
    progress.finish();
    if !outcome.complete() {
        runtime.block_on(writer.save(&mut state))?;
        printer.out(&summary(&outcome));
        for (_, error) in &outcome.failed {
            printer.error(error);
        }
        return Ok(Exit::Partial);
    }

    // Converged means: observe again, and there is nothing left to do.
    let after = runtime.block_on(observe::observe_with(&topology, &reuse));
    let remaining = plan::plan(&topology, &after, &state).map_err(Error::refused)?;
    if !remaining.is_empty() && options.targets.is_empty() {
        runtime.block_on(writer.save(&mut state))?;
        printer.out(&summary(&outcome));
        printer.out(&render::text(&remaining, printer.color_out()));
        return Err(Error::NotConverged {
            addresses: remaining.changes().map(|change| change.address.to_string()).collect::<Vec<_>>().join(", "),
        });
    }
    if options.targets.is_empty() {
        state.last_applied_spec = Some(config_hash);
    }
    runtime.block_on(writer.save(&mut state))?;
    printer.out(&summary(&outcome));
    Ok(Exit::Ok)
}

/// The shared connections as the remotes apply's actions use.
pub(super) fn boxed(connections: &BTreeMap<String, Arc<dyn Remote>>) -> BTreeMap<String, Box<dyn Remote>> {
    connections
        .iter()
        .map(|(name, remote)| (name.clone(), Box::new(crate::transport::Shared(remote.clone())) as Box<dyn Remote>))
        .collect()
}

/// `--target` must name a resource of the configuration, `--replace` one of
/// its replicas: said before any host is contacted.
pub(super) fn check_addresses(topology: &Topology, targets: &[Address], replace: &[Address]) -> Result<(), Error> {
    let graph = crate::graph::ResourceGraph::build(topology);
    let unknown = targets.iter().find(|target| !graph.contains(target)).or_else(|| {
        replace.iter().find(|address| {
            address.kind != Kind::Replica
                || !topology
                    .environment(&address.environment)
                    .is_some_and(|environment| environment.replicas.iter().any(|replica| replica.name == address.name))
        })
    });
    match unknown {
        Some(address) => Err(Error::UnknownTarget { address: address.to_string() }),
        None => Ok(()),
    }
}

pub(super) fn confirm(printer: &Printer) -> bool {
    printer.note("Do you want to perform these actions? Only 'yes' will be accepted.");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).is_ok() && answer.trim() == "yes"
}

pub(super) fn summary(outcome: &apply::Outcome) -> String {
    let mut text = if outcome.complete() {
        format!("Apply complete: {} resource(s) changed; the hosts match the configuration.\n", outcome.done.len())
    } else {
        format!(
            "Apply stopped part-way: {} done, {} failed, {} skipped. Fix the cause and run apply again.\n",
            outcome.done.len(),
            outcome.failed.len(),
            outcome.skipped.len()
        )
    };
    // Each message names its resource; the printer shows the causes and
    // what to do on stderr.
    for (_, error) in &outcome.failed {
        text.push_str(&format!("  failed:  {error}\n"));
    }
    for address in &outcome.skipped {
        text.push_str(&format!("  skipped: {address} (depends on a failed change)\n"));
    }
    text
}
