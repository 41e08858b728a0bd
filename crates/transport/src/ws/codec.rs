//! A WebSocket client connection without I/O: tungstenite's handshake and
//! framing over bytes that the caller moves between the socket and the
//! codec. The async halves (`super`) and the blocking transport
//! (`crate::blocking`) drive the same codec, each with its own socket.
//!
//! Bytes read from the socket go in with [`Codec::feed`]; whole packages
//! come out of [`Codec::next`]. Packages to send go in with
//! [`Codec::encode`] (one binary message each); the bytes to write, and the
//! replies the codec owes the peer (a pong for each ping, the answer to a
//! Close), wait in [`Codec::outgoing`] until the caller has written them.
//!
//! Driving tungstenite this way, rather than through tokio-tungstenite's
//! stream adapter, costs one socket read per wake-up and no waker
//! bookkeeping, and tungstenite zeroes 4 KiB per take of fed bytes where
//! over a socket it zeroed its whole read buffer (128 KiB by default)
//! before every read, one that found nothing included: two per request,
//! one request at a time.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use bytes::{Buf, Bytes, BytesMut};
use thingsdb_protocol::Frame;
use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::{Message, WebSocket};

use crate::error::Error;
use crate::frames::split_next;
use crate::transport::TransportKind;

/// How much tungstenite takes from the fed bytes in one go. It zeroes this
/// many bytes of its buffer before each take (a take that finds nothing
/// included), so it is kept small: the bytes are in memory already, and
/// a large message is taken in a few more goes at no cost of system calls.
const TAKE: usize = 4096;

/// The byte stream tungstenite runs over: reads what was fed (and says
/// "would block" when that is used up, or "end" once the socket ended),
/// writes into the bytes to send.
#[derive(Debug, Default)]
pub(crate) struct Mem {
    inbox: BytesMut,
    out: BytesMut,
    eof: bool,
}

impl Read for Mem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inbox.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.inbox.len());
        buf[..n].copy_from_slice(&self.inbox[..n]);
        self.inbox.advance(n);
        Ok(n)
    }
}

impl Write for Mem {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The tungstenite settings for a message limit of `max_message` bytes
/// (the package header included).
fn config(max_message: usize) -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
        .read_buffer_size(TAKE)
}

/// A tungstenite error as the transport's.
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

/// Where a client handshake stands.
pub(crate) enum Handshake {
    /// Done: the connection is open.
    Done(Codec),
    /// Waiting for (more of) the peer's answer.
    Waiting(Waiting),
}

/// A client handshake waiting for the peer's answer.
pub(crate) struct Waiting {
    mid: MidHandshake<ClientHandshake<Mem>>,
    uri: String,
    kind: TransportKind,
    max_payload: u32,
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting").field("uri", &self.uri).finish()
    }
}

/// Starts the client handshake for `uri`: the request waits in
/// [`Waiting::outgoing`]. `max_message` bounds a message (the package
/// header included), `max_payload` a package's payload.
pub(crate) fn handshake(
    uri: &str,
    kind: TransportKind,
    max_message: usize,
    max_payload: u32,
) -> Result<Handshake, Error> {
    let started =
        tungstenite::client::client_with_config(uri, Mem::default(), Some(config(max_message)));
    step(started, uri.to_owned(), kind, max_payload)
}

fn step(
    r: Result<
        (WebSocket<Mem>, tungstenite::handshake::client::Response),
        HandshakeError<ClientHandshake<Mem>>,
    >,
    uri: String,
    kind: TransportKind,
    max_payload: u32,
) -> Result<Handshake, Error> {
    match r {
        Ok((ws, _response)) => {
            let mut codec = Codec {
                ws,
                kind,
                max_payload,
                ready: VecDeque::new(),
                ended: false,
                close_sent: false,
            };
            // What came with the end of the answer (tungstenite kept it).
            codec.decode();
            Ok(Handshake::Done(codec))
        }
        Err(HandshakeError::Interrupted(mid)) => Ok(Handshake::Waiting(Waiting {
            mid,
            uri,
            kind,
            max_payload,
        })),
        Err(HandshakeError::Failure(WsError::Http(resp))) => Err(Error::ws(
            format!("handshake with {uri} refused: HTTP {}", resp.status()),
            None,
        )),
        Err(HandshakeError::Failure(e)) => Err(Error::ws(
            format!("handshake with {uri} failed: {e}"),
            Some(Box::new(e)),
        )),
    }
}

impl Waiting {
    /// The bytes to write to the peer (the request, until written).
    pub(crate) fn outgoing(&mut self) -> &mut BytesMut {
        &mut self.mid.get_mut().get_mut().out
    }

