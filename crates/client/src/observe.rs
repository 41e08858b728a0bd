//! What a running client is doing: `tracing` spans, metrics through the
//! [`metrics`](https://docs.rs/metrics) facade (feature `metrics`), and the
//! counters of [`Client::stats`](crate::Client::stats).
//!
//! # Spans
//!
//! Every request (query, procedure call, emit, ping, authenticate) is a
//! span named `thingsdb.request` at `INFO` with target
//! [`REQUESTS`], following OpenTelemetry's conventions for database
//! clients:
//!
//! | field | value |
//! |---|---|
//! | `db.system.name` | `thingsdb` |
//! | `db.namespace` | the scope (`@thingsdb`, `//stuff`, ...) |
//! | `db.operation.name` | `query`, `run`, `emit`, `ping` or `authenticate` |
//! | `db.stored_procedure.name` | the procedure of a `run` |
//! | `db.query.text` | the code of a query, only with [`ClientBuilder::trace_query_text`](crate::ClientBuilder::trace_query_text) (code may carry secrets) |
//! | `server.address`, `server.port` | the node that answered |
//! | `error.type` | the ThingsDB error's name (`lookup_err`, ...), or `timeout`, `connection_lost`, `cancelled`, ... |
//! | `db.response.status_code` | the ThingsDB error code (`-54`) |
//! | `thingsdb.reply_time_us` | microseconds from handing the request to the connection to its reply |
//! | `otel.name`, `otel.kind`, `otel.status_code` | for `tracing-opentelemetry`: the span's name there is `query SCOPE`, `run PROCEDURE`, ... |
//!
//! The connection's life is told with target [`LIFECYCLE`]: spans
//! `thingsdb.connect` (with a child `thingsdb.authenticate`) for every
//! connection made, `thingsdb.reconnect` around the attempts after a lost
//! connection, `thingsdb.move` around the connection to the next node when
//! the serving one shuts down, `thingsdb.join` and `thingsdb.leave` for
//! rooms, and `INFO` events `connected`, `connection lost`, `moved`,
//! `authentication failed` and `stopped` (the session's lifecycle events,
//! [`ConnectionEvent`], as they happen).
//!
//! When nothing listens (no subscriber, or one that filters these out) a
//! span costs a load and a compare: see `cargo xtask bench-observe` for the
//! pipelined rate with and without the instrumentation, side by side.
//!
//! ```no_run
//! # async fn demo() -> Result<(), thingsdb_client::Error> {
//! use tracing_subscriber::fmt::format::FmtSpan;
//! // Print each request's span when it closes, with its fields and time.
//! tracing_subscriber::fmt()
//!     .with_env_filter("thingsdb_client=info")
//!     .with_span_events(FmtSpan::CLOSE)
//!     .init();
//! let client = thingsdb_client::Client::connect(
//!     "thingsdb://localhost:9200",
//!     thingsdb_client::Auth::password("admin", "pass"),
//! ).await?;
//! client.query("1 + 1;").await?;
//! # Ok(()) }
//! ```
//!
//! # Metrics
//!
//! With the `metrics` feature, a client records through whatever recorder
//! the program installed (install it before connecting), under the names of
//! [`metric`]: request duration by kind and outcome, requests in flight,
//! reconnects, moves and lost connections, room events delivered, lagged
//! and dropped per room, and bytes sent and received.
//!
//! # Stats
//!
//! [`Client::stats`](crate::Client::stats) gives the same counters as a
//! plain [`Stats`], for programs without a metrics stack.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use thingsdb_protocol::{ErrorReply, Frame, PackageType, HEADER_LEN};
use thingsdb_transport::Target;
use tracing::field::Empty;
use tracing::{info, info_span, Span};
use web_time::Instant;

use crate::error::Error;
use crate::lifecycle::ConnectionEvent;

/// Whether the instrumentation is compiled in (the default feature
/// `observe`). Without it every hook below is empty, and
/// [`Client::stats`](crate::Client::stats) counts only `in_flight` and
/// `connections`: the baseline that `cargo xtask bench-observe` compares
/// the instrumented client with.
const ON: bool = cfg!(feature = "observe");

/// The `tracing` target of request spans.
pub const REQUESTS: &str = "thingsdb_client::request";

