//! The configuration users write, one serde + schemars type per YAML mapping.
//!
//! These types mirror `SPEC.md` one to one: no defaults are applied here
//! beyond what serde needs, and no rule is checked. `config::load` reads a
//! file into a `Spec` with located errors and `config::resolve` turns it
//! into the validated `Topology`. Doc comments are the JSON-Schema
//! descriptions.

pub mod secret;
pub mod tuning;
pub mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, de};

pub use secret::SecretRef;
pub use units::{Duration, Size};

/// A pgfleet configuration: hosts, and the PostgreSQL environments placed on
/// them.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "pgfleet configuration")]
pub struct Spec {
    /// Format version of this file. Always `1`.
    pub version: u32,
    /// The organisation that owns every environment, and its quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<Organization>,
    /// Where pgfleet keeps its state (ownership, lock, journal). Default: a
    /// local file named after the organisation under `state/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateConfig>,
    /// The machines pgfleet manages, by name. Environments refer to them with
    /// `host:`.
    pub hosts: BTreeMap<String, Host>,
    /// The environments: each is one primary with its replicas, poolers,
    /// backups and filestore mirror.
    pub environments: Vec<Environment>,
}

/// The organisation owning the environments.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Organization {
    /// Name of the organisation; names the default state file.
    pub name: String,
    /// Totals that every environment and replica together must fit in.
    /// Absent: no quota is enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

/// Organisation totals. An environment costs its `resources`; each replica
/// costs 30 % of its environment's CPU and RAM and 100 % of its disk.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// CPU cores.
    pub cpu: f64,
    /// Memory in megabytes.
    pub ram_mb: f64,
    /// Disk in gigabytes.
    pub disk_gb: f64,
}

/// Where state is kept.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `local` (default): a JSON file locked exclusively while in use, for
    /// one machine; `postgres`: tables in a PostgreSQL database (schema
    /// `pgfleet_state`, created on first use) with one advisory lock per
    /// environment, for pipelines on many machines. Move a local state there
    /// with `pgfleet state migrate --to postgres`.
    #[serde(default)]
    pub backend: StateBackend,
    /// Local backend: the state file. Default: `state/<organization>.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Postgres backend: where to read the connection string, a secret
    /// reference (`{env: NAME}` or `{file: PATH}`: it may hold a password).
    /// A `postgres://USER:PASSWORD@HOST:PORT/DATABASE` URL or a libpq
    /// `key=value` string; plain TCP or a Unix socket (no TLS yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<SecretRef>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateBackend {
    #[default]
    Local,
    Postgres,
}

/// A machine. Reached over SSH (default) or, with `transport: local`, the
/// machine pgfleet runs on.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// `ssh` (default) or `local` (this machine, no SSH: the embedded
    /// default used by the sandbox).
    #[serde(default)]
    pub transport: TransportKind,
    /// Address pgfleet connects to over SSH. Required with `transport: ssh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// SSH settings. Only with `transport: ssh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    #[default]
    Ssh,
    Local,
}

/// How to log in over SSH.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    /// Login user. Default: `postgres`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// SSH port. Default: 22.
    #[schemars(range(min = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Private key. Default: none, the SSH agent is asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// known_hosts file the host key is verified against; an unknown or
    /// changed key is an error. Default: `~/.ssh/known_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<PathBuf>,
    /// Run commands as this user through `sudo -n -u USER` (for a sudo login
    /// user that is not `postgres`). Default: none.
    #[serde(default, rename = "become", skip_serializing_if = "Option::is_none")]
    pub become_user: Option<String>,
    /// The file on this host where pgfleet authorizes the keys of SSH
    /// tunnels and filestore mirrors that reach it (each in a block of its
    /// own, as the service user). Default: `~/.ssh/authorized_keys` of the
    /// service user (`become`, else `user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized_keys: Option<PathBuf>,
}

