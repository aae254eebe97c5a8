//! pgfleet's own record: which resources it created (so it prunes only its
//! own), the last applied spec, a lineage and serial, and the journal of
//! applied actions. Holds no secret, ever.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

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
    /// Where it listened, so it can be found after it left the
    /// configuration (absent in state written before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Owned {
    /// A resource at `path` on `host`, with no listening address recorded.
    pub fn at(host: &str, path: PathBuf) -> Self {
        Owned { host: host.to_owned(), path: Some(path), listen: None, port: None }
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalEvent {
    Started,
    Finished,
    Failed,
}

/// Who holds the lock, written into the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub who: String,
    pub pid: u32,
    pub since: String,
    pub command: String,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {}, `{}`) since {}", self.who, self.pid, self.command, self.since)
    }
}

/// An exclusive lock on a local state file, held until dropped (or until
/// the process dies: the kernel releases it, so a killed apply never leaves
/// a stale lock behind).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

impl StateLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn lock_path(state: &Path) -> PathBuf {
    let mut path = state.as_os_str().to_owned();
    path.push(".lock");
    PathBuf::from(path)
}

fn random_lineage() -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StateError {
    #[error("state {} is locked by {holder}", path.display())]
    #[diagnostic(
        code(pgfleet::state::locked),
        help("another pgfleet is working on these hosts; wait for it, or pass --lock-timeout to wait")
    )]
    Locked { path: PathBuf, holder: String },
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
}

impl State {
    pub fn owns(&self, address: &Address) -> bool {
        self.owned.contains_key(address)
    }

    /// Takes the exclusive lock of a local state, waiting up to `timeout`,
    /// then reads the state. The lock file names the holder.
    pub fn lock_local(path: &Path, command: &str, timeout: Duration) -> Result<(State, StateLock), StateError> {
        let write_error = |source| StateError::Write { path: path.to_owned(), source };
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(write_error)?;
        }
        let lock_path = lock_path(path);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(write_error)?;
        let deadline = Instant::now() + timeout;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TryLockError::WouldBlock) => {
                    let holder = std::fs::read_to_string(&lock_path)
                        .ok()
                        .and_then(|text| serde_json::from_str::<LockHolder>(&text).ok())
                        .map_or_else(|| "another process".to_owned(), |holder| holder.to_string());
                    return Err(StateError::Locked { path: path.to_owned(), holder });
                }
                Err(TryLockError::Error(source)) => return Err(write_error(source)),
            }
        }
        let holder = LockHolder {
            who: format!(
                "{}@{}",
                std::env::var("USER").unwrap_or_else(|_| "root".into()),
                std::fs::read_to_string("/etc/hostname").unwrap_or_default().trim()
            ),
            pid: std::process::id(),
            since: now(),
            command: command.to_owned(),
        };
        file.set_len(0).map_err(write_error)?;
        file.write_all(&serde_json::to_vec(&holder).unwrap_or_default()).map_err(write_error)?;
        let state = State::load_local(path)?;
        Ok((state, StateLock { _file: file, path: lock_path }))
    }

    /// Who holds the lock of a local state now, if anyone.
    pub fn lock_holder(path: &Path) -> Option<LockHolder> {
        let lock_path = lock_path(path);
        let file = File::open(&lock_path).ok()?;
        match file.try_lock_shared() {
            Ok(()) => None,
            Err(_) => std::fs::read_to_string(&lock_path).ok().and_then(|text| serde_json::from_str(&text).ok()),
        }
    }

    /// Writes the state atomically (temporary file, fsync, rename), 0600,
    /// with the serial incremented. Requires the lock.
    pub fn save_local(&mut self, path: &Path, _lock: &StateLock) -> Result<(), StateError> {
        let write_error = |source| StateError::Write { path: path.to_owned(), source };
        if self.lineage.is_empty() {
            self.lineage = random_lineage();
        }
        self.format_version = FORMAT_VERSION;
        self.serial += 1;
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(write_error)?;
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        file.write_all(&bytes).map_err(write_error)?;
        file.sync_all().map_err(write_error)?;
        std::fs::rename(&temporary, path).map_err(write_error)
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
            if step.compensation {
                finished.clear();
            } else if entry.event == JournalEvent::Finished {
                finished.insert(step.step);
            }
        }
        finished
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
