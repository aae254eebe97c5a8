//! `kind: sftp`: a directory on an SFTP server, reached on pgfleet's own
//! SSH session (`transport::ssh`: the host key checked against the YAML's
//! known_hosts, the identity file or the agent), with the `sftp`
//! subsystem. An upload is written to a hidden `.partial` file beside its
//! name and renamed into place (`posix-rename@openssh.com`, which replaces
//! atomically; without it the old object is removed first).
//!
//! Must not: trust a host key known_hosts does not hold (the transport's
//! rule), or run anything on the server but the SFTP subsystem.

use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::fs::File;
use russh_sftp::client::{RawSftpSession, SftpSession};
use russh_sftp::extensions::HardlinkExtension;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _, ReadBuf};
use tokio::sync::Mutex;

use super::{Body, ExactReader, ObjectMeta, Pending, Storage, StorageError, check_name, check_range, is_partial};
use crate::topology::SshTarget;
use crate::transport::ssh::SshSession;

/// The extension that renames over an existing file in one step.
const POSIX_RENAME: &str = "posix-rename@openssh.com";

/// How long one SFTP request may wait for its answer.
const REQUEST_TIMEOUT_SECS: u64 = 60;

/// Bytes handed to the SFTP file per write: the file splits them into
/// packets and keeps several in flight.
const WRITE_CHUNK: usize = 256 * 1024;

pub struct Sftp {
    target: SshTarget,
    root: PathBuf,
    /// The session, opened on first use and again after one fails.
    connection: Mutex<Option<Arc<Connection>>>,
}

/// One SSH session with two SFTP channels: `files` streams file contents
/// (with its reads and writes pipelined), `raw` sends the requests the
/// high-level client has no call for (posix-rename).
struct Connection {
    files: SftpSession,
    raw: RawSftpSession,
    posix_rename: bool,
    // Dropped last: the channels above live on it.
    _ssh: SshSession,
}

impl Sftp {
    pub fn new(target: SshTarget, root: PathBuf) -> Self {
        Sftp { target, root, connection: Mutex::new(None) }
    }

    fn failed(&self, action: &'static str, name: &str, reason: impl std::fmt::Display) -> StorageError {
        StorageError::Failed { storage: self.describe(), action, name: name.to_owned(), reason: reason.to_string() }
    }

    /// The server-side path of `name` (checked).
    fn path(&self, name: &str) -> Result<String, StorageError> {
        check_name(name).map_err(|reason| self.failed("name", name, reason))?;
        Ok(self.root.join(name).to_string_lossy().into_owned())
    }

    async fn connection(&self) -> Result<Arc<Connection>, StorageError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let open = |reason: String| StorageError::Open { storage: self.describe(), reason };
        let ssh =
            SshSession::connect(&self.target.address, &self.target).await.map_err(|error| open(render(&error)))?;
        let files = SftpSession::new(ssh.subsystem("sftp").await.map_err(|error| open(render(&error)))?)
            .await
            .map_err(|error| open(format!("the sftp subsystem did not start: {error}")))?;
        files.set_timeout(REQUEST_TIMEOUT_SECS);
        let raw = RawSftpSession::new(ssh.subsystem("sftp").await.map_err(|error| open(render(&error)))?);
        raw.set_timeout(REQUEST_TIMEOUT_SECS);
        let version = raw.init().await.map_err(|error| open(format!("the sftp subsystem did not start: {error}")))?;
        let posix_rename = version.extensions.get(POSIX_RENAME).is_some_and(|version| version == "1");
        let connection = Arc::new(Connection { files, raw, posix_rename, _ssh: ssh });
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Forgets a session an operation failed on, so the next one connects
    /// again (the server may have restarted, the network dropped it).
    async fn forget(&self, broken: &Arc<Connection>) {
        let mut slot = self.connection.lock().await;
        if slot.as_ref().is_some_and(|current| Arc::ptr_eq(current, broken)) {
            *slot = None;
        }
    }

    /// Runs `operation` on the session; a failure that is not the server's
    /// answer (a status) drops the session.
    async fn with_connection<T>(
        &self,
        operation: impl AsyncFnOnce(&Arc<Connection>) -> Result<T, Failure>,
        action: &'static str,
        name: &str,
    ) -> Result<T, StorageError> {
        let connection = self.connection().await?;
        match operation(&connection).await {
            Ok(value) => Ok(value),
            Err(Failure::Storage(error)) => Err(error),
            Err(Failure::Sftp(error)) => {
                if !matches!(error, SftpError::Status(_)) {
                    self.forget(&connection).await;
                }
                Err(self.failed(action, name, error))
            }
            Err(Failure::Io(error)) => {
                self.forget(&connection).await;
                Err(self.failed(action, name, error))
            }
        }
    }

