//! Connection settings: targets, credentials, timeouts, reconnect policy.

use std::time::Duration;

#[cfg(not(target_arch = "wasm32"))]
use thingsdb_transport::TlsOptions;
use thingsdb_transport::{ConnectOptions, Target};

use crate::error::Error;
use crate::scope::Scope;

/// How the client authenticates: a user name and password, or a token.
/// `Debug` never shows the secret.
///
/// This is the protocol crate's [`Credentials`](thingsdb_protocol::Credentials),
/// the one type for what an AUTH request carries.
///
/// ```
/// use thingsdb_client::Auth;
/// let a = Auth::password("admin", "pass");
/// assert_eq!(format!("{a:?}"), r#"Password { user: "admin", password: "<redacted>" }"#);
/// assert_eq!(format!("{:?}", Auth::token("secret")), r#"Token("<redacted>")"#);
/// ```
pub type Auth = thingsdb_protocol::Credentials;

/// How the client reconnects after losing its connection: exponential
/// backoff with jitter, between `initial_delay` and `max_delay`, for at most
/// `max_attempts` attempts in a row (`None`: forever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Whether to reconnect at all. When false, a lost connection closes the
    /// client: every later request fails with [`Error::ConnectionLost`].
    pub enabled: bool,
    /// Delay before the second attempt (the first is immediate).
    pub initial_delay: Duration,
    /// The delay never grows past this.
    pub max_delay: Duration,
    /// Give up after this many failed attempts in a row.
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            enabled: true,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// Never reconnect.
    pub fn disabled() -> Self {
        ReconnectPolicy {
            enabled: false,
            ..ReconnectPolicy::default()
        }
    }

    /// The delay before attempt `n` (0-based; attempt 0 has none), with
    /// "full jitter": a random duration up to the exponential bound.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, |max| rand::random_range(0..=max))
    }

    /// [`ReconnectPolicy::delay`] with the jitter from `random`, which
    /// gives a number in `0..=max` nanoseconds.
    pub(crate) fn delay_with(&self, attempt: u32, random: impl FnOnce(u64) -> u64) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let exp = self
            .initial_delay
            .saturating_mul(1u32 << (attempt - 1).min(20))
            .min(self.max_delay);
        let nanos = exp.as_nanos().min(u128::from(u64::MAX)) as u64;
        // Full jitter, but never below half the bound, so a crowd of
        // clients spreads out without hammering a node that just came back.
        let half = nanos / 2;
        Duration::from_nanos(half + random(nanos - half).min(nanos - half))
    }
}

/// Everything a client needs to connect; built by [`ClientBuilder`].
#[derive(Clone, Debug)]
pub struct Config {
    /// The pool of nodes to connect to, tried in order.
    pub targets: Vec<Target>,
    /// Credentials.
    pub auth: Auth,
    /// The scope used when a request names none: `@thingsdb` (`@t`)
    /// unless [`ClientBuilder::default_scope`] set another.
    pub default_scope: Scope,
    /// How long a request may take, waiting for a connection included.
    pub request_timeout: Duration,
    /// Transport options: connect timeout, TLS, size limits.
    pub connect: ConnectOptions,
    /// Interval of keep-alive pings; `None` disables them.
    pub keepalive: Option<Duration>,
    /// Reconnect behaviour.
    pub reconnect: ReconnectPolicy,
    /// Capacity of each room's and each status stream's event buffer.
    pub event_buffer: usize,
    /// Whether to add the cluster's other nodes to the pool
    /// ([`ClientBuilder::discover_nodes`], [`crate::discovery`]).
    pub discover_nodes: bool,
    /// Whether the first connection starts at a random node of the pool
    /// rather than the first ([`ClientBuilder::random_start`]).
    pub random_start: bool,
    /// How many times a request is sent at most
    /// ([`ClientBuilder::request_attempts`]).
    pub request_attempts: u32,
    /// How discovery picks learnt nodes' WebSocket ports
    /// ([`ClientBuilder::discover_ws_port`]).
    pub ws_port: crate::discovery::WsPort,
    /// Whether request spans carry the code of a query as
    /// `db.query.text` ([`ClientBuilder::trace_query_text`]).
    pub trace_query_text: bool,
    /// How requests are spread over the nodes ([`ClientBuilder::balance`]).
    pub balance: crate::Balance,
}

