//! The [`Module`] runtime: reads the node's packages, runs the handler,
//! writes the answers.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use thingsdb_protocol::module::{self, ToModule};
use thingsdb_protocol::{Decoder, Frame, PackageType, MAX_PAYLOAD};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::error::{Error, RunError};
use crate::handler::Handler;

/// How long a request may run unless [`Module::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long requests in flight may still run after a shutdown begins,
/// unless [`Module::shutdown_grace`] says otherwise.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Chunks of input buffered between the reader and the runtime.
const INPUT_QUEUE: usize = 16;

/// Bytes read from the input at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Why [`Module::run`] returned without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stopped {
    /// The node closed the module's input (stdin EOF).
    InputClosed,
    /// A shutdown was asked for: SIGTERM (the node stopping, restarting
    /// or deleting the module) or Ctrl-C for [`Module::run`], the
    /// `shutdown` future for [`Module::run_with`].
    Shutdown,
}

/// A module process: a [`Handler`] and the options it runs with.
///
/// [`Module::run`] speaks the module protocol on stdin and stdout until the
/// node closes stdin or sends SIGTERM:
///
/// - MODULE_CONF is decoded into [`Handler::Config`] and given to
///   [`Handler::configure`]; the answer is MODULE_CONF_OK or
///   MODULE_CONF_ERR (the reason is logged, as the node logs only that
///   the configuration failed);
/// - each MODULE_REQ runs [`Handler::handle`] in a task of its own, so
///   requests run concurrently and are answered as they finish (MODULE_RES,
///   or MODULE_ERR with the error's code); a request that does not decode
///   into [`Handler::Request`] is answered with `bad_data`, one that runs
///   past its timeout with `cancelled`, a handler that panics with
///   `operation`;
/// - a MODULE_REQ reusing the id of a request still running means the node
///   gave up on the older one: that one is dropped unanswered (an answer
///   would be taken for the new request's);
/// - packages of other types are logged and ignored; a stream that cannot
///   be read any more (bad check byte, length over
///   [`Module::max_payload`]) ends the module with [`RunError::Protocol`];
/// - on shutdown and at the end of input, requests in flight get
///   [`Module::shutdown_grace`] to finish and are then answered with
///   `cancelled`; requests that come meanwhile are answered with
///   `cancelled` at once.
///
/// Log lines go through `tracing`; install a subscriber that writes to
/// stderr (see [`init_logging`](crate::init_logging)): the node copies the
/// module's stderr into its own log, while stdout carries only packages.
///
/// ```no_run
/// # use thingsdb_module::{Error, Handler};
/// # struct Echo;
/// # impl Handler for Echo {
/// #     type Config = serde::de::IgnoredAny;
/// #     type Request = rmpv::Value;
/// #     type Response = rmpv::Value;
/// #     async fn configure(&self, _: Self::Config) -> Result<(), Error> { Ok(()) }
/// #     async fn handle(&self, r: rmpv::Value) -> Result<rmpv::Value, Error> { Ok(r) }
/// # }
/// use std::process::ExitCode;
/// use std::time::Duration;
/// use thingsdb_module::Module;
///
/// #[tokio::main]
/// async fn main() -> ExitCode {
///     let _ = thingsdb_module::init_logging();
///     match Module::new(Echo).timeout(Duration::from_secs(10)).run().await {
///         Ok(_) => ExitCode::SUCCESS,
///         Err(e) => {
///             tracing::error!("module stopped: {e}");
///             ExitCode::FAILURE
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Module<H> {
    handler: Arc<H>,
    timeout: Duration,
    shutdown_grace: Duration,
    max_payload: u32,
}

impl<H: Handler> Module<H> {
    /// A module answering with `handler`, with the default options.
    pub fn new(handler: H) -> Self {
        Module {
            handler: Arc::new(handler),
            timeout: DEFAULT_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_payload: MAX_PAYLOAD,
        }
    }

    /// How long a request (and a configuration) may run; a handler may
    /// choose another time per request with [`Handler::timeout`]. A node
    /// itself never times a module out, so a module should. Default
    /// [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long requests in flight may still finish once a shutdown
    /// begins or the input ends. Default [`DEFAULT_SHUTDOWN_GRACE`].
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// The largest package payload accepted from the node, in bytes;
    /// a longer one ends the module with [`RunError::Protocol`]. Default
    /// the node's own limit, 1 GiB (memory follows the bytes that really
    /// arrive, not the length a header claims).
    pub fn max_payload(mut self, max_payload: u32) -> Self {
        self.max_payload = max_payload;
        self
    }

