//! The bridges between the zip format (the `zip` crate, synchronous, run on
//! a blocking thread) and pgfleet's asynchronous streams: the archive's
//! bytes go to an upload through a bounded channel, hashed on the way; an
//! archive in a storage is read back by ranges as a `Read + Seek`.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::storage::{Body, Storage};

/// Chunks in flight between the zip writer and the upload.
const CHANNEL_CHUNKS: usize = 8;
/// What the writer gathers before handing a chunk to the upload.
pub const CHUNK: usize = 256 * 1024;
/// What one ranged read of an archive fetches.
const WINDOW: u64 = 8 * 1024 * 1024;

/// The archive's bytes on their way to the upload: hashed and counted,
/// then sent through a bounded channel (the upload's pace holds the
/// writer back).
pub struct ChannelWriter {
    sender: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
    hasher: Sha256,
    bytes: u64,
}

/// A channel's writing end and the upload body reading from it.
pub fn channel() -> (ChannelWriter, Body<'static>) {
    let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let writer = ChannelWriter { sender, buffer: Vec::with_capacity(CHUNK), hasher: Sha256::new(), bytes: 0 };
    (writer, Box::new(tokio_util::io::StreamReader::new(stream)))
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK)));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    /// Ends the body cleanly; returns the archive's sha256 and size.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        self.send()?;
        Ok((super::manifest::digest_text(self.hasher.clone().finalize().as_slice()), self.bytes))
    }

    /// Ends the body with an error, so the upload fails and publishes
    /// nothing.
    pub fn fail(self, reason: &str) {
        let _ = self.sender.blocking_send(Err(io::Error::other(reason.to_owned())));
    }

    /// A handle the zip writer can own while this end keeps the right to
    /// fail or finish the body.
    pub fn shared(self) -> Shared {
        Shared(Arc::new(std::sync::Mutex::new(Some(self))))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A `ChannelWriter` shared between the zip writer (which writes through
/// it, and on drop may try to finish the archive) and the code that
/// decides whether the body ends well (`finish`) or with an error (`fail`).
#[derive(Clone)]
pub struct Shared(Arc<std::sync::Mutex<Option<ChannelWriter>>>);

impl Shared {
    pub fn finish(&self) -> io::Result<(String, u64)> {
        let writer = self.0.lock().map_err(|_| io::Error::other("poisoned"))?.take();
        writer.ok_or_else(|| io::Error::other("the archive was already ended"))?.finish()
    }

    pub fn fail(&self, reason: &str) {
        if let Ok(mut writer) = self.0.lock()
            && let Some(writer) = writer.take()
        {
            writer.fail(reason);
        }
    }
}

impl Write for Shared {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self.0.lock().map_err(|_| io::Error::other("poisoned"))?.as_mut() {
            Some(writer) => writer.write(bytes),
            // Ended (failed): whatever the zip writer still writes goes nowhere.
            None => Err(io::Error::new(io::ErrorKind::BrokenPipe, "the archive was ended")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An object in a storage as a `Read + Seek`, fetched a window at a time
/// by ranged reads. Used on a blocking thread (it blocks on the runtime).
pub struct StorageReader {
    storage: Arc<dyn Storage>,
    name: String,
    size: u64,
    position: u64,
    window: Vec<u8>,
    window_start: u64,
    handle: Handle,
}

impl StorageReader {
    pub fn new(storage: Arc<dyn Storage>, name: String, size: u64, handle: Handle) -> Self {
        StorageReader { storage, name, size, position: 0, window: Vec::new(), window_start: 0, handle }
    }

    fn fetch(&mut self) -> io::Result<()> {
        let end = self.size.min(self.position + WINDOW);
        let (storage, name, start) = (self.storage.clone(), self.name.clone(), self.position);
        let mut window = std::mem::take(&mut self.window);
        window.clear();
        let window = self.handle.block_on(async move {
            let mut body = storage.get(&name, Some(start..end)).await.map_err(io::Error::other)?;
            tokio::io::AsyncReadExt::read_to_end(&mut body, &mut window).await?;
            if window.len() as u64 != end - start {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a ranged read came back short"));
            }
            Ok::<_, io::Error>(window)
        })?;
        self.window = window;
        self.window_start = start;
        Ok(())
    }
}

impl Read for StorageReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.position >= self.size || buffer.is_empty() {
            return Ok(0);
        }
        let inside = self.position >= self.window_start && self.position < self.window_start + self.window.len() as u64;
        if !inside {
            self.fetch()?;
        }
        let offset = (self.position - self.window_start) as usize;
        let count = buffer.len().min(self.window.len() - offset);
        buffer[..count].copy_from_slice(&self.window[offset..offset + count]);
        self.position += count as u64;
        Ok(count)
    }
}

impl Seek for StorageReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let position = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(offset) => self.size.checked_add_signed(offset),
            SeekFrom::Current(offset) => self.position.checked_add_signed(offset),
        };
        self.position = position.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.position)
    }
}

/// Copies `from` to `to` a chunk at a time, showing every chunk to
/// `observe` (hashers, counters); returns the bytes copied.
pub fn copy_observed(from: &mut dyn Read, to: &mut dyn Write, mut observe: impl FnMut(&[u8])) -> io::Result<u64> {
    let mut buffer = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let count = match from.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        observe(&buffer[..count]);
        to.write_all(&buffer[..count])?;
        total += count as u64;
    }
}
