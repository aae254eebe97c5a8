//! What a terminal shows while pgfleet works: `status --watch` redrawn in
//! place (one report per round into a pipe), and a base backup's bytes as
//! they are copied.

// Tests may unwrap: a failure is the report.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::fleet::{Fleet, text};

const CLEAR: &str = "\u{1b}[H\u{1b}[2J";

/// Runs a shell command on a pseudo-terminal (`script`), in the fleet's
/// directory; its output is what the terminal showed.
fn on_terminal(fleet: &Fleet, command: &str) -> std::process::Output {
    Command::new("script")
        .args(["-q", "-e", "-c", command, "/dev/null"])
        .current_dir(fleet.dir())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn status_watch_redraws_in_place_on_a_terminal_and_appends_into_a_pipe() {
    // Nothing built: the report says the primary is stopped, every round.
    let fleet = Fleet::local();
    fleet.write_config(&[]);

    // A terminal: `script` gives the command a pseudo-terminal for stdout.
    let command = format!(
        "PGFLEET_TEST_REPLICATION_PASSWORD=x timeout -s INT 4 {} status --watch --interval 1s",
        env!("CARGO_BIN_EXE_pgfleet")
    );
    let terminal = on_terminal(&fleet, &command);
    let shown = text(&terminal.stdout);
    let redraws = shown.matches(CLEAR).count();
    assert!(redraws >= 2, "each round clears the screen first: {shown:?}");
    assert_eq!(shown.matches("shop (checked").count(), redraws, "{shown:?}");

    // A pipe: reports one after the other, no control characters.
    let mut piped = fleet.command(&["status", "--watch", "--interval", "1s"]).stdout(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    let _ = piped.kill();
    let output = piped.wait_with_output().unwrap();
    let written = text(&output.stdout);
    assert!(written.matches("shop (checked").count() >= 2, "{written}");
    assert!(!written.contains('\u{1b}'), "{written:?}");
}

#[test]
fn a_base_backup_shows_its_bytes_copied_on_a_terminal() {
    let fleet = Fleet::local();
    fleet.primary_with_ballast();
    fleet.superuser_sql("INSERT INTO ballast SELECT g, repeat('y', 200) FROM generate_series(300001, 900000) g");
    fleet.write_config(&["r1"]);
    let command = format!(
        "PGFLEET_TEST_REPLICATION_PASSWORD={} {} apply --auto-approve",
        support::fleet::REPLICATION_PASSWORD,
        env!("CARGO_BIN_EXE_pgfleet")
    );
    let terminal = on_terminal(&fleet, &command);
    let shown = text(&terminal.stdout);
    assert!(terminal.status.success(), "{shown}");
    let progress = shown
        .split(['\r', '\n'])
        .find(|line| line.contains("shop.replica.r1") && line.contains("copied of"))
        .unwrap_or_else(|| panic!("no bytes shown during the base backup: {shown:?}"));
    assert!(progress.contains("MB"), "{progress}");
    assert_eq!(fleet.streaming(), "r1=streaming");
}
