//! The client's protocol core: a state machine with no I/O.
//!
//! [`Session`] is fed inputs, each with the current time (a user
//! [`Command`], a frame received on a connection, the passage of time,
//! connected / connect failed / connection lost) and is asked for outputs:
//! bytes to write on a connection ([`Session::poll_transmit`]), the next
//! deadline ([`Session::poll_timeout`]) and what the driver must do
//! ([`Session::poll_output`]: open a connection to a pool entry after a
//! delay, close one). Replies and room or node events go straight into the
//! `tokio::sync` channels the session holds, which need no runtime. It never
//! reads a clock, sleeps or touches a socket, so it runs under the tokio
//! driver (`driver.rs`), in a browser event loop, or in a test with a fake
//! clock.
//!
//! Rooms are keyed by (collection, id): room ids are unique only within a
//! collection, and the node names an event's collection in its `scope`.
//!
//! When the serving node says it is SHUTTING_DOWN (and the pool has another
//! node), the session makes a new connection before it lets go of the old
//! one: the old connection keeps serving while the new one is made and
//! authenticated; then new requests go to the new one, requests in flight
//! on the old one finish there, and each room is joined on the new
//! connection and left on the old one. Events of a room keep coming from
//! the old connection until the room is joined on the new one (its JOIN
//! answered) and left on the old (its LEAVE answered, or the old connection
//! closed); the new connection's events are held meanwhile. Both connections
//! deliver the events emitted between the two, in the same order (a cluster
//! emits in one order everywhere), so the new connection's events are
//! matched against the old one's last events (up to [`HANDOVER_CAP`]): the
//! first new event found among them, and the ones that follow it in the same
//! order, are dropped as repeats; everything after is delivered. Events
//! carry no sequence number, so two identical events (same name and
//! arguments) inside that window can be taken for one another: the only
//! window this leaves on the client's side.
//!
//! A room still joining on the old connection when the new one is up is
//! simply joined on the new one (nothing was delivered from the old one);
//! a JOIN reply, not the later ON_JOIN (which a node writes from its event
//! loop, after events that may already have come), marks a room joined.
//!
//! The state is split by owner, one file each, every part unit-tested
//! alone; this file composes them and turns their results into frames and
//! outputs:
//!
//! - `requests.rs`: ids in flight, deadlines, held commands, resends;
//! - `connections.rs`: open connections, the one being made, keep-alive,
//!   the reconnect rule;
//! - `rooms.rs`: rooms by collection and id, their streams and leavers,
//!   JOIN and LEAVE;
//! - `handover.rs`: the move of a room to the next node;
//! - `delivery.rs`: parked deliveries and node event streams;
//! - `rng.rs`: the seeded random numbers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thingsdb_protocol::{Direction, Event, Frame, NodeStatus, PackageType, Response, Room};
use tokio::sync::oneshot;
use tracing::warn;
use web_time::Instant;

use super::pool::{Pool, PoolEntry};
use crate::config::ReconnectPolicy;
use crate::error::{ConnectionLost, Error, ThingsdbError};
use crate::events::{NodeEvent, NodeSink, RoomSink};
use crate::lifecycle::MoveReason;
use crate::scope::Scope;

mod connections;
mod delivery;
mod handover;
mod requests;
mod rng;
mod rooms;

use connections::Connections;
use delivery::Delivery;
pub(crate) use delivery::Waiter;
use requests::{Held, Pending, Req, Requests};
pub(crate) use rng::Rng;
use rooms::Rooms;

/// Stop taking new requests while this much waits to be written on a
/// connection.
pub(crate) const OUT_HIGH_WATER: usize = 4 << 20;

/// How many commands are held while no connection is up before callers
/// are made to wait on the channel.
pub(crate) const HELD_CAP: usize = 8192;

/// How many events of one room are kept per side while it moves from a
/// node that is shutting down to the next one.
pub(crate) const HANDOVER_CAP: usize = 1024;

/// The reply channel of one request.
pub(crate) type ReplyTx = oneshot::Sender<Result<crate::observe::Answer, Error>>;

/// A connection, as the session names it. A new one for every attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConnId(pub u64);

