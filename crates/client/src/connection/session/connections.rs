//! Connections: the open ones (serving or draining), the one being made,
//! keep-alive, and what follows a failed connect (the next pool entry,
//! back-off, giving up).
//!
//! [`Connections`] owns that state, [`Conn`] one connection's, and
//! [`Connecting::after_failure`] is the reconnect rule; the `impl Session`
//! block below opens, loses and closes connections and says what that
//! means for requests and rooms.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thingsdb_protocol::request;
use tracing::debug;
use web_time::Instant;

use super::requests::Pending;
use super::rng::Rng;
use super::{ConnId, Life, Lifecycle, Output, Session, OUT_HIGH_WATER};
use crate::config::ReconnectPolicy;
use crate::error::{ConnectionLost, Error, LostReason};
use crate::in_flight::MAX_IN_FLIGHT;
use crate::lifecycle::MoveReason;

use super::super::pool::PoolEntry;

/// What an open connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// New requests go here.
    Serving,
    /// Its node is shutting down: it finishes what it has, then closes.
    Draining,
}

/// Keep-alive state of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ping {
    /// No ping out.
    Idle,
    /// A ping is out.
    Outstanding,
}

/// What a keep-alive check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeepAlive {
    /// A ping went unanswered for a whole period with nothing heard: the
    /// connection is dead.
    Dead,
    /// Send a ping now.
    Ping,
    /// A ping is out, and something was heard meanwhile.
    Wait,
}

/// An open (authenticated) connection.
pub(super) struct Conn {
    pub(super) id: ConnId,
    /// Its pool entry.
    pub(super) index: usize,
    pub(super) role: Role,
    /// Bytes to write, batched.
    pub(super) out: BytesMut,
    /// Entries of the in-flight table that belong to this connection.
    pub(super) pending: usize,
    /// Of those, timed-out user requests.
    pub(super) timed_out: usize,
    pub(super) ping: Ping,
    /// Whether anything came since the last keep-alive check.
    pub(super) heard: bool,
    pub(super) next_check: Option<Instant>,
    /// User requests queued on it so far, and how many of those the driver
    /// took to write.
    pub(super) queued: u64,
    pub(super) handed: u64,
}

impl Conn {
    /// A connection that serves from `now`, checked every `keepalive`.
    pub(super) fn new(id: ConnId, index: usize, now: Instant, keepalive: Option<Duration>) -> Conn {
        Conn {
            id,
            index,
            role: Role::Serving,
            out: BytesMut::new(),
            pending: 0,
            timed_out: 0,
            ping: Ping::Idle,
            heard: true,
            next_check: keepalive.and_then(|p| now.checked_add(p)),
            queued: 0,
            handed: 0,
        }
    }

    /// Queues a user's request `frame` under `id`.
    pub(super) fn write_request(&mut self, id: u16, frame: &[u8]) {
        self.out.extend_from_slice(&frame[..4]);
        self.out.extend_from_slice(&id.to_le_bytes());
        self.out.extend_from_slice(&frame[6..]);
        self.pending += 1;
    }

    /// Queues a keep-alive ping under `id`.
    pub(super) fn write_ping(&mut self, id: u16) {
        request::encode_ping(&mut self.out, id);
        self.ping = Ping::Outstanding;
        self.pending += 1;
    }

    /// `p`, which waited on this connection, is answered (or let go).
    pub(super) fn answered(&mut self, p: &Pending) {
        self.pending = self.pending.saturating_sub(1);
        match p {
            Pending::TimedOut { .. } => self.timed_out = self.timed_out.saturating_sub(1),
            Pending::Ping { .. } => self.ping = Ping::Idle,
            _ => {}
        }
    }

