//! Room handlers in the shape of python-thingsdb's `Room`: `on_init` once,
//! `on_join` on every join and re-join, `on_leave`, `on_delete`, a handler
//! per event and a fallback, all async and in order.

use std::collections::VecDeque;
use std::future::Future;

use futures::FutureExt;
use tokio::sync::oneshot;

use crate::error::Error;
use crate::events::{Emitted, RoomEvent};
use crate::lifecycle::{ConnectionEvent, MoveReason};
use crate::node_events::ConnectionEvents;
use crate::room::{Room, RoomEvents};
use crate::typed_room::{Typed, TypedEvent};

/// `Send` where tasks may move between threads; nothing in a browser
/// (wasm32), where futures are not `Send`.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}
/// `Send` where tasks may move between threads; nothing in a browser
/// (wasm32), where futures are not `Send`.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// A room's handler, served by [`Room::serve`]: python-thingsdb's `Room`
/// as a Rust trait. Every method has a default that does nothing (or logs),
/// so a handler writes only the ones it needs, as `async fn`s.
///
/// The calls, one at a time and in this order:
///
/// 1. [`on_init`](Self::on_init) once, after the room was joined and before
///    anything else;
/// 2. [`on_join`](Self::on_join) after the first join, and again after each
///    re-join (the connection was lost and made again, or moved to another
///    node ahead of a shutdown: [`ConnectionEvent::Moved`]), so it can
///    (re)read the room's state. Events that arrive while
///    it runs are held and handed over after it, in the order they came.
///    [`Room::serve`] returns once the first `on_join` is done;
/// 3. [`on_event`](Self::on_event) for each event [`Self::Event`] knows,
///    [`on_emit`](Self::on_emit) for the others (the fallback), in order;
///    a handler that awaits holds the events after it, never reorders them;
/// 4. [`on_leave`](Self::on_leave) after [`ServedRoom::leave`], or
///    [`on_delete`](Self::on_delete) when the room is deleted: the last call.
///
/// Events for no enum? Use `type Event = NoEvents;` and handle them all in
/// `on_emit`.
///
/// ```no_run
/// use thingsdb_client::{Emitted, Room, RoomEvent, RoomHandler};
///
/// #[derive(Debug, RoomEvent)]
/// enum Chat { Message { user: String, text: String } }
///
/// #[derive(Default)]
/// struct ChatLog { lines: Vec<String> }
///
/// impl RoomHandler for ChatLog {
///     type Event = Chat;
///     async fn on_join(&mut self, room: &Room) {
///         // (Re)read what was missed while not joined.
///         if let Ok(lines) = room.client().query(".history").scope("//stuff").decode().await {
///             self.lines = lines;
///         }
///     }
///     async fn on_event(&mut self, _room: &Room, event: Chat) {
///         let Chat::Message { user, text } = event;
///         self.lines.push(format!("{user}: {text}"));
///     }
///     async fn on_emit(&mut self, _room: &Room, other: Emitted) {
///         println!("unhandled event {}", other.event);
///     }
/// }
///
/// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
/// let served = client.room("//stuff", "chat")?.serve(ChatLog::default()).await?;
/// served.room().emit_event(&Chat::Message { user: "iris".into(), text: "hi".into() }).await?;
/// let log = served.leave().await?;
/// # let _ = log; Ok(()) }
/// ```
pub trait RoomHandler: MaybeSend + 'static {
    /// The events this handler knows, as an enum (`#[derive(RoomEvent)]`),
    /// or [`NoEvents`].
    type Event: TypedEvent + MaybeSend;

    /// Once, after the first join, before [`on_join`](Self::on_join).
    fn on_init(&mut self, room: &Room) -> impl Future<Output = ()> + MaybeSend {
        let _ = room;
        async {}
    }

    /// After every join and re-join; events wait until it is done.
    fn on_join(&mut self, room: &Room) -> impl Future<Output = ()> + MaybeSend {
        let _ = room;
        async {}
    }

    /// An event [`Self::Event`] knows.
    fn on_event(
        &mut self,
        room: &Room,
        event: Self::Event,
    ) -> impl Future<Output = ()> + MaybeSend {
        let _ = (room, event);
        async {}
    }

    /// The fallback: an event [`Self::Event`] does not know. By default
    /// it is logged (at debug level) and dropped.
    fn on_emit(&mut self, room: &Room, event: Emitted) -> impl Future<Output = ()> + MaybeSend {
        let _ = room;
        tracing::debug!(event = %event.event, "no handler for room event");
        async {}
    }

    /// An event [`Self::Event`] knows, with arguments that do not fit its
    /// variant. By default logged as a warning and handed to
    /// [`on_emit`](Self::on_emit).
    fn on_invalid(
        &mut self,
        room: &Room,
        event: Emitted,
        error: Error,
    ) -> impl Future<Output = ()> + MaybeSend {
        tracing::warn!(event = %event.event, %error, "room event does not fit its variant");
        self.on_emit(room, event)
    }

    /// The connection was lost; [`on_join`](Self::on_join) follows once
    /// the room is joined again.
    fn on_disconnect(&mut self, room: &Room) -> impl Future<Output = ()> + MaybeSend {
        let _ = room;
        async {}
    }

    /// After [`ServedRoom::leave`]: the last call.
    fn on_leave(&mut self, room: &Room) -> impl Future<Output = ()> + MaybeSend {
        let _ = room;
        async {}
    }

    /// The room was deleted: the last call.
    fn on_delete(&mut self, room: &Room) -> impl Future<Output = ()> + MaybeSend {
        let _ = room;
        async {}
    }
}

