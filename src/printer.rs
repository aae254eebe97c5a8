//! The one place that writes to stdout and stderr: data to stdout, progress
//! and diagnostics to stderr, colour only on a terminal and never with
//! `NO_COLOR`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;

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

    /// Data: the output of a command, for pipes and files.
    pub fn out(&self, text: &str) {
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
    }

    /// A line for the person at the terminal.
    pub fn note(&self, text: &str) {
        eprintln!("{text}");
    }

    /// A diagnostic, with its source snippet when it has one.
    pub fn error(&self, diagnostic: &dyn Diagnostic) {
        eprint!("{}", render(diagnostic, self.color, self.width));
    }
}

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
