//! The HTTP API and the status port: the same raw HTTP requests sent to
//! the testkit ([`TestNode::serve_http`]) and to a real node must get the
//! same status lines, content types and bodies, and the same quirks (a
//! custom error closes the connection, a `Content-Type` with parameters is
//! `415`, a chunked body is no body, the status port closes after each
//! answer).

use std::time::Duration;

use rmpv::Value;
use thingsdb_testkit::real_node::{RealNode, SKIP_MESSAGE};
use thingsdb_testkit::{Reply, TestNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request, as raw bytes, and how much of the answer must match.
struct Case {
    what: &'static str,
    /// The request without the `Host` line (added per server).
    method: &'static str,
    path: &'static str,
    headers: Vec<String>,
    body: Vec<u8>,
    /// Compare the body exactly (else: only its `(<code>)` suffix, or
    /// nothing for a `200`).
    exact_body: bool,
    /// Send it twice on one connection (keep-alive).
    twice: bool,
}

const BASIC: &str = "Authorization: Basic YWRtaW46cGFzcw==";

fn case(what: &'static str, method: &'static str, path: &'static str) -> Case {
    Case {
        what,
        method,
        path,
        headers: Vec::new(),
        body: Vec::new(),
        exact_body: true,
        twice: false,
    }
}

impl Case {
    fn h(mut self, h: &str) -> Self {
        self.headers.push(h.to_string());
        self
    }
    fn json(self, body: &str) -> Self {
        let mut c = self.h(BASIC).h("Content-Type: application/json");
        c.body = body.as_bytes().to_vec();
        c
    }
    fn msgpack(self, v: &Value) -> Self {
        let mut c = self.h(BASIC).h("Content-Type: application/msgpack");
        rmpv::encode::write_value(&mut c.body, v).unwrap();
        c
    }
    fn loose(mut self) -> Self {
        self.exact_body = false;
        self
    }
    fn twice(mut self) -> Self {
        self.twice = true;
        self
    }
    fn bytes(&self, addr: &str, chunked: bool) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\nHost: {addr}\r\n", self.method, self.path);
        for h in &self.headers {
            out.push_str(h);
            out.push_str("\r\n");
        }
        let mut out = if chunked {
            out.push_str("Transfer-Encoding: chunked\r\n\r\n");
            let mut b = out.into_bytes();
            b.extend_from_slice(format!("{:x}\r\n", self.body.len()).as_bytes());
            b.extend_from_slice(&self.body);
            b.extend_from_slice(b"\r\n0\r\n\r\n");
            return b;
        } else {
            if self.method == "POST" {
                out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
            }
            out.push_str("\r\n");
            out.into_bytes()
        };
        out.extend_from_slice(&self.body);
        out
    }
}

fn query_map(code: &str, vars: Option<Value>) -> Value {
    let mut m = vec![
        ("type".into(), "query".into()),
        ("code".into(), code.into()),
    ];
    if let Some(v) = vars {
        m.push(("vars".into(), v));
    }
    Value::Map(m)
}

