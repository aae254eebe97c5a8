//! SQL over a transport: tokio-postgres speaking on a stream the transport
//! opened on the host (a `direct-tcpip` channel for SSH), so a database that
//! listens only on the host's loopback is reachable without exposing a port.

use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use crate::transport::{Remote, TransportError};

/// How long connecting and authenticating may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to connect and as whom. The password, when there is one, is only
/// handed to the protocol (SCRAM); it is never formatted into anything.
#[derive(Clone, Copy)]
pub struct SqlTarget<'a> {
    pub address: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub database: &'a str,
    pub password: Option<&'a str>,
}

impl std::fmt::Debug for SqlTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlTarget")
            .field("address", &self.address)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SqlError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Transport(#[from] TransportError),

    #[error("cannot open a SQL session to {address}:{port} on host `{host}` as `{user}`")]
    #[diagnostic(
        code(pgfleet::sql::connect),
        help("is PostgreSQL running there, and does pg_hba.conf admit this user?")
    )]
    Connect {
        host: String,
        address: String,
        port: u16,
        user: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("SQL session to {address}:{port} on host `{host}` timed out")]
    #[diagnostic(code(pgfleet::sql::timeout))]
    Timeout { host: String, address: String, port: u16 },
}

/// Opens a session through `remote`, on a TCP stream to the target's
/// address and port as seen from the host. The connection is driven by a
/// task that ends when the returned client is dropped.
pub async fn connect(remote: &dyn Remote, target: SqlTarget<'_>) -> Result<Client, SqlError> {
    session(remote, target, async { remote.connect_tcp(target.address, target.port).await }).await
}

/// Opens a session on the stdin and stdout of `bridge`, a command run on
/// the host that connects them to the server (its Unix socket, where the
/// service user logs in by peer authentication). The target's address and
/// port are for messages.
pub async fn connect_through(remote: &dyn Remote, bridge: &str, target: SqlTarget<'_>) -> Result<Client, SqlError> {
    session(remote, target, async { remote.connect_command(bridge).await }).await
}

async fn session(
    remote: &dyn Remote,
    target: SqlTarget<'_>,
    stream: impl std::future::Future<Output = Result<Box<dyn crate::transport::Stream>, TransportError>>,
) -> Result<Client, SqlError> {
    let work = async {
        let stream = stream.await?;
        let mut config = Config::new();
        config.user(target.user).dbname(target.database).application_name("pgfleet");
        if let Some(password) = target.password {
            config.password(password);
        }
        let (client, connection) = config.connect_raw(stream, NoTls).await.map_err(|source| SqlError::Connect {
            host: remote.host().to_owned(),
            address: target.address.to_owned(),
            port: target.port,
            user: target.user.to_owned(),
            source,
        })?;
        tokio::spawn(async move {
            // Errors surface on the client's next call; nothing to do here.
            let _ = connection.await;
        });
        Ok(client)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, work).await.unwrap_or_else(|_| {
        Err(SqlError::Timeout { host: remote.host().to_owned(), address: target.address.to_owned(), port: target.port })
    })
}
