//! What is really there: host facts and cluster state, gathered read-only
//! and in parallel (one connection per host, one batched SQL probe per
//! running cluster). A host or cluster that cannot be reached is recorded
//! as a value with the reason, never a panic or an abort: plan still runs
//! and says what it could not see.

pub mod cluster;
pub mod helpers;
pub mod host;
pub mod pooler;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::address::{Address, Kind};
use crate::desired;
use crate::inventory::{Inventory, Item};
use crate::spec::SecretRef;
use crate::sql::{self, SqlTarget};
use crate::topology::{Host, Topology, Transport};
use crate::transport::Remote;
use crate::transport::local::Local;
use crate::transport::ssh::SshSession;
use cluster::ClusterProbe;
use host::{DataDirProbe, HostFacts, PoolerProbe};

/// Hosts observed at once by default (`plan --parallelism`): one SSH
/// session per host, however many environments share it.
pub const PARALLEL_HOSTS: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub hosts: BTreeMap<String, HostObservation>,
    /// By cluster address (`prod.cluster.primary`, `prod.replica.r1`).
    pub clusters: BTreeMap<String, ClusterObservation>,
    /// Running poolers by address (`prod.pooler.primary`), from their admin
    /// console.
    #[serde(default)]
    pub poolers: BTreeMap<String, PoolerObservation>,
    /// Pooler address → whether its userlist holds the verifiers its
    /// primary has now (absent when that could not be told).
    #[serde(default)]
    pub userlists: BTreeMap<String, bool>,
    /// Replica address → whether its passfile holds the configured
    /// replication password (absent when that could not be told).
    #[serde(default)]
    pub passfiles: BTreeMap<String, bool>,
    /// Replicas' SSH tunnels, by address (`prod.tunnel.r1`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tunnels: BTreeMap<String, helpers::TunnelObservation>,
    /// Filestore mirrors, by address (`prod.filestore.r1`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filestores: BTreeMap<String, helpers::FilestoreObservation>,
    /// Odoo's configuration files, by address (`prod.odoo.config`): the
    /// keys pgfleet manages as they are set in `[options]`, nothing else
    /// (the file holds Odoo's own passwords); `None` when there is no file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub odoo: BTreeMap<String, Option<BTreeMap<String, String>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PoolerObservation {
    Running {
        admin: pooler::PoolerStatus,
    },
    /// Its process runs, but the admin console did not answer.
    Unreachable {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HostObservation {
    Reachable {
        facts: HostFacts,
    },
    Unreachable {
        reason: String,
        /// What to do about it, when the error says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        help: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ClusterObservation {
    /// Not running (see the host facts for the data directory).
    Stopped,
    Running {
        probe: Box<ClusterProbe>,
    },
    /// Running, but SQL failed.
    Unreachable {
        reason: String,
    },
}

/// A cluster pgfleet expects on a host.
#[derive(Debug, Clone)]
struct Expected {
    address: Address,
    probe: DataDirProbe,
    /// On a primary: the roles whose passwords pgfleet manages, with where
    /// each password comes from.
    roles: Vec<(String, SecretRef)>,
    /// On a primary with replicas: the replication role's name.
    replication_role: Option<String>,
}

/// What one host should hold: clusters and poolers.
#[derive(Debug, Clone, Default)]
struct HostWork {
    /// Runtime and PostgreSQL major of the clusters on the host (replicas
    /// run their primary's), whose programs the facts look for.
    binaries: (crate::spec::Runtime, u32),
    clusters: Vec<Expected>,
    poolers: Vec<ExpectedPooler>,
    /// Odoo configuration files to read: address, path, the keys to keep.
    odoo: Vec<(String, std::path::PathBuf, Vec<String>)>,
}

/// A pooler pgfleet expects on a host.
#[derive(Debug, Clone)]
struct ExpectedPooler {
    address: Address,
    probe: PoolerProbe,
    /// Data directory of the cluster it fronts (whose superuser it admits).
    data_dir: std::path::PathBuf,
}

/// Every cluster and pooler of the inventory, grouped by host.
fn expected_by_host(topology: &Topology) -> BTreeMap<String, HostWork> {
    let mut by_host: BTreeMap<String, HostWork> = BTreeMap::new();
    for resource in Inventory::of(topology).resources {
        let environment = resource.environment;
        match resource.item {
            Item::Member { replica, placement, .. } => {
                let work = by_host.entry(placement.host.clone()).or_default();
                work.binaries = (placement.runtime, placement.version);
                let is_primary = replica.is_none();
                let mut roles = Vec::new();
                if is_primary {
                    roles.push((environment.database.owner.clone(), environment.database.password.clone()));
                    if !environment.replicas.is_empty() {
                        roles.push((environment.replication.user.clone(), environment.replication.password.clone()));
                    }
                }
                work.clusters.push(Expected {
                    address: resource.address,
                    probe: placement,
                    replication_role: (is_primary && !environment.replicas.is_empty())
                        .then(|| environment.replication.user.clone()),
                    roles,
                });
            }
            Item::Pooler(placement) => {
                let Some(fronted) = crate::placement::member(environment, &placement.fronts) else { continue };
                // The primary's pooler keeps its files beside the declared
                // primary, whichever member holds the role: its password
                // is read from there.
                let beside = if placement.fronts == crate::placement::PRIMARY {
                    crate::placement::declared_primary(environment)
                } else {
                    fronted
                };
                by_host.entry(placement.host.clone()).or_default().poolers.push(ExpectedPooler {
                    address: resource.address,
                    data_dir: beside.layout.data_dir,
                    probe: placement,
                });
            }
            Item::Odoo(odoo) => {
                let keys = desired::odoo::settings(environment).into_keys().collect();
                by_host.entry(odoo.host.clone()).or_default().odoo.push((
                    resource.address.to_string(),
                    odoo.config.clone(),
                    keys,
                ));
            }
            Item::Role { .. }
            | Item::Hba
            | Item::Database { .. }
            | Item::Slot { .. }
            | Item::Tunnel { .. }
            | Item::Filestore { .. }
            | Item::Backup => {}
        }
    }
    by_host
}

/// Opens the transport to a host.
pub async fn connect(host: &Host) -> Result<Box<dyn Remote>, crate::transport::TransportError> {
    Ok(match &host.transport {
        Transport::Local => Box::new(Local::new(&host.name)),
        Transport::Ssh(target) => Box::new(SshSession::connect(&host.name, target).await?),
    })
}

/// How hosts are reached: directly (SSH or local), or through a wrapper
/// (tests count round trips with one).
pub trait Connector: Send + Sync {
    fn connect<'a>(&'a self, host: &'a Host) -> crate::transport::Pending<'a, Box<dyn Remote>>;
}

/// The transport the configuration names.
pub struct Direct;

impl Connector for Direct {
    fn connect<'a>(&'a self, host: &'a Host) -> crate::transport::Pending<'a, Box<dyn Remote>> {
        Box::pin(connect(host))
    }
}

/// Hands out connections opened beforehand, one per host.
pub struct Reuse(pub BTreeMap<String, Arc<dyn Remote>>);

impl Connector for Reuse {
    fn connect<'a>(&'a self, host: &'a Host) -> crate::transport::Pending<'a, Box<dyn Remote>> {
        Box::pin(async move {
            match self.0.get(&host.name) {
                Some(remote) => Ok(Box::new(crate::transport::Shared(remote.clone())) as Box<dyn Remote>),
                None => connect(host).await,
            }
        })
    }
}

/// What to observe, and how to reach the hosts.
#[derive(Clone)]
pub struct Options {
    /// Compare role passwords and pooler userlists (plan needs it; health
    /// rounds do not, and save a round trip per primary).
    pub passwords: bool,
    pub connector: Arc<dyn Connector>,
    /// Hosts observed (SSH sessions open) at once.
    pub parallelism: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { passwords: true, connector: Arc::new(Direct), parallelism: PARALLEL_HOSTS }
    }
}

impl Options {
    /// For status, drift's health and the monitor: no password checks.
    pub fn health() -> Self {
        Options { passwords: false, ..Options::default() }
    }
}

/// Observes every host of the topology, in parallel.
pub async fn observe(topology: &Topology) -> Observed {
    observe_with(topology, &Options::default()).await
}

/// As `observe`, with options.
pub async fn observe_with(topology: &Topology, options: &Options) -> Observed {
    let mut settings: Vec<String> = cluster::ALWAYS_PROBED_SETTINGS.iter().map(|name| (*name).to_owned()).collect();
    for environment in &topology.environments {
        settings.extend(desired::primary_settings(environment).into_keys());
        for replica in &environment.replicas {
            settings.extend(desired::replica_settings(environment, replica).into_keys());
        }
    }
    settings.sort();
    settings.dedup();
    let settings = Arc::new(settings);

    let limit = Arc::new(Semaphore::new(options.parallelism.max(1)));
    let mut verifiers: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut userlists = Vec::new();
    let mut passfiles = Vec::new();
    let mut replication_passwords: BTreeMap<String, crate::secrets::Secret> = BTreeMap::new();
    let helper_work = Arc::new(helpers::Work::of(topology));
    let shared_topology = Arc::new(topology.clone());
    let mut tasks = JoinSet::new();
    for (host_name, expected) in expected_by_host(topology) {
        let Some(host) = topology.hosts.get(&host_name).cloned() else { continue };
        let (limit, settings, options) = (limit.clone(), settings.clone(), options.clone());
        let (helper_work, shared_topology) = (helper_work.clone(), shared_topology.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let helpers = HelperWork { work: &helper_work, topology: &shared_topology };
            observe_host(&host, &expected, &settings, &options, helpers).await
        });
    }
    let mut observed = Observed::default();
    let mut helper_parts = BTreeMap::new();
    while let Some(result) = tasks.join_next().await {
        let Ok(report) = result else { continue };
        if let Some(part) = report.helpers {
            helper_parts.insert(report.host.clone(), part);
        }
        observed.hosts.insert(report.host, report.observation);
        observed.clusters.extend(report.clusters);
        observed.poolers.extend(report.poolers);
        observed.odoo.extend(report.odoo);
        verifiers.extend(report.verifiers);
        userlists.extend(report.userlists);
        passfiles.extend(report.passfiles);
        replication_passwords.extend(report.replication_passwords);
    }
    let found = helper_work.combine(&helper_parts);
    observed.tunnels = found.tunnels;
    observed.filestores = found.filestores;
    // A pooler's userlist is current when it holds, byte for byte, the
    // verifiers its environment's primary has now.
    for (pooler, environment, userlist) in userlists {
        let (Some(verifiers), Some(environment)) = (verifiers.get(&environment), topology.environment(&environment))
        else {
            continue;
        };
        let users = desired::userlist_roles(environment);
        let wanted: BTreeMap<String, String> =
            verifiers.iter().filter(|(name, _)| users.contains(name)).map(|(n, v)| (n.clone(), v.clone())).collect();
        observed.userlists.insert(pooler, userlist.as_deref() == Some(desired::userlist(&wanted).as_str()));
    }
    // A replica's passfile is current when it holds the configured
    // replication password (checked only where that password is known here).
    if options.passwords {
        for (replica, environment, passfile) in passfiles {
            let Some(environment) = topology.environment(&environment) else { continue };
            let password = match &environment.replication.password {
                SecretRef::Generate(_) => replication_passwords.get(&environment.id).cloned(),
                other => crate::secrets::read(other, &environment.replication.user).ok().flatten(),
            };
            let name = replica.rsplit('.').next().unwrap_or_default();
            let Some(member) = environment.replicas.iter().find(|candidate| candidate.name == name) else { continue };
            if let Some(password) = password {
                let current = passfile.as_deref() == Some(desired::passfile(environment, member, &password).as_str());
                observed.passfiles.insert(replica, current);
            }
        }
    }
    observed
}

