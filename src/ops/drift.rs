//! `pgfleet drift`: read-only comparison of the hosts with the
//! configuration (and with the last applied spec), sorted into classes
//! scheduled jobs can act on: config, topology, slots, health,
//! pending_restart, backups (no verified backup young enough). Never writes anything, anywhere: it takes no lock and
//! saves no state.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::plan::sha256_hex;
use super::{Error, Outcome};
use crate::action::Action;
use crate::address::{Address, Kind};
use crate::config::load;
use crate::exit::Exit;
use crate::health::{self, Status};
use crate::observe::{self, ClusterObservation, Observed};
use crate::plan::{self, settings::shown};
use crate::printer::Printer;
use crate::state::{self, State};
use crate::topology::Topology;

/// The classes drift sorts into: the plan's, decided where each change's
/// reason is written.
pub use crate::plan::DriftClass as Class;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub class: Class,
    pub address: Option<Address>,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub format_version: u32,
    pub checked_at: String,
    /// The configuration file differs from the one last applied in full
    /// (`None`: never applied).
    pub configuration_changed_since_apply: Option<bool>,
    pub drift: Vec<Item>,
    pub ignored: usize,
}

pub struct Options<'a> {
    pub file: &'a Path,
    pub format: Format,
    pub ignore: &'a [String],
}

fn item(class: Class, address: &Address, message: impl Into<String>) -> Item {
    Item { class, address: Some(address.clone()), message: message.into() }
}

/// Sorts what differs into classes. Pure.
pub fn classify(
    topology: &Topology,
    observed: &Observed,
    state: &State,
    checked_at: &str,
) -> Result<Vec<Item>, plan::PlanError> {
    let plan = plan::plan(topology, observed, state)?;
    let mut items = Vec::new();
    for change in plan.changes() {
        let address = &change.address;
        let probe = match observed.cluster(&format!(
            "{}.{}.{}",
            address.environment,
            if address.kind == Kind::Replica { "replica" } else { "cluster" },
            if address.kind == Kind::Replica { &address.name } else { "primary" }
        )) {
            Some(ClusterObservation::Running { probe }) => Some(probe),
            _ => None,
        };
        let configured: Vec<String> = change
            .actions
            .iter()
            .filter_map(|action| match action {
                Action::Configure { set, .. } => Some(set),
                _ => None,
            })
            .flat_map(|set| set.iter())
            .map(|(name, value)| {
                let current = probe.and_then(|probe| probe.settings.get(name)).map(shown).unwrap_or_else(|| "?".into());
                format!("{name} is {current}, configured {value}")
            })
            .collect();
        match change.drift {
            Class::Config if !configured.is_empty() => {
                items.extend(configured.into_iter().map(|message| item(Class::Config, address, message)));
            }
            // Reported from the probes' pending_restart below.
            Class::PendingRestart => {}
            class => items.push(item(class, address, change.reason.clone())),
        }
    }

    for environment in &topology.environments {
        let primary_address = Address::new(&environment.id, Kind::Cluster, "primary");
        let free = observed
            .data_dir(&environment.primary.host, &environment.primary.data_dir)
            .and_then(|directory| directory.free_bytes);
        if let Some(ClusterObservation::Running { probe }) = observed.cluster(&primary_address.to_string()) {
            if probe.in_recovery {
                items.push(item(Class::Topology, &primary_address, "the primary is in recovery"));
            }
            for slot in &probe.slots {
                let owner = environment.replicas.iter().find(|replica| replica.slot == slot.name);
                let retained = slot.retained_bytes.unwrap_or(0).max(0) as u64;
                let share = free
                    .filter(|free| *free > 0)
                    .map(|free| format!(" ({:.1} % of the free disk)", retained as f64 * 100.0 / free as f64))
                    .unwrap_or_default();
                let address = Address::new(&environment.id, Kind::Slot, &slot.name);
                if owner.is_none() && !items.iter().any(|existing| existing.address.as_ref() == Some(&address)) {
                    items.push(item(
                        Class::Slots,
                        &address,
                        format!(
                            "slot {} belongs to no replica, retains {}{share}",
                            slot.name,
                            super::status::human_size(retained)
                        ),
                    ));
                } else if owner.is_some() && !slot.active && retained > 0 {
                    items.push(item(
                        Class::Slots,
                        &address,
                        format!(
                            "slot {} is inactive and retains {}{share}",
                            slot.name,
                            super::status::human_size(retained)
                        ),
                    ));
                }
            }
        }
        for (address, cluster) in std::iter::once((primary_address.clone(), &environment.primary.host)).chain(
            environment
                .replicas
                .iter()
                .map(|replica| (Address::new(&environment.id, Kind::Replica, &replica.name), &replica.host)),
        ) {
            let _ = cluster;
            if let Some(ClusterObservation::Running { probe }) = observed.cluster(&address.to_string()) {
                for (name, setting) in &probe.settings {
                    if setting.pending_restart {
                        items.push(item(Class::PendingRestart, &address, format!("{name} waits for a restart")));
                    }
                }
                // A replica follows its upstream: the primary's address,
                // or its tunnel's local end.
                let upstream = environment
                    .replicas
                    .iter()
                    .find(|replica| address.kind == Kind::Replica && replica.name == address.name)
                    .map(|replica| crate::desired::upstream(environment, replica));
                if let Some((upstream_host, upstream_port)) = upstream
                    && let Some(receiver) = &probe.receiver
                    && let (Some(host), Some(port)) = (&receiver.sender_host, receiver.sender_port)
                    && (host != &upstream_host || port != i32::from(upstream_port))
                {
                    items.push(item(
                        Class::Topology,
                        &address,
                        format!("follows {host}:{port}, not the primary (through {upstream_host}:{upstream_port})"),
                    ));
                }
            }
        }
    }

    for environment in &topology.environments {
        for tunnel in super::status::tunnels(environment, observed) {
            if tunnel.status != "up" && tunnel.status != "absent" && tunnel.status != "unknown" {
                let Ok(address) = tunnel.address.parse::<Address>() else { continue };
                items.push(item(
                    Class::Health,
                    &address,
                    format!("the tunnel is {} (local end {})", tunnel.status, tunnel.local_end),
                ));
            }
        }
        let every = environment.filestore.as_ref().map(|mirror| mirror.every.seconds()).unwrap_or(0);
        for mirror in super::status::filestores(environment, observed) {
            let Ok(address) = mirror.address.parse::<Address>() else { continue };
            // A mirror not yet built is the plan's (topology) to report.
            if observed.filestores.get(&mirror.address).is_none_or(|found| found.job.is_none()) {
                continue;
            }
            if mirror.stale {
                let age = mirror
                    .last_success_age_seconds
                    .map_or_else(|| "never synced".into(), |age| format!("last synced {age} s ago"));
                let mut rc = mirror.last_rc.map(|rc| format!(", last run exited {rc}")).unwrap_or_default();
                if let Some(behind) = mirror.files_behind {
                    let _ = write!(rc, ", {behind} file(s) behind");
                }
                items.push(item(
                    Class::Health,
                    &address,
                    format!("the filestore mirror is stale: {age} (interval {every} s){rc}"),
                ));
            }
        }
    }

    for replica in health::assess(topology, observed, checked_at) {
        if replica.status != Status::Online {
            let address = Address::new(&replica.environment_id, Kind::Replica, &replica.name);
            let mut message = replica.status.to_string();
            if let Some(severity) = replica.severity {
                let _ = write!(message, " ({severity})");
            }
            if let (Some(bytes), Some(seconds)) = (replica.lag_bytes, replica.lag_seconds) {
                let _ = write!(message, ": {} / {seconds:.1}s behind", super::status::human_size(bytes));
            }
            if let Some(error) = &replica.error_message {
                let _ = write!(message, ": {error}");
            }
            items.push(item(Class::Health, &address, message));
        }
    }
    items.sort_by(|a, b| (a.class, &a.address, &a.message).cmp(&(b.class, &b.address, &b.message)));
    items.dedup();
    Ok(items)
}

