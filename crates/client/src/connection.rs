//! The connection task: the one place that owns the socket.
//!
//! A [`Client`](crate::Client) handle sends [`Command`]s over a channel to
//! this task. The task gives each request a free 16-bit id, writes queued
//! requests out in batches (one `send` for everything queued while the
//! previous write was in progress), matches replies to requests by id,
//! routes events to room streams, pings the node when keep-alive is on,
//! and, when the connection is lost, fails what was in flight and connects
//! again (to the next node of the pool) if the policy allows.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::OptionFuture;
use thingsdb_protocol::{
    request, Direction, Event, Frame, NodeStatus, PackageType, Response, Room,
};
use thingsdb_transport::{FrameRecv, FrameSend};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::config::{Auth, Config};
use crate::error::{Error, ThingsdbError};
use crate::events::{EventHub, NodeSink, RoomEvent, RoomSink};
use crate::scope::Scope;

/// Every id of the 16-bit space may be in flight at once.
pub(crate) const MAX_IN_FLIGHT: usize = 1 << 16;

/// Stop taking new requests while this much is waiting to be written.
const OUT_HIGH_WATER: usize = 4 << 20;

/// How many queued commands one wake-up takes at most, so that replies and
/// events keep flowing under a flood of requests.
const DRAIN_BATCH: usize = 512;

/// The reply channel of one request.
pub(crate) type ReplyTx = oneshot::Sender<Result<Frame, Error>>;

/// What a [`Client`](crate::Client) handle asks of the connection task.
pub(crate) enum Command {
    /// Send a request; its header's id is filled in by the task.
    Request { frame: BytesMut, reply: ReplyTx },
    /// Join a room and attach a stream to it. When the room is already
    /// joined by another stream, only the stream is added.
    Subscribe {
        scope: Scope,
        room: Room,
        sink: RoomSink,
        reply: oneshot::Sender<Result<u64, Error>>,
    },
    /// A room stream went away; the task leaves the room when it was the
    /// last one.
    Unsubscribe { room_id: u64, stream_id: u64 },
    /// Attach a stream of node events (status, warnings).
    NodeEvents(NodeSink),
    /// Finish what is in flight, then close the connection.
    Close(oneshot::Sender<()>),
}

/// Something the task is waiting for an answer to.
enum Pending {
    /// A user's request.
    User(ReplyTx),
    /// A keep-alive ping.
    Ping,
    /// A JOIN for a new stream.
    Join {
        scope: Scope,
        sink: RoomSink,
        reply: oneshot::Sender<Result<u64, Error>>,
    },
    /// A JOIN of a room that was joined before the connection was re-made.
    Rejoin(u64),
    /// A LEAVE after the last stream of a room went away.
    Leave,
}

type SendFut = Pin<Box<dyn Future<Output = (Box<dyn FrameSend>, Result<(), Error>)> + Send>>;
type RecvFut =
    Pin<Box<dyn Future<Output = (Box<dyn FrameRecv>, Result<Option<Frame>, Error>)> + Send>>;

fn recv_next(mut rx: Box<dyn FrameRecv>) -> RecvFut {
    Box::pin(async move {
        let r = rx.recv().await.map_err(Error::from);
        (rx, r)
    })
}

