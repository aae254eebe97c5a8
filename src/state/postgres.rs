//! The postgres state backend: the state in tables of a PostgreSQL database
//! a team chooses (`state.url`), with one advisory lock per environment, so
//! that pipelines on many machines share one state and apply different
//! environments at the same time.
//!
//! # Tables (schema `pgfleet_state`, created on first use)
//!
//! - `schema_version (version)`: one row, the layout below ([`SCHEMA_VERSION`]).
//!   A pgfleet that finds a newer version refuses to read or write.
//! - `states (name, lineage, serial, format_version, …)`: one row per state,
//!   keyed by its name (the organisation's), so one database can hold the
//!   states of several organisations. `serial` counts every write of any
//!   environment; `lineage` is the state's identity.
//! - `environments (name, environment, serial, part)`: one row per
//!   environment of a state. `part` (jsonb) holds what pgfleet owns in that
//!   environment, that environment's journal, and the spec that last
//!   applied it; `serial` counts that row's writes.
//! - `locks (name, environment, backend_pid, holder)`: who took each
//!   environment's lock (user@host, pid, command, since), for `state list`
//!   and the error of whoever waits. A record is only a label: the advisory
//!   lock is the lock, and a record whose session no longer holds it is a
//!   leftover that the next holder overwrites (or `state unlock` clears).
//!
//! # Locks
//!
//! Each environment has its own session-level advisory lock,
//! `pg_try_advisory_lock(key1, key2)`, taken on a connection pgfleet keeps
//! open for the whole command: when the process dies, however it dies, its
//! connection closes and PostgreSQL frees the lock with it (the lock session
//! sets `tcp_keepalives_*` so that a runner whose machine vanished is
//! noticed within about a minute, and `idle_session_timeout = 0` so a long
//! apply is not cut off). The keys are the first eight bytes of
//! `sha256("pgfleet state lock" NUL name NUL environment)`, read as two
//! big-endian int4s ([`advisory_keys`]): stable across pgfleet versions,
//! machines and PostgreSQL versions (unlike `hashtext`), and 64 bits wide,
//! so two environments practically never share a lock (if they did, they
//! would only wait for each other). In `pg_locks` they show as `classid`,
//! `objid` with `objsubid = 2`. Another program taking two-key advisory
//! locks in the same database could meet them: give the state a database of
//! its own, or one such programs do not use.
//!
//! # Writes: per-environment parts, each with its own serial
//!
//! Two applies on different environments hold different locks and write
//! the one state at the same time. Neither may lose the other's records, and
//! neither may merge over a change it did not see. So a write never replaces
//! the whole state: it writes only the environments its lock covers, each
//! as its own row, in one transaction that
//!
//! 1. locks the state's `states` row (`SELECT … FOR UPDATE`): writes of one
//!    state are serialised for the few milliseconds they take, and the
//!    stored lineage must be the writer's;
//! 2. for each covered environment, reads its row's serial under that lock
//!    and refuses the whole write if it is not the serial the writer read
//!    (a stale writer is refused, never merged);
//! 3. replaces those rows (serial + 1) and increments the state's serial.
//!
//! Records of environments the lock does not cover are neither written nor
//! checked: they belong to whoever holds those locks. A write runs on the
//! lock's own session, so one whose session was lost (and with it the lock)
//! writes nothing.
//!
//! Reading assembles the whole state from one snapshot (REPEATABLE READ):
//! ownership is the union of the parts; the journal interleaves them by
//! time, each environment's entries kept in their own order; the last
//! applied spec is that of the environment written last.
//!
//! The url is a secret (it may hold a password): it is handed to
//! tokio-postgres and never formatted. Places are named by user, host, port
//! and database only, and every error from the driver is scrubbed of the url
//! and the password before it is shown. The connection is plain TCP or a
//! Unix socket: TLS is not supported yet.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, IsolationLevel, NoTls, Transaction};

use super::local::random_lineage;
use super::store::{HeldLock, Imported, LockScope, Pending, Serials, StateLock, StateStore, Unlocked};
use super::{FORMAT_VERSION, JournalEntry, LockHolder, Owned, State, StateError};
use crate::address::Address;
use crate::observe::error_chain as chain;
use crate::topology::StateSettings;

/// The layout of the tables this pgfleet reads and writes.
pub const SCHEMA_VERSION: i32 = 1;

/// How often a waiting `lock` tries again.
const LOCK_RETRY: Duration = Duration::from_millis(100);

