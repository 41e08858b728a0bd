//! The tokio driver of a [`Session`]: sockets, write batching, sleeps.
//!
//! One task runs [`run`]. It owns the connections' halves, reads frames and
//! hands them to the session, writes what the session queued (everything
//! queued while the previous write was in progress goes out in one write),
//! sleeps until the session's next deadline, opens connections when asked
//! (after the session's backoff delay), and passes commands from client
//! handles. It keeps no protocol state.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use thingsdb_protocol::Frame;
use thingsdb_transport::{FrameRecv, FrameSend, Target};
use tokio::sync::mpsc;
use tracing::info;

use super::handshake::{connect_one, Established};
use super::session::{reject, Command, ConnId, Output, Session, SessionConfig};
use crate::config::Config;
use crate::error::{ConnectionLost, Error};

/// How many queued commands one wake-up takes at most, so that replies and
/// events keep flowing under a flood of requests.
const DRAIN_BATCH: usize = 512;

/// What client handles send to the driver.
pub(crate) enum Input {
    /// A command for the session.
    Cmd(Command),
    /// More nodes for the pool (cluster discovery, management).
    AddTargets(Vec<Target>),
}

/// State shared between the driver and the handles, for diagnostics.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Why the client stopped for good, once it has.
    pub dead: OnceLock<Error>,
    /// Requests sent and not yet answered (published by the driver).
    pub in_flight: AtomicUsize,
    /// Connections made so far (the first included).
    pub connections: AtomicU64,
}

type BoxFut = Pin<Box<dyn Future<Output = Event> + Send>>;

/// What one of the driver's futures finished with.
enum Event {
    Read(
        ConnId,
        Box<dyn FrameRecv>,
        Result<Option<Frame>, thingsdb_transport::Error>,
    ),
    Wrote(
        ConnId,
        Box<dyn FrameSend>,
        Result<(), thingsdb_transport::Error>,
    ),
    Connected(ConnId, Result<Established, Error>),
    Closed,
}

fn read(conn: ConnId, mut rx: Box<dyn FrameRecv>) -> BoxFut {
    Box::pin(async move {
        let r = rx.recv().await;
        Event::Read(conn, rx, r)
    })
}

fn write(conn: ConnId, mut tx: Box<dyn FrameSend>, batch: Bytes) -> BoxFut {
    Box::pin(async move {
        let r = tx.send(batch).await;
        Event::Wrote(conn, tx, r)
    })
}

fn close(mut tx: Box<dyn FrameSend>, rest: Option<Bytes>) -> BoxFut {
    Box::pin(async move {
        if let Some(rest) = rest {
            let _ = tx.send(rest).await;
        }
        let _ = tx.close().await;
        Event::Closed
    })
}

/// The driver's side of one open connection.
struct Link {
    /// The writer when no write is in progress.
    idle_tx: Option<Box<dyn FrameSend>>,
    /// The session let go of it: close once the current write is done.
    closing: bool,
}

