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
//! | rooms and their events | [`Room`], [`RoomEvents`], [`RoomEvent`](enum@RoomEvent), [`RoomHandlers`] |
//! | node status and warnings | [`NodeEvents`], [`NodeEvent`] |
//! | spans, metrics, [`Client::stats`] | [`observe`], [`Stats`] |
//! | the connection's life: connected, lost, moved | [`ConnectionEvents`], [`ConnectionEvent`] |
//! | errors | [`Error`], [`ThingsdbError`], [`ErrorCode`] |
//! | rooms with typed events, handlers like python's `Room` | [`typed::TypedEvent`], [`TypedEvents`], [`RoomHandler`], [`ServedRoom`] |
//! | without an async runtime | `blocking` (feature `blocking`, on by default; not in a browser) |
//! | collections, users, tokens, nodes, backups, procedures, tasks, types | [`management`] |
//! | Rust structs and enums as ThingsDB types (`#[derive(Thing)]`) | [`typed`] |
//! | tests without a node | [`thingsdb-testkit`](https://docs.rs/thingsdb-testkit) |
#![cfg_attr(docsrs, feature(doc_cfg))]

// The derive macros name `::thingsdb_client`; this lets them work inside
// this crate's own tests too.
extern crate self as thingsdb_client;

#[cfg(all(feature = "blocking", not(target_arch = "wasm32")))]
pub mod blocking;

pub mod balance;
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
mod room_handler;
mod rt;
mod scope;
pub mod typed;
mod typed_room;

pub use balance::{Balance, NodeLoad, Route};
pub use client::Client;
pub use config::{Auth, ClientBuilder, Config, ReconnectPolicy};
pub use error::{
    ConnectionLost, Error, LostReason, ThingsdbError, TransportError, TransportErrorKind,
};
pub use events::{Emitted, NodeEvent, Overflow, RoomEvent};
pub use handlers::RoomHandlers;
pub use lifecycle::{ConnectionEvent, MoveReason};
pub use node_events::{ConnectionEvents, EventStream, NodeEvents};
pub use observe::{RequestStats, RoomStats, Stats};
pub use request::{serialize_into, BoxFuture, Query, Run, VarByVar};
pub use room::{Room, RoomEvents};
pub use room_handler::{MaybeSend, NoEvents, RoomHandler, ServedRoom};
pub use scope::Scope;
pub use typed::{Thing, ThingsEnum, TypedEvent};
pub use typed_room::{Typed, TypedEvents};

/// `#[derive(Thing)]`, `#[derive(ThingsEnum)]` and `#[derive(RoomEvent)]`
/// (the `derive` feature, on by default); see [`typed`].
#[cfg(feature = "derive")]
pub use thingsdb_derive::{RoomEvent, Thing, ThingsEnum};

pub use rmpv::Value;
pub use thingsdb_protocol::{ErrorCode, NodeStatus, Room as RoomRef};
pub use thingsdb_transport::{ConnectOptions, Target, TransportKind};
// A browser (wasm32) does TLS itself, with its own trust store.
#[cfg(not(target_arch = "wasm32"))]
pub use thingsdb_transport::TlsOptions;
