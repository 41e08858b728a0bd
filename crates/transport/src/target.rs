//! Where to connect: a typed address parsed from a string.
//!
//! | form | kind | default port |
//! |---|---|---|
//! | `host:port`, `host`, `[::1]:9200` | [`TransportKind::Tcp`] | 9200 |
//! | `thingsdb://host[:port][/]` | [`TransportKind::Tcp`] | 9200 |
//! | `thingsdbs://host[:port][/]` | [`TransportKind::Tls`] (TLS over TCP) | 9200 |
//! | `ws://host[:port][/path]` | [`TransportKind::Ws`] | 9270 |
//! | `wss://host[:port][/path]` | [`TransportKind::Wss`] | 9270 |
//! | `unix:/path/to/socket`, `unix:///path/to/socket` | [`TransportKind::Unix`] | — |
//!
//! 9200 is a node's default client port (`listen_client_port`) and 9270 the
//! port a node's WebSocket listener (`ws_port`) usually gets; a node has no
//! WebSocket listener unless it is configured. Schemes are case-insensitive.
//! A WebSocket path defaults to `/`; a query string, if any, is kept as part
//! of the path.
//!
//! ```
//! use thingsdb_transport::{Target, TransportKind};
//! let t: Target = "wss://db.example.com/ws".parse()?;
//! assert_eq!(t, Target::wss("db.example.com", 9270, "/ws"));
//! assert_eq!(t.to_string(), "wss://db.example.com:9270/ws");
//!
//! let t = Target::parse("[::1]:9201")?;
//! assert_eq!((t.kind(), t.host(), t.port()), (TransportKind::Tcp, Some("::1"), Some(9201)));
//! assert_eq!(t.to_string(), "thingsdb://[::1]:9201");
//!
//! assert_eq!(Target::parse("unix:///run/ti.sock")?, Target::Unix("/run/ti.sock".into()));
//!
//! let e = Target::parse("http://localhost").unwrap_err();
//! assert!(e.to_string().contains("unknown scheme \"http\""));
//! # Ok::<(), thingsdb_transport::Error>(())
//! ```

use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Error;
use crate::transport::TransportKind;

/// A node's default client port (TCP and TLS).
pub const DEFAULT_PORT: u16 = 9200;

/// The port assumed for `ws://` and `wss://` targets without one.
pub const DEFAULT_WS_PORT: u16 = 9270;

/// A parsed address of a ThingsDB node: which transport, and where.
///
/// Parse one with [`Target::parse`] or [`str::parse`], or build one with
/// [`Target::tcp`], [`Target::tls`], [`Target::ws`], [`Target::wss`] or
/// [`Target::unix`] (which normalise the host and path as the parser does).
/// [`Display`](fmt::Display) gives the canonical URI form, which parses
/// back to the same target.
///
/// ```
/// use thingsdb_transport::Target;
/// match "wss://db.example.com/ws".parse::<Target>()? {
///     Target::Wss { host, port, path } => assert_eq!((&*host, port, &*path), ("db.example.com", 9270, "/ws")),
///     other => panic!("{other}"),
/// }
/// # Ok::<(), thingsdb_transport::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// Plain TCP (`host:port`, `thingsdb://host:port`).
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
    },
    /// TLS over TCP (`thingsdbs://host:port`).
    Tls {
        /// Host name or IP address (IPv6 without brackets); also the name
        /// the certificate is checked against unless
        /// [`TlsOptions::server_name`](crate::TlsOptions::server_name) says otherwise.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// WebSocket (`ws://host:port/path`).
    Ws {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
        /// Request path, starting with `/` (a query string is part of it).
        path: String,
    },
    /// Secure WebSocket (`wss://host:port/path`).
    Wss {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
        /// Request path, starting with `/`.
        path: String,
    },
    /// A Unix domain socket (`unix:/path`).
    Unix(PathBuf),
}

/// `s` with any `user:password@` part of its authority replaced, so that an
/// error message never repeats a secret.
fn redact_userinfo(s: &str) -> String {
    let (scheme, rest) = match s.find("://") {
        Some(i) => (&s[..i + 3], &s[i + 3..]),
        None => ("", s),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}<redacted>@{}", &rest[at + 1..]),
        None => s.to_owned(),
    }
}

/// An IPv6 host given in brackets, without them.
fn bare_host(host: String) -> String {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) => inner.to_owned(),
        None => host,
    }
}

