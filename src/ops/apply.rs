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
use crate::action::{Action, ActionError, Disruption};
use crate::address::{Address, Kind};
use crate::apply::{self, Journal};
use crate::exit::Exit;
use crate::observe::{self, ClusterObservation, Observed};
use crate::plan::{self, ChangeKind, ResourceChange, render};
use crate::printer::Printer;
use crate::spec::load;
use crate::state::{State, StateLock};
use crate::topology::Topology;
use crate::transport::Remote;

pub struct Options<'a> {
    pub file: &'a Path,
    pub plan_file: Option<&'a Path>,
    pub auto_approve: bool,
    pub lock_timeout: Duration,
    pub targets: &'a [Address],
    pub replace: &'a [Address],
    pub force: bool,
}

/// Saves state after every step and shows progress on stderr.
struct Progress<'a> {
    path: &'a Path,
    lock: &'a StateLock,
    printer: &'a Printer,
    spinner: Option<ProgressBar>,
}

impl Journal for Progress<'_> {
    fn save(&mut self, state: &mut State) -> Result<(), crate::state::StateError> {
        state.save_local(self.path, self.lock)
    }

    fn step(&mut self, address: &Address, description: &str, result: Result<Duration, &ActionError>) {
        if let Some(spinner) = &self.spinner {
            spinner.set_message(format!("{address}: {description}"));
        }
        match result {
            Ok(elapsed) => {
                let line = format!("  ✓ {address}: {description} ({:.1}s)", elapsed.as_secs_f64());
                match &self.spinner {
                    Some(spinner) => spinner.println(line),
                    None => self.printer.note(&line),
                }
            }
            Err(error) => {
                let line = format!("  ✗ {address}: {description}: {}", observe::error_chain(error));
                match &self.spinner {
                    Some(spinner) => spinner.println(line),
                    None => self.printer.note(&line),
                }
            }
        }
    }
}

/// The replica is healthy enough that `--replace` skips it (unless
/// `--force`): streaming, with lag under `rebuild_skip_if_healthy`.
fn healthy(topology: &Topology, observed: &Observed, address: &Address) -> bool {
    let Some(environment) = topology.environment(&address.environment) else { return false };
    let limit = environment.health.rebuild_skip_if_healthy;
    let Some(ClusterObservation::Running { probe }) = observed.cluster(&format!("{}.cluster.primary", environment.id))
    else {
        return false;
    };
    probe.senders.iter().any(|sender| {
        sender.application_name == address.name
            && sender.state.as_deref() == Some("streaming")
            && sender.lag_bytes.is_some_and(|bytes| bytes >= 0 && (bytes as u64) < limit.lag_bytes.bytes())
            && sender.write_lag_seconds.unwrap_or(0.0) < limit.lag_seconds as f64
    })
}

fn rebuild(address: &Address, slot: &str) -> ResourceChange {
    ResourceChange {
        address: address.clone(),
        action: ChangeKind::Replace,
        reason: "--replace".into(),
        disruption: Disruption::Rebuild,
        diff: None,
        rpo: Some("none on the primary; this replica serves no reads until it streams again".into()),
        actions: vec![
            Action::Stop,
            Action::RemoveDataDir,
            Action::BaseBackup { slot: slot.to_owned() },
            Action::WriteStandbyConfig,
            Action::Start,
            Action::WaitStreaming,
        ],
    }
}

/// One connection per host for the whole apply: its observation, its
/// actions and its final observation share them.
async fn connect_all(topology: &Topology) -> Result<BTreeMap<String, Arc<dyn Remote>>, Error> {
    let mut tasks = tokio::task::JoinSet::new();
    for host in topology.hosts.values().cloned() {
        tasks.spawn(async move { (host.name.clone(), observe::connect(&host).await) });
    }
    let mut hosts = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok((name, connected)) = joined else { continue };
        hosts.insert(name, Arc::from(connected.map_err(Error::Connect)?));
    }
    Ok(hosts)
}

