//! What an action needs to run: the topology, connected hosts, the change it
//! belongs to, and the secrets it may use. Also the small shared steps
//! (run a command as the service user, open a superuser session, find a
//! cluster's paths) that every resource's actions use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::Client;

use crate::address::{Address, Kind};
use crate::desired;
use crate::plan::ChangeKind;
use crate::secrets::{self, Secret, SecretError};
use crate::spec::SecretRef;
use crate::sql::SqlError;
use crate::state::Owned;
use crate::topology::{Environment, Replica, Topology};
use crate::transport::{FileSpec, Output, Remote, TransportError, shell_quote};

/// How long a long step (initdb, base backup, a restart) may run.
pub const LONG_STEP: Duration = Duration::from_secs(3600);
/// How long an ordinary step may run.
pub const STEP: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ActionError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Sql(#[from] SqlError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Secret(#[from] SecretError),
    #[error("{address}: {step} failed")]
    #[diagnostic(code(pgfleet::action::query))]
    Query {
        address: String,
        step: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{address}: {step} on host `{host}` exited with status {status}: {stderr}")]
    #[diagnostic(code(pgfleet::action::command))]
    Command { address: String, host: String, step: &'static str, status: i32, stderr: String },
    /// pg_ctl says only "Examine the log output."; PostgreSQL's reason is in
    /// the server log, so its last lines come with the error.
    #[error(
        "{address}: {step} on host `{host}` exited with status {status}; the last lines of {}:\n{}",
        log.display(),
        indented(log_tail)
    )]
    #[diagnostic(
        code(pgfleet::action::server_start),
        help("the log says why PostgreSQL did not start (often a setting it rejects); fix that and run apply again")
    )]
    ServerStart { address: String, host: String, step: &'static str, status: i32, log: PathBuf, log_tail: String },
    #[error("{address}: {step} did not finish within {} s", waited.as_secs())]
    #[diagnostic(code(pgfleet::action::timeout))]
    Timeout { address: String, step: &'static str, waited: Duration },
    #[error("{address}: {reason}")]
    #[diagnostic(code(pgfleet::action::refused))]
    Refused { address: String, reason: String },
    #[error("{address}: host `{host}` is not connected")]
    #[diagnostic(code(pgfleet::action::host))]
    NoHost { address: String, host: String },
}

/// Where a PostgreSQL cluster lives and how to reach it.
#[derive(Debug, Clone)]
pub struct ClusterPlace {
    pub host: String,
    pub data_dir: PathBuf,
    pub address: String,
    pub port: u16,
    pub version: u32,
}

impl ClusterPlace {
    pub fn home(&self) -> PathBuf {
        desired::home(&self.data_dir)
    }

    pub fn bin(&self, program: &str) -> String {
        format!("/usr/lib/postgresql/{}/bin/{program}", self.version)
    }
}

pub struct Context<'a> {
    pub topology: &'a Topology,
    pub environment: &'a Environment,
    pub address: &'a Address,
    pub change: ChangeKind,
    /// Where the resource was, when pgfleet created it (for deletions).
    pub owned: Option<&'a Owned>,
    pub hosts: &'a BTreeMap<String, Box<dyn Remote>>,
}

