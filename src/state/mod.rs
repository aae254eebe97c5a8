//! pgfleet's own record: which resources it created (so it prunes only its
//! own) and how it reached their hosts, the last applied spec, a lineage and
//! serial, and the journal of applied actions. Holds no secret, ever.
//!
//! This module owns the record's shape; where it is kept, how it is locked
//! and how a stale writer is refused belong to a [`StateStore`] (`store`),
//! with two backends: a local file (`local`) and a table in a PostgreSQL
//! database a team shares (`postgres`).

mod local;
mod postgres;
mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use local::LocalStore;
pub use postgres::{PostgresStore, advisory_keys};
pub use store::{HeldLock, Imported, LockScope, Pending, Serials, StateLock, StateStore, Unlocked, Writer, open};

use crate::address::Address;
use crate::topology::{Host, Transport};

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub format_version: u32,
    /// Random id given when the state is first written; a state from another
    /// lineage is never mixed with this one.
    pub lineage: String,
    /// Incremented on every write.
    pub serial: u64,
    /// Where a store versions each environment's part of the state on its
    /// own (postgres), each part's serial as read: a write of one
    /// environment is refused when its part changed since, whatever
    /// happened to the others. Empty in a local file, whose one `serial`
    /// covers every environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment_serials: BTreeMap<String, u64>,
    /// Resources pgfleet created, with where they live, so that one removed
    /// from the configuration can still be found and pruned.
    pub owned: BTreeMap<Address, Owned>,
    /// sha256 of the last spec applied in full.
    pub last_applied_spec: Option<String>,
    pub journal: Vec<JournalEntry>,
    /// Which member holds each environment's primary role, once it has
    /// moved (absent: the member the YAML declares under `primary:`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, RoleRecord>,
    /// Operations begun and not finished (a switchover killed half-way),
    /// by environment: the next `switchover`, `failover` or `apply`
    /// finishes them before anything else.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending: BTreeMap<String, crate::operation::Operation>,
}

/// Who holds an environment's primary role, and how it came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRecord {
    /// The member's name (`primary.name` or a replica's).
    pub primary: String,
    /// The role's moves, oldest first (the last `ROLE_HISTORY`).
    #[serde(default)]
    pub changes: Vec<RoleChange>,
}

/// How many role changes state keeps per environment.
pub const ROLE_HISTORY: usize = 20;

/// One move of the primary role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChange {
    pub at: String,
    pub from: String,
    pub to: String,
    pub why: RoleChangeKind,
    /// Measured data loss: WAL bytes the old primary had written that the
    /// new one had not received (0 for a switchover, checked), `None` when
    /// the old primary could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_bytes: Option<u64>,
    /// For a failover: milliseconds between the new primary's last
    /// replayed transaction and its promotion (the bound on lost time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_milliseconds: Option<u64>,
    /// What the operator stated (`--old-primary-is-down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleChangeKind {
    Switchover,
    Failover,
    /// `failover --record-only`: a promotion done outside pgfleet, recorded.
    Recorded,
}

impl RoleChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleChangeKind::Switchover => "switchover",
            RoleChangeKind::Failover => "failover",
            RoleChangeKind::Recorded => "recorded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    pub host: String,
    /// Data directory (clusters) or ini file (poolers).
    pub path: Option<PathBuf>,
    /// Where it listened, so it can be found after it left the
    /// configuration (absent in state written before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// How pgfleet last reached `host`, so the resource can still be reached
    /// once the host has left the configuration. `None` in states written
    /// before pgfleet recorded it, and then left out, as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reach: Option<Reach>,
    /// What it depended on when pgfleet created it: once it leaves the
    /// configuration, it is deleted before those (dependents first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Address>,
    /// How a cluster member ran, so it is stopped and removed the same way
    /// once it left the configuration (`None` in states written before
    /// this was recorded: its primary's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<crate::spec::Runtime>,
}