/// What observing one host yields. `verifiers` and `userlists` are secret
/// material kept in memory to compare, never stored.
struct HostReport {
    host: String,
    observation: HostObservation,
    clusters: Vec<(String, ClusterObservation)>,
    poolers: Vec<(String, PoolerObservation)>,
    /// Environment id → the primary's verifiers of its managed roles and
    /// `postgres`.
    verifiers: Vec<(String, BTreeMap<String, String>)>,
    /// (pooler address, environment id, the userlist on the host).
    userlists: Vec<(String, String, Option<String>)>,
    /// (replica address, environment id, the passfile on the host).
    passfiles: Vec<(String, String, Option<String>)>,
    /// Environment id → the generated replication password kept on its
    /// primary's host.
    replication_passwords: Vec<(String, crate::secrets::Secret)>,
    /// The host's part of the tunnels' and mirrors' observation.
    helpers: Option<helpers::HostPart>,
    odoo: Vec<(String, Option<BTreeMap<String, String>>)>,
}

/// The tunnels' and mirrors' observation, shared by the hosts' tasks.
struct HelperWork<'a> {
    work: &'a helpers::Work,
    topology: &'a Topology,
}

async fn observe_host(
    host: &Host,
    expected: &HostWork,
    settings: &[String],
    options: &Options,
    helpers: HelperWork<'_>,
) -> HostReport {
    let mut report = HostReport {
        host: host.name.clone(),
        observation: HostObservation::Unreachable { reason: String::new(), help: None },
        clusters: Vec::new(),
        poolers: Vec::new(),
        verifiers: Vec::new(),
        userlists: Vec::new(),
        passfiles: Vec::new(),
        replication_passwords: Vec::new(),
        helpers: None,
        odoo: Vec::new(),
    };
    let unreachable = |mut report: HostReport, error: &crate::transport::TransportError| {
        let help = miette::Diagnostic::help(error).map(|help| help.to_string());
        report.observation = HostObservation::Unreachable { reason: error_chain(error), help };
        report
    };
    let remote = match options.connector.connect(host).await {
        Ok(remote) => remote,
        Err(error) => return unreachable(report, &error),
    };
    let probes: Vec<DataDirProbe> = expected.clusters.iter().map(|cluster| cluster.probe.clone()).collect();
    let pooler_probes: Vec<PoolerProbe> = expected.poolers.iter().map(|pooler| pooler.probe.clone()).collect();
    let binaries = (crate::runtime::of(expected.binaries.0), expected.binaries.1);
    let (facts, secrets) = match host::gather(remote.as_ref(), binaries, &probes, &pooler_probes).await {
        Ok(gathered) => gathered,
        Err(error) => return unreachable(report, &error),
    };
    for cluster in &expected.clusters {
        let environment = cluster.address.environment.clone();
        if cluster.address.kind == Kind::Replica {
            let passfile = secrets.passfile(&cluster.probe.layout.data_dir).map(str::to_owned);
            report.passfiles.push((cluster.address.to_string(), environment.clone(), passfile));
        }
        let replication = cluster.roles.iter().find(|(name, _)| Some(name) == cluster.replication_role.as_ref());
        if let Some((name, SecretRef::Generate(_))) = replication
            && let Some(secret) = secrets.role(&cluster.probe.layout.data_dir, name)
        {
            report.replication_passwords.push((environment, secret.clone()));
        }
        let running = facts.data_dir(&cluster.probe.layout.data_dir).is_some_and(|dir| dir.running);
        let observation = if running {
            let (observation, verifiers) =
                probe_cluster(remote.as_ref(), cluster, &secrets, settings, options.passwords).await;
            if let Some(verifiers) = verifiers {
                report.verifiers.push((cluster.address.environment.clone(), verifiers));
            }
            observation
        } else {
            ClusterObservation::Stopped
        };
        report.clusters.push((cluster.address.to_string(), observation));
    }
    for pooler in &expected.poolers {
        let userlist = secrets.userlist(&pooler.probe.layout.ini).map(str::to_owned);
        report.userlists.push((pooler.address.to_string(), pooler.address.environment.clone(), userlist));
        if facts.pooler(&pooler.probe.layout.ini).is_some_and(|found| found.running) {
            let observation = probe_pooler(remote.as_ref(), pooler, secrets.superuser(&pooler.data_dir)).await;
            report.poolers.push((pooler.address.to_string(), observation));
        }
    }
    report.helpers = helpers.work.observe_host(helpers.topology, &host.name, remote.as_ref()).await;
    for (address, path, keys) in &expected.odoo {
        let kept = match remote.read_file(path).await {
            Ok(Some(bytes)) => {
                let mut options = desired::odoo::options(&String::from_utf8_lossy(&bytes));
                options.retain(|key, _| keys.contains(key));
                Some(options)
            }
            Ok(None) => None,
            Err(error) => return unreachable(report, &error),
        };
        report.odoo.push((address.clone(), kept));
    }
    report.observation = HostObservation::Reachable { facts };
    report
}