    /// The handler.
    pub fn handler(&self) -> &Arc<H> {
        &self.handler
    }

    /// Runs the module on stdin and stdout until stdin ends or SIGTERM (or
    /// Ctrl-C) arrives; must be called inside a Tokio runtime.
    ///
    /// Stdin is read on a thread of its own, so that a shutdown never
    /// waits for a read the node may never complete.
    pub async fn run(self) -> Result<Stopped, RunError> {
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        std::thread::Builder::new()
            .name("thingsdb-module-stdin".into())
            .spawn(move || read_stdin(&tx))
            .map_err(RunError::Input)?;
        self.run_inner(rx, tokio::io::stdout(), shutdown_signal())
            .await
    }

    /// Runs the module on any byte streams until `input` ends or
    /// `shutdown` completes: [`Module::run`] without the process around
    /// it, for tests and for modules that talk to their node some other
    /// way.
    ///
    /// ```
    /// # use thingsdb_module::{Error, Handler};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type Config = serde::de::IgnoredAny;
    /// #     type Request = rmpv::Value;
    /// #     type Response = rmpv::Value;
    /// #     async fn configure(&self, _: Self::Config) -> Result<(), Error> { Ok(()) }
    /// #     async fn handle(&self, r: rmpv::Value) -> Result<rmpv::Value, Error> { Ok(r) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use thingsdb_module::{Module, Stopped};
    /// use thingsdb_protocol::module::{self, FromModule};
    /// use thingsdb_protocol::Decoder;
    ///
    /// let mut input = bytes::BytesMut::new();
    /// module::encode_request(&mut input, 1, &[0x81, 0xa1, b'a', 0x01]).unwrap();
    /// let mut output = Vec::new();
    /// let input = std::io::Cursor::new(input.freeze());
    /// let stopped = Module::new(Echo)
    ///     .run_with(input, &mut output, std::future::pending())
    ///     .await
    ///     .unwrap();
    /// assert_eq!(stopped, Stopped::InputClosed);
    ///
    /// let mut d = Decoder::new();
    /// d.feed(&output);
    /// let reply = d.next_frame().unwrap().unwrap();
    /// assert_eq!(reply.id, 1);
    /// assert!(matches!(FromModule::decode(&reply).unwrap(), FromModule::Response(_)));
    /// # }
    /// ```
    pub async fn run_with<R, W, S>(
        self,
        input: R,
        output: W,
        shutdown: S,
    ) -> Result<Stopped, RunError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin,
        S: Future<Output = ()>,
    {
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let reader = tokio::spawn(read_async(input, tx));
        let r = self.run_inner(rx, output, shutdown).await;
        reader.abort();
        r
    }

    async fn run_inner<W, S>(
        self,
        input: mpsc::Receiver<Input>,
        output: W,
        shutdown: S,
    ) -> Result<Stopped, RunError>
    where
        W: AsyncWrite + Unpin,
        S: Future<Output = ()>,
    {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let mut rt = Runtime {
            opts: Options {
                timeout: self.timeout,
                grace: self.shutdown_grace,
            },
            handler: self.handler,
            decoder: Decoder::with_max_payload(self.max_payload),
            output,
            out_failed: None,
            in_flight: HashMap::new(),
            next_gen: 0,
            conf_running: None,
            conf_queue: VecDeque::new(),
            done_tx,
            draining: None,
        };
        let r = rt.run(input, done_rx, shutdown).await;
        rt.abort_all();
        r
    }
}

/// One chunk of the node's output, or its end.
#[derive(Debug)]
enum Input {
    Data(Bytes),
    Eof,
    Failed(io::Error),
}

fn read_stdin(tx: &mpsc::Sender<Input>) {
    use std::io::Read;
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let msg = match stdin.read(&mut buf) {
            Ok(0) => Input::Eof,
            Ok(n) => Input::Data(Bytes::copy_from_slice(&buf[..n])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Input::Failed(e),
        };
        let last = !matches!(msg, Input::Data(_));
        if tx.blocking_send(msg).is_err() || last {
            return;
        }
    }
}

