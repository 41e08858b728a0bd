//! The node itself: builder, listeners, and the test-side API.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rmpv::Value;
use thingsdb_protocol::{msgpack, EmitEvent, Event, EventRoom, NodeStatus, MAX_PAYLOAD};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::conn::{self, BoxIo};
use crate::faults::Faults;
use crate::reply::Scope;
use crate::reply::{Args, Query, Reply};
use crate::state::{
    encode_event, Command, Config, ConnEntry, Counters, Ingress, Room, Shared, State,
};

/// The size of the WebSocket frames a node splits large messages into
/// (`LWS_SS_MTU - LWS_PRE` = 1540 - 16 bytes).
pub const NODE_WS_FRAGMENT: usize = 1524;

/// A node's default `result_size_limit`: 20 MiB.
pub const DEFAULT_RESULT_SIZE_LIMIT: usize = 20 * 1024 * 1024;

/// Configures and starts a [`TestNode`]; see [`TestNode::builder`].
#[derive(Debug, Clone)]
pub struct TestNodeBuilder {
    users: Vec<(String, Option<String>)>,
    tokens: Vec<(String, String)>,
    collections: Vec<String>,
    tls: Option<(Vec<u8>, Vec<u8>)>,
    max_payload: u32,
    ws_fragment: usize,
    node_id: u8,
    result_size_limit: usize,
    service_time: Duration,
}

impl Default for TestNodeBuilder {
    fn default() -> Self {
        TestNodeBuilder {
            users: vec![("admin".into(), Some("pass".into()))],
            tokens: Vec::new(),
            collections: vec!["stuff".into()],
            tls: None,
            max_payload: MAX_PAYLOAD,
            ws_fragment: NODE_WS_FRAGMENT,
            node_id: 0,
            result_size_limit: DEFAULT_RESULT_SIZE_LIMIT,
            service_time: Duration::ZERO,
        }
    }
}

