//! runtime: how a PostgreSQL cluster and a PgBouncer are run on a host.
//!
//! One trait, `Runtime`, says where a member's files live (its layout),
//! what script fragment reports its facts, and the shell commands that
//! populate a data directory, start, stop, reload, restart and promote it —
//! and what it can do at all (`Capabilities`), so that plan refuses what a
//! runtime cannot do before anything runs.
//!
//! Runtimes produce commands; they never run them (actions do, through the
//! transport). Nothing outside this folder knows which runtime is in use
//! or spells its programs and paths.

mod debian;
mod docker;
mod external;
mod pg_ctl;

use std::path::{Path, PathBuf};

use crate::spec;

pub use debian::Debian;
pub use docker::Docker;
pub use external::External;
pub use pg_ctl::PgCtl;

/// Which member (or the pooler in front of it) a layout is for: runtimes
/// that name what they run (a container per member) need it.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub environment: &'a str,
    /// `primary` or the replica's name.
    pub name: &'a str,
    /// The container image, for runtimes that run one.
    pub image: &'a str,
}

impl Member<'_> {
    pub fn is_primary(&self) -> bool {
        self.name == crate::placement::PRIMARY
    }
}

/// Where a cluster's files are, as its runtime lays them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterLayout {
    /// The PostgreSQL major the cluster runs.
    pub version: u32,
    pub data_dir: PathBuf,
    /// Where the cluster's own configuration files live (the data
    /// directory, or a runtime's configuration directory).
    pub conf_dir: PathBuf,
    /// pgfleet's own files beside the cluster: generated passwords, the
    /// replica's passfile, the server log, the poolers' files.
    pub home: PathBuf,
    /// The file `ALTER SYSTEM` writes (and pgfleet, while stopped).
    pub auto_conf: PathBuf,
    pub hba_file: PathBuf,
    pub log_file: PathBuf,
    /// The directory of the PostgreSQL programs of this major.
    pub bin_dir: PathBuf,
    /// `unix_socket_directories`, when the runtime manages it (clusters
    /// sharing a port on one machine must not share a socket).
    pub socket_dir: Option<PathBuf>,
    /// What the runtime calls the running server (a container's name);
    /// empty when it names nothing.
    pub service: String,
    /// The image the server runs in, for runtimes that run one.
    pub image: String,
}

impl ClusterLayout {
    /// The superuser password pgfleet generated for a cluster it created.
    pub fn superuser_password_file(&self) -> PathBuf {
        self.home.join("superuser.password")
    }

    /// A replica's libpq passfile (`primary_conninfo` points at it).
    pub fn passfile(&self) -> PathBuf {
        self.home.join("passfile")
    }

    /// A generated role password, kept on the primary's host.
    pub fn role_password_file(&self, role: &str) -> PathBuf {
        self.home.join(format!("role-{role}.password"))
    }

    /// A PostgreSQL program of this cluster's major.
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

/// Where a pooler's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolerLayout {
    pub home: PathBuf,
    pub ini: PathBuf,
    pub userlist: PathBuf,
    pub pid_file: PathBuf,
    pub log_file: PathBuf,
    /// What the runtime calls the running pooler (a container's name).
    pub service: String,
    pub image: String,
}

/// What a runtime can do. Plan checks these against what an environment
/// needs and refuses, with the reason, what a runtime cannot do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Find and log in to a cluster at all (observe it, manage it by SQL).
    pub observe: bool,
    /// Create a primary's data directory.
    pub initialise: bool,
    /// Start, stop, reload and restart clusters.
    pub manage_process: bool,
    /// Build and run streaming replicas.
    pub replicas: bool,
    /// Run PgBouncer.
    pub poolers: bool,
    /// Write pgfleet's block into the cluster's pg_hba.conf.
    pub edit_hba: bool,
}

/// What an environment asks of its runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Observe,
    Initialise,
    ManageProcess,
    Replicas,
    Poolers,
    EditHba,
}

impl Need {
    pub fn describe(self) -> &'static str {
        match self {
            Need::Observe => "manage a cluster",
            Need::Initialise => "create the primary's data directory",
            Need::ManageProcess => "start, stop and reconfigure PostgreSQL",
            Need::Replicas => "build streaming replicas",
            Need::Poolers => "run PgBouncer",
            Need::EditHba => "edit pg_hba.conf",
        }
    }
}

