//! One module per command: each wires load → resolve → (observe → plan →
//! apply) and hands results to the printer. Errors come back as miette
//! diagnostics for the CLI edge to show.

pub mod graph;
pub mod plan;
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
    #[error(transparent)]
    #[diagnostic(transparent)]
    State(#[from] crate::state::StateError),
    #[error("`{address}` is not a resource of this configuration")]
    #[diagnostic(code(pgfleet::target), help("list the resources with `pgfleet graph`"))]
    UnknownTarget { address: String },
    #[error("cannot start the async runtime")]
    #[diagnostic(code(pgfleet::runtime))]
    Runtime {
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    #[diagnostic(code(pgfleet::refused), help("{}", .0.refusals.iter().map(|refusal| refusal.help()).collect::<Vec<_>>().join("; ")))]
    Refused(crate::plan::PlanError),
    #[error("could not observe host(s) {hosts}: {first}")]
    #[diagnostic(code(pgfleet::unreachable), help("{help}"))]
    Unreachable { hosts: String, first: String, help: String },
    #[error("cannot write the plan to {path}")]
    #[diagnostic(code(pgfleet::write_plan))]
    WritePlan {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Result of a command: an exit code, or a diagnostic to show (exit 1).
pub type Outcome = Result<crate::cli::Exit, Error>;

/// Loads and validates a configuration file.
pub fn load_topology(file: &Path) -> Result<Topology, Error> {
    Ok(load::load(file)?.resolve()?)
}
