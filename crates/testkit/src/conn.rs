//! One task per connection: reading packages, writing replies and events,
//! applying faults.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use thingsdb_protocol::{Decoder, Frame, Header, PackageType, HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::dispatch::{self, Outcome};
use crate::faults::Corruption;
use crate::state::{Command, Ingress, Shared};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Any byte stream a connection runs on (TCP, TLS, Unix).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub(crate) type BoxIo = Box<dyn Io>;

/// Reads packages from a byte stream or from WebSocket messages.
pub(crate) enum PkgReader {
    Stream(ReadHalf<BoxIo>, Decoder),
    Ws(SplitStream<WebSocketStream<BoxIo>>, u32),
}

/// Writes packages to a byte stream or as WebSocket messages.
pub(crate) enum PkgWriter {
    Stream(WriteHalf<BoxIo>),
    Ws(SplitSink<WebSocketStream<BoxIo>, Message>, usize),
}

enum ReadError {
    /// A package that makes a node close the connection.
    Bad(String),
    /// The peer went away or the transport failed.
    Gone,
}

impl PkgReader {
    /// The next package. Cancel-safe: a partial read stays buffered.
    async fn next(&mut self) -> Result<Frame, ReadError> {
        match self {
            PkgReader::Stream(rd, dec) => loop {
                match dec.next_frame() {
                    Ok(Some(f)) => return Ok(f),
                    Ok(None) => {}
                    Err(e) => return Err(ReadError::Bad(e.to_string())),
                }
                match rd.read_buf(dec.buffer_mut()).await {
                    Ok(0) | Err(_) => return Err(ReadError::Gone),
                    Ok(_) => {}
                }
            },
            PkgReader::Ws(rd, max) => loop {
                let data: Bytes = match rd.next().await {
                    Some(Ok(Message::Binary(b))) => b,
                    // A node reads the bytes of any data message.
                    Some(Ok(Message::Text(t))) => Bytes::copy_from_slice(t.as_bytes()),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        return Err(ReadError::Gone)
                    }
                    Some(Ok(_)) => continue,
                };
                return Frame::parse(data, *max).map_err(|e| ReadError::Bad(e.to_string()));
            },
        }
    }
}

impl PkgWriter {
    /// Writes one whole package; over WebSocket as one message, split into
    /// continuation frames when larger than the fragment size.
    async fn package(&mut self, pkg: &[u8], byte_by_byte: bool) -> std::io::Result<()> {
        match self {
            PkgWriter::Stream(w) => {
                if byte_by_byte {
                    for b in pkg {
                        w.write_all(std::slice::from_ref(b)).await?;
                        w.flush().await?;
                    }
                    Ok(())
                } else {
                    w.write_all(pkg).await?;
                    w.flush().await
                }
            }
            PkgWriter::Ws(sink, frag) => {
                let frag = if byte_by_byte { 1 } else { (*frag).max(1) };
                if pkg.len() <= frag {
                    return sink
                        .send(Message::Binary(Bytes::copy_from_slice(pkg)))
                        .await
                        .map_err(std::io::Error::other);
                }
                let n = pkg.len().div_ceil(frag);
                for (i, chunk) in pkg.chunks(frag).enumerate() {
                    let op = if i == 0 { Data::Binary } else { Data::Continue };
                    let f = WsFrame::message(
                        Bytes::copy_from_slice(chunk),
                        OpCode::Data(op),
                        i + 1 == n,
                    );
                    sink.feed(Message::Frame(f))
                        .await
                        .map_err(std::io::Error::other)?;
                }
                sink.flush().await.map_err(std::io::Error::other)
            }
        }
    }

    /// Writes bytes as they are (over WebSocket: as one binary message).
    async fn raw(&mut self, b: Bytes) -> std::io::Result<()> {
        match self {
            PkgWriter::Stream(w) => {
                w.write_all(&b).await?;
                w.flush().await
            }
            PkgWriter::Ws(sink, _) => sink
                .send(Message::Binary(b))
                .await
                .map_err(std::io::Error::other),
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            PkgWriter::Stream(w) => w.shutdown().await,
            PkgWriter::Ws(sink, _) => sink.close().await.map_err(std::io::Error::other),
        };
    }
}

/// Removes the connection from the state when its task ends, however it
/// ends (also when aborted).
struct Guard {
    shared: Arc<Shared>,
    conn: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().remove_conn(self.conn);
    }
}

enum Flow {
    Continue,
    Close,
}

