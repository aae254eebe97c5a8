//! Spec → Topology: fills in every default and enforces every rule of
//! SPEC.md. Pure: no I/O, no secret is read (secrets are resolved when a
//! command needs them, not at `validate`).
//!
//! All problems are collected, not just the first, each with the YAML path
//! of the token it concerns.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use super::path::{Anchor, YamlPath};
use crate::spec::tuning::{self, Tier};
use crate::spec::{self, Connect, PoolMode, PoolSize, Size, Spec, StateBackend, Storage, Tuning};
use crate::suggest::did_you_mean;
use crate::topology::{
    Backups, Cluster, Database, Environment, Filestore, HealthThresholds, Host, Pooler, QuotaResource, QuotaRow,
    QuotaTable, Replica, Replication, SshTarget, Topology, Transport,
};

/// Odoo versions that support read replicas.
pub const ODOO_REPLICA_VERSIONS: [&str; 2] = ["18.0", "19.0"];
/// PostgreSQL majors pgfleet drives.
pub const SUPPORTED_MAJORS: std::ops::RangeInclusive<u32> = 13..=17;
/// Share of its environment's CPU and RAM a replica costs; disk costs 100 %.
pub const REPLICA_CPU_RAM_SHARE: f64 = 0.3;

const DEFAULT_ADDRESS: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 5432;
const DEFAULT_MAJOR: u32 = 15;

/// Settings pgfleet writes itself; a user override would fight it.
const MANAGED_SETTINGS: [(&str, &str); 12] = [
    ("port", "set `port` on the primary or replica"),
    ("listen_addresses", "set `address` on the primary or replica"),
    ("data_directory", "set `data_dir`"),
    ("config_file", "pgfleet writes the configuration files"),
    ("hba_file", "pgfleet manages pg_hba.conf"),
    ("ident_file", "pgfleet manages the configuration files"),
    ("primary_conninfo", "pgfleet writes the standby configuration"),
    ("primary_slot_name", "slots are named after replicas"),
    ("hot_standby_feedback", "set the replica's `purpose` (reporting: on, dr: off)"),
    ("max_slot_wal_keep_size", "set `replication.max_slot_wal_keep_size`"),
    ("wal_level", "pgfleet sets `replica`, which streaming replication needs"),
    ("password_encryption", "pgfleet uses scram-sha-256"),
];

