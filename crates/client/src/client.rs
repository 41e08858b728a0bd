//! The client handle.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thingsdb_protocol::{request, Frame, Response};
use tokio::sync::{mpsc, oneshot};

use crate::balance::{Lane, NodeLoad, Spread, Via};
use crate::config::{Auth, ClientBuilder, Config};
use crate::connection::pool::PoolEntry;
use crate::connection::{deadline_after, Command, Input};
use crate::error::{unexpected, Error};
use crate::events::{event_channel, Overflow};
use crate::observe::{Answer, Observer, Op, OpKind, Stats};
use crate::request::{Query, Run};
use crate::scope::Scope;
use thingsdb_transport::Target;

/// A connection to ThingsDB: cheap to clone, `Send + Sync`, usable from
/// many tasks at once.
///
/// Requests from every clone are pipelined on one connection and matched to
/// their replies by id; one task runs the connection (spawned on the
/// runtime the client was made on). A request made when nothing else is
/// in flight is written, and its answer read, by the task that made it,
/// so that one request at a time costs one task's wake-up, not two (not
/// in a browser, where one event loop runs every task); the connection
/// task takes over as soon as anything else comes. (A request future
/// that is polled once and then kept without being polled while it waits
/// holds the connection's reads until the connection task next wakes, at
/// the latest at its deadline: room events wait that long too. Await
/// requests, or drop the ones given up on.) The
/// connection is closed when [`Client::close`] is called or when the last
/// clone (room streams included) is dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use thingsdb_client::{Auth, Client};
/// let node = thingsdb_testkit::TestNode::start().await?; // or your node: "thingsdb://localhost:9200"
/// let client = Client::connect(&node.thingsdb_url(), Auth::password("admin", "pass")).await?;
/// let two: i64 = client.query("1 + 1;").decode().await?;
/// let product = client.query("a * b;").scope("//stuff").var("a", &6).var("b", &7).await?;
/// assert_eq!(product, rmpv::Value::from(42));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// The settings of this handle: every handle of one connection shares
    /// them, except the default scope ([`Client::with_default_scope`]).
    config: Arc<Config>,
}

struct Inner {
    /// The first connection: every request without balancing; rooms, node
    /// and connection events always.
    primary: Arc<Lane>,
    /// The connections to the other nodes, with balancing on.
    spread: Option<Arc<Spread>>,
    next_stream_id: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("targets", &self.config.targets)
            .field("auth", &self.config.auth)
            .field("default_scope", &self.config.default_scope)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to one target with the given credentials and default
    /// settings. For a pool of nodes or other settings use
    /// [`Client::builder`].
    pub async fn connect(target: &str, auth: Auth) -> Result<Client, Error> {
        ClientBuilder::new()
            .target(target)?
            .auth(auth)
            .connect()
            .await
    }

