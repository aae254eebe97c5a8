//! The state-store seam: where pgfleet's state is kept, how writers are
//! locked out of each other, and how a write that would lose another's is
//! refused. Commands hold a `Box<dyn StateStore>` made by [`open`] from the
//! configuration's `state:` settings and never learn which backend it is.
//! Deciding what goes into the state is apply's, not the store's.
//!
//! The trait is async, with boxed futures as in `transport::Remote`: a
//! database backend keeps its lock on a session that must be driven by the
//! runtime for the whole apply, and apply saves from inside its async
//! scheduler, where blocking on a nested runtime is not allowed.

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;

use super::local::LocalStore;
use super::postgres::PostgresStore;
use super::{LockHolder, State, StateError};
use crate::spec::StateBackend;
use crate::topology::StateSettings;

/// A boxed future, so `StateStore` can be used as a trait object.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, StateError>> + Send + 'a>>;

/// Where pgfleet's state lives.
///
/// # Guarantees
///
/// - `save` writes all or nothing: a reader sees the previous state or the
///   new one, never a mix, and a writer killed mid-save leaves the previous.
/// - A write is refused, never merged, when a stored serial is not the one
///   the writer expects, or the stored lineage is not the writer's. A
///   backend that versions environments apart checks the serial of each
///   environment it writes; one with one serial checks that one.
/// - A write changes only what the writer's lock covers.
/// - A lock dies with its holder (the process, or its database session), so
///   a killed apply never leaves a lock that must be broken by hand.
///
/// # Assumptions
///
/// Writers hold a lock from [`StateStore::lock`] of this same store; readers
/// (`plan`, `drift`, `state show`) need none.
pub trait StateStore: Send + Sync {
    /// Where the state lives, for messages: a file's path, a table.
    fn location(&self) -> String;

    /// The whole state; when nothing is stored yet, an empty state (no
    /// lineage, serial 0).
    ///
    /// # Errors
    ///
    /// The state cannot be read, or is not pgfleet state.
    fn load(&self) -> Pending<'_, State>;

    /// Locks the state for `environments`, waiting up to `timeout`, and
    /// records this process, running `command`, as the holder. A backend
    /// may lock more than asked (the local file has one lock for every
    /// environment); [`StateLock::scope`] says what is covered. Held until
    /// the lock is dropped.
    ///
    /// # Errors
    ///
    /// Still held by another after `timeout` (naming the holder), or the
    /// lock cannot be taken at all.
    fn lock<'a>(
        &'a self,
        environments: &'a [String],
        command: &'a str,
        timeout: Duration,
    ) -> Pending<'a, Box<dyn StateLock>>;

    /// Writes what `lock` covers of `state` if the stored serials are still
    /// the `expected` ones and the stored lineage (if any) is the state's.
    /// On success the state carries its new serials (each part written one
    /// more than expected), its lineage (drawn on the first write) and the
    /// current format version; on failure it is unchanged.
    ///
    /// # Errors
    ///
    /// A stale serial or another lineage (nothing written), a lock that is
    /// not this store's or is lost, the state cannot be serialised or
    /// written.
    fn save<'a>(&'a self, state: &'a mut State, expected: &'a Serials, lock: &'a dyn StateLock) -> Pending<'a, ()>;

    /// Takes `state`, read from another store, as this store's whole state,
    /// with its lineage: the move of a state from one backend to another.
    /// `lock` must cover every environment the state holds.
    ///
    /// # Errors
    ///
    /// This store already holds a state of another lineage, or this lineage
    /// with other contents (nothing written); `state` was never written; as
    /// [`StateStore::save`].
    fn import<'a>(&'a self, state: &'a State, lock: &'a dyn StateLock) -> Pending<'a, Imported>;

    /// The locks held now, with their holders, for `pgfleet state list`.
    fn holders(&self) -> Pending<'_, Vec<HeldLock>>;

    /// Clears what holders that are gone left behind in `scope`. A lock
    /// that is still held is not broken: the error names its holder.
    fn force_unlock<'a>(&'a self, scope: &'a LockScope) -> Pending<'a, Unlocked>;
}

/// A lock taken with [`StateStore::lock`]; released when dropped.
pub trait StateLock: Send + Sync + std::fmt::Debug {
    /// What the lock covers.
    fn scope(&self) -> &LockScope;

