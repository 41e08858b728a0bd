//! The connection task: the one place that owns the socket.
//!
//! A [`Client`](crate::Client) handle sends [`Command`]s over a channel to
//! this task. The task gives each request a free 16-bit id, writes queued
//! requests out in batches (one `send` for everything queued while the
//! previous write was in progress), matches replies to requests by id,
//! times requests out, routes events to room streams, pings the node when
//! keep-alive is on, and, when the connection is lost, fails what was in
//! flight and connects again (to the next node of the pool) if the policy
//! allows.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::future::OptionFuture;
use thingsdb_protocol::{
    request, Direction, Event, Frame, NodeStatus, PackageType, Response, Room,
};
use thingsdb_transport::{FrameReader, FrameWriter};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::config::{Auth, Config};
use crate::error::{Error, ThingsdbError};
use crate::events::{EventHub, NodeSink, RoomEvent, RoomSink};
use crate::in_flight::InFlight;
use crate::scope::Scope;

/// Stop taking new requests while this much is waiting to be written.
const OUT_HIGH_WATER: usize = 4 << 20;

/// How many commands are held while reconnecting before callers are made
/// to wait on the channel.
const HELD_CAP: usize = 8192;

/// How many queued commands one wake-up takes at most, so that replies and
/// events keep flowing under a flood of requests.
const DRAIN_BATCH: usize = 512;

/// The reply channel of one request.
pub(crate) type ReplyTx = oneshot::Sender<Result<Frame, Error>>;

/// What a [`Client`](crate::Client) handle asks of the connection task.
pub(crate) enum Command {
    /// Send a request; its header's id is filled in by the task. It fails
    /// with [`Error::Timeout`] when no reply came by `deadline`.
    Request {
        frame: BytesMut,
        reply: ReplyTx,
        deadline: Instant,
        timeout: Duration,
    },
    /// Join a room and attach a stream to it. When the room is already
    /// joined by another stream, only the stream is added.
    Subscribe(Box<Subscribe>),
    /// A room stream went away; the task leaves the room when it was the
    /// last one.
    Unsubscribe { room_id: u64, stream_id: u64 },
    /// Attach a stream of node events (status, warnings).
    NodeEvents(Box<NodeSink>),
    /// Finish what is in flight, then close the connection.
    Close(oneshot::Sender<()>),
}

/// A room stream asking to join.
pub(crate) struct Subscribe {
    pub scope: Scope,
    pub room: Room,
    pub sink: RoomSink,
    pub reply: oneshot::Sender<Result<u64, Error>>,
}

/// Something the task is waiting for an answer to.
enum Pending {
    /// A user's request; `seq` tells it apart from a later request that
    /// gets the same id.
    User {
        reply: ReplyTx,
        seq: u64,
        timeout: Duration,
    },
    /// A user's request that timed out: the id stays taken until its late
    /// reply comes (and is dropped), so that reply can never answer a
    /// newer request.
    TimedOut,
    /// A keep-alive ping.
    Ping,
    /// A JOIN for a new stream.
    Join(Box<Subscribe>),
    /// A JOIN of a room that was joined before the connection was re-made.
    Rejoin(u64),
    /// A LEAVE after the last stream of a room went away.
    Leave(u64),
}

/// When a request times out; ordered by time for a min-heap.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    at: Instant,
    seq: u64,
    id: u16,
}

/// Why [`Task::serve`] returned.
enum Exit {
    /// Closed on purpose (by `close()` or because every handle is gone).
    Closed,
    /// The connection broke.
    Lost(String),
    /// The node said it is shutting down: move to another node.
    NodeLeaving,
}

/// The two halves of an authenticated connection, and which pool entry.
pub(crate) struct Established {
    pub tx: FrameWriter,
    pub rx: FrameReader,
    pub target_index: usize,
}

/// State shared between the task and the handles, for diagnostics.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Why the task stopped for good, once it has.
    pub dead: std::sync::OnceLock<String>,
    /// Requests sent and not yet answered (published by the task).
    pub in_flight: std::sync::atomic::AtomicUsize,
    /// Connections made so far (the first included).
    pub connections: std::sync::atomic::AtomicU64,
}

