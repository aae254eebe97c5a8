//! The steps that carry out a plan, as data: plan decides them, a saved plan
//! stores them, apply executes them. Each says in one line what it does and
//! how disruptive it is. Never holds a secret, only references to one.

mod cluster;
pub mod context;
mod helper;
mod odoo;
mod pooler;
mod promotion;
mod replica;
mod role;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use context::{ActionError, Context};

/// How much a change disturbs what runs, least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disruption {
    /// Nothing running is touched.
    None,
    /// A configuration reload; connections stay.
    Reload,
    /// A process restart; connections drop.
    Restart,
    /// A replica is rebuilt from a new base backup.
    Rebuild,
    /// Data is removed.
    Destructive,
}

impl fmt::Display for Disruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Disruption::None => "none",
            Disruption::Reload => "reload",
            Disruption::Restart => "restart",
            Disruption::Rebuild => "rebuild",
            Disruption::Destructive => "destructive",
        })
    }
}

/// How a long step's progress is measured while it runs.
#[derive(Debug, Clone)]
pub struct Probe {
    pub host: String,
    /// Prints the bytes done so far.
    pub command: String,
    pub total: Option<u64>,
}

/// One step of a change, naming what it acts on: a cluster member (by its
/// name in the environment: `primary`, or a replica's), a pooler (by the
/// member it fronts), or an object on the primary (a role, a slot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// `initdb` with data checksums and SCRAM, plus the initial settings.
    InitCluster {
        member: String,
    },
    /// `ALTER SYSTEM SET` for each changed setting, `RESET` for each dropped.
    Configure {
        member: String,
        set: BTreeMap<String, String>,
        reset: Vec<String>,
    },
    /// Rewrites pgfleet's block at the top of the member's pg_hba.conf.
    WriteHba {
        member: String,
    },
    Start {
        member: String,
    },
    Reload {
        member: String,
    },
    Restart {
        member: String,
    },
    Stop {
        member: String,
    },
    CreateRole {
        name: String,
        replication: bool,
    },
    CreateDatabase {
        name: String,
        owner: String,
    },
    SetDatabaseOwner {
        name: String,
        owner: String,
    },
    CreateSlot {
        name: String,
    },
    DropSlot {
        name: String,
    },
    /// `pg_basebackup -Xs -S SLOT` on the replica's host.
    BaseBackup {
        member: String,
        slot: String,
    },
    /// standby.signal, `primary_conninfo` with a passfile, slot name.
    WriteStandbyConfig {
        member: String,
    },
    /// Waits until the primary's `pg_stat_replication` says `streaming`.
    WaitStreaming {
        member: String,
    },
    /// Removes a replica's data directory; with `and_home`, pgfleet's files
    /// beside it too (the replica leaves for good).
    RemoveDataDir {
        member: String,
        #[serde(default)]
        and_home: bool,
    },
    WritePoolerConfig {
        pooler: String,
    },
    StartPooler {
        pooler: String,
    },
    ReloadPooler {
        pooler: String,
    },
    RestartPooler {
        pooler: String,
    },
    /// Stops PgBouncer; with `and_config`, removes its ini (the pooler
    /// leaves for good).
    StopPooler {
        pooler: String,
        #[serde(default)]
        and_config: bool,
    },
    /// The tunnel's key (generated on the replica's host), its pinned host
    /// key, its authorization on the primary's host, and its program.
    WriteTunnel {
        replica: String,
    },
    /// Starts the tunnel's supervisor (restarts it with `restart`) and
    /// waits until its local end answers.
    StartTunnel {
        replica: String,
        #[serde(default)]
        restart: bool,
    },
    /// Stops a tunnel or a mirror's schedule, removes its files on the
    /// replica's host and its key's authorization on the primary's host.
    RemoveHelper {
        replica: String,
    },
    /// The mirror's key, pinned host key, authorization and job script.
    WriteMirror {
        replica: String,
        /// `--rsync-path='sudo -n rsync'`: the source is root's.
        #[serde(default)]
        sudo_rsync: bool,
    },
    /// Runs the mirror job once, under its lock.
    SeedMirror {
        replica: String,
    },
    /// Installs the recurring mirror job.
    ScheduleMirror {
        replica: String,
    },
    /// Sets pgfleet's keys in Odoo's configuration file, in place (its
    /// owner and mode kept).
    WriteOdooConfig,
    /// Runs the `odoo.restart` command on Odoo's host.
    RestartOdoo,
    /// `CHECKPOINT`, so the shutdown that follows is short.
    Checkpoint {
        member: String,
    },
    /// `PAUSE` of the application's database on the pooler (bounded).
    PausePooler {
        pooler: String,
    },
    /// `RESUME`; with `sessions`, the session pool's clients are dropped so
    /// they reconnect where the pooler points now.
    ResumePooler {
        pooler: String,
        #[serde(default)]
        sessions: bool,
        /// The application's pool too is dropped and reset (a failover:
        /// its clients failed already, and PgBouncer would otherwise wait
        /// out `server_login_retry` before trying the new primary).
        #[serde(default)]
        application: bool,
    },
    /// Waits until `member` replayed past the stopped `from`'s shutdown
    /// checkpoint (RPO 0, checked).
    WaitReplayed {
        member: String,
        from: String,
    },
    /// `pg_promote(wait => true)`, then checks it accepts writes.
    Promote {
        member: String,
    },
    /// Restarts the old primary, unless `candidate` accepts writes.
    StartUnlessPromoted {
        member: String,
        candidate: String,
    },
    /// Stops the old primary and leaves a standby.signal behind.
    Fence {
        member: String,
    },
    /// Copies the primary's kept secrets to `member`'s home.
    CopySecrets {
        member: String,
    },
    /// The old primary becomes a standby of the current one.
    Rejoin {
        member: String,
        #[serde(default)]
        rewind: bool,
    },
    /// Records in state that `change.to` holds the primary role (apply
    /// does it; the hosts are not touched).
    RecordPrimary {
        change: crate::state::RoleChange,
    },
}