/// The `tracing` target of the connection's lifecycle: connect,
/// authenticate, reconnect, move, join, leave; lost and stopped.
pub const LIFECYCLE: &str = "thingsdb_client::lifecycle";

/// The metric names (feature `metrics`). Labels are in brackets.
pub mod metric {
    /// Histogram, seconds: a request from being handed to the connection to
    /// its reply, by `kind` (`query`, `run`, `emit`, `ping`,
    /// `authenticate`) and `outcome` (`ok`, `error`, `timeout`,
    /// `connection_lost`, `cancelled`, `other`).
    pub const REQUEST_DURATION: &str = "thingsdb_client_request_duration_seconds";
    /// Gauge: requests handed to the connection and not answered yet.
    pub const IN_FLIGHT: &str = "thingsdb_client_requests_in_flight";
    /// Counter: connections made again after the serving one was lost.
    pub const RECONNECTS: &str = "thingsdb_client_reconnects_total";
    /// Counter: moves to another node because the serving one shut down.
    pub const MOVES: &str = "thingsdb_client_moves_total";
    /// Counter: open connections that broke or were closed by the node.
    pub const CONNECTIONS_LOST: &str = "thingsdb_client_connections_lost_total";
    /// Counter, by `collection` and `room`: room events put in a stream's
    /// buffer.
    pub const EVENTS_DELIVERED: &str = "thingsdb_client_room_events_delivered_total";
    /// Counter, by `collection` and `room`: room events dropped because a
    /// stream with [`Overflow::Lag`](crate::Overflow::Lag) was full (its
    /// consumer sees [`RoomEvent::Lagged`](crate::RoomEvent::Lagged)).
    pub const EVENTS_LAGGED: &str = "thingsdb_client_room_events_lagged_total";
    /// Counter, by `collection` and `room`: room events that reached a
    /// stream whose consumer was gone.
    pub const EVENTS_DROPPED: &str = "thingsdb_client_room_events_dropped_total";
    /// Counter: bytes of packages received (headers included).
    pub const BYTES_RECEIVED: &str = "thingsdb_client_received_bytes_total";
    /// Counter: bytes of packages sent (headers included).
    pub const BYTES_SENT: &str = "thingsdb_client_sent_bytes_total";
}

// ------------------------------------------------------------------- kinds

/// What kind of request a span or counter is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Query = 0,
    Run,
    Emit,
    Ping,
    Auth,
}

const KINDS: usize = 5;

impl OpKind {
    fn as_str(self) -> &'static str {
        match self {
            OpKind::Query => "query",
            OpKind::Run => "run",
            OpKind::Emit => "emit",
            OpKind::Ping => "ping",
            OpKind::Auth => "authenticate",
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok = 0,
    Error,
    Timeout,
    ConnectionLost,
    Cancelled,
    Other,
}

const OUTCOMES: usize = 6;

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::ConnectionLost => "connection_lost",
            Outcome::Cancelled => "cancelled",
            Outcome::Other => "other",
        }
    }

    fn of(r: &Result<Answer, Error>) -> Outcome {
        match r {
            Ok(a) if a.frame.type_byte == PackageType::Error.as_u8() => Outcome::Error,
            Ok(_) => Outcome::Ok,
            Err(Error::Thingsdb(_)) => Outcome::Error,
            Err(Error::Timeout(_)) => Outcome::Timeout,
            Err(Error::ConnectionLost(_)) => Outcome::ConnectionLost,
            Err(_) => Outcome::Other,
        }
    }
}

/// What a request is, for its span and counters.
pub(crate) struct Op<'a> {
    pub kind: OpKind,
    /// The scope, as the request names it.
    pub scope: &'a str,
    /// The code of a query, the procedure of a run, the event of an emit.
    pub text: &'a str,
}

// ----------------------------------------------------------------- answers

/// A reply, with the pool index of the connection that brought it (the
/// node that answered).
#[derive(Debug)]
pub(crate) struct Answer {
    pub frame: Frame,
    /// Pool index of the answering connection.
    pub node: Option<usize>,
}

impl Deref for Answer {
    type Target = Frame;

    fn deref(&self) -> &Frame {
        &self.frame
    }
}