    /// A builder for every setting.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    pub(crate) async fn connect_with(config: Config) -> Result<Client, Error> {
        if config.targets.is_empty() {
            return Err(Error::BadArgument("no target to connect to".into()));
        }
        let config = Arc::new(config);
        // The session makes the first connection (each pool entry once,
        // from a random one when asked) and says when one serves.
        let primary = Lane::start(config.clone(), crate::connection::Shared::new()).await?;
        let spread = if config.balance.spreads() {
            let spread = Arc::new(Spread::new(
                config.balance,
                primary.clone(),
                &config.targets,
            ));
            // Connections to the other nodes before the first request,
            // unless a node is slow to answer: it joins later.
            spread.fill(&config);
            let waited = crate::rt::now();
            while spread.opening() && crate::rt::now() - waited < crate::balance::FIRST_FILL {
                crate::rt::sleep(std::time::Duration::from_millis(5)).await;
            }
            crate::rt::spawn(crate::balance::supervise(
                Arc::downgrade(&spread),
                config.clone(),
            ));
            Some(spread)
        } else {
            None
        };
        Ok(Client {
            inner: Arc::new(Inner {
                primary,
                spread,
                next_stream_id: std::sync::atomic::AtomicU64::new(1),
            }),
            config,
        })
    }

    /// The settings the client runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The scope of requests that name none: `@thingsdb` (`@t`) unless
    /// the builder or [`Client::with_default_scope`] set another.
    pub fn default_scope(&self) -> &Scope {
        &self.config.default_scope
    }

    /// A handle on the same connection whose default scope is `scope`.
    ///
    /// The new handle shares everything with this one (the connection,
    /// requests in flight, rooms, [`Client::close`]) except the scope used
    /// by requests and rooms that name none; this handle keeps its own. It
    /// keeps the connection open like any clone.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use thingsdb_client::{Auth, Client};
    /// let node = thingsdb_testkit::TestNode::start().await?; // or your node: "thingsdb://localhost:9200"
    /// # node.on_query(|q| thingsdb_testkit::Reply::value(match q.code.as_str() {
    /// #     ".id();" if q.scope_str == "//stuff" => 1,
    /// #     "collections_info().len();" if q.scope_str == "@thingsdb" => 1,
    /// #     _ => -1,
    /// # }));
    /// let client = Client::connect(&node.thingsdb_url(), Auth::password("admin", "pass")).await?;
    /// let stuff = client.with_default_scope("//stuff")?;
    /// // `client` still queries `@thingsdb`; `stuff` queries `//stuff`.
    /// let id: u64 = stuff.query(".id();").decode().await?;
    /// let n: usize = client.query("collections_info().len();").decode().await?;
    /// # assert_eq!((id, n), (1, 1));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::BadArgument`] when `scope` is not a scope.
    pub fn with_default_scope(&self, scope: &str) -> Result<Client, Error> {
        let mut config = Config::clone(&self.config);
        config.default_scope = Scope::parse(scope)?;
        Ok(Client {
            inner: self.inner.clone(),
            config: Arc::new(config),
        })
    }

    /// Whether the client is connected to a node now: false while it
    /// reconnects and once it has stopped. A snapshot: the connection may
    /// go the next moment, and requests made while reconnecting wait for
    /// the next connection (within their timeout) rather than fail.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use thingsdb_client::{Auth, Client};
    /// let node = thingsdb_testkit::TestNode::start().await?; // or your node: "thingsdb://localhost:9200"
    /// let client = Client::connect(&node.thingsdb_url(), Auth::password("admin", "pass")).await?;
    /// assert!(client.is_connected());
    /// client.close().await?;
    /// assert!(!client.is_connected());
    /// # Ok(()) }
    /// ```
    pub fn is_connected(&self) -> bool {
        self.inner.primary.shared.dead.get().is_none()
            && self.inner.primary.shared.serving_index().is_some()
    }

    /// The pool entry the client is connected to now: one of the targets
    /// given to the builder, or one added later
    /// ([`Client::add_targets`], cluster discovery); `None` while it
    /// reconnects and once it has stopped. Like [`Client::is_connected`],
    /// a snapshot.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use thingsdb_client::{Auth, Client};
    /// use thingsdb_testkit::TestNode;
    /// // Two in-process nodes; or "thingsdb://node1.local", "thingsdb://node2.local".
    /// let (node1, node2) = (TestNode::start().await?, TestNode::start().await?);
    /// let client = Client::builder()
    ///     .target(&node1.thingsdb_url())?
    ///     .target(&node2.thingsdb_url())?
    ///     .auth(Auth::password("admin", "pass"))
    ///     .random_start(true)
    ///     .connect()
    ///     .await?;
    /// if let Some(node) = client.connection_info() {
    ///     println!("connected to {node}");
    /// }
    /// # assert!(client.connection_info().is_some());
    /// # Ok(()) }
    /// ```
    pub fn connection_info(&self) -> Option<Target> {
        if self.inner.primary.shared.dead.get().is_some() {
            return None;
        }
        self.inner.primary.shared.serving_target()
    }

    /// Starts a query on the default scope; set a scope, vars and a timeout
    /// on the returned builder, then `.await` it (a [`rmpv::Value`]),
    /// or finish with [`Query::decode`] or [`Query::raw`].
    pub fn query<'a>(&'a self, code: &'a str) -> Query<'a> {
        Query::new(self, code)
    }

    /// Starts a procedure call on the default scope; add arguments on the
    /// returned builder, then `.await` it.
    pub fn run<'a>(&'a self, procedure: &'a str) -> Run<'a> {
        Run::new(self, procedure)
    }

    /// Sends a PING and waits for the PONG.
    pub async fn ping(&self) -> Result<(), Error> {
        let mut frame = BytesMut::with_capacity(thingsdb_protocol::HEADER_LEN);
        request::encode_ping(&mut frame, 0);
        let op = Op {
            kind: OpKind::Ping,
            scope: "",
            text: "",
        };
        match Response::decode(&self.call(op, frame, None, true).await?)? {
            Response::Pong => Ok(()),
            other => Err(unexpected("PONG", &other)),
        }
    }

    /// Authenticates again with the configured credentials (for example
    /// after they were changed on the node). The connection stays open if
    /// the node refuses them, and the error is returned.
    pub async fn authenticate(&self) -> Result<(), Error> {
        let mut frame = BytesMut::new();
        self.config.auth.encode(&mut frame, 0)?;
        let op = Op {
            kind: OpKind::Auth,
            scope: "",
            text: "",
        };
        expect_ok(&self.call(op, frame, None, true).await?)
    }

    /// Waits for every request in flight to be answered, then closes the
    /// connection. Requests made after this fail with [`Error::Closed`].
    pub async fn close(&self) -> Result<(), Error> {
        let (ack_tx, ack_rx) = oneshot::channel();
        if self
            .inner
            .primary
            .cmd_tx
            .send(Input::Cmd(Command::Close(ack_tx)))
            .await
            .is_err()
        {
            return Ok(()); // already gone
        }
        let _ = ack_rx.await;
        if let Some(spread) = &self.inner.spread {
            spread.close_others().await;
        }
        Ok(())
    }

    /// A stream of node events: NODE_STATUS and WARN packages. Several may
    /// be open at once; each gets every event. These streams never slow the
    /// connection: a consumer that falls behind sees
    /// [`NodeEvent::Lagged`](crate::NodeEvent::Lagged).
    pub async fn node_events(&self) -> Result<crate::node_events::NodeEvents, Error> {
        let (sink, rx) = event_channel(
            self.next_stream_id(),
            self.config.event_buffer,
            Overflow::Lag,
        );
        self.command(Command::NodeEvents(Box::new(sink))).await?;
        Ok(crate::node_events::NodeEvents::new(rx))
    }

    /// A stream of what happens to the client's connections from now on:
    /// connected (target, node id), lost (reason), moved (from, to, why),
    /// authentication failed, gave up (see [`crate::lifecycle`]). Several
    /// may be open at once; each gets every event. Like node events these
    /// streams never slow the connection: a consumer that falls behind sees
    /// [`ConnectionEvent::Lagged`](crate::ConnectionEvent::Lagged).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// use futures::StreamExt;
    /// let mut events = client.connection_events().await?;
    /// while let Some(ev) = events.next().await {
    ///     println!("{ev:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn connection_events(&self) -> Result<crate::ConnectionEvents, Error> {
        let (sink, rx) = event_channel(
            self.next_stream_id(),
            self.config.event_buffer,
            Overflow::Lag,
        );
        self.inner
            .primary
            .cmd_tx
            .send(Input::ConnectionEvents(Box::new(sink)))
            .await
            .map_err(|_| self.gone())?;
        Ok(crate::EventStream::new(rx))
    }

    /// The rooms this client has a live stream on, as (collection name,
    /// room id) pairs sorted by both: every room joined through
    /// [`Room::join`](crate::Room::join) whose streams are not all dropped
    /// or left. A room is listed once the node answered its first join,
    /// and stays listed while the client reconnects (it is joined again on
    /// the new connection). Room
    /// ids are unique only within a collection, hence the pair.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use thingsdb_client::{Auth, Client};
    /// let node = thingsdb_testkit::TestNode::start().await?; // or your node: "thingsdb://localhost:9200"
    /// node.create_room("stuff", Some("chat")); // on a node: `.chat = room(); .chat.set_name('chat');`
    /// let client = Client::connect(&node.thingsdb_url(), Auth::password("admin", "pass")).await?;
    /// let chat = client.room("//stuff", "chat")?.join().await?;
    /// assert_eq!(client.rooms().await?, [("stuff".to_string(), chat.room_id())]);
    /// for (collection, id) in client.rooms().await? {
    ///     println!("{collection}: room {id}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The reason the client stopped, once it has.
    pub async fn rooms(&self) -> Result<Vec<(String, u64)>, Error> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Rooms(reply)).await?;
        let keys = rx.await.map_err(|_| self.gone())?;
        Ok(keys
            .into_iter()
            .map(|k| (k.collection.to_string(), k.id))
            .collect())
    }

    /// How many requests are sent and not yet answered (keep-alive pings
    /// included). A diagnostic: it lags the connection task by a moment.
    pub fn in_flight(&self) -> usize {
        self.sum(|s| s.in_flight.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// How many connections the client has made: 1 after connecting, one
    /// more after each reconnect (with [balancing](crate::balance), over
    /// the connections it has now).
    pub fn connections_made(&self) -> u64 {
        self.sum(|s| s.connections.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// `f` of every connection's shared state, added up.
    fn sum<T: std::iter::Sum<T>>(&self, f: impl Fn(&crate::connection::Shared) -> T) -> T {
        match &self.inner.spread {
            Some(spread) => spread.lanes().iter().map(|l| f(&l.shared)).sum(),
            None => f(&self.inner.primary.shared),
        }
    }

    /// What the client did so far: requests by kind and outcome,
    /// connections, reconnects and moves, room events, bytes; the counters
    /// the `metrics` feature exports, as a plain value (see
    /// [`observe`](crate::observe)). A snapshot; cheap.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), thingsdb_client::Error> {
    /// use thingsdb_client::{Auth, Client};
    /// let client = Client::connect("thingsdb://localhost:9200", Auth::password("admin", "pass")).await?;
    /// client.query("1 + 1;").await?;
    /// let stats = client.stats();
    /// assert_eq!(stats.query.ok, 1);
    /// assert_eq!(stats.connections, 1);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> Stats {
        self.inner
            .primary
            .shared
            .observe
            .stats(self.in_flight(), self.connections_made())
    }

    /// The client's counters and metric handles.
    pub(crate) fn observer(&self) -> &Observer {
        &self.inner.primary.shared.observe
    }

    /// The buffers request frames are encoded into.
    pub(crate) fn frame_pool(&self) -> &crate::connection::frames::FramePool {
        &self.inner.primary.shared.frames
    }

    /// Whether the client has stopped for good (closed, or reconnecting
    /// gave up): the error every request fails with from then on
    /// ([`Error::Closed`] after [`Client::close`]), to match on.
    pub fn closed_reason(&self) -> Option<Error> {
        self.inner.primary.shared.dead.get().cloned()
    }

    /// Adds nodes to the pool, to connect to when the current node goes
    /// away (for example nodes learned from the cluster). Targets already
    /// in the pool are not added twice.
    pub async fn add_targets(&self, targets: Vec<Target>) -> Result<(), Error> {
        self.add_entries(
            targets
                .into_iter()
                .map(|target| PoolEntry { target, node: None })
                .collect(),
        )
        .await
    }

    /// Adds pool entries, each with the id of the node it must reach (a
    /// connection there that reaches another node counts as failed).
    pub(crate) async fn add_nodes(&self, nodes: Vec<(Target, Option<u32>)>) -> Result<(), Error> {
        self.add_entries(
            nodes
                .into_iter()
                .map(|(target, node)| PoolEntry { target, node })
                .collect(),
        )
        .await
    }

    async fn add_entries(&self, entries: Vec<PoolEntry>) -> Result<(), Error> {
        if let Some(spread) = &self.inner.spread {
            spread.add_nodes(&entries).await;
        }
        self.inner
            .primary
            .cmd_tx
            .send(Input::Cmd(Command::AddNodes(entries)))
            .await
            .map_err(|_| self.gone())
    }

    /// Every connection of the client: the first one, and with
    /// [balancing](crate::balance) one per further node. Each says the
    /// node it reached, where it is connected, and its share of the
    /// requests. A snapshot.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use thingsdb_client::{Auth, Client};
    /// let node = thingsdb_testkit::TestNode::start().await?; // or your node: "thingsdb://localhost:9200"
    /// let client = Client::connect(&node.thingsdb_url(), Auth::password("admin", "pass")).await?;
    /// client.query("1 + 1;").await?;
    /// let nodes = client.nodes();
    /// assert_eq!(nodes.len(), 1);
    /// assert!(nodes[0].primary);
    /// assert_eq!(nodes[0].sent, 1);
    /// # Ok(()) }
    /// ```
    pub fn nodes(&self) -> Vec<NodeLoad> {
        match &self.inner.spread {
            Some(spread) => spread.loads(),
            None => crate::balance::loads_of(&self.inner.primary),
        }
    }

    pub(crate) fn next_stream_id(&self) -> u64 {
        self.inner
            .next_stream_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues a command for the connection task.
    pub(crate) async fn command(&self, cmd: Command) -> Result<(), Error> {
        self.inner
            .primary
            .cmd_tx
            .send(Input::Cmd(cmd))
            .await
            .map_err(|_| self.gone())
    }

    /// Queues a command without waiting (used from `Drop`).
    pub(crate) fn try_command(&self, cmd: Command) {
        if let Err(mpsc::error::TrySendError::Full(cmd)) =
            self.inner.primary.cmd_tx.try_send(Input::Cmd(cmd))
        {
            let tx = self.inner.primary.cmd_tx.clone();
            crate::rt::try_spawn(async move {
                let _ = tx.send(cmd).await;
            });
        }
    }

    fn gone(&self) -> Error {
        self.inner.primary.shared.gone()
    }

    /// Sends one encoded request (id filled in by the connection task) and
    /// waits for its reply, within `timeout` or the configured request
    /// timeout, in a span (and counted) as `op` says. Dropping the future
    /// cancels the request: if it was not sent yet it never is, and a late
    /// reply is dropped.
    pub(crate) fn call<'a>(
        &'a self,
        op: Op<'a>,
        frame: BytesMut,
        timeout: Option<Duration>,
        idempotent: bool,
    ) -> impl std::future::Future<Output = Result<Frame, Error>> + 'a {
        self.call_via(op, None, frame, timeout, idempotent, Via::Balance)
    }

    /// [`Client::call`], on the connection `via` names.
    ///
    /// `scope`, when given, is the request's own scope and stands for
    /// `op.scope` (owned, for a request built with `.scope(..)`). One
    /// async block down to the answer (the request's span starts at its
    /// first poll), and the wait itself the hand-written [`Sending`], so
    /// that a request in flight holds one small state (its size is what
    /// 10 000 requests in flight cost).
    pub(crate) fn call_via<'a>(
        &'a self,
        op: Op<'a>,
        scope: Option<Scope>,
        frame: BytesMut,
        timeout: Option<Duration>,
        idempotent: bool,
        via: Via,
    ) -> impl std::future::Future<Output = Result<Frame, Error>> + 'a {
        let timeout = timeout.unwrap_or(self.config.request_timeout);
        async move {
            let op = Op {
                scope: scope.as_ref().map_or(op.scope, Scope::as_str),
                ..op
            };
            let observed = self.observer().request(&op, self.config.trace_query_text);
            let r = match &self.inner.spread {
                None => {
                    let lane = &self.inner.primary;
                    let _busy = lane.enter();
                    send_on(lane, frame, timeout, idempotent).await
                }
                Some(spread) => match spread.pick(via) {
                    Ok(lane) => {
                        let busy = lane.enter();
                        let r = send_on(&lane, frame, timeout, idempotent).await;
                        drop(busy);
                        if r.is_ok() && !idempotent {
                            spread.changed_on(&lane);
                        }
                        r
                    }
                    Err(e) => Err(e),
                },
            };
            observed.finish(&r);
            r.map(|a| a.frame)
        }
    }
}

