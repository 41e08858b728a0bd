//! The blocking driver of a [`Session`]: the same session as the async
//! client's, driven by the threads that call into the client.
//!
//! A caller sends its request and then reads the connection itself until
//! its reply is in: one write and (usually) one read per request, no hand
//! over to another thread. Only one thread reads at a time (it holds the
//! *read role*); a caller whose reply another reader delivers wakes when
//! that reader lets the role go. Once events are wanted (a room is
//! joined) one thread, the *event thread*, takes the read role for good
//! and callers wait for their replies instead.
//!
//! Everything the session says to do is done here: write its batches,
//! open connections (after its back-off delay), close them, wake it at its
//! deadlines. It keeps no protocol state.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::BytesMut;
use thingsdb_transport::blocking::{self as io, BlockingReader, BlockingWriter, Received};
use thingsdb_transport::Target;
use tokio::sync::oneshot;
use tracing::info;
use web_time::Instant;

use crate::config::Config;
use crate::connection::driver::{pool_entries, session_config};
use crate::connection::handshake::auth_answer;
use crate::connection::pool::PoolEntry;
use crate::connection::session::{ConnId, Output, Session};
use crate::connection::{Command, Shared};
use crate::error::{ConnectionLost, Error, LostReason};

/// A connection that has read nothing for this long is checked (a peek
/// that does not wait) before a request is written on it, so that a node
/// that dropped it meanwhile is noticed before, not after, the write.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// With several connections open (a hand-over), each is read for at most
/// this long in turn.
const SLICE: Duration = Duration::from_millis(10);

/// The longest a reader sleeps with no connection open before it looks
/// again.
const NAP: Duration = Duration::from_millis(100);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now() -> Instant {
    Instant::now()
}

// ------------------------------------------------------------ waiting

/// Wakes the thread that polled.
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    static WAKER: Waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
}

/// Polls `fut` on this thread, parking between polls, until it is ready
/// or `until` passes (`None`). No runtime: the channels it waits on
/// (tokio's `sync`) wake any waker.
pub(crate) fn block_on<F: Future>(fut: F, until: Option<Instant>) -> Option<F::Output> {
    let mut fut = pin!(fut);
    WAKER.with(|waker| {
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return Some(v);
            }
            match until {
                None => std::thread::park(),
                Some(t) => {
                    let left = t.saturating_duration_since(now());
                    if left.is_zero() {
                        return None;
                    }
                    std::thread::park_timeout(left);
                }
            }
        }
    })
}

// ------------------------------------------------------------ connecting

/// Connects to one target and authenticates, within the connect timeout.
pub(crate) fn connect_one(
    config: &Config,
    target: &Target,
) -> Result<(BlockingReader, BlockingWriter), Error> {
    let (mut rx, mut tx) = io::connect(target, &config.connect)?;
    let mut buf = BytesMut::new();
    config.auth.encode(&mut buf, 0)?;
    tx.send(buf.freeze())?;
    let deadline = now() + config.connect.connect_timeout;
    loop {
        let left = deadline.saturating_duration_since(now());
        match rx.recv(Some(left))? {
            Received::Frame(f) => {
                if let Some(answer) = auth_answer(&f) {
                    return answer.map(|()| (rx, tx));
                }
            }
            Received::TimedOut => {
                return Err(Error::transport(
                    crate::error::TransportErrorKind::ConnectTimeout,
                    format!(
                        "connected to {target} but it did not answer AUTH within {:?}",
                        config.connect.connect_timeout
                    ),
                ))
            }
            Received::Closed => {
                return Err(Error::ConnectionLost(ConnectionLost::new(
                    LostReason::ClosedByPeer,
                    "the node closed the connection during authentication",
                )))
            }
        }
    }
}

// ------------------------------------------------------------ the driver

/// A connection the session asked for, due at `at`.
struct PendingConnect {
    conn: ConnId,
    target: Target,
    at: Instant,
}

