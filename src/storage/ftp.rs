//! `kind: ftp`: a directory on an FTP server, through `suppaftp`: explicit
//! FTPS by default (`AUTH TLS`, then `PROT P` so the data connections are
//! under TLS too; rustls with ring, the system's roots or the YAML's
//! `ca_file`), passive mode, binary transfers. Each operation has its own
//! control connection (FTP does one thing at a time on one). An upload is
//! stored under a hidden `.partial` name and renamed into place
//! (`RNFR`/`RNTO`); a range is read with `REST` and `RETR`.
//!
//! Must not: let the password reach a message; fall back to clear text
//! when TLS was asked for. (suppaftp traces every command, `PASS` too,
//! through `log` at trace level: pgfleet installs no `log` logger, and one
//! added later must keep suppaftp below trace.)

use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream, AsyncRustlsStream, TransferStream};
use suppaftp::types::FileType;
use suppaftp::{FtpError, Status};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};

use super::{
    Body, ExactReader, ObjectMeta, Pending, Storage, StorageError, check_name, check_range, is_partial, scrub,
};
use crate::secrets::Secret;

/// How long connecting, the TLS handshake and logging in may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Bytes copied to the data connection at a time.
const COPY_CHUNK: usize = 256 * 1024;

/// What `Ftp::new` needs, the password read.
pub struct FtpConfig {
    pub address: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    pub path: PathBuf,
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
}

pub struct Ftp {
    config: Arc<FtpConfig>,
    tls: Option<tokio_rustls::TlsConnector>,
}

type Connection = AsyncRustlsFtpStream;

impl Ftp {
    /// Builds the TLS configuration (reading `ca_file`); connects on first
    /// use.
    pub fn new(config: FtpConfig) -> Result<Self, StorageError> {
        let tls = if config.tls {
            Some(
                tls_connector(config.ca_file.as_deref())
                    .map_err(|reason| StorageError::Open { storage: describe(&config), reason })?,
            )
        } else {
            None
        };
        Ok(Ftp { config: Arc::new(config), tls })
    }

    fn reason(&self, error: impl std::fmt::Display) -> String {
        scrub(error, &[&self.config.password])
    }

    fn failed(&self, action: &'static str, name: &str, error: impl std::fmt::Display) -> StorageError {
        StorageError::Failed { storage: self.describe(), action, name: name.to_owned(), reason: self.reason(error) }
    }

    /// The server-side path of `name` (checked).
    fn path(&self, name: &str) -> Result<String, StorageError> {
        check_name(name).map_err(|reason| self.failed("name", name, reason))?;
        Ok(self.config.path.join(name).to_string_lossy().into_owned())
    }

    fn root(&self) -> String {
        self.config.path.to_string_lossy().into_owned()
    }