/// The event enum of a handler that knows no events by name: every event
/// goes to [`RoomHandler::on_emit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoEvents {}

impl TypedEvent for NoEvents {
    fn names() -> &'static [&'static str] {
        &[]
    }
    fn from_emitted(_: &Emitted) -> Option<Result<Self, Error>> {
        None
    }
    fn name(&self) -> &'static str {
        match *self {}
    }
    fn serialize_args<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        match *self {}
    }
}

/// A room served by a [`RoomHandler`] on a task of its own: made by
/// [`Room::serve`]. Dropping it leaves the task running until the room is
/// deleted or the client is closed; [`leave`](Self::leave) ends it. A
/// handler method that panics ends the serving: `leave` and `finished`
/// then give [`Error::Closed`].
pub struct ServedRoom<H> {
    room: Room,
    leave: Option<oneshot::Sender<()>>,
    done: oneshot::Receiver<H>,
}

impl<H> std::fmt::Debug for ServedRoom<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedRoom")
            .field("room", &self.room)
            .finish_non_exhaustive()
    }
}

impl<H: RoomHandler> ServedRoom<H> {
    /// The room, to emit in (emitting needs no join).
    pub fn room(&self) -> &Room {
        &self.room
    }

    /// Leaves the room: the events already received are handled, then
    /// [`RoomHandler::on_leave`]; returns the handler.
    pub async fn leave(mut self) -> Result<H, Error> {
        if let Some(tx) = self.leave.take() {
            let _ = tx.send(());
        }
        self.done.await.map_err(|_| Error::Closed)
    }

    /// Waits until the serving ends by itself (the room was deleted, the
    /// client closed or gave up reconnecting) and returns the handler.
    pub async fn finished(self) -> Result<H, Error> {
        self.done.await.map_err(|_| Error::Closed)
    }
}

impl Room {
    /// Joins the room and serves it with `handler` on a task of its own
    /// (see [`RoomHandler`] for the order of the calls). Returns once
    /// [`RoomHandler::on_init`] and the first [`RoomHandler::on_join`] are
    /// done.
    pub async fn serve<H: RoomHandler>(&self, mut handler: H) -> Result<ServedRoom<H>, Error> {
        // Moves to another node keep the room joined without a word on its
        // stream; the connection's events tell them.
        let moves = self.client().connection_events().await?;
        let events = self.join().await?;
        handler.on_init(self).await;
        let (first_join, first_joined) = oneshot::channel();
        let (leave_tx, leave_rx) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let room = self.clone();
        crate::rt::spawn(async move {
            let handler = serve(handler, room, events, moves, leave_rx, Some(first_join)).await;
            let _ = done_tx.send(handler);
        });
        // Closed without a word: the room went away before its first join
        // was handled; `finished` tells the rest.
        let _ = first_joined.await;
        Ok(ServedRoom {
            room: self.clone(),
            leave: Some(leave_tx),
            done,
        })
    }
}

/// What a stream item leads to once handled.
enum After {
    Next,
    Joined,
    Stop,
}

