//! The transport in a browser (`wasm32`): packages over the page's own
//! WebSocket.
//!
//! On wasm32 this file is the crate's `transport` module: the same
//! [`connect`], [`Connection`], [`FrameWriter`] and [`FrameReader`] as on
//! other targets, so code above it is the same. What differs:
//!
//! - Only `ws://` and `wss://` targets: a browser has no TCP, TLS or Unix
//!   sockets, and such targets are [`Error::InvalidTarget`]. TLS is the
//!   browser's, with its trust store; [`ConnectOptions`] has no TLS part.
//! - Nothing is `Send`: everything runs on the page's event loop. The
//!   socket's callbacks push what arrives into a channel that
//!   [`FrameReader::recv`] reads, and [`FrameWriter::queue`] hands each
//!   package to `WebSocket.send` at once (the browser buffers it), so a
//!   flush has nothing left to wait for.
//!
//! Exactly one package per binary message, both ways; the browser
//! reassembles fragmented messages and answers pings.
//!
//! ```no_run
//! # async fn f() -> Result<(), thingsdb_transport::Error> {
//! use bytes::BytesMut;
//! use thingsdb_protocol::request;
//! use thingsdb_transport::{connect, ConnectOptions, Target};
//!
//! let target: Target = "ws://localhost:9270".parse()?;
//! let (mut tx, mut rx) = connect(&target, &ConnectOptions::default()).await?.split();
//! let mut out = BytesMut::new();
//! request::encode_query(&mut out, 1, "@t", "1 + 1;", None)?;
//! tx.send(out.freeze()).await?;
//! let reply = rx.recv().await?;
//! # Ok(()) }
//! ```

use std::cell::Cell;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::future::{select, Either};
use futures::{Stream, StreamExt};
use js_sys::{ArrayBuffer, Uint8Array};
use thingsdb_protocol::Frame;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

pub use crate::common::TransportKind;
use crate::common::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RECV_PAYLOAD};
use crate::error::Error;
use crate::frames::{count_whole_frames, split_next};
use crate::target::Target;

/// The close code of a normal closure (RFC 6455, 7.4.1).
const NORMAL_CLOSURE: u16 = 1000;

/// How to connect from a browser.
///
/// ```
/// use std::time::Duration;
/// use thingsdb_transport::ConnectOptions;
/// let opts = ConnectOptions::default()
///     .with_connect_timeout(Duration::from_secs(3))
///     .with_max_payload(32 << 20);
/// assert_eq!(opts.max_payload, 32 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// How long [`connect`] waits for the socket to open. Default 10 s.
    pub connect_timeout: Duration,
    /// The largest payload accepted from the node, in bytes; a package
    /// announcing more is a protocol error. Default
    /// [`DEFAULT_MAX_RECV_PAYLOAD`] (64 MiB).
    pub max_payload: u32,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_payload: DEFAULT_MAX_RECV_PAYLOAD,
        }
    }
}

impl ConnectOptions {
    /// Sets [`ConnectOptions::connect_timeout`].
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`ConnectOptions::max_payload`].
    pub fn with_max_payload(mut self, max_payload: u32) -> Self {
        self.max_payload = max_payload;
        self
    }
}

/// What the socket's callbacks report, in the order the browser fires them.
enum SocketEvent {
    Open,
    Binary(Vec<u8>),
    Text,
    Error,
    Close { code: u16, reason: String },
}

/// The socket and the callbacks it holds; shared by both halves. Dropping
/// the last half unhooks the callbacks and closes the socket.
struct Shared {
    ws: WebSocket,
    /// Set once we asked the socket to close: after that, however the
    /// socket ends is a normal end.
    close_sent: Cell<bool>,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(web_sys::Event)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onerror(None);
        self.ws.set_onclose(None);
        // `close()` without arguments cannot throw.
        let _ = self.ws.close();
    }
}

/// A connection through the browser's WebSocket, as [`connect`] returns it.
///
/// [`split`](Connection::split) it into its halves; the socket closes when
/// both are dropped or [`FrameWriter::close`] is called.
pub struct Connection {
    writer: FrameWriter,
    reader: FrameReader,
    peer: String,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("kind", &self.kind())
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// [`TransportKind::Ws`] or [`TransportKind::Wss`].
    pub fn kind(&self) -> TransportKind {
        self.reader.kind
    }

    /// The URL the socket was opened with.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The two halves: send and receive.
    pub fn split(self) -> (FrameWriter, FrameReader) {
        (self.writer, self.reader)
    }
}

