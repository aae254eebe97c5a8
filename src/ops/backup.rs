//! `pgfleet backup create | list | verify | restore`: the backup module's
//! work (`crate::backup`) wired to the configuration, the hosts and the
//! storage, and its results handed to the printer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::ValueEnum;

use super::status::human_size;
use super::{Error, Outcome};
use crate::backup::restore::{self, Target};
use crate::backup::retention::{self, Candidate, Decision};
use crate::backup::verify::{self, Listed};
use crate::backup::{self, BackupError, Sidecar, Verification};
use crate::exit::Exit;
use crate::placement::{self, PRIMARY};
use crate::printer::Printer;
use crate::state::{self, Writer};
use crate::storage::{self as storage_mod, Storage};
use crate::topology::{Backups, Environment, Topology};
use crate::transport::Remote;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub struct CreateOptions<'a> {
    pub file: &'a Path,
    pub environment: &'a str,
    pub from: Option<&'a str>,
    pub format: Format,
}

pub struct VerifyOptions<'a> {
    pub file: &'a Path,
    pub environment: &'a str,
    pub id: &'a str,
    pub restore_test: bool,
    pub format: Format,
}

pub struct RestoreOptions<'a> {
    pub file: &'a Path,
    pub environment: &'a str,
    pub id: &'a str,
    pub from_environment: Option<&'a str>,
    pub force: bool,
    pub auto_approve: bool,
    pub lock_timeout: Duration,
}

/// The configuration as the roles state records make it (who is primary).
fn current_topology(file: &Path) -> Result<(Topology, tokio::runtime::Runtime), Error> {
    let declared = super::load_topology(file)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Runtime { source })?;
    let store = state::open(&declared.state)?;
    let state = runtime.block_on(store.load())?;
    Ok((crate::roles::current(&declared, &state), runtime))
}

fn environment<'t>(topology: &'t Topology, id: &str) -> Result<&'t Environment, Error> {
    topology.environment(id).ok_or_else(|| Error::UnknownEnvironment {
        id: id.to_owned(),
        known: topology.environments.iter().map(|environment| environment.id.as_str()).collect::<Vec<_>>().join(", "),
    })
}

fn backups_of(environment: &Environment) -> Result<&Backups, Error> {
    environment.backups.as_ref().ok_or_else(|| Error::NoBackups { environment: environment.id.clone() })
}

/// Connects the named hosts once each.
async fn connect(topology: &Topology, names: &[&str]) -> Result<BTreeMap<String, Arc<dyn Remote>>, Error> {
    let mut hosts: BTreeMap<String, Arc<dyn Remote>> = BTreeMap::new();
    for name in names {
        if hosts.contains_key(*name) {
            continue;
        }
        let host = topology.hosts.get(*name).ok_or_else(|| Error::UnknownHost { host: (*name).to_owned() })?;
        let remote = crate::observe::connect(host).await.map_err(Error::Connect)?;
        hosts.insert((*name).to_owned(), Arc::from(remote));
    }
    Ok(hosts)
}

/// The host and directory of an environment's filestore (on its declared
/// primary's host).
fn filestore_place(environment: &Environment) -> Option<(String, PathBuf)> {
    let filestore = environment.filestore.as_ref()?;
    Some((placement::declared_primary(environment).host, filestore.path.clone()))
}

async fn open_storage(
    environment: &Environment,
    hosts: &BTreeMap<String, Arc<dyn Remote>>,
) -> Result<Arc<dyn Storage>, Error> {
    let backups = backups_of(environment)?;
    let primary_host = placement::primary(environment).host;
    let remote = hosts.get(&primary_host).cloned().ok_or_else(|| Error::UnknownHost { host: primary_host })?;
    Ok(Arc::from(storage_mod::open(&backups.storage, remote).await.map_err(BackupError::from)?))
}

