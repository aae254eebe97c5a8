//! What the hosts should hold, rendered from the topology: each member's
//! managed settings, the hba rules, PgBouncer's files, a replica's
//! passfile, and the merging of pgfleet's lines into files it shares with
//! the user. Plan compares these with observations; apply writes them.
//! Pure: no I/O. Where files live is `placement`'s and `runtime`'s.

pub mod filestore;
mod hba;
mod merge;
pub mod odoo;
mod passfile;
mod pgbouncer;
mod settings;
pub mod tunnel;

pub use hba::{HBA_BEGIN, HBA_END, HbaLine, hba_block, hba_lines, is_loopback, replication_source};
pub use merge::{merge_auto_conf, replace_hba_block};
pub use passfile::passfile;
pub use pgbouncer::{POOLER_RESTART_KEYS, SESSION_POOL_SIZE, pgbouncer_ini, userlist, userlist_roles};
pub use settings::{primary_conninfo, primary_settings, replica_settings, upstream};
