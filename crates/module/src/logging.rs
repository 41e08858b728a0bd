//! Logging to stderr, which the node copies into its own log.

use tracing_subscriber::EnvFilter;

/// The environment variable read for the log filter (`tracing`'s
/// `EnvFilter` syntax, for example `info` or `kvcache=debug`), falling back
/// to `RUST_LOG` and then to `info`.
pub const LOG_ENV: &str = "THINGSDB_MODULE_LOG";

/// Installs a `tracing` subscriber writing plain lines (no colours) to
/// stderr, filtered by [`LOG_ENV`] or `RUST_LOG` (default `info`).
///
/// A module must never write anything but packages to stdout: a stray
/// `println!` would be read by the node as a broken package header, after
/// which it stops reading the module's answers. Log through `tracing` (or
/// `eprintln!`) instead.
///
/// Fails if a global subscriber is already installed (the module's own
/// choice then stays in force).
///
/// ```
/// let _ = thingsdb_module::init_logging();
/// tracing::info!("started");
/// ```
pub fn init_logging() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let filter = std::env::var(LOG_ENV)
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "info".to_owned());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(EnvFilter::try_new(filter)?)
        .try_init()
}