/// A rule of SPEC.md that the configuration breaks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rule {
    #[error("unsupported configuration version {version}; this pgfleet reads version 1")]
    UnsupportedVersion { version: u32 },
    #[error("{what} `{value}` is not valid: use {allowed}")]
    InvalidName { what: &'static str, value: String, allowed: &'static str },
    #[error("environment id `{id}` is used twice")]
    DuplicateEnvironment { id: String },
    #[error("replica name `{name}` is used twice in environment `{environment}`")]
    DuplicateReplica { name: String, environment: String },
    #[error("`{name}` cannot name a replica: it is the address of the primary's pooler")]
    ReservedReplicaName { name: String },
    #[error("replicas `{first}` and `{second}` would both use replication slot `{slot}`")]
    DuplicateSlot { slot: String, first: String, second: String },
    #[error("host `{name}` is not defined under `hosts:`")]
    UndefinedHost { name: String, suggestion: Option<String>, known: Vec<String> },
    #[error("Read replicas are only supported for Odoo versions 18.0, 19.0. Your project is using Odoo {version}.")]
    OdooReplicasUnsupported { version: String },
    #[error(
        "Cannot deploy {subject} - organization {resource} quota exceeded ({} > {} {})",
        resource.format(*used), resource.format(*total), resource.unit()
    )]
    QuotaExceeded { subject: &'static str, resource: QuotaResource, used: f64, total: f64 },
    #[error("environment `{environment}` has no `resources`, so the organization quota cannot be checked")]
    QuotaNeedsResources { environment: String },
    #[error("{second} listens on {address}:{port} on host `{host}`, already used by {first}")]
    EndpointCollision { host: String, address: String, port: u16, first: String, second: String },
    #[error("{second} uses data directory {} on host `{host}`, {relation} that of {first}", dir.display())]
    DataDirCollision { host: String, dir: PathBuf, relation: &'static str, first: String, second: String },
    #[error("data directory {} is relative, which only a `transport: local` host allows", dir.display())]
    RelativeDataDir { dir: PathBuf },
    #[error("`{address}` is not an IP address or `localhost`")]
    InvalidListenAddress { address: String },
    #[error("host `{host}` uses SSH but has no `address`")]
    MissingHostAddress { host: String },
    #[error("host `{host}` has `transport: local` but also `{key}`")]
    LocalHostWithSsh { host: String, key: &'static str },
    #[error("`{key}: auto` needs `resources.ram_mb` on environment `{environment}`")]
    AutoNeedsResources { key: &'static str, environment: String },
    #[error("`{name}` is managed by pgfleet and cannot be set here")]
    ManagedSetting { name: String, instead: &'static str },
    #[error("`{name}` is not a PostgreSQL setting name")]
    InvalidSettingName { name: String },
    #[error("the value of setting `{name}` contains {}", describe_character(*character))]
    ControlCharacterInSetting { name: String, character: char },
    #[error("PostgreSQL {version} is not supported; pgfleet drives majors 13 to 17")]
    UnsupportedMajor { version: u32 },
    #[error("the {level} threshold ({bytes}, {seconds} s) is above the critical one")]
    ThresholdOrder { level: &'static str, bytes: Size, seconds: u64 },
    #[error("filestore mirror names `{name}`, which is not a replica of environment `{environment}`")]
    UnknownMirrorReplica { name: String, environment: String, suggestion: Option<String> },
    #[error("state.url must say where the database's connection string comes from")]
    StateUrlGenerated,
    #[error("the postgres state backend needs `url`")]
    StateUrlMissing,
    #[error("`{key}` belongs to the {backend} state backend")]
    StateKeyMismatch { key: &'static str, backend: &'static str },
    #[error("the primary pooler and the replica poolers both use port {port}")]
    PoolerPortsEqual { port: u16 },
    #[error("`{value}` is not a valid value for `{key}`")]
    ZeroValue { key: &'static str, value: u64 },
    #[error("`{key}: 0` is not a port anything can listen on or connect to")]
    PortZero { key: &'static str },
    #[error("the data directory contains {}", describe_character(*character))]
    ControlCharacterInPath { character: char },
    #[error("{what} `{value}` is reserved: {reason}")]
    ReservedName { what: &'static str, value: String, reason: &'static str },
    #[error("`{name}` is both the database owner and the replication user")]
    SameRole { name: String },
    #[error("`{address}` is not an IP address or a host name")]
    InvalidHostAddress { address: String },
    #[error("organization name `{name}` cannot name the state file")]
    StateFileName { name: String },
    #[error("{what} {} is a relative path", path.display())]
    RelativePath { what: &'static str, path: PathBuf },
    #[error("replica `{replica}` needs a `runtime`: its primary's, `{runtime}`, runs no replicas")]
    ReplicaRuntimeMissing { replica: String, runtime: &'static str },
    #[error("replica `{replica}` cannot have `runtime: {runtime}`: it runs no replicas, and pgfleet runs its replicas")]
    ExternalReplica { replica: String, runtime: &'static str },
    #[error("backup storage `{key}` `{value}` is not valid: {reason}")]
    InvalidStorage { key: &'static str, value: String, reason: &'static str },
}

impl Rule {
    /// What the user should do about it.
    pub fn help(&self) -> Option<String> {
        Some(match self {
            Rule::UnsupportedVersion { .. } => "set `version: 1`".into(),
            Rule::DuplicateEnvironment { .. } | Rule::DuplicateReplica { .. } => "give each a distinct name".into(),
            Rule::ReservedReplicaName { .. } => "choose another name, e.g. `r1`".into(),
            Rule::DuplicateSlot { .. } => "slot names replace `-` with `_`; rename one of the replicas".into(),
            Rule::UndefinedHost { suggestion: Some(name), .. } => format!("did you mean `{name}`?"),
            Rule::UndefinedHost { known, .. } if known.is_empty() => "define the host under `hosts:`".into(),
            Rule::UndefinedHost { known, .. } => format!("defined hosts: {}", known.join(", ")),
            Rule::OdooReplicasUnsupported { .. } => {
                "Please upgrade to Odoo 18.0 or 19.0 to use read replica features.".into()
            }
            Rule::QuotaExceeded { resource, .. } => {
                format!("raise organization.quota.{}, or lower the environments' resources or their number of replicas", match resource {
                    QuotaResource::Cpu => "cpu",
                    QuotaResource::Ram => "ram_mb",
                    QuotaResource::Disk => "disk_gb",
                })
            }
            Rule::QuotaNeedsResources { .. } => "add `resources: {cpu, ram_mb, disk_gb}` to the environment".into(),
            Rule::EndpointCollision { .. } => "use another port, or another loopback address (127.0.0.x)".into(),
            Rule::DataDirCollision { .. } => "give each cluster its own data directory".into(),
            Rule::RelativeDataDir { .. } => "write the full path, starting with /".into(),
            Rule::InvalidListenAddress { .. } => "write an IPv4 or IPv6 address, e.g. 127.0.0.1".into(),
            Rule::MissingHostAddress { .. } => "add `address:`, or `transport: local` for this machine".into(),
            Rule::LocalHostWithSsh { key, .. } => format!("remove `{key}`, or drop `transport: local`"),
            Rule::AutoNeedsResources { key, .. } => {
                format!("add `resources: {{cpu, ram_mb, disk_gb}}`, or set `{key}` explicitly")
            }
            Rule::ManagedSetting { instead, .. } => (*instead).into(),
            Rule::InvalidSettingName { .. } => "setting names are lowercase words joined by `_`".into(),
            Rule::ControlCharacterInSetting { .. } => {
                "write the value on one line: postgresql.auto.conf holds one setting per line, and a line break in a value starts another setting".into()
            }
            Rule::UnsupportedMajor { .. } => "set `version:` to 13, 14, 15, 16 or 17".into(),
            Rule::ThresholdOrder { .. } => "warning thresholds must not exceed the critical ones".into(),
            Rule::UnknownMirrorReplica { suggestion: Some(name), .. } => format!("did you mean `{name}`?"),
            Rule::UnknownMirrorReplica { .. } => "list replica names from this environment".into(),
            Rule::StateUrlGenerated => {
                "write `url: {env: NAME}` or `url: {file: PATH}`, holding e.g. postgres://USER:PASSWORD@HOST:PORT/DATABASE".into()
            }
            Rule::StateUrlMissing => "add `url: {env: NAME}`".into(),
            Rule::StateKeyMismatch { .. } => "remove it, or change `backend`".into(),
            Rule::PoolerPortsEqual { .. } => "set different `port` and `replica_port`".into(),
            Rule::PortZero { .. } => "use a port from 1 to 65535, or leave the key out for the default".into(),
            Rule::ControlCharacterInPath { .. } => {
                "choose a directory without control characters: the configuration files pgfleet writes hold one path per line"
                    .into()
            }
            Rule::ReservedName { .. } => "choose another name".into(),
            Rule::SameRole { .. } => "give the replication role its own name (default: `replicator`)".into(),
            Rule::InvalidHostAddress { .. } => {
                "write the address pgfleet connects to over SSH: an IP address, or a DNS name such as db1.example.net".into()
            }
            Rule::StateFileName { .. } => "set `state.path`, or choose a name without `/`, `\\` or control characters".into(),
            Rule::RelativePath { .. } => "write the full path, starting with /".into(),
            Rule::ReplicaRuntimeMissing { .. } | Rule::ExternalReplica { .. } => {
                "set the replica's `runtime:` to how it runs on its host: `pg_ctl`, `debian` or `docker`".into()
            }
            Rule::InvalidStorage { key: "endpoint", .. } => {
                "write the service's URL, e.g. https://<account>.r2.cloudflarestorage.com; keys go in access_key and secret_key".into()
            }
            Rule::InvalidStorage { .. } => {
                "use letters, digits, `.`, `-` and `_` (and `/` between the parts of a prefix)".into()
            }
            Rule::InvalidName { .. } | Rule::ZeroValue { .. } => return None,
        })
    }

    /// Stable short code shown with the diagnostic (`pgfleet::quota`).
    pub fn code(&self) -> &'static str {
        match self {
            Rule::UnsupportedVersion { .. } => "pgfleet::version",
            Rule::InvalidName { .. } | Rule::InvalidSettingName { .. } | Rule::ReservedReplicaName { .. } => {
                "pgfleet::name"
            }
            Rule::DuplicateEnvironment { .. } | Rule::DuplicateReplica { .. } | Rule::DuplicateSlot { .. } => {
                "pgfleet::duplicate"
            }
            Rule::UndefinedHost { .. } | Rule::UnknownMirrorReplica { .. } => "pgfleet::reference",
            Rule::OdooReplicasUnsupported { .. } => "pgfleet::odoo_version",
            Rule::QuotaExceeded { .. } | Rule::QuotaNeedsResources { .. } => "pgfleet::quota",
            Rule::EndpointCollision { .. } | Rule::PoolerPortsEqual { .. } => "pgfleet::port_collision",
            Rule::PortZero { .. } => "pgfleet::port",
            Rule::ReservedName { .. } | Rule::SameRole { .. } => "pgfleet::name",
            Rule::ControlCharacterInPath { .. } => "pgfleet::data_dir",
            Rule::InvalidHostAddress { .. } => "pgfleet::host",
            Rule::DataDirCollision { .. } | Rule::RelativeDataDir { .. } => "pgfleet::data_dir",
            Rule::InvalidListenAddress { .. } => "pgfleet::address",
            Rule::MissingHostAddress { .. } | Rule::LocalHostWithSsh { .. } => "pgfleet::host",
            Rule::AutoNeedsResources { .. } => "pgfleet::resources",
            Rule::ManagedSetting { .. } | Rule::ControlCharacterInSetting { .. } => "pgfleet::setting",
            Rule::UnsupportedMajor { .. } => "pgfleet::major",
            Rule::ThresholdOrder { .. } => "pgfleet::health",
            Rule::StateUrlGenerated
            | Rule::StateUrlMissing
            | Rule::StateKeyMismatch { .. }
            | Rule::StateFileName { .. } => "pgfleet::state",
            Rule::ZeroValue { .. } => "pgfleet::value",
            Rule::ReplicaRuntimeMissing { .. } | Rule::ExternalReplica { .. } => "pgfleet::runtime",
            Rule::RelativePath { .. } => "pgfleet::path",
            Rule::InvalidStorage { .. } => "pgfleet::storage",
        }
    }
}

/// A broken rule and where: the token it points at, plus other places that
/// explain it (the first use of a duplicated port, the quota total …).
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub rule: Rule,
    pub path: YamlPath,
    pub anchor: Anchor,
    pub label: String,
    pub related: Vec<RelatedPlace>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelatedPlace {
    pub path: YamlPath,
    pub anchor: Anchor,
    pub label: String,
}

impl Violation {
    fn at(rule: Rule, path: YamlPath, label: impl Into<String>) -> Self {
        Violation { rule, path, anchor: Anchor::Value, label: label.into(), related: Vec::new() }
    }

    fn on_key(mut self) -> Self {
        self.anchor = Anchor::Key;
        self
    }

    fn with(mut self, path: YamlPath, label: impl Into<String>) -> Self {
        self.related.push(RelatedPlace { path, anchor: Anchor::Value, label: label.into() });
        self
    }
}

/// Validates `spec` and builds the topology, or returns every violation.
///
/// Relative paths (a local host's data directories, the local state file)
/// are taken relative to `working_dir`, the directory pgfleet runs in.
pub fn resolve(spec: &Spec, working_dir: &Path) -> Result<Topology, Vec<Violation>> {
    let mut resolver = Resolver { violations: Vec::new(), working_dir: working_dir.to_owned() };
    let topology = resolver.topology(spec);
    if resolver.violations.is_empty() { Ok(topology) } else { Err(resolver.violations) }
}

struct Resolver {
    violations: Vec<Violation>,
    working_dir: PathBuf,
}

/// Something listening on a host: a PostgreSQL cluster or a pooler.
struct Endpoint {
    machine: String,
    host: String,
    address: String,
    port: u16,
    owner: String,
    path: YamlPath,
}

/// A data directory on a host.
struct DataDir {
    machine: String,
    host: String,
    dir: PathBuf,
    owner: String,
    path: YamlPath,
}

impl Resolver {
    fn report(&mut self, violation: Violation) {
        self.violations.push(violation);
    }

    fn topology(&mut self, spec: &Spec) -> Topology {
        let root = YamlPath::root();
        if spec.version != 1 {
            self.report(Violation::at(
                Rule::UnsupportedVersion { version: spec.version },
                root.key("version"),
                "expected 1",
            ));
        }
        let hosts = self.hosts(spec);
        let environments: Vec<Environment> = spec
            .environments
            .iter()
            .enumerate()
            .map(|(index, environment)| self.environment(environment, &root.key("environments").index(index), &hosts))
            .collect();
        self.unique_environment_ids(spec);
        self.endpoints_and_data_dirs(&environments, &hosts);
        let quota = self.quota(spec);
        let organization = spec
            .organization
            .as_ref()
            .map(|organization| organization.name.clone())
            .unwrap_or_else(|| "pgfleet".to_owned());
        let state = self.state(spec, &organization);
        Topology { organization, quota, state, hosts, environments }
    }

    fn hosts(&mut self, spec: &Spec) -> BTreeMap<String, Host> {
        let mut hosts = BTreeMap::new();
        for (name, host) in &spec.hosts {
            let path = YamlPath::root().key("hosts").key(name.as_str());
            self.check_name("host name", name, &path, Anchor::Key);
            let transport = match host.transport {
                spec::TransportKind::Local => {
                    if host.ssh.is_some() {
                        self.report(
                            Violation::at(
                                Rule::LocalHostWithSsh { host: name.clone(), key: "ssh" },
                                path.key("ssh"),
                                "SSH settings on a local host",
                            )
                            .on_key(),
                        );
                    }
                    if host.address.is_some() {
                        self.report(
                            Violation::at(
                                Rule::LocalHostWithSsh { host: name.clone(), key: "address" },
                                path.key("address"),
                                "an address on a local host",
                            )
                            .on_key(),
                        );
                    }
                    Transport::Local
                }
                spec::TransportKind::Ssh => {
                    let ssh = host.ssh.clone().unwrap_or_default();
                    let address = host.address.clone().unwrap_or_else(|| {
                        self.report(
                            Violation::at(Rule::MissingHostAddress { host: name.clone() }, path.clone(), "no address")
                                .on_key(),
                        );
                        String::new()
                    });
                    if host.address.is_some() && !is_host_address(&address) {
                        self.report(Violation::at(
                            Rule::InvalidHostAddress { address: address.clone() },
                            path.key("address"),
                            "not an address",
                        ));
                    }
                    Transport::Ssh(SshTarget {
                        address,
                        port: self.port(ssh.port, 22, "port", &path.key("ssh").key("port")),
                        user: ssh.user.unwrap_or_else(|| "postgres".to_owned()),
                        identity_file: ssh.identity_file,
                        known_hosts: ssh.known_hosts.unwrap_or_else(|| PathBuf::from("~/.ssh/known_hosts")),
                        become_user: ssh.become_user,
                    })
                }
            };
            let authorized_keys = host.ssh.as_ref().and_then(|ssh| ssh.authorized_keys.clone());
            hosts.insert(name.clone(), Host { name: name.clone(), transport, authorized_keys });
        }
        hosts
    }

    fn check_host_reference(&mut self, name: &str, path: &YamlPath, hosts: &BTreeMap<String, Host>) {
        if hosts.contains_key(name) {
            return;
        }
        let suggestion = did_you_mean(name, hosts.keys().map(String::as_str)).map(str::to_owned);
        self.report(Violation::at(
            Rule::UndefinedHost { name: name.to_owned(), suggestion, known: hosts.keys().cloned().collect() },
            path.clone(),
            "undefined host",
        ));
    }

    fn check_name(&mut self, what: &'static str, value: &str, path: &YamlPath, anchor: Anchor) {
        let valid = !value.is_empty()
            && value.len() <= 48
            && value.starts_with(|c: char| c.is_ascii_lowercase())
            && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !valid {
            let mut violation = Violation::at(
                Rule::InvalidName {
                    what,
                    value: value.to_owned(),
                    allowed: "up to 48 lowercase letters, digits, `-` and `_`, starting with a letter",
                },
                path.clone(),
                "invalid name",
            );
            violation.anchor = anchor;
            self.report(violation);
        }
    }

    /// A port, or its default; 0 would mean "any free port" to the kernel,
    /// which nothing could then be pointed at.
    fn port(&mut self, port: Option<u16>, default: u16, key: &'static str, path: &YamlPath) -> u16 {
        if port == Some(0) {
            self.report(Violation::at(Rule::PortZero { key }, path.clone(), "not a usable port"));
        }
        port.unwrap_or(default)
    }

    /// A database or role name: it is written unquoted into pgbouncer.ini,
    /// pg_hba.conf and primary_conninfo, and PostgreSQL cuts names at 63
    /// bytes (after which the observed name never matches the desired one).
    fn check_sql_name(&mut self, what: &'static str, value: &str, path: &YamlPath) {
        let valid = !value.is_empty()
            && value.len() <= 63
            && value.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            self.report(Violation::at(
                Rule::InvalidName {
                    what,
                    value: value.to_owned(),
                    allowed: "up to 63 letters, digits, `_`, `-` and `.`, starting with a letter, digit or `_`",
                },
                path.clone(),
                "invalid name",
            ));
        }
    }

    fn reserved(&mut self, what: &'static str, value: &str, reason: Option<&'static str>, path: &YamlPath) {
        if let Some(reason) = reason {
            self.report(Violation::at(
                Rule::ReservedName { what, value: value.to_owned(), reason },
                path.clone(),
                "reserved name",
            ));
        }
    }

    /// The application database, its owner and the replication role.
    /// Defaults are valid names (the id passed `check_name`), so only what
    /// the file sets is checked for its characters; the database named
    /// after the id is pointed at the id.
    fn database_and_roles(
        &mut self,
        spec: &spec::Environment,
        database: &Database,
        replication: &Replication,
        path: &YamlPath,
    ) {
        let given = spec.database.as_ref();
        let name_path = match given.and_then(|database| database.name.as_ref()) {
            Some(name) => {
                let name_path = path.key("database").key("name");
                self.check_sql_name("database name", name, &name_path);
                name_path
            }
            None => path.key("id"),
        };
        let owner_path = path.key("database").key("owner");
        if let Some(owner) = given.and_then(|database| database.owner.as_ref()) {
            self.check_sql_name("database owner", owner, &owner_path);
        }
        let user_path = path.key("replication").key("user");
        if let Some(user) = spec.replication.as_ref().and_then(|replication| replication.user.as_ref()) {
            self.check_sql_name("replication user", user, &user_path);
        }
        let database_reason = match database.name.as_str() {
            "postgres" | "template0" | "template1" => Some("it is PostgreSQL's own database"),
            "pgbouncer" => Some("it is PgBouncer's admin console"),
            _ => None,
        };
        self.reserved("database name", &database.name, database_reason, &name_path);
        self.reserved("database owner", &database.owner, reserved_role(&database.owner), &owner_path);
        self.reserved("replication user", &replication.user, reserved_role(&replication.user), &user_path);
        if database.owner == replication.user {
            self.report(
                Violation::at(Rule::SameRole { name: replication.user.clone() }, user_path, "also the owner")
                    .with(owner_path, "database owner"),
            );
        }
    }

    fn listen_address(&mut self, address: Option<&String>, path: &YamlPath) -> String {
        let Some(address) = address else {
            return DEFAULT_ADDRESS.to_owned();
        };
        if address != "localhost" && address.parse::<IpAddr>().is_err() {
            self.report(Violation::at(
                Rule::InvalidListenAddress { address: address.clone() },
                path.clone(),
                "not an address",
            ));
        }
        address.clone()
    }

    /// A relative data directory means "relative to where pgfleet runs",
    /// which only makes sense on the local host (the sandbox).
    fn data_dir(&mut self, dir: Option<&PathBuf>, default: PathBuf, path: &YamlPath, host: Option<&Host>) -> PathBuf {
        let local = host.is_some_and(|host| host.transport == Transport::Local);
        // Quoting takes care of spaces and quotes wherever the path is
        // written; nothing takes a line break through a line-based file.
        if let Some(character) = dir.and_then(|dir| dir.to_string_lossy().chars().find(|c| c.is_control())) {
            self.report(Violation::at(Rule::ControlCharacterInPath { character }, path.clone(), "control character"));
        }
        match dir {
            Some(dir) if !dir.is_absolute() && !local => {
                self.report(Violation::at(Rule::RelativeDataDir { dir: dir.clone() }, path.clone(), "relative path"));
                dir.clone()
            }
            Some(dir) => self.working_dir.join(dir),
            None => default,
        }
    }

    fn environment(
        &mut self,
        environment: &spec::Environment,
        path: &YamlPath,
        hosts: &BTreeMap<String, Host>,
    ) -> Environment {
        let id = environment.id.clone();
        self.check_name("environment id", &id, &path.key("id"), Anchor::Value);
        let ram_mb = environment.resources.map(|resources| resources.ram_mb);
        let primary = self.primary(environment, &path.key("primary"), hosts);
        let replicas = self.replicas(environment, path, hosts, &primary);
        self.odoo_gate(environment, path);

        let database = environment.database.clone().unwrap_or_default();
        let replication = environment.replication.clone().unwrap_or_default();
        let pooler = self.pooler(environment, path, ram_mb, &primary, hosts);
        let health = self.health(environment, &path.key("health"));
        let filestore = self.filestore(environment, path);
        if let Some(backups) = &environment.backups {
            self.backup_storage(&backups.storage, &path.key("backups").key("storage"));
        }

        let database = Database {
            name: database.name.unwrap_or_else(|| id.clone()),
            owner: database.owner.unwrap_or_else(|| "odoo".to_owned()),
            password: database.password.unwrap_or_default(),
        };
        let replication = Replication {
            user: replication.user.unwrap_or_else(|| "replicator".to_owned()),
            password: replication.password.unwrap_or_default(),
            max_slot_wal_keep_size: replication.max_slot_wal_keep_size.unwrap_or(Size::mebibytes(10 * 1024)),
        };
        self.database_and_roles(environment, &database, &replication, path);

        Environment {
            odoo_version: environment.odoo_version.clone(),
            resources: environment.resources,
            database,
            replication,
            pooler,
            health,
            backups: environment.backups.clone().map(|backups| Backups {
                format: backups.format,
                layout: backups.layout,
                max_age: backups.max_age.unwrap_or(spec::Duration::from_seconds(2 * 86_400)),
                storage: backups.storage,
                retention: backups.retention.unwrap_or_default(),
            }),
            protected: environment.protected,
            filestore,
            odoo: self.odoo(environment, path, hosts),
            primary,
            replicas,
            id,
        }
    }

    /// What a storage's keys must be before anything connects: S3's
    /// endpoint a plain http(s) URL (no credentials in it: they would
    /// show in messages), its bucket and prefix names a key can hold;
    /// SFTP and FTP servers an address; no control character in a path.
    fn backup_storage(&mut self, storage: &Storage, path: &YamlPath) {
        let invalid = |this: &mut Self, key: &'static str, value: &str, reason: &'static str| {
            let rule = Rule::InvalidStorage { key, value: value.to_owned(), reason };
            this.report(Violation::at(rule, path.key(key), reason));
        };
        let name_part = |part: &str| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        };
        match storage {
            Storage::Local { .. } => {}
            Storage::S3 { bucket, endpoint, prefix, .. } => {
                if !name_part(bucket) || bucket.len() > 63 {
                    invalid(self, "bucket", bucket, "a bucket name is 1 to 63 letters, digits, `.`, `-` or `_`");
                }
                if let Some(endpoint) = endpoint
                    && let Some(reason) = endpoint_problem(endpoint)
                {
                    invalid(self, "endpoint", endpoint, reason);
                }
                if let Some(prefix) = prefix
                    && !prefix.trim_matches('/').is_empty()
                    && !prefix.trim_matches('/').split('/').all(name_part)
                {
                    invalid(self, "prefix", prefix, "a prefix is names joined by `/`");
                }
            }
            Storage::Sftp { address, port, path: dir, .. } | Storage::Ftp { address, port, path: dir, .. } => {
                self.port(*port, 22, "port", &path.key("port"));
                if !is_host_address(address) {
                    invalid(self, "address", address, "not an IP address or a host name");
                }
                if dir.to_string_lossy().chars().any(char::is_control) {
                    invalid(self, "path", &dir.to_string_lossy(), "it contains a control character");
                }
            }
        }
    }

    /// Odoo's host must be defined; its file and command are written into
    /// a command line, so they may hold no control character.
    fn odoo(
        &mut self,
        environment: &spec::Environment,
        path: &YamlPath,
        hosts: &BTreeMap<String, Host>,
    ) -> Option<spec::Odoo> {
        let odoo = environment.odoo.clone()?;
        let path = path.key("odoo");
        self.check_host_reference(&odoo.host, &path.key("host"), hosts);
        let config = odoo.config.to_string_lossy();
        if let Some(character) = config.chars().find(|c| c.is_control()) {
            self.report(Violation::at(
                Rule::ControlCharacterInPath { character },
                path.key("config"),
                "control character",
            ));
        }
        if !odoo.config.is_absolute() {
            self.report(Violation::at(
                Rule::RelativePath { what: "Odoo's configuration file", path: odoo.config.clone() },
                path.key("config"),
                "relative",
            ));
        }
        if let Some(character) = odoo.restart.as_deref().and_then(|command| command.chars().find(|c| c.is_control())) {
            self.report(Violation::at(
                Rule::ControlCharacterInSetting { name: "odoo.restart".into(), character },
                path.key("restart"),
                "control character",
            ));
        }
        Some(odoo)
    }

    fn primary(&mut self, environment: &spec::Environment, path: &YamlPath, hosts: &BTreeMap<String, Host>) -> Cluster {
        let primary = &environment.primary;
        self.check_host_reference(&primary.host, &path.key("host"), hosts);
        let version = primary.version.unwrap_or(DEFAULT_MAJOR);
        if !SUPPORTED_MAJORS.contains(&version) {
            self.report(Violation::at(Rule::UnsupportedMajor { version }, path.key("version"), "unsupported major"));
        }
        let address = self.listen_address(primary.address.as_ref(), &path.key("address"));
        let data_dir = self.data_dir(
            primary.data_dir.as_ref(),
            PathBuf::from(format!("/var/lib/postgresql/{version}/{}", environment.id)),
            &path.key("data_dir"),
            hosts.get(&primary.host),
        );

        let ram_mb = environment.resources.map(|resources| resources.ram_mb);
        let tuning_choice = primary.tuning.unwrap_or(if ram_mb.is_some() { Tuning::Auto } else { Tuning::None });
        if tuning_choice == Tuning::Auto && ram_mb.is_none() {
            self.report(Violation::at(
                Rule::AutoNeedsResources { key: "tuning", environment: environment.id.clone() },
                path.key("tuning"),
                "no resources to size from",
            ));
        }
        let tier: Option<Tier> = tuning::tier(tuning_choice, ram_mb);
        let mut settings: BTreeMap<String, String> = tier
            .map(|tier| tier.settings().into_iter().map(|(name, value)| (name.to_owned(), value.to_owned())).collect())
            .unwrap_or_default();
        for (name, value) in &primary.settings {
            let setting_path = path.key("settings").key(name.as_str());
            if let Some((_, instead)) = MANAGED_SETTINGS.iter().find(|(managed, _)| managed == name) {
                self.report(
                    Violation::at(
                        Rule::ManagedSetting { name: name.clone(), instead },
                        setting_path,
                        "managed by pgfleet",
                    )
                    .on_key(),
                );
                continue;
            }
            let valid_name = name.starts_with(|c: char| c.is_ascii_lowercase())
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
            if !valid_name {
                self.report(
                    Violation::at(Rule::InvalidSettingName { name: name.clone() }, setting_path, "not a setting name")
                        .on_key(),
                );
                continue;
            }
            let value = value.to_string();
            // Quoting cannot carry a line break: PostgreSQL's config scanner
            // ends a quoted value at the end of the line, so the cluster would
            // not start again.
            if let Some(character) = value.chars().find(|c| c.is_control()) {
                self.report(Violation::at(
                    Rule::ControlCharacterInSetting { name: name.clone(), character },
                    setting_path,
                    "control character in the value",
                ));
                continue;
            }
            settings.insert(name.clone(), value);
        }

        let name = primary.name.clone().unwrap_or_else(|| crate::placement::PRIMARY.to_owned());
        if let Some(given) = &primary.name {
            self.check_name("member name", given, &path.key("name"), Anchor::Value);
            if environment.replicas.iter().any(|replica| &replica.name == given) {
                self.report(Violation::at(
                    Rule::DuplicateReplica { name: given.clone(), environment: environment.id.clone() },
                    path.key("name"),
                    "a replica's name too",
                ));
            }
        }
        Cluster {
            name,
            standby: None,
            host: primary.host.clone(),
            address,
            port: self.port(primary.port, DEFAULT_PORT, "port", &path.key("port")),
            version,
            data_dir,
            runtime: primary.runtime,
            image: self.image(primary.image.as_deref(), &format!("postgres:{version}"), &path.key("image")),
            tier: tier.map(Into::into),
            settings,
        }
    }

    fn replicas(
        &mut self,
        environment: &spec::Environment,
        path: &YamlPath,
        hosts: &BTreeMap<String, Host>,
        primary: &Cluster,
    ) -> Vec<Replica> {
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        let mut slots: BTreeMap<String, &str> = BTreeMap::new();
        let mut replicas = Vec::new();
        for (index, replica) in environment.replicas.iter().enumerate() {
            let replica_path = path.key("replicas").index(index);
            self.check_name("replica name", &replica.name, &replica_path.key("name"), Anchor::Value);
            if replica.name == "primary" {
                self.report(Violation::at(
                    Rule::ReservedReplicaName { name: replica.name.clone() },
                    replica_path.key("name"),
                    "reserved",
                ));
            }
            if let Some(first) = names.insert(&replica.name, index) {
                self.report(
                    Violation::at(
                        Rule::DuplicateReplica { name: replica.name.clone(), environment: environment.id.clone() },
                        replica_path.key("name"),
                        "second use",
                    )
                    .with(path.key("replicas").index(first).key("name"), "first use"),
                );
            } else {
                let slot = slot_name(&replica.name);
                if let Some(first) = slots.insert(slot.clone(), &replica.name) {
                    self.report(Violation::at(
                        Rule::DuplicateSlot { slot, first: first.to_owned(), second: replica.name.clone() },
                        replica_path.key("name"),
                        "same slot name",
                    ));
                }
            }
            self.check_host_reference(&replica.host, &replica_path.key("host"), hosts);
            let address = self.listen_address(replica.address.as_ref(), &replica_path.key("address"));
            let data_dir = self.data_dir(
                replica.data_dir.as_ref(),
                PathBuf::from(format!("/var/lib/postgresql/{}/{}-{}", primary.version, environment.id, replica.name)),
                &replica_path.key("data_dir"),
                hosts.get(&replica.host),
            );

            // Whether the replica's host can reach a primary on loopback is a
            // fact about machines, not addresses: plan decides it from what
            // the hosts report (their machine ids).

            // A replica runs on a runtime that runs replicas: its own, or
            // its primary's when that one does.
            let runs_replicas = |kind: spec::Runtime| crate::runtime::of(kind).capabilities().replicas;
            let name = |kind: spec::Runtime| crate::runtime::of(kind).name();
            let runtime = match (replica.runtime, primary.runtime) {
                (Some(runtime), _) if !runs_replicas(runtime) => {
                    self.report(Violation::at(
                        Rule::ExternalReplica { replica: replica.name.clone(), runtime: name(runtime) },
                        replica_path.key("runtime"),
                        "pgfleet runs replicas",
                    ));
                    spec::Runtime::PgCtl
                }
                (Some(runtime), _) => runtime,
                (None, runtime) if !runs_replicas(runtime) => {
                    self.report(
                        Violation::at(
                            Rule::ReplicaRuntimeMissing { replica: replica.name.clone(), runtime: name(runtime) },
                            replica_path.key("name"),
                            "no runtime",
                        )
                        .with(path.key("primary").key("runtime"), "a primary pgfleet does not run"),
                    );
                    spec::Runtime::PgCtl
                }
                (None, runtime) => runtime,
            };
            let port = self.port(replica.port, DEFAULT_PORT, "port", &replica_path.key("port"));
            replicas.push(Replica {
                declared_primary: false,
                position: index,
                runtime,
                name: replica.name.clone(),
                slot: slot_name(&replica.name),
                host: replica.host.clone(),
                address,
                port,
                data_dir,
                purpose: replica.purpose,
                connect: replica.connect,
                tunnel_port: self.port(
                    replica.tunnel_port,
                    if port > 55535 { port - 10000 } else { port + 10000 },
                    "tunnel_port",
                    &replica_path.key("tunnel_port"),
                ),
            });
        }
        replicas
    }

    fn odoo_gate(&mut self, environment: &spec::Environment, path: &YamlPath) {
        let Some(version) = &environment.odoo_version else {
            return;
        };
        if environment.replicas.is_empty() || ODOO_REPLICA_VERSIONS.contains(&version.as_str()) {
            return;
        }
        self.report(
            Violation::at(
                Rule::OdooReplicasUnsupported { version: version.clone() },
                path.key("odoo_version"),
                "replicas need Odoo 18.0 or 19.0",
            )
            .with(path.key("replicas"), "replicas requested here"),
        );
    }

    fn pooler(
        &mut self,
        environment: &spec::Environment,
        path: &YamlPath,
        ram_mb: Option<f64>,
        primary: &Cluster,
        hosts: &BTreeMap<String, Host>,
    ) -> Option<Pooler> {
        let pgbouncer = environment.pgbouncer.as_ref()?;
        let path = path.key("pgbouncer");
        // Checked before `pool_size: 0` turns the pooler off, so the mistake
        // is not waiting for the day the pooler is turned on.
        let port = self.port(pgbouncer.port, 6432, "port", &path.key("port"));
        let replica_port = self.port(pgbouncer.replica_port, 6433, "replica_port", &path.key("replica_port"));
        let pool_size = match pgbouncer.pool_size.unwrap_or(PoolSize::Auto) {
            PoolSize::Fixed(0) => return None,
            PoolSize::Fixed(size) => size,
            PoolSize::Auto => match ram_mb {
                Some(ram_mb) => tuning::auto_pool_size(ram_mb),
                None => {
                    self.report(Violation::at(
                        Rule::AutoNeedsResources { key: "pool_size", environment: environment.id.clone() },
                        if pgbouncer.pool_size.is_some() { path.key("pool_size") } else { path.clone() },
                        "no resources to size from",
                    ));
                    0
                }
            },
        };
        if port == replica_port && port != 0 && !environment.replicas.is_empty() {
            self.report(
                Violation::at(Rule::PoolerPortsEqual { port }, path.key("replica_port"), "same as `port`")
                    .with(path.key("port"), "primary pooler port"),
            );
        }
        let max_client_conn = pgbouncer.max_client_conn.unwrap_or(1000);
        if max_client_conn == 0 {
            self.report(Violation::at(
                Rule::ZeroValue { key: "max_client_conn", value: 0 },
                path.key("max_client_conn"),
                "must be at least 1",
            ));
        }
        Some(Pooler {
            pool_size,
            pool_mode: pgbouncer.pool_mode.unwrap_or(PoolMode::Transaction),
            port,
            replica_port,
            max_client_conn,
            reserve_pool_size: pgbouncer.reserve_pool_size.unwrap_or(5),
            reserve_pool_timeout: pgbouncer.reserve_pool_timeout.unwrap_or(3),
            image: self.image(pgbouncer.image.as_deref(), &primary.image, &path.key("image")),
            host: match &pgbouncer.host {
                Some(host) => {
                    self.check_host_reference(host, &path.key("host"), hosts);
                    host.clone()
                }
                None => primary.host.clone(),
            },
            address: match &pgbouncer.address {
                Some(address) => self.listen_address(Some(address), &path.key("address")),
                None if pgbouncer.host.as_ref().is_some_and(|host| host != &primary.host) => "127.0.0.1".into(),
                None => primary.address.clone(),
            },
        })
    }

    /// A container image reference, as written or `default`: what
    /// `docker run` takes as one argument and never as an option.
    fn image(&mut self, written: Option<&str>, default: &str, path: &YamlPath) -> String {
        let Some(image) = written else { return default.to_owned() };
        let valid = !image.is_empty()
            && image.len() <= 255
            && image.starts_with(|c: char| c.is_ascii_alphanumeric())
            && image.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c));
        if !valid {
            self.report(Violation::at(
                Rule::InvalidName {
                    what: "image",
                    value: image.to_owned(),
                    allowed: "an image reference: letters, digits and . _ - / : @, starting with a letter or digit",
                },
                path.clone(),
                "not an image reference",
            ));
        }
        image.to_owned()
    }

    fn health(&mut self, environment: &spec::Environment, path: &YamlPath) -> HealthThresholds {
        let threshold =
            |bytes_mb: u64, seconds| spec::LagThreshold { lag_bytes: Size::mebibytes(bytes_mb), lag_seconds: seconds };
        let health = environment.health.clone().unwrap_or_default();
        let thresholds = HealthThresholds {
            warning: health.warning.unwrap_or(threshold(50, 15)),
            critical: health.critical.unwrap_or(threshold(100, 30)),
            rebuild_skip_if_healthy: health.rebuild_skip_if_healthy.unwrap_or(threshold(10, 60)),
        };
        let warning = thresholds.warning;
        if warning.lag_bytes > thresholds.critical.lag_bytes || warning.lag_seconds > thresholds.critical.lag_seconds {
            self.report(Violation::at(
                Rule::ThresholdOrder { level: "warning", bytes: warning.lag_bytes, seconds: warning.lag_seconds },
                if health.warning.is_some() { path.key("warning") } else { path.key("critical") },
                "above critical",
            ));
        }
        thresholds
    }

    fn filestore(&mut self, environment: &spec::Environment, path: &YamlPath) -> Option<Filestore> {
        let filestore = environment.filestore.as_ref()?;
        let names: Vec<&str> = environment.replicas.iter().map(|replica| replica.name.as_str()).collect();
        for (index, name) in filestore.mirror_to.iter().enumerate() {
            if !names.contains(&name.as_str()) {
                self.report(Violation::at(
                    Rule::UnknownMirrorReplica {
                        name: name.clone(),
                        environment: environment.id.clone(),
                        suggestion: did_you_mean(name, names.iter().copied()).map(str::to_owned),
                    },
                    path.key("filestore").key("mirror_to").index(index),
                    "not a replica",
                ));
            }
        }
        Some(Filestore {
            path: filestore.path.clone(),
            mirror_to: filestore.mirror_to.clone(),
            mirror_path: filestore.mirror_path.clone().unwrap_or_else(|| filestore.path.clone()),
            every: filestore.every.unwrap_or(spec::Duration::from_seconds(300)),
            delete: filestore.delete,
        })
    }

    fn unique_environment_ids(&mut self, spec: &Spec) {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, environment) in spec.environments.iter().enumerate() {
            if let Some(first) = seen.insert(&environment.id, index) {
                let environments = YamlPath::root().key("environments");
                self.report(
                    Violation::at(
                        Rule::DuplicateEnvironment { id: environment.id.clone() },
                        environments.index(index).key("id"),
                        "second use",
                    )
                    .with(environments.index(first).key("id"), "first use"),
                );
            }
        }
    }

    /// (host, address, port) unique across every PostgreSQL, PgBouncer and
    /// tunnel's local end,
    /// and data directories unique (and not nested) per host.
    fn endpoints_and_data_dirs(&mut self, environments: &[Environment], hosts: &BTreeMap<String, Host>) {
        let machine = |host: &str| hosts.get(host).map(|host| host.machine().to_owned());
        let mut endpoints = Vec::new();
        let mut data_dirs = Vec::new();
        for (index, environment) in environments.iter().enumerate() {
            let path = YamlPath::root().key("environments").index(index);
            let id = &environment.id;
            let primary = &environment.primary;
            let Some(primary_machine) = machine(&primary.host) else { continue };
            endpoints.push(Endpoint {
                machine: primary_machine.clone(),
                host: primary.host.clone(),
                address: primary.address.clone(),
                port: primary.port,
                owner: format!("{id}.cluster.primary"),
                path: path.key("primary").key("port"),
            });
            data_dirs.push(DataDir {
                machine: primary_machine.clone(),
                host: primary.host.clone(),
                dir: primary.data_dir.clone(),
                owner: format!("{id}.cluster.primary"),
                path: path.key("primary").key("data_dir"),
            });
            if let Some(pooler) = &environment.pooler
                && let Some(pooler_machine) = machine(&pooler.host)
            {
                endpoints.push(Endpoint {
                    machine: pooler_machine,
                    host: pooler.host.clone(),
                    address: pooler.address.clone(),
                    port: pooler.port,
                    owner: format!("{id}.pooler.primary"),
                    path: path.key("pgbouncer").key("port"),
                });
            }
            for (replica_index, replica) in environment.replicas.iter().enumerate() {
                let Some(replica_machine) = machine(&replica.host) else { continue };
                let replica_path = path.key("replicas").index(replica_index);
                endpoints.push(Endpoint {
                    machine: replica_machine.clone(),
                    host: replica.host.clone(),
                    address: replica.address.clone(),
                    port: replica.port,
                    owner: format!("{id}.replica.{}", replica.name),
                    path: replica_path.key("port"),
                });
                data_dirs.push(DataDir {
                    machine: replica_machine.clone(),
                    host: replica.host.clone(),
                    dir: replica.data_dir.clone(),
                    owner: format!("{id}.replica.{}", replica.name),
                    path: replica_path.key("data_dir"),
                });
                if replica.connect == Connect::SshTunnel {
                    let (address, port) = crate::desired::tunnel::local_end(replica);
                    endpoints.push(Endpoint {
                        machine: replica_machine.clone(),
                        host: replica.host.clone(),
                        address,
                        port,
                        owner: format!("{id}.tunnel.{}", replica.name),
                        path: replica_path.key("tunnel_port"),
                    });
                }
                if let Some(pooler) = &environment.pooler {
                    endpoints.push(Endpoint {
                        machine: replica_machine,
                        host: replica.host.clone(),
                        address: replica.address.clone(),
                        port: pooler.replica_port,
                        owner: format!("{id}.pooler.{}", replica.name),
                        path: replica_path.key("address"),
                    });
                }
            }
        }

        let mut reported = BTreeSet::new();
        for (later, second) in endpoints.iter().enumerate() {
            // Port 0 is reported on its own; a collision on it says nothing more.
            if second.port == 0 {
                continue;
            }
            if let Some(first) = endpoints[..later].iter().find(|first| {
                first.machine == second.machine
                    && first.port == second.port
                    && addresses_overlap(&first.address, &second.address)
            }) && reported.insert(second.path.clone())
            {
                self.report(
                    Violation::at(
                        Rule::EndpointCollision {
                            host: second.host.clone(),
                            address: second.address.clone(),
                            port: second.port,
                            first: first.owner.clone(),
                            second: second.owner.clone(),
                        },
                        second.path.clone(),
                        format!("{} also needs {}:{}", second.owner, second.address, second.port),
                    )
                    .with(first.path.clone(), format!("{} listens here", first.owner)),
                );
            }
        }

        for (later, second) in data_dirs.iter().enumerate() {
            for first in &data_dirs[..later] {
                if first.machine != second.machine {
                    continue;
                }
                let relation = if same_path(&first.dir, &second.dir) {
                    "the same as"
                } else if second.dir.starts_with(&first.dir) {
                    "inside"
                } else if first.dir.starts_with(&second.dir) {
                    "containing"
                } else {
                    continue;
                };
                self.report(
                    Violation::at(
                        Rule::DataDirCollision {
                            host: second.host.clone(),
                            dir: second.dir.clone(),
                            relation,
                            first: first.owner.clone(),
                            second: second.owner.clone(),
                        },
                        second.path.clone(),
                        "data directory in use",
                    )
                    .with(first.path.clone(), format!("{}'s data directory", first.owner)),
                );
                break;
            }
        }
    }

    /// Quota arithmetic. The first environment or replica that takes a
    /// running total over its limit is the one the error points at.
    fn quota(&mut self, spec: &Spec) -> Option<QuotaTable> {
        let quota = spec.organization.as_ref()?.quota?;
        let totals = [
            (QuotaResource::Cpu, quota.cpu, "cpu"),
            (QuotaResource::Ram, quota.ram_mb, "ram_mb"),
            (QuotaResource::Disk, quota.disk_gb, "disk_gb"),
        ];
        let mut used = [0.0_f64; 3];
        let mut first_over: [Option<(YamlPath, &'static str)>; 3] = Default::default();
        for (index, environment) in spec.environments.iter().enumerate() {
            let path = YamlPath::root().key("environments").index(index);
            let Some(resources) = environment.resources else {
                self.report(
                    Violation::at(
                        Rule::QuotaNeedsResources { environment: environment.id.clone() },
                        path.key("id"),
                        "no resources",
                    )
                    .with(YamlPath::root().key("organization").key("quota"), "quota declared here"),
                );
                continue;
            };
            let environment_cost = [resources.cpu, resources.ram_mb, resources.disk_gb];
            let replica_cost =
                [resources.cpu * REPLICA_CPU_RAM_SHARE, resources.ram_mb * REPLICA_CPU_RAM_SHARE, resources.disk_gb];
            let charges = std::iter::once((environment_cost, path.key("resources"), "environment")).chain(
                (0..environment.replicas.len())
                    .map(|replica| (replica_cost, path.key("replicas").index(replica).key("name"), "replica")),
            );
            for (cost, place, subject) in charges {
                for resource in 0..3 {
                    used[resource] += cost[resource];
                    if used[resource] > totals[resource].1 + 1e-9 && first_over[resource].is_none() {
                        first_over[resource] = Some((place.clone(), subject));
                    }
                }
            }
        }
        for (resource, over) in first_over.into_iter().enumerate() {
            let Some((place, subject)) = over else { continue };
            let (kind, total, key) = totals[resource];
            self.report(
                Violation::at(
                    Rule::QuotaExceeded { subject, resource: kind, used: used[resource], total },
                    place,
                    format!("this {subject} takes the organization over its {kind} quota"),
                )
                .with(
                    YamlPath::root().key("organization").key("quota").key(key),
                    format!("quota: {} {}", kind.format(total), kind.unit()),
                ),
            );
        }
        let row = |index: usize| QuotaRow { resource: totals[index].0, used: used[index], total: totals[index].1 };
        Some(QuotaTable { cpu: row(0), ram: row(1), disk: row(2) })
    }

    fn state(&mut self, spec: &Spec, organization: &str) -> crate::topology::StateSettings {
        let config =
            spec.state.clone().unwrap_or(spec::StateConfig { backend: StateBackend::Local, path: None, url: None });
        let path = YamlPath::root().key("state");
        if config.backend == StateBackend::Postgres && matches!(config.url, Some(spec::SecretRef::Generate(_))) {
            // The url names a database someone else runs: nothing pgfleet
            // could generate.
            self.report(Violation::at(
                Rule::StateUrlGenerated,
                path.key("url"),
                "a generated secret cannot name a database",
            ));
        }
        match config.backend {
            StateBackend::Local if config.url.is_some() => self.report(
                Violation::at(
                    Rule::StateKeyMismatch { key: "url", backend: "postgres" },
                    path.key("url"),
                    "only for backend: postgres",
                )
                .on_key(),
            ),
            StateBackend::Postgres if config.url.is_none() => {
                self.report(Violation::at(Rule::StateUrlMissing, path.key("backend"), "needs `url`"))
            }
            StateBackend::Postgres if config.path.is_some() => self.report(
                Violation::at(
                    Rule::StateKeyMismatch { key: "path", backend: "local" },
                    path.key("path"),
                    "only for backend: local",
                )
                .on_key(),
            ),
            _ => {}
        }
        let unusable = organization.is_empty()
            || organization == "."
            || organization == ".."
            || organization.contains(|c: char| c == '/' || c == '\\' || c.is_control());
        if config.path.is_none() && config.backend == StateBackend::Local && unusable {
            self.report(Violation::at(
                Rule::StateFileName { name: organization.to_owned() },
                YamlPath::root().key("organization").key("name"),
                "names the state file",
            ));
        }
        crate::topology::StateSettings {
            name: organization.to_owned(),
            backend: config.backend,
            path: self
                .working_dir
                .join(config.path.unwrap_or_else(|| PathBuf::from(format!("state/{organization}.json")))),
            url: config.url,
        }
    }
}

/// A character as an error message names it: control characters by name
/// or code point, since printing them raw would break the message itself.
pub fn describe_character(character: char) -> String {
    match character {
        '\n' => "a line break (\\n)".into(),
        '\r' => "a carriage return (\\r)".into(),
        '\t' => "a tab (\\t)".into(),
        '\0' => "a NUL byte (\\0)".into(),
        ' ' => "a space".into(),
        c if c.is_control() || c.is_whitespace() => format!("the control character U+{:04X}", u32::from(c)),
        c => format!("`{c}`"),
    }
}

/// Why a role name cannot be used, if it cannot.
fn reserved_role(name: &str) -> Option<&'static str> {
    match name {
        "postgres" => Some("it is the superuser pgfleet logs in as"),
        "public" | "none" => Some("PostgreSQL refuses it as a role name"),
        "all" => Some("it is a keyword in pg_hba.conf"),
        _ if name.starts_with("pg_") => Some("PostgreSQL reserves names starting with `pg_`"),
        _ => None,
    }
}

/// Why an S3 endpoint is not usable, if it is not: `http://` or
/// `https://`, a host, and no user or password in it.
fn endpoint_problem(endpoint: &str) -> Option<&'static str> {
    let Some(rest) = endpoint.strip_prefix("https://").or_else(|| endpoint.strip_prefix("http://")) else {
        return Some("an endpoint is a URL starting with https:// (or http://)");
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Some("credentials do not belong in the endpoint");
    }
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, port)| if port.chars().all(|c| c.is_ascii_digit()) { host } else { authority });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if !is_host_address(host) || endpoint.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some("the endpoint's host is not an IP address or a host name");
    }
    None
}

/// An IP address or a DNS name: what SSH can connect to, with nothing a
/// command line or known_hosts file would read as something else.
fn is_host_address(address: &str) -> bool {
    address.parse::<IpAddr>().is_ok()
        || (!address.is_empty()
            && address.len() <= 253
            && !address.starts_with(['-', '.'])
            && address.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
}

/// The replication slot of a replica: its name with every character outside
/// `[a-z0-9_]` replaced by `_`.
pub fn slot_name(replica: &str) -> String {
    replica.chars().map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '_' }).collect()
}

