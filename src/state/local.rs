//! The local state backend: the state as pretty JSON in one file, written
//! atomically (temporary file, fsync, rename, fsync of the directory) with
//! mode 0600, beside a `.lock` file that is flock'ed while in use and holds
//! its holder's record.
//!
//! One lock covers the whole state, whichever environments are asked for:
//! one file cannot be written by two processes at once, whatever each is
//! changing. The lock is the machine's own, so this backend must not be
//! shared by pipelines on several machines (that is the postgres backend's
//! purpose).
//!
//! The files are small and written once per apply step, so reads and
//! writes run on the caller's thread rather than through the runtime's
//! blocking pool.

use std::any::Any;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::store::{HeldLock, Imported, LockScope, Pending, Serials, StateLock, StateStore, Unlocked};
use super::{FORMAT_VERSION, LockHolder, State, StateError};

/// How often a waiting `lock` tries again.
const LOCK_RETRY: Duration = Duration::from_millis(100);

/// A state file and its lock file.
#[derive(Debug, Clone)]
pub struct LocalStore {
    path: PathBuf,
}

/// The flock on a state's lock file; the kernel releases it when the file
/// is closed, so also when the process dies, however it dies.
#[derive(Debug)]
struct LocalLock {
    _file: File,
    state: PathBuf,
    holder: LockHolder,
    scope: LockScope,
}

impl StateLock for LocalLock {
    fn scope(&self) -> &LockScope {
        &self.scope
    }

    fn holder(&self) -> &LockHolder {
        &self.holder
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The part of a stored state that decides whether a write may replace it;
/// the rest is skipped unread.
#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    lineage: String,
    #[serde(default)]
    serial: u64,
}

impl LocalStore {
    pub fn new(path: PathBuf) -> Self {
        LocalStore { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock_path(&self) -> PathBuf {
        sibling(&self.path, ".lock")
    }

    fn read_holder(&self) -> Option<LockHolder> {
        std::fs::read_to_string(self.lock_path()).ok().and_then(|text| serde_json::from_str(&text).ok())
    }

    fn read<T: for<'de> Deserialize<'de>>(&self) -> Result<Option<T>, StateError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StateError::Format { path: self.path.clone(), source }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Read { path: self.path.clone(), source }),
        }
    }

    fn check_lock(&self, lock: &dyn StateLock) -> Result<(), StateError> {
        match lock.as_any().downcast_ref::<LocalLock>() {
            Some(lock) if lock.state == self.path => Ok(()),
            _ => Err(StateError::ForeignLock { state: self.location() }),
        }
    }

