//! The client's one error type.

use std::sync::Arc;
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
///
/// A request the node refused is [`Error::Thingsdb`], with ThingsDB's code
/// typed as an [`ErrorCode`] ([`Error::code`] gives it directly); the other
/// variants say the request got no answer ([`Error::Timeout`],
/// [`Error::ConnectionLost`]) or could not be made.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use thingsdb_client::{Auth, Client, Error, ErrorCode};
/// let node = thingsdb_testkit::TestNode::start().await?; // an in-process node
/// let client = Client::connect(&node.thingsdb_url(), Auth::password("admin", "pass")).await?;
///
/// let e = client.query("1/0;").await.unwrap_err();
/// assert_eq!(e.code(), Some(ErrorCode::ZeroDiv));
/// match e {
///     Error::Thingsdb(t) if t.code == ErrorCode::ZeroDiv => {
///         assert_eq!(t.to_string(), "zero_div (-58): division or modulo by zero");
///     }
///     Error::Timeout(_) | Error::ConnectionLost(_) => { /* no answer: retry? */ }
///     other => return Err(other.into()),
/// }
/// # Ok(()) }
/// ```
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
    /// The connection was lost while the request was in flight. A request
    /// that was written may or may not have run on the node
    /// ([`Error::may_have_run`]); it is sent again only when it was never
    /// written or is marked [`idempotent`](crate::Query::idempotent).
    /// [`ConnectionLost::reason`] says why, as a value a program can match.
    #[error("connection lost: {0}")]
    ConnectionLost(#[source] ConnectionLost),
    /// The request was to be sent more than once (the node answered
    /// NODE_ERROR, -51, "cannot take it now"; or the connection went before
    /// it was written, or after, for an idempotent request) and its last
    /// attempt failed with `last`. The predicates ([`Error::code`],
    /// [`Error::is_timeout`], ...) answer for `last`.
    #[error("{last} (attempts: {attempts})")]
    Retried {
        /// How many times the request was sent.
        attempts: u32,
        /// Whether any attempt may have run on the node.
        may_have_run: bool,
        /// Why the last attempt failed.
        #[source]
        last: Box<Error>,
    },
    /// The peer sent something that is not valid protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] thingsdb_protocol::Error),
    /// Connecting or moving bytes failed; [`TransportError::kind`] (or
    /// [`Error::transport_kind`]) says how, and
    /// [`std::error::Error::source`] is the transport's own error when
    /// there is one.
    #[error("transport error: {0}")]
    Transport(#[source] TransportError),
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
    ///
    /// ```
    /// use thingsdb_client::{Error, ErrorCode, ThingsdbError};
    /// let e = Error::from(ThingsdbError::new(ErrorCode::Lookup, "no such room"));
    /// assert_eq!(e.code(), Some(ErrorCode::Lookup));
    /// assert!(!e.is_timeout());
    /// ```
    pub fn code(&self) -> Option<ErrorCode> {
        match self.last() {
            Error::Thingsdb(e) => Some(e.code),
            _ => None,
        }
    }

    /// True for [`Error::Timeout`]: no answer came in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self.last(), Error::Timeout(_))
    }

    /// True for [`Error::ConnectionLost`]: the request may or may not have
    /// run on the node (see [`Error::may_have_run`]).
    pub fn is_connection_lost(&self) -> bool {
        matches!(self.last(), Error::ConnectionLost(_))
    }

    /// What kind of transport error it is, for [`Error::Transport`] (and
    /// for an [`Error::Retried`] whose last attempt was one); `None` for
    /// every other error.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use thingsdb_client::{Auth, Client, TransportErrorKind};
    /// // A port nothing listens on.
    /// let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    /// let target = format!("thingsdb://127.0.0.1:{port}");
    /// let e = Client::connect(&target, Auth::password("admin", "pass")).await.unwrap_err();
    /// match e.transport_kind() {
    ///     Some(TransportErrorKind::Refused) => { /* nothing listens there */ }
    ///     Some(TransportErrorKind::WrongNode) => { /* a learnt address reached another node */ }
    ///     Some(other) => println!("cannot connect ({other}): {e}"),
    ///     None => return Err(e.into()), // not a transport error
    /// }
    /// assert_eq!(e.transport_kind(), Some(TransportErrorKind::Refused));
    /// # Ok(()) }
    /// ```
    pub fn transport_kind(&self) -> Option<TransportErrorKind> {
        match self.last() {
            Error::Transport(t) => Some(t.kind()),
            _ => None,
        }
    }

    /// Why the connection was lost, for [`Error::ConnectionLost`].
    pub fn lost_reason(&self) -> Option<LostReason> {
        match self.last() {
            Error::ConnectionLost(l) => Some(l.reason()),
            _ => None,
        }
    }

    /// Whether the failed request may have taken effect on the node: true
    /// when the client cannot know (no answer in time, the connection went
    /// after the request was written, or REQUEST_CANCEL (-4): a node gave
    /// up waiting on another one); false when the node answered with any
    /// other error (a failed query changes nothing) or the request was
    /// never sent.
    ///
    /// ```
    /// use std::time::Duration;
    /// use thingsdb_client::{Error, ErrorCode, ThingsdbError};
    /// assert!(Error::Timeout(Duration::from_secs(1)).may_have_run());
    /// assert!(!Error::from(ThingsdbError::new(ErrorCode::Node, "not ready")).may_have_run());
    /// ```
    pub fn may_have_run(&self) -> bool {
        match self {
            Error::Timeout(_) => true,
            // A node gave up waiting on another node; the request may have
            // run there.
            Error::Thingsdb(e) => e.code == ErrorCode::RequestCancel,
            Error::ConnectionLost(l) => l.written,
            Error::Retried { may_have_run, .. } => *may_have_run,
            _ => false,
        }
    }

    /// How many times the failed request was sent: 1, or more for
    /// [`Error::Retried`] (0 is never returned).
    pub fn attempts(&self) -> u32 {
        match self {
            Error::Retried { attempts, .. } => *attempts,
            _ => 1,
        }
    }

    /// An [`Error::Transport`] of `kind` with a message and no source.
    pub(crate) fn transport(kind: TransportErrorKind, message: impl Into<String>) -> Error {
        Error::Transport(TransportError::new(kind, message))
    }

    /// The error itself, or the last attempt's for [`Error::Retried`].
    fn last(&self) -> &Error {
        match self {
            Error::Retried { last, .. } => last.last(),
            other => other,
        }
    }
}

