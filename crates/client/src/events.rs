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
//!   number dropped, in the place where they were dropped. The connection
//!   never waits.
//!
//! Events for rooms that no stream listens to are dropped at once.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use thingsdb_protocol::{EmitEvent, Event, NodeStatus};
use tokio::sync::mpsc;

use crate::error::Error;
use crate::scope::Scope;

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
///   number dropped, in the place where they were dropped. The connection
///   never waits. Node event streams always use this policy.
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
    /// The room was joined (again, after a reconnect).
    Joined,
    /// The room was left.
    Left,
    /// The room was deleted; no more events follow.
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

/// The task's end of one stream.
pub(crate) struct Sink<T> {
    pub id: u64,
    tx: mpsc::Sender<T>,
    overflow: Overflow,
    dropped: u64,
}

pub(crate) type RoomSink = Sink<RoomEvent>;
pub(crate) type NodeSink = Sink<NodeEvent>;

impl<T> Sink<T> {
    pub(crate) fn new(id: u64, tx: mpsc::Sender<T>, overflow: Overflow) -> Self {
        Sink {
            id,
            tx,
            overflow,
            dropped: 0,
        }
    }
}

/// A delivery that waits for room in a [`Overflow::Wait`] stream.
pub(crate) struct Parked {
    pub tx: mpsc::Sender<RoomEvent>,
    pub item: RoomEvent,
}

trait LagItem {
    fn lagged(n: u64) -> Self;
}
impl LagItem for RoomEvent {
    fn lagged(n: u64) -> Self {
        RoomEvent::Lagged(n)
    }
}
impl LagItem for NodeEvent {
    fn lagged(n: u64) -> Self {
        NodeEvent::Lagged(n)
    }
}

/// Offers `item` to a sink. Returns false when the consumer is gone.
/// A full [`Overflow::Wait`] sink hands the item back to be parked.
fn offer<T: LagItem>(sink: &mut Sink<T>, item: T) -> Result<bool, T> {
    use mpsc::error::TrySendError;
    if sink.dropped > 0 {
        match sink.tx.try_send(T::lagged(sink.dropped)) {
            Ok(()) => sink.dropped = 0,
            Err(TrySendError::Full(_)) => {
                sink.dropped += 1;
                return Ok(true);
            }
            Err(TrySendError::Closed(_)) => return Ok(false),
        }
    }
    match sink.tx.try_send(item) {
        Ok(()) => Ok(true),
        Err(TrySendError::Closed(_)) => Ok(false),
        Err(TrySendError::Full(item)) => match sink.overflow {
            Overflow::Lag => {
                sink.dropped += 1;
                Ok(true)
            }
            Overflow::Wait => Err(item),
        },
    }
}

/// The joined rooms and the streams of each, by room id; plus the node
/// event streams. Owned by the connection task: no locks.
#[derive(Default)]
pub(crate) struct EventHub {
    rooms: HashMap<u64, JoinedRoom>,
    node: Vec<NodeSink>,
    /// Deliveries waiting for room in a full `Wait` stream, in order. While
    /// any wait, the task reads nothing more from the node.
    pub parked: VecDeque<Parked>,
    /// Rooms whose last stream was found dropped while delivering; the
    /// task leaves them.
    pub emptied: Vec<(u64, Scope)>,
}

struct JoinedRoom {
    scope: Scope,
    streams: Vec<RoomSink>,
}

impl EventHub {
    /// Adds a stream to a room whose id is known (the JOIN answered).
    /// Returns true when the room was not joined before.
    pub fn add_stream(&mut self, room_id: u64, scope: Scope, sink: RoomSink) -> bool {
        let entry = self.rooms.entry(room_id).or_insert_with(|| JoinedRoom {
            scope,
            streams: Vec::new(),
        });
        let first = entry.streams.is_empty();
        entry.streams.push(sink);
        first
    }

    /// Whether any stream listens to the room.
    pub fn is_joined(&self, room_id: u64) -> bool {
        self.rooms.contains_key(&room_id)
    }

    /// Removes one stream; returns the room's scope when it was the last, so
    /// the task sends LEAVE.
    pub fn remove_stream(&mut self, room_id: u64, stream_id: u64) -> Option<Scope> {
        let entry = self.rooms.get_mut(&room_id)?;
        entry.streams.retain(|s| s.id != stream_id);
        if entry.streams.is_empty() {
            self.rooms.remove(&room_id).map(|r| r.scope)
        } else {
            None
        }
    }

    /// Every joined room, to join again after a reconnect.
    pub fn joined_rooms(&self) -> Vec<(u64, Scope)> {
        self.rooms
            .iter()
            .map(|(id, r)| (*id, r.scope.clone()))
            .collect()
    }

    /// Adds a node event stream.
    pub fn add_node_stream(&mut self, sink: NodeSink) {
        self.node.push(sink);
    }

