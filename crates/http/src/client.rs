//! The HTTP client: its settings, the node list, and sending one request
//! with failover.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use thingsdb_client::{Auth, ConnectionLost, Error, LostReason, Scope};
use thingsdb_client::{TransportError, TransportErrorKind};
use web_time::Instant;

use crate::reply::{status_error, Body, Format};
use crate::request::{Query, Run};

/// The request timeout when none is set: as the socket client's.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a 1.9.2 node does when a query raises a custom error: it closes the
/// connection with no answer at all.
const CLOSED_WITHOUT_REPLY: &str = "the node closed the connection without answering; \
     a ThingsDB 1.9.2 node does this when the request raised a custom error \
     (codes -100 to -127, raise(err(-100, ..))), which its HTTP API cannot report";

/// A failed fetch in a browser, which tells nothing more.
const FETCH_FAILED: &str = "the browser's fetch failed before an answer: the node \
     could not be reached, or closed the connection without answering (a ThingsDB 1.9.2 \
     node does this on a custom error, codes -100 to -127), or the browser blocked the \
     answer (a node sends no CORS headers: a page from another origin needs a proxy \
     that adds them); the request may have run";

/// Builds an [`HttpClient`]; see [`HttpClient::builder`].
#[derive(Debug, Clone)]
pub struct HttpClientBuilder {
    urls: Vec<String>,
    auth: Option<Auth>,
    scope: Scope,
    timeout: Duration,
    format: Format,
    #[cfg(not(target_arch = "wasm32"))]
    connect_timeout: Duration,
    #[cfg(not(target_arch = "wasm32"))]
    pool_idle_timeout: Option<Duration>,
    #[cfg(not(target_arch = "wasm32"))]
    pool_max_idle_per_node: usize,
    #[cfg(not(target_arch = "wasm32"))]
    tls: Option<thingsdb_transport::TlsOptions>,
}

impl Default for HttpClientBuilder {
    fn default() -> Self {
        HttpClientBuilder {
            urls: Vec::new(),
            auth: None,
            scope: Scope::thingsdb(),
            timeout: DEFAULT_TIMEOUT,
            format: Format::MessagePack,
            #[cfg(not(target_arch = "wasm32"))]
            connect_timeout: Duration::from_secs(10),
            #[cfg(not(target_arch = "wasm32"))]
            pool_idle_timeout: Some(Duration::from_secs(90)),
            #[cfg(not(target_arch = "wasm32"))]
            pool_max_idle_per_node: 32,
            #[cfg(not(target_arch = "wasm32"))]
            tls: None,
        }
    }
}