/// One PostgreSQL environment: a primary, its replicas and what serves them.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Identifier: names clusters, slots, poolers and state entries.
    /// Lowercase letters, digits, `-` and `_`.
    pub id: String,
    /// Odoo version served by this environment (e.g. `"18.0"`). Read
    /// replicas need 18.0 or 19.0. Absent: a plain PostgreSQL environment.
    #[serde(default, deserialize_with = "version_text", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub odoo_version: Option<String>,
    /// What the environment is sized for: counts against the quota, and
    /// picks the tuning tier and pool size when those are `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// The primary PostgreSQL cluster.
    pub primary: Primary,
    /// The application database served by the poolers. Default: named after
    /// the environment, owned by `odoo`, with a generated password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<Database>,
    /// The replication role and WAL retention. Default: user `replicator`,
    /// generated password, `max_slot_wal_keep_size: 10GB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<Replication>,
    /// PgBouncer in front of the primary and of each replica. Absent, or
    /// `pool_size: 0`: no pooler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbouncer: Option<Pgbouncer>,
    /// Physical streaming read replicas, each with its own replication slot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<Replica>,
    /// Replica lag thresholds. Defaults: warning 50MB / 15 s, critical
    /// 100MB / 30 s, rebuild skipped when healthy under 10MB / 60 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// pg_dump backups with sha256 manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<Backups>,
    /// A protected environment (production) is never the target of a
    /// restore from another environment's backup unless `--force`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    /// Odoo filestore mirrored from the primary's host to replica hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filestore: Option<Filestore>,
    /// Where Odoo runs, when it connects to PostgreSQL by a configuration
    /// file pgfleet should keep pointed at the primary's pooler (and, on
    /// Odoo 18/19, at a replica's for read-only queries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odoo: Option<Odoo>,
}

/// Odoo's configuration, which pgfleet keeps pointed at the database.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Odoo {
    /// Host (a name under `hosts:`) Odoo runs on.
    pub host: String,
    /// Odoo's configuration file there (`odoo.conf`). pgfleet sets
    /// `db_host` and `db_port` in its `[options]` (and `db_replica_host`,
    /// `db_replica_port` on Odoo 18/19 with replicas), and leaves every
    /// other line as it is. The file must exist.
    pub config: PathBuf,
    /// A shell command on that host that restarts Odoo, run after its
    /// configuration changed (e.g. `sudo -n systemctl restart odoo`).
    /// Default: none, and plan says Odoo must be restarted by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
}

/// YAML reads an unquoted `18.0` as a number; accept it as the text the user
/// meant.
fn version_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    struct Visitor;
    impl de::Visitor<'_> for Visitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a version such as \"18.0\"")
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(Some(value.to_owned()))
        }
        fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
            Ok(Some(format!("{value:?}")))
        }
        fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
            Ok(Some(format!("{value}.0")))
        }
        fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
            Ok(Some(format!("{value}.0")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(Visitor)
}

/// The size of an environment.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU cores.
    pub cpu: f64,
    /// Memory in megabytes; picks the tuning tier and the auto pool size.
    pub ram_mb: f64,
    /// Disk in gigabytes.
    pub disk_gb: f64,
}

/// The primary cluster.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Primary {
    /// The member's name, which it keeps when another member holds the
    /// primary role (after a switchover it is the standby `ENV.replica.NAME`).
    /// Default: `primary`; a switchover away from this member needs a name
    /// of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Host (a name under `hosts:`) the primary runs on.
    pub host: String,
    /// Address PostgreSQL listens on, on its host. Default: `127.0.0.1`.
    /// Changing it needs a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Port. Default: 5432. Changing it needs a restart.
    #[schemars(range(min = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// PostgreSQL major version; replicas run the same. Default: 15.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Data directory on the host. Default:
    /// `/var/lib/postgresql/<version>/<environment id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// How the server process is run. Default: `pg_ctl`.
    #[serde(default)]
    pub runtime: Runtime,
    /// With `runtime: docker`: the image the primary's and the replicas'
    /// containers run (it must hold the major's programs at
    /// `/usr/lib/postgresql/<version>/bin`, a shell and Perl, as Debian's
    /// packages lay them out). Default: `postgres:<version>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Tuning tier. Default: `auto` (by `resources.ram_mb`) when the
    /// environment has `resources`, `none` otherwise. Some settings of a tier
    /// need a restart (`shared_buffers`, `max_connections`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<Tuning>,
    /// postgresql.conf settings; they win over the tuning tier. Settings
    /// pgfleet manages itself (port, listen_addresses, replication) are
    /// refused here. Whether a change needs a restart is PostgreSQL's rule.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, SettingValue>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    /// A data directory driven by `pg_ctl` (the sandbox and the tests).
    #[default]
    PgCtl,
    /// Debian's `pg_ctlcluster` layout under `/etc/postgresql`.
    Debian,
    /// Containers named `postgres-primary-<env>` and so on.
    Docker,
    /// pgfleet does not run this primary; it manages SQL-level resources only.
    External,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tuning {
    /// Tier chosen by `resources.ram_mb`: ≤ 2048 small, ≤ 8192 medium,
    /// above large.
    Auto,
    Small,
    Medium,
    Large,
    /// PostgreSQL's own defaults, plus `settings`.
    None,
}

