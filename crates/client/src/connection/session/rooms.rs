//! Rooms: every room the session has streams for, keyed by collection and
//! id (room ids repeat across collections), where each stands on which
//! connection, its streams, and the streams leaving it.
//!
//! [`Rooms`] owns that state and [`RoomEntry`] one room's; the `impl
//! Session` block below sends JOIN and LEAVE, handles their answers and
//! the room events (emit, leave, delete), and keeps rooms joined across
//! reconnects. The move between two connections of a node that shuts down
//! is in `handover.rs`, what reaches the streams in `delivery.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use thingsdb_protocol::{request, PackageType, Room};
use tokio::sync::oneshot;
use tracing::warn;

use super::handover::{Handover, Repeats, Route};
use super::requests::Pending;
use super::{ConnId, RoomKey, Session, Subscribe};
use crate::error::Error;
use crate::events::{Emitted, RoomEvent, RoomSink};
use crate::scope::Scope;

/// Where a room stands on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JoinState {
    /// Not joined on any open connection.
    Unjoined,
    /// JOIN sent on the connection, no answer yet.
    Joining(ConnId),
    /// JOIN answered, while the answer is being handled (a JOIN reply
    /// marks the room joined at once; see `Session::joined_on`).
    AwaitingOnJoin(ConnId),
    /// Joined: events come from this connection.
    Joined(ConnId),
    /// LEAVE sent (no stream is left); when streams come back meanwhile the
    /// room is joined again after the answer.
    Leaving(ConnId),
}

impl JoinState {
    /// The connection it names.
    pub(super) fn conn(self) -> Option<ConnId> {
        match self {
            JoinState::Unjoined => None,
            JoinState::Joining(c)
            | JoinState::AwaitingOnJoin(c)
            | JoinState::Joined(c)
            | JoinState::Leaving(c) => Some(c),
        }
    }
}

/// Whether a stream has seen its `Joined` for the current (re)join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamJoin {
    Awaiting,
    Joined,
}

/// A stream of a room.
pub(super) struct Stream {
    pub(super) sink: RoomSink,
    pub(super) join: StreamJoin,
}

/// A stream that asked to leave; it gets `Left` once the node confirmed.
pub(super) struct Leaver {
    pub(super) sink: RoomSink,
    pub(super) ack: Option<oneshot::Sender<()>>,
    /// The connection whose LEAVE it waits for.
    pub(super) conn: ConnId,
    /// Whether it saw its `Joined`: only then do events reach it.
    pub(super) joined: bool,
}

impl Leaver {
    /// Answers the `leave()` call without a `Left` (nobody reads it).
    pub(super) fn release(mut self) {
        if let Some(ack) = self.ack.take() {
            let _ = ack.send(());
        }
    }
}

/// One room.
pub(super) struct RoomEntry {
    /// The scope it is joined with.
    pub(super) scope: Scope,
    pub(super) join: JoinState,
    pub(super) streams: Vec<Stream>,
    pub(super) leavers: Vec<Leaver>,
    /// Its move to the next connection, while its node shuts down.
    pub(super) handover: Option<Handover>,
    /// After a hand-over: events the old connection delivered that the new
    /// one may still repeat.
    pub(super) repeats: Option<Repeats>,
}

impl RoomEntry {
    /// A room not joined anywhere yet.
    pub(super) fn new(scope: Scope) -> RoomEntry {
        RoomEntry {
            scope,
            join: JoinState::Unjoined,
            streams: Vec::new(),
            leavers: Vec::new(),
            handover: None,
            repeats: None,
        }
    }

    /// Takes out the leavers waiting on `conn`.
    pub(super) fn take_leavers(&mut self, conn: ConnId) -> Vec<Leaver> {
        let (gone, stay) = std::mem::take(&mut self.leavers)
            .into_iter()
            .partition(|l| l.conn == conn);
        self.leavers = stay;
        gone
    }

    /// Whether `conn` speaks for the room: it is joined (or being joined,
    /// or left) there, it is the new side of its hand-over, or a leaver
    /// waits on it.
    pub(super) fn hears(&self, conn: ConnId) -> bool {
        self.join.conn() == Some(conn)
            || self.handover.as_ref().is_some_and(|h| h.new == conn)
            || self.leavers.iter().any(|l| l.conn == conn)
    }