pub(crate) struct Task {
    config: Arc<Config>,
    cmd_rx: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    in_flight: InFlight<Pending>,
    /// Deadlines of user requests in flight, earliest first. Entries of
    /// requests already answered are skipped when they come up, and
    /// swept out when they pile up.
    deadlines: BinaryHeap<Reverse<Deadline>>,
    next_seq: u64,
    closing: Option<Option<oneshot::Sender<()>>>,
    hub: EventHub,
    /// Commands taken off the channel while no connection was up; they
    /// go first once connected. Nothing in here was ever sent.
    held: VecDeque<Command>,
    target_index: usize,
    /// Whether anything came from the node since the last keep-alive tick.
    heard_from_peer: bool,
    /// Slots holding a timed-out request's id until its late reply.
    timed_out: usize,
    /// Rooms with a LEAVE in flight: a JOIN answered meanwhile is sent
    /// again, since the node handles the LEAVE after it.
    leaving: std::collections::HashSet<u64>,
    ping_outstanding: bool,
}

fn timed_out(timeout: Duration) -> Error {
    Error::Timeout(timeout)
}

impl Task {
    pub(crate) fn new(
        config: Arc<Config>,
        cmd_rx: mpsc::Receiver<Command>,
        shared: Arc<Shared>,
    ) -> Task {
        Task {
            config,
            cmd_rx,
            shared,
            in_flight: InFlight::default(),
            deadlines: BinaryHeap::new(),
            next_seq: 0,
            closing: None,
            hub: EventHub::default(),
            held: VecDeque::new(),
            target_index: 0,
            heard_from_peer: false,
            timed_out: 0,
            leaving: std::collections::HashSet::new(),
            ping_outstanding: false,
        }
    }

    /// Runs until the client is closed or the reconnect policy gives up.
    pub(crate) async fn run(mut self, first: Established) {
        let mut conn = first;
        loop {
            self.target_index = conn.target_index;
            let exit = self.serve(conn.tx, conn.rx).await;
            let reason = match exit {
                Exit::Closed => {
                    self.finish("the client is closed");
                    return;
                }
                Exit::Lost(reason) => reason,
                Exit::NodeLeaving => {
                    // Start with the next node of the pool.
                    self.target_index = self.target_index.wrapping_add(1);
                    "the node is shutting down".to_string()
                }
            };
            warn!(reason = %reason, "connection lost");
            self.fail_in_flight(&reason);
            if self.closing.is_some() {
                // close() was waiting for this connection: it is gone.
                self.finish("the client is closed");
                return;
            }
            self.hub.connection_lost();
            if !self.config.reconnect.enabled {
                self.finish(&format!("connection lost ({reason}) and reconnect is off"));
                return;
            }
            match self.reconnect().await {
                Some(c) => conn = c,
                None => return,
            }
        }
    }

