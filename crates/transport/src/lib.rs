//! Frame transports for ThingsDB.
//!
//! One trait, [`Transport`], over every way into a node: TCP, TLS over TCP,
//! WebSocket, secure WebSocket and Unix sockets. A transport moves whole
//! packages ([`thingsdb_protocol::Frame`]) and knows nothing of queries.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod error;
pub mod transport;

pub use error::Error;
pub use transport::{Connection, FrameRecv, FrameSend, Transport, TransportKind};
