//! The driver of a [`Session`]: sockets, write batching, sleeps. The same
//! code runs on tokio and, in a browser, on the page's event loop (see
//! `crate::rt`).
//!
//! One task runs [`run`]. It owns the connections' halves, reads frames and
//! hands them to the session, writes what the session queued (everything
//! queued while the previous write was in progress goes out in one write),
//! sleeps until the session's next deadline, opens connections when asked
//! (after the session's backoff delay), and passes commands from client
//! handles. It keeps no protocol state.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use thingsdb_protocol::Frame;
use thingsdb_transport::{FrameReader, FrameWriter, Target};
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use super::handshake::{connect_one, Established};
use super::pool::PoolEntry;
use super::session::{reject, Command, ConnId, Lifecycle, Output, Session, SessionConfig};
use crate::config::Config;
use crate::error::{ConnectionLost, Error, LostReason};
use crate::events::{Offer, Sink};
use crate::lifecycle::ConnectionEvent;
use crate::request::BoxFuture;
use crate::rt;

/// How many queued commands one wake-up takes at most, so that replies and
/// events keep flowing under a flood of requests.
const DRAIN_BATCH: usize = 512;

/// What client handles send to the driver.
pub(crate) enum Input {
    /// A command for the session (more nodes for the pool among them).
    Cmd(Command),
    /// Attach a stream of connection events.
    ConnectionEvents(Box<Sink<ConnectionEvent>>),
}

/// State shared between the driver and the handles, for diagnostics.
pub(crate) struct Shared {
    /// Why the client stopped for good, once it has.
    pub dead: OnceLock<Error>,
    /// Requests sent and not yet answered (published by the driver).
    pub in_flight: AtomicUsize,
    /// Connections made so far (the first included).
    pub connections: AtomicU64,
    /// Pool index of the serving connection; [`NOT_SERVING`] when none.
    serving: AtomicUsize,
    /// The pool entry at `serving`, written only when it changes.
    serving_target: Mutex<Option<Target>>,
    /// The id of the node the serving connection reached, when the
    /// handshake asked ([`NO_NODE`] otherwise): the last one connected.
    node_id: AtomicU64,
    /// Spans, metrics and the counters of `Client::stats`.
    pub observe: crate::observe::Observer,
    /// The connection event streams: one list for every connection of a
    /// client (with [balancing](crate::balance), each node's connection
    /// offers its events to the same streams).
    pub watchers: Watchers,
    /// Request buffers of answered requests, for the next requests: one
    /// pool for every connection of a client.
    pub frames: Arc<super::frames::FramePool>,
}

/// The connection event streams of one client.
pub(crate) type Watchers = Arc<Mutex<Vec<Sink<ConnectionEvent>>>>;

/// [`Shared::node_id`] when the node is not known.
const NO_NODE: u64 = u64::MAX;

/// [`Shared::serving`] when no connection serves.
const NOT_SERVING: usize = usize::MAX;

/// [`Shared::serving`] before the first connection served (the first is
/// not a reconnect).
const NOT_YET: usize = usize::MAX - 1;

impl Shared {
    /// State for a client that is not connected yet.
    pub(crate) fn new() -> Shared {
        Shared::with(Watchers::default(), Arc::default())
    }

    /// State for another connection of the client that owns `first`:
    /// its event streams and request buffers are the client's.
    pub(crate) fn sharing(first: &Shared) -> Shared {
        Shared::with(first.watchers.clone(), first.frames.clone())
    }

    fn with(watchers: Watchers, frames: Arc<super::frames::FramePool>) -> Shared {
        Shared {
            watchers,
            dead: OnceLock::new(),
            in_flight: AtomicUsize::new(0),
            connections: AtomicU64::new(0),
            serving: AtomicUsize::new(NOT_YET),
            serving_target: Mutex::new(None),
            node_id: AtomicU64::new(NO_NODE),
            observe: crate::observe::Observer::default(),
            frames,
        }
    }

    /// The pool index of the serving connection, if one serves.
    pub(crate) fn serving_index(&self) -> Option<usize> {
        Some(self.serving.load(Relaxed)).filter(|i| *i != NOT_SERVING && *i != NOT_YET)
    }

    /// The id of the node the last connection reached, when the handshake
    /// asked (discovery or load balancing on).
    pub(crate) fn node_id(&self) -> Option<u32> {
        u32::try_from(self.node_id.load(Relaxed)).ok()
    }

    /// Publishes the node the last connection reached.
    pub(crate) fn set_node_id(&self, id: Option<u32>) {
        self.node_id.store(id.map_or(NO_NODE, u64::from), Relaxed);
    }

