//! Moving the primary role: the steps of a switchover and a failover
//! (checkpoint, pause the application's pool, stop, check the candidate
//! replayed the old primary's shutdown checkpoint, promote, resume, fence,
//! rejoin). Each checks its own result and is safe to run again: an
//! operation killed half-way is finished by running its steps again.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::context::{ActionError, Context, LONG_STEP, STEP};
use crate::observe::cluster::lsn_bytes;
use crate::placement::ClusterPlacement;
use crate::transport::shell_quote;

/// How long PAUSE may wait for the application's transactions to end.
pub const PAUSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the candidate may take to replay the old primary's last WAL.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a running standby may take to follow a new primary.
pub const FOLLOW_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `pg_promote` may take.
pub const PROMOTE_TIMEOUT_SECONDS: i32 = 60;

/// `CHECKPOINT` on the member, so its shutdown checkpoint is short.
pub async fn checkpoint(context: &Context<'_>, member: &str) -> Result<(), ActionError> {
    let cluster = context.member(member)?;
    let client = context.superuser(&cluster).await?;
    client.simple_query("CHECKPOINT").await.map_err(context.query_error("CHECKPOINT"))?;
    Ok(())
}

/// The pooler's admin console, as `postgres` with the primary's superuser
/// password (read, never generated here).
async fn console(context: &Context<'_>, fronts: &str) -> Result<Client, ActionError> {
    let place = context.pooler(fronts)?;
    let primary = context.primary();
    let password = context
        .read(&primary.host, &primary.layout.superuser_password_file())
        .await?
        .map(|bytes| String::from_utf8_lossy(&bytes).trim_end_matches(['\n', '\r']).to_owned());
    let target = crate::sql::SqlTarget {
        address: &place.address,
        port: place.port,
        user: "postgres",
        database: "pgbouncer",
        password: password.as_deref(),
    };
    Ok(crate::sql::connect(context.remote(&place.host)?, target).await?)
}

/// Whether the pooler holds database `name` paused.
async fn paused(context: &Context<'_>, client: &Client, name: &str) -> Result<bool, ActionError> {
    let status = crate::observe::pooler::status(client).await.map_err(context.query_error("SHOW DATABASES"))?;
    Ok(status.databases.iter().any(|database| database.name == name && database.paused))
}

/// `PAUSE` of the application's database on the pooler: new transactions
/// wait, those in flight finish (bounded by `PAUSE_TIMEOUT`; on timeout the
/// database is resumed and the step fails, nothing changed).
///
/// # Guarantees
/// Idempotent: a database paused already is left paused.
pub async fn pause(context: &Context<'_>, fronts: &str) -> Result<(), ActionError> {
    let database = &context.environment.database.name;
    let client = console(context, fronts).await?;
    if paused(context, &client, database).await? {
        return Ok(());
    }
    match tokio::time::timeout(PAUSE_TIMEOUT, client.simple_query(&format!("PAUSE {database}"))).await {
        Ok(result) => {
            result.map_err(context.query_error("PAUSE"))?;
            Ok(())
        }
        Err(_) => {
            let other = console(context, fronts).await?;
            other.simple_query(&format!("RESUME {database}")).await.map_err(context.query_error("RESUME"))?;
            Err(ActionError::Timeout {
                address: context.address.to_string(),
                step: "PAUSE (transactions still running; resumed, nothing changed)",
                waited: PAUSE_TIMEOUT,
            })
        }
    }
}

/// `RESUME` of the application's database; with `sessions`, the session
/// pool's clients (Odoo's `LISTEN` connections to `postgres`) are dropped
/// (`KILL`, then `RESUME`) so they reconnect to where the pooler points now.
///
/// # Guarantees
/// Idempotent: a database not paused is left alone.
pub async fn resume(context: &Context<'_>, fronts: &str, sessions: bool, application: bool) -> Result<(), ActionError> {
    let database = &context.environment.database.name;
    let client = console(context, fronts).await?;
    if application {
        client.simple_query(&format!("KILL {database}")).await.map_err(context.query_error("KILL"))?;
        client.simple_query(&format!("RESUME {database}")).await.map_err(context.query_error("RESUME"))?;
    } else if paused(context, &client, database).await? {
        client.simple_query(&format!("RESUME {database}")).await.map_err(context.query_error("RESUME"))?;
    }
    if sessions {
        client.simple_query("KILL postgres").await.map_err(context.query_error("KILL postgres"))?;
        client.simple_query("RESUME postgres").await.map_err(context.query_error("RESUME postgres"))?;
    }
    Ok(())
}

