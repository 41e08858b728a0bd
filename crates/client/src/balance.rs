//! Spreading requests over the nodes of a cluster.
//!
//! Every ThingsDB node holds all of its cluster's data and runs queries on
//! one thread, so a cluster serves more when its clients spread their
//! requests. With [`ClientBuilder::balance`](crate::ClientBuilder::balance)
//! set to [`Balance::FewestInFlight`] or [`Balance::RoundRobin`], a client
//! keeps a connection to each node of its pool (and of what
//! [discovery](crate::discovery) learns), and sends each request to one of
//! them by that policy; [`Query::route`](crate::Query::route) and
//! [`Run::route`](crate::Run::route) send one request to a given node, or
//! to the node of the client's last change ([`Route`]).
//!
//! [`Client::connect`](crate::Client::connect) returns once the first
//! connection serves and the others do (or after 2 s: a node slower to
//! answer gets its connection when it does).
//!
//! Each connection is a full connection of its own, with everything a
//! single connection does: keep-alive, the resend rules, reconnect, and
//! make-before-break when its node shuts down. A node that goes away hands
//! its share to the others: its connection moves to another node (its
//! requests in flight finish there, or are sent again where the resend
//! rules allow), and is let go once it only doubles another one. The
//! client tries the node again (every second at first, backing off to the
//! reconnect policy's longest delay) and spreads to it again once it
//! answers.
//!
//! Rooms (and emits), node events and the client's own state
//! ([`Client::is_connected`](crate::Client::is_connected),
//! [`Client::connection_info`](crate::Client::connection_info),
//! [`Client::closed_reason`](crate::Client::closed_reason)) belong to the
//! first connection, the one [`Client::connect`](crate::Client::connect)
//! makes: rooms are joined on one node and move as they do without
//! balancing. [`Client::connection_events`](crate::Client::connection_events)
//! reports what happens to every connection once it serves (its first
//! `Connected` shows in [`Client::nodes`](crate::Client::nodes) instead),
//! and [`Client::close`](crate::Client::close) closes them all.
//! [`Client::nodes`](crate::Client::nodes) shows every connection: its
//! node, its requests in flight and how many it was given.
//!
//! The blocking client (`thingsdb_client::blocking`) keeps one
//! connection.
//!
#![doc = include_str!("../docs/consistency.md")]

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use thingsdb_transport::Target;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::connection::pool::PoolEntry;
use crate::connection::{driver, Command, Input, Shared};
use crate::error::{Error, TransportErrorKind};

/// How many commands may wait for a connection task before callers wait.
pub(crate) const COMMAND_QUEUE: usize = 4096;

/// The first pause before a node without a connection is tried again; it
/// doubles up to the reconnect policy's longest delay.
const RETRY_FIRST: Duration = Duration::from_secs(1);

/// How long [`Client::connect`](crate::Client::connect) waits for the
/// connections to the other nodes; one that takes longer is added when it
/// serves.
pub(crate) const FIRST_FILL: Duration = Duration::from_secs(2);

/// How long a connection that was let go waits, once none of its
/// requests is in flight, before it closes: a request that picked it just
/// before is counted by then.
const RETIRE_GRACE: Duration = Duration::from_millis(100);

/// How often the client looks for nodes without a connection and for
/// connections that double another one.
const TICK: Duration = Duration::from_millis(500);

/// How a client spreads its requests over the nodes of its pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use thingsdb_client::{Auth, Balance, Client};
/// let cluster = thingsdb_testkit::TestNode::builder().start_cluster(3).await?; // or your nodes
/// let mut builder = Client::builder().auth(Auth::password("admin", "pass"));
/// for i in 0..3 {
///     builder = builder.target(&cluster.node(i).thingsdb_url())?;
/// }
/// let client = builder.balance(Balance::RoundRobin).connect().await?;
/// for _ in 0..6 {
///     client.query("1 + 1;").await?;
/// }
/// // Two requests each.
/// assert!(client.nodes().iter().all(|n| n.sent == 2));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Balance {
    /// One connection, to the first node that answers; the others are
    /// there to fail over to. The default.
    #[default]
    OneNode,
    /// A connection to every node; each request goes to the connection
    /// with the fewest of this client's requests in flight (ties in turn).
    /// Adapts to nodes of unequal speed or load: the policy to choose when
    /// spreading.
    FewestInFlight,
    /// A connection to every node; requests go to each in turn.
    RoundRobin,
}

