//! `pgfleet state list|show|unlock`: look at pgfleet's record and its locks,
//! through the configured state store.

use std::path::Path;

use super::{Error, Outcome};
use crate::config::load;
use crate::exit::Exit;
use crate::printer::Printer;
use crate::state::{self, LockScope, StateStore, Unlocked};

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
