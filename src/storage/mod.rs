//! Where backups are kept: one interface over every kind of storage the
//! YAML can name (`backups.storage`), each kind in its own file with a crate
//! made for it. Backups stream through it: an upload reads its body a chunk
//! at a time, a download hands back a reader, and a range read lets a zip's
//! directory be read without fetching the whole archive.
//!
//! Object names are `/`-separated relative paths that pgfleet chooses
//! (`<environment>/<backup id>.zip`); they never hold a secret.
//!
//! Must not: know what a backup is (the `backup` module's); let a
//! credential reach a message, an object name or a log.

pub mod ftp;
pub mod local;
pub mod s3;
pub mod sftp;

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;

use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::secrets::Secret;
use crate::transport::Remote;

pub use ftp::Ftp;
pub use local::LocalDir;
pub use s3::S3;
pub use sftp::Sftp;

/// A boxed future, so `Storage` can be used as a trait object.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// A body to upload or a download being read.
pub type Body<'a> = Box<dyn AsyncRead + Send + Unpin + 'a>;

/// What a listing or a stat says of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's name, relative to the storage's root (its prefix).
    pub name: String,
    pub size: u64,
}

/// A place backups are kept.
///
/// # Guarantees every implementation gives
/// - `put` is atomic: until it returns `Ok` no object of that name is
///   listed or readable (an upload that fails or is interrupted leaves at
///   most an invisible partial object, removed when possible); a second
///   `put` of a name replaces it.
/// - `put` reads `body` only as fast as it sends, so memory stays bounded
///   whatever the size.
/// - `get` with a range returns exactly those bytes (a range past the end
///   is an error); without one, the whole object.
/// - `list` returns every object whose name starts with `prefix`, sorted by
///   name.
/// - `stat` and `get` of a missing object: `Ok(None)` and
///   `StorageError::Missing`.
pub trait Storage: Send + Sync {
    /// Where this is, for messages (`s3://bucket/prefix`, `sftp://user@host/path`),
    /// never with a credential.
    fn describe(&self) -> String;

    /// Stores `body` under `name`; returns the bytes written.
    fn put<'a>(&'a self, name: &'a str, body: Body<'a>) -> Pending<'a, u64>;

    /// Reads the object `name`, or `range` of it.
    fn get<'a>(&'a self, name: &'a str, range: Option<Range<u64>>) -> Pending<'a, Body<'a>>;

    fn list<'a>(&'a self, prefix: &'a str) -> Pending<'a, Vec<ObjectMeta>>;

    fn stat<'a>(&'a self, name: &'a str) -> Pending<'a, Option<ObjectMeta>>;

    /// Removes `name`; removing a missing object is not an error.
    fn delete<'a>(&'a self, name: &'a str) -> Pending<'a, ()>;
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StorageError {
    #[error("no object `{name}` in {storage}")]
    #[diagnostic(code(pgfleet::storage::missing))]
    Missing { storage: String, name: String },

    #[error("{storage}: {action} `{name}` failed: {reason}")]
    #[diagnostic(code(pgfleet::storage::failed))]
    Failed { storage: String, action: &'static str, name: String, reason: String },

    #[error("cannot open {storage}: {reason}")]
    #[diagnostic(
        code(pgfleet::storage::open),
        help("check backups.storage in the YAML and that the server is reachable")
    )]
    Open { storage: String, reason: String },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Secret(#[from] crate::secrets::SecretError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Transport(#[from] crate::transport::TransportError),
}

/// Checks an object name pgfleet made: relative, `/`-separated, of
/// letters, digits and `._-` only, no `.` or `..` component. Storages
/// quote names into paths and commands; this keeps every name harmless.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte))
        });
    if valid { Ok(()) } else { Err(format!("invalid object name `{name}`")) }
}