async fn read_async<R: AsyncRead + Unpin>(mut input: R, tx: mpsc::Sender<Input>) {
    loop {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let msg = match input.read_buf(&mut buf).await {
            Ok(0) => Input::Eof,
            Ok(_) => Input::Data(buf.freeze()),
            Err(e) => Input::Failed(e),
        };
        let last = !matches!(msg, Input::Data(_));
        if tx.send(msg).await.is_err() || last {
            return;
        }
    }
}

/// Completes on SIGTERM or Ctrl-C (SIGINT); never, if neither can be
/// listened for (then only the end of input stops the module).
async fn shutdown_signal() {
    let ctrl_c = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => info!("interrupted: shutting down"),
            Err(e) => {
                warn!("cannot listen for Ctrl-C: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => info!("SIGTERM: shutting down"),
                    () = ctrl_c => {}
                }
                return;
            }
            Err(e) => warn!("cannot listen for SIGTERM: {e}"),
        }
    }
    ctrl_c.await;
}

struct Options {
    timeout: Duration,
    grace: Duration,
}

/// What a finished task reports to the runtime.
enum Done {
    /// A request's answer, already framed.
    Reply { id: u16, gen: u64, frame: BytesMut },
    /// The configuration task ended.
    Configured { gen: u64, ok: bool },
}

struct InFlight {
    gen: u64,
    abort: AbortHandle,
}

struct Runtime<H, W> {
    opts: Options,
    handler: Arc<H>,
    decoder: Decoder,
    output: W,
    out_failed: Option<io::Error>,
    in_flight: HashMap<u16, InFlight>,
    next_gen: u64,
    conf_running: Option<InFlight>,
    conf_queue: VecDeque<Bytes>,
    done_tx: mpsc::UnboundedSender<Done>,
    /// When set, the module is stopping: the deadline for work in flight.
    draining: Option<Instant>,
}