impl TestNodeBuilder {
    /// Adds a user with a password (replacing the password of a user of
    /// that name, such as the default `admin`/`pass`).
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        let name = name.into();
        self.users.retain(|(n, _)| *n != name);
        self.users.push((name, Some(password.into())));
        self
    }

    /// Removes the default user `admin` (and any user added before).
    pub fn no_users(mut self) -> Self {
        self.users.clear();
        self
    }

    /// Adds a token that authenticates as `user`. Unlike a node's 22
    /// character keys, any string works.
    pub fn token(mut self, token: impl Into<String>, user: impl Into<String>) -> Self {
        self.tokens.push((token.into(), user.into()));
        self
    }

    /// Adds a collection (a fresh node has `stuff`, which is always there).
    pub fn collection(mut self, name: impl Into<String>) -> Self {
        self.collections.push(name.into());
        self
    }

    /// Serves TLS too: TLS over TCP on [`TestNode::tls_addr`] and `wss://`
    /// on [`TestNode::wss_url`], with a PEM certificate chain and a PEM
    /// private key.
    pub fn tls(mut self, cert_pem: impl AsRef<[u8]>, key_pem: impl AsRef<[u8]>) -> Self {
        self.tls = Some((cert_pem.as_ref().to_vec(), key_pem.as_ref().to_vec()));
        self
    }

    /// The largest payload accepted; a header announcing more closes the
    /// connection (default: a node's 1 GiB).
    pub fn max_payload(mut self, max: u32) -> Self {
        self.max_payload = max;
        self
    }

    /// The size of the WebSocket frames large replies are split into
    /// (default [`NODE_WS_FRAGMENT`], as a node).
    pub fn ws_fragment_size(mut self, n: usize) -> Self {
        self.ws_fragment = n.max(1);
        self
    }

    /// This node's id, as NODE_STATUS reports it and `@node:ID` names it
    /// (default 0).
    pub fn node_id(mut self, id: u8) -> Self {
        self.node_id = id;
        self
    }

    /// Replies larger than this many bytes become error -6 (default: a
    /// node's 20 MiB).
    pub fn result_size_limit(mut self, n: usize) -> Self {
        self.result_size_limit = n;
        self
    }

    /// Gives every QUERY and RUN a service time (default none): the node
    /// handles them one at a time, each occupying it for `t`, as a real
    /// node's single thread does. A request received at `now` is done at
    /// `max(now, when the node is free) + t` and its reply is written then
    /// (the handler itself runs when the request arrives); so one node
    /// answers at most one such request per `t`, however many connections
    /// and pipelined requests it has, and each node of a
    /// [`TestCluster`] has its own queue. Replies on a connection keep the
    /// order of its requests, and other requests on it (PING, JOIN, ...)
    /// wait behind the queries before them but take no time themselves.
    ///
    /// The time is a schedule kept with a timer, not spent spinning: it
    /// costs no CPU, and timer lateness does not add up, so throughput
    /// stays at `1 / t` with many requests pipelined (each reply may be up
    /// to a timer tick, about a millisecond, late). See also
    /// [`TestNode::set_service_time`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use std::time::Duration;
    /// use thingsdb_testkit::TestNode;
    /// let cluster = TestNode::builder()
    ///     .service_time(Duration::from_micros(200))
    ///     .start_cluster(2)
    ///     .await?;
    /// assert_eq!(cluster.node(1).service_time(), Duration::from_micros(200));
    /// # Ok(()) }
    /// ```
    pub fn service_time(mut self, t: Duration) -> Self {
        self.service_time = t;
        self
    }

    /// Binds the listeners on ephemeral loopback ports and starts serving.
    pub async fn start(self) -> std::io::Result<TestNode> {
        self.start_sharing(None).await
    }

    /// Starts `n` nodes (ids 0 to n-1) that share users, collections, rooms
    /// and handlers: an emit on one reaches the joined connections of all,
    /// as in a ThingsDB cluster.
    pub async fn start_cluster(self, n: usize) -> std::io::Result<TestCluster> {
        let first = self.clone().start().await?;
        let state = first.shared.state.clone();
        let mut nodes = vec![first];
        for i in 1..n {
            let mut b = self.clone();
            b.node_id = u8::try_from(i).unwrap_or(u8::MAX);
            nodes.push(b.start_sharing(Some(state.clone())).await?);
        }
        Ok(TestCluster {
            nodes: nodes.into_iter().map(Arc::new).collect(),
        })
    }

    async fn start_sharing(self, state: Option<Arc<Mutex<State>>>) -> std::io::Result<TestNode> {
        let tls = match &self.tls {
            Some((c, k)) => Some(crate::tls::acceptor(c, k)?),
            None => None,
        };
        let mut users = HashMap::new();
        for (n, p) in self.users {
            if let Some(p) = p {
                users.insert(n, p);
            }
        }
        let mut collections: BTreeSet<String> = self.collections.into_iter().collect();
        collections.insert("stuff".into());
        let state = state.unwrap_or_else(|| {
            Arc::new(Mutex::new(State {
                users,
                tokens: self.tokens.into_iter().collect(),
                collections,
                rooms: BTreeMap::new(),
                next_ids: HashMap::new(),
                query_handler: None,
                procedures: HashMap::new(),
                conns: BTreeMap::new(),
                next_conn_id: 1,
                counters: Counters::default(),
                faults: Default::default(),
                close_after: None,
            }))
        });
        let shared = Arc::new(Shared {
            state,
            refuse_until: Mutex::new(None),
            cancel: CancellationToken::new(),
            config: Config {
                max_payload: self.max_payload,
                ws_fragment: self.ws_fragment,
                node_id: self.node_id,
                result_size_limit: self.result_size_limit,
            },
            service: Mutex::new(crate::service::Service::new(self.service_time)),
        });
        let dir = tempfile::Builder::new()
            .prefix("thingsdb-testkit")
            .tempdir()?;
        let unix = dir.path().join("thingsdb.sock");

        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let tcp_l = TcpListener::bind(loopback).await?;
        let ws_l = TcpListener::bind(loopback).await?;
        let unix_l = UnixListener::bind(&unix)?;
        let tcp = tcp_l.local_addr()?;
        let ws = ws_l.local_addr()?;
        let mut tasks = vec![
            spawn_accept(&shared, Listener::Tcp(tcp_l), Ingress::Tcp, None),
            spawn_accept(&shared, Listener::Tcp(ws_l), Ingress::Ws, None),
            spawn_accept(&shared, Listener::Unix(unix_l), Ingress::Unix, None),
        ];
        let (mut tls_addr, mut wss_addr) = (None, None);
        if let Some(acc) = tls {
            let tls_l = TcpListener::bind(loopback).await?;
            let wss_l = TcpListener::bind(loopback).await?;
            tls_addr = Some(tls_l.local_addr()?);
            wss_addr = Some(wss_l.local_addr()?);
            tasks.push(spawn_accept(
                &shared,
                Listener::Tcp(tls_l),
                Ingress::Tls,
                Some(acc.clone()),
            ));
            tasks.push(spawn_accept(
                &shared,
                Listener::Tcp(wss_l),
                Ingress::Wss,
                Some(acc),
            ));
        }
        Ok(TestNode {
            shared,
            tcp,
            tls: tls_addr,
            ws,
            wss: wss_addr,
            unix,
            tasks,
            _dir: dir,
        })
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<BoxIo> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok(Box::new(s))
            }
            Listener::Unix(l) => Ok(Box::new(l.accept().await?.0)),
        }
    }
}

