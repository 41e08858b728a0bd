//! Test helpers for the session: a fake clock, frames as a node sends
//! them, and the packages the session wrote, decoded.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thingsdb_protocol::{
    msgpack, request::Request, EmitEvent, Event, EventRoom as WireRoom, Frame, PackageType, Room,
    HEADER_LEN,
};
use tokio::sync::oneshot;
use web_time::Instant;

use super::session::{Command, ConnId, Output, ReplyTx, Session, SessionConfig, Subscribe};
use crate::config::ReconnectPolicy;
use crate::error::{Error, TransportErrorKind};
use crate::events::{event_channel, EventRx, Overflow, RoomEvent};
use crate::scope::Scope;

/// A failed connect: the node refused the connection.
pub(crate) fn refused(message: impl Into<String>) -> Error {
    Error::transport(TransportErrorKind::Refused, message)
}

/// One package the session wrote.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub id: u16,
    pub request: Request,
}

/// Splits a batch the session wrote into its packages.
pub(crate) fn decode_batch(mut b: Bytes) -> Vec<Sent> {
    let mut out = Vec::new();
    while b.len() >= HEADER_LEN {
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let id = u16::from_le_bytes([b[4], b[5]]);
        let t = b[6];
        let payload = b.slice(HEADER_LEN..HEADER_LEN + len);
        b = b.slice(HEADER_LEN + len..);
        let pt = PackageType::try_from(t).unwrap_or(PackageType::Ping);
        let frame = Frame::new(pt, id, payload);
        let request = Request::decode(&frame).unwrap_or(Request::Ping);
        out.push(Sent { id, request });
    }
    out
}

/// The payload of an event package.
fn event_frame(e: &Event) -> Frame {
    let mut b = BytesMut::new();
    let _ = e.encode(&mut b);
    let b = b.freeze();
    Frame::new(
        PackageType::try_from(b[6]).unwrap_or(PackageType::Warn),
        0xffff,
        b.slice(HEADER_LEN..),
    )
}

/// DATA `[room]` or `[nil]`: a JOIN or LEAVE reply.
pub(crate) fn room_reply(id: u16, room: Option<u64>) -> Frame {
    let mut p = BytesMut::new();
    msgpack::write_array_len(&mut p, 1);
    match room {
        Some(r) => thingsdb_protocol::encode_value(&mut p, &rmpv::Value::from(r)),
        None => thingsdb_protocol::encode_value(&mut p, &rmpv::Value::Nil),
    }
    Frame::new(PackageType::Data, id, p.freeze())
}

/// DATA with an integer.
pub(crate) fn data(id: u16, v: i64) -> Frame {
    let mut p = BytesMut::new();
    thingsdb_protocol::encode_value(&mut p, &rmpv::Value::from(v));
    Frame::new(PackageType::Data, id, p.freeze())
}

/// ERROR NODE_ERROR (-51): the node could not take the request.
pub(crate) fn node_error(id: u16) -> Frame {
    let mut b = BytesMut::new();
    let _ = thingsdb_protocol::response::encode_error(
        &mut b,
        id,
        thingsdb_protocol::ErrorCode::Node,
        "cannot find a node for handling this request",
    );
    Frame::new(PackageType::Error, id, b.split_off(HEADER_LEN).freeze())
}

/// PONG.
pub(crate) fn pong(id: u16) -> Frame {
    Frame::new(PackageType::Pong, id, Bytes::new())
}

fn scope_of(collection: &str) -> Option<String> {
    Some(format!("@collection:{collection}"))
}

/// ON_JOIN.
pub(crate) fn on_join(collection: &str, id: u64) -> Frame {
    event_frame(&Event::Join(WireRoom {
        scope: scope_of(collection),
        id,
    }))
}

/// ON_LEAVE.
pub(crate) fn on_leave(collection: &str, id: u64) -> Frame {
    event_frame(&Event::Leave(WireRoom {
        scope: scope_of(collection),
        id,
    }))
}

/// ON_DELETE.
pub(crate) fn on_delete(collection: &str, id: u64) -> Frame {
    event_frame(&Event::Delete(WireRoom {
        scope: scope_of(collection),
        id,
    }))
}

/// ON_EMIT with one integer argument.
pub(crate) fn on_emit(collection: &str, id: u64, n: u64) -> Frame {
    let mut a = BytesMut::new();
    msgpack::write_array_len(&mut a, 1);
    thingsdb_protocol::encode_value(&mut a, &rmpv::Value::from(n));
    event_frame(&Event::Emit(EmitEvent {
        scope: scope_of(collection),
        id,
        event: "e".into(),
        args: a.freeze(),
    }))
}

/// NODE_STATUS SHUTTING_DOWN.
pub(crate) fn shutting_down() -> Frame {
    event_frame(&Event::NodeStatus {
        id: 0,
        status: thingsdb_protocol::NodeStatus::ShuttingDown,
    })
}

