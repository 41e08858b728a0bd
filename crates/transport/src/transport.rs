//! The one trait every way in implements.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use thingsdb_protocol::Frame;

use crate::error::Error;

/// Which way in a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportKind {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket (`ws://`).
    Ws,
    /// Secure WebSocket (`wss://`).
    Wss,
    /// Unix domain socket.
    Unix,
    /// A transport defined outside this crate.
    Custom,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
            TransportKind::Ws => "ws",
            TransportKind::Wss => "wss",
            TransportKind::Unix => "unix",
            TransportKind::Custom => "custom",
        })
    }
}

/// The sending half of a connection.
#[async_trait]
pub trait FrameSend: Send + 'static {
    /// Sends one or more whole packages laid back to back in `frames`
    /// (each an 8-byte header and its payload), and flushes them.
    ///
    /// Stream transports write the bytes as they are, in as few writes as
    /// the socket allows; WebSocket transports send each package as its own
    /// binary message. So a caller that has several packages queued should
    /// pass them together: that is what batches them.
    ///
    /// Bytes that are not whole packages are [`Error::NotWholeFrames`] and
    /// nothing is sent.
    async fn send(&mut self, frames: Bytes) -> Result<(), Error>;

    /// Ends the connection cleanly (TLS close-notify, WebSocket close
    /// handshake, TCP shutdown). Sending after this is [`Error::Closed`].
    async fn close(&mut self) -> Result<(), Error>;
}

/// The receiving half of a connection.
#[async_trait]
pub trait FrameRecv: Send + 'static {
    /// The next whole package, `Ok(None)` when the peer closed cleanly
    /// between packages, or an error (a peer closing inside a package is
    /// [`Error::ClosedMidFrame`]).
    ///
    /// Cancel-safe: if the returned future is dropped before it completes,
    /// no received bytes are lost; the next call goes on where it was.
    async fn recv(&mut self) -> Result<Option<Frame>, Error>;
}

/// A full-duplex frame connection to a ThingsDB node.
///
/// Split it into its halves to send from one task while another receives;
/// neither half waits on a lock held by the other.
pub trait Transport: Send + 'static {
    /// Which way in this connection uses.
    fn kind(&self) -> TransportKind;

    /// The peer's address as text (`127.0.0.1:9200`, `ws://host:9270/`,
    /// `/run/thingsdb.sock`), for logs and errors.
    fn peer(&self) -> String;

    /// The two halves: send and receive.
    fn split(self: Box<Self>) -> (Box<dyn FrameSend>, Box<dyn FrameRecv>);
}

/// A connection of any kind, as [`connect`](fn@crate::connect) returns it.
pub type Connection = Box<dyn Transport>;
