#![doc = include_str!("../README.md")]
//!
//! # The node in detail
//!
//! [`TestNode`] listens on ephemeral loopback ports over TCP, WebSocket and
//! a Unix socket (and TLS / secure WebSocket when given a certificate),
//! and speaks the ThingsDB client protocol the way a real node does:
//!
//! - replies echo the request id; events carry id 65535 and the `scope` key
//!   (`@collection:stuff`), with keys in the node's order;
//! - PING works before AUTH; any other request before AUTH gets -56
//!   `connection is not authenticated`; wrong credentials get -56
//!   `invalid username or password` / `invalid token`;
//! - QUERY runs a handler registered with [`TestNode::on_query`]; without
//!   one it is refused with an operation error (-63), unless the `eval`
//!   feature is on: then simple arithmetic (`1 + 1;`, `a * b;` with vars)
//!   is evaluated as a node would (`Query::evaluate`, an opt-in test
//!   convenience, not a query language), and code beyond it gets -63 with
//!   a message saying how to answer it;
//! - RUN calls procedures registered with [`TestNode::procedure`]; an
//!   unknown one gets -54, spread arguments get -53;
//! - JOIN / LEAVE by id or name reply with an array of ids (nil where not
//!   found); the JOIN reply comes before its ON_JOIN; ON_LEAVE comes before
//!   the LEAVE reply, and the sender's own ON_EMIT before the EMIT's OK, as
//!   on a node; EMIT_PEER skips the sender;
//! - a bad check byte or a length over the maximum closes the connection
//!   without a reply; over WebSocket one package travels per binary
//!   message and large replies are split into ~1.5 KiB continuation frames.
//!
//! It can also misbehave on purpose ([`Faults`]) and counts what it got
//! ([`Counters`]). [`real_node`] starts or finds a real node for tests
//! that compare against one.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use bytes::BytesMut;
//! use thingsdb_protocol::{request, Decoder, Response};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use thingsdb_testkit::TestNode;
//!
//! let node = TestNode::start().await?;
//! let mut sock = tokio::net::TcpStream::connect(node.tcp_addr()).await?;
//! let mut out = BytesMut::new();
//! request::encode_auth(&mut out, 1, "admin", "pass")?;
//! request::encode_query(&mut out, 2, "@t", "1 + 1;", None)?;
//! sock.write_all(&out).await?;
//!
//! let mut dec = Decoder::new();
//! let mut replies = Vec::new();
//! while replies.len() < 2 {
//!     let mut buf = [0u8; 256];
//!     let n = sock.read(&mut buf).await?;
//!     dec.feed(&buf[..n]);
//!     while let Some(f) = dec.next_frame()? {
//!         replies.push((f.id, Response::decode(&f)?));
//!     }
//! }
//! assert_eq!(replies[0], (1, Response::Ok));
//! assert_eq!(replies[1].1.value().unwrap()?, rmpv::Value::from(2));
//! # Ok(()) }
//! ```
//!
//! The differences from a real node that a test may notice: the query
//! language is a tiny subset (use a handler), procedures are registered in
//! every scope at once, room ids are small integers handed out by the
//! testkit, and a "refused" connection is accepted and closed at once.
//! [`TestNode::serve_http`] adds the HTTP API and the status port
//! ([`http`]).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod conn;
mod dispatch;
#[cfg(feature = "eval")]
mod eval;
mod faults;
pub mod http;
mod node;
pub mod raw;
pub mod real_node;
mod reply;
mod service;
mod state;
mod tls;

pub use faults::{Corruption, Faults};
pub use http::{CorsProxy, HttpServer};
pub use node::{
    ConnectionInfo, TestCluster, TestNode, TestNodeBuilder, DEFAULT_RESULT_SIZE_LIMIT,
    NODE_WS_FRAGMENT,
};
pub use raw::RawClient;
pub use reply::{parse_scope, ArgValues, Args, Query, Reply, Scope};
pub use state::{Counters, Ingress};
pub use thingsdb_protocol::scope::is_valid_name;

/// Re-exported so that tests can build events and codes without another
/// dependency line.
pub use thingsdb_protocol;
