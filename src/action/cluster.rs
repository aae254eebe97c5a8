//! Actions on a PostgreSQL cluster member's files and process: init,
//! settings, hba, start, stop, reload, restart, remove. How the process is
//! run is its runtime's; these steps decide when.

use std::collections::BTreeMap;

use super::context::{ActionError, Context, LONG_STEP, STEP, literal};
use crate::desired;
use crate::placement::{ClusterPlacement, PRIMARY};
use crate::transport::shell_quote;

/// Initialises the primary's data directory.
///
/// # Guarantees
/// Idempotent: an initialised directory is left alone. The runtime builds
/// the directory beside its place and renames it in when complete, so a
/// run killed half-way leaves nothing to trip over. The superuser password
/// is written (0600) before initdb reads it, and reused by later runs.
///
/// # Assumptions
/// The data directory is absent or empty (plan refuses anything else).
pub async fn init(context: &Context<'_>, member: &str) -> Result<(), ActionError> {
    let cluster = context.member(member)?;
    let host = &cluster.host;
    context.ensure_dir(host, &cluster.layout.home).await?;
    context.superuser_password().await?;
    let script = cluster.runtime().initialise(&cluster.layout, cluster.port, &cluster.layout.superuser_password_file());
    context.run(host, "initdb", &script, LONG_STEP).await?;
    let settings = desired::primary_settings(context.environment);
    write_settings_offline(context, &cluster, &settings).await?;
    write_hba(context, member).await
}

/// Merges `settings` into postgresql.auto.conf of a stopped cluster.
pub async fn write_settings_offline(
    context: &Context<'_>,
    cluster: &ClusterPlacement,
    settings: &BTreeMap<String, String>,
) -> Result<(), ActionError> {
    let path = &cluster.layout.auto_conf;
    let existing = context.read(&cluster.host, path).await?.unwrap_or_default();
    let merged = desired::merge_auto_conf(&String::from_utf8_lossy(&existing), settings);
    context.write(&cluster.host, path, merged.as_bytes(), 0o600).await
}