/// How pgfleet reaches a host: the configuration's transport, minus anything
/// that could be secret. SSH keys are named by path, never read into state;
/// there is no password to leave out, because pgfleet's SSH never uses one.
///
/// A type of its own rather than `topology::Transport`, because state is a
/// persisted, versioned format and must not change when the in-memory
/// topology does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "snake_case")]
pub enum Reach {
    /// The machine pgfleet runs on.
    Local,
    Ssh {
        address: String,
        port: u16,
        user: String,
        identity_file: Option<PathBuf>,
        known_hosts: PathBuf,
        become_user: Option<String>,
    },
}

impl From<&Transport> for Reach {
    fn from(transport: &Transport) -> Self {
        match transport {
            Transport::Local => Reach::Local,
            Transport::Ssh(target) => Reach::Ssh {
                address: target.address.clone(),
                port: target.port,
                user: target.user.clone(),
                identity_file: target.identity_file.clone(),
                known_hosts: target.known_hosts.clone(),
                become_user: target.become_user.clone(),
            },
        }
    }
}

impl Reach {
    /// The transport this record describes, to reach a host that left the
    /// configuration.
    pub fn transport(&self) -> Transport {
        match self {
            Reach::Local => Transport::Local,
            Reach::Ssh { address, port, user, identity_file, known_hosts, become_user } => {
                Transport::Ssh(crate::topology::SshTarget {
                    address: address.clone(),
                    port: *port,
                    user: user.clone(),
                    identity_file: identity_file.clone(),
                    known_hosts: known_hosts.clone(),
                    become_user: become_user.clone(),
                })
            }
        }
    }
}

impl Owned {
    /// A resource at `path` on `host`, with no listening address recorded.
    pub fn at(host: &str, path: PathBuf) -> Self {
        Owned {
            host: host.to_owned(),
            path: Some(path),
            listen: None,
            port: None,
            reach: None,
            depends_on: Vec::new(),
            runtime: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub at: String,
    pub address: Address,
    pub action: String,
    pub event: JournalEvent,
    /// For a step of an operation: its id, the step's index and the step
    /// itself, so a killed operation can be resumed or undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<OperationStep>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationStep {
    pub id: String,
    pub step: usize,
    /// The action as the plan held it.
    pub payload: serde_json::Value,
    /// A compensation run after a failure, not the step itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compensation: bool,
    /// A compensation that undid the operation (before its point of no
    /// return): a rerun starts it over. One that only released something
    /// (a RESUME after the promotion) keeps the progress.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub undoes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalEvent {
    Started,
    Finished,
    Failed,
}

/// Who holds a lock: written where the lock lives, shown to whoever waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub who: String,
    pub pid: u32,
    pub since: String,
    pub command: String,
}

impl LockHolder {
    /// This process, running `command`.
    pub fn this_process(command: &str) -> Self {
        LockHolder {
            who: format!(
                "{}@{}",
                std::env::var("USER").unwrap_or_else(|_| "root".into()),
                std::fs::read_to_string("/etc/hostname").unwrap_or_default().trim()
            ),
            pid: std::process::id(),
            since: now(),
            command: command.to_owned(),
        }
    }
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {}, `{}`) since {}", self.who, self.pid, self.command, self.since)
    }
}

pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StateError {
    #[error("state {state} is locked by {holder}")]
    #[diagnostic(
        code(pgfleet::state::locked),
        help("another pgfleet is working on these hosts; wait for it, or pass --lock-timeout to wait")
    )]
    Locked { state: String, holder: String },
    #[error("cannot lock or write state {}", path.display())]
    #[diagnostic(code(pgfleet::state::write))]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read state file {}", path.display())]
    #[diagnostic(code(pgfleet::state::read))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {} is not pgfleet state", path.display())]
    #[diagnostic(code(pgfleet::state::format), help("restore it from a backup, or move it away to start afresh"))]
    Format {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot serialise the {what} for {state}")]
    #[diagnostic(
        code(pgfleet::state::serialise),
        help("nothing was written; this is a bug in pgfleet, please report it")
    )]
    Serialise {
        what: &'static str,
        state: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "state {state} is at serial {stored}, but this pgfleet read serial {expected}: another writer changed it since"
    )]
    #[diagnostic(
        code(pgfleet::state::stale),
        help("nothing was written or merged; run the command again so that it starts from the current state")
    )]
    StaleSerial { state: String, expected: u64, stored: u64 },
    #[error("state {state} belongs to lineage {stored}, not {writing}: it is not the state this pgfleet read")]
    #[diagnostic(
        code(pgfleet::state::lineage),
        help("nothing was written; check that `state:` names the right state, or restore the one that was replaced")
    )]
    Lineage { state: String, stored: String, writing: String },
    #[error("cannot write state {state} under a lock it did not give")]
    #[diagnostic(code(pgfleet::state::not_locked), help("this is a bug in pgfleet, please report it"))]
    ForeignLock { state: String },
    #[error("cannot draw a random lineage id for state {state}")]
    #[diagnostic(code(pgfleet::state::lineage_id), help("the system's random source failed; nothing was written"))]
    Entropy { state: String, source: getrandom::Error },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    #[error("state.url (from {source_name}) is not a PostgreSQL connection string: {reason}")]
    #[diagnostic(
        code(pgfleet::state::url),
        help(
            "set it to postgres://USER:PASSWORD@HOST:PORT/DATABASE, or `host=HOST port=PORT user=USER password=PASSWORD dbname=DATABASE`"
        )
    )]
    Url { source_name: String, reason: String },
    #[error("cannot {action} state {state}: {reason}")]
    #[diagnostic(
        code(pgfleet::state::database),
        help(
            "check state.url: that the server is up and reachable, that pg_hba.conf admits its user, and that this user may create the schema pgfleet_state on first use (or that it exists)"
        )
    )]
    Database { state: String, action: &'static str, reason: String },
    #[error("the session holding the lock on state {state} was lost, and the lock with it: nothing was written")]
    #[diagnostic(
        code(pgfleet::state::lock_lost),
        help("another pgfleet may have taken the lock since; run the command again once the database is reachable")
    )]
    LockLost { state: String },
    #[error("state {state} was written by a newer pgfleet (schema version {found}; this one knows up to {known})")]
    #[diagnostic(code(pgfleet::state::schema), help("upgrade pgfleet on this machine to the version your team runs"))]
    SchemaVersion { state: String, found: i32, known: i32 },
    #[error("the {what} of state {state} is not pgfleet state")]
    #[diagnostic(
        code(pgfleet::state::format),
        help("someone edited the table by hand, or a newer pgfleet wrote it; restore it from a backup")
    )]
    Record {
        what: String,
        state: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("state {target} already holds {held}: {source_state} was not moved there")]
    #[diagnostic(
        code(pgfleet::state::migrate_conflict),
        help(
            "nothing was written; point state.url at another database, or remove that state there first if it is a leftover"
        )
    )]
    ImportConflict { source_state: String, target: String, held: String },
    #[error("there is no state to move at {source_state}: it was never written")]
    #[diagnostic(
        code(pgfleet::state::migrate_empty),
        help("check --from, or state.path before the move; nothing was written")
    )]
    ImportEmpty { source_state: String },
}

impl State {
    /// Whether `other` holds the same records: lineage, ownership, the last
    /// applied spec and each environment's journal (the order of entries of
    /// different environments aside, which a store that keeps environments
    /// apart cannot keep).
    pub fn same_records(&self, other: &State) -> bool {
        let journals = |state: &State| {
            let mut by_environment: BTreeMap<String, Vec<JournalEntry>> = BTreeMap::new();
            for entry in &state.journal {
                by_environment.entry(entry.address.environment.clone()).or_default().push(entry.clone());
            }
            by_environment
        };
        self.lineage == other.lineage
            && self.owned == other.owned
            && self.roles == other.roles
            && self.pending == other.pending
            && self.last_applied_spec == other.last_applied_spec
            && journals(self) == journals(other)
    }

