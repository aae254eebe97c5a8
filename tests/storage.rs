//! Every backup storage against a real server on loopback: a local
//! directory, S3 (s3s-fs, signatures checked), SFTP (the harness's sshd,
//! known_hosts and key as for hosts) and FTPS (vsftpd, TLS from a private
//! CA). Each gets the same exercise: a 40 MB streamed upload of several
//! parts, listing, stat, ranged and whole reads, replacement, a failed and
//! a cancelled upload that leave nothing behind, deletion. No secret
//! appears in an error.

// Tests may unwrap and print: a failure is the report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pgfleet::spec::SecretRef;
use pgfleet::storage::{self, Body, ObjectMeta, Storage, StorageError};
use pgfleet::transport::local::Local;
use sha2::{Digest, Sha256};
use support::storage_servers::{FtpServer, S3Server};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// More than two S3 parts (16 MiB each), not a multiple of any chunk size.
const SIZE: u64 = 40_000_000 + 12_345;

/// A deterministic pseudo-random body of `remaining` bytes, handed out in
/// chunks of awkward sizes; after `fail_after` bytes it fails, or with
/// `stall_after` it stops answering (a cancelled backup's input).
struct Generator {
    remaining: u64,
    sent: u64,
    state: u64,
    turn: usize,
    fail_after: Option<u64>,
    stall_after: Option<u64>,
}

impl Generator {
    fn new(size: u64) -> Self {
        Generator {
            remaining: size,
            sent: 0,
            state: 0x2545_f491_4f6c_dd1d,
            turn: 0,
            fail_after: None,
            stall_after: None,
        }
    }

    fn next_byte(&mut self) -> u8 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 32) as u8
    }
}

impl AsyncRead for Generator {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.fail_after.is_some_and(|limit| self.sent >= limit) {
            return Poll::Ready(Err(std::io::Error::other("the backup's dump failed")));
        }
        if self.stall_after.is_some_and(|limit| self.sent >= limit) {
            return Poll::Pending;
        }
        const CHUNKS: [usize; 5] = [7, 65_536, 1_000_003, 4_095, 333_333];
        let chunk = CHUNKS[self.turn % CHUNKS.len()];
        self.turn += 1;
        let count = (chunk as u64).min(self.remaining).min(buf.remaining() as u64) as usize;
        for _ in 0..count {
            let byte = self.next_byte();
            buf.put_slice(&[byte]);
        }
        self.remaining -= count as u64;
        self.sent += count as u64;
        Poll::Ready(Ok(()))
    }
}

/// The bytes `Generator::new(SIZE)` yields, and their SHA-256.
fn expected_bytes() -> &'static (Vec<u8>, Vec<u8>) {
    static EXPECTED: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    EXPECTED.get_or_init(|| {
        let mut generator = Generator::new(SIZE);
        let bytes: Vec<u8> = (0..SIZE).map(|_| generator.next_byte()).collect();
        let digest = Sha256::digest(&bytes).to_vec();
        (bytes, digest)
    })
}

async fn read_all(storage: &dyn Storage, name: &str, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let mut body = storage.get(name, range.clone()).await.unwrap_or_else(|e| panic!("get {name} {range:?}: {e}"));
    let mut bytes = Vec::new();
    body.read_to_end(&mut bytes).await.unwrap_or_else(|e| panic!("read {name} {range:?}: {e}"));
    bytes
}

async fn sha256_of(storage: &dyn Storage, name: &str) -> (u64, Vec<u8>) {
    let mut body = storage.get(name, None).await.unwrap();
    let mut digest = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    let mut size = 0;
    loop {
        let read = body.read(&mut buffer).await.unwrap();
        if read == 0 {
            break;
        }
        size += read as u64;
        digest.update(&buffer[..read]);
    }
    (size, digest.finalize().to_vec())
}

/// Files whose name marks an upload in progress, under `dir`: a partial
/// file, or s3s-fs's record of a multipart upload and its parts.
fn partial_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if entry.file_name().to_string_lossy().contains(".partial.")
                || entry.file_name().to_string_lossy().starts_with(".upload_id-")
            {
                found.push(path);
            }
        }
    }
    found
}

