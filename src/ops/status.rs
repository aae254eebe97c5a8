//! `pgfleet status`: health of every environment — primary, replicas (the
//! health model), poolers, slots — as a table or JSON, once or `--watch`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::{Error, Outcome};
use crate::exit::Exit;
use crate::health::{self, ReplicaHealth, Status};
use crate::observe::pooler::PoolRow;
use crate::observe::{self, ClusterObservation, Observed, PoolerObservation};
use crate::printer::Printer;
use crate::topology::Topology;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub struct Options<'a> {
    pub file: &'a Path,
    pub format: Format,
    pub watch: bool,
    pub interval: Duration,
    pub detailed_exitcode: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub format_version: u32,
    pub checked_at: String,
    pub environments: Vec<EnvironmentStatus>,
}

#[derive(Debug, Serialize)]
pub struct EnvironmentStatus {
    pub id: String,
    /// The member that holds the primary role (see docs/ROLES.md).
    pub primary_member: String,
    /// The role's last move, when it has moved.
    pub last_role_change: Option<crate::state::RoleChange>,
    pub primary: PrimaryStatus,
    pub replicas: Vec<ReplicaHealth>,
    pub poolers: Vec<PoolerStatus>,
    pub slots: Vec<SlotStatus>,
    /// The environment's `health:` limits, in bytes and seconds: a replica
    /// over `warning` is lagging, and so is a slot retaining more than
    /// `warning.lag_bytes` worth showing.
    pub thresholds: Thresholds,
    /// Replicas' SSH tunnels (`connect: ssh_tunnel`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tunnels: Vec<TunnelStatus>,
    /// Filestore mirrors, one per replica host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filestores: Vec<FilestoreStatus>,
    /// The environment's backups, when it has `backups:` (`status` lists
    /// the storage; the monitor's rounds do not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backups: Option<BackupsStatus>,
}

