//! Packages over a byte stream: TCP, TLS over TCP, Unix sockets, or any
//! [`AsyncRead`] + [`AsyncWrite`] given to
//! [`Connection::from_stream`](crate::Connection::from_stream).
//!
//! Receiving reads straight into one reused [`BytesMut`] and cuts whole
//! packages off its front with [`thingsdb_protocol::decode_frame`]; a
//! package's payload shares that buffer, so it is never copied after the
//! read. Sending writes the queued batches as they are, which is one
//! system call per batch when the socket takes it all.
//!
//! ## Quick ACKs
//!
//! A ThingsDB node (1.9.2) does not set `TCP_NODELAY` on its client
//! sockets, so when it writes two small packages back to back (a JOIN's
//! reply and its ON_JOIN, two events, an event and a reply) Nagle's
//! algorithm holds the second until the first is acknowledged, and Linux
//! delays that acknowledgement by up to 40 ms. On Linux every TCP and TLS
//! connection here therefore re-arms `TCP_QUICKACK` after each read that
//! returned data (the flag is not sticky); the call also sends at once an
//! ACK the kernel was holding back. (A node's WebSocket listener sets
//! `TCP_NODELAY`, so WebSocket connections do without.) See
//! [`ConnectOptions::tcp_quickack`](crate::ConnectOptions::tcp_quickack).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use thingsdb_protocol::{decode_frame, Frame, Header, HEADER_LEN};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::error::Error;
use crate::frames::count_whole_frames;
use crate::transport::TransportKind;

/// Reserve this much when a receive buffer runs low (and read at most this
/// much at a time into a blocking reader's scratch).
pub(crate) const READ_CHUNK: usize = 64 * 1024;
/// Spare room below which a receive buffer is topped up before a read.
const MIN_SPARE: usize = 4 * 1024;

/// Makes room in a receive buffer before a read, when less than
/// `MIN_SPARE` is spare: packages are cut off its front and handed on as
/// slices of it, and topping it up only when it runs low reclaims the
/// buffer in place once they are gone (reserving before every read would
/// allocate anew whenever one of them is still alive).
pub(crate) fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < MIN_SPARE {
        buf.reserve(READ_CHUNK);
    }
}

/// The TLS stream every TLS and secure WebSocket connection runs over.
pub(crate) type TlsStream = tokio_rustls::client::TlsStream<QuickAck<TcpStream>>;
pub(crate) type TcpReader = QuickAck<tokio::net::tcp::OwnedReadHalf>;
pub(crate) type TcpWriter = tokio::net::tcp::OwnedWriteHalf;
pub(crate) type TlsReader = tokio::io::ReadHalf<TlsStream>;
pub(crate) type TlsWriter = tokio::io::WriteHalf<TlsStream>;
#[cfg(unix)]
pub(crate) type UnixReader = tokio::net::unix::OwnedReadHalf;
#[cfg(unix)]
pub(crate) type UnixWriter = tokio::net::unix::OwnedWriteHalf;

/// Something that is (or reads from) a TCP socket.
pub(crate) trait TcpSocket {
    /// The socket.
    fn socket(&self) -> &TcpStream;
}

impl TcpSocket for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

impl TcpSocket for tokio::net::tcp::OwnedReadHalf {
    fn socket(&self) -> &TcpStream {
        self.as_ref()
    }
}

/// A TCP stream (or its read half) that re-arms `TCP_QUICKACK` after each
/// read that returned data, when `on` (Linux only; elsewhere a plain
/// pass-through).
#[derive(Debug)]
pub(crate) struct QuickAck<T> {
    io: T,
    on: bool,
    /// The owner re-arms through [`QuickAck::ack_now`] when it knows more
    /// is coming, instead of after every read.
    manual: bool,
}

impl<T: TcpSocket> QuickAck<T> {
    pub(crate) fn new(io: T, on: bool) -> Self {
        QuickAck {
            io,
            on: on && cfg!(target_os = "linux"),
            manual: false,
        }
    }

    /// Leaves re-arming to [`QuickAck::ack_now`] (`true`) or does it after
    /// every read (`false`). Returns whether quick ACKs are on at all.
    pub(crate) fn set_manual(&mut self, manual: bool) -> bool {
        self.manual = manual;
        self.on
    }

    /// Re-arms now: an ACK the kernel is holding back goes out at once.
    pub(crate) fn ack_now(&mut self) {
        if self.on {
            self.rearm();
        }
    }

    fn rearm(&mut self) {
        #[cfg(target_os = "linux")]
        if socket2::SockRef::from(self.io.socket())
            .set_tcp_quickack(true)
            .is_err()
        {
            // Not a TCP socket after all, or refused: stop asking.
            self.on = false;
        }
    }
}