impl From<thingsdb_transport::Error> for Error {
    fn from(e: thingsdb_transport::Error) -> Self {
        Error::Transport(TransportError::from(e))
    }
}

/// A reply of another kind than the request asks for (`expected`): a
/// protocol error.
pub(crate) fn unexpected(expected: &'static str, got: &thingsdb_protocol::Response) -> Error {
    use thingsdb_protocol::{PackageType, Response};
    let got = match got {
        Response::Pong => PackageType::Pong,
        Response::Ok => PackageType::Ok,
        Response::Data(_) => PackageType::Data,
        Response::Error(_) => PackageType::Error,
    };
    Error::Protocol(thingsdb_protocol::Error::UnexpectedPackageType { expected, got })
}

/// What kind of [`TransportError`] it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// A target string could not be parsed.
    InvalidTarget,
    /// A request named a node ([`Route::Node`](crate::Route::Node)) the
    /// client has no connection to now.
    NotConnected,
    /// The node answered, asked which node it is after AUTH (with
    /// discovery or balancing on), that it is shutting down: a connection
    /// made during its shutdown period would break when it exits, so the
    /// client does not use it and tries the next node.
    ShuttingDown,
    /// Nothing accepts connections at the address (the node is down or
    /// listens on another port): the operating system refused the
    /// connection. In a browser, which does not say why a WebSocket could
    /// not be opened, this is [`TransportErrorKind::Connect`].
    Refused,
    /// Connecting took longer than the connect timeout, or the node
    /// accepted the connection but did not answer AUTH in that time.
    ConnectTimeout,
    /// The connection could not be opened for another reason than a
    /// refusal (unreachable, name resolution, a missing Unix socket, ...).
    Connect,
    /// The socket failed.
    Io,
    /// TLS setup or handshake failed.
    Tls,
    /// The WebSocket layer failed.
    WebSocket,
    /// The peer sent bytes that are not valid protocol.
    Protocol,
    /// The peer closed the connection.
    Closed,
    /// A learnt node's address reached another node (see
    /// [`discover_nodes`](crate::ClientBuilder::discover_nodes)).
    WrongNode,
    /// The HTTP API client (`thingsdb-http`) got an HTTP answer that is
    /// not a ThingsDB one (an unexpected status or content type), or could
    /// not be set up. (Failing to connect is [`TransportErrorKind::Refused`]
    /// or [`TransportErrorKind::Connect`] there too.)
    Http,
    /// Anything else (a reason given as text).
    Other,
}