    /// Fails everything still waiting and marks the client dead.
    fn finish(&mut self, reason: &str) {
        let _ = self.shared.dead.set(reason.to_string());
        self.fail_in_flight(reason);
        self.cmd_rx.close();
        let held: Vec<Command> = self.held.drain(..).collect();
        for cmd in held {
            self.reject(cmd, reason);
        }
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            self.reject(cmd, reason);
        }
        self.hub.close();
        if let Some(Some(ack)) = self.closing.take() {
            let _ = ack.send(());
        }
    }

    fn reject(&mut self, cmd: Command, reason: &str) {
        let closed = self.closing.is_some();
        let err = || {
            if closed {
                Error::Closed
            } else {
                Error::ConnectionLost(reason.to_string())
            }
        };
        match cmd {
            Command::Request { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
            Command::Subscribe(s) => {
                let _ = s.reply.send(Err(err()));
            }
            Command::Close(ack) => {
                let _ = ack.send(());
            }
            Command::Unsubscribe { .. } | Command::NodeEvents(_) => {}
        }
    }

    fn fail_in_flight(&mut self, reason: &str) {
        self.shared.in_flight.store(0, Relaxed);
        for p in self.in_flight.drain() {
            match p {
                Pending::User { reply, .. } => {
                    let _ = reply.send(Err(Error::ConnectionLost(reason.to_string())));
                }
                Pending::Join(s) => {
                    let _ = s.reply.send(Err(Error::ConnectionLost(reason.to_string())));
                }
                Pending::TimedOut | Pending::Ping | Pending::Rejoin(_) | Pending::Leave(_) => {}
            }
        }
        self.deadlines.clear();
        self.timed_out = 0;
        self.leaving.clear();
        self.ping_outstanding = false;
    }

    /// Fails held requests whose deadline has passed and drops cancelled
    /// ones; returns the earliest deadline still held.
    fn expire_held(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let mut earliest: Option<Instant> = None;
        for cmd in std::mem::take(&mut self.held) {
            let (at, cancelled) = match &cmd {
                Command::Request {
                    reply, deadline, ..
                } => (Some(*deadline), reply.is_closed()),
                Command::Subscribe(sub) => (None, sub.reply.is_closed()),
                _ => (None, false),
            };
            if cancelled {
                continue;
            }
            match (at, cmd) {
                (Some(at), Command::Request { reply, timeout, .. }) if at <= now => {
                    let _ = reply.send(Err(timed_out(timeout)));
                }
                (at, cmd) => {
                    if let Some(at) = at {
                        earliest = Some(earliest.map_or(at, |e| e.min(at)));
                    }
                    self.held.push_back(cmd);
                }
            }
        }
        earliest
    }

    /// Connects again with backoff, going round the pool. Requests made
    /// meanwhile wait (up to their own deadlines) and go out once
    /// connected. Returns `None` when the policy gives up or the client is
    /// closed.
    async fn reconnect(&mut self) -> Option<Established> {
        let policy = self.config.reconnect.clone();
        let config = self.config.clone();
        let mut attempt: u32 = 0;
        loop {
            if self.closing.is_some() {
                self.finish("the client is closed");
                return None;
            }
            if policy.max_attempts.is_some_and(|max| attempt >= max) {
                self.finish(&format!("gave up reconnecting after {attempt} attempts"));
                return None;
            }
            let start = self.target_index.wrapping_add(attempt as usize);
            let delay = policy.delay(attempt);
            let connecting = async {
                tokio::time::sleep(delay).await;
                connect_pool(&config, start).await
            };
            tokio::pin!(connecting);
            let mut earliest = self.expire_held();
            let result = loop {
                let wake = tokio::time::sleep_until(
                    earliest.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
                );
                tokio::select! {
                    r = &mut connecting => break r,
                    // Past the cap, callers wait on the bounded channel
                    // (up to their deadlines) instead of growing this queue.
                    cmd = self.cmd_rx.recv(), if self.held.len() < HELD_CAP => match cmd {
                        Some(cmd) => {
                            if let Command::Request { deadline, .. } = &cmd {
                                earliest = Some(earliest.map_or(*deadline, |e| e.min(*deadline)));
                            }
                            self.hold(cmd);
                        }
                        None => self.closing = Some(None),
                    },
                    _ = wake => earliest = self.expire_held(),
                }
                if self.closing.is_some() {
                    self.finish("the client is closed");
                    return None;
                }
            };
            match result {
                Ok(c) => {
                    info!(target = %self.config.targets[c.target_index], "reconnected");
                    return Some(c);
                }
                Err(e) => {
                    debug!(attempt, error = %e, "reconnect attempt failed");
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }

    /// A command that arrived while no connection is up.
    fn hold(&mut self, cmd: Command) {
        match cmd {
            Command::Unsubscribe { room_id, stream_id } => {
                // Nothing to tell the node: it forgot us with the connection.
                self.hub.remove_stream(room_id, stream_id);
            }
            Command::NodeEvents(sink) => self.hub.add_node_stream(*sink),
            Command::Close(ack) => self.closing = Some(Some(ack)),
            other => self.held.push_back(other),
        }
    }

    /// Whether to take more commands: not closing, an id free (with
    /// keep-alive on, one is kept for the ping, so a dead peer is noticed
    /// even with every other id taken), and not too much waiting to be
    /// written.
    fn accepting(&self, out: &BytesMut) -> bool {
        let reserved = usize::from(self.config.keepalive.is_some());
        self.closing.is_none()
            && self.in_flight.len() + reserved < crate::in_flight::MAX_IN_FLIGHT
            && out.len() < OUT_HIGH_WATER
    }

    /// Times out the requests whose deadline has passed; returns the next
    /// deadline to wake up for.
    fn expire(&mut self) -> Option<Instant> {
        let now = Instant::now();
        while let Some(Reverse(d)) = self.deadlines.peek() {
            if d.at > now {
                return Some(d.at);
            }
            let Some(Reverse(d)) = self.deadlines.pop() else {
                break;
            };
            if let Some(slot) = self.in_flight.get_mut(d.id) {
                if matches!(slot, Pending::User { seq, .. } if *seq == d.seq) {
                    if let Pending::User { reply, timeout, .. } =
                        std::mem::replace(slot, Pending::TimedOut)
                    {
                        let _ = reply.send(Err(timed_out(timeout)));
                        self.timed_out += 1;
                    }
                }
            }
        }
        None
    }

    /// Drops the deadlines of answered requests once they outnumber the
    /// requests in flight, so the heap stays as large as what is in flight.
    fn sweep_deadlines(&mut self) {
        if self.deadlines.len() <= 2 * self.in_flight.len() + 1024 {
            return;
        }
        let entries = std::mem::take(&mut self.deadlines).into_vec();
        let in_flight = &mut self.in_flight;
        self.deadlines = entries
            .into_iter()
            .filter(|Reverse(d)| {
                matches!(in_flight.get_mut(d.id), Some(Pending::User { seq, .. }) if *seq == d.seq)
            })
            .collect();
    }

    async fn serve(&mut self, mut tx: FrameWriter, mut rx: FrameReader) -> Exit {
        // Both halves are cancel-safe: `rx.recv()` and `tx.flush()` are
        // made afresh in each round, and a flush cut short keeps what it
        // has not written for the next.
        let mut writing = false;
        let mut out = BytesMut::new();
        self.shared.connections.fetch_add(1, Relaxed);
        self.heard_from_peer = true;
        self.ping_outstanding = false;

        // Join again every room that has streams (after a reconnect).
        for (room_id, scope) in self.hub.joined_rooms() {
            let Some(id) = self.in_flight.insert(Pending::Rejoin(room_id)) else {
                break;
            };
            if request::encode_join(&mut out, id, scope.as_str(), &[Room::Id(room_id)]).is_err() {
                self.in_flight.remove(id);
            }
        }

        let period = self.config.keepalive.unwrap_or(Duration::from_secs(3600));
        let first_tick = Instant::now()
            .checked_add(period)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        let mut keepalive = tokio::time::interval_at(first_tick, period);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let far = || Instant::now() + Duration::from_secs(3600);
        let timer = tokio::time::sleep_until(far());
        tokio::pin!(timer);
        let mut timer_at: Option<Instant> = None;

        loop {
            while self.accepting(&out) {
                let Some(cmd) = self.held.pop_front() else {
                    break;
                };
                self.on_command(cmd, &mut out);
            }
            for (room_id, scope) in std::mem::take(&mut self.hub.emptied) {
                self.send_leave(room_id, &scope, &mut out);
            }
            if !writing && !out.is_empty() {
                if let Err(e) = tx.queue(out.split().freeze()) {
                    return Exit::Lost(e.to_string());
                }
                writing = true;
            }
            if let Some(ack) = self.closing.as_mut() {
                let waiting =
                    self.in_flight.len() - self.timed_out - usize::from(self.ping_outstanding);
                if waiting == 0 && out.is_empty() && !writing {
                    let _ = tx.close().await;
                    if let Some(ack) = ack.take() {
                        let _ = ack.send(());
                    }
                    return Exit::Closed;
                }
            }
            self.shared.in_flight.store(self.in_flight.len(), Relaxed);
            // Arm the one timer for the earliest deadline.
            let next = self.deadlines.peek().map(|Reverse(d)| d.at);
            if next != timer_at {
                timer.as_mut().reset(next.unwrap_or_else(far));
                timer_at = next;
            }
            let accepting = self.accepting(&out) && self.held.is_empty();
            // A full `Wait` stream pauses reading until its consumer catches up.
            let parked_tx = self.hub.parked.front().map(|p| p.tx.clone());
            let reading = parked_tx.is_none();
            // Biased: frames already received are handled first, so that
            // requests their callers send in answer are written together in
            // one batch rather than one write per request.
            tokio::select! {
                biased;
                res = rx.recv(), if reading => match res {
                    Ok(Some(frame)) => {
                        self.heard_from_peer = true;
                        if let Some(exit) = self.on_frame(frame) {
                            return exit;
                        }
                    }
                    Ok(None) => return Exit::Lost("the node closed the connection".into()),
                    Err(e) => return Exit::Lost(e.to_string()),
                },
                Some(permit) = OptionFuture::from(parked_tx.map(mpsc::Sender::reserve_owned)) => {
                    if let Some(p) = self.hub.parked.pop_front() {
                        if let Ok(permit) = permit {
                            permit.send(p.item);
                        }
                    }
                }
                res = tx.flush(), if writing => {
                    writing = false;
                    if let Err(e) = res {
                        return Exit::Lost(e.to_string());
                    }
                }
                cmd = self.cmd_rx.recv(), if accepting => match cmd {
                    Some(cmd) => {
                        self.on_command(cmd, &mut out);
                        for _ in 1..DRAIN_BATCH {
                            if !self.accepting(&out) {
                                break;
                            }
                            match self.cmd_rx.try_recv() {
                                Ok(cmd) => self.on_command(cmd, &mut out),
                                Err(_) => break,
                            }
                        }
                    }
                    // Every handle is gone: finish what is in flight.
                    None => self.closing = Some(None),
                },
                () = &mut timer, if timer_at.is_some() => {
                    timer_at = None;
                    timer.as_mut().reset(far());
                    self.expire();
                }
                _ = keepalive.tick(), if self.config.keepalive.is_some() => {
                    // While a full `Wait` stream pauses reading, the answer
                    // may be waiting unread: no verdict then.
                    if !reading {
                        self.heard_from_peer = true;
                    }
                    if self.ping_outstanding && !self.heard_from_peer {
                        return Exit::Lost(format!(
                            "no answer to a keep-alive ping within {period:?}"
                        ));
                    }
                    self.heard_from_peer = false;
                    if !self.ping_outstanding {
                        if let Some(id) = self.in_flight.insert(Pending::Ping) {
                            request::encode_ping(&mut out, id);
                            self.ping_outstanding = true;
                        }
                    }
                }
            }
        }
    }

    fn on_command(&mut self, cmd: Command, out: &mut BytesMut) {
        match cmd {
            Command::Request {
                mut frame,
                reply,
                deadline,
                timeout,
            } => {
                if reply.is_closed() {
                    return; // cancelled before it was sent
                }
                if deadline <= Instant::now() {
                    let _ = reply.send(Err(timed_out(timeout)));
                    return;
                }
                if frame.len() < thingsdb_protocol::HEADER_LEN {
                    let _ = reply.send(Err(Error::BadArgument("empty request frame".into())));
                    return;
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                let Some(id) = self.in_flight.insert(Pending::User {
                    reply,
                    seq,
                    timeout,
                }) else {
                    // Callers are only taken while an id is free.
                    return;
                };
                frame[4..6].copy_from_slice(&id.to_le_bytes());
                out.unsplit(frame);
                self.deadlines.push(Reverse(Deadline {
                    at: deadline,
                    seq,
                    id,
                }));
            }
            Command::Subscribe(sub) => {
                if let Room::Id(room_id) = sub.room {
                    if self.hub.is_joined(room_id) {
                        // Joined already on this connection: the node would
                        // send no second ON_JOIN, so say it here.
                        let Subscribe {
                            scope, sink, reply, ..
                        } = *sub;
                        let stream_id = sink.id;
                        self.hub.add_stream(room_id, scope, sink);
                        self.hub.send_to(room_id, stream_id, RoomEvent::Joined);
                        let _ = reply.send(Ok(room_id));
                        return;
                    }
                }
                let (scope, room) = (sub.scope.clone(), sub.room.clone());
                let Some(id) = self.in_flight.insert(Pending::Join(sub)) else {
                    return;
                };
                if let Err(e) = request::encode_join(out, id, scope.as_str(), &[room]) {
                    if let Some(Pending::Join(sub)) = self.in_flight.remove(id) {
                        let _ = sub.reply.send(Err(e.into()));
                    }
                }
            }
            Command::Unsubscribe { room_id, stream_id } => {
                if let Some(scope) = self.hub.remove_stream(room_id, stream_id) {
                    self.send_leave(room_id, &scope, out);
                }
            }
            Command::NodeEvents(sink) => self.hub.add_node_stream(*sink),
            Command::Close(ack) => self.closing = Some(Some(ack)),
        }
    }

    fn send_leave(&mut self, room_id: u64, scope: &Scope, out: &mut BytesMut) {
        if let Some(id) = self.in_flight.insert(Pending::Leave(room_id)) {
            if request::encode_leave(out, id, scope.as_str(), &[Room::Id(room_id)]).is_ok() {
                self.leaving.insert(room_id);
            } else {
                self.in_flight.remove(id);
            }
        }
    }

    /// Handles one frame from the node; returns an exit when the connection
    /// must end.
    fn on_frame(&mut self, frame: Frame) -> Option<Exit> {
        match PackageType::try_from(frame.type_byte).map(PackageType::direction) {
            Ok(Direction::Response) => self.on_response(frame),
            Ok(Direction::Event) => return self.on_event(frame),
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
                match self.in_flight.remove(frame.id) {
                    Some(Pending::User { reply, .. }) => {
                        let _ = reply.send(Err(Error::Protocol(err)));
                    }
                    Some(Pending::Join(sub)) => {
                        let _ = sub.reply.send(Err(Error::Protocol(err)));
                    }
                    Some(Pending::Ping) => self.ping_outstanding = false,
                    Some(Pending::TimedOut | Pending::Rejoin(_) | Pending::Leave(_)) | None => {}
                }
            }
        }
        None
    }

    fn on_response(&mut self, frame: Frame) {
        let Some(p) = self.in_flight.remove(frame.id) else {
            warn!(
                id = frame.id,
                package_type = frame.type_byte,
                "reply for an id nobody asked; dropped"
            );
            return;
        };
        match p {
            Pending::User { reply, .. } => {
                let _ = reply.send(Ok(frame));
                self.sweep_deadlines();
            }
            Pending::TimedOut => {
                self.timed_out -= 1;
                debug!(id = frame.id, "late reply after a timeout dropped");
            }
            Pending::Ping => self.ping_outstanding = false,
            Pending::Leave(room_id) => {
                self.leaving.remove(&room_id);
                if let Ok(Response::Error(e)) = Response::decode(&frame) {
                    debug!(error = %e, "LEAVE refused");
                }
            }
            Pending::Rejoin(room_id) => {
                if let Err(e) = join_result(&frame) {
                    warn!(room_id, error = %e, "joining a room again failed");
                    self.hub.room_failed(room_id);
                }
            }
            Pending::Join(mut sub) => match join_result(&frame) {
                Ok(room_id) if self.leaving.contains(&room_id) => {
                    // The node answered this JOIN while our LEAVE of the same
                    // room was on its way, and handles the LEAVE after it:
                    // join again, behind the LEAVE.
                    sub.room = Room::Id(room_id);
                    self.held.push_front(Command::Subscribe(sub));
                }
                Ok(room_id) => {
                    let Subscribe {
                        scope, sink, reply, ..
                    } = *sub;
                    let stream_id = sink.id;
                    if !self.hub.add_stream(room_id, scope, sink) {
                        // Another stream had joined it: no ON_JOIN follows.
                        self.hub.send_to(room_id, stream_id, RoomEvent::Joined);
                    }
                    if reply.send(Ok(room_id)).is_err() {
                        // Nobody waits for this stream any more (the join
                        // timed out or was cancelled): let it go again.
                        self.held
                            .push_front(Command::Unsubscribe { room_id, stream_id });
                    }
                }
                Err(e) => {
                    let _ = sub.reply.send(Err(e));
                }
            },
        }
    }

    fn on_event(&mut self, frame: Frame) -> Option<Exit> {
        let event = match Event::decode(&frame) {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, package_type = frame.type_byte, "malformed event dropped");
                return None;
            }
        };
        let leaving = matches!(
            &event,
            Event::NodeStatus {
                status: NodeStatus::ShuttingDown,
                ..
            }
        );
        self.hub.dispatch(event);
        if leaving && self.config.targets.len() > 1 && self.config.reconnect.enabled {
            return Some(Exit::NodeLeaving);
        }
        None
    }
}

/// The room id a JOIN reply carries for its single room.
fn join_result(frame: &Frame) -> Result<u64, Error> {
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

/// Connects to one target and authenticates.
pub(crate) async fn connect_one(config: &Config, index: usize) -> Result<Established, Error> {
    let target = &config.targets[index];
    let conn = thingsdb_transport::connect(target, &config.connect).await?;
    let (mut tx, mut rx) = conn.split();
    let handshake = authenticate(&mut tx, &mut rx, &config.auth);
    match tokio::time::timeout(config.connect.connect_timeout, handshake).await {
        Ok(Ok(())) => Ok(Established {
            tx,
            rx,
            target_index: index,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::Transport(format!(
            "connected to {target} but it did not answer AUTH within {:?}",
            config.connect.connect_timeout
        ))),
    }
}

/// Tries every target once, starting at `start` (modulo the pool size).
/// Returns the last error when none answers.
pub(crate) async fn connect_pool(config: &Config, start: usize) -> Result<Established, Error> {
    let n = config.targets.len();
    if n == 0 {
        return Err(Error::BadArgument("no target to connect to".into()));
    }
    let mut last = Error::BadArgument("no target to connect to".into());
    for k in 0..n {
        let index = (start + k) % n;
        match connect_one(config, index).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                debug!(target = %config.targets[index], error = %e, "connect failed");
                // Bad credentials are not fixed by trying another node.
                if matches!(&e, Error::Thingsdb(t) if t.code == thingsdb_protocol::ErrorCode::Auth)
                {
                    return Err(e);
                }
                last = e;
            }
        }
    }
    Err(last)
}

/// Sends AUTH on a fresh connection and waits for its answer (id 0).
async fn authenticate(
    tx: &mut FrameWriter,
    rx: &mut FrameReader,
    auth: &Auth,
) -> Result<(), Error> {
    let mut buf = BytesMut::new();
    auth.encode(&mut buf, 0)?;
    tx.send(buf.freeze()).await?;
    loop {
        let Some(frame) = rx.recv().await? else {
            return Err(Error::ConnectionLost(
                "the node closed the connection during authentication".into(),
            ));
        };
        let Ok(t) = frame.package_type() else {
            continue;
        };
        if t.direction() != Direction::Response || frame.id != 0 {
            continue; // an event before the answer: nothing joined yet
        }
        return match Response::decode(&frame)? {
            Response::Ok => Ok(()),
            Response::Error(e) => Err(Error::Thingsdb(e.into())),
            _ => Err(Error::Protocol(
                thingsdb_protocol::Error::UnexpectedPackageType {
                    expected: "OK or ERROR",
                    got: t,
                },
            )),
        };
    }
}
