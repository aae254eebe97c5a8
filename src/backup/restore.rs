//! Restoring a backup: into a scratch database `<db>_restore_<id>` beside
//! the live one (the application keeps running), checked (row counts
//! against the manifest; every attachment's file present with the sha1
//! its name says), with the filestore beside the live one; then either
//! swapped into place in one short pause of the pooler, or — for a
//! restore test — dropped. A failure at any point drops what was restored
//! and leaves the live database and filestore as they were.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::archive::{self, StorageReader, copy_observed};
use super::manifest::{self, Manifest};
use super::{BackupError, archive_name};
use crate::action::{Action, Context};
use crate::placement::{ClusterPlacement, PRIMARY};
use crate::storage::Storage;
use crate::topology::Environment;
use crate::transport::{COMMAND_TIMEOUT, Remote, StreamOutput, TransportError, shell_quote};

const LONG: Duration = Duration::from_secs(24 * 3600);

/// Where a restore goes.
pub struct Target<'a> {
    pub environment: &'a Environment,
    pub primary: ClusterPlacement,
    pub primary_host: Arc<dyn Remote>,
    /// The target's filestore directory and its host, when it has one.
    pub filestore: Option<(Arc<dyn Remote>, PathBuf)>,
}

/// A restored, checked copy beside the live database.
#[derive(Debug)]
pub struct Loaded {
    pub database: String,
    /// The restored filestore directory, beside the live one.
    pub filestore: Option<PathBuf>,
    pub manifest: Manifest,
    /// What the checks found (tables and rows compared, attachments).
    pub checked: String,
}

/// The scratch database a backup is restored into.
pub fn scratch_database(database: &str, id: &str, purpose: &str) -> String {
    format!("{database}_{purpose}_{}", id.to_ascii_lowercase())
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|name| name.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Restores backup `id` of `source_environment` into a scratch database of
/// the target, checks it, and returns it (the live database untouched).
pub async fn load(
    storage: Arc<dyn Storage>,
    source_environment: &str,
    id: &str,
    target: &Target<'_>,
    purpose: &str,
    meter: &super::Meter,
) -> Result<Loaded, BackupError> {
    let sidecar = super::verify::find(storage.as_ref(), source_environment, id).await?;
    let name = archive_name(source_environment, id);
    let size = storage.stat(&name).await?.map_or(0, |meta| meta.size);
    let database = scratch_database(&target.environment.database.name, id, purpose);
    let restored_dir =
        target.filestore.as_ref().map(|(_, path)| sibling(path, &format!("_{purpose}_{}", id.to_ascii_lowercase())));
    let host = target.primary_host.clone();

    let admin = crate::observe::superuser_session(host.as_ref(), &target.primary).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {}", ident(&database)))
        .await
        .map_err(BackupError::query("dropping an earlier scratch database"))?;
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8'",
            ident(&database),
            ident(&target.environment.database.owner)
        ))
        .await
        .map_err(BackupError::query("creating the scratch database"))?;

    let into = Into { database: &database, restored_dir: restored_dir.as_deref(), meter };
    let result = load_into(storage, &name, size, &sidecar.manifest_sha256, target, into).await;
    match result {
        Ok((manifest, checked)) => Ok(Loaded { database, filestore: restored_dir, manifest, checked }),
        Err(error) => {
            discard(&admin, host.as_ref(), target, &database, restored_dir.as_deref()).await;
            Err(error)
        }
    }
}

/// Drops the scratch database and removes the restored filestore.
pub async fn discard(
    admin: &tokio_postgres::Client,
    host: &dyn Remote,
    target: &Target<'_>,
    database: &str,
    restored_dir: Option<&Path>,
) {
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(database))).await;
    if let (Some((files_host, _)), Some(dir)) = (&target.filestore, restored_dir) {
        let _ = files_host.exec(&format!("rm -rf {}", shell_quote(&dir.to_string_lossy())), b"", COMMAND_TIMEOUT).await;
    }
    let _ = host;
}

