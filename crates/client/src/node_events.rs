//! The streams of node events (NODE_STATUS, WARN) and of connection
//! events.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;

use crate::events::{EventRx, NodeEvent};
use crate::lifecycle::ConnectionEvent;

/// Node status changes and warnings, as a [`Stream`]; from
/// [`Client::node_events`](crate::Client::node_events). See [`EventStream`].
pub type NodeEvents = EventStream<NodeEvent>;

/// What happens to the client's connections, as a [`Stream`]; from
/// [`Client::connection_events`](crate::Client::connection_events). See
/// [`EventStream`] and [`crate::lifecycle`].
pub type ConnectionEvents = EventStream<ConnectionEvent>;

/// A stream of client-wide events: [`NodeEvents`] or [`ConnectionEvents`].
///
/// The stream ends when the client is closed. A consumer that falls behind
/// sees a `Lagged` item with the number of events it missed, as soon as it
/// has read the events before them; it never slows the connection.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let node = thingsdb_testkit::TestNode::start().await?;
/// # let client = thingsdb_client::Client::connect(&node.thingsdb_url(), thingsdb_client::Auth::password("admin", "pass")).await?;
/// use futures::StreamExt;
/// use thingsdb_client::NodeEvent;
/// let mut events = client.node_events().await?;
/// # client.ping().await?; // the stream is registered before the node warns
/// # node.emit_warn(1, "disk almost full");
/// while let Some(ev) = events.next().await {
///     println!("{ev:?}");
/// #   assert_eq!(ev, NodeEvent::Warn { code: 1, message: "disk almost full".into() });
/// #   break;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct EventStream<T> {
    rx: EventRx<T>,
}

impl<T> EventStream<T> {
    pub(crate) fn new(rx: EventRx<T>) -> Self {
        EventStream { rx }
    }
}

impl<T: crate::events::LagItem> EventStream<T> {
    /// The next event; `None` once the client is closed.
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await
    }
}

impl<T: crate::events::LagItem> Stream for EventStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_recv(cx)
    }
}