impl std::fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportErrorKind::InvalidTarget => "invalid target",
            TransportErrorKind::NotConnected => "no connection to that node",
            TransportErrorKind::ShuttingDown => "the node is shutting down",
            TransportErrorKind::Refused => "connection refused",
            TransportErrorKind::ConnectTimeout => "connect timeout",
            TransportErrorKind::Connect => "cannot connect",
            TransportErrorKind::Io => "I/O error",
            TransportErrorKind::Tls => "TLS error",
            TransportErrorKind::WebSocket => "WebSocket error",
            TransportErrorKind::Protocol => "protocol error",
            TransportErrorKind::Closed => "connection closed",
            TransportErrorKind::WrongNode => "another node answered",
            TransportErrorKind::Http => "HTTP error",
            TransportErrorKind::Other => "transport error",
        })
    }
}

/// The details of [`Error::Transport`]: a [`TransportErrorKind`] to match,
/// a message, and the transport's own error as
/// [`std::error::Error::source`]. Cheap to clone.
///
/// ```
/// use thingsdb_client::{Error, TransportErrorKind};
/// let e = Error::from(thingsdb_transport::Error::Closed);
/// assert_eq!(e.transport_kind(), Some(TransportErrorKind::Closed));
/// assert!(std::error::Error::source(&e).is_some());
/// ```
#[derive(Debug, Clone)]
pub struct TransportError {
    kind: TransportErrorKind,
    message: Arc<str>,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl TransportError {
    /// A transport error of `kind` with a message.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        TransportError {
            kind,
            message: message.into().into(),
            source: None,
        }
    }

    /// The same error, keeping `source` as its
    /// [`std::error::Error::source`].
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// What kind of error it is.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// A message only: kind [`TransportErrorKind::Other`].
impl From<String> for TransportError {
    fn from(message: String) -> Self {
        TransportError::new(TransportErrorKind::Other, message)
    }
}

/// A message only: kind [`TransportErrorKind::Other`].
impl From<&str> for TransportError {
    fn from(message: &str) -> Self {
        TransportError::new(TransportErrorKind::Other, message)
    }
}

impl From<thingsdb_transport::Error> for TransportError {
    fn from(e: thingsdb_transport::Error) -> Self {
        use thingsdb_transport::Error as T;
        let kind = match &e {
            T::InvalidTarget { .. } => TransportErrorKind::InvalidTarget,
            T::ConnectTimeout { .. } => TransportErrorKind::ConnectTimeout,
            // The browser transport reports every failure to open a
            // WebSocket as refused; it cannot tell.
            T::Connect { source, .. }
                if source.kind() == std::io::ErrorKind::ConnectionRefused
                    && !cfg!(target_arch = "wasm32") =>
            {
                TransportErrorKind::Refused
            }
            T::Connect { .. } => TransportErrorKind::Connect,
            T::Io { .. } => TransportErrorKind::Io,
            T::Tls { .. } => TransportErrorKind::Tls,
            T::WebSocket { .. } | T::TextMessage => TransportErrorKind::WebSocket,
            T::Protocol(_) | T::NotWholeFrames(_) => TransportErrorKind::Protocol,
            T::Closed | T::ClosedMidFrame { .. } => TransportErrorKind::Closed,
            _ => TransportErrorKind::Other,
        };
        TransportError {
            kind,
            message: e.to_string().into(),
            source: Some(Arc::new(e)),
        }
    }
}