/// Hands one request to `lane`'s connection task; the returned future
/// waits for its answer.
fn send_on(lane: &Lane, frame: BytesMut, timeout: Duration, idempotent: bool) -> Sending<'_> {
    let deadline = deadline_after(crate::rt::now(), timeout);
    let (cmd, rx) = Command::request(frame, deadline, timeout, idempotent);
    let mut sending = Sending {
        lane,
        rx,
        ticket: None,
        queued: None,
        timeout,
        failed: false,
    };
    // Straight to the session when the connection is not busy with
    // another caller's turn: then this caller steps the sockets itself
    // while it waits (see `driver::Core`).
    #[cfg(not(target_arch = "wasm32"))]
    let cmd = match lane.core.as_deref().map(std::sync::Mutex::try_lock) {
        Some(Ok(mut core)) => match core.submit(cmd) {
            Ok(ticket) => {
                sending.ticket = Some(ticket);
                return sending;
            }
            Err(cmd) => cmd,
        },
        _ => cmd,
    };
    // The connection times the request out; the caller only waits itself
    // when the command queue is full.
    match lane.cmd_tx.try_send(Input::Cmd(cmd)) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(cmd)) => {
            let send = crate::rt::timeout_at(Some(deadline), lane.cmd_tx.send(cmd));
            sending.queued = Some(Box::pin(async move {
                match send.await {
                    Ok(Ok(())) => Queued::In,
                    Ok(Err(_)) => Queued::Gone,
                    Err(_) => Queued::TimedOut,
                }
            }));
        }
        Err(mpsc::error::TrySendError::Closed(_)) => sending.failed = true,
    }
    sending
}

