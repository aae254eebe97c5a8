//! pgfleet's own record: which resources it created (so it prunes only its
//! own), the last applied spec, a lineage and serial, and the journal of
//! applied actions. Holds no secret, ever.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::address::Address;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub format_version: u32,
    /// Random id given when the state is first written; a state file from
    /// another lineage is never mixed with this one.
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

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StateError {
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
}

impl State {
    pub fn owns(&self, address: &Address) -> bool {
        self.owned.contains_key(address)
    }

    /// Reads a local state file; a missing file is an empty state.
    pub fn load_local(path: &Path) -> Result<State, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| StateError::Format { path: path.to_owned(), source })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(State { format_version: FORMAT_VERSION, ..State::default() })
            }
            Err(source) => Err(StateError::Read { path: path.to_owned(), source }),
        }
    }
}
