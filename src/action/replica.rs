//! Building a streaming replica: base backup, standby configuration, and
//! waiting until the primary sees it streaming.

use std::time::{Duration, Instant};

use super::cluster::write_settings_offline;
use super::context::{ActionError, Context, LONG_STEP};
use crate::desired;
use crate::spec::Connect;
use crate::topology::Replica;
use crate::transport::shell_quote;

/// How long a new replica may take to reach `streaming`.
pub const STREAMING_TIMEOUT: Duration = Duration::from_secs(300);

fn replica<'a>(context: &'a Context<'_>) -> Result<&'a Replica, ActionError> {
    let replica = context.replica().ok_or_else(|| ActionError::Refused {
        address: context.address.to_string(),
        reason: "the replica is not in the configuration".into(),
    })?;
    if replica.connect == Connect::SshTunnel {
        let machine = |host: &str| context.topology.hosts.get(host).map(|host| host.machine().to_owned());
        if machine(&replica.host) != machine(&context.environment.primary.host) {
            return Err(ActionError::Refused {
                address: context.address.to_string(),
                reason: "`connect: ssh_tunnel` between machines is not supported by apply yet; give the primary an \
                         address the replica's host can reach and use `connect: direct`"
                    .into(),
            });
        }
    }
    Ok(replica)
}

/// Writes the replica's passfile (0600): the replication password for the
/// primary, and nothing else.
async fn write_passfile(context: &Context<'_>, replica: &Replica) -> Result<(), ActionError> {
    let password = context.role_password(&context.environment.replication.user).await?;
    let line = desired::passfile(context.environment, &password);
    let home = desired::home(&replica.data_dir);
    context.ensure_dir(&replica.host, &home).await?;
    context.write(&replica.host, &home.join(desired::PASSFILE), line.as_bytes(), 0o600).await
}

/// Copies the primary's data directory with `pg_basebackup -X stream -S
/// SLOT`, run on the replica's host.
///
/// # Guarantees
/// Idempotent: an initialised data directory is left alone. The copy goes
/// to a temporary directory renamed into place when complete, so a run
/// killed half-way leaves no half-copied data directory. The password
/// reaches pg_basebackup through the passfile, never a command line.
pub async fn base_backup(context: &Context<'_>, slot: &str) -> Result<(), ActionError> {
    let replica = replica(context)?;
    write_passfile(context, replica).await?;
    let cluster = context.cluster()?;
    let primary = &context.environment.primary;
    let data = shell_quote(&replica.data_dir.to_string_lossy());
    let building = shell_quote(&format!("{}.pgfleet-basebackup", replica.data_dir.display()));
    let script = format!(
        "set -e\n\
         if [ -f {data}/PG_VERSION ]; then exit 0; fi\n\
         rm -rf {building}\n\
         PGPASSFILE={passfile} {pg_basebackup} -h {host} -p {port} -U {user} -D {building} \
         -X stream -S {slot} --checkpoint=fast --no-password\n\
         if [ -d {data} ]; then rmdir {data}; fi\n\
         mv {building} {data}\n",
        passfile = shell_quote(&desired::home(&replica.data_dir).join(desired::PASSFILE).to_string_lossy()),
        pg_basebackup = cluster.bin("pg_basebackup"),
        host = shell_quote(&primary.address),
        port = primary.port,
        user = shell_quote(&context.environment.replication.user),
        slot = shell_quote(slot),
    );
    context.run(&replica.host, "pg_basebackup", &script, LONG_STEP).await?;
    Ok(())
}

/// standby.signal, the passfile, and the replica's settings (its address,
/// `primary_conninfo` with `passfile=`, slot, `hot_standby_feedback`) in
/// postgresql.auto.conf; the superuser password beside it, so pgfleet can
/// log in to observe it.
///
/// # Guarantees
/// Idempotent. No password is written into any configuration file.
pub async fn write_standby_config(context: &Context<'_>) -> Result<(), ActionError> {
    let replica = replica(context)?;
    let cluster = context.cluster()?;
    write_passfile(context, replica).await?;
    let superuser = context.superuser_password().await?;
    let home = desired::home(&replica.data_dir);
    context
        .write(
            &replica.host,
            &home.join(desired::SUPERUSER_PASSWORD_FILE),
            format!("{}\n", superuser.expose()).as_bytes(),
            0o600,
        )
        .await?;
    context.write(&replica.host, &replica.data_dir.join("standby.signal"), b"", 0o600).await?;
    write_settings_offline(context, &cluster, &desired::replica_settings(context.environment, replica)).await
}

/// Waits until the primary's `pg_stat_replication` shows the replica
/// streaming.
pub async fn wait_streaming(context: &Context<'_>) -> Result<(), ActionError> {
    let replica = replica(context)?;
    let client = context.superuser(&context.primary()).await?;
    let started = Instant::now();
    loop {
        let streaming: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming')",
                &[&replica.name],
            )
            .await
            .map_err(context.query_error("read pg_stat_replication"))?
            .get(0);
        if streaming {
            return Ok(());
        }
        if started.elapsed() > STREAMING_TIMEOUT {
            return Err(ActionError::Timeout {
                address: context.address.to_string(),
                step: "waiting for streaming",
                waited: STREAMING_TIMEOUT,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
