//! The ThingsDB client wire protocol, without I/O.
//!
//! A ThingsDB package is an 8-byte [`Header`] (payload length, request id,
//! type and check byte) followed by a MessagePack payload. This crate
//! encodes and decodes packages and their payloads and cuts a byte stream
//! into [`Frame`]s with a sans-IO [`Decoder`]; it does no I/O and is
//! `#![no_std]` (with `alloc`), so it can be tested and fuzzed without
//! sockets and used on any runtime.
//!
//! | concept | where |
//! |---|---|
//! | header, check byte, limits | [`header`] |
//! | package types | [`package_type`] |
//! | whole packages | [`frame`] |
//! | stream decoding | [`decoder`] |
//! | request encoders and decoding | [`request`] |
//! | responses (DATA, ERROR, ...) | [`response`] |
//! | scopes (`@t`, `//stuff`, ...), parsed as a node does | [`scope`] |
//! | events (ON_EMIT, NODE_STATUS, ...) | [`event`] |
//! | error codes | [`error_code`] |
//! | the MessagePack subset the envelopes use | [`msgpack`] |
//! | node <-> module process packages | [`module`] |
//!
//! ```
//! use bytes::BytesMut;
//! use thingsdb_protocol::{request, Decoder, Response};
//!
//! // Client side: encode a query.
//! let mut out = BytesMut::new();
//! request::encode_query(&mut out, 0, "@t", "1 + 1;", None)?;
//! assert_eq!(hex(&out), "0b000000000022dd92a24074a631202b20313b");
//!
//! // ... and decode the node's answer, fed in pieces.
//! let mut d = Decoder::new();
//! d.feed(&[0x01, 0x00, 0x00, 0x00, 0x00]);
//! assert!(d.next_frame()?.is_none());
//! d.feed(&[0x00, 0x12, 0xed, 0x02]);
//! let frame = d.next_frame()?.expect("a whole frame");
//! assert_eq!(Response::decode(&frame)?, Response::Data(bytes::Bytes::from_static(&[2])));
//! # fn hex(b: &[u8]) -> String { b.iter().map(|x| format!("{x:02x}")).collect() }
//! # Ok::<(), thingsdb_protocol::Error>(())
//! ```
//!
//! # Features
//!
//! - `std` (default): `std::error::Error` for [`Error`] and `rmpv::Value`
//!   helpers ([`decode_value`], [`encode_value`]). Without it the crate and
//!   its dependencies are `no_std` + `alloc`.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod decoder;
pub mod error;
pub mod error_code;
pub mod event;
pub mod frame;
pub mod header;
pub mod module;
pub mod msgpack;
pub mod package_type;
pub mod request;
pub mod response;
pub mod scope;
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub mod value;

pub use decoder::{decode_frame, Decoder};
pub use error::Error;
pub use error_code::ErrorCode;
pub use event::{EmitEvent, Event, EventRoom, NodeStatus};
pub use frame::Frame;
pub use header::{Header, EVENT_ID, HEADER_LEN, MAX_PAYLOAD};
pub use package_type::{Direction, PackageType};
pub use request::{Credentials, DecodedRunArgs, Request, Room, RunArgs};
pub use response::{ErrorReply, Response};
pub use scope::{ParsedScope, ScopeError};
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub use value::{decode_validated_value, decode_value, encode_value};

/// Re-export of the `bytes` crate, whose types appear in this API.
pub use bytes;
