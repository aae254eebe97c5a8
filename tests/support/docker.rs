//! A Docker daemon and the local image for the `docker` runtime's tests.
//! With no systemd here, dockerd is started (once per machine, pid file
//! `/run/pgfleet-test-dockerd.pid`) with `--bridge=none --iptables=false`:
//! test containers use the host's network, each server on its own loopback
//! address. `scripts/test.sh` stops the daemon it started, by that pid. The
//! image is built from this machine's own packages (no registry), cached
//! by tag.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const IMAGE: &str = "pgfleet-local/postgres:15";
pub const PID_FILE: &str = "/run/pgfleet-test-dockerd.pid";

fn docker_answers() -> bool {
    Command::new("docker").arg("info").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// A running daemon that `postgres` may use, and the test image.
pub fn ensure() {
    static READY: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    READY.get_or_init(|| {
        if !docker_answers() {
            // Started through a shell that leaves it running on its own:
            // it outlives this test process, and scripts/test.sh stops it.
            let started = Command::new("sh")
                .args([
                    "-c",
                    &format!(
                        "dockerd --bridge=none --iptables=false --ip6tables=false --pidfile {PID_FILE} \
                     </dev/null >/tmp/pgfleet-test-dockerd.log 2>&1 &"
                    ),
                ])
                .status()
                .expect("sh");
            assert!(started.success(), "could not start dockerd (apt-get install docker.io)");
            let deadline = Instant::now() + Duration::from_secs(60);
            while !docker_answers() {
                assert!(Instant::now() < deadline, "dockerd did not answer; see /tmp/pgfleet-test-dockerd.log");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let groups = Command::new("id").args(["-nG", "postgres"]).output().expect("id");
        if !String::from_utf8_lossy(&groups.stdout).split_whitespace().any(|group| group == "docker") {
            assert!(Command::new("usermod").args(["-aG", "docker", "postgres"]).status().expect("usermod").success());
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/docker-image.sh");
        let built = Command::new("bash").arg(script).arg(IMAGE).output().expect("docker-image.sh");
        assert!(built.status.success(), "building {IMAGE}: {}", String::from_utf8_lossy(&built.stderr));
    });
}

/// Removes the named containers on drop (what the test and pgfleet ran).
pub struct Containers(pub Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        let _ = Command::new("docker").arg("rm").arg("-f").args(&self.0).output();
    }
}

/// `docker inspect -f FORMAT NAME`, trimmed; empty when there is none.
pub fn inspect(name: &str, format: &str) -> String {
    let output = Command::new("docker").args(["inspect", "-f", format, name]).output().expect("docker inspect");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
