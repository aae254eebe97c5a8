//! How pgfleet reaches a host: the local machine or SSH. Owns running
//! commands (with their input and output collected, or streamed), reading
//! and writing files, and opening TCP streams to ports on the host; knows
//! nothing of PostgreSQL.
//!
//! Must not: hold a streamed command's input or output in memory beyond a
//! few chunks (a backup pipes gigabytes through it).

pub mod local;
pub mod scripted;
pub mod ssh;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

/// How long an ordinary command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The stderr a streamed command keeps: its last 64 KiB, where the error
/// that ended it is.
pub const STREAM_STDERR_LIMIT: usize = 64 * 1024;

/// Bytes read from a streamed command's input at a time: two SSH packets
/// (OpenSSH's 32 KiB maximum), or a Linux pipe's default capacity.
pub const STREAM_CHUNK: usize = 64 * 1024;

/// A boxed future, so `Remote` can be used as a trait object.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, TransportError>> + Send + 'a>>;

/// A byte stream to a port on the host (SQL travels on it).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A file to write: where, what, and who may read it.
#[derive(Debug, Clone, Copy)]
pub struct FileSpec<'a> {
    pub path: &'a Path,
    pub contents: &'a [u8],
    /// Octal mode, e.g. 0o600 for a secret.
    pub mode: u32,
}

/// A host pgfleet can act on. Commands run as the service user (`postgres`),
/// never as root: PostgreSQL and PgBouncer refuse root.
pub trait Remote: Send + Sync {
    /// The host's name in the configuration, for messages.
    fn host(&self) -> &str;

    /// What `exec` and `exec_stream` are made of, the one thing each
    /// transport implements: runs a shell command with streamed stdin and
    /// stdout (see `exec_stream`'s guarantees), keeping the last
    /// `stderr_limit` bytes of stderr.
    fn run_streamed<'a>(
        &'a self,
        command: &'a str,
        stdin: &'a mut (dyn AsyncRead + Send + Unpin),
        stdout: &'a mut (dyn AsyncWrite + Send + Unpin),
        stderr_limit: usize,
        timeout: Duration,
    ) -> Pending<'a, StreamOutput>;

    /// Runs a shell command with `stdin`, within `timeout`, and collects
    /// its stdout and all of its stderr.
    fn exec<'a>(&'a self, command: &'a str, stdin: &'a [u8], timeout: Duration) -> Pending<'a, Output> {
        Box::pin(async move {
            let mut input = stdin;
            let mut stdout = Vec::new();
            let streamed = self.run_streamed(command, &mut input, &mut stdout, usize::MAX, timeout).await?;
            Ok(Output { status: streamed.status, stdout, stderr: streamed.stderr })
        })
    }

    /// Runs a shell command, feeding it `stdin` and writing its stdout to
    /// `stdout` as they flow, within `timeout` (the whole run, not each
    /// read: pass what the largest expected stream needs).
    ///
    /// # Guarantees
    /// - Memory stays bounded whatever the size of the stream: input is
    ///   read a chunk at a time and only as fast as the command takes it
    ///   (the SSH channel's window, or the pipe, pushes back); output is
    ///   written to `stdout` as it arrives, and a slow `stdout` slows the
    ///   command down. Only the last `STREAM_STDERR_LIMIT` bytes of stderr
    ///   are kept.
    /// - Input and output flow at the same time, so a command that writes
    ///   before it has read everything (`cat`, `gzip`) cannot deadlock.
    /// - A command that exits without reading all of `stdin` is not an
    ///   error: its status says how it ended.
    /// - `stdout` is flushed, not shut down: the caller finishes it (an
    ///   upload decides when it is complete). To hand the output to a
    ///   reader instead, pass one end of `tokio::io::duplex` and read the
    ///   other end concurrently.
    ///
    /// # Errors
    /// Failing to start the command, reading `stdin`, writing `stdout`, the
    /// connection failing, and the timeout are errors; the command is then
    /// stopped. A command that fails is not: see `StreamOutput::status`.
    fn exec_stream<'a>(
        &'a self,
        command: &'a str,
        stdin: &'a mut (dyn AsyncRead + Send + Unpin),
        stdout: &'a mut (dyn AsyncWrite + Send + Unpin),
        timeout: Duration,
    ) -> Pending<'a, StreamOutput> {
        self.run_streamed(command, stdin, stdout, STREAM_STDERR_LIMIT, timeout)
    }

    /// Opens a TCP stream to `address:port` as seen from the host, so a
    /// service listening only on the host's loopback is reachable.
    fn connect_tcp<'a>(&'a self, address: &'a str, port: u16) -> Pending<'a, Box<dyn Stream>>;

    /// Starts a shell command (as the service user) and hands back its
    /// stdin and stdout as one byte stream: a bridge to a Unix socket, or
    /// into a container, that only the service user may open. The command
    /// ends when the stream is dropped.
    fn connect_command<'a>(&'a self, command: &'a str) -> Pending<'a, Box<dyn Stream>>;

    /// The file's contents, or `None` when it does not exist.
    fn read_file<'a>(&'a self, path: &'a Path) -> Pending<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let command = format!("if [ -e {0} ]; then cat {0}; else exit 3; fi", shell_quote(&path.to_string_lossy()));
            let output = self.exec(&command, b"", COMMAND_TIMEOUT).await?;
            match output.status {
                0 => Ok(Some(output.stdout)),
                3 => Ok(None),
                _ => Err(TransportError::command(self.host(), "read file", &output)),
            }
        })
    }

    /// Writes a file atomically (a temporary file beside it, then rename)
    /// with `mode`; the temporary file is created under `umask 077`, so a
    /// secret is never readable by others, not even for a moment. The
    /// contents travel on stdin, never on a command line.
    fn write_file<'a>(&'a self, file: FileSpec<'a>) -> Pending<'a, ()> {
        Box::pin(async move {
            let path = shell_quote(&file.path.to_string_lossy());
            let command = format!(
                "umask 077 && tmp=$(mktemp {path}.pgfleet.XXXXXX) && cat > \"$tmp\" && chmod {mode:o} \"$tmp\" && mv -f \"$tmp\" {path}",
                mode = file.mode
            );
            let output = self.exec(&command, file.contents, COMMAND_TIMEOUT).await?;
            if output.success() { Ok(()) } else { Err(TransportError::command(self.host(), "write file", &output)) }
        })
    }
}