    /// The pool entry of the serving connection, if one serves.
    pub(crate) fn serving_target(&self) -> Option<Target> {
        self.serving_target
            .lock()
            .map_or_else(|p| p.into_inner().clone(), |t| t.clone())
    }

    /// Publishes the serving connection's pool index (a load and compare
    /// when it did not change).
    pub(crate) fn publish_serving(&self, index: Option<usize>, targets: &[Target]) {
        self.observe.sync_pool(targets);
        let new = index.unwrap_or(NOT_SERVING);
        let old = self.serving.load(Relaxed);
        if old == new || (old == NOT_YET && index.is_none()) {
            return;
        }
        if old != NOT_YET {
            let was = Some(old).filter(|i| *i != NOT_SERVING);
            self.observe.serving_changed(was, index, self.dead.get());
        }
        let target = index.and_then(|i| targets.get(i).cloned());
        match self.serving_target.lock() {
            Ok(mut t) => *t = target,
            Err(p) => *p.into_inner() = target,
        }
        self.serving.store(new, Relaxed);
    }
}

/// The driver's side of one open connection.
struct Socket {
    conn: ConnId,
    reader: FrameReader,
    writer: FrameWriter,
    /// A batch is queued on the writer and not flushed yet.
    writing: bool,
    /// The session queued more for it meanwhile: once the batch is
    /// flushed, the driver goes round to hand it over. Without, a flush
    /// that completes goes straight on to reading.
    more: bool,
    /// Frames were read since the reader last ran dry: their ACK is due.
    unacked: bool,
}

impl Socket {
    fn new(conn: ConnId, est: Established) -> Socket {
        let mut reader = est.rx;
        // Quick ACKs only when the node has more to send (see `poll_sockets`).
        reader.set_manual_quick_ack(true);
        Socket {
            conn,
            reader,
            writer: est.tx,
            writing: false,
            more: false,
            unacked: false,
        }
    }
}

/// What one of the open connections did.
enum SocketEvent {
    Frame(ConnId, Frame),
    Lost(ConnId, ConnectionLost),
    Flushed,
}

/// Polls every open connection: reads (unless paused) and flushes. Each
/// poll starts at a different connection, so none starves the others.
///
/// When a reader runs dry after giving frames, what it read is
/// acknowledged at once (a TCP quick ACK) if `expecting` says the node
/// still has something to send: a ThingsDB node does not set
/// `TCP_NODELAY`, so its next small package would otherwise wait for our
/// delayed ACK (about 40 ms on Linux). When nothing more is expected (one
/// request at a time, its reply read), the ACK rides on the next request.
fn poll_sockets(
    sockets: &mut [Socket],
    reading: bool,
    expecting: bool,
    start: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<SocketEvent> {
    let n = sockets.len();
    *start = start.wrapping_add(1);
    for k in 0..n {
        let socket = &mut sockets[(*start + k) % n];
        if socket.writing {
            match socket.writer.poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    socket.writing = false;
                    if socket.more {
                        return Poll::Ready(SocketEvent::Flushed);
                    }
                }
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(SocketEvent::Lost(
                        socket.conn,
                        ConnectionLost::from_transport(e),
                    ))
                }
                Poll::Pending => {}
            }
        }
        if reading {
            match socket.reader.poll_recv(cx) {
                Poll::Ready(Ok(Some(frame))) => {
                    socket.unacked = true;
                    return Poll::Ready(SocketEvent::Frame(socket.conn, frame));
                }
                Poll::Ready(Ok(None)) => {
                    return Poll::Ready(SocketEvent::Lost(
                        socket.conn,
                        ConnectionLost::new(
                            LostReason::ClosedByPeer,
                            "the node closed the connection",
                        ),
                    ))
                }
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(SocketEvent::Lost(
                        socket.conn,
                        ConnectionLost::from_transport(e),
                    ))
                }
                Poll::Pending => {
                    if std::mem::take(&mut socket.unacked) && expecting {
                        socket.reader.quick_ack();
                    }
                }
            }
        }
    }
    Poll::Pending
}

/// Closes a writer the session let go of: what is queued is written first.
fn close(mut writer: FrameWriter) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let _ = writer.flush().await;
        let _ = writer.close().await;
    })
}

/// The time as the session sees it (tokio's clock on native, so that
/// paused time in tests applies; the page's clock in a browser).
fn now() -> web_time::Instant {
    rt::now()
}