/// Serves an accepted connection: TLS and WebSocket handshakes, then
/// [`run`]. The connection's state entry is removed when this ends.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    conn: u64,
    io: BoxIo,
    transport: Ingress,
    tls: Option<TlsAcceptor>,
    rx: mpsc::UnboundedReceiver<Command>,
) {
    let _guard = Guard {
        shared: shared.clone(),
        conn,
    };
    let io: BoxIo = match tls {
        Some(acc) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acc.accept(io)).await {
            Ok(Ok(s)) => Box::new(s),
            _ => return,
        },
        None => io,
    };
    let (reader, writer) = if transport.is_websocket() {
        let cfg = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let hs = tokio_tungstenite::accept_hdr_async_with_config(io, subprotocol, Some(cfg));
        let ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, hs).await {
            Ok(Ok(ws)) => ws,
            _ => return,
        };
        let (sink, stream) = ws.split();
        (
            PkgReader::Ws(stream, shared.config.max_payload),
            PkgWriter::Ws(sink, shared.config.ws_fragment),
        )
    } else {
        let (rd, wr) = tokio::io::split(io);
        (
            PkgReader::Stream(rd, Decoder::with_max_payload(shared.config.max_payload)),
            PkgWriter::Stream(wr),
        )
    };
    run(shared, conn, reader, writer, rx).await;
}

/// How long a TLS or WebSocket handshake may take (a hang guard only).
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Answers with the `thingsdb-protocol` sub-protocol when the client asks
/// for it, as a node does.
#[allow(clippy::result_large_err)]
fn subprotocol(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let asked = req
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "thingsdb-protocol");
    if asked {
        resp.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("thingsdb-protocol"),
        );
    }
    Ok(resp)
}

/// Runs a connection until it closes, the node stops or a fault ends it.
async fn run(
    shared: Arc<Shared>,
    conn: u64,
    mut reader: PkgReader,
    mut writer: PkgWriter,
    mut rx: mpsc::UnboundedReceiver<Command>,
) {
    let cancel = shared.cancel.clone();
    // Replies waiting for the node's service time, in request order.
    let mut pending: VecDeque<Pending> = VecDeque::new();
    loop {
        let due = pending.front().map(|p| p.at);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            cmd = rx.recv() => {
                let res = match cmd {
                    Some(Command::Package(p)) => {
                        let bbb = byte_by_byte(&shared, conn);
                        writer.package(&p, bbb).await
                    }
                    Some(Command::Raw(b)) => writer.raw(b).await,
                    Some(Command::Close) | None => break,
                };
                if res.is_err() {
                    return;
                }
            }
            _ = sleep_until(due) => match write_due(&shared, &mut pending, &mut writer).await {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) => break,
                Err(_) => return,
            },
            r = reader.next() => match r {
                Ok(frame) => match handle_frame(&shared, conn, frame, &mut writer, &mut pending).await {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Close) => break,
                    Err(_) => return,
                },
                Err(ReadError::Bad(why)) => {
                    tracing::debug!("testkit: connection {conn}: invalid package ({why}), closing");
                    shared.lock().counters.bad_packages += 1;
                    break;
                }
                Err(ReadError::Gone) => return,
            }
        }
    }
    writer.shutdown().await;
}

fn byte_by_byte(shared: &Shared, conn: u64) -> bool {
    let st = shared.lock();
    st.faults.byte_by_byte || st.conns.get(&conn).is_some_and(|c| c.faults.byte_by_byte)
}

/// What a connection still has to write once the node's service time for
/// a request is over.
struct Pending {
    at: Instant,
    bbb: bool,
    out: Vec<Out>,
}

enum Out {
    /// An event package.
    Package(Bytes),
    /// The reply, perhaps spoiled.
    Reply(Frame, Option<Corruption>),
}

/// Sleeps until `due`; never returns without one.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Writes everything that is due.
async fn write_due(
    shared: &Shared,
    pending: &mut VecDeque<Pending>,
    writer: &mut PkgWriter,
) -> std::io::Result<Flow> {
    let now = Instant::now();
    while pending.front().is_some_and(|p| p.at <= now) {
        let Some(p) = pending.pop_front() else { break };
        for out in p.out {
            match out {
                Out::Package(b) => writer.package(&b, p.bbb).await?,
                Out::Reply(reply, corruption) => {
                    let wire = reply.to_bytes();
                    let flow = match corruption {
                        None => {
                            writer.package(&wire, p.bbb).await?;
                            Flow::Continue
                        }
                        Some(c) => corrupt(writer, &reply, wire, c, p.bbb).await?,
                    };
                    shared.lock().counters.replies_sent += 1;
                    if let Flow::Close = flow {
                        return Ok(Flow::Close);
                    }
                }
            }
        }
    }
    Ok(Flow::Continue)
}