/// What `status` says of an environment's backups.
#[derive(Debug, Clone, Serialize)]
pub struct BackupsStatus {
    pub count: usize,
    pub newest: Option<String>,
    /// The newest backup whose last verification succeeded, and how.
    pub newest_verified: Option<String>,
    pub verified_at: Option<String>,
    pub verified_by: Option<String>,
    /// Why the storage could not be listed.
    pub error_message: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TunnelStatus {
    /// `prod.tunnel.r1`.
    pub address: String,
    /// The local end on the replica's host, `ADDRESS:PORT`.
    pub local_end: String,
    /// `up` (its local end answers), `down` (its supervisor runs, the
    /// end does not answer), `stopped`, `absent` or `unknown` (host
    /// unreachable).
    pub status: String,
    /// Where the replica's stream arrives from on the primary
    /// (pg_stat_replication.client_addr): the primary host's sshd.
    pub arrives_from: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FilestoreStatus {
    /// `prod.filestore.r1`.
    pub address: String,
    /// Seconds since the last successful sync.
    pub last_success_age_seconds: Option<u64>,
    /// Exit status of the last run.
    pub last_rc: Option<i32>,
    /// Files that differ from the primary's (rsync dry run).
    pub files_behind: Option<u64>,
    /// The recurring job is installed.
    pub scheduled: bool,
    /// Older than twice its interval, or the last run failed.
    pub stale: bool,
}

#[derive(Debug, Serialize)]
pub struct Thresholds {
    pub warning: Limit,
    pub critical: Limit,
}

#[derive(Debug, Serialize)]
pub struct Limit {
    pub lag_bytes: u64,
    pub lag_seconds: u64,
}

impl From<&crate::spec::LagThreshold> for Limit {
    fn from(threshold: &crate::spec::LagThreshold) -> Self {
        Limit { lag_bytes: threshold.lag_bytes.bytes(), lag_seconds: threshold.lag_seconds }
    }
}

#[derive(Debug, Serialize)]
pub struct PrimaryStatus {
    pub address: String,
    /// `running`, `stopped`, `unreachable` or `error`.
    pub status: String,
    pub read_write: Option<bool>,
    pub timeline: Option<u32>,
    pub connections: Option<i64>,
    pub max_connections: Option<i64>,
    pub error_message: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PoolerStatus {
    pub name: String,
    pub up: bool,
    pub clients: u32,
    pub pools: Vec<PoolRow>,
    pub error_message: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SlotStatus {
    pub name: String,
    pub active: bool,
    pub wal_status: Option<String>,
    pub retained_bytes: Option<i64>,
}

impl PrimaryStatus {
    /// A primary that could not be probed: only its address and why.
    fn unprobed(address: String, status: &str, error_message: Option<String>) -> Self {
        PrimaryStatus {
            address,
            status: status.into(),
            read_write: None,
            timeline: None,
            connections: None,
            max_connections: None,
            error_message,
        }
    }
}

/// Builds the report from one observation, with the roles state records
/// (`topology` is the current one: `roles::current`).
pub fn report(topology: &Topology, observed: &Observed, state: &crate::state::State, checked_at: &str) -> Report {
    let replicas = health::assess(topology, observed, checked_at);
    let environments = topology
        .environments
        .iter()
        .map(|environment| {
            let primary_address = format!("{}:{}", environment.primary.address, environment.primary.port);
            let unreachable = observed.unreachable().into_iter().find(|(host, _, _)| *host == environment.primary.host);
            let (primary, slots) = match observed.cluster(&format!("{}.cluster.primary", environment.id)) {
                _ if unreachable.is_some() => (
                    PrimaryStatus::unprobed(
                        primary_address,
                        "unreachable",
                        unreachable.map(|(_, reason, _)| reason.to_owned()),
                    ),
                    Vec::new(),
                ),
                Some(ClusterObservation::Running { probe }) => (
                    PrimaryStatus {
                        address: primary_address,
                        status: "running".into(),
                        read_write: Some(!probe.in_recovery),
                        timeline: Some(probe.timeline),
                        connections: Some(probe.connections),
                        max_connections: probe
                            .settings
                            .get("max_connections")
                            .and_then(|setting| setting.value.parse().ok()),
                        error_message: None,
                    },
                    probe
                        .slots
                        .iter()
                        .map(|slot| SlotStatus {
                            name: slot.name.clone(),
                            active: slot.active,
                            wal_status: slot.wal_status.clone(),
                            retained_bytes: slot.retained_bytes,
                        })
                        .collect(),
                ),
                Some(ClusterObservation::Unreachable { reason }) => {
                    (PrimaryStatus::unprobed(primary_address, "error", Some(reason.clone())), Vec::new())
                }
                _ => (PrimaryStatus::unprobed(primary_address, "stopped", None), Vec::new()),
            };
            let poolers = environment
                .pooler
                .as_ref()
                .map(|_| {
                    std::iter::once("primary".to_owned())
                        .chain(environment.replicas.iter().map(|replica| replica.name.clone()))
                        .map(|name| {
                            let address = format!("{}.pooler.{name}", environment.id);
                            match observed.poolers.get(&address) {
                                Some(PoolerObservation::Running { admin }) => PoolerStatus {
                                    name,
                                    up: true,
                                    // The admin console's own session (pgfleet's) is not a client.
                                    clients: admin
                                        .pools
                                        .iter()
                                        .filter(|pool| pool.database != "pgbouncer")
                                        .map(|pool| pool.clients_active + pool.clients_waiting)
                                        .sum(),
                                    pools: admin.pools.clone(),
                                    error_message: None,
                                },
                                Some(PoolerObservation::Unreachable { reason }) => PoolerStatus {
                                    name,
                                    up: true,
                                    clients: 0,
                                    pools: Vec::new(),
                                    error_message: Some(reason.clone()),
                                },
                                None => {
                                    PoolerStatus { name, up: false, clients: 0, pools: Vec::new(), error_message: None }
                                }
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            EnvironmentStatus {
                id: environment.id.clone(),
                primary_member: environment.primary.name.clone(),
                last_role_change: state.last_role_change(&environment.id).cloned(),
                primary,
                replicas: replicas.iter().filter(|replica| replica.environment_id == environment.id).cloned().collect(),
                poolers,
                slots,
                thresholds: Thresholds {
                    warning: (&environment.health.warning).into(),
                    critical: (&environment.health.critical).into(),
                },
                tunnels: tunnels(environment, observed),
                filestores: filestores(environment, observed),
                backups: None,
            }
        })
        .collect();
    Report { format_version: 1, checked_at: checked_at.to_owned(), environments }
}

pub fn tunnels(environment: &crate::topology::Environment, observed: &Observed) -> Vec<TunnelStatus> {
    environment
        .replicas
        .iter()
        .filter(|replica| replica.connect == crate::spec::Connect::SshTunnel)
        .map(|replica| {
            let address = format!("{}.tunnel.{}", environment.id, replica.name);
            let (local_address, local_port) = crate::desired::tunnel::local_end(replica);
            let status = match observed.tunnels.get(&address) {
                None => "unknown",
                Some(found) if found.program.is_none() => "absent",
                Some(found) if !found.running => "stopped",
                Some(found) if !found.answering => "down",
                Some(_) => "up",
            };
            let arrives_from = match observed.cluster(&format!("{}.cluster.primary", environment.id)) {
                Some(ClusterObservation::Running { probe }) => probe
                    .senders
                    .iter()
                    .find(|sender| sender.application_name == replica.name)
                    .and_then(|sender| sender.client_address.clone()),
                _ => None,
            };
            TunnelStatus {
                address,
                local_end: format!("{local_address}:{local_port}"),
                status: status.into(),
                arrives_from,
            }
        })
        .collect()
}

pub fn filestores(environment: &crate::topology::Environment, observed: &Observed) -> Vec<FilestoreStatus> {
    let Some(mirror) = &environment.filestore else { return Vec::new() };
    mirror
        .mirror_to
        .iter()
        .map(|name| {
            let address = format!("{}.filestore.{name}", environment.id);
            let found = observed.filestores.get(&address);
            let age = found.and_then(|found| found.age_seconds());
            let last_rc = found.and_then(|found| found.last_run.map(|(_, rc)| rc));
            FilestoreStatus {
                last_success_age_seconds: age,
                last_rc,
                files_behind: found.and_then(|found| found.behind),
                scheduled: found.is_some_and(|found| found.scheduled),
                stale: mirror_stale(mirror.every.seconds(), age, last_rc),
                address,
            }
        })
        .collect()
}

/// A mirror is stale when its last success is older than twice its
/// interval (or there was none), or its last run failed.
pub fn mirror_stale(every_seconds: u64, age_seconds: Option<u64>, last_rc: Option<i32>) -> bool {
    age_seconds.is_none_or(|age| age > 2 * every_seconds) || last_rc.is_some_and(|rc| rc != 0)
}

impl Report {
    /// Everything healthy: primaries running read-write, replicas online,
    /// poolers up.
    pub fn healthy(&self) -> bool {
        self.environments.iter().all(|environment| {
            environment.primary.status == "running"
                && environment.primary.read_write == Some(true)
                && environment.replicas.iter().all(|replica| replica.status == Status::Online)
                && environment.poolers.iter().all(|pooler| pooler.up && pooler.error_message.is_none())
                && environment.tunnels.iter().all(|tunnel| tunnel.status == "up")
                && environment.filestores.iter().all(|mirror| !mirror.stale)
        })
    }
}

fn size(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-".into(), human_size)
}

/// Bytes in the largest binary unit that keeps at least one whole.
pub fn human_size(bytes: u64) -> String {
    for (unit, scale) in [("GB", 1u64 << 30), ("MB", 1 << 20), ("kB", 1 << 10)] {
        if bytes >= scale {
            return format!("{:.1}{unit}", bytes as f64 / scale as f64);
        }
    }
    format!("{bytes}B")
}

pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for environment in &report.environments {
        let primary = &environment.primary;
        let _ = writeln!(out, "{} (checked {})", environment.id, report.checked_at);
        // The role's holder, by name, once members have names or it moved.
        if environment.primary_member != crate::placement::PRIMARY || environment.last_role_change.is_some() {
            let _ = writeln!(out, "  primary: {}", environment.primary_member);
        }
        if let Some(change) = &environment.last_role_change {
            let _ = writeln!(
                out,
                "  last role change: {} from {} to {} at {}; data loss: {}",
                change.why.as_str(),
                change.from,
                change.to,
                change.at,
                super::switchover::describe_loss(change)
            );
        }
        let role = match primary.read_write {
            Some(true) => "read-write",
            Some(false) => "IN RECOVERY",
            None => "",
        };
        let connections = match (primary.connections, primary.max_connections) {
            (Some(used), Some(max)) => format!("connections {used}/{max}"),
            _ => String::new(),
        };
        let timeline = primary.timeline.map(|timeline| format!("timeline {timeline}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "  primary  {:<22} {:<9} {role:<11} {timeline:<11} {connections}{}",
            primary.address,
            primary.status,
            primary.error_message.as_ref().map(|error| format!("  ({error})")).unwrap_or_default()
        );
        for replica in &environment.replicas {
            let status = match replica.severity {
                Some(severity) => format!("{} ({severity})", replica.status),
                None => replica.status.to_string(),
            };
            let lag = match (replica.lag_bytes, replica.lag_seconds) {
                (Some(_), Some(seconds)) => format!("lag {} / {seconds:.1}s", size(replica.lag_bytes)),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  replica  {:<22} {:<19} {lag}{}",
                format!("{} {}", replica.name, replica.address),
                status,
                replica.error_message.as_ref().map(|error| format!("  ({error})")).unwrap_or_default()
            );
        }
        for pooler in &environment.poolers {
            let pools: Vec<String> = pooler
                .pools
                .iter()
                .filter(|pool| pool.database != "pgbouncer")
                .map(|pool| format!("{} {}+{}", pool.database, pool.servers_active, pool.servers_idle))
                .collect();
            let _ = writeln!(
                out,
                "  pooler   {:<22} {:<9} clients {}{}{}",
                pooler.name,
                if pooler.up { "up" } else { "down" },
                pooler.clients,
                if pools.is_empty() { String::new() } else { format!("  servers {}", pools.join(", ")) },
                pooler.error_message.as_ref().map(|error| format!("  ({error})")).unwrap_or_default()
            );
        }
        for slot in &environment.slots {
            let _ = writeln!(
                out,
                "  slot     {:<22} {:<9} retained {}{}",
                slot.name,
                if slot.active { "active" } else { "inactive" },
                size(slot.retained_bytes.map(|bytes| bytes.max(0) as u64)),
                slot.wal_status.as_ref().map(|status| format!("  wal_status {status}")).unwrap_or_default()
            );
        }
        for tunnel in &environment.tunnels {
            let _ =
                writeln!(out, "  tunnel   {:<22} {:<9} local end {}", tunnel.address, tunnel.status, tunnel.local_end);
        }
        if let Some(backups) = &environment.backups {
            let line = match (&backups.error_message, &backups.newest_verified) {
                (Some(error), _) => format!("cannot list them: {error}"),
                (None, Some(id)) => format!(
                    "{} kept, newest {}, newest verified {id} ({} {})",
                    backups.count,
                    backups.newest.as_deref().unwrap_or("-"),
                    backups.verified_by.as_deref().unwrap_or("-"),
                    backups.verified_at.as_deref().unwrap_or("-")
                ),
                (None, None) => format!(
                    "{} kept, newest {}, none verified",
                    backups.count,
                    backups.newest.as_deref().unwrap_or("-")
                ),
            };
            let _ = writeln!(out, "  backups  {line}");
        }
        for mirror in &environment.filestores {
            let age = mirror.last_success_age_seconds.map_or_else(|| "never".into(), |age| format!("{age}s ago"));
            let _ = writeln!(
                out,
                "  mirror   {:<22} {:<9} last sync {age}, rc {}, {} file(s) behind{}",
                mirror.address,
                if mirror.stale { "STALE" } else { "ok" },
                mirror.last_rc.map_or_else(|| "-".into(), |rc| rc.to_string()),
                mirror.files_behind.map_or_else(|| "?".into(), |count| count.to_string()),
                if mirror.scheduled { "" } else { "  (no recurring job)" }
            );
        }
        out.push('\n');
    }
    out
}

/// The report as `status --format json` prints it (and the monitor's
/// `/status.json` serves it).
pub fn json(report: &Report) -> Result<String, Error> {
    serde_json::to_string_pretty(report).map_err(Error::serialize("the status report"))
}

/// Clears a terminal and puts the cursor home, so `--watch` redraws in place.
const CLEAR_SCREEN: &str = "\x1b[H\x1b[2J";

pub fn run(printer: &Printer, options: &Options<'_>) -> Outcome {
    let declared = super::load_topology(options.file)?;
    let store = crate::state::open(&declared.state)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Runtime { source })?;
    loop {
        let state = runtime.block_on(store.load())?;
        let topology = crate::roles::current(&declared, &state);
        let observed = runtime.block_on(observe::observe_with(&topology, &observe::Options::health()));
        let mut report = report(&topology, &observed, &state, &crate::state::now());
        let backups = runtime.block_on(super::backup::summaries(&topology));
        for environment in &mut report.environments {
            environment.backups = backups.get(&environment.id).cloned();
        }
        let rendered = match options.format {
            Format::Text => text(&report),
            Format::Json => json(&report)?,
        };
        // On a terminal a watch redraws in place; into a pipe or a file it
        // writes one report per round.
        if options.watch && options.format == Format::Text && printer.stdout_is_terminal() {
            printer.out(&format!("{CLEAR_SCREEN}{rendered}"));
        } else {
            printer.out(&rendered);
        }
        // Nobody reads a watch whose stdout has closed (`status --watch | head`).
        if !options.watch || printer.stdout_closed() {
            return Ok(if options.detailed_exitcode && !report.healthy() { Exit::Changes } else { Exit::Ok });
        }
        std::thread::sleep(options.interval);
    }
}
