//! The client's one error type.

use std::time::Duration;

use thingsdb_protocol::{ErrorCode, ErrorReply};

/// An error raised by ThingsDB itself: the node ran the request and refused
/// it, with a code and a message.
///
/// ```
/// use thingsdb_client::{ErrorCode, ThingsdbError};
/// let e = ThingsdbError::new(ErrorCode::ZeroDiv, "division or modulo by zero");
/// assert_eq!(e.to_string(), "zero_div (-58): division or modulo by zero");
/// assert_eq!(e.code.code(), -58);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThingsdbError {
    /// The typed code; unknown codes are kept in [`ErrorCode::Other`].
    pub code: ErrorCode,
    /// The node's message.
    pub message: String,
}

impl ThingsdbError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ThingsdbError {
            code,
            message: message.into(),
        }
    }

    /// The code's name as ThingsDB spells it (`zero_div`, `lookup`, ...).
    pub fn name(&self) -> &'static str {
        self.code.name()
    }
}

impl std::fmt::Display for ThingsdbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ThingsdbError {}

impl From<ErrorReply> for ThingsdbError {
    fn from(e: ErrorReply) -> Self {
        ThingsdbError {
            code: e.code,
            message: e.message,
        }
    }
}

/// Everything a client call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node refused the request (syntax error, lookup error, a
    /// `raise()`d custom error, bad credentials, ...).
    #[error("ThingsDB error {0}")]
    Thingsdb(#[from] ThingsdbError),
    /// No answer within the request timeout. The request may still run on
    /// the node; its late reply is dropped.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// The connection was lost while the request was in flight. The request
    /// may or may not have run on the node; it is never resent silently.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The peer sent something that is not valid protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] thingsdb_protocol::Error),
    /// Connecting or moving bytes failed.
    #[error("transport error: {0}")]
    Transport(String),
    /// An argument cannot be sent as given (vars that are not a map, a value
    /// serde cannot encode, a bad scope or target string, ...).
    #[error("bad argument: {0}")]
    BadArgument(String),
    /// A result could not be decoded into the requested Rust type.
    #[error("cannot decode the result: {0}")]
    Decode(String),
    /// The client was closed; no more requests are accepted.
    #[error("the client is closed")]
    Closed,
}

impl Error {
    /// The ThingsDB error code, when the node refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Thingsdb(e) => Some(e.code),
            _ => None,
        }
    }
}

impl From<thingsdb_transport::Error> for Error {
    fn from(e: thingsdb_transport::Error) -> Self {
        Error::Transport(e.to_string())
    }
}