/// Checks a node URL (`http://host:9210` or `https://...`, no path, query
/// or fragment) and returns it without a trailing `/`.
pub(crate) fn base_url(url: &str) -> Result<String, Error> {
    let bad = |why: &str| Error::BadArgument(format!("invalid node URL {url:?}: {why}"));
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if parsed.host_str().is_none() {
        return Err(bad("no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("a query or fragment has no meaning here"));
    }
    let path = parsed.path();
    Ok(format!(
        "{}{}",
        parsed.origin().ascii_serialization(),
        path.trim_end_matches('/')
    ))
}

/// The URL path a node reads as `scope`: `/thingsdb`, `/node`,
/// `/node/ID`, `/collection/NAME`.
///
/// ```
/// use thingsdb_client::Scope;
/// use thingsdb_http::scope_path;
/// assert_eq!(scope_path(&Scope::parse("//stuff")?), "/collection/stuff");
/// assert_eq!(scope_path(&Scope::parse("@t")?), "/thingsdb");
/// assert_eq!(scope_path(&Scope::parse("@node:2")?), "/node/2");
/// # Ok::<(), thingsdb_client::Error>(())
/// ```
pub fn scope_path(scope: &Scope) -> String {
    if let Some(name) = scope.collection_name() {
        return format!("/collection/{name}");
    }
    match scope.node_id() {
        Some(Some(id)) => format!("/node/{id}"),
        Some(None) => "/node".into(),
        None => "/thingsdb".into(),
    }
}

impl HttpClientBuilder {
    /// Adds a node's HTTP API address, `http://host:9210` (or `https://`
    /// through a proxy that terminates TLS; a path prefix is kept, for a
    /// proxy that serves the API below one). Requests go to the first
    /// node; on a connection error or a `503` the next one is tried.
    pub fn url(mut self, url: &str) -> Result<Self, Error> {
        self.urls.push(base_url(url)?);
        Ok(self)
    }

    /// Adds several node addresses, as [`url`](Self::url).
    pub fn urls<'u>(mut self, urls: impl IntoIterator<Item = &'u str>) -> Result<Self, Error> {
        for u in urls {
            self = self.url(u)?;
        }
        Ok(self)
    }

    /// The credentials: a user name and password (HTTP `Basic`) or a token
    /// (`Authorization: Token ...`). Without them a node answers `401`.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// The scope of requests that name none (default `@thingsdb`).
    pub fn default_scope(mut self, scope: &str) -> Result<Self, Error> {
        self.scope = Scope::parse(scope)?;
        Ok(self)
    }

    /// How long a request may take, trying other nodes included (default
    /// 60 s). A request that runs out of time fails with
    /// [`Error::Timeout`]; it may still run on the node.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The body format (default [`Format::MessagePack`]).
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// How long connecting to a node may take before the next one is
    /// tried (default 10 s). Not in a browser, which has its own.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long an idle kept-alive connection stays in the pool (default
    /// 90 s; `None`: for ever). Not in a browser, which pools itself.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn pool_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// How many idle connections to keep per node (default 32; 0 makes
    /// every request open a connection of its own).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn pool_max_idle_per_node(mut self, n: usize) -> Self {
        self.pool_max_idle_per_node = n;
        self
    }

    /// TLS settings for `https://` nodes (default: the compiled-in Mozilla
    /// roots). Not in a browser, which does TLS itself.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn tls(mut self, tls: thingsdb_transport::TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Builds the client. Nothing is connected yet: connections are made
    /// by the first requests and then kept alive.
    pub fn build(self) -> Result<HttpClient, Error> {
        if self.urls.is_empty() {
            return Err(Error::BadArgument("no node URL given".into()));
        }
        let auth = match &self.auth {
            None => None,
            Some(a) => Some(auth_header(a)?),
        };
        let http = self.http_client()?;
        Ok(HttpClient {
            inner: Arc::new(Inner {
                http,
                urls: self.urls,
                current: AtomicUsize::new(0),
                auth,
                scope: self.scope,
                timeout: self.timeout,
                format: self.format,
            }),
        })
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn http_client(&self) -> Result<reqwest::Client, Error> {
        let tls = self.tls.clone().unwrap_or_default().client_config()?;
        reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .http1_only()
            .no_proxy()
            .tcp_nodelay(true)
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_node)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                Error::Transport(
                    crate::reply::http_error(format!("cannot set up the HTTP client: {e}"))
                        .with_source(e),
                )
            })
    }

    #[cfg(target_arch = "wasm32")]
    fn http_client(&self) -> Result<reqwest::Client, Error> {
        reqwest::Client::builder().build().map_err(|e| {
            Error::Transport(
                crate::reply::http_error(format!("cannot set up the HTTP client: {e}"))
                    .with_source(e),
            )
        })
    }
}