/// Opens a WebSocket to a `ws://` or `wss://` target from the page and
/// waits until it is open, at most `opts.connect_timeout`.
///
/// Other kinds of target are [`Error::InvalidTarget`]: a browser has no
/// TCP, TLS or Unix sockets. A browser does not tell a page why a socket
/// failed to open (refused, a bad certificate, a proxy): that is one
/// [`Error::Connect`] for all of them.
pub async fn connect(target: &Target, opts: &ConnectOptions) -> Result<Connection, Error> {
    let kind = target.kind();
    if !matches!(kind, TransportKind::Ws | TransportKind::Wss) {
        return Err(Error::InvalidTarget {
            target: target.to_string(),
            reason: format!(
                "a browser can only open ws:// and wss:// connections, not {kind} \
                 (there are no TCP, TLS or Unix sockets in a browser)"
            ),
        });
    }
    let url = target.to_string();
    let ws = WebSocket::new(&url).map_err(|e| Error::InvalidTarget {
        target: url.clone(),
        reason: format!("the browser refused the URL: {}", js_text(&e)),
    })?;
    ws.set_binary_type(BinaryType::Arraybuffer);

    let (tx, mut events) = mpsc::unbounded();
    let on_open = {
        let tx = tx.clone();
        Closure::<dyn FnMut()>::new(move || {
            let _ = tx.unbounded_send(SocketEvent::Open);
        })
    };
    let on_message = {
        let tx = tx.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let event = match e.data().dyn_into::<ArrayBuffer>() {
                Ok(buf) => SocketEvent::Binary(Uint8Array::new(&buf).to_vec()),
                Err(_) => SocketEvent::Text,
            };
            let _ = tx.unbounded_send(event);
        })
    };
    let on_error = {
        let tx = tx.clone();
        Closure::<dyn FnMut(web_sys::Event)>::new(move |_e: web_sys::Event| {
            let _ = tx.unbounded_send(SocketEvent::Error);
        })
    };
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
        let _ = tx.unbounded_send(SocketEvent::Close {
            code: e.code(),
            reason: e.reason(),
        });
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    let shared = Rc::new(Shared {
        ws,
        close_sent: Cell::new(false),
        _on_open: on_open,
        _on_message: on_message,
        _on_error: on_error,
        _on_close: on_close,
    });

    let failed = |what: String| Error::Connect {
        target: url.clone(),
        source: io::Error::new(io::ErrorKind::ConnectionRefused, what),
    };
    let ms = u32::try_from(opts.connect_timeout.as_millis()).unwrap_or(u32::MAX);
    let opened = async {
        loop {
            match events.next().await {
                Some(SocketEvent::Open) => return Ok(()),
                // An error is followed by a close event, which has the code.
                Some(SocketEvent::Error) => {}
                Some(SocketEvent::Close { code, reason }) => {
                    return Err(failed(close_text(
                        "the browser could not open the WebSocket",
                        code,
                        &reason,
                    )))
                }
                // Nothing arrives before the socket is open.
                Some(SocketEvent::Binary(_) | SocketEvent::Text) => {}
                None => return Err(failed("the WebSocket went away".into())),
            }
        }
    };
    let timeout = gloo_timers::future::TimeoutFuture::new(ms);
    match select(Box::pin(opened), timeout).await {
        Either::Left((r, _)) => r?,
        Either::Right(_) => {
            return Err(Error::ConnectTimeout {
                target: url,
                elapsed_ms: u64::from(ms),
            })
        }
    }
    Ok(Connection {
        writer: FrameWriter {
            shared: shared.clone(),
            kind,
            closed: false,
        },
        reader: FrameReader {
            shared,
            kind,
            events,
            max_payload: opts.max_payload,
            ended: false,
        },
        peer: url,
    })
}

/// The sending half of a browser [`Connection`].
///
/// [`queue`](FrameWriter::queue) hands each package to the browser at
/// once (`WebSocket.send`, one binary message each), which sends them in
/// order without the page waiting; so [`flush`](FrameWriter::flush) has
/// nothing left to do, and [`buffered_amount`](FrameWriter::buffered_amount)
/// tells how much the browser still holds.
pub struct FrameWriter {
    shared: Rc<Shared>,
    kind: TransportKind,
    closed: bool,
}