impl Balance {
    /// Whether the policy keeps a connection to every node.
    pub(crate) fn spreads(self) -> bool {
        !matches!(self, Balance::OneNode)
    }
}

/// Where one request goes, instead of where the client's [`Balance`]
/// would send it ([`Query::route`](crate::Query::route),
/// [`Run::route`](crate::Run::route)).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use thingsdb_client::{Auth, Balance, Client, Route};
/// let cluster = thingsdb_testkit::TestNode::builder().start_cluster(2).await?; // or your nodes
/// # for node in cluster.nodes() {
/// #     node.on_query(|q| match q.code.as_str() {
/// #         ".greeting = 'hi';" | ".greeting;" => thingsdb_testkit::Reply::value("hi"),
/// #         _ => q.evaluate(),
/// #     });
/// # }
/// let client = Client::builder()
///     .target(&cluster.node(0).thingsdb_url())?
///     .target(&cluster.node(1).thingsdb_url())?
///     .auth(Auth::password("admin", "pass"))
///     .balance(Balance::FewestInFlight)
///     .connect()
///     .await?;
/// // A change: runs on some node.
/// client.query(".greeting = 'hi';").scope("//stuff").await?;
/// // Read it where it was made: that node has it.
/// let hi: String = client
///     .query(".greeting;")
///     .scope("//stuff")
///     .route(Route::LastChange)
///     .decode()
///     .await?;
/// assert_eq!(hi, "hi");
/// // Or ask a node by its id.
/// let id: u32 = client.query("node_info().load().node_id;").scope("@node")
///     .route(Route::Node(1)).decode().await?;
/// assert_eq!(id, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// The node with this id (ThingsDB's node id, as `node_info()` and
    /// [`ConnectionEvent::Connected`](crate::ConnectionEvent::Connected)
    /// give it). Fails with
    /// [`TransportErrorKind::NotConnected`]
    /// when the client has no connection to that node at the time.
    Node(u32),
    /// The node that answered this client's last change: its last request
    /// not marked [`idempotent`](crate::Query::idempotent) that succeeded.
    /// That node has the change (a node answers a change once it applied
    /// it); another node may not have it yet. Where the balance sends it
    /// when there was no change yet or that node has no connection now.
    /// A node that is away (nodes take turns) forwards reads to another
    /// node, which may not have the change yet: see the
    /// [module docs](crate::balance) for reads that wait.
    LastChange,
}

/// Where the client sends one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Via {
    /// By the client's [`Balance`].
    #[default]
    Balance,
    /// As the caller said.
    Route(Route),
    /// On the first connection (rooms live there).
    Primary,
}

/// One connection of the client, as [`Client::nodes`](crate::Client::nodes)
/// shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeLoad {
    /// The id of the node it reached, when known (always with balancing
    /// or discovery on).
    pub node_id: Option<u32>,
    /// Where it is connected now; `None` while it reconnects.
    pub target: Option<Target>,
    /// Whether it is the first connection, where rooms are joined.
    pub primary: bool,
    /// This client's requests on it waiting for an answer.
    pub in_flight: usize,
    /// Requests the client gave it so far.
    pub sent: u64,
}

/// One connection task and what the client counts of it.
pub(crate) struct Lane {
    pub(crate) cmd_tx: mpsc::Sender<Input>,
    /// The connection's state, for callers to step while they wait
    /// (`None` for a lane without a connection task, in tests). Not in a
    /// browser: there the page's one event loop runs every task, and the
    /// sockets are not `Send`.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) core: Option<driver::SharedCore>,
    pub(crate) shared: Arc<Shared>,
    /// Requests of this client in flight on it.
    busy: AtomicUsize,
    /// Requests given to it.
    sent: AtomicU64,
    /// Let go: it doubled another connection, or gave up. No request picks
    /// it any more.
    retired: AtomicBool,
}