/// The argument of an emitted event made by [`on_emit`].
pub(crate) fn emitted_n(ev: &RoomEvent) -> Option<u64> {
    match ev {
        RoomEvent::Emitted(e) => e.arg::<u64>(0).ok(),
        _ => None,
    }
}

/// A session under test with a fake clock.
pub(crate) struct Harness {
    pub s: Session,
    pub now: Instant,
    next_stream: u64,
}

impl Harness {
    /// A session with one open connection (pool of `pool` nodes).
    pub(crate) fn new(pool: usize, keepalive: Option<Duration>) -> (Harness, ConnId) {
        Harness::with_seed(pool, keepalive, 1)
    }

    /// [`Harness::new`] with the session's random numbers seeded by `seed`.
    pub(crate) fn with_seed(
        pool: usize,
        keepalive: Option<Duration>,
        seed: u64,
    ) -> (Harness, ConnId) {
        let mut s = Session::new(SessionConfig {
            keepalive,
            reconnect: ReconnectPolicy {
                enabled: true,
                initial_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(100),
                max_attempts: None,
            },
            random_start: false,
            request_attempts: 4,
            seed,
        });
        let now = Instant::now();
        s.handle_command(now, Command::AddNodes(pool_entries(pool)));
        let c = match s.poll_output() {
            Some(Output::Connect { conn, index: 0, .. }) => conn,
            other => panic!("the first round starts at entry 0, not {other:?}"),
        };
        s.handle_connected(now, c, None);
        (
            Harness {
                s,
                now,
                next_stream: 1,
            },
            c,
        )
    }

    /// Moves the fake clock on and tells the session.
    pub(crate) fn advance(&mut self, d: Duration) {
        self.now += d;
        self.s.handle_timeout(self.now);
    }

    /// What the session wrote on `conn`.
    pub(crate) fn sent(&mut self, conn: ConnId) -> Vec<Sent> {
        self.s
            .poll_transmit(conn)
            .map(decode_batch)
            .unwrap_or_default()
    }

    /// What the session asks the driver to do.
    pub(crate) fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.s.poll_output()).collect()
    }

    /// A frame from the node on `conn`.
    pub(crate) fn frame(&mut self, conn: ConnId, f: Frame) {
        self.s.handle_frame(self.now, conn, f);
    }

    /// A query request; returns its reply channel.
    pub(crate) fn request(
        &mut self,
        timeout: Duration,
    ) -> oneshot::Receiver<Result<crate::observe::Answer, Error>> {
        self.request_with(timeout, false)
    }

    /// A query request, idempotent or not; returns its reply channel.
    pub(crate) fn request_with(
        &mut self,
        timeout: Duration,
        idempotent: bool,
    ) -> oneshot::Receiver<Result<crate::observe::Answer, Error>> {
        let (reply, rx): (ReplyTx, _) = oneshot::channel();
        let mut frame = BytesMut::new();
        let _ = request::encode_query(&mut frame, 0, "@t", "1;", None);
        self.s.handle_command(
            self.now,
            Command::Request {
                frame,
                reply,
                deadline: self.now + timeout,
                timeout,
                idempotent,
            },
        );
        rx
    }

    /// Joins a room; returns the stream and the join's reply channel.
    pub(crate) fn join(
        &mut self,
        scope: &str,
        room: Room,
        overflow: Overflow,
        cap: usize,
    ) -> (
        EventRx<RoomEvent>,
        u64,
        oneshot::Receiver<Result<super::RoomKey, Error>>,
    ) {
        let id = self.next_stream;
        self.next_stream += 1;
        let (sink, rx) = event_channel(id, cap, overflow);
        let (reply, answer) = oneshot::channel();
        let scope = Scope::parse(scope).unwrap_or_default();
        self.s.handle_command(
            self.now,
            Command::Subscribe(Box::new(Subscribe {
                scope,
                room,
                sink,
                reply,
            })),
        );
        (rx, id, answer)
    }
}

use thingsdb_protocol::request;

/// A pool of `n` nodes on 127.0.0.1, ports 9200 and up, none learnt.
pub(crate) fn pool_entries(n: usize) -> Vec<super::pool::PoolEntry> {
    (0..n)
        .map(|i| super::pool::PoolEntry {
            target: thingsdb_transport::Target::tcp("127.0.0.1", 9200 + i as u16),
            node: None,
        })
        .collect()
}

/// Every item a stream holds now.
pub(crate) fn drain(rx: &mut EventRx<RoomEvent>) -> Vec<RoomEvent> {
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut out = Vec::new();
    while let std::task::Poll::Ready(Some(ev)) = rx.poll_recv(&mut cx) {
        out.push(ev);
    }
    out
}

/// An emitted event `e` with the one argument `n`.
pub(crate) fn emitted(n: u8) -> RoomEvent {
    RoomEvent::Emitted(crate::events::Emitted {
        event: "e".into(),
        args: bytes::Bytes::from(vec![0x91, n]),
    })
}
