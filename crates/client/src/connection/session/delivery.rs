//! Delivery: what the session hands to room and node streams.
//!
//! Room streams with [`Overflow::Wait`] make the connection wait when they
//! are full: the item is parked, and the driver stops reading frames until
//! the stream has room ([`Delivery::waiter`], then
//! [`Session::handle_capacity`]). Items that are never dropped (joined,
//! left, disconnected, deleted) queue behind anything parked for their
//! stream, so each stream sees its items in order. Node streams never make
//! the connection wait: they lag.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use super::rooms::{Leaver, StreamJoin};
use super::{ConnId, RoomKey, Session};
use crate::events::{
    NodeEvent, NodeSink, Offer, Overflow, Parked, RoomEvent, RoomSink, SinkHandle,
};

/// Deliveries that wait for room, and the node event streams.
#[derive(Default)]
pub(super) struct Delivery {
    parked: VecDeque<Parked>,
    node_sinks: Vec<NodeSink>,
}

/// What the driver waits on while a delivery is parked: room in one
/// stream. The session is the only sender of every stream, so once there
/// is room, [`Session::handle_capacity`] delivers.
pub(crate) struct Waiter(mpsc::Sender<RoomEvent>);

impl Waiter {
    /// Waits until the stream has room; false when its consumer is gone
    /// (then, too, call [`Session::handle_capacity`]).
    pub(crate) async fn ready(self) -> bool {
        // The slot is given back at once: the session sends into it.
        self.0.reserve().await.is_ok()
    }

    /// Whether the stream has room now (`Some(true)`), its consumer is
    /// gone (`Some(false)`), or it is still full (`None`). For drivers
    /// that poll rather than wait (the model test).
    #[cfg(test)]
    pub(crate) fn try_ready(&self) -> Option<bool> {
        match self.0.try_reserve() {
            Ok(_) => Some(true),
            Err(mpsc::error::TrySendError::Closed(())) => Some(false),
            Err(mpsc::error::TrySendError::Full(())) => None,
        }
    }
}

impl Delivery {
    /// Whether frames may be read: nothing is parked.
    pub(super) fn wants_read(&self) -> bool {
        self.parked.is_empty()
    }

    /// The stream the first parked delivery waits on.
    pub(super) fn waiter(&self) -> Option<Waiter> {
        self.parked.front().map(|p| Waiter(p.to.tx.clone()))
    }

    /// Tries the first parked delivery again: it goes out when its stream
    /// has room, is dropped when its consumer is gone, and stays first
    /// otherwise.
    pub(super) fn retry_first(&mut self) {
        let Some(p) = self.parked.pop_front() else {
            return;
        };
        if let Err(Some(item)) = p.to.try_send(p.item) {
            self.parked.push_front(Parked { to: p.to, item });
        }
    }

    /// Sends an item that is never dropped (joined, left, disconnected) to
    /// one stream, behind anything parked for it and any gap.
    pub(super) fn park_or_send(&mut self, to: SinkHandle<RoomEvent>, item: RoomEvent) {
        if self.parked.iter().any(|p| p.to.tx.same_channel(&to.tx)) {
            self.parked.push_back(Parked { to, item });
            return;
        }
        if let Err(Some(item)) = to.try_send(item) {
            self.parked.push_back(Parked { to, item });
        }
    }

    /// Offers an item to a sink, keeping the order of anything already
    /// parked for it; records sinks whose consumer is gone in `gone`.
    pub(super) fn offer(&mut self, sink: &mut RoomSink, item: RoomEvent, gone: &mut Vec<u64>) {
        if !matches!(item, RoomEvent::Emitted(_)) {
            // Never dropped: behind what is parked for the stream and any gap.
            let to = sink.handle();
            if self.parked.iter().any(|p| p.to.tx.same_channel(&to.tx)) {
                self.parked.push_back(Parked { to, item });
                return;
            }
            match to.try_send(item) {
                Ok(()) => {}
                Err(Some(item)) => self.parked.push_back(Parked { to, item }),
                Err(None) => gone.push(sink.id),
            }
            return;
        }
        // Once something waits, later items for `Wait` streams queue behind it.
        if !self.parked.is_empty() && sink.overflow() == Overflow::Wait {
            if sink.is_closed() {
                gone.push(sink.id);
                return;
            }
            self.parked.push_back(Parked {
                to: sink.handle(),
                item,
            });
            return;
        }
        match sink.offer(item) {
            Offer::Taken => {}
            Offer::Gone => gone.push(sink.id),
            Offer::Full(item) => self.parked.push_back(Parked {
                to: sink.handle(),
                item,
            }),
        }
    }

    /// Adds a node event stream.
    pub(super) fn add_node_sink(&mut self, sink: NodeSink) {
        self.node_sinks.push(sink);
    }

    /// Offers a node event to every node stream; streams whose consumer is
    /// gone are dropped.
    pub(super) fn node(&mut self, item: NodeEvent) {
        self.node_sinks
            .retain_mut(|s| !matches!(s.offer(item.clone()), Offer::Gone));
    }

    /// Drops everything: the session ended.
    pub(super) fn clear(&mut self) {
        self.node_sinks.clear();
        self.parked.clear();
    }

    /// Deliveries parked.
    #[cfg(test)]
    pub(super) fn parked_len(&self) -> usize {
        self.parked.len()
    }
}

impl Session {
    /// Delivers an event from `conn` (the room's source) to every stream
    /// that saw its `Joined`, and to the leavers waiting on `conn` (a
    /// leaver hears no other connection: it might repeat what it had).
    pub(super) fn deliver_room_from(&mut self, key: &RoomKey, conn: ConnId, item: RoomEvent) {
        self.deliver(key, Some(conn), item, false);
    }