impl<T: TcpSocket + AsyncRead + Unpin> AsyncRead for QuickAck<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if this.on
            && !this.manual
            && matches!(r, Poll::Ready(Ok(())))
            && buf.filled().len() > before
        {
            this.rearm();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for QuickAck<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The receiving side of a byte stream.
pub(crate) struct StreamReader<R> {
    r: R,
    buf: BytesMut,
    max_payload: u32,
    kind: TransportKind,
}

impl<R: AsyncRead + Unpin> StreamReader<R> {
    pub(crate) fn new(r: R, kind: TransportKind, max_payload: u32) -> Self {
        StreamReader {
            r,
            buf: BytesMut::with_capacity(READ_CHUNK),
            max_payload,
            kind,
        }
    }

    /// The stream it reads from.
    pub(crate) fn get_mut(&mut self) -> &mut R {
        &mut self.r
    }

    /// What ending the stream now means: a clean end between packages, or
    /// a package cut short.
    fn at_eof(&self) -> Result<Option<Frame>, Error> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let needed = match self.buf.first_chunk::<HEADER_LEN>() {
            Some(h) => Header::decode(h, self.max_payload)?.frame_len(),
            None => HEADER_LEN,
        };
        Err(Error::ClosedMidFrame {
            available: self.buf.len(),
            needed,
        })
    }

    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Frame>, Error>> {
        loop {
            // A protocol error leaves the bad header in the buffer, so every
            // later call reports it again: the stream is out of sync.
            if let Some(f) = decode_frame(&mut self.buf, self.max_payload)? {
                return Poll::Ready(Ok(Some(f)));
            }
            make_room(&mut self.buf);
            // Reads into the spare capacity; Pending means nothing was read.
            match ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut self.r),
                cx,
                &mut self.buf
            )) {
                Ok(0) => return Poll::Ready(self.at_eof()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A TLS peer that closes without close_notify: an end like
                // any other, since packages delimit themselves.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Poll::Ready(self.at_eof())
                }
                Err(e) => return Poll::Ready(Err(Error::io(self.kind, e))),
            }
        }
    }
}

/// The sending side of a byte stream.
pub(crate) struct StreamWriter<W> {
    w: W,
    /// Batches queued and not yet written; the front one may be part
    /// written.
    queued: VecDeque<Bytes>,
    /// Whether the last write needs a flush (TLS, buffered streams).
    unflushed: bool,
    /// No more queuing: [`StreamWriter::poll_close`] began.
    closed: bool,
    /// The shutdown went through.
    shut: bool,
    kind: TransportKind,
}

impl<W: AsyncWrite + Unpin> StreamWriter<W> {
    pub(crate) fn new(w: W, kind: TransportKind) -> Self {
        StreamWriter {
            w,
            queued: VecDeque::new(),
            unflushed: false,
            closed: false,
            shut: false,
            kind,
        }
    }

    pub(crate) fn queue(&mut self, frames: Bytes) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        if count_whole_frames(&frames)? > 0 {
            self.queued.push_back(frames);
        }
        Ok(())
    }

    pub(crate) fn is_flushed(&self) -> bool {
        self.queued.is_empty() && !self.unflushed
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let kind = self.kind;
        while let Some(front) = self.queued.front_mut() {
            match ready!(Pin::new(&mut self.w).poll_write(cx, front)) {
                Ok(0) => {
                    return Poll::Ready(Err(Error::io(
                        kind,
                        io::Error::from(io::ErrorKind::WriteZero),
                    )))
                }
                Ok(n) => {
                    self.unflushed = true;
                    front.advance(n);
                    if front.is_empty() {
                        self.queued.pop_front();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(Error::io(kind, e))),
            }
        }
        if self.unflushed {
            // A no-op for sockets; TLS and buffered streams need it.
            ready!(Pin::new(&mut self.w).poll_flush(cx)).map_err(|e| Error::io(kind, e))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    pub(crate) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.shut {
            return Poll::Ready(Ok(()));
        }
        self.closed = true;
        ready!(self.poll_flush(cx))?;
        let r = match ready!(Pin::new(&mut self.w).poll_shutdown(cx)) {
            Ok(()) => Ok(()),
            // The peer went first: nothing left to end.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            Err(e) => Err(Error::io(self.kind, e)),
        };
        self.shut = true;
        Poll::Ready(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packages handed on stay alive a while (until the caller has taken
    /// their answer): room is made only when the buffer runs low, not
    /// before every read, or every read would allocate a new buffer.
    #[test]
    fn room_is_made_only_when_the_buffer_runs_low() {
        let mut buf = BytesMut::new();
        let mut kept = Vec::new();
        let mut moves = 0;
        for _ in 0..1000 {
            let before = buf.as_ptr();
            make_room(&mut buf);
            if buf.as_ptr() != before {
                moves += 1;
            }
            assert!(buf.capacity() >= MIN_SPARE);
            buf.extend_from_slice(&[7u8; 100]);
            // The last package cut off is still alive at the next read.
            kept.push(buf.split().freeze());
            if kept.len() > 1 {
                kept.remove(0);
            }
        }
        // 100 kB through 64 KiB buffers: a few new ones, not 1000.
        assert!(moves <= 4, "{moves} new buffers");
    }
}
