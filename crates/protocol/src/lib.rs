#![doc = include_str!("../README.md")]
//!
//! # Where things are
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