fn send_batch(mut tx: Box<dyn FrameSend>, batch: Bytes) -> SendFut {
    Box::pin(async move {
        let r = tx.send(batch).await.map_err(Error::from);
        (tx, r)
    })
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
    pub tx: Box<dyn FrameSend>,
    pub rx: Box<dyn FrameRecv>,
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
    in_flight: HashMap<u16, Pending>,
    next_id: u16,
    closing: Option<Option<oneshot::Sender<()>>>,
    hub: EventHub,
    /// Commands taken off the channel while no connection was up; they
    /// go first once connected. Nothing in here was ever sent.
    held: VecDeque<Command>,
    target_index: usize,
    /// Events received since the last keep-alive check.
    heard_from_peer: bool,
    ping_outstanding: bool,
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
            in_flight: HashMap::new(),
            next_id: 0,
            closing: None,
            hub: EventHub::default(),
            held: VecDeque::new(),
            target_index: 0,
            heard_from_peer: false,
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
            Command::Subscribe { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
            Command::Close(ack) => {
                let _ = ack.send(());
            }
            Command::Unsubscribe { .. } | Command::NodeEvents(_) => {}
        }
    }

    fn fail_in_flight(&mut self, reason: &str) {
        self.shared
            .in_flight
            .store(0, std::sync::atomic::Ordering::Relaxed);
        for (_, p) in self.in_flight.drain() {
            match p {
                Pending::User(tx) => {
                    let _ = tx.send(Err(Error::ConnectionLost(reason.to_string())));
                }
                Pending::Join { reply, .. } => {
                    let _ = reply.send(Err(Error::ConnectionLost(reason.to_string())));
                }
                Pending::Ping | Pending::Rejoin(_) | Pending::Leave => {}
            }
        }
        self.ping_outstanding = false;
    }

    /// Connects again with backoff, going round the pool. Requests made
    /// meanwhile wait (up to their own timeouts) and go out once connected.
    /// Returns `None` when the policy gives up or the client is closed.
    async fn reconnect(&mut self) -> Option<Established> {
        let policy = self.config.reconnect.clone();
        let mut attempt: u32 = 0;
        loop {
            if policy.max_attempts.is_some_and(|max| attempt >= max) {
                self.finish(&format!("gave up reconnecting after {attempt} attempts"));
                return None;
            }
            let sleep = tokio::time::sleep(policy.delay(attempt));
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    cmd = self.cmd_rx.recv() => match cmd {
                        Some(cmd) => self.hold(cmd),
                        None => self.closing = Some(None),
                    },
                }
                if self.closing.is_some() {
                    self.finish("the client is closed");
                    return None;
                }
            }
            let start = self.target_index.wrapping_add(attempt as usize);
            match connect_pool(&self.config, start).await {
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
            Command::NodeEvents(sink) => self.hub.add_node_stream(sink),
            Command::Close(ack) => self.closing = Some(Some(ack)),
            other => self.held.push_back(other),
        }
    }

    fn take_id(&mut self) -> u16 {
        // Callers check that an id is free first.
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            if !self.in_flight.contains_key(&id) {
                return id;
            }
        }
    }

    fn has_free_id(&self) -> bool {
        self.in_flight.len() < MAX_IN_FLIGHT
    }

    fn accepting(&self, out: &BytesMut) -> bool {
        self.closing.is_none() && self.has_free_id() && out.len() < OUT_HIGH_WATER
    }

    async fn serve(&mut self, tx: Box<dyn FrameSend>, rx: Box<dyn FrameRecv>) -> Exit {
        let mut reader = recv_next(rx);
        let mut idle_tx = Some(tx);
        let mut writing: Option<SendFut> = None;
        let mut out = BytesMut::new();
        self.shared
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.heard_from_peer = true;
        self.ping_outstanding = false;

        // Join again every room that has streams (after a reconnect).
        for (room_id, scope) in self.hub.joined_rooms() {
            if !self.has_free_id() {
                break;
            }
            let id = self.take_id();
            if request::encode_join(&mut out, id, scope.as_str(), &[Room::Id(room_id)]).is_ok() {
                self.in_flight.insert(id, Pending::Rejoin(room_id));
            }
        }

        let period = self.config.keepalive.unwrap_or(Duration::from_secs(3600));
        let mut keepalive = tokio::time::interval_at(Instant::now() + period, period);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);

        loop {
            while self.accepting(&out) {
                let Some(cmd) = self.held.pop_front() else {
                    break;
                };
                self.on_command(cmd, &mut out);
            }
            if writing.is_none() && !out.is_empty() {
                if let Some(tx) = idle_tx.take() {
                    writing = Some(send_batch(tx, out.split().freeze()));
                }
            }
            if let Some(ack) = self.closing.as_mut() {
                if self.in_flight.is_empty() && out.is_empty() && writing.is_none() {
                    if let Some(mut tx) = idle_tx.take() {
                        let _ = tx.close().await;
                    }
                    if let Some(ack) = ack.take() {
                        let _ = ack.send(());
                    }
                    return Exit::Closed;
                }
            }
            self.shared
                .in_flight
                .store(self.in_flight.len(), std::sync::atomic::Ordering::Relaxed);
            let accepting = self.accepting(&out) && self.held.is_empty();
            // A full `Wait` stream pauses reading until its consumer catches up.
            let parked_tx = self.hub.parked.front().map(|p| p.tx.clone());
            let reading = parked_tx.is_none();
            tokio::select! {
                (rx, res) = &mut reader, if reading => match res {
                    Ok(Some(frame)) => {
                        self.heard_from_peer = true;
                        if let Some(exit) = self.on_frame(frame) {
                            return exit;
                        }
                        reader = recv_next(rx);
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
                Some((tx, res)) = OptionFuture::from(writing.as_mut()), if writing.is_some() => {
                    writing = None;
                    if let Err(e) = res {
                        return Exit::Lost(e.to_string());
                    }
                    idle_tx = Some(tx);
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
                _ = keepalive.tick(), if self.config.keepalive.is_some() => {
                    if self.ping_outstanding && !self.heard_from_peer {
                        return Exit::Lost(format!(
                            "no answer to a keep-alive ping within {period:?}"
                        ));
                    }
                    self.heard_from_peer = false;
                    if !self.ping_outstanding && self.has_free_id() {
                        let id = self.take_id();
                        request::encode_ping(&mut out, id);
                        self.in_flight.insert(id, Pending::Ping);
                        self.ping_outstanding = true;
                    }
                }
            }
        }
    }

    fn on_command(&mut self, cmd: Command, out: &mut BytesMut) {
        match cmd {
            Command::Request { mut frame, reply } => {
                if reply.is_closed() {
                    return; // cancelled before it was sent
                }
                if frame.len() < thingsdb_protocol::HEADER_LEN {
                    let _ = reply.send(Err(Error::BadArgument("empty request frame".into())));
                    return;
                }
                let id = self.take_id();
                frame[4..6].copy_from_slice(&id.to_le_bytes());
                out.unsplit(frame);
                self.in_flight.insert(id, Pending::User(reply));
            }
            Command::Subscribe {
                scope,
                room,
                sink,
                reply,
            } => {
                if let Room::Id(room_id) = room {
                    if self.hub.is_joined(room_id) {
                        // Joined already on this connection: the node would
                        // send no second ON_JOIN, so say it here.
                        let stream_id = sink.id;
                        self.hub.add_stream(room_id, scope, sink);
                        self.hub.send_to(room_id, stream_id, RoomEvent::Joined);
                        let _ = reply.send(Ok(room_id));
                        return;
                    }
                }
                let id = self.take_id();
                match request::encode_join(out, id, scope.as_str(), &[room]) {
                    Ok(()) => {
                        self.in_flight
                            .insert(id, Pending::Join { scope, sink, reply });
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Command::Unsubscribe { room_id, stream_id } => {
                if let Some(scope) = self.hub.remove_stream(room_id, stream_id) {
                    let id = self.take_id();
                    let rooms = [Room::Id(room_id)];
                    if request::encode_leave(out, id, scope.as_str(), &rooms).is_ok() {
                        self.in_flight.insert(id, Pending::Leave);
                    }
                }
            }
            Command::NodeEvents(sink) => self.hub.add_node_stream(sink),
            Command::Close(ack) => self.closing = Some(Some(ack)),
        }
    }

    /// Handles one frame from the node; returns an exit when the connection
    /// must end.
    fn on_frame(&mut self, frame: Frame) -> Option<Exit> {
        match PackageType::try_from(frame.type_byte).map(PackageType::direction) {
            Ok(Direction::Response) => self.on_response(frame),
            Ok(Direction::Event) => return self.on_event(frame),
            Ok(Direction::Request) | Err(_) => {
                let err = match frame.package_type() {
                    Ok(t) => thingsdb_protocol::Error::UnexpectedPackageType {
                        expected: "a response or an event",
                        got: t,
                    },
                    Err(e) => e,
                };
                warn!(id = frame.id, error = %err, "unexpected package from the node");
                // The request with this id, if any, fails; others go on.
                if let Some(p) = self.in_flight.remove(&frame.id) {
                    match p {
                        Pending::User(tx) => {
                            let _ = tx.send(Err(Error::Protocol(err)));
                        }
                        Pending::Join { reply, .. } => {
                            let _ = reply.send(Err(Error::Protocol(err)));
                        }
                        Pending::Ping => self.ping_outstanding = false,
                        Pending::Rejoin(_) | Pending::Leave => {}
                    }
                }
            }
        }
        None
    }

    fn on_response(&mut self, frame: Frame) {
        let Some(p) = self.in_flight.remove(&frame.id) else {
            warn!(
                id = frame.id,
                package_type = frame.type_byte,
                "reply for an id nobody asked; dropped"
            );
            return;
        };
        match p {
            Pending::User(tx) => {
                let _ = tx.send(Ok(frame));
            }
            Pending::Ping => self.ping_outstanding = false,
            Pending::Leave => {
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
            Pending::Join { scope, sink, reply } => match join_result(&frame) {
                Ok(room_id) => {
                    let stream_id = sink.id;
                    if !self.hub.add_stream(room_id, scope, sink) {
                        // Another stream had joined it: no ON_JOIN follows.
                        self.hub.send_to(room_id, stream_id, RoomEvent::Joined);
                    }
                    let _ = reply.send(Ok(room_id));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
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
    let handshake = authenticate(&mut *tx, &mut *rx, &config.auth);
    match tokio::time::timeout(config.connect.connect_timeout, handshake).await {
        Ok(Ok(())) => Ok(Established {
            tx,
            rx,
            target_index: index,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::Timeout(config.connect.connect_timeout)),
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
    tx: &mut dyn FrameSend,
    rx: &mut dyn FrameRecv,
    auth: &Auth,
) -> Result<(), Error> {
    let mut buf = BytesMut::new();
    match auth {
        Auth::Password { user, password } => request::encode_auth(&mut buf, 0, user, password)?,
        Auth::Token(token) => request::encode_auth_token(&mut buf, 0, token)?,
    }
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