// --------------------------------------------------------------- the stats

/// How the requests of one kind ended, as counted by
/// [`Client::stats`](crate::Client::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestStats {
    /// Answered with a result (DATA, OK or PONG).
    pub ok: u64,
    /// Answered with a ThingsDB error.
    pub error: u64,
    /// Not answered within their timeout.
    pub timeout: u64,
    /// Their connection was lost before the answer.
    pub connection_lost: u64,
    /// Dropped by the caller before the answer.
    pub cancelled: u64,
    /// Failed otherwise (the client was closed, a bad argument, a protocol
    /// error).
    pub other: u64,
}

impl RequestStats {
    /// Every request of this kind that ended.
    pub fn total(&self) -> u64 {
        self.ok + self.error + self.timeout + self.connection_lost + self.cancelled + self.other
    }
}

/// The event counters of one room, as counted by
/// [`Client::stats`](crate::Client::stats).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoomStats {
    /// The collection's name.
    pub collection: String,
    /// The room as it was joined: its id, or its name in quotes.
    pub room: String,
    /// Events put in a stream's buffer (summed over the room's streams).
    pub delivered: u64,
    /// Events dropped because an [`Overflow::Lag`](crate::Overflow::Lag)
    /// stream was full.
    pub lagged: u64,
    /// Events that reached a stream whose consumer was gone.
    pub dropped: u64,
}

/// What a client did so far: [`Client::stats`](crate::Client::stats), the
/// counters the `metrics` feature exports, as a plain value.
///
/// ```no_run
/// # async fn demo() -> Result<(), thingsdb_client::Error> {
/// use thingsdb_client::{Auth, Client};
/// let client = Client::connect("thingsdb://localhost:9200", Auth::password("admin", "pass")).await?;
/// client.query("1 + 1;").await?;
/// let s = client.stats();
/// assert_eq!(s.query.ok, 1);
/// println!("{} bytes out, {} reconnects", s.bytes_sent, s.reconnects);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Queries.
    pub query: RequestStats,
    /// Procedure calls.
    pub run: RequestStats,
    /// Events emitted.
    pub emit: RequestStats,
    /// Pings ([`Client::ping`](crate::Client::ping); keep-alive pings are
    /// not counted).
    pub ping: RequestStats,
    /// Authentications asked for with
    /// [`Client::authenticate`](crate::Client::authenticate) (those of
    /// each new connection are not counted).
    pub authenticate: RequestStats,
    /// Requests (keep-alive pings, joins and leaves included) sent and not
    /// answered yet.
    pub in_flight: usize,
    /// Connections made (the first included).
    pub connections: u64,
    /// Connections made again after the serving one was lost.
    pub reconnects: u64,
    /// Moves to another node because the serving one shut down.
    pub moves: u64,
    /// Open connections that broke or were closed by the node.
    pub connections_lost: u64,
    /// Bytes of packages received (headers included).
    pub bytes_received: u64,
    /// Bytes of packages sent (headers included).
    pub bytes_sent: u64,
    /// Each room joined so far, sorted by collection and room.
    pub rooms: Vec<RoomStats>,
}

// ---------------------------------------------------------------- rooms

/// The counters of one room, shared by its streams' sinks.
#[derive(Debug)]
pub(crate) struct RoomCounters {
    collection: String,
    room: String,
    delivered: AtomicU64,
    lagged: AtomicU64,
    dropped: AtomicU64,
    #[cfg(feature = "metrics")]
    metrics: [metrics::Counter; 3],
}

impl RoomCounters {
    fn new(collection: &str, room: &str) -> RoomCounters {
        RoomCounters {
            collection: collection.to_owned(),
            room: room.to_owned(),
            delivered: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            metrics: [
                metric::EVENTS_DELIVERED,
                metric::EVENTS_LAGGED,
                metric::EVENTS_DROPPED,
            ]
            .map(|name| {
                metrics::counter!(name, "collection" => collection.to_owned(), "room" => room.to_owned())
            }),
        }
    }

    /// An event went into a stream's buffer.
    pub(crate) fn delivered(&self) {
        self.delivered.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics[0].increment(1);
    }