/// A room: the collection it lives in, and its id there. Ordered by
/// collection, then id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RoomKey {
    /// The collection's name (normalized: `//x`, `@:x` and
    /// `@collection:x` all give `x`).
    pub collection: Arc<str>,
    /// The room's id within the collection.
    pub id: u64,
}

/// What a [`Client`](crate::Client) handle asks of the session.
pub(crate) enum Command {
    /// Send a request; its header's id is filled in by the session. It fails
    /// with [`Error::Timeout`] when no reply came by `deadline`.
    Request {
        frame: BytesMut,
        reply: ReplyTx,
        deadline: Instant,
        timeout: Duration,
        /// Safe to run twice: sent again when its connection goes after it
        /// was written.
        idempotent: bool,
    },
    /// Join a room and attach a stream to it.
    Subscribe(Box<Subscribe>),
    /// A room stream went away (`ack: None`) or asked to leave (`ack`
    /// answered once the leave is done); the room is left when it was the
    /// last stream.
    Unsubscribe {
        key: RoomKey,
        stream_id: u64,
        ack: Option<oneshot::Sender<()>>,
    },
    /// Attach a stream of node events (status, warnings).
    NodeEvents(Box<NodeSink>),
    /// Finish what is in flight, then close.
    Close(oneshot::Sender<()>),
    /// More nodes for the pool: the builder's targets at the start (the
    /// first ones start the first round of connects), then those given by
    /// `Client::add_targets` or learnt by discovery.
    AddNodes(Vec<PoolEntry>),
    /// List the rooms that have a live stream.
    Rooms(oneshot::Sender<Vec<RoomKey>>),
}