    /// A logged-in control connection in binary mode.
    async fn connect(&self) -> Result<Connection, StorageError> {
        let open = |reason: String| StorageError::Open { storage: self.describe(), reason };
        let connecting = async {
            let address = (self.config.address.as_str(), self.config.port);
            let mut connection = Connection::connect(address).await.map_err(|error| open(self.reason(error)))?;
            if let Some(tls) = &self.tls {
                connection = connection
                    .into_secure(AsyncRustlsConnector::from(tls.clone()), &self.config.address)
                    .await
                    .map_err(|error| open(format!("TLS (AUTH TLS) failed: {}", self.reason(error))))?;
            }
            // The data connections go to the control connection's address
            // whatever PASV says (a server behind NAT names its inner one).
            connection.set_passive_nat_workaround(true);
            connection
                .login(self.config.user.as_str(), self.config.password.expose())
                .await
                .map_err(|error| open(format!("login as `{}` failed: {}", self.config.user, self.reason(error))))?;
            connection.transfer_type(FileType::Binary).await.map_err(|error| open(self.reason(error)))?;
            Ok(connection)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| open(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())))?
    }

    /// `mkdir -p` for `dir`: MKD each component; one that exists already
    /// answers 550, which the upload's STOR then shows if it mattered.
    async fn make_dirs(&self, connection: &mut Connection, dir: &str) {
        for dir in super::directories_of(dir) {
            let _ = connection.mkdir(&dir).await;
        }
    }

    async fn upload(&self, name: &str, body: &mut Body<'_>) -> Result<u64, StorageError> {
        let path = self.path(name)?;
        let partial = self.config.path.join(super::partial_name(name)?).to_string_lossy().into_owned();
        let mut connection = self.connect().await?;
        if let Some(parent) = std::path::Path::new(&path).parent() {
            self.make_dirs(&mut connection, &parent.to_string_lossy()).await;
        }
        let mut cleanup = RemoveOnDrop { config: Some((self.config.clone(), self.tls.clone())), path: partial.clone() };
        let mut stream =
            connection.put_with_stream(&partial).await.map_err(|error| self.failed("upload", name, error))?;
        let mut buffer = vec![0; COPY_CHUNK];
        let mut written = 0u64;
        loop {
            let read = body.read(&mut buffer).await.map_err(|error| self.failed("read the body of", name, error))?;
            if read == 0 {
                break;
            }
            stream.write_all(&buffer[..read]).await.map_err(|error| self.failed("upload", name, error))?;
            written += read as u64;
        }
        stream.finish().await.map_err(|error| self.failed("upload", name, error))?;
        match connection.rename(&partial, &path).await {
            Ok(()) => {}
            Err(_) => {
                // A server that refuses to rename over a file: remove it
                // first (the name is briefly missing).
                let _ = connection.rm(&path).await;
                connection.rename(&partial, &path).await.map_err(|error| self.failed("upload", name, error))?;
            }
        }
        cleanup.config = None;
        let _ = connection.quit().await;
        Ok(written)
    }

    /// The size of `path`, `None` when there is no such file.
    async fn size(&self, connection: &mut Connection, path: &str, name: &str) -> Result<Option<u64>, StorageError> {
        match connection.size(path).await {
            Ok(size) => Ok(Some(size as u64)),
            Err(FtpError::UnexpectedResponse(response)) if response.status == Status::FileUnavailable => Ok(None),
            Err(error) => Err(self.failed("stat", name, error)),
        }
    }

    /// The entries of one directory, as (file name, is a directory, size).
    async fn read_dir(&self, connection: &mut Connection, dir: &str) -> Result<Vec<(String, bool, u64)>, FtpError> {
        let lines = match connection.mlsd(Some(dir)).await {
            Ok(lines) => lines,
            Err(FtpError::UnexpectedResponse(response))
                if matches!(
                    response.status,
                    Status::BadCommand | Status::NotImplemented | Status::CommandNotImplemented
                ) =>
            {
                // No MLSD (vsftpd): the UNIX-style LIST.
                connection.list(Some(dir)).await?
            }
            Err(error) => return Err(error),
        };
        Ok(lines
            .iter()
            .filter_map(|line| suppaftp::list::File::try_from(line.as_str()).ok())
            .map(|file| (file.name().to_owned(), file.is_directory(), file.size() as u64))
            .collect())
    }
}