impl Action {
    /// One line, for the plan and apply's progress.
    pub fn describe(&self) -> String {
        match self {
            Action::InitCluster { .. } => "initialise the data directory (initdb, checksums, scram-sha-256)".into(),
            Action::Configure { set, reset, .. } => {
                let mut names: Vec<&str> = set.keys().map(String::as_str).collect();
                names.extend(reset.iter().map(String::as_str));
                format!("set {}", names.join(", "))
            }
            Action::WriteHba { .. } => "write pgfleet's block of pg_hba.conf".into(),
            Action::Start { .. } => "start PostgreSQL".into(),
            Action::Reload { .. } => "reload PostgreSQL's configuration".into(),
            Action::Restart { .. } => "restart PostgreSQL".into(),
            Action::Stop { .. } => "stop PostgreSQL".into(),
            Action::CreateRole { name, replication: true } => format!("create role {name} (REPLICATION LOGIN)"),
            Action::CreateRole { name, replication: false } => format!("create role {name} (LOGIN)"),
            Action::CreateDatabase { name, owner } => format!("create database {name} owned by {owner}"),
            Action::SetDatabaseOwner { name, owner } => format!("make {owner} the owner of database {name}"),
            Action::CreateSlot { name } => format!("create physical replication slot {name}"),
            Action::DropSlot { name } => format!("drop replication slot {name}"),
            Action::BaseBackup { slot, .. } => format!("base backup from the primary (pg_basebackup -Xs -S {slot})"),
            Action::WriteStandbyConfig { .. } => {
                "write the standby configuration (passfile, slot, standby.signal)".into()
            }
            Action::WaitStreaming { .. } => "wait until the replica is streaming".into(),
            Action::RemoveDataDir { .. } => "remove the data directory".into(),
            Action::WritePoolerConfig { .. } => "write pgbouncer.ini and userlist.txt (0600)".into(),
            Action::StartPooler { .. } => "start PgBouncer".into(),
            Action::ReloadPooler { .. } => "reload PgBouncer (RELOAD)".into(),
            Action::RestartPooler { .. } => "restart PgBouncer".into(),
            Action::StopPooler { .. } => "stop PgBouncer".into(),
            Action::WriteTunnel { .. } => {
                "write the tunnel's key, pinned host key, program and its authorization on the primary's host".into()
            }
            Action::StartTunnel { restart: false, .. } => "start the tunnel and wait for its local end".into(),
            Action::StartTunnel { restart: true, .. } => "restart the tunnel and wait for its local end".into(),
            Action::RemoveHelper { .. } => "stop and remove it, and its key's authorization".into(),
            Action::WriteMirror { sudo_rsync, .. } => format!(
                "write the mirror's key, pinned host key, job (rsync{}) and its authorization",
                if *sudo_rsync { " with sudo on the primary's host" } else { "" }
            ),
            Action::SeedMirror { .. } => "copy the filestore once (the seed, under the job's lock)".into(),
            Action::ScheduleMirror { .. } => "install the recurring mirror job".into(),
            Action::WriteOdooConfig => "set db_host/db_port (and db_replica_*) in Odoo's configuration".into(),
            Action::RestartOdoo => "restart Odoo (odoo.restart)".into(),
            Action::Checkpoint { .. } => "CHECKPOINT".into(),
            Action::PausePooler { .. } => "PAUSE the application's database (in-flight transactions finish)".into(),
            Action::ResumePooler { sessions: false, .. } => "RESUME the application's database".into(),
            Action::ResumePooler { sessions: true, application: false, .. } => {
                "RESUME, and reconnect the session pool's clients (KILL postgres)".into()
            }
            Action::ResumePooler { sessions: true, application: true, .. } => {
                "reset both pools (KILL, RESUME) so every client reconnects to the new primary".into()
            }
            Action::WaitReplayed { member, from } => {
                format!("wait until {member} replayed {from}'s shutdown checkpoint (nothing committed is lost)")
            }
            Action::Promote { member } => format!("promote {member} (pg_promote) and check it accepts writes"),
            Action::StartUnlessPromoted { candidate, .. } => {
                format!("start the old primary again, unless {candidate} accepts writes")
            }
            Action::Fence { .. } => "fence the old primary: stop it, leave standby.signal".into(),
            Action::CopySecrets { member } => format!("copy the kept passwords to {member}'s home"),
            Action::Rejoin { member, rewind: false } => format!("{member} rejoins as a standby (slot, standby.signal)"),
            Action::Rejoin { member, rewind: true } => format!("{member} rejoins as a standby (pg_rewind first)"),
            Action::RecordPrimary { change } => format!("record {} as the primary", change.to),
        }
    }

