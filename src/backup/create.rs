//! `backup create`: dump, pack, upload. pg_dump runs on the source
//! member's host under a snapshot pgfleet exported (so the manifest's LSN,
//! modules and row counts describe exactly what was dumped); its output
//! and then the filestore's tar stream through pgfleet into a zip written
//! on a blocking thread, hashed on the way, and uploaded as it is written.
//! A failure anywhere fails the upload: no archive is published.

use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio_util::io::SyncIoBridge;
use zip::ZipWriter;
use zip::write::SimpleFileOptions;

use super::archive::{self, copy_observed};
use super::dump::RowCounter;
use super::manifest::{self, Details, Manifest, Sidecar};
use super::{BackupError, archive_name, new_id, sidecar_name};
use crate::placement::ClusterPlacement;
use crate::spec::{BackupFormat, BackupLayout};
use crate::storage::Storage;
use crate::topology::Environment;
use crate::transport::{Remote, StreamOutput, TransportError, shell_quote};

/// How long a dump or a filestore copy may run: a day.
const LONG: Duration = Duration::from_secs(24 * 3600);

/// What to back up and from where.
pub struct Source<'a> {
    pub environment: &'a Environment,
    /// The member pg_dump reads (the primary, or a replica to spare it).
    pub member_name: String,
    pub member: ClusterPlacement,
    pub member_host: Arc<dyn Remote>,
    /// The filestore's host and directory, when the environment has one.
    pub filestore: Option<(Arc<dyn Remote>, PathBuf)>,
    /// Counts the bytes read from the source.
    pub meter: super::Meter,
}

/// What the source's SQL session reports under the dump's snapshot.
struct Facts {
    snapshot: String,
    system_identifier: String,
    server_version: String,
    lsn: String,
    database_size: u64,
    modules: BTreeMap<String, String>,
    tables: BTreeMap<String, u64>,
}