    /// An event was dropped by a full `Lag` stream.
    pub(crate) fn lagged(&self) {
        self.lagged.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics[1].increment(1);
    }

    /// An event reached a stream whose consumer was gone.
    pub(crate) fn dropped(&self) {
        self.dropped.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics[2].increment(1);
    }

    fn stats(&self) -> RoomStats {
        RoomStats {
            collection: self.collection.clone(),
            room: self.room.clone(),
            delivered: self.delivered.load(Relaxed),
            lagged: self.lagged.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
        }
    }
}

// ------------------------------------------------------------- the metrics

#[cfg(feature = "metrics")]
struct Metrics {
    durations: [[std::sync::OnceLock<metrics::Histogram>; OUTCOMES]; KINDS],
    in_flight: metrics::Gauge,
    reconnects: metrics::Counter,
    moves: metrics::Counter,
    lost: metrics::Counter,
    bytes_in: metrics::Counter,
    bytes_out: metrics::Counter,
}

#[cfg(feature = "metrics")]
impl Metrics {
    fn new() -> Metrics {
        describe();
        Metrics {
            durations: Default::default(),
            in_flight: metrics::gauge!(metric::IN_FLIGHT),
            reconnects: metrics::counter!(metric::RECONNECTS),
            moves: metrics::counter!(metric::MOVES),
            lost: metrics::counter!(metric::CONNECTIONS_LOST),
            bytes_in: metrics::counter!(metric::BYTES_RECEIVED),
            bytes_out: metrics::counter!(metric::BYTES_SENT),
        }
    }

    fn duration(&self, kind: OpKind, outcome: Outcome) -> &metrics::Histogram {
        self.durations[kind as usize][outcome as usize].get_or_init(|| {
            metrics::histogram!(
                metric::REQUEST_DURATION,
                "kind" => kind.as_str(),
                "outcome" => outcome.as_str()
            )
        })
    }
}

/// The metrics' help texts and units, given to the recorder once per
/// client (a recorder keeps the last).
#[cfg(feature = "metrics")]
fn describe() {
    use metrics::Unit;
    metrics::describe_histogram!(
        metric::REQUEST_DURATION,
        Unit::Seconds,
        "ThingsDB requests, from being handed to the connection to their reply"
    );
    metrics::describe_gauge!(metric::IN_FLIGHT, "ThingsDB requests not answered yet");
    metrics::describe_counter!(metric::RECONNECTS, "connections made again after a loss");
    metrics::describe_counter!(
        metric::MOVES,
        "moves to another node because the serving one shut down"
    );
    metrics::describe_counter!(metric::CONNECTIONS_LOST, "connections that broke");
    metrics::describe_counter!(metric::EVENTS_DELIVERED, "room events put in a stream");
    metrics::describe_counter!(
        metric::EVENTS_LAGGED,
        "room events dropped by a full stream"
    );
    metrics::describe_counter!(metric::EVENTS_DROPPED, "room events whose stream was gone");
    metrics::describe_counter!(metric::BYTES_RECEIVED, Unit::Bytes, "bytes received");
    metrics::describe_counter!(metric::BYTES_SENT, Unit::Bytes, "bytes sent");
}

// -------------------------------------------------------------- observer

/// One client's counters, metric handles and what its spans need to know
/// (the pool, to name the node that answered). Fed by the hooks below.
pub(crate) struct Observer {
    /// Written by the tasks that await requests.
    requests: Padded<[[AtomicU64; OUTCOMES]; KINDS]>,
    /// Written by the connection task alone: a cache line of its own, so
    /// that counting bytes does not contend with counting requests.
    conn: Padded<ConnCounters>,
    /// A copy of the driver's pool (it only grows), to name nodes.
    pool: Mutex<Vec<Target>>,
    pool_len: AtomicUsize,
    rooms: Mutex<Vec<Arc<RoomCounters>>>,
    #[cfg(feature = "metrics")]
    metrics: Metrics,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer").finish_non_exhaustive()
    }
}

impl Default for Observer {
    fn default() -> Self {
        Observer {
            requests: Padded(Default::default()),
            conn: Padded(ConnCounters::default()),
            pool: Mutex::new(Vec::new()),
            pool_len: AtomicUsize::new(0),
            rooms: Mutex::new(Vec::new()),
            #[cfg(feature = "metrics")]
            metrics: Metrics::new(),
        }
    }
}