/// Builds a [`Client`](crate::Client).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use thingsdb_client::{Auth, Client};
/// use thingsdb_testkit::TestNode;
/// // Two in-process nodes; or "thingsdb://node1.local", "thingsdb://node2.local".
/// let (node1, node2) = (TestNode::start().await?, TestNode::start().await?);
/// let client = Client::builder()
///     .target(&node1.thingsdb_url())?
///     .target(&node2.thingsdb_url())?
///     .auth(Auth::password("admin", "pass"))
///     .default_scope("//stuff")?
///     .request_timeout(Duration::from_secs(10))
///     .connect()
///     .await?;
/// assert_eq!(client.query("6 * 7;").await?, thingsdb_client::Value::from(42));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    pub(crate) config: Config,
    /// Whether [`ClientBuilder::auth`] was called: until then `config.auth`
    /// is an empty token that [`ClientBuilder::connect`] refuses to send.
    auth_given: bool,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            auth_given: false,
            config: Config {
                targets: Vec::new(),
                // Never sent: `connect` wants credentials set with `auth`.
                auth: Auth::token(""),
                default_scope: Scope::thingsdb(),
                request_timeout: Duration::from_secs(60),
                connect: ConnectOptions::default(),
                keepalive: Some(Duration::from_secs(30)),
                reconnect: ReconnectPolicy::default(),
                event_buffer: 1024,
                discover_nodes: false,
                random_start: false,
                request_attempts: 10,
                ws_port: crate::discovery::WsPort::SameAsSeed,
                trace_query_text: false,
                balance: crate::Balance::OneNode,
            },
        }
    }
}

impl ClientBuilder {
    /// A builder with defaults: scope `@thingsdb` (`@t`), 60 s request
    /// timeout, 30 s keep-alive, reconnect on, and no credentials: give
    /// them with [`ClientBuilder::auth`] (a connector does not guess them;
    /// [`connect`](ClientBuilder::connect) without them is an error).
    pub fn new() -> Self {
        ClientBuilder::default()
    }

    /// Adds a node to the pool, from any target string the transport
    /// parses (`host:port`, `thingsdb://`, `thingsdbs://`, `ws://`,
    /// `wss://`, `unix:`).
    pub fn target(mut self, target: &str) -> Result<Self, Error> {
        let t = Target::parse(target).map_err(|e| Error::BadArgument(e.to_string()))?;
        self.config.targets.push(t);
        Ok(self)
    }

    /// Adds an already parsed target to the pool.
    pub fn target_parsed(mut self, target: Target) -> Self {
        self.config.targets.push(target);
        self
    }

