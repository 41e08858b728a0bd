//! Opening a connection to a [`Target`].

use std::io;
use std::time::Duration;

use thingsdb_protocol::HEADER_LEN;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::Error;
use crate::stream::{from_halves, from_stream};
use crate::target::Target;
use crate::tls::TlsOptions;
use crate::transport::{Connection, TransportKind};
use crate::ws;

/// The default receive limit for a package's payload: 64 MiB, well above a
/// node's default `result_size_limit` of 20 MiB.
pub const DEFAULT_MAX_PAYLOAD: u32 = 64 * 1024 * 1024;

/// The default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// [`DEFAULT_MAX_PAYLOAD`] (64 MiB).
    pub max_payload: u32,
    /// The largest WebSocket message (and frame) accepted, in bytes.
    /// Default `max_payload` plus the 8-byte header.
    pub ws_max_message: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls: TlsOptions::default(),
            max_payload: DEFAULT_MAX_PAYLOAD,
            ws_max_message: DEFAULT_MAX_PAYLOAD as usize + HEADER_LEN,
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
    let kind = target.kind();
    match kind {
        TransportKind::Unix => connect_unix(target, opts).await,
        TransportKind::Tcp | TransportKind::Tls | TransportKind::Ws | TransportKind::Wss => {
            let tcp = connect_tcp(target).await?;
            let peer_addr = tcp
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| format!("{}:{}", target.host_for_uri(), target.port()));
            match kind {
                TransportKind::Tcp => {
                    let (r, w) = tcp.into_split();
                    Ok(from_halves(r, w, kind, peer_addr, opts.max_payload))
                }
                TransportKind::Tls => {
                    let tls = tls_handshake(target, &opts.tls, tcp).await?;
                    Ok(from_stream(tls, kind, peer_addr, opts.max_payload))
                }
                TransportKind::Ws => {
                    let ws = ws::handshake(tcp, &ws_uri(target), opts.ws_max_message).await?;
                    Ok(ws::from_websocket(
                        ws,
                        kind,
                        target.to_string(),
                        opts.max_payload,
                    ))
                }
                _ => {
                    let tls = tls_handshake(target, &opts.tls, tcp).await?;
                    let ws = ws::handshake(tls, &ws_uri(target), opts.ws_max_message).await?;
                    Ok(ws::from_websocket(
                        ws,
                        kind,
                        target.to_string(),
                        opts.max_payload,
                    ))
                }
            }
        }
        _ => Err(Error::InvalidTarget {
            target: target.to_string(),
            reason: format!("no built-in way to connect to a {kind} target"),
        }),
    }
}

fn ws_uri(target: &Target) -> String {
    // `Display` is already the canonical `ws[s]://host:port/path`.
    target.to_string()
}

async fn connect_tcp(target: &Target) -> Result<TcpStream, Error> {
    let failed = |source| Error::Connect {
        target: target.to_string(),
        source,
    };
    let tcp = TcpStream::connect((target.host(), target.port()))
        .await
        .map_err(failed)?;
    tcp.set_nodelay(true).map_err(failed)?;
    Ok(tcp)
}

async fn tls_handshake(
    target: &Target,
    tls: &TlsOptions,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    let config = tls.client_config()?;
    let name = tls.name_for(target.host())?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            // rustls reports certificate and protocol problems as an
            // `InvalidData` I/O error wrapping its own error.
            let what = match e.get_ref() {
                Some(inner) if e.kind() == io::ErrorKind::InvalidData => inner.to_string(),
                _ => e.to_string(),
            };
            Error::Tls(format!("handshake with {target} failed: {what}"))
        })
}

#[cfg(unix)]
async fn connect_unix(target: &Target, opts: &ConnectOptions) -> Result<Connection, Error> {
    let s = tokio::net::UnixStream::connect(target.path())
        .await
        .map_err(|source| Error::Connect {
            target: target.to_string(),
            source,
        })?;
    let (r, w) = s.into_split();
    Ok(from_halves(
        r,
        w,
        TransportKind::Unix,
        target.path().to_owned(),
        opts.max_payload,
    ))
}

#[cfg(not(unix))]
async fn connect_unix(target: &Target, _opts: &ConnectOptions) -> Result<Connection, Error> {
    Err(Error::Connect {
        target: target.to_string(),
        source: io::Error::new(
            io::ErrorKind::Unsupported,
            "Unix sockets are not available on this platform",
        ),
    })
}