/// One item to its handler method.
async fn dispatch<H: RoomHandler>(handler: &mut H, room: &Room, ev: RoomEvent) -> After {
    match Typed::<H::Event>::from_event(ev) {
        Typed::Event(e) => handler.on_event(room, e).await,
        Typed::Unknown(e) => handler.on_emit(room, e).await,
        Typed::Invalid(e, err) => handler.on_invalid(room, e, err).await,
        Typed::Room(RoomEvent::Joined) => {
            handler.on_join(room).await;
            return After::Joined;
        }
        Typed::Room(RoomEvent::Disconnected) => handler.on_disconnect(room).await,
        Typed::Room(RoomEvent::Deleted) => {
            handler.on_delete(room).await;
            return After::Stop;
        }
        Typed::Room(RoomEvent::Left) => {
            handler.on_leave(room).await;
            return After::Stop;
        }
        Typed::Room(RoomEvent::Lagged(n)) => {
            tracing::warn!(dropped = n, "room events were dropped");
        }
        Typed::Room(other) => tracing::debug!(?other, "room event without a handler"),
    }
    After::Next
}

/// What the serving loop waits for next.
enum Wake {
    Event(RoomEvent),
    Ended,
    Leave,
    Detached,
}

/// Whether a connection event means the room is now served by another
/// connection without a `Joined` on its stream: a move ahead of a node's
/// shutdown (a move after a lost connection comes with `Disconnected` and
/// `Joined`), or a gap in the events, where one may have been.
fn is_silent_rejoin(ev: &ConnectionEvent) -> bool {
    matches!(
        ev,
        ConnectionEvent::Moved {
            why: MoveReason::ShuttingDown,
            ..
        } | ConnectionEvent::Lagged(_)
    )
}

/// The next connection event that is a silent re-join; pending forever
/// once the stream is gone (`moves` is then `None`).
async fn next_rejoin(moves: &mut Option<ConnectionEvents>) {
    loop {
        match moves {
            Some(m) => match m.recv().await {
                Some(ev) if is_silent_rejoin(&ev) => return,
                Some(_) => {}
                None => *moves = None,
            },
            None => std::future::pending().await,
        }
    }
}

/// The next item of the stream; pending forever once it is gone.
async fn next_event(events: &mut Option<RoomEvents>) -> Option<RoomEvent> {
    match events {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// The serving loop: one item at a time; while a handler runs, the
/// stream is still read (into `held`), so the connection never waits on a
/// busy handler and nothing is reordered.
async fn serve<H: RoomHandler>(
    mut handler: H,
    room: Room,
    events: RoomEvents,
    moves: ConnectionEvents,
    mut leave: oneshot::Receiver<()>,
    mut first_join: Option<oneshot::Sender<()>>,
) -> H {
    let mut events = Some(events);
    let mut moves = Some(moves);
    let mut held: VecDeque<RoomEvent> = VecDeque::new();
    let mut leaving = false;
    loop {
        let ev = match held.pop_front() {
            Some(ev) => ev,
            None if events.is_none() => break,
            None => {
                let wake = tokio::select! {
                    ev = next_event(&mut events) => ev.map_or(Wake::Ended, Wake::Event),
                    () = next_rejoin(&mut moves) => Wake::Event(RoomEvent::Joined),
                    r = &mut leave, if !leaving => if r.is_ok() { Wake::Leave } else { Wake::Detached },
                };
                match wake {
                    Wake::Event(ev) => ev,
                    Wake::Ended => {
                        events = None;
                        continue;
                    }
                    Wake::Detached => {
                        // The ServedRoom was dropped: keep serving.
                        leaving = true;
                        continue;
                    }
                    Wake::Leave => {
                        leaving = true;
                        // Hand over what already came, then leave: dropping
                        // the stream leaves the room on the node.
                        if let Some(s) = events.as_mut() {
                            while let Some(Some(ev)) = s.recv().now_or_never() {
                                held.push_back(ev);
                            }
                        }
                        events = None;
                        held.push_back(RoomEvent::Left);
                        continue;
                    }
                }
            }
        };
        let after = {
            let work = dispatch(&mut handler, &room, ev);
            futures::pin_mut!(work);
            loop {
                let got = tokio::select! {
                    biased;
                    after = &mut work => break after,
                    ev = next_event(&mut events) => ev,
                    () = next_rejoin(&mut moves) => Some(RoomEvent::Joined),
                };
                match got {
                    Some(ev) => held.push_back(ev),
                    None => events = None,
                }
            }
        };
        match after {
            After::Next => {}
            After::Joined => {
                if let Some(tx) = first_join.take() {
                    let _ = tx.send(());
                }
            }
            After::Stop => break,
        }
    }
    handler
}