/// A value on cache lines of its own.
#[repr(align(128))]
struct Padded<T>(T);

impl<T> Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// What the connection task counts.
#[derive(Default)]
struct ConnCounters {
    reconnects: AtomicU64,
    moves: AtomicU64,
    lost: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `server.address` and `server.port` of a target.
fn address(t: &Target) -> (String, Option<u16>) {
    match t.host() {
        Some(h) => (h.to_owned(), t.port()),
        None => (t.to_string(), None),
    }
}

impl Observer {
    // ---------------------------------------------------------- requests

    /// A request starts: its span, and the time when something records it.
    pub(crate) fn request(&self, op: &Op<'_>, query_text: bool) -> RequestGuard<'_> {
        if !ON {
            return RequestGuard {
                obs: self,
                kind: op.kind,
                start: None,
                span: Span::none(),
                done: true,
            };
        }
        let span = info_span!(
            target: REQUESTS,
            "thingsdb.request",
            otel.name = %format_args!(
                "{} {}",
                op.kind.as_str(),
                if op.kind == OpKind::Run { op.text } else { op.scope }
            ),
            otel.kind = "client",
            otel.status_code = Empty,
            db.system.name = "thingsdb",
            db.namespace = op.scope,
            db.operation.name = op.kind.as_str(),
            db.stored_procedure.name = Empty,
            db.query.text = Empty,
            server.address = Empty,
            server.port = Empty,
            error.type = Empty,
            db.response.status_code = Empty,
            thingsdb.reply_time_us = Empty,
        );
        if !span.is_disabled() {
            match op.kind {
                OpKind::Run => {
                    span.record("db.stored_procedure.name", op.text);
                }
                OpKind::Query if query_text => {
                    span.record("db.query.text", op.text);
                }
                _ => {}
            }
        }
        let timed = !span.is_disabled() || cfg!(feature = "metrics");
        #[cfg(feature = "metrics")]
        self.metrics.in_flight.increment(1.0);
        RequestGuard {
            obs: self,
            kind: op.kind,
            start: timed.then(Instant::now),
            span,
            done: false,
        }
    }

    fn count(&self, kind: OpKind, outcome: Outcome) {
        self.requests[kind as usize][outcome as usize].fetch_add(1, Relaxed);
    }

    // ------------------------------------------------------------- bytes

    /// A package came in.
    pub(crate) fn received(&self, frame: &Frame) {
        if !ON {
            return;
        }
        let n = (HEADER_LEN + frame.payload.len()) as u64;
        self.conn.bytes_in.fetch_add(n, Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.bytes_in.increment(n);
    }

    /// A batch of packages goes out.
    pub(crate) fn sent(&self, bytes: usize) {
        if !ON {
            return;
        }
        self.conn.bytes_out.fetch_add(bytes as u64, Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.bytes_out.increment(bytes as u64);
    }

    // ------------------------------------------------------- connections

    /// The pool as the driver has it now (it only grows): cheap when it
    /// did not.
    pub(crate) fn sync_pool(&self, targets: &[Target]) {
        if ON && targets.len() > self.pool_len.load(Relaxed) {
            let mut pool = lock(&self.pool);
            pool.clear();
            pool.extend_from_slice(targets);
            self.pool_len.store(targets.len(), Relaxed);
        }
    }

    fn target(&self, index: usize) -> Option<Target> {
        lock(&self.pool).get(index).cloned()
    }

    /// The serving connection changed from pool entry `old` to `new`
    /// (`None`: none serves): counts moves and reconnects. `stopped` is why
    /// the client stopped, once it has.
    pub(crate) fn serving_changed(
        &self,
        old: Option<usize>,
        new: Option<usize>,
        stopped: Option<&Error>,
    ) {
        if !ON || stopped.is_some() {
            return;
        }
        match (old, new) {
            (Some(_), Some(_)) => {
                self.conn.moves.fetch_add(1, Relaxed);
                #[cfg(feature = "metrics")]
                self.metrics.moves.increment(1);
            }
            (None, Some(_)) => {
                self.conn.reconnects.fetch_add(1, Relaxed);
                #[cfg(feature = "metrics")]
                self.metrics.reconnects.increment(1);
            }
            (_, None) => {}
        }
    }

    /// The client stopped for good: closed, or reconnecting gave up.
    pub(crate) fn stopped(&self, why: &Error) {
        if ON {
            info!(target: LIFECYCLE, reason = %why, "stopped");
        }
    }

    /// One of the session's lifecycle events (as
    /// [`Client::connection_events`](crate::Client::connection_events)
    /// gives them): told at [`LIFECYCLE`], lost connections counted.
    pub(crate) fn event(&self, ev: &ConnectionEvent) {
        if !ON {
            return;
        }
        match ev {
            ConnectionEvent::Connected { target, node_id } => {
                info!(target: LIFECYCLE, node = %target, node_id, "connected");
            }
            ConnectionEvent::Moved { from, to, why } => {
                info!(target: LIFECYCLE, %from, %to, why = ?why, "moved");
            }
            ConnectionEvent::Lost { target, reason } => {
                self.conn.lost.fetch_add(1, Relaxed);
                #[cfg(feature = "metrics")]
                self.metrics.lost.increment(1);
                info!(
                    target: LIFECYCLE,
                    node = %target,
                    reason = ?reason.reason(),
                    detail = %reason,
                    "connection lost"
                );
            }
            ConnectionEvent::AuthFailed { target, error } => {
                info!(target: LIFECYCLE, node = %target, %error, "authentication failed");
            }
            // Told by `stopped`.
            ConnectionEvent::GaveUp { .. } | ConnectionEvent::Lagged(_) => {}
        }
    }

    /// The span of a connection attempt to pool entry `to` made by the
    /// driver: a `thingsdb.move` when another connection still serves
    /// (`from`), else a `thingsdb.reconnect`.
    pub(crate) fn attempt_span(
        &self,
        from: Option<usize>,
        to: usize,
        delay: std::time::Duration,
    ) -> Span {
        if !ON {
            return Span::none();
        }
        let to_node = || self.target(to).map(|t| t.to_string()).unwrap_or_default();
        match from {
            Some(from) => info_span!(
                target: LIFECYCLE,
                "thingsdb.move",
                from = %self.target(from).map(|t| t.to_string()).unwrap_or_default(),
                to = %to_node(),
            ),
            None => info_span!(
                target: LIFECYCLE,
                "thingsdb.reconnect",
                to = %to_node(),
                delay_ms = delay.as_millis() as u64,
            ),
        }
    }

    // ------------------------------------------------------------- rooms

    /// The counters of a room (shared by all its streams); `None` without
    /// the `observe` feature.
    pub(crate) fn room(&self, collection: &str, room: &str) -> Option<Arc<RoomCounters>> {
        if !ON {
            return None;
        }
        let mut rooms = lock(&self.rooms);
        if let Some(r) = rooms
            .iter()
            .find(|r| r.collection == collection && r.room == room)
        {
            return Some(r.clone());
        }
        let r = Arc::new(RoomCounters::new(collection, room));
        rooms.push(r.clone());
        Some(r)
    }

    // ------------------------------------------------------------- stats

    /// The counters now; `in_flight` and `connections` come from the
    /// driver's own.
    pub(crate) fn stats(&self, in_flight: usize, connections: u64) -> Stats {
        let kind = |k: OpKind| {
            let c = &self.requests[k as usize];
            let n = |o: Outcome| c[o as usize].load(Relaxed);
            RequestStats {
                ok: n(Outcome::Ok),
                error: n(Outcome::Error),
                timeout: n(Outcome::Timeout),
                connection_lost: n(Outcome::ConnectionLost),
                cancelled: n(Outcome::Cancelled),
                other: n(Outcome::Other),
            }
        };
        let mut rooms: Vec<RoomStats> = lock(&self.rooms).iter().map(|r| r.stats()).collect();
        rooms.sort_by(|a, b| (&a.collection, &a.room).cmp(&(&b.collection, &b.room)));
        Stats {
            query: kind(OpKind::Query),
            run: kind(OpKind::Run),
            emit: kind(OpKind::Emit),
            ping: kind(OpKind::Ping),
            authenticate: kind(OpKind::Auth),
            in_flight,
            connections,
            reconnects: self.conn.reconnects.load(Relaxed),
            moves: self.conn.moves.load(Relaxed),
            connections_lost: self.conn.lost.load(Relaxed),
            bytes_received: self.conn.bytes_in.load(Relaxed),
            bytes_sent: self.conn.bytes_out.load(Relaxed),
            rooms,
        }
    }
}

/// A request being timed; [`RequestGuard::finish`] records how it ended,
/// and dropping it unfinished records it as cancelled.
pub(crate) struct RequestGuard<'a> {
    obs: &'a Observer,
    kind: OpKind,
    span: Span,
    start: Option<Instant>,
    done: bool,
}

impl RequestGuard<'_> {
    /// The request ended with `r`.
    pub(crate) fn finish(mut self, r: &Result<Answer, Error>) {
        self.done = true;
        let outcome = Outcome::of(r);
        self.end(outcome);
        if self.span.is_disabled() {
            return;
        }
        if let Some(t) = r
            .as_ref()
            .ok()
            .and_then(|a| a.node)
            .and_then(|i| self.obs.target(i))
        {
            let (host, port) = address(&t);
            self.span.record("server.address", host);
            if let Some(p) = port {
                self.span.record("server.port", p);
            }
        }
        let error = match r {
            Ok(a) if outcome == Outcome::Error => ErrorReply::decode(&a.frame.payload)
                .ok()
                .map(|e| (e.code.name(), Some(e.code.code()))),
            Ok(_) => None,
            Err(Error::Thingsdb(e)) => Some((e.code.name(), Some(e.code.code()))),
            Err(_) => Some((outcome.as_str(), None)),
        };
        if let Some((name, code)) = error {
            self.span.record("error.type", name);
            self.span.record("otel.status_code", "ERROR");
            if let Some(code) = code {
                self.span.record("db.response.status_code", code);
            }
        }
    }

    fn end(&mut self, outcome: Outcome) {
        self.obs.count(self.kind, outcome);
        #[cfg(feature = "metrics")]
        self.obs.metrics.in_flight.decrement(1.0);
        if let Some(start) = self.start {
            let elapsed = start.elapsed();
            #[cfg(feature = "metrics")]
            self.obs
                .metrics
                .duration(self.kind, outcome)
                .record(elapsed.as_secs_f64());
            if !self.span.is_disabled() {
                self.span
                    .record("thingsdb.reply_time_us", elapsed.as_micros() as u64);
            }
        }
    }
}

impl Drop for RequestGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.end(Outcome::Cancelled);
            if !self.span.is_disabled() {
                self.span.record("error.type", Outcome::Cancelled.as_str());
            }
        }
    }
}

