//! Packages over the browser's own WebSocket (`wasm32` only).
//!
//! In a browser there are no sockets: the only way to a node is the
//! page's `WebSocket` object, for `ws://` and `wss://` targets (TLS is the
//! browser's, with the browser's trust store). TCP, TLS-over-TCP and Unix
//! targets are refused with [`Error::InvalidTarget`].
//!
//! Exactly one package per binary message, both ways; the browser
//! reassembles fragmented messages and answers pings. Everything runs on
//! the page's event loop: the socket's callbacks push what arrives into a
//! channel that [`BrowserReceiver::recv`] reads, and
//! [`BrowserSender::send`] hands each package to `WebSocket.send`, which
//! queues it in the browser without waiting.
//!
//! ```no_run
//! # async fn f() -> Result<(), thingsdb_transport::Error> {
//! use std::time::Duration;
//! use bytes::BytesMut;
//! use thingsdb_protocol::request;
//! use thingsdb_transport::{browser, Target};
//!
//! let target: Target = "ws://localhost:9270".parse()?;
//! let conn = browser::connect(&target, Duration::from_secs(10), 64 << 20).await?;
//! let (mut tx, mut rx) = conn.split();
//! let mut out = BytesMut::new();
//! request::encode_query(&mut out, 1, "@t", "1 + 1;", None)?;
//! tx.send(out.freeze()).await?;
//! let reply = rx.recv().await?;
//! # Ok(()) }
//! ```

use std::cell::Cell;
use std::fmt;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::future::{select, Either};
use futures::StreamExt;
use js_sys::{ArrayBuffer, Uint8Array};
use thingsdb_protocol::Frame;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::error::Error;
use crate::frames::{count_whole_frames, split_next};
use crate::target::Target;
use crate::transport::TransportKind;

/// The close code of a normal closure (RFC 6455, 7.4.1).
const NORMAL_CLOSURE: u16 = 1000;

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

impl Shared {
    fn close(&self) -> Result<(), Error> {
        if self.close_sent.replace(true) {
            return Ok(());
        }
        self.ws
            .close_with_code(NORMAL_CLOSURE)
            .map_err(|e| Error::WebSocket(format!("close failed: {}", js_text(&e))))
    }
}

/// A connection through the browser's WebSocket, as [`connect`] returns it.
///
/// Split it with [`BrowserConnection::split`]; the socket closes when both
/// halves are dropped or [`BrowserSender::close`] is called.
pub struct BrowserConnection {
    kind: TransportKind,
    peer: String,
    send: BrowserSender,
    recv: BrowserReceiver,
}

impl fmt::Debug for BrowserConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrowserConnection")
            .field("kind", &self.kind)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl BrowserConnection {
    /// [`TransportKind::Ws`] or [`TransportKind::Wss`].
    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// The URL the socket was opened with.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The two halves: send and receive.
    pub fn split(self) -> (BrowserSender, BrowserReceiver) {
        (self.send, self.recv)
    }
}

/// Opens a WebSocket to a `ws://` or `wss://` target from the page and
/// waits until it is open, at most `connect_timeout`. `max_payload` is
/// the largest payload accepted from the node; a package announcing more
/// is a protocol error.
///
/// Other kinds of target are [`Error::InvalidTarget`]: a browser has no
/// TCP, TLS or Unix sockets. A browser does not tell a page why a socket
/// failed to open (refused, a bad certificate, a proxy): that is one
/// [`Error::Connect`] for all of them.
pub async fn connect(
    target: &Target,
    connect_timeout: Duration,
    max_payload: u32,
) -> Result<BrowserConnection, Error> {
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
            let data = e.data();
            let event = match data.dyn_into::<ArrayBuffer>() {
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
    let ms = u32::try_from(connect_timeout.as_millis()).unwrap_or(u32::MAX);
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
    Ok(BrowserConnection {
        kind,
        peer: url,
        send: BrowserSender {
            shared: shared.clone(),
            closed: false,
        },
        recv: BrowserReceiver {
            shared,
            events,
            max_payload,
            ended: false,
        },
    })
}

/// The sending half of a [`BrowserConnection`].
pub struct BrowserSender {
    shared: Rc<Shared>,
    closed: bool,
}

impl fmt::Debug for BrowserSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrowserSender")
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl BrowserSender {
    /// Sends one or more whole packages laid back to back in `frames`,
    /// each as its own binary message. The browser queues them and sends
    /// them in order; this does not wait for the network.
    ///
    /// Bytes that are not whole packages are [`Error::NotWholeFrames`] and
    /// nothing is sent; a socket that is closing or closed is
    /// [`Error::Closed`].
    pub async fn send(&mut self, frames: Bytes) -> Result<(), Error> {
        self.send_now(frames)
    }

    /// [`send`](Self::send) without the `async`: sending never waits in a
    /// browser, so an event-loop driver may call this from a callback.
    pub fn send_now(&mut self, mut frames: Bytes) -> Result<(), Error> {
        if self.closed || self.shared.ws.ready_state() != WebSocket::OPEN {
            return Err(Error::Closed);
        }
        count_whole_frames(&frames)?;
        while let Some(pkg) = split_next(&mut frames) {
            self.shared
                .ws
                .send_with_u8_array(&pkg)
                .map_err(|e| Error::WebSocket(format!("send failed: {}", js_text(&e))))?;
        }
        Ok(())
    }

    /// Bytes handed to the browser and not yet on the network
    /// (`WebSocket.bufferedAmount`): a sender may wait while it is high.
    pub fn buffered_amount(&self) -> u32 {
        self.shared.ws.buffered_amount()
    }

    /// Starts the WebSocket close handshake; the receiving half sees the
    /// end of the stream once the node answers. Sending after this is
    /// [`Error::Closed`].
    pub async fn close(&mut self) -> Result<(), Error> {
        self.closed = true;
        self.shared.close()
    }
}

/// The receiving half of a [`BrowserConnection`].
pub struct BrowserReceiver {
    shared: Rc<Shared>,
    events: mpsc::UnboundedReceiver<SocketEvent>,
    max_payload: u32,
    ended: bool,
}

impl fmt::Debug for BrowserReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrowserReceiver")
            .field("max_payload", &self.max_payload)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl BrowserReceiver {
    /// The next whole package, `Ok(None)` when the connection closed
    /// normally (the node's or our own close handshake), or an error: a
    /// connection lost without a close handshake is [`Error::WebSocket`],
    /// a text message [`Error::TextMessage`], a malformed package
    /// [`Error::Protocol`].
    ///
    /// Cancel-safe: a message is either returned or still queued.
    pub async fn recv(&mut self) -> Result<Option<Frame>, Error> {
        while !self.ended {
            let Some(event) = self.events.next().await else {
                break;
            };
            match event {
                SocketEvent::Binary(v) => {
                    return Ok(Some(Frame::parse(Bytes::from(v), self.max_payload)?))
                }
                SocketEvent::Text => return Err(Error::TextMessage),
                SocketEvent::Open | SocketEvent::Error => {}
                SocketEvent::Close { code, reason } => {
                    self.ended = true;
                    if code != NORMAL_CLOSURE && !self.shared.close_sent.get() {
                        return Err(Error::WebSocket(close_text(
                            "the connection was lost",
                            code,
                            &reason,
                        )));
                    }
                }
            }
        }
        Ok(None)
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
