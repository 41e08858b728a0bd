//! Requests: the ids in flight with what each waits for, deadlines, the
//! commands held while no connection serves, and the requests waiting out
//! a back-off before they are sent again.
//!
//! [`Requests`] owns that state; the `impl Session` block below turns its
//! results into frames on a connection and answers to callers.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use bytes::BytesMut;
use thingsdb_protocol::{Frame, PackageType, Response};
use tracing::{debug, warn};
use web_time::Instant;

use super::{join_result, Command, ConnId, ReplyTx, RoomKey, Session, Subscribe};
use crate::config::ReconnectPolicy;
use crate::error::Error;
use crate::in_flight::InFlight;

/// The back-off between attempts of a request the node answered with
/// NODE_ERROR (-51): 100 ms doubling up to 1 s, jittered.
pub(super) const RESEND_BACKOFF: ReconnectPolicy = ReconnectPolicy {
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
pub(super) struct Req {
    /// The request frame (its id is set per attempt when it is copied
    /// into the connection's write buffer).
    pub(super) frame: BytesMut,
    pub(super) reply: ReplyTx,
    pub(super) deadline: Instant,
    pub(super) timeout: Duration,
    pub(super) idempotent: bool,
    /// Times sent so far.
    pub(super) attempts: u32,
    /// Whether an earlier attempt may have run.
    pub(super) ran: bool,
}

impl Req {
    /// Fails the request with `e`, saying how often it was tried.
    pub(super) fn fail(self, e: Error) {
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

    /// Fails the request with [`Error::Timeout`].
    pub(super) fn time_out(self) {
        let timeout = self.timeout;
        self.fail(Error::Timeout(timeout));
    }

    /// Whether it may be sent again after an attempt without an answer:
    /// fewer than `max` attempts, and time before its deadline.
    pub(super) fn may_resend(&self, now: Instant, max: u32) -> bool {
        self.attempts < max && now < self.deadline
    }
}

/// Something held while no connection serves.
pub(super) enum Held {
    Request(Req),
    Subscribe(Box<Subscribe>),
}

/// Something a connection waits for an answer to.
pub(super) enum Pending {
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
    /// The connection it waits on.
    pub(super) fn conn(&self) -> ConnId {
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

/// The requests the session knows of: in flight (by id), held, and waiting
/// to be sent again.
#[derive(Default)]
pub(super) struct Requests {
    /// What each id in flight waits for.
    pub(super) table: InFlight<Pending>,
    deadlines: BinaryHeap<Reverse<Deadline>>,
    next_seq: u64,
    /// Commands held while no connection serves (or it is full).
    pub(super) held: VecDeque<Held>,
    /// Requests waiting out their back-off before the next attempt.
    resend: Vec<(Instant, Req)>,
}

impl Requests {
    /// Entries in flight (requests, joins, leaves, pings, timed-out ids).
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// Puts a user's request in flight on `conn` (one more attempt) and
    /// returns its id and frame to write (the frame stays with the
    /// request); `None` when every id is taken (the request is dropped:
    /// commands are only taken while one is free).
    pub(super) fn start(
        &mut self,
        mut req: Req,
        conn: ConnId,
        queued: u64,
    ) -> Option<(u16, &[u8])> {
        let seq = self.next_seq;
        self.next_seq += 1;
        req.attempts += 1;
        let at = req.deadline;
        let id = self.table.insert(Pending::User {
            req,
            seq,
            conn,
            queued,
        })?;
        self.deadlines.push(Reverse(Deadline { at, seq, id }));
        match self.table.get(id) {
            Some(Pending::User { req, .. }) => Some((id, &req.frame[..])),
            _ => None,
        }
    }

    /// Fails the requests in flight whose deadline passed with
    /// [`Error::Timeout`]; their ids stay taken (see
    /// [`Pending::TimedOut`]). Returns the connection of each.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<ConnId> {
        let mut conns = Vec::new();
        while self.deadlines.peek().is_some_and(|Reverse(d)| d.at <= now) {
            let Some(Reverse(d)) = self.deadlines.pop() else {
                break;
            };
            let Some(slot) = self.table.get_mut(d.id) else {
                continue;
            };
            let conn = match slot {
                Pending::User { seq, conn, .. } if *seq == d.seq => *conn,
                _ => continue, // answered already; the id went to another
            };
            if let Pending::User { req, .. } = std::mem::replace(slot, Pending::TimedOut { conn }) {
                debug!(id = d.id, conn = conn.0, "request timed out in flight");
                req.time_out();
            }
            conns.push(conn);
        }
        conns
    }

    /// Held requests past their deadline fail; held commands whose caller
    /// gave up are dropped.
    pub(super) fn expire_held(&mut self, now: Instant) {
        if self.held.is_empty() {
            return;
        }
        for h in std::mem::take(&mut self.held) {
            match h {
                Held::Request(r) if r.reply.is_closed() => {}
                Held::Request(r) if r.deadline <= now => {
                    debug!("request timed out before a connection served it");
                    r.time_out();
                }
                Held::Subscribe(sub) if sub.reply.is_closed() => {}
                other => self.held.push_back(other),
            }
        }
    }

    /// Drops the deadlines of answered requests once they outnumber the
    /// requests in flight, so the heap stays as large as what is in flight.
    pub(super) fn sweep(&mut self) {
        if self.deadlines.len() <= 2 * self.table.len() + 1024 {
            return;
        }
        let entries = std::mem::take(&mut self.deadlines).into_vec();
        let table = &self.table;
        self.deadlines = entries
            .into_iter()
            .filter(|Reverse(d)| {
                matches!(table.get(d.id), Some(Pending::User { seq, .. }) if *seq == d.seq)
            })
            .collect();
    }

    /// Keeps `req` until `at`, when it is sent again.
    pub(super) fn resend_at(&mut self, at: Instant, req: Req) {
        self.resend.push((at, req));
    }

    /// The requests whose back-off is over, in the order they were kept.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<Req> {
        if !self.resend.iter().any(|(at, _)| *at <= now) {
            return Vec::new();
        }
        let (due, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.resend)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.resend = wait;
        due.into_iter().map(|(_, r)| r).collect()
    }

    /// The earliest time something here is due: a deadline, a held
    /// request's deadline, the end of a back-off.
    pub(super) fn next_due(&self) -> Option<Instant> {
        // Asked once or twice per request: held requests and back-offs
        // are rare, so the usual answer is the heap's top alone.
        let mut due = self.deadlines.peek().map(|Reverse(d)| d.at);
        let held = self.held.iter().filter_map(|h| match h {
            Held::Request(r) => Some(r.deadline),
            Held::Subscribe(_) => None,
        });
        for at in held.chain(self.resend.iter().map(|(at, _)| *at)) {
            due = Some(due.map_or(at, |d| d.min(at)));
        }
        due
    }

    /// Requests not in flight that still wait to go: held or backing off.
    pub(super) fn unsent(&self) -> usize {
        self.resend.len() + self.held.len()
    }

    /// Fails everything with `err`: requests and joins in flight, held,
    /// backing off. Every id is free again.
    pub(super) fn fail_all(&mut self, err: &Error) {
        for p in self.table.drain() {
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
    }

    /// Deadlines kept (some may be of answered requests until a sweep).
    #[cfg(test)]
    pub(super) fn deadlines_len(&self) -> usize {
        self.deadlines.len()
    }
}

impl Session {
    /// Commands held while no connection was up go first.
    pub(super) fn flush_held(&mut self, now: Instant) {
        while self.can_send() {
            match self.requests.held.pop_front() {
                Some(Held::Request(req)) => self.dispatch(now, req),
                Some(Held::Subscribe(sub)) => self.handle_command(now, Command::Subscribe(sub)),
                None => break,
            }
        }
    }

    /// Sends a request on the serving connection, or holds it until one
    /// serves.
    pub(super) fn dispatch(&mut self, now: Instant, req: Req) {
        if req.reply.is_closed() {
            return; // the caller gave up meanwhile
        }
        if req.deadline <= now {
            req.time_out();
            return;
        }
        match self.conns.serving {
            Some(conn) if self.can_send() => self.send_request(conn, req),
            Some(_) | None => self.requests.held.push_back(Held::Request(req)),
        }
    }

    fn send_request(&mut self, conn: ConnId, req: Req) {
        let Some(c) = self.conns.get_mut(conn) else {
            self.requests.held.push_back(Held::Request(req));
            return;
        };
        c.queued += 1;
        if let Some((id, frame)) = self.requests.start(req, conn, c.queued) {
            c.write_request(id, frame);
        }
    }

    /// Takes an entry out of the in-flight table, keeping its connection's
    /// counts.
    pub(super) fn take_pending(&mut self, id: u16) -> Option<Pending> {
        let p = self.requests.table.remove(id)?;
        if let Some(c) = self.conns.get_mut(p.conn()) {
            c.answered(&p);
        }
        Some(p)
    }

    /// An entry ends without a usable reply.
    pub(super) fn fail_pending(&mut self, p: Pending, e: Error) {
        match p {
            Pending::User { req, .. } => req.fail(e),
            Pending::Join { sub, .. } => {
                let _ = sub.reply.send(Err(e));
            }
            Pending::Rejoin { key, conn } | Pending::HandoverJoin { key, conn } => {
                // Its connection is gone (handled by the caller), or the
                // node sent garbage for it: treat as not joined.
                if self.conns.get(conn).is_some() {
                    self.room_failed(&key, conn);
                }
            }
            Pending::Leave { key, conn } => self.leave_done(&key, conn),
            Pending::TimedOut { .. } | Pending::Ping { .. } => {}
        }
    }

    /// A reply on `conn`: to the request, join, leave or ping it answers.
    pub(super) fn on_response(&mut self, now: Instant, conn: ConnId, frame: Frame) {
        if self.requests.table.get(frame.id).map(Pending::conn) != Some(conn) {
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
                self.requests.sweep();
            }
            Pending::TimedOut { .. } => debug!(id = frame.id, "late reply after a timeout dropped"),
            Pending::Ping { .. } => {}
            Pending::Join { sub, conn } => self.join_answered(conn, *sub, &frame),
            Pending::Rejoin { key, conn } => {
                self.rejoin_answered(conn, &key, join_result(&frame), false);
            }
            Pending::HandoverJoin { key, conn } => {
                self.rejoin_answered(conn, &key, join_result(&frame), true);
            }
            Pending::Leave { key, conn } => {
                if let Ok(Response::Error(e)) = Response::decode(&frame) {
                    debug!(error = %e, "LEAVE refused");
                }
                self.leave_done(&key, conn);
            }
        }
    }

    /// A request's answer: NODE_ERROR (-51, the node could not take it;
    /// it did not run), or REQUEST_CANCEL (-4) for an idempotent request,
    /// sends it again after a back-off while attempts and time are left;
    /// any other answer goes to the caller.
    fn answered(&mut self, now: Instant, conn: ConnId, mut req: Req, frame: Frame) {
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
        let node = self.conns.get(conn).map(|c| c.index); // observe: the node that answered
        if self.spent.len() < super::SPENT_CAP {
            // Its frame is not needed any more: the driver uses it again.
            self.spent.push(std::mem::take(&mut req.frame));
        }
        let _ = req.reply.send(Ok(crate::observe::Answer { frame, node }));
    }

    /// Sends a request that did not run again after a back-off, if its
    /// attempts and deadline allow; fails it with `e` otherwise.
    fn retry_later(&mut self, now: Instant, req: Req, e: Error) {
        if req.may_resend(now, self.cfg.request_attempts) {
            let rng = &mut self.rng;
            let delay = RESEND_BACKOFF.delay_with(req.attempts, |max| rng.up_to(max));
            if let Some(at) = now.checked_add(delay).filter(|at| *at < req.deadline) {
                debug!(
                    attempts = req.attempts,
                    ?delay,
                    "the node could not take a request; sending it again"
                );
                self.requests.resend_at(at, req);
                return;
            }
        }
        req.fail(e);
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    fn req(
        deadline: Instant,
    ) -> (
        Req,
        oneshot::Receiver<Result<crate::observe::Answer, Error>>,
    ) {
        let (reply, rx) = oneshot::channel();
        let frame = BytesMut::from(&[1, 0, 0, 0, 0, 0, 0x22, 0xDD, 0xC0][..]);
        let r = Req {
            frame,
            reply,
            deadline,
            timeout: Duration::from_secs(1),
            idempotent: false,
            attempts: 0,
            ran: false,
        };
        (r, rx)
    }

    fn error_of(rx: &mut oneshot::Receiver<Result<crate::observe::Answer, Error>>) -> Error {
        match rx.try_recv() {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => panic!("answered, not failed"),
            Err(e) => panic!("no answer: {e}"),
        }
    }

    #[test]
    fn a_request_past_its_deadline_times_out_and_keeps_its_id() {
        let t0 = Instant::now();
        let mut rs = Requests::default();
        let (r, mut rx) = req(t0 + Duration::from_secs(1));
        let (id, frame) = rs.start(r, ConnId(1), 1).expect("an id is free");
        assert_eq!(frame.len(), 9);
        assert_eq!(rs.next_due(), Some(t0 + Duration::from_secs(1)));
        assert!(rs.expire(t0).is_empty(), "not yet");
        assert_eq!(rs.expire(t0 + Duration::from_secs(1)), vec![ConnId(1)]);
        assert!(error_of(&mut rx).is_timeout());
        // The id stays taken until the late reply comes.
        assert!(matches!(
            rs.table.get(id),
            Some(Pending::TimedOut { conn: ConnId(1) })
        ));
        assert_eq!(rs.len(), 1);
        assert_eq!(rs.next_due(), None);
    }

    #[test]
    fn an_answered_request_does_not_time_out_and_its_id_can_be_reused() {
        let t0 = Instant::now();
        let mut rs = Requests::default();
        let (r, _rx) = req(t0 + Duration::from_secs(1));
        let (id, _) = rs.start(r, ConnId(1), 1).expect("an id is free");
        assert!(rs.table.remove(id).is_some());
        // A newer request gets the same id, with a later deadline.
        let (r2, mut rx2) = req(t0 + Duration::from_secs(5));
        let (id2, _) = rs.start(r2, ConnId(1), 2).expect("an id is free");
        assert_eq!(id, id2);
        assert!(rs.expire(t0 + Duration::from_secs(2)).is_empty());
        assert!(rx2.try_recv().is_err(), "the newer request waits on");
        assert_eq!(rs.expire(t0 + Duration::from_secs(5)), vec![ConnId(1)]);
        assert!(error_of(&mut rx2).is_timeout());
    }

    #[test]
    fn held_requests_fail_at_their_deadline_and_given_up_ones_are_dropped() {
        let t0 = Instant::now();
        let mut rs = Requests::default();
        let (late, mut late_rx) = req(t0 + Duration::from_secs(1));
        let (later, mut later_rx) = req(t0 + Duration::from_secs(9));
        let (gone, gone_rx) = req(t0 + Duration::from_secs(9));
        drop(gone_rx);
        rs.held.extend([
            Held::Request(late),
            Held::Request(later),
            Held::Request(gone),
        ]);
        assert_eq!(rs.next_due(), Some(t0 + Duration::from_secs(1)));
        rs.expire_held(t0 + Duration::from_secs(1));
        assert!(error_of(&mut late_rx).is_timeout());
        assert!(later_rx.try_recv().is_err());
        assert_eq!(rs.unsent(), 1);
    }

    #[test]
    fn resends_come_due_in_order_and_are_counted_as_unsent() {
        let t0 = Instant::now();
        let mut rs = Requests::default();
        let (a, _ra) = req(t0 + Duration::from_secs(9));
        let (b, _rb) = req(t0 + Duration::from_secs(9));
        rs.resend_at(t0 + Duration::from_millis(200), a);
        rs.resend_at(t0 + Duration::from_millis(100), b);
        assert_eq!(rs.unsent(), 2);
        assert_eq!(rs.next_due(), Some(t0 + Duration::from_millis(100)));
        assert_eq!(rs.take_due(t0 + Duration::from_millis(150)).len(), 1);
        assert_eq!(rs.take_due(t0 + Duration::from_millis(150)).len(), 0);
        assert_eq!(rs.take_due(t0 + Duration::from_millis(250)).len(), 1);
        assert_eq!(rs.unsent(), 0);
    }

    #[test]
    fn the_deadline_heap_is_swept_to_what_is_in_flight() {
        let t0 = Instant::now();
        let mut rs = Requests::default();
        let mut rxs = Vec::new();
        for i in 0..6000u64 {
            let (r, rx) = req(t0 + Duration::from_secs(60));
            rxs.push(rx);
            let (id, _) = rs.start(r, ConnId(1), i).expect("an id is free");
            if i % 6 != 0 {
                rs.table.remove(id);
            }
        }
        assert_eq!(rs.deadlines_len(), 6000);
        rs.sweep();
        assert_eq!(rs.deadlines_len(), rs.len());
        assert_eq!(rs.len(), 1000);
    }

    #[test]
    fn a_request_tried_more_than_once_says_so_when_it_fails() {
        let t0 = Instant::now();
        let (mut r, mut rx) = req(t0 + Duration::from_secs(1));
        r.attempts = 3;
        r.fail(Error::Closed);
        match error_of(&mut rx) {
            Error::Retried {
                attempts,
                may_have_run,
                ..
            } => {
                assert_eq!(attempts, 3);
                assert!(!may_have_run);
            }
            other => panic!("expected Retried, got {other:?}"),
        }
        let (mut r, _rx) = req(t0 + Duration::from_secs(1));
        r.attempts = 2;
        assert!(r.may_resend(t0, 3));
        assert!(!r.may_resend(t0, 2), "no attempts left");
        assert!(
            !r.may_resend(t0 + Duration::from_secs(1), 3),
            "no time left"
        );
    }

    #[test]
    fn fail_all_ends_everything_and_frees_every_id() {
        let t0 = Instant::now();
        let mut rs = Requests::default();
        let (a, mut ra) = req(t0 + Duration::from_secs(9));
        let (b, mut rb) = req(t0 + Duration::from_secs(9));
        let (c, mut rc) = req(t0 + Duration::from_secs(9));
        rs.start(a, ConnId(1), 1);
        let (sink, _events) = crate::events::event_channel(1, 4, crate::events::Overflow::Lag);
        let (reply, mut joined) = oneshot::channel();
        let sub = Box::new(Subscribe {
            scope: crate::scope::Scope::parse("//stuff").expect("a scope"),
            room: thingsdb_protocol::Room::Id(7),
            sink,
            reply,
        });
        rs.table.insert(Pending::Join {
            sub,
            conn: ConnId(1),
        });
        rs.held.push_back(Held::Request(b));
        rs.resend_at(t0, c);
        rs.fail_all(&Error::Closed);
        for rx in [&mut ra, &mut rb, &mut rc] {
            assert!(matches!(error_of(rx), Error::Closed));
        }
        assert!(
            matches!(joined.try_recv(), Ok(Err(Error::Closed))),
            "the join too"
        );
        assert_eq!((rs.len(), rs.unsent(), rs.deadlines_len()), (0, 0, 0));
        assert_eq!(rs.next_due(), None);
    }
}
