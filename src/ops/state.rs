//! `pgfleet state list|show|unlock|migrate|forget`: look at pgfleet's record and
//! its locks through the configured state store, and move a local state
//! into it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::{Error, Outcome};
use crate::config::load;
use crate::exit::Exit;
use crate::printer::Printer;
use crate::spec::StateBackend;
use crate::state::{self, Imported, LocalStore, LockScope, State, StateError, StateStore, Unlocked};

/// The configured store, and a runtime to drive it (the store is async).
fn open(file: &Path) -> Result<(Box<dyn StateStore>, tokio::runtime::Runtime), Error> {
    let store = state::open(&load::load(file)?.resolve()?.state)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Runtime { source })?;
    Ok((store, runtime))
}

/// The resources pgfleet owns, with where they live, and who holds locks.
pub fn list(printer: &Printer, file: &Path) -> Outcome {
    let (store, runtime) = open(file)?;
    let state = runtime.block_on(store.load())?;
    let mut text = format!(
        "state {} (lineage {}, serial {}, {} journal entries)\n",
        store.location(),
        if state.lineage.is_empty() { "none yet" } else { &state.lineage },
        state.serial,
        state.journal.len()
    );
    for (environment, serial) in &state.environment_serials {
        text.push_str(&format!("environment {environment}: serial {serial}\n"));
    }
    let holders = runtime.block_on(store.holders())?;
    if holders.is_empty() {
        text.push_str("not locked\n");
    }
    for held in &holders {
        match &held.scope {
            LockScope::Whole => text.push_str(&format!("locked by {}\n", held.holder_text())),
            scope => text.push_str(&format!("{scope} locked by {}\n", held.holder_text())),
        }
    }
    for (address, owned) in &state.owned {
        let place = owned.path.as_ref().map(|path| format!(" {}", path.display())).unwrap_or_default();
        text.push_str(&format!("{:<32} {}{place}\n", address.to_string(), owned.host));
    }
    printer.out(&text);
    Ok(Exit::Ok)
}

/// The whole state as JSON (it holds no secret).
pub fn show(printer: &Printer, file: &Path) -> Outcome {
    let (store, runtime) = open(file)?;
    let state = runtime.block_on(store.load())?;
    printer.out(&serde_json::to_string_pretty(&state).map_err(Error::serialize("the state"))?);
    Ok(Exit::Ok)
}

/// Clears lock records whose holders are gone. A held lock is never broken
/// (the local one belongs to a running process, and the kernel drops it
/// when that process dies): the holder is named instead.
pub fn unlock(printer: &Printer, file: &Path, force: bool) -> Outcome {
    let (store, runtime) = open(file)?;
    if let Some(held) = runtime.block_on(store.holders())?.first() {
        return Err(Error::LockHeld { holder: held.holder_text() });
    }
    if !force {
        return Err(Error::UnlockNeedsForce);
    }
    match runtime.block_on(store.force_unlock(&LockScope::Whole))? {
        Unlocked::Cleared { record } => printer.note(&format!("Cleared the lock record {record}.")),
        Unlocked::Nothing => printer.note("No lock record to clear; the state is not locked."),
    }
    Ok(Exit::Ok)
}

/// Removes `address` from what pgfleet owns, under its environment's lock.
pub fn forget(printer: &Printer, file: &Path, address: &crate::address::Address, lock_timeout: Duration) -> Outcome {
    let topology = load::load(file)?.resolve()?;
    let store = state::open(&topology.state)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Runtime { source })?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let environments = [address.environment.clone()];
    let (mut writer, mut state) =
        runtime.block_on(state::Writer::lock(&*store, &environments, &command, lock_timeout))?;
    let Some(owned) = state.owned.remove(address) else {
        return Err(Error::NotOwned { address: address.to_string() });
    };
    runtime.block_on(writer.save(&mut state))?;
    let place = owned.path.as_ref().map(|path| format!(" at {}", path.display())).unwrap_or_default();
    printer.note(&format!(
        "Forgot {address} (on host `{}`{place}): pgfleet no longer owns it and will not touch it.",
        owned.host
    ));
    Ok(Exit::Ok)
}

pub struct MigrateOptions<'a> {
    pub file: &'a Path,
    /// The local state file; default: the local backend's default path.
    pub from: Option<&'a Path>,
    pub lock_timeout: Duration,
}

/// Moves a local state file into the configured postgres backend, holding
/// both stores' locks so that no apply writes either meanwhile.
pub fn migrate(printer: &Printer, options: &MigrateOptions<'_>) -> Outcome {
    let topology = load::load(options.file)?.resolve()?;
    if topology.state.backend != StateBackend::Postgres {
        return Err(Error::MigrateTarget { file: options.file.display().to_string() });
    }
    let source = LocalStore::new(options.from.map_or_else(|| topology.state.path.clone(), Path::to_path_buf));
    let target = state::open(&topology.state)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Runtime { source })?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let (moved, imported) = runtime.block_on(async {
        let _source_lock = source.lock(&[], &command, options.lock_timeout).await?;
        let moved = source.load().await?;
        if moved.lineage.is_empty() {
            return Err(StateError::ImportEmpty { source_state: source.location() });
        }
        let mut environments = moved.environments();
        environments.extend(topology.environments.iter().map(|environment| environment.id.clone()));
        let environments: Vec<String> = environments.into_iter().collect();
        let target_lock = target.lock(&environments, &command, options.lock_timeout).await?;
        let imported = target.import(&moved, &*target_lock).await?;
        Ok::<_, StateError>((moved, imported))
    })?;
    printer.out(&migrated(&moved, &source.location(), &target.location(), &imported));
    Ok(Exit::Ok)
}

/// What moved, environment by environment.
fn migrated(state: &State, source: &str, target: &str, imported: &Imported) -> String {
    if *imported == Imported::AlreadyThere {
        return format!("{target} already holds this state (lineage {}); nothing moved.\n", state.lineage);
    }
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for address in state.owned.keys() {
        counts.entry(&address.environment).or_default().0 += 1;
    }
    for entry in &state.journal {
        counts.entry(&entry.address.environment).or_default().1 += 1;
    }
    let mut text =
        format!("Moved state of lineage {} (serial {}) from {source} to {target}:\n", state.lineage, state.serial);
    for (environment, (owned, journal)) in &counts {
        text.push_str(&format!("  {environment}: {owned} owned resource(s), {journal} journal entries\n"));
    }
    if let Some(spec) = &state.last_applied_spec {
        text.push_str(&format!("  last applied spec: {spec}\n"));
    }
    text.push_str(&format!("{source} is left as it was; move it away once pgfleet works from the new backend.\n"));
    text
}