    /// Goes on with bytes read from the peer; an empty `bytes` says that
    /// the connection ended.
    pub(crate) fn feed(mut self, bytes: &[u8]) -> Result<Handshake, Error> {
        let mem = self.mid.get_mut().get_mut();
        if bytes.is_empty() {
            mem.eof = true;
        }
        mem.inbox.extend_from_slice(bytes);
        let Waiting {
            mid,
            uri,
            kind,
            max_payload,
        } = self;
        step(mid.handshake(), uri, kind, max_payload)
    }
}

/// An open WebSocket client connection, without I/O.
pub(crate) struct Codec {
    ws: WebSocket<Mem>,
    kind: TransportKind,
    max_payload: u32,
    /// Packages (or errors) decoded and not yet taken, in order.
    ready: VecDeque<Result<Frame, Error>>,
    /// Nothing more will be decoded: the close handshake ran, the stream
    /// ended or broke.
    ended: bool,
    /// Our Close is on its way: after it, the peer dropping the connection
    /// without its own Close is a normal end, not an error.
    close_sent: bool,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("kind", &self.kind)
            .field("ready", &self.ready.len())
            .field("ended", &self.ended)
            .field("close_sent", &self.close_sent)
            .finish_non_exhaustive()
    }
}

impl Codec {
    /// Takes bytes read from the socket: the packages in them become
    /// [`Codec::next`]'s, replies owed to the peer go to
    /// [`Codec::outgoing`].
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.inbox().extend_from_slice(bytes);
        self.decode_fed();
    }

    /// Where bytes read from the socket go, for a caller that reads into
    /// it directly; [`Codec::decode_fed`] then takes them as
    /// [`Codec::feed`] does.
    pub(crate) fn inbox(&mut self) -> &mut BytesMut {
        &mut self.ws.get_mut().inbox
    }

    /// Decodes what was put into [`Codec::inbox`].
    pub(crate) fn decode_fed(&mut self) {
        if self.ended {
            // Nothing is decoded after the end: what came is dropped.
            self.ws.get_mut().inbox.clear();
            return;
        }
        self.decode();
    }

    /// The socket ended (a read of nothing): what was fed is decoded to
    /// the end, and the connection ends, cleanly after a close handshake
    /// or our Close, with an error otherwise (in the middle of a message,
    /// or with no close handshake at all).
    pub(crate) fn feed_end(&mut self) {
        if self.ended {
            return;
        }
        self.ws.get_mut().eof = true;
        self.decode();
        self.ended = true;
    }

    /// The socket broke: `e` is the last thing [`Codec::next`] gives,
    /// unless our Close was sent already (then it is a normal end).
    pub(crate) fn broken(&mut self, e: Error) {
        if self.ended {
            return;
        }
        self.ended = true;
        if !self.close_sent {
            self.ready.push_back(Err(e));
        }
    }

    fn decode(&mut self) {
        loop {
            match self.ws.read() {
                Ok(Message::Binary(b)) => self
                    .ready
                    .push_back(Frame::parse(b, self.max_payload).map_err(Error::from)),
                Ok(Message::Text(_)) => self.ready.push_back(Err(Error::TextMessage)),
                // tungstenite queued the pong; its next read (this loop)
                // puts it into the bytes to send.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Ok(Message::Close(_)) => {
                    // tungstenite queued the answer: into the bytes to send.
                    let _ = self.ws.flush();
                    self.ended = true;
                    return;
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    self.ended = true;
                    return;
                }
                Err(e) => {
                    self.ended = true;
                    if !self.close_sent {
                        self.ready.push_back(Err(ws_error(self.kind, e)));
                    }
                    return;
                }
            }
        }
    }

    /// The next package decoded (or error), in order.
    pub(crate) fn next(&mut self) -> Option<Result<Frame, Error>> {
        self.ready.pop_front()
    }

    /// Whether a package (or error) is decoded and not yet taken.
    pub(crate) fn has_next(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Whether nothing more will be decoded (what was is still to take).
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// Whether our Close was sent.
    #[cfg(test)]
    pub(crate) fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Encodes whole packages (checked by the caller), one binary message
    /// each, into the bytes to send.
    pub(crate) fn encode(&mut self, mut frames: Bytes) -> Result<(), Error> {
        while let Some(pkg) = split_next(&mut frames) {
            self.ws
                .write(Message::Binary(pkg))
                .map_err(|e| ws_error(self.kind, e))?;
        }
        self.ws.flush().map_err(|e| ws_error(self.kind, e))
    }

    /// Queues our Close into the bytes to send (once).
    pub(crate) fn close(&mut self) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        // Errors here mean the connection is closed already.
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }

    /// The bytes to write to the peer, in order; the caller advances past
    /// what it wrote.
    pub(crate) fn outgoing(&mut self) -> &mut BytesMut {
        &mut self.ws.get_mut().out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thingsdb_protocol::PackageType;
    use tungstenite::handshake::server::{NoCallback, ServerHandshake};

    /// A server side over `Mem` too, so that both run in memory.
    /// A client handshake under way and a server side (over `Mem` too)
    /// that took its request; the server's answer waits in its `out`.
    fn started() -> (Waiting, WebSocket<Mem>) {
        let Handshake::Waiting(mut c) =
            handshake("ws://h/", TransportKind::Ws, 1 << 20, 1 << 20).unwrap()
        else {
            panic!("done without an answer")
        };
        let mem = Mem {
            inbox: c.outgoing().split(),
            ..Mem::default()
        };
        let Ok(server) = ServerHandshake::start(mem, NoCallback, None).handshake() else {
            panic!("server handshake")
        };
        (c, server)
    }

    /// An open client codec and its server side, both in memory.
    fn pair() -> (Codec, WebSocket<Mem>) {
        let (c, mut server) = started();
        let answer = server.get_mut().out.split();
        match c.feed(&answer).unwrap() {
            Handshake::Done(codec) => (codec, server),
            Handshake::Waiting(_) => panic!("not done"),
        }
    }

    fn frame(id: u16, n: usize) -> Frame {
        Frame::new(PackageType::Data, id, Bytes::from(vec![7u8; n]))
    }

    fn server_reads(server: &mut WebSocket<Mem>, bytes: &mut BytesMut) -> Vec<Message> {
        server.get_mut().inbox.extend_from_slice(&bytes.split());
        let mut got = Vec::new();
        loop {
            match server.read() {
                Ok(m) => got.push(m),
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return got,
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn packages_both_ways_in_any_pieces() {
        let (mut c, mut server) = pair();
        let frames: Vec<Frame> = (0..50).map(|i| frame(i, usize::from(i) * 100)).collect();
        for f in &frames {
            server.send(Message::Binary(f.to_bytes())).unwrap();
        }
        let wire = server.get_mut().out.split();
        // One byte at a time, then all at once.
        for piece in [1, wire.len()] {
            for chunk in wire.chunks(piece) {
                c.feed(chunk);
            }
            let got: Vec<Frame> = std::iter::from_fn(|| c.next())
                .map(Result::unwrap)
                .collect();
            assert_eq!(got, frames, "pieces of {piece}");
        }
        let mut batch = BytesMut::new();
        for f in &frames {
            batch.extend_from_slice(&f.to_bytes());
        }
        c.encode(batch.freeze()).unwrap();
        let mut out = c.outgoing().split();
        let got = server_reads(&mut server, &mut out);
        let want: Vec<Message> = frames
            .iter()
            .map(|f| Message::Binary(f.to_bytes()))
            .collect();
        assert_eq!(got, want);
    }

    proptest::proptest! {
        /// Packages of any sizes, fed in pieces of any sizes, come out
        /// whole and in order, interleaved with pings; the pongs are owed
        /// in order too.
        #[test]
        fn packages_in_any_pieces_come_out_whole(
            sizes in proptest::collection::vec(0usize..3000, 1..20),
            pings in proptest::collection::vec(proptest::bool::ANY, 20),
            cuts in proptest::collection::vec(1usize..5000, 1..40),
        ) {
            let (mut c, mut server) = pair();
            let frames: Vec<Frame> = sizes
                .iter()
                .enumerate()
                .map(|(i, n)| frame(i as u16, *n))
                .collect();
            let mut want_pongs = Vec::new();
            for (i, f) in frames.iter().enumerate() {
                if pings[i] {
                    let p = Bytes::from(vec![i as u8]);
                    server.send(Message::Ping(p.clone())).unwrap();
                    want_pongs.push(Message::Pong(p));
                }
                server.send(Message::Binary(f.to_bytes())).unwrap();
            }
            let wire = server.get_mut().out.split();
            let mut at = 0;
            let mut k = 0;
            while at < wire.len() {
                let n = cuts[k % cuts.len()].min(wire.len() - at);
                c.feed(&wire[at..at + n]);
                at += n;
                k += 1;
            }
            let got: Vec<Frame> = std::iter::from_fn(|| c.next()).map(Result::unwrap).collect();
            proptest::prop_assert_eq!(got, frames);
            let mut out = c.outgoing().split();
            proptest::prop_assert_eq!(server_reads(&mut server, &mut out), want_pongs);
        }
    }

    #[test]
    fn pings_are_answered_and_text_is_an_error() {
        let (mut c, mut server) = pair();
        server
            .send(Message::Ping(Bytes::from_static(b"p")))
            .unwrap();
        server.send(Message::text("hi")).unwrap();
        server
            .send(Message::Binary(frame(3, 2).to_bytes()))
            .unwrap();
        let wire = server.get_mut().out.split();
        c.feed(&wire);
        assert!(matches!(c.next(), Some(Err(Error::TextMessage))));
        assert_eq!(c.next().unwrap().unwrap(), frame(3, 2));
        assert!(c.next().is_none());
        let mut out = c.outgoing().split();
        let got = server_reads(&mut server, &mut out);
        assert_eq!(got, vec![Message::Pong(Bytes::from_static(b"p"))]);
    }

    #[test]
    fn the_peers_close_is_answered_and_ends() {
        let (mut c, mut server) = pair();
        server
            .send(Message::Binary(frame(1, 1).to_bytes()))
            .unwrap();
        server.close(None).unwrap();
        server.flush().unwrap();
        let wire = server.get_mut().out.split();
        c.feed(&wire);
        assert_eq!(c.next().unwrap().unwrap(), frame(1, 1));
        assert!(c.next().is_none());
        assert!(c.ended());
        assert!(!c.outgoing().is_empty(), "the Close is answered");
        // Nothing decoded after the close handshake.
        c.feed(&Message::Binary(frame(2, 1).to_bytes()).into_data());
        assert!(c.next().is_none());
    }

    #[test]
    fn an_end_mid_message_is_an_error_and_after_our_close_is_not() {
        let (mut c, mut server) = pair();
        server
            .send(Message::Binary(frame(1, 100).to_bytes()))
            .unwrap();
        let wire = server.get_mut().out.split();
        c.feed(&wire[..20]);
        assert!(c.next().is_none());
        c.feed_end();
        assert!(matches!(c.next(), Some(Err(Error::WebSocket { .. }))));
        assert!(c.ended());

        // After our Close, a peer going away is the end.
        let (mut c, _server) = pair();
        c.close();
        assert!(c.close_sent());
        assert!(!c.outgoing().is_empty());
        c.feed_end();
        assert!(c.next().is_none());
        assert!(c.ended());

        // A broken socket is an error, once.
        let (mut c, _server) = pair();
        c.broken(Error::io(
            TransportKind::Ws,
            io::ErrorKind::ConnectionReset.into(),
        ));
        assert!(matches!(c.next(), Some(Err(Error::Io { .. }))));
        c.broken(Error::io(
            TransportKind::Ws,
            io::ErrorKind::ConnectionReset.into(),
        ));
        assert!(c.next().is_none());
    }

    #[test]
    fn packages_that_come_with_the_answer_are_decoded() {
        let (c, mut server) = started();
        // The answer, a ping and a package in one read.
        server
            .send(Message::Ping(Bytes::from_static(b"p")))
            .unwrap();
        server
            .send(Message::Binary(frame(4, 10).to_bytes()))
            .unwrap();
        let wire = server.get_mut().out.split();
        let Handshake::Done(mut c) = c.feed(&wire).unwrap() else {
            panic!("done")
        };
        assert_eq!(c.next().unwrap().unwrap(), frame(4, 10));
        // The pong is owed at once.
        let mut out = c.outgoing().split();
        let got = server_reads(&mut server, &mut out);
        assert_eq!(got, vec![Message::Pong(Bytes::from_static(b"p"))]);
    }

    #[test]
    fn a_refused_or_cut_handshake_is_an_error() {
        let Handshake::Waiting(mut w) =
            handshake("ws://h/x", TransportKind::Ws, 1 << 20, 1 << 20).unwrap()
        else {
            panic!("waiting")
        };
        assert!(!w.outgoing().is_empty());
        let e = w
            .feed(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            .err()
            .unwrap();
        assert!(e.to_string().contains("404"), "{e}");

        let Handshake::Waiting(w) =
            handshake("ws://h/x", TransportKind::Ws, 1 << 20, 1 << 20).unwrap()
        else {
            panic!("waiting")
        };
        let Handshake::Waiting(w) = w.feed(b"HTTP/1.1 101 Switching").unwrap() else {
            panic!("still waiting")
        };
        assert!(w.feed(b"").is_err(), "the end of the stream mid-answer");
    }
}
