//! The replica health model, as Odoo platform operators know it: `online`,
//! `lagging` (with severity `warning` or `critical`), `offline`, `error`.
//! Pure: computed from observations and the spec's thresholds.
//!
//! Lag counts WAL the replica has not *replayed*: bytes from the primary's
//! current position to the standby's replay position, and seconds from the
//! primary's `write_lag`/`replay_lag` or, while WAL waits unreplayed (replay
//! paused, a long query), the age of the last replayed transaction. A
//! replica whose receiver streams but whose replay is paused is lagging.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::observe::cluster::{ClusterProbe, lsn_bytes};
use crate::observe::{ClusterObservation, HostObservation, Observed};
use crate::spec::LagThreshold;
use crate::topology::{Environment, Replica, Topology};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Online,
    Lagging,
    Offline,
    Error,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Online => "online",
            Status::Lagging => "lagging",
            Status::Offline => "offline",
            Status::Error => "error",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}

/// One replica's health, in the shape `status --format json` and the
/// monitor's events use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaHealth {
    pub environment_id: String,
    pub name: String,
    pub address: String,
    pub status: Status,
    /// Set when `status` is `lagging`.
    pub severity: Option<Severity>,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    pub last_check: String,
    pub error_message: Option<String>,
}

impl ReplicaHealth {
    /// Streaming from the primary with lag under `threshold`.
    pub fn streams_within(&self, threshold: &LagThreshold) -> bool {
        matches!(self.status, Status::Online | Status::Lagging)
            && match (self.lag_bytes, self.lag_seconds) {
                (Some(bytes), Some(seconds)) => within(threshold, bytes, seconds),
                _ => false,
            }
    }

    /// The threshold the replica is over, when lagging.
    pub fn threshold<'a>(&self, environment: &'a Environment) -> Option<&'a LagThreshold> {
        match self.severity? {
            Severity::Warning => Some(&environment.health.warning),
            Severity::Critical => Some(&environment.health.critical),
        }
    }
}

/// Lag under both limits of a threshold: the one definition of "within
/// thresholds" that status, the monitor and `--replace` share.
fn within(threshold: &LagThreshold, bytes: u64, seconds: f64) -> bool {
    bytes < threshold.lag_bytes.bytes() && seconds < threshold.lag_seconds as f64
}

fn over(threshold: &LagThreshold, bytes: u64, seconds: f64) -> bool {
    !within(threshold, bytes, seconds)
}

/// Health of every replica of the topology.
pub fn assess(topology: &Topology, observed: &Observed, checked_at: &str) -> Vec<ReplicaHealth> {
    let mut health = Vec::new();
    for environment in &topology.environments {
        for replica in &environment.replicas {
            health.push(assess_replica(environment, replica, observed, checked_at));
        }
    }
    health
}

fn primary_probe<'a>(environment: &Environment, observed: &'a Observed) -> Result<&'a ClusterProbe, String> {
    let primary = &environment.primary;
    if let Some(HostObservation::Unreachable { reason, .. }) = observed.hosts.get(&primary.host) {
        return Err(format!("the primary's host could not be reached: {reason}"));
    }
    match observed.cluster(&format!("{}.cluster.primary", environment.id)) {
        Some(ClusterObservation::Running { probe }) => Ok(probe),
        Some(ClusterObservation::Unreachable { reason }) => Err(format!("the primary could not be queried: {reason}")),
        _ => Err("the primary is not running".into()),
    }
}

