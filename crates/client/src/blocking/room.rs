//! Rooms on a blocking client, and a blocking receiver of their events.

use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use thingsdb_protocol::Room as RoomRef;
use tokio::sync::oneshot;
use web_time::Instant;

use super::client::Client;
use super::driver::block_on;
use crate::client::expect_ok;
use crate::connection::{Command, RoomKey, Subscribe};
use crate::error::Error;
use crate::events::{event_channel, EventRx, Overflow, RoomEvent};
use crate::room::emit_frame;
use crate::scope::Scope;

/// A room of a collection on a [blocking client](Client), by id or name.
/// Joining gives a [`RoomEvents`] receiver; emitting needs no join.
///
/// ```no_run
/// # fn demo(client: thingsdb_client::blocking::Client) -> Result<(), thingsdb_client::Error> {
/// use thingsdb_client::RoomEvent;
/// let room = client.room("//stuff", "chat")?;
/// let events = room.join()?;
/// room.emit("msg", &("hello",))?;
/// for ev in events {
///     if let RoomEvent::Emitted(e) = ev {
///         let (text,): (String,) = e.decode()?;
///         println!("{}: {text}", e.event);
///         break;
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Room {
    client: Client,
    scope: Scope,
    room: RoomRef,
}

impl Client {
    /// A room in a collection scope, by id (`u64`) or by name (`&str`).
    /// Nothing is sent until the room is joined or emitted to.
    pub fn room(&self, scope: &str, room: impl Into<RoomRef>) -> Result<Room, Error> {
        let scope = crate::room::collection_scope(scope)?;
        Ok(Room {
            client: self.clone(),
            scope,
            room: room.into(),
        })
    }
}

impl Room {
    /// The scope the room lives in.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Joins the room; its events come on the returned receiver, whose
    /// buffer waits for a slow consumer ([`Overflow::Wait`]). The first
    /// join starts the client's event thread.
    pub fn join(&self) -> Result<RoomEvents, Error> {
        self.join_with(Overflow::Wait)
    }

    /// Joins the room with a chosen overflow policy for the receiver (see
    /// [`crate::Room::join_with`]).
    pub fn join_with(&self, overflow: Overflow) -> Result<RoomEvents, Error> {
        let driver = self.client.driver();
        if let Some(e) = driver.shared.dead.get() {
            return Err(e.clone());
        }
        driver.start_events()?;
        let stream_id = self.client.next_stream_id();
        let (sink, rx) = event_channel(stream_id, self.client.config().event_buffer, overflow);
        let (reply, mut answer) = oneshot::channel();
        let timeout = self.client.config().request_timeout;
        let key = driver.call(
            Command::Subscribe(Box::new(Subscribe {
                scope: self.scope.clone(),
                room: self.room.clone(),
                sink,
                reply,
            })),
            &mut answer,
            Some(Instant::now() + timeout),
        );
        let key = match key {
            Some(r) => r?,
            None if driver.shared.dead.get().is_some() => return Err(self.client.gone()),
            None => return Err(Error::Timeout(timeout)),
        };
        Ok(RoomEvents {
            client: self.client.clone(),
            key,
            stream_id,
            rx,
            left: false,
        })
    }

    /// Emits `event` in the room with `args`, a value that serializes to an
    /// array: each element is one argument.
    pub fn emit<A: Serialize + ?Sized>(&self, event: &str, args: &A) -> Result<(), Error> {
        let frame = emit_frame(&self.scope, &self.room, event, args, false)?;
        expect_ok(&self.client.call(frame, None, false)?)
    }

    /// As [`Room::emit`], but this connection does not receive the event.
    pub fn emit_peers<A: Serialize + ?Sized>(&self, event: &str, args: &A) -> Result<(), Error> {
        let frame = emit_frame(&self.scope, &self.room, event, args, true)?;
        expect_ok(&self.client.call(frame, None, false)?)
    }
}