/// `pg_controldata` of a stopped member: its cluster state and latest
/// checkpoint location.
async fn control_data(context: &Context<'_>, cluster: &ClusterPlacement) -> Result<(String, u64), ActionError> {
    let program = cluster.runtime().controldata(cluster.version);
    let command = format!(
        "LC_ALL=C {} -D {}",
        shell_quote(&program.to_string_lossy()),
        shell_quote(&cluster.data_dir().to_string_lossy())
    );
    let output = context.run(&cluster.host, "pg_controldata", &command, STEP).await?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let field = |name: &str| {
        text.lines().find_map(|line| line.strip_prefix(name).map(|rest| rest.trim_start_matches(':').trim().to_owned()))
    };
    let state = field("Database cluster state").unwrap_or_default();
    let location =
        field("Latest checkpoint location").as_deref().and_then(lsn_bytes).ok_or_else(|| ActionError::Refused {
            address: context.address.to_string(),
            reason: "pg_controldata shows no latest checkpoint location".into(),
        })?;
    Ok((state, location))
}

/// The standby's replay position, in bytes.
async fn replay_position(context: &Context<'_>, client: &Client) -> Result<Option<u64>, ActionError> {
    let row = client
        .query_one("SELECT pg_last_wal_replay_lsn()::text", &[])
        .await
        .map_err(context.query_error("read the replay position"))?;
    Ok(row.get::<_, Option<String>>(0).as_deref().and_then(lsn_bytes))
}

