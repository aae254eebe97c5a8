//! Backups: a `pg_dump` of the application database, the Odoo filestore and
//! a `manifest.json` with sha256 checksums, packed in one zip and kept in a
//! storage (`crate::storage`); listed, verified, restored (into a scratch
//! database first, swapped into place in a pause of the poolers) and
//! restore-tested.
//!
//! Everything streams: pg_dump's output and the filestore's tar flow from
//! the member's host through pgfleet, are hashed and zipped on the way and
//! uploaded in parts; a restore reads the archive by ranges and streams
//! each member to `psql` or `tar` on the target's host. Memory stays
//! bounded whatever the size.
//!
//! Beside each archive `<env>/<id>.zip` the storage holds `<env>/<id>.json`
//! (its manifest, the manifest's own checksum and the archive's), read by
//! `list` without touching the archive, and after a verification
//! `<env>/<id>.verified.json`.

pub mod archive;
pub mod create;
pub mod dump;
pub mod manifest;
pub mod restore;
pub mod retention;
pub mod verify;

use std::time::SystemTime;

pub use manifest::{Manifest, Sidecar, Verification};

/// Bytes moved so far by a running backup or restore, for progress.
#[derive(Debug, Clone, Default)]
pub struct Meter(pub std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Meter {
    pub fn add(&self, bytes: usize) {
        self.0.fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A backup's identity: its UTC creation time, `20261203T061500Z`.
pub fn new_id(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string().replace(['-', ':'], "")
}

/// When a backup id says it was made.
pub fn id_time(id: &str) -> Option<SystemTime> {
    // 20261203T061500Z -> 2026-12-03T06:15:00Z
    if id.len() != 16 || !id.is_char_boundary(16) {
        return None;
    }
    let text = format!("{}-{}-{}T{}:{}:{}Z", &id[0..4], &id[4..6], &id[6..8], &id[9..11], &id[11..13], &id[13..15]);
    humantime::parse_rfc3339(&text).ok()
}

/// The archive's object name.
pub fn archive_name(environment: &str, id: &str) -> String {
    format!("{environment}/{id}.zip")
}

/// The sidecar's object name (manifest and checksums, beside the archive).
pub fn sidecar_name(environment: &str, id: &str) -> String {
    format!("{environment}/{id}.json")
}

/// Where the last verification of a backup is recorded.
pub fn verified_name(environment: &str, id: &str) -> String {
    format!("{environment}/{id}.verified.json")
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum BackupError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Storage(#[from] crate::storage::StorageError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Transport(#[from] crate::transport::TransportError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Sql(#[from] crate::sql::SqlError),

    #[error("{what}: {source}")]
    #[diagnostic(code(pgfleet::backup::query))]
    Query {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("{program} on host `{host}` failed (exit {status}): {stderr}")]
    #[diagnostic(code(pgfleet::backup::command))]
    Command { program: &'static str, host: String, status: i32, stderr: String },

    #[error("the archive `{name}` is damaged: {reason}")]
    #[diagnostic(code(pgfleet::backup::damaged), help("restore another backup (`pgfleet backup list`)"))]
    Damaged { name: String, reason: String },

    #[error("`{member}` in backup {id} does not match its manifest: expected {expected}, found {found}")]
    #[diagnostic(
        code(pgfleet::backup::checksum),
        help("the archive was changed after it was written: restore another backup")
    )]
    Checksum { id: String, member: String, expected: String, found: String },

    #[error("no backup `{id}` of environment `{environment}` in {storage}")]
    #[diagnostic(
        code(pgfleet::backup::unknown),
        help("`pgfleet backup list --env {environment}` shows the backups there")
    )]
    Unknown { id: String, environment: String, storage: String },

    #[error("the restored database failed its checks: {problems}")]
    #[diagnostic(
        code(pgfleet::backup::check),
        help("the live database was not touched; the scratch database was dropped")
    )]
    Check { problems: String },

    #[error("restoring the dump failed: {stderr}")]
    #[diagnostic(
        code(pgfleet::backup::restore),
        help("the live database was not touched; the scratch database was dropped")
    )]
    Restore { stderr: String },

    #[error("{0}")]
    #[diagnostic(code(pgfleet::backup::io))]
    Io(String),
}

impl BackupError {
    pub fn query(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> BackupError {
        let what = what.into();
        move |source| BackupError::Query { what, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_times_and_back() {
        let at = humantime::parse_rfc3339("2026-12-03T06:15:09Z").expect("time");
        let id = new_id(at);
        assert_eq!(id, "20261203T061509Z");
        assert_eq!(id_time(&id), Some(at));
        assert_eq!(id_time("nonsense"), None);
        assert!(crate::storage::check_name(&archive_name("prod", &id)).is_ok());
    }
}
