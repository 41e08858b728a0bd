//! The CLI over HTTP: `--http URL` runs a query or a procedure through a
//! node's HTTP API (no prompt, no rooms there), and `thingsdb status URL`
//! reads a node's status port and exits 0 or 1, like a readiness probe.

use std::time::Duration;

use rmpv::Value;
use thingsdb_client::{Auth, Scope};
use thingsdb_http::{HttpClient, StatusProbe};

use crate::args::{Cli, Probe};
use crate::commands::{print_value, Task};
use crate::error::CliError;
use crate::output::Format;

/// Runs `task` through the HTTP API at `urls` (comma-separated).
pub fn run(
    cli: &Cli,
    urls: &str,
    auth: Auth,
    task: Task,
    scope: &Scope,
    vars: &Value,
    format: Format,
) -> Result<(), CliError> {
    let mut b = HttpClient::builder().auth(auth);
    for u in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        b = b.url(u).map_err(|e| CliError::Usage(e.to_string()))?;
    }
    if let Some(t) = cli.timeout {
        b = b.timeout(Duration::from_secs_f64(t));
    }
    let client = b.build().map_err(|e| CliError::Usage(e.to_string()))?;
    let rt = runtime()?;
    let value = match task {
        Task::Query(code) => rt.block_on(async {
            let q = client.query(&code).scope(scope.as_str());
            match vars {
                Value::Map(pairs) if !pairs.is_empty() => q.vars(vars).await,
                _ => q.await,
            }
        }),
        Task::Run { procedure, args } => rt.block_on(async {
            let r = client.run(&procedure).scope(scope.as_str());
            match &args {
                Some(a) => r.args(a).await,
                None => r.await,
            }
        }),
        _ => {
            return Err(CliError::Usage(
                "over --http only queries (-q, -f, standard input) and `run` work: the HTTP API has no prompt, rooms, export or import"
                    .into(),
            ))
        }
    };
    match value {
        Ok(v) => print_value(&v, format),
        // As over a socket: refused credentials are a connection problem
        // (exit status 2), not a refused query.
        Err(e) if e.code() == Some(thingsdb_client::ErrorCode::Auth) => Err(CliError::Connect {
            targets: urls.to_string(),
            source: e,
        }),
        Err(e) => Err(e.into()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the async runtime: {e}")))
}

/// The probe a status URL names by its path (`.../ready`), and the URL
/// without it; other URLs keep `probe`.
fn split_probe(url: &str, probe: Probe) -> (&str, Probe) {
    let trimmed = url.trim_end_matches('/');
    for (suffix, p) in [
        ("/status", Probe::Status),
        ("/ready", Probe::Ready),
        ("/healthy", Probe::Healthy),
    ] {
        if let Some(base) = trimmed.strip_suffix(suffix) {
            if base.contains("://") && base.rsplit("://").next().is_some_and(|h| !h.is_empty()) {
                return (base, p);
            }
        }
    }
    (url, probe)
}

/// `thingsdb status URL`: prints what the node's status port says and
/// succeeds when it is good (`/status`: 200, `/ready`: OK, `/healthy`:
/// OK); [`CliError::Probe`] (exit status 1) otherwise, also when the port
/// cannot be reached.
pub fn status(url: &str, probe: Probe, timeout: Option<f64>) -> Result<(), CliError> {
    let (base, probe) = split_probe(url, probe);
    let mut p = StatusProbe::new(base).map_err(|e| CliError::Probe(e.to_string()))?;
    if let Some(t) = timeout {
        p = p.timeout(Duration::from_secs_f64(t));
    }
    let rt = runtime()?;
    let (word, good) = rt
        .block_on(async {
            match probe {
                Probe::Status => p.status().await.map(|s| (s.as_str(), s.is_up())),
                Probe::Ready => p
                    .ready()
                    .await
                    .map(|ok| (if ok { "OK" } else { "NOK" }, ok)),
                Probe::Healthy => p
                    .healthy()
                    .await
                    .map(|ok| (if ok { "OK" } else { "NOK" }, ok)),
            }
        })
        .map_err(|e| CliError::Probe(format!("{base}: {e}")))?;
    println!("{word}");
    if good {
        Ok(())
    } else {
        Err(CliError::Probe(format!("{base} is not {}", probe.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_paths_in_the_url_choose_the_probe() {
        assert_eq!(
            split_probe("http://h:8080/ready", Probe::Status),
            ("http://h:8080", Probe::Ready)
        );
        assert_eq!(
            split_probe("http://h:8080/healthy/", Probe::Ready),
            ("http://h:8080", Probe::Healthy)
        );
        assert_eq!(
            split_probe("http://h:8080/status", Probe::Ready),
            ("http://h:8080", Probe::Status)
        );
        assert_eq!(
            split_probe("http://h:8080", Probe::Healthy),
            ("http://h:8080", Probe::Healthy)
        );
    }
}