async fn probe_pooler(remote: &dyn Remote, pooler: &ExpectedPooler, password: Option<&str>) -> PoolerObservation {
    let target = SqlTarget {
        address: &pooler.probe.address,
        port: pooler.probe.port,
        user: "postgres",
        database: "pgbouncer",
        password,
    };
    let client = match sql::connect(remote, target).await {
        Ok(client) => client,
        Err(error) => return PoolerObservation::Unreachable { reason: error_chain(&error) },
    };
    match pooler::status(&client).await {
        Ok(admin) => PoolerObservation::Running { admin },
        Err(error) => PoolerObservation::Unreachable { reason: error_chain(&error) },
    }
}

/// Probes a running cluster. On a primary also reads the verifiers of
/// the roles pgfleet manages (and `postgres`, which the poolers' admin
/// console uses): each role learns whether its password is current, and
/// the verifiers come back for the userlist comparison.
async fn probe_cluster(
    remote: &dyn Remote,
    cluster: &Expected,
    secrets: &host::HostSecrets,
    settings: &[String],
    check_passwords: bool,
) -> (ClusterObservation, Option<BTreeMap<String, String>>) {
    let probe = &cluster.probe;
    let password = secrets.superuser(&probe.layout.data_dir);
    let target =
        SqlTarget { address: &probe.address, port: probe.port, user: "postgres", database: "postgres", password };
    let unreachable =
        |error: &dyn std::error::Error| (ClusterObservation::Unreachable { reason: error_chain(error) }, None);
    let client = match admin_connect(remote, probe, target).await {
        Ok(client) => client,
        Err(error) => return unreachable(&error),
    };
    let mut found = match cluster::probe(&client, settings).await {
        Ok(found) => found,
        Err(error) => return unreachable(&error),
    };
    if !check_passwords || cluster.roles.is_empty() || found.in_recovery {
        return (ClusterObservation::Running { probe: Box::new(found) }, None);
    }
    let mut names: Vec<&str> = cluster.roles.iter().map(|(name, _)| name.as_str()).collect();
    names.push("postgres");
    let rows =
        match client.query("SELECT rolname::text, rolpassword FROM pg_authid WHERE rolname = ANY($1)", &[&names]).await
        {
            Ok(rows) => rows,
            Err(error) => return unreachable(&error),
        };
    let verifiers: BTreeMap<String, String> =
        rows.iter().filter_map(|row| Some((row.get::<_, String>(0), row.get::<_, Option<String>>(1)?))).collect();
    for (name, reference) in &cluster.roles {
        let secret = match reference {
            SecretRef::Generate(_) => secrets.role(&probe.layout.data_dir, name).cloned(),
            other => crate::secrets::read(other, name).ok().flatten(),
        };
        if let Some(role) = found.roles.iter_mut().find(|role| &role.name == name) {
            role.password_current = secret
                .map(|secret| verifiers.get(name).is_some_and(|verifier| crate::scram::matches(verifier, &secret)));
        }
    }
    (ClusterObservation::Running { probe: Box::new(found) }, Some(verifiers))
}