/// The session and what writes: taken briefly by any thread.
struct Core {
    session: Session,
    writers: Vec<(ConnId, BlockingWriter)>,
    connect: Option<PendingConnect>,
    finished: bool,
}

/// The reading side of one connection; only the read role's holder
/// touches it.
struct ReadLink {
    conn: ConnId,
    reader: BlockingReader,
    last_read: Instant,
}

/// Who reads.
#[derive(Default)]
struct Role {
    taken: bool,
    /// The event thread reads for good: callers wait for their replies.
    events: bool,
    /// Threads waiting on the condition variable: only then does letting
    /// go of the role wake anyone (a wake is a system call).
    waiters: usize,
}

/// One client's connection, shared by its handles (and its event thread).
pub(crate) struct Driver {
    pub(crate) config: Arc<Config>,
    pub(crate) shared: Arc<Shared>,
    core: Mutex<Core>,
    links: Mutex<Vec<ReadLink>>,
    role: Mutex<Role>,
    role_cv: Condvar,
    event_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    stop: AtomicBool,
}

impl Driver {
    /// Connects to the pool and returns the driver once a connection
    /// serves: the session makes the first round of connects (each node
    /// once, from a random one when asked), or the error that ended it.
    pub(crate) fn connect(config: Config) -> Result<Arc<Driver>, Error> {
        let mut session = Session::new(session_config(&config));
        session.handle_command(now(), Command::AddNodes(pool_entries(&config)));
        let shared = Arc::new(Shared::new());
        let driver = Arc::new(Driver {
            config: Arc::new(config),
            shared,
            core: Mutex::new(Core {
                session,
                writers: Vec::new(),
                connect: None,
                finished: false,
            }),
            links: Mutex::new(Vec::new()),
            role: Mutex::new(Role::default()),
            role_cv: Condvar::new(),
            event_thread: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        loop {
            let pc = {
                let mut core = lock(&driver.core);
                core.settle(&driver.shared);
                if core.session.serving_index().is_some() {
                    break;
                }
                if let Some(e) = core.session.finished() {
                    return Err(e.clone());
                }
                core.connect.take()
            };
            let Some(pc) = pc else {
                return Err(Error::BadArgument("no target to connect to".into()));
            };
            let wait = pc.at.saturating_duration_since(now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            driver.open(pc, &mut lock(&driver.links));
        }
        Ok(driver)
    }

    /// Gives the session a command and writes what it queued.
    pub(crate) fn submit(&self, cmd: Command) {
        self.submit_at(now(), cmd);
    }

    /// [`Driver::submit`] at `t`, the time now.
    fn submit_at(&self, t: Instant, cmd: Command) {
        let mut core = lock(&self.core);
        core.session.handle_command(t, cmd);
        core.settle(&self.shared);
    }

    /// More nodes for the pool.
    pub(crate) fn add_targets(&self, more: Vec<Target>) {
        let entries = more
            .into_iter()
            .map(|target| PoolEntry { target, node: None })
            .collect();
        self.submit(Command::AddNodes(entries));
    }

    /// Sends `cmd` and waits for what `rx` gets, driving the connection
    /// meanwhile when no other thread does; `None` when the channel was
    /// dropped (the client stopped) or `until` passed.
    pub(crate) fn call<T>(
        &self,
        cmd: Command,
        rx: &mut oneshot::Receiver<T>,
        until: Option<Instant>,
    ) -> Option<T> {
        // With the read role at hand, a connection idle for a while is
        // checked before the request goes out on it.
        if self.try_take_role() {
            let t = now();
            self.check_idle(t);
            self.submit_at(t, cmd);
            let got = self.read_until(rx, until);
            self.release_role();
            if let Some(got) = got {
                return got;
            }
        } else {
            self.submit(cmd);
        }
        self.wait(rx, until)
    }

    /// Waits for what `rx` gets (see [`Driver::call`]).
    pub(crate) fn wait<T>(
        &self,
        rx: &mut oneshot::Receiver<T>,
        until: Option<Instant>,
    ) -> Option<T> {
        loop {
            match rx.try_recv() {
                Ok(v) => return Some(v),
                Err(oneshot::error::TryRecvError::Closed) => return None,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            if until.is_some_and(|t| now() >= t) {
                return None;
            }
            let mut role = lock(&self.role);
            if role.events {
                drop(role);
                // The event thread reads; it times requests out when it
                // wakes, and so does this caller when its limit passes.
                let limit = self.next_deadline().into_iter().chain(until).min();
                if let Some(v) = block_on(&mut *rx, limit) {
                    return v.ok();
                }
                let mut core = lock(&self.core);
                core.session.handle_timeout(now());
                core.settle(&self.shared);
                continue;
            }
            if !role.taken {
                role.taken = true;
                drop(role);
                let got = self.read_until(rx, until);
                self.release_role();
                if let Some(got) = got {
                    return got;
                }
                continue;
            }
            // Another caller reads; it lets go once its reply is in.
            let _unused = self.role_cv.wait_timeout(role, NAP).map(drop).map_err(drop);
        }
    }

    /// The session's next deadline.
    fn next_deadline(&self) -> Option<Instant> {
        lock(&self.core).session.poll_timeout()
    }

    fn try_take_role(&self) -> bool {
        let mut role = lock(&self.role);
        if role.taken || role.events {
            return false;
        }
        role.taken = true;
        true
    }

    fn release_role(&self) {
        let mut role = lock(&self.role);
        role.taken = false;
        if role.waiters > 0 {
            self.role_cv.notify_all();
        }
    }

    /// Holding the read role: drives until `rx` gets something (returned,
    /// `Some(None)` when it was dropped), the client stops or `until`.
    fn read_until<T>(
        &self,
        rx: &mut oneshot::Receiver<T>,
        until: Option<Instant>,
    ) -> Option<Option<T>> {
        let mut got = None;
        self.pump(
            &mut || match rx.try_recv() {
                Ok(v) => {
                    got = Some(Some(v));
                    true
                }
                Err(oneshot::error::TryRecvError::Closed) => {
                    got = Some(None);
                    true
                }
                Err(oneshot::error::TryRecvError::Empty) => false,
            },
            until,
        );
        got
    }

    /// Holding the read role: reads what idle connections have waiting
    /// (a node may have closed them), without waiting for more.
    fn check_idle(&self, t: Instant) {
        let mut links = lock(&self.links);
        let mut i = 0;
        while i < links.len() {
            let link = &mut links[i];
            if t.saturating_duration_since(link.last_read) < IDLE_CHECK
                || !link.reader.readable_now()
            {
                i += 1;
                continue;
            }
            // Something (or the end) is there: take it.
            let r = link.reader.recv(Some(Duration::from_millis(1)));
            if self.on_received(&mut links, i, r) {
                i += 1;
            }
        }
    }

    /// Holding the read role: runs the connection until `done` says so,
    /// the client stops, or `until` passes.
    fn pump(&self, done: &mut dyn FnMut() -> bool, until: Option<Instant>) {
        let mut links = lock(&self.links);
        let mut turn = 0usize;
        loop {
            if done() {
                return;
            }
            let t = now();
            if until.is_some_and(|u| t >= u) {
                return;
            }
            let (wake, connect, parked, timed) = {
                let mut core = lock(&self.core);
                let mut due = core.session.poll_timeout();
                let timed = due.is_some_and(|d| d <= t);
                if timed {
                    core.session.handle_timeout(t);
                    core.settle(&self.shared);
                    due = core.session.poll_timeout();
                }
                links.retain(|l| core.writers.iter().any(|(c, _)| *c == l.conn));
                if core.finished {
                    links.clear();
                    return;
                }
                let connect = match &core.connect {
                    Some(c) if c.at <= t => core.connect.take(),
                    _ => None,
                };
                let wake = [due, core.connect.as_ref().map(|c| c.at), until]
                    .into_iter()
                    .flatten()
                    .min();
                let parked = if core.session.wants_read() {
                    None
                } else {
                    core.session.parked_waiter()
                };
                (wake, connect, parked, timed)
            };
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            if let Some(pc) = connect {
                self.open(pc, &mut links);
                continue;
            }
            // Requests that timed out just now may include the awaited one.
            if timed && done() {
                return;
            }
            if let Some(w) = parked {
                // A full room stream holds reading up: wait for room.
                if block_on(w.ready(), wake).is_some() {
                    lock(&self.core).session.handle_capacity();
                }
                lock(&self.core).settle(&self.shared);
                continue;
            }
            if links.is_empty() {
                let wait = wake.map(|w| w.saturating_duration_since(t));
                std::thread::sleep(wait.map_or(NAP, |w| w.min(NAP)));
                continue;
            }
            let (i, wake) = if links.len() == 1 {
                (0, wake)
            } else {
                turn = turn.wrapping_add(1);
                let slice = t + SLICE;
                (
                    turn % links.len(),
                    Some(wake.map_or(slice, |w| w.min(slice))),
                )
            };
            let r = links[i].reader.recv_by(wake, Some(t));
            self.on_received(&mut links, i, r);
        }
    }

    /// Hands what link `i` read to the session; false when the link is
    /// gone (removed).
    fn on_received(
        &self,
        links: &mut Vec<ReadLink>,
        i: usize,
        r: Result<Received, thingsdb_transport::Error>,
    ) -> bool {
        let conn = links[i].conn;
        let lost = match r {
            Ok(Received::TimedOut) => return true,
            Ok(Received::Frame(f)) => {
                let link = &mut links[i];
                let t = now();
                link.last_read = t;
                let mut core = lock(&self.core);
                core.session.handle_frame(t, conn, f);
                // Everything already read goes to the session before its
                // answers are written, so they go out in one write.
                let mut bad = None;
                while link.reader.has_buffered_frame() {
                    match link.reader.recv(Some(Duration::ZERO)) {
                        Ok(Received::Frame(f)) => core.session.handle_frame(t, conn, f),
                        Ok(_) => break,
                        Err(e) => {
                            bad = Some(e);
                            break;
                        }
                    }
                }
                if bad.is_none() && core.session.awaits_node() {
                    link.reader.quick_ack();
                }
                core.settle(&self.shared);
                match bad {
                    None => return true,
                    Some(e) => ConnectionLost::from_transport(e),
                }
            }
            Ok(Received::Closed) => {
                ConnectionLost::new(LostReason::ClosedByPeer, "the node closed the connection")
            }
            Err(e) => ConnectionLost::from_transport(e),
        };
        links.swap_remove(i);
        let mut core = lock(&self.core);
        if let Some(pos) = core.writers.iter().position(|(c, _)| *c == conn) {
            let (_, mut w) = core.writers.swap_remove(pos);
            w.close();
            core.session.handle_lost(now(), conn, lost);
        }
        core.settle(&self.shared);
        false
    }

    /// Opens the connection the session asked for.
    fn open(&self, pc: PendingConnect, links: &mut Vec<ReadLink>) {
        let r = connect_one(&self.config, &pc.target);
        let mut core = lock(&self.core);
        match r {
            Ok((reader, writer)) => {
                info!(conn = pc.conn.0, "connected");
                core.writers.push((pc.conn, writer));
                links.push(ReadLink {
                    conn: pc.conn,
                    reader,
                    last_read: now(),
                });
                // The blocking driver does not ask which node answered.
                core.session.handle_connected(now(), pc.conn, None);
            }
            Err(e) => core.session.handle_connect_failed(now(), pc.conn, &e),
        }
        core.settle(&self.shared);
    }

    /// Starts the event thread, once: from now on it reads, so that
    /// events come while no caller is waiting for a reply.
    pub(crate) fn start_events(self: &Arc<Driver>) -> Result<(), Error> {
        let mut t = lock(&self.event_thread);
        if t.is_some() {
            return Ok(());
        }
        lock(&self.role).events = true;
        self.role_cv.notify_all();
        let d = self.clone();
        let handle = std::thread::Builder::new()
            .name("thingsdb-events".into())
            .spawn(move || d.event_loop())
            .map_err(|e| {
                Error::Transport(
                    crate::error::TransportError::new(
                        crate::error::TransportErrorKind::Io,
                        format!("cannot start the event thread: {e}"),
                    )
                    .with_source(e),
                )
            })?;
        *t = Some(handle);
        Ok(())
    }

    fn event_loop(&self) {
        {
            let mut role = lock(&self.role);
            while role.taken {
                role = self.role_cv.wait(role).unwrap_or_else(|p| p.into_inner());
            }
            role.taken = true;
        }
        let stop = &self.stop;
        self.pump(&mut || stop.load(Ordering::Acquire), None);
        self.release_role();
    }

    /// Whether the event thread runs.
    pub(crate) fn event_threads(&self) -> usize {
        usize::from(lock(&self.event_thread).is_some())
    }

    /// Every handle is gone: finish, close the sockets, stop the event
    /// thread.
    pub(crate) fn shutdown(&self) {
        {
            let mut core = lock(&self.core);
            core.session.handle_handles_gone();
            core.settle(&self.shared);
        }
        // Whatever the session still waits for, the sockets go now.
        self.stop.store(true, Ordering::Release);
        let mut core = lock(&self.core);
        for (_, w) in core.writers.iter_mut() {
            w.close();
        }
        if !core.finished {
            let _ = self.shared.dead.set(Error::Closed);
            self.shared.publish_serving(None, &[]);
        }
    }
}

impl Core {
    /// Does what the session asked: connections to open or close, batches
    /// to write; publishes its state; finishes when it ended.
    fn settle(&mut self, shared: &Shared) {
        loop {
            while let Some(out) = self.session.poll_output() {
                match out {
                    Output::Connect {
                        conn,
                        target,
                        delay,
                        ..
                    } => {
                        self.connect = Some(PendingConnect {
                            conn,
                            target,
                            at: now() + delay,
                        });
                    }
                    Output::Close { conn } => {
                        if let Some(pos) = self.writers.iter().position(|(c, _)| *c == conn) {
                            let (_, mut w) = self.writers.swap_remove(pos);
                            if let Some(batch) = self.session.poll_transmit(conn) {
                                let _ = w.send(batch);
                            }
                            w.close();
                        }
                    }
                }
            }
            // Lifecycle events (connected, lost, moved) have no blocking
            // receiver yet: the session's own log of them is all.
            while self.session.poll_event().is_some() {}
            let mut lost = None;
            for (conn, w) in self.writers.iter_mut() {
                if let Some(batch) = self.session.poll_transmit(*conn) {
                    if let Err(e) = w.send(batch) {
                        lost = Some((*conn, e));
                        break;
                    }
                }
            }
            match lost {
                Some((conn, e)) => {
                    if let Some(pos) = self.writers.iter().position(|(c, _)| *c == conn) {
                        let (_, mut w) = self.writers.swap_remove(pos);
                        w.close();
                    }
                    self.session
                        .handle_lost(now(), conn, ConnectionLost::from_transport(e));
                }
                None => break,
            }
        }
        shared.frames.put_all(self.session.spent_frames());
        shared
            .connections
            .store(self.session.connections_made(), Ordering::Relaxed);
        shared
            .in_flight
            .store(self.session.in_flight(), Ordering::Relaxed);
        shared.publish_serving(self.session.serving_index(), self.session.pool().targets());
        if !self.finished {
            if let Some(e) = self.session.finished() {
                self.finished = true;
                let _ = shared.dead.set(e.clone());
                shared.in_flight.store(0, Ordering::Relaxed);
                shared.publish_serving(None, &[]);
                for (_, w) in self.writers.iter_mut() {
                    w.close();
                }
                self.writers.clear();
                self.connect = None;
                for ack in self.session.take_close_acks() {
                    let _ = ack.send(());
                }
            }
        }
    }
}
