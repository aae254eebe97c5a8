//! The test harness's sshd is real: pgfleet's SSH transport connects to it,
//! verifies its host key from known_hosts, and runs commands as postgres.

// Tests may unwrap and print: a failure is the report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::time::Duration;

use pgfleet::topology::SshTarget;
use pgfleet::transport::ssh::{SshError, SshSession};
use pgfleet::transport::{FileSpec, Remote};
use support::SshServer;

fn target(server: &SshServer) -> SshTarget {
    support::ssh_target(server)
}

#[tokio::test]
async fn harness_sshd_verifies_host_key_and_runs_commands_as_postgres() {
    let server = SshServer::start();
    let session =
        SshSession::connect("db1", &target(&server)).await.unwrap_or_else(|e| panic!("{e}: {}", server.log()));

    let output = session.exec("id -un; echo \"$SSH_CONNECTION\"", b"", Duration::from_secs(10)).await.unwrap();
    assert!(output.success(), "{output:?}");
    let stdout = output.stdout_text();
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("postgres"));
    // The connection really went to the test's own loopback address and port.
    let connection: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
    assert_eq!(connection.get(2), Some(&server.address.to_string().as_str()));
    assert_eq!(connection.get(3), Some(&server.port.to_string().as_str()));

    let echoed = session.exec("cat; exit 7", b"through stdin", Duration::from_secs(10)).await.unwrap();
    assert_eq!(echoed.status, 7);
    assert_eq!(echoed.stdout, b"through stdin");
    session.close().await;
}

#[tokio::test]
async fn harness_sshd_with_another_host_key_is_refused_as_changed() {
    let server = SshServer::start();
    let other = SshServer::start();
    // known_hosts says `server`'s address has `other`'s key.
    let forged = other.dir().join("forged_known_hosts");
    std::fs::write(&forged, format!("[{}]:{} {}\n", server.address, server.port, other.host_public_key)).unwrap();
    let mut target = target(&server);
    target.known_hosts = forged;
    match SshSession::connect("db1", &target).await {
        Err(SshError::HostKeyChanged { host, line, .. }) => {
            assert_eq!(host, "db1");
            assert_eq!(line, 1);
        }
        Err(other) => panic!("expected a changed host key, got {other}"),
        Ok(_) => panic!("a forged host key was accepted"),
    }
}

#[tokio::test]
async fn a_host_known_by_its_rsa_key_is_verified() {
    // The server has an ed25519 key too, which clients prefer; known_hosts
    // holds only its RSA key, so pgfleet must ask for RSA host keys.
    let server = SshServer::start_with_host_keys(&["ed25519", "rsa"]);
    assert!(server.host_public_key.starts_with("ssh-rsa "));
    let session =
        SshSession::connect("db1", &target(&server)).await.unwrap_or_else(|e| panic!("{e}: {}", server.log()));
    let output = session.exec("id -un", b"", Duration::from_secs(10)).await.unwrap();
    assert_eq!(output.stdout_text().trim(), "postgres");
}

#[tokio::test]
async fn become_runs_commands_and_writes_files_as_postgres_through_sudo() {
    support::ensure_sudo_user();
    let server = SshServer::start();
    let mut target = target(&server);
    target.user = support::SUDO_USER.into();
    let login = SshSession::connect("db1", &target).await.unwrap_or_else(|e| panic!("{e}: {}", server.log()));
    let output = login.exec("id -un", b"", Duration::from_secs(10)).await.unwrap();
    assert_eq!(output.stdout_text().trim(), support::SUDO_USER);

    target.become_user = Some("postgres".into());
    let session = SshSession::connect("db1", &target).await.unwrap();
    let output = session.exec("id -un; cat", b"stdin passes through sudo", Duration::from_secs(10)).await.unwrap();
    assert!(output.success(), "{}", output.stderr_text());
    assert_eq!(output.stdout_text(), "postgres\nstdin passes through sudo");

    let dir = support::shared_temp_dir("pgfleet-become-");
    std::process::Command::new("chown").arg("postgres").arg(dir.path()).status().unwrap();
    let path = dir.path().join("secret");
    session.write_file(FileSpec { path: &path, contents: b"x\n", mode: 0o600 }).await.unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&path).unwrap().uid().to_string(), support::as_postgres("id -u").trim());
}