    async fn upload(&self, connection: &Arc<Connection>, name: &str, body: &mut Body<'_>) -> Result<u64, Failure> {
        let path = self.path(name)?;
        let partial = self.root.join(super::partial_name(name)?).to_string_lossy().into_owned();
        if let Some(parent) = std::path::Path::new(&path).parent() {
            make_dirs(&connection.files, &parent.to_string_lossy()).await?;
        }
        let mut attributes = FileAttributes::empty();
        attributes.permissions = Some(0o600);
        let file = connection
            .files
            .open_with_flags_and_attributes(
                partial.clone(),
                OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE,
                attributes,
            )
            .await?;
        let mut cleanup = RemoveOnDrop { connection: Some(connection.clone()), path: partial.clone() };
        let written = write_all(file, body).await?;
        rename(connection, &partial, &path).await?;
        cleanup.connection = None;
        Ok(written)
    }
}

/// Copies `body` into `file` and closes it (which waits for every write).
async fn write_all(mut file: File, body: &mut Body<'_>) -> Result<u64, Failure> {
    let mut buffer = vec![0; WRITE_CHUNK];
    let mut written = 0u64;
    loop {
        let read = body.read(&mut buffer).await.map_err(Failure::Io)?;
        if read == 0 {
            break;
        }
        file.write_all(&buffer[..read]).await.map_err(Failure::Io)?;
        written += read as u64;
    }
    file.shutdown().await.map_err(Failure::Io)?;
    Ok(written)
}

/// Renames `from` over `to`: in one step with posix-rename, else by
/// removing `to` first (SFTP's own rename refuses an existing target).
async fn rename(connection: &Connection, from: &str, to: &str) -> Result<(), Failure> {
    if connection.posix_rename {
        // posix-rename's request is two paths, the shape of hardlink's.
        let data: Vec<u8> = HardlinkExtension { oldpath: from.to_owned(), newpath: to.to_owned() }
            .try_into()
            .map_err(|error: _| Failure::Sftp(SftpError::UnexpectedBehavior(format!("{error}"))))?;
        return match connection.raw.extended(POSIX_RENAME, data).await? {
            Packet::Status(status) if status.status_code == StatusCode::Ok => Ok(()),
            Packet::Status(status) => Err(Failure::Sftp(SftpError::Status(status))),
            _ => Err(Failure::Sftp(SftpError::UnexpectedPacket)),
        };
    }
    match connection.files.remove_file(to).await {
        Ok(()) => {}
        Err(error) if is_missing(&error) => {}
        Err(error) => return Err(error.into()),
    }
    Ok(connection.files.rename(from, to).await?)
}

/// `mkdir -p`: creates each missing directory of `path`.
async fn make_dirs(files: &SftpSession, path: &str) -> Result<(), Failure> {
    for current in super::directories_of(path) {
        match files.metadata(current.clone()).await {
            Ok(metadata) if metadata.is_dir() => continue,
            Ok(_) => {}
            Err(error) if is_missing(&error) => {}
            Err(error) => return Err(error.into()),
        }
        if let Err(error) = files.create_dir(current.clone()).await {
            // Another upload may have made it meanwhile.
            if !files.metadata(current.clone()).await.is_ok_and(|metadata| metadata.is_dir()) {
                return Err(error.into());
            }
        }
    }
    Ok(())
}

fn is_missing(error: &SftpError) -> bool {
    matches!(error, SftpError::Status(status) if status.status_code == StatusCode::NoSuchFile)
}

/// An SSH error as one line with its cause: the help pgfleet's SSH errors
/// carry (which key, which known_hosts) is in their message.
fn render(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Why an operation failed, before it becomes a `StorageError`.
enum Failure {
    Storage(StorageError),
    Sftp(SftpError),
    Io(std::io::Error),
}

impl From<StorageError> for Failure {
    fn from(error: StorageError) -> Self {
        Failure::Storage(error)
    }
}

impl From<SftpError> for Failure {
    fn from(error: SftpError) -> Self {
        Failure::Sftp(error)
    }
}

/// Removes an upload's partial file if the upload stops before its rename
/// (an error, or the `put` dropped half-way), in a task of its own.
struct RemoveOnDrop {
    connection: Option<Arc<Connection>>,
    path: String,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let path = std::mem::take(&mut self.path);
            runtime.spawn(async move {
                let _ = connection.files.remove_file(path).await;
            });
        }
    }
}

