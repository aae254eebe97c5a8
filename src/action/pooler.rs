//! PgBouncer: its ini and userlist, and its process. How the process is
//! run is its runtime's.

use std::time::{Duration, Instant};

use super::context::{ActionError, Context, STEP};
use crate::desired;

/// Writes the ini and the userlist (0600) whose verifiers are copied byte
/// for byte from the primary's `pg_authid`: the application owner, and
/// `postgres` for the admin console.
///
/// # Guarantees
/// Idempotent. When the userlist changed and PgBouncer runs, it is
/// restarted: it keeps SCRAM keys of old passwords in memory otherwise.
pub async fn write_config(context: &Context<'_>, fronts: &str) -> Result<(), ActionError> {
    let environment = context.environment;
    let Some(pooler) = &environment.pooler else {
        return Err(ActionError::Refused {
            address: context.address.to_string(),
            reason: "no pooler configured".into(),
        });
    };
    let place = context.pooler(fronts)?;
    context.ensure_dir(&place.host, &place.layout.home).await?;
    let ini = desired::pgbouncer_ini(environment, pooler, &place);
    context.write(&place.host, &place.layout.ini, ini.as_bytes(), 0o640).await?;

    let client = context.superuser(&context.primary()).await?;
    let roles = desired::userlist_roles(environment);
    let rows = client
        .query("SELECT rolname::text, rolpassword FROM pg_authid WHERE rolname = ANY($1)", &[&roles.to_vec()])
        .await
        .map_err(context.query_error("read verifiers"))?;
    let verifiers =
        rows.iter().filter_map(|row| Some((row.get::<_, String>(0), row.get::<_, Option<String>>(1)?))).collect();
    let userlist = desired::userlist(&verifiers);
    let path = &place.layout.userlist;
    let previous = context.read(&place.host, path).await?;
    if previous.as_deref() == Some(userlist.as_bytes()) {
        return Ok(());
    }
    context.write(&place.host, path, userlist.as_bytes(), 0o600).await?;
    if previous.is_some() && context.pooler_running(&place).await? {
        stop(context, fronts, false).await?;
        start(context, fronts).await?;
    }
    Ok(())
}

/// Starts PgBouncer and waits until it accepts connections.
///
/// # Guarantees
/// Idempotent: a running PgBouncer is left alone.
pub async fn start(context: &Context<'_>, fronts: &str) -> Result<(), ActionError> {
    let place = context.pooler(fronts)?;
    if context.pooler_running(&place).await? {
        return Ok(());
    }
    context.run(&place.host, "start pgbouncer", &place.runtime().pooler_start(&place.layout), STEP).await?;
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

/// PgBouncer re-reads its ini (databases, pool settings); a stopped one is
/// started.
pub async fn reload(context: &Context<'_>, fronts: &str) -> Result<(), ActionError> {
    let place = context.pooler(fronts)?;
    if !context.pooler_running(&place).await? {
        return start(context, fronts).await;
    }
    context.run(&place.host, "reload pgbouncer", &place.runtime().pooler_reload(&place.layout), STEP).await?;
    Ok(())
}

/// Stops PgBouncer and waits for the process to go; with `and_config`
/// (the pooler leaves for good) also removes its ini.
///
/// # Guarantees
/// Idempotent.
pub async fn stop(context: &Context<'_>, fronts: &str, and_config: bool) -> Result<(), ActionError> {
    let place = context.pooler(fronts)?;
    if context.pooler_running(&place).await? {
        context.run(&place.host, "stop pgbouncer", &place.runtime().pooler_stop(&place.layout), STEP).await?;
    }
    if and_config {
        let ini = crate::transport::shell_quote(&place.layout.ini.to_string_lossy());
        context.run(&place.host, "remove pgbouncer.ini", &format!("rm -f {ini}"), STEP).await?;
    }
    Ok(())
}

pub async fn restart(context: &Context<'_>, fronts: &str) -> Result<(), ActionError> {
    stop(context, fronts, false).await?;
    start(context, fronts).await
}
