//! The HTTP API (`http_api_port`) and the status port (`http_status_port`)
//! of a [`TestNode`], answering as a 1.9.2 node does (`src/ti/api.c`,
//! `src/ti/web.c`; see the shared protocol notes, section 10).
//!
//! Queries and procedure calls go through the same handlers, procedures,
//! users and tokens as the node's socket requests. The node's quirks are
//! kept: a custom error (codes -100..-127, or any code outside the node's
//! status table) closes the connection without an answer; `Content-Type`
//! is compared as a whole string (`application/json; charset=utf-8` gets
//! `415`); a body is read only with a `Content-Length` (a chunked one is
//! read and dropped, so the request has an empty body); a result with
//! bytes asked for as JSON is a type error. The status port answers one
//! request per connection and closes it.
//!
//! The difference: pipelined requests are answered one after the other (a
//! node closes such a connection). Like a node, it sends no CORS headers;
//! [`CorsProxy`] in front of it (or of a real node) adds them, for browser
//! pages from another origin.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use rmpv::Value;
use thingsdb_protocol::{
    msgpack, ErrorCode, NodeStatus, PackageType, ParsedScope, Response, MAX_PAYLOAD,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};

use crate::dispatch;
use crate::node::TestNode;
use crate::state::Shared;

/// The node's `DOC_HTTP_API` suffix.
const DOC_HTTP_API: &str = "; see https://docs.thingsdb.io/v1/connect/http-api";
/// The most header bytes read before a request is given up on (a node reads
/// in chunks of `HTTP_MAX_HEADER_SIZE`, 80 KiB).
const MAX_HEAD: usize = 80 * 1024;

/// The node's welcome page for `GET /` (its text, shortened).
const HOME: &str = "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\" />\n\
<title>ThingsDB API</title>\n</head>\n<body>\n<p>\n<b>Welcome to the ThingsDB API</b>\n</p>\n\
<p>\nVisit <a href=\"https://docs.thingsdb.io\">https://docs.thingsdb.io</a> for more information\n\
</p>\n</body>\n</html>\n";

/// What the test side can change while the server runs.
struct HttpState {
    status: NodeStatus,
}

/// A [`TestNode`]'s HTTP API and status port, from
/// [`TestNode::serve_http`]. Both stop when this is dropped, or when the
/// node stops.
pub struct HttpServer {
    api: SocketAddr,
    status: SocketAddr,
    state: Arc<Mutex<HttpState>>,
    tasks: Vec<AbortHandle>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("api", &self.api)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl HttpServer {
    /// The HTTP API's address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    /// The HTTP API's URL, `http://127.0.0.1:PORT`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// The status port's address.
    pub fn status_addr(&self) -> SocketAddr {
        self.status
    }

    /// The status port's URL, `http://127.0.0.1:PORT`.
    pub fn status_url(&self) -> String {
        format!("http://{}", self.status)
    }

    /// Sets the node status both ports report: `/status` and `/ready` answer
    /// by it, and the API answers `503` while it is
    /// [`NodeStatus::ShuttingDown`]. `NodeStatus::Other("SYNCHRONIZING")`
    /// is a synchronizing node. A server starts [`NodeStatus::Ready`].
    pub fn set_status(&self, status: NodeStatus) {
        self.lock().status = status;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HttpState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl TestNode {
    /// Starts serving the HTTP API and the status port on ephemeral loopback
    /// ports, answering as a node does (see [`HttpServer`] and the module
    /// documentation of `thingsdb_testkit::http`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use thingsdb_testkit::TestNode;
    /// let node = TestNode::start().await?;
    /// let http = node.serve_http().await?;
    /// assert!(http.api_url().starts_with("http://127.0.0.1:"));
    /// # Ok(()) }
    /// ```
    pub async fn serve_http(&self) -> std::io::Result<HttpServer> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let api_l = TcpListener::bind(loopback).await?;
        let status_l = TcpListener::bind(loopback).await?;
        let (api, status) = (api_l.local_addr()?, status_l.local_addr()?);
        let state = Arc::new(Mutex::new(HttpState {
            status: NodeStatus::Ready,
        }));
        let shared = self.shared.clone();
        let tasks = vec![
            tokio::spawn(accept(shared.clone(), state.clone(), api_l, Port::Api)).abort_handle(),
            tokio::spawn(accept(shared, state.clone(), status_l, Port::Status)).abort_handle(),
        ];
        Ok(HttpServer {
            api,
            status,
            state,
            tasks,
        })
    }
}

#[derive(Clone, Copy)]
enum Port {
    Api,
    Status,
}

async fn accept(
    shared: Arc<Shared>,
    state: Arc<Mutex<HttpState>>,
    listener: TcpListener,
    port: Port,
) {
    let mut set = JoinSet::new();
    let cancel = shared.cancel.clone();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(_) = set.join_next(), if !set.is_empty() => {}
            r = listener.accept() => {
                let Ok((sock, _)) = r else { continue };
                let _ = sock.set_nodelay(true);
                let (shared, state) = (shared.clone(), state.clone());
                set.spawn(async move {
                    let _ = match port {
                        Port::Api => serve_api(&shared, &state, sock).await,
                        Port::Status => serve_status(&state, sock).await,
                    };
                });
            }
        }
    }
}

