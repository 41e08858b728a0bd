//! What happens to the client's connections, as a stream beside the node
//! events: connected, lost, moved, authentication failed, gave up. From
//! [`Client::connection_events`](crate::Client::connection_events).
//!
//! ```no_run
//! # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
//! use futures::StreamExt;
//! use thingsdb_client::ConnectionEvent;
//! let mut events = client.connection_events().await?;
//! while let Some(ev) = events.next().await {
//!     match ev {
//!         ConnectionEvent::Moved { from, to, why } => println!("moved from {from} to {to}: {why:?}"),
//!         other => println!("{other:?}"),
//!     }
//! }
//! # Ok(()) }
//! ```

use thingsdb_transport::Target;

use crate::error::{ConnectionLost, Error};
use crate::events::LagItem;

/// Why new requests go to another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MoveReason {
    /// The node said SHUTTING_DOWN: the client connected to the next node
    /// before it let go of this one.
    ShuttingDown,
    /// The connection was lost; the client reconnected elsewhere.
    Lost,
}

/// One thing that happened to the client's connections.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// Connected to `target` and authenticated. `node_id` is the id of the
    /// node that answered, when the client asked it (with
    /// [`discover_nodes`](crate::ClientBuilder::discover_nodes) on).
    Connected {
        /// The pool entry connected to.
        target: Target,
        /// The node's id, when known.
        node_id: Option<u32>,
    },
    /// New requests go to `to` instead of `from` (after
    /// [`ConnectionEvent::Connected`] for `to`).
    Moved {
        /// The pool entry requests went to.
        from: Target,
        /// The pool entry they go to now.
        to: Target,
        /// Why.
        why: MoveReason,
    },
    /// The connection to `target` went (its requests ended or were sent
    /// again; see [`Error::may_have_run`](crate::Error::may_have_run)).
    Lost {
        /// The pool entry whose connection went.
        target: Target,
        /// Why.
        reason: ConnectionLost,
    },
    /// `target` refused the credentials; the client stops walking the pool
    /// for this round.
    AuthFailed {
        /// The pool entry that refused.
        target: Target,
        /// The node's answer.
        error: Error,
    },
    /// The client stopped reconnecting and is done; every request fails
    /// with `error` from now on.
    GaveUp {
        /// Why.
        error: Error,
    },
    /// This many events were dropped because the consumer fell behind.
    Lagged(u64),
}

impl LagItem for ConnectionEvent {
    fn lagged(n: u64) -> Self {
        ConnectionEvent::Lagged(n)
    }
}
