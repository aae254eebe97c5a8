//! plan: `plan(&Topology, &Observed, &State) -> Result<Plan, PlanError>`.
//! Pure and synchronous: never performs I/O. The plan is data — resource
//! changes in dependency order, each with its reason, diff, disruption and
//! actions — plus the quota table, warnings, what could not be observed,
//! and a fingerprint of the observations it was made from.

mod cluster;
mod database;
mod existing;
mod hba;
mod odoo;
mod pooler;
pub mod render;
pub use existing::existing;
mod replica;
mod role;
pub mod role_change;
pub mod settings;
mod slot;
mod tunnel;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::action::{Action, Disruption};
use crate::address::{Address, Kind};
use crate::graph::ResourceGraph;
use crate::observe::cluster::ClusterProbe;
use crate::observe::{ClusterObservation, Observed};
use crate::runtime::Need;
use crate::state::State;
use crate::topology::{Environment, QuotaTable, Topology};

/// Version of the JSON plan format; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub resource_changes: Vec<ResourceChange>,
    pub quota: Option<QuotaTable>,
    pub warnings: Vec<Warning>,
    pub unreachable: Vec<Unreachable>,
    /// sha256 of the observations; `apply FILE` refuses a plan whose hosts
    /// have changed since.
    pub fingerprint: String,
    /// What the planner decided about what it was asked (`--replace` of a
    /// healthy replica it kept), for the operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Ordered steps across several resources, run after the changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<crate::operation::Operation>,
    /// The environments it covers, when it was made for some only
    /// (`plan --env`); empty: every environment of the configuration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
}

/// What the operator asked of this plan besides the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Keep only the changes to these resources and what they depend on.
    pub targets: Vec<Address>,
    /// Rebuild these replicas, unless they stream within their
    /// `rebuild_skip_if_healthy` thresholds.
    pub replace: Vec<Address>,
    /// Rebuild the `replace` replicas even when healthy.
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceChange {
    pub address: Address,
    pub action: ChangeKind,
    pub reason: String,
    pub disruption: Disruption,
    /// Unified diff of the managed configuration, when there is one.
    pub diff: Option<String>,
    /// What data can be lost, where a change can lose any.
    pub rpo: Option<String>,
    /// How `drift` reports this change.
    #[serde(default)]
    pub drift: DriftClass,
    pub actions: Vec<Action>,
}

/// What kind of drift a change repairs, decided where its reason is
/// written; `drift` reports plan changes by this class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftClass {
    /// A managed setting, hba line, pooler ini or role changed by hand.
    #[default]
    Config,
    /// A replica missing, extra or following another primary; a primary in
    /// recovery or stopped.
    Topology,
    /// Orphaned slots, inactive slots retaining WAL, lost slots.
    Slots,
    /// Replicas not online, poolers not running.
    Health,
    /// Settings changed but waiting for a restart.
    PendingRestart,
    /// No verified backup younger than `backups.max_age`.
    Backups,
}

