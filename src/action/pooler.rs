//! PgBouncer: its ini and userlist, and its process.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::context::{ActionError, Context, STEP};
use crate::desired::{self, PoolerPlace, PoolerSite};
use crate::transport::shell_quote;

/// Where this pooler lives: from the topology, or from ownership when it
/// was removed from it.
fn place(context: &Context<'_>) -> Result<PoolerPlace, ActionError> {
    let environment = context.environment;
    let site = match context.address.name.as_str() {
        "primary" => Some(PoolerSite::Primary),
        name => environment.replicas.iter().find(|replica| replica.name == name).map(PoolerSite::Replica),
    };
    if let (Some(pooler), Some(site)) = (&environment.pooler, site) {
        return Ok(desired::pooler_place(environment, pooler, site));
    }
    let owned = context.owned.and_then(|owned| owned.path.clone().map(|ini| (owned.host.clone(), ini)));
    let (host, ini) = owned.ok_or_else(|| ActionError::Refused {
        address: context.address.to_string(),
        reason: "not in the configuration and not recorded in state".into(),
    })?;
    let home = ini.parent().map(PathBuf::from).unwrap_or_default();
    let port = ini
        .file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.strip_prefix("pgbouncer-"))
        .and_then(|port| port.parse().ok())
        .unwrap_or(0);
    Ok(PoolerPlace { host, address: String::new(), port, cluster_port: 0, home })
}

fn pid_of(place: &PoolerPlace) -> String {
    shell_quote(&desired::pgbouncer_pid_path(place).to_string_lossy())
}

async fn running(context: &Context<'_>, place: &PoolerPlace) -> Result<bool, ActionError> {
    let pid = pid_of(place);
    let output = context
        .remote(&place.host)?
        .exec(&format!("[ -f {pid} ] && kill -0 \"$(cat {pid})\" 2>/dev/null"), b"", STEP)
        .await?;
    Ok(output.success())
}

/// Writes the ini and the userlist (0600) whose verifiers are copied byte
/// for byte from the primary's `pg_authid`: the application owner, and
/// `postgres` for the admin console.
///
/// # Guarantees
/// Idempotent. When the userlist changed and PgBouncer runs, it is
/// restarted: it keeps SCRAM keys of old passwords in memory otherwise.
pub async fn write_config(context: &Context<'_>) -> Result<(), ActionError> {
    let environment = context.environment;
    let place = place(context)?;
    let (Some(pooler), site) = (&environment.pooler, context.address.name.as_str()) else {
        return Err(ActionError::Refused {
            address: context.address.to_string(),
            reason: "no pooler configured".into(),
        });
    };
    let site =
        match site {
            "primary" => PoolerSite::Primary,
            name => PoolerSite::Replica(environment.replicas.iter().find(|replica| replica.name == name).ok_or_else(
                || ActionError::Refused { address: context.address.to_string(), reason: "no such replica".into() },
            )?),
        };
    context.ensure_dir(&place.host, &place.home).await?;
    let ini = desired::pgbouncer_ini(environment, pooler, site);
    context.write(&place.host, &desired::pgbouncer_ini_path(&place), ini.as_bytes(), 0o640).await?;

    let client = context.superuser(&context.primary()).await?;
    let roles = desired::userlist_roles(environment);
    let rows = client
        .query("SELECT rolname::text, rolpassword FROM pg_authid WHERE rolname = ANY($1)", &[&roles.to_vec()])
        .await
        .map_err(context.query_error("read verifiers"))?;
    let verifiers =
        rows.iter().filter_map(|row| Some((row.get::<_, String>(0), row.get::<_, Option<String>>(1)?))).collect();
    let userlist = desired::userlist(&verifiers);
    let path = place.home.join("userlist.txt");
    let previous = context.read(&place.host, &path).await?;
    if previous.as_deref() == Some(userlist.as_bytes()) {
        return Ok(());
    }
    context.write(&place.host, &path, userlist.as_bytes(), 0o600).await?;
    if previous.is_some() && running(context, &place).await? {
        stop(context).await?;
        start(context).await?;
    }
    Ok(())
}

/// Starts PgBouncer and waits until it accepts connections.
///
/// # Guarantees
/// Idempotent: a running PgBouncer is left alone.
pub async fn start(context: &Context<'_>) -> Result<(), ActionError> {
    let place = place(context)?;
    if running(context, &place).await? {
        return Ok(());
    }
    let ini = shell_quote(&desired::pgbouncer_ini_path(&place).to_string_lossy());
    context
        .run(
            &place.host,
            "start pgbouncer",
            &format!("PATH=\"$PATH:/usr/sbin:/usr/local/sbin\" pgbouncer -q -d {ini}"),
            STEP,
        )
        .await?;
    let started = Instant::now();
    loop {
        if context.remote(&place.host)?.connect_tcp(&place.address, place.port).await.is_ok() {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(ActionError::Timeout {
                address: context.address.to_string(),
                step: "waiting for pgbouncer to listen",
                waited: Duration::from_secs(30),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `SIGHUP`: PgBouncer re-reads its ini (databases, pool settings).
pub async fn reload(context: &Context<'_>) -> Result<(), ActionError> {
    let place = place(context)?;
    if !running(context, &place).await? {
        return start(context).await;
    }
    let pid = pid_of(&place);
    context.run(&place.host, "reload pgbouncer", &format!("kill -HUP \"$(cat {pid})\""), STEP).await?;
    Ok(())
}

/// Stops PgBouncer (SIGTERM) and waits for the process to go; for a
/// deleted pooler also removes its ini.
///
/// # Guarantees
/// Idempotent.
pub async fn stop(context: &Context<'_>) -> Result<(), ActionError> {
    let place = place(context)?;
    if running(context, &place).await? {
        let pid = pid_of(&place);
        let script = format!(
            "p=\"$(cat {pid})\"; kill -TERM \"$p\"; i=0; while kill -0 \"$p\" 2>/dev/null; do i=$((i+1)); [ $i -gt 300 ] && exit 1; sleep 0.1; done; rm -f {pid}"
        );
        context.run(&place.host, "stop pgbouncer", &script, STEP).await?;
    }
    if context.change == crate::plan::ChangeKind::Delete {
        let ini = shell_quote(&desired::pgbouncer_ini_path(&place).to_string_lossy());
        context.run(&place.host, "remove pgbouncer.ini", &format!("rm -f {ini}"), STEP).await?;
    }
    Ok(())
}

pub async fn restart(context: &Context<'_>) -> Result<(), ActionError> {
    stop(context).await?;
    start(context).await
}
