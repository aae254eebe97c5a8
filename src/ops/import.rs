//! `pgfleet import`: record, as pgfleet's, what of an environment already
//! exists, so that plan and apply treat it as their own (and remove it when
//! it leaves the configuration). Observes read-only and writes only state.

use std::path::Path;
use std::time::Duration;

use super::{Error, Outcome};
use crate::config::load;
use crate::exit::Exit;
use crate::observe;
use crate::printer::Printer;
use crate::state::{self, Writer};

pub fn run(printer: &Printer, file: &Path, environment: &str, lock_timeout: Duration) -> Outcome {
    let document = load::load(file)?;
    let topology = document.resolve()?;
    let Some(found) = topology.environment(environment) else {
        let known: Vec<&str> = topology.environments.iter().map(|environment| environment.id.as_str()).collect();
        return Err(Error::UnknownEnvironment { id: environment.to_owned(), known: known.join(", ") });
    };
    let store = state::open(&topology.state)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|source| Error::Runtime { source })?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let (mut writer, mut state) =
        runtime.block_on(Writer::lock(&*store, &[environment.to_owned()], &command, lock_timeout))?;
    let options = observe::Options { passwords: false, ..observe::Options::default() };
    let observed = runtime.block_on(observe::observe_with(&topology, &options));
    if let Some((host, reason, _)) = observed.unreachable().first() {
        return Err(Error::Unreachable {
            hosts: (*host).to_owned(),
            first: (*reason).to_owned(),
            help: "import records nothing while a host of the configuration cannot be observed".into(),
        });
    }
    let existing = crate::plan::existing(&observed, found);
    let mut recorded = Vec::new();
    for address in &existing {
        if state.owns(address) {
            continue;
        }
        if let Some(owned) = crate::apply::ownership(&topology, address) {
            state.owned.insert(address.clone(), owned);
            recorded.push(address);
        }
    }
    if !recorded.is_empty() {
        runtime.block_on(writer.save(&mut state))?;
    }
    for address in &existing {
        let how = if recorded.contains(&address) { "imported" } else { "already pgfleet's" };
        printer.out(&format!("  {address}: {how}\n"));
    }
    printer.note(&format!(
        "Imported {} resource(s) of `{environment}` into {}; nothing was written to any host. \
         Run `pgfleet plan` to see what is still missing.",
        recorded.len(),
        store.location(),
    ));
    Ok(Exit::Ok)
}