impl DriftClass {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftClass::Config => "config",
            DriftClass::Topology => "topology",
            DriftClass::Slots => "slots",
            DriftClass::Health => "health",
            DriftClass::PendingRestart => "pending_restart",
            DriftClass::Backups => "backups",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    Create,
    Update,
    Replace,
    Delete,
    NoOp,
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeKind::Create => "create",
            ChangeKind::Update => "update",
            ChangeKind::Replace => "replace",
            ChangeKind::Delete => "delete",
            ChangeKind::NoOp => "no-op",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub address: Option<Address>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreachable {
    pub host: String,
    pub reason: String,
    pub help: Option<String>,
}

/// Why pgfleet refuses to plan: something it must not try to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("host `{host}` has no PostgreSQL {wanted} binaries (looked in {looked_in})")]
    MissingBinaries { host: String, wanted: u32, looked_in: String },
    #[error("{path}: {reason}")]
    Runtime { path: String, reason: String },
    #[error(
        "replica `{replica}` on host `{replica_host}` cannot connect directly to the primary: it listens on {address} (loopback) on host `{primary_host}`, another machine"
    )]
    LoopbackPrimary { replica: String, replica_host: String, primary_host: String, address: String },
    #[error(
        "{replica} on host `{host}` was promoted outside pgfleet ({seen}){}",
        if *primary_writable { "; the primary is writable too: two writable primaries" } else { "; the declared primary is not running as one" }
    )]
    PromotedOutsidePgfleet { replica: String, host: String, seen: String, primary_writable: bool },
    #[error("{address} goes through the sshd of host `{host}`, which pgfleet does not reach over SSH")]
    NeedsSsh { address: String, host: String },
    #[error("{address} runs rsync on host `{host}`, which has none")]
    MissingRsync { address: String, host: String },
    #[error("`--replace {address}`: only a replica of the configuration can be rebuilt")]
    NotReplaceable { address: String },
    #[error(
        "replica `{replica}` on host `{host}` has PostgreSQL {found}, the primary runs {wanted}: physical replication needs the same major version"
    )]
    MajorMismatch { replica: String, host: String, found: u32, wanted: u32 },
    #[error("host `{host}` lacks the locale {locale} that the primary's databases use (replica `{replica}`)")]
    MissingLocale { replica: String, host: String, locale: String },
    #[error("data directory {path} on host `{host}` is not empty and holds no PostgreSQL cluster")]
    DataDirNotEmpty { host: String, path: String },
    #[error("data directory {path} on host `{host}` holds PostgreSQL {found}, the configuration says {wanted}")]
    DataDirMajor { host: String, path: String, found: u32, wanted: u32 },
    #[error("replica `{replica}`: {path} on host `{host}` holds another cluster ({why}) that pgfleet did not create")]
    ForeignDataDir { replica: String, host: String, path: String, why: String },
    #[error("host `{host}` has no pgbouncer binary")]
    MissingPgbouncer { host: String },
    #[error("`{name}` is not a setting of PostgreSQL on {address}")]
    UnknownSetting { address: String, name: String },
    #[error(
        "{address} left the configuration with host `{host}`, and state does not record how pgfleet reached that host"
    )]
    DepartedHostUnknown { address: String, host: String },
    #[error(
        "{address}: pgfleet does not edit the pg_hba.conf of a server it does not run, and it lacks:\n{}",
        lines.iter().map(|line| format!("    {line}")).collect::<Vec<_>>().join("\n")
    )]
    HbaByHand { address: String, lines: Vec<String> },
    #[error("Odoo's configuration {path} does not exist on host `{host}`")]
    OdooConfigMissing { host: String, path: String },
    #[error("state records `{member}` as the primary of environment `{environment}`, and it is no longer a member")]
    RoleHolderMissing { environment: String, member: String },
}