/// Runs a client's connection until it is closed or gives up. `ready`
/// is answered once the first connection serves (`Ok`), or with the error
/// that ended the first round of connects.
pub(crate) async fn run(
    config: Arc<Config>,
    mut cmd_rx: mpsc::Receiver<Input>,
    shared: Arc<Shared>,
    ready: oneshot::Sender<Result<(), Error>>,
) {
    let mut ready = Some(ready);
    let mut session = Session::new(session_config(&config));
    session.handle_command(now(), Command::AddNodes(pool_entries(&config)));
    let mut sockets: Vec<Socket> = Vec::with_capacity(2);
    // Connection attempts (rare), and graceful closes.
    let mut connecting: FuturesUnordered<BoxFuture<'static, (ConnId, Result<Established, Error>)>> =
        FuturesUnordered::new();
    let mut closes: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
    let mut start = 0usize;

    let mut timer = rt::Timer::new();

    loop {
        while let Some(out) = session.poll_output() {
            match out {
                Output::Connect {
                    conn,
                    index,
                    target,
                    delay,
                } => {
                    let config = config.clone();
                    let span = shared
                        .observe
                        .attempt_span(session.serving_index(), index, delay);
                    connecting.push(crate::observe::in_span(span, async move {
                        rt::sleep(delay).await;
                        (conn, connect_one(&config, &target).await)
                    }));
                }
                Output::Close { conn } => {
                    if let Some(pos) = sockets.iter().position(|l| l.conn == conn) {
                        let mut socket = sockets.swap_remove(pos);
                        if let Some(batch) = session.poll_transmit(conn) {
                            let _ = socket.writer.queue(batch);
                        }
                        closes.push(close(socket.writer));
                    }
                }
            }
        }
        while let Some(ev) = session.poll_event() {
            if let Lifecycle::Connected { node_id, .. } = &ev {
                shared.set_node_id(*node_id);
            }
            if let Some(ev) = public_event(ev, session.pool().targets()) {
                shared.observe.event(&ev);
                // Not before the connection first serves: a connection
                // the client is still trying (another node's, with
                // balancing) says nothing until it is one of its own.
                if ready.is_none() {
                    let mut watchers = shared.watchers.lock().unwrap_or_else(|p| p.into_inner());
                    watchers.retain_mut(|w| !matches!(w.offer(ev.clone()), Offer::Gone));
                }
            }
        }
        shared.frames.put_all(session.spent_frames());
        shared
            .connections
            .store(session.connections_made(), Relaxed);
        shared.in_flight.store(session.in_flight(), Relaxed);
        shared.publish_serving(session.serving_index(), session.pool().targets());
        if session.serving_index().is_some() {
            if let Some(ready) = ready.take() {
                let _ = ready.send(Ok(()));
            }
        }
        if let Some(e) = session.finished() {
            let e = e.clone();
            if let Some(ready) = ready.take() {
                let _ = ready.send(Err(e.clone()));
            }
            drop(connecting);
            finish(
                &mut session,
                &mut cmd_rx,
                &shared,
                e,
                sockets,
                closes,
                &config,
            )
            .await;
            return;
        }
        // Write what the session queued, one batch per connection while the
        // previous one is still being written.
        let mut lost = None;
        for socket in sockets.iter_mut() {
            if socket.writing {
                socket.more = session.has_transmit(socket.conn);
                continue;
            }
            if let Some(batch) = session.poll_transmit(socket.conn) {
                shared.observe.sent(batch.len());
                match socket.writer.queue(batch) {
                    Ok(()) => {
                        socket.writing = true;
                        socket.more = false;
                    }
                    Err(e) => lost = Some((socket.conn, ConnectionLost::from_transport(e))),
                }
            }
        }
        if let Some((conn, l)) = lost {
            sockets.retain(|x| x.conn != conn);
            session.handle_lost(now(), conn, l);
            continue;
        }
        // Arm the one timer for the session's next deadline. A timer that
        // fires early does no harm (the session does what is due, if
        // anything, and says its next deadline), so one set for an earlier
        // time is left alone: requests one after another each move the
        // deadline on, and moving a timer costs a trip to the runtime's
        // timer wheel.
        let due = session.poll_timeout();
        if due.is_some_and(|d| timer.deadline().is_none_or(|armed| d < armed)) {
            timer.reset(due);
        }
        let reading = session.wants_read();
        let expecting = session.awaits_node();
        let parked = session.parked_waiter();
        let accepting = session.wants_commands();
        // Biased: frames already received are handled first, so that
        // requests their callers send in answer go out together in one
        // write rather than one write per request.
        tokio::select! {
            biased;
            ev = std::future::poll_fn(|cx| poll_sockets(&mut sockets, reading, expecting, &mut start, cx)),
                if !sockets.is_empty() => match ev {
                SocketEvent::Frame(conn, frame) => {
                    shared.observe.received(&frame);
                    session.handle_frame(now(), conn, frame)
                }
                SocketEvent::Flushed => {}
                SocketEvent::Lost(conn, l) => {
                    sockets.retain(|x| x.conn != conn);
                    session.handle_lost(now(), conn, l);
                }
            },
            Some((conn, r)) = connecting.next(), if !connecting.is_empty() => match r {
                Ok(est) => {
                    info!(conn = conn.0, "connected");
                    let node_id = est.node_id;
                    sockets.push(Socket::new(conn, est));
                    session.handle_connected(now(), conn, node_id);
                }
                Err(e) => session.handle_connect_failed(now(), conn, &e),
            },
            Some(()) = closes.next(), if !closes.is_empty() => {}
            _ = async {
                match parked {
                    Some(w) => w.ready().await,
                    None => std::future::pending().await,
                }
            }, if parked.is_some() => session.handle_capacity(),
            cmd = cmd_rx.recv(), if accepting => match cmd {
                Some(input) => {
                    apply(&mut session, &shared, input);
                    for _ in 1..DRAIN_BATCH {
                        if !session.wants_commands() {
                            break;
                        }
                        match cmd_rx.try_recv() {
                            Ok(input) => apply(&mut session, &shared, input),
                            Err(_) => break,
                        }
                    }
                }
                // Every handle is gone: finish what is in flight.
                None => session.handle_handles_gone(),
            },
            () = &mut timer, if timer.deadline().is_some() => {
                session.handle_timeout(now());
            }
        }
    }
}