impl Target {
    /// Parses a target string (see the [module documentation](self) for
    /// the accepted forms). The error names what is wrong.
    pub fn parse(s: &str) -> Result<Target, Error> {
        parse(s).map_err(|reason| Error::InvalidTarget {
            target: redact_userinfo(s),
            reason,
        })
    }

    /// Plain TCP to `host:port`. The host is not checked; an IPv6 address
    /// may be given with or without brackets.
    pub fn tcp(host: impl Into<String>, port: u16) -> Target {
        Target::Tcp {
            host: bare_host(host.into()),
            port,
        }
    }

    /// TLS over TCP to `host:port`.
    pub fn tls(host: impl Into<String>, port: u16) -> Target {
        Target::Tls {
            host: bare_host(host.into()),
            port,
        }
    }

    /// WebSocket to `ws://host:port/path`; an empty path means `/`, and a
    /// path without a leading `/` gets one.
    pub fn ws(host: impl Into<String>, port: u16, path: impl Into<String>) -> Target {
        Target::Ws {
            host: bare_host(host.into()),
            port,
            path: ws_path(path.into()),
        }
    }

    /// Secure WebSocket to `wss://host:port/path`.
    pub fn wss(host: impl Into<String>, port: u16, path: impl Into<String>) -> Target {
        Target::Wss {
            host: bare_host(host.into()),
            port,
            path: ws_path(path.into()),
        }
    }

    /// A Unix domain socket at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> Target {
        Target::Unix(path.into())
    }

    /// Which transport the target uses.
    pub fn kind(&self) -> TransportKind {
        match self {
            Target::Tcp { .. } => TransportKind::Tcp,
            Target::Tls { .. } => TransportKind::Tls,
            Target::Ws { .. } => TransportKind::Ws,
            Target::Wss { .. } => TransportKind::Wss,
            Target::Unix(_) => TransportKind::Unix,
        }
    }

    /// The host name or IP address (an IPv6 address without brackets);
    /// `None` for a Unix socket.
    pub fn host(&self) -> Option<&str> {
        match self {
            Target::Tcp { host, .. }
            | Target::Tls { host, .. }
            | Target::Ws { host, .. }
            | Target::Wss { host, .. } => Some(host),
            Target::Unix(_) => None,
        }
    }

    /// The TCP port; `None` for a Unix socket.
    pub fn port(&self) -> Option<u16> {
        match self {
            Target::Tcp { port, .. }
            | Target::Tls { port, .. }
            | Target::Ws { port, .. }
            | Target::Wss { port, .. } => Some(*port),
            Target::Unix(_) => None,
        }
    }

    /// Whether the transport is encrypted (TLS or secure WebSocket).
    pub fn is_secure(&self) -> bool {
        matches!(self, Target::Tls { .. } | Target::Wss { .. })
    }

    /// The host as it goes in a URI or `host:port`: IPv6 in brackets.
    pub(crate) fn host_for_uri(host: &str) -> String {
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        }
    }
}

