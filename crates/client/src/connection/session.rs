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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thingsdb_protocol::{
    request, Direction, Event, Frame, NodeStatus, PackageType, Response, Room,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};
use web_time::Instant;

use super::pool::{Pool, PoolEntry};
use crate::config::ReconnectPolicy;
use crate::error::{ConnectionLost, Error, LostReason, ThingsdbError};
use crate::events::{
    Emitted, NodeEvent, NodeSink, Offer, Overflow, Parked, RoomEvent, RoomSink, SinkHandle,
};
use crate::in_flight::{InFlight, MAX_IN_FLIGHT};
use crate::lifecycle::MoveReason;
use crate::scope::Scope;

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

/// The session's random numbers: SplitMix64, small and the same on every
/// platform, so that a seed replays.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..=max`.
    pub(crate) fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            // Modulo bias is at most max / 2^64: irrelevant for jitter.
            Some(n) => self.next_u64() % n,
            None => self.next_u64(),
        }
    }
}

/// The back-off between attempts of a request the node answered with
/// NODE_ERROR (-51): 100 ms doubling up to 1 s, jittered.
const RESEND_BACKOFF: ReconnectPolicy = ReconnectPolicy {
    enabled: true,
    initial_delay: Duration::from_millis(100),
    max_delay: Duration::from_secs(1),
    max_attempts: None,
};

/// A user's request, kept until it is answered so that it can be sent again
/// when it provably did not run: the node answered NODE_ERROR (-51: not
/// ready, shutting down, no node for a change), or its connection went
/// before it was written; or, for an idempotent request, after. Within its
/// own deadline and at most `request_attempts` times.
struct Req {
    /// The request frame (its id is set per attempt).
    frame: Bytes,
    reply: ReplyTx,
    deadline: Instant,
    timeout: Duration,
    idempotent: bool,
    /// Times sent so far.
    attempts: u32,
    /// Whether an earlier attempt may have run.
    ran: bool,
}

impl Req {
    /// Fails the request with `e`, saying how often it was tried.
    fn fail(self, e: Error) {
        // One that ran and waits to go again says so, whatever ends it.
        let e = if self.attempts > 1 || (self.ran && !e.may_have_run()) {
            Error::Retried {
                attempts: self.attempts,
                may_have_run: self.ran || e.may_have_run(),
                last: Box::new(e),
            }
        } else {
            e
        };
        let _ = self.reply.send(Err(e));
    }
}

/// Something held while no connection serves.
enum Held {
    Request(Req),
    Subscribe(Box<Subscribe>),
}

/// Something a connection waits for an answer to.
enum Pending {
    /// A user's request; `seq` tells it apart from a later request with
    /// the same id; `queued` is the connection's request count when it was
    /// queued (written once the driver took that many).
    User {
        req: Req,
        seq: u64,
        conn: ConnId,
        queued: u64,
    },
    /// A user's request that timed out: the id stays taken until its late
    /// reply comes (and is dropped), so it can never answer a newer one.
    TimedOut { conn: ConnId },
    /// A keep-alive ping.
    Ping { conn: ConnId },
    /// A JOIN for a new stream.
    Join { sub: Box<Subscribe>, conn: ConnId },
    /// A JOIN of a room whose streams outlived a connection.
    Rejoin { key: RoomKey, conn: ConnId },
    /// A JOIN on the new connection of a hand-over.
    HandoverJoin { key: RoomKey, conn: ConnId },
    /// A LEAVE (the last stream went away), or the LEAVE on the old
    /// connection of a hand-over.
    Leave { key: RoomKey, conn: ConnId },
}

impl Pending {
    fn conn(&self) -> ConnId {
        match self {
            Pending::User { conn, .. }
            | Pending::TimedOut { conn }
            | Pending::Ping { conn }
            | Pending::Join { conn, .. }
            | Pending::Rejoin { conn, .. }
            | Pending::HandoverJoin { conn, .. }
            | Pending::Leave { conn, .. } => *conn,
        }
    }
}

/// When a request times out; ordered by time for a min-heap.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    at: Instant,
    seq: u64,
    id: u16,
}

/// What an open connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// New requests go here.
    Serving,
    /// Its node is shutting down: it finishes what it has, then closes.
    Draining,
}

/// Keep-alive state of a connection.
#[derive(Debug, Clone, Copy)]
enum Ping {
    /// No ping out.
    Idle,
    /// A ping is out.
    Outstanding,
}

/// An open (authenticated) connection.
struct Conn {
    id: ConnId,
    index: usize,
    role: Role,
    /// Bytes to write, batched.
    out: BytesMut,
    /// Entries of the in-flight table that belong to this connection.
    pending: usize,
    /// Of those, timed-out user requests.
    timed_out: usize,
    ping: Ping,
    /// Whether anything came since the last keep-alive check.
    heard: bool,
    next_check: Option<Instant>,
    /// User requests queued on it so far, and how many of those the driver
    /// took to write.
    queued: u64,
    handed: u64,
}

/// A connection being made.
struct Connecting {
    conn: ConnId,
    index: usize,
    /// Failed tries so far in this round of attempts.
    tries: u32,
    /// Whether it replaces a serving connection whose node is shutting down
    /// (the old one keeps serving meanwhile).
    moving: bool,
    /// Whether it is of the first round, before any connection was made:
    /// each entry is tried once, without back-off, and when none answers
    /// (or one refuses the credentials) the session ends with the error,
    /// which `connect()` returns.
    first: bool,
}

/// Where a room stands on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Not joined on any open connection.
    Unjoined,
    /// JOIN sent on the connection, no answer yet.
    Joining(ConnId),
    /// JOIN answered, while the answer is being handled (a JOIN reply
    /// marks the room joined at once; see `data_on_joined`).
    AwaitingOnJoin(ConnId),
    /// Joined: events come from this connection.
    Joined(ConnId),
    /// LEAVE sent (no stream is left); when streams come back meanwhile the
    /// room is joined again after the answer.
    Leaving(ConnId),
}

impl Link {
    fn conn(self) -> Option<ConnId> {
        match self {
            Link::Unjoined => None,
            Link::Joining(c) | Link::AwaitingOnJoin(c) | Link::Joined(c) | Link::Leaving(c) => {
                Some(c)
            }
        }
    }
}

/// Whether a stream has seen its `Joined` for the current (re)join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamJoin {
    Awaiting,
    Joined,
}

struct Stream {
    sink: RoomSink,
    join: StreamJoin,
}

/// A stream that asked to leave; it gets `Left` once the node confirmed.
struct Leaver {
    sink: RoomSink,
    ack: Option<oneshot::Sender<()>>,
    conn: ConnId,
    /// Whether it saw its `Joined`: only then do events reach it.
    joined: bool,
}

/// A room moving from a node that shuts down to the next connection.
struct Handover {
    old: ConnId,
    new: ConnId,
    /// The room's state on the new connection.
    new_link: Link,
    /// The old connection delivers no more events of this room (left, or
    /// closed).
    old_done: bool,
    /// Whether the LEAVE on the old connection was sent.
    leave_sent: bool,
    /// Events delivered from the old connection since the JOIN went out on
    /// the new one.
    tail: VecDeque<Emitted>,
    /// Events from the new connection, held until the old one is done.
    fresh: Vec<Emitted>,
}

struct RoomEntry {
    scope: Scope,
    link: Link,
    streams: Vec<Stream>,
    leavers: Vec<Leaver>,
    handover: Option<Handover>,
    /// After a hand-over: events the old connection delivered that the new
    /// one may still repeat.
    repeats: Option<Repeats>,
}

impl RoomEntry {
    /// Takes out the leavers waiting on `conn`.
    fn take_leavers(&mut self, conn: ConnId) -> Vec<Leaver> {
        let (gone, stay) = std::mem::take(&mut self.leavers)
            .into_iter()
            .partition(|l| l.conn == conn);
        self.leavers = stay;
        gone
    }
}

/// The events an old connection delivered last, to drop when the new
/// connection delivers them again. The new connection's events start
/// somewhere in this run (or after it); once one of them is found in it,
/// the rest of the run must follow in order.
struct Repeats {
    tail: VecDeque<Emitted>,
    aligned: bool,
}