    /// How much this step disturbs what runs. Exhaustive: a new action
    /// must say.
    pub fn disruption(&self) -> Disruption {
        match self {
            Action::Reload { .. } | Action::ReloadPooler { .. } => Disruption::Reload,
            Action::Restart { .. } | Action::Stop { .. } | Action::RestartPooler { .. } | Action::StopPooler { .. } => {
                Disruption::Restart
            }
            Action::RemoveDataDir { .. } | Action::DropSlot { .. } => Disruption::Destructive,
            // A restarted or removed tunnel cuts its replica's stream.
            Action::StartTunnel { restart: true, .. } | Action::RemoveHelper { .. } => Disruption::Restart,
            Action::RestartOdoo => Disruption::Restart,
            Action::WriteOdooConfig => Disruption::None,
            Action::PausePooler { .. } | Action::Fence { .. } | Action::Promote { .. } => Disruption::Restart,
            Action::ResumePooler { .. }
            | Action::Checkpoint { .. }
            | Action::WaitReplayed { .. }
            | Action::StartUnlessPromoted { .. }
            | Action::CopySecrets { .. }
            | Action::Rejoin { .. }
            | Action::RecordPrimary { .. } => Disruption::None,
            Action::InitCluster { .. }
            | Action::Configure { .. }
            | Action::WriteHba { .. }
            | Action::Start { .. }
            | Action::CreateRole { .. }
            | Action::CreateDatabase { .. }
            | Action::SetDatabaseOwner { .. }
            | Action::CreateSlot { .. }
            | Action::BaseBackup { .. }
            | Action::WriteStandbyConfig { .. }
            | Action::WaitStreaming { .. }
            | Action::WritePoolerConfig { .. }
            | Action::StartPooler { .. }
            | Action::WriteTunnel { .. }
            | Action::StartTunnel { restart: false, .. }
            | Action::WriteMirror { .. }
            | Action::SeedMirror { .. }
            | Action::ScheduleMirror { .. } => Disruption::None,
        }
    }

