//! Headless Chromium driven through chromedriver's WebDriver HTTP API, for
//! tests that read a page's rendered DOM. Everything stays on loopback:
//! chromedriver listens on 127.0.0.1, and Chromium runs with every
//! background network feature off. The session and chromedriver are
//! stopped (by pid) on drop, panics included.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

/// Chromium's flags: no sandbox (tests run as root), nothing contacted but
/// the page's own server, a fresh profile.
fn chromium_args(profile: &std::path::Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--metrics-recording-only",
        "--no-default-browser-check",
        // No host name resolves but loopback's: nothing else can be reached.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.*",
        "--window-size=1100,900",
    ]
    .iter()
    .map(|flag| (*flag).to_owned())
    .chain(std::iter::once(format!("--user-data-dir={}", profile.display())))
    .collect()
}

impl Browser {
    pub fn start() -> Self {
        let profile = tempfile::Builder::new().prefix("pgfleet-chromium-").tempdir().unwrap();
        let port = super::free_port(Ipv4Addr::LOCALHOST);
        let log = profile.path().join("chromedriver.log");
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser { driver, base, session: String::new(), _profile: profile };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ureq::get(&format!("{}/status", browser.base))
            .call()
            .ok()
            .and_then(|response| response.into_string().ok())
            .and_then(|body| serde_json::from_str::<Value>(&body).ok())
            .is_some_and(|status| status["value"]["ready"] == true)
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": chromium_args(browser._profile.path()),
                },
            }},
        });
        let created = browser.call("POST", "/session", capabilities);
        browser.session = created["sessionId"].as_str().expect("a session id").to_owned();
        browser
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let request = ureq::request(method, &url).timeout(Duration::from_secs(60));
        let response = if method == "GET" || method == "DELETE" {
            request.call()
        } else {
            request.set("content-type", "application/json").send_string(&body.to_string())
        };
        match response {
            Ok(response) => {
                let value: Value = serde_json::from_str(&response.into_string().unwrap()).unwrap();
                value["value"].clone()
            }
            Err(ureq::Error::Status(code, response)) => {
                panic!("WebDriver {method} {path}: HTTP {code}: {}", response.into_string().unwrap_or_default())
            }
            Err(error) => panic!("WebDriver {method} {path}: {error}"),
        }
    }

    fn session_call(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn open(&self, url: &str) {
        self.session_call("POST", "/url", json!({ "url": url }));
    }

    /// Runs `body` (a function body: `return …;`) in the page.
    pub fn script(&self, body: &str) -> Value {
        self.session_call("POST", "/execute/sync", json!({ "script": body, "args": [] }))
    }

    /// Polls `body` until it returns something truthy; returns that.
    pub fn wait_for(&self, what: &str, timeout: Duration, body: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.script(body);
            if !matches!(value, Value::Null | Value::Bool(false)) && value != json!("") && value != json!(0) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; the page says: {}",
                self.script("return document.body ? document.body.innerText : '';")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.session_call("POST", "/window/rect", json!({ "width": width, "height": height }));
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let encoded = self.session_call("GET", "/screenshot", Value::Null);
        base64::engine::general_purpose::STANDARD.decode(encoded.as_str().expect("base64 PNG")).unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session))
                .timeout(Duration::from_secs(10))
                .call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
