#![doc = include_str!("../README.md")]
//!
//! # Where things are
//!
//! | module | what |
//! |---|---|
//! | [`target`] | [`Target`]: `host:port`, `thingsdb://`, `thingsdbs://`, `ws://`, `wss://`, `unix:` |
//! | [`connect`](mod@connect) | [`connect`](fn@connect) and [`ConnectOptions`] |
//! | [`tls`] | [`TlsOptions`]: which certificates to trust |
//! | [`transport`] | [`Connection`], [`FrameReader`], [`FrameWriter`], [`TransportKind`] |
//!
//! Sending takes a [`bytes::Bytes`] of one or more whole packages: a
//! caller with several queued passes them at once, and a stream transport
//! writes them with one system call. Receiving reuses one buffer and hands
//! out frames whose payloads share it. `TCP_NODELAY` is set, so a lone
//! request is never held back; on Linux `TCP_QUICKACK` is re-armed after
//! each read, so the node's second small package is not held back either
//! (see [`ConnectOptions::tcp_quickack`]).
#![cfg_attr(docsrs, feature(doc_cfg))]
// The crate documentation describes the native build; in a browser build
// its links to native-only items (TLS, Unix sockets) have no target.
#![cfg_attr(target_arch = "wasm32", allow(rustdoc::broken_intra_doc_links))]

mod common;
#[cfg(not(target_arch = "wasm32"))]
pub mod connect;
pub mod error;
mod frames;
#[cfg(not(target_arch = "wasm32"))]
mod stream;
pub mod target;
#[cfg(not(target_arch = "wasm32"))]
pub mod tls;
#[cfg(not(target_arch = "wasm32"))]
pub mod transport;
#[cfg(not(target_arch = "wasm32"))]
mod ws;

// In a browser (wasm32) the only way in is the page's WebSocket: the same
// `connect`, `Connection`, `FrameReader` and `FrameWriter`, over it.
#[cfg(target_arch = "wasm32")]
#[path = "browser.rs"]
pub mod transport;
#[cfg(target_arch = "wasm32")]
pub use transport::{connect, ConnectOptions};

pub use common::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RECV_PAYLOAD};
#[cfg(not(target_arch = "wasm32"))]
pub use connect::{connect, ConnectOptions};
pub use error::{BoxError, Error};
pub use target::{Target, DEFAULT_PORT, DEFAULT_WS_PORT};
#[cfg(not(target_arch = "wasm32"))]
pub use tls::TlsOptions;
pub use transport::{Connection, FrameReader, FrameWriter, TransportKind};
