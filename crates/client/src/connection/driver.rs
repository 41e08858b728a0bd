//! The driver of a [`Session`]: sockets, write batching, sleeps. The same
//! code runs on tokio and, in a browser, on the page's event loop (see
//! `crate::rt`).
//!
//! The session and its sockets live in a [`Core`]. One task runs [`run`]:
//! it reads frames and hands them to the session, writes what the session
//! queued (everything queued while the previous write was in progress goes
//! out in one write), sleeps until the session's next deadline, opens
//! connections when asked (after the session's backoff delay), and passes
//! commands from client handles. A caller waiting for its answer steps the
//! sockets from its own task when no one else does (see [`Core`]). It
//! keeps no protocol state.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

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

/// How many socket events one caller's step handles at most before it
/// lets go of the connection's lock (and comes back).
#[cfg(not(target_arch = "wasm32"))]
const STEP_BATCH: usize = 64;

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
    /// The error of a connection that stopped: why it stopped, or
    /// [`Error::Closed`].
    pub(crate) fn gone(&self) -> Error {
        self.dead.get().cloned().unwrap_or(Error::Closed)
    }

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

/// A connection's state: the session, its sockets and what it waits on.
///
/// The connection task steps it ([`run`]). A caller whose request finds
/// the connection idle (nothing in flight, nothing queued, no other
/// caller stepping) hands it to the session itself and steps the sockets
/// from its own task while it waits for the answer
/// ([`Core::submit`], [`Core::step_caller`]): the reply then wakes the
/// caller's task directly, and one request one at a time wakes one task
/// instead of two (the caller's and the connection task's, with a channel
/// and a hand-over between them). Only the sockets are stepped that way;
/// connecting, closing, timers and full event streams stay with the
/// connection task, which a caller wakes when the session asks for one of
/// those. Any other caller meanwhile queues its command for the
/// connection task, which takes the sockets back from the stepping caller
/// (and wakes it) before it steps them.
///
/// Whoever steps the sockets leaves its waker with them; a caller that
/// stepped gives them back to the connection task when it is done
/// ([`Core::hand_back`]), so that replies to others, events and a peer's
/// close are never left waiting on a task that no longer listens.
pub(crate) struct Core {
    config: Arc<Config>,
    shared: Arc<Shared>,
    session: Session,
    cmd_rx: mpsc::Receiver<Input>,
    sockets: Vec<Socket>,
    /// Connection attempts (rare), polled by the connection task only.
    connecting: FuturesUnordered<BoxFuture<'static, (ConnId, Result<Established, Error>)>>,
    /// Graceful closes, polled by the connection task only.
    closes: FuturesUnordered<BoxFuture<'static, ()>>,
    /// Which socket `poll_sockets` starts at.
    start: usize,
    /// The one timer, for the session's next deadline.
    timer: rt::Timer,
    /// The wait for room in a full event stream, while a delivery is parked.
    parked: Option<BoxFuture<'static, bool>>,
    /// Answered once the first connection serves, or the first round of
    /// connects failed.
    ready: Option<oneshot::Sender<Result<(), Error>>>,
    /// The connection task's waker, from its last poll.
    task: Option<Waker>,
    /// A caller's step left work only the connection task does.
    task_due: bool,
    /// The caller that steps the sockets now, if one does.
    stepper: Option<Stepper>,
    /// Tickets handed out to stepping callers so far.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    tickets: u64,
    /// The session was handed something since the last
    /// [`settle`](Core::settle): there may be something to do.
    dirty: bool,
    /// The session finished; the connection task closes what is left.
    done: bool,
}

/// The caller that steps a [`Core`]'s sockets (never one in a browser,
/// where callers do not step).
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
struct Stepper {
    /// Which caller: the one holding this ticket.
    ticket: u64,
    /// Its waker, from its last step (`None` before its first).
    waker: Option<Waker>,
}

/// Abandons a [`Core`] when dropped (see [`Core::abandon`]).
struct Abandon(SharedCore);

impl Drop for Abandon {
    fn drop(&mut self) {
        lock(&self.0).abandon();
    }
}

/// A [`Core`] as the connection task and the client's handles share it.
pub(crate) type SharedCore = Arc<Mutex<Core>>;

/// Locks a core (one poisoned by a panic elsewhere is still usable: every
/// step leaves it consistent).
pub(crate) fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|p| p.into_inner())
}

