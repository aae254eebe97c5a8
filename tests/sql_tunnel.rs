//! SQL reaches a PostgreSQL that listens only on its host's address, through
//! the transport: over an SSH `direct-tcpip` channel, and locally.

// Tests may unwrap and print: a failure is the report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::time::Duration;

use pgfleet::sql::{self, SqlTarget};
use pgfleet::topology::SshTarget;
use pgfleet::transport::local::Local;
use pgfleet::transport::ssh::SshSession;
use pgfleet::transport::{FileSpec, Remote};
use support::{PgServer, SshServer};

fn target(server: &SshServer) -> SshTarget {
    support::ssh_target(server)
}

async fn connect(remote: &dyn Remote, pg: &PgServer) -> tokio_postgres::Client {
    let address = pg.address.to_string();
    sql::connect(
        remote,
        SqlTarget { address: &address, port: pg.port, user: "postgres", database: "postgres", password: None },
    )
    .await
    .unwrap()
}

async fn probe(client: &tokio_postgres::Client) -> (String, String) {
    let row = client.query_one("select current_setting('port'), inet_server_addr()::text", &[]).await.unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn sql_travels_through_the_ssh_channel_to_the_hosts_own_address() {
    let ssh = SshServer::start();
    let pg = PgServer::start(ssh.address, "");
    let session = SshSession::connect("db1", &target(&ssh)).await.unwrap();
    let client = connect(&session, &pg).await;
    let (port, server_address) = probe(&client).await;
    assert_eq!(port, pg.port.to_string());
    assert_eq!(server_address, format!("{}/32", pg.address));
    // The SQL session rides on the SSH connection: closing it ends the SQL.
    session.close().await;
    let after = tokio::time::timeout(Duration::from_secs(10), client.simple_query("select 1")).await;
    assert!(matches!(after, Ok(Err(_))), "SQL survived the SSH session: {after:?}");
}

#[tokio::test]
async fn sql_and_files_work_on_the_local_transport() {
    let address = support::free_loopback_address();
    let pg = PgServer::start(address, "");
    let local = Local::new("here");
    let (port, _) = probe(&connect(&local, &pg).await).await;
    assert_eq!(port, pg.port.to_string());

    // Files are written atomically with their mode, as the service user.
    let dir = support::shared_temp_dir("pgfleet-files-");
    std::process::Command::new("chown").arg("postgres").arg(dir.path()).status().unwrap();
    let path = dir.path().join("secret");
    local.write_file(FileSpec { path: &path, contents: b"s3cret\n", mode: 0o600 }).await.unwrap();
    assert_eq!(local.read_file(&path).await.unwrap().as_deref(), Some(&b"s3cret\n"[..]));
    let metadata = std::fs::metadata(&path).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    assert_eq!(support::as_postgres("id -u").trim(), metadata.uid().to_string());
    assert_eq!(local.read_file(&dir.path().join("missing")).await.unwrap(), None);
}