/// A session's lifecycle event as the public stream shows it: pool
/// indexes become targets. `None` for an index out of the pool.
pub(crate) fn public_event(ev: Lifecycle, targets: &[Target]) -> Option<ConnectionEvent> {
    let target = |i: usize| targets.get(i).cloned();
    Some(match ev {
        Lifecycle::Connected {
            conn,
            index,
            node_id,
        } => {
            info!(conn = conn.0, index, node_id, "serving");
            ConnectionEvent::Connected {
                target: target(index)?,
                node_id,
            }
        }
        Lifecycle::Moved { from, to, why } => {
            info!(from, to, ?why, "moved");
            ConnectionEvent::Moved {
                from: target(from)?,
                to: target(to)?,
                why,
            }
        }
        Lifecycle::Lost { index, lost } => ConnectionEvent::Lost {
            target: target(index)?,
            reason: lost,
        },
        Lifecycle::AuthFailed { index, error } => ConnectionEvent::AuthFailed {
            target: target(index)?,
            error,
        },
        Lifecycle::GaveUp { error } => ConnectionEvent::GaveUp { error },
    })
}

fn apply(session: &mut Session, shared: &Shared, input: Input) {
    match input {
        Input::Cmd(cmd) => session.handle_command(now(), cmd),
        Input::ConnectionEvents(sink) => shared
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(*sink),
    }
}

/// The session's settings from the client's (its random numbers seeded
/// at random). Shared by the async and the blocking driver.
pub(crate) fn session_config(config: &Config) -> SessionConfig {
    SessionConfig {
        keepalive: config.keepalive,
        reconnect: config.reconnect.clone(),
        random_start: config.random_start,
        request_attempts: config.request_attempts,
        seed: rand::random(),
    }
}

/// The builder's targets as the session's first pool entries (any node
/// may answer at a target the user gave).
pub(crate) fn pool_entries(config: &Config) -> Vec<PoolEntry> {
    config
        .targets
        .iter()
        .map(|t| PoolEntry {
            target: t.clone(),
            node: None,
        })
        .collect()
}

/// The session ended: close the sockets, fail what still comes, answer
/// `close()` callers.
async fn finish(
    session: &mut Session,
    cmd_rx: &mut mpsc::Receiver<Input>,
    shared: &Shared,
    e: Error,
    sockets: Vec<Socket>,
    mut closes: FuturesUnordered<BoxFuture<'static, ()>>,
    config: &Config,
) {
    let _ = shared.dead.set(e.clone());
    shared.observe.stopped(&e);
    shared.in_flight.store(0, Relaxed);
    shared.publish_serving(None, &[]);
    cmd_rx.close();
    while let Ok(input) = cmd_rx.try_recv() {
        if let Input::Cmd(cmd) = input {
            reject(cmd, e.clone());
        }
    }
    for socket in sockets {
        closes.push(close(socket.writer));
    }
    // A peer that does not take the close is not waited for longer than a
    // connect.
    let _ = rt::timeout(config.connect.connect_timeout, async {
        while closes.next().await.is_some() {}
    })
    .await;
    for ack in session.take_close_acks() {
        let _ = ack.send(());
    }
}
