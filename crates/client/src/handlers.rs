//! Callbacks per event name: a thin layer over [`RoomEvents`].

use std::collections::HashMap;

use futures::StreamExt;
#[cfg(not(target_arch = "wasm32"))]
use tokio::task::JoinHandle;

use crate::events::{Emitted, RoomEvent};
use crate::room::RoomEvents;

type EmitFn = Box<dyn FnMut(Emitted) + Send>;
type OtherFn = Box<dyn FnMut(RoomEvent) + Send>;

/// Handlers for a room's events: one callback per event name, and a
/// fallback for everything else (other event names, joined, left, deleted,
/// lagged, disconnected). Like the `@event` handlers of the Python
/// connector, in Rust closures.
///
/// Callbacks run one at a time, in the order the events arrived; a callback
/// that needs to await should spawn a task. For async handlers with
/// `on_join` (again after every re-join, events held meanwhile),
/// `on_leave` and `on_delete`, in the shape of python-thingsdb's `Room`,
/// see [`RoomHandler`](crate::RoomHandler).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let node = thingsdb_testkit::TestNode::start().await?;
/// # let client = thingsdb_client::Client::connect(&node.thingsdb_url(), thingsdb_client::Auth::password("admin", "pass")).await?;
/// # node.create_room("stuff", Some("chat"));
/// use thingsdb_client::RoomHandlers;
/// let events = client.room("//stuff", "chat")?.join().await?;
/// let task = RoomHandlers::new()
///     .on("msg", |e| {
///         if let Ok((text,)) = e.decode::<(String,)>() {
///             println!("message: {text}");
///         }
///     })
///     .fallback(|other| println!("{other:?}"))
///     .spawn(events);
/// # task.abort();
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct RoomHandlers {
    by_name: HashMap<String, EmitFn>,
    fallback: Option<OtherFn>,
}

impl std::fmt::Debug for RoomHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomHandlers")
            .field("events", &self.by_name.keys().collect::<Vec<_>>())
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl RoomHandlers {
    /// No handlers yet.
    pub fn new() -> Self {
        RoomHandlers::default()
    }

    /// Calls `f` for every emitted event named `event`.
    pub fn on(mut self, event: &str, f: impl FnMut(Emitted) + Send + 'static) -> Self {
        self.by_name.insert(event.to_string(), Box::new(f));
        self
    }

    /// Calls `f` for every event no named handler takes.
    pub fn fallback(mut self, f: impl FnMut(RoomEvent) + Send + 'static) -> Self {
        self.fallback = Some(Box::new(f));
        self
    }

    /// Hands one event to its handler.
    pub fn handle(&mut self, event: RoomEvent) {
        match event {
            RoomEvent::Emitted(e) => match self.by_name.get_mut(&e.event) {
                Some(f) => f(e),
                None => {
                    if let Some(f) = &mut self.fallback {
                        f(RoomEvent::Emitted(e));
                    }
                }
            },
            other => {
                if let Some(f) = &mut self.fallback {
                    f(other);
                }
            }
        }
    }

    /// Feeds every event of `events` to the handlers until the stream ends
    /// (the room was deleted or the client closed).
    pub async fn run(mut self, mut events: RoomEvents) {
        while let Some(ev) = events.next().await {
            self.handle(ev);
        }
    }

    /// As [`RoomHandlers::run`], on a task of its own. Abort the task to
    /// stop: that drops the stream, which leaves the room. (The stream holds
    /// a client handle, so dropping your own client does not stop it;
    /// `client.close()` does.)
    #[cfg(not(target_arch = "wasm32"))]
    pub fn spawn(self, events: RoomEvents) -> JoinHandle<()> {
        tokio::spawn(self.run(events))
    }

    /// As [`RoomHandlers::run`], on a task of its own on the page's event
    /// loop (wasm32). It stops when the stream ends: the room is deleted,
    /// or the client is closed.
    #[cfg(target_arch = "wasm32")]
    pub fn spawn(self, events: RoomEvents) {
        crate::rt::spawn(self.run(events));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn named_handlers_and_fallback() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s1, s2) = (seen.clone(), seen.clone());
        let mut h = RoomHandlers::new()
            .on("a", move |e| {
                s1.lock().unwrap().push(format!("a:{}", e.args.len()))
            })
            .fallback(move |e| s2.lock().unwrap().push(format!("{e:?}")));
        h.handle(RoomEvent::Emitted(Emitted {
            event: "a".into(),
            args: bytes::Bytes::from_static(&[0x90]),
        }));
        h.handle(RoomEvent::Joined);
        h.handle(RoomEvent::Emitted(Emitted {
            event: "b".into(),
            args: bytes::Bytes::from_static(&[0x90]),
        }));
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0], "a:1");
        assert_eq!(seen[1], "Joined");
        assert!(seen[2].contains("\"b\""));
    }
}
