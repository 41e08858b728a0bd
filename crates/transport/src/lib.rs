//! Frame transports for ThingsDB.
//!
//! One trait, [`Transport`], over every way into a node: TCP, TLS over TCP,
//! WebSocket, secure WebSocket and Unix sockets. A transport moves whole
//! packages ([`thingsdb_protocol::Frame`]) and knows nothing of queries.
//!
//! ```no_run
//! use bytes::BytesMut;
//! use thingsdb_protocol::request;
//! use thingsdb_transport::{connect, ConnectOptions, Target};
//!
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let target: Target = "ws://localhost:9270".parse()?;
//! let (mut tx, mut rx) = connect(&target, &ConnectOptions::default()).await?.split();
//! let mut out = BytesMut::new();
//! request::encode_query(&mut out, 1, "@t", "1 + 1;", None)?;
//! tx.send(out.freeze()).await?;
//! let reply = rx.recv().await?;
//! # Ok(()) }
//! ```
//!
//! | module | what |
//! |---|---|
//! | [`target`] | [`Target`]: `host:port`, `thingsdb://`, `thingsdbs://`, `ws://`, `wss://`, `unix:` |
//! | [`connect`](mod@connect) | [`connect`](fn@connect) and [`ConnectOptions`] |
//! | [`tls`] | [`TlsOptions`]: which certificates to trust |
//! | [`transport`] | the [`Transport`] trait and its halves |
//! | [`stream`] | [`from_stream`]: the same framing over any byte stream |
//!
//! Sending takes a [`bytes::Bytes`] of one or more whole packages: a
//! caller with several queued passes them at once, and a stream transport
//! writes them with one system call. Receiving reuses one buffer and hands
//! out frames whose payloads share it. `TCP_NODELAY` is set, so a lone
//! request is never held back.
#![cfg_attr(docsrs, feature(doc_cfg))]

// In a browser (wasm32) the only way in is the page's WebSocket.
#[cfg(target_arch = "wasm32")]
pub mod browser;
#[cfg(not(target_arch = "wasm32"))]
pub mod connect;
pub mod error;
mod frames;
#[cfg(not(target_arch = "wasm32"))]
pub mod stream;
pub mod target;
#[cfg(not(target_arch = "wasm32"))]
pub mod tls;
pub mod transport;
#[cfg(not(target_arch = "wasm32"))]
mod ws;

#[cfg(not(target_arch = "wasm32"))]
pub use connect::{connect, ConnectOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_PAYLOAD};
pub use error::Error;
#[cfg(not(target_arch = "wasm32"))]
pub use stream::from_stream;
pub use target::{Target, DEFAULT_PORT, DEFAULT_WS_PORT};
#[cfg(not(target_arch = "wasm32"))]
pub use tls::TlsOptions;
pub use transport::{Connection, FrameRecv, FrameSend, Transport, TransportKind};