/// Drops a loaded copy (a restore test's end).
pub async fn drop_loaded(target: &Target<'_>, loaded: &Loaded) -> Result<(), BackupError> {
    let admin = crate::observe::superuser_session(target.primary_host.as_ref(), &target.primary).await?;
    discard(&admin, target.primary_host.as_ref(), target, &loaded.database, loaded.filestore.as_deref()).await;
    Ok(())
}

/// Where `load_into` restores to.
struct Into<'a> {
    database: &'a str,
    restored_dir: Option<&'a Path>,
    meter: &'a super::Meter,
}

async fn load_into(
    storage: Arc<dyn Storage>,
    name: &str,
    size: u64,
    manifest_sha256: &str,
    target: &Target<'_>,
    into: Into<'_>,
) -> Result<(Manifest, String), BackupError> {
    let Into { database, restored_dir, meter } = into;
    let handle = tokio::runtime::Handle::current();
    let host = target.primary_host.clone();
    let member = &target.primary;
    let client = |program: &str| member.runtime().client(&member.layout, member.port, program);
    let owner = target.environment.database.owner.clone();

    // The manifest first (a few ranged reads), and the quick check.
    let reader = StorageReader::new(storage.clone(), name.to_owned(), size, handle.clone());
    let archive_name = name.to_owned();
    let (zip, manifest) = tokio::task::spawn_blocking(move || {
        let mut zip = zip::ZipArchive::new(reader)
            .map_err(|error| BackupError::Damaged { name: archive_name.clone(), reason: error.to_string() })?;
        let manifest = super::verify::read_manifest(&mut zip, &archive_name)?;
        Ok::<_, BackupError>((zip, manifest))
    })
    .await
    .map_err(|error| BackupError::Io(error.to_string()))??;
    let (manifest, sha) = manifest;
    if sha != manifest_sha256 {
        return Err(BackupError::Checksum {
            id: manifest.backup_id.clone(),
            member: manifest::MANIFEST.into(),
            expected: manifest_sha256.to_owned(),
            found: sha,
        });
    }
    let plain = manifest.pgfleet.format != "custom";

    // The dump, streamed into psql (plain) or into a file for pg_restore
    // (custom: parallel restore needs to seek).
    let dump_file = member.layout.home.join(format!("restore-{}.dump", manifest.backup_id.to_ascii_lowercase()));
    let load_command = if plain {
        format!("{} -X -v ON_ERROR_STOP=1 --single-transaction -d {}", client("psql"), shell_quote(database))
    } else {
        format!("umask 077 && cat > {}", shell_quote(&dump_file.to_string_lossy()))
    };
    let (dump_writer, mut dump_body) = archive::channel();
    let load_host = host.clone();
    // psql's command tags (`COPY n`, one line per statement) say what
    // the server loaded; with custom dumps the rows are counted after.
    let loading = tokio::spawn(async move {
        let mut stdout = Vec::new();
        let output = load_host.exec_stream(&load_command, &mut dump_body, &mut stdout, LONG).await;
        output.map(|output| (output, String::from_utf8_lossy(&stdout).into_owned()))
    });

    let (files_writer, files_task) = match (&target.filestore, restored_dir) {
        (Some((files_host, _)), Some(dir)) => {
            let dir = shell_quote(&dir.to_string_lossy());
            let extract = match manifest.pgfleet.layout.as_str() {
                "tarball" => format!("rm -rf {dir} && mkdir -p {dir} && exec tar -xzf - -C {dir}"),
                _ => format!("rm -rf {dir} && mkdir -p {dir} && exec tar -xf - -C {dir}"),
            };
            let (writer, mut body) = archive::channel();
            let files_host = files_host.clone();
            let task = tokio::spawn(async move {
                let mut stdout = tokio::io::sink();
                files_host.exec_stream(&extract, &mut body, &mut stdout, LONG).await
            });
            (Some(writer), Some(task))
        }
        _ => (None, None),
    };

    let expected = manifest.checksums.clone();
    let backup_id = manifest.backup_id.clone();
    let tarball = manifest.pgfleet.layout == "tarball";
    let role = owner.clone();
    let meter = meter.clone();
    let streamed = tokio::task::spawn_blocking(move || {
        let layout = Layout { plain, tarball, role: &role, meter: &meter };
        stream_members(zip, dump_writer, files_writer, &expected, &backup_id, layout)
    });
    let streamed = streamed.await.map_err(|error| BackupError::Io(error.to_string()))?;
    let (loaded, tags) = match loading.await.map_err(|error| BackupError::Io(error.to_string()))? {
        Ok((output, tags)) => (Ok(output), tags),
        Err(error) => (Err(error), String::new()),
    };
    let extracted = match files_task {
        Some(task) => Some(task.await.map_err(|error| BackupError::Io(error.to_string()))?),
        None => None,
    };
    let order = streamed?;
    finished("psql", loaded)?;
    if let Some(extracted) = extracted {
        finished("tar", extracted)?;
    }
    if !plain {
        let restore = format!(
            "{} --no-owner --role={} -j 4 -d {} {file}; status=$?; rm -f {file}; exit $status",
            client("pg_restore"),
            shell_quote(&owner),
            shell_quote(database),
            file = shell_quote(&dump_file.to_string_lossy())
        );
        let output = host.exec(&restore, b"", LONG).await?;
        if !output.success() {
            return Err(BackupError::Restore { stderr: output.stderr_text().trim().to_owned() });
        }
    }

    let rows = if plain { Some(super::dump::loaded_rows(&order, &tags)) } else { None };
    let checked = check(target, database, restored_dir, &manifest, rows).await?;
    Ok((manifest, checked))
}