/// Makes a backup and uploads it; returns its sidecar.
pub async fn create(
    source: Source<'_>,
    storage: Arc<dyn Storage>,
    format: BackupFormat,
    layout: BackupLayout,
    now: SystemTime,
) -> Result<Sidecar, BackupError> {
    let environment = source.environment;
    // Ids are times to the second: a second backup within the same second
    // waits for the next one rather than replace the first.
    let mut now = now;
    while storage.stat(&sidecar_name(&environment.id, &new_id(now))).await?.is_some() {
        tokio::time::sleep(Duration::from_millis(250)).await;
        now = SystemTime::now();
    }
    let id = new_id(now);
    let database = environment.database.name.clone();
    let host = source.member_host.clone();

    // The snapshot is held open until pg_dump has taken it.
    let session = crate::observe::superuser_session_to(host.as_ref(), &source.member, &database).await?;
    let mut facts = facts(&session, format).await?;
    let client = |program: &str| source.member.runtime().client(&source.member.layout, source.member.port, program);
    let version =
        host.exec(&format!("{} --version", client("pg_dump")), b"", crate::transport::COMMAND_TIMEOUT).await?;
    if !version.success() {
        return Err(command_error("pg_dump", host.host(), &version.status, &version.stderr_text()));
    }
    let pg_dump_version = version.stdout_text().trim().to_owned();
    let format_flag = match format {
        BackupFormat::Plain => "-Fp",
        BackupFormat::Custom => "-Fc",
    };
    let dump_command = format!(
        "{} --no-owner {format_flag} --snapshot={} -d {}",
        client("pg_dump"),
        shell_quote(&facts.snapshot),
        shell_quote(&database)
    );

    let (dump_writer, dump_reader) = tokio::io::duplex(crate::transport::STREAM_CHUNK * 4);
    let dump_host = host.clone();
    let dump = tokio::spawn(async move {
        let mut writer = dump_writer;
        let mut stdin = tokio::io::empty();
        dump_host.exec_stream(&dump_command, &mut stdin, &mut writer, LONG).await
    });
    // pg_dump imports the snapshot as it starts; give it that moment
    // before the exporting transaction may end (it ends with `session`).
    let (body_writer, body) = archive::channel();
    let name = archive_name(&environment.id, &id);
    let upload_storage = storage.clone();
    let upload_name = name.clone();
    let upload = tokio::spawn(async move { upload_storage.put(&upload_name, body).await });

    let seed = Manifest {
        odoo_dump: "1".into(),
        db_name: database.clone(),
        version: environment.odoo_version.clone(),
        major_version: environment.odoo_version.clone(),
        pg_version: facts.server_version.clone(),
        modules: std::mem::take(&mut facts.modules),
        environment_id: environment.id.clone(),
        backup_id: id.clone(),
        created_at: humantime::format_rfc3339_seconds(now).to_string(),
        odoo_version: environment.odoo_version.clone(),
        database_size_bytes: facts.database_size,
        filestore_size_bytes: 0,
        checksums: BTreeMap::new(),
        pgfleet: Details {
            format: match format {
                BackupFormat::Plain => "plain".into(),
                BackupFormat::Custom => "custom".into(),
            },
            layout: match layout {
                BackupLayout::Odoo => "odoo".into(),
                BackupLayout::Tarball => "tarball".into(),
            },
            postgresql_version: facts.server_version.clone(),
            pg_dump_version,
            system_identifier: facts.system_identifier.clone(),
            lsn: facts.lsn.clone(),
            source_member: source.member_name.clone(),
            tables: std::mem::take(&mut facts.tables),
            filestore_files: 0,
        },
    };

    let handle = tokio::runtime::Handle::current();
    let filestore = source.filestore.clone();
    let meter = source.meter.clone();
    let written = tokio::task::spawn_blocking(move || {
        let shared = body_writer.shared();
        let mut zip = ZipWriter::new_stream(shared.clone());
        let input = Input { handle, dump_reader, dump, filestore, layout, format, meter };
        let result = write_archive(&mut zip, input, seed).and_then(|parts| {
            zip.finish().map_err(zip_error("finishing the archive"))?;
            Ok(parts)
        });
        match result {
            Ok(parts) => {
                let (sha, bytes) = shared.finish().map_err(io("ending the upload"))?;
                Ok((parts, sha, bytes))
            }
            Err(error) => {
                shared.fail(&error.to_string());
                Err(error)
            }
        }
    });
    // The session (and so the snapshot) lives until the archive is written.
    let written = written.await.map_err(|error| BackupError::Io(error.to_string()))?;
    drop(session);
    let uploaded = upload.await.map_err(|error| BackupError::Io(error.to_string()))?;
    let ((manifest, manifest_sha256), archive_sha256, archive_bytes) = match (written, uploaded) {
        (Ok(written), Ok(uploaded)) => {
            if uploaded != written.2 {
                storage.delete(&name).await?;
                return Err(BackupError::Io(format!("the upload stored {uploaded} bytes of {}", written.2)));
            }
            written
        }
        // The upload stopping first is the cause; the writer only saw the pipe close.
        (Err(_), Err(error)) => return Err(error.into()),
        (Err(error), Ok(_)) => return Err(error),
        (Ok(_), Err(error)) => return Err(error.into()),
    };

    let sidecar = Sidecar { manifest, manifest_sha256, archive_sha256, archive_bytes };
    let text = serde_json::to_vec_pretty(&sidecar).map_err(|error| BackupError::Io(error.to_string()))?;
    if let Err(error) = storage.put(&sidecar_name(&environment.id, &id), Box::new(std::io::Cursor::new(text))).await {
        let _ = storage.delete(&name).await;
        return Err(error.into());
    }
    Ok(sidecar)
}

/// What the blocking thread reads from.
struct Input {
    handle: tokio::runtime::Handle,
    dump_reader: tokio::io::DuplexStream,
    dump: tokio::task::JoinHandle<Result<StreamOutput, TransportError>>,
    filestore: Option<(Arc<dyn Remote>, PathBuf)>,
    layout: BackupLayout,
    format: BackupFormat,
    meter: super::Meter,
}