impl Capabilities {
    pub fn allows(self, need: Need) -> bool {
        match need {
            Need::Observe => self.observe,
            Need::Initialise => self.initialise,
            Need::ManageProcess => self.manage_process,
            Need::Replicas => self.replicas,
            Need::Poolers => self.poolers,
            Need::EditHba => self.edit_hba,
        }
    }
}

/// Where a base backup copies from.
#[derive(Debug, Clone, Copy)]
pub struct BackupSource<'a> {
    pub address: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub slot: &'a str,
}

/// How PostgreSQL and PgBouncer run on a host.
///
/// Every command is a POSIX shell script run as the service user; paths in
/// them are quoted here. A script exits 0 on success; the `is_running`
/// scripts exit 0 when the process runs and non-zero otherwise.
pub trait Runtime: Send + Sync {
    /// The name users write in `runtime:`.
    fn name(&self) -> &'static str;

    fn capabilities(&self) -> Capabilities;

    /// Why this runtime cannot serve a need, and what to do instead.
    fn refusal(&self, need: Need) -> String {
        format!("pgfleet cannot {} with `runtime: {}`", need.describe(), self.name())
    }

    fn cluster_layout(&self, member: Member<'_>, data_dir: &Path, version: u32) -> ClusterLayout;

    /// The pooler in front of `member`, kept beside the cluster whose
    /// `home` is given, on `port`.
    fn pooler_layout(&self, member: Member<'_>, home: &Path, port: u16) -> PoolerLayout;

    /// Prints `pg_bin=DIR` and `pg_version=…` (the `postgres --version`
    /// line) when the programs of `version` are installed.
    fn binaries_facts(&self, version: u32) -> String;

    /// Prints `KEY.running=1` when the cluster's postmaster runs and is
    /// ready, with `$d` holding the data directory.
    fn running_facts(&self, key: &str, layout: &ClusterLayout) -> String;

    /// The program that prints a data directory's control data.
    fn controldata(&self, version: u32) -> PathBuf;

    /// Initialises `layout.data_dir` for a server on `port`, with the
    /// superuser password read from `password_file`. Idempotent, and a run
    /// killed half-way leaves nothing a rerun trips over.
    fn initialise(&self, layout: &ClusterLayout, port: u16, password_file: &Path) -> String;

    /// Copies `source` into `layout.data_dir` for a server on `port` (built
    /// beside it, renamed into place when complete), the password coming
    /// from the passfile. Idempotent like `initialise`.
    fn base_backup(&self, layout: &ClusterLayout, port: u16, source: BackupSource<'_>) -> String;

    /// Removes a stopped cluster: its data directory and whatever the
    /// runtime registered for it (not pgfleet's home beside it).
    fn remove(&self, layout: &ClusterLayout) -> String;

    /// Prints the bytes a running `base_backup` has copied so far (nothing
    /// before it has started).
    fn base_backup_progress(&self, layout: &ClusterLayout) -> String {
        let building = with_suffix(&layout.data_dir, ".pgfleet-basebackup");
        format!("du -sb {} 2>/dev/null | cut -f1; true", crate::transport::shell_quote(&building.to_string_lossy()))
    }

    /// A command whose stdin and stdout are a connection to the server's
    /// Unix socket, where the service user logs in as `postgres` by peer
    /// authentication: how pgfleet reaches a cluster it did not create
    /// (and so holds no password for). `None` when the runtime has none.
    fn admin_bridge(&self, layout: &ClusterLayout, port: u16) -> Option<String>;

    /// A command that runs the PostgreSQL client `program` (`pg_dump`,
    /// `psql`, `pg_restore`) of the cluster's major against the server as
    /// `postgres`, by peer login on its Unix socket; arguments follow. Its
    /// stdin and stdout are the command's (a dump streams through them).
    /// The connection is given by libpq's environment (`PGHOST`, `PGPORT`,
    /// `PGUSER`), so the program's own options, `--version` first among
    /// them, follow as they would on a command line.
    fn client(&self, layout: &ClusterLayout, port: u16, program: &str) -> String {
        let socket_dir = layout.socket_dir.as_deref().unwrap_or(Path::new(DEFAULT_SOCKET_DIR));
        format!(
            "PGHOST={} PGPORT={port} PGUSER=postgres {}",
            crate::transport::shell_quote(&socket_dir.to_string_lossy()),
            crate::transport::shell_quote(&layout.program(program).to_string_lossy())
        )
    }

    fn is_running(&self, layout: &ClusterLayout) -> String;
    fn start(&self, layout: &ClusterLayout) -> String;
    /// Fast shutdown: sessions end, nothing committed is lost.
    fn stop(&self, layout: &ClusterLayout) -> String;
    fn restart(&self, layout: &ClusterLayout) -> String;
    fn reload(&self, layout: &ClusterLayout) -> String;
    fn promote(&self, layout: &ClusterLayout) -> String;

    /// `pg_rewind` of the stopped cluster from the server `source`
    /// (a libpq conninfo naming its passfile); `None` when the runtime has
    /// no way to run it on the host.
    fn rewind(&self, layout: &ClusterLayout, source: &str) -> Option<String> {
        Some(format!(
            "{} --target-pgdata={} --source-server={}",
            crate::transport::shell_quote(&layout.program("pg_rewind").to_string_lossy()),
            crate::transport::shell_quote(&layout.data_dir.to_string_lossy()),
            crate::transport::shell_quote(source)
        ))
    }

    fn pooler_is_running(&self, layout: &PoolerLayout) -> String;
    fn pooler_start(&self, layout: &PoolerLayout) -> String;
    fn pooler_reload(&self, layout: &PoolerLayout) -> String;
    /// Stops the pooler and waits for its process to go.
    fn pooler_stop(&self, layout: &PoolerLayout) -> String;
}

/// The runtime the configuration names.
pub fn of(kind: spec::Runtime) -> &'static dyn Runtime {
    match kind {
        spec::Runtime::PgCtl => &PgCtl,
        spec::Runtime::Debian => &Debian,
        spec::Runtime::Docker => &Docker,
        spec::Runtime::External => &External,
    }
}

/// The home pgfleet keeps beside a data directory (every runtime so far
/// keeps it at the same place; a runtime may choose another).
fn home_beside(data_dir: &Path) -> PathBuf {
    let mut home = data_dir.as_os_str().to_owned();
    home.push(".pgfleet");
    PathBuf::from(home)
}

/// A command that bridges its stdin and stdout to the Unix socket at
/// `socket`, with Perl's core modules: `perl-base` is Essential in Debian
/// (so in Debian-based images too), where `socat` or `nc -U` may be absent.
/// The copy in each direction handles short writes; the socket is half
/// closed when stdin ends, and the command ends with the server's side.
fn unix_socket_bridge(socket: &Path) -> String {
    format!(
        "exec perl -e {} {}",
        crate::transport::shell_quote(BRIDGE),
        crate::transport::shell_quote(&socket.to_string_lossy())
    )
}

/// The Perl program of `unix_socket_bridge`: its argument is the socket.
const BRIDGE: &str = r#"use IO::Socket::UNIX; my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "cannot connect to $ARGV[0]: $!\n"; sub copy { my ($from, $to) = @_; my $b; while (1) { my $n = sysread($from, $b, 65536); last unless $n; my $o = 0; while ($o < $n) { my $w = syswrite($to, $b, $n - $o, $o); return unless defined $w; $o += $w } } } if (my $pid = fork) { copy(\*STDIN, $s); shutdown($s, 1); waitpid($pid, 0) } else { copy($s, \*STDOUT); exit 0 }"#;

/// Where Debian's packages, and images built from them, put the servers'
/// Unix sockets.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// The Unix socket a server on `port` listens on in `directory`.
fn socket_in(directory: &Path, port: u16) -> PathBuf {
    directory.join(format!(".s.PGSQL.{port}"))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut with = path.as_os_str().to_owned();
    with.push(suffix);
    PathBuf::from(with)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_runtime_has_a_user_facing_name_and_refusal() {
        for kind in [spec::Runtime::PgCtl, spec::Runtime::Debian, spec::Runtime::Docker, spec::Runtime::External] {
            let runtime = of(kind);
            let written = serde_json::to_value(kind).unwrap();
            assert_eq!(written.as_str(), Some(runtime.name()));
            let refusal = runtime.refusal(Need::Replicas);
            assert!(refusal.contains(&format!("`runtime: {}`", runtime.name())), "{refusal}");
            assert!(!refusal.contains("PgCtl") && !refusal.contains("Docker"), "no Debug names: {refusal}");
        }
        let all = [Need::Observe, Need::Initialise, Need::ManageProcess, Need::Replicas, Need::Poolers, Need::EditHba];
        for kind in [spec::Runtime::PgCtl, spec::Runtime::Debian, spec::Runtime::Docker] {
            assert!(all.iter().all(|need| of(kind).capabilities().allows(*need)), "{kind:?}");
        }
        let external = of(spec::Runtime::External).capabilities();
        assert!(external.allows(Need::Observe));
        assert!(all[1..].iter().all(|need| !external.allows(*need)));
    }
}