/// Why a connection was lost; see [`ConnectionLost::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LostReason {
    /// The node closed the connection.
    ClosedByPeer,
    /// The socket failed (reset, broken pipe, ...).
    Io,
    /// The TLS layer failed.
    Tls,
    /// The WebSocket layer failed.
    WebSocket,
    /// The node sent bytes that are not valid packages.
    ProtocolViolation,
    /// Keep-alive pings went unanswered.
    KeepAliveTimeout,
    /// The node is shutting down and closed the connection before the
    /// request was answered.
    NodeShuttingDown,
    /// The client stopped reconnecting (reconnect off, or it gave up).
    GaveUp,
    /// Anything else (a reason given as text).
    Other,
}

impl std::fmt::Display for LostReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LostReason::ClosedByPeer => "the node closed the connection",
            LostReason::Io => "I/O error",
            LostReason::Tls => "TLS error",
            LostReason::WebSocket => "WebSocket error",
            LostReason::ProtocolViolation => "protocol violation",
            LostReason::KeepAliveTimeout => "no answer to keep-alive pings",
            LostReason::NodeShuttingDown => "the node is shutting down",
            LostReason::GaveUp => "not reconnecting",
            LostReason::Other => "connection lost",
        })
    }
}

/// The details of [`Error::ConnectionLost`]: a [`LostReason`] to match, a
/// message, and the underlying error (io, TLS, WebSocket, protocol) as
/// [`std::error::Error::source`]. Cheap to clone.
///
/// ```
/// use thingsdb_client::{ConnectionLost, Error, LostReason};
/// let e = Error::ConnectionLost(ConnectionLost::new(LostReason::KeepAliveTimeout, "no pong in 30s"));
/// assert!(e.is_connection_lost());
/// assert_eq!(e.lost_reason(), Some(LostReason::KeepAliveTimeout));
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionLost {
    reason: LostReason,
    message: Arc<str>,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
    /// Whether the request had been written (may have run); see
    /// [`Error::may_have_run`].
    written: bool,
}

impl ConnectionLost {
    /// A loss with a reason and a message.
    pub fn new(reason: LostReason, message: impl Into<String>) -> Self {
        ConnectionLost {
            reason,
            message: message.into().into(),
            source: None,
            written: true,
        }
    }

    /// The same loss, for a request that was never written.
    pub(crate) fn unwritten(mut self) -> Self {
        self.written = false;
        self
    }

    /// A loss caused by a transport error, keeping it as the source.
    pub fn from_transport(e: thingsdb_transport::Error) -> Self {
        use thingsdb_transport::Error as T;
        let reason = match &e {
            T::Io { .. } | T::Connect { .. } | T::ConnectTimeout { .. } => LostReason::Io,
            T::Tls { .. } => LostReason::Tls,
            T::WebSocket { .. } | T::TextMessage => LostReason::WebSocket,
            T::Protocol(_) | T::NotWholeFrames(_) => LostReason::ProtocolViolation,
            T::Closed | T::ClosedMidFrame { .. } => LostReason::ClosedByPeer,
            _ => LostReason::Other,
        };
        ConnectionLost {
            reason,
            message: e.to_string().into(),
            source: Some(Arc::new(e)),
            written: true,
        }
    }

