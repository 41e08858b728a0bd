//! Packages over WebSocket (`ws://`, `wss://`).
//!
//! Exactly one package per binary message, both ways. The WebSocket layer
//! ([`codec`]: tungstenite's handshake, and the open connection's framing,
//! without I/O) reassembles fragmented
//! messages (a node sends large packages as many continuation frames),
//! answers pings and runs the close handshake; this module moves its bytes
//! over an async stream.
//!
//! The two halves share the stream and the codec behind a lock, which each
//! takes only while it is being polled, never while it waits, so a task
//! blocked in `recv` does not hold up a sender. Replies the codec owes the
//! peer (a pong for each ping, the answer to a Close) are written by the
//! receiving half itself when the sending half is not writing, so they go
//! out even on a connection where nothing is sent; while the sending half
//! is writing, they go out with what it writes.

pub(crate) mod codec;

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use thingsdb_protocol::Frame;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::Error;
use crate::frames::count_whole_frames;
use crate::stream::make_room;
use crate::transport::TransportKind;
use codec::{Codec, Handshake};

/// Runs the client handshake for `uri` over an open stream and gives the
/// connection's two halves.
pub(crate) async fn open<S>(
    stream: S,
    uri: &str,
    kind: TransportKind,
    max_message: usize,
    max_payload: u32,
) -> Result<(WsWriter<S>, WsReader<S>), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (io, codec) = handshake(stream, uri, kind, max_message, max_payload).await?;
    Ok(split(io, codec, kind))
}

/// Runs the client handshake for `uri` over an open stream.
async fn handshake<S>(
    mut stream: S,
    uri: &str,
    kind: TransportKind,
    max_message: usize,
    max_payload: u32,
) -> Result<(S, Codec), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut state = codec::handshake(uri, kind, max_message, max_payload)?;
    let mut buf = vec![0u8; 4096];
    loop {
        match state {
            Handshake::Done(codec) => {
                // A reply owed already (a ping that came with the answer)
                // goes out with the reading half's first poll.
                return Ok((stream, codec));
            }
            Handshake::Waiting(mut w) => {
                let out = w.outgoing();
                if !out.is_empty() {
                    stream
                        .write_all(out)
                        .await
                        .map_err(|e| Error::io(kind, e))?;
                    out.clear();
                    stream.flush().await.map_err(|e| Error::io(kind, e))?;
                }
                let n = stream
                    .read(&mut buf)
                    .await
                    .map_err(|e| Error::io(kind, e))?;
                state = w.feed(&buf[..n])?;
            }
        }
    }
}

/// What the two halves share.
struct Shared<S> {
    io: S,
    codec: Codec,
    /// The sending half has bytes to write and is writing them: the
    /// receiving half leaves the codec's replies to it (both writing
    /// would take each other's wake-ups).
    flushing: bool,
}

type Lock<S> = Arc<Mutex<Shared<S>>>;

fn lock<S>(m: &Mutex<Shared<S>>) -> MutexGuard<'_, Shared<S>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The two halves over an established WebSocket.
fn split<S>(io: S, codec: Codec, kind: TransportKind) -> (WsWriter<S>, WsReader<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let shared = Arc::new(Mutex::new(Shared {
        io,
        codec,
        flushing: false,
    }));
    (
        WsWriter {
            shared: shared.clone(),
            kind,
            closed: false,
            flushed: true,
        },
        WsReader { shared, kind },
    )
}

/// Writes the codec's bytes to send until they are all written.
fn poll_write_out<S: AsyncWrite + Unpin>(
    s: &mut Shared<S>,
    kind: TransportKind,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Error>> {
    loop {
        let Shared { io, codec, .. } = s;
        let out = codec.outgoing();
        if out.is_empty() {
            return Pin::new(io).poll_flush(cx).map_err(|e| Error::io(kind, e));
        }
        match ready!(Pin::new(&mut *io).poll_write(cx, out)) {
            Ok(0) => {
                return Poll::Ready(Err(Error::io(kind, std::io::ErrorKind::WriteZero.into())))
            }
            Ok(n) => out.advance(n),
            Err(e) => return Poll::Ready(Err(Error::io(kind, e))),
        }
    }
}

/// The sending side of a WebSocket.
pub(crate) struct WsWriter<S> {
    shared: Lock<S>,
    kind: TransportKind,
    closed: bool,
    /// Nothing queued is left to write.
    flushed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWriter<S> {
    pub(crate) fn queue(&mut self, frames: Bytes) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        count_whole_frames(&frames)?;
        if frames.is_empty() {
            return Ok(());
        }
        lock(&self.shared).codec.encode(frames)?;
        self.flushed = false;
        Ok(())
    }

    pub(crate) fn is_flushed(&self) -> bool {
        self.flushed
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.flushed {
            return Poll::Ready(Ok(()));
        }
        let mut s = lock(&self.shared);
        s.flushing = true;
        let r = ready!(poll_write_out(&mut s, self.kind, cx));
        s.flushing = false;
        self.flushed = r.is_ok();
        Poll::Ready(r)
    }

    pub(crate) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if !self.closed {
            self.closed = true;
            // Sends a Close frame after what is queued; the receiving half
            // sees the peer's answer as the end of the stream.
            lock(&self.shared).codec.close();
            self.flushed = false;
        }
        self.poll_flush(cx)
    }
}

impl<S> Drop for WsWriter<S> {
    fn drop(&mut self) {
        // A flush given up half way: the receiving half writes replies
        // again.
        lock(&self.shared).flushing = false;
    }
}

/// The receiving side of a WebSocket.
pub(crate) struct WsReader<S> {
    shared: Lock<S>,
    kind: TransportKind,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsReader<S> {
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Frame>, Error>> {
        let mut guard = lock(&self.shared);
        let s = &mut *guard;
        loop {
            // Replies owed to the peer go out now, unless the sending half
            // is writing (then they go out with its bytes). One that cannot
            // be written now is tried again on the next poll.
            if !s.flushing && !s.codec.outgoing().is_empty() {
                if let Poll::Ready(Err(e)) = poll_write_out(s, self.kind, cx) {
                    s.codec.broken(e);
                }
            }
            if let Some(item) = s.codec.next() {
                return Poll::Ready(item.map(Some));
            }
            if s.codec.ended() {
                return Poll::Ready(Ok(None));
            }
            // Straight into the codec's input: no copy on the way.
            let inbox = s.codec.inbox();
            make_room(inbox);
            match ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut s.io),
                cx,
                inbox
            )) {
                Ok(0) => s.codec.feed_end(),
                Ok(_) => s.codec.decode_fed(),
                Err(e) => s.codec.broken(Error::io(self.kind, e)),
            }
        }
    }
}