/// Runs `work` showing, on a terminal, the bytes `meter` counts and their
/// rate (stderr); elsewhere the command's result line says it all.
async fn with_progress<T>(label: &str, meter: &backup::Meter, work: impl std::future::Future<Output = T>) -> T {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec}) {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_message(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    let watch = async {
        loop {
            bar.set_position(meter.bytes());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let result = tokio::select! {
        result = work => result,
        () = watch => unreachable!("the watch never ends"),
    };
    bar.finish_and_clear();
    result
}

/// Applies the retention rule to the environment's backups: deletes what
/// expired, returns every decision.
async fn apply_retention(
    storage: &dyn Storage,
    environment: &str,
    backups: &Backups,
) -> Result<Vec<Decision>, BackupError> {
    let listed = verify::list(storage, environment).await?;
    let decisions = retention_decisions(&listed, backups);
    for decision in decisions.iter().filter(|decision| !decision.keep) {
        for name in [
            backup::sidecar_name(environment, &decision.id),
            backup::verified_name(environment, &decision.id),
            backup::archive_name(environment, &decision.id),
        ] {
            storage.delete(&name).await?;
        }
    }
    Ok(decisions)
}

pub fn retention_decisions(listed: &[Listed], backups: &Backups) -> Vec<Decision> {
    let candidates: Vec<Candidate> = listed
        .iter()
        .filter_map(|listed| {
            Some(Candidate {
                id: listed.id.clone(),
                at: backup::id_time(&listed.id)?,
                verified: listed.verification.as_ref().is_some_and(|verification| verification.ok),
            })
        })
        .collect();
    retention::decide(&candidates, &backups.retention)
}

/// The backups of an environment with `backups:`, or why they could not be
/// listed.
async fn listing(topology: &Topology, environment: &Environment) -> Result<Vec<Listed>, String> {
    let primary_host = placement::primary(environment).host;
    let hosts = connect(topology, &[primary_host.as_str()]).await.map_err(|error| error.to_string())?;
    let storage = open_storage(environment, &hosts).await.map_err(|error| error.to_string())?;
    verify::list(storage.as_ref(), &environment.id).await.map_err(|error| crate::observe::error_chain(&error))
}

/// What `status` shows of each environment's backups.
pub async fn summaries(topology: &Topology) -> BTreeMap<String, super::status::BackupsStatus> {
    let mut summaries = BTreeMap::new();
    for environment in topology.environments.iter().filter(|environment| environment.backups.is_some()) {
        let summary = match listing(topology, environment).await {
            Err(error) => super::status::BackupsStatus {
                count: 0,
                newest: None,
                newest_verified: None,
                verified_at: None,
                verified_by: None,
                error_message: Some(error),
            },
            Ok(listed) => {
                let verified = listed
                    .iter()
                    .find(|listed| listed.verification.as_ref().is_some_and(|verification| verification.ok));
                super::status::BackupsStatus {
                    count: listed.len(),
                    newest: listed.first().map(|listed| listed.id.clone()),
                    newest_verified: verified.map(|listed| listed.id.clone()),
                    verified_at: verified
                        .and_then(|listed| listed.verification.as_ref())
                        .map(|verification| verification.at.clone()),
                    verified_by: verified
                        .and_then(|listed| listed.verification.as_ref())
                        .map(|verification| verification.kind.clone()),
                    error_message: None,
                }
            }
        };
        summaries.insert(environment.id.clone(), summary);
    }
    summaries
}

/// Drift of class `backups`: each environment with `backups:` whose newest
/// verified backup is older than `max_age` (or that has none, or whose
/// storage cannot be listed).
pub async fn freshness(topology: &Topology, now: SystemTime) -> Vec<super::drift::Item> {
    let mut items = Vec::new();
    for environment in &topology.environments {
        let Some(backups) = &environment.backups else { continue };
        let address = crate::address::Address::new(&environment.id, crate::address::Kind::Backup, "storage");
        let item = |message: String| super::drift::Item {
            class: super::drift::Class::Backups,
            address: Some(address.clone()),
            message,
        };
        let listed = listing(topology, environment).await;
        let max_age = Duration::from_secs(backups.max_age.seconds());
        match listed {
            Err(reason) => items.push(item(format!("cannot list the backups: {reason}"))),
            Ok(listed) => {
                let newest = listed
                    .iter()
                    .find(|listed| listed.verification.as_ref().is_some_and(|verification| verification.ok));
                let age =
                    newest.and_then(|listed| backup::id_time(&listed.id)).and_then(|at| now.duration_since(at).ok());
                match (newest, age) {
                    (Some(_), Some(age)) if age <= max_age => {}
                    (Some(listed), _) => items.push(item(format!(
                        "the newest verified backup ({}) is older than {}",
                        listed.id, backups.max_age
                    ))),
                    (None, _) => items.push(item(format!(
                        "no verified backup ({} backups, none verified): run `pgfleet backup verify`",
                        listed.len()
                    ))),
                }
            }
        }
    }
    items
}

/// What the retention rule would delete after the next `backup create`,
/// and why each backup is kept: shown by `plan`. Environments whose
/// primary's host could not be observed are left out.
pub async fn retention_preview(topology: &Topology, unreachable: &[&str]) -> String {
    let mut text = String::new();
    for environment in &topology.environments {
        let Some(backups) = &environment.backups else { continue };
        let primary_host = placement::primary(environment).host;
        if unreachable.contains(&primary_host.as_str()) {
            continue;
        }
        let listed = listing(topology, environment).await;
        text.push_str(&format!(
            "\nBackups of `{}` (retention {}/{}/{} daily/weekly/monthly):\n",
            environment.id, backups.retention.daily, backups.retention.weekly, backups.retention.monthly
        ));
        match listed {
            Err(reason) => text.push_str(&format!("  cannot list them: {reason}\n")),
            Ok(listed) if listed.is_empty() => text.push_str("  none yet: run `pgfleet backup create`\n"),
            Ok(listed) => {
                for decision in retention_decisions(&listed, backups) {
                    let verb = if decision.keep { "keep  " } else { "delete" };
                    text.push_str(&format!("  {verb} {}  {}\n", decision.id, decision.reason));
                }
            }
        }
    }
    text
}

pub fn create(printer: &Printer, options: &CreateOptions<'_>) -> Outcome {
    let (topology, runtime) = current_topology(options.file)?;
    let environment = environment(&topology, options.environment)?;
    let backups = backups_of(environment)?;
    let member_name = options.from.unwrap_or(PRIMARY);
    let member = placement::member(environment, member_name)
        .ok_or_else(|| Error::UnknownMember { environment: environment.id.clone(), member: member_name.to_owned() })?;
    let filestore = filestore_place(environment);
    let primary_host = placement::primary(environment).host;
    let mut names = vec![member.host.as_str(), primary_host.as_str()];
    if let Some((host, _)) = &filestore {
        names.push(host);
    }
    let hosts = runtime.block_on(connect(&topology, &names))?;
    let storage = runtime.block_on(open_storage(environment, &hosts))?;
    printer.note(&format!(
        "backup: dumping `{}` from {} on host `{}` to {}",
        environment.database.name,
        member_name,
        member.host,
        storage.describe()
    ));
    let source = backup::create::Source {
        environment,
        member_name: member_name.to_owned(),
        member_host: hosts[&member.host].clone(),
        member,
        filestore: filestore.map(|(host, path)| (hosts[&host].clone(), path)),
        meter: backup::Meter::default(),
    };
    let meter = source.meter.clone();
    let started = std::time::Instant::now();
    let work = backup::create::create(source, storage.clone(), backups.format, backups.layout, SystemTime::now());
    let sidecar = runtime.block_on(with_progress("backup", &meter, work)).map_err(Error::from)?;
    let elapsed = started.elapsed();
    let decisions =
        runtime.block_on(apply_retention(storage.as_ref(), &environment.id, backups)).map_err(Error::from)?;
    match options.format {
        Format::Json => {
            let document = serde_json::json!({
                "backup_id": sidecar.manifest.backup_id,
                "environment": environment.id,
                "storage": storage.describe(),
                "archive": backup::archive_name(&environment.id, &sidecar.manifest.backup_id),
                "archive_bytes": sidecar.archive_bytes,
                "archive_sha256": sidecar.archive_sha256,
                "database_size_bytes": sidecar.manifest.database_size_bytes,
                "filestore_size_bytes": sidecar.manifest.filestore_size_bytes,
                "seconds": elapsed.as_secs_f64(),
                "retention": decisions.iter().map(|decision| serde_json::json!({"id": decision.id, "keep": decision.keep, "reason": decision.reason})).collect::<Vec<_>>(),
            });
            printer.out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&document).map_err(Error::serialize("the backup"))?
            ));
        }
        Format::Text => {
            let mut text = format!(
                "Backup {} of `{}` created in {:.1} s: {} archive ({} database, {} filestore in {} files), {} tables.\n",
                sidecar.manifest.backup_id,
                environment.id,
                elapsed.as_secs_f64(),
                human_size(sidecar.archive_bytes),
                human_size(sidecar.manifest.database_size_bytes),
                human_size(sidecar.manifest.filestore_size_bytes),
                sidecar.manifest.pgfleet.filestore_files,
                sidecar.manifest.pgfleet.tables.len(),
            );
            text.push_str(&retention_text(&decisions));
            printer.out(&text);
        }
    }
    Ok(Exit::Ok)
}

