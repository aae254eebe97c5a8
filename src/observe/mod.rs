//! What is really there: host facts and cluster state, gathered read-only
//! and in parallel (one connection per host, one batched SQL probe per
//! running cluster). A host or cluster that cannot be reached is recorded
//! as a value with the reason, never a panic or an abort: plan still runs
//! and says what it could not see.

pub mod cluster;
pub mod host;
pub mod pooler;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::address::{Address, Kind};
use crate::desired;
use crate::sql::{self, SqlTarget};
use crate::topology::{Host, Topology, Transport};
use crate::transport::Remote;
use crate::transport::local::Local;
use crate::transport::ssh::SshSession;
use cluster::ClusterProbe;
use host::{DataDirProbe, HostFacts, PoolerProbe};

/// Hosts observed at once.
pub const PARALLEL_HOSTS: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub hosts: BTreeMap<String, HostObservation>,
    /// By cluster address (`prod.cluster.primary`, `prod.replica.r1`).
    pub clusters: BTreeMap<String, ClusterObservation>,
    /// Running poolers by address (`prod.pooler.primary`), from their admin
    /// console.
    #[serde(default)]
    pub poolers: BTreeMap<String, PoolerObservation>,
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
}

/// What one host should hold: clusters and poolers.
#[derive(Debug, Clone, Default)]
struct HostWork {
    /// PostgreSQL major of the clusters on the host (replicas run their
    /// primary's).
    major: u32,
    clusters: Vec<Expected>,
    poolers: Vec<ExpectedPooler>,
}

/// A pooler pgfleet expects on a host.
#[derive(Debug, Clone)]
struct ExpectedPooler {
    address: Address,
    probe: PoolerProbe,
    listen: String,
    port: u16,
    /// Data directory of the cluster it fronts (whose superuser it admits).
    data_dir: std::path::PathBuf,
}