    /// Whether `conn` is where the room's events come from (and not the
    /// new side of a hand-over).
    pub(super) fn source_is(&self, conn: ConnId) -> bool {
        self.join.conn() == Some(conn) && self.handover.as_ref().is_none_or(|h| h.new != conn)
    }

    /// Whether `e`, from the room's source, was delivered already by the
    /// connection before it.
    pub(super) fn is_repeat(&mut self, e: &Emitted) -> bool {
        let Some(r) = self.repeats.as_mut() else {
            return false;
        };
        let repeated = r.repeated(e);
        if r.is_over() {
            self.repeats = None;
        }
        repeated
    }

    /// Whether `conn` must stay open for this room: its events still come
    /// from there.
    pub(super) fn needs(&self, conn: ConnId) -> bool {
        self.handover
            .as_ref()
            .is_some_and(|h| h.old == conn && !h.old_done)
            || (self.join.conn() == Some(conn) && !self.streams.is_empty())
    }
}

/// Every room the session tracks, ordered so that what the session does
/// depends only on its inputs.
#[derive(Default)]
pub(super) struct Rooms {
    pub(super) map: BTreeMap<RoomKey, RoomEntry>,
    /// The last event scope seen and its collection, so that routing an
    /// event parses its scope only when it changes.
    scope_cache: Option<(String, Option<Arc<str>>)>,
}

impl Rooms {
    /// The room `key`.
    pub(super) fn get(&self, key: &RoomKey) -> Option<&RoomEntry> {
        self.map.get(key)
    }

    /// The room `key`.
    pub(super) fn get_mut(&mut self, key: &RoomKey) -> Option<&mut RoomEntry> {
        self.map.get_mut(key)
    }

    /// Every room's key, in order.
    pub(super) fn keys(&self) -> Vec<RoomKey> {
        self.map.keys().cloned().collect()
    }

    /// The keys of the rooms for which `pick` holds, in order.
    pub(super) fn keys_where(&self, pick: impl Fn(&RoomEntry) -> bool) -> Vec<RoomKey> {
        self.map
            .iter()
            .filter(|(_, r)| pick(r))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The rooms with at least one stream that has not asked to leave,
    /// in order: joined (a first join counts once the node answered it), or
    /// to be joined again once reconnected.
    pub(super) fn live(&self) -> Vec<RoomKey> {
        self.keys_where(|r| !r.streams.is_empty())
    }

    /// Whether a room still needs `conn` (see [`RoomEntry::needs`]).
    pub(super) fn busy_on(&self, conn: ConnId) -> bool {
        self.map.values().any(|r| r.needs(conn))
    }

    /// Whether no room is tracked.
    pub(super) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The room an event names: its collection from the event's scope
    /// (`@collection:NAME` as a node sends it); without a scope, the one
    /// tracked room with that id, if only one has it.
    pub(super) fn key_for(&mut self, scope: Option<&str>, id: u64) -> Option<RoomKey> {
        let collection = match scope {
            Some(s) => match &self.scope_cache {
                Some((text, c)) if text == s => c.clone(),
                _ => {
                    let c = Scope::parse(s)
                        .ok()
                        .and_then(|sc| sc.collection_name().map(Arc::from));
                    self.scope_cache = Some((s.to_string(), c.clone()));
                    c
                }
            },
            None => None,
        };
        match collection {
            Some(collection) => Some(RoomKey { collection, id }),
            None => {
                let mut found = self.map.keys().filter(|k| k.id == id);
                let first = found.next()?.clone();
                if found.next().is_some() {
                    warn!(
                        room = id,
                        "event without a scope for a room id that several collections use; dropped"
                    );
                    return None;
                }
                Some(first)
            }
        }
    }
}

impl Session {
    /// Encodes a JOIN or LEAVE of `key` on `conn`; false when it could not
    /// be sent (no free id, or an encoding error).
    pub(super) fn send_room(
        &mut self,
        conn: ConnId,
        key: &RoomKey,
        t: PackageType,
        pending: impl FnOnce(RoomKey, ConnId) -> Pending,
    ) -> bool {
        let Some(room) = self.rooms.get(key) else {
            return false;
        };
        let Some(c) = self.conns.get_mut(conn) else {
            return false;
        };
        let Some(id) = self.requests.table.insert(pending(key.clone(), conn)) else {
            return false;
        };
        let rooms = [Room::Id(key.id)];
        let r = if t == PackageType::Join {
            request::encode_join(&mut c.out, id, room.scope.as_str(), &rooms)
        } else {
            request::encode_leave(&mut c.out, id, room.scope.as_str(), &rooms)
        };
        if r.is_err() {
            self.requests.table.remove(id);
            return false;
        }
        c.pending += 1;
        true
    }

