//! `pgfleet monitor`: a long-running health loop. Each round observes the
//! hosts (one SQL round trip per cluster), emits `replica.health_updated`
//! for every replica and `replica.lag_alert` for those over a threshold —
//! as JSON lines on stdout and Server-Sent Events on `/events` — and keeps
//! Prometheus text on `/metrics`. `/health` answers for the monitor itself.
//! `/status.json` is the last round's status document (what `pgfleet status
//! --format json` prints) and `/` the page that shows it (`monitor.html`,
//! built into the binary): it renders each `status.updated` event, which
//! `/events` alone carries (stdout has the round's lines already), and polls
//! `/status.json` while the stream is unavailable.
//! A host that is down shows as `error`; the loop goes on. SIGTERM or
//! Ctrl-C stops it cleanly.
//!
//! With `--auth-token-file`, every endpoint but `/health` and the page
//! itself (static, no data) needs `Authorization: Bearer TOKEN`; the token is
//! compared in constant time and never printed.

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
use sha2::Digest as _;
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
    /// A file holding the bearer token the endpoints require.
    pub auth_token_file: Option<&'a Path>,
}

/// The page `GET /` serves: self-contained (inline CSS and script, nothing
/// fetched from elsewhere), so it works on an air-gapped host.
pub const PAGE: &str = include_str!("monitor.html");

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
    /// The last round's status document, as `status --format json` prints it.
    status: Option<String>,
    last_success: Option<String>,
    rounds: u64,
}

/// The bearer token, kept as its digest: requests are compared digest to
/// digest, in constant time, so neither timing nor a log shows the token.
#[derive(Clone)]
struct Token([u8; 32]);

impl Token {
    fn new(secret: &str) -> Self {
        Token(sha2::Sha256::digest(secret.as_bytes()).into())
    }

    fn accepts(&self, header: Option<&str>) -> bool {
        // The scheme's name is case-insensitive (RFC 7235), the token not.
        let Some(given) = header
            .and_then(|value| value.split_once(' '))
            .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then_some(token))
        else {
            return false;
        };
        let given: [u8; 32] = sha2::Sha256::digest(given.trim().as_bytes()).into();
        self.0.iter().zip(given).fold(0u8, |difference, (expected, given)| difference | (expected ^ given)) == 0
    }
}

/// Reads the token: the file's content without surrounding white space.
fn read_token(path: &Path) -> Result<Token, Error> {
    let content = std::fs::read_to_string(path)
        .map_err(|source| Error::TokenFile { path: path.display().to_string(), source })?;
    let secret = content.trim();
    if secret.is_empty() {
        return Err(Error::EmptyToken { path: path.display().to_string() });
    }
    Ok(Token::new(secret))
}

async fn require_token(
    State(token): State<Token>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let header = request.headers().get("authorization").and_then(|value| value.to_str().ok());
    if token.accepts(header) {
        next.run(request).await
    } else {
        (
            axum::http::StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer")],
            "this monitor requires Authorization: Bearer <token> (see --auth-token-file)\n",
        )
            .into_response()
    }
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

/// What the page may do: run its own inline script and style, and talk to
/// this server; nothing is loaded from anywhere, nothing framed.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

async fn serve_page() -> ([(&'static str, &'static str); 3], &'static str) {
    (
        [
            ("content-type", "text/html; charset=utf-8"),
            ("cache-control", "no-cache"),
            ("content-security-policy", PAGE_POLICY),
        ],
        PAGE,
    )
}

async fn serve_status(State(shared): State<Shared>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match shared.snapshot.read().await.status.clone() {
        Some(status) => ([("content-type", "application/json"), ("cache-control", "no-store")], status).into_response(),
        None => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "application/json"), ("cache-control", "no-store")],
            json!({ "error": "the first health round has not finished yet" }).to_string(),
        )
            .into_response(),
    }
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

/// The endpoints: `/health` and the page open, the data behind the token
/// when there is one.
fn router(shared: Shared, token: Option<Token>) -> Router {
    let data = Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/events", get(serve_events))
        .route("/status.json", get(serve_status));
    let data = match token {
        Some(token) => data.route_layer(axum::middleware::from_fn_with_state(token, require_token)),
        None => data,
    };
    Router::new().route("/", get(serve_page)).route("/health", get(serve_health)).merge(data).with_state(shared)
}

pub fn run(printer: &Printer, options: &Options<'_>) -> Outcome {
    let declared = super::load_topology(options.file)?;
    let store = crate::state::open(&declared.state)?;
    let token = options.auth_token_file.map(read_token).transpose()?;
    if token.is_none() && !options.listen.ip().is_loopback() {
        printer.note(&format!(
            "warning: pgfleet monitor listens on {} without --auth-token-file: anyone who can reach it reads every environment's health",
            options.listen
        ));
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Runtime { source })?;
    runtime.block_on(async {
        let (sender, _) = broadcast::channel(1024);
        let shared = Shared { events: sender, snapshot: Arc::new(RwLock::new(Snapshot::default())) };
        let protected = token.is_some();
        let app = router(shared.clone(), token);
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| Error::Listen { address: options.listen.to_string(), source })?;
        printer.note(&format!(
            "pgfleet monitor: http://{}/ (the page), /status.json, /metrics, /events, /health; a round every {} s{}",
            options.listen,
            options.interval.as_secs(),
            if protected { "; a bearer token is required (open the page as /#token=TOKEN)" } else { "" }
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
            // The page's live update: the whole document, on /events only.
            match (status::json(&report), serde_json::to_value(&report)) {
                (Ok(document), Ok(value)) => {
                    shared.snapshot.write().await.status = Some(document);
                    let _ = shared.events.send(MonitorEvent { name: "status.updated", data: value });
                }
                (Err(error), _) => printer.error(&error),
                (_, Err(source)) => printer.error(&Error::serialize("the status report")(source)),
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

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn the_token_is_accepted_only_whole_and_as_a_bearer() {
        let token = Token::new("s3cret-token");
        assert!(token.accepts(Some("Bearer s3cret-token")));
        assert!(token.accepts(Some("bearer s3cret-token")));
        for refused in [
            None,
            Some(""),
            Some("s3cret-token"),
            Some("Bearer s3cret"),
            Some("Bearer s3cret-token2"),
            Some("Bearer S3CRET-TOKEN"),
            Some("Basic s3cret-token"),
        ] {
            assert!(!token.accepts(refused), "{refused:?}");
        }
    }
}
