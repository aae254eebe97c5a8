//! One module per command: each wires load → resolve → (observe → plan →
//! apply) and hands results to the printer. Errors come back as miette
//! diagnostics for the CLI edge to show.

pub mod apply;
pub mod backup;
pub mod drift;
pub mod graph;
pub mod import;
pub mod manual;
pub mod monitor;
pub mod plan;
pub mod schema;
pub mod state;
pub mod status;
pub mod switchover;
pub mod validate;

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::diagnostic::SpecErrors;
use crate::config::load;
use crate::exit::Exit;
use crate::topology::Topology;

/// Adds to the topology the hosts that left `hosts:` but still hold what
/// pgfleet owns, as state recorded them, so that plan and apply can reach
/// them to remove it. Returns their names.
pub fn with_departed_hosts(topology: &mut Topology, state: &crate::state::State) -> Vec<String> {
    let configured: std::collections::BTreeSet<crate::address::Address> =
        crate::inventory::Inventory::of(topology).resources.into_iter().map(|resource| resource.address).collect();
    let mut departed: BTreeMap<String, crate::topology::Host> = BTreeMap::new();
    for (address, owned) in &state.owned {
        let gone = topology.environment(&address.environment).is_some()
            && !configured.contains(address)
            && !topology.hosts.contains_key(&owned.host);
        if let (true, Some(reach)) = (gone, &owned.reach) {
            departed.entry(owned.host.clone()).or_insert_with(|| crate::topology::Host {
                name: owned.host.clone(),
                transport: reach.transport(),
                authorized_keys: None,
            });
        }
    }
    let added: Vec<String> = departed.keys().cloned().collect();
    topology.hosts.extend(departed);
    added
}

/// What pgfleet owns on `host`, for messages.
pub fn owned_on(state: &crate::state::State, host: &str) -> String {
    let addresses: Vec<String> =
        state.owned.iter().filter(|(_, owned)| owned.host == host).map(|(address, _)| address.to_string()).collect();
    addresses.join(", ")
}

