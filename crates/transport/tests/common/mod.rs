//! Small local peers for the transport tests: echo and scripted servers
//! over TCP, TLS, WebSocket, secure WebSocket and Unix sockets, built only
//! on tokio, tokio-rustls and tokio-tungstenite (not on this crate).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    missing_docs,
    unreachable_pub
)]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use thingsdb_protocol::{Frame, PackageType};
use thingsdb_transport::{ConnectOptions, Target, TlsOptions, TransportKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Every kind this crate connects to.
pub const ALL: [TransportKind; 5] = [
    TransportKind::Tcp,
    TransportKind::Tls,
    TransportKind::Ws,
    TransportKind::Wss,
    TransportKind::Unix,
];

/// A hang guard, generous for a slow CI machine.
pub const GUARD: Duration = Duration::from_secs(120);

pub async fn guard<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: hung for {GUARD:?}"),
    }
}

pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A server-side connection, already through TLS, not yet through the
/// WebSocket handshake.
pub type ServerIo = Box<dyn Io>;

pub fn is_ws(kind: TransportKind) -> bool {
    matches!(kind, TransportKind::Ws | TransportKind::Wss)
}

/// A self-signed certificate for `localhost` and 127.0.0.1.
pub struct Cert {
    pub pem: String,
    pub der: CertificateDer<'static>,
    pub key: PrivatePkcs8KeyDer<'static>,
}

pub fn self_signed() -> Cert {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    Cert {
        pem: ck.cert.pem(),
        der: ck.cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()),
    }
}

pub fn tls_acceptor(cert: &Cert) -> tokio_rustls::TlsAcceptor {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der.clone()],
        PrivateKeyDer::Pkcs8(cert.key.clone_key()),
    )
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Server behaviour options.
#[derive(Clone, Copy, Default)]
pub struct PeerOpts {
    /// Write one byte per write call, yielding between them.
    pub trickle: bool,
}

/// A running local peer.
pub struct Peer {
    pub target: Target,
    pub opts: ConnectOptions,
    pub cert_pem: Option<String>,
    _dir: Option<tempfile::TempDir>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a peer of `kind` that hands every accepted connection to
/// `handler`.
pub async fn serve<F, Fut>(kind: TransportKind, popts: PeerOpts, handler: F) -> Peer
where
    F: Fn(ServerIo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    let cert = matches!(kind, TransportKind::Tls | TransportKind::Wss).then(self_signed);
    let acceptor = cert.as_ref().map(tls_acceptor);
    let mut opts = ConnectOptions::default().with_connect_timeout(Duration::from_secs(60));
    if let Some(c) = &cert {
        opts = opts.with_tls(TlsOptions::with_ca_pem(c.pem.clone()));
    }
    if kind == TransportKind::Unix {
        #[cfg(unix)]
        {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("peer.sock");
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            let task = tokio::spawn(async move {
                while let Ok((s, _)) = listener.accept().await {
                    let io: ServerIo = if popts.trickle {
                        Box::new(Trickle::new(s))
                    } else {
                        Box::new(s)
                    };
                    tokio::spawn((handler)(io));
                }
            });
            return Peer {
                target: Target::unix(path.to_str().unwrap()),
                opts,
                cert_pem: None,
                _dir: Some(dir),
                task,
            };
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            s.set_nodelay(true).unwrap();
            let raw: ServerIo = if popts.trickle {
                Box::new(Trickle::new(s))
            } else {
                Box::new(s)
            };
            let handler = handler.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let io: ServerIo = match acceptor {
                    Some(a) => match a.accept(raw).await {
                        Ok(t) => Box::new(t),
                        Err(_) => return,
                    },
                    None => raw,
                };
                (handler)(io).await;
            });
        }
    });
    let target = match kind {
        TransportKind::Tcp => Target::tcp("127.0.0.1", port),
        TransportKind::Tls => Target::tls("localhost", port),
        TransportKind::Ws => Target::ws("127.0.0.1", port, "/"),
        TransportKind::Wss => Target::wss("localhost", port, "/"),
        k => panic!("no peer for {k}"),
    };
    Peer {
        target,
        opts,
        cert_pem: cert.map(|c| c.pem),
        _dir: None,
        task,
    }
}

pub fn ws_server_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

pub async fn ws_accept(io: ServerIo) -> Option<WebSocketStream<ServerIo>> {
    tokio_tungstenite::accept_async_with_config(io, Some(ws_server_config()))
        .await
        .ok()
}

/// Echoes bytes (stream kinds) or binary messages (WebSocket kinds).
pub async fn echo(kind: TransportKind, io: ServerIo) {
    if is_ws(kind) {
        let Some(mut ws) = ws_accept(io).await else {
            return;
        };
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Binary(b) = m {
                if ws.send(Message::Binary(b)).await.is_err() {
                    return;
                }
            }
        }
        // The close reply was written by the last read; end TCP too.
        let mut inner = ws.into_inner();
        let _ = inner.shutdown().await;
    } else {
        let (mut r, mut w) = tokio::io::split(io);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if w.write_all(&buf[..n]).await.is_err() || w.flush().await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = w.shutdown().await;
    }
}

pub async fn echo_peer(kind: TransportKind, popts: PeerOpts) -> Peer {
    serve(kind, popts, move |io| echo(kind, io)).await
}

/// Sends `chunks` (raw bytes for stream kinds, one binary message each for
/// WebSocket kinds), then ends the connection: abruptly (`abrupt`: TCP
/// closed without a WebSocket close handshake) or cleanly.
pub async fn script(kind: TransportKind, io: ServerIo, chunks: Vec<Vec<u8>>, abrupt: bool) {
    if is_ws(kind) {
        let Some(mut ws) = ws_accept(io).await else {
            return;
        };
        for c in chunks {
            if ws.send(Message::Binary(Bytes::from(c))).await.is_err() {
                return;
            }
        }
        if abrupt {
            let mut inner = ws.into_inner();
            let _ = inner.shutdown().await;
        } else {
            let _ = ws.close(None).await;
            while let Some(Ok(_)) = ws.next().await {}
        }
    } else {
        let mut io = io;
        for c in chunks {
            if io.write_all(&c).await.is_err() || io.flush().await.is_err() {
                return;
            }
        }
        let _ = io.shutdown().await;
    }
}

/// A frame with a recognisable payload: `len` bytes derived from `id`.
pub fn frame(id: u16, len: usize) -> Frame {
    let payload: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ (id as u8))
        .collect();
    Frame::new(PackageType::Data, id, Bytes::from(payload))
}

pub fn wire(frames: &[Frame]) -> Bytes {
    let mut v = Vec::new();
    for f in frames {
        f.encode_into(&mut v).unwrap();
    }
    Bytes::from(v)
}

/// Writes one byte per call, yielding to the scheduler between bytes, so
/// the other side sees the stream in the smallest pieces.
pub struct Trickle<S> {
    inner: S,
    yielded: bool,
}

impl<S> Trickle<S> {
    pub fn new(inner: S) -> Self {
        Trickle {
            inner,
            yielded: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Trickle<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Trickle<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if !self.yielded {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, &buf[..1]);
        if r.is_ready() {
            self.yielded = false;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