impl fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameWriter")
            .field("kind", &self.kind)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl FrameWriter {
    /// [`TransportKind::Ws`] or [`TransportKind::Wss`].
    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// Sends one or more whole packages laid back to back in `frames`,
    /// each as its own binary message: the browser takes them at once.
    ///
    /// Bytes that are not whole packages are [`Error::NotWholeFrames`] and
    /// nothing is sent; a socket that is closing or closed is
    /// [`Error::Closed`].
    pub fn queue(&mut self, mut frames: Bytes) -> Result<(), Error> {
        if self.closed || self.shared.ws.ready_state() != WebSocket::OPEN {
            return Err(Error::Closed);
        }
        count_whole_frames(&frames)?;
        while let Some(pkg) = split_next(&mut frames) {
            self.shared
                .ws
                .send_with_u8_array(&pkg)
                .map_err(|e| Error::ws(format!("send failed: {}", js_text(&e)), None))?;
        }
        Ok(())
    }

    /// Always true: [`queue`](FrameWriter::queue) hands everything to the
    /// browser at once.
    pub fn is_flushed(&self) -> bool {
        true
    }

    /// Ready at once; see [`is_flushed`](FrameWriter::is_flushed).
    pub fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    /// Returns at once; see [`is_flushed`](FrameWriter::is_flushed).
    pub async fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// [`queue`](FrameWriter::queue), as an `async` call like on other
    /// targets.
    pub async fn send(&mut self, frames: Bytes) -> Result<(), Error> {
        self.queue(frames)
    }

    /// Bytes handed to the browser and not yet on the network
    /// (`WebSocket.bufferedAmount`): a sender may hold back while it is
    /// high.
    pub fn buffered_amount(&self) -> u32 {
        self.shared.ws.buffered_amount()
    }

    /// Starts the WebSocket close handshake (code 1000); the reading half
    /// sees the end of the stream once it is done. Queuing after this is
    /// [`Error::Closed`]; closing again does nothing.
    pub fn poll_close(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(self.close_now())
    }

    /// Starts the WebSocket close handshake; see
    /// [`poll_close`](FrameWriter::poll_close).
    pub async fn close(&mut self) -> Result<(), Error> {
        self.close_now()
    }

    fn close_now(&mut self) -> Result<(), Error> {
        self.closed = true;
        if self.shared.close_sent.replace(true) {
            return Ok(());
        }
        self.shared
            .ws
            .close_with_code(NORMAL_CLOSURE)
            .map_err(|e| Error::ws(format!("close failed: {}", js_text(&e)), None))
    }
}

/// The receiving half of a browser [`Connection`].
pub struct FrameReader {
    shared: Rc<Shared>,
    kind: TransportKind,
    events: mpsc::UnboundedReceiver<SocketEvent>,
    max_payload: u32,
    ended: bool,
}

impl fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("kind", &self.kind)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl FrameReader {
    /// [`TransportKind::Ws`] or [`TransportKind::Wss`].
    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// Always `false`: a page has no say over TCP acknowledgements. (On
    /// other targets this hands `TCP_QUICKACK` to the caller.)
    pub fn set_manual_quick_ack(&mut self, _manual: bool) -> bool {
        false
    }

    /// Does nothing: a page has no say over TCP acknowledgements.
    pub fn quick_ack(&mut self) {}

    /// Polls for the next whole package: `Ok(Some(frame))`, `Ok(None)`
    /// when the connection closed normally (the node's or our own close
    /// handshake), or an error: a connection lost without a close
    /// handshake is [`Error::WebSocket`], a text message
    /// [`Error::TextMessage`], a malformed package [`Error::Protocol`].
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Frame>, Error>> {
        while !self.ended {
            let Some(event) = std::task::ready!(self.events.poll_next_unpin(cx)) else {
                break;
            };
            match event {
                SocketEvent::Binary(v) => {
                    return Poll::Ready(
                        Frame::parse(Bytes::from(v), self.max_payload)
                            .map(Some)
                            .map_err(Error::from),
                    )
                }
                SocketEvent::Text => return Poll::Ready(Err(Error::TextMessage)),
                SocketEvent::Open | SocketEvent::Error => {}
                SocketEvent::Close { code, reason } => {
                    self.ended = true;
                    if code != NORMAL_CLOSURE && !self.shared.close_sent.get() {
                        return Poll::Ready(Err(Error::ws(
                            close_text("the connection was lost", code, &reason),
                            None,
                        )));
                    }
                }
            }
        }
        Poll::Ready(Ok(None))
    }

    /// The next whole package; see [`poll_recv`](FrameReader::poll_recv).
    /// Cancel-safe: a message is either returned or still queued.
    pub async fn recv(&mut self) -> Result<Option<Frame>, Error> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl Stream for FrameReader {
    type Item = Result<Frame, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx).map(Result::transpose)
    }
}

fn close_text(what: &str, code: u16, reason: &str) -> String {
    if reason.is_empty() {
        format!("{what} (close code {code})")
    } else {
        format!("{what} (close code {code}: {reason})")
    }
}

/// A thrown JavaScript value as text.
fn js_text(v: &JsValue) -> String {
    if let Some(e) = v.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    v.as_string().unwrap_or_else(|| format!("{v:?}"))
}
