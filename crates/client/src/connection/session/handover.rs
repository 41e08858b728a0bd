//! The make-before-break move of a room from a connection whose node shuts
//! down to the next one.
//!
//! The old connection keeps delivering the room's events until the room is
//! joined on the new one and left on the old; the new connection's events
//! are held meanwhile ([`Handover`]). Both deliver the events emitted
//! between the two, in the same order, so the new connection's first events
//! are matched against the old one's last ([`Repeats`]) and dropped as
//! repeats. Events carry no sequence number: two identical events inside
//! that window can be taken for one another.

use std::collections::VecDeque;

use thingsdb_protocol::PackageType;

use super::connections::Role;
use super::requests::Pending;
use super::rooms::JoinState;
use super::{ConnId, RoomKey, Session, HANDOVER_CAP};
use crate::events::Emitted;

/// A room moving from a node that shuts down to the next connection.
pub(super) struct Handover {
    pub(super) old: ConnId,
    pub(super) new: ConnId,
    /// The room's state on the new connection.
    pub(super) new_join: JoinState,
    /// The old connection delivers no more events of this room (left, or
    /// closed).
    pub(super) old_done: bool,
    /// Whether the LEAVE on the old connection was sent.
    pub(super) leave_sent: bool,
    /// Events delivered from the old connection since the JOIN went out on
    /// the new one (the last [`HANDOVER_CAP`]).
    tail: VecDeque<Emitted>,
    /// Events from the new connection, held until the old one is done.
    fresh: Vec<Emitted>,
}

/// What becomes of an event during a hand-over.
#[derive(Debug, PartialEq)]
pub(super) enum Route {
    /// From the old connection: deliver it (it is kept to spot repeats).
    Deliver(Emitted),
    /// From the new connection: held until the old one is done.
    Kept,
    /// Held, and too many are held: stop waiting for the old connection.
    Overflow,
    /// Not for the room any more (the old side is done, or the new side is
    /// not joined yet, or another connection).
    Dropped,
}

impl Handover {
    /// A hand-over from `old` to `new`, where the room is `new_join`.
    pub(super) fn new(old: ConnId, new: ConnId, new_join: JoinState) -> Handover {
        Handover {
            old,
            new,
            new_join,
            old_done: false,
            leave_sent: false,
            tail: VecDeque::new(),
            fresh: Vec::new(),
        }
    }

    /// Where an event of the room that came on `conn` goes.
    pub(super) fn route(&mut self, conn: ConnId, e: Emitted) -> Route {
        if conn == self.new {
            if self.new_join != JoinState::Joined(conn) {
                return Route::Dropped;
            }
            self.fresh.push(e);
            if self.fresh.len() > HANDOVER_CAP {
                // The old side is too slow to finish: stop waiting.
                self.old_done = true;
                return Route::Overflow;
            }
            return Route::Kept;
        }
        if conn == self.old && !self.old_done {
            if self.tail.len() == HANDOVER_CAP {
                self.tail.pop_front();
            }
            self.tail.push_back(e.clone());
            return Route::Deliver(e);
        }
        Route::Dropped
    }

    /// Whether the move is over: joined on the new connection, and the old
    /// one delivers no more.
    pub(super) fn is_complete(&self) -> bool {
        self.new_join == JoinState::Joined(self.new) && self.old_done
    }

    /// What the new connection must still drop ([`Repeats`] of the old
    /// connection's last events) and the new connection's held events, in
    /// order.
    pub(super) fn into_carry(self) -> (Option<Repeats>, Vec<Emitted>) {
        (Repeats::new(self.tail), self.fresh)
    }
}

/// The events an old connection delivered last, to drop when the new
/// connection delivers them again. The new connection's events start
/// somewhere in this run (or after it); once one of them is found in it,
/// the rest of the run must follow in order.
#[derive(Debug)]
pub(super) struct Repeats {
    tail: VecDeque<Emitted>,
    aligned: bool,
}

impl Repeats {
    /// Repeats to look for; `None` when there is nothing to repeat.
    pub(super) fn new(tail: VecDeque<Emitted>) -> Option<Repeats> {
        (!tail.is_empty()).then_some(Repeats {
            tail,
            aligned: false,
        })
    }

