//! Backups on real servers: two environments of one YAML (each a primary,
//! a streaming replica and poolers, built by pgfleet), a backup of one
//! with its Odoo filestore to a storage, listed, verified, restored into
//! the other (rows read back on its replica, files byte-identical), a
//! restore test, an archive changed by one byte refused, a dump whose
//! restore fails half-way refused with the live database untouched, an
//! Odoo-layout archive restored by Odoo's own steps, and no secret in
//! anything written.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};
use support::fleet::{Fleet, REPLICATION_PASSWORD, text};
use support::storage_servers::{FtpServer, S3Server};

struct Env {
    id: &'static str,
    addresses: [Ipv4Addr; 2],
    ports: [u16; 2],
    pooler_port: u16,
    replica_pooler_port: u16,
}

struct Setup {
    fleet: Fleet,
    shop: Env,
    staging: Env,
    storage: PathBuf,
    /// Environment variables every pgfleet command gets (storage keys).
    env: Vec<(String, String)>,
    /// Secrets beyond the clusters' that must never be shown.
    extra_secrets: Vec<String>,
}

impl Setup {
    fn new(storage_yaml: &dyn Fn(&Path) -> String) -> Setup {
        let fleet = Fleet::local();
        let env = |id| {
            let addresses = [support::free_loopback_address(), support::free_loopback_address()];
            Env {
                id,
                addresses,
                ports: [support::free_port(addresses[0]), support::free_port(addresses[1])],
                pooler_port: support::free_port(addresses[0]),
                replica_pooler_port: support::free_port(addresses[1]),
            }
        };
        let (shop, staging) = (env("shop"), env("staging"));
        let storage = fleet.dir().join("storage");
        let setup = Setup { fleet, shop, staging, storage, env: Vec::new(), extra_secrets: Vec::new() };
        setup.write_config(&storage_yaml(&setup.storage), "layout: odoo");
        for env in [&setup.shop, &setup.staging] {
            let dir = setup.filestore(env.id);
            std::fs::create_dir_all(&dir).unwrap();
            chown(&dir);
        }
        setup
    }

    /// `backups` holds extra keys of the `backups:` block (`layout: …`,
    /// `format: …`).
    fn write_config(&self, storage: &str, backups: &str) {
        let mut yaml = format!(
            "version: 1\nstate: {{ path: {} }}\nhosts:\n  here: {{ transport: local }}\nenvironments:\n",
            self.fleet.dir().join("state.json").display()
        );
        for env in [&self.shop, &self.staging] {
            let dir = self.fleet.dir();
            yaml.push_str(&format!(
                "  - id: {id}\n    odoo_version: \"18.0\"\n{protected}    primary: {{ host: here, address: {a0}, port: {p0}, data_dir: {d0}, tuning: none, settings: {{ shared_buffers: 32MB }} }}\n    database: {{ name: {id}, owner: odoo, password: {{ generate: true }} }}\n    replication: {{ user: replicator, password: {{ env: PGFLEET_TEST_REPLICATION_PASSWORD }} }}\n    pgbouncer: {{ pool_size: 5, pool_mode: session, port: {pp}, replica_port: {rp} }}\n    replicas:\n      - {{ name: r1, host: here, address: {a1}, port: {p1}, data_dir: {d1} }}\n    filestore: {{ path: {fs} }}\n    backups:\n      {backups}\n      storage: {storage}\n      retention: {{ daily: 7, weekly: 4, monthly: 3 }}\n",
                id = env.id,
                protected = if env.id == "shop" { "    protected: true\n" } else { "" },
                a0 = env.addresses[0],
                p0 = env.ports[0],
                d0 = dir.join(format!("{}-primary", env.id)).display(),
                a1 = env.addresses[1],
                p1 = env.ports[1],
                d1 = dir.join(format!("{}-r1", env.id)).display(),
                pp = env.pooler_port,
                rp = env.replica_pooler_port,
                fs = self.filestore(env.id).display(),
            ));
        }
        std::fs::write(self.fleet.dir().join("pgfleet.yaml"), yaml).unwrap();
    }

    fn filestore(&self, id: &str) -> PathBuf {
        self.fleet.dir().join(format!("filestore-{id}"))
    }