fn spawn_accept(
    shared: &Arc<Shared>,
    listener: Listener,
    transport: Ingress,
    tls: Option<TlsAcceptor>,
) -> AbortHandle {
    tokio::spawn(accept_loop(shared.clone(), listener, transport, tls)).abort_handle()
}

/// Accepts connections until the node stops. The connection tasks live in
/// this task's `JoinSet`, so they are aborted when it ends.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: Listener,
    transport: Ingress,
    tls: Option<TlsAcceptor>,
) {
    let mut set = JoinSet::new();
    let cancel = shared.cancel.clone();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(_) = set.join_next(), if !set.is_empty() => {}
            r = listener.accept() => {
                let io = match r {
                    Ok(io) => io,
                    Err(e) => {
                        tracing::debug!("testkit: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let (conn, rx) = {
                    let refused = {
                        let mut until = shared.refuse_until.lock().unwrap_or_else(|p| p.into_inner());
                        let refused = until.is_some_and(|t| Instant::now() < t);
                        if !refused {
                            *until = None;
                        }
                        refused
                    };
                    let mut st = shared.lock();
                    if refused {
                        st.counters.connections_refused += 1;
                        drop(io);
                        continue;
                    }
                    st.counters.count_accepted(transport);
                    let id = st.next_conn_id;
                    st.next_conn_id += 1;
                    let (tx, rx) = mpsc::unbounded_channel();
                    let faults = Default::default();
                    let close_after = st.close_after;
                    st.conns.insert(id, ConnEntry {
                        node: shared.config.node_id,
                        transport,
                        user: None,
                        tx,
                        faults,
                        close_after,
                        corruptions: Default::default(),
                        abort: None,
                        received: 0,
                    });
                    (id, rx)
                };
                let h = set.spawn(conn::serve(shared.clone(), conn, io, transport, tls.clone(), rx));
                if let Some(c) = shared.lock().conns.get_mut(&conn) {
                    c.abort = Some(h);
                }
            }
        }
    }
}

/// One open connection, as [`TestNode::connections`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The connection's id (use it with [`TestNode::connection_faults`]).
    pub id: u64,
    /// How it came in.
    pub transport: Ingress,
    /// The user it authenticated as, if it did.
    pub user: Option<String>,
    /// The rooms it joined.
    pub rooms: Vec<u64>,
    /// Packages received on it.
    pub received: u64,
}