    /// Sends `item` to one stream of a room only (a local "joined" for a
    /// stream added to a room that was already joined).
    pub fn send_to(&mut self, room_id: u64, stream_id: u64, item: RoomEvent) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        if let Some(s) = room.streams.iter_mut().find(|s| s.id == stream_id) {
            if let Err(item) = offer(s, item) {
                self.parked.push_back(Parked {
                    tx: s.tx.clone(),
                    item,
                });
            }
        }
    }

    fn deliver_room(&mut self, room_id: u64, item: RoomEvent) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return; // nobody listens: dropped, nothing kept
        };
        let parked = &mut self.parked;
        // The item is cloned for every stream but the last, which takes it:
        // a room with one stream copies nothing.
        let last = room.streams.len().saturating_sub(1);
        let mut item = Some(item);
        let mut index = 0;
        room.streams.retain_mut(|s| {
            let this = if index == last {
                item.take()
            } else {
                item.clone()
            };
            index += 1;
            let Some(this) = this else {
                return true;
            };
            // Once something waits, later items queue behind it, in order.
            if !parked.is_empty() && s.overflow == Overflow::Wait {
                parked.push_back(Parked {
                    tx: s.tx.clone(),
                    item: this,
                });
                return !s.tx.is_closed();
            }
            match offer(s, this) {
                Ok(alive) => alive,
                Err(this) => {
                    parked.push_back(Parked {
                        tx: s.tx.clone(),
                        item: this,
                    });
                    true
                }
            }
        });
        if room.streams.is_empty() {
            if let Some(r) = self.rooms.remove(&room_id) {
                self.emptied.push((room_id, r.scope));
            }
        }
    }

    /// Routes one event from the node.
    pub fn dispatch(&mut self, event: Event) {
        match event {
            Event::NodeStatus { id, status } => self.deliver_node(NodeEvent::Status {
                node_id: id,
                status,
            }),
            Event::Warn { code, message } => self.deliver_node(NodeEvent::Warn { code, message }),
            Event::Join(r) => self.deliver_room(r.id, RoomEvent::Joined),
            Event::Leave(r) => self.deliver_room(r.id, RoomEvent::Left),
            Event::Delete(r) => {
                self.deliver_room(r.id, RoomEvent::Deleted);
                self.rooms.remove(&r.id);
            }
            Event::Emit(e) => {
                let id = e.id;
                self.deliver_room(id, RoomEvent::Emitted(e.into()));
            }
            // Future event kinds are ignored.
            _ => {}
        }
    }

    fn deliver_node(&mut self, item: NodeEvent) {
        // Node streams never make the connection wait: they lag.
        self.node
            .retain_mut(|s| offer(s, item.clone()).unwrap_or(true));
    }

    /// Tells every room stream the connection is gone (they are joined
    /// again after the reconnect).
    pub fn connection_lost(&mut self) {
        let ids: Vec<u64> = self.rooms.keys().copied().collect();
        for id in ids {
            self.deliver_room(id, RoomEvent::Disconnected);
        }
    }

    /// A re-join after reconnecting failed: the room is gone.
    pub fn room_failed(&mut self, room_id: u64) {
        self.deliver_room(room_id, RoomEvent::Deleted);
        self.rooms.remove(&room_id);
    }

    /// Drops every stream (the client is closed): consumers see the end.
    pub fn close(&mut self) {
        self.rooms.clear();
        self.node.clear();
        self.parked.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thingsdb_protocol::EventRoom as WireRoom;

    fn emit(id: u64, n: u8) -> Event {
        Event::Emit(EmitEvent {
            scope: None,
            id,
            event: "e".into(),
            args: Bytes::from(vec![0x91, n]),
        })
    }

    #[test]
    fn lag_policy_counts_dropped_events_in_place() {
        let mut hub = EventHub::default();
        let (tx, mut rx) = mpsc::channel(2);
        hub.add_stream(1, Scope::thingsdb(), Sink::new(1, tx, Overflow::Lag));
        for n in 0..5 {
            hub.dispatch(emit(1, n));
        }
        assert!(matches!(rx.try_recv().unwrap(), RoomEvent::Emitted(_)));
        assert!(matches!(rx.try_recv().unwrap(), RoomEvent::Emitted(_)));
        assert!(rx.try_recv().is_err());
        hub.dispatch(emit(1, 9));
        assert_eq!(rx.try_recv().unwrap(), RoomEvent::Lagged(3));
        match rx.try_recv().unwrap() {
            RoomEvent::Emitted(e) => assert_eq!(&e.args[..], &[0x91, 9]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wait_policy_parks_instead_of_dropping() {
        let mut hub = EventHub::default();
        let (tx, mut rx) = mpsc::channel(1);
        hub.add_stream(1, Scope::thingsdb(), Sink::new(1, tx, Overflow::Wait));
        for n in 0..3 {
            hub.dispatch(emit(1, n));
        }
        assert_eq!(hub.parked.len(), 2);
        assert!(matches!(rx.try_recv().unwrap(), RoomEvent::Emitted(_)));
    }

    #[test]
    fn events_for_unknown_rooms_are_dropped_and_closed_streams_removed() {
        let mut hub = EventHub::default();
        hub.dispatch(emit(5, 1));
        let (tx, rx) = mpsc::channel(4);
        hub.add_stream(1, Scope::thingsdb(), Sink::new(1, tx, Overflow::Lag));
        drop(rx);
        hub.dispatch(emit(1, 1));
        assert!(hub.rooms.get(&1).is_none_or(|r| r.streams.is_empty()));
        hub.dispatch(Event::Delete(WireRoom { scope: None, id: 1 }));
        assert!(!hub.is_joined(1));
    }
}
