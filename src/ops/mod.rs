//! One module per command: each wires load → resolve → (observe → plan →
//! apply) and hands results to the printer. Errors come back as miette
//! diagnostics for the CLI edge to show.

pub mod graph;
pub mod schema;
pub mod validate;

use std::path::Path;

use crate::spec::diagnostic::SpecErrors;
use crate::spec::load;
use crate::topology::Topology;

/// Why a command failed; every variant is a diagnostic the CLI shows.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Load(#[from] load::LoadError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(#[from] SpecErrors),
}

/// Result of a command: an exit code, or a diagnostic to show (exit 1).
pub type Outcome = Result<crate::cli::Exit, Error>;

/// Loads and validates a configuration file.
pub fn load_topology(file: &Path) -> Result<Topology, Error> {
    Ok(load::load(file)?.resolve()?)
}