impl Core {
    /// A connection for `config`, not connected yet: the connection task
    /// ([`run`]) connects it; `ready` is answered once it first serves, or
    /// with the error that ended the first round of connects.
    pub(crate) fn new(
        config: Arc<Config>,
        cmd_rx: mpsc::Receiver<Input>,
        shared: Arc<Shared>,
        ready: oneshot::Sender<Result<(), Error>>,
    ) -> Core {
        let mut session = Session::new(session_config(&config));
        session.handle_command(now(), Command::AddNodes(pool_entries(&config)));
        Core {
            config,
            shared,
            session,
            cmd_rx,
            sockets: Vec::with_capacity(2),
            connecting: FuturesUnordered::new(),
            closes: FuturesUnordered::new(),
            start: 0,
            timer: rt::Timer::new(),
            parked: None,
            ready: Some(ready),
            task: None,
            task_due: false,
            stepper: None,
            tickets: 0,
            dirty: true,
            done: false,
        }
    }

    /// Does what the session asks that needs no waiting: connections to
    /// open and close, events to publish, batches to write, the timer to
    /// arm. The error once the session finished. Nothing to do (and no
    /// work) when the session was handed nothing since the last time.
    fn settle(&mut self) -> Option<Error> {
        if !std::mem::take(&mut self.dirty) {
            return self.session.finished().cloned();
        }
        let shared = &self.shared;
        loop {
            while let Some(out) = self.session.poll_output() {
                self.task_due = true;
                match out {
                    Output::Connect {
                        conn,
                        index,
                        target,
                        delay,
                    } => {
                        let config = self.config.clone();
                        let span =
                            shared
                                .observe
                                .attempt_span(self.session.serving_index(), index, delay);
                        self.connecting
                            .push(crate::observe::in_span(span, async move {
                                rt::sleep(delay).await;
                                (conn, connect_one(&config, &target).await)
                            }));
                    }
                    Output::Close { conn } => {
                        if let Some(pos) = self.sockets.iter().position(|l| l.conn == conn) {
                            let mut socket = self.sockets.swap_remove(pos);
                            if let Some(batch) = self.session.poll_transmit(conn) {
                                let _ = socket.writer.queue(batch);
                            }
                            self.closes.push(close(socket.writer));
                        }
                    }
                }
            }
            while let Some(ev) = self.session.poll_event() {
                if let Lifecycle::Connected { node_id, .. } = &ev {
                    shared.set_node_id(*node_id);
                }
                if let Some(ev) = public_event(ev, self.session.pool().targets()) {
                    shared.observe.event(&ev);
                    // Not before the connection first serves: a connection
                    // the client is still trying (another node's, with
                    // balancing) says nothing until it is one of its own.
                    if self.ready.is_none() {
                        let mut watchers =
                            shared.watchers.lock().unwrap_or_else(|p| p.into_inner());
                        watchers.retain_mut(|w| !matches!(w.offer(ev.clone()), Offer::Gone));
                    }
                }
            }
            shared.frames.put_all(self.session.spent_frames());
            shared
                .connections
                .store(self.session.connections_made(), Relaxed);
            shared.in_flight.store(self.session.in_flight(), Relaxed);
            shared.publish_serving(self.session.serving_index(), self.session.pool().targets());
            if self.session.serving_index().is_some() {
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Ok(()));
                }
            }
            if let Some(e) = self.session.finished() {
                let e = e.clone();
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Err(e.clone()));
                }
                self.task_due = true;
                return Some(e);
            }
            // Write what the session queued, one batch per connection while
            // the previous one is still being written.
            let mut lost = None;
            for socket in self.sockets.iter_mut() {
                if socket.writing {
                    socket.more = self.session.has_transmit(socket.conn);
                    continue;
                }
                if let Some(batch) = self.session.poll_transmit(socket.conn) {
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
                self.sockets.retain(|x| x.conn != conn);
                self.session.handle_lost(now(), conn, l);
                continue;
            }
            // Arm the one timer for the session's next deadline. A timer
            // that fires early does no harm (the session does what is due,
            // if anything, and says its next deadline), so one set for an
            // earlier time is left alone: requests one after another each
            // move the deadline on, and moving a timer costs a trip to the
            // runtime's timer wheel.
            let due = self.session.poll_timeout();
            if due.is_some_and(|d| self.timer.deadline().is_none_or(|armed| d < armed)) {
                self.timer.reset(due);
                // The timer wakes whoever polled it last: the connection
                // task must poll it again.
                self.task_due = true;
            }
            if self.session.parked_waiter().is_some() {
                self.task_due = true;
            }
            return None;
        }
    }

    /// Polls the sockets once: a frame, a flush, a loss handed to the
    /// session (`Ready`), or nothing to do (`Pending`, `cx` woken when
    /// there is).
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.sockets.is_empty() {
            return Poll::Pending;
        }
        let reading = self.session.wants_read();
        let expecting = self.session.awaits_node();
        let ev = std::task::ready!(poll_sockets(
            &mut self.sockets,
            reading,
            expecting,
            &mut self.start,
            cx
        ));
        match ev {
            SocketEvent::Frame(conn, frame) => {
                self.shared.observe.received(&frame);
                self.session.handle_frame(now(), conn, frame)
            }
            SocketEvent::Flushed => {}
            SocketEvent::Lost(conn, l) => {
                self.sockets.retain(|x| x.conn != conn);
                self.session.handle_lost(now(), conn, l);
            }
        }
        self.dirty = true;
        Poll::Ready(())
    }

    /// Hands queued commands to the session, at most `DRAIN_BATCH`, while
    /// it takes them.
    fn drain_commands(&mut self) {
        for _ in 0..DRAIN_BATCH {
            if !self.session.wants_commands() {
                return;
            }
            match self.cmd_rx.try_recv() {
                Ok(input) => {
                    self.dirty = true;
                    apply(&mut self.session, &self.shared, input);
                }
                Err(_) => return,
            }
        }
    }

    /// The connection task's step: everything, until nothing is left to
    /// do (`Pending`) or the session finished (its error).
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Error> {
        if !self.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.task = Some(cx.waker().clone());
        }
        // The sockets are the task's again: a caller stepping them is
        // woken to wait for its answer like any other.
        if let Some(waker) = self.stepper.take().and_then(|s| s.waker) {
            waker.wake();
        }
        loop {
            // Every turn of the task's loop settles in full.
            self.dirty = true;
            if let Some(e) = self.settle() {
                return Poll::Ready(e);
            }
            // Biased: frames already received are handled first, so that
            // requests their callers send in answer go out together in one
            // write rather than one write per request.
            if self.poll_io(cx).is_ready() {
                self.parked = None;
                continue;
            }
            if !self.connecting.is_empty() {
                if let Poll::Ready(Some((conn, r))) = self.connecting.poll_next_unpin(cx) {
                    match r {
                        Ok(est) => {
                            info!(conn = conn.0, "connected");
                            let node_id = est.node_id;
                            self.sockets.push(Socket::new(conn, est));
                            self.session.handle_connected(now(), conn, node_id);
                        }
                        Err(e) => self.session.handle_connect_failed(now(), conn, &e),
                    }
                    self.parked = None;
                    continue;
                }
            }
            if !self.closes.is_empty() {
                if let Poll::Ready(Some(())) = self.closes.poll_next_unpin(cx) {
                    continue;
                }
            }
            match self.session.parked_waiter() {
                None => self.parked = None,
                Some(w) => {
                    let wait = self.parked.get_or_insert_with(|| Box::pin(w.ready()));
                    if wait.as_mut().poll(cx).is_ready() {
                        self.parked = None;
                        self.session.handle_capacity();
                        continue;
                    }
                }
            }
            if self.session.wants_commands() {
                match self.cmd_rx.poll_recv(cx) {
                    Poll::Ready(Some(input)) => {
                        apply(&mut self.session, &self.shared, input);
                        self.drain_commands();
                        self.parked = None;
                        continue;
                    }
                    // Every handle is gone: finish what is in flight.
                    Poll::Ready(None) => {
                        self.session.handle_handles_gone();
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            if self.timer.deadline().is_some() && Pin::new(&mut self.timer).poll(cx).is_ready() {
                self.session.handle_timeout(now());
                self.parked = None;
                continue;
            }
            self.task_due = false;
            return Poll::Pending;
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Hands `cmd` to the session when the connection is idle: serving,
    /// nothing in flight, nothing queued, no caller stepping. The caller
    /// then holds the returned ticket and steps the sockets while it
    /// waits ([`step_caller`](Core::step_caller)), until it
    /// [hands them back](Core::hand_back). Otherwise `cmd` comes back, to
    /// queue for the connection task.
    pub(crate) fn submit(&mut self, cmd: Command) -> Result<u64, Command> {
        let idle = !self.done
            && self.session.finished().is_none()
            && self.stepper.is_none()
            && self.session.serving_index().is_some()
            && !self.sockets.is_empty()
            && self.session.in_flight() == 0
            && self.cmd_rx.is_empty()
            && self.session.wants_commands();
        if !idle {
            return Err(cmd);
        }
        self.session.handle_command(now(), cmd);
        self.dirty = true;
        self.tickets += 1;
        self.stepper = Some(Stepper {
            ticket: self.tickets,
            waker: None,
        });
        Ok(self.tickets)
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// The stepping caller's turn while it waits for its answer: writes,
    /// and reads until the sockets have nothing more (`cx` is woken when
    /// they do) or `answered` says the caller's answer is in (the caller
    /// then hands the sockets back at once, and the connection task's
    /// waker, not the caller's, is left with them: one poll of the sockets
    /// fewer per request). False when `ticket` no longer steps (the
    /// connection task took the sockets back): then the caller waits like
    /// any other.
    pub(crate) fn step_caller(
        &mut self,
        ticket: u64,
        cx: &mut Context<'_>,
        answered: &dyn Fn() -> bool,
    ) -> bool {
        let Some(stepper) = self.stepper.as_mut().filter(|s| s.ticket == ticket) else {
            return false;
        };
        if !stepper
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            stepper.waker = Some(cx.waker().clone());
        }
        self.step_sockets(cx, answered);
        true
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Writes and reads until the sockets have nothing more (or, under a
    /// flood, for `STEP_BATCH` turns, `cx` woken to go on: a caller outside
    /// any runtime has no budget to stop it), or until `enough` after
    /// something was read (the caller that steps has its answer and hands
    /// the sockets back, which steps them on); wakes the connection task
    /// when the session left it work.
    fn step_sockets(&mut self, cx: &mut Context<'_>, enough: &dyn Fn() -> bool) {
        for turn in 0.. {
            if self.settle().is_some() || self.poll_io(cx).is_pending() || enough() {
                break;
            }
            if turn == STEP_BATCH {
                cx.waker().wake_by_ref();
                break;
            }
        }
        if std::mem::take(&mut self.task_due) {
            if let Some(task) = &self.task {
                task.wake_by_ref();
            }
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Gives the sockets back to the connection task after the caller
    /// holding `ticket` stepped them: polled once more with the task's
    /// waker, what they have is handled here and what comes later wakes
    /// the task. Nothing to do when the task took them back already.
    pub(crate) fn hand_back(&mut self, ticket: u64) {
        if self.stepper.as_ref().is_none_or(|s| s.ticket != ticket) {
            return;
        }
        self.stepper = None;
        if self.done {
            return;
        }
        if let Some(task) = self.task.clone() {
            self.step_sockets(&mut Context::from_waker(&task), &|| false);
        }
    }

    /// The connection task is gone before the end: every caller is
    /// answered (with [`Error::Closed`]) and nothing is handed on.
    fn abandon(&mut self) {
        if self.done {
            return;
        }
        drop(self.finish(Error::Closed));
        // Dropping the session's requests answers their callers.
        self.session = Session::new(session_config(&self.config));
        self.timer.reset(None);
    }

    /// The session ended with `e`: fails what still comes, publishes the
    /// end, and gives the sockets' closes to wait for.
    fn finish(&mut self, e: Error) -> FuturesUnordered<BoxFuture<'static, ()>> {
        self.done = true;
        if let Some(waker) = self.stepper.take().and_then(|s| s.waker) {
            waker.wake();
        }
        let shared = &self.shared;
        let _ = shared.dead.set(e.clone());
        shared.observe.stopped(&e);
        shared.in_flight.store(0, Relaxed);
        shared.publish_serving(None, &[]);
        self.connecting = FuturesUnordered::new();
        self.parked = None;
        self.cmd_rx.close();
        while let Ok(input) = self.cmd_rx.try_recv() {
            if let Input::Cmd(cmd) = input {
                reject(cmd, e.clone());
            }
        }
        let closes = std::mem::take(&mut self.closes);
        for socket in self.sockets.drain(..) {
            closes.push(close(socket.writer));
        }
        closes
    }
}

/// Runs a client's connection until it is closed or gives up.
pub(crate) async fn run(core: SharedCore) {
    // A task dropped before the end (its runtime shut down, or a panic)
    // leaves no caller waiting on a connection nobody runs.
    let _abandon = Abandon(core.clone());
    let e = std::future::poll_fn(|cx| lock(&core).poll_drive(cx)).await;
    let (mut closes, connect_timeout) = {
        let mut c = lock(&core);
        (c.finish(e), c.config.connect.connect_timeout)
    };
    // A peer that does not take the close is not waited for longer than a
    // connect.
    let _ = rt::timeout(connect_timeout, async {
        while closes.next().await.is_some() {}
    })
    .await;
    for ack in lock(&core).session.take_close_acks() {
        let _ = ack.send(());
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