/// Waits up to 5 s for the partial files under `dir` to be cleaned up (a
/// cancelled upload removes its file in a task of its own).
async fn assert_no_partial_left(dir: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = partial_files(dir);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: partial files left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn names(objects: &[ObjectMeta]) -> Vec<(&str, u64)> {
    objects.iter().map(|object| (object.name.as_str(), object.size)).collect()
}

/// The exercise every storage passes. `backing` is the directory the
/// objects end up in on this machine, to look for leftovers; on a storage
/// with `directories`, a directory is not an object.
async fn exercise(storage: &dyn Storage, backing: &Path, directories: bool) {
    let what = storage.describe();
    let name = "prod/prod-20261203T060000Z.zip";
    let (bytes, digest) = expected_bytes();

    assert!(storage.list("").await.unwrap().is_empty(), "{what}: a new storage lists nothing");
    let started = Instant::now();
    let written = storage.put(name, Box::new(Generator::new(SIZE))).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!("{what}: uploaded {SIZE} bytes in {:?}", started.elapsed());
    assert_eq!(written, SIZE);
    storage.put("prod/prod-20261203T060000Z.json", Box::new(&b"{\"verified\": true}"[..])).await.unwrap();
    storage.put("staging/staging-1.zip", Box::new(&b"other environment"[..])).await.unwrap();

    let listed = storage.list("prod/").await.unwrap();
    assert_eq!(names(&listed), [("prod/prod-20261203T060000Z.json", 18), (name, SIZE)], "{what}");
    assert_eq!(storage.list("prod/prod-20261203T060000Z.z").await.unwrap().len(), 1, "{what}");
    assert_eq!(storage.list("").await.unwrap().len(), 3, "{what}");
    assert!(storage.list("prodx/").await.unwrap().is_empty(), "{what}");

    assert_eq!(storage.stat(name).await.unwrap(), Some(ObjectMeta { name: name.into(), size: SIZE }), "{what}");
    assert_eq!(storage.stat("prod/missing.zip").await.unwrap(), None, "{what}");
    if directories {
        // (s3s-fs answers 500 for a key that is one of its directories;
        // S3 has no directories.)
        assert_eq!(storage.stat("prod").await.unwrap(), None, "{what}: a directory is not an object");
    }

    // Ranges: across the first part boundary, the very end (a zip's
    // directory), the first byte, an empty range at the end.
    let boundary = 16 * 1024 * 1024;
    for range in [boundary - 10..boundary + 10, SIZE - 100..SIZE, 0..1, SIZE..SIZE] {
        let read = read_all(storage, name, Some(range.clone())).await;
        assert_eq!(read, bytes[range.start as usize..range.end as usize], "{what}: range {range:?}");
    }
    for outside in [SIZE - 1..SIZE + 1, SIZE + 5..SIZE + 10] {
        match storage.get(name, Some(outside.clone())).await {
            Err(StorageError::Failed { .. }) => {}
            Err(other) => panic!("{what}: range {outside:?}: {other}"),
            Ok(mut body) => {
                let mut sink = Vec::new();
                assert!(body.read_to_end(&mut sink).await.is_err(), "{what}: range {outside:?} read {}", sink.len());
            }
        }
    }
    assert_eq!(sha256_of(storage, name).await, (SIZE, digest.clone()), "{what}: the whole object round-trips");
    match storage.get("prod/missing.zip", None).await {
        Err(StorageError::Missing { name, .. }) => assert_eq!(name, "prod/missing.zip"),
        Err(other) => panic!("{what}: {other}"),
        Ok(_) => panic!("{what}: a missing object was read"),
    }

    // A second put replaces the object whole.
    storage.put(name, Box::new(&b"a smaller backup"[..])).await.unwrap();
    assert_eq!(read_all(storage, name, None).await, b"a smaller backup", "{what}");
    assert_eq!(storage.stat(name).await.unwrap().map(|meta| meta.size), Some(16), "{what}");

    // An upload whose input fails half-way leaves the old object alone and
    // nothing new listed.
    let mut failing = Generator::new(SIZE);
    failing.fail_after = Some(20_000_000);
    assert!(storage.put(name, Box::new(failing)).await.is_err(), "{what}: a failed upload succeeded");
    let mut failing = Generator::new(SIZE);
    failing.fail_after = Some(1_000);
    assert!(storage.put("prod/never.zip", Box::new(failing)).await.is_err(), "{what}");
    assert_no_partial_left(backing, &what).await;
    let listed = storage.list("prod/").await.unwrap();
    assert_eq!(names(&listed), [("prod/prod-20261203T060000Z.json", 18), (name, 16)], "{what}: after failed puts");
    assert_eq!(read_all(storage, name, None).await, b"a smaller backup", "{what}");

    // A cancelled upload (the put dropped while its input stalls).
    let mut stalled = Generator::new(SIZE);
    stalled.stall_after = Some(18_000_000);
    let body: Body<'_> = Box::new(stalled);
    let cancelled = tokio::time::timeout(Duration::from_secs(3), storage.put("prod/cancelled.zip", body)).await;
    assert!(cancelled.is_err(), "{what}: the stalled upload ended: {cancelled:?}");
    assert_no_partial_left(backing, &what).await;
    assert_eq!(storage.list("prod/").await.unwrap().len(), 2, "{what}: after a cancelled put");
    assert_eq!(storage.stat("prod/cancelled.zip").await.unwrap(), None, "{what}");

    storage.delete(name).await.unwrap();
    storage.delete(name).await.unwrap();
    assert_eq!(storage.stat(name).await.unwrap(), None, "{what}");
    assert_eq!(names(&storage.list("prod/").await.unwrap()), [("prod/prod-20261203T060000Z.json", 18)], "{what}");
    assert!(matches!(storage.get(name, None).await, Err(StorageError::Missing { .. })), "{what}");
}

/// A secret reference to a value, through a file (as an operator would).
fn secret_file(dir: &Path, name: &str, value: &str) -> SecretRef {
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    SecretRef::File(path)
}

fn local_host() -> Arc<dyn pgfleet::transport::Remote> {
    Arc::new(Local::new("db1"))
}

fn s3_spec(server: &S3Server, dir: &Path, secret_key: &str) -> pgfleet::spec::Storage {
    pgfleet::spec::Storage::S3 {
        bucket: server.bucket.clone(),
        endpoint: Some(server.endpoint.clone()),
        region: None,
        prefix: Some("pgfleet/".into()),
        access_key: secret_file(dir, "access_key", &server.access_key),
        secret_key: secret_file(dir, "secret_key", secret_key),
    }
}

fn ftp_spec(server: &FtpServer, dir: &Path, password: &str) -> pgfleet::spec::Storage {
    pgfleet::spec::Storage::Ftp {
        address: server.address.to_string(),
        port: Some(server.port),
        user: server.user.clone(),
        password: secret_file(dir, "ftp_password", password),
        path: "/backups".into(),
        tls: None,
        ca_file: Some(server.ca_file.clone()),
    }
}

#[tokio::test]
async fn local_directory_streams_ranges_replaces_and_cleans_up() {
    // Commands run as postgres when the tests run as root.
    let dir = support::shared_temp_dir("pgfleet-local-");
    std::process::Command::new("chown").arg("postgres").arg(dir.path()).status().unwrap();
    let root = dir.path().join("backups");
    let spec = pgfleet::spec::Storage::Local { path: root.clone() };
    let storage = storage::open(&spec, local_host()).await.unwrap();
    exercise(storage.as_ref(), &root, true).await;
}

#[tokio::test]
async fn s3_multipart_upload_of_equal_parts_round_trips_on_s3s_fs() {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let storage = storage::open(&s3_spec(&server, dir.path(), &server.secret_key), local_host()).await.unwrap();
    assert_eq!(storage.describe(), format!("s3://backups/pgfleet at {}", server.endpoint));
    exercise(storage.as_ref(), &server.root, false).await;
    // The objects are under the prefix in the bucket.
    assert!(server.bucket_dir.join("pgfleet/prod/prod-20261203T060000Z.json").is_file());
    // The 40 MB upload went as three parts, all but the last of exactly
    // 16 MiB, as R2 requires; the failed and cancelled uploads' parts
    // (aborted, so gone; one may be cut before any part lands) were all of
    // 16 MiB.
    let uploads = server.multipart_uploads();
    let part = storage::s3::PART_SIZE as u64;
    assert_eq!(uploads.first().map(Vec::as_slice), Some(&[part, part, SIZE - 2 * part][..]), "{uploads:?}");
    assert!(uploads.len() >= 2, "{uploads:?}");
    assert!(uploads[1..].iter().flatten().all(|size| *size == part), "{uploads:?}");
}

#[tokio::test]
async fn sftp_on_pgfleets_ssh_session_round_trips_and_renames_atomically() {
    let server = support::SshServer::start();
    let dir = support::shared_temp_dir("pgfleet-sftp-");
    std::process::Command::new("chown").arg("postgres").arg(dir.path()).status().unwrap();
    let root = dir.path().join("backups");
    let spec = pgfleet::spec::Storage::Sftp {
        address: server.address.to_string(),
        port: Some(server.port),
        user: "postgres".into(),
        path: root.clone(),
        identity_file: Some(server.identity_file.clone()),
        known_hosts: Some(server.known_hosts.clone()),
    };
    let storage = storage::open(&spec, local_host()).await.unwrap();
    exercise(storage.as_ref(), &root, true).await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.join("prod/prod-20261203T060000Z.json")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "a backup is readable by its owner only");
}

