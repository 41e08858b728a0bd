//! Typed rooms: events as the variants of a Rust enum, both ways.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use serde::{Serialize, Serializer};

use crate::error::Error;
use crate::events::{Emitted, RoomEvent};
use crate::room::{Room, RoomEvents};

/// A Rust enum whose variants are a room's events: the event's name picks
/// the variant, its arguments are the variant's fields in order.
/// `#[derive(RoomEvent)]` implements it; the name is the variant's in
/// snake_case unless `#[thingsdb(rename = "...")]` says otherwise.
///
/// ```
/// use thingsdb_client::{Emitted, RoomEvent, TypedEvent};
/// #[derive(Debug, PartialEq, RoomEvent)]
/// enum Chat {
///     Message { user: String, text: String }, // emit('message', user, text)
///     #[thingsdb(rename = "typing")]
///     IsTyping(String),                       // emit('typing', user)
///     Bye,                                    // emit('bye')
/// }
/// let e = Emitted { event: "message".into(), args: rmp_serde::to_vec(&("iris", "hi")).unwrap().into() };
/// assert_eq!(
///     Chat::from_emitted(&e).unwrap()?,
///     Chat::Message { user: "iris".into(), text: "hi".into() }
/// );
/// assert!(Chat::from_emitted(&Emitted { event: "other".into(), args: vec![0x90].into() }).is_none());
/// assert_eq!(Chat::IsTyping("iris".into()).name(), "typing");
/// # Ok::<(), thingsdb_client::Error>(())
/// ```
pub trait TypedEvent: Sized {
    /// The event names the enum knows.
    fn names() -> &'static [&'static str];
    /// The variant for an emitted event: `None` when the enum does not
    /// know the name, `Some(Err)` when it does but the arguments do not
    /// fit the variant.
    fn from_emitted(e: &Emitted) -> Option<Result<Self, Error>>;
    /// The event name of this variant.
    fn name(&self) -> &'static str;
    /// Writes the variant's fields as the event's arguments (an array).
    fn serialize_args<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
}

/// The arguments of a typed event, as `Serialize`.
struct Args<'a, E>(&'a E);

impl<E: TypedEvent> Serialize for Args<'_, E> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_args(s)
    }
}

/// An item of a typed room stream ([`TypedEvents`]).
#[derive(Debug)]
pub enum Typed<E> {
    /// An event the enum knows, decoded.
    Event(E),
    /// An event whose name the enum does not know, kept as it came.
    Unknown(Emitted),
    /// An event the enum knows whose arguments did not fit the variant:
    /// the event as it came, and why it did not decode.
    Invalid(Emitted, Error),
    /// Anything but an emitted event: joined, left, deleted, lagged,
    /// disconnected.
    Room(RoomEvent),
}

impl<E: TypedEvent> Typed<E> {
    /// Sorts one room event.
    pub fn from_event(ev: RoomEvent) -> Typed<E> {
        match ev {
            RoomEvent::Emitted(e) => match E::from_emitted(&e) {
                Some(Ok(v)) => Typed::Event(v),
                Some(Err(err)) => Typed::Invalid(e, err),
                None => Typed::Unknown(e),
            },
            other => Typed::Room(other),
        }
    }
}

/// A room's events as [`Typed`] items: [`RoomEvents`] with each emitted
/// event decoded into `E`. Nothing is dropped: events `E` does not know
/// come as [`Typed::Unknown`], and those that do not fit as
/// [`Typed::Invalid`].
///
/// ```no_run
/// use futures::StreamExt;
/// use thingsdb_client::{RoomEvent, Typed};
/// #[derive(Debug, RoomEvent)]
/// enum Chat { Message { user: String, text: String } }
/// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
/// let room = client.room("//stuff", "chat")?;
/// let mut events = room.join().await?.typed::<Chat>();
/// room.emit_event(&Chat::Message { user: "iris".into(), text: "hi".into() }).await?;
/// while let Some(item) = events.next().await {
///     match item {
///         Typed::Event(Chat::Message { user, text }) => println!("{user}: {text}"),
///         Typed::Unknown(raw) => println!("other event {}", raw.event),
///         other => println!("{other:?}"),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TypedEvents<E> {
    inner: RoomEvents,
    kind: PhantomData<fn() -> E>,
}

