//! The machine pgfleet runs on (`transport: local`, the sandbox). When
//! pgfleet runs as root, commands run as the service user through
//! `runuser`, since PostgreSQL and PgBouncer refuse root. Every command,
//! collected or streamed, runs through one path (`Local::run`) that serves
//! its stdin, stdout and stderr pipes at the same time.

use std::io::ErrorKind;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;

use super::{Pending, Remote, STREAM_CHUNK, Stream, StreamOutput, Tail, TransportError};

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

impl Local {
    /// `sh -c command`, as the service user when pgfleet runs as root, with
    /// every stream piped and the process killed if it is dropped (a
    /// timeout, an abandoned stream).
    fn shell(&self, command: &str) -> Command {
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
        process
    }

    fn io_error(&self, action: &'static str) -> impl FnOnce(std::io::Error) -> TransportError + '_ {
        move |source| TransportError::Io { host: self.host.clone(), action, source }
    }

    /// Runs `command` with its three pipes served at once: input fed from
    /// `stdin`, output copied to `stdout`, the last `stderr_limit` bytes of
    /// stderr kept.
    async fn run(
        &self,
        command: &str,
        stdin: &mut (dyn AsyncRead + Send + Unpin),
        stdout: &mut (dyn AsyncWrite + Send + Unpin),
        stderr_limit: usize,
        timeout: Duration,
    ) -> Result<StreamOutput, TransportError> {
        let mut child = self.shell(command).spawn().map_err(self.io_error("start a command"))?;
        let (Some(input), Some(mut output), Some(mut errors)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            // `shell` asks for all three pipes, so tokio always makes them.
            return Err(self.io_error("open the pipes of a command")(std::io::Error::other("a pipe is missing")));
        };
        let run = async {
            let feed = async {
                let mut input = input;
                let mut buffer = vec![0; STREAM_CHUNK];
                loop {
                    let read =
                        stdin.read(&mut buffer).await.map_err(self.io_error("read the input streamed to a command"))?;
                    if read == 0 {
                        break;
                    }
                    match input.write_all(&buffer[..read]).await {
                        Ok(()) => {}
                        // The command closed its stdin (exited, or `head`):
                        // it wants no more, and its status says how it ended.
                        Err(error) if error.kind() == ErrorKind::BrokenPipe => break,
                        Err(error) => return Err(self.io_error("write to a command")(error)),
                    }
                }
                // Dropping `input` closes the pipe: the command sees the end.
                Ok::<(), TransportError>(())
            };
            let drain = async {
                let mut buffer = vec![0; STREAM_CHUNK];
                let mut written = 0u64;
                loop {
                    let read = output.read(&mut buffer).await.map_err(self.io_error("read the output of a command"))?;
                    if read == 0 {
                        break;
                    }
                    stdout.write_all(&buffer[..read]).await.map_err(self.io_error("write the output of a command"))?;
                    written += read as u64;
                }
                stdout.flush().await.map_err(self.io_error("write the output of a command"))?;
                Ok(written)
            };
            let collect = async {
                let mut tail = Tail::new(stderr_limit);
                let mut buffer = vec![0; STREAM_CHUNK];
                loop {
                    let read = errors.read(&mut buffer).await.map_err(self.io_error("read the errors of a command"))?;
                    if read == 0 {
                        break;
                    }
                    tail.push(&buffer[..read]);
                }
                Ok(tail)
            };
            let ((), stdout_bytes, tail) = tokio::try_join!(feed, drain, collect)?;
            let status = child.wait().await.map_err(self.io_error("run a command"))?;
            Ok(StreamOutput {
                status: status.code().unwrap_or(-1),
                stderr: tail.bytes,
                stderr_dropped: tail.dropped,
                stdout_bytes,
            })
        };
        // On a timeout or an error, `child` is dropped with the future and
        // killed (`kill_on_drop`).
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout { host: self.host.clone(), after: timeout }),
        }
    }
}

impl Remote for Local {
    fn host(&self) -> &str {
        &self.host
    }

    fn run_streamed<'a>(
        &'a self,
        command: &'a str,
        stdin: &'a mut (dyn AsyncRead + Send + Unpin),
        stdout: &'a mut (dyn AsyncWrite + Send + Unpin),
        stderr_limit: usize,
        timeout: Duration,
    ) -> Pending<'a, StreamOutput> {
        Box::pin(self.run(command, stdin, stdout, stderr_limit, timeout))
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

    fn connect_command<'a>(&'a self, command: &'a str) -> Pending<'a, Box<dyn Stream>> {
        Box::pin(async move {
            let mut process = self.shell(command);
            process.stderr(Stdio::null());
            let mut child = process.spawn().map_err(self.io_error("start a command"))?;
            let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
                unreachable!("the shell's stdin and stdout are piped")
            };
            Ok(Box::new(CommandStream { io: tokio::io::join(stdout, stdin), _child: child }) as Box<dyn Stream>)
        })
    }
}

/// A command's stdout and stdin as one stream; dropping it kills the
/// command (`kill_on_drop`).
struct CommandStream {
    io: tokio::io::Join<tokio::process::ChildStdout, tokio::process::ChildStdin>,
    _child: tokio::process::Child,
}

impl AsyncRead for CommandStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(context, buffer)
    }
}

impl AsyncWrite for CommandStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(context, buffer)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(context)
    }
}
