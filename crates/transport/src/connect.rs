//! Opening a connection to a [`Target`].

use std::io;
use std::time::Duration;

use thingsdb_protocol::HEADER_LEN;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::Error;
use crate::stream::{QuickAck, StreamReader, StreamWriter, TlsStream};
use crate::target::Target;
use crate::tls::TlsOptions;
use crate::transport::{Connection, Reader, TransportKind, Writer};
use crate::ws;

pub use crate::common::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_RECV_PAYLOAD};

/// How to connect.
///
/// ```
/// use std::time::Duration;
/// use thingsdb_transport::{ConnectOptions, TlsOptions};
/// let opts = ConnectOptions::default()
///     .with_connect_timeout(Duration::from_secs(3))
///     .with_tls(TlsOptions::native_roots())
///     .with_max_payload(32 << 20);
/// assert_eq!(opts.ws_max_message, (32 << 20) + 8);
/// ```
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Limit on everything [`connect`] does: name resolution, TCP connect,
    /// TLS and WebSocket handshakes. Default 10 s.
    pub connect_timeout: Duration,
    /// TLS settings for `thingsdbs://` and `wss://` targets.
    pub tls: TlsOptions,
    /// The largest payload accepted from the node, in bytes; a package
    /// announcing more is a protocol error (a stream transport refuses it
    /// from its header, before reserving memory). Default
    /// [`DEFAULT_MAX_RECV_PAYLOAD`] (64 MiB).
    pub max_payload: u32,
    /// The largest WebSocket message (and frame) accepted, in bytes.
    /// Default `max_payload` plus the 8-byte header.
    pub ws_max_message: usize,
    /// On Linux, re-arm `TCP_QUICKACK` after every read from a TCP or TLS
    /// connection, so that the node's next small package is not held back
    /// 40 ms by Nagle's algorithm waiting on our delayed ACK (a ThingsDB
    /// node does not set `TCP_NODELAY` on its client port). It costs one
    /// `setsockopt` call per read, and an ACK packet of its own (about 1-3 us
    /// of CPU per request one at a time, measured with `cargo xtask
    /// bench-e2e`); a reader's owner that knows when more is coming can send
    /// them only then ([`FrameReader::set_manual_quick_ack`](crate::FrameReader::set_manual_quick_ack),
    /// as `thingsdb-client` does). WebSocket connections
    /// do without: a node's WebSocket listener sets `TCP_NODELAY` itself.
    /// Default on; ignored elsewhere.
    pub tcp_quickack: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: TlsOptions::default(),
            max_payload: DEFAULT_MAX_RECV_PAYLOAD,
            ws_max_message: DEFAULT_MAX_RECV_PAYLOAD as usize + HEADER_LEN,
            tcp_quickack: true,
        }
    }
}

impl ConnectOptions {
    /// Sets [`ConnectOptions::connect_timeout`].
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`ConnectOptions::tls`].
    pub fn with_tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// Sets [`ConnectOptions::max_payload`], and
    /// [`ConnectOptions::ws_max_message`] to match it (plus the header).
    pub fn with_max_payload(mut self, max_payload: u32) -> Self {
        self.max_payload = max_payload;
        self.ws_max_message = max_payload as usize + HEADER_LEN;
        self
    }

    /// Sets [`ConnectOptions::tcp_quickack`].
    pub fn with_tcp_quickack(mut self, on: bool) -> Self {
        self.tcp_quickack = on;
        self
    }

    /// Sets [`ConnectOptions::ws_max_message`] alone.
    pub fn with_ws_max_message(mut self, max_message: usize) -> Self {
        self.ws_max_message = max_message;
        self
    }
}