impl Refusal {
    pub fn help(&self) -> &'static str {
        match self {
            Refusal::MissingBinaries { .. } | Refusal::MajorMismatch { .. } => {
                "install the primary's PostgreSQL major on the host (e.g. apt-get install postgresql-15)"
            }
            Refusal::MissingLocale { .. } => "generate the locale on the host (locale-gen), then plan again",
            Refusal::DataDirNotEmpty { .. } => "move its contents away or choose another data_dir",
            Refusal::DataDirMajor { .. } => "set the primary's `version` to match, or choose another data_dir",
            Refusal::ForeignDataDir { .. } => {
                "move the directory away yourself (pgfleet removes only what it created), or choose another data_dir"
            }
            Refusal::MissingPgbouncer { .. } => "install PgBouncer on the host (apt-get install pgbouncer)",
            Refusal::UnknownSetting { .. } => "check the setting's name under primary.settings",
            Refusal::Runtime { .. } => "change `runtime:` to one pgfleet can run, or remove what it cannot serve",
            Refusal::MissingRsync { .. } => "install rsync on the host (apt-get install rsync)",
            Refusal::NeedsSsh { .. } => {
                "give the primary's host an `address` and `ssh:` settings, or use `connect: direct` (and no filestore mirror)"
            }
            Refusal::NotReplaceable { .. } => "name a replica: ENV.replica.NAME (see `pgfleet graph`)",
            Refusal::PromotedOutsidePgfleet { .. } => {
                "pgfleet changes nothing until one primary is left: decide which server's writes to keep and stop \
                 the other by hand; to keep the promoted one, record it as the primary with `pgfleet failover \
                 --env ENV --to NAME --record-only` (the old primary then rejoins as its standby); to keep the old \
                 one, rebuild the other with `pgfleet apply --replace ENV.replica.NAME`"
            }
            Refusal::RoleHolderMissing { .. } => {
                "put the member back in the configuration, or move the role first: `pgfleet switchover --env ENV --to MEMBER`"
            }
            Refusal::LoopbackPrimary { .. } => {
                "set `connect: ssh_tunnel` on the replica, or give the primary an `address` the replica's host can reach"
            }
            Refusal::DepartedHostUnknown { .. } => {
                "put the host back under `hosts:` for one apply, or remove the resource by hand and run `pgfleet state forget ADDRESS`"
            }
            Refusal::OdooConfigMissing { .. } => {
                "point `odoo.config` at the odoo.conf Odoo reads: pgfleet sets keys in it, it does not write one from nothing"
            }
            Refusal::HbaByHand { .. } => {
                "add these lines to the server's pg_hba.conf where it is run, reload it, then plan again"
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pgfleet will not plan this: {}", refusals.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct PlanError {
    pub refusals: Vec<Refusal>,
}

impl Plan {
    /// Changes other than no-ops.
    pub fn changes(&self) -> impl Iterator<Item = &ResourceChange> {
        self.resource_changes.iter().filter(|change| change.action != ChangeKind::NoOp)
    }

    pub fn is_empty(&self) -> bool {
        self.changes().next().is_none() && self.operations.is_empty()
    }

    /// Count per kind of change: (create, update, replace, delete).
    pub fn summary(&self) -> (usize, usize, usize, usize) {
        let count = |kind| self.resource_changes.iter().filter(|change| change.action == kind).count();
        (count(ChangeKind::Create), count(ChangeKind::Update), count(ChangeKind::Replace), count(ChangeKind::Delete))
    }

    /// Keeps only the changes to `targets` and what they depend on.
    fn restrict_to(&mut self, topology: &Topology, targets: &[Address]) {
        let graph = ResourceGraph::build(topology);
        let mut keep: Vec<Address> = Vec::new();
        for target in targets {
            keep.extend(graph.dependencies(target).into_iter().cloned());
            keep.push(target.clone());
        }
        self.resource_changes.retain(|change| keep.contains(&change.address));
    }
}

/// sha256 of the observations that decide the plan, hex. What moves on its
/// own on a live system (LSNs, lag, WAL retained, free disk) is left out,
/// so a saved plan goes stale only when the hosts really changed.
pub fn fingerprint(observed: &Observed) -> String {
    let bytes = serde_json::to_vec(&observed.stable_view()).unwrap_or_default();
    Sha256::digest(&bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// How a cluster was found.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Presence<'a> {
    /// No initialised data directory.
    Absent,
    Stopped,
    Running(&'a ClusterProbe),
    /// Running, but SQL failed: its SQL-level resources cannot be planned.
    Unknown,
}

/// Whether the primary holds a verifier for `role` that is not the
/// configured password: the password is about to change.
pub(crate) fn password_rotates(observed: &Observed, environment: &Environment, role: &str) -> bool {
    match observed.cluster(&format!("{}.cluster.primary", environment.id)) {
        Some(ClusterObservation::Running { probe }) => {
            probe.roles.iter().any(|row| row.name == role && row.password_current == Some(false))
        }
        _ => false,
    }
}

pub(crate) fn presence<'a>(
    observed: &'a Observed,
    host: &str,
    data_dir: &std::path::Path,
    address: &str,
) -> Presence<'a> {
    // A server that answers SQL is there, whether or not its data
    // directory is on the host pgfleet looks at (`runtime: external`).
    let initialised = observed.data_dir(host, data_dir).is_some_and(|directory| directory.initialised_major.is_some());
    match observed.cluster(address) {
        Some(ClusterObservation::Running { probe }) => Presence::Running(probe),
        Some(ClusterObservation::Unreachable { .. }) => Presence::Unknown,
        _ if !initialised => Presence::Absent,
        Some(ClusterObservation::Stopped) | None => Presence::Stopped,
    }
}

/// Collects changes, warnings and refusals while walking the topology.
pub(crate) struct Planner<'a> {
    pub topology: &'a Topology,
    pub observed: &'a Observed,
    pub state: &'a State,
    pub changes: Vec<ResourceChange>,
    pub warnings: Vec<Warning>,
    pub refusals: Vec<Refusal>,
    /// Environments whose primary raises a setting standbys must match.
    pub raises_standby_floor: Vec<String>,
}

impl Planner<'_> {
    pub fn change(
        &mut self,
        drift: DriftClass,
        address: Address,
        action: ChangeKind,
        reason: impl Into<String>,
        diff: Option<String>,
        actions: Vec<Action>,
    ) {
        let disruption = actions.iter().map(Action::disruption).max().unwrap_or(Disruption::None);
        self.changes.push(ResourceChange {
            address,
            action,
            reason: reason.into(),
            disruption,
            diff,
            rpo: None,
            drift,
            actions,
        });
    }