impl<E: TypedEvent> TypedEvents<E> {
    /// The next item; `None` when the room was deleted or left, or the
    /// client closed.
    pub async fn recv(&mut self) -> Option<Typed<E>> {
        self.inner.recv().await.map(Typed::from_event)
    }

    /// The untyped stream underneath (to leave, or to read the room's id).
    pub fn inner(&mut self) -> &mut RoomEvents {
        &mut self.inner
    }

    /// The untyped stream back.
    pub fn into_inner(self) -> RoomEvents {
        self.inner
    }
}

impl<E: TypedEvent> Stream for TypedEvents<E> {
    type Item = Typed<E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Typed<E>>> {
        Pin::new(&mut self.inner)
            .poll_next(cx)
            .map(|o| o.map(Typed::from_event))
    }
}

impl RoomEvents {
    /// This stream with its emitted events decoded into `E`.
    pub fn typed<E: TypedEvent>(self) -> TypedEvents<E> {
        TypedEvents {
            inner: self,
            kind: PhantomData,
        }
    }
}

impl Room {
    /// Emits a typed event: its name and its fields as the arguments.
    /// Every connection that joined the room receives it, this one
    /// included.
    pub async fn emit_event<E: TypedEvent>(&self, event: &E) -> Result<(), Error> {
        self.emit(event.name(), &Args(event)).await
    }

    /// As [`Room::emit_event`], but this connection does not receive it.
    pub async fn emit_event_peers<E: TypedEvent>(&self, event: &E) -> Result<(), Error> {
        self.emit_peers(event.name(), &Args(event)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Two {
        Pair(String, i64),
        Nothing,
    }

    impl TypedEvent for Two {
        fn names() -> &'static [&'static str] {
            &["pair", "nothing"]
        }
        fn from_emitted(e: &Emitted) -> Option<Result<Self, Error>> {
            match e.event.as_str() {
                "pair" => Some(e.decode::<(String, i64)>().map(|(a, b)| Two::Pair(a, b))),
                "nothing" => Some(Ok(Two::Nothing)),
                _ => None,
            }
        }
        fn name(&self) -> &'static str {
            match self {
                Two::Pair(..) => "pair",
                Two::Nothing => "nothing",
            }
        }
        fn serialize_args<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                Two::Pair(a, b) => (a, b).serialize(s),
                Two::Nothing => Vec::<()>::new().serialize(s),
            }
        }
    }

    fn emitted(event: &str, args: Vec<u8>) -> RoomEvent {
        RoomEvent::Emitted(Emitted {
            event: event.into(),
            args: args.into(),
        })
    }

    #[test]
    fn events_sort_into_known_unknown_invalid_and_room() {
        let args = rmp_serde::to_vec(&("a", 1)).unwrap();
        assert!(matches!(
            Typed::<Two>::from_event(emitted("pair", args.clone())),
            Typed::Event(Two::Pair(a, 1)) if a == "a"
        ));
        assert!(
            matches!(Typed::<Two>::from_event(emitted("other", args)), Typed::Unknown(e) if e.event == "other")
        );
        let bad = rmp_serde::to_vec(&("a", "b")).unwrap();
        assert!(
            matches!(Typed::<Two>::from_event(emitted("pair", bad)), Typed::Invalid(e, Error::Decode(_)) if e.event == "pair")
        );
        assert!(matches!(
            Typed::<Two>::from_event(RoomEvent::Joined),
            Typed::Room(RoomEvent::Joined)
        ));
    }

    #[test]
    fn args_serialize_as_an_array() {
        let bytes = rmp_serde::to_vec(&Args(&Two::Pair("x".into(), 2))).unwrap();
        assert_eq!(bytes, b"\x92\xa1x\x02");
    }
}