/// A postgresql.conf value: a number, a boolean or a string such as `4GB`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SettingValue {
    Bool(bool),
    Integer(i64),
    Float(f64),
    Text(String),
}

impl fmt::Display for SettingValue {
    /// The text PostgreSQL reports in `pg_settings` for the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingValue::Bool(true) => f.write_str("on"),
            SettingValue::Bool(false) => f.write_str("off"),
            SettingValue::Integer(value) => write!(f, "{value}"),
            SettingValue::Float(value) => write!(f, "{value}"),
            SettingValue::Text(value) => f.write_str(value),
        }
    }
}

/// The application database.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// Database name. Default: the environment id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Owner role, used by the application through the poolers. Default:
    /// `odoo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The owner's password. Default: `{generate: true}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
}

/// Streaming replication from the primary.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Replication {
    /// Role the replicas connect as (REPLICATION LOGIN). Default:
    /// `replicator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Its password. Default: `{generate: true}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    /// Most WAL a slot may hold back on the primary, so a dead replica cannot
    /// fill its disk. Default: `10GB`. Reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_slot_wal_keep_size: Option<Size>,
}

/// PgBouncer settings, shared by the primary's pooler and each replica's.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pgbouncer {
    /// Server connections per pool. Default: `auto` (20, 40, 80 or 100 by
    /// `resources.ram_mb` ≤ 2048, ≤ 4096, ≤ 8192, above). `0`: no pooler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<PoolSize>,
    /// Pool mode of the application database. Default: `transaction`. The
    /// `postgres` database always gets a small session pool (Odoo's
    /// `LISTEN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_mode: Option<PoolMode>,
    /// Port of the primary's pooler. Default: 6432.
    #[schemars(range(min = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Port of the pooler in front of each replica. Default: 6433.
    #[schemars(range(min = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_port: Option<u16>,
    /// Default: 1000. Needs a restart of the pooler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_client_conn: Option<u32>,
    /// Default: 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve_pool_size: Option<u32>,
    /// Seconds. Default: 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve_pool_timeout: Option<u32>,
    /// With `runtime: docker`: the image the poolers' containers run (it
    /// must hold `pgbouncer`). Default: the primary's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Host (a name under `hosts:`) of the primary's pooler, where the
    /// application connects (e.g. the Odoo host), when it is not the
    /// primary's: a primary that moves then only repoints the pooler.
    /// Default: the primary's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Address the primary's pooler listens on, on its host. Default: the
    /// primary's address when on the primary's host, else `127.0.0.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// `auto`, or a number of server connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum PoolSize {
    #[schemars(with = "AutoKeyword")]
    Auto,
    Fixed(u32),
}

/// The keyword `auto`.
#[derive(JsonSchema)]
#[allow(dead_code)]
enum AutoKeyword {
    #[serde(rename = "auto")]
    Auto,
}

impl<'de> Deserialize<'de> for PoolSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = PoolSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`auto` or a number of connections")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<PoolSize, E> {
                match value {
                    "auto" => Ok(PoolSize::Auto),
                    _ => Err(E::invalid_value(de::Unexpected::Str(value), &self)),
                }
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<PoolSize, E> {
                u32::try_from(value)
                    .map(PoolSize::Fixed)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<PoolSize, E> {
                u32::try_from(value)
                    .map(PoolSize::Fixed)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    Session,
    Transaction,
    Statement,
}

impl fmt::Display for PoolMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        })
    }
}

/// A physical streaming replica of the primary.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Replica {
    /// Name, unique in the environment; also names its replication slot
    /// (`-` becomes `_`).
    pub name: String,
    /// Host (a name under `hosts:`) the replica runs on.
    pub host: String,
    /// Address the replica listens on, on its host. Default: `127.0.0.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Port. Default: 5432.
    #[schemars(range(min = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Data directory on its host. Default:
    /// `/var/lib/postgresql/<version>/<environment id>-<name>`. Changing it
    /// rebuilds the replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `reporting` (default: `hot_standby_feedback` on, long queries are
    /// not cancelled) or `dr` (off: the primary is never held back). Reload.
    #[serde(default)]
    pub purpose: Purpose,
    /// How the replica reaches the primary: `direct` (default, the
    /// primary's address) or `ssh_tunnel` (through SSH).
    #[serde(default)]
    pub connect: Connect,
    /// With `connect: ssh_tunnel`: the port of the tunnel's local end on
    /// the replica's host (on the replica's address when that is a loopback
    /// one, else on 127.0.0.1). Default: the replica's port + 10000 (or −
    /// 10000 above 55535). Changing it restarts the tunnel and the replica.
    #[schemars(range(min = 1))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_port: Option<u16>,
    /// How the replica runs on its host: `pg_ctl`, `debian` or `docker`.
    /// Default: the primary's runtime; required when the primary's is
    /// `external` (pgfleet runs the replica, not the primary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    #[default]
    Reporting,
    Dr,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Connect {
    #[default]
    Direct,
    SshTunnel,
}

