//! `kind: local`: a directory on the environment's primary host, reached
//! through that host's transport (the machine itself for `transport:
//! local`). Objects are files under the directory; an upload is written to
//! a hidden `.partial` file beside its name and renamed into place.

use std::future::Future as _;
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::task::JoinHandle;

use super::{Body, ObjectMeta, Pending, Storage, StorageError, check_name};
use crate::transport::{COMMAND_TIMEOUT, Remote, StreamOutput, TransportError, shell_quote};

/// How long one upload or download may take: a day (a backup of a large
/// database over a slow link).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

pub struct LocalDir {
    host: Arc<dyn Remote>,
    root: PathBuf,
}

impl LocalDir {
    pub fn new(host: Arc<dyn Remote>, root: PathBuf) -> Self {
        LocalDir { host, root }
    }

    fn path(&self, name: &str) -> Result<String, StorageError> {
        check_name(name).map_err(|reason| self.failed("name", name, reason))?;
        Ok(shell_quote(&self.root.join(name).to_string_lossy()))
    }

    fn failed(&self, action: &'static str, name: &str, reason: impl Into<String>) -> StorageError {
        StorageError::Failed { storage: self.describe(), action, name: name.to_owned(), reason: reason.into() }
    }
}

impl Storage for LocalDir {
    fn describe(&self) -> String {
        format!("local directory {} on host `{}`", self.root.display(), self.host.host())
    }

    fn put<'a>(&'a self, name: &'a str, mut body: Body<'a>) -> Pending<'a, u64> {
        Box::pin(async move {
            let path = self.path(name)?;
            let partial = self.path(&super::partial_name(name)?)?;
            // Two steps: the rename runs only once the whole body was read
            // without error. (In one shell, a body that fails half-way
            // looks to `cat` like its end, and the rename would follow.)
            let write = format!("set -e; umask 077; mkdir -p \"$(dirname {path})\"; cat > {partial}");
            let mut cleanup = RemoveOnDrop { host: Some(self.host.clone()), partial: partial.clone() };
            let output = self.host.exec_stream(&write, &mut body, &mut tokio::io::sink(), TRANSFER_TIMEOUT).await?;
            if !output.success() {
                return Err(self.failed("upload", name, output.stderr_text().trim().to_owned()));
            }
            let rename = format!("chmod 0600 {partial} && mv -f {partial} {path} && stat -c %s {path}");
            let output = self.host.exec(&rename, b"", COMMAND_TIMEOUT).await?;
            if !output.success() {
                return Err(self.failed("upload", name, output.stderr_text().trim().to_owned()));
            }
            cleanup.host = None;
            output
                .stdout_text()
                .trim()
                .parse()
                .map_err(|_| self.failed("upload", name, "the written file's size could not be read"))
        })
    }

    fn get<'a>(&'a self, name: &'a str, range: Option<Range<u64>>) -> Pending<'a, Body<'a>> {
        Box::pin(async move {
            let path = self.path(name)?;
            let Some(meta) = self.stat(name).await? else {
                return Err(StorageError::Missing { storage: self.describe(), name: name.to_owned() });
            };
            let command = match range {
                None => format!("exec cat {path}"),
                Some(range) => {
                    if range.start > range.end || range.end > meta.size {
                        return Err(self.failed(
                            "read",
                            name,
                            format!("range {range:?} is outside its {} bytes", meta.size),
                        ));
                    }
                    format!("tail -c +{} {path} | head -c {}", range.start + 1, range.end - range.start)
                }
            };
            Ok(Box::new(CommandReader::spawn(self.host.clone(), command)) as Body<'a>)
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> Pending<'a, Vec<ObjectMeta>> {
        Box::pin(async move {
            let root = shell_quote(&self.root.to_string_lossy());
            let command = format!(
                "[ -d {root} ] || exit 0; cd {root} && find . -type f ! -name '.*.partial.*' -printf '%P\\t%s\\n'"
            );
            let output = self.host.exec(&command, b"", COMMAND_TIMEOUT).await?;
            if !output.success() {
                return Err(self.failed("list", prefix, output.stderr_text().trim().to_owned()));
            }
            let mut objects: Vec<ObjectMeta> = output
                .stdout_text()
                .lines()
                .filter_map(|line| line.split_once('\t'))
                .filter(|(name, _)| name.starts_with(prefix) && check_name(name).is_ok())
                .filter_map(|(name, size)| Some(ObjectMeta { name: name.to_owned(), size: size.parse().ok()? }))
                .collect();
            objects.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(objects)
        })
    }

    fn stat<'a>(&'a self, name: &'a str) -> Pending<'a, Option<ObjectMeta>> {
        Box::pin(async move {
            let path = self.path(name)?;
            let output =
                self.host.exec(&format!("[ -f {path} ] || exit 3; stat -c %s {path}"), b"", COMMAND_TIMEOUT).await?;
            match output.status {
                0 => {
                    Ok(output.stdout_text().trim().parse().ok().map(|size| ObjectMeta { name: name.to_owned(), size }))
                }
                3 => Ok(None),
                _ => Err(self.failed("stat", name, output.stderr_text().trim().to_owned())),
            }
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> Pending<'a, ()> {
        Box::pin(async move {
            let path = self.path(name)?;
            let output = self.host.exec(&format!("rm -f {path}"), b"", COMMAND_TIMEOUT).await?;
            if output.success() {
                Ok(())
            } else {
                Err(self.failed("delete", name, output.stderr_text().trim().to_owned()))
            }
        })
    }
}

/// Removes an upload's partial file unless the upload got to its rename
/// (an error, or the `put` dropped half-way), in a task of its own.
struct RemoveOnDrop {
    host: Option<Arc<dyn Remote>>,
    /// Quoted.
    partial: String,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(host) = self.host.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let command = format!("rm -f {}", self.partial);
            runtime.spawn(async move {
                let _ = host.exec(&command, b"", COMMAND_TIMEOUT).await;
            });
        }
    }
}

/// A command's stdout as a reader: the command runs in its own task,
/// writing into one end of a pipe this reads from. At the end of the
/// output the command's exit is checked, so a command that fails half-way
/// is a read error, never a silently short object.
pub struct CommandReader {
    pipe: tokio::io::DuplexStream,
    task: Option<JoinHandle<Result<StreamOutput, TransportError>>>,
}

impl CommandReader {
    pub fn spawn(host: Arc<dyn Remote>, command: String) -> Self {
        let (mut writer, pipe) = tokio::io::duplex(crate::transport::STREAM_CHUNK * 4);
        let task = tokio::spawn(async move {
            let mut stdin = tokio::io::empty();
            host.exec_stream(&command, &mut stdin, &mut writer, TRANSFER_TIMEOUT).await
        });
        CommandReader { pipe, task: Some(task) }
    }
}

impl AsyncRead for CommandReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.pipe).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {}
            other => return other,
        }
        // The pipe ended: the writer (the command's task) is done.
        let Some(task) = self.task.as_mut() else { return Poll::Ready(Ok(())) };
        let joined = std::task::ready!(Pin::new(task).poll(cx));
        self.task = None;
        let failure = match joined {
            Ok(Ok(output)) if output.success() => return Poll::Ready(Ok(())),
            Ok(Ok(output)) => format!("the command failed: {}", output.stderr_text().trim()),
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        Poll::Ready(Err(std::io::Error::other(failure)))
    }
}
