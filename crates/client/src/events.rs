//! Routing events from the connection task to the streams that want them.
//!
//! Each room stream and each status stream has its own bounded buffer. When
//! a buffer is full, what happens is the stream's [`Overflow`] policy:
//!
//! - [`Overflow::Wait`] (the default for rooms): the connection task stops
//!   reading from the node until the consumer makes room. Nothing is lost
//!   and memory stays bounded; replies to other requests wait as well, so a
//!   consumer should not stall for long.
//! - [`Overflow::Lag`]: the event is dropped and counted; the consumer then
//!   sees one [`RoomEvent::Lagged`] (or [`NodeEvent::Lagged`]) item with the
//!   number dropped, in the place where they were dropped, as soon as it has
//!   read everything before that place (no later event is needed to bring
//!   it out). The connection never waits.
//!
//! Events for rooms that no stream listens to are dropped at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use thingsdb_protocol::{EmitEvent, NodeStatus};
use tokio::sync::mpsc;

use crate::error::Error;
use crate::observe::RoomCounters;

/// What a stream's full event buffer does.
///
/// - [`Overflow::Wait`] (the default for rooms): the connection stops
///   reading from the node until the consumer makes room. Nothing is lost
///   and memory stays bounded, but replies to every request on the client
///   wait as well: a consumer must not stall for long, and must not await a
///   request on the same client while its buffer is full (spawn the
///   request, use a second client, or choose [`Overflow::Lag`]).
/// - [`Overflow::Lag`]: the event is dropped and counted; the consumer then
///   sees one [`RoomEvent::Lagged`] (or [`NodeEvent::Lagged`]) with the
///   number dropped, in the place where they were dropped, as soon as it
///   has read what came before. The connection never waits. Node event
///   streams always use this policy.
///
/// Events for rooms no stream listens to are dropped at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Stop reading from the node until the consumer makes room.
    #[default]
    Wait,
    /// Drop the event and report the count as a lagged item.
    Lag,
}

/// An event of a room, as a room stream yields it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RoomEvent {
    /// The room is joined: the first item of a stream, and again after each
    /// [`RoomEvent::Disconnected`] once the room is joined on the new
    /// connection. Exactly one per stream per (re)join.
    Joined,
    /// [`RoomEvents::leave`](crate::RoomEvents::leave) was done: the last
    /// item of the stream, after the events that came before the node
    /// confirmed the leave (or at once when other streams of the room stay
    /// open, or no connection is up).
    Left,
    /// The room was deleted (or was found gone when joining it again after
    /// a reconnect); the last item of the stream.
    Deleted,
    /// An event was emitted in the room.
    Emitted(Emitted),
    /// This many events were dropped because the buffer was full (only with
    /// [`Overflow::Lag`]).
    Lagged(u64),
    /// The connection was lost. When the client reconnects the room is
    /// joined again and [`RoomEvent::Joined`] follows ([`RoomEvent::Deleted`]
    /// if the room is gone by then); when it does not (reconnect off, or
    /// it gave up), the stream ends.
    Disconnected,
}

/// An emitted event: its name and its arguments, kept encoded until asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    /// The event name.
    pub event: String,
    /// The arguments as one encoded MessagePack array.
    pub args: Bytes,
}

impl Emitted {
    /// The arguments decoded as `rmpv::Value`s.
    pub fn values(&self) -> Result<Vec<rmpv::Value>, Error> {
        match thingsdb_protocol::decode_value(&self.args)? {
            rmpv::Value::Array(v) => Ok(v),
            _ => Err(Error::Decode("event args are not an array".into())),
        }
    }

    /// The arguments decoded into any type that deserializes from an array:
    /// a tuple, a `Vec<T>`, or a tuple struct.
    ///
    /// ```
    /// # use thingsdb_client::Emitted;
    /// let e = Emitted { event: "msg".into(), args: bytes::Bytes::from_static(&[0x92, 0xa2, b'h', b'i', 0x07]) };
    /// let (text, n): (String, u32) = e.decode()?;
    /// assert_eq!((text.as_str(), n), ("hi", 7));
    /// # Ok::<(), thingsdb_client::Error>(())
    /// ```
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        rmp_serde::from_slice(&self.args).map_err(|e| Error::Decode(e.to_string()))
    }

    /// Argument `index` (from 0) decoded into `T`; `arg(0)` is the common
    /// case of one struct per event.
    pub fn arg<T: serde::de::DeserializeOwned>(&self, index: usize) -> Result<T, Error> {
        let mut r = thingsdb_protocol::msgpack::Reader::new(&self.args);
        let n = r.read_array_len()?;
        if index >= n {
            return Err(Error::Decode(format!(
                "event has {n} arguments, no argument {index}"
            )));
        }
        for _ in 0..index {
            r.skip_value()?;
        }
        let v = r.skip_value()?;
        rmp_serde::from_slice(v).map_err(|e| Error::Decode(e.to_string()))
    }
}