    /// Whether `e` (from the new connection) was delivered already; the
    /// run is over (see [`Repeats::is_over`]) at the first event that was
    /// not.
    pub(super) fn repeated(&mut self, e: &Emitted) -> bool {
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

    /// Whether nothing more can be a repeat.
    pub(super) fn is_over(&self) -> bool {
        self.tail.is_empty()
    }
}

impl Session {
    /// `new` serves now and `old` drains: rooms joined on `old` move to
    /// `new` (events keep coming from `old` until then); rooms still being
    /// joined on `old` are simply joined on `new`.
    pub(super) fn rooms_move(&mut self, old: ConnId, new: ConnId) {
        let keys = self.rooms.keys_where(|r| {
            !r.streams.is_empty() && r.join.conn() == Some(old) && r.handover.is_none()
        });
        for key in keys {
            if self.rooms.get(&key).map(|r| r.join) == Some(JoinState::Joined(old)) {
                self.begin_handover(new, old, key);
            } else {
                // Not joined on the old connection yet: its events would
                // start later than the new one's. Join here only; what the
                // old connection sends is ignored.
                self.rejoin(new, &key);
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
            r.handover = Some(Handover::new(old, new, JoinState::Joining(new)));
        }
    }

    /// The room is joined on `conn`, the new side of its hand-over: the
    /// LEAVE goes out on the old side. False when `conn` is not the new
    /// side of a hand-over of the room.
    pub(super) fn handover_joined(&mut self, conn: ConnId, key: &RoomKey) -> bool {
        let Some(h) = self
            .rooms
            .get_mut(key)
            .and_then(|r| r.handover.as_mut())
            .filter(|h| h.new == conn)
        else {
            return false;
        };
        if matches!(h.new_join, JoinState::Joined(_)) {
            return true;
        }
        h.new_join = JoinState::Joined(conn);
        let (old, old_done, leave_sent) = (h.old, h.old_done, h.leave_sent);
        if !old_done && !leave_sent {
            let sent = self.send_room(old, key, PackageType::Leave, |key, conn| Pending::Leave {
                key,
                conn,
            });
            if let Some(h) = self.rooms.get_mut(key).and_then(|r| r.handover.as_mut()) {
                if sent {
                    h.leave_sent = true;
                } else {
                    h.old_done = true;
                }
            }
        }
        self.maybe_complete_handover(key);
        true
    }

    /// Ends a hand-over once the room is joined on the new connection and
    /// the old one delivers no more of its events.
    pub(super) fn maybe_complete_handover(&mut self, key: &RoomKey) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if !room.handover.as_ref().is_some_and(Handover::is_complete) {
            return;
        }
        let Some(h) = room.handover.take() else {
            return;
        };
        let (old, new) = (h.old, h.new);
        room.join = JoinState::Joined(new);
        let (repeats, fresh) = h.into_carry();
        room.repeats = repeats;
        for e in fresh {
            self.on_emit(new, key, e);
        }
        // Streams still waiting for their `Joined` get it now.
        self.deliver_awaiting_joined(key);
        self.maybe_close_draining(old);
        // The new side's node went on to shut down meanwhile (a third
        // connection serves now): the room moves on again, make before
        // break. Left where it is, it would stay on a draining connection
        // and count its events from the serving one twice when a stream
        // joins there.
        let serving = self.conns.serving.filter(|s| *s != new);
        let draining = self
            .conns
            .get(new)
            .is_some_and(|c| c.role == Role::Draining);
        let streams = self.rooms.get(key).is_some_and(|r| !r.streams.is_empty());
        if let (Some(serving), true, true) = (serving, draining, streams) {
            self.begin_handover(serving, new, key.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn ev(n: u8) -> Emitted {
        Emitted {
            event: "e".into(),
            args: Bytes::from(vec![0x91, n]),
        }
    }

    const OLD: ConnId = ConnId(1);
    const NEW: ConnId = ConnId(2);

    #[test]
    fn old_events_are_delivered_and_new_ones_held_until_complete() {
        let mut h = Handover::new(OLD, NEW, JoinState::Joining(NEW));
        assert_eq!(h.route(OLD, ev(1)), Route::Deliver(ev(1)));
        // Not joined on the new side yet: its events are not the room's.
        assert_eq!(h.route(NEW, ev(1)), Route::Dropped);
        h.new_join = JoinState::Joined(NEW);
        assert_eq!(h.route(OLD, ev(2)), Route::Deliver(ev(2)));
        assert_eq!(h.route(NEW, ev(2)), Route::Kept);
        assert_eq!(h.route(NEW, ev(3)), Route::Kept);
        assert!(!h.is_complete());
        h.old_done = true;
        assert_eq!(h.route(OLD, ev(9)), Route::Dropped, "the old side is done");
        assert_eq!(h.route(ConnId(7), ev(9)), Route::Dropped);
        assert!(h.is_complete());
        let (repeats, fresh) = h.into_carry();
        assert_eq!(fresh, vec![ev(2), ev(3)]);
        let mut repeats = repeats.expect("the old side delivered events");
        assert!(repeats.repeated(&ev(2)));
        assert!(repeats.is_over());
    }

    #[test]
    fn the_old_sides_tail_keeps_the_last_events_only() {
        let mut h = Handover::new(OLD, NEW, JoinState::Joined(NEW));
        for i in 0..=HANDOVER_CAP {
            let n = (i % 250) as u8;
            assert!(matches!(h.route(OLD, ev(n)), Route::Deliver(_)));
        }
        let (repeats, _) = h.into_carry();
        let repeats = repeats.expect("a tail");
        assert_eq!(repeats.tail.len(), HANDOVER_CAP);
        assert_eq!(repeats.tail.front(), Some(&ev(1)), "the first one went");
    }

    #[test]
    fn too_many_held_events_end_the_wait_for_the_old_side() {
        let mut h = Handover::new(OLD, NEW, JoinState::Joined(NEW));
        for _ in 0..HANDOVER_CAP {
            assert_eq!(h.route(NEW, ev(0)), Route::Kept);
        }
        assert_eq!(h.route(NEW, ev(0)), Route::Overflow);
        assert!(h.old_done && h.is_complete());
    }

    #[test]
    fn repeats_align_once_then_must_follow_in_order() {
        let tail: VecDeque<Emitted> = [1, 2, 3, 4].into_iter().map(ev).collect();
        let mut r = Repeats::new(tail.clone()).expect("a tail");
        // The new connection starts inside the run.
        assert!(r.repeated(&ev(3)));
        assert!(r.repeated(&ev(4)));
        assert!(r.is_over());
        // Out of order after aligning: the run is over, and it is new.
        let mut r = Repeats::new(tail.clone()).expect("a tail");
        assert!(r.repeated(&ev(2)));
        assert!(!r.repeated(&ev(4)));
        assert!(r.is_over());
        // Starting after the run: nothing is a repeat.
        let mut r = Repeats::new(tail).expect("a tail");
        assert!(!r.repeated(&ev(9)));
        assert!(r.is_over());
        assert!(Repeats::new(VecDeque::new()).is_none());
    }
}
