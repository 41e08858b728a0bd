//! The stream of node events (NODE_STATUS, WARN).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;

use crate::events::{EventRx, NodeEvent};

/// Node status changes and warnings, as a [`Stream`]; from
/// [`Client::node_events`](crate::Client::node_events).
///
/// The stream ends when the client is closed. A consumer that falls behind
/// sees [`NodeEvent::Lagged`] with the number of events it missed, as soon
/// as it has read the events before them.
///
/// ```no_run
/// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
/// use futures::StreamExt;
/// let mut events = client.node_events().await?;
/// while let Some(ev) = events.next().await {
///     println!("{ev:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct NodeEvents {
    rx: EventRx<NodeEvent>,
}

impl NodeEvents {
    pub(crate) fn new(rx: EventRx<NodeEvent>) -> Self {
        NodeEvents { rx }
    }

    /// The next event; `None` once the client is closed.
    pub async fn recv(&mut self) -> Option<NodeEvent> {
        self.rx.recv().await
    }
}

impl Stream for NodeEvents {
    type Item = NodeEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<NodeEvent>> {
        self.rx.poll_recv(cx)
    }
}
