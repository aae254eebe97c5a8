//! `pgfleet validate`: load and resolve, no network.

use std::path::Path;

use super::{Outcome, load_topology};
use crate::exit::Exit;
use crate::graph::ResourceGraph;
use crate::printer::Printer;

pub fn run(printer: &Printer, file: &Path) -> Outcome {
    let topology = load_topology(file)?;
    let replicas: usize = topology.environments.iter().map(|environment| environment.replicas.len()).sum();
    let resources = ResourceGraph::build(&topology).len();
    printer.out(&format!(
        "{} is valid: {} across {}, {}, {}.",
        file.display(),
        count(topology.environments.len(), "environment"),
        count(topology.hosts.len(), "host"),
        count(replicas, "replica"),
        count(resources, "resource"),
    ));
    Ok(Exit::Ok)
}

fn count(number: usize, noun: &str) -> String {
    if number == 1 { format!("1 {noun}") } else { format!("{number} {noun}s") }
}