    /// What importing `state` over this stored one (at `location`) comes
    /// to: nothing to do when it holds the same records, else a refusal.
    pub(crate) fn imported_over(&self, state: &State, location: &str) -> Result<Imported, StateError> {
        if self.same_records(state) {
            return Ok(Imported::AlreadyThere);
        }
        Err(StateError::ImportConflict {
            source_state: format!("lineage {}", state.lineage),
            target: location.to_owned(),
            held: self.describe(),
        })
    }

    /// The environments the state holds records of.
    pub fn environments(&self) -> std::collections::BTreeSet<String> {
        self.owned
            .keys()
            .map(|address| address.environment.clone())
            .chain(self.journal.iter().map(|entry| entry.address.environment.clone()))
            .collect()
    }

    /// One line for messages: lineage, serial, how much it holds.
    pub fn describe(&self) -> String {
        format!(
            "a state of lineage {} at serial {} ({} owned resources, {} journal entries)",
            if self.lineage.is_empty() { "none" } else { &self.lineage },
            self.serial,
            self.owned.len(),
            self.journal.len()
        )
    }

    /// Records that `to` holds environment `environment`'s primary role
    /// now, and swaps the ownership records of the two members: the
    /// cluster record follows the role (`ENV.cluster.primary` is where the
    /// role's holder lives), the member that handed it on is recorded as
    /// the replica it is now.
    pub fn record_role_change(&mut self, environment: &str, change: RoleChange) {
        let cluster = Address::new(environment, crate::address::Kind::Cluster, crate::placement::PRIMARY);
        let taker = Address::new(environment, crate::address::Kind::Replica, &change.to);
        let giver = Address::new(environment, crate::address::Kind::Replica, &change.from);
        let holder = self.owned.remove(&taker);
        if let Some(previous) = self.owned.remove(&cluster) {
            self.owned.insert(giver, previous);
        }
        if let Some(holder) = holder {
            self.owned.insert(cluster, holder);
        }
        let record = self
            .roles
            .entry(environment.to_owned())
            .or_insert_with(|| RoleRecord { primary: change.from.clone(), changes: Vec::new() });
        record.primary = change.to.clone();
        record.changes.push(change);
        let excess = record.changes.len().saturating_sub(ROLE_HISTORY);
        record.changes.drain(..excess);
    }

    /// The last move of an environment's primary role.
    pub fn last_role_change(&self, environment: &str) -> Option<&RoleChange> {
        self.roles.get(environment).and_then(|record| record.changes.last())
    }

    pub fn owns(&self, address: &Address) -> bool {
        self.owned.contains_key(address)
    }

    /// Appends a journal entry.
    pub fn journal(&mut self, address: &Address, action: &str, event: JournalEvent) {
        self.journal.push(JournalEntry {
            at: now(),
            address: address.clone(),
            action: action.to_owned(),
            event,
            operation: None,
        });
    }

    /// Appends a journal entry for a step of an operation.
    pub fn journal_step(&mut self, address: &Address, action: &str, event: JournalEvent, step: OperationStep) {
        self.journal.push(JournalEntry {
            at: now(),
            address: address.clone(),
            action: action.to_owned(),
            event,
            operation: Some(step),
        });
    }

    /// The steps of operation `id` the journal records as finished since
    /// it was last undone: a killed operation resumes after them, one that
    /// failed and was compensated starts over.
    pub fn finished_steps(&self, id: &str) -> std::collections::BTreeSet<usize> {
        let mut finished = std::collections::BTreeSet::new();
        for entry in &self.journal {
            let Some(step) = entry.operation.as_ref().filter(|step| step.id == id) else { continue };
            if step.compensation && step.undoes {
                finished.clear();
            } else if entry.event == JournalEvent::Finished {
                finished.insert(step.step);
            }
        }
        finished
    }

