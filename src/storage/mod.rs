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

mod local;

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::AsyncRead;

use crate::transport::Remote;

pub use local::LocalDir;

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
/// environment's primary, where a `local` storage's directory is.
pub async fn open(
    spec: &crate::spec::Storage,
    primary_host: Arc<dyn Remote>,
) -> Result<Box<dyn Storage>, StorageError> {
    match spec {
        crate::spec::Storage::Local { path } => Ok(Box::new(LocalDir::new(primary_host, path.clone()))),
        other => Err(StorageError::Open {
            storage: kind_name(other).to_owned(),
            reason: "this storage kind is not built yet".into(),
        }),
    }
}

fn kind_name(spec: &crate::spec::Storage) -> &'static str {
    match spec {
        crate::spec::Storage::Local { .. } => "local",
        crate::spec::Storage::S3 { .. } => "s3",
        crate::spec::Storage::Sftp { .. } => "sftp",
        crate::spec::Storage::Ftp { .. } => "ftp",
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

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