fn finished(program: &str, result: Result<StreamOutput, TransportError>) -> Result<(), BackupError> {
    match result {
        Ok(output) if output.success() => Ok(()),
        Ok(output) => Err(BackupError::Restore { stderr: format!("{program}: {}", output.stderr_text().trim()) }),
        Err(error) => Err(BackupError::Restore { stderr: format!("{program}: {error}") }),
    }
}

struct Layout<'a> {
    plain: bool,
    tarball: bool,
    /// The application's role, which owns what a plain dump creates.
    role: &'a str,
    meter: &'a super::Meter,
}

/// On the blocking thread: the dump member to `dump`, the filestore to
/// `files` (as a tar stream), each hashed and compared with the manifest
/// before its stream is ended; a mismatch ends the stream with an error,
/// so psql rolls back and tar stops.
fn stream_members(
    mut zip: zip::ZipArchive<StorageReader>,
    dump: archive::ChannelWriter,
    files: Option<archive::ChannelWriter>,
    expected: &BTreeMap<String, String>,
    id: &str,
    layout: Layout<'_>,
) -> Result<Vec<String>, BackupError> {
    let Layout { plain, tarball, role, meter } = layout;
    let mut rows = super::dump::RowCounter::default();
    let mismatch = |member: &str, found: String| BackupError::Checksum {
        id: id.to_owned(),
        member: member.to_owned(),
        expected: expected.get(member).cloned().unwrap_or_else(|| "no checksum in the manifest".into()),
        found,
    };
    let member = if plain { manifest::DUMP_PLAIN } else { manifest::DUMP_CUSTOM };
    let mut dump = dump;
    let result = (|| {
        let mut entry = zip.by_name(member).map_err(|error| mismatch(member, error.to_string()))?;
        if plain {
            // Objects belong to the application's role, as when Odoo restores.
            writeln!(dump, "SET ROLE {};", ident(role)).map_err(|error| BackupError::Io(error.to_string()))?;
        }
        if plain {
            let mut teed = Teed { out: &mut dump, rows: &mut rows };
            copy_checked(&mut entry, &mut teed, member, expected, &mismatch, meter)
        } else {
            copy_checked(&mut entry, &mut dump, member, expected, &mismatch, meter)
        }
    })();
    match result {
        Ok(()) => {
            dump.finish().map_err(|error| BackupError::Io(error.to_string()))?;
        }
        Err(error) => {
            dump.fail(&error.to_string());
            if let Some(files) = files {
                files.fail("the dump failed");
            }
            return Err(error);
        }
    }

    let order = std::mem::take(&mut rows.order);
    let Some(mut files) = files else { return Ok(order) };
    let result = if tarball {
        (|| {
            let member = manifest::FILESTORE_TARBALL;
            let Ok(mut entry) = zip.by_name(member) else { return Ok(()) };
            copy_checked(&mut entry, &mut files, member, expected, &mismatch, meter)
        })()
    } else {
        tree_to_tar(&mut zip, &mut files, expected, &mismatch, meter)
    };
    match result {
        Ok(()) => {
            files.finish().map_err(|error| BackupError::Io(error.to_string()))?;
            Ok(order)
        }
        Err(error) => {
            files.fail(&error.to_string());
            Err(error)
        }
    }
}

