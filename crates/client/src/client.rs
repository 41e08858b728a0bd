//! The client handle.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thingsdb_protocol::{request, Frame, PackageType, Response};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Auth, ClientBuilder, Config};
use crate::connection::{driver, handshake, Command, Input, Shared};
use crate::error::Error;
use crate::events::{event_channel, Overflow};
use crate::request::{Query, Run};
use crate::scope::Scope;
use thingsdb_transport::Target;

/// How many commands may wait for the connection task before callers wait.
const COMMAND_QUEUE: usize = 4096;

/// A connection to ThingsDB: cheap to clone, `Send + Sync`, usable from
/// many tasks at once.
///
/// Requests from every clone are pipelined on one connection and matched to
/// their replies by id; one task owns the socket. The connection is closed
/// when [`Client::close`] is called or when the last clone (room streams
/// included) is dropped.
///
/// ```no_run
/// # async fn demo() -> Result<(), thingsdb_client::Error> {
/// use thingsdb_client::{Auth, Client};
/// let client = Client::connect("thingsdb://localhost:9200", Auth::password("admin", "pass")).await?;
/// let two: i64 = client.query("1 + 1;").decode().await?;
/// let product = client.query("a * b;").scope("//stuff").var("a", &6).var("b", &7).await?;
/// assert_eq!(product, rmpv::Value::from(42));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    cmd_tx: mpsc::Sender<Input>,
    config: Arc<Config>,
    shared: Arc<Shared>,
    next_stream_id: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("targets", &self.inner.config.targets)
            .field("auth", &self.inner.config.auth)
            .field("default_scope", &self.inner.config.default_scope)
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
        let (index, first) = handshake::connect_pool(&config, 0).await?;
        let config = Arc::new(config);
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let shared = Arc::new(Shared::default());
        crate::rt::spawn(driver::run(
            config.clone(),
            cmd_rx,
            shared.clone(),
            index,
            first,
        ));
        Ok(Client {
            inner: Arc::new(Inner {
                cmd_tx,
                config,
                shared,
                next_stream_id: std::sync::atomic::AtomicU64::new(1),
            }),
        })
    }

    /// The settings the client runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The default scope.
    pub fn default_scope(&self) -> &Scope {
        &self.inner.config.default_scope
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
        match Response::decode(&self.call(frame, None).await?)? {
            Response::Pong => Ok(()),
            other => Err(unexpected("PONG", &other)),
        }
    }

    /// Authenticates again with the configured credentials (for example
    /// after they were changed on the node). The connection stays open if
    /// the node refuses them, and the error is returned.
    pub async fn authenticate(&self) -> Result<(), Error> {
        let mut frame = BytesMut::new();
        self.inner.config.auth.encode(&mut frame, 0)?;
        expect_ok(&self.call(frame, None).await?)
    }

    /// Waits for every request in flight to be answered, then closes the
    /// connection. Requests made after this fail with [`Error::Closed`].
    pub async fn close(&self) -> Result<(), Error> {
        let (ack_tx, ack_rx) = oneshot::channel();
        if self
            .inner
            .cmd_tx
            .send(Input::Cmd(Command::Close(ack_tx)))
            .await
            .is_err()
        {
            return Ok(()); // already gone
        }
        let _ = ack_rx.await;
        Ok(())
    }

    /// A stream of node events: NODE_STATUS and WARN packages. Several may
    /// be open at once; each gets every event. These streams never slow the
    /// connection: a consumer that falls behind sees
    /// [`NodeEvent::Lagged`](crate::NodeEvent::Lagged).
    pub async fn node_events(&self) -> Result<crate::node_events::NodeEvents, Error> {
        let (sink, rx) = event_channel(
            self.next_stream_id(),
            self.inner.config.event_buffer,
            Overflow::Lag,
        );
        self.command(Command::NodeEvents(Box::new(sink))).await?;
        Ok(crate::node_events::NodeEvents::new(rx))
    }

    /// How many requests are sent and not yet answered (keep-alive pings
    /// included). A diagnostic: it lags the connection task by a moment.
    pub fn in_flight(&self) -> usize {
        self.inner
            .shared
            .in_flight
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many connections the client has made: 1 after connecting, one
    /// more after each reconnect.
    pub fn connections_made(&self) -> u64 {
        self.inner
            .shared
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the client has stopped for good (closed, or reconnecting
    /// gave up); the reason when it has.
    pub fn closed_reason(&self) -> Option<String> {
        self.inner.shared.dead.get().map(|e| e.to_string())
    }

    /// Adds nodes to the pool, to connect to when the current node goes
    /// away (for example nodes learned from the cluster). Targets already
    /// in the pool are not added twice.
    pub async fn add_targets(&self, targets: Vec<Target>) -> Result<(), Error> {
        self.inner
            .cmd_tx
            .send(Input::AddTargets(targets))
            .await
            .map_err(|_| self.gone())
    }

    pub(crate) fn next_stream_id(&self) -> u64 {
        self.inner
            .next_stream_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues a command for the connection task.
    pub(crate) async fn command(&self, cmd: Command) -> Result<(), Error> {
        self.inner
            .cmd_tx
            .send(Input::Cmd(cmd))
            .await
            .map_err(|_| self.gone())
    }

    /// Queues a command without waiting (used from `Drop`).
    pub(crate) fn try_command(&self, cmd: Command) {
        if let Err(mpsc::error::TrySendError::Full(cmd)) =
            self.inner.cmd_tx.try_send(Input::Cmd(cmd))
        {
            let tx = self.inner.cmd_tx.clone();
            crate::rt::try_spawn(async move {
                let _ = tx.send(cmd).await;
            });
        }
    }

    fn gone(&self) -> Error {
        self.inner
            .shared
            .dead
            .get()
            .cloned()
            .unwrap_or(Error::Closed)
    }

    /// Sends one encoded request (id filled in by the connection task) and
    /// waits for its reply, within `timeout` or the configured request
    /// timeout. Dropping the future cancels the request: if it was not sent
    /// yet it never is, and a late reply is dropped.
    pub(crate) async fn call(
        &self,
        frame: BytesMut,
        timeout: Option<Duration>,
    ) -> Result<Frame, Error> {
        let timeout = timeout.unwrap_or(self.inner.config.request_timeout);
        let now = crate::rt::now();
        // A timeout too large to add is as good as none (a year).
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        let (reply, rx) = oneshot::channel();
        let cmd = Input::Cmd(Command::Request {
            frame,
            reply,
            deadline,
            timeout,
        });
        // The connection task times the request out; the caller only waits
        // itself when the command queue is full.
        match self.inner.cmd_tx.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                let send = crate::rt::timeout_at(Some(deadline), self.inner.cmd_tx.send(cmd));
                match Box::pin(send).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(self.gone()),
                    Err(_) => return Err(Error::Timeout(timeout)),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(self.gone()),
        }
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(self.gone()),
        }
    }
}

pub(crate) fn unexpected(expected: &'static str, got: &Response) -> Error {
    let got = match got {
        Response::Pong => PackageType::Pong,
        Response::Ok => PackageType::Ok,
        Response::Data(_) => PackageType::Data,
        Response::Error(_) => PackageType::Error,
    };
    Error::Protocol(thingsdb_protocol::Error::UnexpectedPackageType { expected, got })
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
pub(crate) struct WeakClient(std::sync::Weak<Inner>);

impl WeakClient {
    /// The client, while any handle of it is alive.
    pub(crate) fn upgrade(&self) -> Option<Client> {
        self.0.upgrade().map(|inner| Client { inner })
    }
}

impl Client {
    /// A handle that does not keep the connection open.
    pub(crate) fn downgrade(&self) -> WeakClient {
        WeakClient(Arc::downgrade(&self.inner))
    }
}
