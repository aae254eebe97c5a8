//! pgfleet: declarative reconciliation of PostgreSQL high-availability
//! topologies. This crate root only wires the modules together; the map,
//! with what each module must not do, is docs/ARCHITECTURE.md.
//!
//! - `spec` reads the YAML; `topology` is what it validates into.
//! - `inventory` lists every resource once; `placement` says where each
//!   member and pooler lives; `runtime` says how its processes run.
//! - `observe` reads the hosts; `plan` (pure) diffs; `apply` schedules the
//!   `action`s; `state` remembers what pgfleet owns.
//! - `ops` holds one module per command; `cli` parses; `printer` writes.

pub mod action;
pub mod address;
pub mod apply;
pub mod backup;
pub mod cli;
pub mod config;
pub mod desired;
pub mod exit;
pub mod graph;
pub mod health;
pub mod inventory;
pub mod observe;
pub mod operation;
pub mod ops;
pub mod placement;
pub mod plan;
pub mod printer;
pub mod roles;
pub mod runtime;
pub mod scram;
pub mod secrets;
pub mod spec;
pub mod sql;
pub mod state;
pub mod storage;
pub mod suggest;
pub mod supervise;
pub mod topology;
pub mod transport;

pub use spec::Spec;
pub use topology::Topology;
