//! A WebSocket client connection without I/O: tungstenite's handshake, and
//! the framing of the open connection over bytes that the caller moves
//! between the socket and the codec. The async halves (`super`) and the
//! blocking transport (`crate::blocking`) drive the same codec, each with
//! its own socket.
//!
//! Bytes read from the socket go in with [`Codec::feed`]; whole packages
//! come out of [`Codec::next`]. Packages to send go in with
//! [`Codec::encode`] (one binary message each); the bytes to write, and the
//! replies the codec owes the peer (a pong for each ping, the answer to a
//! Close), wait in [`Codec::outgoing`] until the caller has written them.
//!
//! The handshake is tungstenite's (request, answer, key check). Once the
//! connection is open, the codec frames and unframes itself, with
//! tungstenite's [`FrameHeader`] for the header's layout: a package
//! arrives as a slice of the bytes read (no copy unless its message came
//! in fragments), and goes out as one frame masked in place in the bytes to
//! send (one copy). Through tungstenite's message layer a package was
//! copied twice each way and every read zeroed a 4 KiB buffer (two per
//! request, one request at a time).

use std::collections::VecDeque;
use std::io::{self, Cursor, Read, Write};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thingsdb_protocol::Frame;
use tungstenite::error::Error as WsError;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::WebSocket;

use crate::error::Error;
use crate::frames::split_next;
use crate::transport::TransportKind;

/// How much tungstenite takes from the fed bytes in one go during the
/// handshake (it zeroes this much of its buffer before each take).
const TAKE: usize = 4096;

/// The longest payload of a control frame (RFC 6455, 5.5).
const MAX_CONTROL: u64 = 125;

/// The byte stream tungstenite's handshake runs over: reads what was fed
/// (and says "would block" when that is used up, or "end" once the socket
/// ended), writes into the bytes to send.
///
/// A client handshake's stream hands out the answer's head and nothing
/// after it: what follows the blank line is the open connection's, and
/// stays in `inbox` for the [`Codec`] (tungstenite would keep it where the
/// codec cannot reach it).
#[derive(Debug, Default)]
pub(crate) struct Mem {
    inbox: BytesMut,
    out: BytesMut,
    eof: bool,
    head: Head,
}

/// How far a client handshake's stream is through the answer's head.
///
/// The head ends at the first empty line after a line that is not empty;
/// a line ends at a line feed, with or without a carriage return before
/// it, and empty lines before the status line are skipped: the rules of
/// the parser tungstenite reads the answer with (`httparse`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Not a client handshake's stream: everything is handed out.
    #[default]
    Off,
    /// Scanning the answer: the current line has something in it so far
    /// (carriage returns aside: `filled`), after a line with something in
    /// it or not (`begun`).
    Scanning { filled: bool, begun: bool },
    /// The head was handed out whole: nothing more is.
    Done,
}

impl Head {
    /// A scan from the start of an answer.
    const START: Head = Head::Scanning {
        filled: false,
        begun: false,
    };

    /// How many of `bytes` to hand out: all of them, up to the end of the
    /// head (then the scan is done), or none once it is.
    fn scan(&mut self, bytes: &[u8]) -> usize {
        let (mut filled, mut begun) = match *self {
            Head::Off => return bytes.len(),
            Head::Done => return 0,
            Head::Scanning { filled, begun } => (filled, begun),
        };
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\n' if !filled && begun => {
                    *self = Head::Done;
                    return i + 1;
                }
                b'\n' => {
                    begun |= filled;
                    filled = false;
                }
                b'\r' => {}
                _ => filled = true,
            }
        }
        *self = Head::Scanning { filled, begun };
        bytes.len()
    }
}

impl Read for Mem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = buf.len().min(self.inbox.len());
        let n = self.head.scan(&self.inbox[..n]);
        if n == 0 {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
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

/// The tungstenite settings for the handshake.
fn config(max_message: usize) -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
        .read_buffer_size(TAKE)
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
    max_message: usize,
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
    let mem = Mem {
        head: Head::START,
        ..Mem::default()
    };
    let started = tungstenite::client::client_with_config(uri, mem, Some(config(max_message)));
    step(started, uri.to_owned(), kind, max_message, max_payload)
}