/// An in-process ThingsDB node stand-in.
///
/// It listens on ephemeral loopback ports over TCP and WebSocket, on a Unix
/// socket in a temporary directory and, when configured with
/// [`TestNodeBuilder::tls`], over TLS and secure WebSocket. It speaks the
/// client protocol as a node does (see the crate documentation) and stops
/// when dropped, leaving nothing behind.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use thingsdb_protocol::ErrorCode;
/// use thingsdb_testkit::{Reply, TestNode};
///
/// let node = TestNode::builder().user("admin", "pass").token("tok123", "admin").start().await?;
/// node.procedure("add_one", |args| match args.param(0, "x").and_then(|v| v.as_i64()) {
///     Some(x) => Reply::value(x + 1),
///     None => Reply::error(ErrorCode::Type, "expecting an integer"),
/// });
/// let room = node.create_room("stuff", Some("chat"));
/// assert!(node.tcp_addr().ip().is_loopback());
/// assert!(node.ws_url().starts_with("ws://127.0.0.1:"));
/// # let _ = room;
/// # Ok(()) }
/// ```
pub struct TestNode {
    pub(crate) shared: Arc<Shared>,
    tcp: SocketAddr,
    tls: Option<SocketAddr>,
    ws: SocketAddr,
    wss: Option<SocketAddr>,
    unix: PathBuf,
    tasks: Vec<AbortHandle>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNode")
            .field("tcp", &self.tcp)
            .field("tls", &self.tls)
            .field("ws", &self.ws)
            .field("wss", &self.wss)
            .field("unix", &self.unix)
            .finish_non_exhaustive()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        for t in &self.tasks {
            t.abort();
        }
        let node = self.shared.config.node_id;
        let last = Arc::strong_count(&self.shared.state) == 1;
        let mut st = self.shared.lock();
        for c in st.conns.values().filter(|c| c.node == node) {
            if let Some(a) = &c.abort {
                a.abort();
            }
        }
        if last {
            st.query_handler = None;
            st.procedures.clear();
        }
    }
}

impl TestNode {
    /// A builder with a fresh node's defaults: user `admin` with password
    /// `pass`, collection `stuff`, no TLS.
    pub fn builder() -> TestNodeBuilder {
        TestNodeBuilder::default()
    }

    /// Starts a node with the defaults of [`TestNode::builder`].
    pub async fn start() -> std::io::Result<TestNode> {
        TestNode::builder().start().await
    }

    // ------------------------------------------------------------ addresses