#[tokio::test]
async fn sftp_refuses_a_server_whose_host_key_is_not_known() {
    let server = support::SshServer::start();
    let other = support::SshServer::start();
    let spec = pgfleet::spec::Storage::Sftp {
        address: server.address.to_string(),
        port: Some(server.port),
        user: "postgres".into(),
        path: "/tmp".into(),
        identity_file: Some(server.identity_file.clone()),
        // known_hosts of another server: this one's key is unknown.
        known_hosts: Some(other.known_hosts.clone()),
    };
    let storage = storage::open(&spec, local_host()).await.unwrap();
    let error = storage.list("").await.unwrap_err().to_string();
    assert!(error.contains("unknown host key"), "{error}");
}

#[tokio::test]
async fn ftps_with_a_private_ca_round_trips_on_vsftpd() {
    let server = FtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let storage = storage::open(&ftp_spec(&server, dir.path(), &server.password), local_host()).await.unwrap();
    assert_eq!(storage.describe(), format!("ftps://pgfleet-ftp@{}:{}/backups", server.address, server.port));
    let root = server.root.join("backups");
    let result = tokio::time::timeout(Duration::from_secs(60), exercise(storage.as_ref(), &root, true)).await;
    assert!(result.is_ok(), "timed out: {}", server.log());
}

