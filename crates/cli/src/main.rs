#![doc = include_str!("../README.md")]
//!
//! # The code
//!
//! See `thingsdb --help`. The work is split so that it can be tested:
//! [`args`] is the command line, [`commands`] what each invocation does,
//! [`repl`] the interactive prompt (with [`lexer`], [`highlight`],
//! [`complete`] and the [`functions`] table for colours and Tab
//! completion), [`output`] how values are printed as JSON, [`types`] a collection's
//! types (as Rust, too), and [`error`]
//! how failures are reported and which exit status they give.

mod args;
mod commands;
mod complete;
mod error;
mod functions;
mod highlight;
mod http;
mod lexer;
mod output;
mod repl;
mod types;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    init_logging();
    match commands::execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Log messages (of the client: reconnects, dropped connections) go to
/// standard error; `RUST_LOG` sets the level (default `warn`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