/// Opens the storage the YAML describes. `primary_host` is the host of the
/// environment's primary, where a `local` storage's directory is. Secrets
/// are read here; a remote storage connects on its first operation.
pub async fn open(
    spec: &crate::spec::Storage,
    primary_host: Arc<dyn Remote>,
) -> Result<Box<dyn Storage>, StorageError> {
    use crate::spec::Storage as Spec;
    Ok(match spec {
        Spec::Local { path } => Box::new(LocalDir::new(primary_host, path.clone())),
        Spec::S3 { bucket, endpoint, region, prefix, access_key, secret_key } => {
            let access_key = read_secret(access_key, "backups.storage.access_key")?;
            let secret_key = read_secret(secret_key, "backups.storage.secret_key")?;
            Box::new(S3::open(s3::S3Config {
                bucket: bucket.clone(),
                endpoint: endpoint.clone(),
                region: region.clone(),
                prefix: prefix.clone(),
                access_key,
                secret_key,
            })?)
        }
        Spec::Sftp { address, port, user, path, identity_file, known_hosts } => Box::new(Sftp::new(
            crate::topology::SshTarget {
                address: address.clone(),
                port: port.unwrap_or(22),
                user: user.clone(),
                identity_file: identity_file.clone(),
                known_hosts: known_hosts.clone().unwrap_or_else(|| "~/.ssh/known_hosts".into()),
                become_user: None,
            },
            path.clone(),
        )),
        Spec::Ftp { address, port, user, password, path, tls, ca_file } => Box::new(Ftp::new(ftp::FtpConfig {
            address: address.clone(),
            port: port.unwrap_or(21),
            user: user.clone(),
            password: read_secret(password, "backups.storage.password")?,
            path: path.clone(),
            tls: tls.unwrap_or(true),
            ca_file: ca_file.clone(),
        })?),
    })
}

/// A storage's secret: `{generate: true}` has no meaning here (nothing
/// pgfleet manages would hold the generated value).
fn read_secret(reference: &crate::spec::SecretRef, what: &str) -> Result<Secret, StorageError> {
    crate::secrets::read(reference, what)?.ok_or_else(|| StorageError::Open {
        storage: "backups.storage".into(),
        reason: format!("{what} must come from {{env: ...}} or {{file: ...}}, not be generated"),
    })
}

/// A server's or a library's message with every secret of the storage cut
/// out: what reaches `StorageError`'s reason. The libraries never put a
/// credential in their errors as far as pgfleet knows; this holds even if
/// one starts to.
pub(crate) fn scrub(reason: impl std::fmt::Display, secrets: &[&Secret]) -> String {
    let mut text = reason.to_string();
    for secret in secrets {
        if !secret.expose().is_empty() {
            text = text.replace(secret.expose(), "(redacted)");
        }
    }
    text
}

/// An error as one line with its causes (`error sending request: …:
/// invalid peer certificate: UnknownIssuer`): libraries put the reason a
/// connection failed in the sources, not in the message.
pub(crate) use crate::observe::error_chain as chain;

/// The hidden name an upload is written to before it is renamed to `name`
/// (`dir/.file.partial.<random>`): listings skip it, and two uploads of one
/// name never share it.
pub(crate) fn partial_name(name: &str) -> Result<String, StorageError> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|_| crate::secrets::SecretError::Random)?;
    let suffix: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(match name.rsplit_once('/') {
        Some((dir, file)) => format!("{dir}/.{file}.partial.{suffix}"),
        None => format!(".{name}.partial.{suffix}"),
    })
}

/// The directories `mkdir -p dir` makes, outermost first: `/a/b` gives
/// `/a`, `/a/b`; `a/b` gives `a`, `a/b`.
pub(crate) fn directories_of(dir: &str) -> Vec<String> {
    let mut dirs: Vec<String> = std::path::Path::new(dir)
        .ancestors()
        .map(|ancestor| ancestor.to_string_lossy().into_owned())
        .filter(|ancestor| !ancestor.is_empty() && ancestor != "/")
        .collect();
    dirs.reverse();
    dirs
}

/// Whether a file name (the last component) is an upload in progress.
pub(crate) fn is_partial(file_name: &str) -> bool {
    file_name.starts_with('.') && file_name.contains(".partial.")
}