impl Lane {
    /// Starts a connection task for `config` with `shared` state and waits
    /// until it serves (or its first round of connects failed); its
    /// connection events go to the streams in `shared` once it serves.
    pub(crate) async fn start(config: Arc<Config>, shared: Shared) -> Result<Arc<Lane>, Error> {
        let shared = Arc::new(shared);
        shared.observe.sync_pool(&config.targets);
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (ready_tx, ready) = oneshot::channel();
        let core = Arc::new(std::sync::Mutex::new(driver::Core::new(
            config,
            cmd_rx,
            shared.clone(),
            ready_tx,
        )));
        crate::rt::spawn(driver::run(core.clone()));
        match ready.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Error::Closed),
        }
        Ok(Arc::new(Lane {
            cmd_tx,
            #[cfg(not(target_arch = "wasm32"))]
            core: Some(core),
            shared,
            busy: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            retired: AtomicBool::new(false),
        }))
    }

    /// Whether requests sent now are served: connected and not let go.
    fn serves(&self) -> bool {
        !self.retired.load(Relaxed)
            && self.shared.dead.get().is_none()
            && self.shared.serving_index().is_some()
    }

    /// Counts a request given to it until the guard is dropped.
    pub(crate) fn enter(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Relaxed);
        self.sent.fetch_add(1, Relaxed);
        Busy(self)
    }

    fn load(&self, primary: bool) -> NodeLoad {
        NodeLoad {
            node_id: self.shared.node_id(),
            target: self
                .shared
                .serving_index()
                .and_then(|_| self.shared.serving_target()),
            primary,
            in_flight: self.busy.load(Relaxed),
            sent: self.sent.load(Relaxed),
        }
    }

    /// Asks the connection task to finish what is in flight and close;
    /// waits for it.
    pub(crate) async fn close(&self) {
        let (ack_tx, ack_rx) = oneshot::channel();
        if self
            .cmd_tx
            .send(Input::Cmd(Command::Close(ack_tx)))
            .await
            .is_ok()
        {
            let _ = ack_rx.await;
        }
    }

    /// Adds pool entries to the connection's pool (to fail over to).
    pub(crate) async fn add_nodes(&self, entries: Vec<PoolEntry>) -> Result<(), Error> {
        self.cmd_tx
            .send(Input::Cmd(Command::AddNodes(entries)))
            .await
            .map_err(|_| Error::Closed)
    }
}

/// The one connection of a client without balancing, as
/// [`Client::nodes`](crate::Client::nodes) shows it.
pub(crate) fn loads_of(primary: &Lane) -> Vec<NodeLoad> {
    vec![primary.load(true)]
}

/// A request counted on a lane; the count drops with it.
pub(crate) struct Busy<'a>(&'a Lane);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Relaxed);
    }
}

/// A node of the pool and what the client knows of it.
struct Node {
    entry: PoolEntry,
    /// The node a connection to this entry reached last.
    reached: Option<u32>,
    /// When to try it again, and the pause after that.
    retry_at: Option<web_time::Instant>,
    pause: Duration,
    /// A connection to it is being made.
    opening: bool,
}

impl Node {
    /// A pool entry not tried yet.
    fn new(entry: PoolEntry) -> Node {
        Node {
            entry,
            reached: None,
            retry_at: None,
            pause: RETRY_FIRST,
            opening: false,
        }
    }
}

/// The connections of a balancing client: the first (rooms, events) and
/// one per further node.
pub(crate) struct Spread {
    policy: Balance,
    /// The first connection (also first in `lanes`).
    primary: Arc<Lane>,
    /// Every connection, the first one first. Replaced, never changed in
    /// place, so that a request picks from a snapshot without a lock held.
    lanes: RwLock<Arc<Vec<Arc<Lane>>>>,
    /// Where the next request starts looking (turns and ties).
    next: AtomicUsize,
    /// The node of the last change plus one; 0 when none yet.
    last_change: AtomicU64,
    /// The pool as the client knows it.
    nodes: Mutex<Vec<Node>>,
}

impl Spread {
    /// A spread whose only connection so far is `primary`.
    pub(crate) fn new(policy: Balance, primary: Arc<Lane>, pool: &[Target]) -> Spread {
        Spread {
            policy,
            primary: primary.clone(),
            lanes: RwLock::new(Arc::new(vec![primary])),
            next: AtomicUsize::new(0),
            last_change: AtomicU64::new(0),
            nodes: Mutex::new(
                pool.iter()
                    .map(|t| {
                        Node::new(PoolEntry {
                            target: t.clone(),
                            node: None,
                        })
                    })
                    .collect(),
            ),
        }
    }

