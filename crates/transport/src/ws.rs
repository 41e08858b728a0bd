//! Packages over WebSocket (`ws://`, `wss://`), by tokio-tungstenite.
//!
//! Exactly one package per binary message, both ways. The WebSocket layer
//! reassembles fragmented messages (a node sends large packages as many
//! continuation frames), answers pings and runs the close handshake.
//!
//! The stream is split into a sink and a stream half; each half takes the
//! connection's lock only while it is being polled, never while it waits,
//! so a task blocked in `recv` does not hold up a sender. Pong replies that
//! tungstenite queues when a ping arrives are written by the receiving half
//! itself on its next read (and by any send), so they go out even on a
//! connection where nothing is sent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{FutureExt, SinkExt, StreamExt};
use thingsdb_protocol::Frame;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::error::Error;
use crate::frames::{count_whole_frames, split_next};
use crate::stream::Halves;
use crate::transport::{Connection, FrameRecv, FrameSend, TransportKind};

/// The tungstenite configuration for a message limit of `max_message`
/// bytes (header included).
pub(crate) fn config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// Runs the client handshake for `uri` over an open stream.
pub(crate) async fn handshake<S>(
    stream: S,
    uri: &str,
    max_message: usize,
) -> Result<WebSocketStream<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(uri, stream, Some(config(max_message)))
            .await
            .map_err(|e| match e {
                WsError::Http(resp) => Error::WebSocket(format!(
                    "handshake with {uri} refused: HTTP {}",
                    resp.status()
                )),
                e => Error::WebSocket(format!("handshake with {uri} failed: {e}")),
            })?;
    Ok(ws)
}

/// A connection over an established WebSocket.
pub(crate) fn from_websocket<S>(
    ws: WebSocketStream<S>,
    kind: TransportKind,
    peer: String,
    max_payload: u32,
) -> Connection
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sink, stream) = ws.split();
    let close_sent = Arc::new(AtomicBool::new(false));
    Box::new(Halves {
        kind,
        peer,
        send: Box::new(WsSend {
            sink,
            kind,
            closed: false,
            close_sent: close_sent.clone(),
        }),
        recv: Box::new(WsRecv {
            stream,
            kind,
            max_payload,
            ended: false,
            close_sent,
        }),
    })
}

fn ws_error(kind: TransportKind, e: WsError) -> Error {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => Error::Closed,
        WsError::Io(e) => Error::io(kind, e),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            Error::WebSocket("the peer closed the connection without a closing handshake".into())
        }
        e => Error::WebSocket(e.to_string()),
    }
}

struct WsSend<S> {
    sink: SplitSink<WebSocketStream<S>, Message>,
    kind: TransportKind,
    closed: bool,
    /// Set once our Close frame is on its way.
    close_sent: Arc<AtomicBool>,
}

#[async_trait]
impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> FrameSend for WsSend<S> {
    async fn send(&mut self, mut frames: Bytes) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        if count_whole_frames(&frames)? == 0 {
            return Ok(());
        }
        // `feed` only queues into tungstenite's write buffer (written out
        // when it fills); the one `flush` writes the rest.
        while let Some(pkg) = split_next(&mut frames) {
            self.sink
                .feed(Message::Binary(pkg))
                .await
                .map_err(|e| ws_error(self.kind, e))?;
        }
        self.sink.flush().await.map_err(|e| ws_error(self.kind, e))
    }

    async fn close(&mut self) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.close_sent.store(true, Ordering::Release);
        // Sends a Close frame and flushes; the receiving half sees the
        // peer's answer as the end of the stream.
        match self.sink.close().await {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Ok(()),
            Err(e) => Err(ws_error(self.kind, e)),
        }
    }
}

struct WsRecv<S> {
    stream: SplitStream<WebSocketStream<S>>,
    kind: TransportKind,
    max_payload: u32,
    ended: bool,
    /// Set by the sending half when it has sent a Close frame: after that a
    /// peer dropping the TCP connection without its own Close is a normal
    /// end, not an error.
    close_sent: Arc<AtomicBool>,
}

#[async_trait]
impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> FrameRecv for WsRecv<S> {
    async fn recv(&mut self) -> Result<Option<Frame>, Error> {
        while !self.ended {
            // `next` is cancel-safe: a message is either returned or still
            // inside tungstenite.
            let msg = match self.stream.next().await {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    self.ended = true;
                    if self.close_sent.load(Ordering::Acquire) {
                        break;
                    }
                    return Err(ws_error(self.kind, e));
                }
            };
            match msg {
                Message::Binary(b) => return Ok(Some(Frame::parse(b, self.max_payload)?)),
                Message::Text(_) => return Err(Error::TextMessage),
                // tungstenite queued the pong; the next read writes it.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                Message::Close(_) => {
                    // tungstenite queued the close reply; one more poll
                    // writes it without waiting for anything to arrive.
                    self.ended = true;
                    let _ = self.stream.next().now_or_never();
                }
            }
        }
        Ok(None)
    }
}