/// How a wait for room in a full command queue ended.
enum Queued {
    /// The request is in the queue.
    In,
    /// The connection task is gone.
    Gone,
    /// The request's deadline came first.
    TimedOut,
}

/// A caller's wait for its answer. A caller whose request found the
/// connection idle steps its sockets from the caller's task while it
/// waits, and gives them back to the connection task when done or dropped
/// (see `driver::Core`); any other waits for the answer to be handed
/// over (first for room in the command queue, when it was full).
struct Sending<'a> {
    lane: &'a Lane,
    rx: oneshot::Receiver<Result<Answer, Error>>,
    /// The ticket of a caller that steps the sockets (`None` once the
    /// connection task took them back). Never one in a browser.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    ticket: Option<u64>,
    /// The request waiting for room in the command queue.
    queued: Option<crate::request::BoxFuture<'a, Queued>>,
    timeout: Duration,
    /// The connection task was gone before the request was handed over.
    failed: bool,
}

impl Sending<'_> {
    /// The error of a connection that stopped without answering.
    fn gone(&self) -> Error {
        self.lane.shared.gone()
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn hand_back(&mut self) {
        if let (Some(ticket), Some(core)) = (self.ticket.take(), self.lane.core.as_deref()) {
            crate::connection::driver::lock(core).hand_back(ticket);
        }
    }
}