/// A download: the file's reader, holding the session it reads on.
struct Download {
    reader: ExactReader<File>,
    _connection: Arc<Connection>,
}

impl AsyncRead for Download {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl Storage for Sftp {
    fn describe(&self) -> String {
        let port = if self.target.port == 22 { String::new() } else { format!(":{}", self.target.port) };
        format!("sftp://{}@{}{port}{}", self.target.user, self.target.address, self.root.display())
    }

    fn put<'a>(&'a self, name: &'a str, mut body: Body<'a>) -> Pending<'a, u64> {
        Box::pin(async move {
            self.with_connection(async |connection| self.upload(connection, name, &mut body).await, "upload", name)
                .await
        })
    }

    fn get<'a>(&'a self, name: &'a str, range: Option<Range<u64>>) -> Pending<'a, Body<'a>> {
        Box::pin(async move {
            let path = self.path(name)?;
            let operation = async |connection: &Arc<Connection>| {
                let mut file = match connection.files.open(path.clone()).await {
                    Ok(file) => file,
                    Err(error) if is_missing(&error) => {
                        return Err(Failure::Storage(StorageError::Missing {
                            storage: self.describe(),
                            name: name.to_owned(),
                        }));
                    }
                    Err(error) => return Err(error.into()),
                };
                let size = file.metadata().await?.len();
                let range = range.clone().unwrap_or(0..size);
                check_range(&range, size).map_err(|reason| self.failed("read", name, reason))?;
                if range.start > 0 {
                    file.seek(std::io::SeekFrom::Start(range.start)).await.map_err(Failure::Io)?;
                }
                Ok(Download {
                    reader: ExactReader::new(file, range.end - range.start),
                    _connection: connection.clone(),
                })
            };
            let download = self.with_connection(operation, "read", name).await?;
            Ok(Box::new(download) as Body<'a>)
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> Pending<'a, Vec<ObjectMeta>> {
        Box::pin(async move {
            let root = self.root.to_string_lossy().into_owned();
            let operation = async |connection: &Arc<Connection>| {
                let mut objects = Vec::new();
                // Directories to read, relative to the root ("" is the root).
                let mut pending = vec![String::new()];
                while let Some(dir) = pending.pop() {
                    let path = if dir.is_empty() { root.clone() } else { format!("{root}/{dir}") };
                    let entries = match connection.files.read_dir(path).await {
                        Ok(entries) => entries,
                        // No root yet: nothing was stored.
                        Err(error) if is_missing(&error) && dir.is_empty() => return Ok(objects),
                        Err(error) => return Err(error.into()),
                    };
                    for entry in entries {
                        let file_name = entry.file_name();
                        if file_name == "." || file_name == ".." || is_partial(&file_name) {
                            continue;
                        }
                        let name = if dir.is_empty() { file_name } else { format!("{dir}/{file_name}") };
                        let metadata = entry.metadata();
                        if metadata.is_dir() {
                            if super::may_hold(&name, prefix) {
                                pending.push(name);
                            }
                        } else if metadata.is_regular() && name.starts_with(prefix) && check_name(&name).is_ok() {
                            objects.push(ObjectMeta { name, size: metadata.len() });
                        }
                    }
                }
                Ok(objects)
            };
            let mut objects = self.with_connection(operation, "list", prefix).await?;
            objects.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(objects)
        })
    }

    fn stat<'a>(&'a self, name: &'a str) -> Pending<'a, Option<ObjectMeta>> {
        Box::pin(async move {
            let path = self.path(name)?;
            let operation = async |connection: &Arc<Connection>| match connection.files.metadata(path.clone()).await {
                Ok(metadata) if metadata.is_regular() => {
                    Ok(Some(ObjectMeta { name: name.to_owned(), size: metadata.len() }))
                }
                Ok(_) => Ok(None),
                Err(error) if is_missing(&error) => Ok(None),
                Err(error) => Err(error.into()),
            };
            self.with_connection(operation, "stat", name).await
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> Pending<'a, ()> {
        Box::pin(async move {
            let path = self.path(name)?;
            let operation = async |connection: &Arc<Connection>| match connection.files.remove_file(path.clone()).await
            {
                Ok(()) => Ok(()),
                Err(error) if is_missing(&error) => Ok(()),
                Err(error) => Err(error.into()),
            };
            self.with_connection(operation, "delete", name).await
        })
    }
}