fn retention_text(decisions: &[Decision]) -> String {
    let mut text = String::from("Retention:\n");
    for decision in decisions {
        let verb = if decision.keep { "keep  " } else { "delete" };
        text.push_str(&format!("  {verb} {}  {}\n", decision.id, decision.reason));
    }
    text
}

pub fn list(printer: &Printer, file: &Path, id: &str, format: Format) -> Outcome {
    let (topology, runtime) = current_topology(file)?;
    let environment = environment(&topology, id)?;
    let primary_host = placement::primary(environment).host;
    let hosts = runtime.block_on(connect(&topology, &[primary_host.as_str()]))?;
    let storage = runtime.block_on(open_storage(environment, &hosts))?;
    let listed = runtime.block_on(verify::list(storage.as_ref(), &environment.id)).map_err(Error::from)?;
    match format {
        Format::Json => {
            let document: Vec<serde_json::Value> = listed
                .iter()
                .map(|listed| {
                    serde_json::json!({
                        "id": listed.id,
                        "created_at": listed.sidecar.manifest.created_at,
                        "archive_bytes": listed.sidecar.archive_bytes,
                        "database_size_bytes": listed.sidecar.manifest.database_size_bytes,
                        "filestore_size_bytes": listed.sidecar.manifest.filestore_size_bytes,
                        "format": listed.sidecar.manifest.pgfleet.format,
                        "layout": listed.sidecar.manifest.pgfleet.layout,
                        "source_member": listed.sidecar.manifest.pgfleet.source_member,
                        "verified": listed.verification,
                        "storage": storage.describe(),
                    })
                })
                .collect();
            printer.out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&document).map_err(Error::serialize("the backups"))?
            ));
        }
        Format::Text => {
            let mut text = format!("Backups of `{}` in {}:\n", environment.id, storage.describe());
            if listed.is_empty() {
                text.push_str("  none\n");
            }
            for listed in &listed {
                let verified = match &listed.verification {
                    Some(verification) => format!(
                        "{} {} {}",
                        if verification.ok { "verified" } else { "FAILED" },
                        verification.kind,
                        verification.at
                    ),
                    None => "not verified".into(),
                };
                text.push_str(&format!(
                    "  {}  {}  archive {}  database {}  filestore {}  {}\n",
                    listed.id,
                    listed.sidecar.manifest.created_at,
                    human_size(listed.sidecar.archive_bytes),
                    human_size(listed.sidecar.manifest.database_size_bytes),
                    human_size(listed.sidecar.manifest.filestore_size_bytes),
                    verified
                ));
            }
            printer.out(&text);
        }
    }
    Ok(Exit::Ok)
}

