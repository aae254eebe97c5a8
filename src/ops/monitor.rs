//! `pgfleet monitor`: a long-running health loop. Each round observes the
//! hosts (one SQL round trip per cluster), emits `replica.health_updated`
//! for every replica and `replica.lag_alert` for those over a threshold —
//! as JSON lines on stdout and Server-Sent Events on `/events` — and keeps
//! Prometheus text on `/metrics`. `/health` answers for the monitor itself.
//! A host that is down shows as `error`; the loop goes on. SIGTERM or
//! Ctrl-C stops it cleanly.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use serde_json::json;
use tokio::sync::{RwLock, broadcast};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::BroadcastStream;

use super::status::{self, Report};
use super::{Error, Outcome};
use crate::exit::Exit;
use crate::health::Status;
use crate::observe;
use crate::printer::Printer;
use crate::topology::Topology;

pub struct Options<'a> {
    pub file: &'a Path,
    pub listen: SocketAddr,
    pub interval: Duration,
}

/// One event, as written on stdout and sent on `/events`.
#[derive(Debug, Clone)]
pub struct MonitorEvent {
    pub name: &'static str,
    pub data: serde_json::Value,
}

impl MonitorEvent {
    pub fn json_line(&self) -> String {
        json!({ "event": self.name, "data": self.data }).to_string()
    }
}

#[derive(Default)]
struct Snapshot {
    metrics: String,
    last_success: Option<String>,
    rounds: u64,
}

#[derive(Clone)]
struct Shared {
    events: broadcast::Sender<MonitorEvent>,
    snapshot: Arc<RwLock<Snapshot>>,
}

/// The events of one round: every replica's health, and an alert for each
/// lagging one with the threshold it is over.
pub fn events(topology: &Topology, report: &Report) -> Vec<MonitorEvent> {
    let mut events = Vec::new();
    for environment in &report.environments {
        let Some(configured) = topology.environment(&environment.id) else { continue };
        for replica in &environment.replicas {
            events.push(MonitorEvent {
                name: "replica.health_updated",
                data: json!({
                    "environment_id": replica.environment_id,
                    "replica": replica.name,
                    "address": replica.address,
                    "status": replica.status,
                    "lag_bytes": replica.lag_bytes,
                    "lag_seconds": replica.lag_seconds,
                    "last_check": replica.last_check,
                    "error_message": replica.error_message,
                }),
            });
            if let (Status::Lagging, Some(severity), Some(threshold)) =
                (replica.status, replica.severity, replica.threshold(configured))
            {
                events.push(MonitorEvent {
                    name: "replica.lag_alert",
                    data: json!({
                        "environment_id": replica.environment_id,
                        "replica": replica.name,
                        "severity": severity,
                        "lag_bytes": replica.lag_bytes,
                        "lag_seconds": replica.lag_seconds,
                        "threshold_bytes": threshold.lag_bytes.bytes(),
                        "threshold_seconds": threshold.lag_seconds,
                        "last_check": replica.last_check,
                    }),
                });
            }
        }
    }
    events
}

fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Prometheus text exposition of one round: each family's HELP and TYPE
/// lines followed by all its samples, as one group.
pub fn metrics(report: &Report, rounds: u64, last_success: Option<f64>) -> String {
    let mut lag_bytes = Vec::new();
    let mut lag_seconds = Vec::new();
    let mut status_samples = Vec::new();
    let mut slots = Vec::new();
    let mut poolers = Vec::new();
    for environment in &report.environments {
        let env = label(&environment.id);
        for replica in &environment.replicas {
            let labels = format!("environment=\"{env}\",replica=\"{}\"", label(&replica.name));
            if let Some(bytes) = replica.lag_bytes {
                lag_bytes.push(format!("{{{labels}}} {bytes}"));
            }
            if let Some(seconds) = replica.lag_seconds {
                lag_seconds.push(format!("{{{labels}}} {seconds}"));
            }
            for status in [Status::Online, Status::Lagging, Status::Offline, Status::Error] {
                status_samples.push(format!("{{{labels},status=\"{status}\"}} {}", u8::from(replica.status == status)));
            }
        }
        for slot in &environment.slots {
            slots.push(format!(
                "{{environment=\"{env}\",slot=\"{}\"}} {}",
                label(&slot.name),
                slot.retained_bytes.unwrap_or(0)
            ));
        }
        for pooler in &environment.poolers {
            poolers.push(format!("{{environment=\"{env}\",pooler=\"{}\"}} {}", label(&pooler.name), pooler.clients));
        }
    }
    let families: [(&str, &str, &str, Vec<String>); 7] = [
        ("pgfleet_replica_lag_bytes", "WAL the replica has not replayed yet.", "gauge", lag_bytes),
        ("pgfleet_replica_lag_seconds", "Replication lag in seconds.", "gauge", lag_seconds),
        ("pgfleet_replica_status", "1 for the replica's current status.", "gauge", status_samples),
        ("pgfleet_slot_retained_bytes", "WAL a replication slot holds back on the primary.", "gauge", slots),
        ("pgfleet_pooler_clients", "Client connections of a PgBouncer.", "gauge", poolers),
        (
            "pgfleet_last_successful_check_timestamp_seconds",
            "When the last health round finished (Unix time).",
            "gauge",
            last_success.map(|timestamp| format!(" {timestamp}")).into_iter().collect(),
        ),
        ("pgfleet_monitor_rounds_total", "Health rounds run.", "counter", vec![format!(" {rounds}")]),
    ];
    let mut out = String::new();
    for (name, help, kind, samples) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for sample in samples {
            let _ = writeln!(out, "{name}{sample}");
        }
    }
    out
}