fn ignored(item: &Item, ignore: &[String]) -> bool {
    ignore.iter().any(|pattern| {
        pattern == item.class.as_str() || item.address.as_ref().is_some_and(|address| &address.to_string() == pattern)
    })
}

pub fn text(report: &Report) -> String {
    let mut out = String::new();
    if report.drift.is_empty() {
        out.push_str("No drift: the hosts match the configuration.\n");
    }
    let mut class = None;
    for item in &report.drift {
        if class != Some(item.class) {
            class = Some(item.class);
            let _ = writeln!(out, "{}:", item.class.as_str());
        }
        let address = item.address.as_ref().map(|address| format!("{address}: ")).unwrap_or_default();
        let _ = writeln!(out, "  {address}{}", item.message);
    }
    if report.ignored > 0 {
        let _ = writeln!(out, "({} ignored)", report.ignored);
    }
    if report.configuration_changed_since_apply == Some(true) {
        out.push_str("note: the configuration changed since the last apply\n");
    }
    out
}

pub fn markdown(report: &Report) -> String {
    let mut out = String::from("### pgfleet drift\n\n");
    if report.drift.is_empty() {
        out.push_str("**No drift.** The hosts match the configuration.\n");
    } else {
        out.push_str("| class | resource | what |\n|---|---|---|\n");
        for item in &report.drift {
            let address = item.address.as_ref().map(|address| format!("`{address}`")).unwrap_or_default();
            let _ = writeln!(out, "| {} | {address} | {} |", item.class.as_str(), item.message.replace('|', "\\|"));
        }
    }
    out
}

pub fn run(printer: &Printer, options: &Options<'_>) -> Outcome {
    let document = load::load(options.file)?;
    let declared = document.resolve()?;
    let store = state::open(&declared.state)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Runtime { source })?;
    let state = runtime.block_on(store.load())?;
    let topology = crate::roles::current(&declared, &state);
    let observed = runtime.block_on(observe::observe(&topology));
    if let Some((host, reason, help)) = observed.unreachable().first() {
        return Err(Error::Unreachable {
            hosts: (*host).to_owned(),
            first: (*reason).to_owned(),
            help: help.unwrap_or("drift could not look at this host").to_owned(),
        });
    }
    let checked_at = crate::state::now();
    let mut items = classify(&topology, &observed, &state, &checked_at).map_err(Error::refused)?;
    items.extend(runtime.block_on(super::backup::freshness(&topology, std::time::SystemTime::now())));
    let total = items.len();
    let drift: Vec<Item> = items.into_iter().filter(|item| !ignored(item, options.ignore)).collect();
    let report = Report {
        format_version: 1,
        checked_at,
        configuration_changed_since_apply: state
            .last_applied_spec
            .as_ref()
            .map(|applied| applied != &sha256_hex(document.source.text().as_bytes())),
        ignored: total - drift.len(),
        drift,
    };
    printer.out(&match options.format {
        Format::Text => text(&report),
        Format::Json => serde_json::to_string_pretty(&report).map_err(Error::serialize("the drift report"))?,
        Format::Markdown => markdown(&report),
    });
    Ok(if report.drift.is_empty() { Exit::Ok } else { Exit::Changes })
}