/// Connecting, unless the url says otherwise (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS pgfleet_state;
CREATE TABLE IF NOT EXISTS pgfleet_state.schema_version (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS pgfleet_state.states (
    name text PRIMARY KEY,
    lineage text NOT NULL,
    serial bigint NOT NULL DEFAULT 0,
    format_version integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS pgfleet_state.environments (
    name text NOT NULL REFERENCES pgfleet_state.states (name),
    environment text NOT NULL,
    serial bigint NOT NULL,
    part jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, environment)
);
CREATE TABLE IF NOT EXISTS pgfleet_state.locks (
    name text NOT NULL,
    environment text NOT NULL,
    backend_pid integer NOT NULL,
    holder jsonb NOT NULL,
    PRIMARY KEY (name, environment)
);
";

const SCHEMA_EXISTS: &str = "SELECT to_regclass('pgfleet_state.schema_version') IS NOT NULL";
const SCHEMA_VERSION_QUERY: &str = "SELECT max(version) FROM pgfleet_state.schema_version";
const RECORD_VERSION: &str = "INSERT INTO pgfleet_state.schema_version (version) \
     SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM pgfleet_state.schema_version)";
const CREATE_STATE: &str = "INSERT INTO pgfleet_state.states (name, lineage, serial, format_version) \
     VALUES ($1, $2, 0, $3) ON CONFLICT (name) DO NOTHING";
const READ_STATE: &str = "SELECT lineage, serial, format_version FROM pgfleet_state.states WHERE name = $1";
const LOCK_STATE_ROW: &str = "SELECT lineage FROM pgfleet_state.states WHERE name = $1 FOR UPDATE";
/// Oldest write first: the last applied spec is the latest's.
const READ_PARTS: &str = "SELECT environment, serial, part::text FROM pgfleet_state.environments \
     WHERE name = $1 ORDER BY updated_at, environment";
const LOCK_PART: &str = "SELECT serial FROM pgfleet_state.environments WHERE name = $1 AND environment = $2 FOR UPDATE";
const WRITE_PART: &str = "INSERT INTO pgfleet_state.environments (name, environment, serial, part, updated_at) \
     VALUES ($1, $2, $3, $4::text::jsonb, clock_timestamp()) \
     ON CONFLICT (name, environment) DO UPDATE \
     SET serial = EXCLUDED.serial, part = EXCLUDED.part, updated_at = EXCLUDED.updated_at";
const BUMP_STATE: &str = "UPDATE pgfleet_state.states SET serial = serial + 1, format_version = $2, updated_at = now() \
     WHERE name = $1 RETURNING serial";
const REPLACE_STATE: &str = "UPDATE pgfleet_state.states \
     SET lineage = $2, serial = $3, format_version = $4, updated_at = now() WHERE name = $1";
const TRY_LOCK: &str = "SELECT pg_try_advisory_lock($1, $2)";
const UNLOCK: &str = "SELECT pg_advisory_unlock($1, $2)";
const RECORD_HOLDER: &str = "INSERT INTO pgfleet_state.locks (name, environment, backend_pid, holder) \
     VALUES ($1, $2, pg_backend_pid(), $3::text::jsonb) \
     ON CONFLICT (name, environment) DO UPDATE SET backend_pid = EXCLUDED.backend_pid, holder = EXCLUDED.holder";
const READ_HOLDERS: &str = "SELECT environment, backend_pid, holder::text FROM pgfleet_state.locks WHERE name = $1";
const KNOWN_ENVIRONMENTS: &str = "SELECT environment FROM pgfleet_state.environments WHERE name = $1 \
     UNION SELECT environment FROM pgfleet_state.locks WHERE name = $1";
/// Two-key advisory locks granted in this database, as `pg_locks` shows them.
const HELD_ADVISORY: &str = "SELECT classid, objid, pid FROM pg_locks \
     WHERE locktype = 'advisory' AND granted AND objsubid = 2 \
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
const CLEAR_HOLDER: &str = "DELETE FROM pgfleet_state.locks WHERE name = $1 AND environment = $2";
const SERVER_VERSION: &str = "SELECT current_setting('server_version_num')::integer";
/// A lock session must outlive a long apply, and die soon after its runner.
const LOCK_SESSION: &str =
    "SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3";

/// The advisory lock keys of `environment` in state `name`: the first eight
/// bytes of `sha256("pgfleet state lock\0NAME\0ENVIRONMENT")` as two
/// big-endian int4s, for `pg_try_advisory_lock(key1, key2)`.
pub fn advisory_keys(name: &str, environment: &str) -> (i32, i32) {
    let digest = Sha256::new()
        .chain_update(b"pgfleet state lock\0")
        .chain_update(name.as_bytes())
        .chain_update(b"\0")
        .chain_update(environment.as_bytes())
        .finalize();
    let key = |range: std::ops::Range<usize>| {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&digest[range]);
        i32::from_be_bytes(bytes)
    };
    (key(0..4), key(4..8))
}