fn cases() -> Vec<Case> {
    vec![
        case("welcome page", "GET", "/").loose(),
        case("GET a scope", "GET", "/thingsdb"),
        case("OPTIONS (no CORS)", "OPTIONS", "/thingsdb").h("Origin: http://example.org"),
        case("bad scope", "POST", "/nope").json(r#"{"type":"query","code":"1;"}"#),
        case("no credentials", "POST", "/thingsdb")
            .h("Content-Type: application/json")
            .loose(),
        case("wrong password", "POST", "/thingsdb")
            .h("Authorization: Basic YWRtaW46d3Jvbmc=")
            .h("Content-Type: application/json"),
        case("wrong token", "POST", "/thingsdb")
            .h("Authorization: Token xxxxxxxxxxxxxxxxxxxxxx")
            .h("Content-Type: application/json"),
        case("no content type", "POST", "/thingsdb").h(BASIC),
        case("content type with charset", "POST", "/thingsdb")
            .h(BASIC)
            .h("Content-Type: application/json; charset=utf-8"),
        case("text/json", "POST", "/thingsdb")
            .h(BASIC)
            .h("Content-Type: text/json")
            .json_body(r#"{"type":"query","code":"1 + 1;"}"#),
        case("x-msgpack", "POST", "/thingsdb")
            .h(BASIC)
            .h("Content-Type: application/x-msgpack")
            .msgpack_body(&query_map("1 + 1;", None)),
        case("json query, kept alive", "POST", "/thingsdb")
            .json(r#"{"type":"query","code":"1 + 1;"}"#)
            .twice(),
        case("json vars", "POST", "//stuff")
            .json(r#"{"type":"query","code":"a * b;","vars":{"a":6,"b":7}}"#),
        case("msgpack vars", "POST", "/collection/stuff").msgpack(&query_map(
            "a * b;",
            Some(Value::Map(vec![
                ("a".into(), 6.into()),
                ("b".into(), 7.into()),
            ])),
        )),
        case("zero div", "POST", "/thingsdb").json(r#"{"type":"query","code":"1/0;"}"#),
        case("syntax", "POST", "/thingsdb")
            .json(r#"{"type":"query","code":"1 +;"}"#)
            .loose(),
        case("unknown collection", "POST", "//nope").json(r#"{"type":"query","code":"1;"}"#),
        case("other node", "POST", "/node/9")
            .json(r#"{"type":"query","code":"1;"}"#)
            .loose(),
        case("empty body", "POST", "/thingsdb").json(""),
        case("not json", "POST", "/thingsdb").json(r#"{"type":"#),
        case("unknown type", "POST", "/thingsdb").json(r#"{"type":"nope","code":"1;"}"#),
        case("one key", "POST", "/thingsdb").json(r#"{"type":"query"}"#),
        case("vars not a map", "POST", "/thingsdb")
            .json(r#"{"type":"query","code":"1;","vars":[1]}"#),
        case("unknown keys skipped", "POST", "/thingsdb")
            .json(r#"{"type":"query","code":"1 + 1;","extra":true}"#),
        case("run positional", "POST", "//stuff")
            .json(r#"{"type":"run","name":"add_one","args":[41]}"#),
        case("run named", "POST", "//stuff")
            .json(r#"{"type":"run","name":"add_one","args":{"x":41}}"#),
        case("run unknown", "POST", "//stuff").json(r#"{"type":"run","name":"nope"}"#),
        case("run in a node scope", "POST", "/node").json(r#"{"type":"run","name":"add_one"}"#),
        case("bytes as JSON", "POST", "/thingsdb")
            .json(r#"{"type":"query","code":"bytes('ab');"}"#),
        case("custom error", "POST", "/thingsdb")
            .json(r#"{"type":"query","code":"raise(err(-100, 'x'));"}"#),
    ]
}

impl Case {
    fn json_body(mut self, body: &str) -> Self {
        self.body = body.as_bytes().to_vec();
        self
    }
    fn msgpack_body(mut self, v: &Value) -> Self {
        rmpv::encode::write_value(&mut self.body, v).unwrap();
        self
    }
}

/// Reads one answer: `status line | content type | body`, or `closed`
/// when the connection ends before a whole answer.
async fn read_answer(s: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status = lines.next().unwrap_or("").to_string();
            let (mut ct, mut len) = (String::new(), 0usize);
            for l in lines {
                let (k, v) = l.split_once(": ").unwrap_or((l, ""));
                if k.eq_ignore_ascii_case("content-type") {
                    ct = v.to_string();
                } else if k.eq_ignore_ascii_case("content-length") {
                    len = v.parse().unwrap();
                }
            }
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 4096];
                match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => return "closed mid-body".into(),
                }
            }
            let body: Vec<u8> = buf.drain(..end + 4 + len).skip(end + 4).collect();
            return format!("{status} | {ct} | {}", show(&body));
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return "closed".into(),
            Err(_) => return "no answer (timeout)".into(),
        }
    }
}

/// A body as text, or as hex when it is MessagePack.
fn show(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(t) if !t.is_empty() && t.chars().all(|c| !c.is_control() || c == '\r' || c == '\n') => {
            format!("{t:?}")
        }
        _ => body.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// What a server answers to `c`, as comparable lines.
async fn answers(addr: &str, c: &Case, chunked: bool) -> Vec<String> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = c.bytes(addr, chunked);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for _ in 0..if c.twice { 2 } else { 1 } {
        s.write_all(&req).await.unwrap();
        out.push(normalize(
            &read_answer(&mut s, &mut buf).await,
            c.exact_body,
        ));
    }
    out
}

/// Without `exact`, a body keeps only its error code (or nothing).
fn normalize(answer: &str, exact: bool) -> String {
    if exact {
        return answer.to_string();
    }
    let mut parts = answer.splitn(3, " | ");
    let (status, ct, body) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let code = body
        .trim_end_matches('"')
        .trim_end_matches("\\r\\n")
        .rsplit_once(" (")
        .map(|(_, c)| c.trim_end_matches(')').to_string())
        .unwrap_or_default();
    format!("{status} | {ct} | code {code}")
}

/// Status port requests: method and path; each on a connection of its own,
/// which the server closes after its answer.
const STATUS_CASES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/status"),
    ("GET", "/ready"),
    ("GET", "/healthy"),
    ("GET", "/nope"),
    ("GET", "/status?x=1"),
    ("POST", "/status"),
];

async fn status_answer(addr: &str, method: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let a = read_answer(&mut s, &mut buf).await;
    // Then the server closes the connection.
    let after = read_answer(&mut s, &mut buf).await;
    format!("{a} then {after}")
}

fn testkit_setup(node: &TestNode) {
    node.procedure("add_one", |a| {
        match a.param(0, "x").and_then(Value::as_i64) {
            Some(x) => Reply::value(x + 1),
            None => Reply::error(thingsdb_protocol::ErrorCode::Type, "expecting an int"),
        }
    });
    node.on_query(|q| match q.code.as_str() {
        "raise(err(-100, 'x'));" => {
            Reply::error(thingsdb_protocol::ErrorCode::from_code(-100), "x")
        }
        "bytes('ab');" => Reply::value(Value::Binary(b"ab".to_vec())),
        _ => q.evaluate(),
    });
}

async fn all_answers(api: &str, status: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for c in cases() {
        for (i, a) in answers(api, &c, false).await.into_iter().enumerate() {
            out.push((format!("{} #{i}", c.what), a));
        }
    }
    // A chunked body is read and dropped: the request has no body.
    let c = case("chunked body", "POST", "/thingsdb").json(r#"{"type":"query","code":"1;"}"#);
    out.push((
        "chunked body".into(),
        answers(api, &c, true).await.remove(0),
    ));
    for (m, p) in STATUS_CASES {
        out.push((format!("status {m} {p}"), status_answer(status, m, p).await));
    }
    out
}

/// The testkit alone (always runs): the quirks as the node has them.
#[tokio::test]
async fn http_quirks_on_the_testkit() {
    let node = TestNode::start().await.unwrap();
    testkit_setup(&node);
    let http = node.serve_http().await.unwrap();
    let got = all_answers(
        &http.api_addr().to_string(),
        &http.status_addr().to_string(),
    )
    .await;
    let find = |what: &str| {
        got.iter()
            .find(|(w, _)| w == what)
            .map(|(_, a)| a.clone())
            .unwrap()
    };
    assert_eq!(find("custom error #0"), "closed");
    assert!(find("content type with charset #0").starts_with("HTTP/1.1 415 "));
    assert!(find("chunked body").starts_with("HTTP/1.1 400 "));
    assert_eq!(
        find("json query, kept alive #1"),
        "HTTP/1.1 200 OK | application/json | \"2\""
    );
    assert_eq!(
        find("zero div #0"),
        "HTTP/1.1 422 Unprocessable Entity | text/plain | \"division or modulo by zero (-58)\\r\\n\""
    );
    assert_eq!(
        find("status GET /ready"),
        "HTTP/1.1 200 OK | text/plain | \"OK\\n\" then closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_matches_a_real_node() {
    let Some(real) = RealNode::from_env().await.unwrap() else {
        eprintln!("{SKIP_MESSAGE}");
        return;
    };
    let (Some(api), Some(status)) = (real.http_api_url(), real.http_status_url()) else {
        eprintln!("{SKIP_MESSAGE} (with THINGSDB_BIN_WS=1 for the HTTP ports)");
        return;
    };
    let (api, status) = (
        api.trim_start_matches("http://").to_string(),
        status.trim_start_matches("http://").to_string(),
    );
    // The procedure on the real node.
    let mut s = TcpStream::connect(&api).await.unwrap();
    let setup = case("setup", "POST", "//stuff").json(
        r#"{"type":"query","code":"has_procedure('add_one') || new_procedure('add_one', |x| x + 1); nil;"}"#,
    );
    s.write_all(&setup.bytes(&api, false)).await.unwrap();
    let a = read_answer(&mut s, &mut Vec::new()).await;
    assert!(a.starts_with("HTTP/1.1 200"), "setup: {a}");
    let real_answers = all_answers(&api, &status).await;

    let node = TestNode::start().await.unwrap();
    testkit_setup(&node);
    let http = node.serve_http().await.unwrap();
    let kit_answers = all_answers(
        &http.api_addr().to_string(),
        &http.status_addr().to_string(),
    )
    .await;

    let mut diffs = Vec::new();
    for ((what, r), (_, k)) in real_answers.iter().zip(&kit_answers) {
        eprintln!("{what}: {r}");
        if r != k {
            diffs.push(format!("{what}:\n  node:    {r}\n  testkit: {k}"));
        }
    }
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
}