/// Every cluster and pooler of the topology, grouped by host.
fn expected_by_host(topology: &Topology) -> BTreeMap<String, HostWork> {
    let mut by_host: BTreeMap<String, HostWork> = BTreeMap::new();
    for environment in &topology.environments {
        let primary = &environment.primary;
        let work = by_host.entry(primary.host.clone()).or_default();
        work.major = primary.version;
        work.clusters.push(Expected {
            address: Address::new(&environment.id, Kind::Cluster, "primary"),
            probe: DataDirProbe {
                path: primary.data_dir.clone(),
                address: primary.address.clone(),
                port: primary.port,
            },
        });
        for replica in &environment.replicas {
            let work = by_host.entry(replica.host.clone()).or_default();
            work.major = primary.version;
            work.clusters.push(Expected {
                address: Address::new(&environment.id, Kind::Replica, &replica.name),
                probe: DataDirProbe {
                    path: replica.data_dir.clone(),
                    address: replica.address.clone(),
                    port: replica.port,
                },
            });
        }
        if let Some(pooler) = &environment.pooler {
            let sites = std::iter::once(desired::PoolerSite::Primary)
                .chain(environment.replicas.iter().map(desired::PoolerSite::Replica));
            for site in sites {
                let place = desired::pooler_place(environment, pooler, site);
                let (name, data_dir) = match site {
                    desired::PoolerSite::Primary => ("primary", primary.data_dir.clone()),
                    desired::PoolerSite::Replica(replica) => (replica.name.as_str(), replica.data_dir.clone()),
                };
                by_host.entry(place.host.clone()).or_default().poolers.push(ExpectedPooler {
                    address: Address::new(&environment.id, Kind::Pooler, name),
                    probe: PoolerProbe {
                        ini: desired::pgbouncer_ini_path(&place),
                        pidfile: desired::pgbouncer_pid_path(&place),
                    },
                    listen: place.address.clone(),
                    port: place.port,
                    data_dir,
                });
            }
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

/// Observes every host of the topology, in parallel.
pub async fn observe(topology: &Topology) -> Observed {
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

    let limit = Arc::new(Semaphore::new(PARALLEL_HOSTS));
    let mut tasks = JoinSet::new();
    for (host_name, expected) in expected_by_host(topology) {
        let Some(host) = topology.hosts.get(&host_name).cloned() else { continue };
        let (limit, settings) = (limit.clone(), settings.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            observe_host(&host, &expected, &settings).await
        });
    }
    let mut observed = Observed::default();
    while let Some(result) = tasks.join_next().await {
        let Ok((host, host_observation, clusters, poolers)) = result else { continue };
        observed.hosts.insert(host, host_observation);
        observed.clusters.extend(clusters);
        observed.poolers.extend(poolers);
    }
    observed
}

/// What observing one host yields: the host, its clusters, its poolers.
type HostReport = (String, HostObservation, Vec<(String, ClusterObservation)>, Vec<(String, PoolerObservation)>);

async fn observe_host(host: &Host, expected: &HostWork, settings: &[String]) -> HostReport {
    let unreachable = |error: &crate::transport::TransportError| {
        let help = miette::Diagnostic::help(error).map(|help| help.to_string());
        (host.name.clone(), HostObservation::Unreachable { reason: error_chain(error), help }, Vec::new(), Vec::new())
    };
    let remote = match connect(host).await {
        Ok(remote) => remote,
        Err(error) => return unreachable(&error),
    };
    let probes: Vec<DataDirProbe> = expected.clusters.iter().map(|cluster| cluster.probe.clone()).collect();
    let pooler_probes: Vec<PoolerProbe> = expected.poolers.iter().map(|pooler| pooler.probe.clone()).collect();
    let (facts, passwords) = match host::gather(remote.as_ref(), expected.major, &probes, &pooler_probes).await {
        Ok(gathered) => gathered,
        Err(error) => return unreachable(&error),
    };
    let mut clusters = Vec::new();
    for cluster in &expected.clusters {
        let running = facts.data_dir(&cluster.probe.path).is_some_and(|dir| dir.running);
        let observation = if running {
            probe_cluster(remote.as_ref(), &cluster.probe, passwords.get(&cluster.probe.path), settings).await
        } else {
            ClusterObservation::Stopped
        };
        clusters.push((cluster.address.to_string(), observation));
    }
    let mut poolers = Vec::new();
    for pooler in &expected.poolers {
        if facts.pooler(&pooler.probe.ini).is_some_and(|found| found.running) {
            let observation = probe_pooler(remote.as_ref(), pooler, passwords.get(&pooler.data_dir)).await;
            poolers.push((pooler.address.to_string(), observation));
        }
    }
    (host.name.clone(), HostObservation::Reachable { facts }, clusters, poolers)
}

async fn probe_pooler(remote: &dyn Remote, pooler: &ExpectedPooler, password: Option<&str>) -> PoolerObservation {
    let target =
        SqlTarget { address: &pooler.listen, port: pooler.port, user: "postgres", database: "pgbouncer", password };
    let client = match sql::connect(remote, target).await {
        Ok(client) => client,
        Err(error) => return PoolerObservation::Unreachable { reason: error_chain(&error) },
    };
    match pooler::status(&client).await {
        Ok(admin) => PoolerObservation::Running { admin },
        Err(error) => PoolerObservation::Unreachable { reason: error_chain(&error) },
    }
}

async fn probe_cluster(
    remote: &dyn Remote,
    probe: &DataDirProbe,
    password: Option<&str>,
    settings: &[String],
) -> ClusterObservation {
    let target =
        SqlTarget { address: &probe.address, port: probe.port, user: "postgres", database: "postgres", password };
    let client = match sql::connect(remote, target).await {
        Ok(client) => client,
        Err(error) => return ClusterObservation::Unreachable { reason: error_chain(&error) },
    };
    match cluster::probe(&client, settings).await {
        Ok(probe) => ClusterObservation::Running { probe: Box::new(probe) },
        Err(error) => ClusterObservation::Unreachable { reason: error_chain(&error) },
    }
}

/// A superuser session to a cluster: with the password pgfleet keeps on the
/// host for clusters it created, or none (peer/trust set up by hand). The
/// password stays in memory for the length of the connection attempt.
pub async fn superuser_session(
    remote: &dyn Remote,
    data_dir: &std::path::Path,
    address: &str,
    port: u16,
) -> Result<tokio_postgres::Client, sql::SqlError> {
    let password_file = desired::home(data_dir).join(desired::SUPERUSER_PASSWORD_FILE);
    let password = remote
        .read_file(&password_file)
        .await?
        .map(|bytes| String::from_utf8_lossy(&bytes).trim_end_matches(['\n', '\r']).to_owned());
    let target = SqlTarget { address, port, user: "postgres", database: "postgres", password: password.as_deref() };
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
            }
        }
        for pooler in view.poolers.values_mut() {
            if let PoolerObservation::Running { admin } = pooler {
                admin.pools.clear();
            }
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