/// A writer that also shows what it writes to a plain dump's row counter
/// (for the order of its COPY blocks).
struct Teed<'a> {
    out: &'a mut dyn Write,
    rows: &'a mut super::dump::RowCounter,
}

impl Write for Teed<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.out.write(bytes)?;
        self.rows.feed(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Copies one archive member to `out`, counting it on `meter`, and
/// compares its sha256 with the manifest's before the caller ends `out`.
fn copy_checked(
    entry: &mut dyn Read,
    out: &mut dyn Write,
    member: &str,
    expected: &BTreeMap<String, String>,
    mismatch: &dyn Fn(&str, String) -> BackupError,
    meter: &super::Meter,
) -> Result<(), BackupError> {
    let mut hasher = Sha256::new();
    copy_observed(entry, out, |chunk| {
        hasher.update(chunk);
        meter.add(chunk.len());
    })
    .map_err(|error| mismatch(member, error.to_string()))?;
    let found = manifest::digest_text(hasher.finalize().as_slice());
    if expected.get(member) != Some(&found) {
        return Err(mismatch(member, found));
    }
    Ok(())
}

/// Odoo's layout: every `filestore/…` member into a tar stream, with the
/// tree's checksum compared at the end (before the stream ends well).
fn tree_to_tar(
    zip: &mut zip::ZipArchive<StorageReader>,
    out: &mut archive::ChannelWriter,
    expected: &BTreeMap<String, String>,
    mismatch: &dyn Fn(&str, String) -> BackupError,
    meter: &super::Meter,
) -> Result<(), BackupError> {
    let member = manifest::FILESTORE_TREE;
    let mut files = Vec::new();
    {
        let mut tar = tar::Builder::new(&mut *out);
        for index in 0..zip.len() {
            let mut entry = zip.by_index(index).map_err(|error| mismatch(member, error.to_string()))?;
            let name = entry.name().map_err(|error| mismatch(member, error.to_string()))?.into_owned();
            let Some(path) = name.strip_prefix(manifest::FILESTORE_DIR) else { continue };
            if entry.is_dir() {
                continue;
            }
            let Some(path) = super::create::safe_relative(path) else {
                return Err(mismatch(member, format!("a member named `{name}`, which could escape the filestore")));
            };
            let mut header = tar::Header::new_gnu();
            header.set_size(entry.size());
            header.set_mode(0o600);
            header.set_entry_type(tar::EntryType::Regular);
            let mut hashing = HashingReader { inner: &mut entry, hasher: Sha256::new(), bytes: 0 };
            tar.append_data(&mut header, &path, &mut hashing).map_err(|error| mismatch(member, error.to_string()))?;
            meter.add(hashing.bytes);
            files.push((path, manifest::hex(hashing.hasher.finalize().as_slice())));
        }
        tar.finish().map_err(|error| BackupError::Io(error.to_string()))?;
    }
    if files.is_empty() && !expected.contains_key(member) {
        return Ok(());
    }
    let found = manifest::tree_checksum(&mut files);
    if expected.get(member) != Some(&found) {
        return Err(mismatch(member, found));
    }
    Ok(())
}

struct HashingReader<'r, R: Read> {
    inner: &'r mut R,
    hasher: Sha256,
    bytes: usize,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let count = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..count]);
        self.bytes += count;
        Ok(count)
    }
}