fn ws_path(p: String) -> String {
    if p.starts_with('/') {
        p
    } else {
        format!("/{p}")
    }
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(s: &str) -> Result<Target, Error> {
        Target::parse(s)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp { host, port } => {
                write!(f, "thingsdb://{}:{port}", Target::host_for_uri(host))
            }
            Target::Tls { host, port } => {
                write!(f, "thingsdbs://{}:{port}", Target::host_for_uri(host))
            }
            Target::Ws { host, port, path } => {
                write!(f, "ws://{}:{port}{path}", Target::host_for_uri(host))
            }
            Target::Wss { host, port, path } => {
                write!(f, "wss://{}:{port}{path}", Target::host_for_uri(host))
            }
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

const SCHEMES: &str = "thingsdb://, thingsdbs://, ws://, wss:// or unix:";

fn parse(s: &str) -> Result<Target, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty address".into());
    }
    if let Some(rest) = strip_prefix_ci(s, "unix:") {
        return parse_unix(rest);
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        if s.starts_with('/') {
            return Err(format!(
                "a socket path needs the unix: prefix, as in \"unix:{s}\""
            ));
        }
        // Bare `host[:port]`: TCP.
        let (host, port) = parse_authority(s, DEFAULT_PORT)?;
        return Ok(Target::Tcp { host, port });
    };
    let kind = match scheme.to_ascii_lowercase().as_str() {
        "thingsdb" | "tcp" => TransportKind::Tcp,
        "thingsdbs" | "tls" => TransportKind::Tls,
        "ws" => TransportKind::Ws,
        "wss" => TransportKind::Wss,
        "" => {
            return Err(format!(
                "missing scheme before \"://\" (expected {SCHEMES})"
            ))
        }
        _ => return Err(format!("unknown scheme \"{scheme}\" (expected {SCHEMES})")),
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if path.contains('#') {
        return Err("a fragment (\"#...\") is not allowed".into());
    }
    let is_ws = matches!(kind, TransportKind::Ws | TransportKind::Wss);
    let default_port = if is_ws { DEFAULT_WS_PORT } else { DEFAULT_PORT };
    let (host, port) = parse_authority(authority, default_port)?;
    if !(is_ws || path.is_empty() || path == "/") {
        return Err(format!(
            "a path (\"{path}\") is only allowed for ws:// and wss:// targets"
        ));
    }
    let path = ws_path(path.to_owned());
    Ok(match kind {
        TransportKind::Tls => Target::Tls { host, port },
        TransportKind::Ws => Target::Ws { host, port, path },
        TransportKind::Wss => Target::Wss { host, port, path },
        _ => Target::Tcp { host, port },
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

fn parse_unix(rest: &str) -> Result<Target, String> {
    let path = match rest.strip_prefix("//") {
        // `unix:///path`: an empty authority, then the path.
        Some(p) if p.starts_with('/') => p,
        Some("") => "",
        Some(p) => {
            return Err(format!(
                "a unix: target has no host; write \"unix:/{p}\" or \"unix:///{p}\" for an absolute path"
            ))
        }
        None => rest,
    };
    if path.is_empty() {
        return Err("empty Unix socket path after \"unix:\"".into());
    }
    if path.contains('\0') {
        return Err("the Unix socket path contains a NUL byte".into());
    }
    Ok(Target::unix(path))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn parse_authority(a: &str, default_port: u16) -> Result<(String, u16), String> {
    if a.is_empty() {
        return Err("missing host".into());
    }
    if a.contains('@') {
        return Err("credentials in the address (\"user@host\") are not supported".into());
    }
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Err("missing \"]\" after the IPv6 address".into());
        };
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(format!("\"{v6}\" is not a valid IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(format!("unexpected \"{p}\" after \"[{v6}]\"")),
            },
        };
        (v6, port)
    } else {
        match a.split_once(':') {
            Some((h, p)) => {
                if p.contains(':') {
                    return Err("an IPv6 address must be in brackets, as in \"[::1]:9200\"".into());
                }
                (h, Some(p))
            }
            None => (a, None),
        }
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    if let Some(c) = host
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "/?#[]\\%<>\"{}|^`".contains(*c))
    {
        return Err(format!("invalid character {c:?} in host \"{host}\""));
    }
    let port = match port {
        None => default_port,
        Some("") => return Err("missing port after \":\"".into()),
        Some(p) => parse_port(p)?,
    };
    Ok((host.to_owned(), port))
}

fn parse_port(p: &str) -> Result<u16, String> {
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad port \"{p}\": not a number"));
    }
    match p.parse::<u32>() {
        Ok(n @ 1..=65535) => u16::try_from(n).map_err(|_| format!("bad port \"{p}\"")),
        _ => Err(format!("bad port \"{p}\": must be 1-65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_repeat_userinfo() {
        let e = Target::parse("ws://admin:secret@host:9270/")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
        let e = Target::parse("admin:secret@host:9200")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
        assert_eq!(redact_userinfo("ws://host:1/a@b"), "ws://host:1/a@b");
    }

    fn ok(s: &str) -> Target {
        match Target::parse(s) {
            Ok(t) => t,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn err(s: &str) -> String {
        match Target::parse(s) {
            Ok(t) => panic!("{s} parsed as {t:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn forms() {
        let cases: &[(&str, TransportKind, &str, u16, &str, &str)] = &[
            (
                "localhost:9200",
                TransportKind::Tcp,
                "localhost",
                9200,
                "",
                "thingsdb://localhost:9200",
            ),
            (
                "localhost",
                TransportKind::Tcp,
                "localhost",
                9200,
                "",
                "thingsdb://localhost:9200",
            ),
            (
                "thingsdb://h",
                TransportKind::Tcp,
                "h",
                9200,
                "",
                "thingsdb://h:9200",
            ),
            (
                "ThingsDB://h:1/",
                TransportKind::Tcp,
                "h",
                1,
                "",
                "thingsdb://h:1",
            ),
            (
                "thingsdbs://h",
                TransportKind::Tls,
                "h",
                9200,
                "",
                "thingsdbs://h:9200",
            ),
            (
                "ws://h:9270",
                TransportKind::Ws,
                "h",
                9270,
                "/",
                "ws://h:9270/",
            ),
            ("ws://h", TransportKind::Ws, "h", 9270, "/", "ws://h:9270/"),
            (
                "wss://h:443/a/b?x=1",
                TransportKind::Wss,
                "h",
                443,
                "/a/b?x=1",
                "wss://h:443/a/b?x=1",
            ),
            (
                "ws://h?x",
                TransportKind::Ws,
                "h",
                9270,
                "/?x",
                "ws://h:9270/?x",
            ),
            (
                "[::1]:9200",
                TransportKind::Tcp,
                "::1",
                9200,
                "",
                "thingsdb://[::1]:9200",
            ),
            (
                "[::1]",
                TransportKind::Tcp,
                "::1",
                9200,
                "",
                "thingsdb://[::1]:9200",
            ),
            (
                "wss://[fe80::1]:1/",
                TransportKind::Wss,
                "fe80::1",
                1,
                "/",
                "wss://[fe80::1]:1/",
            ),
            (
                "unix:/tmp/s.sock",
                TransportKind::Unix,
                "",
                0,
                "/tmp/s.sock",
                "unix:/tmp/s.sock",
            ),
            (
                "unix:///tmp/s.sock",
                TransportKind::Unix,
                "",
                0,
                "/tmp/s.sock",
                "unix:/tmp/s.sock",
            ),
            (
                "UNIX:rel.sock",
                TransportKind::Unix,
                "",
                0,
                "rel.sock",
                "unix:rel.sock",
            ),
            (
                " 127.0.0.1:65535 ",
                TransportKind::Tcp,
                "127.0.0.1",
                65535,
                "",
                "thingsdb://127.0.0.1:65535",
            ),
        ];
        for (s, kind, host, port, path, shown) in cases {
            let t = ok(s);
            let got_path = match &t {
                Target::Ws { path, .. } | Target::Wss { path, .. } => path.clone(),
                Target::Unix(p) => p.display().to_string(),
                _ => String::new(),
            };
            assert_eq!(
                (
                    t.kind(),
                    t.host().unwrap_or(""),
                    t.port().unwrap_or(0),
                    &*got_path
                ),
                (*kind, *host, *port, *path),
                "{s}"
            );
            assert_eq!(t.to_string(), *shown, "{s}");
            assert_eq!(ok(&t.to_string()), t, "{s} round trip");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let cases: &[(&str, &str)] = &[
            ("", "empty address"),
            ("http://h", "unknown scheme \"http\""),
            ("://h", "missing scheme"),
            ("thingsdb://", "missing host"),
            (":9200", "missing host"),
            ("ws://:1/", "missing host"),
            ("h:70000", "bad port \"70000\": must be 1-65535"),
            ("h:0", "bad port \"0\""),
            ("h:", "missing port"),
            ("h:x1", "bad port \"x1\": not a number"),
            ("h:-1", "bad port \"-1\""),
            ("unix:", "empty Unix socket path"),
            ("unix://", "empty Unix socket path"),
            ("unix://host/x", "has no host"),
            ("::1", "IPv6 address must be in brackets"),
            ("[::1", "missing \"]\""),
            ("[zz]:1", "not a valid IPv6 address"),
            ("[::1]x", "unexpected \"x\""),
            ("thingsdb://h/path", "only allowed for ws://"),
            ("a@h:1", "credentials"),
            ("/tmp/x.sock", "needs the unix: prefix"),
            ("h h:1", "invalid character"),
            ("ws://h/#f", "fragment"),
        ];
        for (s, want) in cases {
            let e = err(s);
            assert!(e.contains(want), "{s:?}: {e:?} lacks {want:?}");
        }
    }

    #[test]
    fn constructors() {
        assert_eq!(Target::ws("h", 1, "x").to_string(), "ws://h:1/x");
        assert_eq!(Target::wss("[::1]", 1, "").to_string(), "wss://[::1]:1/");
        assert_eq!(Target::tcp("::1", 2).host(), Some("::1"));
        assert_eq!(Target::tcp("[::1]", 2).host(), Some("::1"));
        assert!(Target::tls("h", 3).is_secure());
        assert_eq!(Target::unix("/s").kind(), TransportKind::Unix);
    }
}