    pub fn no_op(&mut self, address: Address) {
        self.change(DriftClass::Config, address, ChangeKind::NoOp, "up to date", None, Vec::new());
    }

    pub fn warn(&mut self, address: Option<Address>, message: impl Into<String>) {
        self.warnings.push(Warning { address, message: message.into() });
    }

    /// Resources of `kind` pgfleet created in `environment` (recorded in
    /// state) that the configuration no longer `wanted`, by name.
    pub fn departed(&self, environment: &Environment, kind: Kind, wanted: impl Fn(&str) -> bool) -> Vec<Address> {
        self.state
            .owned
            .keys()
            .filter(|address| address.environment == environment.id && address.kind == kind && !wanted(&address.name))
            .cloned()
            .collect()
    }

    pub fn refuse(&mut self, refusal: Refusal) {
        if !self.refusals.contains(&refusal) {
            self.refusals.push(refusal);
        }
    }

    /// Whether the environment asks only for what pgfleet can build.
    fn runtime_serves(&mut self, environment: &Environment) -> bool {
        let refusals = static_refusals(self.topology, environment);
        let serves = refusals.is_empty();
        for refusal in refusals {
            self.refuse(refusal);
        }
        serves
    }

    fn environment(&mut self, environment: &Environment) {
        // Without the primary's host nothing of the environment can be
        // planned; the host is listed as unreachable.
        if !self.runtime_serves(environment) {
            return;
        }
        let Some(facts) = self.observed.host_facts(&environment.primary.host) else { return };
        let runs_primary = crate::runtime::of(environment.primary.runtime).capabilities().manage_process;
        if runs_primary && facts.pg_major != Some(environment.primary.version) {
            self.refuse(Refusal::MissingBinaries {
                host: environment.primary.host.clone(),
                wanted: environment.primary.version,
                looked_in: crate::placement::primary(environment).layout.bin_dir.display().to_string(),
            });
            return;
        }
        let primary = presence(
            self.observed,
            &environment.primary.host,
            &environment.primary.data_dir,
            &format!("{}.cluster.primary", environment.id),
        );
        // One planner per kind, in the inventory's kinds: a new kind does
        // not compile until it is planned here (or says why not).
        for kind in Kind::ALL {
            match kind {
                Kind::Cluster => cluster::plan_primary(self, environment, primary),
                Kind::Hba => hba::plan(self, environment, primary),
                Kind::Role => role::plan(self, environment, primary),
                Kind::Database => database::plan(self, environment, primary),
                Kind::Slot => slot::plan(self, environment, primary),
                Kind::Replica => replica::plan(self, environment, primary),
                Kind::Pooler => pooler::plan(self, environment),
                Kind::Tunnel => tunnel::plan(self, environment),
                Kind::Filestore => tunnel::plan_filestore(self, environment),
                Kind::Odoo => odoo::plan(self, environment),
                // Backups are in the inventory and the graph; nothing plans
                // them until they can be built.
                Kind::Backup => {}
            }
        }
        if environment.odoo_version.is_some()
            && environment.pooler.as_ref().is_some_and(|pooler| pooler.pool_mode == crate::spec::PoolMode::Transaction)
        {
            self.warn(
                Some(Address::new(&environment.id, Kind::Pooler, "primary")),
                "Odoo's bus uses LISTEN/NOTIFY, which transaction pooling breaks: point the bus at the session-mode \
                 `postgres` pool, or connect it to PostgreSQL directly",
            );
        }
    }
}

