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
    let watching = matches!(cli.command, Some(args::Command::Watch { .. }));
    init_logging(cli.verbose, watching);
    match commands::execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Log messages of the client go to standard error; `RUST_LOG` sets the
/// filter, else [`log_filter`] does.
fn init_logging(verbose: bool, watching: bool) {
    use tracing_subscriber::fmt::format::FmtSpan;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_filter(verbose, watching)));
    // With --verbose every span is printed as it closes: a request with
    // its fields and the time it took, a connect, a move.
    let spans = if verbose {
        FmtSpan::CLOSE
    } else {
        FmtSpan::NONE
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(spans)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// What is logged: warnings; with `--verbose` the connection's life and
/// every request (see `thingsdb_client::observe`); while watching a room,
/// the connection's life (connected, lost, moved, stopped).
fn log_filter(verbose: bool, watching: bool) -> String {
    use thingsdb_client::observe::{LIFECYCLE, REQUESTS};
    if verbose {
        format!("warn,{LIFECYCLE}=info,{REQUESTS}=info")
    } else if watching {
        format!("warn,{LIFECYCLE}=info")
    } else {
        "warn".into()
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn verbose_shows_requests_and_watch_the_lifecycle() {
        assert_eq!(log_filter(false, false), "warn");
        let watch = log_filter(false, true);
        assert!(watch.contains("thingsdb_client::lifecycle=info"));
        assert!(!watch.contains("request"));
        let verbose = log_filter(true, false);
        assert!(verbose.contains("thingsdb_client::request=info"));
        assert!(verbose.contains("thingsdb_client::lifecycle=info"));
        assert_eq!(log_filter(true, true), verbose);
    }
}
