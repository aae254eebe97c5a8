//! `pgfleet plan`: observe the hosts, plan, print; optionally save the plan
//! for `apply FILE`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Error, Outcome};
use crate::address::Address;
use crate::config::load;
use crate::exit::Exit;
use crate::plan::{self, Plan, render};
use crate::printer::Printer;
use crate::state;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

pub struct Options<'a> {
    pub file: &'a Path,
    pub format: Format,
    pub out: Option<&'a Path>,
    pub detailed_exitcode: bool,
    pub targets: &'a [Address],
    pub environments: &'a [String],
    pub parallelism: usize,
    pub replace: &'a [Address],
    pub force: bool,
}

/// A plan saved with `--out`: the configuration it was made from (which
/// holds secret references, never secrets) and the plan itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format_version: u32,
    pub pgfleet_version: String,
    pub config_file: PathBuf,
    pub config_sha256: String,
    pub config: String,
    pub plan: Plan,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

pub fn run(printer: &Printer, options: &Options<'_>) -> Outcome {
    let document = load::load(options.file)?;
    let mut topology = super::only(document.resolve()?, options.environments)?;
    super::apply::check_addresses(&topology, options.targets, options.replace)?;
    plan::check_static(&topology).map_err(Error::refused)?;
    let store = state::open(&topology.state)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Runtime { source })?;
    let state = runtime.block_on(store.load())?;
    topology = crate::roles::current(&topology, &state);
    let departed = super::with_departed_hosts(&mut topology, &state);
    runtime.block_on(super::check_departed_hosts(&topology, &state, &departed))?;
    let observing = crate::observe::Options { parallelism: options.parallelism, ..crate::observe::Options::default() };
    let observed = runtime.block_on(crate::observe::observe_with(&topology, &observing));
    let request =
        plan::Request { targets: options.targets.to_vec(), replace: options.replace.to_vec(), force: options.force };
    let mut plan = plan::plan_with(&topology, &observed, &state, &request).map_err(Error::refused)?;
    plan.environments = options.environments.to_vec();
    for note in &plan.notes {
        printer.note(note);
    }

    printer.out(&match options.format {
        Format::Text => render::text(&plan, printer.color_out()),
        Format::Json => render::json(&plan),
        Format::Markdown => render::markdown(&plan),
    });
    if options.format == Format::Text {
        let unreachable: Vec<&str> = plan.unreachable.iter().map(|host| host.host.as_str()).collect();
        let retention = runtime.block_on(super::backup::retention_preview(&topology, &unreachable));
        if !retention.is_empty() {
            printer.out(&retention);
        }
    }

    if let Some(out) = options.out {
        let saved = SavedPlan {
            format_version: plan::FORMAT_VERSION,
            pgfleet_version: env!("CARGO_PKG_VERSION").to_owned(),
            config_file: options.file.to_owned(),
            config_sha256: sha256_hex(document.source.text().as_bytes()),
            config: document.source.text().to_owned(),
            plan: plan.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&saved).map_err(Error::serialize("the plan to save"))?;
        write_private(out, &bytes).map_err(|source| Error::WritePlan { path: out.display().to_string(), source })?;
        printer.note(&format!(
            "Saved the plan to {}; run `pgfleet apply {}` to carry it out.",
            out.display(),
            out.display()
        ));
    }

    if !plan.unreachable.is_empty() {
        let hosts: Vec<String> = plan.unreachable.iter().map(|host| host.host.clone()).collect();
        let first = &plan.unreachable[0];
        let help = match &first.help {
            Some(help) => format!("{help}; the plan above covers only what could be observed"),
            None => "the plan above covers only what could be observed; fix access to the host and plan again".into(),
        };
        return Err(Error::Unreachable { hosts: hosts.join(", "), first: first.reason.clone(), help });
    }
    Ok(if options.detailed_exitcode && !plan.is_empty() { Exit::Changes } else { Exit::Ok })
}

/// Writes a file only its owner can read, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let directory = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let temporary =
        directory.join(format!(".{}.tmp", path.file_name().and_then(|name| name.to_str()).unwrap_or("plan")));
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}