/// The key that serialises creating the tables.
fn setup_keys() -> (i32, i32) {
    advisory_keys("", "schema")
}

/// How `pg_locks` shows an int4 key (its `oid` columns are unsigned).
fn as_oid(key: i32) -> u32 {
    u32::from_be_bytes(key.to_be_bytes())
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// One environment's records, as a row's `part`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Part {
    #[serde(default)]
    owned: BTreeMap<Address, Owned>,
    #[serde(default)]
    journal: Vec<JournalEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_applied_spec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<super::RoleRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<crate::operation::Operation>,
}

impl Part {
    fn of(state: &State, environment: &str) -> Part {
        Part {
            owned: state
                .owned
                .iter()
                .filter(|(address, _)| address.environment == environment)
                .map(|(address, owned)| (address.clone(), owned.clone()))
                .collect(),
            journal: state.journal.iter().filter(|entry| entry.address.environment == environment).cloned().collect(),
            last_applied_spec: state.last_applied_spec.clone(),
            role: state.roles.get(environment).cloned(),
            pending: state.pending.get(environment).cloned(),
        }
    }
}

/// A state in a PostgreSQL database.
pub struct PostgresStore {
    name: String,
    config: Config,
    /// `postgres://USER@HOST:PORT/DATABASE`: the url without its password.
    place: String,
    /// Texts never to show: the url and its password.
    secrets: Vec<String>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("name", &self.name).field("place", &self.place).finish_non_exhaustive()
    }
}

/// The advisory locks of some environments, held by `client`'s session
/// until it is dropped (the connection closes, PostgreSQL frees them).
struct PostgresLock {
    client: tokio::sync::Mutex<Client>,
    /// Which store gave it: its place and state name.
    store: String,
    holder: LockHolder,
    scope: LockScope,
}