fn is_wildcard(address: &str) -> bool {
    matches!(address, "*" | "0.0.0.0" | "::")
}

fn canonical_address(address: &str) -> &str {
    if address == "localhost" { "127.0.0.1" } else { address }
}

fn addresses_overlap(first: &str, second: &str) -> bool {
    is_wildcard(first) || is_wildcard(second) || canonical_address(first) == canonical_address(second)
}

fn same_path(first: &Path, second: &Path) -> bool {
    fn normal(path: &Path) -> impl Iterator<Item = Component<'_>> {
        path.components().filter(|component| !matches!(component, Component::CurDir))
    }
    normal(first).eq(normal(second))
}

#[cfg(test)]
mod tests {
    use crate::config::load;
    use crate::topology::{Topology, Transport};

    fn resolve(yaml: &str) -> Topology {
        load::parse("test.yaml", yaml.to_owned()).unwrap().resolve().unwrap()
    }

    /// A tunnel's local end takes its port on the replica's host: another
    /// server there may not take it too, and it defaults apart from the
    /// replica's own port.
    #[test]
    fn a_tunnel_end_is_a_port_on_its_host() {
        let yaml = |tunnel_port: &str| {
            format!(
                "version: 1\nhosts:\n  a: {{ address: 10.0.0.1 }}\n  b: {{ address: 10.0.0.2 }}\nenvironments:\n  - id: e\n    primary: {{ host: a, data_dir: /p }}\n    replicas:\n      - {{ name: r1, host: b, data_dir: /r1, connect: ssh_tunnel{tunnel_port} }}\n      - {{ name: r2, host: b, port: 6000, data_dir: /r2, connect: ssh_tunnel, tunnel_port: 7000 }}\n"
            )
        };
        let topology = resolve(&yaml(""));
        assert_eq!(topology.environments[0].replicas[0].tunnel_port, 15432);
        let errors = load::parse("test.yaml", yaml(", tunnel_port: 6000")).unwrap().resolve().unwrap_err();
        assert!(format!("{errors:?}").contains("EndpointCollision"), "{errors:?}");
    }

