//! Building a streaming replica: base backup, standby configuration, and
//! waiting until the primary sees it streaming.

use std::time::{Duration, Instant};

use super::cluster::write_settings_offline;
use super::context::{ActionError, Context, LONG_STEP};
use crate::desired;
use crate::placement::ClusterPlacement;
use crate::runtime::BackupSource;
use crate::topology::Replica;

/// How long a new replica may take to reach `streaming`.
pub const STREAMING_TIMEOUT: Duration = Duration::from_secs(300);

/// The replica `member` of the configuration.
fn replica<'a>(context: &'a Context<'_>, member: &str) -> Result<&'a Replica, ActionError> {
    context.replica(member)
}

/// Writes the replica's passfile (0600): the replication password for the
/// primary, and nothing else.
async fn write_passfile(
    context: &Context<'_>,
    replica: &Replica,
    cluster: &ClusterPlacement,
) -> Result<(), ActionError> {
    let password = context.role_password(&context.environment.replication.user).await?;
    let line = desired::passfile(context.environment, replica, &password);
    context.ensure_dir(&cluster.host, &cluster.layout.home).await?;
    context.write(&cluster.host, &cluster.layout.passfile(), line.as_bytes(), 0o600).await
}

/// Copies the primary's data directory with `pg_basebackup -X stream -S
/// SLOT`, run on the replica's host.
///
/// # Guarantees
/// Idempotent: an initialised data directory is left alone. The copy goes
/// to a temporary directory renamed into place when complete, so a run
/// killed half-way leaves no half-copied data directory. The password
/// reaches pg_basebackup through the passfile, never a command line.
pub async fn base_backup(context: &Context<'_>, member: &str, slot: &str) -> Result<(), ActionError> {
    let replica = replica(context, member)?;
    let cluster = context.member(member)?;
    write_passfile(context, replica, &cluster).await?;
    let (address, port) = desired::upstream(context.environment, replica);
    let source = BackupSource { address: &address, port, user: &context.environment.replication.user, slot };
    let script = cluster.runtime().base_backup(&cluster.layout, cluster.port, source);
    context.run(&cluster.host, "pg_basebackup", &script, LONG_STEP).await?;
    Ok(())
}

/// standby.signal, the passfile, pgfleet's hba block, and the replica's settings (its address,
/// `primary_conninfo` with `passfile=`, slot, `hot_standby_feedback`) in
/// postgresql.auto.conf; the passwords pgfleet keeps beside the primary
/// (the superuser's, generated roles') beside it too, so pgfleet logs in
/// to it the same way and it can take the primary role with them.
///
/// # Guarantees
/// Idempotent. No password is written into any configuration file.
pub async fn write_standby_config(context: &Context<'_>, member: &str) -> Result<(), ActionError> {
    let replica = replica(context, member)?;
    let cluster = context.member(member)?;
    write_passfile(context, replica, &cluster).await?;
    // The kept passwords too, so the replica can take the primary role with
    // them even when the primary's host is lost.
    super::promotion::copy_secrets(context, member).await?;
    context.write(&cluster.host, &cluster.data_dir().join("standby.signal"), b"", 0o600).await?;
    // The primary's block came with the base backup where pg_hba.conf lives
    // in the data directory; where the runtime keeps it elsewhere (Debian's
    // /etc/postgresql) it did not. Either way the replica holds pgfleet's
    // block, ready to serve as a primary.
    super::cluster::write_hba(context, member).await?;
    write_settings_offline(context, &cluster, &desired::replica_settings(context.environment, replica)).await
}

/// Waits until the primary's `pg_stat_replication` shows the replica
/// streaming.
pub async fn wait_streaming(context: &Context<'_>, member: &str) -> Result<(), ActionError> {
    let replica = replica(context, member)?;
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