/// The checks of a restored copy: every table's rows as the manifest
/// counted them, and every attachment's file present with the sha1 its
/// name says.
async fn check(
    target: &Target<'_>,
    database: &str,
    restored_dir: Option<&Path>,
    manifest: &Manifest,
    loaded: Option<BTreeMap<String, u64>>,
) -> Result<String, BackupError> {
    let session = crate::observe::superuser_session_to(target.primary_host.as_ref(), &target.primary, database).await?;
    let counts = match loaded {
        Some(counts) => counts,
        None => super::verify::count_rows(&session).await?,
    };
    let mut problems = Vec::new();
    let mut rows = 0u64;
    for (table, expected) in &manifest.pgfleet.tables {
        match counts.get(table) {
            Some(found) if found == expected => rows += found,
            Some(found) => problems.push(format!("{table} has {found} rows, the backup {expected}")),
            None => problems.push(format!("{table} is missing")),
        }
    }
    let mut attachments = 0usize;
    let odoo: bool = session
        .query_one("SELECT to_regclass('public.ir_attachment') IS NOT NULL", &[])
        .await
        .map_err(BackupError::query("looking for ir_attachment"))?
        .get(0);
    if odoo {
        let stored: BTreeSet<String> = session
            .query("SELECT DISTINCT store_fname FROM public.ir_attachment WHERE store_fname IS NOT NULL AND store_fname <> ''", &[])
            .await
            .map_err(BackupError::query("reading ir_attachment"))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if !stored.is_empty() {
            let on_disk = match (&target.filestore, restored_dir) {
                (Some((host, _)), Some(dir)) => file_sha1s(host.as_ref(), dir).await?,
                _ => BTreeMap::new(),
            };
            for name in &stored {
                let expected = name.rsplit('/').next().unwrap_or(name);
                match on_disk.get(name.as_str()) {
                    None => problems.push(format!("attachment file {name} is missing")),
                    Some(sha1) if sha1 != expected => problems.push(format!("attachment file {name} has sha1 {sha1}")),
                    Some(_) => attachments += 1,
                }
            }
        }
    }
    if !problems.is_empty() {
        let shown: Vec<&str> = problems.iter().take(10).map(String::as_str).collect();
        let more = problems.len().saturating_sub(shown.len());
        let suffix = if more > 0 { format!("; and {more} more") } else { String::new() };
        return Err(BackupError::Check { problems: format!("{}{suffix}", shown.join("; ")) });
    }
    Ok(format!(
        "{} tables and {rows} rows as the backup counted them; {attachments} attachment files present with their sha1",
        manifest.pgfleet.tables.len()
    ))
}

/// `amcheck`'s `bt_index_check` on the five largest B-tree indexes of the
/// restored copy, where the extension is installed on the server; what it
/// checked, or why it could not.
pub async fn amcheck(target: &Target<'_>, loaded: &Loaded) -> Result<String, BackupError> {
    let session =
        crate::observe::superuser_session_to(target.primary_host.as_ref(), &target.primary, &loaded.database).await?;
    if session.batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck").await.is_err() {
        return Ok("amcheck is not installed on the server: indexes not checked".into());
    }
    let rows = session
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am am ON am.oid = c.relam \
             WHERE am.amname = 'btree' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
             ORDER BY pg_relation_size(c.oid) DESC LIMIT 5",
            &[],
        )
        .await
        .map_err(BackupError::query("listing the largest indexes"))?;
    let mut checked = Vec::new();
    for row in rows {
        let index: String = row.get(0);
        session
            .query(&format!("SELECT bt_index_check({}::regclass, true)", crate::action::context::literal(&index)), &[])
            .await
            .map_err(|error| BackupError::Check {
                problems: format!("amcheck of {index}: {}", crate::observe::error_chain(&error)),
            })?;
        checked.push(index);
    }
    Ok(format!("amcheck found {} largest indexes intact ({})", checked.len(), checked.join(", ")))
}

