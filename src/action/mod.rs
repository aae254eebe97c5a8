//! The steps that carry out a plan, as data: plan decides them, a saved plan
//! stores them, apply executes them. Each says in one line what it does and
//! how disruptive it is. Never holds a secret, only references to one.

mod cluster;
pub mod context;
mod pooler;
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// `initdb` with data checksums and SCRAM, plus the initial settings.
    InitCluster,
    /// `ALTER SYSTEM SET` for each changed setting, `RESET` for each dropped.
    Configure {
        set: BTreeMap<String, String>,
        reset: Vec<String>,
    },
    /// Rewrites pgfleet's block at the top of pg_hba.conf.
    WriteHba,
    Start,
    Reload,
    Restart,
    Stop,
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
        slot: String,
    },
    /// standby.signal, `primary_conninfo` with a passfile, slot name.
    WriteStandbyConfig,
    /// Waits until the primary's `pg_stat_replication` says `streaming`.
    WaitStreaming,
    RemoveDataDir,
    WritePoolerConfig,
    StartPooler,
    ReloadPooler,
    RestartPooler,
    StopPooler,
}

impl Action {
    /// One line, for the plan and apply's progress.
    pub fn describe(&self) -> String {
        match self {
            Action::InitCluster => "initialise the data directory (initdb, checksums, scram-sha-256)".into(),
            Action::Configure { set, reset } => {
                let mut names: Vec<&str> = set.keys().map(String::as_str).collect();
                names.extend(reset.iter().map(String::as_str));
                format!("set {}", names.join(", "))
            }
            Action::WriteHba => "write pgfleet's block of pg_hba.conf".into(),
            Action::Start => "start PostgreSQL".into(),
            Action::Reload => "reload PostgreSQL's configuration".into(),
            Action::Restart => "restart PostgreSQL".into(),
            Action::Stop => "stop PostgreSQL".into(),
            Action::CreateRole { name, replication: true } => format!("create role {name} (REPLICATION LOGIN)"),
            Action::CreateRole { name, replication: false } => format!("create role {name} (LOGIN)"),
            Action::CreateDatabase { name, owner } => format!("create database {name} owned by {owner}"),
            Action::SetDatabaseOwner { name, owner } => format!("make {owner} the owner of database {name}"),
            Action::CreateSlot { name } => format!("create physical replication slot {name}"),
            Action::DropSlot { name } => format!("drop replication slot {name}"),
            Action::BaseBackup { slot } => format!("base backup from the primary (pg_basebackup -Xs -S {slot})"),
            Action::WriteStandbyConfig => "write the standby configuration (passfile, slot, standby.signal)".into(),
            Action::WaitStreaming => "wait until the replica is streaming".into(),
            Action::RemoveDataDir => "remove the data directory".into(),
            Action::WritePoolerConfig => "write pgbouncer.ini and userlist.txt (0600)".into(),
            Action::StartPooler => "start PgBouncer".into(),
            Action::ReloadPooler => "reload PgBouncer (RELOAD)".into(),
            Action::RestartPooler => "restart PgBouncer".into(),
            Action::StopPooler => "stop PgBouncer".into(),
        }
    }

    pub fn disruption(&self) -> Disruption {
        match self {
            Action::Reload | Action::ReloadPooler => Disruption::Reload,
            Action::Restart | Action::Stop | Action::RestartPooler | Action::StopPooler => Disruption::Restart,
            Action::RemoveDataDir | Action::DropSlot { .. } => Disruption::Destructive,
            _ => Disruption::None,
        }
    }
}

impl Action {
    /// Carries the action out for the change in `context`.
    pub async fn execute(&self, context: &Context<'_>) -> Result<(), ActionError> {
        match self {
            Action::InitCluster => cluster::init(context).await,
            Action::Configure { set, reset } => cluster::configure(context, set, reset).await,
            Action::WriteHba => cluster::write_hba(context).await,
            Action::Start => cluster::start(context).await,
            Action::Reload => cluster::reload(context).await,
            Action::Restart => cluster::restart(context).await,
            Action::Stop => cluster::stop(context).await,
            Action::CreateRole { name, replication } => role::ensure_role(context, name, *replication).await,
            Action::CreateDatabase { name, owner } | Action::SetDatabaseOwner { name, owner } => {
                role::ensure_database(context, name, owner).await
            }
            Action::CreateSlot { name } => role::create_slot(context, name).await,
            Action::DropSlot { name } => role::drop_slot(context, name).await,
            Action::BaseBackup { slot } => replica::base_backup(context, slot).await,
            Action::WriteStandbyConfig => replica::write_standby_config(context).await,
            Action::WaitStreaming => replica::wait_streaming(context).await,
            Action::RemoveDataDir => cluster::remove_data_dir(context).await,
            Action::WritePoolerConfig => pooler::write_config(context).await,
            Action::StartPooler => pooler::start(context).await,
            Action::ReloadPooler => pooler::reload(context).await,
            Action::RestartPooler => pooler::restart(context).await,
            Action::StopPooler => pooler::stop(context).await,
        }
    }
}