    #[test]
    fn defaults_are_filled_in() {
        let topology = resolve(
            "version: 1\nhosts:\n  db1: { address: 192.0.2.1 }\nenvironments:\n  - id: prod\n    resources: { cpu: 2, ram_mb: 4096, disk_gb: 20 }\n    primary: { host: db1 }\n    pgbouncer: {}\n",
        );
        let environment = &topology.environments[0];
        assert_eq!(environment.primary.address, "127.0.0.1");
        assert_eq!(environment.primary.port, 5432);
        assert_eq!(environment.primary.version, 15);
        assert_eq!(environment.primary.data_dir.to_str(), Some("/var/lib/postgresql/15/prod"));
        // 4096 MB: the medium tier, and a pool of 40.
        assert_eq!(environment.primary.settings["shared_buffers"], "2GB");
        assert_eq!(environment.pooler.as_ref().map(|pooler| pooler.pool_size), Some(40));
        assert_eq!(environment.database.name, "prod");
        assert_eq!(environment.database.owner, "odoo");
        assert_eq!(environment.replication.user, "replicator");
        assert_eq!(environment.replication.max_slot_wal_keep_size.to_string(), "10GB");
        assert_eq!(environment.health.warning.lag_bytes.to_string(), "50MB");
        assert_eq!(environment.health.critical.lag_seconds, 30);
        let Transport::Ssh(ssh) = &topology.hosts["db1"].transport else { panic!("db1 is an SSH host") };
        assert_eq!((ssh.user.as_str(), ssh.port), ("postgres", 22));
        assert!(topology.state.path.ends_with("state/pgfleet.json") && topology.state.path.is_absolute());
    }

