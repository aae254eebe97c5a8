//! `pgfleet schema`: the JSON Schema of the configuration file.

use super::Outcome;
use crate::cli::Exit;
use crate::printer::Printer;

/// The schema as committed in `schemas/pgfleet.schema.json`.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(crate::Spec);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

pub fn run(printer: &Printer) -> Outcome {
    printer.out(&schema_json());
    Ok(Exit::Ok)
}