impl std::fmt::Debug for PostgresLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLock")
            .field("store", &self.store)
            .field("holder", &self.holder)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl StateLock for PostgresLock {
    fn scope(&self) -> &LockScope {
        &self.scope
    }

    fn holder(&self) -> &LockHolder {
        &self.holder
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl PostgresLock {
    fn environments(&self) -> &[String] {
        match &self.scope {
            LockScope::Environments(environments) => environments,
            LockScope::Whole => &[],
        }
    }
}

impl PostgresStore {
    /// The store `state:` names: the url read from its secret reference.
    ///
    /// # Errors
    ///
    /// The secret cannot be read, or is not a connection string.
    pub fn from_settings(settings: &StateSettings) -> Result<Self, StateError> {
        let Some(reference) = &settings.url else {
            return Err(StateError::Url { source_name: "nowhere".into(), reason: "state.url is not set".into() });
        };
        let Some(url) = crate::secrets::read(reference, "state.url")? else {
            return Err(StateError::Url {
                source_name: reference.to_string(),
                reason: "a generated secret names no database".into(),
            });
        };
        Self::new(&settings.name, url.expose(), &reference.to_string())
    }

    /// State `name` in the database `url` (a postgres:// URL or a libpq
    /// `key=value` string) names; `source_name` says where the url came
    /// from, for errors.
    ///
    /// # Errors
    ///
    /// `url` is not a connection string.
    pub fn new(name: &str, url: &str, source_name: &str) -> Result<Self, StateError> {
        let mut secrets = vec![url.to_owned()];
        let mut config = Config::from_str(url).map_err(|error| StateError::Url {
            source_name: source_name.to_owned(),
            reason: scrub(chain(&error), &secrets),
        })?;
        if let Some(password) = config.get_password() {
            secrets.push(String::from_utf8_lossy(password).into_owned());
        }
        if config.get_user().is_none() {
            // libpq's default: the user running the program.
            config.user(std::env::var("USER").unwrap_or_else(|_| "postgres".into()));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("pgfleet");
        }
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            return Err(StateError::Url { source_name: source_name.to_owned(), reason: "it names no host".into() });
        }
        let place = place(&config);
        Ok(PostgresStore { name: name.to_owned(), config, place, secrets })
    }

    /// The state's name: its row in `pgfleet_state.states`.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn scrub(&self, text: String) -> String {
        scrub(text, &self.secrets)
    }

    fn at(&self, environment: &str) -> String {
        format!("{}, environment {environment}, in {}", self.name, self.place)
    }

    fn failed(&self, action: &'static str) -> impl Fn(tokio_postgres::Error) -> StateError + '_ {
        move |error| StateError::Database { state: self.location(), action, reason: self.scrub(chain(&error)) }
    }

    /// As [`Self::failed`], but a closed connection is a lost lock.
    fn failed_locked(&self, action: &'static str) -> impl Fn(tokio_postgres::Error) -> StateError + '_ {
        move |error| {
            if error.is_closed() {
                StateError::LockLost { state: self.location() }
            } else {
                (self.failed(action))(error)
            }
        }
    }

    async fn connect(&self) -> Result<Client, StateError> {
        let (client, connection) = self.config.connect(NoTls).await.map_err(self.failed("connect to"))?;
        tokio::spawn(async move {
            // Errors surface on the client's next call; nothing to do here.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// The version of the tables, `None` before they exist.
    async fn schema_version(&self, client: &Client) -> Result<Option<i32>, StateError> {
        let exists: bool = client.query_one(SCHEMA_EXISTS, &[]).await.map_err(self.failed("read"))?.get(0);
        if !exists {
            return Ok(None);
        }
        let version: Option<i32> =
            client.query_one(SCHEMA_VERSION_QUERY, &[]).await.map_err(self.failed("read"))?.get(0);
        match version {
            Some(found) if found > SCHEMA_VERSION => {
                Err(StateError::SchemaVersion { state: self.location(), found, known: SCHEMA_VERSION })
            }
            found => Ok(found),
        }
    }

    /// Creates the tables where they are missing, one creator at a time.
    async fn ensure_schema(&self, client: &mut Client) -> Result<(), StateError> {
        if self.schema_version(client).await? == Some(SCHEMA_VERSION) {
            return Ok(());
        }
        let create = self.failed("create the tables of");
        let transaction = client.transaction().await.map_err(&create)?;
        let (key1, key2) = setup_keys();
        transaction.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&key1, &key2]).await.map_err(&create)?;
        transaction.batch_execute(SCHEMA).await.map_err(&create)?;
        transaction.execute(RECORD_VERSION, &[&SCHEMA_VERSION]).await.map_err(&create)?;
        let found: Option<i32> = transaction.query_one(SCHEMA_VERSION_QUERY, &[]).await.map_err(&create)?.get(0);
        if let Some(found) = found.filter(|found| *found > SCHEMA_VERSION) {
            return Err(StateError::SchemaVersion { state: self.location(), found, known: SCHEMA_VERSION });
        }
        transaction.commit().await.map_err(&create)
    }

    /// The whole state, from one snapshot.
    async fn read(&self, client: &mut Client) -> Result<State, StateError> {
        let empty = State { format_version: FORMAT_VERSION, ..State::default() };
        if self.schema_version(client).await?.is_none() {
            return Ok(empty);
        }
        let read = self.failed("read");
        let transaction = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(&read)?;
        let Some(head) = transaction.query_opt(READ_STATE, &[&self.name]).await.map_err(&read)? else {
            return Ok(empty);
        };
        let rows = transaction.query(READ_PARTS, &[&self.name]).await.map_err(&read)?;
        let parts = self.parts(&rows)?;
        transaction.commit().await.map_err(&read)?;
        let lineage: String = head.get(0);
        let serial: i64 = head.get(1);
        let format_version: i32 = head.get(2);
        Ok(assemble(lineage, to_u64(serial), u32::try_from(format_version).unwrap_or(FORMAT_VERSION), parts))
    }

    /// The rows of `READ_PARTS`, parsed.
    fn parts(&self, rows: &[tokio_postgres::Row]) -> Result<Vec<(String, u64, Part)>, StateError> {
        rows.iter()
            .map(|row| {
                let environment: String = row.get(0);
                let serial: i64 = row.get(1);
                let text: String = row.get(2);
                let part: Part = serde_json::from_str(&text).map_err(|source| StateError::Record {
                    what: format!("part of environment {environment}"),
                    state: self.location(),
                    source,
                })?;
                Ok((environment, to_u64(serial), part))
            })
            .collect()
    }

    fn own<'a>(&self, lock: &'a dyn StateLock) -> Result<&'a PostgresLock, StateError> {
        match lock.as_any().downcast_ref::<PostgresLock>() {
            Some(lock) if lock.store == self.identity() => Ok(lock),
            _ => Err(StateError::ForeignLock { state: self.location() }),
        }
    }

    fn identity(&self) -> String {
        format!("{}\0{}", self.place, self.name)
    }

    fn part_text(&self, state: &State, environment: &str) -> Result<String, StateError> {
        serde_json::to_string(&Part::of(state, environment)).map_err(|source| StateError::Serialise {
            what: "state",
            state: self.at(environment),
            source,
        })
    }

    /// Who holds `environment`'s lock, if its record is readable.
    async fn holder_of(&self, client: &Client, environment: &str) -> Option<LockHolder> {
        let (key1, key2) = advisory_keys(&self.name, environment);
        let held = client.query(HELD_ADVISORY, &[]).await.ok()?;
        let pid = held.iter().find_map(|row| {
            let (classid, objid, pid): (u32, u32, i32) = (row.get(0), row.get(1), row.get(2));
            (classid == as_oid(key1) && objid == as_oid(key2)).then_some(pid)
        })?;
        let records = client.query(READ_HOLDERS, &[&self.name]).await.ok()?;
        records.iter().find_map(|row| {
            let (recorded, backend_pid, holder): (String, i32, String) = (row.get(0), row.get(1), row.get(2));
            (recorded == environment && backend_pid == pid).then(|| serde_json::from_str(&holder).ok()).flatten()
        })
    }

    /// Tries every lock once; on a refusal gives back those it took and
    /// names the environment refused.
    async fn try_lock_all(&self, client: &Client, environments: &[String]) -> Result<Option<String>, StateError> {
        let lock = self.failed("lock");
        let mut taken = Vec::new();
        for environment in environments {
            let (key1, key2) = advisory_keys(&self.name, environment);
            let got: bool = client.query_one(TRY_LOCK, &[&key1, &key2]).await.map_err(&lock)?.get(0);
            if !got {
                for (key1, key2) in taken {
                    client.execute(UNLOCK, &[&key1, &key2]).await.map_err(&lock)?;
                }
                return Ok(Some(environment.clone()));
            }
            taken.push((key1, key2));
        }
        Ok(None)
    }

    async fn write_parts(
        &self,
        transaction: &Transaction<'_>,
        state: &State,
        expected: &Serials,
        environments: &[String],
    ) -> Result<(String, u64, Vec<(String, u64)>), StateError> {
        let write = self.failed_locked("write");
        let lineage = match transaction.query_opt(LOCK_STATE_ROW, &[&self.name]).await.map_err(&write)? {
            Some(row) => {
                let stored: String = row.get(0);
                if stored != state.lineage {
                    return Err(StateError::Lineage {
                        state: self.location(),
                        writing: if state.lineage.is_empty() {
                            "none (a new state)".into()
                        } else {
                            state.lineage.clone()
                        },
                        stored,
                    });
                }
                stored
            }
            // The lock made the row; only a hand removed it since.
            None => {
                let lineage =
                    if state.lineage.is_empty() { random_lineage(&self.location())? } else { state.lineage.clone() };
                let version = i32::try_from(FORMAT_VERSION).unwrap_or(i32::MAX);
                transaction.execute(CREATE_STATE, &[&self.name, &lineage, &version]).await.map_err(&write)?;
                transaction.query_one(LOCK_STATE_ROW, &[&self.name]).await.map_err(&write)?;
                lineage
            }
        };
        let mut written = Vec::new();
        for environment in environments {
            let part = self.part_text(state, environment)?;
            let stored = transaction
                .query_opt(LOCK_PART, &[&self.name, environment])
                .await
                .map_err(&write)?
                .map_or(0, |row| to_u64(row.get(0)));
            let expected = expected.environment(environment);
            if stored != expected {
                return Err(StateError::StaleSerial { state: self.at(environment), expected, stored });
            }
            transaction
                .execute(WRITE_PART, &[&self.name, environment, &to_i64(stored + 1), &part])
                .await
                .map_err(&write)?;
            written.push((environment.clone(), stored + 1));
        }
        let version = i32::try_from(FORMAT_VERSION).unwrap_or(i32::MAX);
        let serial: i64 = transaction.query_one(BUMP_STATE, &[&self.name, &version]).await.map_err(&write)?.get(0);
        Ok((lineage, to_u64(serial), written))
    }
}

/// The whole state from its parts (oldest write first).
fn assemble(lineage: String, serial: u64, format_version: u32, parts: Vec<(String, u64, Part)>) -> State {
    let mut state = State { format_version, lineage, serial, ..State::default() };
    let mut journals = Vec::new();
    for (environment, serial, part) in parts {
        state.environment_serials.insert(environment.clone(), serial);
        state.owned.extend(part.owned);
        if part.last_applied_spec.is_some() {
            state.last_applied_spec = part.last_applied_spec;
        }
        if let Some(role) = part.role {
            state.roles.insert(environment.clone(), role);
        }
        if let Some(pending) = part.pending {
            state.pending.insert(environment.clone(), pending);
        }
        journals.push((environment, part.journal));
    }
    journals.sort_by(|left, right| left.0.cmp(&right.0));
    state.journal = interleave(journals);
    state
}

/// The journals of several environments as one, by time, each
/// environment's entries in their own order (a clock that stepped back
/// reorders nothing within one environment); ties go to the environment
/// named first.
fn interleave(journals: Vec<(String, Vec<JournalEntry>)>) -> Vec<JournalEntry> {
    let mut queues: Vec<std::collections::VecDeque<JournalEntry>> =
        journals.into_iter().map(|(_, journal)| journal.into()).collect();
    let mut merged = Vec::with_capacity(queues.iter().map(std::collections::VecDeque::len).sum());
    loop {
        let next = queues
            .iter()
            .enumerate()
            .filter_map(|(index, queue)| queue.front().map(|entry| (index, entry.at.clone())))
            .min_by(|left, right| left.1.cmp(&right.1).then(left.0.cmp(&right.0)));
        let Some((index, _)) = next else { return merged };
        if let Some(entry) = queues[index].pop_front() {
            merged.push(entry);
        }
    }
}

/// `text` with every one of `secrets` in it replaced.
fn scrub(text: String, secrets: &[String]) -> String {
    secrets.iter().filter(|secret| !secret.is_empty()).fold(text, |text, secret| text.replace(secret, "(redacted)"))
}

/// `postgres://USER@HOST:PORT/DATABASE`, never the password.
fn place(config: &Config) -> String {
    let hosts: Vec<String> = if config.get_hosts().is_empty() {
        config.get_hostaddrs().iter().map(ToString::to_string).collect()
    } else {
        config
            .get_hosts()
            .iter()
            .map(|host| match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect()
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let database = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{}:{port}/{database}", hosts.join(","))
}

impl StateStore for PostgresStore {
    fn location(&self) -> String {
        format!("{} in {}", self.name, self.place)
    }

    fn load(&self) -> Pending<'_, State> {
        Box::pin(async move {
            let mut client = self.connect().await?;
            self.read(&mut client).await
        })
    }

    fn lock<'a>(
        &'a self,
        environments: &'a [String],
        command: &'a str,
        timeout: Duration,
    ) -> Pending<'a, Box<dyn StateLock>> {
        Box::pin(async move {
            let deadline = Instant::now() + timeout;
            let mut client = self.connect().await?;
            let lock = self.failed("lock");
            client.batch_execute(LOCK_SESSION).await.map_err(&lock)?;
            let version: i32 = client.query_one(SERVER_VERSION, &[]).await.map_err(&lock)?.get(0);
            if version >= 140_000 {
                client.batch_execute("SET idle_session_timeout = 0").await.map_err(&lock)?;
            }
            self.ensure_schema(&mut client).await?;
            // The state's identity exists from its first lock, so that
            // first applies of two environments share one lineage.
            let lineage = random_lineage(&self.location())?;
            let format = i32::try_from(FORMAT_VERSION).unwrap_or(i32::MAX);
            client.execute(CREATE_STATE, &[&self.name, &lineage, &format]).await.map_err(&lock)?;

            let environments: Vec<String> = environments.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
            loop {
                match self.try_lock_all(&client, &environments).await? {
                    None => break,
                    Some(_) if Instant::now() < deadline => tokio::time::sleep(LOCK_RETRY).await,
                    Some(refused) => {
                        let held = HeldLock {
                            scope: LockScope::Environments(vec![refused.clone()]),
                            holder: self.holder_of(&client, &refused).await,
                        };
                        return Err(StateError::Locked { state: self.at(&refused), holder: held.holder_text() });
                    }
                }
            }
            let holder = LockHolder::this_process(command);
            let record = serde_json::to_string(&holder).map_err(|source| StateError::Serialise {
                what: "lock record",
                state: self.location(),
                source,
            })?;
            for environment in &environments {
                client.execute(RECORD_HOLDER, &[&self.name, environment, &record]).await.map_err(&lock)?;
            }
            Ok(Box::new(PostgresLock {
                client: tokio::sync::Mutex::new(client),
                store: self.identity(),
                holder,
                scope: LockScope::Environments(environments),
            }) as Box<dyn StateLock>)
        })
    }

    fn save<'a>(&'a self, state: &'a mut State, expected: &'a Serials, lock: &'a dyn StateLock) -> Pending<'a, ()> {
        Box::pin(async move {
            let lock = self.own(lock)?;
            let mut client = lock.client.lock().await;
            if client.is_closed() {
                return Err(StateError::LockLost { state: self.location() });
            }
            let transaction = client.transaction().await.map_err(self.failed_locked("write"))?;
            let (lineage, serial, written) =
                self.write_parts(&transaction, state, expected, lock.environments()).await?;
            transaction.commit().await.map_err(self.failed_locked("write"))?;
            // Only now, with the write done: a refused one leaves the state
            // as it was.
            state.lineage = lineage;
            state.serial = serial;
            state.format_version = FORMAT_VERSION;
            state.environment_serials.extend(written);
            Ok(())
        })
    }

    /// Written only where this state was never written (no environment's
    /// part), or nowhere where exactly this state is already there.
    fn import<'a>(&'a self, state: &'a State, lock: &'a dyn StateLock) -> Pending<'a, Imported> {
        Box::pin(async move {
            let lock = self.own(lock)?;
            if state.lineage.is_empty() {
                return Err(StateError::ImportEmpty { source_state: "the state to import".into() });
            }
            let environments = state.environments();
            if !environments.iter().all(|environment| lock.covers(environment)) {
                return Err(StateError::ForeignLock { state: self.location() });
            }
            let mut client = lock.client.lock().await;
            let write = self.failed_locked("write");
            let transaction = client.transaction().await.map_err(&write)?;
            let format = i32::try_from(FORMAT_VERSION).unwrap_or(i32::MAX);
            transaction.execute(CREATE_STATE, &[&self.name, &state.lineage, &format]).await.map_err(&write)?;
            let stored_lineage: String =
                transaction.query_one(LOCK_STATE_ROW, &[&self.name]).await.map_err(&write)?.get(0);
            let rows = transaction.query(READ_PARTS, &[&self.name]).await.map_err(&write)?;
            if !rows.is_empty() {
                let parts = self.parts(&rows)?;
                let serial: i64 = transaction.query_one(READ_STATE, &[&self.name]).await.map_err(&write)?.get(1);
                let stored = assemble(stored_lineage, to_u64(serial), FORMAT_VERSION, parts);
                return stored.imported_over(state, &self.location());
            }
            transaction
                .execute(REPLACE_STATE, &[&self.name, &state.lineage, &to_i64(state.serial), &format])
                .await
                .map_err(&write)?;
            for environment in &environments {
                let part = self.part_text(state, environment)?;
                transaction.execute(WRITE_PART, &[&self.name, environment, &1i64, &part]).await.map_err(&write)?;
            }
            transaction.commit().await.map_err(&write)?;
            Ok(Imported::Moved)
        })
    }

    fn holders(&self) -> Pending<'_, Vec<HeldLock>> {
        Box::pin(async move {
            let client = self.connect().await?;
            if self.schema_version(&client).await?.is_none() {
                return Ok(Vec::new());
            }
            self.held(&client).await
        })
    }

    /// A held advisory lock is never broken (its session's end frees it);
    /// this clears the records holders that are gone left.
    fn force_unlock<'a>(&'a self, scope: &'a LockScope) -> Pending<'a, Unlocked> {
        Box::pin(async move {
            let client = self.connect().await?;
            if self.schema_version(&client).await?.is_none() {
                return Ok(Unlocked::Nothing);
            }
            let held = self.held(&client).await?;
            if let Some(held) = held.iter().find(|held| match (&held.scope, scope) {
                (LockScope::Environments(environments), scope) => {
                    environments.iter().any(|environment| scope.covers(environment))
                }
                (LockScope::Whole, _) => true,
            }) {
                let environment = match &held.scope {
                    LockScope::Environments(environments) => environments.join(", "),
                    LockScope::Whole => String::new(),
                };
                return Err(StateError::Locked { state: self.at(&environment), holder: held.holder_text() });
            }
            let clear = self.failed("unlock");
            let records = client.query(READ_HOLDERS, &[&self.name]).await.map_err(&clear)?;
            let mut cleared = Vec::new();
            for row in records {
                let environment: String = row.get(0);
                if scope.covers(&environment) {
                    client.execute(CLEAR_HOLDER, &[&self.name, &environment]).await.map_err(&clear)?;
                    cleared.push(environment);
                }
            }
            Ok(if cleared.is_empty() {
                Unlocked::Nothing
            } else {
                Unlocked::Cleared {
                    record: format!(
                        "pgfleet_state.locks of state {} for environment(s) {}",
                        self.name,
                        cleared.join(", ")
                    ),
                }
            })
        })
    }
}

