//! Actions on a PostgreSQL cluster's files and process (pg_ctl runtime):
//! init, settings, hba, start, stop, reload, restart, remove.

use std::collections::BTreeMap;

use super::context::{ActionError, ClusterPlace, Context, LONG_STEP, STEP, literal};
use crate::address::Kind;
use crate::desired;
use crate::spec::Runtime;
use crate::transport::shell_quote;

fn quoted(path: &std::path::Path) -> String {
    shell_quote(&path.to_string_lossy())
}

fn require_pg_ctl(context: &Context<'_>) -> Result<(), ActionError> {
    match context.environment.primary.runtime {
        Runtime::PgCtl => Ok(()),
        other => Err(ActionError::Refused {
            address: context.address.to_string(),
            reason: format!("the {other:?} runtime is not supported by apply yet; use `runtime: pg_ctl`"),
        }),
    }
}

/// Initialises the primary's data directory.
///
/// # Guarantees
/// Idempotent: an initialised directory is left alone. initdb runs into a
/// temporary directory that is renamed into place only when complete, so a
/// run killed half-way leaves nothing to trip over. The superuser password
/// is written (0600) before initdb reads it, and reused by later runs.
///
/// # Assumptions
/// The data directory is absent or empty (plan refuses anything else).
pub async fn init(context: &Context<'_>) -> Result<(), ActionError> {
    require_pg_ctl(context)?;
    let cluster = context.primary();
    let host = &cluster.host;
    context.ensure_dir(host, &cluster.home()).await?;
    context.superuser_password().await?;
    let data = quoted(&cluster.data_dir);
    let building = shell_quote(&format!("{}.pgfleet-init", cluster.data_dir.display()));
    let password_file = quoted(&cluster.home().join(desired::SUPERUSER_PASSWORD_FILE));
    let script = format!(
        "set -e\n\
         if [ -f {data}/PG_VERSION ]; then exit 0; fi\n\
         rm -rf {building}\n\
         {initdb} -D {building} --data-checksums --encoding=UTF8 --locale=C.UTF-8 \
         --auth-local=peer --auth-host=scram-sha-256 -U postgres --pwfile={password_file} >/dev/null\n\
         if [ -d {data} ]; then rmdir {data}; fi\n\
         mv {building} {data}\n",
        initdb = cluster.bin("initdb"),
    );
    context.run(host, "initdb", &script, LONG_STEP).await?;
    let settings = desired::primary_settings(context.environment);
    write_settings_offline(context, &cluster, &settings).await?;
    write_hba(context).await
}

/// Merges `settings` into postgresql.auto.conf of a stopped cluster.
pub async fn write_settings_offline(
    context: &Context<'_>,
    cluster: &ClusterPlace,
    settings: &BTreeMap<String, String>,
) -> Result<(), ActionError> {
    let path = cluster.data_dir.join("postgresql.auto.conf");
    let existing = context.read(&cluster.host, &path).await?.unwrap_or_default();
    let merged = desired::merge_auto_conf(&String::from_utf8_lossy(&existing), settings);
    context.write(&cluster.host, &path, merged.as_bytes(), 0o600).await
}

/// Sets settings: `ALTER SYSTEM` and a reload on a running cluster, the
/// same lines in postgresql.auto.conf on a stopped one.
///
/// # Guarantees
/// Idempotent. Never restarts: the plan adds a restart when a setting
/// needs one.
pub async fn configure(
    context: &Context<'_>,
    set: &BTreeMap<String, String>,
    reset: &[String],
) -> Result<(), ActionError> {
    let cluster = context.cluster()?;
    if !context.running(&cluster).await? {
        return write_settings_offline(context, &cluster, set).await;
    }
    let client = context.superuser(&cluster).await?;
    let mut statements: Vec<String> =
        set.iter().map(|(name, value)| format!("ALTER SYSTEM SET {name} = {}", literal(value))).collect();
    statements.extend(reset.iter().map(|name| format!("ALTER SYSTEM RESET {name}")));
    for statement in statements {
        client.batch_execute(&statement).await.map_err(context.query_error("ALTER SYSTEM"))?;
    }
    client.batch_execute("SELECT pg_reload_conf()").await.map_err(context.query_error("reload"))?;
    Ok(())
}

/// Rewrites pgfleet's block at the top of the primary's pg_hba.conf.
///
/// # Guarantees
/// Idempotent; lines outside the block are kept as they are. Takes effect
/// at the next reload (the plan adds one).
pub async fn write_hba(context: &Context<'_>) -> Result<(), ActionError> {
    let cluster = context.primary();
    let path = cluster.data_dir.join("pg_hba.conf");
    let existing = context.read(&cluster.host, &path).await?.unwrap_or_default();
    let lines = desired::hba_lines(context.environment, &context.topology.hosts);
    let text = desired::replace_hba_block(&String::from_utf8_lossy(&existing), &desired::hba_block(&lines));
    context.write(&cluster.host, &path, text.as_bytes(), 0o600).await
}