/// Opens the hosts that left the configuration, to say up front when one
/// cannot be reached.
pub async fn check_departed_hosts(
    topology: &Topology,
    state: &crate::state::State,
    departed: &[String],
) -> Result<(), Error> {
    for name in departed {
        let Some(host) = topology.hosts.get(name) else { continue };
        if let Err(source) = crate::observe::connect(host).await {
            let source = Box::new(source);
            return Err(Error::DepartedHostUnreachable { host: name.clone(), what: owned_on(state, name), source });
        }
    }
    Ok(())
}

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
    #[error("cannot reach host `{host}`, which left the configuration but still holds {what}")]
    #[diagnostic(
        code(pgfleet::departed_host),
        help(
            "pgfleet reaches it with the record state keeps; if the host is gone for good, remove what it held by \
             hand, then run `pgfleet state forget ADDRESS` for each"
        )
    )]
    DepartedHostUnreachable {
        host: String,
        what: String,
        #[source]
        source: Box<crate::transport::TransportError>,
    },
    #[error("`{address}` is not a resource pgfleet owns in this state")]
    #[diagnostic(code(pgfleet::state::forget), help("list what pgfleet owns with `pgfleet state list`"))]
    NotOwned { address: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Backup(#[from] crate::backup::BackupError),
    #[error("environment `{environment}` has no `backups:`")]
    #[diagnostic(
        code(pgfleet::backup::none),
        help("add a `backups:` block with a `storage:` to the environment in the YAML")
    )]
    NoBackups { environment: String },
    #[error("environment `{environment}` is protected: pgfleet will not restore `{from}`'s backup over it")]
    #[diagnostic(
        code(pgfleet::backup::protected),
        help("restore it elsewhere, or pass --force if you mean to replace its data")
    )]
    Protected { environment: String, from: String },
    #[error("environment `{environment}` has no member `{member}`")]
    #[diagnostic(code(pgfleet::member), help("name `primary` or one of the environment's replicas"))]
    UnknownMember { environment: String, member: String },
    #[error("host `{host}` is not in `hosts:`")]
    #[diagnostic(code(pgfleet::host))]
    UnknownHost { host: String },
    #[error("there is no environment `{id}` in the configuration")]
    #[diagnostic(code(pgfleet::environment), help("name one of: {known}"))]
    UnknownEnvironment { id: String, known: String },
    #[error("cannot start the async runtime")]
    #[diagnostic(code(pgfleet::runtime))]
    Runtime {
        #[source]
        source: std::io::Error,
    },
    /// Each refusal is a diagnostic of its own, with its own help line.
    #[error(
        "pgfleet will not plan this: {} {} it must not try to fix itself",
        refusals.len(),
        if refusals.len() == 1 { "problem" } else { "problems" }
    )]
    #[diagnostic(code(pgfleet::refused), help("fix each problem listed, then run the command again"))]
    Refused {
        #[related]
        refusals: Vec<RefusalReport>,
    },
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
    #[error("a saved plan is applied as it was reviewed: --target, --replace and --force do not apply to {path}")]
    #[diagnostic(
        code(pgfleet::saved_plan_final),
        help(
            "make a new plan with those options (`pgfleet plan --replace ADDRESS --out FILE`), review it, and apply that"
        )
    )]
    SavedPlanIsFinal { path: String },
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
        help(
            "a lock is released when its holder exits (a postgres one when its database session ends); wait for it, or stop that process"
        )
    )]
    LockHeld { holder: String },
    #[error(
        "`state migrate --to postgres` moves the state into the postgres backend {file} configures, but it configures `backend: local`"
    )]
    #[diagnostic(
        code(pgfleet::state::migrate_target),
        help("set `state: {{ backend: postgres, url: {{ env: NAME }} }}` in {file}, then run the move again")
    )]
    MigrateTarget { file: String },
    #[error("unlock removes the lock record only with --force")]
    #[diagnostic(code(pgfleet::state::unlock), help("run `pgfleet state unlock --force` once no pgfleet is running"))]
    UnlockNeedsForce,
    #[error("cannot render the manual page")]
    #[diagnostic(code(pgfleet::manual))]
    Manual {
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the monitor's token file {path}")]
    #[diagnostic(code(pgfleet::token_file), help("--auth-token-file names a file that holds the bearer token"))]
    TokenFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the monitor's token file {path} is empty")]
    #[diagnostic(
        code(pgfleet::token_file),
        help("write a long random token into it, e.g. `openssl rand -hex 32 > {path}`")
    )]
    EmptyToken { path: String },
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
    #[error("{refusal}")]
    #[diagnostic(code(pgfleet::role_change), help("{}", refusal.help()))]
    RoleRefused { refusal: crate::plan::role_change::RoleRefusal },
    #[error("cannot write the plan to {path}")]
    #[diagnostic(code(pgfleet::write_plan))]
    WritePlan {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// One reason `plan` refused, shown with what to do about it.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{refusal}")]
#[diagnostic(code(pgfleet::refused), help("{}", refusal.help()))]
pub struct RefusalReport {
    pub refusal: crate::plan::Refusal,
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

    /// `plan` refused: each of its refusals becomes a diagnostic.
    pub fn refused(error: crate::plan::PlanError) -> Self {
        Error::Refused { refusals: error.refusals.into_iter().map(|refusal| RefusalReport { refusal }).collect() }
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

/// The topology of `environments` only (`--env`), or all of it when none
/// is named.
pub fn only(topology: Topology, environments: &[String]) -> Result<Topology, Error> {
    if environments.is_empty() {
        return Ok(topology);
    }
    topology.only(environments).map_err(|id| Error::UnknownEnvironment {
        known: topology.environments.iter().map(|environment| environment.id.as_str()).collect::<Vec<_>>().join(", "),
        id,
    })
}

/// Loads and validates a configuration file.
pub fn load_topology(file: &Path) -> Result<Topology, Error> {
    Ok(load::load(file)?.resolve()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{PlanError, Refusal};

    #[test]
    fn each_refusal_is_shown_with_its_own_help() {
        let error = Error::refused(PlanError {
            refusals: vec![
                Refusal::MissingPgbouncer { host: "db2".into() },
                Refusal::DataDirNotEmpty { host: "db3".into(), path: "/srv/r2".into() },
            ],
        });
        let rendered = crate::printer::render(&error, false, 100);
        assert!(rendered.contains("pgfleet will not plan this: 2 problems"), "{rendered}");
        for (problem, help) in [
            ("host `db2` has no pgbouncer binary", "help: install PgBouncer on the host"),
            ("data directory /srv/r2 on host `db3` is not empty", "help: move its contents away"),
        ] {
            let at = rendered.find(problem).unwrap_or_else(|| panic!("{problem} missing: {rendered}"));
            assert!(rendered[at..].contains(help), "{help} does not follow {problem}: {rendered}");
        }
        assert_eq!(error.exit(), Exit::Error);
    }
}