/// A superuser session to a cluster member: with the password pgfleet
/// keeps on the host for clusters it created; else as `admin_connect`
/// says. The password stays in memory for the length of the connection
/// attempt.
pub async fn superuser_session(
    remote: &dyn Remote,
    member: &crate::placement::ClusterPlacement,
) -> Result<tokio_postgres::Client, sql::SqlError> {
    superuser_session_to(remote, member, "postgres").await
}

/// `superuser_session`, to `database`.
pub async fn superuser_session_to(
    remote: &dyn Remote,
    member: &crate::placement::ClusterPlacement,
    database: &str,
) -> Result<tokio_postgres::Client, sql::SqlError> {
    let password = remote
        .read_file(&member.layout.superuser_password_file())
        .await?
        .map(|bytes| String::from_utf8_lossy(&bytes).trim_end_matches(['\n', '\r']).to_owned());
    let target = SqlTarget {
        address: &member.address,
        port: member.port,
        user: "postgres",
        database,
        password: password.as_deref(),
    };
    admin_connect(remote, member, target).await
}

/// A superuser session: over TCP with the target's password when there is
/// one; else through the runtime's bridge to the server's Unix socket (peer
/// login), falling back to TCP without a password (trust set up by hand)
/// when there is no bridge or it cannot connect.
async fn admin_connect(
    remote: &dyn Remote,
    member: &crate::placement::ClusterPlacement,
    target: SqlTarget<'_>,
) -> Result<tokio_postgres::Client, sql::SqlError> {
    if target.password.is_none()
        && let Some(bridge) = member.runtime().admin_bridge(&member.layout, member.port)
        && let Ok(client) = sql::connect_through(remote, &bridge, target).await
    {
        return Ok(client);
    }
    sql::connect(remote, target).await
}

