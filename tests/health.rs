//! Health, status, drift and the monitor against real servers.

// Tests may unwrap and print: a failure is the report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::fleet::{Fleet, text};

/// `status --format json` → the replica r1's entry.
fn replica_status(fleet: &Fleet) -> serde_json::Value {
    let output = fleet.pgfleet(&["status", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!("status: {}{}", text(&output.stdout), text(&output.stderr));
    });
    report["environments"][0]["replicas"][0].clone()
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// SQL on replica r1 as its superuser.
fn on_replica(fleet: &Fleet, sql: &str) -> String {
    let password = std::fs::read_to_string(fleet.home("r1").join("superuser.password")).unwrap();
    fleet.psql(fleet.addresses[1], fleet.ports[1], "postgres", password.trim(), "postgres", sql).unwrap()
}

/// About 100 MB of WAL on the primary.
fn write_a_lot(fleet: &Fleet) {
    fleet.superuser_sql("CREATE TABLE IF NOT EXISTS bulk (pad text)");
    fleet.superuser_sql("INSERT INTO bulk SELECT repeat(md5(g::text), 28) FROM generate_series(1, 110000) g");
}

#[test]
fn replica_health_goes_online_lagging_online_offline() {
    let fleet = Fleet::local();
    fleet.write_config(&["r1"]);
    fleet.apply();
    let healthy = replica_status(&fleet);
    assert_eq!(healthy["status"], "online", "{healthy:#}");
    assert_eq!(healthy["name"], "r1");
    assert!(healthy["last_check"].as_str().is_some_and(|at| at.ends_with('Z')));
    for field in ["address", "lag_bytes", "lag_seconds", "error_message"] {
        assert!(healthy.get(field).is_some(), "{field} in {healthy:#}");
    }
    assert_eq!(fleet.pgfleet(&["status", "--detailed-exitcode"]).status.code(), Some(0));

    // Replay paused, ~100 MB written: received but not replayed still counts.
    on_replica(&fleet, "SELECT pg_wal_replay_pause()");
    write_a_lot(&fleet);
    wait_for("critical lag", Duration::from_secs(60), || {
        let status = replica_status(&fleet);
        status["status"] == "lagging"
            && status["severity"] == "critical"
            && status["lag_bytes"].as_u64().is_some_and(|bytes| bytes > 80 << 20)
    });
    assert_eq!(fleet.pgfleet(&["status", "--detailed-exitcode"]).status.code(), Some(2));
    let table = text(&fleet.pgfleet(&["status"]).stdout);
    assert!(table.contains("lagging (critical)"), "{table}");

    on_replica(&fleet, "SELECT pg_wal_replay_resume()");
    wait_for("online again", Duration::from_secs(60), || replica_status(&fleet)["status"] == "online");

    support::as_postgres(&format!(
        "/usr/lib/postgresql/15/bin/pg_ctl -D {} stop -m fast -w >/dev/null",
        fleet.data_dir("r1").display()
    ));
    let offline = replica_status(&fleet);
    assert_eq!(offline["status"], "offline", "{offline:#}");
}

#[test]
fn a_replica_whose_ssh_host_is_down_is_error_with_the_reason() {
    let mut fleet = Fleet::ssh();
    fleet.write_config(&["r1"]);
    fleet.apply();
    assert_eq!(replica_status(&fleet)["status"], "online");
    fleet.ssh[1].stop();
    let status = replica_status(&fleet);
    assert_eq!(status["status"], "error", "{status:#}");
    let reason = status["error_message"].as_str().unwrap();
    assert!(reason.contains("db2") && reason.contains("cannot connect"), "{reason}");
}

/// Every file under the fleet's directory but logs (servers write those
/// themselves), with its content hash, to prove drift wrote nothing.
fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(directory) = stack.pop() {
        for entry in std::fs::read_dir(&directory).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = path.display().to_string();
            if path.is_dir() {
                if !name.ends_with("pg_stat_tmp")
                    && !name.ends_with("pg_wal")
                    && !name.contains("/base")
                    && !name.contains("/global")
                    && !name.contains("pg_xact")
                    && !name.contains("pg_subtrans")
                    && !name.contains("pg_multixact")
                    && !name.contains("pg_logical")
                {
                    stack.push(path);
                }
            } else if !name.ends_with(".log") && !name.contains(".s.PGSQL") {
                found.push((name, std::fs::read(&path).unwrap_or_default()));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn drift_finds_hand_changes_by_class_and_writes_nothing() {
    let fleet = Fleet::local();
    fleet.write_config(&["r1"]);
    fleet.apply();
    let clean = fleet.pgfleet(&["drift"]);
    assert_eq!(clean.status.code(), Some(0), "{}{}", text(&clean.stdout), text(&clean.stderr));

    fleet.superuser_sql("ALTER SYSTEM SET work_mem = '48MB'");
    fleet.superuser_sql("SELECT pg_reload_conf()");
    let before = files(fleet.dir());
    let drifted = fleet.pgfleet(&["drift"]);
    let report = text(&drifted.stdout);
    assert_eq!(drifted.status.code(), Some(2), "{report}");
    assert!(report.contains("config:\n  shop.cluster.primary: work_mem is 48MB, configured 4MB"), "{report}");
    assert_eq!(files(fleet.dir()), before, "drift wrote nothing");
    let ignored = fleet.pgfleet(&["drift", "--ignore", "config"]);
    assert_eq!(ignored.status.code(), Some(0), "{}", text(&ignored.stdout));
    assert!(text(&ignored.stdout).contains("(1 ignored)"));

    // A stray slot: slots drift, in JSON too.
    fleet.superuser_sql("SELECT pg_create_physical_replication_slot('stray')");
    let json: serde_json::Value =
        serde_json::from_slice(&fleet.pgfleet(&["drift", "--format", "json", "--ignore", "config"]).stdout).unwrap();
    let drift = json["drift"].as_array().unwrap();
    assert!(drift.iter().any(|item| item["class"] == "slots" && item["address"] == "shop.slot.stray"), "{json:#}");
    let markdown = text(&fleet.pgfleet(&["drift", "--format", "markdown"]).stdout);
    assert!(markdown.contains("| slots | `shop.slot.stray` |"), "{markdown}");

    // A restart-only setting changed by hand and reloaded: it waits for a
    // restart (the running value is still the configured one).
    fleet.superuser_sql("ALTER SYSTEM RESET work_mem");
    fleet.superuser_sql("SELECT pg_drop_replication_slot('stray')");
    fleet.superuser_sql("ALTER SYSTEM SET max_locks_per_transaction = 128");
    fleet.superuser_sql("SELECT pg_reload_conf()");
    let pending = fleet.pgfleet(&["drift"]);
    let report = text(&pending.stdout);
    assert_eq!(pending.status.code(), Some(2), "{report}");
    assert!(
        report.contains("pending_restart:\n  shop.cluster.primary: max_locks_per_transaction waits for a restart"),
        "{report}"
    );
}

/// Reads Server-Sent Events from `url` until `predicate` accepts an event
/// (name, data) or `timeout` passes.
fn wait_for_event(
    url: &str,
    timeout: Duration,
    predicate: impl Fn(&str, &serde_json::Value) -> bool,
) -> serde_json::Value {
    let response = ureq::get(url).timeout(timeout).call().unwrap();
    let reader = BufReader::new(response.into_reader());
    let started = Instant::now();
    let mut name = String::new();
    for line in reader.lines() {
        let Ok(line) = line else { break };
        if let Some(event) = line.strip_prefix("event: ") {
            name = event.to_owned();
        } else if let Some(data) = line.strip_prefix("data: ") {
            let data: serde_json::Value = serde_json::from_str(data).unwrap();
            if predicate(&name, &data) {
                return data;
            }
        }
        assert!(started.elapsed() < timeout, "no matching event within {timeout:?}");
    }
    panic!("the event stream ended");
}

#[test]
fn monitor_serves_metrics_events_and_alerts_then_stops_on_sigterm() {
    let fleet = Fleet::local();
    fleet.write_config(&["r1"]);
    fleet.apply();
    let address = support::free_loopback_address();
    let port = support::free_port(address);
    let base = format!("http://{address}:{port}");
    let mut monitor = fleet
        .command(&["monitor", "--listen", &format!("{address}:{port}"), "--interval", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // /health answers as soon as the server listens, before the first
    // round has filled /metrics: wait for that round.
    wait_for("the monitor's first round", Duration::from_secs(20), || {
        ureq::get(&format!("{base}/health"))
            .call()
            .ok()
            .and_then(|response| response.into_string().ok())
            .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
            .is_some_and(|health| health["rounds"].as_u64().is_some_and(|rounds| rounds >= 1))
    });

    // /metrics parses as Prometheus text and has the replica's gauges.
    let metrics = ureq::get(&format!("{base}/metrics")).call().unwrap().into_string().unwrap();
    let mut samples = std::collections::BTreeMap::new();
    for line in metrics.lines().filter(|line| !line.starts_with('#') && !line.is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        samples.insert(series.to_owned(), value);
    }
    assert_eq!(samples[r#"pgfleet_replica_status{environment="shop",replica="r1",status="online"}"#], 1.0);
    assert!(samples.contains_key(r#"pgfleet_replica_lag_bytes{environment="shop",replica="r1"}"#));
    assert!(samples.contains_key(r#"pgfleet_slot_retained_bytes{environment="shop",slot="r1"}"#));
    assert!(samples["pgfleet_last_successful_check_timestamp_seconds"] > 1.0e9);

    // health_updated arrives within two intervals.
    let updated = wait_for_event(&format!("{base}/events"), Duration::from_secs(3), |name, data| {
        name == "replica.health_updated" && data["replica"] == "r1"
    });
    assert_eq!(updated["environment_id"], "shop");
    assert_eq!(updated["status"], "online");

    // lag_alert while replay is paused.
    on_replica(&fleet, "SELECT pg_wal_replay_pause()");
    write_a_lot(&fleet);
    let alert = wait_for_event(&format!("{base}/events"), Duration::from_secs(60), |name, data| {
        name == "replica.lag_alert" && data["severity"] == "critical"
    });
    assert_eq!(alert["threshold_bytes"], 100 << 20);
    assert_eq!(alert["threshold_seconds"], 30);
    on_replica(&fleet, "SELECT pg_wal_replay_resume()");

    // The same events went to stdout as JSON lines; SIGTERM stops it cleanly.
    assert!(Command::new("kill").args(["-TERM", &monitor.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = monitor.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the monitor did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    let mut stdout = String::new();
    use std::io::Read as _;
    monitor.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(lines.iter().any(|line| line["event"] == "replica.health_updated"));
    assert!(lines.iter().any(|line| line["event"] == "replica.lag_alert"));
}

/// A stream that counts the round trips a client asks for: each simple
/// query ('Q') and each Sync ('S') of the extended protocol.
struct CountingStream {
    inner: Box<dyn pgfleet::transport::Stream>,
    round_trips: Arc<AtomicUsize>,
    buffer: Vec<u8>,
    started: bool,
}

impl CountingStream {
    fn count(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
        loop {
            if !self.started {
                // The startup message: a length and no type byte.
                if self.buffer.len() < 4 {
                    return;
                }
                let length = u32::from_be_bytes(self.buffer[..4].try_into().unwrap()) as usize;
                if self.buffer.len() < length {
                    return;
                }
                self.buffer.drain(..length);
                self.started = true;
                continue;
            }
            if self.buffer.len() < 5 {
                return;
            }
            let length = u32::from_be_bytes(self.buffer[1..5].try_into().unwrap()) as usize;
            if self.buffer.len() < 1 + length {
                return;
            }
            if matches!(self.buffer[0], b'Q' | b'S') {
                self.round_trips.fetch_add(1, Ordering::SeqCst);
            }
            self.buffer.drain(..1 + length);
        }
    }
}

impl tokio::io::AsyncRead for CountingStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CountingStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let result = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(written)) = &result {
            let written = *written;
            self.count(&buf[..written]);
        }
        result
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct CountingRemote {
    inner: Box<dyn pgfleet::transport::Remote>,
    round_trips: Arc<AtomicUsize>,
}

impl pgfleet::transport::Remote for CountingRemote {
    fn host(&self) -> &str {
        self.inner.host()
    }

    fn run_streamed<'a>(
        &'a self,
        command: &'a str,
        stdin: &'a mut (dyn tokio::io::AsyncRead + Send + Unpin),
        stdout: &'a mut (dyn tokio::io::AsyncWrite + Send + Unpin),
        stderr_limit: usize,
        timeout: Duration,
    ) -> pgfleet::transport::Pending<'a, pgfleet::transport::StreamOutput> {
        self.inner.run_streamed(command, stdin, stdout, stderr_limit, timeout)
    }

    fn connect_tcp<'a>(
        &'a self,
        address: &'a str,
        port: u16,
    ) -> pgfleet::transport::Pending<'a, Box<dyn pgfleet::transport::Stream>> {
        Box::pin(async move {
            let inner = self.inner.connect_tcp(address, port).await?;
            Ok(Box::new(CountingStream {
                inner,
                round_trips: self.round_trips.clone(),
                buffer: Vec::new(),
                started: false,
            }) as Box<dyn pgfleet::transport::Stream>)
        })
    }

    fn connect_command<'a>(
        &'a self,
        command: &'a str,
    ) -> pgfleet::transport::Pending<'a, Box<dyn pgfleet::transport::Stream>> {
        self.inner.connect_command(command)
    }
}

struct CountingConnector {
    round_trips: Arc<AtomicUsize>,
}

impl pgfleet::observe::Connector for CountingConnector {
    fn connect<'a>(
        &'a self,
        host: &'a pgfleet::topology::Host,
    ) -> pgfleet::transport::Pending<'a, Box<dyn pgfleet::transport::Remote>> {
        Box::pin(async move {
            let inner = pgfleet::observe::connect(host).await?;
            Ok(Box::new(CountingRemote { inner, round_trips: self.round_trips.clone() })
                as Box<dyn pgfleet::transport::Remote>)
        })
    }
}

#[test]
fn one_health_round_for_20_replicas_is_one_sql_round_trip_per_cluster() {
    let work = support::shared_temp_dir("pgfleet-twenty-");
    assert!(Command::new("chown").arg("postgres:postgres").arg(work.path()).status().unwrap().success());
    let addresses: Vec<Ipv4Addr> = (0..21).map(|_| support::free_loopback_address()).collect();
    let ports: Vec<u16> = addresses.iter().map(|address| support::free_port(*address)).collect();
    let mut yaml = format!(
        "version: 1\nstate: {{ path: {}/state.json }}\nhosts:\n  here: {{ transport: local }}\nenvironments:\n  - id: wide\n    primary: {{ host: here, address: {}, port: {}, data_dir: {}/primary, tuning: none, settings: {{ shared_buffers: 16MB }} }}\n    replicas:\n",
        work.path().display(),
        addresses[0],
        ports[0],
        work.path().display()
    );
    for index in 1..=20 {
        yaml.push_str(&format!(
            "      - {{ name: r{index}, host: here, address: {}, port: {}, data_dir: {}/r{index} }}\n",
            addresses[index],
            ports[index],
            work.path().display()
        ));
    }
    let config = work.path().join("pgfleet.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let stop_all = || {
        for name in std::iter::once("primary".to_owned()).chain((1..=20).map(|index| format!("r{index}"))) {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D"])
                .arg(work.path().join(name))
                .args(["stop", "-m", "immediate"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    };
    let applied = Command::new(env!("CARGO_BIN_EXE_pgfleet"))
        .args(["apply", "--auto-approve", "-f"])
        .arg(&config)
        .current_dir(work.path())
        .output()
        .unwrap();
    if !applied.status.success() {
        stop_all();
        panic!("{}{}", text(&applied.stdout), text(&applied.stderr));
    }

    let topology = pgfleet::config::load::load(&config).unwrap().resolve().unwrap();
    let round_trips = Arc::new(AtomicUsize::new(0));
    let options = pgfleet::observe::Options {
        passwords: false,
        connector: Arc::new(CountingConnector { round_trips: round_trips.clone() }),
        parallelism: pgfleet::observe::PARALLEL_HOSTS,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let observed = runtime.block_on(pgfleet::observe::observe_with(&topology, &options));
    let health = pgfleet::health::assess(&topology, &observed, "now");
    let counted = round_trips.load(Ordering::SeqCst);
    stop_all();
    assert_eq!(health.len(), 20);
    assert!(health.iter().all(|replica| replica.status == pgfleet::health::Status::Online), "{health:#?}");
    assert_eq!(counted, 21, "one SQL round trip per cluster (1 primary + 20 replicas)");
}