    /// Replaces the file with `state`, all or nothing, readable only by its
    /// owner.
    fn write(&self, state: &State) -> Result<(), StateError> {
        let write_error = |source| StateError::Write { path: self.path.clone(), source };
        let mut bytes = serde_json::to_vec_pretty(state).map_err(|source| StateError::Serialise {
            what: "state",
            state: self.location(),
            source,
        })?;
        bytes.push(b'\n');
        let temporary = sibling(&self.path, ".tmp");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(write_error)?;
        // `mode` applies only when the file is created; one left by a killed
        // run keeps whatever mode it had.
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(write_error)?;
        file.write_all(&bytes).map_err(write_error)?;
        file.sync_all().map_err(write_error)?;
        std::fs::rename(&temporary, &self.path).map_err(write_error)?;
        // The rename is durable only once the directory is.
        let directory = self.path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(directory).and_then(|directory| directory.sync_all()).map_err(write_error)
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

pub(super) fn random_lineage(state: &str) -> Result<String, StateError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|source| StateError::Entropy { state: state.to_owned(), source })?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

impl StateStore for LocalStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn load(&self) -> Pending<'_, State> {
        Box::pin(
            async move { Ok(self.read()?.unwrap_or(State { format_version: FORMAT_VERSION, ..State::default() })) },
        )
    }

    fn lock<'a>(
        &'a self,
        _environments: &'a [String],
        command: &'a str,
        timeout: Duration,
    ) -> Pending<'a, Box<dyn StateLock>> {
        Box::pin(async move {
            let write_error = |source| StateError::Write { path: self.path.clone(), source };
            if let Some(parent) = self.path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(write_error)?;
            }
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(self.lock_path())
                .map_err(write_error)?;
            let deadline = Instant::now() + timeout;
            loop {
                match file.try_lock() {
                    Ok(()) => break,
                    Err(TryLockError::WouldBlock) if Instant::now() < deadline => tokio::time::sleep(LOCK_RETRY).await,
                    Err(TryLockError::WouldBlock) => {
                        let held = HeldLock { scope: LockScope::Whole, holder: self.read_holder() };
                        return Err(StateError::Locked { state: self.location(), holder: held.holder_text() });
                    }
                    Err(TryLockError::Error(source)) => return Err(write_error(source)),
                }
            }
            let holder = LockHolder::this_process(command);
            let record = serde_json::to_vec(&holder).map_err(|source| StateError::Serialise {
                what: "lock record",
                state: self.location(),
                source,
            })?;
            file.set_len(0).map_err(write_error)?;
            file.write_all(&record).map_err(write_error)?;
            let lock = LocalLock { _file: file, state: self.path.clone(), holder, scope: LockScope::Whole };
            Ok(Box::new(lock) as Box<dyn StateLock>)
        })
    }

    fn save<'a>(&'a self, state: &'a mut State, expected: &'a Serials, lock: &'a dyn StateLock) -> Pending<'a, ()> {
        Box::pin(async move {
            let expected_serial = expected.whole;
            self.check_lock(lock)?;
            let stored = self.read::<Header>()?.unwrap_or(Header { lineage: String::new(), serial: 0 });
            if stored.serial != expected_serial {
                return Err(StateError::StaleSerial {
                    state: self.location(),
                    expected: expected_serial,
                    stored: stored.serial,
                });
            }
            if !stored.lineage.is_empty() && stored.lineage != state.lineage {
                return Err(StateError::Lineage {
                    state: self.location(),
                    writing: if state.lineage.is_empty() { "none (a new state)".into() } else { state.lineage.clone() },
                    stored: stored.lineage,
                });
            }
            let lineage =
                if state.lineage.is_empty() { random_lineage(&self.location())? } else { state.lineage.clone() };
            let previous = (state.format_version, state.serial, std::mem::replace(&mut state.lineage, lineage));
            state.format_version = FORMAT_VERSION;
            state.serial = expected_serial + 1;
            let written = self.write(state);
            if written.is_err() {
                // A write that did not happen leaves the caller's state as it
                // was, so that a retry expects the serial still stored.
                (state.format_version, state.serial, state.lineage) = previous;
            }
            written
        })
    }

    /// Written as it comes, serial included, over a file that is absent or
    /// was never written.
    fn import<'a>(&'a self, state: &'a State, lock: &'a dyn StateLock) -> Pending<'a, Imported> {
        Box::pin(async move {
            self.check_lock(lock)?;
            if state.lineage.is_empty() {
                return Err(StateError::ImportEmpty { source_state: "the state to import".into() });
            }
            if let Some(stored) = self.read::<State>()?.filter(|stored| !stored.lineage.is_empty()) {
                return stored.imported_over(state, &self.location());
            }
            let mut local = state.clone();
            local.format_version = FORMAT_VERSION;
            local.environment_serials.clear();
            self.write(&local)?;
            Ok(Imported::Moved)
        })
    }

    fn holders(&self) -> Pending<'_, Vec<HeldLock>> {
        Box::pin(async move {
            let lock_path = self.lock_path();
            let file = match File::open(&lock_path) {
                Ok(file) => file,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(source) => return Err(StateError::Read { path: lock_path, source }),
            };
            match file.try_lock_shared() {
                Ok(()) => Ok(Vec::new()),
                Err(TryLockError::WouldBlock) => {
                    Ok(vec![HeldLock { scope: LockScope::Whole, holder: self.read_holder() }])
                }
                Err(TryLockError::Error(source)) => Err(StateError::Read { path: lock_path, source }),
            }
        })
    }

    /// The one lock covers every scope. A held flock cannot be broken (the
    /// kernel owns it, and frees it when its holder exits), so this only
    /// clears the record a dead holder left. The record is emptied, not the
    /// file removed: a process already waiting on the old file would
    /// otherwise hold a lock on a file nobody else can see.
    fn force_unlock<'a>(&'a self, _scope: &'a LockScope) -> Pending<'a, Unlocked> {
        Box::pin(async move {
            let lock_path = self.lock_path();
            let write_error = |source| StateError::Write { path: lock_path.clone(), source };
            let file = match OpenOptions::new().write(true).open(&lock_path) {
                Ok(file) => file,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Unlocked::Nothing),
                Err(source) => return Err(write_error(source)),
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let held = HeldLock { scope: LockScope::Whole, holder: self.read_holder() };
                    return Err(StateError::Locked { state: self.location(), holder: held.holder_text() });
                }
                Err(TryLockError::Error(source)) => return Err(write_error(source)),
            }
            let left = file.metadata().map_err(write_error)?.len() > 0;
            file.set_len(0).map_err(write_error)?;
            Ok(if left { Unlocked::Cleared { record: lock_path.display().to_string() } } else { Unlocked::Nothing })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt as _;
    use std::time::Duration;

    use super::*;
    use crate::address::Address;
    use crate::state::Owned;

    const NO_WAIT: Duration = Duration::ZERO;

    fn at(serial: u64) -> Serials {
        Serials { whole: serial, environments: Default::default() }
    }

    fn store(directory: &tempfile::TempDir) -> LocalStore {
        LocalStore::new(directory.path().join("state").join("fleet.json"))
    }

    fn with_owned(mut state: State, address: &str, path: PathBuf) -> State {
        let address: Address = address.parse().expect("an address");
        state.owned.insert(
            address,
            Owned {
                host: "here".into(),
                path: Some(path),
                listen: None,
                port: None,
                reach: None,
                depends_on: Vec::new(),
                runtime: None,
            },
        );
        state
    }

    #[tokio::test]
    async fn the_first_save_draws_a_lineage_and_each_save_increments_the_serial() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let store = store(&directory);
        let lock = store.lock(&["prod".into()], "pgfleet apply", NO_WAIT).await.expect("locked");
        assert_eq!(lock.scope(), &LockScope::Whole, "the local file has one lock for every environment");
        assert!(lock.covers("staging"));
        let mut state = store.load().await.expect("an empty state");
        assert_eq!((state.serial, state.lineage.as_str()), (0, ""));

        store.save(&mut state, &at(0), &*lock).await.expect("saved");
        assert_eq!(state.serial, 1);
        assert_eq!(state.lineage.len(), 32);
        let lineage = state.lineage.clone();
        store.save(&mut state, &at(1), &*lock).await.expect("saved again");
        assert_eq!((state.serial, state.lineage.as_str()), (2, lineage.as_str()));
        assert_eq!(store.load().await.expect("loads"), state);
    }

    #[tokio::test]
    async fn a_save_is_atomic_and_readable_only_by_its_owner() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let store = store(&directory);
        let lock = store.lock(&[], "pgfleet apply", NO_WAIT).await.expect("locked");
        // A temporary file left world-readable by a killed run.
        let temporary = sibling(store.path(), ".tmp");
        std::fs::write(&temporary, b"half a state").expect("written");
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o644)).expect("chmod");

        let mut state = store.load().await.expect("an empty state");
        store.save(&mut state, &at(0), &*lock).await.expect("saved");
        let mode = std::fs::metadata(store.path()).expect("the state file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!temporary.exists(), "the temporary file was renamed into place");
        let lock_mode = std::fs::metadata(store.lock_path()).expect("the lock file").permissions().mode();
        assert_eq!(lock_mode & 0o777, 0o600);

        // A write that fails half-way leaves the previous state in place, and
        // the caller's state as it was.
        std::fs::create_dir(&temporary).expect("a directory where the temporary file goes");
        let before = std::fs::read(store.path()).expect("the state file");
        let mut next = state.clone();
        next.last_applied_spec = Some("abc".into());
        let error = store.save(&mut next, &at(1), &*lock).await.expect_err("cannot write");
        assert!(matches!(error, StateError::Write { .. }), "{error:?}");
        assert_eq!(next.serial, 1);
        assert_eq!(std::fs::read(store.path()).expect("the state file"), before);
    }

    #[tokio::test]
    async fn a_state_that_cannot_be_serialised_is_refused_and_the_file_kept() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let store = store(&directory);
        let lock = store.lock(&[], "pgfleet apply", NO_WAIT).await.expect("locked");
        let mut state = with_owned(State::default(), "prod.cluster.primary", "/srv/pg/prod".into());
        store.save(&mut state, &at(0), &*lock).await.expect("saved");
        let before = std::fs::read(store.path()).expect("the state file");

        // JSON holds only UTF-8; such a path used to become an empty file.
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(b"/srv/pg/\xff"));
        let mut broken = with_owned(state.clone(), "prod.replica.r1", path);
        let error = store.save(&mut broken, &at(1), &*lock).await.expect_err("not serialisable");
        assert!(matches!(error, StateError::Serialise { what: "state", .. }), "{error:?}");
        assert_eq!(broken.serial, 1, "the caller's state is unchanged");
        assert_eq!(std::fs::read(store.path()).expect("the state file"), before);
    }

    #[tokio::test]
    async fn a_writer_with_a_stale_serial_is_refused_not_merged() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let store = store(&directory);
        let lock = store.lock(&[], "pgfleet apply", NO_WAIT).await.expect("locked");
        let mut first = store.load().await.expect("an empty state");
        let mut second = first.clone();
        store.save(&mut first, &at(0), &*lock).await.expect("saved");
        store.save(&mut first, &at(1), &*lock).await.expect("saved");
        let before = std::fs::read(store.path()).expect("the state file");

        second.last_applied_spec = Some("from a stale reader".into());
        let error = store.save(&mut second, &at(0), &*lock).await.expect_err("stale");
        assert!(matches!(error, StateError::StaleSerial { expected: 0, stored: 2, .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("serial 2") && message.contains("serial 0"), "{message}");
        assert_eq!(std::fs::read(store.path()).expect("the state file"), before, "nothing was written");
        assert_eq!(second.serial, 0);
    }

    #[tokio::test]
    async fn a_state_of_another_lineage_is_refused() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let store = store(&directory);
        let lock = store.lock(&[], "pgfleet apply", NO_WAIT).await.expect("locked");
        let mut ours = store.load().await.expect("an empty state");
        store.save(&mut ours, &at(0), &*lock).await.expect("saved");

        let mut theirs = State { lineage: "0123456789abcdef0123456789abcdef".into(), serial: 1, ..State::default() };
        let error = store.save(&mut theirs, &at(1), &*lock).await.expect_err("another lineage");
        assert!(matches!(&error, StateError::Lineage { stored, .. } if *stored == ours.lineage), "{error:?}");
        let mut fresh = State { serial: 1, ..State::default() };
        let error = store.save(&mut fresh, &at(1), &*lock).await.expect_err("a new state over an existing one");
        assert!(matches!(error, StateError::Lineage { .. }), "{error:?}");
        assert_eq!(store.load().await.expect("loads"), ours);
    }

    #[tokio::test]
    async fn a_save_under_another_stores_lock_is_refused() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let store = store(&directory);
        let other = LocalStore::new(directory.path().join("other.json"));
        let lock = other.lock(&[], "pgfleet apply", NO_WAIT).await.expect("locked");
        let mut state = store.load().await.expect("an empty state");
        let error = store.save(&mut state, &at(0), &*lock).await.expect_err("not this store's lock");
        assert!(matches!(error, StateError::ForeignLock { .. }), "{error:?}");
        assert!(!store.path().exists());
    }

    #[tokio::test]
    async fn a_held_lock_makes_the_next_wait_then_fail_naming_the_holder() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let store = store(&directory);
        let held = store.lock(&["prod".into()], "pgfleet apply --auto-approve", NO_WAIT).await.expect("locked");
        assert_eq!(held.holder().pid, std::process::id());

        let started = Instant::now();
        let error = store.lock(&["staging".into()], "pgfleet apply", Duration::from_millis(300)).await;
        let error = error.expect_err("the lock is held");
        assert!(started.elapsed() >= Duration::from_millis(300), "it waited for the timeout");
        let message = error.to_string();
        assert!(matches!(error, StateError::Locked { .. }), "{error:?}");
        assert!(
            message.contains("is locked by")
                && message.contains(&format!("pid {}", std::process::id()))
                && message.contains("`pgfleet apply --auto-approve`"),
            "{message}"
        );

        let holders = store.holders().await.expect("listed");
        assert_eq!(holders, [HeldLock { scope: LockScope::Whole, holder: Some(held.holder().clone()) }]);
        let error = store.force_unlock(&LockScope::Whole).await.expect_err("a held lock is never broken");
        assert!(matches!(error, StateError::Locked { .. }), "{error:?}");

        drop(held);
        assert_eq!(store.holders().await.expect("listed"), []);
        let record = store.lock_path().display().to_string();
        assert_eq!(store.force_unlock(&LockScope::Whole).await.expect("cleared"), Unlocked::Cleared { record });
        assert_eq!(store.force_unlock(&LockScope::Whole).await.expect("nothing left"), Unlocked::Nothing);
        store.lock(&[], "pgfleet apply", NO_WAIT).await.expect("free again");
    }

    #[tokio::test]
    async fn a_lock_whose_record_is_unreadable_is_still_held() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let store = store(&directory);
        let held = store.lock(&[], "pgfleet apply", NO_WAIT).await.expect("locked");
        std::fs::write(store.lock_path(), b"{ half a rec").expect("written");
        assert_eq!(store.holders().await.expect("listed"), [HeldLock { scope: LockScope::Whole, holder: None }]);
        let error = store.lock(&[], "pgfleet apply", NO_WAIT).await.expect_err("still held");
        assert!(error.to_string().contains("locked by another process"), "{error}");
        drop(held);
    }

    /// The lock holder for the test below, run as a child process of the
    /// test binary; a no-op when the test suite runs it itself.
    #[tokio::test]
    async fn child_holding_the_lock() {
        let Some(path) = std::env::var_os("PGFLEET_TEST_HOLD_LOCK") else { return };
        let store = LocalStore::new(PathBuf::from(path));
        let _lock = store.lock(&[], "held by a child", NO_WAIT).await.expect("locked");
        tokio::time::sleep(Duration::from_secs(120)).await;
    }

    #[tokio::test]
    async fn a_killed_holders_lock_is_freed_by_the_kernel() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let store = store(&directory);
        /// Kills the child however the test ends.
        struct Holder(std::process::Child);
        impl Drop for Holder {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let child = std::process::Command::new(std::env::current_exe().expect("the test binary"))
            .args(["state::local::tests::child_holding_the_lock", "--exact", "--nocapture"])
            .env("PGFLEET_TEST_HOLD_LOCK", store.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the child starts");
        let pid = child.id();
        let mut holder = Holder(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let holders = store.holders().await.expect("listed");
            if holders.iter().any(|held| held.holder.as_ref().is_some_and(|holder| holder.pid == pid)) {
                break;
            }
            assert!(Instant::now() < deadline, "the child never took the lock");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let error = store.lock(&[], "pgfleet apply", NO_WAIT).await.expect_err("the child holds it");
        assert!(error.to_string().contains(&format!("pid {pid}")), "{error}");

        holder.0.kill().expect("SIGKILL");
        holder.0.wait().expect("reaped");
        store.lock(&[], "pgfleet apply", NO_WAIT).await.expect("free once its holder is dead");
    }
}
