//! pgfleet: declarative reconciliation of PostgreSQL high-availability
//! topologies. The pipeline is load → resolve → (observe → plan → apply);
//! see DESIGN.md. This crate root only wires the modules together.

#![forbid(unsafe_code)]
#![warn(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

pub mod action;
pub mod address;
pub mod apply;
pub mod cli;
pub mod desired;
pub mod exit;
pub mod graph;
pub mod health;
pub mod observe;
pub mod ops;
pub mod plan;
pub mod printer;
pub mod scram;
pub mod secrets;
pub mod spec;
pub mod sql;
pub mod state;
pub mod suggest;
pub mod topology;
pub mod transport;

pub use spec::Spec;
pub use topology::Topology;
