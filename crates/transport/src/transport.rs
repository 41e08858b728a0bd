//! A connection and its two halves: [`FrameReader`] and [`FrameWriter`].
//!
//! Both halves are concrete types over every way in (TCP, TLS, WebSocket,
//! secure WebSocket, Unix socket, or a byte stream of your own): calling
//! them costs no allocation and no dynamic dispatch per frame. Each offers
//! poll methods for hand-written futures and `async` wrappers over them;
//! all of them are cancel-safe.

use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use thingsdb_protocol::Frame;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::Error;
use crate::stream::{StreamReader, StreamWriter};
use crate::stream::{TcpReader, TcpWriter, TlsReader, TlsWriter};
#[cfg(unix)]
use crate::stream::{UnixReader, UnixWriter};
use crate::ws::{WsReader, WsWriter};

pub use crate::common::TransportKind;

/// A byte stream's read half, as [`Connection::from_stream`] keeps it.
type DynRead = Box<dyn AsyncRead + Send + Unpin>;
/// A byte stream's write half, as [`Connection::from_stream`] keeps it.
type DynWrite = Box<dyn AsyncWrite + Send + Unpin>;

pub(crate) enum Reader {
    Tcp(StreamReader<TcpReader>),
    Tls(StreamReader<TlsReader>),
    #[cfg(unix)]
    Unix(StreamReader<UnixReader>),
    Ws(WsReader<crate::stream::QuickAck<tokio::net::TcpStream>>),
    Wss(WsReader<crate::stream::TlsStream>),
    Custom(StreamReader<DynRead>),
}

pub(crate) enum Writer {
    Tcp(StreamWriter<TcpWriter>),
    Tls(StreamWriter<TlsWriter>),
    #[cfg(unix)]
    Unix(StreamWriter<UnixWriter>),
    Ws(WsWriter<crate::stream::QuickAck<tokio::net::TcpStream>>),
    Wss(WsWriter<crate::stream::TlsStream>),
    Custom(StreamWriter<DynWrite>),
}

/// Calls the same method on whichever variant `$on` is.
macro_rules! each {
    ($enum:ident, $on:expr, $x:ident => $e:expr) => {
        match $on {
            $enum::Tcp($x) => $e,
            $enum::Tls($x) => $e,
            #[cfg(unix)]
            $enum::Unix($x) => $e,
            $enum::Ws($x) => $e,
            $enum::Wss($x) => $e,
            $enum::Custom($x) => $e,
        }
    };
}

/// The receiving half of a connection.
///
/// [`recv`](FrameReader::recv) gives the next whole package. It is
/// cancel-safe: dropped before it completes (in a `select!`, say), it
/// loses nothing, and the next call goes on where it was. So a task can
/// call it afresh in every round of its loop.
pub struct FrameReader {
    pub(crate) inner: Reader,
}

impl fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

impl FrameReader {
    /// Which way in this connection uses.
    pub fn kind(&self) -> TransportKind {
        match &self.inner {
            Reader::Tcp(_) => TransportKind::Tcp,
            Reader::Tls(_) => TransportKind::Tls,
            #[cfg(unix)]
            Reader::Unix(_) => TransportKind::Unix,
            Reader::Ws(_) => TransportKind::Ws,
            Reader::Wss(_) => TransportKind::Wss,
            Reader::Custom(_) => TransportKind::Custom,
        }
    }

    /// Polls for the next whole package: `Ok(Some(frame))`, `Ok(None)`
    /// when the peer closed cleanly between packages, or an error (a peer
    /// closing inside a package is [`Error::ClosedMidFrame`]; bytes that
    /// are not a valid package are [`Error::Protocol`], and every later
    /// call reports it again).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Frame>, Error>> {
        each!(Reader, &mut self.inner, r => r.poll_recv(cx))
    }

    /// The next whole package; see [`poll_recv`](FrameReader::poll_recv).
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<Frame>, Error> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Takes over when quick ACKs are sent on a plain TCP connection.
    ///
    /// With [`ConnectOptions::tcp_quickack`](crate::ConnectOptions::tcp_quickack)
    /// on (Linux), the reader re-arms `TCP_QUICKACK` after every read, so
    /// the node's next small package is never held back by our delayed
    /// ACK. A caller that knows whether the node still has something to
    /// send can do better: with `manual` set, the reader leaves it, and the
    /// caller calls [`quick_ack`](FrameReader::quick_ack) after a read only
    /// when more is expected. When nothing is (one request at a time, its
    /// reply read), the ACK then rides on the next request instead of
    /// costing a packet and a system call of its own.
    ///
    /// Returns whether this reader sends quick ACKs at all: `false` for TLS,
    /// WebSocket, Unix and custom streams (they keep their behaviour), off
    /// Linux, or with the option off.
    pub fn set_manual_quick_ack(&mut self, manual: bool) -> bool {
        match &mut self.inner {
            Reader::Tcp(r) => r.get_mut().set_manual(manual),
            _ => false,
        }
    }

    /// Acknowledges at once what was received so far (re-arms
    /// `TCP_QUICKACK`); see [`set_manual_quick_ack`](FrameReader::set_manual_quick_ack).
    /// Does nothing where quick ACKs are off or not supported.
    pub fn quick_ack(&mut self) {
        if let Reader::Tcp(r) = &mut self.inner {
            r.get_mut().ack_now();
        }
    }
}

impl futures::Stream for FrameReader {
    type Item = Result<Frame, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx).map(Result::transpose)
    }
}