impl Repeats {
    /// Whether `e` (from the new connection) was delivered already; sets
    /// `self.tail` empty once the run is over.
    fn repeated(&mut self, e: &Emitted) -> bool {
        if self.aligned {
            if self.tail.front() == Some(e) {
                self.tail.pop_front();
                return true;
            }
        } else if let Some(p) = self.tail.iter().position(|t| t == e) {
            self.tail.drain(..=p);
            self.aligned = true;
            return true;
        }
        self.tail.clear();
        false
    }
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
    in_flight: InFlight<Pending>,
    deadlines: BinaryHeap<Reverse<Deadline>>,
    next_seq: u64,
    next_conn: u64,
    conns: Vec<Conn>,
    serving: Option<ConnId>,
    connecting: Option<Connecting>,
    /// Ordered, so that what the session does depends only on its inputs.
    rooms: BTreeMap<RoomKey, RoomEntry>,
    node_sinks: Vec<NodeSink>,
    parked: VecDeque<Parked>,
    held: VecDeque<Held>,
    /// Requests waiting out their back-off before the next attempt.
    resend: Vec<(Instant, Req)>,
    life: Life,
    outputs: VecDeque<Output>,
    /// Lifecycle events not yet taken by the driver.
    events: VecDeque<Lifecycle>,
    /// The pool index of the serving connection that was lost last, until
    /// another serves.
    lost_serving: Option<usize>,
    /// The last event scope seen and its collection, so that routing an
    /// event parses its scope only when it changes.
    scope_cache: Option<(String, Option<Arc<str>>)>,
    connections_made: u64,
}

impl Session {
    /// A session with no connection yet.
    pub(crate) fn new(cfg: SessionConfig) -> Session {
        Session {
            rng: Rng::new(cfg.seed),
            pool: Pool::default(),
            cfg,
            in_flight: InFlight::default(),
            deadlines: BinaryHeap::new(),
            next_seq: 0,
            next_conn: 0,
            conns: Vec::new(),
            serving: None,
            connecting: None,
            rooms: BTreeMap::new(),
            node_sinks: Vec::new(),
            parked: VecDeque::new(),
            held: VecDeque::new(),
            resend: Vec::new(),
            life: Life::Open,
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            lost_serving: None,
            scope_cache: None,
            connections_made: 0,
        }
    }

    // ------------------------------------------------------------ outputs

    /// The next thing the driver must do.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next lifecycle event (see [`Lifecycle`]).
    pub(crate) fn poll_event(&mut self) -> Option<Lifecycle> {
        self.events.pop_front()
    }

    /// Everything queued for `conn`, as one batch.
    pub(crate) fn poll_transmit(&mut self, conn: ConnId) -> Option<Bytes> {
        let c = self.conns.iter_mut().find(|c| c.id == conn)?;
        c.handed = c.queued;
        (!c.out.is_empty()).then(|| c.out.split().freeze())
    }