    /// The name of the step, as the journal records it (`start`,
    /// `base_backup`).
    pub fn kind(&self) -> &'static str {
        match self {
            Action::InitCluster { .. } => "init_cluster",
            Action::Configure { .. } => "configure",
            Action::WriteHba { .. } => "write_hba",
            Action::Start { .. } => "start",
            Action::Reload { .. } => "reload",
            Action::Restart { .. } => "restart",
            Action::Stop { .. } => "stop",
            Action::CreateRole { .. } => "create_role",
            Action::CreateDatabase { .. } => "create_database",
            Action::SetDatabaseOwner { .. } => "set_database_owner",
            Action::CreateSlot { .. } => "create_slot",
            Action::DropSlot { .. } => "drop_slot",
            Action::BaseBackup { .. } => "base_backup",
            Action::WriteStandbyConfig { .. } => "write_standby_config",
            Action::WaitStreaming { .. } => "wait_streaming",
            Action::RemoveDataDir { .. } => "remove_data_dir",
            Action::WritePoolerConfig { .. } => "write_pooler_config",
            Action::StartPooler { .. } => "start_pooler",
            Action::ReloadPooler { .. } => "reload_pooler",
            Action::RestartPooler { .. } => "restart_pooler",
            Action::StopPooler { .. } => "stop_pooler",
            Action::WriteTunnel { .. } => "write_tunnel",
            Action::StartTunnel { .. } => "start_tunnel",
            Action::RemoveHelper { .. } => "remove_helper",
            Action::WriteMirror { .. } => "write_mirror",
            Action::SeedMirror { .. } => "seed_mirror",
            Action::ScheduleMirror { .. } => "schedule_mirror",
            Action::WriteOdooConfig => "write_odoo_config",
            Action::RestartOdoo => "restart_odoo",
            Action::Checkpoint { .. } => "checkpoint",
            Action::PausePooler { .. } => "pause_pooler",
            Action::ResumePooler { .. } => "resume_pooler",
            Action::WaitReplayed { .. } => "wait_replayed",
            Action::Promote { .. } => "promote",
            Action::StartUnlessPromoted { .. } => "start_unless_promoted",
            Action::Fence { .. } => "fence",
            Action::CopySecrets { .. } => "copy_secrets",
            Action::Rejoin { .. } => "rejoin",
            Action::RecordPrimary { .. } => "record_primary",
        }
    }
}

impl Action {
    /// Carries the action out for the change in `context`.
    /// How to measure a long step as it runs, for progress: a command
    /// that prints the bytes done, and the total when it can be known.
    /// `None` for the steps that are short.
    pub async fn progress_probe(&self, context: &Context<'_>) -> Option<Probe> {
        match self {
            Action::BaseBackup { member, .. } => {
                let cluster = context.member(member).ok()?;
                let primary = context.primary();
                let total = match context.superuser(&primary).await {
                    Ok(client) => client
                        .query_one("SELECT sum(pg_database_size(oid))::bigint FROM pg_database", &[])
                        .await
                        .ok()
                        .and_then(|row| row.get::<_, Option<i64>>(0))
                        .and_then(|bytes| u64::try_from(bytes).ok()),
                    Err(_) => None,
                };
                Some(Probe {
                    command: cluster.runtime().base_backup_progress(&cluster.layout),
                    host: cluster.host,
                    total,
                })
            }
            _ => None,
        }
    }