/// How many lines of the server log a failed start carries.
const LOG_TAIL_LINES: usize = 20;
/// Longest log line kept: a runaway line must not flood the error.
const LOG_LINE_BYTES: usize = 500;

/// The server log pg_ctl writes (`-l`).
fn server_log(cluster: &ClusterPlace) -> std::path::PathBuf {
    cluster.home().join("postgresql.log")
}

fn pg_ctl(cluster: &ClusterPlace, action: &str) -> String {
    format!(
        "{} -D {} -l {} -w -t 600 {action} >/dev/null",
        cluster.bin("pg_ctl"),
        quoted(&cluster.data_dir),
        quoted(&server_log(cluster)),
    )
}

/// Runs a pg_ctl action that starts the server. When it fails, the error
/// carries the end of the server log, read over the same connection.
async fn start_server(
    context: &Context<'_>,
    cluster: &ClusterPlace,
    step: &'static str,
    action: &str,
) -> Result<(), ActionError> {
    let status = match context.run(&cluster.host, step, &pg_ctl(cluster, action), LONG_STEP).await {
        Ok(_) => return Ok(()),
        Err(ActionError::Command { status, .. }) => status,
        Err(other) => return Err(other),
    };
    let log = server_log(cluster);
    let tail = format!("tail -n {LOG_TAIL_LINES} -- {} | cut -b 1-{LOG_LINE_BYTES}", quoted(&log));
    // An unreadable log must not hide the failed start: it shows as empty.
    let log_tail = match context.run(&cluster.host, "read the server log", &tail, STEP).await {
        Ok(output) => output.stdout_text().trim_end().to_owned(),
        Err(_) => String::new(),
    };
    Err(ActionError::ServerStart {
        address: context.address.to_string(),
        host: cluster.host.clone(),
        step,
        status,
        log,
        log_tail,
    })
}

/// Starts the cluster and waits until it accepts connections.
///
/// # Guarantees
/// Idempotent: a running cluster is left alone.
pub async fn start(context: &Context<'_>) -> Result<(), ActionError> {
    require_pg_ctl(context)?;
    let cluster = context.cluster()?;
    if context.running(&cluster).await? {
        return Ok(());
    }
    context.ensure_dir(&cluster.host, &cluster.home()).await?;
    start_server(context, &cluster, "pg_ctl start", "start").await
}

/// Stops the cluster (fast shutdown: sessions end, nothing is lost).
///
/// # Guarantees
/// Idempotent: a stopped or missing cluster is fine.
pub async fn stop(context: &Context<'_>) -> Result<(), ActionError> {
    let cluster = context.cluster()?;
    if !context.running(&cluster).await? {
        return Ok(());
    }
    context.run(&cluster.host, "pg_ctl stop", &pg_ctl(&cluster, "-m fast stop"), LONG_STEP).await?;
    Ok(())
}

pub async fn restart(context: &Context<'_>) -> Result<(), ActionError> {
    require_pg_ctl(context)?;
    let cluster = context.cluster()?;
    let action = if context.running(&cluster).await? { "-m fast restart" } else { "start" };
    start_server(context, &cluster, "pg_ctl restart", action).await
}

pub async fn reload(context: &Context<'_>) -> Result<(), ActionError> {
    let cluster = context.cluster()?;
    if !context.running(&cluster).await? {
        return Ok(());
    }
    let command = format!("{} -D {} reload >/dev/null", cluster.bin("pg_ctl"), quoted(&cluster.data_dir));
    context.run(&cluster.host, "pg_ctl reload", &command, STEP).await?;
    Ok(())
}

/// Removes a replica's data directory (and, when the replica itself is
/// deleted, pgfleet's files beside it).
///
/// # Guarantees
/// Idempotent. Refuses to touch a running cluster or anything but a
/// replica (the plan removes only what pgfleet created).
pub async fn remove_data_dir(context: &Context<'_>) -> Result<(), ActionError> {
    let cluster = context.cluster()?;
    let refuse = |reason: &str| ActionError::Refused { address: context.address.to_string(), reason: reason.into() };
    if context.address.kind != Kind::Replica {
        return Err(refuse("only a replica's data directory is ever removed"));
    }
    if cluster.data_dir.parent().is_none() || !cluster.data_dir.is_absolute() {
        return Err(refuse("the data directory is not an absolute path below /"));
    }
    if context.running(&cluster).await? {
        return Err(refuse("the replica still runs; stop it first"));
    }
    let mut command = format!("rm -rf -- {}", quoted(&cluster.data_dir));
    if context.change == crate::plan::ChangeKind::Delete {
        command.push_str(&format!(" {}", quoted(&cluster.home())));
    }
    context.run(&cluster.host, "remove data directory", &command, LONG_STEP).await?;
    Ok(())
}