    /// Everything queued, as one batch; what was queued so far counts as
    /// written from now on.
    pub(super) fn transmit(&mut self) -> Option<Bytes> {
        self.handed = self.queued;
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    /// Whether a user's request queued as number `queued` was handed to
    /// the driver to write.
    pub(super) fn was_written(&self, queued: u64) -> bool {
        queued <= self.handed
    }

    /// Answers still expected on it, but for timed-out requests and the
    /// keep-alive ping.
    pub(super) fn waiting(&self) -> usize {
        self.pending
            .saturating_sub(self.timed_out)
            .saturating_sub(usize::from(self.ping == Ping::Outstanding))
    }

    /// The keep-alive check at `now`, every `period`; `reading_paused`
    /// while a full stream holds reading up (an answer may wait unread:
    /// no verdict then).
    pub(super) fn keepalive(
        &mut self,
        now: Instant,
        period: Duration,
        reading_paused: bool,
    ) -> KeepAlive {
        self.next_check = now.checked_add(period);
        if reading_paused {
            self.heard = true;
        }
        if self.ping == Ping::Outstanding && !self.heard {
            return KeepAlive::Dead;
        }
        self.heard = false;
        match self.ping {
            Ping::Idle => KeepAlive::Ping,
            Ping::Outstanding => KeepAlive::Wait,
        }
    }
}

/// A connection being made.
pub(super) struct Connecting {
    pub(super) conn: ConnId,
    pub(super) index: usize,
    /// Failed tries so far in this round of attempts.
    pub(super) tries: u32,
    /// Whether it replaces a serving connection whose node is shutting down
    /// (the old one keeps serving meanwhile).
    pub(super) moving: bool,
    /// Whether it is of the first round, before any connection was made:
    /// each entry is tried once, without back-off, and when none answers
    /// (or one refuses the credentials) the session ends with the error,
    /// which `connect()` returns.
    pub(super) first: bool,
}

/// What to do after a failed connect.
#[derive(Debug, Clone)]
pub(super) enum AfterFailure {
    /// Try the next pool entry after `delay`, with `tries` failures so far.
    Next { tries: u32, delay: Duration },
    /// The session ends with this error.
    Finish(Error),
    /// Stop trying (a move whose old connection still serves).
    Stop,
}

impl Connecting {
    /// The reconnect rule, after this attempt failed with `error`: bad
    /// credentials are not fixed by trying the rest of the pool; the first
    /// round tries each of `pool` entries once, without back-off; later
    /// rounds wait `policy`'s back-off after each full round and give up
    /// after its `max_attempts` rounds.
    pub(super) fn after_failure(
        &self,
        pool: usize,
        error: &Error,
        policy: &ReconnectPolicy,
        rng: &mut Rng,
    ) -> AfterFailure {
        let pool = pool.max(1);
        let mut tries = self.tries.saturating_add(1);
        let auth = error.code() == Some(thingsdb_protocol::ErrorCode::Auth);
        if self.first {
            return if auth || tries as usize >= pool {
                AfterFailure::Finish(error.clone())
            } else {
                AfterFailure::Next {
                    tries,
                    delay: Duration::ZERO,
                }
            };
        }
        if auth {
            // The rest of this round is skipped.
            let round = (tries as usize).div_ceil(pool);
            tries = u32::try_from(round * pool).unwrap_or(u32::MAX);
        }
        let round = tries as usize / pool;
        let round_over = tries as usize % pool == 0;
        if let Some(max) = policy.max_attempts {
            if round >= max as usize && round_over {
                if self.moving {
                    // The old connection still serves; it ends with its node.
                    return AfterFailure::Stop;
                }
                return AfterFailure::Finish(Error::ConnectionLost(ConnectionLost::new(
                    LostReason::GaveUp,
                    format!("gave up reconnecting after {round} attempts: {error}"),
                )));
            }
        }
        let delay = if round_over {
            policy.delay_with(u32::try_from(round).unwrap_or(u32::MAX), |max| {
                rng.up_to(max)
            })
        } else {
            Duration::ZERO
        };
        AfterFailure::Next { tries, delay }
    }
}

/// The session's connections.
#[derive(Default)]
pub(super) struct Connections {
    /// Open connections: the serving one, and draining ones.
    pub(super) list: Vec<Conn>,
    /// The connection new requests go to.
    pub(super) serving: Option<ConnId>,
    /// The connection being made, if any (one at a time).
    pub(super) connecting: Option<Connecting>,
    next_id: u64,
    /// Connections made so far.
    pub(super) made: u64,
    /// The pool index of the serving connection that was lost last, until
    /// another serves.
    pub(super) lost_serving: Option<usize>,
}

impl Connections {
    /// A new connection id: one per attempt.
    pub(super) fn new_id(&mut self) -> ConnId {
        self.next_id += 1;
        ConnId(self.next_id)
    }

    /// The open connection `conn`.
    pub(super) fn get(&self, conn: ConnId) -> Option<&Conn> {
        self.list.iter().find(|c| c.id == conn)
    }

    /// The open connection `conn`.
    pub(super) fn get_mut(&mut self, conn: ConnId) -> Option<&mut Conn> {
        self.list.iter_mut().find(|c| c.id == conn)
    }

