//! The monitor's status page, read from headless Chromium's rendered DOM,
//! against real servers; and the monitor's token.

// Tests may unwrap and print: a failure is the report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::browser::Browser;
use support::fleet::{Fleet, text};

/// A `pgfleet monitor` stopped by pid (SIGTERM, then SIGKILL) on drop.
struct Monitor {
    child: Child,
    base: String,
    stderr: std::path::PathBuf,
}

impl Monitor {
    fn start(fleet: &Fleet, extra: &[&str]) -> Monitor {
        let address = support::free_loopback_address();
        let port = support::free_port(address);
        let listen = format!("{address}:{port}");
        let stderr = fleet.dir().join(format!("monitor-{port}.stderr"));
        let mut args = vec!["monitor", "--listen", &listen, "--interval", "1s"];
        args.extend_from_slice(extra);
        let child =
            fleet.command(&args).stdout(Stdio::null()).stderr(std::fs::File::create(&stderr).unwrap()).spawn().unwrap();
        Monitor { child, base: format!("http://{listen}"), stderr }
    }

    /// Waits until a round has finished (`/health` counts rounds).
    fn wait_for_round(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let rounds = ureq::get(&format!("{}/health", self.base))
                .call()
                .ok()
                .and_then(|response| response.into_string().ok())
                .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
                .and_then(|health| health["rounds"].as_u64());
            if rounds.is_some_and(|rounds| rounds >= 1) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the monitor exited ({status}): {}", std::fs::read_to_string(&self.stderr).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "the monitor's first round did not finish");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop();
    }
}

fn status_code(request: ureq::Request) -> u16 {
    match request.call() {
        Ok(response) => response.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(error) => panic!("{error}"),
    }
}

/// SQL on a replica as its superuser.
fn on_replica(fleet: &Fleet, name: &str, sql: &str) -> String {
    let index = if name == "r1" { 1 } else { 2 };
    let password = std::fs::read_to_string(fleet.home(name).join("superuser.password")).unwrap();
    fleet.psql(fleet.addresses[index], fleet.ports[index], "postgres", password.trim(), "postgres", sql).unwrap()
}

/// Script: the text of `selector` inside replica `name`'s card, or null.
fn replica_text(name: &str, selector: &str) -> String {
    format!(
        "const card = document.querySelector('[data-replica=\"shop/{name}\"]'); const node = card && card.querySelector('{selector}'); return node ? node.textContent : null;"
    )
}

/// Script: whether replica `name`'s status word is `word`.
fn replica_status_is(name: &str, word: &str) -> String {
    format!(
        "const card = document.querySelector('[data-replica=\"shop/{name}\"]'); const node = card && card.querySelector('.status'); return node !== null && node.textContent === '{word}';"
    )
}

/// A document's shape: every object's keys, at every depth; values only
/// by kind (numbers and times change between two rounds).
fn shape(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => map.iter().map(|(key, value)| (key.clone(), shape(value))).collect(),
        serde_json::Value::Array(items) => items.iter().map(shape).collect(),
        _ => serde_json::Value::Null,
    }
}