    /// When [`Session::handle_timeout`] must be called next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.deadlines.peek().map(|Reverse(d)| d.at);
        let mut earlier = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for c in &self.conns {
            earlier(c.next_check);
        }
        for h in &self.held {
            if let Held::Request(r) = h {
                earlier(Some(r.deadline));
            }
        }
        for (at, _) in &self.resend {
            earlier(Some(*at));
        }
        next
    }

    /// Whether the driver should hand over more commands.
    pub(crate) fn wants_commands(&self) -> bool {
        if !matches!(self.life, Life::Open) {
            return false;
        }
        match self.serving {
            Some(_) => self.held.is_empty() && self.can_send(),
            None => self.held.len() < HELD_CAP,
        }
    }

    /// Whether the serving connection takes another request: an id free
    /// (with keep-alive on, one is kept for the ping, so a dead peer is
    /// noticed even with every other id taken), and not too much waiting to
    /// be written.
    fn can_send(&self) -> bool {
        let reserved = usize::from(self.cfg.keepalive.is_some());
        self.serving_conn().is_some_and(|c| {
            self.in_flight.len() + reserved < MAX_IN_FLIGHT && c.out.len() < OUT_HIGH_WATER
        })
    }

    /// Whether the driver should read frames: not while a delivery waits
    /// for room in a full [`Overflow::Wait`] stream.
    pub(crate) fn wants_read(&self) -> bool {
        self.parked.is_empty()
    }

    /// The stream a parked delivery waits on; when it has room, call
    /// [`Session::handle_capacity`].
    pub(crate) fn parked_sender(&self) -> Option<mpsc::Sender<RoomEvent>> {
        self.parked.front().map(|p| p.to.tx.clone())
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
        self.in_flight.len()
    }

    /// Whether the node may still send something the client waits for: a
    /// request (or join, leave, ping) is unanswered, or a room is joined
    /// (its events can come at any time).
    pub(crate) fn awaits_node(&self) -> bool {
        self.in_flight.len() > 0 || !self.rooms.is_empty()
    }

    /// Connections made so far.
    pub(crate) fn connections_made(&self) -> u64 {
        self.connections_made
    }

    /// The pool index of the connection new requests go to; `None` while
    /// none serves (connecting, reconnecting, finished).
    pub(crate) fn serving_index(&self) -> Option<usize> {
        self.serving_conn().map(|c| c.index)
    }

    /// The open connections.
    #[cfg(test)]
    pub(crate) fn open_conns(&self) -> Vec<ConnId> {
        self.conns.iter().map(|c| c.id).collect()
    }

    /// The connection new requests go to.
    #[cfg(test)]
    pub(crate) fn serving(&self) -> Option<ConnId> {
        self.serving
    }

    /// Sizes of what the session keeps: held commands, parked deliveries,
    /// timed-out ids, deadlines.
    #[cfg(test)]
    pub(crate) fn sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.held.len(),
            self.parked.len(),
            self.conns.iter().map(|c| c.timed_out).sum(),
            self.deadlines.len(),
        )
    }

    /// The connections that entries of the in-flight table (requests,
    /// joins, leaves, pings) wait on, each once.
    #[cfg(test)]
    pub(crate) fn in_flight_conns(&self) -> Vec<ConnId> {
        let mut conns: Vec<ConnId> = self.in_flight.iter().map(|(_, p)| p.conn()).collect();
        conns.sort_unstable();
        conns.dedup();
        conns
    }

    /// The rooms as text, for test failure messages.
    #[cfg(test)]
    pub(crate) fn debug_rooms(&self) -> String {
        let mut out = String::new();
        for (k, r) in &self.rooms {
            out.push_str(&format!(
                "{}:{} {:?} handover {:?} streams {:?} leavers {:?}\n",
                k.collection,
                k.id,
                r.link,
                r.handover
                    .as_ref()
                    .map(|h| (h.old, h.new, h.new_link, h.old_done, h.leave_sent)),
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
        self.rooms.len()
    }

    // ------------------------------------------------------------- inputs

    /// The nodes the session connects to.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Adds nodes to the pool; the first ones start the first round of
    /// connects (at a random entry when the config says so).
    fn add_nodes(&mut self, more: Vec<PoolEntry>) {
        self.pool.add(more);
        let fresh =
            self.connections_made == 0 && self.connecting.is_none() && self.conns.is_empty();
        if fresh && matches!(self.life, Life::Open) && !self.pool.is_empty() {
            let n = self.pool.len() as u64;
            let start = if self.cfg.random_start && n > 1 {
                self.rng.up_to(n - 1) as usize
            } else {
                0
            };
            self.start_connect(start, 0, false, Duration::ZERO);
            if let Some(c) = &mut self.connecting {
                c.first = true;
            }
        }
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
            let _ = reply.send(self.live_rooms());
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
                        frame: frame.freeze(),
                        reply,
                        deadline,
                        timeout,
                        idempotent,
                        attempts: 0,
                        ran: false,
                    },
                );
            }
            Command::Subscribe(sub) => match self.serving {
                Some(conn) => self.subscribe(conn, sub),
                None => self.held.push_back(Held::Subscribe(sub)),
            },
            Command::Unsubscribe {
                key,
                stream_id,
                ack,
            } => self.unsubscribe(key, stream_id, ack),
            Command::NodeEvents(sink) => self.node_sinks.push(*sink),
            Command::Close(ack) => {
                self.life = Life::Closing(vec![ack]);
                self.check_closed();
            }
            Command::Rooms(reply) => {
                let _ = reply.send(self.live_rooms());
            }
            Command::AddNodes(more) => self.add_nodes(more),
        }
    }

    /// The rooms with at least one stream that has not asked to leave,
    /// sorted: joined (a first join counts once the node answered it), or
    /// to be joined again once reconnected.
    fn live_rooms(&self) -> Vec<RoomKey> {
        let mut keys: Vec<RoomKey> = self
            .rooms
            .iter()
            .filter(|(_, r)| !r.streams.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort_by(|a, b| (&a.collection, a.id).cmp(&(&b.collection, b.id)));
        keys
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
        let Some(c) = self.conn_mut(conn) else {
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
                if self.in_flight.get(frame.id).map(Pending::conn) == Some(conn) {
                    if let Some(p) = self.take_pending(frame.id) {
                        self.fail_pending(now, p, Error::Protocol(err));
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
        if self.resend.iter().any(|(at, _)| *at <= now) {
            let (due, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.resend)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            self.resend = wait;
            for (_, req) in due {
                self.dispatch(now, req);
            }
        }
        while let Some(Reverse(d)) = self.deadlines.peek() {
            if d.at > now {
                break;
            }
            let Some(Reverse(d)) = self.deadlines.pop() else {
                break;
            };
            if let Some(slot) = self.in_flight.get_mut(d.id) {
                if let Pending::User { seq, conn, .. } = slot {
                    if *seq == d.seq {
                        let conn = *conn;
                        if let Pending::User { req, .. } =
                            std::mem::replace(slot, Pending::TimedOut { conn })
                        {
                            let timeout = req.timeout;
                            req.fail(Error::Timeout(timeout));
                        }
                        if let Some(c) = self.conn_mut(conn) {
                            c.timed_out += 1;
                        }
                    }
                }
            }
        }
        self.expire_held(now);
        let due: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|c| c.next_check.is_some_and(|t| t <= now))
            .map(|c| c.id)
            .collect();
        for conn in due {
            self.keepalive_check(now, conn);
        }
        self.after_input(now);
    }

    /// The connection the session asked for is open and authenticated;
    /// `node_id` is the node that answered, when the driver asked. A
    /// learnt pool entry that reached another node than its own counts as
    /// a failed connect.
    pub(crate) fn handle_connected(&mut self, now: Instant, conn: ConnId, node_id: Option<u32>) {
        let Some(connecting) = self.connecting.take_if(|c| c.conn == conn) else {
            // Not wanted any more (the session closed meanwhile).
            self.outputs.push_back(Output::Close { conn });
            return;
        };
        if self.is_finished() {
            self.outputs.push_back(Output::Close { conn });
            return;
        }
        if let Err(e) = self.pool.check_node(connecting.index, node_id) {
            debug!(error = %e, "reached another node");
            self.outputs.push_back(Output::Close { conn });
            self.connecting = Some(connecting);
            self.handle_connect_failed(now, conn, &e);
            return;
        }
        self.open(now, conn, connecting.index, node_id);
        self.after_input(now);
    }

    /// Connecting (or authenticating) failed.
    pub(crate) fn handle_connect_failed(&mut self, now: Instant, conn: ConnId, error: &Error) {
        let Some(mut c) = self.connecting.take_if(|c| c.conn == conn) else {
            return;
        };
        debug!(error = %error, index = c.index, "connect failed");
        if !matches!(self.life, Life::Open) {
            self.check_closed();
            return;
        }
        let pool = self.pool.len().max(1);
        c.tries = c.tries.saturating_add(1);
        // Bad credentials are not fixed by trying the rest of the pool.
        let auth = error.code() == Some(thingsdb_protocol::ErrorCode::Auth);
        if auth {
            self.events.push_back(Lifecycle::AuthFailed {
                index: c.index,
                error: error.clone(),
            });
        }
        if c.first {
            // The first round tries each entry once; `connect()` gets the
            // error when none answers.
            if auth || c.tries as usize >= pool {
                self.finish(error.clone());
            } else {
                let index = self.pool.next(c.index);
                self.start_connect(index, c.tries, false, Duration::ZERO);
                if let Some(next) = &mut self.connecting {
                    next.first = true;
                }
            }
            return;
        }
        if auth {
            let round = (c.tries as usize).div_ceil(pool);
            c.tries = u32::try_from(round * pool).unwrap_or(u32::MAX);
        }
        let round = c.tries as usize / pool;
        if let Some(max) = self.cfg.reconnect.max_attempts {
            if round >= max as usize && c.tries as usize % pool == 0 {
                if c.moving {
                    // The old connection still serves; it ends with its node.
                    return;
                }
                let e = Error::ConnectionLost(ConnectionLost::new(
                    LostReason::GaveUp,
                    format!("gave up reconnecting after {round} attempts: {error}"),
                ));
                self.finish(e);
                return;
            }
        }
        let delay = if c.tries as usize % pool == 0 {
            let rng = &mut self.rng;
            self.cfg
                .reconnect
                .delay_with(u32::try_from(round).unwrap_or(u32::MAX), |max| {
                    rng.up_to(max)
                })
        } else {
            Duration::ZERO
        };
        let index = self.pool.next(c.index);
        self.start_connect(index, c.tries, c.moving, delay);
        self.after_input(now);
    }

    /// An open connection broke (or the node closed it).
    pub(crate) fn handle_lost(&mut self, now: Instant, conn: ConnId, lost: ConnectionLost) {
        if self.conn_mut(conn).is_none() {
            return;
        }
        warn!(reason = %lost, "connection lost");
        self.drop_conn(now, conn, lost);
        self.after_input(now);
    }

    /// A parked delivery's stream has room now.
    pub(crate) fn handle_capacity(&mut self, permit: mpsc::OwnedPermit<RoomEvent>) {
        // The permit was reserved on the front delivery's stream.
        if let Some(p) = self.parked.pop_front() {
            if let Some(item) = p.to.send_with(permit, p.item) {
                self.parked.push_front(Parked { to: p.to, item });
            }
        }
    }

    /// A parked delivery's stream is gone.
    pub(crate) fn handle_parked_gone(&mut self) {
        self.parked.pop_front();
    }

    // -------------------------------------------------------- connections

    fn new_conn_id(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    /// The connections whose node is shutting down.
    fn draining(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|c| c.role == Role::Draining)
            .map(|c| c.id)
            .collect()
    }

    fn conn_mut(&mut self, conn: ConnId) -> Option<&mut Conn> {
        self.conns.iter_mut().find(|c| c.id == conn)
    }

    fn serving_conn(&self) -> Option<&Conn> {
        let s = self.serving?;
        self.conns.iter().find(|c| c.id == s)
    }

    fn start_connect(&mut self, index: usize, tries: u32, moving: bool, delay: Duration) {
        let Some(target) = self.pool.target(index).cloned() else {
            return; // an empty pool: nothing to connect to
        };
        let conn = self.new_conn_id();
        self.connecting = Some(Connecting {
            conn,
            index,
            tries,
            moving,
            first: false,
        });
        self.outputs.push_back(Output::Connect {
            conn,
            index,
            target,
            delay,
        });
    }

    fn open(&mut self, now: Instant, conn: ConnId, index: usize, node_id: Option<u32>) {
        self.connections_made += 1;
        self.conns.push(Conn {
            id: conn,
            index,
            role: Role::Serving,
            out: BytesMut::new(),
            pending: 0,
            timed_out: 0,
            ping: Ping::Idle,
            heard: true,
            next_check: self.cfg.keepalive.and_then(|p| now.checked_add(p)),
            queued: 0,
            handed: 0,
        });
        let old = self.serving.replace(conn);
        debug!(conn = conn.0, index, replaces = ?old.map(|c| c.0), "serving");
        self.events.push_back(Lifecycle::Connected {
            conn,
            index,
            node_id,
        });
        let from = match old.and_then(|o| self.conns.iter().find(|c| c.id == o)) {
            Some(o) => Some((o.index, MoveReason::ShuttingDown)),
            None => self.lost_serving.take().map(|i| (i, MoveReason::Lost)),
        };
        if let Some((from, why)) = from.filter(|(from, _)| *from != index) {
            self.events.push_back(Lifecycle::Moved {
                from,
                to: index,
                why,
            });
        }
        match old {
            Some(old) => {
                // Make before break: the old node is shutting down.
                if let Some(c) = self.conn_mut(old) {
                    c.role = Role::Draining;
                    c.next_check = None;
                }
                let keys: Vec<RoomKey> = self
                    .rooms
                    .iter()
                    .filter(|(_, r)| {
                        !r.streams.is_empty() && r.link.conn() == Some(old) && r.handover.is_none()
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in keys {
                    if self.rooms.get(&key).map(|r| r.link) == Some(Link::Joined(old)) {
                        self.begin_handover(conn, old, key);
                    } else {
                        // Not joined on the old connection yet: its events
                        // would start later than the new one's. Join here
                        // only; what the old connection sends is ignored.
                        self.rejoin(conn, &key);
                    }
                }
                self.maybe_close_draining(old);
            }
            None => {
                let keys: Vec<RoomKey> = self
                    .rooms
                    .iter()
                    .filter(|(_, r)| !r.streams.is_empty())
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in keys {
                    self.rejoin(conn, &key);
                }
            }
        }
        self.flush_held(now);
    }

    /// Commands held while no connection was up go first.
    fn flush_held(&mut self, now: Instant) {
        while self.can_send() {
            match self.held.pop_front() {
                Some(Held::Request(req)) => self.dispatch(now, req),
                Some(Held::Subscribe(sub)) => self.handle_command(now, Command::Subscribe(sub)),
                None => break,
            }
        }
    }

    /// Joins a room with streams on `conn`, which will deliver its events.
    fn rejoin(&mut self, conn: ConnId, key: &RoomKey) {
        if self.send_room(conn, key, PackageType::Join, |key, conn| Pending::Rejoin {
            key,
            conn,
        }) {
            if let Some(r) = self.rooms.get_mut(key) {
                r.link = Link::Joining(conn);
            }
        }
    }

    /// Forgets `conn`: what was in flight on it fails, rooms joined on it
    /// are joined again on the next connection.
    fn drop_conn(&mut self, now: Instant, conn: ConnId, lost: ConnectionLost) {
        let Some(pos) = self.conns.iter().position(|c| c.id == conn) else {
            return;
        };
        let c = self.conns.remove(pos);
        let lost = if c.role == Role::Draining {
            ConnectionLost::new(
                LostReason::NodeShuttingDown,
                format!("the node shut down before answering ({lost})"),
            )
        } else {
            lost
        };
        self.events.push_back(Lifecycle::Lost {
            index: c.index,
            lost: lost.clone(),
        });
        if self.serving == Some(conn) {
            self.lost_serving = Some(c.index);
        }
        let failed = self.in_flight.drain_where(|p| p.conn() == conn);
        debug!(conn = conn.0, index = c.index, role = ?c.role, waiting = failed.len(), reason = %lost, "connection let go");
        // Requests that did not run (never written), or may run twice
        // (idempotent), go out again once the serving connection is known.
        let mut again = Vec::new();
        for p in failed {
            match p {
                Pending::User {
                    mut req, queued, ..
                } => {
                    let written = queued <= c.handed;
                    if (!written || req.idempotent) && self.may_resend(now, &req) {
                        req.ran |= written;
                        again.push(req);
                    } else if written {
                        req.fail(Error::ConnectionLost(lost.clone()));
                    } else {
                        req.fail(Error::ConnectionLost(lost.clone().unwritten()));
                    }
                }
                p => self.fail_pending(now, p, Error::ConnectionLost(lost.clone())),
            }
        }
        // Rooms: the old side of a hand-over is done; streams of rooms that
        // were joined here see `Disconnected` unless a hand-over carries on.
        let keys: Vec<RoomKey> = self.rooms.keys().cloned().collect();
        for key in keys {
            self.room_conn_gone(now, &key, conn);
        }
        if self.serving == Some(conn) {
            self.serving = None;
            // A draining connection does not outlive its successor.
            for d in self.draining() {
                self.outputs.push_back(Output::Close { conn: d });
                self.drop_conn(now, d, lost.clone());
            }
            if matches!(self.life, Life::Closing(_)) {
                for req in again {
                    req.fail(Error::ConnectionLost(lost.clone()));
                }
                self.check_closed();
                return;
            }
            if !self.cfg.reconnect.enabled {
                for req in again {
                    req.fail(Error::ConnectionLost(lost.clone()));
                }
                self.finish(Error::ConnectionLost(ConnectionLost::new(
                    LostReason::GaveUp,
                    format!("connection lost ({lost}) and reconnect is off"),
                )));
                return;
            }
            match &mut self.connecting {
                // A move was under way: it is a plain reconnect now.
                Some(connecting) => connecting.moving = false,
                None => {
                    let index = if lost.reason() == LostReason::NodeShuttingDown {
                        self.pool.next(c.index)
                    } else {
                        c.index
                    };
                    self.start_connect(index, 0, false, Duration::ZERO);
                }
            }
        }
        for req in again {
            if self.is_finished() {
                req.fail(Error::ConnectionLost(lost.clone()));
            } else {
                self.dispatch(now, req);
            }
        }
    }

    /// Room bookkeeping when `conn` went away.
    fn room_conn_gone(&mut self, now: Instant, key: &RoomKey, conn: ConnId) {
        let serving = self.serving;
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        for l in room.take_leavers(conn) {
            self.finish_leaver(l);
        }
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if let Some(h) = &mut room.handover {
            if h.old == conn {
                h.old_done = true;
                self.maybe_complete_handover(key);
                return;
            }
            if h.new == conn {
                room.handover = None;
            }
        }
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if room.link.conn() != Some(conn) {
            return;
        }
        room.link = Link::Unjoined;
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
            self.park_or_send(tx, RoomEvent::Disconnected);
        }
        // Joined again at once when another connection already serves.
        if let Some(s) = serving.filter(|s| *s != conn) {
            if self.send_room(s, key, PackageType::Join, |key, conn| Pending::Rejoin {
                key,
                conn,
            }) {
                if let Some(r) = self.rooms.get_mut(key) {
                    r.link = Link::Joining(s);
                }
            }
        }
        let _ = now;
    }

    /// Closes a draining connection once nothing more is expected on it.
    fn maybe_close_draining(&mut self, conn: ConnId) {
        let Some(c) = self.conns.iter().find(|c| c.id == conn) else {
            return;
        };
        if c.role != Role::Draining || c.pending > c.timed_out {
            return;
        }
        let busy = self.rooms.values().any(|r| {
            r.handover
                .as_ref()
                .is_some_and(|h| h.old == conn && !h.old_done)
                || (r.link.conn() == Some(conn) && !r.streams.is_empty())
        });
        if busy {
            return;
        }
        debug!(conn = conn.0, "draining connection done");
        // Late replies cannot come once it is closed: free their ids.
        let pos = self.conns.iter().position(|c| c.id == conn);
        if let Some(pos) = pos {
            self.conns.remove(pos);
        }
        let _ = self.in_flight.drain_where(|p| p.conn() == conn);
        let keys: Vec<RoomKey> = self.rooms.keys().cloned().collect();
        for key in keys {
            let Some(room) = self.rooms.get_mut(&key) else {
                continue;
            };
            let leavers = room.take_leavers(conn);
            let drop_room = room.link.conn() == Some(conn) && room.streams.is_empty();
            for l in leavers {
                self.finish_leaver(l);
            }
            if drop_room {
                self.remove_room(&key);
            }
        }
        self.outputs.push_back(Output::Close { conn });
    }

    fn keepalive_check(&mut self, now: Instant, conn: ConnId) {
        let Some(period) = self.cfg.keepalive else {
            return;
        };
        let parked = !self.parked.is_empty();
        let Some(c) = self.conn_mut(conn) else {
            return;
        };
        c.next_check = now.checked_add(period);
        // While a full `Wait` stream pauses reading, the answer may be
        // waiting unread: no verdict then.
        if parked {
            c.heard = true;
        }
        if matches!(c.ping, Ping::Outstanding) && !c.heard {
            self.outputs.push_back(Output::Close { conn });
            self.drop_conn(
                now,
                conn,
                ConnectionLost::new(
                    LostReason::KeepAliveTimeout,
                    format!("no answer to a keep-alive ping within {period:?}"),
                ),
            );
            return;
        }
        c.heard = false;
        if matches!(c.ping, Ping::Idle) {
            if let Some(id) = self.in_flight.insert(Pending::Ping { conn }) {
                if let Some(c) = self.conn_mut(conn) {
                    request::encode_ping(&mut c.out, id);
                    c.ping = Ping::Outstanding;
                    c.pending += 1;
                }
            }
        }
    }

    // ----------------------------------------------------------- requests

    /// Sends a request on the serving connection, or holds it until one
    /// serves.
    fn dispatch(&mut self, now: Instant, req: Req) {
        if req.reply.is_closed() {
            return; // the caller gave up meanwhile
        }
        if req.deadline <= now {
            let timeout = req.timeout;
            req.fail(Error::Timeout(timeout));
            return;
        }
        match self.serving {
            Some(conn) if self.can_send() => self.send_request(conn, req),
            Some(_) | None => self.held.push_back(Held::Request(req)),
        }
    }

    /// Whether a request that did not get its answer may be sent again:
    /// attempts left, and time before its deadline.
    fn may_resend(&self, now: Instant, req: &Req) -> bool {
        req.attempts < self.cfg.request_attempts && now < req.deadline
    }

    fn send_request(&mut self, conn: ConnId, mut req: Req) {
        let Some(pos) = self.conns.iter().position(|c| c.id == conn) else {
            self.held.push_back(Held::Request(req));
            return;
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        req.attempts += 1;
        let (deadline, frame) = (req.deadline, req.frame.clone());
        let c = &mut self.conns[pos];
        c.queued += 1;
        let queued = c.queued;
        let Some(id) = self.in_flight.insert(Pending::User {
            req,
            seq,
            conn,
            queued,
        }) else {
            // Commands are only taken while an id is free.
            return;
        };
        let c = &mut self.conns[pos];
        c.out.extend_from_slice(&frame[..4]);
        c.out.extend_from_slice(&id.to_le_bytes());
        c.out.extend_from_slice(&frame[6..]);
        c.pending += 1;
        self.deadlines.push(Reverse(Deadline {
            at: deadline,
            seq,
            id,
        }));
    }

    /// Takes an entry out of the in-flight table, keeping the counts.
    fn take_pending(&mut self, id: u16) -> Option<Pending> {
        let p = self.in_flight.remove(id)?;
        let conn = p.conn();
        let timed_out = matches!(p, Pending::TimedOut { .. });
        let ping = matches!(p, Pending::Ping { .. });
        if let Some(c) = self.conn_mut(conn) {
            c.pending = c.pending.saturating_sub(1);
            if timed_out {
                c.timed_out = c.timed_out.saturating_sub(1);
            }
            if ping {
                c.ping = Ping::Idle;
            }
        }
        Some(p)
    }

    /// An entry ends without a usable reply.
    fn fail_pending(&mut self, now: Instant, p: Pending, e: Error) {
        match p {
            Pending::User { req, .. } => req.fail(e),
            Pending::Join { sub, .. } => {
                let _ = sub.reply.send(Err(e));
            }
            Pending::Rejoin { key, conn } | Pending::HandoverJoin { key, conn } => {
                // Its connection is gone (handled by the caller), or the
                // node sent garbage for it: treat as not joined.
                if self.conn_mut(conn).is_some() {
                    self.room_failed(&key, conn);
                }
            }
            Pending::Leave { key, conn } => self.leave_done(now, &key, conn),
            Pending::TimedOut { .. } | Pending::Ping { .. } => {}
        }
    }

    fn expire_held(&mut self, now: Instant) {
        if self.held.is_empty() {
            return;
        }
        for h in std::mem::take(&mut self.held) {
            match h {
                Held::Request(r) if r.reply.is_closed() => {}
                Held::Request(r) if r.deadline <= now => {
                    let timeout = r.timeout;
                    r.fail(Error::Timeout(timeout));
                }
                Held::Subscribe(sub) if sub.reply.is_closed() => {}
                other => self.held.push_back(other),
            }
        }
    }

    /// Drops the deadlines of answered requests once they outnumber the
    /// requests in flight, so the heap stays as large as what is in flight.
    fn sweep_deadlines(&mut self) {
        if self.deadlines.len() <= 2 * self.in_flight.len() + 1024 {
            return;
        }
        let entries = std::mem::take(&mut self.deadlines).into_vec();
        let in_flight = &self.in_flight;
        self.deadlines = entries
            .into_iter()
            .filter(|Reverse(d)| {
                matches!(in_flight.get(d.id), Some(Pending::User { seq, .. }) if *seq == d.seq)
            })
            .collect();
    }

    fn on_response(&mut self, now: Instant, conn: ConnId, frame: Frame) {
        if self.in_flight.get(frame.id).map(Pending::conn) != Some(conn) {
            warn!(
                id = frame.id,
                package_type = frame.type_byte,
                "reply for an id nobody asked on this connection; dropped"
            );
            return;
        }
        let Some(p) = self.take_pending(frame.id) else {
            return;
        };
        match p {
            Pending::User { req, .. } => {
                self.answered(now, conn, req, frame);
                self.sweep_deadlines();
            }
            Pending::TimedOut { .. } => debug!(id = frame.id, "late reply after a timeout dropped"),
            Pending::Ping { .. } => {}
            Pending::Join { sub, conn } => self.join_answered(conn, *sub, &frame),
            Pending::Rejoin { key, conn } => match join_result(&frame) {
                Ok(_) => {
                    if let Some(r) = self.rooms.get_mut(&key) {
                        if r.link == Link::Joining(conn) {
                            r.link = Link::AwaitingOnJoin(conn);
                        }
                    }
                    self.data_on_joined(conn, &key);
                }
                Err(e) => {
                    warn!(room = key.id, collection = %key.collection, error = %e, "joining a room again failed");
                    self.room_failed(&key, conn);
                }
            },
            Pending::HandoverJoin { key, conn } => match join_result(&frame) {
                Ok(_) => {
                    if let Some(h) = self.rooms.get_mut(&key).and_then(|r| r.handover.as_mut()) {
                        if h.new == conn && h.new_link == Link::Joining(conn) {
                            h.new_link = Link::AwaitingOnJoin(conn);
                        }
                    }
                    self.data_on_joined(conn, &key);
                }
                Err(e) => {
                    warn!(room = key.id, collection = %key.collection, error = %e, "joining a room on the next node failed");
                    self.room_failed(&key, conn);
                }
            },
            Pending::Leave { key, conn } => {
                if let Ok(Response::Error(e)) = Response::decode(&frame) {
                    debug!(error = %e, "LEAVE refused");
                }
                self.leave_done(now, &key, conn);
            }
        }
    }

    /// A request's answer: NODE_ERROR (-51, the node could not take it;
    /// it did not run), or REQUEST_CANCEL (-4) for an idempotent request,
    /// sends it again after a back-off while attempts and time are left;
    /// any other answer goes to the caller.
    fn answered(&mut self, now: Instant, conn: ConnId, req: Req, frame: Frame) {
        if frame.type_byte == PackageType::Error as u8 {
            if let Ok(Response::Error(e)) = Response::decode(&frame) {
                let e = Error::Thingsdb(e.into());
                if e.code() == Some(thingsdb_protocol::ErrorCode::Node) {
                    self.retry_later(now, req, e);
                    return;
                }
                // REQUEST_CANCEL (-4): a node lost the node it waited on
                // (a change id, a forwarded request) and may or may not
                // have run it: sent again only when that is safe.
                if e.code() == Some(thingsdb_protocol::ErrorCode::RequestCancel) && req.idempotent {
                    let mut req = req;
                    req.ran = true;
                    self.retry_later(now, req, e);
                    return;
                }
                if req.attempts > 1 {
                    req.fail(e);
                    return;
                }
            }
        }
        let node = self.conn_mut(conn).map(|c| c.index); // observe: the node that answered
        let _ = req.reply.send(Ok(crate::observe::Answer { frame, node }));
    }

    /// Sends a request that did not run again after a back-off, if its
    /// attempts and deadline allow; fails it with `e` otherwise.
    fn retry_later(&mut self, now: Instant, req: Req, e: Error) {
        if self.may_resend(now, &req) {
            let rng = &mut self.rng;
            let delay = RESEND_BACKOFF.delay_with(req.attempts, |max| rng.up_to(max));
            if let Some(at) = now.checked_add(delay).filter(|at| *at < req.deadline) {
                debug!(
                    attempts = req.attempts,
                    ?delay,
                    "the node could not take a request; sending it again"
                );
                self.resend.push((at, req));
                return;
            }
        }
        req.fail(e);
    }

    // -------------------------------------------------------------- rooms

    /// Encodes a JOIN or LEAVE of `key` on `conn`; false when it could not
    /// be sent (no free id, or an encoding error).
    fn send_room(
        &mut self,
        conn: ConnId,
        key: &RoomKey,
        t: PackageType,
        pending: impl FnOnce(RoomKey, ConnId) -> Pending,
    ) -> bool {
        let Some(scope) = self.rooms.get(key).map(|r| r.scope.clone()) else {
            return false;
        };
        let Some(pos) = self.conns.iter().position(|c| c.id == conn) else {
            return false;
        };
        let Some(id) = self.in_flight.insert(pending(key.clone(), conn)) else {
            return false;
        };
        let c = &mut self.conns[pos];
        let rooms = [Room::Id(key.id)];
        let r = if t == PackageType::Join {
            request::encode_join(&mut c.out, id, scope.as_str(), &rooms)
        } else {
            request::encode_leave(&mut c.out, id, scope.as_str(), &rooms)
        };
        if r.is_err() {
            self.in_flight.remove(id);
            return false;
        }
        c.pending += 1;
        true
    }

    fn subscribe(&mut self, conn: ConnId, sub: Box<Subscribe>) {
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
                let join = match room.link {
                    Link::Joined(c) if c == conn || room.handover.is_some() => {
                        Some(StreamJoin::Joined)
                    }
                    Link::AwaitingOnJoin(c) if c == conn => Some(StreamJoin::Awaiting),
                    _ => None,
                };
                if let Some(join) = join {
                    let Subscribe { sink, reply, .. } = *sub;
                    let tx = sink.handle();
                    room.streams.push(Stream { sink, join });
                    if join == StreamJoin::Joined {
                        self.park_or_send(tx, RoomEvent::Joined);
                    }
                    let _ = reply.send(Ok(key));
                    return;
                }
            }
        }
        let (scope, room) = (sub.scope.clone(), sub.room.clone());
        let Some(pos) = self.conns.iter().position(|c| c.id == conn) else {
            return;
        };
        let Some(id) = self.in_flight.insert(Pending::Join { sub, conn }) else {
            return;
        };
        let c = &mut self.conns[pos];
        match request::encode_join(&mut c.out, id, scope.as_str(), &[room]) {
            Ok(()) => c.pending += 1,
            Err(e) => {
                if let Some(Pending::Join { sub, .. }) = self.in_flight.remove(id) {
                    let _ = sub.reply.send(Err(e.into()));
                }
            }
        }
    }

    fn join_answered(&mut self, conn: ConnId, sub: Subscribe, frame: &Frame) {
        let id = match join_result(frame) {
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
        let room = self.rooms.entry(key.clone()).or_insert_with(|| RoomEntry {
            scope,
            link: Link::Unjoined,
            streams: Vec::new(),
            leavers: Vec::new(),
            handover: None,
            repeats: None,
        });
        let serving = self.serving;
        // The serving connection to join the room on instead, once the
        // stream is in.
        let mut move_to: Option<ConnId> = None;
        // Joined on a connection that does not serve the room: leave there.
        let mut leave_here = false;
        let join = if let Some(h) = room.handover.as_mut().filter(|h| h.new == conn) {
            if h.new_link == Link::Joining(conn) {
                h.new_link = Link::AwaitingOnJoin(conn);
            }
            // Events still come from the old connection, where the room is
            // joined.
            match room.link {
                Link::Joined(_) => StreamJoin::Joined,
                _ => StreamJoin::Awaiting,
            }
        } else {
            match room.link {
                Link::Joined(c) if c == conn => StreamJoin::Joined,
                Link::Joining(c) if c == conn => {
                    room.link = Link::AwaitingOnJoin(conn);
                    StreamJoin::Awaiting
                }
                // The JOIN went out before the LEAVE: joined again after it.
                Link::AwaitingOnJoin(c) | Link::Leaving(c) if c == conn => StreamJoin::Awaiting,
                // Being left on the serving connection: joined again there
                // after the LEAVE; not here.
                Link::Leaving(other) if Some(other) == serving => {
                    leave_here = true;
                    StreamJoin::Awaiting
                }
                Link::Unjoined | Link::Leaving(_) => {
                    room.link = Link::AwaitingOnJoin(conn);
                    if let Some(s) = serving.filter(|s| *s != conn) {
                        // Answered on a connection that is draining.
                        move_to = Some(s);
                    }
                    StreamJoin::Awaiting
                }
                Link::Joining(other) | Link::AwaitingOnJoin(other) | Link::Joined(other) => {
                    let join = match room.link {
                        Link::Joined(_) => StreamJoin::Joined,
                        _ => StreamJoin::Awaiting,
                    };
                    if Some(conn) == serving
                        && room.handover.is_none()
                        && room.link == Link::Joined(other)
                    {
                        // The room was on a draining connection: this JOIN
                        // moves it here.
                        room.handover = Some(Handover {
                            old: other,
                            new: conn,
                            new_link: Link::AwaitingOnJoin(conn),
                            old_done: false,
                            leave_sent: false,
                            tail: VecDeque::new(),
                            fresh: Vec::new(),
                        });
                    } else if Some(conn) == serving && room.handover.is_none() {
                        // Not joined on the draining connection yet: the
                        // room moves here.
                        room.link = Link::AwaitingOnJoin(conn);
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
                if matches!(room.link, Link::Leaving(_)) {
                    return;
                }
                self.leave_or_remove(conn, &key);
                return;
            }
        }
        if delivered && join == StreamJoin::Joined {
            self.park_or_send(tx, RoomEvent::Joined);
        }
        // Joined on `conn` whatever became of the stream.
        self.data_on_joined(conn, &key);
        if let Some(serving) = move_to {
            self.rejoin(serving, &key);
        }
        if leave_here {
            self.send_room(conn, &key, PackageType::Leave, |key, conn| Pending::Leave {
                key,
                conn,
            });
        }
    }

    /// Sends a LEAVE of `key` on `conn` (the room is `Leaving` there);
    /// when it cannot be sent the room is gone. Whether it was sent.
    fn leave_or_remove(&mut self, conn: ConnId, key: &RoomKey) -> bool {
        let sent = self.send_room(conn, key, PackageType::Leave, |key, conn| Pending::Leave {
            key,
            conn,
        });
        match self.rooms.get_mut(key) {
            Some(r) if sent => r.link = Link::Leaving(conn),
            _ => self.remove_room(key),
        }
        sent
    }

    fn unsubscribe(&mut self, key: RoomKey, stream_id: u64, ack: Option<oneshot::Sender<()>>) {
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
                self.park_or_send(stream.sink.handle(), RoomEvent::Left);
                let _ = ack.send(());
            }
            return;
        }
        // The last stream: leave the room on the node.
        let handover = room.handover.take();
        let link = room.link;
        let leave = |key: RoomKey, conn: ConnId| Pending::Leave { key, conn };
        // Events of an unfinished hand-over, for a leaver on the new side.
        let mut carry = None;
        let target = match handover {
            Some(h) => {
                let new_sent = self.send_room(h.new, &key, PackageType::Leave, leave);
                let old_pending = !h.old_done
                    && (h.leave_sent || self.send_room(h.old, &key, PackageType::Leave, leave));
                // The new connection's LEAVE decides: a JOIN answered there
                // meanwhile must be sent again after it.
                if new_sent {
                    carry = Some((h.new, h.tail, h.fresh));
                    Some(h.new)
                } else {
                    old_pending.then_some(h.old)
                }
            }
            None => match link {
                Link::Joining(c) | Link::AwaitingOnJoin(c) | Link::Joined(c) => self
                    .send_room(c, &key, PackageType::Leave, leave)
                    .then_some(c),
                // A LEAVE is on its way already.
                Link::Leaving(c) => Some(c),
                Link::Unjoined => None,
            },
        };
        match target {
            Some(c) => {
                if let Some(r) = self.rooms.get_mut(&key) {
                    r.link = Link::Leaving(c);
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
                    self.park_or_send(stream.sink.handle(), RoomEvent::Left);
                    let _ = ack.send(());
                }
                self.remove_room(&key);
            }
        }
        // Until the leave is confirmed the leaver hears the new connection,
        // without what the old one delivered already.
        if let Some((new, tail, fresh)) = carry {
            if let Some(r) = self.rooms.get_mut(&key) {
                r.repeats = (!tail.is_empty()).then_some(Repeats {
                    tail,
                    aligned: false,
                });
            }
            for e in fresh {
                self.on_emit(new, &key, e);
            }
        }
    }

    /// A LEAVE of `key` on `conn` was answered (or can no longer be).
    fn leave_done(&mut self, now: Instant, key: &RoomKey, conn: ConnId) {
        let _ = now;
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let gone = room.take_leavers(conn);
        if let Some(h) = room.handover.as_mut().filter(|h| h.old == conn) {
            h.old_done = true;
        }
        let link = room.link;
        let has_streams = !room.streams.is_empty();
        for l in gone {
            self.finish_leaver(l);
        }
        if link == Link::Leaving(conn) {
            if !has_streams {
                self.remove_room(key);
            } else if let Some(serving) = self.serving {
                // Streams came back while leaving: join again, on the
                // connection that serves now.
                self.rejoin(serving, key);
            } else if let Some(r) = self.rooms.get_mut(key) {
                // Joined again once a connection is up.
                r.link = Link::Unjoined;
            }
        }
        self.maybe_complete_handover(key);
        self.maybe_close_draining(conn);
    }

    fn finish_leaver(&mut self, mut l: Leaver) {
        self.park_or_send(l.sink.handle(), RoomEvent::Left);
        if let Some(ack) = l.ack.take() {
            let _ = ack.send(());
        }
    }

    /// A room could not be joined (again): it is gone.
    fn room_failed(&mut self, key: &RoomKey, conn: ConnId) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        let ours =
            room.link.conn() == Some(conn) || room.handover.as_ref().is_some_and(|h| h.new == conn);
        if ours {
            self.room_deleted(key);
        }
    }

    /// The room is gone: every stream (leavers too) ends with `Deleted`.
    fn room_deleted(&mut self, key: &RoomKey) {
        self.deliver_all(key, RoomEvent::Deleted);
        if let Some(room) = self.rooms.remove(key) {
            for l in room.leavers {
                if let Some(ack) = l.ack {
                    let _ = ack.send(());
                }
            }
        }
    }

    fn remove_room(&mut self, key: &RoomKey) {
        if let Some(room) = self.rooms.remove(key) {
            for l in room.leavers {
                self.finish_leaver(l);
            }
        }
    }

    fn begin_handover(&mut self, new: ConnId, old: ConnId, key: RoomKey) {
        if !self.send_room(new, &key, PackageType::Join, |key, conn| {
            Pending::HandoverJoin { key, conn }
        }) {
            return;
        }
        if let Some(r) = self.rooms.get_mut(&key) {
            r.handover = Some(Handover {
                old,
                new,
                new_link: Link::Joining(new),
                old_done: false,
                leave_sent: false,
                tail: VecDeque::new(),
                fresh: Vec::new(),
            });
        }
    }

    /// Ends a hand-over once the room is joined on the new connection and
    /// the old one delivers no more of its events.
    fn maybe_complete_handover(&mut self, key: &RoomKey) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let Some(h) = &room.handover else {
            return;
        };
        if h.new_link != Link::Joined(h.new) || !h.old_done {
            return;
        }
        let Some(h) = room.handover.take() else {
            return;
        };
        room.link = Link::Joined(h.new);
        room.repeats = (!h.tail.is_empty()).then_some(Repeats {
            tail: h.tail,
            aligned: false,
        });
        let old = h.old;
        for e in h.fresh {
            self.on_emit(h.new, key, e);
        }
        // Streams still waiting for their `Joined` get it now.
        self.deliver_awaiting_joined(key);
        self.maybe_close_draining(old);
    }

    // ------------------------------------------------------------- events

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
                self.deliver_node(NodeEvent::Status {
                    node_id: id,
                    status,
                });
                if leaving {
                    self.node_shutting_down(now, conn);
                }
            }
            Event::Warn { code, message } => self.deliver_node(NodeEvent::Warn { code, message }),
            // The JOIN reply counted already (see `data_on_joined`).
            Event::Join(_) => {}
            Event::Leave(r) => {
                if let Some(key) = self.room_key(r.scope.as_deref(), r.id) {
                    self.on_leave_event(now, conn, &key);
                }
            }
            Event::Delete(r) => {
                if let Some(key) = self.room_key(r.scope.as_deref(), r.id) {
                    let from_room = self.rooms.get(&key).is_some_and(|room| {
                        room.link.conn() == Some(conn)
                            || room.handover.as_ref().is_some_and(|h| h.new == conn)
                            || room.leavers.iter().any(|l| l.conn == conn)
                    });
                    if from_room {
                        self.room_deleted(&key);
                    }
                }
            }
            Event::Emit(e) => {
                if let Some(key) = self.room_key(e.scope.as_deref(), e.id) {
                    self.on_emit(conn, &key, e.into());
                }
            }
            // Future event kinds are ignored.
            _ => {}
        }
    }

    /// The room an event names: its collection from the event's scope
    /// (`@collection:NAME` as a node sends it); without a scope, the one
    /// tracked room with that id, if only one has it.
    fn room_key(&mut self, scope: Option<&str>, id: u64) -> Option<RoomKey> {
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
                let mut found = self.rooms.keys().filter(|k| k.id == id);
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

    /// A JOIN of the room was answered with its id on `conn`: the node has
    /// the room joined there from now on, and its events may come before
    /// the ON_JOIN (which a node sends later, from its event loop, and not
    /// at all when the room was joined already). The reply is what counts.
    fn data_on_joined(&mut self, conn: ConnId, key: &RoomKey) {
        self.joined_on(conn, key);
    }

    /// The room is joined on `conn`.
    fn joined_on(&mut self, conn: ConnId, key: &RoomKey) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if let Some(h) = room.handover.as_mut().filter(|h| h.new == conn) {
            if matches!(h.new_link, Link::Joined(_)) {
                return;
            }
            h.new_link = Link::Joined(conn);
            let (old, old_done, leave_sent) = (h.old, h.old_done, h.leave_sent);
            if !old_done && !leave_sent {
                if self.send_room(old, key, PackageType::Leave, |key, conn| Pending::Leave {
                    key,
                    conn,
                }) {
                    if let Some(h) = self.rooms.get_mut(key).and_then(|r| r.handover.as_mut()) {
                        h.leave_sent = true;
                    }
                } else if let Some(h) = self.rooms.get_mut(key).and_then(|r| r.handover.as_mut()) {
                    h.old_done = true;
                }
            }
            self.maybe_complete_handover(key);
            return;
        }
        match room.link {
            Link::Joining(c) | Link::AwaitingOnJoin(c) | Link::Joined(c) if c == conn => {
                room.link = Link::Joined(conn);
                self.deliver_awaiting_joined(key);
            }
            _ => {}
        }
    }

    fn on_leave_event(&mut self, now: Instant, conn: ConnId, key: &RoomKey) {
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
        let _ = now;
    }

    fn on_emit(&mut self, conn: ConnId, key: &RoomKey, e: Emitted) {
        let Some(room) = self.rooms.get_mut(key) else {
            return; // nobody listens: dropped, nothing kept
        };
        let from_link =
            room.link.conn() == Some(conn) && room.handover.as_ref().is_none_or(|h| h.new != conn);
        if from_link {
            // What a previous connection delivered already is dropped.
            if let Some(r) = room.repeats.as_mut() {
                let repeated = r.repeated(&e);
                if r.tail.is_empty() {
                    room.repeats = None;
                }
                if repeated {
                    return;
                }
            }
        }
        if let Some(h) = room.handover.as_mut() {
            if h.new == conn {
                if h.new_link == Link::Joined(conn) {
                    h.fresh.push(e);
                    if h.fresh.len() > HANDOVER_CAP {
                        // The old side is too slow to finish: stop waiting.
                        h.old_done = true;
                        self.maybe_complete_handover(key);
                    }
                }
                return;
            }
            if h.old == conn && !h.old_done {
                if h.tail.len() == HANDOVER_CAP {
                    h.tail.pop_front();
                }
                h.tail.push_back(e.clone());
                self.deliver_room_from(key, conn, RoomEvent::Emitted(e));
            }
            return;
        }
        if from_link {
            self.deliver_room_from(key, conn, RoomEvent::Emitted(e));
        }
    }

    fn node_shutting_down(&mut self, now: Instant, conn: ConnId) {
        let _ = now;
        if self.serving != Some(conn)
            || self.pool.len() < 2
            || !self.cfg.reconnect.enabled
            || self.connecting.is_some()
            || !matches!(self.life, Life::Open)
        {
            return;
        }
        let Some(c) = self.conns.iter().find(|c| c.id == conn) else {
            return;
        };
        // A connection still draining is let go: its node went first.
        let index = self.pool.next(c.index);
        for d in self.draining() {
            self.outputs.push_back(Output::Close { conn: d });
            self.drop_conn(
                now,
                d,
                ConnectionLost::new(LostReason::NodeShuttingDown, "the node is shutting down"),
            );
        }
        self.start_connect(index, 0, true, Duration::ZERO);
    }

    // ----------------------------------------------------------- delivery

    /// Delivers an event from `conn` (the room's source) to every stream
    /// that saw its `Joined`, and to the leavers waiting on `conn` (a
    /// leaver hears no other connection: it might repeat what it had).
    fn deliver_room_from(&mut self, key: &RoomKey, conn: ConnId, item: RoomEvent) {
        self.deliver_inner(key, Some(conn), item, false);
    }

    /// Delivers to every stream and leaver of a room, joined or not.
    fn deliver_all(&mut self, key: &RoomKey, item: RoomEvent) {
        self.deliver_inner(key, None, item, true);
    }

    fn deliver_inner(&mut self, key: &RoomKey, conn: Option<ConnId>, item: RoomEvent, all: bool) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let link_conn = room.link.conn();
        let mut targets: Vec<&mut RoomSink> = Vec::new();
        let streams_too = conn.is_none() || conn == link_conn || room.handover.is_some();
        if streams_too {
            for s in &mut room.streams {
                if all || s.join == StreamJoin::Joined {
                    targets.push(&mut s.sink);
                }
            }
        }
        for l in &mut room.leavers {
            if all || (streams_too && l.joined && conn == Some(l.conn)) {
                targets.push(&mut l.sink);
            }
        }
        let parked = &mut self.parked;
        let last = targets.len().saturating_sub(1);
        let mut item = Some(item);
        let mut gone = Vec::new();
        for (i, sink) in targets.into_iter().enumerate() {
            // The item is cloned for every stream but the last.
            let this = if i == last { item.take() } else { item.clone() };
            let Some(this) = this else {
                break;
            };
            offer_in_order(parked, sink, this, &mut gone);
        }
        if !gone.is_empty() {
            room.streams.retain(|s| !gone.contains(&s.sink.id));
            room.leavers.retain_mut(|l| {
                if !gone.contains(&l.sink.id) {
                    return true;
                }
                // Nobody reads `Left` any more; the leave is answered.
                if let Some(ack) = l.ack.take() {
                    let _ = ack.send(());
                }
                false
            });
            if room.streams.is_empty() && room.leavers.is_empty() {
                self.stream_gone_last(key);
            }
        }
    }

    /// The last stream of a room was found gone while delivering: leave.
    fn stream_gone_last(&mut self, key: &RoomKey) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        match room.link {
            Link::Joining(c) | Link::AwaitingOnJoin(c) | Link::Joined(c)
                if self.conns.iter().any(|x| x.id == c) =>
            {
                if self.leave_or_remove(c, key) {
                    if let Some(r) = self.rooms.get_mut(key) {
                        r.handover = None;
                    }
                }
            }
            Link::Leaving(_) => {}
            _ => self.remove_room(key),
        }
    }

    fn deliver_awaiting_joined(&mut self, key: &RoomKey) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let mut txs = Vec::new();
        for s in &mut room.streams {
            if s.join == StreamJoin::Awaiting {
                s.join = StreamJoin::Joined;
                txs.push(s.sink.handle());
            }
        }
        for tx in txs {
            self.park_or_send(tx, RoomEvent::Joined);
        }
    }

    /// Sends an item that is never dropped (joined, left, disconnected) to
    /// one stream, behind anything parked for it and any gap.
    fn park_or_send(&mut self, to: SinkHandle<RoomEvent>, item: RoomEvent) {
        if self.parked.iter().any(|p| p.to.tx.same_channel(&to.tx)) {
            self.parked.push_back(Parked { to, item });
            return;
        }
        if let Err(Some(item)) = to.try_send(item) {
            self.parked.push_back(Parked { to, item });
        }
    }

    fn deliver_node(&mut self, item: NodeEvent) {
        // Node streams never make the connection wait: they lag.
        self.node_sinks
            .retain_mut(|s| !matches!(s.offer(item.clone()), Offer::Gone));
    }

    // -------------------------------------------------------------- close

    fn add_close_ack(&mut self, ack: oneshot::Sender<()>) {
        if let Life::Closing(acks) = &mut self.life {
            acks.push(ack);
        }
        self.check_closed();
    }

    /// After every input: a closing session ends once nothing is in flight.
    fn after_input(&mut self, now: Instant) {
        if !self.held.is_empty() && self.serving.is_some() {
            self.flush_held(now);
        }
        if self.conns.len() > 1 {
            for conn in self.draining() {
                self.maybe_close_draining(conn);
            }
        }
        self.check_closed();
    }

    fn check_closed(&mut self) {
        if !matches!(self.life, Life::Closing(_)) {
            return;
        }
        let waiting = self
            .conns
            .iter()
            .map(|c| {
                c.pending
                    .saturating_sub(c.timed_out)
                    .saturating_sub(usize::from(matches!(c.ping, Ping::Outstanding)))
            })
            .sum::<usize>();
        let waiting = waiting + self.resend.len() + self.held.len();
        if waiting > 0 && self.serving.is_some() {
            return;
        }
        self.finish(Error::Closed);
    }

    /// Ends the session: everything waiting fails with `e`, streams end,
    /// connections close.
    fn finish(&mut self, e: Error) {
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
        for c in std::mem::take(&mut self.conns) {
            self.outputs.push_back(Output::Close { conn: c.id });
        }
        if let Some(c) = self.connecting.take() {
            self.outputs.push_back(Output::Close { conn: c.conn });
        }
        self.serving = None;
        for p in self.in_flight.drain() {
            match p {
                Pending::User { req, .. } => req.fail(err.clone()),
                Pending::Join { sub, .. } => {
                    let _ = sub.reply.send(Err(err.clone()));
                }
                _ => {}
            }
        }
        self.deadlines.clear();
        for h in std::mem::take(&mut self.held) {
            match h {
                Held::Request(r) => r.fail(err.clone()),
                Held::Subscribe(sub) => {
                    let _ = sub.reply.send(Err(err.clone()));
                }
            }
        }
        for (_, r) in std::mem::take(&mut self.resend) {
            r.fail(err.clone());
        }
        for room in std::mem::take(&mut self.rooms).into_values() {
            for l in room.leavers {
                if let Some(ack) = l.ack {
                    let _ = ack.send(());
                }
            }
        }
        self.node_sinks.clear();
        self.parked.clear();
    }

    fn is_finished(&self) -> bool {
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

/// Offers an item to a sink, keeping the order of anything already
/// parked for it; records sinks whose consumer is gone.
fn offer_in_order(
    parked: &mut VecDeque<Parked>,
    sink: &mut RoomSink,
    item: RoomEvent,
    gone: &mut Vec<u64>,
) {
    if !matches!(item, RoomEvent::Emitted(_)) {
        // Never dropped: behind what is parked for the stream and any gap.
        let to = sink.handle();
        if parked.iter().any(|p| p.to.tx.same_channel(&to.tx)) {
            parked.push_back(Parked { to, item });
            return;
        }
        match to.try_send(item) {
            Ok(()) => {}
            Err(Some(item)) => parked.push_back(Parked { to, item }),
            Err(None) => gone.push(sink.id),
        }
        return;
    }
    // Once something waits, later items for `Wait` streams queue behind it.
    if !parked.is_empty() && sink.overflow() == Overflow::Wait {
        if sink.is_closed() {
            gone.push(sink.id);
            return;
        }
        parked.push_back(Parked {
            to: sink.handle(),
            item,
        });
        return;
    }
    match sink.offer(item) {
        Offer::Taken => {}
        Offer::Gone => gone.push(sink.id),
        Offer::Full(item) => parked.push_back(Parked {
            to: sink.handle(),
            item,
        }),
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
        other => Err(crate::client::unexpected("DATA", &other)),
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