fn target<'a>(environment: &'a Environment, hosts: &BTreeMap<String, Arc<dyn Remote>>) -> Target<'a> {
    let primary = placement::primary(environment);
    Target {
        environment,
        primary_host: hosts[&primary.host].clone(),
        primary,
        filestore: filestore_place(environment).map(|(host, path)| (hosts[&host].clone(), path)),
    }
}

fn target_hosts(environment: &Environment) -> Vec<String> {
    let mut names = vec![placement::primary(environment).host];
    if let Some(pooler) = placement::pooler(environment, PRIMARY) {
        names.push(pooler.host);
    }
    if let Some((host, _)) = filestore_place(environment) {
        names.push(host);
    }
    if let Some(odoo) = &environment.odoo {
        names.push(odoo.host.clone());
    }
    names
}

pub fn verify(printer: &Printer, options: &VerifyOptions<'_>) -> Outcome {
    let (topology, runtime) = current_topology(options.file)?;
    let environment = environment(&topology, options.environment)?;
    let names = target_hosts(environment);
    let hosts = runtime.block_on(connect(&topology, &names.iter().map(String::as_str).collect::<Vec<_>>()))?;
    let storage = runtime.block_on(open_storage(environment, &hosts))?;
    let id = options.id;
    let result: Result<String, BackupError> = runtime.block_on(async {
        let verified = verify::verify(storage.clone(), &environment.id, id).await?;
        let mut detail = format!(
            "{} members, {} read, every checksum as the manifest says",
            verified.members,
            human_size(verified.bytes)
        );
        if options.restore_test {
            let target = target(environment, &hosts);
            let meter = backup::Meter::default();
            let work = restore::load(storage.clone(), &environment.id, id, &target, "verify", &meter);
            let loaded = with_progress("restore test", &meter, work).await?;
            let indexes = restore::amcheck(&target, &loaded).await;
            restore::drop_loaded(&target, &loaded).await?;
            detail = format!(
                "{detail}; restored into {} and checked: {}; {}; dropped",
                loaded.database, loaded.checked, indexes?
            );
        }
        Ok(detail)
    });
    let kind = if options.restore_test { "restore-test" } else { "checksums" };
    let verification = Verification {
        at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        kind: kind.into(),
        ok: result.is_ok(),
        detail: match &result {
            Ok(detail) => detail.clone(),
            Err(error) => crate::observe::error_chain(error),
        },
    };
    // A backup that is not there has nothing to record a result beside.
    if !matches!(result, Err(BackupError::Unknown { .. })) {
        runtime.block_on(verify::record(storage.as_ref(), &environment.id, id, &verification)).map_err(Error::from)?;
    }
    let detail = result.map_err(Error::from)?;
    match options.format {
        Format::Json => printer.out(&format!(
            "{}\n",
            serde_json::to_string_pretty(
                &serde_json::json!({"id": id, "environment": environment.id, "verification": verification})
            )
            .map_err(Error::serialize("the verification"))?
        )),
        Format::Text => printer.out(&format!("Backup {id} of `{}` verified ({kind}): {detail}.\n", environment.id)),
    }
    Ok(Exit::Ok)
}

