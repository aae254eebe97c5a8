//! The validated model: what `resolve` makes of a `Spec`, with every default
//! filled in and every rule of SPEC.md already enforced. Code past resolve
//! reads these types and never re-checks what validation settled.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::spec::tuning::Tier;
use crate::spec::{
    BackupFormat, Connect, Duration, LagThreshold, PoolMode, Purpose, Retention, Runtime, SecretRef, Size,
    StateBackend, Storage,
};

#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    pub organization: String,
    pub quota: Option<QuotaTable>,
    pub state: StateSettings,
    pub hosts: BTreeMap<String, Host>,
    pub environments: Vec<Environment>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StateSettings {
    /// The state's name: the organisation's. A postgres state is one row of
    /// the shared table among others, keyed by it, and its locks' keys are
    /// derived from it.
    pub name: String,
    pub backend: StateBackend,
    pub path: PathBuf,
    pub url: Option<SecretRef>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
    pub transport: Transport,
    /// Where tunnels' and mirrors' keys are authorized on this host
    /// (`None`: the service user's `~/.ssh/authorized_keys`).
    pub authorized_keys: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transport {
    Local,
    Ssh(SshTarget),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshTarget {
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_file: Option<PathBuf>,
    pub known_hosts: PathBuf,
    pub become_user: Option<String>,
}

impl Host {
    /// Two hosts with the same machine identity share ports and directories.
    pub fn machine(&self) -> &str {
        match &self.transport {
            Transport::Local => "local",
            Transport::Ssh(target) => &target.address,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub id: String,
    pub odoo_version: Option<String>,
    pub resources: Option<crate::spec::Resources>,
    pub primary: Cluster,
    pub database: Database,
    pub replication: Replication,
    pub pooler: Option<Pooler>,
    pub replicas: Vec<Replica>,
    pub health: HealthThresholds,
    pub backups: Option<Backups>,
    pub protected: bool,
    pub filestore: Option<Filestore>,
    pub odoo: Option<crate::spec::Odoo>,
}

/// The primary cluster and the settings pgfleet manages on it: the member
/// that holds the primary role (see `roles`).
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    /// The member's stable name: `primary.name` (default `primary`) for the
    /// member the YAML declares under `primary:`, a replica's name for one
    /// that took the role over.
    pub name: String,
    /// When a replica of the YAML holds the role: its replica
    /// configuration, kept for when it hands the role on.
    pub standby: Option<Box<Replica>>,
    pub host: String,
    pub address: String,
    pub port: u16,
    pub version: u32,
    pub data_dir: PathBuf,
    pub runtime: Runtime,
    /// The container image (`runtime: docker`).
    pub image: String,
    pub tier: Option<TierName>,
    /// Tier settings overlaid with the user's, as postgresql.conf text.
    pub settings: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TierName {
    Small,
    Medium,
    Large,
}

impl From<Tier> for TierName {
    fn from(tier: Tier) -> Self {
        match tier {
            Tier::Small => TierName::Small,
            Tier::Medium => TierName::Medium,
            Tier::Large => TierName::Large,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Database {
    pub name: String,
    pub owner: String,
    pub password: SecretRef,
}

#[derive(Debug, Clone, Serialize)]
pub struct Replication {
    pub user: String,
    pub password: SecretRef,
    pub max_slot_wal_keep_size: Size,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pooler {
    pub pool_size: u32,
    pub pool_mode: PoolMode,
    pub port: u16,
    pub replica_port: u16,
    pub max_client_conn: u32,
    pub reserve_pool_size: u32,
    pub reserve_pool_timeout: u32,
    /// The poolers' container image (`runtime: docker`).
    pub image: String,
    /// Where the primary's pooler runs and listens: host and address.
    pub host: String,
    pub address: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Replica {
    pub name: String,
    /// Physical replication slot on the primary, derived from the name.
    pub slot: String,
    pub host: String,
    pub address: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub purpose: Purpose,
    pub connect: Connect,
    /// With `connect: ssh_tunnel`, the port of the tunnel's local end.
    pub tunnel_port: u16,
    /// How it runs on its host (the primary's runtime unless set).
    pub runtime: crate::spec::Runtime,
    /// It is the member the YAML declares under `primary:`, a standby
    /// while another member holds the role: its files keep the primary's
    /// layout (the same service and container names).
    pub declared_primary: bool,
    /// Where the YAML lists it under `replicas:` (the declared primary,
    /// as a standby, comes after them all): the replicas keep this order
    /// whichever member holds the role.
    pub position: usize,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct HealthThresholds {
    pub warning: LagThreshold,
    pub critical: LagThreshold,
    pub rebuild_skip_if_healthy: LagThreshold,
}

#[derive(Debug, Clone, Serialize)]
pub struct Backups {
    pub format: BackupFormat,
    pub layout: crate::spec::BackupLayout,
    /// How old the newest verified backup may be before drift reports it.
    pub max_age: Duration,
    pub storage: Storage,
    pub retention: Retention,
}

#[derive(Debug, Clone, Serialize)]
pub struct Filestore {
    pub path: PathBuf,
    pub mirror_to: Vec<String>,
    /// On each replica's host (the primary's `path` unless set).
    pub mirror_path: PathBuf,
    pub every: Duration,
    /// `rsync --delete`; off unless asked.
    pub delete: bool,
}

/// Organisation quota: used and total per resource.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuotaTable {
    pub cpu: QuotaRow,
    pub ram: QuotaRow,
    pub disk: QuotaRow,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuotaRow {
    pub resource: QuotaResource,
    pub used: f64,
    pub total: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaResource {
    Cpu,
    Ram,
    Disk,
}

impl QuotaResource {
    pub fn unit(self) -> &'static str {
        match self {
            QuotaResource::Cpu => "cores",
            QuotaResource::Ram => "MB",
            QuotaResource::Disk => "GB",
        }
    }

    /// Cores keep one decimal (`10.6`); MB and GB are shown whole when they
    /// are whole.
    pub fn format(self, amount: f64) -> String {
        match self {
            QuotaResource::Cpu => format!("{amount:.1}"),
            _ if amount.fract().abs() < 1e-9 => format!("{amount:.0}"),
            _ => format!("{amount:.1}"),
        }
    }
}

impl fmt::Display for QuotaResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuotaResource::Cpu => "CPU",
            QuotaResource::Ram => "RAM",
            QuotaResource::Disk => "disk",
        })
    }
}

impl QuotaTable {
    pub fn rows(&self) -> [QuotaRow; 3] {
        [self.cpu, self.ram, self.disk]
    }
}

impl Topology {
    pub fn environment(&self, id: &str) -> Option<&Environment> {
        self.environments.iter().find(|environment| environment.id == id)
    }

    /// The topology of environments `ids` only, with the hosts they use:
    /// what `plan --env` observes. The organisation's quota stays the one
    /// resolve computed over every environment. `Err` names an unknown id.
    pub fn only(&self, ids: &[String]) -> Result<Topology, String> {
        if let Some(unknown) = ids.iter().find(|id| self.environment(id).is_none()) {
            return Err(unknown.clone());
        }
        let environments: Vec<Environment> =
            self.environments.iter().filter(|environment| ids.contains(&environment.id)).cloned().collect();
        let used: std::collections::BTreeSet<&str> = environments
            .iter()
            .flat_map(|environment| {
                std::iter::once(environment.primary.host.as_str())
                    .chain(environment.replicas.iter().map(|replica| replica.host.as_str()))
                    .chain(environment.pooler.as_ref().map(|pooler| pooler.host.as_str()))
                    .chain(environment.odoo.as_ref().map(|odoo| odoo.host.as_str()))
            })
            .collect();
        let hosts = self
            .hosts
            .iter()
            .filter(|(name, _)| used.contains(name.as_str()))
            .map(|(name, host)| (name.clone(), host.clone()))
            .collect();
        Ok(Topology { environments, hosts, ..self.clone() })
    }

    /// Where environment `id` stands under `environments:` (for located
    /// messages: `environments[N]`).
    pub fn environment_index(&self, id: &str) -> usize {
        self.environments.iter().position(|environment| environment.id == id).unwrap_or(0)
    }
}