    /// Sends a LEAVE of `key` on `conn`; whether it was sent.
    fn send_leave(&mut self, conn: ConnId, key: &RoomKey) -> bool {
        self.send_room(conn, key, PackageType::Leave, |key, conn| Pending::Leave {
            key,
            conn,
        })
    }

    /// Joins a room with streams on `conn`, which will deliver its events.
    pub(super) fn rejoin(&mut self, conn: ConnId, key: &RoomKey) {
        if self.send_room(conn, key, PackageType::Join, |key, conn| Pending::Rejoin {
            key,
            conn,
        }) {
            if let Some(r) = self.rooms.get_mut(key) {
                r.join = JoinState::Joining(conn);
            }
        }
    }

    /// A new connection serves after none did: every room with streams is
    /// joined there.
    pub(super) fn rooms_rejoin(&mut self, conn: ConnId) {
        for key in self.rooms.live() {
            self.rejoin(conn, &key);
        }
    }

    /// `conn` went away: its leavers are done, the old side of a
    /// hand-over is done, rooms joined there are joined again.
    pub(super) fn rooms_conn_gone(&mut self, conn: ConnId) {
        for key in self.rooms.keys() {
            self.room_conn_gone(&key, conn);
        }
    }

    /// `conn`, draining, was closed with nothing more expected on it: its
    /// leavers are done, and rooms left there are gone.
    pub(super) fn rooms_conn_closed(&mut self, conn: ConnId) {
        for key in self.rooms.keys() {
            let Some(room) = self.rooms.get_mut(&key) else {
                continue;
            };
            let leavers = room.take_leavers(conn);
            let drop_room = room.join.conn() == Some(conn) && room.streams.is_empty();
            for l in leavers {
                self.finish_leaver(l);
            }
            if drop_room {
                self.remove_room(&key);
            }
        }
    }

    /// Room bookkeeping when `conn` went away.
    fn room_conn_gone(&mut self, key: &RoomKey, conn: ConnId) {
        let serving = self.conns.serving;
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        for l in room.take_leavers(conn) {
            self.finish_leaver(l);
        }
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        // Whether the room was joined on `conn`, and is not any more.
        let mut joined_here = room.join.conn() == Some(conn);
        if let Some(h) = &mut room.handover {
            if h.old == conn {
                h.old_done = true;
                self.maybe_complete_handover(key);
                return;
            }
            if h.new == conn {
                // The old side still delivers, unless it is done too (left,
                // or closed): then the room is joined nowhere.
                joined_here = h.old_done;
                room.handover = None;
            }
        }
        if !joined_here {
            return;
        }
        room.join = JoinState::Unjoined;
        room.repeats = None;
        if room.streams.is_empty() {
            self.remove_room(key);
            return;
        }
        // The room is joined again on the next connection. Streams still
        // waiting for their first `Joined` wait on.
        let mut deliveries = Vec::new();
        for s in &mut room.streams {
            if s.join == StreamJoin::Joined {
                deliveries.push(s.sink.handle());
            }
            s.join = StreamJoin::Awaiting;
        }
        for tx in deliveries {
            self.delivery.park_or_send(tx, RoomEvent::Disconnected);
        }
        // Joined again at once when another connection already serves.
        if let Some(s) = serving.filter(|s| *s != conn) {
            self.rejoin(s, key);
        }
    }

