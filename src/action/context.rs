//! What an action needs to run: the topology, connected hosts, the
//! resource it belongs to, and the secrets it may use. Also the small
//! shared steps (run a command as the service user, open a superuser
//! session, find a member's or pooler's placement) that every resource's
//! actions use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::Client;

use crate::address::Address;
use crate::placement::{self, ClusterPlacement, PoolerPlacement};
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

pub struct Context<'a> {
    pub topology: &'a Topology,
    pub environment: &'a Environment,
    /// The resource whose change this action belongs to (for messages).
    pub address: &'a Address,
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

    fn unknown(&self, what: &str) -> ActionError {
        ActionError::Refused {
            address: self.address.to_string(),
            reason: format!(
                "{what} is not in the configuration and not recorded in state: pgfleet does not know where it is"
            ),
        }
    }

    /// The primary member, where roles, the database and slots live.
    pub fn primary(&self) -> ClusterPlacement {
        placement::primary(self.environment)
    }

    /// A member by name: from the configuration, or — for one that left
    /// it — from what state recorded when pgfleet created it.
    pub fn member(&self, name: &str) -> Result<ClusterPlacement, ActionError> {
        if let Some(found) = placement::member(self.environment, name) {
            return Ok(found);
        }
        self.owned
            .filter(|_| self.address.name == name)
            .and_then(|owned| placement::departed_member(self.environment, name, owned))
            .ok_or_else(|| self.unknown(&format!("member `{name}`")))
    }

    /// The replica named `name` in the configuration.
    pub fn replica(&self, name: &str) -> Result<&Replica, ActionError> {
        self.environment.replicas.iter().find(|replica| replica.name == name).ok_or_else(|| ActionError::Refused {
            address: self.address.to_string(),
            reason: format!("replica `{name}` is not in the configuration"),
        })
    }

    /// The pooler in front of member `fronts`, from the configuration or
    /// from state.
    pub fn pooler(&self, fronts: &str) -> Result<PoolerPlacement, ActionError> {
        if let Some(found) = placement::pooler(self.environment, fronts) {
            return Ok(found);
        }
        self.owned
            .filter(|_| self.address.name == fronts)
            .and_then(|owned| placement::departed_pooler(self.environment, fronts, owned))
            .ok_or_else(|| self.unknown(&format!("the pooler of `{fronts}`")))
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

    /// A superuser session on `member`, with the password pgfleet keeps in
    /// the member's home.
    pub async fn superuser(&self, member: &ClusterPlacement) -> Result<Client, ActionError> {
        let remote = self.remote(&member.host)?;
        Ok(crate::observe::superuser_session(remote, member).await?)
    }

    pub fn query_error(&self, step: &'static str) -> impl Fn(tokio_postgres::Error) -> ActionError + '_ {
        move |source| ActionError::Query { address: self.address.to_string(), step, source }
    }

    /// Whether the postmaster of `member` runs, as its runtime tells.
    pub async fn running(&self, member: &ClusterPlacement) -> Result<bool, ActionError> {
        let check = member.runtime().is_running(&member.layout);
        Ok(self.remote(&member.host)?.exec(&check, b"", STEP).await?.success())
    }

    /// Whether the pooler runs, as its runtime tells.
    pub async fn pooler_running(&self, pooler: &PoolerPlacement) -> Result<bool, ActionError> {
        let check = pooler.runtime().pooler_is_running(&pooler.layout);
        Ok(self.remote(&pooler.host)?.exec(&check, b"", STEP).await?.success())
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
        let path = primary.layout.role_password_file(role);
        self.kept_secret(&primary.host, &primary.layout.home, &path).await
    }

    /// The superuser password of the primary (generated at init).
    pub async fn superuser_password(&self) -> Result<Secret, ActionError> {
        let primary = self.primary();
        let path = primary.layout.superuser_password_file();
        self.kept_secret(&primary.host, &primary.layout.home, &path).await
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
