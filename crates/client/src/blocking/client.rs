//! The blocking client handle and its request builders.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thingsdb_protocol::{request, Frame, Response};
use thingsdb_transport::Target;
use tokio::sync::oneshot;
use web_time::Instant;

use super::driver::Driver;
use crate::client::{expect_data, expect_ok};
use crate::config::{Auth, ClientBuilder, Config};
use crate::connection::{deadline_after, Command};
use crate::error::unexpected;
use crate::error::Error;
use crate::request::{as_raw, as_type, as_value, Core, HasDefaultScope, RequestKind};
use crate::scope::Scope;

/// A blocking connection to ThingsDB: cheap to clone, `Send + Sync`.
///
/// See the [module documentation](crate::blocking) for how it uses
/// threads. The connection is closed by [`Client::close`] or when the last
/// clone (room streams included) is dropped.
///
/// ```no_run
/// # fn demo() -> Result<(), thingsdb_client::Error> {
/// use thingsdb_client::{blocking::Client, Auth};
/// let client = Client::builder()
///     .target("thingsdb://localhost:9200")?
///     .auth(Auth::password("admin", "pass"))
///     .default_scope("//stuff")?
///     .connect_blocking()?;
/// let product = client.query("a * b;").var("a", &6).var("b", &7).send()?;
/// assert_eq!(product, rmpv::Value::from(42));
/// let n: i64 = client.run("add_one").arg(&41).decode()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    config: Arc<Config>,
}

struct Inner {
    driver: Arc<Driver>,
    next_stream_id: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.driver.shutdown();
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::Client")
            .field("targets", &self.config.targets)
            .field("auth", &self.config.auth)
            .field("default_scope", &self.config.default_scope)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Connects with these settings and returns a [blocking
    /// client](crate::blocking::Client): no async runtime needed. Tries
    /// every node of the pool once (from a random one with
    /// [`random_start`](ClientBuilder::random_start)); the first that
    /// authenticates serves.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), thingsdb_client::Error> {
    /// use thingsdb_client::{Auth, Client};
    /// let client = Client::builder()
    ///     .target("thingsdb://node1.local")?
    ///     .target("thingsdb://node2.local")?
    ///     .auth(Auth::token("Fai6NmH7QYxA6WLYPdtgcy"))
    ///     .connect_blocking()?;
    /// # Ok(()) }
    /// ```
    pub fn connect_blocking(self) -> Result<Client, Error> {
        let config = self.config;
        let n = config.targets.len();
        if n == 0 {
            return Err(Error::BadArgument("no target to connect to".into()));
        }
        let driver = Driver::connect(config)?;
        Ok(Client {
            config: driver.config.clone(),
            inner: Arc::new(Inner {
                driver,
                next_stream_id: AtomicU64::new(1),
            }),
        })
    }
}

impl HasDefaultScope for Client {
    fn default_scope(&self) -> &Scope {
        &self.config.default_scope
    }

    fn request_buffer(&self, capacity: usize) -> bytes::BytesMut {
        self.driver().shared.frames.take(capacity)
    }
}

impl Client {
    /// Connects to one target with the given credentials and default
    /// settings. For a pool of nodes or other settings use
    /// [`Client::builder`].
    pub fn connect(target: &str, auth: Auth) -> Result<Client, Error> {
        ClientBuilder::new()
            .target(target)?
            .auth(auth)
            .connect_blocking()
    }

    /// A builder for every setting; finish it with
    /// [`ClientBuilder::connect_blocking`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// The settings the client runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The default scope.
    pub fn default_scope(&self) -> &Scope {
        &self.config.default_scope
    }

    /// A handle on the same connection whose default scope is `scope`
    /// (see [`crate::Client::with_default_scope`]).
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

    /// Starts a query on the default scope; set a scope, vars and a timeout
    /// on the returned builder, then finish with [`Query::send`] (an
    /// [`rmpv::Value`]), [`Query::decode`] or [`Query::raw`].
    pub fn query<'a>(&'a self, code: &'a str) -> Query<'a> {
        Query {
            core: Core::new(self, RequestKind::Query, code),
        }
    }

    /// Starts a procedure call on the default scope; add arguments on the
    /// returned builder, then finish it like a [`Query`].
    pub fn run<'a>(&'a self, procedure: &'a str) -> Run<'a> {
        Run {
            core: Core::new(self, RequestKind::Run, procedure),
        }
    }