    /// Delivers to every stream and leaver of a room, joined or not.
    pub(super) fn deliver_all(&mut self, key: &RoomKey, item: RoomEvent) {
        self.deliver(key, None, item, true);
    }

    fn deliver(&mut self, key: &RoomKey, conn: Option<ConnId>, item: RoomEvent, all: bool) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let source = room.join.conn();
        let mut targets: Vec<&mut RoomSink> = Vec::new();
        let streams_too = conn.is_none() || conn == source || room.handover.is_some();
        if streams_too {
            for s in &mut room.streams {
                if all || s.join == StreamJoin::Joined {
                    targets.push(&mut s.sink);
                }
            }
        }
        for l in &mut room.leavers {
            if all || (streams_too && l.joined && conn == Some(l.conn)) {
                targets.push(&mut l.sink);
            }
        }
        let last = targets.len().saturating_sub(1);
        let mut item = Some(item);
        let mut gone = Vec::new();
        for (i, sink) in targets.into_iter().enumerate() {
            // The item is cloned for every stream but the last.
            let this = if i == last { item.take() } else { item.clone() };
            let Some(this) = this else {
                break;
            };
            self.delivery.offer(sink, this, &mut gone);
        }
        if !gone.is_empty() {
            room.streams.retain(|s| !gone.contains(&s.sink.id));
            let (left, stay): (Vec<Leaver>, Vec<Leaver>) = std::mem::take(&mut room.leavers)
                .into_iter()
                .partition(|l| gone.contains(&l.sink.id));
            room.leavers = stay;
            // Nobody reads `Left` any more; the leave is answered.
            left.into_iter().for_each(Leaver::release);
            if room.streams.is_empty() && room.leavers.is_empty() {
                self.stream_gone_last(key);
            }
        }
    }

    /// The last stream of a room was found gone while delivering: leave.
    fn stream_gone_last(&mut self, key: &RoomKey) {
        use super::rooms::JoinState;
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        match room.join {
            JoinState::Joining(c) | JoinState::AwaitingOnJoin(c) | JoinState::Joined(c)
                if self.conns.get(c).is_some() =>
            {
                if self.leave_or_remove(c, key) {
                    if let Some(r) = self.rooms.get_mut(key) {
                        r.handover = None;
                    }
                }
            }
            JoinState::Leaving(_) => {}
            _ => self.remove_room(key),
        }
    }

    /// Streams waiting for their `Joined` get it.
    pub(super) fn deliver_awaiting_joined(&mut self, key: &RoomKey) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        for s in &mut room.streams {
            if s.join == StreamJoin::Awaiting {
                s.join = StreamJoin::Joined;
                self.delivery
                    .park_or_send(s.sink.handle(), RoomEvent::Joined);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::event_channel;

    use crate::connection::testing::{drain, emitted};

    #[test]
    fn a_full_wait_stream_parks_and_keeps_the_order_of_later_items() {
        let mut d = Delivery::default();
        let (mut sink, mut rx) = event_channel::<RoomEvent>(1, 1, Overflow::Wait);
        let mut gone = Vec::new();
        d.offer(&mut sink, emitted(1), &mut gone);
        d.offer(&mut sink, emitted(2), &mut gone);
        assert_eq!(d.parked_len(), 1);
        assert!(!d.wants_read(), "reading waits for the stream");
        // A notice queues behind the parked event, not ahead of it.
        d.park_or_send(sink.handle(), RoomEvent::Left);
        assert_eq!(d.parked_len(), 2);
        let w = d.waiter().expect("a waiter");
        assert_eq!(w.try_ready(), None, "still full");
        assert_eq!(drain(&mut rx), vec![emitted(1)]);
        assert_eq!(w.try_ready(), Some(true));
        d.retry_first();
        d.retry_first(); // full again: stays parked
        assert_eq!(drain(&mut rx), vec![emitted(2)]);
        d.retry_first();
        assert_eq!(drain(&mut rx), vec![RoomEvent::Left]);
        assert!(d.wants_read() && d.waiter().is_none());
        assert!(gone.is_empty());
    }

    #[test]
    fn a_gone_consumer_is_reported_and_its_parked_items_dropped() {
        let mut d = Delivery::default();
        let (mut sink, rx) = event_channel::<RoomEvent>(7, 1, Overflow::Wait);
        let mut gone = Vec::new();
        d.offer(&mut sink, emitted(1), &mut gone);
        d.offer(&mut sink, emitted(2), &mut gone);
        drop(rx);
        let w = d.waiter().expect("a waiter");
        assert_eq!(w.try_ready(), Some(false));
        d.retry_first();
        assert!(d.wants_read(), "dropped, not parked again");
        d.offer(&mut sink, emitted(3), &mut gone);
        assert_eq!(gone, vec![7]);
    }

    #[test]
    fn node_streams_lag_and_gone_ones_are_dropped() {
        let mut d = Delivery::default();
        let (sink, mut rx) = event_channel::<NodeEvent>(1, 1, Overflow::Lag);
        let (sink2, rx2) = event_channel::<NodeEvent>(2, 1, Overflow::Lag);
        d.add_node_sink(sink);
        d.add_node_sink(sink2);
        drop(rx2);
        for i in 0..20 {
            d.node(NodeEvent::Warn {
                code: i,
                message: "w".into(),
            });
        }
        assert_eq!(d.node_sinks.len(), 1);
        assert!(d.wants_read(), "node streams never park");
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut got = Vec::new();
        while let std::task::Poll::Ready(Some(e)) = rx.poll_recv(&mut cx) {
            got.push(e);
        }
        assert!(
            got.iter().any(|e| matches!(e, NodeEvent::Lagged(_))),
            "{got:?}"
        );
    }
}