// ------------------------------------------------------- lifecycle spans

/// A connect to `target` (with its AUTH) in a `thingsdb.connect` span.
pub(crate) async fn traced_connect<T>(
    target: &Target,
    connect: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    use tracing::Instrument;
    if !ON {
        return connect.await;
    }
    let span = info_span!(
        target: LIFECYCLE,
        "thingsdb.connect",
        server.address = Empty,
        server.port = Empty,
        error.type = Empty,
    );
    if !span.is_disabled() {
        let (host, port) = address(target);
        span.record("server.address", host);
        if let Some(p) = port {
            span.record("server.port", p);
        }
    }
    let r = connect.instrument(span.clone()).await;
    if let Err(e) = &r {
        record_error(&span, e);
    }
    r
}

/// `fut` in `span`, boxed for the driver's set of connection attempts.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn in_span<T>(
    span: Span,
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> crate::rt::BoxFuture<T> {
    use tracing::Instrument;
    Box::pin(fut.instrument(span))
}

/// `fut` in `span`, boxed for the driver's set of connection attempts.
#[cfg(target_arch = "wasm32")]
pub(crate) fn in_span<T>(
    span: Span,
    fut: impl std::future::Future<Output = T> + 'static,
) -> crate::rt::BoxFuture<T> {
    use tracing::Instrument;
    Box::pin(fut.instrument(span))
}