    fn secret(&self, env: &Env, name: &str) -> String {
        let path = self.fleet.dir().join(format!("{}-primary.pgfleet", env.id)).join(name);
        std::fs::read_to_string(path).unwrap().trim().to_owned()
    }

    /// SQL as the application's owner through the environment's primary
    /// pooler (`replica`: through the replica's).
    fn sql(&self, env: &Env, replica: bool, query: &str) -> Result<String, String> {
        let password = self.secret(env, "role-odoo.password");
        let (address, port) =
            if replica { (env.addresses[1], env.replica_pooler_port) } else { (env.addresses[0], env.pooler_port) };
        self.fleet.psql(address, port, "odoo", &password, env.id, query)
    }

    fn superuser(&self, env: &Env, database: &str, query: &str) -> Result<String, String> {
        let password = self.secret(env, "superuser.password");
        self.fleet.psql(env.addresses[0], env.ports[0], "postgres", &password, database, query)
    }

    fn pgfleet(&self, args: &[&str]) -> Output {
        let output =
            self.fleet.command(args).envs(self.env.iter().map(|(name, value)| (name, value))).output().unwrap();
        self.no_secret_in(&text(&output.stdout), "stdout");
        self.no_secret_in(&text(&output.stderr), "stderr");
        output
    }

    fn ok(&self, args: &[&str]) -> Output {
        let output = self.pgfleet(args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "pgfleet {args:?} failed:\n{}\n{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        output
    }

    fn secrets(&self) -> Vec<String> {
        let mut secrets = vec![REPLICATION_PASSWORD.to_owned()];
        secrets.extend(self.extra_secrets.iter().cloned());
        for env in [&self.shop, &self.staging] {
            for name in ["superuser.password", "role-odoo.password"] {
                if let Ok(secret) =
                    std::fs::read_to_string(self.fleet.dir().join(format!("{}-primary.pgfleet", env.id)).join(name))
                {
                    secrets.push(secret.trim().to_owned());
                }
            }
        }
        secrets
    }

    fn no_secret_in(&self, haystack: &str, what: &str) {
        for secret in self.secrets() {
            assert!(!haystack.contains(&secret), "a secret appears in {what}");
        }
    }

    fn converged(&self) {
        let plan = self.pgfleet(&["plan", "--detailed-exitcode"]);
        assert_eq!(plan.status.code(), Some(0), "plan is not empty:\n{}\n{}", text(&plan.stdout), text(&plan.stderr));
    }

    /// An Odoo-like filestore: files named by their sha1, as Odoo stores
    /// them, with an `ir_attachment` row each.
    fn attachments(&self, env: &Env, count: usize) {
        self.sql(env, false, "CREATE TABLE ir_attachment (id serial PRIMARY KEY, name text, store_fname varchar)")
            .unwrap();
        self.sql(env, false, "CREATE TABLE ir_module_module (name text, latest_version text, state text)").unwrap();
        self.sql(env, false, "INSERT INTO ir_module_module VALUES ('base', '18.0.1.3', 'installed'), ('sale', '18.0.1.0', 'installed'), ('crm', '18.0.1.0', 'uninstalled')").unwrap();
        let root = self.filestore(env.id);
        let mut values = Vec::new();
        for index in 0..count {
            let content: Vec<u8> = format!("attachment {index} ").repeat(index * 37 + 1).into_bytes();
            let sha1 = hex(&sha1_smol(&content));
            let relative = format!("{}/{sha1}", &sha1[..2]);
            std::fs::create_dir_all(root.join(&sha1[..2])).unwrap();
            std::fs::write(root.join(&relative), &content).unwrap();
            values.push(format!("('file {index}', '{relative}')"));
        }
        chown(&root);
        self.sql(env, false, &format!("INSERT INTO ir_attachment (name, store_fname) VALUES {}", values.join(", ")))
            .unwrap();
    }
}

fn chown(path: &Path) {
    assert!(Command::new("chown").args(["-R", "postgres:postgres"]).arg(path).status().unwrap().success());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn sha1_smol(bytes: &[u8]) -> Vec<u8> {
    use sha1::Digest as _;
    sha1::Sha1::digest(bytes).to_vec()
}

/// Every file under `root`, by relative path, with its sha256.
fn tree(root: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                files.push((relative, hex(&Sha256::digest(std::fs::read(&path).unwrap()))));
            }
        }
    }
    files.sort();
    files
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}{}", text(&output.stdout), text(&output.stderr)))
}