    /// A stream asks to join a room, on `conn`.
    pub(super) fn subscribe(&mut self, conn: ConnId, sub: Box<Subscribe>) {
        if sub.reply.is_closed() {
            return;
        }
        let Some(collection) = sub.scope.collection_name() else {
            let _ = sub.reply.send(Err(Error::BadArgument(format!(
                "rooms live in collections; {} is not a collection scope",
                sub.scope
            ))));
            return;
        };
        if let Room::Id(id) = sub.room {
            let key = RoomKey {
                collection: collection.into(),
                id,
            };
            if let Some(room) = self.rooms.get_mut(&key) {
                // Joined (or being joined) here already: the node would send
                // no second ON_JOIN, so the stream is added without a JOIN.
                let join = match room.join {
                    JoinState::Joined(c) if c == conn || room.handover.is_some() => {
                        Some(StreamJoin::Joined)
                    }
                    JoinState::AwaitingOnJoin(c) if c == conn => Some(StreamJoin::Awaiting),
                    _ => None,
                };
                if let Some(join) = join {
                    let Subscribe { sink, reply, .. } = *sub;
                    let tx = sink.handle();
                    room.streams.push(Stream { sink, join });
                    if join == StreamJoin::Joined {
                        self.delivery.park_or_send(tx, RoomEvent::Joined);
                    }
                    let _ = reply.send(Ok(key));
                    return;
                }
            }
        }
        let (scope, room) = (sub.scope.clone(), sub.room.clone());
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let Some(id) = self.requests.table.insert(Pending::Join { sub, conn }) else {
            return;
        };
        match request::encode_join(&mut c.out, id, scope.as_str(), &[room]) {
            Ok(()) => c.pending += 1,
            Err(e) => {
                if let Some(Pending::Join { sub, .. }) = self.requests.table.remove(id) {
                    let _ = sub.reply.send(Err(e.into()));
                }
            }
        }
    }

    /// A JOIN for a new stream was answered on `conn`.
    pub(super) fn join_answered(
        &mut self,
        conn: ConnId,
        sub: Subscribe,
        frame: &thingsdb_protocol::Frame,
    ) {
        let id = match super::join_result(frame) {
            Ok(id) => id,
            Err(e) => {
                let _ = sub.reply.send(Err(e));
                return;
            }
        };
        let Some(collection) = sub.scope.collection_name() else {
            return;
        };
        let key = RoomKey {
            collection: collection.into(),
            id,
        };
        let Subscribe {
            scope, sink, reply, ..
        } = sub;
        let room = self
            .rooms
            .map
            .entry(key.clone())
            .or_insert_with(|| RoomEntry::new(scope));
        let serving = self.conns.serving;
        // The serving connection to join the room on instead, once the
        // stream is in.
        let mut move_to: Option<ConnId> = None;
        // Joined on a connection that does not serve the room: leave there.
        let mut leave_here = false;
        let join = if let Some(h) = room.handover.as_mut().filter(|h| h.new == conn) {
            if h.new_join == JoinState::Joining(conn) {
                h.new_join = JoinState::AwaitingOnJoin(conn);
            }
            // Events still come from the old connection, where the room is
            // joined.
            match room.join {
                JoinState::Joined(_) => StreamJoin::Joined,
                _ => StreamJoin::Awaiting,
            }
        } else {
            match room.join {
                JoinState::Joined(c) if c == conn => StreamJoin::Joined,
                JoinState::Joining(c) if c == conn => {
                    room.join = JoinState::AwaitingOnJoin(conn);
                    StreamJoin::Awaiting
                }
                // The JOIN went out before the LEAVE: joined again after it.
                JoinState::AwaitingOnJoin(c) | JoinState::Leaving(c) if c == conn => {
                    StreamJoin::Awaiting
                }
                // Being left on the serving connection: joined again there
                // after the LEAVE; not here.
                JoinState::Leaving(other) if Some(other) == serving => {
                    leave_here = true;
                    StreamJoin::Awaiting
                }
                JoinState::Unjoined | JoinState::Leaving(_) => {
                    room.join = JoinState::AwaitingOnJoin(conn);
                    if let Some(s) = serving.filter(|s| *s != conn) {
                        // Answered on a connection that is draining.
                        move_to = Some(s);
                    }
                    StreamJoin::Awaiting
                }
                JoinState::Joining(other)
                | JoinState::AwaitingOnJoin(other)
                | JoinState::Joined(other) => {
                    let join = match room.join {
                        JoinState::Joined(_) => StreamJoin::Joined,
                        _ => StreamJoin::Awaiting,
                    };
                    if Some(conn) == serving
                        && room.handover.is_none()
                        && room.join == JoinState::Joined(other)
                    {
                        // The room was on a draining connection: this JOIN
                        // moves it here.
                        room.handover =
                            Some(Handover::new(other, conn, JoinState::AwaitingOnJoin(conn)));
                    } else if Some(conn) == serving && room.handover.is_none() {
                        // Not joined on the draining connection yet: the
                        // room moves here.
                        room.join = JoinState::AwaitingOnJoin(conn);
                    } else {
                        leave_here = true;
                    }
                    join
                }
            }
        };
        let tx = sink.handle();
        let delivered = reply.send(Ok(key.clone())).is_ok();
        if delivered {
            room.streams.push(Stream { sink, join });
        } else {
            // Nobody waits for this stream (the join timed out or was
            // cancelled): let the room go again if nobody else wants it.
            if room.streams.is_empty() && room.leavers.is_empty() {
                if matches!(room.join, JoinState::Leaving(_)) {
                    return;
                }
                self.leave_or_remove(conn, &key);
                return;
            }
        }
        if delivered && join == StreamJoin::Joined {
            self.delivery.park_or_send(tx, RoomEvent::Joined);
        }
        // Joined on `conn` whatever became of the stream.
        self.joined_on(conn, &key);
        if let Some(serving) = move_to {
            self.rejoin(serving, &key);
        }
        if leave_here {
            self.send_leave(conn, &key);
        }
    }

