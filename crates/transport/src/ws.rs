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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use thingsdb_protocol::Frame;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::error::Error;
use crate::frames::{count_whole_frames, split_next};
use crate::transport::TransportKind;

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
                WsError::Http(resp) => Error::ws(
                    format!("handshake with {uri} refused: HTTP {}", resp.status()),
                    None,
                ),
                e => Error::ws(
                    format!("handshake with {uri} failed: {e}"),
                    Some(Box::new(e)),
                ),
            })?;
    Ok(ws)
}

/// The two halves over an established WebSocket.
pub(crate) fn split<S>(
    ws: WebSocketStream<S>,
    kind: TransportKind,
    max_payload: u32,
) -> (WsWriter<S>, WsReader<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (sink, stream) = ws.split();
    let close_sent = Arc::new(AtomicBool::new(false));
    (
        WsWriter {
            sink,
            kind,
            queued: VecDeque::new(),
            unflushed: false,
            closed: false,
            close_sent: close_sent.clone(),
        },
        WsReader {
            stream,
            kind,
            max_payload,
            ended: false,
            close_sent,
        },
    )
}

fn ws_error(kind: TransportKind, e: WsError) -> Error {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => Error::Closed,
        WsError::Io(e) => Error::io(kind, e),
        e @ WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Error::ws(
            "the peer closed the connection without a closing handshake",
            Some(Box::new(e)),
        ),
        e => Error::ws(e.to_string(), Some(Box::new(e))),
    }
}

/// The sending side of a WebSocket.
pub(crate) struct WsWriter<S> {
    sink: SplitSink<WebSocketStream<S>, Message>,
    kind: TransportKind,
    /// Packages queued and not yet given to tungstenite.
    queued: VecDeque<Bytes>,
    /// Whether tungstenite holds messages not yet flushed.
    unflushed: bool,
    closed: bool,
    /// Set once our Close frame is on its way.
    close_sent: Arc<AtomicBool>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWriter<S> {
    pub(crate) fn queue(&mut self, mut frames: Bytes) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        count_whole_frames(&frames)?;
        while let Some(pkg) = split_next(&mut frames) {
            self.queued.push_back(pkg);
        }
        Ok(())
    }

    pub(crate) fn is_flushed(&self) -> bool {
        self.queued.is_empty() && !self.unflushed
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let kind = self.kind;
        while !self.queued.is_empty() {
            // `poll_ready` writes tungstenite's buffer out only when it is
            // full; `start_send` just appends to it.
            ready!(self.sink.poll_ready_unpin(cx)).map_err(|e| ws_error(kind, e))?;
            if let Some(pkg) = self.queued.pop_front() {
                self.sink
                    .start_send_unpin(Message::Binary(pkg))
                    .map_err(|e| ws_error(kind, e))?;
                self.unflushed = true;
            }
        }
        if self.unflushed {
            ready!(self.sink.poll_flush_unpin(cx)).map_err(|e| ws_error(kind, e))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    pub(crate) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.closed = true;
        ready!(self.poll_flush(cx))?;
        self.close_sent.store(true, Ordering::Release);
        // Sends a Close frame and flushes; the receiving half sees the
        // peer's answer as the end of the stream.
        match ready!(self.sink.poll_close_unpin(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(ws_error(self.kind, e))),
        }
    }
}

/// The receiving side of a WebSocket.
pub(crate) struct WsReader<S> {
    stream: SplitStream<WebSocketStream<S>>,
    kind: TransportKind,
    max_payload: u32,
    ended: bool,
    /// Set by the sending half when it has sent a Close frame: after that a
    /// peer dropping the TCP connection without its own Close is a normal
    /// end, not an error.
    close_sent: Arc<AtomicBool>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsReader<S> {
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Frame>, Error>> {
        while !self.ended {
            // A message is either returned or still inside tungstenite.
            let msg = match ready!(self.stream.poll_next_unpin(cx)) {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    self.ended = true;
                    if self.close_sent.load(Ordering::Acquire) {
                        break;
                    }
                    return Poll::Ready(Err(ws_error(self.kind, e)));
                }
            };
            match msg {
                Message::Binary(b) => {
                    return Poll::Ready(Ok(Some(Frame::parse(b, self.max_payload)?)))
                }
                Message::Text(_) => return Poll::Ready(Err(Error::TextMessage)),
                // tungstenite queued the pong; the next read writes it.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                Message::Close(_) => {
                    // tungstenite queued the close reply; one more poll
                    // writes it without waiting for anything to arrive.
                    self.ended = true;
                    let _ = self.stream.poll_next_unpin(cx);
                }
            }
        }
        Poll::Ready(Ok(None))
    }
}