/// Flips one byte in the middle of the first member's data (dump.sql).
fn flip_dump_byte(archive: &Path) {
    let mut bytes = std::fs::read(archive).unwrap();
    assert_eq!(&bytes[..4], b"PK\x03\x04");
    let name_len = u16::from_le_bytes([bytes[26], bytes[27]]) as usize;
    let extra_len = u16::from_le_bytes([bytes[28], bytes[29]]) as usize;
    assert_eq!(&bytes[30..30 + name_len], b"dump.sql");
    let data = 30 + name_len + extra_len;
    bytes[data + 200] ^= 0x20;
    std::fs::write(archive, bytes).unwrap();
}

fn local_storage(dir: &Path) -> String {
    format!("{{ kind: local, path: {} }}", dir.display())
}

#[test]
fn backups_to_a_local_directory_restore_into_another_environment_and_prove_themselves() {
    let setup = Setup::new(&local_storage);
    setup.fleet.apply();
    let (shop, staging) = (&setup.shop, &setup.staging);

    // Data and files in shop; staging has its own, to be replaced.
    setup.sql(shop, false, "CREATE TABLE orders (id bigint PRIMARY KEY, note text)").unwrap();
    setup.sql(shop, false, "INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 5000) g").unwrap();
    setup.attachments(shop, 40);
    setup.sql(staging, false, "CREATE TABLE orders (id bigint PRIMARY KEY, note text)").unwrap();
    setup.sql(staging, false, "INSERT INTO orders VALUES (-1, 'staging only')").unwrap();

    // Create, with the result as JSON.
    let created = json(&setup.ok(&["backup", "create", "--env", "shop", "--format", "json"]));
    let id = created["backup_id"].as_str().unwrap().to_owned();
    let archive = setup.storage.join("shop").join(format!("{id}.zip"));
    assert!(archive.exists(), "{created}");
    assert_eq!(std::fs::metadata(&archive).unwrap().len(), created["archive_bytes"].as_u64().unwrap());

    // The manifest: Odoo's keys and pgfleet's, row counts as dumped.
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(setup.storage.join("shop").join(format!("{id}.json"))).unwrap())
            .unwrap();
    let manifest = &sidecar["manifest"];
    assert_eq!(manifest["odoo_dump"], "1");
    assert_eq!(manifest["db_name"], "shop");
    assert_eq!(manifest["environment_id"], "shop");
    assert_eq!(manifest["pgfleet"]["tables"]["public.orders"], 5000);
    assert_eq!(manifest["pgfleet"]["tables"]["public.ir_attachment"], 40);
    assert_eq!(manifest["pgfleet"]["filestore_files"], 40);
    assert_eq!(manifest["modules"]["sale"], "18.0.1.0");
    assert!(manifest["modules"].get("crm").is_none(), "uninstalled modules are not listed");
    assert!(manifest["checksums"]["dump.sql"].as_str().unwrap().starts_with("sha256:"));
    // The tree checksum is reproducible with sha256sum.
    let expected_tree = Command::new("sh")
        .arg("-c")
        .arg("find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1")
        .current_dir(setup.filestore("shop"))
        .output()
        .unwrap();
    assert_eq!(
        manifest["checksums"]["filestore"].as_str().unwrap(),
        format!("sha256:{}", text(&expected_tree.stdout).trim())
    );

    // Listed; not verified yet, which drift reports (class backups).
    let listed = json(&setup.ok(&["backup", "list", "--env", "shop", "--format", "json"]));
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    assert!(listed[0]["verified"].is_null());
    let drift = setup.pgfleet(&["drift", "--format", "json"]);
    assert_eq!(drift.status.code(), Some(2), "{}{}", text(&drift.stdout), text(&drift.stderr));
    let report = json(&drift);
    let classes: Vec<&str> =
        report["drift"].as_array().unwrap().iter().map(|item| item["class"].as_str().unwrap()).collect();
    assert!(classes.contains(&"backups"), "{report}");
    setup.ok(&["backup", "verify", "--env", "shop", &id]);
    let listed = json(&setup.ok(&["backup", "list", "--env", "shop", "--format", "json"]));
    assert_eq!(listed[0]["verified"]["ok"], true, "{listed}");
    let status = json(&setup.ok(&["status", "--format", "json"]));
    let shop_status =
        status["environments"].as_array().unwrap().iter().find(|environment| environment["id"] == "shop").unwrap();
    assert_eq!(shop_status["backups"]["newest_verified"], id.as_str(), "{status}");
    assert_eq!(shop_status["backups"]["verified_by"], "checksums", "{status}");

    // A restore test: into a scratch database, checked, dropped.
    let tested = setup.ok(&["backup", "verify", "--env", "shop", &id, "--restore-test"]);
    assert!(text(&tested.stdout).contains("5000") || text(&tested.stdout).contains("rows"), "{}", text(&tested.stdout));
    let verification: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(setup.storage.join("shop").join(format!("{id}.verified.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(verification["kind"], "restore-test");
    assert_eq!(verification["ok"], true);
    assert!(verification["detail"].as_str().unwrap().contains("40 attachment files"), "{verification}");
    assert!(verification["detail"].as_str().unwrap().contains("public.orders_pkey"), "amcheck: {verification}");
    let databases = setup.superuser(shop, "postgres", "SELECT string_agg(datname, ',') FROM pg_database").unwrap();
    assert!(!databases.contains("verify"), "the scratch database was left: {databases}");

    // Restore into the other environment (not protected), shown as a plan first.
    let restored = setup.ok(&["backup", "restore", "--env", "staging", &id, "--from-env", "shop", "--auto-approve"]);
    let report = text(&restored.stdout);
    assert!(report.contains("pgfleet will restore backup"), "{report}");
    assert!(report.contains("Replicas r1 follow by themselves"), "{report}");
    assert_eq!(setup.sql(staging, false, "SELECT count(*) FROM orders").unwrap(), "5000");
    assert_eq!(setup.sql(staging, false, "SELECT count(*) FROM orders WHERE id = -1").unwrap(), "0");
    // Owned by the application's role: it can write.
    setup.sql(staging, false, "INSERT INTO orders VALUES (900001, 'after restore')").unwrap();
    // The replica serves the restored rows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while setup.sql(staging, true, "SELECT count(*) FROM orders").ok().as_deref() != Some("5001") {
        assert!(std::time::Instant::now() < deadline, "staging's replica never served the restored rows");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        tree(&setup.filestore("staging")),
        tree(&setup.filestore("shop")),
        "the filestore is not byte-identical"
    );
    let previous = setup
        .superuser(
            staging,
            "postgres",
            "SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'staging_pre_%'",
        )
        .unwrap();
    assert!(!previous.is_empty(), "the previous database is kept for rollback");
    setup.converged();

    // A protected environment refuses another's backup.
    let refused =
        setup.pgfleet(&["backup", "restore", "--env", "shop", &id, "--from-env", "staging", "--auto-approve"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("protected"), "{}", text(&refused.stderr));

    // Odoo's own restore of pgfleet's zip: Python's zipfile extracts it,
    // psql loads dump.sql, filestore/ is copied.
    let odoo = setup.fleet.dir().join("odoo-restore");
    let unzip = Command::new("python3").args(["-m", "zipfile", "-e"]).arg(&archive).arg(&odoo).output().unwrap();
    assert!(unzip.status.success(), "{}", text(&unzip.stderr));
    assert!(odoo.join("manifest.json").exists());
    assert_eq!(tree(&odoo.join("filestore")), tree(&setup.filestore("shop")));
    setup.superuser(shop, "postgres", "CREATE DATABASE odoo_way OWNER odoo").unwrap();
    let password = setup.secret(shop, "superuser.password");
    let loaded = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            &shop.addresses[0].to_string(),
            "-p",
            &shop.ports[0].to_string(),
            "-U",
            "postgres",
            "-d",
            "odoo_way",
            "-f",
        ])
        .arg(odoo.join("dump.sql"))
        .env("PGPASSWORD", &password)
        .output()
        .unwrap();
    assert!(loaded.status.success(), "{}", text(&loaded.stderr));
    assert_eq!(setup.superuser(shop, "odoo_way", "SELECT count(*) FROM orders").unwrap(), "5000");

    // One byte changed in dump.sql: verify fails naming it; restore refuses
    // and changes nothing.
    let staging_rows = setup.sql(staging, false, "SELECT count(*) FROM orders").unwrap();
    let pristine = std::fs::read(&archive).unwrap();
    flip_dump_byte(&archive);
    let verify = setup.pgfleet(&["backup", "verify", "--env", "shop", &id]);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify.stdout));
    assert!(text(&verify.stderr).contains("dump.sql"), "{}", text(&verify.stderr));
    let refused =
        setup.pgfleet(&["backup", "restore", "--env", "staging", &id, "--from-env", "shop", "--auto-approve"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stdout));
    assert_eq!(setup.sql(staging, false, "SELECT count(*) FROM orders").unwrap(), staging_rows);
    assert_eq!(tree(&setup.filestore("staging")), tree(&setup.filestore("shop")));
    let scratch = setup
        .superuser(staging, "postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE '%_restore_%'")
        .unwrap();
    assert_eq!(scratch, "0", "the scratch database was left behind");
    std::fs::write(&archive, pristine).unwrap();
    // The failed verification was recorded; the intact archive verifies again.
    let listed = json(&setup.ok(&["backup", "list", "--env", "shop", "--format", "json"]));
    assert_eq!(listed[0]["verified"]["ok"], false, "{listed}");
    setup.ok(&["backup", "verify", "--env", "shop", &id]);

    // A dump whose restore fails half-way (a CHECK that reads a table
    // loaded after it): pgfleet's restore test and restore say so;
    // `psql -f` without ON_ERROR_STOP would have exited 0.
    setup.sql(shop, false, "CREATE TABLE z_allowed (v int)").unwrap();
    setup.sql(shop, false, "INSERT INTO z_allowed VALUES (1)").unwrap();
    setup.sql(shop, false, "CREATE FUNCTION allowed(int) RETURNS bool LANGUAGE sql AS 'SELECT EXISTS (SELECT 1 FROM public.z_allowed WHERE v = $1)'").unwrap();
    setup.sql(shop, false, "CREATE TABLE a_strict (v int CHECK (public.allowed(v)))").unwrap();
    setup.sql(shop, false, "INSERT INTO a_strict VALUES (1)").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let broken = json(&setup.ok(&["backup", "create", "--env", "shop", "--format", "json"]));
    let broken_id = broken["backup_id"].as_str().unwrap().to_owned();
    assert_ne!(broken_id, id);
    let tested = setup.pgfleet(&["backup", "verify", "--env", "shop", &broken_id, "--restore-test"]);
    assert_eq!(tested.status.code(), Some(1), "{}", text(&tested.stdout));
    assert!(text(&tested.stderr).contains("a_strict"), "{}", text(&tested.stderr));
    let refused =
        setup.pgfleet(&["backup", "restore", "--env", "staging", &broken_id, "--from-env", "shop", "--auto-approve"]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(setup.sql(staging, false, "SELECT count(*) FROM orders").unwrap(), staging_rows);
    let listed = json(&setup.ok(&["backup", "list", "--env", "shop", "--format", "json"]));
    let failed = listed.as_array().unwrap().iter().find(|backup| backup["id"] == broken_id.as_str()).unwrap();
    assert_eq!(failed["verified"]["ok"], false, "{listed}");
    // Retention kept the newest and the newest verified (both of today),
    // and plan says why.
    let ids: Vec<&str> = listed.as_array().unwrap().iter().map(|backup| backup["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [broken_id.as_str(), id.as_str()]);
    let plan = text(&setup.ok(&["plan"]).stdout);
    assert!(plan.contains(&format!("keep   {id}  kept: newest verified")), "{plan}");
    assert!(plan.contains(&format!("keep   {broken_id}  kept: daily")), "{plan}");

    // The tarball layout restores with pgfleet too.
    setup.sql(shop, false, "DROP TABLE a_strict").unwrap();
    setup.write_config(&local_storage(&setup.storage), "layout: tarball");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let tarball = json(&setup.ok(&["backup", "create", "--env", "shop", "--format", "json"]));
    let tarball_id = tarball["backup_id"].as_str().unwrap().to_owned();
    setup.ok(&["backup", "verify", "--env", "shop", &tarball_id]);
    setup.ok(&["backup", "restore", "--env", "staging", &tarball_id, "--from-env", "shop", "--auto-approve"]);
    assert_eq!(setup.sql(staging, false, "SELECT count(*) FROM orders").unwrap(), "5000");
    assert_eq!(tree(&setup.filestore("staging")), tree(&setup.filestore("shop")));
    setup.converged();

    // No secret in anything pgfleet wrote: state, manifests, object names.
    for entry in walk(&setup.storage) {
        setup.no_secret_in(&entry.to_string_lossy(), "an object name");
        if entry.extension().is_some_and(|extension| extension == "json") {
            setup.no_secret_in(&std::fs::read_to_string(&entry).unwrap(), "a sidecar");
        }
    }
    setup.no_secret_in(&std::fs::read_to_string(setup.fleet.dir().join("state.json")).unwrap(), "state");
}

#[test]
fn a_custom_dump_from_the_replica_rolls_the_environment_back() {
    let setup = Setup::new(&local_storage);
    setup.write_config(&local_storage(&setup.storage), "format: custom");
    setup.fleet.apply();
    let shop = &setup.shop;
    setup.sql(shop, false, "CREATE TABLE orders (id bigint PRIMARY KEY, note text)").unwrap();
    setup.sql(shop, false, "INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 3000) g").unwrap();
    setup.attachments(shop, 5);
    // The replica has what the backup must hold.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while setup.sql(shop, true, "SELECT count(*) FROM ir_attachment").ok().as_deref() != Some("5") {
        assert!(std::time::Instant::now() < deadline, "the replica never caught up");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    let created = json(&setup.ok(&["backup", "create", "--env", "shop", "--from", "r1", "--format", "json"]));
    let id = created["backup_id"].as_str().unwrap().to_owned();
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(setup.storage.join("shop").join(format!("{id}.json"))).unwrap())
            .unwrap();
    assert_eq!(sidecar["manifest"]["pgfleet"]["source_member"], "r1");
    assert_eq!(sidecar["manifest"]["pgfleet"]["format"], "custom");
    assert_eq!(sidecar["manifest"]["pgfleet"]["tables"]["public.orders"], 3000);
    assert!(sidecar["manifest"]["checksums"]["dump.dump"].as_str().unwrap().starts_with("sha256:"));

    // After the backup: rows and a file the rollback must take away.
    setup.sql(shop, false, "INSERT INTO orders VALUES (999999, 'after the backup')").unwrap();
    let before = tree(&setup.filestore("shop"));
    std::fs::write(setup.filestore("shop").join("late-file"), b"written after the backup").unwrap();
    chown(&setup.filestore("shop"));

    // Same environment: a rollback, no --force needed.
    setup.ok(&["backup", "restore", "--env", "shop", &id, "--auto-approve"]);
    assert_eq!(setup.sql(shop, false, "SELECT count(*) FROM orders").unwrap(), "3000");
    assert_eq!(setup.sql(shop, false, "SELECT count(*) FROM orders WHERE id = 999999").unwrap(), "0");
    assert_eq!(tree(&setup.filestore("shop")), before);
    setup.sql(shop, false, "INSERT INTO orders VALUES (3001, 'writable')").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while setup.sql(shop, true, "SELECT count(*) FROM orders").ok().as_deref() != Some("3001") {
        assert!(std::time::Instant::now() < deadline, "the replica never served the restored rows");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    setup.converged();
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}

/// The round trip every storage must carry: create → list → verify →
/// restore into the other environment (rows read back on its primary and
/// its replica, files byte-identical), plan empty, and no secret in any
/// output, sidecar or object name.
fn round_trip(setup: &Setup, objects: &dyn Fn() -> Vec<String>) {
    setup.fleet.apply();
    let (shop, staging) = (&setup.shop, &setup.staging);
    setup.sql(shop, false, "CREATE TABLE orders (id bigint PRIMARY KEY, note text)").unwrap();
    setup.sql(shop, false, "INSERT INTO orders SELECT g, repeat('x', 500) FROM generate_series(1, 40000) g").unwrap();
    setup.attachments(shop, 20);
    let created = json(&setup.ok(&["backup", "create", "--env", "shop", "--format", "json"]));
    let id = created["backup_id"].as_str().unwrap().to_owned();
    let listed = json(&setup.ok(&["backup", "list", "--env", "shop", "--format", "json"]));
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    setup.ok(&["backup", "verify", "--env", "shop", &id]);
    setup.ok(&["backup", "restore", "--env", "staging", &id, "--from-env", "shop", "--auto-approve"]);
    assert_eq!(setup.sql(staging, false, "SELECT count(*) FROM orders").unwrap(), "40000");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while setup.sql(staging, true, "SELECT count(*) FROM orders").ok().as_deref() != Some("40000") {
        assert!(std::time::Instant::now() < deadline, "staging's replica never served the restored rows");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(tree(&setup.filestore("staging")), tree(&setup.filestore("shop")));
    setup.converged();
    let names = objects();
    assert!(names.iter().any(|name| name.ends_with(&format!("shop/{id}.zip"))), "{names:?}");
    for name in &names {
        setup.no_secret_in(name, "an object name");
    }
}

#[test]
fn backups_round_trip_through_an_s3_server() {
    let s3 = S3Server::start();
    let storage = format!(
        "{{ kind: s3, bucket: {}, endpoint: \"{}\", region: us-east-1, access_key: {{ env: PGFLEET_TEST_S3_ACCESS }}, secret_key: {{ env: PGFLEET_TEST_S3_SECRET }} }}",
        s3.bucket, s3.endpoint
    );
    let mut setup = Setup::new(&|_| storage.clone());
    setup.env = vec![
        ("PGFLEET_TEST_S3_ACCESS".into(), s3.access_key.clone()),
        ("PGFLEET_TEST_S3_SECRET".into(), s3.secret_key.clone()),
    ];
    setup.extra_secrets = vec![s3.secret_key.clone()];
    round_trip(&setup, &|| walk(&s3.bucket_dir).iter().map(|path| path.to_string_lossy().into_owned()).collect());
    // A wrong secret key is refused without showing either key.
    let mut wrong = setup.fleet.command(&["backup", "list", "--env", "shop"]);
    wrong.env("PGFLEET_TEST_S3_ACCESS", &s3.access_key).env("PGFLEET_TEST_S3_SECRET", "not-the-secret-Zz9");
    let output = wrong.output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(!text(&output.stderr).contains("not-the-secret-Zz9"), "{}", text(&output.stderr));
}

#[test]
fn backups_round_trip_through_sftp() {
    let server = support::SshServer::start();
    let setup_dir = std::cell::RefCell::new(PathBuf::new());
    let storage = |dir: &Path| {
        *setup_dir.borrow_mut() = dir.to_path_buf();
        format!(
            "{{ kind: sftp, address: {}, port: {}, user: postgres, path: {}, identity_file: {}, known_hosts: {} }}",
            server.address,
            server.port,
            dir.display(),
            server.identity_file.display(),
            server.known_hosts.display()
        )
    };
    let setup = Setup::new(&storage);
    let dir = setup_dir.borrow().clone();
    std::fs::create_dir_all(&dir).unwrap();
    chown(&dir);
    round_trip(&setup, &|| walk(&dir).iter().map(|path| path.to_string_lossy().into_owned()).collect());
}

#[test]
fn backups_round_trip_through_ftps() {
    let ftp = FtpServer::start();
    let storage = format!(
        "{{ kind: ftp, address: {}, port: {}, user: {}, password: {{ env: PGFLEET_TEST_FTP_PASSWORD }}, path: /backups, ca_file: {} }}",
        ftp.address,
        ftp.port,
        ftp.user,
        ftp.ca_file.display()
    );
    let mut setup = Setup::new(&|_| storage.clone());
    setup.env = vec![("PGFLEET_TEST_FTP_PASSWORD".into(), ftp.password.clone())];
    setup.extra_secrets = vec![ftp.password.clone()];
    round_trip(&setup, &|| walk(&ftp.root).iter().map(|path| path.to_string_lossy().into_owned()).collect());
}