    /// Records, on every owned resource whose host is in `hosts`, how that
    /// host is reached now. Called once the hosts have all been reached, so
    /// the record is one that worked, and records from before pgfleet kept
    /// it are filled in.
    pub fn record_reach(&mut self, hosts: &BTreeMap<String, Host>) {
        for owned in self.owned.values_mut() {
            if let Some(host) = hosts.get(&owned.host) {
                owned.reach = Some(Reach::from(&host.transport));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::SshTarget;

    fn keys(value: &serde_json::Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value.as_object().expect("an object").keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    /// Every field of an ownership record is listed here: a new one (a
    /// password, a key's contents) fails this test until someone decides
    /// it is not a secret.
    #[test]
    fn an_ownership_record_holds_how_to_reach_its_host_and_nothing_secret() {
        let transport = Transport::Ssh(SshTarget {
            address: "10.0.0.7".into(),
            port: 2222,
            user: "deploy".into(),
            identity_file: Some("/home/deploy/.ssh/id_ed25519".into()),
            known_hosts: "/home/deploy/.ssh/known_hosts".into(),
            become_user: Some("postgres".into()),
        });
        let owned = Owned {
            host: "db2".into(),
            path: Some("/srv/pg/r1".into()),
            listen: None,
            port: None,
            reach: Some(Reach::from(&transport)),
            depends_on: Vec::new(),
            runtime: None,
        };
        let value = serde_json::to_value(&owned).expect("serialisable");
        assert_eq!(keys(&value), ["host", "path", "reach"]);
        assert_eq!(
            keys(&value["reach"]),
            ["address", "become_user", "identity_file", "known_hosts", "port", "transport", "user"]
        );
        assert_eq!(value["reach"]["transport"], "ssh");
        assert_eq!(value["reach"]["identity_file"], "/home/deploy/.ssh/id_ed25519");

        let local = serde_json::to_value(Reach::from(&Transport::Local)).expect("serialisable");
        assert_eq!(local, serde_json::json!({ "transport": "local" }));
        let back: Owned = serde_json::from_value(value).expect("reads back");
        assert_eq!(back, owned);
    }

    #[test]
    fn an_ownership_record_written_before_reach_was_kept_still_loads() {
        let owned: Owned =
            serde_json::from_str(r#"{ "host": "db2", "path": "/srv/pg/r1" }"#).expect("an old record loads");
        assert_eq!(
            owned,
            Owned {
                host: "db2".into(),
                path: Some("/srv/pg/r1".into()),
                listen: None,
                port: None,
                reach: None,
                depends_on: Vec::new(),
                runtime: None
            }
        );
    }

    #[test]
    fn reach_is_recorded_for_hosts_still_configured_and_kept_for_the_others() {
        let old = Some(Reach::Ssh {
            address: "10.0.0.9".into(),
            port: 22,
            user: "root".into(),
            identity_file: None,
            known_hosts: "/root/.ssh/known_hosts".into(),
            become_user: None,
        });
        let mut state = State::default();
        let here: Address = "prod.cluster.primary".parse().expect("an address");
        let gone: Address = "prod.replica.r2".parse().expect("an address");
        state.owned.insert(
            here.clone(),
            Owned {
                host: "here".into(),
                path: None,
                listen: None,
                port: None,
                reach: None,
                depends_on: Vec::new(),
                runtime: None,
            },
        );
        state.owned.insert(
            gone.clone(),
            Owned {
                host: "r2".into(),
                path: None,
                listen: None,
                port: None,
                reach: old.clone(),
                depends_on: Vec::new(),
                runtime: None,
            },
        );
        let hosts = BTreeMap::from([(
            "here".to_owned(),
            Host { name: "here".into(), transport: Transport::Local, authorized_keys: None },
        )]);
        state.record_reach(&hosts);
        assert_eq!(state.owned[&here].reach, Some(Reach::Local));
        assert_eq!(state.owned[&gone].reach, old, "a host that left the configuration keeps its last record");
    }
}
