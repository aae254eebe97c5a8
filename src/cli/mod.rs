//! The command line: clap definitions and dispatch to `ops`. Nothing here
//! does the work of a command.

use std::path::PathBuf;

use clap::{Args, CommandFactory as _, Parser, Subcommand, ValueEnum};

use crate::exit::{EXIT_CODES, Exit};
use crate::ops;
use crate::printer::{ColorChoice, Printer};

/// Reconcile PostgreSQL high-availability topologies (primary, streaming
/// replicas, PgBouncer) from a YAML description.
///
/// pgfleet observes the hosts over SSH and SQL, plans the difference from
/// the YAML, and applies it in dependency order.
#[derive(Debug, Parser)]
#[command(name = "pgfleet", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// When to colour output: auto (a terminal, unless NO_COLOR is set),
    /// always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorArg::Auto)]
    pub color: ColorArg,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ColorArg {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a configuration file without contacting any host.
    ///
    /// Reports every problem with its file, line and column.
    ///
    /// Exit codes: 0 valid, 1 invalid.
    Validate(FileArgs),
    /// Print the JSON Schema of the configuration file.
    ///
    /// Point your editor at it with a first line
    /// `# yaml-language-server: $schema=schemas/pgfleet.schema.json`.
    ///
    /// Exit codes: 0.
    Schema,
    /// Observe the hosts and show what apply would change.
    ///
    /// Read-only: observes every host over SSH (or locally) and SQL, then
    /// prints the ordered changes with their reasons, diffs and disruption,
    /// the quota table and warnings.
    ///
    /// Exit codes: 0 no changes (or changes without --detailed-exitcode),
    /// 1 error or a host could not be observed, 2 changes (with
    /// --detailed-exitcode).
    Plan(PlanArgs),
    /// Make the hosts match the configuration.
    ///
    /// Observes, plans, shows the plan and asks for `yes` (unless
    /// --auto-approve), then runs the actions in dependency order, journaling
    /// each one to state, and observes again expecting no changes. With a
    /// saved plan (`pgfleet plan --out FILE`), runs that plan, refusing it
    /// when the hosts changed since it was made. Holds the state's lock
    /// throughout: a second apply fails at once, naming the holder.
    ///
    /// Exit codes: 0 done (or nothing to do), 1 error before any change
    /// (or cancelled), 3 stopped part-way (rerun to converge).
    Apply(ApplyArgs),
    /// Compare the hosts with the configuration, read-only, for scheduled
    /// checks.
    ///
    /// Differences are sorted into classes: config (a managed setting, hba
    /// line, pooler ini or role changed by hand), topology (replica
    /// missing, extra or following another primary; primary in recovery),
    /// slots (orphaned, inactive retaining WAL, lost), health (replicas not
    /// online), pending_restart. Nothing is written anywhere.
    ///
    /// Exit codes: 0 no drift, 1 error (a host could not be observed), 2
    /// drift.
    Drift(DriftArgs),
    /// Watch replica health continuously: a live status page, JSON-line
    /// events, SSE and Prometheus metrics over HTTP.
    ///
    /// Every --interval it emits `replica.health_updated` for each replica
    /// and `replica.lag_alert` (severity warning or critical) for each one
    /// over a threshold, on stdout and on `GET /events` (Server-Sent
    /// Events). `GET /` is a status page that updates itself,
    /// `GET /status.json` the document `status --format json` prints,
    /// `GET /metrics` Prometheus text, `GET /health` the monitor's own
    /// health. Keeps running when a host is down; stops cleanly on SIGTERM
    /// or Ctrl-C.
    ///
    /// Exit codes: 0 stopped by a signal, 1 error (configuration, listen
    /// address, token file).
    Monitor(MonitorArgs),
    /// Health of every environment: primary, replicas, poolers, slots.
    ///
    /// Each replica is online, lagging (warning or critical, by the
    /// `health:` thresholds; WAL received but not replayed counts), offline
    /// or error (could not be checked, with the reason). Read-only.
    ///
    /// Exit codes: 0, 1 error, 2 when anything is not healthy (with
    /// --detailed-exitcode).
    Status(StatusArgs),
    /// Inspect pgfleet's state: what it owns, its journal, its locks; move
    /// it to another backend.
    ///
    /// Exit codes: 0, 1 error (unreadable state, lock held for unlock, a
    /// move refused).
    #[command(subcommand)]
    State(StateCommand),
    /// Print the resource dependency graph in Graphviz DOT.
    ///
    /// Edges point from a resource to those that need it; apply follows
    /// this order. Render with `pgfleet graph | dot -Tsvg > graph.svg`.
    ///
    /// Exit codes: 0, 1 invalid configuration.
    Graph(FileArgs),
    /// Take over what already exists: record in state, as pgfleet's, every
    /// resource of an environment that is there now, writing nothing to any
    /// host.
    ///
    /// Observes the environment read-only (as plan does) and records the
    /// primary, replicas, roles, database, slots, pgfleet's hba block and
    /// poolers it finds; what it does not find, the next plan creates.
    /// Run it before the first apply on a production pgfleet did not build.
    ///
    /// Exit codes: 0, 1 error (invalid configuration, unknown environment,
    /// a host that cannot be observed, the state's lock held).
    Import(ImportArgs),
    /// Move the primary role to a standby with nothing lost (planned
    /// maintenance).
    ///
    /// Checks first (the candidate streams from the primary on its
    /// timeline within `health.warning`; every pooler answers), shows the
    /// steps, then: CHECKPOINT, PAUSE the application's pool, fast shutdown
    /// of the primary, check the candidate replayed its shutdown checkpoint
    /// (RPO 0, checked), promote, repoint the primary pooler and RESUME,
    /// the old primary rejoins as a standby, the other replicas follow. A
    /// run killed half-way is finished by running it again (or `apply`).
    ///
    /// Exit codes: 0 done, 1 refused or failed before the promotion
    /// (nothing changed), 3 stopped after it (run it again to finish).
    Switchover(RoleArgs),
    /// Move the primary role away from a lost primary.
    ///
    /// Fences first: a reachable old primary is stopped and left with a
    /// standby.signal (refused while it runs and accepts writes, unless
    /// --fence); an unreachable one is refused unless
    /// --old-primary-is-down. Picks the freshest replica unless --to,
    /// states the data-loss bound per candidate before asking, promotes,
    /// repoints the pooler and the other replicas, and rejoins the old
    /// primary (pg_rewind) when its host answers.
    ///
    /// Exit codes: 0 done, 1 refused (nothing changed), 3 stopped part-way.
    Failover(FailoverArgs),
    /// Print a shell completion script.
    ///
    /// bash: `pgfleet completions bash > ~/.local/share/bash-completion/completions/pgfleet`;
    /// zsh: into a directory of your $fpath as `_pgfleet`; fish:
    /// `pgfleet completions fish > ~/.config/fish/completions/pgfleet.fish`.
    ///
    /// Exit codes: 0.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `pgfleet man | man -l -`.
    ///
    /// Exit codes: 0.
    Man,
    /// Back up an environment (pg_dump, the filestore and a sha256
    /// manifest in one zip, in the storage of `backups:`), list, verify and
    /// restore its backups.
    ///
    /// Exit codes: 0 done, 1 error, a verification that failed, or a
    /// restore refused or undone (the live database untouched).
    #[command(subcommand)]
    Backup(BackupCommand),
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Dump the application database and the filestore into a new backup,
    /// then apply the retention rule.
    ///
    /// Streams from the member's host through pgfleet to the storage: no
    /// local copy; progress on stderr.
    Create(BackupCreateArgs),
    /// The backups of an environment: id, time, sizes, last verification.
    List(BackupListArgs),
    /// Recompute every checksum of a backup against its manifest; with
    /// --restore-test, also restore it into a scratch database and check
    /// it (rows, attachments), then drop it. The result is recorded beside
    /// the backup.
    Verify(BackupVerifyArgs),
    /// Restore a backup into an environment: shown as a plan first,
    /// restored beside the live database and checked while the application
    /// runs, then swapped into place in one short pause of the pooler.
    Restore(BackupRestoreArgs),
}