impl PostgresStore {
    /// The environments whose locks are held now, with their holders.
    async fn held(&self, client: &Client) -> Result<Vec<HeldLock>, StateError> {
        let read = self.failed("read the locks of");
        let known: Vec<String> = client
            .query(KNOWN_ENVIRONMENTS, &[&self.name])
            .await
            .map_err(&read)?
            .iter()
            .map(|row| row.get(0))
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        let granted: Vec<(u32, u32, i32)> = client
            .query(HELD_ADVISORY, &[])
            .await
            .map_err(&read)?
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        let records: Vec<(String, i32, String)> = client
            .query(READ_HOLDERS, &[&self.name])
            .await
            .map_err(&read)?
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        let mut held = Vec::new();
        for environment in known {
            let (key1, key2) = advisory_keys(&self.name, &environment);
            let Some(pid) = granted
                .iter()
                .find(|(classid, objid, _)| *classid == as_oid(key1) && *objid == as_oid(key2))
                .map(|(_, _, pid)| *pid)
            else {
                continue;
            };
            let holder = records
                .iter()
                .find(|(recorded, backend_pid, _)| *recorded == environment && *backend_pid == pid)
                .and_then(|(_, _, holder)| serde_json::from_str(holder).ok());
            held.push(HeldLock { scope: LockScope::Environments(vec![environment]), holder });
        }
        Ok(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::JournalEvent;

    #[test]
    fn advisory_keys_are_stable_and_differ_by_state_and_environment() {
        // Pinned: a change would let an old and a new pgfleet lock the same
        // environment at once.
        assert_eq!(advisory_keys("acme", "prod"), advisory_keys("acme", "prod"));
        let pinned = advisory_keys("acme", "prod");
        let digest = Sha256::digest(b"pgfleet state lock\0acme\0prod");
        assert_eq!(pinned.0.to_be_bytes(), digest[0..4]);
        assert_eq!(pinned.1.to_be_bytes(), digest[4..8]);
        assert_ne!(advisory_keys("acme", "prod"), advisory_keys("acme", "staging"));
        assert_ne!(advisory_keys("acme", "prod"), advisory_keys("other", "prod"));
        // The separator keeps "a" + "bc" apart from "ab" + "c".
        assert_ne!(advisory_keys("a", "bc"), advisory_keys("ab", "c"));
        assert_eq!(as_oid(-1), u32::MAX);
    }

    #[test]
    fn a_url_is_never_shown_and_its_password_is_scrubbed_from_errors() {
        let store = PostgresStore::new("acme", "postgres://fleet:s3cret-Pw@db.example.net:6543/states", "env X")
            .expect("a url");
        assert_eq!(store.location(), "acme in postgres://fleet@db.example.net:6543/states");
        assert_eq!(store.scrub("auth failed with s3cret-Pw".into()), "auth failed with (redacted)");
        assert!(!format!("{store:?}").contains("s3cret"));
        let keywords = PostgresStore::new("acme", "host=127.0.0.1 user=u password=hunter2-x dbname=d", "env X")
            .expect("a libpq string");
        assert_eq!(keywords.location(), "acme in postgres://u@127.0.0.1:5432/d");

        let error = PostgresStore::new("acme", "postgres://u:hunter2-y@h:notaport/d", "env X").expect_err("bad port");
        assert!(matches!(error, StateError::Url { .. }), "{error:?}");
        assert!(!error.to_string().contains("hunter2-y"), "{error}");
        let error = PostgresStore::new("acme", "user=u password=hunter2-z", "env X").expect_err("no host");
        assert!(error.to_string().contains("names no host"), "{error}");
    }

    fn entry(address: &str, at: &str) -> JournalEntry {
        JournalEntry {
            at: at.into(),
            address: address.parse().expect("an address"),
            action: "start".into(),
            event: JournalEvent::Started,
            operation: None,
        }
    }

    #[test]
    fn journals_interleave_by_time_keeping_each_environments_order() {
        let merged = interleave(vec![
            (
                "a".into(),
                vec![entry("a.cluster.primary", "2024-01-01T00:00:02Z"), entry("a.slot.r1", "2024-01-01T00:00:01Z")],
            ),
            (
                "b".into(),
                vec![entry("b.cluster.primary", "2024-01-01T00:00:01Z"), entry("b.slot.r1", "2024-01-01T00:00:03Z")],
            ),
        ]);
        let order: Vec<String> = merged.iter().map(|entry| entry.address.to_string()).collect();
        // a's second entry has an earlier clock, and still follows a's first.
        assert_eq!(order, ["b.cluster.primary", "a.cluster.primary", "a.slot.r1", "b.slot.r1"]);
    }

    #[test]
    fn a_part_holds_only_its_environments_records() {
        let mut state = State::default();
        for address in ["prod.cluster.primary", "staging.cluster.primary"] {
            state.owned.insert(address.parse().expect("an address"), Owned::at("db1", "/srv".into()));
            state.journal.push(entry(address, "2024-01-01T00:00:00Z"));
        }
        state.last_applied_spec = Some("abc".into());
        let part = Part::of(&state, "prod");
        assert_eq!(part.owned.keys().map(ToString::to_string).collect::<Vec<_>>(), ["prod.cluster.primary"]);
        assert_eq!(part.journal.len(), 1);
        assert_eq!(part.last_applied_spec.as_deref(), Some("abc"));
    }
}
