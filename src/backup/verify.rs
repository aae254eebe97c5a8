//! Reading backups back: the sidecars `list` shows, a full verification
//! (every member's checksum recomputed against the manifest, the manifest's
//! against the sidecar's), and the row counts a restore is checked
//! against.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::archive::{StorageReader, copy_observed};
use super::manifest::{self, Manifest, Sidecar, Verification};
use super::{BackupError, archive_name, sidecar_name, verified_name};
use crate::storage::Storage;

/// A backup as `list` shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    pub sidecar: Sidecar,
    pub verification: Option<Verification>,
}

/// Every backup of `environment` in the storage, newest first. An archive
/// whose sidecar is missing (an upload that never finished) is not a
/// backup and is not listed.
pub async fn list(storage: &dyn Storage, environment: &str) -> Result<Vec<Listed>, BackupError> {
    let objects = storage.list(&format!("{environment}/")).await?;
    let names: std::collections::BTreeSet<&str> = objects.iter().map(|object| object.name.as_str()).collect();
    let mut listed = Vec::new();
    for object in &objects {
        let Some(id) = object.name.strip_prefix(&format!("{environment}/")).and_then(|rest| rest.strip_suffix(".json"))
        else {
            continue;
        };
        if id.ends_with(".verified") || !names.contains(archive_name(environment, id).as_str()) {
            continue;
        }
        let sidecar: Sidecar = read_json(storage, &object.name).await?;
        let verification = match names.contains(verified_name(environment, id).as_str()) {
            true => read_json(storage, &verified_name(environment, id)).await.ok(),
            false => None,
        };
        listed.push(Listed { id: id.to_owned(), sidecar, verification });
    }
    listed.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(listed)
}

/// One backup's sidecar, or `Unknown`.
pub async fn find(storage: &dyn Storage, environment: &str, id: &str) -> Result<Sidecar, BackupError> {
    if crate::storage::check_name(id).is_err() || storage.stat(&archive_name(environment, id)).await?.is_none() {
        return Err(BackupError::Unknown {
            id: id.to_owned(),
            environment: environment.to_owned(),
            storage: storage.describe(),
        });
    }
    read_json(storage, &sidecar_name(environment, id)).await
}

pub async fn read_json<T: serde::de::DeserializeOwned>(storage: &dyn Storage, name: &str) -> Result<T, BackupError> {
    let mut body = storage.get(name, None).await?;
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut body, &mut bytes)
        .await
        .map_err(|error| BackupError::Io(format!("reading `{name}`: {error}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|error| BackupError::Damaged { name: name.to_owned(), reason: error.to_string() })
}

/// Records a verification beside the backup.
pub async fn record(
    storage: &dyn Storage,
    environment: &str,
    id: &str,
    verification: &Verification,
) -> Result<(), BackupError> {
    let text = serde_json::to_vec_pretty(verification).map_err(|error| BackupError::Io(error.to_string()))?;
    storage.put(&verified_name(environment, id), Box::new(std::io::Cursor::new(text))).await?;
    Ok(())
}

/// What a full verification read.
#[derive(Debug, Clone)]
pub struct Verified {
    pub members: usize,
    pub bytes: u64,
}

/// Reads the whole archive and recomputes every checksum; the first
/// member that differs from the manifest is named in the error.
pub async fn verify(storage: Arc<dyn Storage>, environment: &str, id: &str) -> Result<Verified, BackupError> {
    let sidecar = find(storage.as_ref(), environment, id).await?;
    let name = archive_name(environment, id);
    let size = storage.stat(&name).await?.map_or(0, |meta| meta.size);
    let handle = tokio::runtime::Handle::current();
    let id = id.to_owned();
    tokio::task::spawn_blocking(move || {
        let reader = StorageReader::new(storage, name.clone(), size, handle);
        let damaged = |reason: String| BackupError::Damaged { name: name.clone(), reason };
        let mut zip = zip::ZipArchive::new(reader).map_err(|error| damaged(error.to_string()))?;
        let mut found: BTreeMap<String, String> = BTreeMap::new();
        let mut tree = Vec::new();
        let mut bytes = 0u64;
        let mut manifest_sha = None;
        for index in 0..zip.len() {
            let mut entry = zip.by_index(index).map_err(|error| damaged(error.to_string()))?;
            let member = entry.name().map_err(|error| damaged(error.to_string()))?.into_owned();
            let mut hasher = Sha256::new();
            bytes +=
                copy_observed(&mut entry, &mut std::io::sink(), |chunk| hasher.update(chunk)).map_err(|error| {
                    BackupError::Checksum {
                        id: id.clone(),
                        member: member.clone(),
                        expected: "an intact member".into(),
                        found: error.to_string(),
                    }
                })?;
            let digest = hasher.finalize();
            if let Some(path) = member.strip_prefix(manifest::FILESTORE_DIR) {
                tree.push((path.to_owned(), manifest::hex(digest.as_slice())));
            } else if member == manifest::MANIFEST {
                manifest_sha = Some(manifest::digest_text(digest.as_slice()));
            } else {
                found.insert(member, manifest::digest_text(digest.as_slice()));
            }
        }
        if !tree.is_empty() {
            found.insert(manifest::FILESTORE_TREE.into(), manifest::tree_checksum(&mut tree));
        }
        let mismatch = |member: &str, expected: &str, actual: &str| BackupError::Checksum {
            id: id.clone(),
            member: member.to_owned(),
            expected: expected.to_owned(),
            found: actual.to_owned(),
        };
        let manifest_sha = manifest_sha.unwrap_or_else(|| "no manifest.json".into());
        if manifest_sha != sidecar.manifest_sha256 {
            return Err(mismatch(manifest::MANIFEST, &sidecar.manifest_sha256, &manifest_sha));
        }
        for (member, expected) in &sidecar.manifest.checksums {
            let actual = found.get(member).map_or("nothing (the member is missing)", String::as_str);
            if actual != expected {
                return Err(mismatch(member, expected, actual));
            }
        }
        Ok(Verified { members: zip.len(), bytes })
    })
    .await
    .map_err(|error| BackupError::Io(error.to_string()))?
}

/// The manifest inside an archive, read by its own ranges.
pub fn read_manifest(zip: &mut zip::ZipArchive<StorageReader>, name: &str) -> Result<(Manifest, String), BackupError> {
    let damaged = |reason: String| BackupError::Damaged { name: name.to_owned(), reason };
    let mut entry = zip.by_name(manifest::MANIFEST).map_err(|error| damaged(error.to_string()))?;
    let mut text = Vec::new();
    entry.read_to_end(&mut text).map_err(|error| damaged(error.to_string()))?;
    let manifest = serde_json::from_slice(&text).map_err(|error| damaged(error.to_string()))?;
    Ok((manifest, manifest::sha256_text(&text)))
}

/// Rows of every table in the session's database (`schema.table` quoted
/// as pg_dump names them).
pub async fn count_rows(session: &tokio_postgres::Client) -> Result<BTreeMap<String, u64>, BackupError> {
    let tables = session
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e') ORDER BY 1",
            &[],
        )
        .await
        .map_err(BackupError::query("listing tables"))?;
    let mut counts = BTreeMap::new();
    for row in tables {
        let table: String = row.get(0);
        let count: i64 = session
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .map_err(BackupError::query(format!("counting rows of {table}")))?
            .get(0);
        counts.insert(table, u64::try_from(count).unwrap_or(0));
    }
    Ok(counts)
}