    #[test]
    fn settings_override_the_tier_and_pool_size_zero_means_no_pooler() {
        let topology = resolve(
            "version: 1\nhosts:\n  h: { transport: local }\nenvironments:\n  - id: e\n    resources: { cpu: 1, ram_mb: 1024, disk_gb: 5 }\n    primary: { host: h, data_dir: /d, settings: { work_mem: 32MB, jit: false } }\n    pgbouncer: { pool_size: 0 }\n",
        );
        let settings = &topology.environments[0].primary.settings;
        assert_eq!(settings["work_mem"], "32MB");
        assert_eq!(settings["shared_buffers"], "512MB");
        assert_eq!(settings["jit"], "off");
        assert!(topology.environments[0].pooler.is_none());
    }

    #[test]
    fn quota_table_adds_thirty_percent_per_replica() {
        let topology = resolve(
            "version: 1\norganization: { name: o, quota: { cpu: 10, ram_mb: 16384, disk_gb: 200 } }\nhosts:\n  a: { address: 192.0.2.1 }\n  b: { address: 192.0.2.2 }\nenvironments:\n  - id: e\n    odoo_version: 19.0\n    resources: { cpu: 2, ram_mb: 4096, disk_gb: 20 }\n    primary: { host: a, address: 192.0.2.1 }\n    replicas:\n      - { name: r1, host: b }\n      - { name: r2, host: b, port: 5433 }\n",
        );
        let quota = topology.quota.unwrap();
        assert!((quota.cpu.used - 3.2).abs() < 1e-9);
        assert!((quota.ram.used - 6553.6).abs() < 1e-9);
        assert!((quota.disk.used - 60.0).abs() < 1e-9);
        assert_eq!(quota.cpu.total, 10.0);
        assert_eq!(topology.environments[0].odoo_version.as_deref(), Some("19.0"));
    }

