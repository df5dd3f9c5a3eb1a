//! The `switchyard` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

// mimalloc: the request path allocates many small short-lived buffers; glibc's malloc/free were
// about 15% of the gateway's CPU under load in `perf record` (README, Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    switchyard::cli::run(switchyard::cli::Cli::parse())
}