fn restore_plan(source: &str, target: &Target<'_>, sidecar: &Sidecar, id: &str, stamp: &str) -> String {
    let environment = target.environment;
    let live = &environment.database.name;
    let scratch = restore::scratch_database(live, id, "restore");
    let mut text = format!("pgfleet will restore backup {id} of `{source}` into `{}`:\n", environment.id);
    let mut step = 0;
    let mut line = |text: &mut String, what: String| {
        step += 1;
        text.push_str(&format!("  {step:>2}. {what}\n"));
    };
    line(&mut text, "read the archive, checking every member's sha256 against the manifest as it streams (a mismatch stops here; nothing changes)".into());
    line(
        &mut text,
        format!(
            "restore the {} dump into a new database `{scratch}` on `{}` while the application runs ({})",
            sidecar.manifest.pgfleet.format,
            target.primary.host,
            if sidecar.manifest.pgfleet.format == "custom" {
                "pg_restore -j 4"
            } else {
                "psql -v ON_ERROR_STOP=1 --single-transaction"
            }
        ),
    );
    if let Some((_, path)) = &target.filestore {
        line(
            &mut text,
            format!(
                "restore the filestore beside the live one ({}_restore_{})",
                path.display(),
                id.to_ascii_lowercase()
            ),
        );
    }
    line(
        &mut text,
        format!(
            "check {} tables' rows against the manifest, and every attachment's file and sha1",
            sidecar.manifest.pgfleet.tables.len()
        ),
    );
    let pooled = placement::pooler(environment, PRIMARY).is_some();
    line(
        &mut text,
        format!(
            "{}rename `{live}` to `{live}_pre_{stamp}` and `{scratch}` to `{live}`{}{}",
            if pooled { "PAUSE the pooler; " } else { "end the live database's sessions; " },
            if target.filestore.is_some() { "; swap the filestore directories" } else { "" },
            if pooled { "; RESUME" } else { "" }
        ),
    );
    if environment.odoo.as_ref().is_some_and(|odoo| odoo.restart.is_some()) {
        line(&mut text, "restart Odoo (odoo.restart), so it reads the restored database".into());
    }
    if !environment.replicas.is_empty() {
        let names: Vec<&str> = environment.replicas.iter().map(|replica| replica.name.as_str()).collect();
        text.push_str(&format!("  Replicas {} follow by themselves (physical replication).\n", names.join(", ")));
    }
    text.push_str(&format!(
        "  Rollback: rename `{live}` away and `{live}_pre_{stamp}` back (the previous copy is kept until you drop it).\n"
    ));
    text
}

