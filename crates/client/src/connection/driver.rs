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
use tokio::sync::mpsc;
use tracing::info;

use super::handshake::{connect_one, Established};
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
    /// A command for the session.
    Cmd(Command),
    /// More nodes for the pool (management).
    AddTargets(Vec<Target>),
    /// More nodes for the pool, each with the id of the node it must reach
    /// when known (cluster discovery).
    AddNodes(Vec<(Target, Option<u32>)>),
    /// Attach a stream of connection events.
    ConnectionEvents(Box<Sink<ConnectionEvent>>),
}

/// State shared between the driver and the handles, for diagnostics.
#[derive(Debug)]
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
    /// Spans, metrics and the counters of `Client::stats`.
    pub observe: crate::observe::Observer,
}

/// [`Shared::serving`] when no connection serves.
const NOT_SERVING: usize = usize::MAX;

impl Shared {
    /// State for a client whose first connection is to pool entry `index`.
    pub(crate) fn new(index: usize, target: Option<Target>) -> Shared {
        Shared {
            dead: OnceLock::new(),
            in_flight: AtomicUsize::new(0),
            connections: AtomicU64::new(0),
            serving: AtomicUsize::new(index),
            serving_target: Mutex::new(target),
            observe: crate::observe::Observer::default(),
        }
    }

    /// The pool index of the serving connection, if one serves.
    pub(crate) fn serving_index(&self) -> Option<usize> {
        Some(self.serving.load(Relaxed)).filter(|i| *i != NOT_SERVING)
    }

    /// The pool entry of the serving connection, if one serves.
    pub(crate) fn serving_target(&self) -> Option<Target> {
        self.serving_target
            .lock()
            .map_or_else(|p| p.into_inner().clone(), |t| t.clone())
    }