/// One parsed request.
struct Request {
    method: String,
    path: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: Bytes,
}

/// Reads the next request; `None` at a clean end of the connection or on
/// bytes that are not HTTP (a node closes the connection then).
async fn read_request<R: AsyncRead + Unpin>(io: &mut R, buf: &mut BytesMut) -> Option<Request> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let mut r = Request {
                    method: req.method.unwrap_or("").to_string(),
                    path: req.path.unwrap_or("").to_string(),
                    content_type: None,
                    authorization: None,
                    body: Bytes::new(),
                };
                let mut length = None;
                let mut chunked = false;
                for h in req.headers.iter() {
                    let value = || String::from_utf8_lossy(h.value).into_owned();
                    if h.name.eq_ignore_ascii_case("content-type") {
                        r.content_type = Some(value());
                    } else if h.name.eq_ignore_ascii_case("authorization") {
                        r.authorization = Some(value());
                    } else if h.name.eq_ignore_ascii_case("content-length") {
                        length = Some(value().trim().parse::<usize>().ok()?);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = value().to_ascii_lowercase().contains("chunked");
                    }
                }
                let _ = buf.split_to(head_len);
                if chunked {
                    // Read and dropped: a node keeps a body only with a
                    // Content-Length.
                    skip_chunked(io, buf).await?;
                } else if let Some(n) = length {
                    if n > MAX_PAYLOAD as usize {
                        return None;
                    }
                    while buf.len() < n {
                        if io.read_buf(buf).await.ok()? == 0 {
                            return None;
                        }
                    }
                    r.body = buf.split_to(n).freeze();
                }
                return Some(r);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {
                if io.read_buf(buf).await.ok()? == 0 {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// Reads a chunked body to its end.
async fn skip_chunked<R: AsyncRead + Unpin>(io: &mut R, buf: &mut BytesMut) -> Option<()> {
    loop {
        match httparse::parse_chunk_size(buf) {
            Ok(httparse::Status::Complete((at, size))) => {
                let size = usize::try_from(size).ok()?;
                // The chunk, then its CRLF.
                let need = at.checked_add(size)?.checked_add(2)?;
                while buf.len() < need {
                    if io.read_buf(buf).await.ok()? == 0 {
                        return None;
                    }
                }
                let _ = buf.split_to(need);
                if size == 0 {
                    return Some(());
                }
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD || io.read_buf(buf).await.ok()? == 0 {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
}

/// An answer: the status line's text, the content type, the body.
struct Answer {
    status: &'static str,
    content_type: &'static str,
    body: Bytes,
}

impl Answer {
    fn plain(status: &'static str, body: &'static str) -> Answer {
        Answer {
            status,
            content_type: "text/plain",
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

const CORS_HEADERS: &str = "Access-Control-Allow-Origin: *\r\n\
Access-Control-Allow-Methods: POST, GET, OPTIONS\r\n\
Access-Control-Allow-Headers: Authorization, Content-Type\r\n\
Access-Control-Max-Age: 600\r\n";

const E400: &str = "400 Bad Request";
const E401: &str = "401 Unauthorized";
const E403: &str = "403 Forbidden";
const E404: &str = "404 Not Found";
const E405: &str = "405 Method Not Allowed";
const E415: &str = "415 Unsupported Media Type";
const E422: &str = "422 Unprocessable Entity";
const E500: &str = "500 Internal Server Error";
const E503: &str = "503 Service Unavailable";

async fn serve_api(
    shared: &Shared,
    state: &Mutex<HttpState>,
    mut sock: TcpStream,
) -> std::io::Result<()> {
    let conn = {
        let mut st = shared.lock();
        st.next_conn_id += 1;
        st.next_conn_id - 1
    };
    let mut buf = BytesMut::with_capacity(4096);
    while let Some(req) = read_request(&mut sock, &mut buf).await {
        let status = state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .status
            .clone();
        match api_answer(shared, conn, &status, &req) {
            Some(a) => sock.write_all(&a.encode()).await?,
            // The node's custom-error bug: no answer, the connection closes.
            None => return Ok(()),
        }
    }
    Ok(())
}

/// What the node answers to `req`; `None` when it closes the connection
/// instead.
fn api_answer(shared: &Shared, conn: u64, status: &NodeStatus, req: &Request) -> Option<Answer> {
    if req.method == "GET" && req.path == "/" {
        return Some(Answer {
            status: "200 OK",
            content_type: "text/html",
            body: Bytes::from_static(HOME.as_bytes()),
        });
    }
    if req.method != "POST" {
        return Some(Answer::plain(E405, "METHOD NOT ALLOWED\r\n"));
    }
    let Ok(scope) = ParsedScope::parse(&req.path).map(ParsedScope::into_owned) else {
        return Some(Answer::plain(E404, "NOT FOUND\r\n"));
    };
    if !authenticated(shared, req.authorization.as_deref()) {
        return Some(Answer::plain(E401, "UNAUTHORIZED\r\n"));
    }
    if *status == NodeStatus::ShuttingDown {
        return Some(Answer::plain(E503, "SERVICE UNAVAILABLE\r\n"));
    }
    let json = match req.content_type.as_deref().map(str::to_ascii_lowercase) {
        Some(ct) if ct == "application/msgpack" || ct == "application/x-msgpack" => false,
        Some(ct) if ct == "application/json" || ct == "text/json" => true,
        _ => return Some(Answer::plain(E415, "UNSUPPORTED MEDIA TYPE\r\n")),
    };
    let request = if json {
        // JSON that does not parse (even an empty body) reaches the node's
        // request reader and is an invalid API request there (seen).
        match serde_json::from_slice::<serde_json::Value>(&req.body) {
            Ok(v) => from_json(&v),
            Err(_) => Value::Nil,
        }
    } else {
        let mut r = msgpack::Reader::new(&req.body);
        match r
            .skip_value()
            .ok()
            .and_then(|s| thingsdb_protocol::decode_value(s).ok())
        {
            Some(v) => v,
            None => Value::Nil,
        }
    };
    let frame = match api_request(shared, conn, &scope, request) {
        Ok(f) => f,
        Err((code, message)) => return error_answer(code, &message),
    };
    match frame.package_type() {
        Ok(PackageType::Data) if !json => Some(Answer {
            status: "200 OK",
            content_type: "application/msgpack",
            body: frame.payload.clone(),
        }),
        Ok(PackageType::Data) => match to_json(&frame.payload) {
            Ok(body) => Some(Answer {
                status: "200 OK",
                content_type: "application/json",
                body,
            }),
            Err((code, message)) => error_answer(code, message),
        },
        _ => match Response::decode(&frame) {
            Ok(Response::Error(e)) => error_answer(e.code, &e.message),
            _ => error_answer(ErrorCode::Internal, "internal error"),
        },
    }
}

/// The node's `invalid API request` error.
fn invalid() -> (ErrorCode, String) {
    (
        ErrorCode::BadData,
        format!("invalid API request{DOC_HTTP_API}"),
    )
}

/// Runs a query or a procedure call from the body map, through the same
/// code as a socket request; the reply frame.
fn api_request(
    shared: &Shared,
    conn: u64,
    scope: &ParsedScope<String>,
    request: Value,
) -> Result<thingsdb_protocol::Frame, (ErrorCode, String)> {
    let Value::Map(pairs) = request else {
        return Err(invalid());
    };
    if pairs.len() < 2 {
        return Err(invalid());
    }
    let (mut kind, mut code, mut name, mut third) = (None, None, None, None);
    for (k, v) in pairs {
        match k.as_str() {
            Some("type") => kind = Some(v),
            Some("code") => code = Some(v),
            Some("name") => name = Some(v),
            Some("vars") if v.is_map() => third = Some(v),
            Some("args") if v.is_map() || v.is_array() => third = Some(v),
            Some("vars" | "args") => return Err(invalid()),
            Some(_) => {}
            None => return Err(invalid()),
        }
    }
    // The scope as the node writes it when it makes the request.
    let scope_str = match scope {
        ParsedScope::Thingsdb => "@t".to_string(),
        ParsedScope::Node(Some(id)) => format!("@n:{id}"),
        ParsedScope::Node(None) => "@n".to_string(),
        ParsedScope::Collection(c) => format!("@:{c}"),
    };
    let (is_query, text) = match kind.as_ref().and_then(Value::as_str) {
        Some("query") => (true, code),
        Some("run") => (false, name),
        _ => return Err(invalid()),
    };
    let Some(Value::String(text)) = text else {
        return Err(invalid());
    };
    let mut items = vec![Value::from(scope_str), Value::String(text)];
    items.extend(third);
    let mut payload = BytesMut::new();
    thingsdb_protocol::encode_value(&mut payload, &Value::Array(items));
    let r = if is_query {
        dispatch::query(shared, conn, &payload)
    } else {
        dispatch::run(shared, conn, &payload)
    };
    Ok(match r {
        Ok(r) | Err(r) => dispatch::reply_frame(shared, 0, &r),
    })
}

/// The node's error answer: a status by code and `<message> (<code>)`;
/// `None` (close the connection) for codes outside its table.
fn error_answer(code: ErrorCode, message: &str) -> Option<Answer> {
    use ErrorCode as C;
    let status = match code {
        C::BadData | C::Syntax => E400,
        C::Cancelled
        | C::Operation
        | C::NumArguments
        | C::Type
        | C::Value
        | C::Overflow
        | C::ZeroDiv
        | C::MaxQuota
        | C::Assert => E422,
        C::Auth => E401,
        C::Forbidden => E403,
        C::Lookup => E404,
        C::Node => E503,
        C::ResultTooLarge
        | C::RequestTimeout
        | C::RequestCancel
        | C::WriteUv
        | C::Memory
        | C::Internal => E500,
        _ => return None,
    };
    Some(Answer {
        status,
        content_type: "text/plain",
        body: Bytes::from(format!("{message} ({})\r\n", code.code())),
    })
}

/// Whether the `Authorization` header names a known token or user.
fn authenticated(shared: &Shared, header: Option<&str>) -> bool {
    let Some(h) = header else { return false };
    let prefix = |p: &str| {
        h.get(..p.len())
            .filter(|s| s.eq_ignore_ascii_case(p))
            .map(|_| &h[p.len()..])
    };
    let st = shared.lock();
    if let Some(tok) = prefix("Token ").or_else(|| prefix("Bearer ")) {
        return st.tokens.contains_key(tok);
    }
    if let Some(b64) = prefix("Basic ") {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let raw = String::from_utf8_lossy(&raw);
        let Some((user, pass)) = raw.split_once(':') else {
            return false;
        };
        return st.users.get(user).is_some_and(|p| p == pass);
    }
    false
}

/// A JSON body as the node reads it into MessagePack.
fn from_json(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        J::Object(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (Value::from(k.as_str()), from_json(v)))
                .collect(),
        ),
    }
}

/// A MessagePack result as the node writes it as JSON (keys in the
/// node's order): bytes and non-finite floats are type errors, as are map
/// keys that are not strings.
fn to_json(payload: &[u8]) -> Result<Bytes, (ErrorCode, &'static str)> {
    fn string(out: &mut String, s: &str) {
        out.push_str(&serde_json::Value::from(s).to_string());
    }
    fn conv(out: &mut String, v: &Value) -> Result<(), (ErrorCode, &'static str)> {
        match v {
            Value::Nil => out.push_str("null"),
            Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Integer(i) => out.push_str(&i.to_string()),
            Value::F32(f) => conv(out, &Value::F64(f64::from(*f)))?,
            Value::F64(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => out.push_str(&n.to_string()),
                None => return Err((ErrorCode::Type, "JSON invalid number")),
            },
            Value::String(s) => string(out, &String::from_utf8_lossy(s.as_bytes())),
            Value::Binary(_) => {
                return Err((ErrorCode::Type, "type `bytes` is not JSON serializable"))
            }
            Value::Array(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    conv(out, v)?;
                }
                out.push(']');
            }
            Value::Map(m) => {
                out.push('{');
                for (i, (k, v)) in m.iter().enumerate() {
                    let Some(k) = k.as_str() else {
                        return Err((ErrorCode::Type, "JSON keys must be strings"));
                    };
                    if i > 0 {
                        out.push(',');
                    }
                    string(out, k);
                    out.push(':');
                    conv(out, v)?;
                }
                out.push('}');
            }
            Value::Ext(..) => return Err((ErrorCode::Internal, "JSON general error")),
        }
        Ok(())
    }
    let v = thingsdb_protocol::decode_value(payload)
        .map_err(|_| (ErrorCode::Internal, "JSON general error"))?;
    let mut out = String::new();
    conv(&mut out, &v)?;
    Ok(Bytes::from(out))
}

/// The status port: one `GET` per connection, answered and closed.
async fn serve_status(state: &Mutex<HttpState>, mut sock: TcpStream) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(1024);
    let Some(req) = read_request(&mut sock, &mut buf).await else {
        return Ok(());
    };
    let status = state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .status
        .clone();
    let ok = Answer::plain("200 OK", "OK\n");
    let nok = Answer::plain(E503, "NOK\n");
    let answer = if req.method != "GET" {
        Answer::plain(E405, "METHOD NOT ALLOWED\n")
    } else {
        match req.path.as_str() {
            "/" | "/status" => match &status {
                NodeStatus::Ready => Answer::plain("200 OK", "READY\n"),
                NodeStatus::Away | NodeStatus::AwaySoon => Answer::plain("200 OK", "AWAY\n"),
                NodeStatus::Other(s) if s == "SYNCHRONIZING" => {
                    Answer::plain("200 OK", "SYNCHRONIZING\n")
                }
                _ => nok,
            },
            "/ready" => match &status {
                NodeStatus::Ready | NodeStatus::Away | NodeStatus::AwaySoon => ok,
                _ => nok,
            },
            "/healthy" => ok,
            _ => Answer::plain(E404, "NOT FOUND\n"),
        }
    };
    sock.write_all(&answer.encode()).await?;
    sock.shutdown().await
}

/// A proxy in front of a node's HTTP API that adds the CORS headers a node
/// never sends and answers `OPTIONS` preflights itself: what a browser
/// page from another origin needs (a test's stand-in for the reverse proxy
/// a deployment would put in front of the node). Requests are forwarded
/// with the headers a node reads (`Authorization`, `Content-Type`,
/// `Content-Length`), each client connection on an upstream connection of
/// its own; when the node closes without an answer (its custom-error bug)
/// the client's connection is closed too. It stops when dropped.
pub struct CorsProxy {
    addr: SocketAddr,
    task: AbortHandle,
}

impl std::fmt::Debug for CorsProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CorsProxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for CorsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CorsProxy {
    /// Starts a proxy on an ephemeral loopback port for the HTTP API at
    /// `upstream` (`host:port`).
    pub async fn start(upstream: impl Into<String>) -> std::io::Result<CorsProxy> {
        let upstream = upstream.into();
        let l = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = l.local_addr()?;
        let task = tokio::spawn(async move {
            let mut set = JoinSet::new();
            loop {
                tokio::select! {
                    Some(_) = set.join_next(), if !set.is_empty() => {}
                    r = l.accept() => {
                        let Ok((sock, _)) = r else { continue };
                        let up = upstream.clone();
                        set.spawn(async move { let _ = proxy_conn(sock, &up).await; });
                    }
                }
            }
        })
        .abort_handle();
        Ok(CorsProxy { addr, task })
    }

    /// The proxy's URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn proxy_conn(mut sock: TcpStream, upstream: &str) -> std::io::Result<()> {
    let mut up: Option<TcpStream> = None;
    let (mut buf, mut up_buf) = (BytesMut::new(), BytesMut::new());
    while let Some(req) = read_request(&mut sock, &mut buf).await {
        if req.method == "OPTIONS" {
            let out = format!("HTTP/1.1 204 No Content\r\n{CORS_HEADERS}Content-Length: 0\r\n\r\n");
            sock.write_all(out.as_bytes()).await?;
            continue;
        }
        let u = match &mut up {
            Some(u) => u,
            None => up.insert(TcpStream::connect(upstream).await?),
        };
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {upstream}\r\n",
            req.method, req.path
        );
        for (k, v) in [
            ("Authorization", &req.authorization),
            ("Content-Type", &req.content_type),
        ] {
            if let Some(v) = v {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", req.body.len()));
        let mut out = head.into_bytes();
        out.extend_from_slice(&req.body);
        u.write_all(&out).await?;
        let Some(answer) = read_answer(u, &mut up_buf).await else {
            // The node closed without an answer: so does the proxy.
            return Ok(());
        };
        sock.write_all(&answer).await?;
    }
    Ok(())
}

/// Reads one answer from the node and returns it with the CORS headers
/// added; `None` when the connection ends first.
async fn read_answer<R: AsyncRead + Unpin>(io: &mut R, buf: &mut BytesMut) -> Option<Vec<u8>> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let len = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| {
                        std::str::from_utf8(h.value)
                            .ok()?
                            .trim()
                            .parse::<usize>()
                            .ok()
                    })
                    .unwrap_or(0);
                while buf.len() < head_len + len {
                    if io.read_buf(buf).await.ok()? == 0 {
                        return None;
                    }
                }
                let all = buf.split_to(head_len + len);
                // The head without its blank line, the CORS headers, the
                // blank line and the body.
                let mut out = all[..head_len - 2].to_vec();
                out.extend_from_slice(CORS_HEADERS.as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&all[head_len..]);
                return Some(out);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {
                if io.read_buf(buf).await.ok()? == 0 {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_statuses_follow_the_node_table() {
        let s = |c| error_answer(c, "m").map(|a| a.status);
        assert_eq!(s(ErrorCode::ZeroDiv), Some(E422));
        assert_eq!(s(ErrorCode::Syntax), Some(E400));
        assert_eq!(s(ErrorCode::Lookup), Some(E404));
        assert_eq!(s(ErrorCode::Node), Some(E503));
        assert_eq!(s(ErrorCode::ResultTooLarge), Some(E500));
        assert_eq!(s(ErrorCode::from_code(-100)), None);
        assert_eq!(s(ErrorCode::from_code(-127)), None);
        let a = error_answer(ErrorCode::ZeroDiv, "division or modulo by zero").unwrap();
        assert_eq!(&a.body[..], b"division or modulo by zero (-58)\r\n");
    }

    #[test]
    fn results_as_json() {
        let mut p = BytesMut::new();
        thingsdb_protocol::encode_value(
            &mut p,
            &Value::Map(vec![("a".into(), Value::Array(vec![1.into(), Value::Nil]))]),
        );
        assert_eq!(&to_json(&p).unwrap()[..], br#"{"a":[1,null]}"#);
        let mut p = BytesMut::new();
        thingsdb_protocol::encode_value(&mut p, &Value::Binary(vec![1]));
        assert_eq!(to_json(&p).unwrap_err().0, ErrorCode::Type);
    }
}
