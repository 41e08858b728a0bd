//! Packages over std sockets, without an async runtime: TCP, TLS over
//! TCP, Unix sockets, and WebSocket (`ws://`, `wss://`) through the same
//! WebSocket codec (no I/O of its own) as the async transport.
//!
//! [`connect`] opens a connection and splits it into a [`BlockingReader`]
//! and a [`BlockingWriter`] that two threads may use at once: the reader
//! may sit in a blocking read while the writer sends. A TCP or Unix
//! connection is one socket with two handles (`try_clone`); TLS and
//! WebSocket keep their state (rustls' `ClientConnection`, the WebSocket
//! codec) behind a lock that is taken only to process bytes already
//! read or to queue bytes to write, never during a blocking read.
//!
//! Receiving works as the async reader does: bytes go into one buffer and
//! whole packages are cut off its front with
//! [`thingsdb_protocol::decode_frame`]. Sending writes a batch of whole
//! packages with one system call on a plain socket.
//!
//! ```no_run
//! use bytes::BytesMut;
//! use std::time::Duration;
//! use thingsdb_protocol::request;
//! use thingsdb_transport::blocking::{connect, Received};
//! use thingsdb_transport::{ConnectOptions, Target};
//!
//! # fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let target: Target = "localhost:9200".parse()?;
//! let (mut rx, mut tx) = connect(&target, &ConnectOptions::default())?;
//! let mut out = BytesMut::new();
//! request::encode_ping(&mut out, 1);
//! tx.send(out.freeze())?;
//! if let Received::Frame(pong) = rx.recv(Some(Duration::from_secs(5)))? {
//!     assert_eq!(pong.id, 1);
//! }
//! # Ok(()) }
//! ```

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rustls::ClientConnection;
use thingsdb_protocol::{decode_frame, Frame, Header, HEADER_LEN};

use crate::connect::ConnectOptions;
use crate::error::Error;
use crate::frames::count_whole_frames;
use crate::stream::READ_CHUNK;
use crate::target::Target;
use crate::transport::TransportKind;
use crate::ws::codec::{self, Codec, Handshake};

/// What [`BlockingReader::recv`] got.
#[derive(Debug)]
pub enum Received {
    /// A whole package.
    Frame(Frame),
    /// Nothing came within the wait.
    TimedOut,
    /// The peer ended the connection cleanly (between packages).
    Closed,
}

/// A lock that survives a thread that panicked while holding it (the
/// state it guards is bytes, consistent between calls).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

// ------------------------------------------------------------ raw bytes

/// The socket under every transport, for timeouts, peeking and shutdown.
#[derive(Debug)]
enum Socket {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Socket {
    fn try_clone(&self) -> io::Result<Socket> {
        Ok(match self {
            Socket::Tcp(s) => Socket::Tcp(s.try_clone()?),
            #[cfg(unix)]
            Socket::Unix(s) => Socket::Unix(s.try_clone()?),
        })
    }

    fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_read_timeout(d),
            #[cfg(unix)]
            Socket::Unix(s) => s.set_read_timeout(d),
        }
    }

    fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_write_timeout(d),
            #[cfg(unix)]
            Socket::Unix(s) => s.set_write_timeout(d),
        }
    }

    fn shutdown(&self, how: Shutdown) {
        let _ = match self {
            Socket::Tcp(s) => s.shutdown(how),
            #[cfg(unix)]
            Socket::Unix(s) => s.shutdown(how),
        };
    }

    /// Whether reading now would return at once (bytes, the peer's end,
    /// or an error): a peek that does not wait. Only on Linux; elsewhere
    /// it says "nothing", and a dead peer is found by the next read.
    fn readable_now(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            let mut one = [std::mem::MaybeUninit::<u8>::uninit()];
            let sock = match self {
                Socket::Tcp(s) => socket2::SockRef::from(s),
                #[cfg(unix)]
                Socket::Unix(s) => socket2::SockRef::from(s),
            };
            match sock.recv_with_flags(&mut one, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
                Ok(_) => true,
                Err(e) => !is_timeout(&e) && e.kind() != io::ErrorKind::Interrupted,
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    }

    fn quick_ack(&self) {
        #[cfg(target_os = "linux")]
        if let Socket::Tcp(s) = self {
            let _ = socket2::SockRef::from(s).set_tcp_quickack(true);
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            #[cfg(unix)]
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            #[cfg(unix)]
            Socket::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Plain bytes in: straight from the socket, or decrypted.
struct RawRead {
    sock: Socket,
    tls: Option<Arc<Mutex<ClientConnection>>>,
    /// Encrypted bytes read and not yet given to rustls.
    scratch: Vec<u8>,
}

impl RawRead {
    /// Reads plain bytes into `out`; `Ok(0)` at the end of the stream. A
    /// read timeout set on the socket gives a `WouldBlock`/`TimedOut`
    /// error.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return loop {
                match self.sock.read(out) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    r => break r,
                }
            };
        };
        loop {
            {
                let mut c = lock(tls);
                match c.reader().read(out) {
                    Ok(n) => return Ok(n), // 0: close_notify
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The peer went without close_notify: an end like any
                    // other, since packages delimit themselves.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
            }
            self.scratch.resize(READ_CHUNK, 0);
            let n = match self.sock.read(&mut self.scratch) {
                Ok(0) => return Ok(0),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut c = lock(tls);
            let mut fed = &self.scratch[..n];
            while !fed.is_empty() {
                c.read_tls(&mut fed)?;
                if let Err(e) = c.process_new_packets() {
                    // Tell the peer (an alert), then give up.
                    let _ = c.write_tls(&mut self.sock);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            // What rustls wants to send of its own accord (alerts, key
            // updates) goes out now.
            while c.wants_write() {
                c.write_tls(&mut self.sock)?;
            }
        }
    }
}

/// Plain bytes out: straight to the socket, or encrypted.
struct RawWrite {
    sock: Socket,
    tls: Option<Arc<Mutex<ClientConnection>>>,
}

impl Write for RawWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.tls {
            None => self.sock.write(buf),
            Some(tls) => {
                let mut c = lock(tls);
                let n = c.writer().write(buf)?;
                while c.wants_write() {
                    c.write_tls(&mut self.sock)?;
                }
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ------------------------------------------------------------ WebSocket

/// A WebSocket connection's state, shared by the two halves: the codec
/// (the same as the async transport's) and the way out to the socket.
struct WsShared {
    codec: Codec,
    out: RawWrite,
}

impl WsShared {
    /// Writes what the codec has to send: packages, or replies it owes.
    fn write_out(&mut self) -> io::Result<()> {
        let out = self.codec.outgoing();
        if out.is_empty() {
            return Ok(());
        }
        let r = self.out.write_all(out);
        out.clear();
        r
    }
}

type SharedWs = Arc<Mutex<WsShared>>;

// ------------------------------------------------------------ the halves

/// The receiving half of a blocking connection.
pub struct BlockingReader {
    raw: RawRead,
    ws: Option<SharedWs>,
    buf: BytesMut,
    scratch: Vec<u8>,
    max_payload: u32,
    kind: TransportKind,
    /// The read timeout set on the socket now (`None`: none).
    timeout_set: Option<Duration>,
    ended: bool,
}

impl std::fmt::Debug for BlockingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingReader")
            .field("kind", &self.kind)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl BlockingReader {
    /// The transport it reads from.
    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// Whether a whole package is buffered: [`BlockingReader::recv`]
    /// returns it without reading.
    pub fn has_buffered_frame(&self) -> bool {
        match &self.ws {
            Some(ws) => lock(ws).codec.has_next(),
            None => Header::decode_prefix(&self.buf, self.max_payload)
                .is_ok_and(|h| self.buf.len() >= h.frame_len()),
        }
    }

    /// Whether a read would return at once: bytes or the end of the
    /// connection are waiting (Linux; elsewhere always `false`). One
    /// system call that never waits.
    pub fn readable_now(&self) -> bool {
        !self.buf.is_empty()
            || self.ws.as_ref().is_some_and(|ws| lock(ws).codec.has_next())
            || self.raw.sock.readable_now()
    }

    /// Sends an ACK the kernel may be holding back (TCP and TLS on Linux;
    /// a no-op elsewhere): call it when the peer has more to send, so its
    /// next small package is not held back by Nagle's algorithm.
    pub fn quick_ack(&self) {
        if matches!(self.kind, TransportKind::Tcp | TransportKind::Tls) {
            self.raw.sock.quick_ack();
        }
    }

    /// The next package, waiting at most `wait` (`None`: for ever).
    ///
    /// The socket's read timeout is changed only when `wait` is shorter
    /// than the one set, or more than twice as long, so a caller that
    /// waits about as long each time costs no extra system call.
    pub fn recv(&mut self, wait: Option<Duration>) -> Result<Received, Error> {
        match wait {
            None => self.recv_by(None, None),
            Some(w) => {
                let now = Instant::now();
                // A wait past the clock's end is a wait for ever.
                self.recv_by(now.checked_add(w), Some(now))
            }
        }
    }

    /// The next package, waiting until `deadline` at the latest (`None`:
    /// for ever); [`Received::TimedOut`] once it passed. `now` is the time
    /// now when the caller has just read the clock (it is then not read
    /// again unless a read comes back without a whole package).
    ///
    /// ```no_run
    /// # fn demo(mut rx: thingsdb_transport::blocking::BlockingReader) -> Result<(), thingsdb_transport::Error> {
    /// use std::time::{Duration, Instant};
    /// let now = Instant::now();
    /// let got = rx.recv_by(Some(now + Duration::from_secs(5)), Some(now))?;
    /// # Ok(()) }
    /// ```
    pub fn recv_by(
        &mut self,
        deadline: Option<Instant>,
        mut now: Option<Instant>,
    ) -> Result<Received, Error> {
        loop {
            if let Some(f) = self.next_buffered()? {
                return Ok(Received::Frame(f));
            }
            if self.ended {
                return self.at_eof();
            }
            let left = match deadline {
                Some(d) => {
                    let t = now.take().unwrap_or_else(Instant::now);
                    match d.checked_duration_since(t) {
                        Some(left) if !left.is_zero() => Some(left),
                        _ => return Ok(Received::TimedOut),
                    }
                }
                None => None,
            };
            self.arm(left)?;
            self.scratch.resize(READ_CHUNK, 0);
            match self.raw.read(&mut self.scratch) {
                Ok(0) => self.end(),
                Ok(n) => self.take(n),
                // The timeout set may be shorter than asked for (see
                // `arm`): the loop waits out the rest.
                Err(e) if is_timeout(&e) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => self.end(),
                Err(e) => return Err(Error::io(self.kind, e)),
            }
        }
    }

    /// Sets the socket's read timeout for a wait of `wait`, unless the one
    /// set already fits: not longer than `wait` and at least half of it.
    /// A new one is set to three quarters of the wait, so that the next,
    /// slightly shorter wait (a deadline coming closer) still fits.
    fn arm(&mut self, wait: Option<Duration>) -> Result<(), Error> {
        let keep = match (self.timeout_set, wait) {
            (None, None) => true,
            (Some(set), Some(w)) => set <= w && w <= set * 2,
            _ => false,
        };
        if keep {
            return Ok(());
        }
        // A zero timeout means "none" to the socket: at least 1 us.
        let set = wait.map(|w| (w - w / 4).max(Duration::from_micros(1)));
        self.raw
            .sock
            .set_read_timeout(set)
            .map_err(|e| Error::io(self.kind, e))?;
        self.timeout_set = set;
        Ok(())
    }

    /// Hands `n` bytes of `scratch` to the framing layer.
    fn take(&mut self, n: usize) {
        match &self.ws {
            None => self.buf.extend_from_slice(&self.scratch[..n]),
            Some(ws) => {
                let mut ws = lock(ws);
                ws.codec.feed(&self.scratch[..n]);
                // A pong or the answer to a Close goes out now; a write
                // that fails shows on the next send (or read).
                let _ = ws.write_out();
                self.ended = ws.codec.ended();
            }
        }
    }

    /// The socket ended.
    fn end(&mut self) {
        if let Some(ws) = &self.ws {
            lock(ws).codec.feed_end();
        }
        self.ended = true;
    }

    fn next_buffered(&mut self) -> Result<Option<Frame>, Error> {
        match &self.ws {
            Some(ws) => lock(ws).codec.next().transpose(),
            // A protocol error leaves the bad header in the buffer, so
            // every later call reports it again: the stream is out of sync.
            None => Ok(decode_frame(&mut self.buf, self.max_payload)?),
        }
    }

    fn at_eof(&self) -> Result<Received, Error> {
        if self.buf.is_empty() {
            return Ok(Received::Closed);
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

    /// Ends the connection both ways, so that a thread blocked in
    /// [`BlockingReader::recv`] on it returns.
    pub fn shutdown(&self) {
        self.raw.sock.shutdown(Shutdown::Both);
    }
}

/// The sending half of a blocking connection.
pub struct BlockingWriter {
    raw: RawWrite,
    ws: Option<SharedWs>,
    kind: TransportKind,
    closed: bool,
}

impl std::fmt::Debug for BlockingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingWriter")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl BlockingWriter {
    /// The transport it writes to.
    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// Writes a batch of one or more whole packages, blocking until the
    /// socket took it all (one system call on a plain socket when it has
    /// room). Over WebSocket each package is one binary message.
    pub fn send(&mut self, frames: Bytes) -> Result<(), Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        count_whole_frames(&frames)?;
        let kind = self.kind;
        match &self.ws {
            None => self.raw.write_all(&frames).map_err(|e| Error::io(kind, e)),
            Some(ws) => {
                let mut ws = lock(ws);
                ws.codec.encode(frames)?;
                ws.write_out().map_err(|e| Error::io(kind, e))
            }
        }
    }

    /// Ends the connection politely (a WebSocket Close, a TLS
    /// close_notify), then shuts the socket down both ways, so that a
    /// reader blocked on it returns.
    pub fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        if let Some(ws) = &self.ws {
            let mut ws = lock(ws);
            ws.codec.close();
            let _ = ws.write_out();
        } else if let Some(tls) = &self.raw.tls {
            let mut c = lock(tls);
            c.send_close_notify();
            let _ = c.write_tls(&mut self.raw.sock);
        }
        self.raw.sock.shutdown(Shutdown::Both);
    }
}

// ------------------------------------------------------------ connect

/// Connects to `target` and splits the connection: resolves the host,
/// opens the socket (TCP with `TCP_NODELAY`, or the Unix socket), then runs
/// the TLS and WebSocket handshakes the target needs, each step within
/// `opts.connect_timeout`.
pub fn connect(
    target: &Target,
    opts: &ConnectOptions,
) -> Result<(BlockingReader, BlockingWriter), Error> {
    let (sock, kind, host) = match target {
        Target::Unix(path) => (connect_unix(target, path)?, TransportKind::Unix, None),
        Target::Tcp { host, port } => (
            connect_tcp(target, host, *port, opts)?,
            TransportKind::Tcp,
            None,
        ),
        Target::Tls { host, port } => (
            connect_tcp(target, host, *port, opts)?,
            TransportKind::Tls,
            Some(host),
        ),
        Target::Ws { host, port, .. } => (
            connect_tcp(target, host, *port, opts)?,
            TransportKind::Ws,
            None,
        ),
        Target::Wss { host, port, .. } => (
            connect_tcp(target, host, *port, opts)?,
            TransportKind::Wss,
            Some(host),
        ),
    };
    let io_err = |e| Error::io(kind, e);
    // Every handshake step waits at most the connect timeout.
    sock.set_read_timeout(Some(opts.connect_timeout))
        .map_err(io_err)?;
    sock.set_write_timeout(Some(opts.connect_timeout))
        .map_err(io_err)?;
    let tls = match host {
        Some(host) => Some(tls_handshake(target, host, opts, &sock)?),
        None => None,
    };
    let raw_read = RawRead {
        sock: sock.try_clone().map_err(io_err)?,
        tls: tls.clone(),
        scratch: Vec::new(),
    };
    let make_write = |tls| -> Result<RawWrite, Error> {
        Ok(RawWrite {
            sock: sock.try_clone().map_err(io_err)?,
            tls,
        })
    };
    let (raw_read, raw_write, ws) = match kind {
        TransportKind::Ws | TransportKind::Wss => {
            let mut raw_read = raw_read;
            let mut out = make_write(tls)?;
            let codec = ws_handshake(target, opts, &mut raw_read, &mut out, kind)?;
            // The codec's bytes go out through `out`; this one is for
            // shutting down.
            let ws = WsShared { codec, out };
            (raw_read, make_write(None)?, Some(Arc::new(Mutex::new(ws))))
        }
        _ => (raw_read, make_write(tls)?, None),
    };
    // Writes block until the socket takes them; reads set their own.
    sock.set_write_timeout(None).map_err(io_err)?;
    Ok((
        BlockingReader {
            raw: raw_read,
            ws: ws.clone(),
            buf: BytesMut::with_capacity(READ_CHUNK),
            scratch: Vec::new(),
            max_payload: opts.max_payload,
            kind,
            timeout_set: Some(opts.connect_timeout),
            ended: false,
        },
        BlockingWriter {
            raw: raw_write,
            ws,
            kind,
            closed: false,
        },
    ))
}

fn connect_tcp(
    target: &Target,
    host: &str,
    port: u16,
    opts: &ConnectOptions,
) -> Result<Socket, Error> {
    let failed = |source| Error::Connect {
        target: target.to_string(),
        source,
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let deadline = Instant::now() + opts.connect_timeout;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolved to no address");
    for addr in (host, port).to_socket_addrs().map_err(failed)? {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::ConnectTimeout {
                target: target.to_string(),
                elapsed_ms: u64::try_from(opts.connect_timeout.as_millis()).unwrap_or(u64::MAX),
            });
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                s.set_nodelay(true).map_err(failed)?;
                return Ok(Socket::Tcp(s));
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(Error::ConnectTimeout {
                    target: target.to_string(),
                    elapsed_ms: u64::try_from(opts.connect_timeout.as_millis()).unwrap_or(u64::MAX),
                })
            }
            Err(e) => last = e,
        }
    }
    Err(failed(last))
}

#[cfg(unix)]
fn connect_unix(target: &Target, path: &std::path::Path) -> Result<Socket, Error> {
    UnixStream::connect(path)
        .map(Socket::Unix)
        .map_err(|source| Error::Connect {
            target: target.to_string(),
            source,
        })
}

#[cfg(not(unix))]
fn connect_unix(target: &Target, _path: &std::path::Path) -> Result<Socket, Error> {
    Err(Error::Connect {
        target: target.to_string(),
        source: io::Error::new(
            io::ErrorKind::Unsupported,
            "Unix sockets are not available on this platform",
        ),
    })
}

fn tls_handshake(
    target: &Target,
    host: &str,
    opts: &ConnectOptions,
    sock: &Socket,
) -> Result<Arc<Mutex<ClientConnection>>, Error> {
    let config = opts.tls.client_config()?;
    let name = opts.tls.name_for(host)?;
    let mut conn = ClientConnection::new(config, name)
        .map_err(|e| Error::tls(format!("TLS setup for {target}"), e))?;
    let mut s = sock
        .try_clone()
        .map_err(|e| Error::io(TransportKind::Tls, e))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut s).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData && e.get_ref().is_some() {
                if let Some(inner) = e.into_inner() {
                    return Error::Tls {
                        message: format!("handshake with {target} failed: {inner}"),
                        source: Some(inner),
                    };
                }
                return Error::tls_msg(format!("handshake with {target} failed"));
            }
            Error::Tls {
                message: format!("handshake with {target} failed: {e}"),
                source: Some(Box::new(e)),
            }
        })?;
    }
    Ok(Arc::new(Mutex::new(conn)))
}