/// What plan refuses about an environment from the configuration alone:
/// what its runtime cannot do, and keys nothing builds yet, each naming
/// the YAML key.
fn static_refusals(topology: &Topology, environment: &Environment) -> Vec<Refusal> {
    let index = topology.environment_index(&environment.id);
    let mut refusals = Vec::new();
    // Creating, starting and restarting the primary are asked for only
    // when the hosts say so (plan_primary); these are needed whatever
    // the hosts hold.
    let primary = crate::runtime::of(environment.primary.runtime);
    let pooled = environment.pooler.is_some().then_some(Need::Poolers);
    if let Some(need) = [Need::Observe].into_iter().chain(pooled).find(|need| !primary.capabilities().allows(*need)) {
        refusals.push(Refusal::Runtime {
            path: format!("environments[{index}].primary.runtime"),
            reason: primary.refusal(need),
        });
    }
    for (position, replica) in environment.replicas.iter().enumerate() {
        let runtime = crate::runtime::of(replica.runtime);
        let needs = [Need::Observe, Need::Replicas, Need::ManageProcess, Need::Initialise];
        let pooled = environment.pooler.is_some().then_some(Need::Poolers);
        if let Some(need) = needs.into_iter().chain(pooled).find(|need| !runtime.capabilities().allows(*need)) {
            refusals.push(Refusal::Runtime {
                path: format!("environments[{index}].replicas[{position}].runtime"),
                reason: runtime.refusal(need),
            });
        }
    }
    refusals
}

/// What plan would refuse whatever the hosts hold: checked before any host
/// is contacted or any lock taken.
pub fn check_static(topology: &Topology) -> Result<(), PlanError> {
    let refusals: Vec<Refusal> =
        topology.environments.iter().flat_map(|environment| static_refusals(topology, environment)).collect();
    if refusals.is_empty() { Ok(()) } else { Err(PlanError { refusals }) }
}

/// The plan for `topology` given what was observed and pgfleet's state.
pub fn plan(topology: &Topology, observed: &Observed, state: &State) -> Result<Plan, PlanError> {
    plan_with(topology, observed, state, &Request::default())
}

/// As `plan`, with the operator's `request` (targets, replacements).
pub fn plan_with(
    topology: &Topology,
    observed: &Observed,
    state: &State,
    request: &Request,
) -> Result<Plan, PlanError> {
    let mut planner = Planner {
        topology,
        observed,
        state,
        changes: Vec::new(),
        warnings: Vec::new(),
        refusals: Vec::new(),
        raises_standby_floor: Vec::new(),
    };
    // An operation that stopped part-way (a killed switchover) is finished
    // before anything else is planned in its environment: until then its
    // hosts are between two arrangements of roles.
    let mut operations = Vec::new();
    let mut pending_notes = Vec::new();
    for environment in &topology.environments {
        if let Some(pending) = state.pending.get(&environment.id) {
            let done = state.finished_steps(&pending.id).len();
            pending_notes.push(format!(
                "{}: `{}` stopped part-way ({done} of {} steps done); `pgfleet apply` (or the same command again) \
                 finishes it before anything else is planned here",
                environment.id,
                pending.description,
                pending.steps.len()
            ));
            operations.push(pending.clone());
            continue;
        }
        planner.environment(environment);
    }
    for (environment, member) in crate::roles::holder_missing(topology, state) {
        planner.refuse(Refusal::RoleHolderMissing { environment: environment.into(), member: member.into() });
    }
    // What pgfleet owns on a host no longer configured is removed through
    // the record of how it reached that host (ops adds recorded hosts to
    // the topology); without one, pgfleet cannot reach it at all.
    let configured: std::collections::BTreeSet<Address> =
        crate::inventory::Inventory::of(topology).resources.into_iter().map(|resource| resource.address).collect();
    for (address, owned) in &state.owned {
        if topology.environment(&address.environment).is_some()
            && !configured.contains(address)
            && !topology.hosts.contains_key(&owned.host)
        {
            planner.refuse(Refusal::DepartedHostUnknown { address: address.to_string(), host: owned.host.clone() });
        }
    }
    let mut notes = replica::replace_requested(&mut planner, &request.replace, request.force);
    notes.extend(pending_notes);
    if !planner.refusals.is_empty() {
        return Err(PlanError { refusals: planner.refusals });
    }

    // Dependency order; deletions last, dependents before what they need.
    let graph = ResourceGraph::build(topology);
    let position: BTreeMap<&Address, usize> =
        graph.order().into_iter().enumerate().map(|(at, address)| (address, at)).collect();
    let mut changes = planner.changes;
    let deletions = deletion_order(&changes, state);
    changes.sort_by_key(|change| match position.get(&change.address) {
        Some(&at) if change.action != ChangeKind::Delete => (0, at, change.address.clone()),
        _ => (1, deletions.get(&change.address).copied().unwrap_or(0), change.address.clone()),
    });

    // A standby refuses to run with max_connections (and the like) below
    // its primary's: when the primary raises one, its replicas' updates go
    // first. Lowering keeps the primary first, which dependency order gives.
    for environment in &planner.raises_standby_floor {
        let is_replica_update = |change: &ResourceChange| {
            &change.address.environment == environment
                && change.address.kind == Kind::Replica
                && change.action == ChangeKind::Update
        };
        let replicas: Vec<ResourceChange> =
            changes.iter().filter(|change| is_replica_update(change)).cloned().collect();
        changes.retain(|change| !is_replica_update(change));
        let primary = changes
            .iter()
            .position(|change| &change.address.environment == environment && change.address.kind == Kind::Cluster)
            .unwrap_or(0);
        changes.splice(primary..primary, replicas);
    }

    let mut plan = Plan {
        format_version: FORMAT_VERSION,
        resource_changes: changes,
        quota: topology.quota,
        warnings: planner.warnings,
        unreachable: observed
            .unreachable()
            .into_iter()
            .map(|(host, reason, help)| Unreachable {
                host: host.to_owned(),
                reason: reason.to_owned(),
                help: help.map(str::to_owned),
            })
            .collect(),
        fingerprint: fingerprint(observed),
        notes,
        operations,
        environments: Vec::new(),
    };
    if !request.targets.is_empty() {
        plan.restrict_to(topology, &request.targets);
    }
    Ok(plan)
}

