//! `pgfleet graph`: the resource dependency graph as DOT.

use std::path::Path;

use super::{Outcome, load_topology};
use crate::exit::Exit;
use crate::graph::ResourceGraph;
use crate::printer::Printer;

pub fn run(printer: &Printer, file: &Path) -> Outcome {
    let topology = load_topology(file)?;
    printer.out(&ResourceGraph::build(&topology).to_dot());
    Ok(Exit::Ok)
}