    /// Every broken rule, with the path it points at.
    fn violations(yaml: &str) -> Vec<(super::Rule, String)> {
        let document = load::parse("test.yaml", yaml.to_owned()).unwrap();
        match super::resolve(&document.spec, std::path::Path::new("/work")) {
            Ok(_) => Vec::new(),
            Err(violations) => {
                violations.into_iter().map(|violation| (violation.rule, violation.path.to_string())).collect()
            }
        }
    }

    fn with_primary(primary: &str) -> String {
        format!(
            "version: 1\nhosts:\n  h: {{ transport: local }}\nenvironments:\n  - id: e\n    primary: {{ host: h, data_dir: /d, {primary} }}\n"
        )
    }

    /// A replica runs where replicas can run: a primary pgfleet does not run
    /// lends it no runtime, and it cannot take that one itself.
    #[test]
    fn a_replica_of_a_primary_pgfleet_does_not_run_names_its_own_runtime() {
        let yaml = |key: &str| {
            format!(
                "{}    replicas:\n      - {{ name: r1, host: h, address: 127.0.0.2, data_dir: /r{key} }}\n",
                with_primary("runtime: external")
            )
        };
        let found = violations(&yaml(""));
        assert!(
            matches!(found.as_slice(), [(super::Rule::ReplicaRuntimeMissing { runtime: "external", .. }, path)]
                if path == "environments[0].replicas[0].name"),
            "{found:?}"
        );
        let found = violations(&yaml(", runtime: external"));
        assert!(
            matches!(found.as_slice(), [(super::Rule::ExternalReplica { .. }, path)]
                if path == "environments[0].replicas[0].runtime"),
            "{found:?}"
        );
        assert!(violations(&yaml(", runtime: debian")).is_empty());
    }