#[test]
fn page_shows_each_replica_live_and_lagging_without_a_reload_behind_a_token() {
    let fleet = Fleet::local();
    // A small warning threshold, so a few MB of unreplayed WAL is lagging.
    let config = fleet.config(&["r1", "r2"])
        + "    health: { warning: { lag_bytes: 2MB, lag_seconds: 3600 }, critical: { lag_bytes: 4GB, lag_seconds: 7200 } }\n";
    std::fs::write(fleet.dir().join("pgfleet.yaml"), config).unwrap();
    fleet.apply();
    let token = "tok-3f9a1c7e5b2d4f60a8c1e9b7d5f3a2c4";
    let token_file = fleet.dir().join("monitor.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let mut monitor = Monitor::start(&fleet, &["--auth-token-file", token_file.to_str().unwrap()]);
    monitor.wait_for_round();
    let base = monitor.base.clone();

    // The token guards the data; /health and the static page stay open.
    let bearer = format!("Bearer {token}");
    assert_eq!(status_code(ureq::get(&format!("{base}/metrics"))), 401);
    assert_eq!(status_code(ureq::get(&format!("{base}/metrics")).set("Authorization", "Bearer wrong")), 401);
    assert_eq!(status_code(ureq::get(&format!("{base}/metrics")).set("Authorization", &bearer)), 200);
    assert_eq!(status_code(ureq::get(&format!("{base}/status.json"))), 401);
    assert_eq!(status_code(ureq::get(&format!("{base}/events"))), 401);
    assert_eq!(status_code(ureq::get(&format!("{base}/health"))), 200);
    let page = ureq::get(&format!("{base}/")).call().unwrap();
    assert!(page.header("content-security-policy").is_some_and(|policy| policy.contains("default-src 'none'")));
    let page = page.into_string().unwrap();
    assert!(page.contains("<title>pgfleet monitor</title>") && !page.contains("shop"), "the page holds no data");
    // /status.json is exactly what `status --format json` prints, but for
    // the time of the round.
    let served: serde_json::Value = serde_json::from_str(
        &ureq::get(&format!("{base}/status.json")).set("Authorization", &bearer).call().unwrap().into_string().unwrap(),
    )
    .unwrap();
    let printed: serde_json::Value =
        serde_json::from_slice(&fleet.pgfleet(&["status", "--format", "json"]).stdout).unwrap();
    assert_eq!(shape(&served), shape(&printed));
    assert_eq!(served["environments"][0]["replicas"][1]["name"], printed["environments"][0]["replicas"][1]["name"]);
    assert_eq!(served["environments"][0]["thresholds"]["warning"]["lag_bytes"], 2 << 20);

    let browser = Browser::start();
    browser.open(&format!("{base}/#token={token}"));
    for name in ["r1", "r2"] {
        browser.wait_for(&format!("{name} online"), Duration::from_secs(30), &replica_status_is(name, "online"));
        let lag = browser.script(&replica_text(name, ".lag-bytes"));
        assert!(
            lag.as_str().is_some_and(|lag| lag.ends_with(" B") || lag.ends_with(" kB") || lag.ends_with(" MB")),
            "{name}'s lag: {lag}"
        );
        let seconds = browser.script(&replica_text(name, ".lag-seconds"));
        assert!(seconds.as_str().is_some_and(|seconds| seconds.ends_with(" s")), "{name}'s lag time: {seconds}");
    }
    assert_eq!(browser.script("return document.getElementById('connection').dataset.mode;"), "live");
    assert_eq!(browser.script("return location.hash;"), "", "the token left the address bar");
    let primary = browser.script("return document.querySelector('[data-primary=\"shop\"]').textContent;");
    assert!(primary.as_str().unwrap().contains("running (read-write)"), "{primary}");
    let pooler = browser.script("return document.querySelector('[data-pooler=\"shop/primary\"] .status').textContent;");
    assert_eq!(pooler, "up");
    let slot = browser.script("return document.querySelector('[data-slot=\"shop/r1\"] .status').textContent;");
    assert_eq!(slot, "active");

    // A reload would lose this mark.
    browser.script("window.pgfleetLoadedOnce = true; return null;");
    on_replica(&fleet, "r1", "SELECT pg_wal_replay_pause()");
    fleet.superuser_sql("CREATE TABLE bulk (pad text)");
    fleet.superuser_sql("INSERT INTO bulk SELECT repeat(md5(g::text), 28) FROM generate_series(1, 20000) g");
    browser.wait_for(
        "r1 lagging on the open page",
        Duration::from_secs(60),
        &replica_status_is("r1", "lagging (warning)"),
    );
    assert_eq!(browser.script("return window.pgfleetLoadedOnce === true;"), true, "the page was not reloaded");
    assert_eq!(browser.script("return document.querySelector('[data-replica=\"shop/r1\"]').dataset.tone;"), "lagging");
    let lag = browser.script(&replica_text("r1", ".lag-bytes"));
    assert!(lag.as_str().is_some_and(|lag| lag.ends_with(" MB")), "r1's lag: {lag}");
    // r2 catches up with the same WAL; r1, paused, stays behind.
    browser.wait_for("r2 online", Duration::from_secs(60), &replica_status_is("r2", "online"));
    assert_eq!(browser.script(&replica_text("r1", ".status")), "lagging (warning)");

    // A screenshot of the page (desktop width), then the phone width: no
    // sideways scrolling.
    let shot = browser.screenshot();
    assert!(shot.starts_with(b"\x89PNG"), "a PNG");
    let path = std::env::temp_dir().join(format!("pgfleet-monitor-{}.png", std::process::id()));
    std::fs::write(&path, &shot).unwrap();
    println!("screenshot: {}", path.display());
    if let Some(copy) = std::env::var_os("PGFLEET_MONITOR_SCREENSHOT") {
        std::fs::write(copy, &shot).unwrap();
    }
    browser.resize(390, 844);
    browser.wait_for(
        "the phone-width layout",
        Duration::from_secs(5),
        "return window.innerWidth <= 400 && document.documentElement.scrollWidth <= document.documentElement.clientWidth;",
    );

    on_replica(&fleet, "r1", "SELECT pg_wal_replay_resume()");
    browser.wait_for("r1 online again", Duration::from_secs(60), &replica_status_is("r1", "online"));
    drop(browser);
    monitor.stop();
    let said = std::fs::read_to_string(&monitor.stderr).unwrap();
    assert!(said.contains("a bearer token is required"), "{said}");
    assert!(!said.contains(token), "the token never appears in output: {said}");
}

/// A tiny HTTP server on loopback: `/` is the monitor's page, `/status.json`
/// whatever document the test sets, everything else (`/events`) 404.
struct StaticServer {
    base: String,
    document: Arc<Mutex<String>>,
    event_requests: Arc<AtomicUsize>,
    status_requests: Arc<AtomicUsize>,
}

impl StaticServer {
    fn start(page: String, document: String) -> StaticServer {
        let address = support::free_loopback_address();
        let listener = TcpListener::bind((address, 0)).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let document = Arc::new(Mutex::new(document));
        let event_requests = Arc::new(AtomicUsize::new(0));
        let status_requests = Arc::new(AtomicUsize::new(0));
        let (served, events, statuses) = (document.clone(), event_requests.clone(), status_requests.clone());
        // The thread ends with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|read| read > 2) {
                    line.clear();
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, kind, body) = match path.as_str() {
                    "/" => ("200 OK", "text/html; charset=utf-8", page.clone()),
                    "/status.json" => {
                        statuses.fetch_add(1, Ordering::SeqCst);
                        ("200 OK", "application/json", served.lock().unwrap().clone())
                    }
                    _ => {
                        events.fetch_add(1, Ordering::SeqCst);
                        ("404 Not Found", "text/plain", "no events here\n".to_owned())
                    }
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        StaticServer { base, document, event_requests, status_requests }
    }
}

#[test]
fn page_shows_names_and_messages_as_text_and_polls_without_an_event_stream() {
    // The page and a real status document from a real monitor (nothing
    // built: the primary is stopped, its replica not there).
    let fleet = Fleet::local();
    fleet.write_config(&["r1"]);
    let mut monitor = Monitor::start(&fleet, &[]);
    monitor.wait_for_round();
    let page = ureq::get(&format!("{}/", monitor.base)).call().unwrap().into_string().unwrap();
    let mut document: serde_json::Value = serde_json::from_str(
        &ureq::get(&format!("{}/status.json", monitor.base)).call().unwrap().into_string().unwrap(),
    )
    .unwrap();
    monitor.stop();

    let payload = "<img src=x onerror=alert(1)>";
    document["environments"][0]["id"] = "<b>shop</b>".into();
    document["environments"][0]["replicas"][0]["name"] = "<i>r1</i>".into();
    document["environments"][0]["replicas"][0]["status"] = "error".into();
    document["environments"][0]["replicas"][0]["error_message"] = payload.into();
    let warning = document["environments"][0]["thresholds"]["warning"]["lag_bytes"].as_u64().unwrap();
    document["environments"][0]["slots"] = serde_json::json!([
        { "name": "r1", "active": false, "wal_status": "extended", "retained_bytes": 3 * warning },
        { "name": "r2", "active": true, "wal_status": "reserved", "retained_bytes": 1024 },
    ]);
    document["environments"][0]["primary_member"] = "r2".into();
    document["environments"][0]["last_role_change"] = serde_json::json!({
        "at": "2026-01-02T03:04:05Z", "from": "primary", "to": "r2", "why": "switchover", "lost_bytes": 0
    });
    let server = StaticServer::start(page, document.to_string());

    let browser = Browser::start();
    browser.open(&format!("{}/", server.base));
    let shown = browser.wait_for(
        "the error message",
        Duration::from_secs(20),
        "const node = document.querySelector('.replica .error-message'); return node ? node.textContent : null;",
    );
    assert_eq!(shown, payload, "shown as text");
    assert_eq!(browser.script("return document.querySelectorAll('img, b, i').length;"), 0, "no element was created");
    assert_eq!(browser.script("return document.querySelector('h2').textContent;"), "<b>shop</b>");
    assert_eq!(browser.script("return document.querySelector('.replica .name').textContent;"), "<i>r1</i>");
    assert_eq!(browser.script("return document.querySelector('.replica .status').textContent;"), "error");
    // A slot retaining more than the warning threshold is flagged, in words too.
    let slot = |name: &str, selector: &str| {
        browser.script(&format!(
            "return document.querySelector('[data-slot=\"<b>shop</b>/{name}\"] {selector}').textContent;"
        ))
    };
    assert_eq!(slot("r1", ".status"), "inactive, retains too much");
    assert_eq!(slot("r1", ".retained"), "150.0 MB (over 50.0 MB)");
    assert_eq!(slot("r2", ".status"), "active");
    assert_eq!(slot("r2", ".retained"), "1.0 kB");
    // Where the primary role moved from, and when.
    assert_eq!(browser.script("return document.querySelector('.primary .name').textContent;"), "r2");
    let moved = browser.script("return document.querySelector('.primary .role-change').textContent;");
    let moved = moved.as_str().unwrap();
    assert!(moved.contains("switchover from primary to r2") && moved.contains("2026"), "{moved}");
    assert_eq!(browser.script("return document.querySelector('.replica').dataset.tone;"), "error");
    // No /events: the page says so and polls /status.json every 30 s.
    browser.wait_for(
        "the polling mode",
        Duration::from_secs(10),
        "return document.getElementById('connection').dataset.mode === 'polling';",
    );
    assert!(server.event_requests.load(Ordering::SeqCst) >= 1, "the page tried the event stream");
    let second = "a second document, polled";
    {
        let mut served: serde_json::Value = serde_json::from_str(&server.document.lock().unwrap()).unwrap();
        served["environments"][0]["replicas"][0]["error_message"] = second.into();
        *server.document.lock().unwrap() = served.to_string();
    }
    let polled = Instant::now();
    browser.wait_for(
        "the next poll",
        Duration::from_secs(45),
        &format!(
            "const node = document.querySelector('.replica .error-message'); return node && node.textContent === '{second}';"
        ),
    );
    assert!(polled.elapsed() > Duration::from_secs(5), "not before the poll interval");
    assert!(server.status_requests.load(Ordering::SeqCst) >= 2);
}

#[test]
fn monitor_off_loopback_without_a_token_warns_and_an_empty_token_file_is_refused() {
    let fleet = Fleet::local();
    fleet.write_config(&[]);
    // 192.0.2.1 (TEST-NET-1) is not this machine's: the bind fails after the
    // warning, and nothing is sent anywhere.
    let output = fleet.pgfleet(&["monitor", "--listen", "192.0.2.1:9187"]);
    let said = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("warning: pgfleet monitor listens on 192.0.2.1:9187 without --auth-token-file"), "{said}");
    assert!(said.contains("cannot listen on 192.0.2.1:9187"), "{said}");

    let quiet = fleet.pgfleet(&["monitor", "--listen", "127.0.0.1:1", "--auth-token-file", "/nonexistent/token"]);
    let said = text(&quiet.stderr);
    assert_eq!(quiet.status.code(), Some(1), "{said}");
    assert!(
        said.contains("cannot read the monitor's token file /nonexistent/token") && !said.contains("warning"),
        "{said}"
    );

    let empty = fleet.dir().join("empty.token");
    std::fs::write(&empty, "\n").unwrap();
    let refused = fleet.pgfleet(&["monitor", "--auth-token-file", empty.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("is empty"), "{}", text(&refused.stderr));
}
