//! A client for ThingsDB's HTTP API and its status port.
//!
//! A node answers queries and procedure calls over plain HTTP on its
//! `http_api_port` (usually 9210; off unless configured) and reports its
//! state on `http_status_port` (usually 8080). This is what short-lived
//! programs want: serverless functions, cron jobs, edge workers, programs
//! behind a proxy that only lets HTTP through, and browser pages.
//!
//! [`HttpClient`] feels like [`thingsdb_client::Client`]: `query` with
//! variables, `run` with positional or named arguments, a default scope,
//! password or token credentials, timeouts, results as [`rmpv::Value`] or
//! any serde type, and a node's refusals as the very same
//! [`thingsdb_client::Error`] and [`thingsdb_client::ErrorCode`] values
//! the socket client gives. Requests travel as MessagePack (or JSON with
//! [`Format::Json`]) on kept-alive connections; with several node URLs, a
//! request that cannot connect, or that a node answers `503` (shutting
//! down, or no ready node for it), goes to the next node.
//!
//! [`StatusProbe`] reads `/status`, `/ready` and `/healthy`.
//!
//! ```no_run
//! use thingsdb_client::Auth;
//! use thingsdb_http::HttpClient;
//!
//! # async fn demo() -> Result<(), thingsdb_client::Error> {
//! let client = HttpClient::new("http://localhost:9210", Auth::password("admin", "pass"))?;
//! let n: i64 = client.query("a * b;").scope("//stuff").var("a", &6).var("b", &7).decode().await?;
//! assert_eq!(n, 42);
//! # Ok(()) }
//! ```
//!
//! # The node's quirks (ThingsDB 1.9.2)
//!
//! - A query that raises a custom error (`raise(err(-100, "x"))`, codes
//!   -100 to -127) makes the node close the connection without any answer.
//!   The client reports it at once as [`thingsdb_client::Error::ConnectionLost`]
//!   with [`thingsdb_client::LostReason::ClosedByPeer`] and a message that
//!   says so; it is never resent.
//! - `Content-Type` is compared as a whole string, so the client sends
//!   exactly `application/msgpack` or `application/json` (with
//!   `; charset=utf-8` a node answers `415`).
//! - A node reads a body only with a `Content-Length`; the client always
//!   sends one (never chunked).
//! - The HTTP API sends no CORS headers and answers `OPTIONS` with `405`:
//!   a browser page can only use it from the node's own origin, or through
//!   a proxy that adds the CORS headers (see the crate's README).
//!
//! # The HTTP stack
//!
//! [`reqwest`] (HTTP/1.1 only): natively it is hyper with hyper-util's
//! keep-alive pool and rustls (with the workspace's `ring` provider and
//! the transport crate's `TlsOptions`),
//! and on `wasm32` the browser's `fetch`, behind one API. hyper-util alone
//! would need a second, hand-made path for the browser.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod reply;
mod request;
mod status;

pub use client::{scope_path, HttpClient, HttpClientBuilder, DEFAULT_TIMEOUT};
pub use reply::{parse_error_body, status_error, Format};
pub use request::{Query, Run};
pub use status::{parse_status, NodeState, StatusProbe};

pub use thingsdb_client::{Auth, Error, ErrorCode, Scope, ThingsdbError};