fn ws_handshake(
    target: &Target,
    opts: &ConnectOptions,
    raw_read: &mut RawRead,
    raw_write: &mut RawWrite,
    kind: TransportKind,
) -> Result<Codec, Error> {
    let uri = target.to_string();
    let mut state = codec::handshake(&uri, kind, opts.ws_max_message, opts.max_payload)?;
    let mut buf = vec![0u8; 4096];
    loop {
        match state {
            Handshake::Done(mut codec) => {
                // A reply owed already (a ping came with the answer).
                let out = codec.outgoing();
                raw_write.write_all(out).map_err(|e| Error::io(kind, e))?;
                out.clear();
                return Ok(codec);
            }
            Handshake::Waiting(mut w) => {
                let out = w.outgoing();
                if !out.is_empty() {
                    raw_write.write_all(out).map_err(|e| Error::io(kind, e))?;
                    out.clear();
                }
                // `RawRead::read` goes on after an interruption itself.
                let n = match raw_read.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if is_timeout(&e) => {
                        return Err(Error::io(kind, io::ErrorKind::TimedOut.into()))
                    }
                    Err(e) => return Err(Error::io(kind, e)),
                };
                state = w.feed(&buf[..n])?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thingsdb_protocol::PackageType;

    fn pair() -> (BlockingReader, BlockingWriter, TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let t: Target = l.local_addr().unwrap().to_string().parse().unwrap();
        let (r, w) = connect(&t, &ConnectOptions::default()).unwrap();
        let (peer, _) = l.accept().unwrap();
        (r, w, peer)
    }

    fn frame(id: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        Frame::new(PackageType::Query, id, Bytes::copy_from_slice(payload))
            .encode_into(&mut v)
            .unwrap();
        v
    }

    #[test]
    fn frames_both_ways_in_pieces() {
        let (mut r, mut w, mut peer) = pair();
        let mut both = frame(1, b"abc");
        both.extend(frame(2, b""));
        w.send(Bytes::from(both.clone())).unwrap();
        let mut got = vec![0; both.len()];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, both);
        // Byte by byte back: still two whole frames.
        for b in &both {
            peer.write_all(&[*b]).unwrap();
        }
        let mut ids = Vec::new();
        while ids.len() < 2 {
            match r.recv(Some(Duration::from_secs(10))).unwrap() {
                Received::Frame(f) => ids.push(f.id),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(ids, [1, 2]);
        assert!(!r.has_buffered_frame());
    }

    #[test]
    fn timeout_end_and_cut_short() {
        let (mut r, _w, mut peer) = pair();
        assert!(matches!(
            r.recv(Some(Duration::from_millis(20))).unwrap(),
            Received::TimedOut
        ));
        assert!(!r.readable_now());
        let f = frame(3, b"xyz");
        peer.write_all(&f[..5]).unwrap();
        drop(peer);
        let e = r.recv(Some(Duration::from_secs(10))).unwrap_err();
        assert!(
            matches!(e, Error::ClosedMidFrame { available: 5, .. }),
            "{e}"
        );
    }

    /// `recv_by`: a deadline already passed by the caller's clock times
    /// out before any read; the wait counts from the caller's time, not a
    /// clock read of its own; a later deadline once it passed; a package
    /// already here comes even with the deadline passed; a package cut
    /// across reads comes whole (the clock read again between the reads).
    /// Waits are checked from below only, so a busy machine does not fail
    /// the test.
    #[test]
    fn recv_by_counts_from_the_callers_clock() {
        let (mut r, _w, mut peer) = pair();
        // A deadline the caller's clock passed: timed out before reading
        // (the package sent stays in the socket for the next call).
        peer.write_all(&frame(4, b"wait")).unwrap();
        let now = Instant::now();
        assert!(matches!(
            r.recv_by(Some(now - Duration::from_millis(1)), Some(now))
                .unwrap(),
            Received::TimedOut
        ));
        assert!(matches!(r.recv_by(None, None).unwrap(), Received::Frame(f) if f.id == 4));
        // The caller's time is 100 ms ago and its deadline 50 ms after
        // that: passed by the real clock, not by the caller's, so most of
        // the 50 ms is waited for (a reader that read the clock itself
        // would time out at once).
        let caller = Instant::now() - Duration::from_millis(100);
        let t0 = Instant::now();
        assert!(matches!(
            r.recv_by(Some(caller + Duration::from_millis(50)), Some(caller))
                .unwrap(),
            Received::TimedOut
        ));
        assert!(t0.elapsed() >= Duration::from_millis(30));
        // A wait counted from now: over once the deadline passed.
        let now = Instant::now();
        let deadline = now + Duration::from_millis(30);
        assert!(matches!(
            r.recv_by(Some(deadline), Some(now)).unwrap(),
            Received::TimedOut
        ));
        assert!(Instant::now() >= deadline);
        // Two packages in one write: the second is buffered and comes
        // with the deadline passed.
        let mut both = frame(5, b"one");
        both.extend(frame(6, b"two"));
        peer.write_all(&both).unwrap();
        let now = Instant::now();
        let got = r.recv_by(Some(now + Duration::from_secs(10)), Some(now));
        assert!(matches!(got.unwrap(), Received::Frame(f) if f.id == 5));
        assert!(r.has_buffered_frame());
        let got = r.recv_by(Some(caller), Some(Instant::now()));
        assert!(matches!(got.unwrap(), Received::Frame(f) if f.id == 6));
        // A package in two writes: the loop reads again for its rest.
        let f = frame(7, b"split");
        let (a, b) = f.split_at(4);
        let b = b.to_vec();
        peer.write_all(a).unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            peer.write_all(&b).unwrap();
            peer
        });
        let now = Instant::now();
        let got = r.recv_by(Some(now + Duration::from_secs(10)), Some(now));
        assert!(matches!(got.unwrap(), Received::Frame(f) if f.id == 7));
        // For ever: the package still comes.
        let mut peer = writer.join().unwrap();
        peer.write_all(&frame(8, b"")).unwrap();
        assert!(matches!(r.recv_by(None, None).unwrap(), Received::Frame(f) if f.id == 8));
    }

    /// Over WebSocket, with a tungstenite peer on a thread: a ping is
    /// answered while the client only reads (the peer sends nothing more
    /// before the pong), a text message is an error that leaves the
    /// connection usable, packages go both ways, and the peer's close is
    /// answered by the reading half (before the client sends anything).
    #[test]
    fn websocket_pings_text_packages_and_close() {
        use tungstenite::Message;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut ws = tungstenite::accept(s).unwrap();
            ws.send(Message::Ping(Bytes::from_static(b"p"))).unwrap();
            let mut seen = Vec::new();
            loop {
                match ws.read() {
                    Ok(Message::Pong(p)) => {
                        seen.push(format!("pong {}", p.len()));
                        ws.send(Message::text("no")).unwrap();
                        ws.send(Message::Binary(Bytes::from(frame(7, b"hi"))))
                            .unwrap();
                    }
                    Ok(Message::Binary(b)) => {
                        seen.push(format!("binary {}", b.len()));
                        ws.close(None).unwrap();
                    }
                    Ok(Message::Close(_)) => seen.push("close".into()),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = seen_tx.send(seen);
        });
        let t = Target::ws("127.0.0.1", port, "/");
        let (mut r, mut w) = connect(&t, &ConnectOptions::default()).unwrap();
        let wait = Some(Duration::from_secs(20));
        assert!(matches!(r.recv(wait), Err(Error::TextMessage)));
        match r.recv(wait).unwrap() {
            Received::Frame(f) => assert_eq!((f.id, &f.payload[..]), (7, &b"hi"[..])),
            other => panic!("{other:?}"),
        }
        w.send(Bytes::from(frame(8, b"back"))).unwrap();
        assert!(matches!(r.recv(wait).unwrap(), Received::Closed));
        // The peer is done before this client writes anything more: the
        // answer to its close came from the reading half.
        let seen = seen_rx.recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(seen, ["pong 1", "binary 12", "close"]);
        w.close();
    }

    #[test]
    fn clean_end_and_bad_input() {
        let (mut r, _w, peer) = pair();
        drop(peer);
        assert!(matches!(
            r.recv(Some(Duration::from_secs(10))).unwrap(),
            Received::Closed
        ));
        let (mut r, mut w, mut peer) = pair();
        peer.write_all(&[0, 0, 0, 0, 0, 0, 0x20, 0x00]).unwrap();
        assert!(matches!(r.recv(None), Err(Error::Protocol(_))));
        assert!(matches!(
            w.send(Bytes::from_static(b"abc")),
            Err(Error::NotWholeFrames(_))
        ));
        w.close();
        assert!(matches!(w.send(Bytes::new()), Err(Error::Closed)));
    }

    #[test]
    fn nothing_listening_is_a_connect_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let t: Target = l.local_addr().unwrap().to_string().parse().unwrap();
        drop(l);
        assert!(matches!(
            connect(&t, &ConnectOptions::default()),
            Err(Error::Connect { .. })
        ));
    }
}