#[derive(Debug, Args)]
pub struct BackupCreateArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// The environment (its `id`).
    #[arg(long = "env", value_name = "ENV")]
    pub environment: String,
    /// Dump from this member (a replica, to spare the primary). Default:
    /// the primary.
    #[arg(long, value_name = "MEMBER")]
    pub from: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ops::backup::Format::Text)]
    pub format: ops::backup::Format,
}

#[derive(Debug, Args)]
pub struct BackupListArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// The environment (its `id`).
    #[arg(long = "env", value_name = "ENV")]
    pub environment: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ops::backup::Format::Text)]
    pub format: ops::backup::Format,
}

#[derive(Debug, Args)]
pub struct BackupVerifyArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// The environment (its `id`).
    #[arg(long = "env", value_name = "ENV")]
    pub environment: String,
    /// The backup's id (`pgfleet backup list`).
    #[arg(value_name = "ID")]
    pub id: String,
    /// Also restore into a scratch database on the environment's primary,
    /// check it, and drop it.
    #[arg(long)]
    pub restore_test: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ops::backup::Format::Text)]
    pub format: ops::backup::Format,
}

#[derive(Debug, Args)]
pub struct BackupRestoreArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// The environment restored into (its `id`).
    #[arg(long = "env", value_name = "ENV")]
    pub environment: String,
    /// The backup's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// The environment whose backup this is (clone production to
    /// staging). Default: the target itself.
    #[arg(long = "from-env", value_name = "ENV")]
    pub from_environment: Option<String>,
    /// Restore into a `protected: true` environment from another one.
    #[arg(long)]
    pub force: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// How long to wait for another pgfleet holding the state lock.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub lock_timeout: crate::spec::Duration,
}

