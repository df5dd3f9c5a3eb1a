//! The `switchyard` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    switchyard::cli::run(switchyard::cli::Cli::parse())
}
