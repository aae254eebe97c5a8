//! The SQL side of a running cluster, in one round trip: recovery state,
//! identity, settings pgfleet manages, roles, databases, hba rules, slots,
//! and both ends of streaming replication.
//!
//! Read-only. Role password verifiers are not read here: nothing secret
//! leaves the server during observation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

/// The whole probe as one JSON document, so one query answers everything
/// plan needs. `$1` lists the settings to report; any setting waiting for a
/// restart is reported too.
pub const CLUSTER_PROBE: &str = r#"
select json_build_object(
  'in_recovery', pg_is_in_recovery(),
  'system_identifier', (select system_identifier::text from pg_control_system()),
  'timeline', (select timeline_id from pg_control_checkpoint()),
  'lsn', (case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end)::text,
  'settings', (select coalesce(json_object_agg(name, json_build_object(
        'value', setting, 'unit', unit, 'context', context, 'source', source, 'pending_restart', pending_restart)), '{}')
      from pg_settings where name = any($1::text[]) or pending_restart),
  'roles', (select coalesce(json_agg(json_build_object(
        'name', rolname, 'login', rolcanlogin, 'replication', rolreplication, 'superuser', rolsuper) order by rolname), '[]')
      from pg_roles where rolname !~ '^pg_'),
  'databases', (select coalesce(json_agg(json_build_object(
        'name', datname, 'owner', pg_get_userbyid(datdba)) order by datname), '[]')
      from pg_database where not datistemplate),
  'hba_rules', (select coalesce(json_agg(json_build_object(
        'line', line_number, 'kind', type, 'databases', database, 'users', user_name,
        'address', address, 'netmask', netmask, 'method', auth_method, 'error', error) order by line_number), '[]')
      from pg_hba_file_rules),
  'slots', (select coalesce(json_agg(json_build_object(
        'name', slot_name, 'kind', slot_type, 'active', active, 'wal_status', wal_status,
        'restart_lsn', restart_lsn::text,
        'retained_bytes', pg_wal_lsn_diff(
            case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end,
            restart_lsn)::bigint) order by slot_name), '[]')
      from pg_replication_slots),
  'senders', (select coalesce(json_agg(json_build_object(
        'application_name', application_name, 'client_address', client_addr::text, 'state', state,
        'sent_lsn', sent_lsn::text, 'flush_lsn', flush_lsn::text, 'replay_lsn', replay_lsn::text,
        'lag_bytes', pg_wal_lsn_diff(sent_lsn, flush_lsn)::bigint,
        'write_lag_seconds', extract(epoch from write_lag)::float8,
        'replay_lag_seconds', extract(epoch from replay_lag)::float8) order by application_name), '[]')
      from pg_stat_replication),
  'receiver', (select json_build_object(
        'status', status, 'sender_host', sender_host, 'sender_port', sender_port, 'slot_name', slot_name,
        'received_timeline', received_tli)
      from pg_stat_wal_receiver limit 1),
  'standby', case when pg_is_in_recovery() then json_build_object(
        'receive_lsn', pg_last_wal_receive_lsn()::text, 'replay_lsn', pg_last_wal_replay_lsn()::text,
        'replay_age_seconds', extract(epoch from now() - pg_last_xact_replay_timestamp())::float8,
        'replay_paused', pg_is_wal_replay_paused()) end,
  'connections', (select count(*) from pg_stat_activity where backend_type = 'client backend'),
  'session_source', host(inet_client_addr())
)::text
"#;

/// Settings reported besides those the configuration sets: what plan and
/// drift compare, and what replicas must match.
pub const ALWAYS_PROBED_SETTINGS: [&str; 13] = [
    "max_connections",
    "port",
    "listen_addresses",
    "wal_level",
    "max_wal_senders",
    "max_replication_slots",
    "max_slot_wal_keep_size",
    "hot_standby",
    "hot_standby_feedback",
    "primary_conninfo",
    "primary_slot_name",
    "password_encryption",
    "lc_collate",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterProbe {
    pub in_recovery: bool,
    pub system_identifier: String,
    pub timeline: u32,
    pub lsn: Option<String>,
    pub settings: BTreeMap<String, Setting>,
    pub roles: Vec<RoleRow>,
    pub databases: Vec<DatabaseRow>,
    pub hba_rules: Vec<HbaRule>,
    pub slots: Vec<SlotRow>,
    pub senders: Vec<SenderRow>,
    pub receiver: Option<ReceiverRow>,
    /// A standby's own view of its WAL (absent on a primary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<StandbyRow>,
    /// Client connections now.
    #[serde(default)]
    pub connections: i64,
    /// Where pgfleet's own session arrived from (`inet_client_addr()`):
    /// over SSH, the address the host's sshd connects from — where an SSH
    /// tunnel's connections through that sshd arrive from too. `None` over
    /// a Unix socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandbyRow {
    pub receive_lsn: Option<String>,
    pub replay_lsn: Option<String>,
    /// Seconds since the last replayed transaction committed on the primary.
    pub replay_age_seconds: Option<f64>,
    pub replay_paused: bool,
}

/// An LSN (`16/B374D848`) as a byte position.
pub fn lsn_bytes(lsn: &str) -> Option<u64> {
    let (high, low) = lsn.split_once('/')?;
    Some((u64::from_str_radix(high, 16).ok()? << 32) | u64::from_str_radix(low, 16).ok()?)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub value: String,
    pub unit: Option<String>,
    pub context: String,
    pub source: String,
    pub pending_restart: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRow {
    pub name: String,
    pub login: bool,
    pub replication: bool,
    pub superuser: bool,
    /// For roles pgfleet manages: whether the stored verifier was made from
    /// the configured password (`None`: the password was not available to
    /// compare). Only this verdict is kept, never the verifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_current: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseRow {
    pub name: String,
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HbaRule {
    pub line: i32,
    pub kind: Option<String>,
    pub databases: Option<Vec<String>>,
    pub users: Option<Vec<String>>,
    pub address: Option<String>,
    pub netmask: Option<String>,
    pub method: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRow {
    pub name: String,
    pub kind: String,
    pub active: bool,
    pub wal_status: Option<String>,
    pub restart_lsn: Option<String>,
    pub retained_bytes: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SenderRow {
    pub application_name: String,
    pub client_address: Option<String>,
    pub state: Option<String>,
    pub sent_lsn: Option<String>,
    pub flush_lsn: Option<String>,
    pub replay_lsn: Option<String>,
    pub lag_bytes: Option<i64>,
    pub write_lag_seconds: Option<f64>,
    #[serde(default)]
    pub replay_lag_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverRow {
    pub status: String,
    pub sender_host: Option<String>,
    pub sender_port: Option<i32>,
    pub slot_name: Option<String>,
    /// The timeline of the WAL it receives (its checkpoint's timeline
    /// moves only at its next restartpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_timeline: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cluster probe failed")]
    Query(#[from] tokio_postgres::Error),
    #[error("cluster probe returned unexpected JSON")]
    Decode(#[from] serde_json::Error),
}

/// Runs `CLUSTER_PROBE` and decodes it: one round trip (the parameter's
/// type is given, so no separate prepare is needed).
pub async fn probe(client: &Client, settings: &[String]) -> Result<ClusterProbe, ProbeError> {
    let row = client.query_typed_one(CLUSTER_PROBE, &[(&settings, tokio_postgres::types::Type::TEXT_ARRAY)]).await?;
    let json: String = row.get(0);
    Ok(serde_json::from_str(&json)?)
}