pub fn assess_replica(
    environment: &Environment,
    replica: &Replica,
    observed: &Observed,
    checked_at: &str,
) -> ReplicaHealth {
    let mut health = ReplicaHealth {
        environment_id: environment.id.clone(),
        name: replica.name.clone(),
        address: format!("{}:{}", replica.address, replica.port),
        status: Status::Error,
        severity: None,
        lag_bytes: None,
        lag_seconds: None,
        last_check: checked_at.to_owned(),
        error_message: None,
    };
    let fail = |mut health: ReplicaHealth, status: Status, message: String| {
        health.status = status;
        health.error_message = Some(message);
        health
    };
    if let Some(HostObservation::Unreachable { reason, .. }) = observed.hosts.get(&replica.host) {
        return fail(health, Status::Error, reason.clone());
    }
    let standby = match observed.cluster(&format!("{}.replica.{}", environment.id, replica.name)) {
        Some(ClusterObservation::Running { probe }) => probe,
        Some(ClusterObservation::Unreachable { reason }) => return fail(health, Status::Error, reason.clone()),
        Some(ClusterObservation::Stopped) | None => {
            return fail(health, Status::Offline, "the replica is not running".into());
        }
    };
    let primary = match primary_probe(environment, observed) {
        Ok(primary) => primary,
        Err(message) => return fail(health, Status::Error, message),
    };
    let Some(view) = standby.standby.as_ref().filter(|_| standby.in_recovery) else {
        return fail(health, Status::Offline, "the replica is not in recovery: it is no standby".into());
    };
    let sender = primary.senders.iter().find(|sender| sender.application_name == replica.name);
    if sender.and_then(|sender| sender.state.as_deref()) != Some("streaming") {
        let state = sender.and_then(|sender| sender.state.clone()).unwrap_or_else(|| "not connected".into());
        return fail(health, Status::Offline, format!("not streaming from the primary ({state})"));
    }

    let current = primary.lsn.as_deref().and_then(lsn_bytes);
    let replayed = view.replay_lsn.as_deref().and_then(lsn_bytes);
    let received = view.receive_lsn.as_deref().and_then(lsn_bytes);
    let lag_bytes = match (current, replayed) {
        (Some(current), Some(replayed)) => current.saturating_sub(replayed),
        _ => 0,
    };
    let unreplayed = matches!((received, replayed), (Some(received), Some(replayed)) if received > replayed);
    let sender_seconds = sender
        .map(|sender| sender.write_lag_seconds.unwrap_or(0.0).max(sender.replay_lag_seconds.unwrap_or(0.0)))
        .unwrap_or(0.0);
    let replay_seconds = if unreplayed || view.replay_paused { view.replay_age_seconds.unwrap_or(0.0) } else { 0.0 };
    let lag_seconds = sender_seconds.max(replay_seconds).max(0.0);

    health.lag_bytes = Some(lag_bytes);
    health.lag_seconds = Some((lag_seconds * 1000.0).round() / 1000.0);
    health.severity = if over(&environment.health.critical, lag_bytes, lag_seconds) {
        Some(Severity::Critical)
    } else if over(&environment.health.warning, lag_bytes, lag_seconds) {
        Some(Severity::Warning)
    } else {
        None
    };
    health.status = if health.severity.is_some() { Status::Lagging } else { Status::Online };
    if view.replay_paused {
        health.error_message = Some("WAL replay is paused".into());
    }
    health
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load;
    use crate::observe::cluster::{SenderRow, StandbyRow};

    const YAML: &str = "version: 1\nhosts:\n  h: { transport: local }\nenvironments:\n  - id: e\n    primary: { host: h, data_dir: /p, tuning: none }\n    replicas:\n      - { name: r1, host: h, address: 127.0.0.2, data_dir: /r1 }\n";

    fn probe(in_recovery: bool) -> ClusterProbe {
        serde_json::from_value(serde_json::json!({
            "in_recovery": in_recovery, "system_identifier": "1", "timeline": 1, "lsn": "0/5000000",
            "settings": {}, "roles": [], "databases": [], "hba_rules": [], "slots": [], "senders": [],
            "receiver": null
        }))
        .unwrap()
    }

    fn observed(lsn: &str, replay: &str, receive: &str, paused: bool, sender_state: &str) -> Observed {
        let mut primary = probe(false);
        primary.lsn = Some(lsn.into());
        primary.senders.push(SenderRow {
            application_name: "r1".into(),
            client_address: None,
            state: Some(sender_state.into()),
            sent_lsn: Some(lsn.into()),
            flush_lsn: Some(receive.into()),
            replay_lsn: Some(replay.into()),
            lag_bytes: Some(0),
            write_lag_seconds: Some(0.2),
            replay_lag_seconds: None,
        });
        let mut standby = probe(true);
        standby.standby = Some(StandbyRow {
            receive_lsn: Some(receive.into()),
            replay_lsn: Some(replay.into()),
            replay_age_seconds: Some(42.0),
            replay_paused: paused,
        });
        let mut observed = Observed::default();
        observed.clusters.insert("e.cluster.primary".into(), ClusterObservation::Running { probe: Box::new(primary) });
        observed.clusters.insert("e.replica.r1".into(), ClusterObservation::Running { probe: Box::new(standby) });
        observed
    }

    fn assess_one(observed: &Observed) -> ReplicaHealth {
        let topology = load::parse("t.yaml", YAML.into()).unwrap().resolve().unwrap();
        assess(&topology, observed, "2026-01-01T00:00:00Z").remove(0)
    }

    #[test]
    fn caught_up_is_online() {
        let health = assess_one(&observed("0/5000000", "0/5000000", "0/5000000", false, "streaming"));
        assert_eq!((health.status, health.lag_bytes, health.severity), (Status::Online, Some(0), None));
    }

    #[test]
    fn unreplayed_wal_counts_even_when_received() {
        // 80 MB received but not replayed: the receiver streams, replay is paused.
        let health = assess_one(&observed("0/A000000", "0/5000000", "0/A000000", true, "streaming"));
        assert_eq!(health.status, Status::Lagging);
        assert_eq!(health.severity, Some(Severity::Critical));
        assert_eq!(health.lag_bytes, Some(80 << 20));
        assert_eq!(health.lag_seconds, Some(42.0));
    }

    #[test]
    fn thresholds_pick_the_severity() {
        // 60 MB behind: over the 50MB warning, under the 100MB critical.
        let health = assess_one(&observed("0/8C00000", "0/5000000", "0/5000000", false, "streaming"));
        assert_eq!((health.status, health.severity), (Status::Lagging, Some(Severity::Warning)));
    }

    #[test]
    fn not_streaming_is_offline_and_unreachable_is_error() {
        let health = assess_one(&observed("0/5000000", "0/5000000", "0/5000000", false, "catchup"));
        assert_eq!(health.status, Status::Offline);
        let mut down = observed("0/5000000", "0/5000000", "0/5000000", false, "streaming");
        down.clusters.insert("e.replica.r1".into(), ClusterObservation::Stopped);
        assert_eq!(assess_one(&down).status, Status::Offline);
        down.hosts.insert("h".into(), HostObservation::Unreachable { reason: "connection refused".into(), help: None });
        let health = assess_one(&down);
        assert_eq!(health.status, Status::Error);
        assert_eq!(health.error_message.as_deref(), Some("connection refused"));
    }
}