    pub async fn execute(&self, context: &Context<'_>) -> Result<(), ActionError> {
        match self {
            Action::InitCluster { member } => cluster::init(context, member).await,
            Action::Configure { member, set, reset } => cluster::configure(context, member, set, reset).await,
            Action::WriteHba { member } => cluster::write_hba(context, member).await,
            Action::Start { member } => cluster::start(context, member).await,
            Action::Reload { member } => cluster::reload(context, member).await,
            Action::Restart { member } => cluster::restart(context, member).await,
            Action::Stop { member } => cluster::stop(context, member).await,
            Action::CreateRole { name, replication } => role::ensure_role(context, name, *replication).await,
            Action::CreateDatabase { name, owner } | Action::SetDatabaseOwner { name, owner } => {
                role::ensure_database(context, name, owner).await
            }
            Action::CreateSlot { name } => role::create_slot(context, name).await,
            Action::DropSlot { name } => role::drop_slot(context, name).await,
            Action::BaseBackup { member, slot } => replica::base_backup(context, member, slot).await,
            Action::WriteStandbyConfig { member } => replica::write_standby_config(context, member).await,
            Action::WaitStreaming { member } => replica::wait_streaming(context, member).await,
            Action::RemoveDataDir { member, and_home } => cluster::remove_data_dir(context, member, *and_home).await,
            Action::WritePoolerConfig { pooler } => pooler::write_config(context, pooler).await,
            Action::StartPooler { pooler } => pooler::start(context, pooler).await,
            Action::ReloadPooler { pooler } => pooler::reload(context, pooler).await,
            Action::RestartPooler { pooler } => pooler::restart(context, pooler).await,
            Action::StopPooler { pooler, and_config } => pooler::stop(context, pooler, *and_config).await,
            Action::WriteTunnel { replica } => helper::write_tunnel(context, replica).await,
            Action::StartTunnel { replica, restart } => helper::start_tunnel(context, replica, *restart).await,
            Action::RemoveHelper { replica } => helper::remove_helper(context, replica).await,
            Action::WriteMirror { replica, sudo_rsync } => helper::write_mirror(context, replica, *sudo_rsync).await,
            Action::SeedMirror { replica } => helper::seed_mirror(context, replica).await,
            Action::ScheduleMirror { replica } => helper::schedule_mirror(context, replica).await,
            Action::WriteOdooConfig => odoo::write_config(context).await,
            Action::RestartOdoo => odoo::restart(context).await,
            Action::Checkpoint { member } => promotion::checkpoint(context, member).await,
            Action::PausePooler { pooler } => promotion::pause(context, pooler).await,
            Action::ResumePooler { pooler, sessions, application } => {
                promotion::resume(context, pooler, *sessions, *application).await
            }
            Action::WaitReplayed { member, from } => promotion::wait_replayed(context, member, from).await.map(|_| ()),
            Action::Promote { member } => promotion::promote(context, member).await,
            Action::StartUnlessPromoted { member, candidate } => {
                promotion::start_unless_promoted(context, member, candidate).await
            }
            Action::Fence { member } => promotion::fence(context, member).await,
            Action::CopySecrets { member } => promotion::copy_secrets(context, member).await,
            Action::Rejoin { member, rewind } => promotion::rejoin(context, member, *rewind).await,
            // Apply records it in state; there is nothing to do on a host.
            Action::RecordPrimary { .. } => Ok(()),
        }
    }
}
