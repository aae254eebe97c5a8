//! `pgfleet state list|show|unlock`: look at pgfleet's record and its lock.

use std::path::Path;

use super::{Error, Outcome};
use crate::exit::Exit;
use crate::printer::Printer;
use crate::spec::load;
use crate::state::State;

fn state_path(file: &Path) -> Result<std::path::PathBuf, Error> {
    Ok(load::load(file)?.resolve()?.state.path)
}

/// The resources pgfleet owns, with where they live, and who holds the lock.
pub fn list(printer: &Printer, file: &Path) -> Outcome {
    let path = state_path(file)?;
    let state = State::load_local(&path)?;
    let mut text = format!(
        "state {} (lineage {}, serial {}, {} journal entries)\n",
        path.display(),
        if state.lineage.is_empty() { "none yet" } else { &state.lineage },
        state.serial,
        state.journal.len()
    );
    match State::lock_holder(&path) {
        Some(holder) => text.push_str(&format!("locked by {holder}\n")),
        None => text.push_str("not locked\n"),
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
    let state = State::load_local(&state_path(file)?)?;
    printer.out(&serde_json::to_string_pretty(&state).map_err(Error::serialize("the state"))?);
    Ok(Exit::Ok)
}

/// Clears a lock record. A local lock belongs to a running process (the
/// kernel drops it when the process dies), so a held lock is never broken:
/// the holder is named instead.
pub fn unlock(printer: &Printer, file: &Path, force: bool) -> Outcome {
    let path = state_path(file)?;
    if let Some(holder) = State::lock_holder(&path) {
        return Err(Error::LockHeld { holder: holder.to_string() });
    }
    if !force {
        return Err(Error::UnlockNeedsForce);
    }
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    match std::fs::remove_file(&lock) {
        Ok(()) => printer.note(&format!("Removed the lock record {}.", Path::new(&lock).display())),
        Err(_) => printer.note("No lock record to remove; the state is not locked."),
    }
    Ok(Exit::Ok)
}