    /// The connections now, the first one first.
    pub(crate) fn lanes(&self) -> Arc<Vec<Arc<Lane>>> {
        match self.lanes.read() {
            Ok(l) => l.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set_lanes(&self, lanes: Vec<Arc<Lane>>) {
        match self.lanes.write() {
            Ok(mut l) => *l = Arc::new(lanes),
            Err(p) => *p.into_inner() = Arc::new(lanes),
        }
    }

    /// Every connection's node and load.
    pub(crate) fn loads(&self) -> Vec<NodeLoad> {
        self.lanes()
            .iter()
            .map(|l| l.load(Arc::ptr_eq(l, &self.primary)))
            .collect()
    }

    /// The connection for one request.
    pub(crate) fn pick(&self, via: Via) -> Result<Arc<Lane>, Error> {
        let lanes = self.lanes();
        let primary = &self.primary;
        let on_node = |id: u32| {
            lanes
                .iter()
                .find(|l| l.serves() && l.shared.node_id() == Some(id))
        };
        match via {
            Via::Primary => return Ok(primary.clone()),
            Via::Route(Route::Node(id)) => {
                return on_node(id).cloned().ok_or_else(|| {
                    Error::transport(
                        TransportErrorKind::NotConnected,
                        format!("the client has no connection to node {id} now"),
                    )
                })
            }
            Via::Route(Route::LastChange) => {
                let last = self.last_change.load(Relaxed);
                if let Some(l) = last
                    .checked_sub(1)
                    .and_then(|n| u32::try_from(n).ok())
                    .and_then(on_node)
                {
                    return Ok(l.clone());
                }
            }
            Via::Balance => {}
        }
        // Turns are taken over the connections that serve, so that one
        // that does not (reconnecting) gives its turn to no one in
        // particular.
        let serving = || lanes.iter().filter(|l| l.serves());
        let count = serving().count();
        let chosen = match (self.policy, count) {
            (Balance::OneNode, _) | (_, 0) => None,
            (Balance::RoundRobin, n) => serving().nth(self.next.fetch_add(1, Relaxed) % n),
            (Balance::FewestInFlight, n) => {
                // Ties go in turn: the scan starts one further each time.
                let start = self.next.fetch_add(1, Relaxed) % n;
                serving()
                    .skip(start)
                    .chain(serving().take(start))
                    .min_by_key(|l| l.busy.load(Relaxed))
            }
        };
        // None serves: the first connection holds requests until it is
        // back (within their timeouts).
        Ok(chosen.unwrap_or(primary).clone())
    }

    /// `lane` answered a change.
    pub(crate) fn changed_on(&self, lane: &Lane) {
        if let Some(id) = lane.shared.node_id() {
            self.last_change.store(u64::from(id) + 1, Relaxed);
        }
    }

    /// More nodes: to the pool, and to every connection's pool to fail
    /// over to.
    pub(crate) async fn add_nodes(&self, entries: &[PoolEntry]) {
        if let Ok(mut nodes) = self.nodes.lock() {
            for e in entries {
                match nodes.iter_mut().find(|n| n.entry.target == e.target) {
                    Some(n) => {
                        if e.node.is_some() {
                            n.entry.node = e.node;
                        }
                    }
                    None => nodes.push(Node::new(e.clone())),
                }
            }
        }
        for lane in self.lanes().iter().skip(1) {
            let _ = lane.add_nodes(entries.to_vec()).await;
        }
    }

    /// One round: connections that double another are let go, and a
    /// connection is started to every node that has none (and is due).
    /// Each is made in a task of its own and counts as soon as it serves,
    /// so a node that is slow to answer holds up nothing.
    pub(crate) fn fill(self: &Arc<Self>, config: &Arc<Config>) {
        self.settle(None);
        let now = crate::rt::now();
        let lanes = self.lanes();
        let serving: Vec<&Arc<Lane>> = lanes.iter().filter(|l| l.serves()).collect();
        let covered: Vec<u32> = serving.iter().filter_map(|l| l.shared.node_id()).collect();
        let serving_targets: Vec<Target> = serving
            .iter()
            .filter_map(|l| l.shared.serving_target())
            .collect();
        let (due, all): (Vec<PoolEntry>, Vec<PoolEntry>) = match self.nodes.lock() {
            Ok(mut nodes) => {
                for n in nodes.iter_mut() {
                    // A target some connection serves is known.
                    if let Some(l) = serving
                        .iter()
                        .find(|l| l.shared.serving_target().as_ref() == Some(&n.entry.target))
                    {
                        n.reached = l.shared.node_id().or(n.reached);
                    }
                }
                let mut due = Vec::new();
                for n in nodes.iter_mut() {
                    let node = n.entry.node.or(n.reached);
                    if !n.opening
                        && !serving_targets.contains(&n.entry.target)
                        && !node.is_some_and(|id| covered.contains(&id))
                        && n.retry_at.is_none_or(|t| t <= now)
                    {
                        n.opening = true;
                        due.push(n.entry.clone());
                    }
                }
                (due, nodes.iter().map(|n| n.entry.clone()).collect())
            }
            Err(_) => return,
        };
        for entry in due {
            let (spread, config, all) = (Arc::downgrade(self), config.clone(), all.clone());
            let shared = Shared::sharing(&self.primary.shared);
            crate::rt::spawn(async move {
                let r = open_lane(&config, &entry, all, shared).await;
                match spread.upgrade() {
                    Some(s) => s.opened(&config, &entry, r),
                    // The client is gone meanwhile.
                    None => {
                        if let Ok(lane) = r {
                            lane.close().await;
                        }
                    }
                }
            });
        }
    }

    /// A connection to `entry` was made (or not).
    fn opened(&self, config: &Config, entry: &PoolEntry, r: Result<Arc<Lane>, Error>) {
        let now = crate::rt::now();
        if let Ok(mut nodes) = self.nodes.lock() {
            if let Some(n) = nodes.iter_mut().find(|n| n.entry.target == entry.target) {
                n.opening = false;
                match &r {
                    Ok(l) => {
                        n.reached = l.shared.node_id();
                        n.retry_at = None;
                        n.pause = RETRY_FIRST;
                    }
                    Err(e) => {
                        tracing::debug!(target = %entry.target, error = %e, "no connection to this node now");
                        n.retry_at = Some(now + n.pause);
                        n.pause = (n.pause * 2).min(config.reconnect.max_delay.max(RETRY_FIRST));
                    }
                }
            }
        }
        if let Ok(lane) = r {
            self.settle(Some(lane));
        }
    }

    /// Whether a connection to some node is being made.
    pub(crate) fn opening(&self) -> bool {
        self.nodes
            .lock()
            .map(|nodes| nodes.iter().any(|n| n.opening))
            .unwrap_or(false)
    }

    /// Adds `lane` (if any) to the connections, and lets go of those that
    /// double another or gave up.
    fn settle(&self, lane: Option<Arc<Lane>>) {
        let mut lanes: Vec<Arc<Lane>> = self.lanes().iter().cloned().collect();
        lanes.extend(lane);
        let (keep, retire) = split_doubles(lanes, &self.primary);
        for lane in &retire {
            lane.retired.store(true, Relaxed);
        }
        self.set_lanes(keep);
        for lane in retire {
            tracing::debug!(node = ?lane.shared.node_id(), "a connection that doubles another is let go");
            crate::rt::spawn(async move {
                // No request picks it any more; those that picked it before
                // are counted in `busy` at once: once they are answered it
                // closes (a close takes no new request).
                loop {
                    crate::rt::sleep(RETIRE_GRACE).await;
                    if lane.busy.load(Relaxed) == 0 {
                        break;
                    }
                }
                lane.close().await;
            });
        }
    }

    /// Closes every connection but the first (which the client closes).
    pub(crate) async fn close_others(&self) {
        let lanes = self.lanes();
        futures::future::join_all(lanes.iter().skip(1).map(|l| l.close())).await;
    }
}

/// The connections to keep, and those to let go: a connection that
/// doubles one before it (serves the same node) or gave up; never
/// `primary`. Order is kept.
fn split_doubles(lanes: Vec<Arc<Lane>>, primary: &Arc<Lane>) -> (Vec<Arc<Lane>>, Vec<Arc<Lane>>) {
    let mut seen: Vec<u32> = Vec::new();
    let mut keep = Vec::with_capacity(lanes.len());
    let mut retire = Vec::new();
    for lane in lanes {
        let node = lane.serves().then(|| lane.shared.node_id()).flatten();
        let double = node.is_some_and(|id| seen.contains(&id));
        if let Some(id) = node {
            seen.push(id);
        }
        let first = Arc::ptr_eq(&lane, primary);
        if !first && (double || lane.shared.dead.get().is_some()) {
            retire.push(lane);
        } else {
            keep.push(lane);
        }
    }
    (keep, retire)
}

/// A connection to `entry` (and no other node: a failed first connect is
/// an error), given every entry of the pool to fail over to once it
/// serves.
async fn open_lane(
    config: &Config,
    entry: &PoolEntry,
    all: Vec<PoolEntry>,
    shared: Shared,
) -> Result<Arc<Lane>, Error> {
    let mut cfg = config.clone();
    cfg.targets = vec![entry.target.clone()];
    cfg.random_start = false;
    let lane = Lane::start(Arc::new(cfg), shared).await?;
    if let (Some(want), Some(got)) = (entry.node, lane.shared.node_id()) {
        if want != got {
            lane.close().await;
            return Err(Error::transport(
                TransportErrorKind::WrongNode,
                format!("{} reached node {got}, not node {want}", entry.target),
            ));
        }
    }
    lane.add_nodes(all).await?;
    Ok(lane)
}

/// Keeps a connection to every node while the client lives: a round
/// every [`TICK`].
pub(crate) async fn supervise(spread: Weak<Spread>, config: Arc<Config>) {
    loop {
        crate::rt::sleep(TICK).await;
        let Some(s) = spread.upgrade() else {
            return;
        };
        if s.primary.shared.dead.get().is_some() {
            s.close_others().await;
            return;
        }
        s.fill(&config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lane with no connection task behind it, serving `node` (or not
    /// serving when `None`), with `busy` requests in flight.
    fn lane(node: Option<u32>, busy: usize) -> Arc<Lane> {
        let (cmd_tx, _rx) = mpsc::channel(1);
        let shared = Arc::new(Shared::new());
        if let Some(id) = node {
            let port = 9200 + u16::try_from(id).unwrap_or(0);
            let t = Target::parse(&format!("127.0.0.1:{port}")).ok();
            shared.publish_serving(Some(0), &t.into_iter().collect::<Vec<_>>());
            shared.set_node_id(Some(id));
        }
        Arc::new(Lane {
            cmd_tx,
            #[cfg(not(target_arch = "wasm32"))]
            core: None,
            shared,
            busy: AtomicUsize::new(busy),
            sent: AtomicU64::new(0),
            retired: AtomicBool::new(false),
        })
    }

    fn spread(policy: Balance, lanes: Vec<Arc<Lane>>) -> Spread {
        let s = Spread::new(policy, lanes[0].clone(), &[]);
        s.set_lanes(lanes);
        s
    }

    fn node_of(s: &Spread, via: Via) -> Option<u32> {
        s.pick(via).ok().and_then(|l| l.shared.node_id())
    }

    proptest::proptest! {
        /// Whatever the connections serve, the first one stays, the ones
        /// kept serve distinct nodes, and every one let go doubles a kept
        /// one (or gave up); none is lost.
        #[test]
        fn doubles_are_let_go_and_the_first_stays(
            nodes in proptest::collection::vec(proptest::option::of(0u32..4), 1..8),
            dead in proptest::collection::vec(proptest::bool::ANY, 8),
        ) {
            let lanes: Vec<Arc<Lane>> = nodes.iter().map(|n| lane(*n, 0)).collect();
            for (l, d) in lanes.iter().zip(&dead).skip(1) {
                if *d {
                    let _ = l.shared.dead.set(Error::Closed);
                }
            }
            let primary = lanes[0].clone();
            let (keep, retire) = split_doubles(lanes.clone(), &primary);
            proptest::prop_assert!(Arc::ptr_eq(&keep[0], &primary));
            proptest::prop_assert_eq!(keep.len() + retire.len(), lanes.len());
            let mut ids: Vec<u32> = keep
                .iter()
                .filter(|l| l.serves())
                .filter_map(|l| l.shared.node_id())
                .collect();
            let n = ids.len();
            ids.sort_unstable();
            ids.dedup();
            proptest::prop_assert_eq!(ids.len(), n, "two kept connections serve one node");
            for r in &retire {
                proptest::prop_assert!(!Arc::ptr_eq(r, &primary));
                let id = r.shared.node_id();
                let doubles = r.serves() && keep.iter().any(|k| k.serves() && k.shared.node_id() == id);
                proptest::prop_assert!(doubles || r.shared.dead.get().is_some());
            }
        }
    }

    #[test]
    fn round_robin_takes_serving_connections_in_turn() {
        let s = spread(
            Balance::RoundRobin,
            vec![lane(Some(0), 0), lane(None, 0), lane(Some(2), 0)],
        );
        let picks: Vec<_> = (0..6).map(|_| node_of(&s, Via::Balance)).collect();
        // The one not serving is skipped; the others alternate.
        assert_eq!(
            picks.iter().filter(|p| **p == Some(0)).count(),
            3,
            "{picks:?}"
        );
        assert_eq!(
            picks.iter().filter(|p| **p == Some(2)).count(),
            3,
            "{picks:?}"
        );
    }

    #[test]
    fn fewest_in_flight_takes_the_least_busy_and_shares_ties() {
        let s = spread(
            Balance::FewestInFlight,
            vec![lane(Some(0), 5), lane(Some(1), 2), lane(Some(2), 9)],
        );
        for _ in 0..4 {
            assert_eq!(node_of(&s, Via::Balance), Some(1));
        }
        let s = spread(
            Balance::FewestInFlight,
            vec![lane(Some(0), 1), lane(Some(1), 1), lane(Some(2), 4)],
        );
        let picks: Vec<_> = (0..4).map(|_| node_of(&s, Via::Balance)).collect();
        assert!(
            picks.contains(&Some(0)) && picks.contains(&Some(1)),
            "{picks:?}"
        );
        assert!(!picks.contains(&Some(2)), "{picks:?}");
    }

    #[test]
    fn a_busy_guard_counts_until_dropped() {
        let l = lane(Some(0), 0);
        let g = l.enter();
        assert_eq!((l.busy.load(Relaxed), l.sent.load(Relaxed)), (1, 1));
        drop(g);
        assert_eq!((l.busy.load(Relaxed), l.sent.load(Relaxed)), (0, 1));
    }

    #[test]
    fn with_none_serving_the_first_connection_holds_requests() {
        let s = spread(Balance::FewestInFlight, vec![lane(None, 0), lane(None, 0)]);
        let l = s.pick(Via::Balance).ok();
        assert!(l.is_some_and(|l| Arc::ptr_eq(&l, &s.lanes()[0])));
        // One node only: the first connection, serving or not.
        let s = spread(Balance::OneNode, vec![lane(Some(3), 0), lane(Some(4), 0)]);
        assert_eq!(node_of(&s, Via::Balance), Some(3));
    }

    #[test]
    fn routes_name_a_node_or_the_last_change() {
        let s = spread(
            Balance::RoundRobin,
            vec![lane(Some(0), 0), lane(Some(1), 0), lane(Some(2), 0)],
        );
        for id in 0..3 {
            assert_eq!(node_of(&s, Via::Route(Route::Node(id))), Some(id));
        }
        let e = s.pick(Via::Route(Route::Node(9))).err();
        assert_eq!(
            e.and_then(|e| e.transport_kind()),
            Some(TransportErrorKind::NotConnected)
        );
        // No change yet: by the balance.
        assert!(node_of(&s, Via::Route(Route::LastChange)).is_some());
        let lanes = s.lanes();
        s.changed_on(&lanes[2]);
        for _ in 0..3 {
            assert_eq!(node_of(&s, Via::Route(Route::LastChange)), Some(2));
        }
        // That node gone: by the balance again.
        lanes[2].retired.store(true, Relaxed);
        for _ in 0..3 {
            assert_ne!(node_of(&s, Via::Route(Route::LastChange)), Some(2));
        }
        assert!(Arc::ptr_eq(
            &s.pick(Via::Primary).unwrap_or_else(|_| lanes[1].clone()),
            &lanes[0]
        ));
    }
}