/// The `Authorization` header for `auth`, marked sensitive.
pub(crate) fn auth_header(auth: &Auth) -> Result<HeaderValue, Error> {
    use base64::Engine as _;
    let text = match auth {
        Auth::Token(t) => format!("Token {t}"),
        Auth::Password { user, password } => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ),
    };
    let mut v = HeaderValue::from_str(&text).map_err(|_| {
        Error::BadArgument("the credentials hold characters a header cannot carry".into())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

struct Inner {
    http: reqwest::Client,
    urls: Vec<String>,
    /// The node requests go to first: the last one that answered.
    current: AtomicUsize,
    auth: Option<HeaderValue>,
    scope: Scope,
    timeout: Duration,
    format: Format,
}

/// A client for a node's HTTP API (`http_api_port`, usually 9210): queries
/// and procedure calls as plain HTTP requests on kept-alive connections.
/// Cheap to clone; use it from many tasks at once.
///
/// It answers as [`thingsdb_client::Client`] does: the same builders
/// (`query(..).var(..)`, `run(..).arg(..)`), results as [`rmpv::Value`] or
/// any serde type, and the node's refusals as the same
/// [`Error::Thingsdb`] with the same [`thingsdb_client::ErrorCode`].
/// Unlike a socket there are no rooms or events.
///
/// ```no_run
/// use thingsdb_client::Auth;
/// use thingsdb_http::HttpClient;
///
/// # async fn demo() -> Result<(), thingsdb_client::Error> {
/// let client = HttpClient::builder()
///     .url("http://node1:9210")?
///     .url("http://node2:9210")?
///     .auth(Auth::password("admin", "pass"))
///     .default_scope("//stuff")?
///     .build()?;
/// let sum: i64 = client.query("a + b;").var("a", &1).var("b", &2).decode().await?;
/// assert_eq!(sum, 3);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("urls", &self.inner.urls)
            .field("scope", &self.inner.scope)
            .field("format", &self.inner.format)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A builder: add node URLs, credentials, a default scope, timeouts.
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder::default()
    }

    /// A client for one node with credentials and the defaults.
    ///
    /// ```
    /// use thingsdb_client::Auth;
    /// let c = thingsdb_http::HttpClient::new("http://localhost:9210", Auth::token("tok"))?;
    /// assert_eq!(c.urls(), ["http://localhost:9210"]);
    /// # Ok::<(), thingsdb_client::Error>(())
    /// ```
    pub fn new(url: &str, auth: Auth) -> Result<HttpClient, Error> {
        HttpClient::builder().url(url)?.auth(auth).build()
    }

    /// Runs `code`; see [`Query`].
    pub fn query<'a>(&'a self, code: &'a str) -> Query<'a> {
        Query::new(self, code)
    }

    /// Calls the procedure `name`; see [`Run`].
    pub fn run<'a>(&'a self, name: &'a str) -> Run<'a> {
        Run::new(self, name)
    }

    /// The node URLs, in order.
    pub fn urls(&self) -> &[String] {
        &self.inner.urls
    }

    /// The URL requests go to first: the node that answered last.
    pub fn current_url(&self) -> &str {
        let i = self.inner.current.load(Ordering::Relaxed);
        &self.inner.urls[i % self.inner.urls.len()]
    }

    pub(crate) fn scope(&self) -> &Scope {
        &self.inner.scope
    }

    pub(crate) fn format(&self) -> Format {
        self.inner.format
    }

    /// Sends `body` to each node in turn, from the current one, until one
    /// answers with something other than `503`, within the timeout.
    pub(crate) async fn post(
        &self,
        scope: &Scope,
        format: Format,
        body: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Body, Error> {
        let inner = &self.inner;
        let timeout = timeout.unwrap_or(inner.timeout);
        let start = Instant::now();
        let path = scope_path(scope);
        let n = inner.urls.len();
        let first = inner.current.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let at = (first + i) % n;
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(Error::Timeout(timeout));
            }
            let mut req = inner
                .http
                .post(format!("{}{path}", inner.urls[at]))
                .header(CONTENT_TYPE, format.content_type())
                .body(body.clone())
                .timeout(left);
            if let Some(a) = &inner.auth {
                req = req.header(AUTHORIZATION, a.clone());
            }
            match exchange(req, timeout).await {
                Ok((200, ct, bytes)) => {
                    inner.current.store(at, Ordering::Relaxed);
                    if ct.as_deref() != Some(format.content_type()) {
                        return Err(Error::Transport(crate::reply::http_error(format!(
                            "the node answered 200 with content type {ct:?}, not {}",
                            format.content_type()
                        ))));
                    }
                    return Ok(Body { format, bytes });
                }
                Ok((503, _, bytes)) => last = Some(status_error(503, &bytes)),
                Ok((status, _, bytes)) => {
                    inner.current.store(at, Ordering::Relaxed);
                    return Err(status_error(status, &bytes));
                }
                Err(Attempt::NotSent(e)) => last = Some(e),
                Err(Attempt::Failed(e)) => {
                    // In a browser a connection error cannot be told from a
                    // connection lost after sending: never resend, but start
                    // at the next node next time.
                    if cfg!(target_arch = "wasm32") && n > 1 {
                        inner.current.store((at + 1) % n, Ordering::Relaxed);
                    }
                    return Err(e);
                }
            }
            inner.current.store((at + 1) % n, Ordering::Relaxed);
        }
        Err(last.unwrap_or(Error::Timeout(timeout)))
    }
}

