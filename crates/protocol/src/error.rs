//! The protocol crate's error type.

use crate::package_type::PackageType;

/// Everything that can be wrong with bytes on the wire, or with a request a
/// caller asks to encode.
///
/// Every decoding path in this crate reports problems through this type;
/// none of them panics, whatever the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The header's check byte is not the type's bitwise complement. A node
    /// closes the connection on this.
    #[error("bad check byte 0x{check:02x} for package type {package_type} (expected 0x{:02x})", !.package_type)]
    BadCheckByte {
        /// The type byte as received.
        package_type: u8,
        /// The check byte as received.
        check: u8,
    },
    /// The header announces a payload longer than the configured maximum.
    #[error("package payload of {len} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// The announced payload length.
        len: u32,
        /// The maximum in force.
        max: u32,
    },
    /// Input ended inside a header or a payload.
    #[error("truncated package: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the package needs (header included).
        needed: usize,
        /// Bytes that were there.
        available: usize,
    },
    /// The type byte names no package type this crate knows.
    #[error("unknown package type {0}")]
    UnknownPackageType(u8),
    /// A package of one type arrived where another was needed (for example
    /// an event type handed to the response decoder).
    #[error("unexpected package type {got:?} (expected {expected})")]
    UnexpectedPackageType {
        /// What was wanted, in words.
        expected: &'static str,
        /// What came.
        got: PackageType,
    },
    /// The payload is not well-formed MessagePack.
    #[error("invalid MessagePack: {0}")]
    InvalidMsgpack(&'static str),
    /// A payload map lacks a key the protocol requires.
    #[error("payload is missing the `{0}` key")]
    MissingKey(&'static str),
    /// A payload value has the wrong MessagePack type.
    #[error("payload field `{field}` must be {expected}")]
    WrongType {
        /// Which field, or `payload` for the whole payload.
        field: &'static str,
        /// What it must be, in words.
        expected: &'static str,
    },
    /// A payload that must be empty is not, or one that must not be empty is.
    #[error("package type {package_type:?} must have {expected}, got {len} bytes")]
    PayloadLength {
        /// The package type.
        package_type: PackageType,
        /// What was expected, in words.
        expected: &'static str,
        /// The payload length received.
        len: usize,
    },
    /// An encoded frame would be longer than a `u32` length can say, or
    /// than the maximum in force.
    #[error("encoded payload of {len} bytes is too large (maximum {max})")]
    EncodeTooLarge {
        /// The payload length that was produced.
        len: usize,
        /// The maximum in force.
        max: u32,
    },
}
