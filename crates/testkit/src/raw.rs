//! A raw protocol client for tests: send whole packages, read whole
//! frames, over TCP, a Unix socket or WebSocket.
//!
//! It does no request bookkeeping beyond [`RawClient::request`]; use it to
//! script exactly what goes on the wire.

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use thingsdb_protocol::{request, Decoder, Frame, EVENT_ID, MAX_PAYLOAD};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::conn::BoxIo;

/// How [`RawClient`] is connected.
enum Inner {
    Stream(BoxIo, Decoder),
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>),
}

/// A raw protocol client; see the [module documentation](self).
pub struct RawClient {
    inner: Inner,
    /// Events that arrived while [`RawClient::request`] waited for a reply,
    /// in arrival order.
    pub events: Vec<Frame>,
    /// Frames with an id other than the one [`RawClient::request`] waited
    /// for, that were not events.
    pub other: Vec<Frame>,
}

impl std::fmt::Debug for RawClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawClient")
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl RawClient {
    fn new(inner: Inner) -> RawClient {
        RawClient {
            inner,
            events: Vec::new(),
            other: Vec::new(),
        }
    }

    /// Connects over TCP (`host:port`).
    pub async fn tcp(addr: impl tokio::net::ToSocketAddrs) -> std::io::Result<RawClient> {
        let s = TcpStream::connect(addr).await?;
        let _ = s.set_nodelay(true);
        Ok(RawClient::new(Inner::Stream(Box::new(s), Decoder::new())))
    }

    /// Connects to a Unix socket.
    pub async fn unix(path: impl AsRef<Path>) -> std::io::Result<RawClient> {
        let s = UnixStream::connect(path).await?;
        Ok(RawClient::new(Inner::Stream(Box::new(s), Decoder::new())))
    }

    /// Connects over WebSocket (`ws://host:port`).
    pub async fn ws(url: &str) -> std::io::Result<RawClient> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.map_err(other)?;
        Ok(RawClient::new(Inner::Ws(Box::new(ws))))
    }

    /// Writes bytes: over a stream as they are, over WebSocket as one
    /// binary message.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.inner {
            Inner::Stream(s, _) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Inner::Ws(ws) => ws
                .send(Message::Binary(Bytes::copy_from_slice(bytes)))
                .await
                .map_err(other),
        }
    }

    /// The next frame; `Ok(None)` when the peer closed the connection.
    /// A frame the decoder refuses is an error.
    pub async fn recv(&mut self) -> std::io::Result<Option<Frame>> {
        match &mut self.inner {
            Inner::Stream(s, dec) => loop {
                if let Some(f) = dec.next_frame().map_err(other)? {
                    return Ok(Some(f));
                }
                if s.read_buf(dec.buffer_mut()).await? == 0 {
                    return Ok(None);
                }
            },
            Inner::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        return Frame::parse(b, MAX_PAYLOAD).map(Some).map_err(other)
                    }
                    Some(Ok(Message::Close(_))) | None => return Ok(None),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(other(e)),
                }
            },
        }
    }

    /// As [`RawClient::recv`], failing with `TimedOut` after `d`.
    pub async fn recv_timeout(&mut self, d: Duration) -> std::io::Result<Option<Frame>> {
        tokio::time::timeout(d, self.recv())
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no frame in time"))?
    }

    /// Sends a package and waits (at most `d`) for the frame with its id;
    /// events that arrive meanwhile go to [`RawClient::events`].
    pub async fn request_timeout(&mut self, pkg: &[u8], d: Duration) -> std::io::Result<Frame> {
        let id = pkg
            .get(4..6)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or_else(|| other("a package is at least a header"))?;
        self.send(pkg).await?;
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_timeout(left).await? {
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed before the reply",
                    ))
                }
                Some(f) if f.id == id && f.id != EVENT_ID => return Ok(f),
                Some(f) if f.id == EVENT_ID => self.events.push(f),
                Some(f) => self.other.push(f),
            }
        }
    }

    /// [`RawClient::request_timeout`] with a 30 s hang guard.
    pub async fn request(&mut self, pkg: &[u8]) -> std::io::Result<Frame> {
        self.request_timeout(pkg, Duration::from_secs(30)).await
    }

    /// Sends AUTH `[user, password]` with id 0 and returns the reply.
    pub async fn auth(&mut self, user: &str, password: &str) -> std::io::Result<Frame> {
        let mut b = BytesMut::new();
        request::encode_auth(&mut b, 0, user, password).map_err(other)?;
        self.request(&b).await
    }
}