impl std::future::Future for Sending<'_> {
    /// The answer, or why there is none.
    type Output = Result<Answer, Error>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(Err(this.gone()));
        }
        if let Some(q) = this.queued.as_mut() {
            match q.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Queued::In) => this.queued = None,
                Poll::Ready(Queued::Gone) => {
                    this.queued = None;
                    this.failed = true;
                    return Poll::Ready(Err(this.gone()));
                }
                Poll::Ready(Queued::TimedOut) => {
                    this.queued = None;
                    this.failed = true;
                    return Poll::Ready(Err(Error::Timeout(this.timeout)));
                }
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        if let (Some(ticket), Some(core)) = (this.ticket, this.lane.core.as_deref()) {
            let mut c = crate::connection::driver::lock(core);
            let rx = &this.rx;
            if c.step_caller(ticket, cx, &|| !rx.is_empty()) {
                // The answer comes from this task's own step: looked at
                // without leaving a waker, so that it does not wake the
                // task it runs on.
                let r = match this.rx.try_recv() {
                    Ok(r) => Some(r),
                    Err(oneshot::error::TryRecvError::Empty) => return Poll::Pending,
                    Err(oneshot::error::TryRecvError::Closed) => None,
                };
                this.ticket = None;
                c.hand_back(ticket);
                drop(c);
                return Poll::Ready(r.unwrap_or_else(|| Err(this.gone())));
            }
            // The connection task took the sockets back: it hands the
            // answer over.
            this.ticket = None;
        }
        match std::pin::Pin::new(&mut this.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            // The connection dropped the request unanswered (it stopped).
            Poll::Ready(Err(_)) => Poll::Ready(Err(this.gone())),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.hand_back();
    }
}