/// Whether the directory `dir` (relative, no trailing `/`) may hold an
/// object whose name starts with `prefix`: listings descend only there.
pub(crate) fn may_hold(dir: &str, prefix: &str) -> bool {
    let dir = format!("{dir}/");
    prefix.starts_with(&dir) || dir.starts_with(prefix)
}

/// Checks a range against an object's size, the one rule every storage
/// applies the same way.
pub(crate) fn check_range(range: &Range<u64>, size: u64) -> Result<(), String> {
    if range.start > range.end || range.end > size {
        Err(format!("range {range:?} is outside its {size} bytes"))
    } else {
        Ok(())
    }
}

/// A download that must yield exactly `expected` bytes: it stops there,
/// and a stream that ends sooner (a connection cut, a file truncated while
/// read) is a read error, never a silently short object.
pub(crate) struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R> ExactReader<R> {
    pub(crate) fn new(inner: R, expected: u64) -> Self {
        ExactReader { inner, remaining: expected }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ExactReader<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.remaining == 0 || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let limit = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(buf.remaining());
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(limit));
        std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, &mut limited))?;
        let read = limited.filled().len();
        if read == 0 {
            let missing = self.remaining;
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the download ended {missing} bytes early"),
            )));
        }
        buf.advance(read);
        self.remaining -= read as u64;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn partial_names_are_hidden_beside_the_object_and_distinct() {
        let first = partial_name("prod/prod-1.zip").unwrap();
        let second = partial_name("prod/prod-1.zip").unwrap();
        assert!(first.starts_with("prod/.prod-1.zip.partial."), "{first}");
        assert_ne!(first, second);
        assert!(check_name(&first).is_ok());
        assert!(is_partial(first.rsplit('/').next().unwrap()));
        assert!(!is_partial("prod-1.zip"));
        assert!(partial_name("a.json").unwrap().starts_with(".a.json.partial."));
    }

    #[test]
    fn mkdir_p_makes_each_directory_outermost_first() {
        assert_eq!(directories_of("/srv/backups/prod"), ["/srv", "/srv/backups", "/srv/backups/prod"]);
        assert_eq!(directories_of("backups/prod"), ["backups", "backups/prod"]);
        assert!(directories_of("/").is_empty());
    }

    #[test]
    fn listings_descend_only_where_the_prefix_can_be() {
        assert!(may_hold("prod", ""));
        assert!(may_hold("prod", "prod/"));
        assert!(may_hold("prod", "pr"));
        assert!(may_hold("prod", "prod/prod-2026"));
        assert!(may_hold("prod/2026", "prod/"));
        assert!(!may_hold("staging", "prod/"));
        assert!(!may_hold("production", "prod/"));
    }

    #[test]
    fn an_error_chain_is_one_line_without_repeats() {
        let inner = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        let outer = std::io::Error::other(crate::transport::TransportError::Io {
            host: "h".into(),
            action: "connect",
            source: inner,
        });
        let text = chain(&outer);
        assert!(text.ends_with("invalid peer certificate: UnknownIssuer"), "{text}");
        assert_eq!(text.matches("UnknownIssuer").count(), 1, "{text}");
    }

    #[test]
    fn secrets_are_cut_out_of_messages() {
        let secret = Secret::new("s3cr3t".into());
        assert_eq!(scrub("bad key s3cr3t for s3cr3t", &[&secret]), "bad key (redacted) for (redacted)");
    }

    #[tokio::test]
    async fn exact_reader_stops_at_its_length_and_refuses_a_short_stream() {
        let mut read = Vec::new();
        ExactReader::new(&b"0123456789"[..], 4).read_to_end(&mut read).await.unwrap();
        assert_eq!(read, b"0123");
        let short = ExactReader::new(&b"01"[..], 4).read_to_end(&mut Vec::new()).await;
        assert_eq!(short.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn object_names_are_plain_relative_paths() {
        for good in ["prod/prod-20261203T060000Z.zip", "a.json", "x/y/z_1-2.verified.json"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "/abs", "a//b", "../x", "a/./b", "a b", "a;rm", "a\nb", "é"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