    /// A JOIN of a room whose streams outlived a connection (or, with
    /// `handover`, of a room moving to the next node) was answered on
    /// `conn`.
    pub(super) fn rejoin_answered(
        &mut self,
        conn: ConnId,
        key: &RoomKey,
        result: Result<u64, Error>,
        handover: bool,
    ) {
        if let Err(e) = result {
            let what = if handover {
                "on the next node"
            } else {
                "again"
            };
            warn!(room = key.id, collection = %key.collection, error = %e, "joining a room {what} failed");
            self.room_failed(key, conn);
            return;
        }
        if let Some(r) = self.rooms.get_mut(key) {
            if handover {
                if let Some(h) = r.handover.as_mut().filter(|h| h.new == conn) {
                    if h.new_join == JoinState::Joining(conn) {
                        h.new_join = JoinState::AwaitingOnJoin(conn);
                    }
                }
            } else if r.join == JoinState::Joining(conn) {
                r.join = JoinState::AwaitingOnJoin(conn);
            }
        }
        self.joined_on(conn, key);
    }

    /// A JOIN of the room was answered with its id on `conn`: the node has
    /// the room joined there from now on, and its events may come before
    /// the ON_JOIN (which a node sends later, from its event loop, and not
    /// at all when the room was joined already). The reply is what counts.
    fn joined_on(&mut self, conn: ConnId, key: &RoomKey) {
        if self.handover_joined(conn, key) {
            return;
        }
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        match room.join {
            JoinState::Joining(c) | JoinState::AwaitingOnJoin(c) | JoinState::Joined(c)
                if c == conn =>
            {
                room.join = JoinState::Joined(conn);
                self.deliver_awaiting_joined(key);
            }
            _ => {}
        }
    }

    /// Sends a LEAVE of `key` on `conn` (the room is `Leaving` there);
    /// when it cannot be sent the room is gone. Whether it was sent.
    pub(super) fn leave_or_remove(&mut self, conn: ConnId, key: &RoomKey) -> bool {
        let sent = self.send_leave(conn, key);
        match self.rooms.get_mut(key) {
            Some(r) if sent => r.join = JoinState::Leaving(conn),
            _ => self.remove_room(key),
        }
        sent
    }

