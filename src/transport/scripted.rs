//! A scripted host: answers commands from a table of rules instead of a
//! shell, and keeps files in memory. It lets executor logic (actions, the
//! scheduler) be tested, and plan's cost be measured, without servers; it
//! is no stand-in for the real-server tests, which remain the backbone.
//!
//! A rule matches a command exactly and may flip named flags (`running`),
//! so a start followed by an is-running check behaves like a host. Every
//! command is recorded, so a test can count what really ran. A command no
//! rule matches fails with status 127, as a missing program would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};

use super::{FileSpec, Output, Pending, Remote, Stream, StreamOutput, TransportError};

/// What a rule does to the host's flags, and the status it answers with.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Exit 0 when the flag is set, 1 otherwise.
    Test(String),
    /// Set the flag, exit 0.
    Set(String),
    /// Clear the flag, exit 0.
    Clear(String),
    /// Exit with this status and stderr, changing nothing.
    Fail(i32, String),
    /// Exit 0 with this stdout.
    Print(String),
    /// Remove every file under the path, exit 0.
    RemoveTree(PathBuf),
}

#[derive(Debug, Default)]
struct HostState {
    flags: BTreeSet<String>,
    files: BTreeMap<PathBuf, Vec<u8>>,
    ran: Vec<String>,
}

/// A host that answers from rules. Clones share the same host.
#[derive(Debug, Clone)]
pub struct Scripted {
    host: String,
    rules: Arc<Mutex<Vec<(String, Effect)>>>,
    state: Arc<Mutex<HostState>>,
}

impl Scripted {
    pub fn new(host: &str) -> Self {
        Scripted { host: host.to_owned(), rules: Arc::default(), state: Arc::default() }
    }

    /// Answers `command` with `effect` from now on (a later rule for the
    /// same command wins).
    pub fn on(&self, command: impl Into<String>, effect: Effect) -> &Self {
        lock(&self.rules).insert(0, (command.into(), effect));
        self
    }

    pub fn set_flag(&self, flag: &str, on: bool) {
        let mut state = lock(&self.state);
        if on {
            state.flags.insert(flag.to_owned());
        } else {
            state.flags.remove(flag);
        }
    }

    pub fn flag(&self, flag: &str) -> bool {
        lock(&self.state).flags.contains(flag)
    }

    pub fn file(&self, path: &Path) -> Option<Vec<u8>> {
        lock(&self.state).files.get(path).cloned()
    }

    pub fn put_file(&self, path: &Path, contents: &[u8]) {
        lock(&self.state).files.insert(path.to_owned(), contents.to_vec());
    }

    /// Every command run so far, in order.
    pub fn ran(&self) -> Vec<String> {
        lock(&self.state).ran.clone()
    }

    /// How many times exactly `command` ran.
    pub fn count(&self, command: &str) -> usize {
        lock(&self.state).ran.iter().filter(|ran| ran.as_str() == command).count()
    }

    fn answer(&self, command: &str) -> Output {
        let effect = lock(&self.rules).iter().find(|(wanted, _)| wanted == command).map(|(_, effect)| effect.clone());
        let mut state = lock(&self.state);
        state.ran.push(command.to_owned());
        let ok = |stdout: &str| Output { status: 0, stdout: stdout.as_bytes().to_vec(), stderr: Vec::new() };
        match effect {
            None => Output { status: 127, stdout: Vec::new(), stderr: format!("not scripted: {command}").into_bytes() },
            Some(Effect::Test(flag)) => Output { status: i32::from(!state.flags.contains(&flag)), ..ok("") },
            Some(Effect::Set(flag)) => {
                state.flags.insert(flag);
                ok("")
            }
            Some(Effect::Clear(flag)) => {
                state.flags.remove(&flag);
                ok("")
            }
            Some(Effect::Fail(status, stderr)) => Output { status, stdout: Vec::new(), stderr: stderr.into_bytes() },
            Some(Effect::Print(stdout)) => ok(&stdout),
            Some(Effect::RemoveTree(root)) => {
                state.files.retain(|path, _| !path.starts_with(&root));
                ok("")
            }
        }
    }
}

/// A poisoned lock only means another test thread panicked; the data is
/// still what it was.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Remote for Scripted {
    fn host(&self) -> &str {
        &self.host
    }

    /// Reads all of `stdin` (as a command would), answers from the rules
    /// and writes the rule's stdout.
    fn run_streamed<'a>(
        &'a self,
        command: &'a str,
        stdin: &'a mut (dyn AsyncRead + Send + Unpin),
        stdout: &'a mut (dyn AsyncWrite + Send + Unpin),
        stderr_limit: usize,
        _timeout: Duration,
    ) -> Pending<'a, StreamOutput> {
        Box::pin(async move {
            let io = |source| TransportError::Io { host: self.host.clone(), action: "stream a command", source };
            tokio::io::copy(stdin, &mut tokio::io::sink()).await.map_err(io)?;
            let output = self.answer(command);
            stdout.write_all(&output.stdout).await.map_err(io)?;
            stdout.flush().await.map_err(io)?;
            let dropped = output.stderr.len().saturating_sub(stderr_limit);
            Ok(StreamOutput {
                status: output.status,
                stderr: output.stderr[dropped..].to_vec(),
                stderr_dropped: dropped as u64,
                stdout_bytes: output.stdout.len() as u64,
            })
        })
    }

    fn connect_tcp<'a>(&'a self, address: &'a str, port: u16) -> Pending<'a, Box<dyn Stream>> {
        Box::pin(async move {
            Err(TransportError::Io {
                host: self.host.clone(),
                action: "connect to a port (a scripted host has none)",
                source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, format!("{address}:{port}")),
            })
        })
    }

    fn connect_command<'a>(&'a self, command: &'a str) -> Pending<'a, Box<dyn Stream>> {
        Box::pin(async move {
            Err(TransportError::Io {
                host: self.host.clone(),
                action: "open a command as a stream (a scripted host has none)",
                source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, command.to_owned()),
            })
        })
    }

    fn read_file<'a>(&'a self, path: &'a Path) -> Pending<'a, Option<Vec<u8>>> {
        Box::pin(async move { Ok(self.file(path)) })
    }

    fn write_file<'a>(&'a self, file: FileSpec<'a>) -> Pending<'a, ()> {
        Box::pin(async move {
            self.put_file(file.path, file.contents);
            Ok(())
        })
    }
}