/// Sets settings: `ALTER SYSTEM` and a reload on a running cluster, the
/// same lines in postgresql.auto.conf on a stopped one.
///
/// # Guarantees
/// Idempotent. Never restarts: the plan adds a restart when a setting
/// needs one.
pub async fn configure(
    context: &Context<'_>,
    member: &str,
    set: &BTreeMap<String, String>,
    reset: &[String],
) -> Result<(), ActionError> {
    let cluster = context.member(member)?;
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

/// Rewrites pgfleet's block at the top of the member's pg_hba.conf.
///
/// # Guarantees
/// Idempotent; lines outside the block are kept as they are. Takes effect
/// at the next reload (the plan adds one).
pub async fn write_hba(context: &Context<'_>, member: &str) -> Result<(), ActionError> {
    let cluster = context.member(member)?;
    let path = &cluster.layout.hba_file;
    let existing = context.read(&cluster.host, path).await?.unwrap_or_default();
    // Where the primary host's sshd connects from, as plan observed it.
    let tunnel_source = tunnel_source(context, &cluster).await;
    let pooler_source = pooler_source(context).await;
    let lines = desired::hba_lines(
        context.environment,
        &context.topology.hosts,
        tunnel_source.as_deref(),
        pooler_source.as_deref(),
    );
    let text = desired::replace_hba_block(&String::from_utf8_lossy(&existing), &desired::hba_block(&lines));
    context.write(&cluster.host, path, text.as_bytes(), 0o600).await
}

/// Where a session through the member's host transport arrives from, when
/// the environment has tunnels and the member answers: the source its
/// tunnels' connections arrive from too (see `desired::replication_source`).
async fn tunnel_source(context: &Context<'_>, cluster: &ClusterPlacement) -> Option<String> {
    let tunnels = context.environment.replicas.iter().any(|replica| replica.connect == crate::spec::Connect::SshTunnel);
    if !tunnels || !context.running(cluster).await.ok()? {
        return None;
    }
    let client = context.superuser(cluster).await.ok()?;
    client.query_one("SELECT host(inet_client_addr())", &[]).await.ok()?.get(0)
}

/// Where the primary's pooler, on a host of its own, connects to the
/// primary from: that host's route to the primary's address.
async fn pooler_source(context: &Context<'_>) -> Option<String> {
    let pooler = crate::placement::pooler(context.environment, PRIMARY)?;
    if pooler.host == context.environment.primary.host {
        return None;
    }
    let script = crate::observe::host::route_source("source", &pooler.cluster_address);
    let output = context.run(&pooler.host, "look up the pooler's route", &script, STEP).await.ok()?;
    output.stdout_text().lines().find_map(|line| line.strip_prefix("source=").map(str::to_owned))
}

/// How many lines of the server log a failed start carries.
const LOG_TAIL_LINES: usize = 20;
/// Longest log line kept: a runaway line must not flood the error.
const LOG_LINE_BYTES: usize = 500;

/// Runs a script that starts the server. When it fails, the error carries
/// the end of the server log, read over the same connection: pg_ctl itself
/// says only "Examine the log output."
async fn start_server(
    context: &Context<'_>,
    cluster: &ClusterPlacement,
    step: &'static str,
    script: &str,
) -> Result<(), ActionError> {
    let status = match context.run(&cluster.host, step, script, LONG_STEP).await {
        Ok(_) => return Ok(()),
        Err(ActionError::Command { status, .. }) => status,
        Err(other) => return Err(other),
    };
    let log = cluster.layout.log_file.clone();
    let tail =
        format!("tail -n {LOG_TAIL_LINES} -- {} | cut -b 1-{LOG_LINE_BYTES}", shell_quote(&log.to_string_lossy()));
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
pub async fn start(context: &Context<'_>, member: &str) -> Result<(), ActionError> {
    let cluster = context.member(member)?;
    if context.running(&cluster).await? {
        return Ok(());
    }
    context.ensure_dir(&cluster.host, &cluster.layout.home).await?;
    start_server(context, &cluster, "start PostgreSQL", &cluster.runtime().start(&cluster.layout)).await
}

/// Stops the cluster (fast shutdown: sessions end, nothing is lost).
///
/// # Guarantees
/// Idempotent: a stopped or missing cluster is fine.
pub async fn stop(context: &Context<'_>, member: &str) -> Result<(), ActionError> {
    let cluster = context.member(member)?;
    if !context.running(&cluster).await? {
        return Ok(());
    }
    context.run(&cluster.host, "stop PostgreSQL", &cluster.runtime().stop(&cluster.layout), LONG_STEP).await?;
    Ok(())
}

/// Restarts the cluster, or starts it when it is stopped.
pub async fn restart(context: &Context<'_>, member: &str) -> Result<(), ActionError> {
    let cluster = context.member(member)?;
    let runtime = cluster.runtime();
    let script = if context.running(&cluster).await? {
        runtime.restart(&cluster.layout)
    } else {
        runtime.start(&cluster.layout)
    };
    start_server(context, &cluster, "restart PostgreSQL", &script).await
}

/// Makes a running cluster re-read its configuration files.
pub async fn reload(context: &Context<'_>, member: &str) -> Result<(), ActionError> {
    let cluster = context.member(member)?;
    if !context.running(&cluster).await? {
        return Ok(());
    }
    context.run(&cluster.host, "reload PostgreSQL", &cluster.runtime().reload(&cluster.layout), STEP).await?;
    Ok(())
}

/// Removes a replica's data directory (and with `and_home`, when the
/// replica leaves for good, pgfleet's files beside it).
///
/// # Guarantees
/// Idempotent. Refuses to touch a running cluster or the primary (the
/// plan removes only what pgfleet created).
pub async fn remove_data_dir(context: &Context<'_>, member: &str, and_home: bool) -> Result<(), ActionError> {
    let refuse = |reason: &str| ActionError::Refused { address: context.address.to_string(), reason: reason.into() };
    if member == PRIMARY {
        return Err(refuse("only a replica's data directory is ever removed"));
    }
    let cluster = context.member(member)?;
    let data_dir = cluster.data_dir();
    if data_dir.parent().is_none() || !data_dir.is_absolute() {
        return Err(refuse("the data directory is not an absolute path below /"));
    }
    if context.running(&cluster).await? {
        return Err(refuse("the replica still runs; stop it first"));
    }
    let mut command = cluster.runtime().remove(&cluster.layout);
    if and_home {
        command.push_str(&format!(" && rm -rf -- {}", shell_quote(&cluster.layout.home.to_string_lossy())));
    }
    context.run(&cluster.host, "remove data directory", &command, LONG_STEP).await?;
    Ok(())
}
