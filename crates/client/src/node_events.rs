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