impl Context<'_> {
    pub fn remote(&self, host: &str) -> Result<&dyn Remote, ActionError> {
        self.hosts
            .get(host)
            .map(AsRef::as_ref)
            .ok_or_else(|| ActionError::NoHost { address: self.address.to_string(), host: host.to_owned() })
    }

    pub fn primary(&self) -> ClusterPlace {
        let primary = &self.environment.primary;
        ClusterPlace {
            host: primary.host.clone(),
            data_dir: primary.data_dir.clone(),
            address: primary.address.clone(),
            port: primary.port,
            version: primary.version,
        }
    }

    pub fn replica(&self) -> Option<&Replica> {
        self.environment.replicas.iter().find(|replica| replica.name == self.address.name)
    }

    /// The cluster this action works on: the primary for cluster, role,
    /// hba, database and slot resources; the replica for a replica (from
    /// the topology, or from ownership when it was removed from it).
    pub fn cluster(&self) -> Result<ClusterPlace, ActionError> {
        if self.address.kind != Kind::Replica {
            return Ok(self.primary());
        }
        if let Some(replica) = self.replica() {
            return Ok(ClusterPlace {
                host: replica.host.clone(),
                data_dir: replica.data_dir.clone(),
                address: replica.address.clone(),
                port: replica.port,
                version: self.environment.primary.version,
            });
        }
        let owned = self.owned.and_then(|owned| owned.path.clone().map(|path| (owned.host.clone(), path)));
        let (host, data_dir) = owned.ok_or_else(|| ActionError::Refused {
            address: self.address.to_string(),
            reason: "not in the configuration and not recorded in state: pgfleet does not know where it is".into(),
        })?;
        Ok(ClusterPlace { host, data_dir, address: String::new(), port: 0, version: self.environment.primary.version })
    }

    /// Runs a command as the service user on `host`; non-zero is an error
    /// carrying stderr (commands never hold secrets, so stderr cannot).
    pub async fn run(
        &self,
        host: &str,
        step: &'static str,
        command: &str,
        timeout: Duration,
    ) -> Result<Output, ActionError> {
        self.run_with_input(host, step, command, b"", timeout).await
    }

    pub async fn run_with_input(
        &self,
        host: &str,
        step: &'static str,
        command: &str,
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<Output, ActionError> {
        let output = self.remote(host)?.exec(command, stdin, timeout).await?;
        if output.success() {
            Ok(output)
        } else {
            Err(ActionError::Command {
                address: self.address.to_string(),
                host: host.to_owned(),
                step,
                status: output.status,
                stderr: output.stderr_text().trim().to_owned(),
            })
        }
    }

    pub async fn write(&self, host: &str, path: &Path, contents: &[u8], mode: u32) -> Result<(), ActionError> {
        Ok(self.remote(host)?.write_file(FileSpec { path, contents, mode }).await?)
    }

    pub async fn read(&self, host: &str, path: &Path) -> Result<Option<Vec<u8>>, ActionError> {
        Ok(self.remote(host)?.read_file(path).await?)
    }

    /// `mkdir -p` with mode 0700 for a directory the service user owns.
    pub async fn ensure_dir(&self, host: &str, path: &Path) -> Result<(), ActionError> {
        let path = shell_quote(&path.to_string_lossy());
        self.run(host, "create directory", &format!("mkdir -p {path} && chmod 0700 {path}"), STEP).await?;
        Ok(())
    }

    /// A superuser session on `cluster`, with the password pgfleet keeps in
    /// the cluster's home.
    pub async fn superuser(&self, cluster: &ClusterPlace) -> Result<Client, ActionError> {
        let remote = self.remote(&cluster.host)?;
        Ok(crate::observe::superuser_session(remote, &cluster.data_dir, &cluster.address, cluster.port).await?)
    }

    pub fn query_error(&self, step: &'static str) -> impl Fn(tokio_postgres::Error) -> ActionError + '_ {
        move |source| ActionError::Query { address: self.address.to_string(), step, source }
    }

    /// Whether the postmaster of `cluster` runs (postmaster.pid names a live
    /// process).
    pub async fn running(&self, cluster: &ClusterPlace) -> Result<bool, ActionError> {
        let pid = shell_quote(&cluster.data_dir.join("postmaster.pid").to_string_lossy());
        let output = self
            .remote(&cluster.host)?
            .exec(&format!("[ -f {pid} ] && kill -0 \"$(head -n 1 {pid})\" 2>/dev/null"), b"", STEP)
            .await?;
        Ok(output.success())
    }

    /// A role's password: from `{env}` / `{file}`, or for `{generate: true}`
    /// the one kept (0600) in the primary's home, created there first if
    /// missing so that a rerun uses the same one.
    pub async fn role_password(&self, role: &str) -> Result<Secret, ActionError> {
        let reference = if role == self.environment.replication.user {
            &self.environment.replication.password
        } else {
            &self.environment.database.password
        };
        let what = format!("{}.role.{role} password", self.environment.id);
        if let Some(secret) = secrets::read(reference, &what)? {
            return Ok(secret);
        }
        debug_assert!(matches!(reference, SecretRef::Generate(_)));
        let primary = self.primary();
        let path = primary.home().join(format!("role-{role}.password"));
        self.kept_secret(&primary.host, &primary.home(), &path).await
    }

    /// The superuser password of the primary (generated at init).
    pub async fn superuser_password(&self) -> Result<Secret, ActionError> {
        let primary = self.primary();
        let path = primary.home().join(desired::SUPERUSER_PASSWORD_FILE);
        self.kept_secret(&primary.host, &primary.home(), &path).await
    }

    async fn kept_secret(&self, host: &str, home: &Path, path: &Path) -> Result<Secret, ActionError> {
        if let Some(bytes) = self.read(host, path).await? {
            let text = String::from_utf8_lossy(&bytes).trim_end_matches(['\n', '\r']).to_owned();
            if !text.is_empty() {
                return Ok(Secret::new(text));
            }
        }
        self.ensure_dir(host, home).await?;
        let secret = secrets::generate()?;
        self.write(host, path, format!("{}\n", secret.expose()).as_bytes(), 0o600).await?;
        Ok(secret)
    }
}

/// Lines of a log under an error message, indented so they read as quoted.
fn indented(lines: &str) -> String {
    if lines.trim().is_empty() {
        return "    (the log is empty or could not be read)".into();
    }
    lines.lines().map(|line| format!("    {line}")).collect::<Vec<_>>().join("\n")
}

/// Quotes an SQL identifier.
pub fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::ActionError;

    #[test]
    fn a_failed_start_shows_the_log_path_and_its_last_lines() {
        let error = ActionError::ServerStart {
            address: "prod.cluster.primary".into(),
            host: "db1".into(),
            step: "pg_ctl start",
            status: 1,
            log: "/srv/pg/prod.pgfleet/postgresql.log".into(),
            log_tail: "LOG:  starting\nFATAL:  invalid value for parameter \"shared_buffers\": \"lots\"".into(),
        };
        assert_eq!(
            error.to_string(),
            "prod.cluster.primary: pg_ctl start on host `db1` exited with status 1; the last lines of \
             /srv/pg/prod.pgfleet/postgresql.log:\n    LOG:  starting\n    FATAL:  invalid value for parameter \
             \"shared_buffers\": \"lots\""
        );
        assert!(miette::Diagnostic::help(&error).is_some());
        let empty = ActionError::ServerStart {
            address: "a".into(),
            host: "h".into(),
            step: "pg_ctl start",
            status: 1,
            log: "/l".into(),
            log_tail: String::new(),
        };
        assert!(empty.to_string().ends_with("(the log is empty or could not be read)"));
    }
}