/// The sending half of a connection.
///
/// Sending is two steps, so that it can be cancel-safe:
/// [`queue`](FrameWriter::queue) takes one or more whole packages (and
/// checks them), and [`flush`](FrameWriter::flush) writes out everything
/// queued. A flush dropped before it completes keeps what it has not
/// written, and the next flush goes on from there: nothing is lost or
/// written twice. [`send`](FrameWriter::send) does both.
///
/// A caller with several packages waiting should queue them together
/// (in one [`Bytes`], or in several `queue` calls before one flush): a
/// stream transport then writes them with as few system calls as the
/// socket allows, and a WebSocket transport sends each as its own binary
/// message with one flush at the end.
pub struct FrameWriter {
    pub(crate) inner: Writer,
}

impl fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameWriter")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

impl FrameWriter {
    /// Which way in this connection uses.
    pub fn kind(&self) -> TransportKind {
        match &self.inner {
            Writer::Tcp(_) => TransportKind::Tcp,
            Writer::Tls(_) => TransportKind::Tls,
            #[cfg(unix)]
            Writer::Unix(_) => TransportKind::Unix,
            Writer::Ws(_) => TransportKind::Ws,
            Writer::Wss(_) => TransportKind::Wss,
            Writer::Custom(_) => TransportKind::Custom,
        }
    }

    /// Queues one or more whole packages laid back to back in `frames`
    /// (each an 8-byte header and its payload) to be written by the next
    /// flush. Bytes that are not whole packages are
    /// [`Error::NotWholeFrames`] and nothing is queued; after
    /// [`close`](FrameWriter::close) it is [`Error::Closed`].
    pub fn queue(&mut self, frames: Bytes) -> Result<(), Error> {
        each!(Writer, &mut self.inner, w => w.queue(frames))
    }

    /// Whether everything queued has been handed to the operating system.
    pub fn is_flushed(&self) -> bool {
        each!(Writer, &self.inner, w => w.is_flushed())
    }

    /// Polls writing out everything queued.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        each!(Writer, &mut self.inner, w => w.poll_flush(cx))
    }

    /// Writes out everything queued. Cancel-safe: what it has not written
    /// stays queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Queues `frames` and writes out everything queued
    /// ([`queue`](FrameWriter::queue) then [`flush`](FrameWriter::flush)).
    /// Dropped before it completes, what was not written stays queued.
    pub async fn send(&mut self, frames: Bytes) -> Result<(), Error> {
        self.queue(frames)?;
        self.flush().await
    }

    /// Polls ending the connection: writes out what is queued, then ends
    /// it cleanly (TLS close-notify, WebSocket close handshake, TCP
    /// shutdown).
    pub fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        each!(Writer, &mut self.inner, w => w.poll_close(cx))
    }

    /// Writes out what is queued and ends the connection cleanly. Queuing
    /// after this is [`Error::Closed`]; closing again does nothing.
    pub async fn close(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_close(cx)).await
    }
}

/// A full-duplex frame connection to a ThingsDB node, as
/// [`connect`](fn@crate::connect) returns it.
///
/// [`split`](Connection::split) it to send from one task while another
/// receives; neither half waits on a lock held by the other while idle.
///
/// To speak the protocol over a byte stream of your own (an SSH channel,
/// an in-memory pipe, a proxy's stream), use [`Connection::from_stream`].
#[derive(Debug)]
pub struct Connection {
    writer: FrameWriter,
    reader: FrameReader,
    peer: String,
}

impl Connection {
    pub(crate) fn new(writer: Writer, reader: Reader, peer: String) -> Connection {
        Connection {
            writer: FrameWriter { inner: writer },
            reader: FrameReader { inner: reader },
            peer,
        }
    }

    /// A connection over any byte stream, with the same framing as TCP.
    ///
    /// `peer` is what [`Connection::peer`] reports, and `max_payload` the
    /// largest payload accepted from the peer: a header announcing more is
    /// a protocol error before any room is reserved for it. The stream is
    /// split with [`tokio::io::split`] (a short lock per poll); a stream
    /// that splits into owned halves can use [`Connection::from_halves`].
    ///
    /// ```
    /// use bytes::Bytes;
    /// use thingsdb_protocol::{Frame, PackageType};
    /// use thingsdb_transport::{Connection, TransportKind};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let (a, b) = tokio::io::duplex(1024);
    /// let (mut tx, _) = Connection::from_stream(a, "a", 1 << 20).split();
    /// let (_, mut rx) = Connection::from_stream(b, "b", 1 << 20).split();
    /// assert_eq!(rx.kind(), TransportKind::Custom);
    /// tx.send(Frame::new(PackageType::Ping, 7, Bytes::new()).to_bytes()).await?;
    /// assert_eq!(rx.recv().await?.unwrap().id, 7);
    /// # Ok::<(), thingsdb_transport::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn from_stream<S>(stream: S, peer: impl Into<String>, max_payload: u32) -> Connection
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (r, w) = tokio::io::split(stream);
        Connection::from_halves(r, w, peer, max_payload)
    }

    /// A connection over the two halves of a byte stream of your own, with
    /// the same framing as TCP; see [`Connection::from_stream`].
    pub fn from_halves<R, W>(r: R, w: W, peer: impl Into<String>, max_payload: u32) -> Connection
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let kind = TransportKind::Custom;
        Connection::new(
            Writer::Custom(StreamWriter::new(Box::new(w), kind)),
            Reader::Custom(StreamReader::new(Box::new(r), kind, max_payload)),
            peer.into(),
        )
    }

    /// Which way in this connection uses.
    pub fn kind(&self) -> TransportKind {
        self.reader.kind()
    }

    /// The peer's address as text (`127.0.0.1:9200`, `ws://host:9270/`,
    /// `/run/thingsdb.sock`), for logs and errors.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The two halves: send and receive.
    pub fn split(self) -> (FrameWriter, FrameReader) {
        (self.writer, self.reader)
    }
}