/// `timeout` after `now`; a timeout too large to add is as good as none
/// (a year).
pub(crate) fn deadline_after(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

impl Command {
    /// A request of `frame` due at `deadline`, and the receiver of its
    /// answer.
    pub(crate) fn request(
        frame: BytesMut,
        deadline: Instant,
        timeout: Duration,
        idempotent: bool,
    ) -> (
        Command,
        oneshot::Receiver<Result<crate::observe::Answer, Error>>,
    ) {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Request {
            frame,
            reply,
            deadline,
            timeout,
            idempotent,
        };
        (cmd, rx)
    }
}

/// A room stream asking to join.
pub(crate) struct Subscribe {
    pub scope: Scope,
    pub room: Room,
    pub sink: RoomSink,
    pub reply: oneshot::Sender<Result<RoomKey, Error>>,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Output {
    /// Wait `delay`, then connect to `target` (pool entry `index`) and
    /// authenticate; report with [`Session::handle_connected`] or
    /// [`Session::handle_connect_failed`].
    Connect {
        conn: ConnId,
        index: usize,
        target: thingsdb_transport::Target,
        delay: Duration,
    },
    /// Write what [`Session::poll_transmit`] still gives for `conn`, then
    /// close it. The session has forgotten it.
    Close { conn: ConnId },
}

/// What happened to the session's connections, in order: the driver
/// turns these into the public [`ConnectionEvent`](crate::ConnectionEvent)s
/// (pool indexes into targets) and is the one place a tracing or metrics
/// layer needs to hook into.
#[derive(Debug, Clone)]
pub(crate) enum Lifecycle {
    /// `conn`, to pool entry `index`, is open and authenticated, and
    /// serves; `node_id` is the node that answered, when the driver asked.
    Connected {
        conn: ConnId,
        index: usize,
        node_id: Option<u32>,
    },
    /// New requests go to pool entry `to` instead of `from`.
    Moved {
        from: usize,
        to: usize,
        why: MoveReason,
    },
    /// The connection to pool entry `index` went.
    Lost { index: usize, lost: ConnectionLost },
    /// Pool entry `index` refused the credentials.
    AuthFailed { index: usize, error: Error },
    /// The session stopped reconnecting: it is finished.
    GaveUp { error: Error },
}

/// Settings the session needs.
#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    /// Interval of keep-alive pings.
    pub keepalive: Option<Duration>,
    /// Reconnect behaviour.
    pub reconnect: ReconnectPolicy,
    /// Start the first round of connects at a random pool entry (from the
    /// session's seeded random numbers) rather than the first.
    pub random_start: bool,
    /// How many times a request is sent at most (see [`Req`]); 1 turns
    /// resending off.
    pub request_attempts: u32,
    /// Seeds the session's random numbers (reconnect jitter): the client
    /// seeds it at random, tests fix it, so that the same seed and inputs
    /// give the same outputs.
    pub seed: u64,
}

/// Where the session is in its life: one state, not flags checked in
/// pairs.
enum Life {
    Open,
    /// `close()` was called (or every handle is gone): what is in flight
    /// finishes, nothing new is taken; these `close()` callers are answered
    /// once it is closed.
    Closing(Vec<oneshot::Sender<()>>),
    /// Ended with `error`; `acks` are the `close()` callers to answer once
    /// the driver has closed the sockets.
    Finished {
        error: Error,
        acks: Vec<oneshot::Sender<()>>,
    },
}

/// The client's protocol state machine; see the module docs.
pub(crate) struct Session {
    cfg: SessionConfig,
    rng: Rng,
    /// The nodes to connect to.
    pool: Pool,
    requests: Requests,
    conns: Connections,
    rooms: Rooms,
    delivery: Delivery,
    life: Life,
    outputs: VecDeque<Output>,
    /// Lifecycle events not yet taken by the driver.
    events: VecDeque<Lifecycle>,
    /// The frames of answered requests, for the driver to use again (at
    /// most [`SPENT_CAP`]).
    spent: Vec<BytesMut>,
}

/// How many frames of answered requests the session keeps for the driver
/// at most.
const SPENT_CAP: usize = 1024;

impl Session {
    /// A session with no connection yet.
    pub(crate) fn new(cfg: SessionConfig) -> Session {
        Session {
            rng: Rng::new(cfg.seed),
            pool: Pool::default(),
            cfg,
            requests: Requests::default(),
            conns: Connections::default(),
            rooms: Rooms::default(),
            delivery: Delivery::default(),
            life: Life::Open,
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            spent: Vec::new(),
        }
    }

    /// The next thing the driver must do.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next lifecycle event (see [`Lifecycle`]).
    pub(crate) fn poll_event(&mut self) -> Option<Lifecycle> {
        self.events.pop_front()
    }

    /// The frames of requests answered since the last call, to encode
    /// new requests into (see `connection::frames`); take them all.
    pub(crate) fn spent_frames(&mut self) -> &mut Vec<BytesMut> {
        &mut self.spent
    }

    /// Whether something is queued for `conn` (what
    /// [`Session::poll_transmit`] would give).
    pub(crate) fn has_transmit(&self, conn: ConnId) -> bool {
        self.conns.get(conn).is_some_and(|c| !c.out.is_empty())
    }

    /// Everything queued for `conn`, as one batch.
    pub(crate) fn poll_transmit(&mut self, conn: ConnId) -> Option<Bytes> {
        self.conns.get_mut(conn)?.transmit()
    }

    /// When [`Session::handle_timeout`] must be called next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match (self.requests.next_due(), self.conns.next_check()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the driver should hand over more commands.
    pub(crate) fn wants_commands(&self) -> bool {
        if !matches!(self.life, Life::Open) {
            return false;
        }
        match self.conns.serving {
            Some(_) => self.requests.held.is_empty() && self.can_send(),
            None => self.requests.held.len() < HELD_CAP,
        }
    }

    /// Whether the driver should read frames: not while a delivery waits
    /// for room in a full [`Overflow::Wait`](crate::Overflow::Wait) stream.
    pub(crate) fn wants_read(&self) -> bool {
        self.delivery.wants_read()
    }

    /// What a parked delivery waits on; once it is ready, call
    /// [`Session::handle_capacity`].
    pub(crate) fn parked_waiter(&self) -> Option<Waiter> {
        self.delivery.waiter()
    }

    /// Why the session ended, once it has: the driver stops and fails any
    /// command still coming with this error.
    pub(crate) fn finished(&self) -> Option<&Error> {
        match &self.life {
            Life::Finished { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Requests (and joins, leaves, pings) waiting for an answer.
    pub(crate) fn in_flight(&self) -> usize {
        self.requests.len()
    }

    /// Whether the node may still send something the client waits for: a
    /// request (or join, leave, ping) is unanswered, or a room is joined
    /// (its events can come at any time).
    pub(crate) fn awaits_node(&self) -> bool {
        self.requests.len() > 0 || !self.rooms.is_empty()
    }

    /// Connections made so far.
    pub(crate) fn connections_made(&self) -> u64 {
        self.conns.made
    }

    /// The pool index of the connection new requests go to; `None` while
    /// none serves (connecting, reconnecting, finished).
    pub(crate) fn serving_index(&self) -> Option<usize> {
        self.conns.serving_conn().map(|c| c.index)
    }

    /// The open connections.
    #[cfg(test)]
    pub(crate) fn open_conns(&self) -> Vec<ConnId> {
        self.conns.list.iter().map(|c| c.id).collect()
    }

    /// The connection new requests go to.
    #[cfg(test)]
    pub(crate) fn serving(&self) -> Option<ConnId> {
        self.conns.serving
    }

    /// Sizes of what the session keeps: held commands, parked deliveries,
    /// timed-out ids, deadlines.
    #[cfg(test)]
    pub(crate) fn sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.requests.held.len(),
            self.delivery.parked_len(),
            self.conns.list.iter().map(|c| c.timed_out).sum(),
            self.requests.deadlines_len(),
        )
    }

    /// The connections that entries of the in-flight table (requests,
    /// joins, leaves, pings) wait on, each once.
    #[cfg(test)]
    pub(crate) fn in_flight_conns(&self) -> Vec<ConnId> {
        let mut conns: Vec<ConnId> = self.requests.table.iter().map(|(_, p)| p.conn()).collect();
        conns.sort_unstable();
        conns.dedup();
        conns
    }

    /// The rooms as text, for test failure messages.
    #[cfg(test)]
    pub(crate) fn debug_rooms(&self) -> String {
        let mut out = String::new();
        for (k, r) in &self.rooms.map {
            out.push_str(&format!(
                "{}:{} {:?} handover {:?} streams {:?} leavers {:?}\n",
                k.collection,
                k.id,
                r.join,
                r.handover
                    .as_ref()
                    .map(|h| (h.old, h.new, h.new_join, h.old_done, h.leave_sent)),
                r.streams
                    .iter()
                    .map(|s| (s.sink.id, s.join))
                    .collect::<Vec<_>>(),
                r.leavers
                    .iter()
                    .map(|l| (l.sink.id, l.conn, l.joined))
                    .collect::<Vec<_>>(),
            ));
        }
        out
    }

    /// How many rooms the session tracks.
    #[cfg(test)]
    pub(crate) fn rooms_len(&self) -> usize {
        self.rooms.map.len()
    }

    /// The nodes the session connects to.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A command from a client handle.
    pub(crate) fn handle_command(&mut self, now: Instant, cmd: Command) {
        if let Command::AddNodes(more) = cmd {
            self.add_nodes(more);
            return;
        }
        if let Life::Finished { error, .. } = &self.life {
            reject(cmd, error.clone());
            return;
        }
        if let Command::Rooms(reply) = cmd {
            let _ = reply.send(self.rooms.live());
            return;
        }
        if matches!(self.life, Life::Closing(_)) {
            match cmd {
                Command::Close(ack) => self.add_close_ack(ack),
                Command::Unsubscribe {
                    key,
                    stream_id,
                    ack,
                } => self.unsubscribe(key, stream_id, ack),
                other => reject(other, Error::Closed),
            }
            return;
        }
        match cmd {
            Command::Request {
                frame,
                reply,
                deadline,
                timeout,
                idempotent,
            } => {
                if reply.is_closed() {
                    return; // cancelled before it was sent
                }
                if deadline <= now {
                    let _ = reply.send(Err(Error::Timeout(timeout)));
                    return;
                }
                if frame.len() < thingsdb_protocol::HEADER_LEN {
                    let _ = reply.send(Err(Error::BadArgument("empty request frame".into())));
                    return;
                }
                self.dispatch(
                    now,
                    Req {
                        frame,
                        reply,
                        deadline,
                        timeout,
                        idempotent,
                        attempts: 0,
                        ran: false,
                    },
                );
            }
            Command::Subscribe(sub) => match self.conns.serving {
                Some(conn) => self.subscribe(conn, sub),
                None => self.requests.held.push_back(Held::Subscribe(sub)),
            },
            Command::Unsubscribe {
                key,
                stream_id,
                ack,
            } => self.unsubscribe(key, stream_id, ack),
            Command::NodeEvents(sink) => self.delivery.add_node_sink(*sink),
            Command::Close(ack) => {
                self.life = Life::Closing(vec![ack]);
                self.check_closed();
            }
            Command::Rooms(reply) => {
                let _ = reply.send(self.rooms.live());
            }
            Command::AddNodes(more) => self.add_nodes(more),
        }
    }

    /// Every client handle is gone: finish what is in flight, then close.
    pub(crate) fn handle_handles_gone(&mut self) {
        if matches!(self.life, Life::Open) {
            self.life = Life::Closing(Vec::new());
            self.check_closed();
        }
    }

    /// A frame received on `conn`.
    pub(crate) fn handle_frame(&mut self, now: Instant, conn: ConnId, frame: Frame) {
        let Some(c) = self.conns.get_mut(conn) else {
            return; // a connection the session already let go of
        };
        c.heard = true;
        match PackageType::try_from(frame.type_byte).map(PackageType::direction) {
            Ok(Direction::Response) => self.on_response(now, conn, frame),
            Ok(Direction::Event) => self.on_event(now, conn, frame),
            Ok(Direction::Request | Direction::ToModule | Direction::FromModule) | Err(_) => {
                let err = match frame.package_type() {
                    Ok(t) => thingsdb_protocol::Error::UnexpectedPackageType {
                        expected: "a response or an event",
                        got: t,
                    },
                    Err(e) => e,
                };
                warn!(id = frame.id, error = %err, "unexpected package from the node");
                // The request with this id, if any, fails; others go on.
                if self.requests.table.get(frame.id).map(Pending::conn) == Some(conn) {
                    if let Some(p) = self.take_pending(frame.id) {
                        self.fail_pending(p, Error::Protocol(err));
                    }
                }
            }
        }
        self.after_input(now);
    }

    /// Time passed: requests past their deadline fail, keep-alive pings go
    /// out or a silent connection is given up.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        // Requests whose back-off is over go out (or time out) first.
        for req in self.requests.take_due(now) {
            self.dispatch(now, req);
        }
        for conn in self.requests.expire(now) {
            if let Some(c) = self.conns.get_mut(conn) {
                c.timed_out += 1;
            }
        }
        self.requests.expire_held(now);
        for conn in self.conns.checks_due(now) {
            self.keepalive_check(now, conn);
        }
        self.after_input(now);
    }

    /// The stream a parked delivery waits on has room now, or its
    /// consumer is gone (see [`Session::parked_waiter`]).
    pub(crate) fn handle_capacity(&mut self) {
        self.delivery.retry_first();
    }

    /// An event on `conn`: node status and warnings here, room events in
    /// `rooms.rs`.
    fn on_event(&mut self, now: Instant, conn: ConnId, frame: Frame) {
        let event = match Event::decode(&frame) {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, package_type = frame.type_byte, "malformed event dropped");
                return;
            }
        };
        match event {
            Event::NodeStatus { id, status } => {
                let leaving = status == NodeStatus::ShuttingDown;
                self.delivery.node(NodeEvent::Status {
                    node_id: id,
                    status,
                });
                if leaving {
                    self.node_shutting_down(now, conn);
                }
            }
            Event::Warn { code, message } => {
                self.delivery.node(NodeEvent::Warn { code, message });
            }
            room => self.on_room_event(conn, room),
        }
    }

    pub(super) fn add_close_ack(&mut self, ack: oneshot::Sender<()>) {
        if let Life::Closing(acks) = &mut self.life {
            acks.push(ack);
        }
        self.check_closed();
    }

    /// After every input: a closing session ends once nothing is in flight.
    pub(super) fn after_input(&mut self, now: Instant) {
        if !self.requests.held.is_empty() && self.conns.serving.is_some() {
            self.flush_held(now);
        }
        if self.conns.list.len() > 1 {
            for conn in self.conns.draining() {
                self.maybe_close_draining(conn);
            }
        }
        self.check_closed();
    }

    pub(super) fn check_closed(&mut self) {
        if !matches!(self.life, Life::Closing(_)) {
            return;
        }
        let waiting = self.conns.waiting() + self.requests.unsent();
        if waiting > 0 && self.conns.serving.is_some() {
            return;
        }
        self.finish(Error::Closed);
    }

    /// Ends the session: everything waiting fails with `e`, streams end,
    /// connections close.
    pub(super) fn finish(&mut self, e: Error) {
        let (closed, acks) = match std::mem::replace(&mut self.life, Life::Open) {
            Life::Open => (false, Vec::new()),
            Life::Closing(acks) => (true, acks),
            done @ Life::Finished { .. } => {
                self.life = done;
                return;
            }
        };
        self.life = Life::Finished {
            error: e.clone(),
            acks,
        };
        if !closed {
            self.events
                .push_back(Lifecycle::GaveUp { error: e.clone() });
        }
        let err = if closed { Error::Closed } else { e };
        for c in std::mem::take(&mut self.conns.list) {
            self.outputs.push_back(Output::Close { conn: c.id });
        }
        if let Some(c) = self.conns.connecting.take() {
            self.outputs.push_back(Output::Close { conn: c.conn });
        }
        self.conns.serving = None;
        self.requests.fail_all(&err);
        for room in std::mem::take(&mut self.rooms.map).into_values() {
            room.leavers.into_iter().for_each(rooms::Leaver::release);
        }
        self.delivery.clear();
    }

    /// Whether the session ended.
    pub(super) fn is_finished(&self) -> bool {
        matches!(self.life, Life::Finished { .. })
    }

    /// The `close()` callers to answer, once the session has finished and
    /// the driver closed the connections.
    pub(crate) fn take_close_acks(&mut self) -> Vec<oneshot::Sender<()>> {
        match &mut self.life {
            Life::Finished { acks, .. } => std::mem::take(acks),
            _ => Vec::new(),
        }
    }
}