    /// The same loss, keeping `source` as its [`std::error::Error::source`]
    /// (an HTTP or I/O error, for example).
    ///
    /// ```
    /// use thingsdb_client::{ConnectionLost, LostReason};
    /// use std::error::Error as _;
    /// let io = std::io::Error::other("reset");
    /// let l = ConnectionLost::new(LostReason::Io, "lost").with_source(io);
    /// assert_eq!(l.source().map(|s| s.to_string()).as_deref(), Some("reset"));
    /// ```
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Why the connection was lost.
    pub fn reason(&self) -> LostReason {
        self.reason
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ConnectionLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectionLost {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<&str> for ConnectionLost {
    fn from(message: &str) -> Self {
        ConnectionLost::new(LostReason::Other, message)
    }
}

impl From<String> for ConnectionLost {
    fn from(message: String) -> Self {
        ConnectionLost::new(LostReason::Other, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_error_keeps_its_kind_and_source() {
        let t = thingsdb_transport::Error::ConnectTimeout {
            target: "127.0.0.1:9200".into(),
            elapsed_ms: 500,
        };
        let shown = t.to_string();
        let e = Error::from(t);
        assert_eq!(e.transport_kind(), Some(TransportErrorKind::ConnectTimeout));
        assert_eq!(e.to_string(), format!("transport error: {shown}"));
        // Error -> TransportError -> the transport's own error.
        let inner = std::error::Error::source(&e).and_then(|s| s.source());
        assert_eq!(inner.map(|s| s.to_string()), Some(shown));
        assert!(!e.is_timeout() && !e.is_connection_lost());
        assert_eq!(e.code(), None);
        let closed = Error::from(thingsdb_transport::Error::Closed);
        assert_eq!(closed.transport_kind(), Some(TransportErrorKind::Closed));
    }

    /// The transport's own error behind `e`: Error -> TransportError ->
    /// thingsdb_transport::Error.
    fn transport_source(e: &Error) -> Option<&thingsdb_transport::Error> {
        std::error::Error::source(e)?
            .source()?
            .downcast_ref::<thingsdb_transport::Error>()
    }

    #[test]
    fn each_transport_error_has_its_kind_and_stays_the_source() {
        use std::io;
        use thingsdb_transport::Error as T;
        let io_err = |kind: io::ErrorKind| io::Error::new(kind, "from the OS");
        let cases: Vec<(T, TransportErrorKind)> = vec![
            (
                T::InvalidTarget {
                    target: "x:y".into(),
                    reason: "bad port".into(),
                },
                TransportErrorKind::InvalidTarget,
            ),
            (
                T::Connect {
                    target: "127.0.0.1:1".into(),
                    source: io_err(io::ErrorKind::ConnectionRefused),
                },
                TransportErrorKind::Refused,
            ),
            (
                T::Connect {
                    target: "nowhere:9200".into(),
                    source: io_err(io::ErrorKind::NotFound),
                },
                TransportErrorKind::Connect,
            ),
            (
                T::ConnectTimeout {
                    target: "10.0.0.1:9200".into(),
                    elapsed_ms: 5000,
                },
                TransportErrorKind::ConnectTimeout,
            ),
            (
                T::io(
                    thingsdb_transport::TransportKind::Tcp,
                    io_err(io::ErrorKind::ConnectionReset),
                ),
                TransportErrorKind::Io,
            ),
            (
                T::Tls {
                    message: "bad certificate".into(),
                    source: None,
                },
                TransportErrorKind::Tls,
            ),
            (
                T::WebSocket {
                    message: "handshake failed".into(),
                    source: None,
                },
                TransportErrorKind::WebSocket,
            ),
            (T::TextMessage, TransportErrorKind::WebSocket),
            (
                T::Protocol(thingsdb_protocol::Error::BadCheckByte {
                    package_type: 1,
                    check: 1,
                }),
                TransportErrorKind::Protocol,
            ),
            (
                T::NotWholeFrames("3 bytes left".into()),
                TransportErrorKind::Protocol,
            ),
            (
                T::ClosedMidFrame {
                    available: 3,
                    needed: 8,
                },
                TransportErrorKind::Closed,
            ),
            (T::Closed, TransportErrorKind::Closed),
        ];
        for (t, kind) in cases {
            let shown = t.to_string();
            let e = Error::from(t);
            assert_eq!(e.transport_kind(), Some(kind), "{shown}");
            // The text is the transport's, as before the kinds.
            assert_eq!(e.to_string(), format!("transport error: {shown}"));
            let Error::Transport(te) = &e else {
                panic!("not a transport error: {e:?}")
            };
            assert_eq!((te.kind(), te.message()), (kind, shown.as_str()));
            // The transport's own error is kept, and survives a clone.
            let copy = e.clone();
            let source = transport_source(&copy).map(|s| s.to_string());
            assert_eq!(source.as_deref(), Some(shown.as_str()), "{kind:?}");
            // The predicates do not change.
            assert!(!e.is_timeout() && !e.is_connection_lost(), "{kind:?}");
            assert_eq!((e.code(), e.lost_reason()), (None, None));
            assert!(!e.may_have_run(), "a transport error never ran");
            assert_eq!(e.attempts(), 1);
        }
        // The io::Error under a refused connect is there to inspect too.
        let refused = Error::from(T::Connect {
            target: "127.0.0.1:1".into(),
            source: io_err(io::ErrorKind::ConnectionRefused),
        });
        let os = transport_source(&refused)
            .and_then(|t| std::error::Error::source(t))
            .and_then(|s| s.downcast_ref::<io::Error>())
            .map(io::Error::kind);
        assert_eq!(os, Some(io::ErrorKind::ConnectionRefused));
    }

    #[test]
    fn the_crate_constructor_keeps_kind_and_text() {
        let e = Error::transport(TransportErrorKind::Refused, "refused");
        assert_eq!(e.transport_kind(), Some(TransportErrorKind::Refused));
        assert_eq!(e.to_string(), "transport error: refused");
        assert!(std::error::Error::source(&e)
            .and_then(|s| s.source())
            .is_none());
        assert!(!e.is_timeout() && !e.is_connection_lost() && !e.may_have_run());
        assert_eq!(e.code(), None);
        // Kinds say what they are.
        assert_eq!(
            TransportErrorKind::WrongNode.to_string(),
            "another node answered"
        );
        assert_eq!(
            TransportErrorKind::Refused.to_string(),
            "connection refused"
        );
    }

    #[test]
    fn a_learnt_address_reaching_another_node_is_kind_wrong_node() {
        use crate::connection::pool::{Pool, PoolEntry};
        let mut pool = Pool::default();
        pool.add([PoolEntry {
            target: thingsdb_transport::Target::tcp("127.0.0.1", 9201),
            node: Some(1),
        }]);
        let Err(e) = pool.check_node(0, Some(0)) else {
            panic!("node 0 answered at node 1's address")
        };
        assert_eq!(e.transport_kind(), Some(TransportErrorKind::WrongNode));
        // The text as before the kinds.
        assert_eq!(
            e.to_string(),
            "transport error: thingsdb://127.0.0.1:9201 was learnt as node 1 but node 0 answered there"
        );
    }

    #[test]
    fn a_message_is_a_transport_error_of_kind_other() {
        let e = Error::Transport("refused".into());
        assert_eq!(e.transport_kind(), Some(TransportErrorKind::Other));
        assert_eq!(e.to_string(), "transport error: refused");
        assert!(std::error::Error::source(&e)
            .and_then(|s| s.source())
            .is_none());
        let retried = Error::Retried {
            attempts: 2,
            may_have_run: false,
            last: Box::new(Error::Transport(TransportError::new(
                TransportErrorKind::WrongNode,
                "another node answered",
            ))),
        };
        assert_eq!(
            retried.transport_kind(),
            Some(TransportErrorKind::WrongNode)
        );
        assert_eq!(Error::Closed.transport_kind(), None);
    }
}
