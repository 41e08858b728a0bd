#![doc = include_str!("../README.md")]
//!
//! # Where things are
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
//! | spans, metrics, [`Client::stats`] | [`observe`], [`Stats`] |
//! | the connection's life: connected, lost, moved | [`ConnectionEvents`], [`ConnectionEvent`] |
//! | errors | [`Error`], [`ThingsdbError`], [`ErrorCode`] |
//! | collections, users, tokens, nodes, backups, procedures, tasks | [`management`] |
//! | tests without a node | [`thingsdb-testkit`](https://docs.rs/thingsdb-testkit) |
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod config;
mod connection;
pub mod discovery;
mod error;
mod events;
mod handlers;
mod in_flight;
pub mod lifecycle;
pub mod management;
mod node_events;
pub mod observe;
mod request;
mod room;
mod rt;
mod scope;

pub use client::Client;
pub use config::{Auth, ClientBuilder, Config, ReconnectPolicy};
pub use error::{ConnectionLost, Error, LostReason, ThingsdbError};
pub use events::{Emitted, NodeEvent, Overflow, RoomEvent};
pub use handlers::RoomHandlers;
pub use lifecycle::{ConnectionEvent, MoveReason};
pub use node_events::{ConnectionEvents, EventStream, NodeEvents};
pub use observe::{RequestStats, RoomStats, Stats};
pub use request::{BoxFuture, Query, Run, VarByVar};
pub use room::{Room, RoomEvents};
pub use scope::Scope;

pub use rmpv::Value;
pub use thingsdb_protocol::{ErrorCode, NodeStatus, Room as RoomRef};
pub use thingsdb_transport::{ConnectOptions, Target, TransportKind};
// A browser (wasm32) does TLS itself, with its own trust store.
#[cfg(not(target_arch = "wasm32"))]
pub use thingsdb_transport::TlsOptions;