    /// Sends a PING and waits for the PONG.
    pub fn ping(&self) -> Result<(), Error> {
        let mut frame = BytesMut::with_capacity(thingsdb_protocol::HEADER_LEN);
        request::encode_ping(&mut frame, 0);
        match Response::decode(&self.call(frame, None, true)?)? {
            Response::Pong => Ok(()),
            other => Err(unexpected("PONG", &other)),
        }
    }

    /// Authenticates again with the configured credentials.
    pub fn authenticate(&self) -> Result<(), Error> {
        let mut frame = BytesMut::new();
        self.config.auth.encode(&mut frame, 0)?;
        expect_ok(&self.call(frame, None, true)?)
    }

    /// Waits for every request in flight to be answered, then closes the
    /// connection. Requests made after this fail with [`Error::Closed`].
    pub fn close(&self) -> Result<(), Error> {
        if self.driver().shared.dead.get().is_some() {
            return Ok(());
        }
        let (ack, mut rx) = oneshot::channel();
        let limit = Instant::now() + self.config.request_timeout;
        let _ = self
            .driver()
            .call(Command::Close(ack), &mut rx, Some(limit));
        Ok(())
    }

    /// The rooms this client has a live stream on, as (collection name,
    /// room id) pairs (see [`crate::Client::rooms`]).
    pub fn rooms(&self) -> Result<Vec<(String, u64)>, Error> {
        let (reply, mut rx) = oneshot::channel();
        self.driver().submit(Command::Rooms(reply));
        let keys = rx.try_recv().map_err(|_| self.gone())?;
        Ok(keys
            .into_iter()
            .map(|k| (k.collection.to_string(), k.id))
            .collect())
    }

    /// Whether the client is connected to a node now (a snapshot).
    pub fn is_connected(&self) -> bool {
        let s = &self.driver().shared;
        s.dead.get().is_none() && s.serving_index().is_some()
    }

    /// The pool entry the client is connected to now; `None` while it
    /// reconnects and once it has stopped.
    pub fn connection_info(&self) -> Option<Target> {
        let s = &self.driver().shared;
        if s.dead.get().is_some() {
            return None;
        }
        s.serving_target()
    }

    /// How many requests are sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.driver().shared.in_flight.load(Relaxed)
    }

    /// How many connections the client has made: 1 after connecting, one
    /// more after each reconnect.
    pub fn connections_made(&self) -> u64 {
        self.driver().shared.connections.load(Relaxed)
    }

    /// Whether the client has stopped for good; the reason when it has.
    pub fn closed_reason(&self) -> Option<String> {
        self.driver().shared.dead.get().map(|e| e.to_string())
    }

    /// How many threads the client runs: 0, or 1 once a room was joined
    /// (the event thread; see the [module documentation](crate::blocking)).
    pub fn threads(&self) -> usize {
        self.driver().event_threads()
    }

    /// Adds nodes to the pool, to connect to when the current node goes
    /// away. Targets already in the pool are not added twice.
    pub fn add_targets(&self, targets: Vec<Target>) {
        self.driver().add_targets(targets);
    }

    pub(crate) fn driver(&self) -> &Arc<Driver> {
        &self.inner.driver
    }

    pub(crate) fn next_stream_id(&self) -> u64 {
        self.inner.next_stream_id.fetch_add(1, Relaxed)
    }

    pub(crate) fn gone(&self) -> Error {
        self.driver().shared.gone()
    }

    /// Sends one encoded request and waits for its reply, within `timeout`
    /// or the configured request timeout.
    pub(crate) fn call(
        &self,
        frame: BytesMut,
        timeout: Option<Duration>,
        idempotent: bool,
    ) -> Result<Frame, Error> {
        if let Some(e) = self.driver().shared.dead.get() {
            return Err(e.clone());
        }
        let timeout = timeout.unwrap_or(self.config.request_timeout);
        let deadline = deadline_after(Instant::now(), timeout);
        let (cmd, mut rx) = Command::request(frame, deadline, timeout, idempotent);
        // The session times the request out; the extra second only
        // guards against a session that would not.
        match self
            .driver()
            .call(cmd, &mut rx, Some(deadline + Duration::from_secs(1)))
        {
            Some(r) => r.map(|a| a.frame),
            None if self.driver().shared.dead.get().is_some() => Err(self.gone()),
            None => Err(Error::Timeout(timeout)),
        }
    }
}

