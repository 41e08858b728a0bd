//! The ThingsDB connector for Rust.
//!
//! Connect over TCP, TLS, WebSocket, secure WebSocket or a Unix socket;
//! authenticate; run queries and procedures with values from serde; join
//! rooms and receive their events as streams. A [`Client`] is cheap to
//! clone and is used from many tasks at once: their requests are pipelined
//! on one connection. Lost connections are re-made (to another node of the
//! pool when there are several), re-authenticated and rooms re-joined.
//!
//! ```no_run
//! use thingsdb_client::{Auth, Client};
//!
//! # async fn demo() -> Result<(), thingsdb_client::Error> {
//! let client = Client::connect("thingsdb://localhost:9200", Auth::password("admin", "pass")).await?;
//! let sum: i64 = client.query("a + b;").var("a", &1).var("b", &2).decode().await?;
//! assert_eq!(sum, 3);
//! client.close().await?;
//! # Ok(()) }
//! ```
//!
//! | concept | where |
//! |---|---|
//! | the handle | [`Client`] |
//! | settings, credentials, reconnect | [`ClientBuilder`], [`Auth`], [`ReconnectPolicy`] |
//! | learning the cluster from one seed | [`discovery`] |
//! | queries and procedures | [`Query`], [`Run`] |
//! | scopes | [`Scope`] |
//! | rooms and their events | [`Room`], [`RoomEvents`], [`RoomEvent`], [`RoomHandlers`] |
//! | node status and warnings | [`NodeEvents`], [`NodeEvent`] |
//! | errors | [`Error`], [`ThingsdbError`], [`ErrorCode`] |
//! | without an async runtime | [`blocking`] (feature `blocking`, on by default) |
//! | collections, users, tokens, nodes, backups, procedures, tasks | [`management`] |
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(all(feature = "blocking", not(target_arch = "wasm32")))]
pub mod blocking;
mod client;
mod config;
mod connection;
pub mod discovery;
mod error;
mod events;
mod handlers;
mod in_flight;
pub mod management;
mod node_events;
mod request;
mod room;
mod rt;
mod scope;

pub use client::Client;
pub use config::{Auth, ClientBuilder, Config, ReconnectPolicy};
pub use error::{ConnectionLost, Error, LostReason, ThingsdbError};
pub use events::{Emitted, NodeEvent, Overflow, RoomEvent};
pub use handlers::RoomHandlers;
pub use node_events::NodeEvents;
pub use request::{BoxFuture, Query, Run};
pub use room::{Room, RoomEvents};
pub use scope::Scope;

pub use rmpv::Value;
pub use thingsdb_protocol::{ErrorCode, NodeStatus, Room as RoomRef};
pub use thingsdb_transport::{ConnectOptions, Target, TransportKind};
// A browser (wasm32) does TLS itself, with its own trust store.
#[cfg(not(target_arch = "wasm32"))]
pub use thingsdb_transport::TlsOptions;