/// AUTH on a fresh connection in a `thingsdb.authenticate` span.
pub(crate) async fn traced_auth(
    auth: impl std::future::Future<Output = Result<(), Error>>,
) -> Result<(), Error> {
    use tracing::Instrument;
    if !ON {
        return auth.await;
    }
    let span = info_span!(target: LIFECYCLE, "thingsdb.authenticate", error.type = Empty);
    let r = auth.instrument(span.clone()).await;
    if let Err(e) = &r {
        record_error(&span, e);
    }
    r
}

/// A join or leave of a room in a span named `name`.
pub(crate) fn room_span(leave: bool, scope: &str, room: &dyn std::fmt::Display) -> Span {
    if !ON {
        Span::none()
    } else if leave {
        info_span!(target: LIFECYCLE, "thingsdb.leave", db.namespace = scope, room = %room, error.type = Empty)
    } else {
        info_span!(target: LIFECYCLE, "thingsdb.join", db.namespace = scope, room = %room, error.type = Empty)
    }
}

/// Records `e` on a lifecycle span.
pub(crate) fn record_error(span: &Span, e: &Error) {
    if span.is_disabled() {
        return;
    }
    let name = match e {
        Error::Thingsdb(t) => t.code.name(),
        Error::Timeout(_) => "timeout",
        Error::ConnectionLost(_) => "connection_lost",
        Error::Closed => "closed",
        Error::Transport(_) => "transport",
        _ => "other",
    };
    span.record("error.type", name);
    info!(target: LIFECYCLE, parent: span, error = %e, "failed");
}

