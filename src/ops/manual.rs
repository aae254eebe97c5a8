//! `pgfleet completions SHELL` and `pgfleet man`: the shell completion
//! script and the manual page, generated from the command line's own
//! definition (handed in by `cli`, so the two never disagree with
//! `--help`).

use super::{Error, Outcome};
use crate::exit::Exit;
use crate::printer::Printer;

/// The completion script for `shell`.
pub fn completions(printer: &Printer, mut command: clap::Command, shell: clap_complete::Shell) -> Outcome {
    let name = command.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    printer.out(&String::from_utf8_lossy(&script));
    Ok(Exit::Ok)
}

/// The manual page, in roff: synopsis, description, global options,
/// the subcommands with what each does, exit codes, version.
pub fn man(printer: &Printer, command: clap::Command) -> Outcome {
    let mut page = Vec::new();
    clap_mangen::Man::new(command).render(&mut page).map_err(|source| Error::Manual { source })?;
    printer.out(&String::from_utf8_lossy(&page));
    Ok(Exit::Ok)
}