/// Fails a command that can no longer be served.
pub(crate) fn reject(cmd: Command, e: Error) {
    match cmd {
        Command::Request { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Command::Subscribe(s) => {
            let _ = s.reply.send(Err(e));
        }
        Command::Close(ack) => {
            let _ = ack.send(());
        }
        Command::Unsubscribe { ack, .. } => {
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
        }
        Command::NodeEvents(_) | Command::AddNodes(_) => {}
        // Nothing is live any more.
        Command::Rooms(reply) => {
            let _ = reply.send(Vec::new());
        }
    }
}

/// The room id a JOIN reply carries for its single room.
pub(crate) fn join_result(frame: &Frame) -> Result<u64, Error> {
    match Response::decode(frame)? {
        Response::Data(d) => {
            let mut r = thingsdb_protocol::msgpack::Reader::new(&d);
            let n = r.read_array_len()?;
            if n != 1 {
                return Err(Error::Protocol(thingsdb_protocol::Error::WrongType {
                    field: "join reply",
                    expected: "an array with one element",
                }));
            }
            if r.read_nil()? {
                return Err(Error::Thingsdb(ThingsdbError::new(
                    thingsdb_protocol::ErrorCode::Lookup,
                    "room not found",
                )));
            }
            let id = r.read_int()?;
            u64::try_from(id).map_err(|_| {
                Error::Protocol(thingsdb_protocol::Error::WrongType {
                    field: "room id",
                    expected: "a non-negative integer",
                })
            })
        }
        Response::Error(e) => Err(Error::Thingsdb(e.into())),
        other => Err(crate::error::unexpected("DATA", &other)),
    }
}

#[cfg(test)]
mod tests;
