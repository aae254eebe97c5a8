//! The machine pgfleet runs on (`transport: local`, the sandbox). When
//! pgfleet runs as root, commands run as the service user through
//! `runuser`, since PostgreSQL and PgBouncer refuse root.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{Output, Pending, Remote, Stream, TransportError};

pub const SERVICE_USER: &str = "postgres";

pub struct Local {
    host: String,
    /// `Some(user)` when pgfleet runs as root and must drop to that user.
    run_as: Option<String>,
}

impl Local {
    pub fn new(host: &str) -> Self {
        let run_as = running_as_root().then(|| SERVICE_USER.to_owned());
        Local { host: host.to_owned(), run_as }
    }
}

/// Reads the effective uid from /proc (no libc needed).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|effective| effective == "0"))
        })
        .unwrap_or(false)
}

impl Remote for Local {
    fn host(&self) -> &str {
        &self.host
    }

    fn exec<'a>(&'a self, command: &'a str, stdin: &'a [u8], timeout: Duration) -> Pending<'a, Output> {
        Box::pin(async move {
            let mut process = match &self.run_as {
                Some(user) => {
                    let mut process = Command::new("runuser");
                    process.args(["-u", user, "--", "sh", "-c", command]);
                    process
                }
                None => {
                    let mut process = Command::new("sh");
                    process.args(["-c", command]);
                    process
                }
            };
            // libpq reads PGPASSWORD, PGHOST and the like before the
            // passfile and options pgfleet gives; the caller's must not leak
            // into pg_basebackup or psql. (Over SSH, sshd starts a clean
            // environment.)
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with("PG") {
                    process.env_remove(&name);
                }
            }
            process.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
            let io = |action| {
                let host = self.host.clone();
                move |source| TransportError::Io { host, action, source }
            };
            let mut child = process.spawn().map_err(io("start a command"))?;
            if let Some(mut input) = child.stdin.take() {
                input.write_all(stdin).await.map_err(io("write to a command"))?;
            }
            let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
                Ok(output) => output.map_err(io("run a command"))?,
                Err(_) => return Err(TransportError::Timeout { host: self.host.clone(), after: timeout }),
            };
            Ok(Output { status: output.status.code().unwrap_or(-1), stdout: output.stdout, stderr: output.stderr })
        })
    }

    fn connect_tcp<'a>(&'a self, address: &'a str, port: u16) -> Pending<'a, Box<dyn Stream>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect((address, port))
                .await
                .map_err(|source| TransportError::Io { host: self.host.clone(), action: "connect", source })?;
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream) as Box<dyn Stream>)
        })
    }
}
