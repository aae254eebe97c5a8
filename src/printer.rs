//! The one place that writes to stdout and stderr: data to stdout, progress
//! and diagnostics to stderr, colour only on a terminal and never with
//! `NO_COLOR`.
//!
//! Writes never panic. A closed stdout (`pgfleet plan | head -1`) is not an
//! error: like cargo, which drops its output's write errors, the command
//! goes on and ends with its own exit code — an `apply` must not stop
//! half-way, nor a `plan --detailed-exitcode` lose its 2, because a reader
//! went away. Loops that only produce output (`status --watch`, `monitor`)
//! ask [`Printer::stdout_closed`] and stop. Any other failure to write data
//! (a full disk behind `> plan.json`) is kept for the CLI edge to report,
//! since silently truncated data would pass for complete.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme};

/// Width diagnostics are wrapped at when stderr is not a terminal, so
/// captured output is the same everywhere.
pub const PLAIN_WIDTH: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone)]
pub struct Printer {
    color: bool,
    /// Colour for data on stdout (only when stdout is a terminal).
    color_out: bool,
    width: usize,
}

impl Printer {
    pub fn new(choice: ColorChoice) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && !no_color,
        };
        let color_out = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => std::io::stdout().is_terminal() && !no_color,
        };
        let width = if terminal { terminal_width().unwrap_or(PLAIN_WIDTH) } else { PLAIN_WIDTH };
        Printer { color, color_out, width }
    }

    /// Whether data written to stdout may carry colour.
    pub fn color_out(&self) -> bool {
        self.color_out
    }

    /// Whether stdout is a terminal (a watch redraws in place there).
    pub fn stdout_is_terminal(&self) -> bool {
        std::io::stdout().is_terminal()
    }

    /// Data: the output of a command, for pipes and files.
    pub fn out(&self, text: &str) {
        if STDOUT_CLOSED.load(Ordering::Relaxed) {
            return;
        }
        let newline = if text.ends_with('\n') { "" } else { "\n" };
        let mut stdout = std::io::stdout().lock();
        let written = stdout.write_all(text.as_bytes()).and_then(|()| stdout.write_all(newline.as_bytes()));
        // Data is read by pipes and files: push it out now, so a reader
        // sees each event line as it happens and a failure shows up here.
        if let Err(error) = written.and_then(|()| stdout.flush()) {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            if error.kind() != std::io::ErrorKind::BrokenPipe
                && let Ok(mut failure) = STDOUT_FAILURE.lock()
            {
                failure.get_or_insert(error);
            }
        }
    }

    /// Whether stdout has gone away (its reader closed it, or writing
    /// failed): output written from now on is dropped.
    pub fn stdout_closed(&self) -> bool {
        STDOUT_CLOSED.load(Ordering::Relaxed)
    }

    /// The first failure to write data other than a closed pipe, taken
    /// once, for the CLI edge to report.
    pub fn take_stdout_failure(&self) -> Option<std::io::Error> {
        STDOUT_FAILURE.lock().ok().and_then(|mut failure| failure.take())
    }

    /// A line for the person at the terminal. A closed stderr leaves
    /// nowhere to say anything, so a failed write is dropped.
    pub fn note(&self, text: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }

    /// A diagnostic, with its source snippet when it has one.
    pub fn error(&self, diagnostic: &dyn Diagnostic) {
        let _ = write!(std::io::stderr().lock(), "{}", render(diagnostic, self.color, self.width));
    }
}

/// Stdout is process-wide, so is what is known about it (every `Printer`
/// clone, and the panic hook's own printer, share it).
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDOUT_FAILURE: Mutex<Option<std::io::Error>> = Mutex::new(None);

/// Renders a diagnostic the way the CLI shows it (used by snapshot tests
/// with colour off).
pub fn render(diagnostic: &dyn Diagnostic, color: bool, width: usize) -> String {
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(width).with_links(false);
    let mut rendered = String::new();
    if handler.render_report(&mut rendered, diagnostic).is_err() {
        rendered = format!("Error: {diagnostic}\n");
    }
    rendered
}

fn terminal_width() -> Option<usize> {
    std::env::var("COLUMNS").ok()?.parse().ok()
}

/// ANSI styles for data written to stdout (the plan's marks and diffs).
/// Whether to use them is the printer's decision (`color_out`); this only
/// knows how.
#[derive(Debug, Clone, Copy)]
pub struct Palette {
    pub on: bool,
}

impl Palette {
    pub fn paint(&self, code: &str, text: &str) -> String {
        if self.on { format!("\u{1b}[{code}m{text}\u{1b}[0m") } else { text.to_owned() }
    }
}