    #[test]
    fn setting_values_with_control_characters_are_refused() {
        for value in [r#""4MB\nfsync = off""#, r#""4MB\r""#, r#""a\0b""#, r#""a\x01b""#, r#""a\tb""#, r#""a\x7f""#] {
            let found = violations(&with_primary(&format!("settings: {{ work_mem: {value} }}")));
            assert!(
                matches!(found.as_slice(), [(super::Rule::ControlCharacterInSetting { name, .. }, path)]
                    if name == "work_mem" && path == "environments[0].primary.settings.work_mem"),
                "{value}: {found:?}"
            );
        }
        // Quotes and backslashes are quoted where the value is written, not refused.
        assert_eq!(violations(&with_primary(r#"settings: { search_path: "it's", log_line_prefix: 'C:\x' }"#)), []);
    }

    fn with_storage(storage: &str) -> String {
        format!(
            "version: 1\nhosts:\n  h: {{ transport: local }}\nenvironments:\n  - id: e\n    primary: {{ host: h, data_dir: /d }}\n    backups: {{ storage: {storage} }}\n"
        )
    }

    #[test]
    fn backup_storages_need_a_plain_endpoint_bucket_prefix_and_address() {
        let keys = "access_key: { env: AK }, secret_key: { env: SK }";
        for good in [
            format!("{{ kind: s3, bucket: backups, {keys} }}"),
            format!(
                "{{ kind: s3, bucket: b.odoo-1, endpoint: 'https://acc.r2.cloudflarestorage.com', prefix: prod/, {keys} }}"
            ),
            format!("{{ kind: s3, bucket: b, endpoint: 'http://127.0.0.1:9000/', region: us-west-004, {keys} }}"),
            "{ kind: ftp, address: ftp.example.net, user: u, password: { env: P }, path: /b, ca_file: /ca.pem }".into(),
            "{ kind: sftp, address: 192.0.2.7, user: u, path: /b }".into(),
        ] {
            assert_eq!(violations(&with_storage(&good)), [], "{good}");
        }
        for (bad, key) in [
            (format!("{{ kind: s3, bucket: 'a/b', {keys} }}"), "bucket"),
            (format!("{{ kind: s3, bucket: b, endpoint: 's3.example.com', {keys} }}"), "endpoint"),
            (format!("{{ kind: s3, bucket: b, endpoint: 'https://AK:SK@s3.example.com', {keys} }}"), "endpoint"),
            (format!("{{ kind: s3, bucket: b, endpoint: 'https:///x', {keys} }}"), "endpoint"),
            (format!("{{ kind: s3, bucket: b, prefix: 'a/../b', {keys} }}"), "prefix"),
            (format!("{{ kind: s3, bucket: b, prefix: 'a b', {keys} }}"), "prefix"),
            ("{ kind: sftp, address: '-oProxyCommand=x', user: u, path: /b }".into(), "address"),
            ("{ kind: ftp, address: f, user: u, password: { env: P }, path: \"/b\\n\" }".into(), "path"),
        ] {
            let found = violations(&with_storage(&bad));
            assert!(
                matches!(found.as_slice(), [(super::Rule::InvalidStorage { key: found_key, .. }, path)]
                    if *found_key == key && *path == format!("environments[0].backups.storage.{key}")),
                "{bad}: {found:?}"
            );
        }
    }

    #[test]
    fn port_zero_is_refused_wherever_it_is_written() {
        let found = violations(
            "version: 1\nhosts:\n  h: { transport: local }\n  s: { address: 192.0.2.2, ssh: { port: 0 } }\nenvironments:\n  - id: e\n    odoo_version: \"18.0\"\n    primary: { host: h, address: 192.0.2.1, port: 0, data_dir: /d }\n    pgbouncer: { pool_size: 0, port: 0, replica_port: 0 }\n    replicas: [{ name: r1, host: s, port: 0 }]\n    backups: { storage: { kind: sftp, address: b, port: 0, user: u, path: /b } }\n",
        );
        let mut paths: Vec<&str> = found
            .iter()
            .map(|(rule, path)| {
                assert!(matches!(rule, super::Rule::PortZero { .. }), "only port 0 is wrong here: {rule:?}");
                path.as_str()
            })
            .collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "environments[0].backups.storage.port",
                "environments[0].pgbouncer.port",
                "environments[0].pgbouncer.replica_port",
                "environments[0].primary.port",
                "environments[0].replicas[0].port",
                "hosts.s.ssh.port",
            ]
        );
    }

    fn paths_of(found: &[(super::Rule, String)]) -> Vec<&str> {
        let mut paths: Vec<&str> = found.iter().map(|(_, path)| path.as_str()).collect();
        paths.sort();
        paths
    }

    #[test]
    fn names_written_unquoted_into_config_files_are_checked() {
        let environment = |database: &str, replication: &str| {
            format!(
                "version: 1\nhosts:\n  h: {{ transport: local }}\nenvironments:\n  - id: e\n    primary: {{ host: h, data_dir: /d }}\n    database: {database}\n    replication: {replication}\n"
            )
        };
        let found = violations(&environment(r#"{ name: "my db", owner: "a\nb" }"#, r#"{ user: "x'y" }"#));
        assert!(found.iter().all(|(rule, _)| matches!(rule, super::Rule::InvalidName { .. })), "{found:?}");
        assert_eq!(
            paths_of(&found),
            ["environments[0].database.name", "environments[0].database.owner", "environments[0].replication.user"]
        );
        let too_long = "a".repeat(64);
        assert_eq!(
            paths_of(&violations(&environment(&format!("{{ name: {too_long} }}"), "{}"))),
            ["environments[0].database.name"]
        );
        // Odoo-style names pass.
        assert_eq!(violations(&environment("{ name: acme-prod.2024, owner: Odoo_1 }", "{ user: repl }")), []);

        let found = violations(&environment("{ name: postgres, owner: pg_odoo }", "{ user: all }"));
        assert!(found.iter().all(|(rule, _)| matches!(rule, super::Rule::ReservedName { .. })), "{found:?}");
        assert_eq!(found.len(), 3);
        let found = violations(&environment("{}", "{}").replace("id: e", "id: postgres"));
        assert!(
            matches!(found.as_slice(), [(super::Rule::ReservedName { .. }, path)] if path == "environments[0].id"),
            "{found:?}"
        );
        let found = violations(&environment("{ owner: odoo }", "{ user: odoo }"));
        assert!(
            matches!(found.as_slice(), [(super::Rule::SameRole { .. }, path)] if path.ends_with("replication.user"))
        );
    }

    #[test]
    fn data_dirs_with_control_characters_are_refused_and_others_are_quoted_where_written() {
        let with_data_dir = |dir: &str| {
            format!(
                "version: 1\nhosts:\n  h: {{ address: 192.0.2.1 }}\nenvironments:\n  - id: e\n    primary: {{ host: h, data_dir: {dir} }}\n"
            )
        };
        let found = violations(&with_data_dir(r#""/srv/pg\n/x""#));
        assert!(
            matches!(found.as_slice(), [(super::Rule::ControlCharacterInPath { character: '\n' }, path)]
                if path == "environments[0].primary.data_dir"),
            "{found:?}"
        );
        assert_eq!(violations(&with_data_dir(r#""/srv/my pg/it's,1""#)), []);
    }

    #[test]
    fn host_addresses_and_the_state_file_name_are_checked() {
        let hosts = |address: &str| format!("version: 1\nhosts:\n  db: {{ address: {address} }}\nenvironments: []\n");
        for bad in [r#""db 1""#, r#""-oProxyCommand=x""#, r#""a\nb""#, r#""""#] {
            let found = violations(&hosts(bad));
            assert!(
                matches!(found.as_slice(), [(super::Rule::InvalidHostAddress { .. }, path)] if path == "hosts.db.address"),
                "{bad}: {found:?}"
            );
        }
        for good in ["203.0.113.11", "\"2001:db8::1\"", "db1.example.net", "db_1"] {
            assert_eq!(violations(&hosts(good)), [], "{good}");
        }
        let organization = |name: &str, state: &str| {
            format!("version: 1\norganization: {{ name: {name} }}\n{state}hosts: {{}}\nenvironments: []\n")
        };
        let found = violations(&organization("../etc/x", ""));
        assert!(matches!(found.as_slice(), [(super::Rule::StateFileName { .. }, path)] if path == "organization.name"));
        assert_eq!(violations(&organization("../etc/x", "state: { path: s.json }\n")), []);
        assert_eq!(violations(&organization("Acme Corp", "")), []);
    }

    #[test]
    fn slot_names_keep_only_lowercase_letters_digits_and_underscores() {
        assert_eq!(super::slot_name("standby-1"), "standby_1");
        assert_eq!(super::slot_name("r1"), "r1");
    }
}
