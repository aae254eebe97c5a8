//! `Remote::exec_stream` on real servers, over SSH (the harness's private
//! sshd) and locally: 64 MiB go through `cat` and `sha256sum` from a
//! generator that never holds more than one chunk, arrive intact, and the
//! process's peak memory grows far less than the payload; a failing
//! command's status and stderr come back; a command that stops reading
//! does not hang the stream; a timeout fires and stops the command.

// Tests may unwrap and print: a failure is the report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use pgfleet::transport::local::Local;
use pgfleet::transport::ssh::{SshError, SshSession};
use pgfleet::transport::{Remote, STREAM_STDERR_LIMIT, TransportError};
use support::SshServer;

const PAYLOAD: u64 = 64 << 20;
const GENEROUS: Duration = Duration::from_secs(120);

/// Produces `remaining` pseudo-random bytes on demand, hashing what it hands
/// out: the payload exists only one read buffer at a time.
struct Generator {
    remaining: u64,
    state: u64,
    digest: Sha256,
}

impl Generator {
    fn new(size: u64) -> Self {
        Generator { remaining: size, state: 0x9e37_79b9_7f4a_7c15, digest: Sha256::new() }
    }

    fn hex(self) -> String {
        hex(self.digest.finalize().as_slice())
    }
}

impl AsyncRead for Generator {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buffer: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let room = buffer.remaining().min(usize::try_from(this.remaining).unwrap_or(usize::MAX));
        let mut chunk = vec![0u8; room];
        for bytes in chunk.chunks_mut(8) {
            // xorshift64: cheap, and nothing a pipe would pass through unchanged by accident.
            this.state ^= this.state << 13;
            this.state ^= this.state >> 7;
            this.state ^= this.state << 17;
            bytes.copy_from_slice(&this.state.to_le_bytes()[..bytes.len()]);
        }
        this.digest.update(&chunk);
        this.remaining -= chunk.len() as u64;
        buffer.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

/// Hashes and counts what it is given, and keeps none of it.
#[derive(Default)]
struct Hasher {
    digest: Sha256,
    bytes: u64,
}

impl AsyncWrite for Hasher {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        self.digest.update(data);
        self.bytes += data.len() as u64;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// This process's peak resident memory (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Resets the peak to the current resident size (Linux: `5` to clear_refs).
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// Tests in this file run on threads of one process, and peak memory is
/// the process's: the tests that measure it take turns.
static MEASURING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Streams the payload through `cat` and `sha256sum` and checks what came
/// back, with the process's peak memory growth well under the payload.
async fn streams_64_mib_intact_in_bounded_memory(remote: &dyn Remote) {
    let _turn = MEASURING.lock().await;
    // The measurement must be able to see a payload held in memory.
    reset_peak_rss();
    let before = peak_rss();
    let held = std::hint::black_box(vec![1u8; (PAYLOAD / 2) as usize]);
    drop(held);
    // (The kernel's count lags by a few pages.)
    assert!(peak_rss() - before >= PAYLOAD / 2 * 3 / 4, "peak memory does not show a held payload");

    reset_peak_rss();
    let before = peak_rss();

    let mut generator = Generator::new(PAYLOAD);
    let mut hasher = Hasher::default();
    let started = Instant::now();
    let output = remote.exec_stream("cat", &mut generator, &mut hasher, GENEROUS).await.unwrap();
    assert!(output.success(), "{output:?}");
    assert_eq!(output.stdout_bytes, PAYLOAD);
    assert_eq!(hasher.bytes, PAYLOAD);
    let sent = generator.hex();
    assert_eq!(hex(hasher.digest.finalize().as_slice()), sent, "cat returned other bytes");
    let cat_took = started.elapsed();

    let mut generator = Generator::new(PAYLOAD);
    let mut printed = Vec::new();
    let output = remote.exec_stream("sha256sum", &mut generator, &mut printed, GENEROUS).await.unwrap();
    assert!(output.success(), "{output:?}");
    let printed = String::from_utf8(printed).unwrap();
    assert_eq!(printed.split_whitespace().next(), Some(generator.hex().as_str()), "the command saw other bytes");

    let growth = peak_rss().saturating_sub(before);
    assert!(growth < PAYLOAD / 4, "peak memory grew by {growth} bytes for a {PAYLOAD}-byte stream");
    eprintln!("{}: 64 MiB through cat in {cat_took:?}; peak memory grew by {} KiB", remote.host(), growth >> 10);
}

/// A command that fails comes back as a status with the end of its stderr,
/// not as an error; the rest of a long stderr is counted, not kept.
async fn failure_comes_back_as_status_and_stderr(remote: &dyn Remote) {
    let mut nothing: &[u8] = b"";
    let mut stdout = Vec::new();
    let output = remote
        .exec_stream(
            "echo partial; echo 'pg_dump: error: no such database' >&2; exit 3",
            &mut nothing,
            &mut stdout,
            GENEROUS,
        )
        .await
        .unwrap();
    assert_eq!(output.status, 3);
    assert_eq!(stdout, b"partial\n");
    assert_eq!(output.stderr_text(), "pg_dump: error: no such database\n");
    assert_eq!(output.stderr_dropped, 0);

    let mut nothing: &[u8] = b"";
    let loud = "head -c 200000 /dev/zero | tr '\\0' e >&2; echo 'the last words' >&2; exit 1";
    let output = remote.exec_stream(loud, &mut nothing, &mut tokio::io::sink(), GENEROUS).await.unwrap();
    assert_eq!(output.status, 1);
    assert_eq!(output.stderr.len(), STREAM_STDERR_LIMIT);
    let stderr = output.stderr_text();
    assert!(stderr.ends_with("eeethe last words\n"), "{:?}", &stderr[stderr.len().saturating_sub(40)..]);
    assert_eq!(output.stderr_dropped, 200_015 - STREAM_STDERR_LIMIT as u64);
}

/// A command that stops reading its input (it exits, or it is `head`)
/// ends the stream; nothing waits for input nobody takes.
async fn a_command_that_stops_reading_ends_the_stream(remote: &dyn Remote) {
    let mut generator = Generator::new(PAYLOAD);
    let mut stdout = Vec::new();
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        remote.exec_stream("head -c 5; exit 4", &mut generator, &mut stdout, GENEROUS),
    )
    .await
    .expect("the stream hung on input nobody reads")
    .unwrap();
    assert_eq!(output.status, 4);
    assert_eq!(stdout.len(), 5);
    assert!(generator.remaining > 0, "the whole input was sent to a command that read 5 bytes of it");
}

/// Runs `sleep` with a 1 s timeout: the timeout error comes back at once.
async fn times_out(remote: &dyn Remote, marker: &str) -> TransportError {
    let mut nothing: &[u8] = b"";
    let started = Instant::now();
    let error = remote
        .exec_stream(&format!("sleep {marker}"), &mut nothing, &mut tokio::io::sink(), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "the timeout took {:?}", started.elapsed());
    error
}

fn running(marker: &str) -> bool {
    std::process::Command::new("pgrep")
        .args(["-f", &format!("sleep {marker}")])
        .output()
        .is_ok_and(|output| output.status.success())
}

async fn ssh_session(server: &SshServer) -> SshSession {
    SshSession::connect("db1", &support::ssh_target(server)).await.unwrap_or_else(|e| panic!("{e}: {}", server.log()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_streams_64_mib_through_cat_and_sha256sum_intact_in_bounded_memory() {
    let server = SshServer::start();
    streams_64_mib_intact_in_bounded_memory(&ssh_session(&server).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_streams_64_mib_through_cat_and_sha256sum_intact_in_bounded_memory() {
    streams_64_mib_intact_in_bounded_memory(&Local::new("here")).await;
}

#[tokio::test]
async fn ssh_stream_of_a_failing_command_returns_its_status_and_the_end_of_its_stderr() {
    let server = SshServer::start();
    failure_comes_back_as_status_and_stderr(&ssh_session(&server).await).await;
}

#[tokio::test]
async fn local_stream_of_a_failing_command_returns_its_status_and_the_end_of_its_stderr() {
    failure_comes_back_as_status_and_stderr(&Local::new("here")).await;
}

#[tokio::test]
async fn ssh_stream_ends_when_the_command_stops_reading_its_input() {
    let server = SshServer::start();
    a_command_that_stops_reading_ends_the_stream(&ssh_session(&server).await).await;
}

#[tokio::test]
async fn local_stream_ends_when_the_command_stops_reading_its_input() {
    a_command_that_stops_reading_ends_the_stream(&Local::new("here")).await;
}

#[tokio::test]
async fn ssh_stream_times_out_and_the_remote_command_is_killed() {
    let server = SshServer::start();
    let session = ssh_session(&server).await;
    let marker = "31.4159";
    let error = times_out(&session, marker).await;
    assert!(
        matches!(error, TransportError::Ssh(SshError::CommandTimeout { ref host, after }) if host == "db1" && after == Duration::from_secs(1)),
        "{error:?}"
    );
    // sshd killed the command's process group when asked to.
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(marker) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!running(marker), "the timed-out command still runs: {}", server.log());
    // The session is still usable.
    let output = session.exec("echo still here", b"", GENEROUS).await.unwrap();
    assert_eq!(output.stdout_text(), "still here\n");
}

#[tokio::test]
async fn local_stream_times_out() {
    // Locally only the direct child (`sh`, or `runuser` as root) is killed
    // on a timeout, so the marker is a sleep that ends by itself soon.
    let error = times_out(&Local::new("here"), "4.5").await;
    assert!(
        matches!(error, TransportError::Timeout { ref host, after } if host == "here" && after == Duration::from_secs(1)),
        "{error:?}"
    );
}
