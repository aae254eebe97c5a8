//! The `external` runtime: a primary pgfleet does not run (a managed
//! service, someone else's container). pgfleet reaches it by SQL only, as
//! `postgres` over the server's Unix socket on its host
//! (`/var/run/postgresql`, where Debian and the official images put it),
//! and manages only what SQL can: roles, the database, slots, and settings
//! a reload applies. It cannot create, start, restart or reconfigure the
//! server, nor edit its pg_hba.conf: plan refuses a change that needs one,
//! saying what to do by hand.
//!
//! It is assumed to run; SQL tells when it does not.

use std::path::{Path, PathBuf};

use super::{
    BackupSource, Capabilities, ClusterLayout, Member, PgCtl, PoolerLayout, Runtime, socket_in, unix_socket_bridge,
};
use crate::transport::shell_quote;

pub struct External;

/// A command that fails, saying why: pgfleet never runs one of these
/// (plan refuses first), but should one be reached it must not act.
fn refuse(what: &str) -> String {
    let reason = format!("pgfleet does not {what} with `runtime: external`");
    format!("echo {} >&2; exit 1", shell_quote(&reason))
}

impl Runtime for External {
    fn name(&self) -> &'static str {
        "external"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            observe: true,
            initialise: false,
            manage_process: false,
            replicas: false,
            poolers: false,
            edit_hba: false,
        }
    }

    fn refusal(&self, need: super::Need) -> String {
        format!(
            "pgfleet does not {} with `runtime: external` (a server it does not run): do it where the server is run",
            need.describe()
        )
    }

    /// Only pgfleet's home matters: the generated passwords it keeps on
    /// the primary's host.
    fn cluster_layout(&self, member: Member<'_>, data_dir: &Path, version: u32) -> ClusterLayout {
        ClusterLayout { socket_dir: None, ..PgCtl.cluster_layout(member, data_dir, version) }
    }

    fn pooler_layout(&self, member: Member<'_>, home: &Path, port: u16) -> PoolerLayout {
        PgCtl.pooler_layout(member, home, port)
    }

    /// The server's programs need not be on this host.
    fn binaries_facts(&self, _version: u32) -> String {
        String::new()
    }

    fn running_facts(&self, key: &str, _layout: &ClusterLayout) -> String {
        format!("echo \"{key}.running=1\"\n")
    }

    fn controldata(&self, version: u32) -> PathBuf {
        PgCtl.controldata(version)
    }

    fn initialise(&self, _layout: &ClusterLayout, _port: u16, _password_file: &Path) -> String {
        refuse("create a cluster")
    }

    fn base_backup(&self, _layout: &ClusterLayout, _port: u16, _source: BackupSource<'_>) -> String {
        refuse("build a replica")
    }

    fn remove(&self, _layout: &ClusterLayout) -> String {
        refuse("remove a cluster")
    }

    fn admin_bridge(&self, _layout: &ClusterLayout, port: u16) -> Option<String> {
        Some(unix_socket_bridge(&socket_in(Path::new(super::DEFAULT_SOCKET_DIR), port)))
    }

    fn is_running(&self, _layout: &ClusterLayout) -> String {
        "true".into()
    }

    fn start(&self, _layout: &ClusterLayout) -> String {
        refuse("start the server")
    }

    fn stop(&self, _layout: &ClusterLayout) -> String {
        refuse("stop the server")
    }

    fn restart(&self, _layout: &ClusterLayout) -> String {
        refuse("restart the server")
    }

    fn reload(&self, _layout: &ClusterLayout) -> String {
        refuse("signal the server")
    }

    fn rewind(&self, _layout: &ClusterLayout, _source: &str) -> Option<String> {
        None
    }

    fn promote(&self, _layout: &ClusterLayout) -> String {
        refuse("promote a server")
    }

    fn pooler_is_running(&self, layout: &PoolerLayout) -> String {
        PgCtl.pooler_is_running(layout)
    }

    fn pooler_start(&self, _layout: &PoolerLayout) -> String {
        refuse("run PgBouncer")
    }

    fn pooler_reload(&self, _layout: &PoolerLayout) -> String {
        refuse("run PgBouncer")
    }

    fn pooler_stop(&self, _layout: &PoolerLayout) -> String {
        refuse("run PgBouncer")
    }
}