/// How one attempt failed.
pub(crate) enum Attempt {
    /// The request never reached the node (no connection): safe to send to
    /// another.
    NotSent(Error),
    /// The request may have reached the node.
    Failed(Error),
}

/// Sends one request; its status, content type and body.
pub(crate) async fn exchange(
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<(u16, Option<String>, Bytes), Attempt> {
    let resp = req.send().await.map_err(|e| classify(e, timeout))?;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = resp.bytes().await.map_err(|e| classify(e, timeout))?;
    Ok((status, ct, bytes))
}

/// The client error for a failed exchange.
fn classify(e: reqwest::Error, timeout: Duration) -> Attempt {
    if e.is_timeout() {
        return Attempt::Failed(Error::Timeout(timeout));
    }
    let chain = error_chain(&e);
    if is_connect(&e) {
        let kind = if refused(&e) {
            TransportErrorKind::Refused
        } else {
            TransportErrorKind::Connect
        };
        return Attempt::NotSent(Error::Transport(
            TransportError::new(kind, format!("cannot connect: {chain}")).with_source(e),
        ));
    }
    let (reason, what) = if cfg!(target_arch = "wasm32") {
        (LostReason::Other, FETCH_FAILED)
    } else if closed_without_answer(&e) {
        (LostReason::ClosedByPeer, CLOSED_WITHOUT_REPLY)
    } else {
        (
            LostReason::Io,
            "the connection failed before the node answered; the request may have run",
        )
    };
    Attempt::Failed(Error::ConnectionLost(
        ConnectionLost::new(reason, format!("{what} ({chain})")).with_source(e),
    ))
}

/// Whether connecting failed, so the request was never sent.
#[cfg(not(target_arch = "wasm32"))]
fn is_connect(e: &reqwest::Error) -> bool {
    e.is_connect()
}

/// In a browser there is no telling (see [`FETCH_FAILED`]).
#[cfg(target_arch = "wasm32")]
fn is_connect(_: &reqwest::Error) -> bool {
    false
}

/// In a browser there is no telling (see [`FETCH_FAILED`]).
#[cfg(target_arch = "wasm32")]
fn closed_without_answer(_: &reqwest::Error) -> bool {
    false
}

/// Whether the node closed the connection cleanly before its answer was
/// complete (hyper's "incomplete message"), rather than a reset.
#[cfg(not(target_arch = "wasm32"))]
fn closed_without_answer(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<hyper::Error>() {
            return h.is_incomplete_message();
        }
        cur = c.source();
    }
    false
}

/// Whether the operating system refused the connection (nothing listens
/// at the address): an I/O error of that kind among `e`'s sources.
fn refused(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        cur = c.source();
    }
    false
}

/// An error and its sources, joined by `: `.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_are_checked() {
        assert_eq!(base_url("http://h:9210").unwrap(), "http://h:9210");
        assert_eq!(base_url("http://h:9210/").unwrap(), "http://h:9210");
        assert_eq!(base_url("https://h/api/").unwrap(), "https://h/api");
        for bad in [
            "ftp://h",
            "h:9210",
            "http://h/?x=1",
            "http://h/#f",
            "thingsdb://h",
        ] {
            assert!(matches!(base_url(bad), Err(Error::BadArgument(_))), "{bad}");
        }
        assert!(HttpClient::builder().build().is_err());
    }

    #[test]
    fn auth_headers() {
        let h = auth_header(&Auth::password("admin", "pass")).unwrap();
        assert_eq!(h.to_str().unwrap(), "Basic YWRtaW46cGFzcw==");
        assert!(h.is_sensitive());
        let h = auth_header(&Auth::token("abc")).unwrap();
        assert_eq!(h.to_str().unwrap(), "Token abc");
        assert!(auth_header(&Auth::token("a\nb")).is_err());
    }

    #[test]
    fn scopes_become_paths() {
        for (s, p) in [
            ("@thingsdb", "/thingsdb"),
            ("@t", "/thingsdb"),
            ("@n", "/node"),
            ("@node:7", "/node/7"),
            ("@:stuff", "/collection/stuff"),
            ("/c/x_1", "/collection/x_1"),
        ] {
            assert_eq!(scope_path(&Scope::parse(s).unwrap()), p, "{s}");
        }
    }
}
