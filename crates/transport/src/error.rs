//! The transport crate's error type.

use std::io;

use crate::transport::TransportKind;

/// What can go wrong while connecting or moving frames.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A target string could not be parsed; the message names what is wrong.
    #[error("invalid target {target:?}: {reason}")]
    InvalidTarget {
        /// The string as given.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Connecting took longer than the connect timeout.
    #[error("connecting to {target} timed out after {elapsed_ms} ms")]
    ConnectTimeout {
        /// The target, as displayed.
        target: String,
        /// The timeout in milliseconds.
        elapsed_ms: u64,
    },
    /// The connection could not be opened: name resolution, TCP connect or
    /// the Unix socket failed.
    #[error("connecting to {target} failed: {source}")]
    Connect {
        /// The target, as displayed.
        target: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An I/O error from the socket.
    #[error("{kind} I/O error: {source}")]
    Io {
        /// The transport it happened on.
        kind: TransportKind,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// TLS setup or handshake failed (certificate, name, configuration).
    /// [`source`](std::error::Error::source) is the rustls (or PEM) error
    /// when there is one.
    #[error("TLS error: {message}")]
    Tls {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The WebSocket layer failed (handshake, protocol violation).
    /// [`source`](std::error::Error::source) is tungstenite's error when
    /// the handshake failed in it; a peer breaking the framing rules has
    /// none (the message says which rule).
    #[error("WebSocket error: {message}")]
    WebSocket {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The peer sent bytes that are not valid packages (bad check byte,
    /// oversized length, a text message, a message shorter than a header).
    #[error("protocol error: {0}")]
    Protocol(#[from] thingsdb_protocol::Error),
    /// The peer sent a WebSocket text message, which the protocol does not use.
    #[error("unexpected WebSocket text message")]
    TextMessage,
    /// The connection ended in the middle of a package.
    #[error("connection closed in the middle of a package ({available} of {needed} bytes)")]
    ClosedMidFrame {
        /// Bytes of the package that arrived.
        available: usize,
        /// Bytes the package needed.
        needed: usize,
    },
    /// The connection is closed; nothing more can be sent or received.
    #[error("connection closed")]
    Closed,
    /// Bytes given to `send` are not a sequence of whole packages.
    #[error("send was given bytes that are not whole packages: {0}")]
    NotWholeFrames(String),
}

/// An underlying error of any type, as [`Error::Tls`] and
/// [`Error::WebSocket`] keep it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl Error {
    /// A TLS error with the error that caused it.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the browser does TLS
    pub(crate) fn tls(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Tls {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A TLS error without an underlying error.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the browser does TLS
    pub(crate) fn tls_msg(message: impl Into<String>) -> Self {
        Error::Tls {
            message: message.into(),
            source: None,
        }
    }

    /// A WebSocket error with the error that caused it.
    pub(crate) fn ws(message: impl Into<String>, source: Option<BoxError>) -> Self {
        Error::WebSocket {
            message: message.into(),
            source,
        }
    }

    /// Wraps an I/O error of the given transport.
    pub fn io(kind: TransportKind, source: io::Error) -> Self {
        Error::Io { kind, source }
    }
}