    /// Who holds it: this process.
    fn holder(&self) -> &LockHolder;

    /// Whether changes to `environment` may be written under this lock.
    fn covers(&self, environment: &str) -> bool {
        self.scope().covers(environment)
    }

    /// The backend's own lock type, so a store can recognise its locks and
    /// refuse another store's.
    fn as_any(&self) -> &dyn Any;
}

/// What a lock covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockScope {
    /// Every environment, present and future: one lock for the whole state.
    Whole,
    /// These environments only.
    Environments(Vec<String>),
}

impl LockScope {
    pub fn covers(&self, environment: &str) -> bool {
        match self {
            LockScope::Whole => true,
            LockScope::Environments(environments) => environments.iter().any(|covered| covered == environment),
        }
    }
}

impl std::fmt::Display for LockScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockScope::Whole => f.write_str("the whole state"),
            LockScope::Environments(environments) => write!(f, "environment(s) {}", environments.join(", ")),
        }
    }
}

/// A lock someone holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLock {
    pub scope: LockScope,
    /// `None` when the holder's record cannot be read (it is being written,
    /// or was damaged); the lock is held all the same.
    pub holder: Option<LockHolder>,
}

impl HeldLock {
    /// The holder, for messages.
    pub fn holder_text(&self) -> String {
        self.holder.as_ref().map_or_else(|| "another process".to_owned(), LockHolder::to_string)
    }
}

/// The serials a writer read, to be found unchanged when it writes: the
/// whole state's, and each environment's where the store keeps them apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Serials {
    pub whole: u64,
    pub environments: BTreeMap<String, u64>,
}

impl Serials {
    /// The serials `state` was read (or last written) at.
    pub fn of(state: &State) -> Self {
        Serials { whole: state.serial, environments: state.environment_serials.clone() }
    }

    /// The serial of `environment`'s part: 0 for a part never written.
    pub fn environment(&self, environment: &str) -> u64 {
        self.environments.get(environment).copied().unwrap_or(0)
    }
}

/// What [`StateStore::import`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// The state was written here.
    Moved,
    /// This store already held exactly this state.
    AlreadyThere,
}

/// What [`StateStore::force_unlock`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlocked {
    /// A record left by a holder that is gone was cleared.
    Cleared { record: String },
    /// Nothing was held and no record was left.
    Nothing,
}

/// The store named by the configuration's `state:` settings.
///
/// Opening connects to nothing: a store reaches its database when first
/// used.
///
/// # Errors
///
/// The postgres backend's url cannot be read from its secret, or is not a
/// connection string.
pub fn open(settings: &StateSettings) -> Result<Box<dyn StateStore>, StateError> {
    match settings.backend {
        StateBackend::Local => Ok(Box::new(LocalStore::new(settings.path.clone()))),
        StateBackend::Postgres => Ok(Box::new(PostgresStore::from_settings(settings)?)),
    }
}

/// A locked state being written: the store, its lock, and the serial this
/// writer last read or wrote, so that each save is refused if anyone else
/// wrote in between.
pub struct Writer<'a> {
    store: &'a dyn StateStore,
    lock: Box<dyn StateLock>,
    serials: Serials,
}

impl<'a> Writer<'a> {
    /// Locks `store` for `environments`, then reads the state: read under
    /// the lock, so that no other writer's change lands between the read
    /// and the first save.
    ///
    /// # Errors
    ///
    /// As [`StateStore::lock`] and [`StateStore::load`].
    pub async fn lock(
        store: &'a dyn StateStore,
        environments: &[String],
        command: &str,
        timeout: Duration,
    ) -> Result<(Writer<'a>, State), StateError> {
        let lock = store.lock(environments, command, timeout).await?;
        let state = store.load().await?;
        let serials = Serials::of(&state);
        Ok((Writer { store, lock, serials }, state))
    }

    /// Saves `state` over the serials this writer last saw.
    ///
    /// # Errors
    ///
    /// As [`StateStore::save`].
    pub async fn save(&mut self, state: &mut State) -> Result<(), StateError> {
        self.store.save(state, &self.serials, &*self.lock).await?;
        self.serials = Serials::of(state);
        Ok(())
    }

    pub fn held(&self) -> &dyn StateLock {
        &*self.lock
    }
}
