//! A blocking client: the same session as [`crate::Client`], no async
//! runtime.
//!
//! [`Client`] has the async client's requests ([`Client::query`],
//! [`Client::run`]), rooms with a blocking receiver ([`RoomEvents::recv`],
//! [`RoomEvents::recv_timeout`], [`RoomEvents::try_recv`], and an
//! [`Iterator`]), the same [`ClientBuilder`](crate::ClientBuilder)
//! ([`ClientBuilder::connect_blocking`](crate::ClientBuilder::connect_blocking)),
//! credentials, timeouts, node pool, reconnect, failover and
//! [`Error`](crate::Error)s. It runs the protocol state machine the async
//! client runs (pipelining, reconnect, resending what never ran, room
//! re-joins, moving off a node that shuts down), over std sockets: TCP,
//! TLS, Unix sockets and WebSocket (the transport's WebSocket codec, no
//! runtime).
//!
//! ```no_run
//! use thingsdb_client::blocking::Client;
//! use thingsdb_client::Auth;
//!
//! # fn demo() -> Result<(), thingsdb_client::Error> {
//! let client = Client::connect("thingsdb://localhost:9200", Auth::password("admin", "pass"))?;
//! let sum: i64 = client.query("a + b;").var("a", &1).var("b", &2).decode()?;
//! assert_eq!(sum, 3);
//! client.close()?;
//! # Ok(()) }
//! ```
//!
//! # Threads
//!
//! None of its own until events are wanted. A request is written and its
//! reply read by the calling thread itself: one write and one read per
//! request, the floor of a blocking socket. The client is `Clone`, `Send`
//! and `Sync`; threads that call at once have their requests pipelined on
//! the one connection, and one of them at a time reads for all.
//!
//! The first room joined starts **one** thread per client (named
//! `thingsdb-events`), which from then on reads the connection, delivers
//! events and replies, keeps the connection alive and reconnects. It stops
//! when the client is closed or its last handle (room streams included) is
//! dropped. Without it (no room joined) keep-alive pings and reconnects
//! happen while a request is made; a connection that sat idle for a second
//! or more is checked (a peek that does not wait) before a request is
//! written on it, so a node that dropped it is noticed first.
//!
//! Cluster discovery ([`crate::discovery`]) and the management API
//! ([`crate::management`]) are async-only.

mod client;
mod driver;
mod room;

pub use client::{Client, Query, Run};
pub use room::{Room, RoomEvents};
pub use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