    /// The plain TCP listener's address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp
    }

    /// The TLS-over-TCP listener's address, when TLS is configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls
    }

    /// The WebSocket listener's address.
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws
    }

    /// The secure WebSocket listener's address, when TLS is configured.
    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.wss
    }

    /// `ws://127.0.0.1:PORT`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.ws)
    }

    /// `wss://127.0.0.1:PORT`, when TLS is configured.
    pub fn wss_url(&self) -> Option<String> {
        self.wss.map(|a| format!("wss://{a}"))
    }

    /// The Unix socket's path.
    pub fn unix_path(&self) -> &Path {
        &self.unix
    }

    /// `127.0.0.1:PORT` (plain TCP).
    pub fn tcp_target(&self) -> String {
        self.tcp.to_string()
    }

    /// `thingsdb://127.0.0.1:PORT` (plain TCP).
    pub fn thingsdb_url(&self) -> String {
        format!("thingsdb://{}", self.tcp)
    }

    /// `thingsdbs://127.0.0.1:PORT` (TLS over TCP), when TLS is configured.
    pub fn thingsdbs_url(&self) -> Option<String> {
        self.tls.map(|a| format!("thingsdbs://{a}"))
    }

    /// `unix:/path/to/thingsdb.sock`.
    pub fn unix_target(&self) -> String {
        format!("unix:{}", self.unix.display())
    }

    // ------------------------------------------------------- users, scopes

    /// Adds a user, or changes its password.
    pub fn add_user(&self, name: impl Into<String>, password: impl Into<String>) {
        self.shared
            .lock()
            .users
            .insert(name.into(), password.into());
    }

    /// Removes a user and its tokens; its open connections stay
    /// authenticated (as on a node until they reconnect).
    pub fn remove_user(&self, name: &str) -> bool {
        let mut st = self.shared.lock();
        st.tokens.retain(|_, u| u != name);
        st.users.remove(name).is_some()
    }

    /// Adds a token that authenticates as `user`.
    pub fn add_token(&self, token: impl Into<String>, user: impl Into<String>) {
        self.shared.lock().tokens.insert(token.into(), user.into());
    }

    /// Removes a token.
    pub fn remove_token(&self, token: &str) -> bool {
        self.shared.lock().tokens.remove(token).is_some()
    }

    /// Adds a collection.
    pub fn add_collection(&self, name: impl Into<String>) {
        self.shared.lock().collections.insert(name.into());
    }

    // --------------------------------------------------- queries, procedures

    /// Answers every QUERY with `f` (without a handler a QUERY is refused,
    /// or, with the `eval` feature, evaluated as simple arithmetic; `f`
    /// can fall back to that with `Query::evaluate`).
    /// Scope, authentication and vars are checked before `f` is called, as
    /// a node checks them.
    pub fn on_query<F>(&self, f: F)
    where
        F: Fn(&Query) -> Reply + Send + Sync + 'static,
    {
        self.shared.lock().query_handler = Some(Arc::new(f));
    }

    /// Goes back to the default query behaviour.
    pub fn clear_query_handler(&self) {
        self.shared.lock().query_handler = None;
    }

    /// Registers the procedure `name` for RUN, in every scope but `@node`.
    /// A RUN of an unknown procedure gets -54, and one whose arguments are
    /// neither one array nor one map gets -53, as on a node.
    pub fn procedure<F>(&self, name: impl Into<String>, f: F)
    where
        F: Fn(&Args) -> Reply + Send + Sync + 'static,
    {
        self.shared
            .lock()
            .procedures
            .insert(name.into(), Arc::new(f));
    }

    /// Removes a procedure.
    pub fn remove_procedure(&self, name: &str) -> bool {
        self.shared.lock().procedures.remove(name).is_some()
    }

    // ------------------------------------------------------------- rooms

    /// Creates a room in `collection` (added if missing), optionally with a
    /// name, and returns its id. Each collection counts its own ids, from 2
    /// (as a node does: id 1 is the collection's root), so two collections'
    /// first rooms have the same id. A name already in use moves to the new
    /// room, as `set_name` does on a node.
    pub fn create_room(&self, collection: &str, name: Option<&str>) -> u64 {
        let mut st = self.shared.lock();
        st.collections.insert(collection.to_string());
        if let Some(n) = name {
            for ((c, _), r) in st.rooms.iter_mut() {
                if c == collection && r.name.as_deref() == Some(n) {
                    r.name = None;
                }
            }
        }
        let id = st.next_free_id(collection);
        st.rooms.insert(
            (collection.to_string(), id),
            Room {
                name: name.map(str::to_string),
                joined: BTreeSet::new(),
            },
        );
        id
    }

    /// Deletes room `id` of `collection`; every connection that joined it
    /// gets ON_DELETE. False if there is no such room.
    pub fn delete_room(&self, collection: &str, id: u64) -> bool {
        let mut st = self.shared.lock();
        let Some(room) = st.rooms.remove(&(collection.to_string(), id)) else {
            return false;
        };
        let ev = Event::Delete(EventRoom {
            scope: Some(Scope::Collection(collection.to_string()).to_string()),
            id,
        });
        if let Some(pkg) = encode_event(&ev) {
            for c in room.joined {
                st.send_to(c, pkg.clone());
            }
        }
        true
    }

    /// The connections (of every node of a cluster) that joined room `id`
    /// of `collection`.
    pub fn room_joiners(&self, collection: &str, id: u64) -> Vec<u64> {
        self.shared
            .lock()
            .rooms
            .get(&(collection.to_string(), id))
            .map(|r| r.joined.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Emits `event` with `args` in room `id` of `collection` from the
    /// node's side (as `room.emit(..)` in code does): every joined
    /// connection (on every node of a cluster) gets ON_EMIT, with the scope
    /// `@collection:NAME`. Returns how many connections it was sent to (0
    /// when there is no such room).
    pub fn emit(&self, collection: &str, id: u64, event: &str, args: &[Value]) -> usize {
        let mut st = self.shared.lock();
        let Some(room) = st.rooms.get(&(collection.to_string(), id)) else {
            return 0;
        };
        let mut a = BytesMut::new();
        msgpack::write_array_len(&mut a, args.len() as u32);
        for v in args {
            thingsdb_protocol::encode_value(&mut a, v);
        }
        let ev = Event::Emit(EmitEvent {
            scope: Some(Scope::Collection(collection.to_string()).to_string()),
            id,
            event: event.to_string(),
            args: a.freeze(),
        });
        let joined: Vec<u64> = room.joined.iter().copied().collect();
        let Some(pkg) = encode_event(&ev) else {
            return 0;
        };
        joined
            .into_iter()
            .filter(|c| st.send_to(*c, pkg.clone()))
            .count()
    }

    // ------------------------------------------------------------ events

    /// Sends NODE_STATUS with this node's id to every authenticated
    /// connection (a node tells only those). Returns how many.
    pub fn emit_node_status(&self, status: NodeStatus) -> usize {
        let id = u64::from(self.shared.config.node_id);
        self.broadcast(&Event::NodeStatus { id, status })
    }

    /// Sends WARN to every authenticated connection. Returns how many.
    pub fn emit_warn(&self, code: i64, message: &str) -> usize {
        self.broadcast(&Event::Warn {
            code,
            message: message.to_string(),
        })
    }

    /// Sends any event to one connection; false if it is gone.
    pub fn send_event(&self, conn: u64, event: &Event) -> bool {
        match encode_event(event) {
            Some(pkg) => self.shared.lock().send_to(conn, pkg),
            None => false,
        }
    }

    fn broadcast(&self, e: &Event) -> usize {
        let Some(pkg) = encode_event(e) else {
            return 0;
        };
        let node = self.shared.config.node_id;
        let mut st = self.shared.lock();
        let ids: Vec<u64> = st
            .conns
            .iter()
            .filter(|(_, c)| c.user.is_some() && c.node == node)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter(|c| st.send_to(*c, pkg.clone()))
            .count()
    }

    // ------------------------------------------------------------ faults

    /// Sets this node's service time for the requests it receives from now
    /// on (zero: none); see [`TestNodeBuilder::service_time`]. Only this
    /// node of a cluster changes.
    pub fn set_service_time(&self, t: Duration) {
        self.shared.service().set_time(t);
    }

    /// This node's service time (zero: none).
    pub fn service_time(&self) -> Duration {
        self.shared.service().time()
    }

    /// Fault injection for every connection (and, for settings, those made
    /// later).
    pub fn faults(&self) -> Faults {
        Faults::all(self.shared.clone())
    }

    /// Fault injection for one connection.
    pub fn connection_faults(&self, conn: u64) -> Faults {
        Faults::one(self.shared.clone(), conn)
    }

    /// For `d`, every new connection is accepted and closed at once, before
    /// any handshake (counted in [`Counters::connections_refused`]).
    pub fn refuse_connections_for(&self, d: Duration) {
        *self
            .shared
            .refuse_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + d);
    }

    /// Ends a [`TestNode::refuse_connections_for`] early.
    pub fn accept_connections(&self) {
        *self
            .shared
            .refuse_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Simulates a node restart: drops every connection at once (no reply
    /// to anything pending, no WebSocket close frame), keeping users,
    /// rooms, procedures and handlers. Waits until the connections are
    /// gone.
    pub async fn restart(&self) {
        self.restart_with_downtime(Duration::ZERO).await
    }

    /// As [`TestNode::restart`], and refuses new connections for
    /// `downtime`, as a node does while it starts up again.
    pub async fn restart_with_downtime(&self, downtime: Duration) {
        let node = self.shared.config.node_id;
        {
            if !downtime.is_zero() {
                self.refuse_connections_for(downtime);
            }
            let st = self.shared.lock();
            for c in st.conns.values().filter(|c| c.node == node) {
                match &c.abort {
                    Some(a) => a.abort(),
                    None => {
                        let _ = c.tx.send(Command::Close);
                    }
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.open_connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A graceful shutdown, as a node does on SIGTERM: it tells its
    /// authenticated connections NODE_STATUS `SHUTTING_DOWN`, keeps serving
    /// them for `period` (refusing new connections), then closes every
    /// connection and stops listening. Returns once it has stopped.
    pub async fn shutdown_gracefully(&self, period: Duration) {
        self.emit_node_status(NodeStatus::ShuttingDown);
        self.refuse_connections_for(Duration::from_secs(86_400));
        tokio::time::sleep(period).await;
        let node = self.shared.config.node_id;
        {
            let st = self.shared.lock();
            for c in st.conns.values().filter(|c| c.node == node) {
                let _ = c.tx.send(Command::Close);
            }
        }
        self.shared.cancel.cancel();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.open_connections() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// This node's id (0 unless set, or its place in a cluster).
    pub fn node_id(&self) -> u8 {
        self.shared.config.node_id
    }

    fn open_connections(&self) -> usize {
        let node = self.shared.config.node_id;
        self.shared
            .lock()
            .conns
            .values()
            .filter(|c| c.node == node)
            .count()
    }

    // -------------------------------------------------------- inspection

    /// The open connections.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let node = self.shared.config.node_id;
        let st = self.shared.lock();
        st.conns
            .iter()
            .filter(|(_, c)| c.node == node)
            .map(|(id, c)| ConnectionInfo {
                id: *id,
                transport: c.transport,
                user: c.user.clone(),
                rooms: st
                    .rooms
                    .iter()
                    .filter(|(_, r)| r.joined.contains(id))
                    .map(|((_, rid), _)| *rid)
                    .collect(),
                received: c.received,
            })
            .collect()
    }

    /// What the node received and did so far.
    pub fn counters(&self) -> Counters {
        self.shared.lock().counters.clone()
    }

    /// Sets every counter back to zero.
    pub fn reset_counters(&self) {
        self.shared.lock().counters = Counters::default();
    }

    /// Waits until `pred` holds for the counters, or `timeout` passes;
    /// returns whether it held.
    pub async fn wait_for(&self, pred: impl Fn(&Counters) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.counters()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits until exactly `n` connections are open, or `timeout` passes;
    /// returns whether they were.
    pub async fn wait_for_connections(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.open_connections() == n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Nodes that share users, collections and rooms, as a ThingsDB cluster
/// does: an emit on one node reaches the joined connections of all; each
/// node has its own listeners and connections. Started with
/// [`TestNodeBuilder::start_cluster`]. Counters are the cluster's.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use thingsdb_testkit::TestNode;
/// let cluster = TestNode::builder().start_cluster(2).await?;
/// let room = cluster.node(0).create_room("stuff", None);
/// assert_eq!(cluster.node(1).room_joiners("stuff", room), Vec::<u64>::new());
/// assert_eq!(cluster.node(1).node_id(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestCluster {
    nodes: Vec<Arc<TestNode>>,
}

impl TestCluster {
    /// Node `i` (panics when out of range, as indexing does); an `Arc` so
    /// that a task of its own can hold it.
    pub fn node(&self, i: usize) -> &Arc<TestNode> {
        &self.nodes[i]
    }

    /// Every node.
    pub fn nodes(&self) -> &[Arc<TestNode>] {
        &self.nodes
    }
}
