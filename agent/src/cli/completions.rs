//! `ternctl completions SHELL`: a shell completion script for the whole command line.

use clap::CommandFactory;

use super::Cli;

/// Prints the completion script for `shell` on stdout.
pub(super) fn print(shell: clap_complete::Shell) {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "ternctl",
        &mut std::io::stdout(),
    );
}