/// OK, or the node's error.
pub(crate) fn expect_ok(frame: &Frame) -> Result<(), Error> {
    match Response::decode(frame)? {
        Response::Ok => Ok(()),
        Response::Error(e) => Err(Error::Thingsdb(e.into())),
        other => Err(unexpected("OK", &other)),
    }
}

/// The DATA payload, or the node's error.
pub(crate) fn expect_data(frame: Frame) -> Result<Bytes, Error> {
    match Response::decode(&frame)? {
        Response::Data(d) => Ok(d),
        Response::Error(e) => Err(Error::Thingsdb(e.into())),
        other => Err(unexpected("DATA", &other)),
    }
}

/// A handle that does not keep the connection open, for background work
/// on the client's behalf (cluster discovery's refresh).
#[derive(Clone)]
pub(crate) struct WeakClient(std::sync::Weak<Inner>, Arc<Config>);

impl WeakClient {
    /// The client, while any handle of it is alive.
    pub(crate) fn upgrade(&self) -> Option<Client> {
        self.0.upgrade().map(|inner| Client {
            inner,
            config: self.1.clone(),
        })
    }
}

impl Client {
    /// A handle that does not keep the connection open.
    pub(crate) fn downgrade(&self) -> WeakClient {
        WeakClient(Arc::downgrade(&self.inner), self.config.clone())
    }
}
