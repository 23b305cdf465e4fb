//! `ternctl`: the command-line client of ternd's control API. The client itself is the library
//! module `tern_agent::cli`; this is its `main`: parse the command line, run, set the exit code
//! (0 on success, 1 when ternd cannot be reached or refuses, 2 for a command line clap refuses).

use std::process::ExitCode;

use clap::Parser;
use tern_agent::cli::{Cli, run};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