/// Connects to `target`: resolves the host, opens the socket (TCP with
/// `TCP_NODELAY`, or the Unix socket), then runs the TLS and WebSocket
/// handshakes the target needs, all within `opts.connect_timeout`.
///
/// ```no_run
/// use thingsdb_transport::{connect, ConnectOptions, Target};
/// # async fn f() -> Result<(), thingsdb_transport::Error> {
/// let conn = connect(&"localhost:9200".parse::<Target>()?, &ConnectOptions::default()).await?;
/// let (mut tx, mut rx) = conn.split();
/// # Ok(()) }
/// ```
pub async fn connect(target: &Target, opts: &ConnectOptions) -> Result<Connection, Error> {
    match tokio::time::timeout(opts.connect_timeout, connect_now(target, opts)).await {
        Ok(r) => r,
        Err(_) => Err(Error::ConnectTimeout {
            target: target.to_string(),
            elapsed_ms: u64::try_from(opts.connect_timeout.as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

async fn connect_now(target: &Target, opts: &ConnectOptions) -> Result<Connection, Error> {
    let max = opts.max_payload;
    match target {
        Target::Unix(path) => connect_unix(target, path, opts).await,
        Target::Tcp { host, port } => {
            let tcp = connect_tcp(target, host, *port).await?;
            let peer = peer_of(&tcp, host, *port);
            let (r, w) = tcp.into_split();
            let kind = TransportKind::Tcp;
            Ok(Connection::new(
                Writer::Tcp(StreamWriter::new(w, kind)),
                Reader::Tcp(StreamReader::new(
                    QuickAck::new(r, opts.tcp_quickack),
                    kind,
                    max,
                )),
                peer,
            ))
        }
        Target::Tls { host, port } => {
            let tcp = connect_tcp(target, host, *port).await?;
            let peer = peer_of(&tcp, host, *port);
            let tls = tls_handshake(
                target,
                host,
                &opts.tls,
                QuickAck::new(tcp, opts.tcp_quickack),
            )
            .await?;
            let (r, w) = tokio::io::split(tls);
            let kind = TransportKind::Tls;
            Ok(Connection::new(
                Writer::Tls(StreamWriter::new(w, kind)),
                Reader::Tls(StreamReader::new(r, kind, max)),
                peer,
            ))
        }
        Target::Ws { host, port, .. } => {
            let tcp = connect_tcp(target, host, *port).await?;
            // A node's WebSocket listener (libwebsockets) sets TCP_NODELAY.
            let tcp = QuickAck::new(tcp, false);
            let (w, r) = ws::open(
                tcp,
                &target.to_string(),
                TransportKind::Ws,
                opts.ws_max_message,
                max,
            )
            .await?;
            Ok(Connection::new(
                Writer::Ws(w),
                Reader::Ws(r),
                target.to_string(),
            ))
        }
        Target::Wss { host, port, .. } => {
            let tcp = connect_tcp(target, host, *port).await?;
            let tls = tls_handshake(target, host, &opts.tls, QuickAck::new(tcp, false)).await?;
            // `Display` is already the canonical `wss://host:port/path`.
            let (w, r) = ws::open(
                tls,
                &target.to_string(),
                TransportKind::Wss,
                opts.ws_max_message,
                max,
            )
            .await?;
            Ok(Connection::new(
                Writer::Wss(w),
                Reader::Wss(r),
                target.to_string(),
            ))
        }
    }
}

fn peer_of(tcp: &TcpStream, host: &str, port: u16) -> String {
    tcp.peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| format!("{}:{port}", Target::host_for_uri(host)))
}

async fn connect_tcp(target: &Target, host: &str, port: u16) -> Result<TcpStream, Error> {
    let failed = |source| Error::Connect {
        target: target.to_string(),
        source,
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let tcp = TcpStream::connect((host, port)).await.map_err(failed)?;
    tcp.set_nodelay(true).map_err(failed)?;
    Ok(tcp)
}

async fn tls_handshake(
    target: &Target,
    host: &str,
    tls: &TlsOptions,
    tcp: QuickAck<TcpStream>,
) -> Result<TlsStream, Error> {
    let config = tls.client_config()?;
    let name = tls.name_for(host)?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            // rustls reports certificate and protocol problems as an
            // `InvalidData` I/O error wrapping its own error: keep that one.
            if e.kind() == io::ErrorKind::InvalidData && e.get_ref().is_some() {
                if let Some(inner) = e.into_inner() {
                    return Error::Tls {
                        message: format!("handshake with {target} failed: {inner}"),
                        source: Some(inner),
                    };
                }
                return Error::tls_msg(format!("handshake with {target} failed"));
            }
            Error::Tls {
                message: format!("handshake with {target} failed: {e}"),
                source: Some(Box::new(e)),
            }
        })
}

#[cfg(unix)]
async fn connect_unix(
    target: &Target,
    path: &std::path::Path,
    opts: &ConnectOptions,
) -> Result<Connection, Error> {
    let s = tokio::net::UnixStream::connect(path)
        .await
        .map_err(|source| Error::Connect {
            target: target.to_string(),
            source,
        })?;
    let (r, w) = s.into_split();
    let kind = TransportKind::Unix;
    Ok(Connection::new(
        Writer::Unix(StreamWriter::new(w, kind)),
        Reader::Unix(StreamReader::new(r, kind, opts.max_payload)),
        path.display().to_string(),
    ))
}

#[cfg(not(unix))]
async fn connect_unix(
    target: &Target,
    _path: &std::path::Path,
    _opts: &ConnectOptions,
) -> Result<Connection, Error> {
    Err(Error::Connect {
        target: target.to_string(),
        source: io::Error::new(
            io::ErrorKind::Unsupported,
            "Unix sockets are not available on this platform",
        ),
    })
}