#[cfg(all(test, feature = "observe"))]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};

    fn answer(t: PackageType, payload: Bytes) -> Result<Answer, Error> {
        Ok(Answer {
            frame: Frame::new(t, 0, payload),
            node: Some(0),
        })
    }

    #[test]
    fn outcomes_of_replies_and_errors() {
        assert_eq!(
            Outcome::of(&answer(PackageType::Data, Bytes::new())),
            Outcome::Ok
        );
        let mut b = BytesMut::new();
        thingsdb_protocol::response::encode_error(
            &mut b,
            0,
            thingsdb_protocol::ErrorCode::Lookup,
            "x",
        )
        .unwrap();
        let payload = Bytes::copy_from_slice(&b[HEADER_LEN..]);
        assert_eq!(
            Outcome::of(&answer(PackageType::Error, payload)),
            Outcome::Error
        );
        assert_eq!(
            Outcome::of(&Err(Error::Timeout(std::time::Duration::ZERO))),
            Outcome::Timeout
        );
        assert_eq!(Outcome::of(&Err(Error::Closed)), Outcome::Other);
    }

    #[test]
    fn guards_count_outcomes_and_cancellations() {
        let obs = Observer::default();
        let op = Op {
            kind: OpKind::Run,
            scope: "//stuff",
            text: "p",
        };
        obs.request(&op, false)
            .finish(&answer(PackageType::Data, Bytes::new()));
        drop(obs.request(&op, false));
        obs.request(&op, false).finish(&Err(Error::Closed));
        let s = obs.stats(0, 1);
        assert_eq!(
            (s.run.ok, s.run.cancelled, s.run.other, s.run.total()),
            (1, 1, 1, 3)
        );
        assert_eq!(s.query.total(), 0);
    }

    #[test]
    fn pool_only_grows_and_rooms_are_shared() {
        let obs = Observer::default();
        let a: Target = "thingsdb://a:1".parse().unwrap();
        let b: Target = "thingsdb://b:2".parse().unwrap();
        obs.sync_pool(std::slice::from_ref(&a));
        obs.sync_pool(&[a.clone(), b.clone()]);
        obs.sync_pool(&[]);
        assert_eq!(obs.target(1), Some(b));
        let r1 = obs.room("stuff", "1").unwrap();
        let r2 = obs.room("stuff", "1").unwrap();
        r1.delivered();
        r2.lagged();
        obs.room("other", "\"chat\"").unwrap().dropped();
        let s = obs.stats(0, 1);
        assert_eq!(s.rooms.len(), 2);
        assert_eq!(
            (s.rooms[1].delivered, s.rooms[1].lagged, s.rooms[1].dropped),
            (1, 1, 0)
        );
        assert_eq!(s.rooms[0].dropped, 1);
    }
}