    /// A stream went away (`ack: None`) or asked to leave: the room is
    /// left when it was the last stream.
    pub(super) fn unsubscribe(
        &mut self,
        key: RoomKey,
        stream_id: u64,
        ack: Option<oneshot::Sender<()>>,
    ) {
        let Some(room) = self.rooms.get_mut(&key) else {
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
            return;
        };
        let Some(pos) = room.streams.iter().position(|s| s.sink.id == stream_id) else {
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
            return;
        };
        let stream = room.streams.remove(pos);
        if !room.streams.is_empty() {
            // Other streams keep the room joined.
            if let Some(ack) = ack {
                self.delivery
                    .park_or_send(stream.sink.handle(), RoomEvent::Left);
                let _ = ack.send(());
            }
            return;
        }
        // The last stream: leave the room on the node.
        let handover = room.handover.take();
        let join = room.join;
        // Events of an unfinished hand-over, for a leaver on the new side.
        let mut carry = None;
        let target = match handover {
            Some(h) => {
                let new_sent = self.send_leave(h.new, &key);
                let old_pending = !h.old_done && (h.leave_sent || self.send_leave(h.old, &key));
                // The new connection's LEAVE decides: a JOIN answered there
                // meanwhile must be sent again after it.
                if new_sent {
                    let new = h.new;
                    carry = Some((new, h.into_carry()));
                    Some(new)
                } else {
                    old_pending.then_some(h.old)
                }
            }
            None => match join {
                JoinState::Joining(c) | JoinState::AwaitingOnJoin(c) | JoinState::Joined(c) => {
                    self.send_leave(c, &key).then_some(c)
                }
                // A LEAVE is on its way already.
                JoinState::Leaving(c) => Some(c),
                JoinState::Unjoined => None,
            },
        };
        match target {
            Some(c) => {
                if let Some(r) = self.rooms.get_mut(&key) {
                    r.join = JoinState::Leaving(c);
                    if let Some(ack) = ack {
                        // `Left` comes once the node confirms.
                        r.leavers.push(Leaver {
                            sink: stream.sink,
                            ack: Some(ack),
                            conn: c,
                            joined: stream.join == StreamJoin::Joined,
                        });
                    }
                }
            }
            None => {
                if let Some(ack) = ack {
                    self.delivery
                        .park_or_send(stream.sink.handle(), RoomEvent::Left);
                    let _ = ack.send(());
                }
                self.remove_room(&key);
            }
        }
        // Until the leave is confirmed the leaver hears the new connection,
        // without what the old one delivered already.
        if let Some((new, (repeats, fresh))) = carry {
            if let Some(r) = self.rooms.get_mut(&key) {
                r.repeats = repeats;
            }
            for e in fresh {
                self.on_emit(new, &key, e);
            }
        }
    }

    /// A LEAVE of `key` on `conn` was answered (or can no longer be).
    pub(super) fn leave_done(&mut self, key: &RoomKey, conn: ConnId) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let gone = room.take_leavers(conn);
        if let Some(h) = room.handover.as_mut().filter(|h| h.old == conn) {
            h.old_done = true;
        }
        let join = room.join;
        let has_streams = !room.streams.is_empty();
        for l in gone {
            self.finish_leaver(l);
        }
        if join == JoinState::Leaving(conn) {
            if !has_streams {
                self.remove_room(key);
            } else if let Some(serving) = self.conns.serving {
                // Streams came back while leaving: join again, on the
                // connection that serves now.
                self.rejoin(serving, key);
            } else if let Some(r) = self.rooms.get_mut(key) {
                // Joined again once a connection is up.
                r.join = JoinState::Unjoined;
            }
        }
        self.maybe_complete_handover(key);
        self.maybe_close_draining(conn);
    }

    /// A leaver's LEAVE is done: it gets `Left`, its `leave()` returns.
    pub(super) fn finish_leaver(&mut self, mut l: Leaver) {
        self.delivery.park_or_send(l.sink.handle(), RoomEvent::Left);
        if let Some(ack) = l.ack.take() {
            let _ = ack.send(());
        }
    }