/// Where each deletion goes among the deletions: a resource before what it
/// depended on when pgfleet created it (recorded in state), so a replica's
/// pooler goes before the replica, and the replica before its slot. State
/// written before dependencies were recorded falls back to the order of
/// the inventory's kinds, dependents first.
fn deletion_order(changes: &[ResourceChange], state: &State) -> BTreeMap<Address, usize> {
    let deleted: Vec<&Address> =
        changes.iter().filter(|change| change.action == ChangeKind::Delete).map(|change| &change.address).collect();
    // needs[at]: the deletions that must wait for `at` (what it depended on).
    let mut needs: Vec<Vec<usize>> = vec![Vec::new(); deleted.len()];
    let mut waiting = vec![0usize; deleted.len()];
    for (at, address) in deleted.iter().enumerate() {
        let recorded = state.owned.get(*address).map(|owned| owned.depends_on.as_slice()).unwrap_or_default();
        for dependency in recorded {
            if let Some(before) = deleted.iter().position(|candidate| *candidate == dependency) {
                needs[at].push(before);
                waiting[before] += 1;
            }
        }
    }
    // Kahn's order; ties broken by kind (dependents' kinds first), then address.
    let key = |at: usize| (std::cmp::Reverse(deleted[at].kind), deleted[at].clone());
    let mut done = vec![false; deleted.len()];
    let mut order = BTreeMap::new();
    while let Some(next) = (0..deleted.len()).filter(|at| !done[*at] && waiting[*at] == 0).min_by_key(|at| key(*at)) {
        done[next] = true;
        order.insert(deleted[next].clone(), order.len());
        for &before in &needs[next] {
            waiting[before] -= 1;
        }
    }
    order
}

/// Unified diff of two texts, `None` when equal.
pub fn unified_diff(old: &str, new: &str, old_name: &str, new_name: &str) -> Option<String> {
    if old == new {
        return None;
    }
    Some(
        similar::TextDiff::from_lines(old, new).unified_diff().context_radius(2).header(old_name, new_name).to_string(),
    )
}