    /// Publishes the serving connection's pool index (a load and compare
    /// when it did not change).
    fn publish_serving(&self, index: Option<usize>, targets: &[Target]) {
        self.observe.sync_pool(targets);
        let new = index.unwrap_or(NOT_SERVING);
        let old = self.serving.load(Relaxed);
        if old == new {
            return;
        }
        let was = Some(old).filter(|i| *i != NOT_SERVING);
        self.observe.serving_changed(was, index, self.dead.get());
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
                    return Poll::Ready(SocketEvent::Flushed);
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

/// Runs a client's connection until it is closed or gives up.
pub(crate) async fn run(
    config: Arc<Config>,
    mut cmd_rx: mpsc::Receiver<Input>,
    shared: Arc<Shared>,
    first_index: usize,
    first: Established,
) {
    let mut targets = config.targets.clone();
    // The node a learnt pool entry must reach.
    let mut expected: Vec<(Target, u32)> = Vec::new();
    let mut session = Session::new(SessionConfig {
        keepalive: config.keepalive,
        reconnect: config.reconnect.clone(),
        pool_len: targets.len(),
        request_attempts: config.request_attempts,
        seed: rand::random(),
    });
    let mut sockets: Vec<Socket> = Vec::with_capacity(2);
    // Connection attempts (rare), and graceful closes.
    let mut connecting: FuturesUnordered<BoxFuture<'static, (ConnId, Result<Established, Error>)>> =
        FuturesUnordered::new();
    let mut closes: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
    let mut start = 0usize;
    // Connection event streams, and the node id each open connection
    // reached (when asked).
    let mut watchers: Vec<Sink<ConnectionEvent>> = Vec::new();
    let mut node_ids: Vec<(ConnId, Option<u32>)> = Vec::new();

    let first_node = first.node_id;
    let conn = session.adopt(now(), first_index);
    node_ids.push((conn, first_node));
    sockets.push(Socket::new(conn, first));

    let mut timer = rt::Timer::new();

    loop {
        while let Some(out) = session.poll_output() {
            match out {
                Output::Connect { conn, index, delay } => {
                    let config = config.clone();
                    let target = targets.get(index).cloned();
                    let span = shared
                        .observe
                        .attempt_span(session.serving_index(), index, delay);
                    let want = target
                        .as_ref()
                        .and_then(|t| expected.iter().find(|(e, _)| e == t).map(|(_, id)| *id));
                    connecting.push(crate::observe::in_span(span, async move {
                        rt::sleep(delay).await;
                        let r = match target {
                            Some(t) => connect_one(&config, &t).await.and_then(|est| {
                                match wrong_node(&t, want, est.node_id) {
                                    Some(e) => Err(e),
                                    None => Ok(est),
                                }
                            }),
                            None => Err(Error::BadArgument("no such pool entry".into())),
                        };
                        (conn, r)
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
            let ev = public_event(ev, &targets, &mut node_ids);
            if let Some(ev) = ev {
                shared.observe.event(&ev);
                watchers.retain_mut(|w| !matches!(w.offer(ev.clone()), Offer::Gone));
            }
        }
        shared
            .connections
            .store(session.connections_made(), Relaxed);
        shared.in_flight.store(session.in_flight(), Relaxed);
        shared.publish_serving(session.serving_index(), &targets);
        if let Some(e) = session.finished() {
            let e = e.clone();
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
        for socket in sockets.iter_mut().filter(|l| !l.writing) {
            if let Some(batch) = session.poll_transmit(socket.conn) {
                shared.observe.sent(batch.len());
                match socket.writer.queue(batch) {
                    Ok(()) => socket.writing = true,
                    Err(e) => lost = Some((socket.conn, ConnectionLost::from_transport(e))),
                }
            }
        }
        if let Some((conn, l)) = lost {
            sockets.retain(|x| x.conn != conn);
            session.handle_lost(now(), conn, l);
            continue;
        }
        // Arm the one timer for the session's next deadline.
        timer.reset(session.poll_timeout());
        let reading = session.wants_read();
        let expecting = session.awaits_node();
        let parked = session.parked_sender();
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
                    node_ids.push((conn, est.node_id));
                    sockets.push(Socket::new(conn, est));
                    session.handle_connected(now(), conn);
                }
                Err(e) => session.handle_connect_failed(now(), conn, &e),
            },
            Some(()) = closes.next(), if !closes.is_empty() => {}
            permit = async {
                match &parked {
                    Some(tx) => tx.clone().reserve_owned().await,
                    None => std::future::pending().await,
                }
            }, if parked.is_some() => match permit {
                Ok(permit) => session.handle_capacity(permit),
                Err(_) => session.handle_parked_gone(),
            },
            cmd = cmd_rx.recv(), if accepting => match cmd {
                Some(input) => {
                    apply(&mut session, &mut targets, &mut expected, &mut watchers, input);
                    for _ in 1..DRAIN_BATCH {
                        if !session.wants_commands() {
                            break;
                        }
                        match cmd_rx.try_recv() {
                            Ok(input) => apply(&mut session, &mut targets, &mut expected, &mut watchers, input),
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

/// The error for a learnt pool entry where another node answered than the
/// one it was learnt for (`want`); `None` when it is that node, or either
/// id is unknown.
fn wrong_node(target: &Target, want: Option<u32>, got: Option<u32>) -> Option<Error> {
    match (want, got) {
        (Some(want), Some(got)) if want != got => Some(Error::Transport(format!(
            "{target} was learnt as node {want} but node {got} answered there"
        ))),
        _ => None,
    }
}

/// A session's lifecycle event as the public stream shows it: pool
/// indexes become targets. `None` for an index out of the pool.
fn public_event(
    ev: Lifecycle,
    targets: &[Target],
    node_ids: &mut Vec<(ConnId, Option<u32>)>,
) -> Option<ConnectionEvent> {
    let target = |i: usize| targets.get(i).cloned();
    Some(match ev {
        Lifecycle::Connected { conn, index } => {
            let node_id = node_ids
                .iter()
                .find(|(c, _)| *c == conn)
                .and_then(|(_, n)| *n);
            node_ids.retain(|(c, _)| *c >= conn);
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

fn apply(
    session: &mut Session,
    targets: &mut Vec<Target>,
    expected: &mut Vec<(Target, u32)>,
    watchers: &mut Vec<Sink<ConnectionEvent>>,
    input: Input,
) {
    match input {
        Input::Cmd(cmd) => session.handle_command(now(), cmd),
        Input::ConnectionEvents(sink) => watchers.push(*sink),
        Input::AddTargets(more) => {
            for t in more {
                if !targets.contains(&t) {
                    targets.push(t);
                }
            }
            session.handle_pool_size(targets.len());
        }
        Input::AddNodes(more) => {
            for (t, id) in more {
                if let Some(id) = id {
                    expected.retain(|(e, _)| *e != t);
                    expected.push((t.clone(), id));
                }
                if !targets.contains(&t) {
                    targets.push(t);
                }
            }
            session.handle_pool_size(targets.len());
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_learnt_entry_must_reach_its_node() {
        let t = Target::tcp("127.0.0.1", 9201);
        assert!(wrong_node(&t, Some(1), Some(1)).is_none());
        assert!(
            wrong_node(&t, None, Some(0)).is_none(),
            "a given target: any node"
        );
        assert!(wrong_node(&t, Some(1), None).is_none(), "not asked");
        let e = wrong_node(&t, Some(1), Some(0)).map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("learnt as node 1 but node 0")));
    }
}