impl From<EmitEvent> for Emitted {
    fn from(e: EmitEvent) -> Self {
        Emitted {
            event: e.event,
            args: e.args,
        }
    }
}

/// A node-level event: status changes and warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// NODE_STATUS: a node changed status.
    Status {
        /// The node's id.
        node_id: u64,
        /// The new status.
        status: NodeStatus,
    },
    /// WARN: a warning, for example a message from `log()`.
    Warn {
        /// The warning code.
        code: i64,
        /// The message.
        message: String,
    },
    /// This many events were dropped because the buffer was full.
    Lagged(u64),
}

/// The connection's end of one stream.
pub(crate) struct Sink<T> {
    pub id: u64,
    tx: mpsc::Sender<T>,
    overflow: Overflow,
    /// Events dropped (with [`Overflow::Lag`]) and not yet reported; shared
    /// with the consumer's [`EventRx`], which reports them itself once it
    /// has read everything before the gap.
    dropped: Arc<AtomicU64>,
    /// The room's event counters (room streams only).
    counters: Option<Arc<RoomCounters>>,
}

pub(crate) type RoomSink = Sink<RoomEvent>;
pub(crate) type NodeSink = Sink<NodeEvent>;

/// The consumer's end of one stream.
#[derive(Debug)]
pub(crate) struct EventRx<T> {
    rx: mpsc::Receiver<T>,
    dropped: Arc<AtomicU64>,
}

/// Slots of an [`Overflow::Lag`] stream kept for items that are never
/// dropped (joined, disconnected, left, deleted), beyond its capacity for
/// events.
pub(crate) const CONTROL_RESERVE: usize = 8;

/// A stream's two ends.
pub(crate) fn event_channel<T>(
    id: u64,
    capacity: usize,
    overflow: Overflow,
) -> (Sink<T>, EventRx<T>) {
    let reserve = match overflow {
        Overflow::Lag => CONTROL_RESERVE,
        Overflow::Wait => 0,
    };
    let (tx, rx) = mpsc::channel(capacity.max(1) + reserve);
    let dropped = Arc::new(AtomicU64::new(0));
    (
        Sink {
            id,
            tx,
            overflow,
            dropped: dropped.clone(),
            counters: None,
        },
        EventRx { rx, dropped },
    )
}

/// Event kinds that can say "this many were dropped".
pub trait LagItem {
    fn lagged(n: u64) -> Self;
    /// Whether the item is an event the room counters count (not a
    /// joined, left, ... notice); none but a room's emitted events are.
    fn is_event(&self) -> bool {
        false
    }
}
impl LagItem for RoomEvent {
    fn lagged(n: u64) -> Self {
        RoomEvent::Lagged(n)
    }
    fn is_event(&self) -> bool {
        matches!(self, RoomEvent::Emitted(_))
    }
}
impl LagItem for NodeEvent {
    fn lagged(n: u64) -> Self {
        NodeEvent::Lagged(n)
    }
}

/// Counts what became of an item offered to a room stream.
fn count<T: LagItem>(counters: &Option<Arc<RoomCounters>>, item: &T, what: fn(&RoomCounters)) {
    if let Some(c) = counters {
        if item.is_event() {
            what(c);
        }
    }
}

/// What became of an offered item.
pub(crate) enum Offer<T> {
    /// Queued for the consumer, or dropped and counted (`Lag`).
    Taken,
    /// The consumer is gone.
    Gone,
    /// A full [`Overflow::Wait`] stream: the item comes back to be parked.
    Full(T),
}

impl<T: LagItem> Sink<T> {
    /// Offers an event without waiting. A `Lag` stream takes it only while
    /// more than [`CONTROL_RESERVE`] slots are free.
    pub(crate) fn offer(&mut self, item: T) -> Offer<T> {
        if self.counters.is_none() {
            return self.offer_item(item);
        }
        let event = item.is_event();
        let r = self.offer_item(item);
        if let (true, Some(c)) = (event, &self.counters) {
            match r {
                Offer::Taken => {} // counted by `offer_item`: delivered or lagged
                Offer::Gone => c.dropped(),
                Offer::Full(_) => {} // parked: counted when it goes in
            }
        }
        r
    }

