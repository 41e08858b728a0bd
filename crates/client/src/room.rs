//! Rooms: join, leave, emit, and the stream of a room's events.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures::Stream;
use serde::Serialize;
use thingsdb_protocol::msgpack::Kind;
use thingsdb_protocol::{request, Room as RoomRef};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::client::{expect_ok, Client};
use crate::connection::{Command, RoomKey, Subscribe};
use crate::error::Error;
use crate::events::{event_channel, EventRx, Overflow, RoomEvent};
use crate::observe::{record_error, room_span, Op, OpKind};
use crate::request::serialize_into;
use crate::scope::Scope;

/// A room of a collection, named by id or by name. Cheap to clone; holds a
/// [`Client`].
///
/// Get one with [`Client::room`] (by id or name) or
/// [`Client::room_by_code`] (by code that returns the room's id). Joining
/// gives a [`RoomEvents`] stream; emitting needs no join.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let node = thingsdb_testkit::TestNode::start().await?;
/// # let client = thingsdb_client::Client::connect(&node.thingsdb_url(), thingsdb_client::Auth::password("admin", "pass")).await?;
/// # node.create_room("stuff", Some("chat"));
/// use futures::StreamExt;
/// use thingsdb_client::RoomEvent;
/// let room = client.room("//stuff", "chat")?;
/// let mut events = room.join().await?;
/// room.emit("msg", &("hello",)).await?;
/// while let Some(ev) = events.next().await {
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
        let scope = collection_scope(scope)?;
        Ok(Room {
            client: self.clone(),
            scope,
            room: room.into(),
        })
    }

    /// A room in the client's default scope (set with
    /// [`ClientBuilder::default_scope`](crate::ClientBuilder::default_scope)),
    /// by id or by name; an error when the default scope is not a
    /// collection.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use thingsdb_client::{Auth, Client};
    /// let node = thingsdb_testkit::TestNode::start().await?; // or your node: "thingsdb://localhost:9200"
    /// node.create_room("stuff", Some("chat"));
    /// let client = Client::builder()
    ///     .target(&node.thingsdb_url())?
    ///     .auth(Auth::password("admin", "pass"))
    ///     .default_scope("//stuff")?
    ///     .connect()
    ///     .await?;
    /// let mut events = client.room_in_default("chat")?.join().await?;
    /// # assert_eq!(events.recv().await, Some(thingsdb_client::RoomEvent::Joined));
    /// # Ok(()) }
    /// ```
    pub fn room_in_default(&self, room: impl Into<RoomRef>) -> Result<Room, Error> {
        let scope = self.default_scope().clone();
        if scope.collection_name().is_none() {
            return Err(Error::BadArgument(format!(
                "rooms live in collections; the default scope {scope} is not a collection scope"
            )));
        }
        Ok(Room {
            client: self.clone(),
            scope,
            room: room.into(),
        })
    }

    /// A room found by running `code` in the collection `scope`; the code
    /// must return the room's id (for example `.chat.id();`).
    pub async fn room_by_code(&self, scope: &str, code: &str) -> Result<Room, Error> {
        let id: u64 = self
            .query(code)
            .scope(scope)
            .decode()
            .await
            .map_err(|e| match e {
                Error::Decode(m) => {
                    Error::BadArgument(format!("room code must return a room id (an integer): {m}"))
                }
                other => other,
            })?;
        self.room(scope, id)
    }
}

impl Room {
    /// The scope the room lives in.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// How the room is named: by id or by name.
    pub fn room_ref(&self) -> &RoomRef {
        &self.room
    }

    /// The client this handle uses (for queries from a room handler).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Joins the room and returns the stream of its events. The stream's
    /// buffer waits for a slow consumer ([`Overflow::Wait`]); see
    /// [`Room::join_with`].
    pub async fn join(&self) -> Result<RoomEvents, Error> {
        self.join_with(Overflow::Wait).await
    }

    /// Joins the room with a chosen overflow policy for the stream.
    ///
    /// Several streams of the same room may be open (from this handle or
    /// others); each receives every event. The room is left when the last
    /// one is dropped or [left](RoomEvents::leave). A room that does not
    /// exist is a `lookup` error.
    pub async fn join_with(&self, overflow: Overflow) -> Result<RoomEvents, Error> {
        let span = room_span(false, self.scope.as_str(), &self.room);
        let r = self.join_inner(overflow).instrument(span.clone()).await;
        if let Err(e) = &r {
            record_error(&span, e);
        }
        r
    }

