//! The status port (`http_status_port`, usually 8080): `/status`,
//! `/ready` and `/healthy`, as a readiness or liveness probe reads them.
//!
//! A node answers `GET` only, one request per connection, with `text/plain`
//! bodies (`src/ti/web.c`): `/status` (and `/`) give `READY`, `AWAY` or
//! `SYNCHRONIZING` with `200`, or `503 NOK`; `/ready` gives `200 OK` when
//! the node takes requests (ready or away) and `503 NOK` otherwise;
//! `/healthy` always `200 OK`.

use std::time::Duration;

use thingsdb_client::Error;

use crate::client::{base_url, exchange, Attempt};

/// What `/status` says about a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NodeState {
    /// `READY`: the node takes requests.
    Ready,
    /// `AWAY`: the node is busy with its turn of cleaning up and storing,
    /// and forwards requests to other nodes.
    Away,
    /// `SYNCHRONIZING`: the node is catching up with the cluster.
    Synchronizing,
    /// `503 NOK`: starting, connecting, shutting down, or offline.
    Unavailable,
}

impl NodeState {
    /// The word a node writes (`NOK` for [`NodeState::Unavailable`]).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ready => "READY",
            NodeState::Away => "AWAY",
            NodeState::Synchronizing => "SYNCHRONIZING",
            NodeState::Unavailable => "NOK",
        }
    }

    /// Whether the node answered `200` (ready, away or synchronizing).
    pub fn is_up(self) -> bool {
        self != NodeState::Unavailable
    }
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads a `/status` answer.
///
/// ```
/// use thingsdb_http::{parse_status, NodeState};
/// assert_eq!(parse_status(200, b"READY\n").unwrap(), NodeState::Ready);
/// assert_eq!(parse_status(503, b"NOK\n").unwrap(), NodeState::Unavailable);
/// assert!(parse_status(404, b"NOT FOUND\n").is_err());
/// ```
pub fn parse_status(status: u16, body: &[u8]) -> Result<NodeState, Error> {
    let word = String::from_utf8_lossy(body);
    let word = word.trim_end();
    match (status, word) {
        (200, "READY") => Ok(NodeState::Ready),
        (200, "AWAY") => Ok(NodeState::Away),
        (200, "SYNCHRONIZING") => Ok(NodeState::Synchronizing),
        (503, _) => Ok(NodeState::Unavailable),
        _ => Err(unexpected(status, word)),
    }
}

fn unexpected(status: u16, body: &str) -> Error {
    Error::Transport(crate::reply::http_error(format!(
        "not a ThingsDB status answer: HTTP {status} {body:?}"
    )))
}

/// A client for a node's status port.
///
/// ```no_run
/// # async fn demo() -> Result<(), thingsdb_client::Error> {
/// use thingsdb_http::{NodeState, StatusProbe};
/// let probe = StatusProbe::new("http://localhost:8080")?;
/// assert_eq!(probe.status().await?, NodeState::Ready);
/// assert!(probe.ready().await?);
/// assert!(probe.healthy().await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StatusProbe {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
}

impl StatusProbe {
    /// A probe for the status port at `url` (`http://host:8080`), with a
    /// 10 s timeout.
    pub fn new(url: &str) -> Result<StatusProbe, Error> {
        #[cfg(not(target_arch = "wasm32"))]
        let builder = reqwest::Client::builder()
            .tls_backend_preconfigured(
                (*thingsdb_transport::TlsOptions::default().client_config()?).clone(),
            )
            .http1_only()
            .no_proxy()
            // The node closes the connection after each answer.
            .pool_max_idle_per_host(0);
        #[cfg(target_arch = "wasm32")]
        let builder = reqwest::Client::builder();
        Ok(StatusProbe {
            http: builder.build().map_err(|e| {
                Error::Transport(
                    crate::reply::http_error(format!("cannot set up the HTTP client: {e}"))
                        .with_source(e),
                )
            })?,
            base: base_url(url)?,
            timeout: Duration::from_secs(10),
        })
    }

    /// The time each probe may take (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `GET path`: the status and the body.
    async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), Error> {
        let req = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(self.timeout);
        match exchange(req, self.timeout).await {
            Ok((status, _, body)) => Ok((status, body.to_vec())),
            Err(Attempt::NotSent(e) | Attempt::Failed(e)) => Err(e),
        }
    }

    /// `GET /status`: the node's state.
    pub async fn status(&self) -> Result<NodeState, Error> {
        let (status, body) = self.get("/status").await?;
        parse_status(status, &body)
    }

    /// `GET /ready`: whether the node takes requests (`200 OK`) or not
    /// (`503 NOK`).
    pub async fn ready(&self) -> Result<bool, Error> {
        self.ok_or_nok("/ready").await
    }

    /// `GET /healthy`: whether the node's process answers (`200 OK`).
    pub async fn healthy(&self) -> Result<bool, Error> {
        self.ok_or_nok("/healthy").await
    }

    async fn ok_or_nok(&self, path: &str) -> Result<bool, Error> {
        let (status, body) = self.get(path).await?;
        match status {
            200 => Ok(true),
            503 => Ok(false),
            _ => Err(unexpected(
                status,
                String::from_utf8_lossy(&body).trim_end(),
            )),
        }
    }
}
