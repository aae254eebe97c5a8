//! The helpers a replica's host keeps for it: the SSH tunnel to its primary
//! and the filestore mirror. Both use a key generated on the replica's host
//! as the service user (only its public half is ever read), authorized in
//! a block of its own on the primary's host, and the primary host's sshd
//! key pinned from pgfleet's own known_hosts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::context::{ActionError, Context, LONG_STEP, STEP};
use crate::address::Kind;
use crate::desired::{filestore, tunnel};
use crate::supervise::{Helper, Recurring};
use crate::topology::{Host, Replica};
use crate::transport::shell_quote;

/// How long a started tunnel may take to answer at its local end.
pub const TUNNEL_TIMEOUT: Duration = Duration::from_secs(30);

fn refused(context: &Context<'_>, reason: impl Into<String>) -> ActionError {
    ActionError::Refused { address: context.address.to_string(), reason: reason.into() }
}

fn primary_host<'a>(context: &'a Context<'_>) -> Result<&'a Host, ActionError> {
    let name = &context.environment.primary.host;
    context.topology.hosts.get(name).ok_or_else(|| refused(context, format!("host `{name}` is not configured")))
}

/// Where a helper of replica `name` lives: from the configuration, or for
/// one that left it, from what state recorded.
fn site(context: &Context<'_>, name: &str, what: &str) -> Result<(String, PathBuf), ActionError> {
    if let Some(replica) = context.environment.replicas.iter().find(|replica| replica.name == name) {
        return Ok((replica.host.clone(), tunnel::helper_dir(context.environment, replica, what)));
    }
    context
        .owned
        .and_then(|owned| Some((owned.host.clone(), owned.path.clone()?)))
        .ok_or_else(|| refused(context, format!("replica `{name}` is not in the configuration nor in state")))
}

/// The directory, the key (generated when missing) and the pinned
/// known_hosts on the replica's host; returns the key's public half.
async fn prepare(context: &Context<'_>, replica: &Replica, dir: &Path) -> Result<String, ActionError> {
    let host = primary_host(context)?;
    let Some((target, _)) = tunnel::ssh_login(host) else {
        return Err(refused(context, format!("host `{}` is not reached over SSH", host.name)));
    };
    context.ensure_dir(&replica.host, dir).await?;
    let key = shell_quote(&tunnel::key_file(dir).to_string_lossy());
    let comment = shell_quote(&format!("pgfleet {}", context.address));
    let output = context
        .run(
            &replica.host,
            "generate the helper's key",
            &format!("[ -f {key} ] || ssh-keygen -q -t ed25519 -N '' -C {comment} -f {key} </dev/null; cat {key}.pub"),
            STEP,
        )
        .await?;
    let public_key = output.stdout_text().trim().to_owned();
    let keys = crate::transport::ssh::pinned_host_keys(&host.name, target)
        .map_err(|error| refused(context, format!("cannot pin the host key of `{}`: {error}", host.name)))?;
    if keys.is_empty() {
        return Err(refused(context, format!("pgfleet's known_hosts holds no key for host `{}`", host.name)));
    }
    context
        .write(&replica.host, &dir.join("known_hosts"), tunnel::known_hosts(target, &keys).as_bytes(), 0o600)
        .await?;
    Ok(public_key)
}

async fn authorize(context: &Context<'_>, line: &str) -> Result<(), ActionError> {
    let host = primary_host(context)?;
    let script = tunnel::edit_authorization(host, &context.address.to_string(), line);
    context.run(&host.name, "edit authorized_keys", &script, STEP).await?;
    Ok(())
}

fn tunnel_helper<'a>(name: &'a str, dir: &'a Path, program: &'a Path) -> Helper<'a> {
    Helper { name, dir, program }
}

/// Key, pinned host key, authorization on the primary's host (forwarding
/// to the primary's address and port only), and the tunnel's program.
///
/// # Guarantees
/// Idempotent: an existing key is kept; the authorization block is
/// replaced, never doubled. No private key is read or copied.
pub async fn write_tunnel(context: &Context<'_>, name: &str) -> Result<(), ActionError> {
    let replica = context.replica(name)?;
    let dir = tunnel::helper_dir(context.environment, replica, "tunnel");
    let public_key = prepare(context, replica, &dir).await?;
    authorize(context, &tunnel::tunnel_authorization(context.environment, &public_key)).await?;
    let program =
        tunnel::tunnel_program(&context.address.to_string(), context.environment, replica, primary_host(context)?)
            .ok_or_else(|| refused(context, "the primary's host is not reached over SSH"))?;
    context.write(&replica.host, &dir.join("tunnel.sh"), program.as_bytes(), 0o700).await
}