/// A connection shared by several users (apply's observation, its actions
/// and its final observation use one SSH session per host).
pub struct Shared(pub std::sync::Arc<dyn Remote>);

impl Remote for Shared {
    fn host(&self) -> &str {
        self.0.host()
    }

    fn run_streamed<'a>(
        &'a self,
        command: &'a str,
        stdin: &'a mut (dyn AsyncRead + Send + Unpin),
        stdout: &'a mut (dyn AsyncWrite + Send + Unpin),
        stderr_limit: usize,
        timeout: Duration,
    ) -> Pending<'a, StreamOutput> {
        self.0.run_streamed(command, stdin, stdout, stderr_limit, timeout)
    }

    fn connect_tcp<'a>(&'a self, address: &'a str, port: u16) -> Pending<'a, Box<dyn Stream>> {
        self.0.connect_tcp(address, port)
    }

    fn connect_command<'a>(&'a self, command: &'a str) -> Pending<'a, Box<dyn Stream>> {
        self.0.connect_command(command)
    }

    fn read_file<'a>(&'a self, path: &'a Path) -> Pending<'a, Option<Vec<u8>>> {
        self.0.read_file(path)
    }

    fn write_file<'a>(&'a self, file: FileSpec<'a>) -> Pending<'a, ()> {
        self.0.write_file(file)
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TransportError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Ssh(#[from] ssh::SshError),

    #[error("cannot {action} on host `{host}`")]
    #[diagnostic(code(pgfleet::transport::io))]
    Io {
        host: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("{action} on host `{host}` failed with status {status}: {stderr}")]
    #[diagnostic(code(pgfleet::transport::command))]
    Command { host: String, action: &'static str, status: i32, stderr: String },

    #[error("command on host `{host}` did not finish within {} s", after.as_secs())]
    #[diagnostic(code(pgfleet::transport::timeout))]
    Timeout { host: String, after: Duration },
}

impl TransportError {
    pub fn command(host: &str, action: &'static str, output: &Output) -> Self {
        TransportError::Command {
            host: host.to_owned(),
            action,
            status: output.status,
            stderr: output.stderr_text().trim().to_owned(),
        }
    }
}

/// What a finished command left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit status; -1 when the command was killed by a signal or vanished.
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// What a streamed command left behind; its stdout went to the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamOutput {
    /// Exit status; -1 when the command was killed by a signal or vanished.
    pub status: i32,
    /// The end of stderr: at most `STREAM_STDERR_LIMIT` bytes.
    pub stderr: Vec<u8>,
    /// How many bytes of stderr came before `stderr` and were dropped.
    pub stderr_dropped: u64,
    /// How many bytes were written to stdout.
    pub stdout_bytes: u64,
}

impl StreamOutput {
    pub fn success(&self) -> bool {
        self.status == 0
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// The end of a byte stream, at most `limit` bytes of it.
#[derive(Debug)]
struct Tail {
    limit: usize,
    bytes: Vec<u8>,
    dropped: u64,
}

impl Tail {
    fn new(limit: usize) -> Self {
        Tail { limit, bytes: Vec::new(), dropped: 0 }
    }

    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > self.limit {
            let excess = self.bytes.len() - self.limit;
            self.bytes.drain(..excess);
            self.dropped += excess as u64;
        }
    }
}

/// Quotes one word for a POSIX shell.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | '@' | ','));
    if plain { word.to_owned() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

/// `~/x` → `$HOME/x`, as OpenSSH reads its own paths.
pub fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => Path::new(&home).join(rest),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(shell_quote("initdb"), "initdb");
        assert_eq!(shell_quote("/var/lib/postgresql/15/main"), "/var/lib/postgresql/15/main");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