async fn handle_frame(
    shared: &Shared,
    conn: u64,
    frame: Frame,
    writer: &mut PkgWriter,
    pending: &mut VecDeque<Pending>,
) -> std::io::Result<Flow> {
    {
        let mut st = shared.lock();
        st.counters.count_received(frame.type_byte);
        let mut close = false;
        if let Some(c) = st.conns.get_mut(&conn) {
            c.received += 1;
            if let Some(n) = c.close_after {
                if n <= 1 {
                    close = true;
                } else {
                    c.close_after = Some(n - 1);
                }
            }
        }
        if close {
            st.counters.closed_by_fault += 1;
            return Ok(Flow::Close);
        }
    }
    let received = Instant::now();
    let timed =
        frame.type_byte == PackageType::Query as u8 || frame.type_byte == PackageType::Run as u8;
    let Outcome {
        before,
        reply,
        after,
    } = dispatch::handle(shared, conn, &frame);
    let (delay, silent, bbb, corruption) = {
        let mut st = shared.lock();
        let g = st.faults.clone();
        match st.conns.get_mut(&conn) {
            Some(c) => {
                let silent = g.silent || c.faults.silent;
                let corruption = if reply.is_some() && !silent {
                    c.corruptions.pop_front()
                } else {
                    None
                };
                (
                    g.delay.max(c.faults.delay),
                    silent,
                    g.byte_by_byte || c.faults.byte_by_byte,
                    corruption,
                )
            }
            None => (g.delay, g.silent, g.byte_by_byte, None),
        }
    };
    // With a service time (or replies of earlier requests still waiting
    // for theirs), the reply waits its turn.
    let booked = if timed {
        shared.service().reserve(received)
    } else {
        None
    };
    if let Some(at) = booked.or_else(|| pending.back().map(|p| p.at)) {
        let reply = reply.filter(|_| !silent);
        let at = if reply.is_some() { at + delay } else { at };
        let mut out: Vec<Out> = before.into_iter().map(Out::Package).collect();
        out.extend(reply.map(|r| Out::Reply(r, corruption)));
        out.extend(after.into_iter().map(Out::Package));
        pending.push_back(Pending { at, bbb, out });
        return Ok(Flow::Continue);
    }
    for p in &before {
        writer.package(p, bbb).await?;
    }
    if let Some(reply) = reply {
        if !silent {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let wire = reply.to_bytes();
            match corruption {
                None => writer.package(&wire, bbb).await?,
                Some(c) => {
                    if let Flow::Close = corrupt(writer, &reply, wire, c, bbb).await? {
                        shared.lock().counters.replies_sent += 1;
                        return Ok(Flow::Close);
                    }
                }
            }
            shared.lock().counters.replies_sent += 1;
        }
    }
    for p in &after {
        writer.package(p, bbb).await?;
    }
    Ok(Flow::Continue)
}

async fn corrupt(
    writer: &mut PkgWriter,
    reply: &Frame,
    wire: Bytes,
    c: Corruption,
    bbb: bool,
) -> std::io::Result<Flow> {
    match c {
        Corruption::BadCheckByte => {
            let mut b = BytesMut::from(&wire[..]);
            b[7] ^= 0x01;
            writer.package(&b, bbb).await?;
        }
        Corruption::OversizedHeader => {
            let h = Header {
                len: u32::MAX,
                id: reply.id,
                type_byte: reply.type_byte,
            };
            writer.package(&h.encode(), bbb).await?;
        }
        Corruption::Truncated => {
            let cut = if reply.payload.is_empty() {
                HEADER_LEN / 2
            } else {
                HEADER_LEN + reply.payload.len() / 2
            };
            writer.package(&wire[..cut], bbb).await?;
            return Ok(Flow::Close);
        }
        Corruption::InvalidMsgpack => {
            let f = Frame::new(PackageType::Data, reply.id, Bytes::from_static(&[0xc1]));
            writer.package(&f.to_bytes(), bbb).await?;
        }
        Corruption::UnknownId(id) => {
            let f = Frame::new(PackageType::Data, id, Bytes::from_static(&[0xc0]));
            writer.package(&f.to_bytes(), bbb).await?;
            writer.package(&wire, bbb).await?;
        }
    }
    Ok(Flow::Continue)
}