    /// Sets the credentials: a user name and password
    /// ([`Auth::password`]) or a token ([`Auth::token`]). Required: there
    /// is no default user.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.config.auth = auth;
        self.auth_given = true;
        self
    }

    /// Sets the scope of requests that name none: `@thingsdb` (`@t`)
    /// unless set. Any scope a node parses: `//stuff` or `@:stuff` for a
    /// collection, `@thingsdb`, `@node`, `@node:1`.
    pub fn default_scope(mut self, scope: &str) -> Result<Self, Error> {
        self.config.default_scope = Scope::parse(scope)?;
        Ok(self)
    }

    /// Sets the request timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// Sets the connect timeout (per attempt, TLS and WebSocket handshakes
    /// included).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect.connect_timeout = timeout;
        self
    }

    /// Sets the TLS options for `thingsdbs://` and `wss://` targets. (Not
    /// in a browser, which does TLS itself.)
    #[cfg(not(target_arch = "wasm32"))]
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.config.connect.tls = tls;
        self
    }

    /// Sets all transport options at once.
    pub fn connect_options(mut self, options: ConnectOptions) -> Self {
        self.config.connect = options;
        self
    }

    /// Sets the keep-alive ping interval; `None` turns keep-alive off. A
    /// peer that does not answer a ping within one interval is taken as
    /// gone and the connection is re-made.
    pub fn keepalive(mut self, interval: Option<Duration>) -> Self {
        // At least 10 ms, at most a day: an interval of zero cannot tick and
        // a huge one cannot be added to a point in time.
        self.config.keepalive =
            interval.map(|d| d.clamp(Duration::from_millis(10), Duration::from_secs(86_400)));
        self
    }

    /// Sets how many times a request is sent at most (default 10; at least
    /// 1, which turns resending off). A request is sent again, within its
    /// own timeout and after a back-off of 100 ms doubling up to 1 s, when
    /// it provably did not run: the node answered NODE_ERROR (-51: not
    /// ready, shutting down, no node to take a change), or the connection
    /// went before the request was written. A request marked
    /// [`idempotent`](crate::Query::idempotent) is also sent again when the
    /// connection went after it was written. A request that fails after
    /// more than one attempt fails with [`Error::Retried`](crate::Error::Retried).
    ///
    /// ```
    /// let builder = thingsdb_client::Client::builder().request_attempts(3);
    /// assert_eq!(builder.config().request_attempts, 3);
    /// ```
    pub fn request_attempts(mut self, attempts: u32) -> Self {
        self.config.request_attempts = attempts.max(1);
        self
    }

    /// Sets the reconnect policy.
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.config.reconnect = policy;
        self
    }

    /// Sets how many events each room or node-event stream buffers (1 to
    /// 1 048 576; default 1024). When a buffer is full, the stream's
    /// [`Overflow`](crate::Overflow) policy applies: wait for the consumer,
    /// or drop and report the count.
    pub fn event_buffer(mut self, capacity: usize) -> Self {
        self.config.event_buffer = capacity.clamp(1, 1 << 20);
        self
    }

    /// Whether the first connection tries the pool from a random node
    /// rather than from the first target (default: off). The others are
    /// then tried in pool order, wrapping around, until one answers. Many
    /// clients given the same pool spread over the cluster's nodes instead
    /// of all using the first.
    ///
    /// Reconnects are unchanged: they go on from the node that was lost.
    /// With [cluster discovery](ClientBuilder::discover_nodes) on, the
    /// node reached is the seed that the other nodes' entries are made
    /// after.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use thingsdb_client::{Auth, Client};
    /// use thingsdb_testkit::TestNode;
    /// // Three in-process nodes; or "thingsdb://node1.local", ...
    /// let cluster = TestNode::builder().start_cluster(3).await?;
    /// let client = Client::builder()
    ///     .target(&cluster.node(0).thingsdb_url())?
    ///     .target(&cluster.node(1).thingsdb_url())?
    ///     .target(&cluster.node(2).thingsdb_url())?
    ///     .auth(Auth::password("admin", "pass"))
    ///     .random_start(true)
    ///     .connect()
    ///     .await?;
    /// println!("connected to {:?}", client.connection_info());
    /// # Ok(()) }
    /// ```
    pub fn random_start(mut self, on: bool) -> Self {
        self.config.random_start = on;
        self
    }

    /// Whether each query's span (see [`observe`](crate::observe)) carries
    /// its code as `db.query.text`. Off by default: code may carry secrets
    /// (pass them as variables, which never go into a span).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), thingsdb_client::Error> {
    /// use thingsdb_client::{Auth, Client};
    /// let client = Client::builder()
    ///     .target("thingsdb://localhost:9200")?
    ///     .auth(Auth::password("admin", "pass"))
    ///     .trace_query_text(true)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn trace_query_text(mut self, on: bool) -> Self {
        self.config.trace_query_text = on;
        self
    }

    /// How requests are spread over the nodes of the pool (and those
    /// discovery learns): [`Balance::OneNode`](crate::Balance::OneNode) by
    /// default (one connection; the other nodes are for failover), or a
    /// connection to every node with each request sent by
    /// [`Balance::FewestInFlight`](crate::Balance::FewestInFlight) or
    /// [`Balance::RoundRobin`](crate::Balance::RoundRobin). See
    /// [`balance`](crate::balance) for what a program can rely on when
    /// its requests run on different nodes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use thingsdb_client::{Auth, Balance, Client};
    /// use thingsdb_testkit::TestNode;
    /// // Two in-process nodes; or "thingsdb://node1.local", "thingsdb://node2.local".
    /// let cluster = TestNode::builder().start_cluster(2).await?;
    /// let client = Client::builder()
    ///     .target(&cluster.node(0).thingsdb_url())?
    ///     .target(&cluster.node(1).thingsdb_url())?
    ///     .auth(Auth::password("admin", "pass"))
    ///     .balance(Balance::FewestInFlight)
    ///     .connect()
    ///     .await?;
    /// assert_eq!(client.nodes().len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn balance(mut self, balance: crate::Balance) -> Self {
        self.config.balance = balance;
        self
    }

    /// The configuration built so far (its `auth` is an empty token until
    /// [`ClientBuilder::auth`] is called).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Connects to the first node of the pool that answers, authenticates,
    /// and returns the client.
    ///
    /// Without [`ClientBuilder::auth`] this is an [`Error::BadArgument`]
    /// that says so, before anything is sent:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), thingsdb_client::Error> {
    /// use thingsdb_client::{Client, Error};
    /// let e = Client::builder().target("localhost:9200")?.connect().await.unwrap_err();
    /// assert!(matches!(e, Error::BadArgument(_)));
    /// assert!(e.to_string().contains("no credentials"));
    /// # Ok(()) }
    /// ```
    pub async fn connect(self) -> Result<crate::Client, Error> {
        if !self.auth_given {
            return Err(Error::BadArgument(
                "no credentials: call ClientBuilder::auth(Auth::password(user, password)) or \
                 auth(Auth::token(token)) before connect()"
                    .into(),
            ));
        }
        crate::discovery::connect(self.config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..ReconnectPolicy::default()
        };
        assert_eq!(p.delay(0), Duration::ZERO);
        for attempt in 1..40 {
            let bound = Duration::from_millis(100)
                .saturating_mul(1 << (attempt - 1).min(20))
                .min(Duration::from_secs(1));
            let d = p.delay(attempt);
            assert!(
                d <= bound && d >= bound / 2,
                "{attempt}: {d:?} vs {bound:?}"
            );
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[tokio::test]
    async fn connect_without_credentials_is_an_error() {
        // A target that is never dialled: the check comes first.
        let e = ClientBuilder::new()
            .target("127.0.0.1:1")
            .unwrap()
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::BadArgument(m) if m.starts_with("no credentials")),
            "{e}"
        );
        assert!(!ClientBuilder::new().auth_given);
        assert!(ClientBuilder::new().auth(Auth::token("t")).auth_given);
    }

    #[test]
    fn builder_refuses_bad_targets_and_scopes() {
        assert!(ClientBuilder::new().target("http://x").is_err());
        assert!(ClientBuilder::new().default_scope("stuff").is_err());
    }
}
