//! Where stdout goes is the reader's business: `pgfleet … | head -1` ends
//! quietly with the command's own exit code, and a stdout that cannot be
//! written (a full disk) is reported instead of passing for complete output.

// Tests may unwrap and print: a failure is the report.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::process::{Command, Output, Stdio};

fn pgfleet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pgfleet"))
}

/// Runs `command` with a stdout whose read end is already closed, as after
/// `| head -1` has read its line: every write fails with EPIPE, and no
/// timing decides whether the test means anything.
fn with_closed_stdout(command: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    command.stdout(writer).stderr(Stdio::piped()).output().unwrap()
}

#[test]
fn schema_into_a_closed_pipe_ends_quietly_with_success() {
    let output = with_closed_stdout(pgfleet().arg("schema"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "nothing to say about a reader that left: {stderr}");
}

#[test]
fn plan_into_a_closed_pipe_keeps_its_own_exit_code_and_never_panics() {
    // The sandbox example observes this machine (read-only); whatever it
    // finds, the plan's exit code is its own, never a panic's (101) or an
    // internal error's (4).
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("examples/local.yaml", dir.path().join("pgfleet.yaml")).unwrap();
    let output = with_closed_stdout(pgfleet().args(["plan", "--detailed-exitcode"]).current_dir(dir.path()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("internal error"), "{stderr}");
    assert!(matches!(output.status.code(), Some(0..=2)), "{:?}: {stderr}", output.status);
}

#[test]
fn validate_into_a_full_disk_is_an_error_not_silent_truncation() {
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let output =
        pgfleet().args(["validate", "-f", "examples/local.yaml"]).stdout(full).stderr(Stdio::piped()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write the output to stdout"), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
}