/// A query being built on a [blocking client](Client): `client.query(code)`,
/// then any of [`scope`](Query::scope), [`vars`](Query::vars),
/// [`var`](Query::var), [`timeout`](Query::timeout),
/// [`idempotent`](Query::idempotent), then [`send`](Query::send) for an
/// [`rmpv::Value`], [`decode`](Query::decode) into a Rust type, or
/// [`raw`](Query::raw) for the MessagePack bytes. The same builder as
/// [`crate::Query`], finished without `.await`.
///
/// ```no_run
/// # fn demo(client: thingsdb_client::blocking::Client) -> Result<(), thingsdb_client::Error> {
/// #[derive(serde::Serialize)]
/// struct Vars { a: i64, b: i64 }
/// let v: i64 = client.query("a * b;").scope("//stuff").vars(&Vars { a: 6, b: 7 }).decode()?;
/// assert_eq!(v, 42);
/// # Ok(()) }
/// ```
#[must_use = "a query does nothing until it is sent"]
pub struct Query<'a, V: ?Sized = ()> {
    core: Core<'a, V, Client>,
}

/// A procedure call being built on a [blocking client](Client):
/// `client.run(name)`, then arguments by position ([`args`](Run::args)
/// with a tuple, slice or `Vec`; [`arg`](Run::arg)) or by name
/// ([`args`](Run::args) with a struct or map; [`named`](Run::named)),
/// then [`send`](Run::send), [`decode`](Run::decode) or [`raw`](Run::raw).
///
/// ```no_run
/// # fn demo(client: thingsdb_client::blocking::Client) -> Result<(), thingsdb_client::Error> {
/// let a = client.run("add_one").arg(&41).send()?;
/// let b: i64 = client.run("add_one").named("x", &41).decode()?;
/// # Ok(()) }
/// ```
#[must_use = "a procedure call does nothing until it is sent"]
pub struct Run<'a, V: ?Sized = ()> {
    core: Core<'a, V, Client>,
}

/// Sends what a builder holds and decodes the DATA payload.
fn finish<V: Serialize + ?Sized, T>(
    mut core: Core<'_, V, Client>,
    decode: fn(Bytes) -> Result<T, Error>,
) -> Result<T, Error> {
    let frame = core.take_frame()?;
    decode(expect_data(core.client.call(
        frame,
        core.timeout,
        core.idempotent,
    )?)?)
}

/// The methods [`Query`] and [`Run`] share.
macro_rules! common {
    ($t:ident, $what:literal) => {
        impl<'a, V: Serialize + ?Sized> $t<'a, V> {
            #[doc = concat!("Runs the ", $what, " in this scope instead of the default one.")]
            pub fn scope(mut self, scope: &str) -> Self {
                self.core.set_scope(scope);
                self
            }

            /// Sets this request's timeout (instead of the client's).
            pub fn timeout(mut self, timeout: Duration) -> Self {
                self.core.timeout = Some(timeout);
                self
            }

            #[doc = concat!("Marks the ", $what, " safe to run twice: sent again after a lost")]
            /// connection (see [`crate::Query::idempotent`]).
            pub fn idempotent(mut self) -> Self {
                self.core.idempotent = true;
                self
            }

            #[doc = concat!("Sends the ", $what, " and waits; the result as an [`rmpv::Value`].")]
            pub fn send(self) -> Result<rmpv::Value, Error> {
                finish(self.core, as_value)
            }

            #[doc = concat!("Sends the ", $what, " and waits; the result deserialized into `T`.")]
            pub fn decode<T: DeserializeOwned>(self) -> Result<T, Error> {
                finish(self.core, as_type::<T>)
            }

            #[doc = concat!("Sends the ", $what, " and waits; the result as its MessagePack bytes.")]
            pub fn raw(self) -> Result<Bytes, Error> {
                finish(self.core, as_raw)
            }
        }
    };
}

common!(Query, "query");
common!(Run, "procedure call");

impl<'a, V: Serialize + ?Sized> Query<'a, V> {
    /// Sets every variable at once from a value that serializes to a map.
    pub fn vars<W: Serialize + ?Sized>(self, vars: &'a W) -> Query<'a, W> {
        Query {
            core: self.core.with_value(vars),
        }
    }

    /// Adds one variable. Cannot be combined with [`Query::vars`].
    pub fn var<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Self {
        self.core.push(Some(name), value);
        self
    }
}

impl<'a, V: Serialize + ?Sized> Run<'a, V> {
    /// Sets every argument at once: a value that serializes to an array
    /// (positional) or to a map (by name).
    pub fn args<W: Serialize + ?Sized>(self, args: &'a W) -> Run<'a, W> {
        Run {
            core: self.core.with_value(args),
        }
    }

    /// Adds the next positional argument.
    pub fn arg<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.core.push(None, value);
        self
    }

    /// Adds an argument by name.
    pub fn named<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Self {
        self.core.push(Some(name), value);
        self
    }
}