fn step(
    r: Result<
        (WebSocket<Mem>, tungstenite::handshake::client::Response),
        HandshakeError<ClientHandshake<Mem>>,
    >,
    uri: String,
    kind: TransportKind,
    max_message: usize,
    max_payload: u32,
) -> Result<Handshake, Error> {
    match r {
        Ok((ws, _response)) => {
            // What came after the answer's head is still in the stream's
            // inbox: the codec's first bytes.
            let Mem {
                inbox, out, head, ..
            } = ws.into_inner();
            if head != Head::Done {
                // tungstenite took an answer whose end the scan did not
                // see: bytes after it may be in tungstenite's buffer.
                return Err(Error::ws(
                    format!("handshake with {uri} failed: the answer's end was not found"),
                    None,
                ));
            }
            let mut codec = Codec {
                kind,
                max_message,
                max_payload,
                inbox,
                out,
                partial: None,
                ready: VecDeque::new(),
                ended: false,
                close_sent: false,
            };
            codec.decode();
            Ok(Handshake::Done(codec))
        }
        Err(HandshakeError::Interrupted(mut mid)) => {
            // tungstenite hands on every byte it is given until the head is
            // whole (and refuses a head over 64 KiB); after the head's end
            // it must not want more, or bytes would pile up here unseen.
            if mid.get_mut().get_mut().head == Head::Done {
                return Err(Error::ws(
                    format!("handshake with {uri} failed: the answer is not a whole HTTP head"),
                    None,
                ));
            }
            Ok(Handshake::Waiting(Waiting {
                mid,
                uri,
                kind,
                max_message,
                max_payload,
            }))
        }
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
            max_message,
            max_payload,
        } = self;
        step(mid.handshake(), uri, kind, max_message, max_payload)
    }
}

/// A message that came in fragments, being put together.
#[derive(Debug)]
struct Partial {
    /// A text message (an error once whole), not a binary one.
    text: bool,
    bytes: BytesMut,
}