#[derive(Debug, Args)]
pub struct RoleArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// The environment (its `id`).
    #[arg(long = "env", value_name = "ENV")]
    pub environment: String,
    /// The member that takes the primary role.
    #[arg(long, value_name = "MEMBER")]
    pub to: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// How long to wait for another pgfleet holding the state lock.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub lock_timeout: crate::spec::Duration,
}

#[derive(Debug, Args)]
pub struct FailoverArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// The environment (its `id`).
    #[arg(long = "env", value_name = "ENV")]
    pub environment: String,
    /// The member that takes the primary role. Default: the freshest
    /// replica (most WAL received).
    #[arg(long, value_name = "MEMBER")]
    pub to: Option<String>,
    /// Stop the old primary even though it runs and accepts writes
    /// (commits it acknowledged that no standby received are lost).
    #[arg(long)]
    pub fence: bool,
    /// The old primary's host cannot be reached and you state that it is
    /// down (recorded in state's journal with the role change).
    #[arg(long)]
    pub old_primary_is_down: bool,
    /// Record a promotion done outside pgfleet (`--to` runs as a primary,
    /// the recorded primary does not accept writes); the old primary then
    /// rejoins as its standby.
    #[arg(long, requires = "to")]
    pub record_only: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// How long to wait for another pgfleet holding the state lock.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub lock_timeout: crate::spec::Duration,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// The environment to import (its `id`).
    #[arg(long = "env", value_name = "ENV")]
    pub environment: String,
    /// How long to wait for another pgfleet holding the state lock
    /// (e.g. 30s, 5m). Default: fail at once.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub lock_timeout: crate::spec::Duration,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ops::plan::Format::Text)]
    pub format: ops::plan::Format,
    /// Save the plan (mode 0600) for `pgfleet apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 2 when there are changes, 0 when there are none.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Plan only this resource (ENV.KIND.NAME) and what it depends on.
    /// Repeatable.
    #[arg(long, value_name = "ADDRESS")]
    pub target: Vec<crate::address::Address>,
    /// Observe and plan only this environment and the hosts it uses
    /// (repeatable); the organisation's quota still counts every one.
    #[arg(long = "env", value_name = "ENV")]
    pub environments: Vec<String>,
    /// Hosts observed at once: one SSH session each, however many
    /// environments share a host.
    #[arg(long, value_name = "N", default_value_t = crate::observe::PARALLEL_HOSTS)]
    pub parallelism: usize,
    /// Plan a rebuild of this replica from a new base backup. Skipped while
    /// it streams within `health.rebuild_skip_if_healthy` unless --force.
    #[arg(long, value_name = "ADDRESS")]
    pub replace: Vec<crate::address::Address>,
    /// With --replace: rebuild even a healthy replica.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Address and port of the HTTP endpoints. Off loopback, use
    /// --auth-token-file (a warning says so otherwise).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9187")]
    pub listen: std::net::SocketAddr,
    /// A file holding a bearer token: every endpoint but /health and the
    /// page then requires `Authorization: Bearer TOKEN`. The page reads the
    /// token from its address: http://ADDR:PORT/#token=TOKEN.
    #[arg(long, value_name = "PATH")]
    pub auth_token_file: Option<PathBuf>,
    /// Time between health rounds.
    #[arg(long, value_name = "DURATION", default_value = "2m")]
    pub interval: crate::spec::Duration,
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    #[command(flatten)]
    pub file: FileArgs,
    #[arg(long, value_enum, default_value_t = ops::drift::Format::Text)]
    pub format: ops::drift::Format,
    /// Leave out a class (config, topology, slots, health, pending_restart)
    /// or a resource address. Repeatable.
    #[arg(long, value_name = "CLASS|ADDRESS")]
    pub ignore: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub file: FileArgs,
    #[arg(long, value_enum, default_value_t = ops::status::Format::Text)]
    pub format: ops::status::Format,
    /// Refresh every --interval until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Refresh interval with --watch (e.g. 5s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub interval: crate::spec::Duration,
    /// Exit 2 when anything is not healthy.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the resources pgfleet created, and who holds the lock.
    List(FileArgs),
    /// Print the state as JSON (it never holds a secret).
    Show(FileArgs),
    /// Remove a lock record left behind. A lock held by a running pgfleet is
    /// never broken: its holder is named instead.
    Unlock {
        #[command(flatten)]
        file: FileArgs,
        /// Required: removing the record is deliberate.
        #[arg(long)]
        force: bool,
    },
    /// Move a local state file into the backend the configuration names,
    /// without losing a record.
    ///
    /// Locks both (the local file, and every environment at the target),
    /// writes the state there with its lineage, and prints what moved. The
    /// local file is left as it was. Refused, with nothing written, when
    /// the target already holds another state (another lineage, or this
    /// one changed since); a target that already holds exactly this state
    /// is left alone.
    Migrate {
        #[command(flatten)]
        file: FileArgs,
        /// The backend to move to; `state:` in the configuration says where
        /// it is.
        #[arg(long, value_enum)]
        to: MigrateTarget,
        /// The local state file to move. Default: the local backend's
        /// default, `state/<organization>.json`.
        #[arg(long, value_name = "PATH")]
        from: Option<PathBuf>,
        /// How long to wait for a pgfleet holding either lock (e.g. 30s).
        /// Default: fail at once.
        #[arg(long, value_name = "DURATION", default_value = "0s")]
        lock_timeout: crate::spec::Duration,
    },
    /// Stop owning a resource: pgfleet forgets it and never touches it
    /// again (it is not removed from its host).
    ///
    /// For a resource on a host that is gone, after removing what was there
    /// by hand: plan refuses to delete what it cannot reach, naming this
    /// command.
    Forget {
        #[command(flatten)]
        file: FileArgs,
        /// The resource (ENV.KIND.NAME), as `pgfleet state list` shows it.
        #[arg(value_name = "ADDRESS")]
        address: crate::address::Address,
        /// How long to wait for a pgfleet holding the environment's lock.
        #[arg(long, value_name = "DURATION", default_value = "0s")]
        lock_timeout: crate::spec::Duration,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MigrateTarget {
    /// A table in the PostgreSQL database `state.url` names.
    Postgres,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// A plan saved with `pgfleet plan --out`; runs without asking.
    #[arg(value_name = "PLAN")]
    pub plan: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// How long to wait for another pgfleet holding the state lock
    /// (e.g. 30s, 5m). Default: fail at once.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub lock_timeout: crate::spec::Duration,
    /// Apply only this resource (ENV.KIND.NAME) and what it depends on.
    /// Repeatable.
    #[arg(long, value_name = "ADDRESS")]
    pub target: Vec<crate::address::Address>,
    /// Observe, plan and apply only this environment and the hosts it uses
    /// (repeatable); its lock is the only one taken.
    #[arg(long = "env", value_name = "ENV")]
    pub environments: Vec<String>,
    /// Rebuild this replica from a new base backup. Skipped while it
    /// streams within `health.rebuild_skip_if_healthy` unless --force.
    #[arg(long, value_name = "ADDRESS")]
    pub replace: Vec<crate::address::Address>,
    /// With --replace: rebuild even a healthy replica.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct FileArgs {
    /// Configuration file.
    #[arg(short = 'f', long = "file", default_value = "pgfleet.yaml")]
    pub file: PathBuf,
}

/// Parses the command line, runs the command, and maps its outcome to an
/// exit code.
pub fn run() -> Exit {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let exit = match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => Exit::Ok,
                _ => Exit::Error,
            };
            // clap prints help to stdout and errors to stderr itself.
            let _ = error.print();
            return exit;
        }
    };
    let printer = Printer::new(match cli.color {
        ColorArg::Auto => ColorChoice::Auto,
        ColorArg::Always => ColorChoice::Always,
        ColorArg::Never => ColorChoice::Never,
    });
    let outcome = match &cli.command {
        Command::Validate(args) => ops::validate::run(&printer, &args.file),
        Command::Schema => ops::schema::run(&printer),
        Command::Graph(args) => ops::graph::run(&printer, &args.file),
        Command::Monitor(args) => ops::monitor::run(
            &printer,
            &ops::monitor::Options {
                file: &args.file.file,
                listen: args.listen,
                interval: std::time::Duration::from_secs(args.interval.seconds().max(1)),
                auth_token_file: args.auth_token_file.as_deref(),
            },
        ),
        Command::Completions { shell } => ops::manual::completions(&printer, Cli::command(), *shell),
        Command::Man => ops::manual::man(&printer, Cli::command()),
        Command::Drift(args) => ops::drift::run(
            &printer,
            &ops::drift::Options { file: &args.file.file, format: args.format, ignore: &args.ignore },
        ),
        Command::Status(args) => ops::status::run(
            &printer,
            &ops::status::Options {
                file: &args.file.file,
                format: args.format,
                watch: args.watch,
                interval: std::time::Duration::from_secs(args.interval.seconds().max(1)),
                detailed_exitcode: args.detailed_exitcode,
            },
        ),
        Command::State(StateCommand::List(args)) => ops::state::list(&printer, &args.file),
        Command::State(StateCommand::Show(args)) => ops::state::show(&printer, &args.file),
        Command::State(StateCommand::Unlock { file, force }) => ops::state::unlock(&printer, &file.file, *force),
        Command::State(StateCommand::Forget { file, address, lock_timeout }) => {
            ops::state::forget(&printer, &file.file, address, std::time::Duration::from_secs(lock_timeout.seconds()))
        }
        Command::State(StateCommand::Migrate { file, to: MigrateTarget::Postgres, from, lock_timeout }) => {
            ops::state::migrate(
                &printer,
                &ops::state::MigrateOptions {
                    file: &file.file,
                    from: from.as_deref(),
                    lock_timeout: std::time::Duration::from_secs(lock_timeout.seconds()),
                },
            )
        }
        Command::Apply(args) => ops::apply::run(
            &printer,
            &ops::apply::Options {
                file: &args.file.file,
                plan_file: args.plan.as_deref(),
                auto_approve: args.auto_approve,
                lock_timeout: std::time::Duration::from_secs(args.lock_timeout.seconds()),
                targets: &args.target,
                environments: &args.environments,
                replace: &args.replace,
                force: args.force,
            },
        ),
        Command::Switchover(args) => ops::switchover::run(
            &printer,
            &ops::switchover::Options {
                file: &args.file.file,
                environment: &args.environment,
                auto_approve: args.auto_approve,
                lock_timeout: std::time::Duration::from_secs(args.lock_timeout.seconds()),
            },
            ops::switchover::Request::Switchover { to: &args.to },
        ),
        Command::Failover(args) => ops::switchover::run(
            &printer,
            &ops::switchover::Options {
                file: &args.file.file,
                environment: &args.environment,
                auto_approve: args.auto_approve,
                lock_timeout: std::time::Duration::from_secs(args.lock_timeout.seconds()),
            },
            match (&args.to, args.record_only) {
                (Some(to), true) => ops::switchover::Request::RecordOnly { to },
                (to, _) => ops::switchover::Request::Failover {
                    to: to.as_deref(),
                    fence: args.fence,
                    old_primary_is_down: args.old_primary_is_down,
                },
            },
        ),
        Command::Backup(BackupCommand::Create(args)) => ops::backup::create(
            &printer,
            &ops::backup::CreateOptions {
                file: &args.file.file,
                environment: &args.environment,
                from: args.from.as_deref(),
                format: args.format,
            },
        ),
        Command::Backup(BackupCommand::List(args)) => {
            ops::backup::list(&printer, &args.file.file, &args.environment, args.format)
        }
        Command::Backup(BackupCommand::Verify(args)) => ops::backup::verify(
            &printer,
            &ops::backup::VerifyOptions {
                file: &args.file.file,
                environment: &args.environment,
                id: &args.id,
                restore_test: args.restore_test,
                format: args.format,
            },
        ),
        Command::Backup(BackupCommand::Restore(args)) => ops::backup::restore(
            &printer,
            &ops::backup::RestoreOptions {
                file: &args.file.file,
                environment: &args.environment,
                id: &args.id,
                from_environment: args.from_environment.as_deref(),
                force: args.force,
                auto_approve: args.auto_approve,
                lock_timeout: std::time::Duration::from_secs(args.lock_timeout.seconds()),
            },
        ),
        Command::Import(args) => ops::import::run(
            &printer,
            &args.file.file,
            &args.environment,
            std::time::Duration::from_secs(args.lock_timeout.seconds()),
        ),
        Command::Plan(args) => ops::plan::run(
            &printer,
            &ops::plan::Options {
                file: &args.file.file,
                format: args.format,
                out: args.out.as_deref(),
                detailed_exitcode: args.detailed_exitcode,
                parallelism: args.parallelism,
                targets: &args.target,
                environments: &args.environments,
                replace: &args.replace,
                force: args.force,
            },
        ),
    };
    let exit = match outcome {
        Ok(exit) => exit,
        Err(error) => {
            printer.error(&error);
            error.exit()
        }
    };
    // Data that could not be written (other than to a closed pipe) must not
    // pass for complete output: a success becomes an error; a partial apply
    // or an internal error keeps its more telling code.
    match printer.take_stdout_failure() {
        Some(source) => {
            printer.error(&ops::Error::Stdout { source });
            if matches!(exit, Exit::Ok | Exit::Changes) { Exit::Error } else { exit }
        }
        None => exit,
    }
}