/// Waits until `member` has replayed past the shutdown checkpoint of the
/// stopped `from`: every commit of the old primary is on the candidate
/// (RPO 0, checked). Fails when `from` was not shut down cleanly.
pub async fn wait_replayed(context: &Context<'_>, member: &str, from: &str) -> Result<u64, ActionError> {
    let old = context.member(from)?;
    let (state, checkpoint) = control_data(context, &old).await?;
    if state != "shut down" {
        return Err(ActionError::Refused {
            address: context.address.to_string(),
            reason: format!("the old primary's cluster state is `{state}`, not `shut down`: its last WAL is unknown"),
        });
    }
    let candidate = context.member(member)?;
    let client = context.superuser(&candidate).await?;
    let started = Instant::now();
    loop {
        let replayed = replay_position(context, &client).await?.unwrap_or(0);
        if replayed > checkpoint {
            return Ok(checkpoint);
        }
        if started.elapsed() > CATCH_UP_TIMEOUT {
            return Err(ActionError::Refused {
                address: context.address.to_string(),
                reason: format!(
                    "the candidate replayed up to byte {replayed}, not past the old primary's shutdown checkpoint at byte {checkpoint}, within {} s",
                    CATCH_UP_TIMEOUT.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn in_recovery(context: &Context<'_>, client: &Client) -> Result<bool, ActionError> {
    Ok(client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(context.query_error("read pg_is_in_recovery()"))?
        .get(0))
}

/// `pg_promote(wait => true)` on the member, then checks that it accepts
/// writes (`pg_is_in_recovery() = f`, `transaction_read_only = off`).
///
/// # Guarantees
/// Idempotent: a member out of recovery already is only checked.
pub async fn promote(context: &Context<'_>, member: &str) -> Result<(), ActionError> {
    let cluster = context.member(member)?;
    let client = context.superuser(&cluster).await?;
    if in_recovery(context, &client).await? {
        let promoted: bool = client
            .query_one(&format!("SELECT pg_promote(true, {PROMOTE_TIMEOUT_SECONDS})"), &[])
            .await
            .map_err(context.query_error("pg_promote"))?
            .get(0);
        if !promoted {
            return Err(ActionError::Timeout {
                address: context.address.to_string(),
                step: "pg_promote",
                waited: Duration::from_secs(PROMOTE_TIMEOUT_SECONDS.unsigned_abs().into()),
            });
        }
    }
    let client = context.superuser(&cluster).await?;
    let read_only: String = client
        .query_one("SELECT current_setting('transaction_read_only')", &[])
        .await
        .map_err(context.query_error("read transaction_read_only"))?
        .get(0);
    if in_recovery(context, &client).await? || read_only != "off" {
        return Err(ActionError::Refused {
            address: context.address.to_string(),
            reason: format!("after pg_promote the member still refuses writes (transaction_read_only = {read_only})"),
        });
    }
    Ok(())
}

/// Restarts the old primary as primary after a switchover failed before
/// the promotion — unless the candidate accepts writes (then starting the
/// old one would make two primaries, and this refuses).
pub async fn start_unless_promoted(context: &Context<'_>, member: &str, candidate: &str) -> Result<(), ActionError> {
    let taker = context.member(candidate)?;
    if let Ok(client) = context.superuser(&taker).await
        && !in_recovery(context, &client).await?
    {
        return Err(ActionError::Refused {
            address: context.address.to_string(),
            reason: format!(
                "`{candidate}` accepts writes already: the old primary stays stopped (run the switchover again to finish it)"
            ),
        });
    }
    super::cluster::start(context, member).await
}

/// Stops the member if it runs (it must not accept another write) and
/// leaves a standby.signal in its data directory, so that whatever starts
/// it again — a stale service, a hand — starts a read-only standby.
///
/// # Errors
/// When it still runs after the stop: the failover must not go on.
pub async fn fence(context: &Context<'_>, member: &str) -> Result<(), ActionError> {
    let cluster = context.member(member)?;
    if context.running(&cluster).await? {
        context.run(&cluster.host, "stop the old primary", &cluster.runtime().stop(&cluster.layout), STEP).await?;
    }
    if context.running(&cluster).await? {
        return Err(ActionError::Refused {
            address: context.address.to_string(),
            reason: "the old primary still runs after the stop: pgfleet does not promote beside it".into(),
        });
    }
    context.write(&cluster.host, &cluster.data_dir().join("standby.signal"), b"", 0o600).await
}

/// Copies the secrets pgfleet keeps beside the primary (the superuser's
/// and generated role passwords) to `member`'s home, so that it can hold
/// the role with the same ones.
///
/// # Guarantees
/// Idempotent; the secrets travel as file contents, never on a command line.
pub async fn copy_secrets(context: &Context<'_>, member: &str) -> Result<(), ActionError> {
    let primary = context.primary();
    let target = context.member(member)?;
    let environment = context.environment;
    let files = [
        primary.layout.superuser_password_file(),
        primary.layout.role_password_file(&environment.database.owner),
        primary.layout.role_password_file(&environment.replication.user),
    ];
    context.ensure_dir(&target.host, &target.layout.home).await?;
    for file in files {
        let Some(name) = file.file_name() else { continue };
        if let Some(contents) = context.read(&primary.host, &file).await? {
            context.write(&target.host, &target.layout.home.join(name), &contents, 0o600).await?;
        }
    }
    Ok(())
}

/// The old primary rejoins as a standby of the current one: with `rewind`
/// (after a failover, when its timeline may have diverged) `pg_rewind`
/// first; then its own slots are dropped (they would retain WAL on a
/// standby), the standby configuration written, and it starts and streams.
///
/// # Guarantees
/// Idempotent: a member that runs as a standby already is only
/// reconfigured and waited for. One that runs as a primary is refused.
pub async fn rejoin(context: &Context<'_>, member: &str, rewind: bool) -> Result<(), ActionError> {
    let cluster = context.member(member)?;
    if context.running(&cluster).await? {
        let client = context.superuser(&cluster).await?;
        if !in_recovery(context, &client).await? {
            return Err(ActionError::Refused {
                address: context.address.to_string(),
                reason: format!("`{member}` runs as a primary: it cannot rejoin until it is stopped"),
            });
        }
        super::replica::write_standby_config(context, member).await?;
        client.simple_query("SELECT pg_reload_conf()").await.map_err(context.query_error("pg_reload_conf"))?;
        // A standby that received WAL past the new primary's fork point
        // (its old upstream wrote on after the promotion) cannot follow:
        // with `rewind` it is stopped and rewound like the old primary.
        match wait_on_primary_timeline(context, &cluster, FOLLOW_TIMEOUT).await {
            Ok(()) => return Ok(()),
            Err(error) if !rewind => return Err(error),
            Err(_) => {
                context
                    .run(&cluster.host, "stop the diverged standby", &cluster.runtime().stop(&cluster.layout), STEP)
                    .await?;
            }
        }
    }
    let data_dir = shell_quote(&cluster.data_dir().to_string_lossy());
    if rewind && let Err(failed) = rewind_from_primary(context, &cluster).await {
        // pg_rewind needs the old primary's WAL back to the last common
        // checkpoint, which it may have recycled. Then the data directory
        // is moved aside (its last writes kept for whoever needs them, not
        // removed) and the member is copied afresh from the new primary.
        let aside = format!(
            "{}.diverged-{}",
            cluster.data_dir().display(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
        );
        let why = crate::observe::error_chain(&failed);
        let note = cluster.layout.home.join("diverged.txt");
        let record = format!("{aside}: kept when pg_rewind could not rewind it at {}: {why}\n", crate::state::now());
        let command = format!(
            "mv -- {data_dir} {} && printf '%s' {} >> {}",
            shell_quote(&aside),
            shell_quote(&record),
            shell_quote(&note.to_string_lossy())
        );
        context.run(&cluster.host, "move the diverged data directory aside", &command, STEP).await?;
        let slot = context.replica(member)?.slot.clone();
        super::replica::base_backup(context, member, &slot).await?;
    }
    context
        .run(&cluster.host, "drop the old primary's slots", &format!("rm -rf {data_dir}/pg_replslot/*"), STEP)
        .await?;
    super::replica::write_standby_config(context, member).await?;
    super::cluster::start(context, member).await?;
    super::replica::wait_streaming(context, member).await?;
    wait_on_primary_timeline(context, &cluster, CATCH_UP_TIMEOUT).await
}

/// Waits until the standby receives the current primary's timeline: a
/// standby whose history forked off it connects, streams for a moment and
/// is turned away, so "streaming" alone does not say it rejoined.
async fn wait_on_primary_timeline(
    context: &Context<'_>,
    cluster: &ClusterPlacement,
    timeout: Duration,
) -> Result<(), ActionError> {
    let primary = context.superuser(&context.primary()).await?;
    primary.simple_query("CHECKPOINT").await.map_err(context.query_error("CHECKPOINT"))?;
    let timeline: i32 = primary
        .query_one("SELECT timeline_id FROM pg_control_checkpoint()", &[])
        .await
        .map_err(context.query_error("read the primary's timeline"))?
        .get(0);
    let standby = context.superuser(cluster).await?;
    let started = Instant::now();
    loop {
        let received: Option<i32> = standby
            .query_opt("SELECT received_tli FROM pg_stat_wal_receiver WHERE status = 'streaming'", &[])
            .await
            .map_err(context.query_error("read pg_stat_wal_receiver"))?
            .and_then(|row| row.get(0));
        if received == Some(timeline) {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(ActionError::Refused {
                address: context.address.to_string(),
                reason: format!(
                    "it does not stream the primary's timeline {timeline} (it receives {}): its history diverged; \
                     rebuild it with `pgfleet apply --replace {}`",
                    received.map_or_else(|| "nothing".to_owned(), |found| format!("timeline {found}")),
                    context.address
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `pg_rewind` of the stopped member from the current primary, with the
/// superuser password in a passfile that is removed afterwards.
async fn rewind_from_primary(context: &Context<'_>, cluster: &ClusterPlacement) -> Result<(), ActionError> {
    let primary = context.primary();
    // pg_rewind reads the source's timeline from its control file, which a
    // promoted server updates only at its next checkpoint.
    let client = context.superuser(&primary).await?;
    client.simple_query("CHECKPOINT").await.map_err(context.query_error("CHECKPOINT"))?;
    let password = context.superuser_password().await?;
    let passfile = cluster.layout.home.join("rewind.pgpass");
    let field = |value: &str| value.replace('\\', "\\\\").replace(':', "\\:");
    let line = format!("{}:{}:*:postgres:{}\n", field(&primary.address), primary.port, field(password.expose()));
    context.write(&cluster.host, &passfile, line.as_bytes(), 0o600).await?;
    let source = format!(
        "host={} port={} user=postgres dbname=postgres passfile={}",
        primary.address,
        primary.port,
        passfile.display()
    );
    let Some(script) = cluster.runtime().rewind(&cluster.layout, &source) else {
        return Err(ActionError::Refused {
            address: context.address.to_string(),
            reason: format!(
                "`runtime: {}` runs no pg_rewind here: rebuild the old primary with `pgfleet apply --replace {}`",
                cluster.runtime().name(),
                context.address
            ),
        });
    };
    // A fenced data directory holds a standby.signal, which single-user
    // crash recovery (pg_rewind's, after an immediate stop) refuses.
    let data_dir = shell_quote(&cluster.data_dir().to_string_lossy());
    let script = format!("rm -f {data_dir}/standby.signal && {script}");
    let result = context.run(&cluster.host, "pg_rewind", &script, LONG_STEP).await;
    let remove = format!("rm -f {}", shell_quote(&passfile.to_string_lossy()));
    context.run(&cluster.host, "remove the rewind passfile", &remove, STEP).await?;
    result.map(|_| ())
}