/// The TLS client configuration: the CA file's certificates as the only
/// roots, or the platform's verifier (the system's roots).
fn tls_connector(ca_file: Option<&std::path::Path>) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    use rustls_platform_verifier::BuilderVerifierExt as _;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?;
    let config = match ca_file {
        Some(path) => {
            let path = crate::transport::expand_home(path);
            let unreadable = |error: &dyn std::fmt::Display| format!("cannot read ca_file {}: {error}", path.display());
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_file_iter(&path).map_err(|error| unreadable(&error))? {
                roots.add(certificate.map_err(|error| unreadable(&error))?).map_err(|error| unreadable(&error))?;
            }
            if roots.is_empty() {
                return Err(unreadable(&"it holds no PEM certificate"));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder.with_platform_verifier().map_err(|error| error.to_string())?.with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn describe(config: &FtpConfig) -> String {
    let scheme = if config.tls { "ftps" } else { "ftp" };
    let port = if config.port == 21 { String::new() } else { format!(":{}", config.port) };
    format!("{scheme}://{}@{}{port}{}", config.user, config.address, config.path.display())
}

/// Removes an upload's partial file if the upload stops before its rename
/// (an error, or the `put` dropped half-way): on a new connection, in a
/// task of its own, since the upload's may be what failed.
struct RemoveOnDrop {
    config: Option<(Arc<FtpConfig>, Option<tokio_rustls::TlsConnector>)>,
    path: String,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some((config, tls)) = self.config.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let path = std::mem::take(&mut self.path);
            runtime.spawn(async move {
                let ftp = Ftp { config, tls };
                if let Ok(mut connection) = ftp.connect().await {
                    let _ = connection.rm(&path).await;
                    let _ = connection.quit().await;
                }
            });
        }
    }
}

/// A download: the data connection, holding its control connection.
struct Download {
    reader: ExactReader<TransferStream<AsyncRustlsStream>>,
    _connection: Connection,
}

impl AsyncRead for Download {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl Storage for Ftp {
    fn describe(&self) -> String {
        describe(&self.config)
    }

    fn put<'a>(&'a self, name: &'a str, mut body: Body<'a>) -> Pending<'a, u64> {
        Box::pin(async move { self.upload(name, &mut body).await })
    }

    fn get<'a>(&'a self, name: &'a str, range: Option<Range<u64>>) -> Pending<'a, Body<'a>> {
        Box::pin(async move {
            let path = self.path(name)?;
            let mut connection = self.connect().await?;
            let Some(size) = self.size(&mut connection, &path, name).await? else {
                return Err(StorageError::Missing { storage: self.describe(), name: name.to_owned() });
            };
            let range = range.unwrap_or(0..size);
            check_range(&range, size).map_err(|reason| self.failed("read", name, reason))?;
            if range.is_empty() {
                return Ok(Box::new(tokio::io::empty()) as Body<'a>);
            }
            let offset = usize::try_from(range.start).map_err(|error| self.failed("read", name, error))?;
            connection.resume_transfer(offset).await.map_err(|error| self.failed("read", name, error))?;
            let stream = connection.retr_as_stream(&path).await.map_err(|error| self.failed("read", name, error))?;
            let download =
                Download { reader: ExactReader::new(stream, range.end - range.start), _connection: connection };
            Ok(Box::new(download) as Body<'a>)
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> Pending<'a, Vec<ObjectMeta>> {
        Box::pin(async move {
            let root = self.root();
            let mut connection = self.connect().await?;
            let mut objects = Vec::new();
            let mut pending = vec![String::new()];
            while let Some(dir) = pending.pop() {
                let path = if dir.is_empty() { root.clone() } else { format!("{root}/{dir}") };
                let entries = match self.read_dir(&mut connection, &path).await {
                    Ok(entries) => entries,
                    Err(FtpError::UnexpectedResponse(response))
                        if response.status == Status::FileUnavailable && dir.is_empty() =>
                    {
                        // No root yet: nothing was stored.
                        Vec::new()
                    }
                    Err(error) => return Err(self.failed("list", prefix, error)),
                };
                for (file_name, is_directory, size) in entries {
                    if file_name == "." || file_name == ".." || is_partial(&file_name) {
                        continue;
                    }
                    let name = if dir.is_empty() { file_name } else { format!("{dir}/{file_name}") };
                    if is_directory {
                        if super::may_hold(&name, prefix) {
                            pending.push(name);
                        }
                    } else if name.starts_with(prefix) && check_name(&name).is_ok() {
                        objects.push(ObjectMeta { name, size });
                    }
                }
            }
            let _ = connection.quit().await;
            objects.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(objects)
        })
    }

    fn stat<'a>(&'a self, name: &'a str) -> Pending<'a, Option<ObjectMeta>> {
        Box::pin(async move {
            let path = self.path(name)?;
            let mut connection = self.connect().await?;
            let size = self.size(&mut connection, &path, name).await?;
            let _ = connection.quit().await;
            Ok(size.map(|size| ObjectMeta { name: name.to_owned(), size }))
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> Pending<'a, ()> {
        Box::pin(async move {
            let path = self.path(name)?;
            let mut connection = self.connect().await?;
            if let Err(error) = connection.rm(&path).await {
                // 550 for a missing file is success; for anything else
                // (permissions), the file is still there.
                if self.size(&mut connection, &path, name).await?.is_some() {
                    return Err(self.failed("delete", name, error));
                }
            }
            let _ = connection.quit().await;
            Ok(())
        })
    }
}