#[tokio::test]
async fn plain_ftp_when_tls_is_off_stores_lists_reads_and_deletes() {
    let server = FtpServer::start_with_tls(false);
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ftp_spec(&server, dir.path(), &server.password);
    if let pgfleet::spec::Storage::Ftp { tls, ca_file, .. } = &mut spec {
        *tls = Some(false);
        *ca_file = None;
    }
    let storage = storage::open(&spec, local_host()).await.unwrap();
    assert!(storage.describe().starts_with("ftp://"), "{}", storage.describe());
    let size = 3_000_000;
    assert_eq!(storage.put("prod/p.zip", Box::new(Generator::new(size))).await.unwrap(), size);
    assert_eq!(names(&storage.list("").await.unwrap()), [("prod/p.zip", size)]);
    let (bytes, _) = expected_bytes();
    assert_eq!(read_all(storage.as_ref(), "prod/p.zip", Some(1_000..2_000)).await, bytes[1_000..2_000]);
    storage.delete("prod/p.zip").await.unwrap();
    assert!(storage.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn ftps_refuses_a_server_certificate_from_an_unknown_ca() {
    let server = FtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ftp_spec(&server, dir.path(), &server.password);
    if let pgfleet::spec::Storage::Ftp { ca_file, .. } = &mut spec {
        *ca_file = None; // the system's roots do not hold the test's CA
    }
    let storage = storage::open(&spec, local_host()).await.unwrap();
    let error = storage.list("").await.unwrap_err().to_string();
    assert!(error.contains("TLS"), "{error}");
    assert!(!error.contains(&server.password), "{error}");
}

#[tokio::test]
async fn no_secret_appears_in_errors_of_a_wrong_s3_key_or_ftp_password() {
    let s3 = S3Server::start();
    let ftp = FtpServer::start();
    let dir = tempfile::tempdir().unwrap();

    let wrong_key = support::storage_servers::random_secret("wrong-sk-");
    let storage = storage::open(&s3_spec(&s3, dir.path(), &wrong_key), local_host()).await.unwrap();
    let mut errors = vec![
        storage.put("prod/a.zip", Box::new(&b"x"[..])).await.unwrap_err(),
        storage.put("prod/big.zip", Box::new(Generator::new(SIZE))).await.unwrap_err(),
        storage.get("prod/a.zip", Some(0..1)).await.err().unwrap(),
        storage.list("").await.unwrap_err(),
        storage.stat("prod/a.zip").await.unwrap_err(),
    ];

    let wrong_password = support::storage_servers::random_secret("wrong-pw-");
    let storage = storage::open(&ftp_spec(&ftp, dir.path(), &wrong_password), local_host()).await.unwrap();
    errors.push(storage.put("prod/a.zip", Box::new(&b"x"[..])).await.unwrap_err());
    errors.push(storage.list("").await.unwrap_err());

    for error in &errors {
        let text = format!("{error} {error:?} {}", miette_text(error));
        eprintln!("{error}");
        for secret in [&wrong_key, &s3.secret_key, &wrong_password, &ftp.password] {
            assert!(!text.contains(secret.as_str()), "a secret in: {text}");
        }
    }
    let ftp_login = errors.last().unwrap().to_string();
    assert!(ftp_login.contains("login as `pgfleet-ftp` failed"), "{ftp_login}");
}

fn miette_text(error: &StorageError) -> String {
    use miette::Diagnostic;
    error.help().map(|help| help.to_string()).unwrap_or_default()
}
