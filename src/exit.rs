//! Exit codes, shared by every command, and how a bug ends the process.
//!
//! Both `cli` (which maps an outcome to a code) and `ops` (whose commands
//! return one) use this module; it depends on nothing but the printer, so
//! neither of them depends on the other through it.
//!
//! A bug — a panic anywhere, on any thread, or an invariant found broken —
//! ends with [`Exit::Internal`], distinct from every code a user's
//! configuration or hosts can cause, so a pipeline can tell "pgfleet is
//! wrong" from "the fleet is wrong".

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::printer::{ColorChoice, Printer};

/// Exit codes shared by every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success; for `plan`/`drift` with `--detailed-exitcode`: nothing to do.
    Ok = 0,
    /// Invalid configuration, bad usage, or an error before any change.
    Error = 1,
    /// Changes (plan) or drift present, when asked with `--detailed-exitcode`.
    Changes = 2,
    /// Apply stopped part-way; a rerun converges.
    Partial = 3,
    /// A bug in pgfleet (a panic, an invariant broken). Not 101, Rust's
    /// code for an unhandled panic, because non-panic bugs end here too;
    /// not 255, which ssh returns for its own failures and scripts around
    /// pgfleet already test for.
    Internal = 4,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// The exit-code table for `--help` (the README lists the same).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  error (invalid configuration, unreachable host, bad usage)
  2  changes or drift present (plan, drift with --detailed-exitcode)
  3  apply stopped part-way (rerun to converge)
  4  internal error: a bug in pgfleet (please report it)";

/// The help line of every internal error.
pub const REPORT: &str = "this is a bug in pgfleet, not a problem with your configuration or hosts; please report it \
                          with the command you ran and this message (RUST_BACKTRACE=1 adds where it happened)";

/// A panic, as the user sees it.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("internal error: {message} (at {location}, pgfleet {version})")]
#[diagnostic(code(pgfleet::internal), help("{}", REPORT))]
pub struct Panic {
    /// The panic's own message (its payload).
    pub message: String,
    pub location: String,
    pub version: &'static str,
}

/// Set once any thread has panicked: a panic inside a task the runtime
/// caught must still end the command with `Exit::Internal`.
static PANICKED: AtomicBool = AtomicBool::new(false);

/// Whether any thread has panicked so far.
pub fn panicked() -> bool {
    PANICKED.load(Ordering::SeqCst)
}

/// Replaces Rust's panic message ("thread 'main' panicked at …") with an
/// internal-error diagnostic through the printer. The hook only reports;
/// the process unwinds as usual (so child processes are killed and locks
/// released by their guards), and `main` turns the panic into
/// `Exit::Internal`.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        PANICKED.store(true, Ordering::SeqCst);
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|message| (*message).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        let location = info.location().map_or_else(
            || "an unknown place".to_owned(),
            |location| format!("{}:{}", location.file(), location.line()),
        );
        let printer = Printer::new(ColorChoice::Auto);
        printer.error(&Panic { message, location, version: env!("CARGO_PKG_VERSION") });
        // `capture` honours RUST_BACKTRACE, so by default this prints nothing.
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            printer.note(&backtrace.to_string());
        }
    }));
}

/// Runs the command line, turning a panic into `Exit::Internal`.
pub fn run_guarded(run: impl FnOnce() -> Exit + std::panic::UnwindSafe) -> Exit {
    match std::panic::catch_unwind(run) {
        Ok(_) if panicked() => Exit::Internal,
        Ok(exit) => exit,
        Err(_) => Exit::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_ends_with_the_internal_exit_code_and_other_codes_pass_through() {
        assert_eq!(run_guarded(|| panic!("an invariant is broken")), Exit::Internal);
        assert_eq!(run_guarded(|| Exit::Changes), Exit::Changes);
        assert_eq!(ExitCode::from(Exit::Internal), ExitCode::from(4));
    }

    #[test]
    fn a_panic_is_shown_as_an_internal_error_to_report() {
        let panic =
            Panic { message: "slot index out of range".into(), location: "src/x.rs:1".into(), version: "0.1.0" };
        let rendered = crate::printer::render(&panic, false, 100);
        assert!(
            rendered.contains("internal error: slot index out of range (at src/x.rs:1, pgfleet 0.1.0)"),
            "{rendered}"
        );
        assert!(rendered.contains("please report it"), "{rendered}");
        assert!(rendered.contains("pgfleet::internal"), "{rendered}");
    }
}