    /// A room could not be joined (again): it is gone.
    pub(super) fn room_failed(&mut self, key: &RoomKey, conn: ConnId) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        let ours =
            room.join.conn() == Some(conn) || room.handover.as_ref().is_some_and(|h| h.new == conn);
        if ours {
            self.room_deleted(key);
        }
    }

    /// The room is gone: every stream (leavers too) ends with `Deleted`.
    fn room_deleted(&mut self, key: &RoomKey) {
        self.deliver_all(key, RoomEvent::Deleted);
        if let Some(room) = self.rooms.map.remove(key) {
            room.leavers.into_iter().for_each(Leaver::release);
        }
    }

    /// Forgets a room; its leavers are done.
    pub(super) fn remove_room(&mut self, key: &RoomKey) {
        if let Some(room) = self.rooms.map.remove(key) {
            for l in room.leavers {
                self.finish_leaver(l);
            }
        }
    }

    /// A room event on `conn`: LEAVE (the node confirms a leave, or left
    /// the room itself), DELETE, or an emitted event.
    pub(super) fn on_room_event(&mut self, conn: ConnId, event: thingsdb_protocol::Event) {
        use thingsdb_protocol::Event;
        match event {
            Event::Leave(r) => {
                if let Some(key) = self.rooms.key_for(r.scope.as_deref(), r.id) {
                    self.on_leave_event(conn, &key);
                }
            }
            Event::Delete(r) => {
                if let Some(key) = self.rooms.key_for(r.scope.as_deref(), r.id) {
                    if self.rooms.get(&key).is_some_and(|room| room.hears(conn)) {
                        self.room_deleted(&key);
                    }
                }
            }
            Event::Emit(e) => {
                if let Some(key) = self.rooms.key_for(e.scope.as_deref(), e.id) {
                    self.on_emit(conn, &key, e.into());
                }
            }
            // The JOIN reply counted already (see `joined_on`); future
            // event kinds are ignored.
            _ => {}
        }
    }

    fn on_leave_event(&mut self, conn: ConnId, key: &RoomKey) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if let Some(h) = room.handover.as_mut().filter(|h| h.old == conn) {
            h.old_done = true;
        }
        for l in room.take_leavers(conn) {
            self.finish_leaver(l);
        }
        self.maybe_complete_handover(key);
    }

    /// An event emitted in a room, on `conn`.
    pub(super) fn on_emit(&mut self, conn: ConnId, key: &RoomKey, e: Emitted) {
        let Some(room) = self.rooms.get_mut(key) else {
            return; // nobody listens: dropped, nothing kept
        };
        let from_source = room.source_is(conn);
        // What a previous connection delivered already is dropped.
        if from_source && room.is_repeat(&e) {
            return;
        }
        if let Some(h) = room.handover.as_mut() {
            match h.route(conn, e) {
                Route::Deliver(e) => self.deliver_room_from(key, conn, RoomEvent::Emitted(e)),
                Route::Overflow => self.maybe_complete_handover(key),
                Route::Kept | Route::Dropped => {}
            }
            return;
        }
        if from_source {
            self.deliver_room_from(key, conn, RoomEvent::Emitted(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &str, id: u64) -> RoomKey {
        RoomKey {
            collection: c.into(),
            id,
        }
    }

    fn rooms_with(keys: &[RoomKey]) -> Rooms {
        let mut rooms = Rooms::default();
        for k in keys {
            let scope = Scope::parse(&format!("//{}", k.collection)).expect("a scope");
            rooms.map.insert(k.clone(), RoomEntry::new(scope));
        }
        rooms
    }

    #[test]
    fn an_event_finds_its_room_by_collection_and_id() {
        let mut rooms = rooms_with(&[key("alpha", 2), key("beta", 2), key("beta", 3)]);
        assert_eq!(
            rooms.key_for(Some("@collection:beta"), 2),
            Some(key("beta", 2))
        );
        assert_eq!(
            rooms.key_for(Some("@collection:alpha"), 2),
            Some(key("alpha", 2))
        );
        // Again, from the cache, and after another scope.
        assert_eq!(
            rooms.key_for(Some("@collection:alpha"), 2),
            Some(key("alpha", 2))
        );
        assert_eq!(
            rooms.key_for(Some("@collection:beta"), 2),
            Some(key("beta", 2))
        );
        // A room the session does not track still gets its key (dropped later).
        assert_eq!(
            rooms.key_for(Some("@collection:gamma"), 9),
            Some(key("gamma", 9))
        );
    }

    #[test]
    fn without_a_scope_only_an_unambiguous_id_finds_a_room() {
        let mut rooms = rooms_with(&[key("alpha", 2), key("beta", 2), key("beta", 3)]);
        assert_eq!(rooms.key_for(None, 3), Some(key("beta", 3)));
        assert_eq!(rooms.key_for(None, 2), None, "two collections use id 2");
        assert_eq!(rooms.key_for(None, 4), None);
        // A scope that names no collection is no help either.
        assert_eq!(rooms.key_for(Some("@thingsdb"), 2), None);
        assert_eq!(rooms.key_for(Some("@thingsdb"), 3), Some(key("beta", 3)));
    }

    #[test]
    fn live_rooms_are_those_with_streams_in_order() {
        let mut rooms = rooms_with(&[key("beta", 1), key("alpha", 7), key("alpha", 2)]);
        assert!(rooms.live().is_empty());
        let (sink, _rx) =
            crate::events::event_channel::<RoomEvent>(1, 4, crate::events::Overflow::Lag);
        if let Some(r) = rooms.get_mut(&key("alpha", 7)) {
            r.streams.push(Stream {
                sink,
                join: StreamJoin::Joined,
            });
        }
        let (sink, _rx2) =
            crate::events::event_channel::<RoomEvent>(2, 4, crate::events::Overflow::Lag);
        if let Some(r) = rooms.get_mut(&key("beta", 1)) {
            r.streams.push(Stream {
                sink,
                join: StreamJoin::Awaiting,
            });
        }
        assert_eq!(rooms.live(), vec![key("alpha", 7), key("beta", 1)]);
        assert_eq!(rooms.keys().len(), 3);
    }

    #[test]
    fn a_room_needs_the_connection_its_events_come_from() {
        let mut rooms = rooms_with(&[key("a", 1)]);
        let (c1, c2) = (ConnId(1), ConnId(2));
        let r = rooms.get_mut(&key("a", 1)).expect("the room");
        r.join = JoinState::Joined(c1);
        assert!(!r.needs(c1), "no stream: the room may go");
        let (sink, _rx) =
            crate::events::event_channel::<RoomEvent>(1, 4, crate::events::Overflow::Lag);
        r.streams.push(Stream {
            sink,
            join: StreamJoin::Joined,
        });
        assert!(r.needs(c1) && !r.needs(c2));
        assert!(r.source_is(c1) && r.hears(c1) && !r.hears(c2));
        // Moving to c2: the old side is needed until it is done.
        r.handover = Some(Handover::new(c1, c2, JoinState::Joining(c2)));
        assert!(r.needs(c1));
        assert!(r.hears(c2) && !r.source_is(c2));
        // The room's streams are joined elsewhere now; the old side of the
        // move still delivers until it is done.
        r.join = JoinState::Unjoined;
        assert!(r.needs(c1) && !r.needs(c2));
        if let Some(h) = r.handover.as_mut() {
            h.old_done = true;
        }
        assert!(!rooms.busy_on(c1));
    }

    #[test]
    fn leavers_are_taken_per_connection() {
        let mut r = RoomEntry::new(Scope::parse("//a").expect("a scope"));
        for (id, conn) in [(1, 1), (2, 2), (3, 1)] {
            let (sink, _rx) =
                crate::events::event_channel::<RoomEvent>(id, 4, crate::events::Overflow::Lag);
            r.leavers.push(Leaver {
                sink,
                ack: None,
                conn: ConnId(conn),
                joined: true,
            });
        }
        let gone: Vec<u64> = r
            .take_leavers(ConnId(1))
            .iter()
            .map(|l| l.sink.id)
            .collect();
        assert_eq!(gone, vec![1, 3]);
        assert_eq!(r.leavers.len(), 1);
        assert!(r.hears(ConnId(2)));
    }
}