pub fn restore(printer: &Printer, options: &RestoreOptions<'_>) -> Outcome {
    let (topology, runtime) = current_topology(options.file)?;
    let target_environment = environment(&topology, options.environment)?;
    let source_id = options.from_environment.unwrap_or(options.environment);
    let source_environment = environment(&topology, source_id)?;
    if target_environment.protected && source_id != target_environment.id && !options.force {
        return Err(Error::Protected { environment: target_environment.id.clone(), from: source_id.to_owned() });
    }
    let mut names = target_hosts(target_environment);
    names.push(placement::primary(source_environment).host);
    let hosts = runtime.block_on(connect(&topology, &names.iter().map(String::as_str).collect::<Vec<_>>()))?;
    let storage = runtime.block_on(open_storage(source_environment, &hosts))?;
    let sidecar = runtime.block_on(verify::find(storage.as_ref(), source_id, options.id)).map_err(Error::from)?;
    let target = target(target_environment, &hosts);
    let stamp = backup::new_id(SystemTime::now()).to_ascii_lowercase();
    printer.out(&restore_plan(source_id, &target, &sidecar, options.id, &stamp));
    if !options.auto_approve && !super::apply::confirm(printer) {
        printer.note("Cancelled; nothing was changed.");
        return Ok(Exit::Error);
    }

    // Nothing else changes the environment meanwhile.
    let store = state::open(&topology.state)?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let environments = vec![target_environment.id.clone()];
    let (writer, _state) = runtime.block_on(Writer::lock(&*store, &environments, &command, options.lock_timeout))?;

    let boxed = super::apply::boxed(&hosts);
    let address = crate::address::Address::new(
        &target_environment.id,
        crate::address::Kind::Database,
        &target_environment.database.name,
    );
    let context = crate::action::Context {
        topology: &topology,
        environment: target_environment,
        address: &address,
        owned: None,
        hosts: &boxed,
    };
    let started = std::time::Instant::now();
    let result = runtime.block_on(async {
        let meter = backup::Meter::default();
        let work = restore::load(storage.clone(), source_id, options.id, &target, "restore", &meter);
        let loaded = with_progress("restore", &meter, work).await?;
        printer.note(&format!("backup: restored into `{}` and checked: {}", loaded.database, loaded.checked));
        let swapped = restore::swap(&context, &target, &loaded, &stamp).await;
        if swapped.is_err() {
            let _ = restore::drop_loaded(&target, &loaded).await;
        }
        let swapped = swapped?;
        // Odoo caches what it read of the database it had: it restarts
        // onto the restored one.
        if target_environment.odoo.as_ref().is_some_and(|odoo| odoo.restart.is_some()) {
            crate::action::Action::RestartOdoo
                .execute(&context)
                .await
                .map_err(|error| BackupError::Io(error.to_string()))?;
        }
        Ok::<_, BackupError>((loaded, swapped))
    });
    drop(writer);
    let (loaded, swapped) = result.map_err(Error::from)?;
    printer.out(&format!(
        "Restored backup {} of `{source_id}` into `{}` in {:.1} s ({}). Downtime (pooler paused): {} ms. \
         The previous database is `{}`{}.\n",
        options.id,
        target_environment.id,
        started.elapsed().as_secs_f64(),
        loaded.checked,
        swapped.downtime.as_millis(),
        swapped.previous_database,
        swapped
            .previous_filestore
            .as_ref()
            .map(|path| format!(", the previous filestore {}", path.display()))
            .unwrap_or_default()
    ));
    Ok(Exit::Ok)
}