impl<H: Handler, W: AsyncWrite + Unpin> Runtime<H, W> {
    async fn run<S: Future<Output = ()>>(
        &mut self,
        mut input: mpsc::Receiver<Input>,
        mut done_rx: mpsc::UnboundedReceiver<Done>,
        shutdown: S,
    ) -> Result<Stopped, RunError> {
        let shutdown = shutdown.fuse();
        tokio::pin!(shutdown);
        let mut input_open = true;
        let mut stopped = None;
        let mut failure: Option<RunError> = None;
        loop {
            if self.draining.is_some() && self.idle() {
                break;
            }
            if let Some(e) = self.out_failed.take() {
                failure = Some(RunError::Output(e));
                break;
            }
            let deadline = self.draining;
            tokio::select! {
                biased;
                Some(done) = done_rx.recv() => self.on_done(done).await,
                () = &mut shutdown, if stopped.is_none() => {
                    stopped = Some(Stopped::Shutdown);
                    self.drain();
                }
                chunk = input.recv(), if input_open => match chunk {
                    Some(Input::Data(b)) => {
                        self.decoder.feed_bytes(b);
                        if let Err(e) = self.read_frames().await {
                            error!("cannot read the node's packages any more: {e}");
                            input_open = false;
                            failure = Some(RunError::Protocol(e));
                            self.drain();
                        }
                    }
                    Some(Input::Failed(e)) => {
                        error!("reading from the node failed: {e}");
                        input_open = false;
                        failure = Some(RunError::Input(e));
                        self.drain();
                    }
                    Some(Input::Eof) | None => {
                        input_open = false;
                        if let Err(e) = self.decoder.finish() {
                            warn!("input ended inside a package: {e}");
                        }
                        debug!("input closed");
                        stopped.get_or_insert(Stopped::InputClosed);
                        self.drain();
                    }
                },
                () = sleep_until(deadline), if deadline.is_some() => {
                    self.cancel_remaining().await;
                    break;
                }
            }
        }
        if let Some(e) = self.out_failed.take() {
            failure.get_or_insert(RunError::Output(e));
        }
        if failure.is_none() {
            if let Err(e) = self.output.shutdown().await {
                debug!("closing the output: {e}");
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(stopped.unwrap_or(Stopped::InputClosed)),
        }
    }

    fn idle(&self) -> bool {
        self.in_flight.is_empty() && self.conf_running.is_none()
    }

    fn drain(&mut self) {
        if self.draining.is_none() {
            let now = Instant::now();
            // A grace of more than a year is as good as forever.
            let grace = self.opts.grace.min(Duration::from_secs(365 * 24 * 3600));
            self.draining = Some(now.checked_add(grace).unwrap_or(now));
            self.conf_queue.clear();
            if !self.idle() {
                info!(
                    in_flight = self.in_flight.len(),
                    "stopping: waiting up to {:?} for requests in flight", self.opts.grace
                );
            }
        }
    }

    /// Answers every request still running with `cancelled`.
    async fn cancel_remaining(&mut self) {
        let ids: Vec<u16> = self.in_flight.keys().copied().collect();
        if !ids.is_empty() {
            warn!(
                count = ids.len(),
                "stopping: cancelling requests still running"
            );
        }
        for id in ids {
            if let Some(f) = self.in_flight.remove(&id) {
                f.abort.abort();
            }
            let e = Error::cancelled("the module stopped before the request completed");
            self.write(error_frame(id, &e)).await;
        }
        if let Some(c) = self.conf_running.take() {
            c.abort.abort();
        }
    }

    fn abort_all(&mut self) {
        for (_, f) in self.in_flight.drain() {
            f.abort.abort();
        }
        if let Some(c) = self.conf_running.take() {
            c.abort.abort();
        }
    }

    async fn read_frames(&mut self) -> Result<(), thingsdb_protocol::Error> {
        while let Some(frame) = self.decoder.next_frame()? {
            self.on_frame(frame).await;
        }
        Ok(())
    }

    async fn on_frame(&mut self, frame: Frame) {
        match ToModule::decode(&frame) {
            Ok(ToModule::Request(payload)) => self.on_request(frame.id, payload).await,
            Ok(ToModule::Conf(payload)) => self.on_conf(payload).await,
            Err(e) => match frame.package_type() {
                Ok(PackageType::ModuleReq) => {
                    warn!(id = frame.id, "invalid request: {e}");
                    self.forget(frame.id);
                    let err = Error::bad_data(format!("invalid request: {e}"));
                    self.write(error_frame(frame.id, &err)).await;
                }
                Ok(PackageType::ModuleConf) => {
                    error!("configuration refused: {e}");
                    if self.draining.is_none() {
                        self.conf_queue.push_back(Bytes::new());
                        self.next_conf();
                    }
                }
                _ => warn!(
                    id = frame.id,
                    type_byte = frame.type_byte,
                    "ignored a package a node does not send to a module: {e}"
                ),
            },
        }
    }

    /// Drops the request with `id` still running, if any: the node reuses
    /// an id only after giving up the request that had it.
    fn forget(&mut self, id: u16) {
        if let Some(old) = self.in_flight.remove(&id) {
            old.abort.abort();
            info!(
                id,
                "the node reused the id of a running request: dropped the older one"
            );
        }
    }

    async fn on_request(&mut self, id: u16, payload: Bytes) {
        self.forget(id);
        if self.draining.is_some() {
            let e = Error::cancelled("the module is stopping");
            self.write(error_frame(id, &e)).await;
            return;
        }
        let gen = self.gen();
        let handler = Arc::clone(&self.handler);
        let default_timeout = self.opts.timeout;
        let tx = self.done_tx.clone();
        let task = tokio::spawn(async move {
            // Any panic of the handler's code (`timeout`, `handle`, the
            // answer's `Serialize`) is caught, so every request is answered.
            let run = AssertUnwindSafe(answer(&*handler, id, &payload, default_timeout));
            let frame = match run.catch_unwind().await {
                Ok(Ok(frame)) => frame,
                Ok(Err(e)) => error_frame(id, &e),
                Err(panic) => {
                    error!(id, "the handler panicked: {}", panic_message(&*panic));
                    error_frame(id, &Error::operation("the module's handler failed (panic)"))
                }
            };
            let _ = tx.send(Done::Reply { id, gen, frame });
        });
        self.in_flight.insert(
            id,
            InFlight {
                gen,
                abort: task.abort_handle(),
            },
        );
    }

    async fn on_conf(&mut self, payload: Bytes) {
        if self.draining.is_some() {
            warn!("ignored a configuration: the module is stopping");
            return;
        }
        self.conf_queue.push_back(payload);
        self.next_conf();
    }

    /// Starts the next queued configuration unless one is running. An
    /// empty payload stands for one that failed to decode.
    fn next_conf(&mut self) {
        if self.conf_running.is_some() {
            return;
        }
        let Some(payload) = self.conf_queue.pop_front() else {
            return;
        };
        let gen = self.gen();
        let handler = Arc::clone(&self.handler);
        let timeout = self.opts.timeout;
        let tx = self.done_tx.clone();
        let task = tokio::spawn(async move {
            let ok = if payload.is_empty() {
                false
            } else {
                let run = AssertUnwindSafe(configure(&*handler, &payload, timeout));
                match run.catch_unwind().await {
                    Ok(Ok(())) => {
                        info!("configured");
                        true
                    }
                    Ok(Err(e)) => {
                        error!("configuration refused: {e}");
                        false
                    }
                    Err(panic) => {
                        error!(
                            "configuration refused: the handler panicked: {}",
                            panic_message(&*panic)
                        );
                        false
                    }
                }
            };
            let _ = tx.send(Done::Configured { gen, ok });
        });
        self.conf_running = Some(InFlight {
            gen,
            abort: task.abort_handle(),
        });
    }

    async fn on_done(&mut self, done: Done) {
        match done {
            Done::Reply { id, gen, frame } => {
                // An answer of a request the node gave up is dropped: its id
                // may belong to a newer request now.
                if self.in_flight.get(&id).is_some_and(|f| f.gen == gen) {
                    self.in_flight.remove(&id);
                    self.write(frame).await;
                }
            }
            Done::Configured { gen, ok } => {
                if self.conf_running.as_ref().is_some_and(|c| c.gen == gen) {
                    self.conf_running = None;
                    let mut b = BytesMut::new();
                    if ok {
                        module::encode_conf_ok(&mut b);
                    } else {
                        module::encode_conf_err(&mut b);
                    }
                    self.write(b).await;
                    if self.draining.is_none() {
                        self.next_conf();
                    }
                }
            }
        }
    }

    fn gen(&mut self) -> u64 {
        self.next_gen += 1;
        self.next_gen
    }

    async fn write(&mut self, frame: BytesMut) {
        if self.out_failed.is_some() {
            return;
        }
        let r = async {
            self.output.write_all(&frame).await?;
            self.output.flush().await
        }
        .await;
        if let Err(e) = r {
            error!("writing to the node failed: {e}");
            self.out_failed = Some(e);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Decodes, runs and encodes the request with `id`.
async fn answer<H: Handler>(
    handler: &H,
    id: u16,
    payload: &[u8],
    default_timeout: Duration,
) -> Result<BytesMut, Error> {
    let req: H::Request = rmp_serde::from_slice(payload)
        .map_err(|e| Error::bad_data(format!("cannot decode the request: {e}")))?;
    let timeout = handler.timeout(&req).unwrap_or(default_timeout);
    let res = match tokio::time::timeout(timeout, handler.handle(req)).await {
        Ok(r) => r?,
        Err(_) => {
            warn!("a request timed out after {timeout:?}");
            return Err(Error::cancelled(format!(
                "the module did not answer within {timeout:?}"
            )));
        }
    };
    let value = rmp_serde::to_vec_named(&res)
        .map_err(|e| Error::bad_data(format!("cannot encode the module's answer: {e}")))?;
    let mut b = BytesMut::with_capacity(value.len() + 8);
    module::encode_response(&mut b, id, &value)
        .map_err(|e| Error::max_quota(format!("the module's answer is too large: {e}")))?;
    Ok(b)
}

async fn configure<H: Handler>(
    handler: &H,
    payload: &[u8],
    timeout: Duration,
) -> Result<(), Error> {
    let conf: H::Config = rmp_serde::from_slice(payload)
        .map_err(|e| Error::bad_data(format!("cannot decode the configuration: {e}")))?;
    match tokio::time::timeout(timeout, handler.configure(conf)).await {
        Ok(r) => r,
        Err(_) => Err(Error::cancelled(format!(
            "configuration took longer than {timeout:?}"
        ))),
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// A MODULE_ERR frame for `e`; [`Error`] guarantees what the encoder
/// checks, so this cannot fail, but if it did the answer would be a plain
/// `operation` error.
fn error_frame(id: u16, e: &Error) -> BytesMut {
    let mut b = BytesMut::new();
    if module::encode_error(&mut b, id, e.code(), e.message()).is_err() {
        b.clear();
        let _ = module::encode_error(
            &mut b,
            id,
            thingsdb_protocol::ErrorCode::Operation,
            "the module's error could not be encoded",
        );
    }
    b
}
