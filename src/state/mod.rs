//! pgfleet's own record: which resources it created (so it prunes only its
//! own), the last applied spec, a lineage and serial, and the journal of
//! applied actions. Holds no secret, ever.
//!
//! This module owns the record's shape; where it is kept, how it is locked
//! and how a stale writer is refused belong to a [`StateStore`] (`store`),
//! whose first backend is a local file (`local`).

mod local;
mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use local::LocalStore;
pub use store::{HeldLock, LockScope, Pending, StateLock, StateStore, Unlocked, Writer, open};

use crate::address::Address;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub format_version: u32,
    /// Random id given when the state is first written; a state from another
    /// lineage is never mixed with this one.
    pub lineage: String,
    /// Incremented on every write.
    pub serial: u64,
    /// Resources pgfleet created, with where they live, so that one removed
    /// from the configuration can still be found and pruned.
    pub owned: BTreeMap<Address, Owned>,
    /// sha256 of the last spec applied in full.
    pub last_applied_spec: Option<String>,
    pub journal: Vec<JournalEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    pub host: String,
    /// Data directory (clusters) or ini file (poolers).
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub at: String,
    pub address: Address,
    pub action: String,
    pub event: JournalEvent,
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
    #[error("state.backend: {backend} is not implemented yet")]
    #[diagnostic(code(pgfleet::state::backend), help("use `backend: local` (the default) and remove `url`"))]
    BackendNotImplemented { backend: &'static str },
}

impl State {
    pub fn owns(&self, address: &Address) -> bool {
        self.owned.contains_key(address)
    }

    /// Appends a journal entry.
    pub fn journal(&mut self, address: &Address, action: &str, event: JournalEvent) {
        self.journal.push(JournalEntry { at: now(), address: address.clone(), action: action.to_owned(), event });
    }
}