    async fn join_inner(&self, overflow: Overflow) -> Result<RoomEvents, Error> {
        let stream_id = self.client.next_stream_id();
        let (sink, rx) = event_channel(stream_id, self.client.config().event_buffer, overflow);
        let collection = self.scope.collection_name().unwrap_or_default();
        let sink = sink.with_counters(
            self.client
                .observer()
                .room(collection, &self.room.to_string()),
        );
        let (reply, answer) = oneshot::channel();
        self.client
            .command(Command::Subscribe(Box::new(Subscribe {
                scope: self.scope.clone(),
                room: self.room.clone(),
                sink,
                reply,
            })))
            .await?;
        let timeout = self.client.config().request_timeout;
        let key = match crate::rt::timeout(timeout, answer).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => return Err(Error::Closed),
            Err(_) => return Err(Error::Timeout(timeout)),
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
    /// array (a tuple, slice or `Vec`): each element is one argument. Every
    /// connection that joined the room receives it, this one included.
    pub async fn emit<A: Serialize + ?Sized>(&self, event: &str, args: &A) -> Result<(), Error> {
        self.send_emit(event, args, false).await
    }

    /// As [`Room::emit`], but this connection does not receive the event.
    pub async fn emit_peers<A: Serialize + ?Sized>(
        &self,
        event: &str,
        args: &A,
    ) -> Result<(), Error> {
        self.send_emit(event, args, true).await
    }

    async fn send_emit<A: Serialize + ?Sized>(
        &self,
        event: &str,
        args: &A,
        peers_only: bool,
    ) -> Result<(), Error> {
        let frame = emit_frame(&self.scope, &self.room, event, args, peers_only)?;
        let op = Op {
            kind: OpKind::Emit,
            scope: self.scope.as_str(),
            text: event,
        };
        // On the room's connection, in the order the caller emits.
        expect_ok(
            &self
                .client
                .call_via(op, None, frame, None, false, crate::balance::Via::Primary)
                .await?,
        )
    }
}

/// `scope` parsed, when it is a collection's scope (where rooms live);
/// shared by the async and the blocking client.
pub(crate) fn collection_scope(scope: &str) -> Result<Scope, Error> {
    let scope = Scope::parse(scope)?;
    if scope.collection_name().is_none() {
        return Err(Error::BadArgument(format!(
            "rooms live in collections; {scope} is not a collection scope"
        )));
    }
    Ok(scope)
}

/// The EMIT (or EMIT_PEER) request for `event` with `args` in a room;
/// shared by the async and the blocking client.
pub(crate) fn emit_frame<A: Serialize + ?Sized>(
    scope: &Scope,
    room: &RoomRef,
    event: &str,
    args: &A,
    peers_only: bool,
) -> Result<BytesMut, Error> {
    let mut encoded = BytesMut::new();
    if serialize_into(&mut encoded, args)? != Kind::Array {
        return Err(Error::BadArgument(
            "emit args must serialize to an array (a tuple, slice or Vec)".into(),
        ));
    }
    let mut frame = BytesMut::with_capacity(32 + event.len() + encoded.len());
    let scope = scope.as_str();
    if peers_only {
        request::encode_emit_peer(&mut frame, 0, scope, room, event, &encoded)?;
    } else {
        request::encode_emit(&mut frame, 0, scope, room, event, &encoded)?;
    }
    Ok(frame)
}

/// The events of a joined room, as a [`Stream`] of [`RoomEvent`].
///
/// The stream starts with [`RoomEvent::Joined`]; events come in the order
/// the node sent them. Dropping the stream (or calling
/// [`RoomEvents::leave`]) leaves the room when no other stream of it is
/// open. After a reconnect the room is joined again and the stream sees
/// [`RoomEvent::Disconnected`] then [`RoomEvent::Joined`]; when the node
/// announces a shutdown and the pool has another node, the room moves to
/// it without either.
///
/// A room is the pair (collection, id): rooms with the same id in two
/// collections are two rooms, each with its own streams.
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

    /// The next event; `None` when the room was deleted, or left, or the
    /// client closed.
    pub async fn recv(&mut self) -> Option<RoomEvent> {
        self.rx.recv().await
    }

    /// Leaves: this stream stops, and the room is left on the node if it
    /// was the last stream. Returns once done; the stream then yields the
    /// events that came before, [`RoomEvent::Left`], and ends.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = thingsdb_testkit::TestNode::start().await?;
    /// # let client = thingsdb_client::Client::connect(&node.thingsdb_url(), thingsdb_client::Auth::password("admin", "pass")).await?;
    /// # node.create_room("stuff", Some("chat"));
    /// use thingsdb_client::RoomEvent;
    /// let mut events = client.room("//stuff", "chat")?.join().await?;
    /// events.leave().await?;
    /// while let Some(ev) = events.recv().await {
    ///     if ev == RoomEvent::Left {
    ///         break;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn leave(&mut self) -> Result<(), Error> {
        if self.left {
            return Ok(());
        }
        let scope = format!("//{}", self.key.collection);
        let span = room_span(true, &scope, &self.key.id);
        let (ack, done) = oneshot::channel();
        let sent = self
            .client
            .command(Command::Unsubscribe {
                key: self.key.clone(),
                stream_id: self.stream_id,
                ack: Some(ack),
            })
            .instrument(span.clone())
            .await;
        if let Err(e) = &sent {
            record_error(&span, e);
        }
        sent?;
        // Only now: had this future been dropped before the command went
        // out, `Drop` still sends it.
        self.left = true;
        // Answered once the node confirmed (or the connection is gone).
        let _ = done.instrument(span).await;
        Ok(())
    }
}

impl Stream for RoomEvents {
    type Item = RoomEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RoomEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for RoomEvents {
    fn drop(&mut self) {
        if !self.left {
            self.client.try_command(Command::Unsubscribe {
                key: self.key.clone(),
                stream_id: self.stream_id,
                ack: None,
            });
        }
    }
}