/// `name = value` lines, sorted, for settings diffs.
pub fn settings_text<'a>(settings: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    settings.into_iter().map(|(name, value)| format!("{name} = '{value}'\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Owned;

    fn deletion(address: &str) -> ResourceChange {
        ResourceChange {
            address: address.parse().unwrap(),
            action: ChangeKind::Delete,
            reason: "removed".into(),
            disruption: Disruption::None,
            diff: None,
            rpo: None,
            drift: DriftClass::Topology,
            actions: Vec::new(),
        }
    }

    /// Recorded dependencies decide; kinds only break ties. Here a
    /// recorded edge runs against the kinds' order (a replica that needed
    /// a pooler), and the replica still goes first.
    #[test]
    fn deletions_follow_recorded_dependencies_before_kinds() {
        let changes = vec![deletion("a.slot.r"), deletion("a.pooler.r"), deletion("a.replica.r")];
        let mut state = State::default();
        let mut replica = Owned::at("h", "/r".into());
        replica.depends_on = vec!["a.slot.r".parse().unwrap(), "a.pooler.r".parse().unwrap()];
        state.owned.insert("a.replica.r".parse().unwrap(), replica);
        let order = deletion_order(&changes, &state);
        let mut names: Vec<(&Address, &usize)> = order.iter().collect();
        names.sort_by_key(|(_, at)| **at);
        let names: Vec<String> = names.into_iter().map(|(address, _)| address.to_string()).collect();
        assert_eq!(names, ["a.replica.r", "a.pooler.r", "a.slot.r"]);

        // Without recorded dependencies: dependents' kinds first.
        let order = deletion_order(&changes, &State::default());
        assert!(order["a.pooler.r".parse::<Address>().as_ref().unwrap()] < order[&"a.replica.r".parse().unwrap()]);
        assert!(order[&"a.replica.r".parse().unwrap()] < order[&"a.slot.r".parse().unwrap()]);
    }

    fn topology(extra: &str, connect: &str) -> Topology {
        let yaml = format!(
            "version: 1\nhosts:\n  a: {{ address: 10.0.0.1 }}\n  b: {{ address: 10.0.0.2 }}\nenvironments:\n  - id: e\n    primary: {{ host: a, address: 127.0.0.1, data_dir: /p, tuning: none }}\n    replicas:\n      - {{ name: r1, host: b, address: 127.0.0.1, data_dir: /r1, connect: {connect} }}\n{extra}"
        );
        crate::config::load::parse("t.yaml", yaml).unwrap().resolve_in(std::path::Path::new("/")).unwrap()
    }

    fn observed(machine_a: &str, machine_b: &str) -> Observed {
        let facts = |machine: &str| crate::observe::HostObservation::Reachable {
            facts: crate::observe::host::HostFacts {
                pg_major: Some(15),
                machine_id: Some(machine.into()),
                ..Default::default()
            },
        };
        let mut observed = Observed::default();
        observed.hosts.insert("a".into(), facts(machine_a));
        observed.hosts.insert("b".into(), facts(machine_b));
        observed
    }

    /// A tunnel goes through the primary host's sshd: between machines or
    /// on one, it is planned as a resource of its own, before its replica.
    #[test]
    fn an_ssh_tunnel_is_planned_before_its_replica_on_any_machines() {
        let topology = topology("", "ssh_tunnel");
        for (first, second) in [("m1", "m2"), ("m1", "m1")] {
            let mut observed = observed(first, second);
            observed.tunnels.insert("e.tunnel.r1".into(), Default::default());
            let plan = plan(&topology, &observed, &State::default()).unwrap();
            let addresses: Vec<String> =
                plan.resource_changes.iter().map(|change| change.address.to_string()).collect();
            let tunnel = addresses.iter().position(|address| address == "e.tunnel.r1").unwrap();
            let replica = addresses.iter().position(|address| address == "e.replica.r1").unwrap();
            assert!(tunnel < replica, "{addresses:?}");
        }
    }

    /// A primary on loopback is reachable directly only from its own
    /// machine: decided from the machine ids the hosts report, not from
    /// their addresses (10.0.0.1 and 10.0.0.2 here may be one machine).
    #[test]
    fn a_direct_replica_of_a_loopback_primary_is_refused_only_across_machines() {
        let topology = topology("", "direct");
        let refused = plan(&topology, &observed("m1", "m2"), &State::default()).unwrap_err();
        assert!(
            refused
                .refusals
                .iter()
                .any(|refusal| matches!(refusal, Refusal::LoopbackPrimary { replica, .. } if replica == "r1")),
            "{refused:?}"
        );
        let same = plan(&topology, &observed("m1", "m1"), &State::default());
        assert!(
            !same.as_ref().is_err_and(|error| error
                .refusals
                .iter()
                .any(|refusal| matches!(refusal, Refusal::LoopbackPrimary { .. }))),
            "{same:?}"
        );
    }
}