/// An open WebSocket client connection, without I/O.
pub(crate) struct Codec {
    kind: TransportKind,
    /// The longest message (and frame) taken, the package header included.
    max_message: usize,
    max_payload: u32,
    /// Bytes read and not yet decoded (the start of a frame, if any).
    inbox: BytesMut,
    /// Bytes to write, in order.
    out: BytesMut,
    /// A message whose first fragments came, and not its last.
    partial: Option<Partial>,
    /// Packages (or errors) decoded and not yet taken, in order.
    ready: VecDeque<Result<Frame, Error>>,
    /// Nothing more will be decoded: the close handshake ran, the stream
    /// ended or broke, or the peer broke the protocol.
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

/// XORs `bytes` with the masking key (RFC 6455, 5.3), eight bytes at a time.
fn apply_mask(bytes: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = bytes.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // Eight is a whole number of keys: the rest starts at the key's start.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

impl Codec {
    /// Takes bytes read from the socket: the packages in them become
    /// [`Codec::next`]'s, replies owed to the peer go to
    /// [`Codec::outgoing`].
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.inbox.extend_from_slice(bytes);
        self.decode_fed();
    }

    /// Where bytes read from the socket go, for a caller that reads into
    /// it directly; [`Codec::decode_fed`] then takes them as
    /// [`Codec::feed`] does.
    pub(crate) fn inbox(&mut self) -> &mut BytesMut {
        &mut self.inbox
    }

    /// Decodes what was put into [`Codec::inbox`].
    pub(crate) fn decode_fed(&mut self) {
        if self.ended {
            // Nothing is decoded after the end: what came is dropped.
            self.inbox.clear();
            return;
        }
        self.decode();
    }

    /// The socket ended (a read of nothing): the connection ends, cleanly
    /// after a close handshake or our Close, with an error otherwise (in
    /// the middle of a message, or with no close handshake at all).
    pub(crate) fn feed_end(&mut self) {
        if self.ended {
            return;
        }
        self.decode();
        if self.ended {
            return;
        }
        let e = if !self.inbox.is_empty() || self.partial.is_some() {
            "the peer closed the connection in the middle of a message"
        } else {
            "the peer closed the connection without a closing handshake"
        };
        self.fail(e);
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

    /// Ends the connection with an error (none after our Close: then the
    /// peer's going away is the end we asked for).
    fn fail(&mut self, message: &str) {
        self.ended = true;
        self.inbox.clear();
        self.partial = None;
        if !self.close_sent {
            self.ready.push_back(Err(Error::ws(message, None)));
        }
    }

    /// Decodes every whole frame in the inbox.
    fn decode(&mut self) {
        while !self.ended {
            let mut cursor = Cursor::new(&self.inbox[..]);
            let (head, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return,
                Err(e) => {
                    self.fail(&format!("the peer broke the WebSocket protocol: {e}"));
                    return;
                }
            };
            // At most 14 bytes.
            let at = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
            if head.rsv1 || head.rsv2 || head.rsv3 {
                return self.fail("the peer set a reserved bit (no extension was agreed)");
            }
            if head.mask.is_some() {
                return self.fail("the peer (a server) masked a frame");
            }
            let control = matches!(head.opcode, OpCode::Control(_));
            if control && (len > MAX_CONTROL || !head.is_final) {
                return self.fail("the peer sent a control frame that is too long or fragmented");
            }
            let len = match usize::try_from(len) {
                Ok(len) if len <= self.max_message => len,
                _ => {
                    return self.fail(&format!(
                        "the peer sent a frame of {len} bytes, over the limit of {}",
                        self.max_message
                    ))
                }
            };
            if self.inbox.len() - at < len {
                return;
            }
            self.inbox.advance(at);
            let payload = self.inbox.split_to(len);
            match head.opcode {
                OpCode::Data(data) => self.data(data, head.is_final, payload),
                // Nothing is sent after our Close, a pong included.
                OpCode::Control(Control::Ping) if !self.close_sent => {
                    self.frame(OpCode::Control(Control::Pong), &payload);
                }
                OpCode::Control(Control::Ping) => {}
                OpCode::Control(Control::Pong) => {}
                OpCode::Control(Control::Close) => {
                    self.peer_closed(&payload);
                }
                // Refused by the header's parser.
                OpCode::Control(Control::Reserved(_)) => {
                    self.fail("the peer sent a reserved control opcode");
                }
            }
        }
    }

    /// A data frame (or a message's fragment) came.
    fn data(&mut self, data: Data, fin: bool, payload: BytesMut) {
        let started = match (data, self.partial.take()) {
            (Data::Continue, None) => {
                return self.fail("the peer continued a message it had not started");
            }
            (Data::Continue, Some(mut partial)) => {
                if partial.bytes.len() + payload.len() > self.max_message {
                    return self.fail(&format!(
                        "the peer sent a message over the limit of {} bytes",
                        self.max_message
                    ));
                }
                partial.bytes.extend_from_slice(&payload);
                partial
            }
            (Data::Binary | Data::Text, Some(_)) => {
                return self.fail("the peer started a message before the last one ended");
            }
            (Data::Binary | Data::Text, None) => Partial {
                text: data == Data::Text,
                bytes: payload,
            },
            // Refused by the header's parser.
            (Data::Reserved(_), _) => return self.fail("the peer sent a reserved data opcode"),
        };
        if !fin {
            self.partial = Some(started);
        } else if started.text {
            self.ready.push_back(Err(Error::TextMessage));
        } else {
            self.ready.push_back(
                Frame::parse(started.bytes.freeze(), self.max_payload).map_err(Error::from),
            );
        }
    }

    /// The peer's Close came: answered unless ours was sent, and nothing is
    /// decoded after it. The answer echoes the peer's status code, or is
    /// 1002 (protocol error) for a code that may not be sent or a payload
    /// of one byte; a Close without a code is answered without one.
    fn peer_closed(&mut self, payload: &[u8]) {
        if !self.close_sent {
            self.close_sent = true;
            let code = match *payload {
                [] => None,
                [hi, lo, ..] if CloseCode::from(u16::from_be_bytes([hi, lo])).is_allowed() => {
                    Some([hi, lo])
                }
                _ => Some(u16::from(CloseCode::Protocol).to_be_bytes()),
            };
            let code = code.as_ref().map_or(&[][..], |c| &c[..]);
            self.frame(OpCode::Control(Control::Close), code);
        }
        self.ended = true;
        self.inbox.clear();
        self.partial = None;
    }

    /// Writes one whole frame, masked with a fresh random key, into the
    /// bytes to send.
    fn frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let key: [u8; 4] = rand::random();
        let head = FrameHeader {
            opcode,
            mask: Some(key),
            ..FrameHeader::default()
        };
        let len = payload.len() as u64;
        self.out.reserve(head.len(len) + payload.len());
        // Writing into memory does not fail.
        let _ = head.format(len, &mut (&mut self.out).writer());
        let start = self.out.len();
        self.out.extend_from_slice(payload);
        apply_mask(&mut self.out[start..], key);
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
    /// each, into the bytes to send. After a Close (ours or the peer's), or
    /// once the connection ended, nothing more is sent: [`Error::Closed`].
    pub(crate) fn encode(&mut self, mut frames: Bytes) -> Result<(), Error> {
        if self.close_sent || self.ended {
            return Err(Error::Closed);
        }
        while let Some(pkg) = split_next(&mut frames) {
            self.frame(OpCode::Data(Data::Binary), &pkg);
        }
        Ok(())
    }

    /// Queues our Close into the bytes to send (once).
    pub(crate) fn close(&mut self) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        self.frame(OpCode::Control(Control::Close), &[]);
    }

    /// The bytes to write to the peer, in order; the caller advances past
    /// what it wrote.
    pub(crate) fn outgoing(&mut self) -> &mut BytesMut {
        &mut self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thingsdb_protocol::PackageType;
    use tungstenite::handshake::server::{NoCallback, ServerHandshake};
    use tungstenite::protocol::frame::Frame as WsFrame;
    use tungstenite::Message;

    /// A client handshake to `ws://h/` under way, its request not read.
    fn begin() -> Waiting {
        let Handshake::Waiting(w) =
            handshake("ws://h/", TransportKind::Ws, 1 << 20, 1 << 20).unwrap()
        else {
            panic!("done without an answer")
        };
        w
    }

    /// A client handshake under way and a server side (over `Mem` too)
    /// that took its request; the server's answer waits in its `out`.
    fn started() -> (Waiting, WebSocket<Mem>) {
        let mut c = begin();
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

    /// Sends one package as a binary message.
    fn send_pkg(server: &mut WebSocket<Mem>, f: &Frame) {
        server.send(Message::Binary(f.to_bytes())).unwrap();
    }

    /// Sends a ping with the payload `p`.
    fn ping(server: &mut WebSocket<Mem>) {
        server
            .send(Message::Ping(Bytes::from_static(b"p")))
            .unwrap();
    }

    /// What the server reads of the bytes the codec owes it.
    fn owed(c: &mut Codec, server: &mut WebSocket<Mem>) -> Vec<Message> {
        let mut out = c.outgoing().split();
        server_reads(server, &mut out)
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
            send_pkg(&mut server, f);
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
        let got = owed(&mut c, &mut server);
        let want: Vec<Message> = frames
            .iter()
            .map(|f| Message::Binary(f.to_bytes()))
            .collect();
        assert_eq!(got, want);
    }

    /// Sends `msg` as one binary message in `extra + 1` fragments (as
    /// even as can be), with `ping` (if any) after the first fragment when
    /// there are several (control frames may come between a message's
    /// fragments), before the message when there is one.
    fn send_fragmented(
        server: &mut WebSocket<Mem>,
        msg: Bytes,
        extra: usize,
        mut ping: Option<Bytes>,
    ) {
        let step = msg.len() / (extra + 1);
        let mut rest = msg;
        for k in 0..=extra {
            let piece = if k == extra {
                std::mem::take(&mut rest)
            } else {
                rest.split_to(step)
            };
            let op = if k == 0 {
                OpCode::Data(Data::Binary)
            } else {
                OpCode::Data(Data::Continue)
            };
            if extra == 0 {
                if let Some(p) = ping.take() {
                    server.write(Message::Frame(WsFrame::ping(p))).unwrap();
                }
            }
            let f = WsFrame::message(piece, op, k == extra);
            server.write(Message::Frame(f)).unwrap();
            if let Some(p) = ping.take() {
                server.write(Message::Frame(WsFrame::ping(p))).unwrap();
            }
        }
        server.flush().unwrap();
    }

    proptest::proptest! {
        /// Packages of any sizes, some sent in fragments, fed in pieces of
        /// any sizes, come out whole and in order, interleaved with pings;
        /// the pongs are owed in order too.
        #[test]
        fn packages_in_any_pieces_come_out_whole(
            sizes in proptest::collection::vec(0usize..3000, 1..20),
            pings in proptest::collection::vec(proptest::bool::ANY, 20),
            frags in proptest::collection::vec(0usize..4, 20),
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
                let ping = pings[i].then(|| Bytes::from(vec![i as u8]));
                if let Some(p) = &ping {
                    want_pongs.push(Message::Pong(p.clone()));
                }
                send_fragmented(&mut server, f.to_bytes(), frags[i], ping);
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
        ping(&mut server);
        server.send(Message::text("hi")).unwrap();
        send_pkg(&mut server, &frame(3, 2));
        let wire = server.get_mut().out.split();
        c.feed(&wire);
        assert!(matches!(c.next(), Some(Err(Error::TextMessage))));
        assert_eq!(c.next().unwrap().unwrap(), frame(3, 2));
        assert!(c.next().is_none());
        let got = owed(&mut c, &mut server);
        assert_eq!(got, vec![Message::Pong(Bytes::from_static(b"p"))]);
    }

    #[test]
    fn the_peers_close_is_answered_and_ends() {
        let (mut c, mut server) = pair();
        send_pkg(&mut server, &frame(1, 1));
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
        send_pkg(&mut server, &frame(1, 100));
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
        ping(&mut server);
        send_pkg(&mut server, &frame(4, 10));
        let wire = server.get_mut().out.split();
        let Handshake::Done(mut c) = c.feed(&wire).unwrap() else {
            panic!("done")
        };
        assert_eq!(c.next().unwrap().unwrap(), frame(4, 10));
        // The pong is owed at once.
        let got = owed(&mut c, &mut server);
        assert_eq!(got, vec![Message::Pong(Bytes::from_static(b"p"))]);
    }

    #[test]
    fn a_refused_or_cut_handshake_is_an_error() {
        let mut w = begin();
        assert!(!w.outgoing().is_empty());
        let e = w
            .feed(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            .err()
            .unwrap();
        assert!(e.to_string().contains("404"), "{e}");

        let w = begin();
        let Handshake::Waiting(w) = w.feed(b"HTTP/1.1 101 Switching").unwrap() else {
            panic!("still waiting")
        };
        assert!(w.feed(b"").is_err(), "the end of the stream mid-answer");
    }

    #[test]
    fn fragments_are_put_together_with_pings_between() {
        let (mut c, mut server) = pair();
        let whole = frame(9, 70_000);
        let between = Bytes::from_static(b"between");
        send_fragmented(&mut server, whole.to_bytes(), 3, Some(between));
        send_pkg(&mut server, &frame(10, 3));
        let wire = server.get_mut().out.split();
        for chunk in wire.chunks(1000) {
            c.feed(chunk);
        }
        assert_eq!(c.next().unwrap().unwrap(), whole);
        assert_eq!(c.next().unwrap().unwrap(), frame(10, 3));
        assert!(c.next().is_none());
        let got = owed(&mut c, &mut server);
        assert_eq!(got, vec![Message::Pong(Bytes::from_static(b"between"))]);
    }

    /// Each of these, from a server, ends the connection with a WebSocket
    /// error, and nothing after it is decoded.
    #[test]
    fn protocol_violations_end_the_connection() {
        let mut long_ping = vec![0x89, 126, 0x00, 126];
        long_ping.extend_from_slice(&[0u8; 126]);
        // A fragmented message over the 1 MiB limit: 600 KiB, then 600 KiB.
        let mut too_long = Vec::new();
        for first in [0x02u8, 0x80] {
            too_long.extend_from_slice(&[first, 127]);
            too_long.extend_from_slice(&(600u64 << 10).to_be_bytes());
            too_long.resize(too_long.len() + (600 << 10), 0);
        }
        let cases: [(&str, Vec<u8>); 9] = [
            ("masked", vec![0x82, 0x81, 1, 2, 3, 4, 5]),
            ("reserved bit", vec![0xC2, 0x01, 0x00]),
            ("reserved data opcode", vec![0x83, 0x00]),
            ("reserved control opcode", vec![0x8B, 0x00]),
            ("continuation of nothing", vec![0x80, 0x00]),
            (
                "new message mid-message",
                vec![0x02, 0x01, 0, 0x82, 0x01, 0],
            ),
            ("fragmented ping", vec![0x09, 0x00]),
            ("long ping", long_ping),
            ("fragments over the limit", too_long),
        ];
        for (what, bytes) in cases {
            let (mut c, mut server) = pair();
            c.feed(&bytes);
            assert!(
                matches!(c.next(), Some(Err(Error::WebSocket { .. }))),
                "{what}"
            );
            assert!(c.ended(), "{what}");
            send_pkg(&mut server, &frame(1, 1));
            c.feed(&server.get_mut().out.split());
            assert!(c.next().is_none(), "{what}: decoded after the error");
        }
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_from_its_header() {
        let (mut c, _server) = pair();
        // 2 MiB announced (limit 1 MiB), none of it sent.
        let mut head = vec![0x82, 127];
        head.extend_from_slice(&(2u64 << 20).to_be_bytes());
        c.feed(&head);
        assert!(matches!(c.next(), Some(Err(Error::WebSocket { .. }))));
        assert!(c.ended());
        // A frame just at the limit is taken.
        let (mut c, mut server) = pair();
        let at_limit = frame(2, (1 << 20) - thingsdb_protocol::HEADER_LEN);
        send_pkg(&mut server, &at_limit);
        c.feed(&server.get_mut().out.split());
        assert_eq!(c.next().unwrap().unwrap(), at_limit);
    }

    #[test]
    fn our_frames_are_masked_with_fresh_keys() {
        let (mut c, mut server) = pair();
        let pkg = frame(1, 200).to_bytes();
        c.encode(pkg.clone()).unwrap();
        let first = c.outgoing().split();
        c.encode(pkg.clone()).unwrap();
        let second = c.outgoing().split();
        // FIN + binary; mask bit and a 16-bit length of 208.
        assert_eq!(first[..4], [0x82, 0x80 | 126, 0, 208]);
        assert_eq!(first.len(), 4 + 4 + pkg.len());
        assert_ne!(first[4..8], second[4..8], "the same masking key twice");
        assert_ne!(first[8..], pkg[..], "the payload went out unmasked");
        let mut both = first;
        both.extend_from_slice(&second);
        let got = server_reads(&mut server, &mut both);
        assert_eq!(
            got,
            vec![Message::Binary(pkg.clone()), Message::Binary(pkg)]
        );
        // Every length form: 7-bit, 16-bit and 64-bit.
        let sizes = [0, 117, 118, 65_527, 65_528, 200_000];
        let mut batch = BytesMut::new();
        for (i, n) in sizes.iter().enumerate() {
            batch.extend_from_slice(&frame(i as u16, *n).to_bytes());
        }
        c.encode(batch.freeze()).unwrap();
        let mut out = c.outgoing().split();
        let want: Vec<Message> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| Message::Binary(frame(i as u16, *n).to_bytes()))
            .collect();
        assert_eq!(server_reads(&mut server, &mut out), want);
    }

    #[test]
    fn the_mask_matches_the_rfcs_byte_by_byte_rule() {
        let key = [0x6d, 0xb6, 0xb2, 0x80];
        for len in 0..40 {
            let plain: Vec<u8> = (0..len).map(|i| (i * 37 + 5) as u8).collect();
            let mut masked = plain.clone();
            apply_mask(&mut masked, key);
            let want: Vec<u8> = plain
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(masked, want, "length {len}");
        }
    }

    #[test]
    fn the_peers_close_code_is_echoed_and_nothing_is_sent_after() {
        use tungstenite::protocol::frame::coding::CloseCode;
        use tungstenite::protocol::CloseFrame;
        let (mut c, mut server) = pair();
        server
            .close(Some(CloseFrame {
                code: CloseCode::Away,
                reason: "going".into(),
            }))
            .unwrap();
        server.flush().unwrap();
        c.feed(&server.get_mut().out.split());
        assert!(c.ended());
        // One masked Close frame carrying the code (1001) and no reason.
        let out = c.outgoing().split();
        assert_eq!(out[..2], [0x88, 0x82]);
        let mut code = [out[6], out[7]];
        apply_mask(&mut code, [out[2], out[3], out[4], out[5]]);
        assert_eq!(u16::from_be_bytes(code), 1001);
        assert_eq!(out.len(), 8);
        // The server takes it as the answer to its Close.
        server.get_mut().inbox.extend_from_slice(&out);
        let answer = server.read().unwrap();
        let want = CloseFrame {
            code: CloseCode::Away,
            reason: "".into(),
        };
        assert_eq!(answer, Message::Close(Some(want)));
        assert!(matches!(
            c.encode(frame(1, 1).to_bytes()),
            Err(Error::Closed)
        ));
        assert!(c.outgoing().is_empty());
        // The socket ending after the close handshake is no error.
        c.feed_end();
        assert!(c.next().is_none());
    }

    #[test]
    fn an_answer_fed_in_small_pieces_leaves_what_follows_to_the_codec() {
        // Pieces of 5 bytes (tungstenite refuses a head that comes in
        // pieces much smaller than that): the blank line ends mid-piece,
        // and the rest of that piece is the start of a ping.
        let (mut w, mut server) = started();
        ping(&mut server);
        send_pkg(&mut server, &frame(4, 300));
        let wire = server.get_mut().out.split();
        let mut pieces = wire.chunks(5);
        let mut c = loop {
            let piece = pieces.next().expect("the handshake never finished");
            match w.feed(piece).unwrap() {
                Handshake::Waiting(more) => w = more,
                Handshake::Done(c) => break c,
            }
        };
        for piece in pieces {
            c.feed(piece);
        }
        assert_eq!(c.next().unwrap().unwrap(), frame(4, 300));
        let got = owed(&mut c, &mut server);
        assert_eq!(got, vec![Message::Pong(Bytes::from_static(b"p"))]);
    }

    /// The scan's end in `text` handed out in pieces of `piece` bytes.
    fn head_end(text: &[u8], piece: usize) -> Option<usize> {
        let mut head = Head::START;
        let mut handed = 0;
        for p in text.chunks(piece) {
            handed += head.scan(p);
            if head == Head::Done {
                return Some(handed);
            }
        }
        None
    }

    #[test]
    fn the_head_scan_ends_where_the_http_parser_does() {
        let cases: [(&[u8], Option<usize>); 5] = [
            (b"HTTP/1.1 101 X\r\na: b\r\n\r\nrest", Some(24)),
            // Bare line feeds, and a mix.
            (b"HTTP/1.1 101 X\na: b\n\nrest", Some(21)),
            (b"HTTP/1.1 101 X\r\na: b\n\r\nrest", Some(23)),
            // Empty lines before the status line are skipped.
            (b"\r\n\nHTTP/1.1 101 X\r\n\r\nrest", Some(21)),
            (b"HTTP/1.1 101 X\r\na: b\r\n", None),
        ];
        for (text, want) in cases {
            for piece in [1, 2, 3, 7, text.len()] {
                let got = head_end(text, piece);
                assert_eq!(
                    got,
                    want,
                    "{:?} in pieces of {piece}",
                    String::from_utf8_lossy(text)
                );
            }
            if let Some(end) = want {
                // What httparse (through tungstenite) takes as the head.
                let mut headers = [httparse::EMPTY_HEADER; 4];
                let parsed = httparse::Response::new(&mut headers).parse(text).unwrap();
                assert_eq!(parsed, httparse::Status::Complete(end));
            }
        }
        assert_eq!(Head::Off.scan(b"\r\n\r\nx"), 5);
        assert_eq!(Head::Done.scan(b"x"), 0);
    }

    /// The server's answer to a started handshake, and the client waiting
    /// for it.
    fn answer() -> (Waiting, WebSocket<Mem>, Vec<u8>) {
        let (w, mut server) = started();
        let answer = server.get_mut().out.split().to_vec();
        (w, server, answer)
    }

    #[test]
    fn an_answer_with_bare_line_feeds_or_leading_blank_lines_leaves_frames_to_the_codec() {
        let pong_owed = |mut c: Codec, server: &mut WebSocket<Mem>| {
            assert_eq!(c.next().unwrap().unwrap(), frame(4, 30));
            let mut out = c.outgoing().split();
            let got = server_reads(server, &mut out);
            assert_eq!(got, vec![Message::Pong(Bytes::from_static(b"p"))]);
        };
        for variant in ["lf", "leading"] {
            let (w, mut server, answer) = answer();
            let text = String::from_utf8(answer).unwrap();
            let mut wire = match variant {
                "lf" => text.replace("\r\n", "\n").into_bytes(),
                _ => format!("\r\n{text}").into_bytes(),
            };
            ping(&mut server);
            send_pkg(&mut server, &frame(4, 30));
            wire.extend_from_slice(&server.get_mut().out.split());
            let Handshake::Done(c) = w.feed(&wire).unwrap() else {
                panic!("{variant}: not done")
            };
            pong_owed(c, &mut server);
        }
    }

    /// tungstenite's limit on the answer holds: the codec hands it every
    /// byte until the head's end.
    #[test]
    fn an_answer_that_never_ends_is_refused_not_kept() {
        let mut w = begin();
        // A header line that goes on and on, fed in big pieces.
        w = match w.feed(b"HTTP/1.1 101 Switching Protocols\r\nx: ").unwrap() {
            Handshake::Waiting(w) => w,
            Handshake::Done(_) => panic!("done"),
        };
        let piece = vec![b'a'; 8 * 1024];
        for _ in 0..16 {
            match w.feed(&piece) {
                Ok(Handshake::Waiting(more)) => w = more,
                Ok(Handshake::Done(_)) => panic!("done"),
                Err(e) => {
                    assert!(matches!(e, Error::WebSocket { .. }), "{e}");
                    return;
                }
            }
        }
        panic!("128 KiB of answer taken without an error");
    }

    #[test]
    fn closes_the_peer_may_not_send_are_answered_with_a_protocol_error() {
        // (payload of the peer's Close, code in our answer)
        let cases: [(&[u8], Option<u16>); 5] = [
            (&[], None),
            (&[0x03, 0xE8], Some(1000)),
            (&[0x03, 0xE9, b'b', b'y', b'e'], Some(1001)),
            // 1005 and 1006 are never sent; one byte is no code.
            (&[0x03, 0xED], Some(1002)),
            (&[0x03], Some(1002)),
        ];
        for (payload, want) in cases {
            let (mut c, _server) = pair();
            let mut close = vec![0x88, payload.len() as u8];
            close.extend_from_slice(payload);
            c.feed(&close);
            assert!(c.ended());
            assert!(c.next().is_none(), "{payload:?}: a Close is a clean end");
            let out = c.outgoing().split();
            assert_eq!(out[0], 0x88, "{payload:?}");
            let mut body = out[6..].to_vec();
            apply_mask(&mut body, [out[2], out[3], out[4], out[5]]);
            let got = (!body.is_empty()).then(|| u16::from_be_bytes([body[0], body[1]]));
            assert_eq!(got, want, "{payload:?}");
            assert_eq!(body.len(), if want.is_some() { 2 } else { 0 });
        }
    }

    #[test]
    fn nothing_is_sent_after_our_close_not_even_a_pong() {
        let (mut c, mut server) = pair();
        c.close();
        let ours = c.outgoing().split();
        ping(&mut server);
        c.feed(&server.get_mut().out.split());
        assert!(c.outgoing().is_empty(), "a pong after our Close");
        assert!(matches!(
            c.encode(frame(1, 1).to_bytes()),
            Err(Error::Closed)
        ));
        // The server takes our Close and answers; the codec ends cleanly.
        let mut ours = ours;
        let got = server_reads_until_close(&mut server, &mut ours);
        assert_eq!(got, Message::Close(None));
        // tungstenite queued its answer; it says the connection is closed.
        let _ = server.flush();
        assert!(!server.get_mut().out.is_empty(), "the server answered");
        c.feed(&server.get_mut().out.split());
        assert!(c.ended());
        assert!(c.next().is_none());
        assert!(
            c.outgoing().is_empty(),
            "the server's answer is not answered"
        );
    }

    /// What the server reads up to and including a Close.
    fn server_reads_until_close(server: &mut WebSocket<Mem>, bytes: &mut BytesMut) -> Message {
        server.get_mut().inbox.extend_from_slice(&bytes.split());
        loop {
            match server.read() {
                Ok(m @ Message::Close(_)) => return m,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn empty_fragments_pongs_and_fragmented_text() {
        let (mut c, _server) = pair();
        let pkg = frame(5, 4).to_bytes();
        let mut wire = Vec::new();
        // An unsolicited pong with a payload: ignored.
        wire.extend_from_slice(&[0x8A, 0x02, b'h', b'i']);
        // An empty first fragment, the package, an empty last fragment.
        wire.extend_from_slice(&[0x02, 0x00]);
        wire.extend_from_slice(&[0x00, pkg.len() as u8]);
        wire.extend_from_slice(&pkg);
        wire.extend_from_slice(&[0x80, 0x00]);
        // A text message in two fragments: an error, and the connection
        // goes on.
        wire.extend_from_slice(&[0x01, 0x01, b'h', 0x80, 0x01, b'i']);
        // An empty binary message: too short for a package.
        wire.extend_from_slice(&[0x82, 0x00]);
        wire.extend_from_slice(&[0x82, pkg.len() as u8]);
        wire.extend_from_slice(&pkg);
        c.feed(&wire);
        assert_eq!(c.next().unwrap().unwrap(), frame(5, 4));
        assert!(matches!(c.next(), Some(Err(Error::TextMessage))));
        assert!(matches!(c.next(), Some(Err(Error::Protocol(_)))));
        assert_eq!(c.next().unwrap().unwrap(), frame(5, 4));
        assert!(c.next().is_none());
        assert!(!c.ended());
        assert!(c.outgoing().is_empty(), "a pong answered");
    }

    #[test]
    fn an_end_with_a_message_half_put_together_is_an_error_and_nothing_is_sent_after() {
        let (mut c, _server) = pair();
        // A whole first fragment, no more: the inbox is empty.
        c.feed(&[0x02, 0x01, 0x00]);
        assert!(c.next().is_none());
        c.feed_end();
        assert!(matches!(c.next(), Some(Err(Error::WebSocket { .. }))));
        assert!(matches!(
            c.encode(frame(1, 1).to_bytes()),
            Err(Error::Closed)
        ));
        // The largest length a header can say.
        let (mut c, _server) = pair();
        let mut head = vec![0x82, 127];
        head.extend_from_slice(&u64::MAX.to_be_bytes());
        c.feed(&head);
        assert!(matches!(c.next(), Some(Err(Error::WebSocket { .. }))));
    }
}