/// Starts the tunnel's supervisor (restarting it with `restart`) and waits
/// until the local end answers.
///
/// # Guarantees
/// Idempotent: a running tunnel is left alone unless `restart`.
pub async fn start_tunnel(context: &Context<'_>, name: &str, restart: bool) -> Result<(), ActionError> {
    let replica = context.replica(name)?;
    let dir = tunnel::helper_dir(context.environment, replica, "tunnel");
    let program = dir.join("tunnel.sh");
    let unit = tunnel::unit_name("tunnel", &context.environment.id, name);
    let helper = tunnel_helper(&unit, &dir, &program);
    context.run(&replica.host, "start the tunnel", &helper.start(restart), STEP).await?;
    let (address, port) = tunnel::local_end(replica);
    let started = Instant::now();
    let remote = context.remote(&replica.host)?;
    loop {
        if let Ok(Ok(_stream)) = tokio::time::timeout(Duration::from_secs(5), remote.connect_tcp(&address, port)).await
        {
            return Ok(());
        }
        if started.elapsed() > TUNNEL_TIMEOUT {
            let log = context
                .run(
                    &replica.host,
                    "read the tunnel's log",
                    &format!("tail -n 5 {}/supervise.log 2>/dev/null || true", shell_quote(&dir.to_string_lossy())),
                    STEP,
                )
                .await
                .map(|output| output.stdout_text().trim().to_owned())
                .unwrap_or_default();
            return Err(refused(
                context,
                format!(
                    "the tunnel's local end {address}:{port} did not answer within {} s; its log: {log}",
                    TUNNEL_TIMEOUT.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops a helper (tunnel or mirror schedule), removes its directory and
/// its authorization on the primary's host. The mirrored files stay.
///
/// # Guarantees
/// Idempotent.
pub async fn remove_helper(context: &Context<'_>, name: &str) -> Result<(), ActionError> {
    let what = context.address.kind.as_str();
    let (host, dir) = site(context, name, what)?;
    let unit = tunnel::unit_name(what, &context.environment.id, name);
    let stop = if context.address.kind == Kind::Tunnel {
        tunnel_helper(&unit, &dir, &dir.join("tunnel.sh")).stop()
    } else {
        let program = filestore::job_file(&dir);
        Recurring { name: &unit, dir: &dir, program: &program, every_seconds: 60 }.remove()
    };
    context.run(&host, "stop the helper", &stop, STEP).await?;
    context
        .run(&host, "remove the helper's files", &format!("rm -rf {}", shell_quote(&dir.to_string_lossy())), STEP)
        .await?;
    authorize(context, "").await
}

/// The mirror's key, pinned host key, authorization and job script.
///
/// # Guarantees
/// Idempotent. The job never deletes on the replica's side unless
/// `delete: true`.
pub async fn write_mirror(context: &Context<'_>, name: &str, sudo_rsync: bool) -> Result<(), ActionError> {
    let replica = context.replica(name)?;
    let Some(mirror) = &context.environment.filestore else { return Err(refused(context, "no filestore configured")) };
    let dir = filestore::dir(context.environment, replica);
    let public_key = prepare(context, replica, &dir).await?;
    authorize(context, &filestore::authorization(&public_key)).await?;
    let job = filestore::job(
        &context.address.to_string(),
        context.environment,
        mirror,
        replica,
        primary_host(context)?,
        sudo_rsync,
    )
    .ok_or_else(|| refused(context, "the primary's host is not reached over SSH"))?;
    context.write(&replica.host, &filestore::job_file(&dir), job.as_bytes(), 0o700).await
}

/// Runs the job once (the seed), which takes the same lock as the
/// recurring runs; waits for one already running rather than failing.
pub async fn seed_mirror(context: &Context<'_>, name: &str) -> Result<(), ActionError> {
    let replica = context.replica(name)?;
    let dir = filestore::dir(context.environment, replica);
    let job = shell_quote(&filestore::job_file(&dir).to_string_lossy());
    // A run already going holds the lock: wait for it, then run.
    let command = format!(
        "while :; do /bin/sh {job}; rc=$?; [ $rc -eq {locked} ] || exit $rc; sleep 1; done",
        locked = filestore::LOCKED
    );
    context.run(&replica.host, "seed the filestore mirror", &command, LONG_STEP).await?;
    Ok(())
}

/// Installs the recurring job (cron, a systemd timer, or a supervised loop).
pub async fn schedule_mirror(context: &Context<'_>, name: &str) -> Result<(), ActionError> {
    let replica = context.replica(name)?;
    let Some(mirror) = &context.environment.filestore else { return Err(refused(context, "no filestore configured")) };
    let dir = filestore::dir(context.environment, replica);
    let program = filestore::job_file(&dir);
    let unit = tunnel::unit_name("filestore", &context.environment.id, name);
    let every = Recurring { name: &unit, dir: &dir, program: &program, every_seconds: mirror.every.seconds() };
    context.run(&replica.host, "schedule the filestore mirror", &every.install(), STEP).await?;
    Ok(())
}