    /// The serving connection.
    pub(super) fn serving_conn(&self) -> Option<&Conn> {
        self.get(self.serving?)
    }

    /// Forgets `conn`, returning it.
    pub(super) fn remove(&mut self, conn: ConnId) -> Option<Conn> {
        let pos = self.list.iter().position(|c| c.id == conn)?;
        Some(self.list.remove(pos))
    }

    /// The connections whose node is shutting down.
    pub(super) fn draining(&self) -> Vec<ConnId> {
        self.list
            .iter()
            .filter(|c| c.role == Role::Draining)
            .map(|c| c.id)
            .collect()
    }

    /// Whether nothing was ever opened or tried.
    pub(super) fn untouched(&self) -> bool {
        self.made == 0 && self.connecting.is_none() && self.list.is_empty()
    }

    /// The earliest keep-alive check.
    pub(super) fn next_check(&self) -> Option<Instant> {
        self.list.iter().filter_map(|c| c.next_check).min()
    }

    /// The connections whose keep-alive check is due at `now`.
    pub(super) fn checks_due(&self, now: Instant) -> Vec<ConnId> {
        self.list
            .iter()
            .filter(|c| c.next_check.is_some_and(|t| t <= now))
            .map(|c| c.id)
            .collect()
    }

    /// Answers still expected on every open connection (see
    /// [`Conn::waiting`]).
    pub(super) fn waiting(&self) -> usize {
        self.list.iter().map(Conn::waiting).sum()
    }
}

impl Session {
    /// Whether the serving connection takes another request: an id free
    /// (with keep-alive on, one is kept for the ping, so a dead peer is
    /// noticed even with every other id taken), and not too much waiting to
    /// be written.
    pub(super) fn can_send(&self) -> bool {
        let reserved = usize::from(self.cfg.keepalive.is_some());
        self.conns.serving_conn().is_some_and(|c| {
            self.requests.len() + reserved < MAX_IN_FLIGHT && c.out.len() < OUT_HIGH_WATER
        })
    }

    /// Adds nodes to the pool; the first ones start the first round of
    /// connects (at a random entry when the config says so).
    pub(super) fn add_nodes(&mut self, more: Vec<PoolEntry>) {
        self.pool.add(more);
        if self.conns.untouched() && matches!(self.life, Life::Open) && !self.pool.is_empty() {
            let n = self.pool.len() as u64;
            let start = if self.cfg.random_start && n > 1 {
                self.rng.up_to(n - 1) as usize
            } else {
                0
            };
            self.start_connect(start, 0, false, Duration::ZERO);
            if let Some(c) = &mut self.conns.connecting {
                c.first = true;
            }
        }
    }