/// The events of a joined room, received by blocking: [`recv`](Self::recv),
/// [`recv_timeout`](Self::recv_timeout), [`try_recv`](Self::try_recv), or
/// as an [`Iterator`] (which ends when the room is gone, left or the client
/// closed).
///
/// It starts with [`RoomEvent::Joined`]; after a reconnect it sees
/// [`RoomEvent::Disconnected`] then [`RoomEvent::Joined`] again. Dropping
/// it (or [`leave`](Self::leave)) leaves the room when no other receiver of
/// it is open. The same room id in two collections is two rooms.
#[derive(Debug)]
pub struct RoomEvents {
    client: Client,
    key: RoomKey,
    stream_id: u64,
    rx: EventRx<RoomEvent>,
    left: bool,
}

impl RoomEvents {
    /// The room's id (unique within its collection).
    pub fn room_id(&self) -> u64 {
        self.key.id
    }

    /// The name of the collection the room lives in.
    pub fn collection(&self) -> &str {
        &self.key.collection
    }

    /// The next event, waiting as long as it takes; `None` when the room
    /// was deleted or left, or the client closed.
    pub fn recv(&mut self) -> Option<RoomEvent> {
        block_on(std::future::poll_fn(|cx| self.rx.poll_recv(cx)), None).flatten()
    }

    /// The next event, waiting at most `timeout`.
    ///
    /// ```no_run
    /// # fn demo(mut events: thingsdb_client::blocking::RoomEvents) {
    /// use std::time::Duration;
    /// use thingsdb_client::blocking::RecvTimeoutError;
    /// match events.recv_timeout(Duration::from_secs(1)) {
    ///     Ok(ev) => println!("{ev:?}"),
    ///     Err(RecvTimeoutError::Timeout) => println!("quiet"),
    ///     Err(RecvTimeoutError::Disconnected) => println!("gone"),
    /// }
    /// # }
    /// ```
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<RoomEvent, RecvTimeoutError> {
        let until = Instant::now() + timeout;
        match block_on(
            std::future::poll_fn(|cx| self.rx.poll_recv(cx)),
            Some(until),
        ) {
            Some(Some(ev)) => Ok(ev),
            Some(None) => Err(RecvTimeoutError::Disconnected),
            None => Err(RecvTimeoutError::Timeout),
        }
    }

    /// The next event if one is waiting, without blocking.
    pub fn try_recv(&mut self) -> Result<RoomEvent, TryRecvError> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.rx.poll_recv(&mut cx) {
            Poll::Ready(Some(ev)) => Ok(ev),
            Poll::Ready(None) => Err(TryRecvError::Disconnected),
            Poll::Pending => Err(TryRecvError::Empty),
        }
    }

    /// Leaves: this receiver stops, and the room is left on the node if it
    /// was the last one. Returns once done; the receiver then yields the
    /// events that came before, [`RoomEvent::Left`], and ends.
    pub fn leave(&mut self) -> Result<(), Error> {
        if self.left {
            return Ok(());
        }
        self.left = true;
        let (ack, mut done) = oneshot::channel();
        let limit = Instant::now() + self.client.config().request_timeout;
        // Answered once the node confirmed (or the connection is gone).
        let _ = self.client.driver().call(
            Command::Unsubscribe {
                key: self.key.clone(),
                stream_id: self.stream_id,
                ack: Some(ack),
            },
            &mut done,
            Some(limit),
        );
        Ok(())
    }
}

impl Iterator for RoomEvents {
    type Item = RoomEvent;

    fn next(&mut self) -> Option<RoomEvent> {
        self.recv()
    }
}

impl Drop for RoomEvents {
    fn drop(&mut self) {
        if !self.left {
            self.client.driver().submit(Command::Unsubscribe {
                key: self.key.clone(),
                stream_id: self.stream_id,
                ack: None,
            });
        }
    }
}
