//! `status --watch`: redrawn in place on a terminal, one report per round
//! into a pipe.

// Tests may unwrap: a failure is the report.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::fleet::{Fleet, text};

const CLEAR: &str = "\u{1b}[H\u{1b}[2J";

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
    let terminal = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .current_dir(fleet.dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
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