async fn serve_metrics(State(shared): State<Shared>) -> ([(&'static str, &'static str); 1], String) {
    let metrics = shared.snapshot.read().await.metrics.clone();
    ([("content-type", "text/plain; version=0.0.4")], metrics)
}

async fn serve_health(State(shared): State<Shared>) -> axum::Json<serde_json::Value> {
    let snapshot = shared.snapshot.read().await;
    axum::Json(json!({ "status": "ok", "rounds": snapshot.rounds, "last_check": snapshot.last_success }))
}

async fn serve_events(
    State(shared): State<Shared>,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(shared.events.subscribe()).filter_map(|event| {
        event.ok().map(|event| Ok(Event::default().event(event.name).data(event.data.to_string())))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// The current primary of each environment (`pgfleet_primary{member}` 1)
/// and the role changes this monitor has seen.
fn role_metrics(report: &Report, changes: u64) -> String {
    let mut text =
        String::from("# HELP pgfleet_primary The member holding the primary role.\n# TYPE pgfleet_primary gauge\n");
    for environment in &report.environments {
        let _ = writeln!(
            text,
            "pgfleet_primary{{environment=\"{}\",member=\"{}\"}} 1",
            environment.id, environment.primary_member
        );
    }
    text.push_str(
        "# HELP pgfleet_primary_changes_total Moves of a primary role seen by this monitor.\n# TYPE pgfleet_primary_changes_total counter\n",
    );
    let _ = writeln!(text, "pgfleet_primary_changes_total {changes}");
    text
}

pub fn run(printer: &Printer, options: &Options<'_>) -> Outcome {
    let declared = super::load_topology(options.file)?;
    let store = crate::state::open(&declared.state)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Runtime { source })?;
    runtime.block_on(async {
        let (sender, _) = broadcast::channel(1024);
        let shared = Shared { events: sender, snapshot: Arc::new(RwLock::new(Snapshot::default())) };
        let app = Router::new()
            .route("/metrics", get(serve_metrics))
            .route("/health", get(serve_health))
            .route("/events", get(serve_events))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| Error::Listen { address: options.listen.to_string(), source })?;
        printer.note(&format!(
            "pgfleet monitor: http://{}/metrics, /events, /health; a round every {} s",
            options.listen,
            options.interval.as_secs()
        ));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut server_stopped = stopped.clone();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = server_stopped.wait_for(|stop| *stop).await;
                })
                .await;
        });

        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        let mut primaries: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
        let mut role_changes = 0u64;
        loop {
            // The roles as state records them now: a switchover run from
            // elsewhere moves what this monitor watches.
            let state = store.load().await.unwrap_or_default();
            let topology = crate::roles::current(&declared, &state);
            let observed = observe::observe_with(&topology, &observe::Options::health()).await;
            let checked_at = crate::state::now();
            let report = status::report(&topology, &observed, &state, &checked_at);
            for environment in &report.environments {
                let previous = primaries.insert(environment.id.clone(), environment.primary_member.clone());
                if previous.as_ref().is_some_and(|previous| *previous != environment.primary_member) {
                    role_changes += 1;
                    let event = MonitorEvent {
                        name: "primary.changed",
                        data: json!({
                            "environment_id": environment.id,
                            "from": previous,
                            "to": environment.primary_member,
                            "change": environment.last_role_change,
                        }),
                    };
                    printer.out(&event.json_line());
                    let _ = shared.events.send(event);
                }
            }
            for event in events(&topology, &report) {
                printer.out(&event.json_line());
                let _ = shared.events.send(event);
            }
            {
                let mut snapshot = shared.snapshot.write().await;
                snapshot.rounds += 1;
                snapshot.last_success = Some(checked_at);
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs_f64()).ok();
                snapshot.metrics = metrics(&report, snapshot.rounds, now);
                snapshot.metrics.push_str(&role_metrics(&report, role_changes));
            }
            // A closed stdout ends the monitor, as SIGPIPE ends a Unix filter
            // (`pgfleet monitor | head -3`); the HTTP endpoints stop with it.
            if printer.stdout_closed() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(options.interval) => {}
                () = &mut shutdown => break,
            }
        }
        let _ = stop.send(true);
        drop(stopped);
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        printer.note("pgfleet monitor: stopped");
        Ok(Exit::Ok)
    })
}
