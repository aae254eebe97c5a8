//! The `pgfleet` binary: the command line, with panics reported as internal
//! errors (exit 4) instead of Rust's "thread 'main' panicked" message.

fn main() -> std::process::ExitCode {
    pgfleet::exit::install_panic_hook();
    pgfleet::exit::run_guarded(pgfleet::cli::run).into()
}
