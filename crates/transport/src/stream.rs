//! Packages over a byte stream: TCP, TLS over TCP, Unix sockets, or any
//! [`AsyncRead`] + [`AsyncWrite`] a caller brings.
//!
//! Receiving reads straight into one reused [`BytesMut`] and cuts whole
//! packages off its front with [`thingsdb_protocol::decode_frame`]; a
//! package's payload shares that buffer, so it is never copied after the
//! read. Sending writes a batch of packages with one `write_all`, which is
//! one system call when the socket takes it all.

use std::io;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use thingsdb_protocol::{decode_frame, Frame, Header, HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::Error;
use crate::frames::count_whole_frames;
use crate::transport::{Connection, FrameRecv, FrameSend, Transport, TransportKind};

/// Reserve this much when the receive buffer runs low.
const READ_CHUNK: usize = 64 * 1024;
/// Spare room below which the receive buffer is topped up before a read.
const MIN_SPARE: usize = 4 * 1024;

/// A connection over any byte stream, with the same framing as TCP.
///
/// `kind` is what [`Transport::kind`] reports (use
/// [`TransportKind::Custom`] for a stream of your own), `peer` what
/// [`Transport::peer`] reports, and `max_payload` the largest payload
/// accepted from the peer: a header announcing more is a protocol error
/// before any room is reserved for it.
///
/// The stream is split with [`tokio::io::split`], so sending and receiving
/// can go on in different tasks.
///
/// ```
/// use bytes::Bytes;
/// use thingsdb_protocol::{Frame, PackageType};
/// use thingsdb_transport::{from_stream, TransportKind};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let (a, b) = tokio::io::duplex(1024);
/// let (mut tx, _) = from_stream(a, TransportKind::Custom, "a", 1 << 20).split();
/// let (_, mut rx) = from_stream(b, TransportKind::Custom, "b", 1 << 20).split();
/// tx.send(Frame::new(PackageType::Ping, 7, Bytes::new()).to_bytes()).await?;
/// assert_eq!(rx.recv().await?.unwrap().id, 7);
/// # Ok::<(), thingsdb_transport::Error>(())
/// # }).unwrap();
/// ```
pub fn from_stream<S>(
    stream: S,
    kind: TransportKind,
    peer: impl Into<String>,
    max_payload: u32,
) -> Connection
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (r, w) = tokio::io::split(stream);
    from_halves(r, w, kind, peer.into(), max_payload)
}

/// A connection from the two halves of a stream that splits without a
/// lock (`TcpStream::into_split`, `UnixStream::into_split`).
pub(crate) fn from_halves<R, W>(
    r: R,
    w: W,
    kind: TransportKind,
    peer: String,
    max_payload: u32,
) -> Connection
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    Box::new(Halves {
        kind,
        peer,
        send: Box::new(StreamSend {
            w,
            kind,
            closed: false,
        }),
        recv: Box::new(StreamRecv {
            r,
            buf: BytesMut::with_capacity(READ_CHUNK),
            max_payload,
            kind,
        }),
    })
}

/// A connection already made of its two boxed halves.
pub(crate) struct Halves {
    pub(crate) kind: TransportKind,
    pub(crate) peer: String,
    pub(crate) send: Box<dyn FrameSend>,
    pub(crate) recv: Box<dyn FrameRecv>,
}

impl Transport for Halves {
    fn kind(&self) -> TransportKind {
        self.kind
    }

    fn peer(&self) -> String {
        self.peer.clone()
    }

    fn split(self: Box<Self>) -> (Box<dyn FrameSend>, Box<dyn FrameRecv>) {
        (self.send, self.recv)
    }
}

struct StreamSend<W> {
    w: W,
    kind: TransportKind,
    closed: bool,
}

#[async_trait]
impl<W: AsyncWrite + Send + Unpin + 'static> FrameSend for StreamSend<W> {
    async fn send(&mut self, frames: Bytes) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        if count_whole_frames(&frames)? == 0 {
            return Ok(());
        }
        let kind = self.kind;
        self.w
            .write_all(&frames)
            .await
            .map_err(|e| Error::io(kind, e))?;
        // A no-op for sockets; TLS and buffered streams need it.
        self.w.flush().await.map_err(|e| Error::io(kind, e))
    }

    async fn close(&mut self) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        match self.w.shutdown().await {
            Ok(()) => Ok(()),
            // The peer went first: nothing left to end.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            Err(e) => Err(Error::io(self.kind, e)),
        }
    }
}

struct StreamRecv<R> {
    r: R,
    buf: BytesMut,
    max_payload: u32,
    kind: TransportKind,
}

impl<R> StreamRecv<R> {
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
}

#[async_trait]
impl<R: AsyncRead + Send + Unpin + 'static> FrameRecv for StreamRecv<R> {
    async fn recv(&mut self) -> Result<Option<Frame>, Error> {
        loop {
            // A protocol error leaves the bad header in the buffer, so every
            // later call reports it again: the stream is out of sync.
            if let Some(f) = decode_frame(&mut self.buf, self.max_payload)? {
                return Ok(Some(f));
            }
            if self.buf.capacity() - self.buf.len() < MIN_SPARE {
                // Reclaims the buffer when the frames cut from it are gone.
                self.buf.reserve(READ_CHUNK);
            }
            // `read_buf` is cancel-safe: dropped before it completes, it has
            // read nothing.
            match self.r.read_buf(&mut self.buf).await {
                Ok(0) => return self.at_eof(),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A TLS peer that closes without close_notify: an end like
                // any other, since packages delimit themselves.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return self.at_eof(),
                Err(e) => return Err(Error::io(self.kind, e)),
            }
        }
    }
}