pub fn run(printer: &Printer, options: &Options<'_>) -> Outcome {
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
    let topology = document.resolve()?;
    let config_hash = sha256_hex(document.source.text().as_bytes());
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let (mut state, lock) = State::lock_local(&topology.state.path, &command, options.lock_timeout)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Runtime { source })?;

    let connections = runtime.block_on(connect_all(&topology))?;
    let reuse = observe::Options { passwords: true, connector: Arc::new(observe::Reuse(connections.clone())) };
    let observed = runtime.block_on(observe::observe_with(&topology, &reuse));
    if let Some((host, reason, _)) = observed.unreachable().first() {
        return Err(Error::Unreachable {
            hosts: (*host).to_owned(),
            first: (*reason).to_owned(),
            help: "apply changes nothing while a host cannot be observed".into(),
        });
    }
    let mut plan = match &saved {
        Some(saved) => {
            if plan::fingerprint(&observed) != saved.plan.fingerprint {
                return Err(Error::StalePlan {
                    path: options.plan_file.unwrap_or(Path::new("")).display().to_string(),
                });
            }
            saved.plan.clone()
        }
        None => plan::plan(&topology, &observed, &state).map_err(Error::refused)?,
    };
    if !options.targets.is_empty() {
        plan.restrict_to(&topology, options.targets);
    }
    for address in options.replace {
        let slot = topology
            .environment(&address.environment)
            .and_then(|environment| environment.replicas.iter().find(|replica| replica.name == address.name))
            .filter(|_| address.kind == Kind::Replica)
            .map(|replica| replica.slot.clone())
            .ok_or_else(|| Error::UnknownTarget { address: address.to_string() })?;
        if !options.force && healthy(&topology, &observed, address) {
            printer.note(&format!(
                "{address} is streaming within its rebuild_skip_if_healthy thresholds: not rebuilt (use --force)"
            ));
            continue;
        }
        plan.resource_changes.retain(|change| &change.address != address);
        plan.resource_changes.push(rebuild(address, &slot));
    }

    printer.out(&render::text(&plan, printer.color_out()));
    if plan.is_empty() {
        return Ok(Exit::Ok);
    }
    if saved.is_none() && !options.auto_approve && !confirm(printer) {
        printer.note("Apply cancelled; nothing was changed.");
        return Ok(Exit::Error);
    }

    let hosts: BTreeMap<String, Box<dyn Remote>> = connections
        .iter()
        .map(|(name, remote)| (name.clone(), Box::new(crate::transport::Shared(remote.clone())) as Box<dyn Remote>))
        .collect();
    let spinner = std::io::stderr().is_terminal().then(|| {
        let spinner = ProgressBar::new_spinner();
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        spinner.enable_steady_tick(Duration::from_millis(120));
        spinner
    });
    let mut progress = Progress { path: &topology.state.path, lock: &lock, printer, spinner };
    let outcome = runtime.block_on(apply::apply(&plan, &topology, &hosts, &mut state, &mut progress));
    if let Some(spinner) = &progress.spinner {
        spinner.finish_and_clear();
    }
    if !outcome.complete() {
        state.save_local(&topology.state.path, &lock)?;
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
        state.save_local(&topology.state.path, &lock)?;
        printer.out(&summary(&outcome));
        printer.out(&render::text(&remaining, printer.color_out()));
        return Err(Error::NotConverged {
            addresses: remaining.changes().map(|change| change.address.to_string()).collect::<Vec<_>>().join(", "),
        });
    }
    if options.targets.is_empty() {
        state.last_applied_spec = Some(config_hash);
    }
    state.save_local(&topology.state.path, &lock)?;
    printer.out(&summary(&outcome));
    Ok(Exit::Ok)
}

fn confirm(printer: &Printer) -> bool {
    printer.note("Do you want to perform these actions? Only 'yes' will be accepted.");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).is_ok() && answer.trim() == "yes"
}

fn summary(outcome: &apply::Outcome) -> String {
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