fn command_error(program: &'static str, host: &str, status: &i32, stderr: &str) -> BackupError {
    BackupError::Command { program, host: host.to_owned(), status: *status, stderr: stderr.trim().to_owned() }
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> BackupError {
    move |error| BackupError::Io(format!("{what}: {error}"))
}

fn zip_error(what: &'static str) -> impl Fn(zip::result::ZipError) -> BackupError {
    move |error| BackupError::Io(format!("{what}: {error}"))
}

/// Runs on the blocking thread: the dump, then the filestore, then the
/// manifest (completed with what the others measured), into `zip`.
/// Returns the manifest and the checksum of its bytes.
fn write_archive<W: Write + Seek>(
    zip: &mut ZipWriter<W>,
    input: Input,
    mut manifest: Manifest,
) -> Result<(Manifest, String), BackupError> {
    let deflated = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let plain = input.format == BackupFormat::Plain;
    let member = if plain { manifest::DUMP_PLAIN } else { manifest::DUMP_CUSTOM };
    // A dump's size is not known in advance: zip64 fields always.
    let options = if plain { deflated } else { SimpleFileOptions::default() };
    zip.start_file(member, options.large_file(true)).map_err(zip_error("starting the dump's member"))?;
    let mut reader = SyncIoBridge::new_with_handle(input.dump_reader, input.handle.clone());
    let mut hasher = Sha256::new();
    let mut rows = RowCounter::default();
    copy_observed(&mut reader, zip, |chunk| {
        hasher.update(chunk);
        input.meter.add(chunk.len());
        if plain {
            rows.feed(chunk);
        }
    })
    .map_err(io("copying the dump into the archive"))?;
    let dumped = input.handle.block_on(input.dump).map_err(|error| BackupError::Io(error.to_string()))??;
    if !dumped.success() {
        return Err(command_error("pg_dump", "the source", &dumped.status, &dumped.stderr_text()));
    }
    manifest.checksums.insert(member.to_owned(), manifest::digest_text(hasher.finalize().as_slice()));
    if plain {
        manifest.pgfleet.tables = rows.tables;
    }

    if let Some((host, path)) = input.filestore {
        let (tar_writer, tar_reader) = tokio::io::duplex(crate::transport::STREAM_CHUNK * 4);
        let directory = shell_quote(&path.to_string_lossy());
        // A filestore not created yet (no attachment so far) is empty.
        let command = format!("if [ -d {directory} ]; then cd {directory} && exec tar -cf - .; fi");
        let copy = input.handle.spawn(async move {
            let mut writer = tar_writer;
            let mut stdin = tokio::io::empty();
            host.exec_stream(&command, &mut stdin, &mut writer, LONG).await
        });
        let reader = SyncIoBridge::new_with_handle(tar_reader, input.handle.clone());
        match input.layout {
            BackupLayout::Odoo => filestore_tree(zip, reader, deflated, &mut manifest, &input.meter)?,
            BackupLayout::Tarball => filestore_tarball(zip, reader, &mut manifest, &input.meter)?,
        }
        let copied = input.handle.block_on(copy).map_err(|error| BackupError::Io(error.to_string()))??;
        if !copied.success() {
            return Err(command_error(
                "tar of the filestore",
                "the filestore's host",
                &copied.status,
                &copied.stderr_text(),
            ));
        }
    }

    let text = serde_json::to_vec_pretty(&manifest).map_err(|error| BackupError::Io(error.to_string()))?;
    zip.start_file(manifest::MANIFEST, deflated).map_err(zip_error("starting the manifest"))?;
    zip.write_all(&text).map_err(io("writing the manifest"))?;
    Ok((manifest, manifest::sha256_text(&text)))
}

/// Odoo's layout: each file of the filestore as `filestore/<path>`, and
/// the tree's checksum over them all.
fn filestore_tree<W: Write + Seek>(
    zip: &mut ZipWriter<W>,
    reader: impl std::io::Read,
    options: SimpleFileOptions,
    manifest: &mut Manifest,
    meter: &super::Meter,
) -> Result<(), BackupError> {
    let mut files = Vec::new();
    let mut tar = tar::Archive::new(reader);
    for entry in tar.entries().map_err(io("reading the filestore"))? {
        let mut entry = entry.map_err(io("reading the filestore"))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().map_err(io("reading the filestore"))?.to_string_lossy().into_owned();
        let Some(relative) = safe_relative(&path) else {
            return Err(BackupError::Io(format!(
                "the filestore holds a file named `{path}`, which cannot be archived"
            )));
        };
        let size = entry.size();
        zip.start_file(format!("{}{relative}", manifest::FILESTORE_DIR), options.large_file(size >= u32::MAX as u64))
            .map_err(zip_error("adding a filestore file"))?;
        let mut hasher = Sha256::new();
        copy_observed(&mut entry, zip, |chunk| {
            hasher.update(chunk);
            meter.add(chunk.len());
        })
        .map_err(io("copying the filestore"))?;
        files.push((relative, manifest::hex(hasher.finalize().as_slice())));
        manifest.filestore_size_bytes += size;
    }
    // GNU tar pads its output to whole records after the end marker the
    // parser stops at: read them too, or tar's last write can find the
    // pipe closed and the backup fails for nothing.
    std::io::copy(&mut tar.into_inner(), &mut std::io::sink()).map_err(io("reading the filestore"))?;
    manifest.pgfleet.filestore_files = files.len() as u64;
    manifest.checksums.insert(manifest::FILESTORE_TREE.into(), manifest::tree_checksum(&mut files));
    Ok(())
}

/// The tarball layout: the filestore's tar, gzipped, as one member.
fn filestore_tarball<W: Write + Seek>(
    zip: &mut ZipWriter<W>,
    mut reader: impl std::io::Read,
    manifest: &mut Manifest,
    meter: &super::Meter,
) -> Result<(), BackupError> {
    zip.start_file(manifest::FILESTORE_TARBALL, SimpleFileOptions::default().large_file(true))
        .map_err(zip_error("adding the filestore tarball"))?;
    let mut hashed = Hashed { inner: zip, hasher: Sha256::new() };
    let mut gzip = flate2::write::GzEncoder::new(&mut hashed, flate2::Compression::default());
    let size = copy_observed(&mut reader, &mut gzip, |chunk| meter.add(chunk.len()))
        .map_err(io("compressing the filestore"))?;
    gzip.finish().map_err(io("compressing the filestore"))?;
    manifest.filestore_size_bytes = size;
    manifest
        .checksums
        .insert(manifest::FILESTORE_TARBALL.into(), manifest::digest_text(hashed.hasher.finalize().as_slice()));
    Ok(())
}

/// A writer that hashes what passes through it.
struct Hashed<'w, W: Write> {
    inner: &'w mut W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashed<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A tar member's path as a plain relative path (`./ab/cdef` → `ab/cdef`),
/// or `None` for anything that could escape a directory.
pub fn safe_relative(path: &str) -> Option<String> {
    let trimmed = path.trim_start_matches("./");
    let parts: Vec<&str> = trimmed.split('/').filter(|part| !part.is_empty() && *part != ".").collect();
    if parts.is_empty() || trimmed.starts_with('/') || parts.contains(&"..") {
        return None;
    }
    Some(parts.join("/"))
}

async fn facts(session: &tokio_postgres::Client, format: BackupFormat) -> Result<Facts, BackupError> {
    session
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(BackupError::query("starting the dump's snapshot"))?;
    let row = session
        .query_one(
            "SELECT pg_export_snapshot(), \
                    (SELECT system_identifier::text FROM pg_control_system()), \
                    current_setting('server_version'), \
                    (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text, \
                    pg_database_size(current_database())",
            &[],
        )
        .await
        .map_err(BackupError::query("reading the source's facts"))?;
    let mut facts = Facts {
        snapshot: row.get(0),
        system_identifier: row.get(1),
        server_version: row.get(2),
        lsn: row.get::<_, Option<String>>(3).unwrap_or_default(),
        database_size: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
        modules: BTreeMap::new(),
        tables: BTreeMap::new(),
    };
    let odoo: bool = session
        .query_one("SELECT to_regclass('public.ir_module_module') IS NOT NULL", &[])
        .await
        .map_err(BackupError::query("looking for Odoo's modules"))?
        .get(0);
    if odoo {
        for row in session
            .query(
                "SELECT name, coalesce(latest_version, '') FROM public.ir_module_module WHERE state = 'installed'",
                &[],
            )
            .await
            .map_err(BackupError::query("reading Odoo's installed modules"))?
        {
            facts.modules.insert(row.get(0), row.get(1));
        }
    }
    if format == BackupFormat::Custom {
        // A custom dump cannot be read on the way: count in the snapshot.
        facts.tables = super::verify::count_rows(session).await?;
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read};

    use super::*;

    /// A reader that counts what was taken from it.
    struct Counted<R> {
        inner: R,
        taken: std::rc::Rc<std::cell::Cell<usize>>,
    }

    impl<R: Read> Read for Counted<R> {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            let count = self.inner.read(buffer)?;
            self.taken.set(self.taken.get() + count);
            Ok(count)
        }
    }

    #[test]
    fn the_filestore_tar_is_read_to_its_end_past_the_end_marker() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o600);
        header.set_cksum();
        builder.append_data(&mut header, "ab/cdef", &b"hello"[..]).unwrap();
        let mut stream = builder.into_inner().unwrap();
        // GNU tar's blocking factor 20: whole records of 10240 bytes.
        stream.resize(stream.len().div_ceil(10240) * 10240, 0);
        let taken = std::rc::Rc::new(std::cell::Cell::new(0));
        let reader = Counted { inner: Cursor::new(stream.clone()), taken: taken.clone() };

        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        let mut manifest = Manifest::default();
        filestore_tree(&mut zip, reader, SimpleFileOptions::default(), &mut manifest, &crate::backup::Meter::default())
            .unwrap();

        assert_eq!(taken.get(), stream.len(), "the padding after the end marker was left unread");
        assert_eq!(manifest.pgfleet.filestore_files, 1);
        assert_eq!(manifest.filestore_size_bytes, 5);
    }
}
