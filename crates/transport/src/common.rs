//! What every target shares, the browser included: the kinds of
//! transport and the default limits.

use std::fmt;
use std::time::Duration;

/// The default receive limit for a package's payload: 64 MiB, well above a
/// node's default `result_size_limit` of 20 MiB.
pub const DEFAULT_MAX_RECV_PAYLOAD: u32 = 64 * 1024 * 1024;

/// The default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which way in a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TransportKind {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket (`ws://`).
    Ws,
    /// Secure WebSocket (`wss://`).
    Wss,
    /// Unix domain socket.
    Unix,
    /// A byte stream given to `Connection::from_stream`.
    Custom,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Tls => "tls",
            TransportKind::Ws => "ws",
            TransportKind::Wss => "wss",
            TransportKind::Unix => "unix",
            TransportKind::Custom => "custom",
        })
    }
}