    fn offer_item(&mut self, item: T) -> Offer<T> {
        use mpsc::error::TrySendError;
        if self.overflow == Overflow::Wait {
            let counted = self.counters.as_ref().filter(|_| item.is_event()).cloned();
            return match self.tx.try_send(item) {
                Ok(()) => {
                    if let Some(c) = counted {
                        c.delivered();
                    }
                    Offer::Taken
                }
                Err(TrySendError::Closed(_)) => Offer::Gone,
                Err(TrySendError::Full(item)) => Offer::Full(item),
            };
        }
        if self.tx.is_closed() {
            return Offer::Gone;
        }
        if self.dropped.load(Ordering::Acquire) > 0 {
            // A gap the consumer has not been told of: it goes first.
            if self.tx.capacity() <= CONTROL_RESERVE {
                count(&self.counters, &item, RoomCounters::lagged);
                self.count_drop();
                return Offer::Taken;
            }
            if let Ok(permit) = self.tx.try_reserve() {
                let n = self.dropped.swap(0, Ordering::AcqRel);
                if n > 0 {
                    permit.send(T::lagged(n));
                }
            }
        }
        if self.tx.capacity() <= CONTROL_RESERVE {
            count(&self.counters, &item, RoomCounters::lagged);
            self.count_drop();
            return Offer::Taken;
        }
        let counted = self.counters.as_ref().filter(|_| item.is_event()).cloned();
        match self.tx.try_send(item) {
            Ok(()) => {
                if let Some(c) = counted {
                    c.delivered();
                }
                Offer::Taken
            }
            Err(TrySendError::Closed(_)) => Offer::Gone,
            Err(TrySendError::Full(_)) => {
                if let Some(c) = counted {
                    c.lagged();
                }
                self.count_drop();
                Offer::Taken
            }
        }
    }

    fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::AcqRel);
        // The consumer may have emptied its buffer and looked at the count
        // just before it grew: then it waits for the next item, so hand it
        // the gap now if there is room.
        if self.tx.capacity() <= CONTROL_RESERVE {
            return;
        }
        if let Ok(permit) = self.tx.try_reserve() {
            let n = self.dropped.swap(0, Ordering::AcqRel);
            if n > 0 {
                permit.send(T::lagged(n));
            }
        }
    }
}

impl<T> Sink<T> {
    /// A handle to send items that are never dropped, after any gap.
    pub(crate) fn handle(&self) -> SinkHandle<T> {
        SinkHandle {
            tx: self.tx.clone(),
            lag: (self.overflow == Overflow::Lag).then(|| self.dropped.clone()),
            counters: self.counters.clone(),
        }
    }

    /// The same sink, counting its events in `counters`.
    pub(crate) fn with_counters(mut self, counters: Option<Arc<RoomCounters>>) -> Self {
        self.counters = counters;
        self
    }

    /// Whether the consumer is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// The stream's policy.
    pub(crate) fn overflow(&self) -> Overflow {
        self.overflow
    }
}

impl<T: LagItem> EventRx<T> {
    /// The next item; a gap is reported as soon as everything before it
    /// was read.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            Poll::Ready(None) => {
                let n = self.dropped.swap(0, Ordering::AcqRel);
                Poll::Ready((n > 0).then(|| T::lagged(n)))
            }
            Poll::Pending => {
                let n = self.dropped.swap(0, Ordering::AcqRel);
                if n == 0 {
                    return Poll::Pending;
                }
                if self.rx.is_empty() {
                    // Nothing was buffered when the count was taken: every
                    // item still to come was sent after the gap.
                    return Poll::Ready(Some(T::lagged(n)));
                }
                // An item arrived meanwhile and may precede the gap: put the
                // count back; it is reported behind that item.
                self.dropped.fetch_add(n, Ordering::AcqRel);
                self.rx.poll_recv(cx)
            }
        }
    }

    /// The next item.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

/// A stream's sender, and for a `Lag` stream its count of events dropped
/// and not yet reported (which must come out before the next item).
pub(crate) struct SinkHandle<T> {
    pub tx: mpsc::Sender<T>,
    pub lag: Option<Arc<AtomicU64>>,
    /// The room's event counters (room streams only).
    pub counters: Option<Arc<RoomCounters>>,
}

impl<T: LagItem> SinkHandle<T> {
    /// Sends `item` behind any unreported gap; hands it back when the
    /// buffer has no room (`Err(Some)`), drops it when the consumer is gone
    /// (`Err(None)`).
    pub(crate) fn try_send(&self, item: T) -> Result<(), Option<T>> {
        let event = item.is_event();
        let r = self.try_send_item(item);
        if let (true, Some(c)) = (event, &self.counters) {
            match &r {
                Ok(()) => c.delivered(),
                Err(None) => c.dropped(),
                Err(Some(_)) => {} // parked: counted when it goes in
            }
        }
        r
    }

    fn try_send_item(&self, item: T) -> Result<(), Option<T>> {
        use mpsc::error::TrySendError;
        if let Some(lag) = &self.lag {
            if lag.load(Ordering::Acquire) > 0 {
                match self.tx.try_reserve() {
                    Ok(permit) => {
                        let n = lag.swap(0, Ordering::AcqRel);
                        if n > 0 {
                            permit.send(T::lagged(n));
                        }
                    }
                    Err(TrySendError::Full(())) => return Err(Some(item)),
                    Err(TrySendError::Closed(())) => return Err(None),
                }
            }
        }
        match self.tx.try_send(item) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(item)) => Err(Some(item)),
            Err(TrySendError::Closed(_)) => Err(None),
        }
    }
}

