//! One module per command: each wires load → resolve → (observe → plan →
//! apply) and hands results to the printer. Errors come back as miette
//! diagnostics for the CLI edge to show.

pub mod apply;
pub mod drift;
pub mod graph;
pub mod monitor;
pub mod plan;
pub mod schema;
pub mod state;
pub mod status;
pub mod validate;

use std::path::Path;

use crate::exit::Exit;
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
    #[error(transparent)]
    #[diagnostic(transparent)]
    Connect(crate::transport::TransportError),
    #[error("cannot read the saved plan {path}")]
    #[diagnostic(code(pgfleet::read_plan))]
    ReadPlan {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a plan saved by `pgfleet plan --out`")]
    #[diagnostic(code(pgfleet::plan_format))]
    PlanFormat {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the saved plan {path} is stale: the hosts changed since it was made")]
    #[diagnostic(
        code(pgfleet::stale_plan),
        help("run `pgfleet plan --out {path}` again, review it, and apply the new plan")
    )]
    StalePlan { path: String },
    #[error("apply finished, but the hosts still differ from the configuration: {addresses}")]
    #[diagnostic(
        code(pgfleet::not_converged),
        help("the plan above shows what is left; run apply again, and report a bug if it never converges")
    )]
    NotConverged { addresses: String },
    #[error("the state lock is held by {holder}")]
    #[diagnostic(
        code(pgfleet::state::held),
        help("a local lock is released when its holder exits; wait for it, or stop that process")
    )]
    LockHeld { holder: String },
    #[error("unlock removes the lock record only with --force")]
    #[diagnostic(code(pgfleet::state::unlock), help("run `pgfleet state unlock --force` once no pgfleet is running"))]
    UnlockNeedsForce,
    #[error("cannot listen on {address}")]
    #[diagnostic(code(pgfleet::listen), help("choose a free address and port with --listen ADDR:PORT"))]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the output to stdout")]
    #[diagnostic(
        code(pgfleet::stdout),
        help("the output above is incomplete; check where stdout goes (a full disk, a closed file)")
    )]
    Stdout {
        #[source]
        source: std::io::Error,
    },
    #[error("internal error: cannot serialise {what} as JSON")]
    #[diagnostic(code(pgfleet::internal), help("{}", crate::exit::REPORT))]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write the plan to {path}")]
    #[diagnostic(code(pgfleet::write_plan))]
    WritePlan {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The exit code this error ends the command with.
    pub fn exit(&self) -> Exit {
        match self {
            Error::NotConverged { .. } => Exit::Partial,
            Error::Serialize { .. } => Exit::Internal,
            _ => Exit::Error,
        }
    }

    /// JSON of pgfleet's own types cannot fail unless pgfleet is wrong (a
    /// map with non-string keys, a failing `Serialize`): an internal error,
    /// never an empty file or empty output.
    pub fn serialize(what: &'static str) -> impl FnOnce(serde_json::Error) -> Self {
        move |source| Error::Serialize { what, source }
    }
}

/// Result of a command: an exit code, or a diagnostic to show (exit 1).
pub type Outcome = Result<Exit, Error>;

/// Loads and validates a configuration file.
pub fn load_topology(file: &Path) -> Result<Topology, Error> {
    Ok(load::load(file)?.resolve()?)
}
