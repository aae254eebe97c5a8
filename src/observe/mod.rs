//! What is really there: host facts and cluster state, gathered read-only
//! and in parallel (one connection per host, one batched SQL probe per
//! running cluster). A host or cluster that cannot be reached is recorded
//! as a value with the reason, never a panic or an abort: plan still runs
//! and says what it could not see.

pub mod cluster;
pub mod host;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::address::{Address, Kind};
use crate::sql::{self, SqlTarget};
use crate::topology::{Host, Topology, Transport};
use crate::transport::Remote;
use crate::transport::local::Local;
use crate::transport::ssh::SshSession;
use cluster::ClusterProbe;
use host::{DataDirProbe, HostFacts};

/// Hosts observed at once.
pub const PARALLEL_HOSTS: usize = 16;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub hosts: BTreeMap<String, HostObservation>,
    /// By cluster address (`prod.cluster.primary`, `prod.replica.r1`).
    pub clusters: BTreeMap<String, ClusterObservation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HostObservation {
    Reachable { facts: HostFacts },
    Unreachable { reason: String },
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

/// Every cluster of the topology, grouped by host.
fn expected_clusters(topology: &Topology) -> BTreeMap<String, Vec<Expected>> {
    let mut by_host: BTreeMap<String, Vec<Expected>> = BTreeMap::new();
    for environment in &topology.environments {
        let primary = &environment.primary;
        by_host.entry(primary.host.clone()).or_default().push(Expected {
            address: Address::new(&environment.id, Kind::Cluster, "primary"),
            probe: DataDirProbe {
                path: primary.data_dir.clone(),
                address: primary.address.clone(),
                port: primary.port,
            },
        });
        for replica in &environment.replicas {
            by_host.entry(replica.host.clone()).or_default().push(Expected {
                address: Address::new(&environment.id, Kind::Replica, &replica.name),
                probe: DataDirProbe {
                    path: replica.data_dir.clone(),
                    address: replica.address.clone(),
                    port: replica.port,
                },
            });
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
    let major = topology.environments.first().map_or(15, |environment| environment.primary.version);
    let mut settings: Vec<String> = cluster::ALWAYS_PROBED_SETTINGS.iter().map(|name| (*name).to_owned()).collect();
    for environment in &topology.environments {
        settings.extend(environment.primary.settings.keys().cloned());
    }
    settings.sort();
    settings.dedup();
    let settings = Arc::new(settings);

    let limit = Arc::new(Semaphore::new(PARALLEL_HOSTS));
    let mut tasks = JoinSet::new();
    for (host_name, expected) in expected_clusters(topology) {
        let Some(host) = topology.hosts.get(&host_name).cloned() else { continue };
        let (limit, settings) = (limit.clone(), settings.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            observe_host(&host, major, &expected, &settings).await
        });
    }
    let mut observed = Observed::default();
    while let Some(result) = tasks.join_next().await {
        let Ok((host, host_observation, clusters)) = result else { continue };
        observed.hosts.insert(host, host_observation);
        observed.clusters.extend(clusters);
    }
    observed
}

async fn observe_host(
    host: &Host,
    major: u32,
    expected: &[Expected],
    settings: &[String],
) -> (String, HostObservation, Vec<(String, ClusterObservation)>) {
    let unreachable = |reason: String| (host.name.clone(), HostObservation::Unreachable { reason }, Vec::new());
    let remote = match connect(host).await {
        Ok(remote) => remote,
        Err(error) => return unreachable(error_chain(&error)),
    };
    let probes: Vec<DataDirProbe> = expected.iter().map(|cluster| cluster.probe.clone()).collect();
    let facts = match host::gather(remote.as_ref(), major, &probes).await {
        Ok(facts) => facts,
        Err(error) => return unreachable(error_chain(&error)),
    };
    let mut clusters = Vec::new();
    for cluster in expected {
        let running = facts.data_dir(&cluster.probe.path).is_some_and(|dir| dir.running);
        let observation = if running {
            probe_cluster(remote.as_ref(), &cluster.probe, settings).await
        } else {
            ClusterObservation::Stopped
        };
        clusters.push((cluster.address.to_string(), observation));
    }
    (host.name.clone(), HostObservation::Reachable { facts }, clusters)
}

async fn probe_cluster(remote: &dyn Remote, probe: &DataDirProbe, settings: &[String]) -> ClusterObservation {
    let target =
        SqlTarget { address: &probe.address, port: probe.port, user: "postgres", database: "postgres", password: None };
    let client = match sql::connect(remote, target).await {
        Ok(client) => client,
        Err(error) => return ClusterObservation::Unreachable { reason: error_chain(&error) },
    };
    match cluster::probe(&client, settings).await {
        Ok(probe) => ClusterObservation::Running { probe: Box::new(probe) },
        Err(error) => ClusterObservation::Unreachable { reason: error_chain(&error) },
    }
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

    /// Hosts that could not be reached, with the reason.
    pub fn unreachable(&self) -> Vec<(&str, &str)> {
        self.hosts
            .iter()
            .filter_map(|(name, observation)| match observation {
                HostObservation::Unreachable { reason } => Some((name.as_str(), reason.as_str())),
                HostObservation::Reachable { .. } => None,
            })
            .collect()
    }
}