/// A delivery that waits for room in a full stream.
pub(crate) struct Parked {
    pub to: SinkHandle<RoomEvent>,
    pub item: RoomEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::connection::testing::emitted;

    fn next<T: LagItem>(rx: &mut EventRx<T>) -> Option<T> {
        let waker = futures::task::noop_waker();
        match rx.poll_recv(&mut Context::from_waker(&waker)) {
            Poll::Ready(item) => item,
            Poll::Pending => None,
        }
    }

    #[test]
    fn lag_is_reported_as_soon_as_the_consumer_reaches_the_gap() {
        let (mut sink, mut rx) = event_channel::<RoomEvent>(1, 2, Overflow::Lag);
        for n in 0..5 {
            assert!(matches!(sink.offer(emitted(n)), Offer::Taken));
        }
        assert_eq!(next(&mut rx), Some(emitted(0)));
        assert_eq!(next(&mut rx), Some(emitted(1)));
        // No later event needed.
        assert_eq!(next(&mut rx), Some(RoomEvent::Lagged(3)));
        assert_eq!(next(&mut rx), None);
        assert!(matches!(sink.offer(emitted(9)), Offer::Taken));
        assert_eq!(next(&mut rx), Some(emitted(9)));
    }

    #[test]
    fn a_gap_stays_in_place_when_events_follow_it() {
        let (mut sink, mut rx) = event_channel::<RoomEvent>(1, 1, Overflow::Lag);
        let _ = sink.offer(emitted(0));
        let _ = sink.offer(emitted(1)); // dropped
        assert_eq!(next(&mut rx), Some(emitted(0)));
        let _ = sink.offer(emitted(2)); // the gap goes in first
        let _ = sink.offer(emitted(3)); // dropped: the buffer holds the gap
        assert_eq!(next(&mut rx), Some(RoomEvent::Lagged(1)));
        assert_eq!(next(&mut rx), Some(RoomEvent::Lagged(2)));
        assert_eq!(next(&mut rx), None);
    }

    #[test]
    fn wait_policy_hands_the_item_back() {
        let (mut sink, mut rx) = event_channel::<RoomEvent>(1, 1, Overflow::Wait);
        assert!(matches!(sink.offer(emitted(0)), Offer::Taken));
        assert!(matches!(sink.offer(emitted(1)), Offer::Full(_)));
        assert_eq!(next(&mut rx), Some(emitted(0)));
        drop(rx);
        assert!(matches!(sink.offer(emitted(2)), Offer::Gone));
    }

    #[test]
    fn room_counters_count_events_only() {
        let obs = crate::observe::Observer::default();
        let counters = obs.room("stuff", "1");
        if counters.is_none() {
            return; // built without the `observe` feature
        }
        let (sink, mut rx) = event_channel::<RoomEvent>(1, 2, Overflow::Lag);
        let mut sink = sink.with_counters(counters.clone());
        let _ = sink.offer(RoomEvent::Joined);
        for n in 0..4 {
            let _ = sink.offer(emitted(n));
        }
        assert_eq!(next(&mut rx), Some(RoomEvent::Joined));
        drop(rx);
        let _ = sink.offer(emitted(9));
        let s = &obs.stats(0, 0).rooms[0];
        // 2 slots: the Joined and one event; 3 lagged; 1 after the consumer
        // left.
        assert_eq!((s.delivered, s.lagged, s.dropped), (1, 3, 1));

        let (sink, mut rx) = event_channel::<RoomEvent>(2, 1, Overflow::Wait);
        let sink = sink.with_counters(counters);
        let handle = sink.handle();
        assert!(handle.try_send(emitted(0)).is_ok());
        assert!(matches!(handle.try_send(emitted(1)), Err(Some(_))));
        assert_eq!(next(&mut rx), Some(emitted(0)));
        // Room again: the parked event goes in and counts as delivered.
        assert!(handle.try_send(emitted(1)).is_ok());
        let s = &obs.stats(0, 0).rooms[0];
        assert_eq!((s.delivered, s.lagged, s.dropped), (3, 3, 1));
    }

    #[test]
    fn node_streams_lag_too() {
        let (mut sink, mut rx) = event_channel::<NodeEvent>(1, 1, Overflow::Lag);
        for code in 0..4 {
            let _ = sink.offer(NodeEvent::Warn {
                code,
                message: String::new(),
            });
        }
        assert!(matches!(
            next(&mut rx),
            Some(NodeEvent::Warn { code: 0, .. })
        ));
        assert_eq!(next(&mut rx), Some(NodeEvent::Lagged(3)));
    }
}