    fn start_connect(&mut self, index: usize, tries: u32, moving: bool, delay: Duration) {
        let Some(target) = self.pool.target(index).cloned() else {
            return; // an empty pool: nothing to connect to
        };
        let conn = self.conns.new_id();
        self.conns.connecting = Some(Connecting {
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

    /// The connection the session asked for is open and authenticated;
    /// `node_id` is the node that answered, when the driver asked. A
    /// learnt pool entry that reached another node than its own counts as
    /// a failed connect.
    pub(crate) fn handle_connected(&mut self, now: Instant, conn: ConnId, node_id: Option<u32>) {
        let Some(connecting) = self.conns.connecting.take_if(|c| c.conn == conn) else {
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
            self.conns.connecting = Some(connecting);
            self.handle_connect_failed(now, conn, &e);
            return;
        }
        self.open(now, conn, connecting.index, node_id);
        self.after_input(now);
    }

    /// Connecting (or authenticating) failed.
    pub(crate) fn handle_connect_failed(&mut self, now: Instant, conn: ConnId, error: &Error) {
        let Some(c) = self.conns.connecting.take_if(|c| c.conn == conn) else {
            return;
        };
        debug!(error = %error, index = c.index, "connect failed");
        if !matches!(self.life, Life::Open) {
            self.check_closed();
            return;
        }
        if error.code() == Some(thingsdb_protocol::ErrorCode::Auth) {
            self.events.push_back(Lifecycle::AuthFailed {
                index: c.index,
                error: error.clone(),
            });
        }
        match c.after_failure(self.pool.len(), error, &self.cfg.reconnect, &mut self.rng) {
            AfterFailure::Finish(e) => self.finish(e),
            AfterFailure::Stop => {}
            AfterFailure::Next { tries, delay } => {
                let index = self.pool.next(c.index);
                self.start_connect(index, tries, c.moving, delay);
                if let Some(next) = &mut self.conns.connecting {
                    next.first = c.first;
                }
                self.after_input(now);
            }
        }
    }

    /// An open connection broke (or the node closed it).
    pub(crate) fn handle_lost(&mut self, now: Instant, conn: ConnId, lost: ConnectionLost) {
        if self.conns.get(conn).is_none() {
            return;
        }
        tracing::warn!(reason = %lost, "connection lost");
        self.drop_conn(now, conn, lost);
        self.after_input(now);
    }

    /// `conn` is open and serves from now on; the one serving before (if
    /// any) drains: make before break.
    fn open(&mut self, now: Instant, conn: ConnId, index: usize, node_id: Option<u32>) {
        self.conns.made += 1;
        self.conns
            .list
            .push(Conn::new(conn, index, now, self.cfg.keepalive));
        let old = self.conns.serving.replace(conn);
        debug!(conn = conn.0, index, replaces = ?old.map(|c| c.0), "serving");
        self.events.push_back(Lifecycle::Connected {
            conn,
            index,
            node_id,
        });
        let from = match old.and_then(|o| self.conns.get(o)) {
            Some(o) => Some((o.index, MoveReason::ShuttingDown)),
            None => self
                .conns
                .lost_serving
                .take()
                .map(|i| (i, MoveReason::Lost)),
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
                if let Some(c) = self.conns.get_mut(old) {
                    c.role = Role::Draining;
                    c.next_check = None;
                }
                self.rooms_move(old, conn);
                self.maybe_close_draining(old);
            }
            None => self.rooms_rejoin(conn),
        }
        self.flush_held(now);
    }

    /// Forgets `conn`: what was in flight on it fails, or is sent again
    /// where the resend rules allow; rooms joined on it are joined again on
    /// the next connection.
    pub(super) fn drop_conn(&mut self, now: Instant, conn: ConnId, lost: ConnectionLost) {
        let Some(c) = self.conns.remove(conn) else {
            return;
        };
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
        if self.conns.serving == Some(conn) {
            self.conns.lost_serving = Some(c.index);
        }
        let failed = self.requests.table.drain_where(|p| p.conn() == conn);
        debug!(conn = conn.0, index = c.index, role = ?c.role, waiting = failed.len(), reason = %lost, "connection let go");
        // Requests that did not run (never written), or may run twice
        // (idempotent), go out again once the serving connection is known.
        let mut again = Vec::new();
        for p in failed {
            match p {
                Pending::User {
                    mut req, queued, ..
                } => {
                    let written = c.was_written(queued);
                    if (!written || req.idempotent)
                        && req.may_resend(now, self.cfg.request_attempts)
                    {
                        req.ran |= written;
                        again.push(req);
                    } else if written {
                        req.fail(Error::ConnectionLost(lost.clone()));
                    } else {
                        req.fail(Error::ConnectionLost(lost.clone().unwritten()));
                    }
                }
                p => self.fail_pending(p, Error::ConnectionLost(lost.clone())),
            }
        }
        // Rooms: the old side of a hand-over is done; streams of rooms that
        // were joined here see `Disconnected` unless a hand-over carries on.
        self.rooms_conn_gone(conn);
        if self.conns.serving == Some(conn) {
            self.conns.serving = None;
            // A draining connection does not outlive its successor.
            for d in self.conns.draining() {
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
            match &mut self.conns.connecting {
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

    /// Closes a draining connection once nothing more is expected on it.
    pub(super) fn maybe_close_draining(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        if c.role != Role::Draining || c.pending > c.timed_out || self.rooms.busy_on(conn) {
            return;
        }
        debug!(conn = conn.0, "draining connection done");
        self.conns.remove(conn);
        // Late replies cannot come once it is closed: free their ids.
        let _ = self.requests.table.drain_where(|p| p.conn() == conn);
        self.rooms_conn_closed(conn);
        self.outputs.push_back(Output::Close { conn });
    }

    /// The keep-alive check of `conn`: a ping goes out, or a connection
    /// that did not answer the last one is given up.
    pub(super) fn keepalive_check(&mut self, now: Instant, conn: ConnId) {
        let Some(period) = self.cfg.keepalive else {
            return;
        };
        let paused = !self.delivery.wants_read();
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        match c.keepalive(now, period, paused) {
            KeepAlive::Dead => {
                self.outputs.push_back(Output::Close { conn });
                self.drop_conn(
                    now,
                    conn,
                    ConnectionLost::new(
                        LostReason::KeepAliveTimeout,
                        format!("no answer to a keep-alive ping within {period:?}"),
                    ),
                );
            }
            KeepAlive::Ping => {
                if let Some(id) = self.requests.table.insert(Pending::Ping { conn }) {
                    c.write_ping(id);
                }
            }
            KeepAlive::Wait => {}
        }
    }

    /// The serving node said it is shutting down: make a connection to the
    /// next pool entry while this one keeps serving.
    pub(super) fn node_shutting_down(&mut self, now: Instant, conn: ConnId) {
        if self.conns.serving != Some(conn)
            || self.pool.len() < 2
            || !self.cfg.reconnect.enabled
            || self.conns.connecting.is_some()
            || !matches!(self.life, Life::Open)
        {
            return;
        }
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        // A connection still draining is let go: its node went first.
        let index = self.pool.next(c.index);
        for d in self.conns.draining() {
            self.outputs.push_back(Output::Close { conn: d });
            self.drop_conn(
                now,
                d,
                ConnectionLost::new(LostReason::NodeShuttingDown, "the node is shutting down"),
            );
        }
        self.start_connect(index, 0, true, Duration::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ThingsdbError;

    fn policy(max_attempts: Option<u32>) -> ReconnectPolicy {
        ReconnectPolicy {
            enabled: true,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_attempts,
        }
    }

    fn connecting(first: bool) -> Connecting {
        Connecting {
            conn: ConnId(1),
            index: 0,
            tries: 0,
            moving: false,
            first,
        }
    }

    fn refused() -> Error {
        Error::transport(crate::error::TransportErrorKind::Refused, "refused")
    }

    fn bad_credentials() -> Error {
        Error::Thingsdb(ThingsdbError::new(
            thingsdb_protocol::ErrorCode::Auth,
            "bad credentials",
        ))
    }

    /// Failures until the rule says finish; the delays on the way.
    fn walk(mut c: Connecting, pool: usize, e: &Error, p: &ReconnectPolicy) -> Vec<Duration> {
        let mut rng = Rng::new(3);
        let mut delays = Vec::new();
        for _ in 0..100 {
            match c.after_failure(pool, e, p, &mut rng) {
                AfterFailure::Next { tries, delay } => {
                    delays.push(delay);
                    c.tries = tries;
                }
                AfterFailure::Finish(_) => return delays,
                AfterFailure::Stop => panic!("stopped"),
            }
        }
        panic!("never finished")
    }

    #[test]
    fn the_first_round_tries_each_entry_once_without_back_off() {
        let d = walk(connecting(true), 3, &refused(), &policy(None));
        assert_eq!(d, [Duration::ZERO; 2], "3 tries, the third failure ends it");
        let d = walk(connecting(true), 3, &bad_credentials(), &policy(None));
        assert!(d.is_empty(), "bad credentials end it at once");
    }

    #[test]
    fn later_rounds_back_off_at_each_round_end_and_give_up_after_max() {
        let d = walk(connecting(false), 3, &refused(), &policy(Some(2)));
        // Tries 1, 2 (next entry at once), 3 (round over: back-off), 4, 5,
        // then the 6th failure ends round 2: given up.
        assert_eq!(d.len(), 5, "{d:?}");
        assert_eq!(d.iter().filter(|d| d.is_zero()).count(), 4, "{d:?}");
        assert!(!d[2].is_zero(), "a back-off after a whole round");
    }

    #[test]
    fn bad_credentials_skip_the_rest_of_a_round() {
        let mut rng = Rng::new(3);
        let c = connecting(false);
        match c.after_failure(3, &bad_credentials(), &policy(Some(5)), &mut rng) {
            AfterFailure::Next { tries, delay } => {
                assert_eq!(tries, 3, "the round counts as tried");
                assert!(!delay.is_zero(), "and is backed off");
            }
            other => panic!("{other:?}"),
        }
        let mut c = connecting(false);
        c.tries = 1;
        match c.after_failure(3, &bad_credentials(), &policy(Some(1)), &mut rng) {
            AfterFailure::Finish(e) => assert!(e.to_string().contains("gave up"), "{e}"),
            other => panic!("{other:?}"),
        }
        c.moving = true;
        assert!(matches!(
            c.after_failure(3, &bad_credentials(), &policy(Some(1)), &mut rng),
            AfterFailure::Stop
        ));
    }
}