/// An error and its causes on one line, for `Unreachable { reason }`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl Observed {
    /// The observations without what changes by itself on a running
    /// system: positions in the WAL, lag, retained bytes, free disk.
    pub fn stable_view(&self) -> Observed {
        let mut view = self.clone();
        for host in view.hosts.values_mut() {
            if let HostObservation::Reachable { facts } = host {
                for directory in facts.data_dirs.values_mut() {
                    directory.free_bytes = None;
                }
            }
        }
        for cluster in view.clusters.values_mut() {
            if let ClusterObservation::Running { probe } = cluster {
                probe.lsn = None;
                for slot in &mut probe.slots {
                    slot.restart_lsn = None;
                    slot.retained_bytes = None;
                }
                probe.senders.clear();
                probe.receiver = None;
                probe.standby = None;
                probe.connections = 0;
            }
        }
        for pooler in view.poolers.values_mut() {
            if let PoolerObservation::Running { admin } = pooler {
                admin.pools.clear();
            }
        }
        for tunnel in view.tunnels.values_mut() {
            tunnel.answering = false;
        }
        for mirror in view.filestores.values_mut() {
            (mirror.last_run, mirror.last_success, mirror.now, mirror.behind) = (None, None, None, None);
        }
        view
    }

    pub fn host_facts(&self, host: &str) -> Option<&HostFacts> {
        match self.hosts.get(host)? {
            HostObservation::Reachable { facts } => Some(facts),
            HostObservation::Unreachable { .. } => None,
        }
    }

    pub fn cluster(&self, address: &str) -> Option<&ClusterObservation> {
        self.clusters.get(address)
    }

    /// Data directory facts of a cluster, through its host.
    pub fn data_dir(&self, host: &str, path: &std::path::Path) -> Option<&host::DataDirFacts> {
        self.host_facts(host)?.data_dir(path)
    }

    /// Hosts that could not be reached: name, reason, and what to do.
    pub fn unreachable(&self) -> Vec<(&str, &str, Option<&str>)> {
        self.hosts
            .iter()
            .filter_map(|(name, observation)| match observation {
                HostObservation::Unreachable { reason, help } => {
                    Some((name.as_str(), reason.as_str(), help.as_deref()))
                }
                HostObservation::Reachable { .. } => None,
            })
            .collect()
    }
}