/// Replica lag thresholds.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Default: 50MB / 15 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<LagThreshold>,
    /// Default: 100MB / 30 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<LagThreshold>,
    /// `apply --replace` skips a replica lagging less than this. Default:
    /// 10MB / 60 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild_skip_if_healthy: Option<LagThreshold>,
}

/// A lag limit in bytes and seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LagThreshold {
    pub lag_bytes: Size,
    pub lag_seconds: u64,
}

/// Backups: pg_dump plus the filestore, with a sha256 manifest.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backups {
    /// `plain` (default, `pg_dump -Fp --no-owner` as Odoo writes it:
    /// `dump.sql`) or `custom` (`-Fc`: `dump.dump`, restored with
    /// `pg_restore -j`).
    #[serde(default)]
    pub format: BackupFormat,
    /// The archive's layout: `odoo` (default: the filestore as a
    /// `filestore/` tree, as Odoo's database manager writes and restores
    /// it) or `tarball` (the filestore as one `filestore.tar.gz`).
    #[serde(default)]
    pub layout: BackupLayout,
    /// A scheduled check (`drift`, class `backups`) reports drift when no
    /// verified backup is younger than this. Default: `2d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Where backups are stored.
    pub storage: Storage,
    /// How many backups to keep. Default: 7 daily, 4 weekly, 3 monthly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackupFormat {
    #[default]
    Plain,
    Custom,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackupLayout {
    #[default]
    Odoo,
    Tarball,
}

/// Backup storage, chosen by `kind`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Storage {
    /// A directory on the primary's host.
    Local {
        /// Directory backups are written to.
        path: PathBuf,
    },
    /// S3 or a compatible service (R2, B2, MinIO).
    S3 {
        bucket: String,
        /// Endpoint URL. Default: AWS.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        /// Default: `auto`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// Key prefix inside the bucket. Default: none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
        access_key: SecretRef,
        secret_key: SecretRef,
    },
    /// An SFTP server.
    Sftp {
        address: String,
        /// Default: 22.
        #[schemars(range(min = 1))]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        user: String,
        path: PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity_file: Option<PathBuf>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        known_hosts: Option<PathBuf>,
    },
    /// An FTP server (explicit TLS by default).
    Ftp {
        address: String,
        /// Default: 21.
        #[schemars(range(min = 1))]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        user: String,
        password: SecretRef,
        path: PathBuf,
        /// Explicit FTPS (`AUTH TLS`, then the data connections under TLS
        /// too). Default: true; `false` sends the password in clear text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tls: Option<bool>,
        /// A PEM file of the certificate authorities to trust for the
        /// server's TLS certificate, instead of the system's (a private CA
        /// or a self-signed server). Default: the system's trusted roots.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_file: Option<PathBuf>,
    },
}

/// How many backups of each age to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default = "Retention::default_daily")]
    pub daily: u32,
    #[serde(default = "Retention::default_weekly")]
    pub weekly: u32,
    #[serde(default = "Retention::default_monthly")]
    pub monthly: u32,
}

impl Retention {
    fn default_daily() -> u32 {
        7
    }
    fn default_weekly() -> u32 {
        4
    }
    fn default_monthly() -> u32 {
        3
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention { daily: Self::default_daily(), weekly: Self::default_weekly(), monthly: Self::default_monthly() }
    }
}

/// The Odoo filestore, mirrored with rsync.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Filestore {
    /// Filestore directory on the primary's host.
    pub path: PathBuf,
    /// Replicas (by name) whose hosts receive a copy (rsync over SSH).
    #[serde(default)]
    pub mirror_to: Vec<String>,
    /// Where the copy goes on each replica's host. Default: `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_path: Option<PathBuf>,
    /// How often the mirror runs. Default: `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Duration>,
    /// Delete on the replica's side what is gone from the primary's
    /// (`rsync --delete`). Default: `false`: nothing is ever deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete: bool,
}
