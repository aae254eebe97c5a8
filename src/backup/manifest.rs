//! What a backup says of itself: `manifest.json` inside the archive (Odoo's
//! keys, so Odoo's database manager and `click-odoo-restoredb` accept it,
//! plus the and pgfleet's), the sidecar beside it, and the record
//! of its last verification.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The archive member holding the plain dump (Odoo's name).
pub const DUMP_PLAIN: &str = "dump.sql";
/// The archive member holding a custom-format dump (Odoo's name).
pub const DUMP_CUSTOM: &str = "dump.dump";
/// The manifest inside the archive.
pub const MANIFEST: &str = "manifest.json";
/// Odoo's layout: the filestore as a directory tree under this prefix.
pub const FILESTORE_DIR: &str = "filestore/";
/// The tarball layout: the filestore as one gzipped tar.
pub const FILESTORE_TARBALL: &str = "filestore.tar.gz";
/// The checksum key of the filestore tree (one over its sorted file list).
pub const FILESTORE_TREE: &str = "filestore";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    // Odoo's own keys (odoo/service/db.py, dump_db_manifest).
    pub odoo_dump: String,
    pub db_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major_version: Option<String>,
    pub pg_version: String,
    /// Installed Odoo modules and their versions.
    #[serde(default)]
    pub modules: BTreeMap<String, String>,

    pub environment_id: String,
    pub backup_id: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odoo_version: Option<String>,
    pub database_size_bytes: u64,
    pub filestore_size_bytes: u64,
    /// `"sha256:<hex>"` per archive member; `filestore` for the tree.
    pub checksums: BTreeMap<String, String>,

    pub pgfleet: Details,
}

/// pgfleet's own part of the manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Details {
    /// `plain` or `custom`.
    pub format: String,
    /// `odoo` (filestore as a tree) or `tarball`.
    pub layout: String,
    pub postgresql_version: String,
    pub pg_dump_version: String,
    pub system_identifier: String,
    /// The WAL position the dump's snapshot saw.
    pub lsn: String,
    /// The member the dump was taken from.
    pub source_member: String,
    /// Rows per table in the dump (`schema.table` as pg_dump names it).
    pub tables: BTreeMap<String, u64>,
    pub filestore_files: u64,
}

/// `<env>/<id>.json`, beside the archive: what `list` and a quick verify
/// read without downloading the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    pub manifest: Manifest,
    /// sha256 of `manifest.json` as stored in the archive.
    pub manifest_sha256: String,
    /// sha256 of the whole archive, and its size.
    pub archive_sha256: String,
    pub archive_bytes: u64,
}

/// `<env>/<id>.verified.json`: the last verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub at: String,
    /// `checksums` or `restore-test`.
    pub kind: String,
    pub ok: bool,
    /// What was checked, or what failed.
    pub detail: String,
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_text(bytes: &[u8]) -> String {
    digest_text(Sha256::digest(bytes).as_slice())
}

pub fn digest_text(digest: &[u8]) -> String {
    format!("sha256:{}", hex(digest))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The checksum of a filestore tree: sha256 over `<sha256 hex>  <path>\n`
/// for every file, sorted by path (the format of `sha256sum`, so
/// `find . -type f | sort | xargs sha256sum | sha256sum` reproduces it).
pub fn tree_checksum(files: &mut [(String, String)]) -> String {
    files.sort();
    let mut hasher = Sha256::new();
    for (path, sha) in files.iter() {
        hasher.update(format!("{sha}  ./{path}\n").as_bytes());
    }
    digest_text(hasher.finalize().as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_checksum_is_order_free_and_sees_each_file() {
        let mut a = vec![("b/2".to_owned(), "bb".to_owned()), ("a/1".to_owned(), "aa".to_owned())];
        let mut b = vec![("a/1".to_owned(), "aa".to_owned()), ("b/2".to_owned(), "bb".to_owned())];
        assert_eq!(tree_checksum(&mut a), tree_checksum(&mut b));
        let mut c = vec![("a/1".to_owned(), "aa".to_owned()), ("b/2".to_owned(), "bc".to_owned())];
        assert_ne!(tree_checksum(&mut a), tree_checksum(&mut c));
    }
}
