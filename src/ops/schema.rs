//! `pgfleet schema`: the JSON Schema of the configuration file.

use super::{Error, Outcome};
use crate::exit::Exit;
use crate::printer::Printer;

/// The schema as committed in `schemas/pgfleet.schema.json`.
pub fn schema_json() -> Result<String, Error> {
    let schema = schemars::schema_for!(crate::Spec);
    let mut text = serde_json::to_string_pretty(&schema).map_err(Error::serialize("the configuration's schema"))?;
    text.push('\n');
    Ok(text)
}

pub fn run(printer: &Printer) -> Outcome {
    printer.out(&schema_json()?);
    Ok(Exit::Ok)
}