/// The time as the session sees it (tokio's clock, so that paused time in
/// tests applies).
fn now() -> web_time::Instant {
    tokio::time::Instant::now().into_std()
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
    let mut session = Session::new(SessionConfig {
        keepalive: config.keepalive,
        reconnect: config.reconnect.clone(),
        pool_len: targets.len(),
    });
    let mut links: HashMap<ConnId, Link> = HashMap::new();
    let mut futs: FuturesUnordered<BoxFut> = FuturesUnordered::new();
    let mut paused: Vec<(ConnId, Box<dyn FrameRecv>)> = Vec::new();
    // Graceful closes (a last write, then close), apart from `futs` so
    // that finishing can wait for them alone.
    let mut closes: FuturesUnordered<BoxFut> = FuturesUnordered::new();

    let conn = session.adopt(now(), first_index);
    links.insert(
        conn,
        Link {
            idle_tx: Some(first.tx),
            closing: false,
        },
    );
    futs.push(read(conn, first.rx));

    let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
    let timer = tokio::time::sleep_until(far());
    tokio::pin!(timer);
    let mut timer_at: Option<web_time::Instant> = None;

    loop {
        while let Some(out) = session.poll_output() {
            match out {
                Output::Connect { conn, index, delay } => {
                    let config = config.clone();
                    let target = targets.get(index).cloned();
                    futs.push(Box::pin(async move {
                        tokio::time::sleep(delay).await;
                        let r = match target {
                            Some(t) => connect_one(&config, &t).await,
                            None => Err(Error::BadArgument("no such pool entry".into())),
                        };
                        Event::Connected(conn, r)
                    }));
                }
                Output::Close { conn } => {
                    if let Some(link) = links.get_mut(&conn) {
                        match link.idle_tx.take() {
                            Some(tx) => {
                                closes.push(close(tx, session.poll_transmit(conn)));
                                links.remove(&conn);
                            }
                            None => link.closing = true,
                        }
                    }
                    paused.retain(|(c, _)| *c != conn);
                }
            }
        }
        shared
            .connections
            .store(session.connections_made(), Relaxed);
        shared.in_flight.store(session.in_flight(), Relaxed);
        if let Some(e) = session.finished() {
            let e = e.clone();
            drop(futs);
            finish(
                &mut session,
                &mut cmd_rx,
                &shared,
                e,
                links,
                closes,
                &config,
            )
            .await;
            return;
        }
        for (conn, link) in links.iter_mut() {
            if link.idle_tx.is_some() {
                if let Some(batch) = session.poll_transmit(*conn) {
                    if let Some(tx) = link.idle_tx.take() {
                        futs.push(write(*conn, tx, batch));
                    }
                }
            }
        }
        if session.wants_read() {
            for (conn, rx) in paused.drain(..) {
                futs.push(read(conn, rx));
            }
        }
        // Arm the one timer for the session's next deadline.
        let next = session.poll_timeout();
        if next != timer_at {
            let at = next.map(tokio::time::Instant::from_std).unwrap_or_else(far);
            timer.as_mut().reset(at);
            timer_at = next;
        }
        let parked = session.parked_sender();
        let accepting = session.wants_commands();
        // Biased: frames already received are handled first, so that
        // requests their callers send in answer go out together in one
        // write rather than one write per request.
        tokio::select! {
            biased;
            Some(ev) = futs.next(), if !futs.is_empty() => match ev {
                Event::Read(conn, rx, r) => {
                    if !links.contains_key(&conn) {
                        continue;
                    }
                    match r {
                        Ok(Some(frame)) => {
                            session.handle_frame(now(), conn, frame);
                            if links.contains_key(&conn) {
                                if session.wants_read() {
                                    futs.push(read(conn, rx));
                                } else {
                                    paused.push((conn, rx));
                                }
                            }
                        }
                        Ok(None) => {
                            links.remove(&conn);
                            session.handle_lost(
                                now(),
                                conn,
                                ConnectionLost::new(
                                    crate::error::LostReason::ClosedByPeer,
                                    "the node closed the connection",
                                ),
                            );
                        }
                        Err(e) => {
                            links.remove(&conn);
                            session.handle_lost(now(), conn, ConnectionLost::from_transport(e));
                        }
                    }
                }
                Event::Wrote(conn, tx, r) => {
                    let Some(link) = links.get_mut(&conn) else {
                        continue;
                    };
                    match r {
                        Ok(()) if link.closing => {
                            closes.push(close(tx, session.poll_transmit(conn)));
                            links.remove(&conn);
                        }
                        Ok(()) => link.idle_tx = Some(tx),
                        Err(e) => {
                            links.remove(&conn);
                            session.handle_lost(now(), conn, ConnectionLost::from_transport(e));
                        }
                    }
                }
                Event::Connected(conn, r) => match r {
                    Ok(est) => {
                        info!(conn = conn.0, "connected");
                        links.insert(conn, Link { idle_tx: Some(est.tx), closing: false });
                        futs.push(read(conn, est.rx));
                        session.handle_connected(now(), conn);
                    }
                    Err(e) => session.handle_connect_failed(now(), conn, &e),
                },
                Event::Closed => {}
            },
            Some(_) = closes.next(), if !closes.is_empty() => {}
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
                    apply(&mut session, &mut targets, input);
                    for _ in 1..DRAIN_BATCH {
                        if !session.wants_commands() {
                            break;
                        }
                        match cmd_rx.try_recv() {
                            Ok(input) => apply(&mut session, &mut targets, input),
                            Err(_) => break,
                        }
                    }
                }
                // Every handle is gone: finish what is in flight.
                None => session.handle_handles_gone(),
            },
            () = &mut timer, if timer_at.is_some() => {
                timer_at = None;
                timer.as_mut().reset(far());
                session.handle_timeout(now());
            }
        }
    }
}

fn apply(session: &mut Session, targets: &mut Vec<Target>, input: Input) {
    match input {
        Input::Cmd(cmd) => session.handle_command(now(), cmd),
        Input::AddTargets(more) => {
            for t in more {
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
    links: HashMap<ConnId, Link>,
    mut closes: FuturesUnordered<BoxFut>,
    config: &Config,
) {
    let _ = shared.dead.set(e.clone());
    shared.in_flight.store(0, Relaxed);
    cmd_rx.close();
    while let Ok(input) = cmd_rx.try_recv() {
        if let Input::Cmd(cmd) = input {
            reject(cmd, e.clone());
        }
    }
    for (_, link) in links {
        if let Some(tx) = link.idle_tx {
            closes.push(close(tx, None));
        }
    }
    // A peer that does not take the close is not waited for longer than a
    // connect.
    let _ = tokio::time::timeout(config.connect.connect_timeout, async {
        while closes.next().await.is_some() {}
    })
    .await;
    for ack in session.take_close_acks() {
        let _ = ack.send(());
    }
}
