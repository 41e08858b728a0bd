//! The node's shared state, behind one std mutex that is never held across
//! an `.await`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use thingsdb_protocol::{Event, PackageType};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::faults::Corruption;
use crate::reply::{Args, Query, Reply};

/// A query handler.
pub(crate) type QueryFn = dyn Fn(&Query) -> Reply + Send + Sync;
/// A procedure.
pub(crate) type ProcFn = dyn Fn(&Args) -> Reply + Send + Sync;

/// Which listener a connection came in on (not to be confused with the
/// transport crate: this is the testkit node's side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ingress {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP (`thingsdbs://`).
    Tls,
    /// WebSocket (`ws://`).
    Ws,
    /// Secure WebSocket (`wss://`).
    Wss,
    /// The Unix socket.
    Unix,
}

impl Ingress {
    /// Whether packages travel as WebSocket messages.
    pub fn is_websocket(self) -> bool {
        matches!(self, Ingress::Ws | Ingress::Wss)
    }
}

/// A snapshot of what the node received and did; see
/// [`crate::TestNode::counters`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    received: BTreeMap<u8, u64>,
    accepted: BTreeMap<Ingress, u64>,
    /// Connections refused while [`crate::TestNode::refuse_connections_for`]
    /// was in force.
    pub connections_refused: u64,
    /// AUTH requests that succeeded.
    pub auth_ok: u64,
    /// AUTH requests that failed (wrong credentials or a malformed request).
    pub auth_failed: u64,
    /// Requests other than PING refused with -56 because the connection was
    /// not authenticated.
    pub not_authenticated: u64,
    /// Packages that made the node close the connection: a bad check byte,
    /// a length over the maximum, a WebSocket message shorter than a header
    /// or than its header says.
    pub bad_packages: u64,
    /// Replies (PONG, OK, DATA, ERROR) written.
    pub replies_sent: u64,
    /// Events written.
    pub events_sent: u64,
    /// Connections closed by fault injection (close now, close after N).
    pub closed_by_fault: u64,
}

impl Counters {
    /// Packages received of a type.
    pub fn received(&self, t: PackageType) -> u64 {
        self.received_type_byte(t.as_u8())
    }

    /// Packages received with this type byte (also unknown types), counted
    /// when their check byte was right.
    pub fn received_type_byte(&self, b: u8) -> u64 {
        self.received.get(&b).copied().unwrap_or(0)
    }

    /// All packages received with a right check byte.
    pub fn received_total(&self) -> u64 {
        self.received.values().sum()
    }

    /// Connections accepted on a transport (refused ones not included).
    pub fn connections(&self, t: Ingress) -> u64 {
        self.accepted.get(&t).copied().unwrap_or(0)
    }

    /// Connections accepted on all transports.
    pub fn connections_total(&self) -> u64 {
        self.accepted.values().sum()
    }

    pub(crate) fn count_received(&mut self, b: u8) {
        *self.received.entry(b).or_default() += 1;
    }

    pub(crate) fn count_accepted(&mut self, t: Ingress) {
        *self.accepted.entry(t).or_default() += 1;
    }
}

/// What a connection task is told to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Write one whole package (an event).
    Package(Bytes),
    /// Write these bytes as they are (over WebSocket: as one message).
    Raw(Bytes),
    /// Close the connection.
    Close,
}

/// Fault settings of one connection, or the defaults for all.
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultConfig {
    pub delay: Duration,
    pub silent: bool,
    pub byte_by_byte: bool,
}

pub(crate) struct ConnEntry {
    /// The id of the node (of a cluster) the connection came in on.
    pub node: u8,
    pub transport: Ingress,
    pub user: Option<String>,
    pub tx: mpsc::UnboundedSender<Command>,
    pub faults: FaultConfig,
    /// Packages still to receive before the connection is closed.
    pub close_after: Option<u64>,
    pub corruptions: VecDeque<Corruption>,
    pub abort: Option<AbortHandle>,
    pub received: u64,
}

pub(crate) struct Room {
    pub name: Option<String>,
    pub joined: BTreeSet<u64>,
}

/// A room: its collection and its id there (ids are unique only within a
/// collection, as on a node).
pub(crate) type RoomKey = (String, u64);

pub(crate) struct State {
    pub users: HashMap<String, String>,
    pub tokens: HashMap<String, String>,
    pub collections: BTreeSet<String>,
    pub rooms: BTreeMap<RoomKey, Room>,
    /// The next free id of each collection (`ti_collection_next_free_id`:
    /// id 1 is the collection's root thing, so rooms start at 2).
    pub next_ids: HashMap<String, u64>,
    pub query_handler: Option<Arc<QueryFn>>,
    pub procedures: HashMap<String, Arc<ProcFn>>,
    pub conns: BTreeMap<u64, ConnEntry>,
    pub next_conn_id: u64,
    pub counters: Counters,
    pub faults: FaultConfig,
    pub close_after: Option<u64>,
}

/// Settings fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub max_payload: u32,
    pub ws_fragment: usize,
    pub node_id: u8,
    pub result_size_limit: usize,
}

pub(crate) struct Shared {
    /// The state; the nodes of a [`crate::TestCluster`] share it.
    pub state: Arc<Mutex<State>>,
    /// New connections to this node are refused until then.
    pub refuse_until: Mutex<Option<Instant>>,
    pub cancel: CancellationToken,
    pub config: Config,
    /// This node's own schedule (each node of a cluster has one).
    pub service: Mutex<crate::service::Service>,
}

impl Shared {
    /// Locks the state. A poisoned lock (a user handler panicked while it
    /// was held, which cannot happen as handlers run unlocked) is taken
    /// over rather than propagated.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks this node's schedule (never poisoned: nothing panics under it).
    pub fn service(&self) -> MutexGuard<'_, crate::service::Service> {
        self.service.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// Queues an encoded event for a connection; false if it is gone.
    pub fn send_to(&mut self, conn: u64, pkg: Bytes) -> bool {
        let ok = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.tx.send(Command::Package(pkg)).is_ok());
        if ok {
            self.counters.events_sent += 1;
        }
        ok
    }

    /// Removes a connection from the state and from every room.
    pub fn remove_conn(&mut self, conn: u64) {
        self.conns.remove(&conn);
        for r in self.rooms.values_mut() {
            r.joined.remove(&conn);
        }
    }

    /// Finds a room of `collection` by id.
    pub fn room_by_id(&self, collection: &str, id: u64) -> Option<u64> {
        self.rooms
            .contains_key(&(collection.to_string(), id))
            .then_some(id)
    }

    /// Finds a room of `collection` by name.
    pub fn room_by_name(&self, collection: &str, name: &str) -> Option<u64> {
        self.rooms
            .iter()
            .find(|((c, _), r)| c == collection && r.name.as_deref() == Some(name))
            .map(|((_, id), _)| *id)
    }

    /// Takes the next free id of `collection`.
    pub fn next_free_id(&mut self, collection: &str) -> u64 {
        let next = self.next_ids.entry(collection.to_string()).or_insert(2);
        let id = *next;
        *next += 1;
        id
    }
}

/// Encodes an event; the encoders only fail on sizes no test produces, in
/// which case nothing is sent.
pub(crate) fn encode_event(e: &Event) -> Option<Bytes> {
    let mut b = BytesMut::new();
    match e.encode(&mut b) {
        Ok(()) => Some(b.freeze()),
        Err(err) => {
            tracing::warn!("testkit: cannot encode event: {err}");
            None
        }
    }
}
