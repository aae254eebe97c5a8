//! Runtimes the configuration may name that pgfleet cannot drive yet
//! (`docker`). Their capabilities are all off, so
//! plan refuses an environment that uses one before anything runs; their
//! commands fail with the same reason should one ever be reached.

use std::path::{Path, PathBuf};

use super::{BackupSource, Capabilities, ClusterLayout, PoolerLayout, Runtime};
use crate::transport::shell_quote;

pub struct Unsupported {
    name: &'static str,
}

pub const DOCKER: Unsupported = Unsupported { name: "docker" };

impl Unsupported {
    fn refuse(&self) -> String {
        let reason = format!("pgfleet cannot drive `runtime: {}` yet", self.name);
        format!("echo {} >&2; exit 1", shell_quote(&reason))
    }
}

impl Runtime for Unsupported {
    fn name(&self) -> &'static str {
        self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            observe: false,
            initialise: false,
            manage_process: false,
            replicas: false,
            poolers: false,
            edit_hba: false,
        }
    }

    /// Laid out as pgfleet lays out its own clusters, so observation can
    /// look; nothing is ever started there.
    fn cluster_layout(&self, data_dir: &Path, version: u32) -> ClusterLayout {
        super::PgCtl.cluster_layout(data_dir, version)
    }

    fn pooler_layout(&self, home: &Path, port: u16) -> PoolerLayout {
        super::PgCtl.pooler_layout(home, port)
    }

    fn binaries_facts(&self, version: u32) -> String {
        super::PgCtl.binaries_facts(version)
    }

    fn running_facts(&self, key: &str, layout: &ClusterLayout) -> String {
        super::PgCtl.running_facts(key, layout)
    }

    fn controldata(&self, version: u32) -> PathBuf {
        super::PgCtl.controldata(version)
    }

    fn initialise(&self, _layout: &ClusterLayout, _port: u16, _password_file: &Path) -> String {
        self.refuse()
    }

    fn base_backup(&self, _layout: &ClusterLayout, _port: u16, _source: BackupSource<'_>) -> String {
        self.refuse()
    }

    fn remove(&self, _layout: &ClusterLayout) -> String {
        self.refuse()
    }

    fn admin_bridge(&self, _layout: &ClusterLayout, _port: u16) -> Option<String> {
        None
    }

    fn is_running(&self, layout: &ClusterLayout) -> String {
        super::PgCtl.is_running(layout)
    }

    fn start(&self, _layout: &ClusterLayout) -> String {
        self.refuse()
    }

    fn stop(&self, _layout: &ClusterLayout) -> String {
        self.refuse()
    }

    fn restart(&self, _layout: &ClusterLayout) -> String {
        self.refuse()
    }

    fn reload(&self, _layout: &ClusterLayout) -> String {
        self.refuse()
    }

    fn promote(&self, _layout: &ClusterLayout) -> String {
        self.refuse()
    }

    fn pooler_is_running(&self, layout: &PoolerLayout) -> String {
        super::PgCtl.pooler_is_running(layout)
    }

    fn pooler_start(&self, _layout: &PoolerLayout) -> String {
        self.refuse()
    }

    fn pooler_reload(&self, _layout: &PoolerLayout) -> String {
        self.refuse()
    }

    fn pooler_stop(&self, _layout: &PoolerLayout) -> String {
        self.refuse()
    }
}
