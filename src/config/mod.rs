//! config: from the text of a configuration file to a validated
//! `Topology` — loading with located diagnostics (`load`, `diagnostic`,
//! `path`) and the rules of SPEC.md (`resolve`). Reads the `spec` types and
//! builds the `topology`; nothing here touches the network.

pub mod diagnostic;
pub mod load;
pub mod path;
pub mod resolve;