/// sha1 of every file under `dir` on `host`, by relative path.
async fn file_sha1s(host: &dyn Remote, dir: &Path) -> Result<BTreeMap<String, String>, BackupError> {
    let command = format!("cd {} && find . -type f -print0 | xargs -0 -r sha1sum", shell_quote(&dir.to_string_lossy()));
    let output = host.exec(&command, b"", LONG).await?;
    if !output.success() {
        return Err(BackupError::Command {
            program: "sha1sum",
            host: host.host().to_owned(),
            status: output.status,
            stderr: output.stderr_text().trim().to_owned(),
        });
    }
    Ok(output
        .stdout_text()
        .lines()
        .filter_map(|line| line.split_once("  "))
        .map(|(sha, path)| (path.trim_start_matches("./").to_owned(), sha.to_owned()))
        .collect())
}

/// What the swap did.
#[derive(Debug)]
pub struct Swapped {
    /// The live database's name now held by the previous copy.
    pub previous_database: String,
    pub previous_filestore: Option<PathBuf>,
    /// From the pause to the resume.
    pub downtime: Duration,
}

/// The only downtime: PAUSE the pooler, rename the live database away and
/// the restored one into place, swap the filestore directories, RESUME.
/// Rollback is renaming back.
pub async fn swap(
    context: &Context<'_>,
    target: &Target<'_>,
    loaded: &Loaded,
    stamp: &str,
) -> Result<Swapped, BackupError> {
    let live = &target.environment.database.name;
    let previous = format!("{live}_pre_{stamp}");
    let admin = crate::observe::superuser_session(target.primary_host.as_ref(), &target.primary).await?;
    let pooled = crate::placement::pooler(target.environment, PRIMARY).is_some();
    let started = Instant::now();
    if pooled {
        Action::PausePooler { pooler: PRIMARY.into() }
            .execute(context)
            .await
            .map_err(|error| BackupError::Io(error.to_string()))?;
    }
    let renamed = async {
        admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[live],
            )
            .await
            .map_err(BackupError::query("ending the live database's sessions"))?;
        admin
            .batch_execute(&format!("ALTER DATABASE {} RENAME TO {}", ident(live), ident(&previous)))
            .await
            .map_err(BackupError::query("renaming the live database away"))?;
        if let Err(error) =
            admin.batch_execute(&format!("ALTER DATABASE {} RENAME TO {}", ident(&loaded.database), ident(live))).await
        {
            let _ =
                admin.batch_execute(&format!("ALTER DATABASE {} RENAME TO {}", ident(&previous), ident(live))).await;
            return Err(BackupError::query("renaming the restored database into place")(error));
        }
        Ok(())
    }
    .await;
    let mut previous_filestore = None;
    let moved = match (&renamed, &target.filestore, &loaded.filestore) {
        (Ok(()), Some((host, path)), Some(restored)) => {
            let old = sibling(path, &format!("_pre_{stamp}"));
            let command = format!(
                "if [ -e {live} ]; then mv {live} {old}; fi && mv {restored} {live}",
                live = shell_quote(&path.to_string_lossy()),
                old = shell_quote(&old.to_string_lossy()),
                restored = shell_quote(&restored.to_string_lossy())
            );
            previous_filestore = Some(old);
            let output = host.exec(&command, b"", COMMAND_TIMEOUT).await;
            match output {
                Ok(output) if output.success() => Ok(()),
                Ok(output) => Err(BackupError::Io(format!("swapping the filestore: {}", output.stderr_text().trim()))),
                Err(error) => Err(error.into()),
            }
        }
        _ => Ok(()),
    };
    if renamed.is_ok() && moved.is_err() {
        // Back to the live database, so database and filestore agree.
        let _ =
            admin.batch_execute(&format!("ALTER DATABASE {} RENAME TO {}", ident(live), ident(&loaded.database))).await;
        let _ = admin.batch_execute(&format!("ALTER DATABASE {} RENAME TO {}", ident(&previous), ident(live))).await;
    }
    if pooled {
        Action::ResumePooler { pooler: PRIMARY.into(), sessions: true, application: false }
            .execute(context)
            .await
            .map_err(|error| BackupError::Io(error.to_string()))?;
    }
    let downtime = started.elapsed();
    renamed?;
    moved?;
    Ok(Swapped { previous_database: previous, previous_filestore, downtime })
}

fn ident(name: &str) -> String {
    crate::action::context::identifier(name)
}
