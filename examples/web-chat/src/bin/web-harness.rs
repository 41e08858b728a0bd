//! The native side of the browser route: a testkit node on 127.0.0.1 with
//! WebSocket, a static file server for the example page, and a WebDriver
//! client that makes two headless pages chat.
//!
//! ```text
//! web-harness serve [--dir DIR]
//!     prints `ws=ws://127.0.0.1:P`, `closed=ws://127.0.0.1:Q` (a port
//!     nobody listens on), `api=http://127.0.0.1:S` (the node's HTTP API
//!     behind a proxy that adds CORS headers), `api_direct=http://...`
//!     (the HTTP API itself, which sends none) and, with --dir,
//!     `http=http://127.0.0.1:R/`; runs until its standard input closes.
//! web-harness chat --dir DIR --out DIR [--chromedriver PATH] [--chromium PATH]
//!     serves DIR, opens DIR/index.html twice in headless Chromium through
//!     chromedriver, makes the pages chat, checks that each page shows the
//!     other's message, and saves screenshots and timings in --out.
//! ```
//!
//! With `--real-node BIN` either mode starts a real ThingsDB node from
//! `BIN` with its WebSocket port instead of the testkit node, and sets it
//! up the same way (collection `other`, a room named `chat` in both
//! collections, procedure `add_one`). A node binds its WebSocket port on
//! every interface, so this is refused unless the harness runs in a
//! network namespace whose only interface is loopback (`unshare -n`).
//!
//! The node has collections `stuff` and `other`, a room named `chat` in
//! each, user `admin`/`pass`, the procedure `add_one`, and three queries of
//! its own for tests: `drop_connections();` (every connection is cut just
//! after the reply, as a node restart does), `stall(ms);` (this connection's replies are
//! held back for `ms` from now on) and `silence();` (this connection gets no
//! reply at all from now on, its own included, and the socket stays open).

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    match native::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("web-harness: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::io::Read;
    use std::net::TcpListener;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use base64::Engine;
    use serde_json::{json, Value as Json};
    use thingsdb_testkit::real_node::RealNode;
    use thingsdb_testkit::thingsdb_protocol::{request, ErrorCode, Frame, Response};
    use thingsdb_testkit::{RawClient, Reply, TestNode};

    type Error = Box<dyn std::error::Error + Send + Sync>;

    pub fn main() -> Result<(), Error> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let flag = |name: &str| args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone());
        let rt = tokio::runtime::Runtime::new()?;
        let node = match flag("--real-node") {
            Some(bin) => Node::Real(Box::new(rt.block_on(start_real_node(Path::new(&bin)))?)),
            None => Node::Kit(rt.block_on(start_node())?),
        };
        let http = match flag("--dir") {
            Some(dir) => Some(serve_dir(PathBuf::from(dir))?),
            None => None,
        };
        match args.first().map(String::as_str) {
            Some("serve") => {
                let (api, direct) = rt.block_on(http_api(&node))?;
                println!("ws={}", node.ws_url());
                println!("closed=ws://127.0.0.1:{}", closed_port()?);
                println!("api={}", api.0.url());
                println!("api_direct={direct}");
                if let Some(h) = &http {
                    println!("http={h}");
                }
                // Until the caller closes our standard input.
                let mut sink = Vec::new();
                let _ = std::io::stdin().lock().read_to_end(&mut sink);
                Ok(())
            }
            Some("chat") => {
                let http = http.ok_or("chat needs --dir")?;
                let out = PathBuf::from(flag("--out").ok_or("chat needs --out")?);
                let driver = flag("--chromedriver").unwrap_or_else(|| "chromedriver".into());
                let chromium = flag("--chromium");
                let restart = || match &node {
                    Node::Kit(n) => {
                        rt.block_on(n.restart_with_downtime(Duration::from_millis(500)));
                        true
                    }
                    Node::Real(_) => false,
                };
                chat(
                    &node.ws_url(),
                    &http,
                    &out,
                    &driver,
                    chromium.as_deref(),
                    restart,
                )
            }
            _ => Err("usage: web-harness serve [--dir DIR] | chat --dir DIR --out DIR".into()),
        }
    }

    /// The node the pages talk to.
    enum Node {
        Kit(Arc<TestNode>),
        Real(Box<RealNode>),
    }

    impl Node {
        fn ws_url(&self) -> String {
            match self {
                Node::Kit(n) => n.ws_url(),
                Node::Real(n) => n.ws_url().unwrap_or_default().to_owned(),
            }
        }
    }

    /// The node's HTTP API (the testkit's, or the real node's) and a CORS
    /// proxy in front of it, for pages from another origin; the proxy (with
    /// what it needs kept alive) and the API's own URL.
    async fn http_api(
        node: &Node,
    ) -> Result<
        (
            (
                thingsdb_testkit::CorsProxy,
                Option<thingsdb_testkit::HttpServer>,
            ),
            String,
        ),
        Error,
    > {
        let (server, direct) = match node {
            Node::Kit(n) => {
                let s = n.serve_http().await?;
                let url = s.api_url();
                (Some(s), url)
            }
            Node::Real(n) => (
                None,
                n.http_api_url()
                    .ok_or("the real node has no HTTP API port")?
                    .to_owned(),
            ),
        };
        let proxy =
            thingsdb_testkit::CorsProxy::start(direct.trim_start_matches("http://")).await?;
        Ok(((proxy, server), direct))
    }

    /// Whether this process's network namespace has no interface but
    /// loopback (`/proc/net/dev` lists the namespace's own interfaces,
    /// after two heading lines).
    fn loopback_only() -> bool {
        match std::fs::read_to_string("/proc/net/dev") {
            Ok(text) => text
                .lines()
                .skip(2)
                .filter_map(|l| l.split(':').next())
                .all(|name| name.trim() == "lo"),
            Err(_) => false,
        }
    }

    async fn start_real_node(bin: &Path) -> Result<RealNode, Error> {
        if !loopback_only() {
            return Err(
                "--real-node only runs in a network namespace with loopback alone \
                        (a node binds its WebSocket port on every interface): \
                        unshare -n sh -c 'ip link set lo up; ...'"
                    .into(),
            );
        }
        let node = RealNode::start(bin, true).await?;
        let ws = node
            .ws_url()
            .ok_or("the node has no WebSocket port")?
            .to_owned();
        let mut c = RawClient::ws(&ws).await?;
        expect_ok(c.auth(node.user(), node.password()).await?)?;
        for (scope, code) in [
            ("@thingsdb", "new_collection('other');"),
            ("//stuff", "new_procedure('add_one', |x| x + 1);"),
            ("//stuff", ".chat = room(); .chat.set_name('chat');"),
            ("//other", ".chat = room(); .chat.set_name('chat');"),
        ] {
            let mut b = bytes::BytesMut::new();
            request::encode_query(&mut b, 1, scope, code, None)?;
            expect_ok(c.request(&b).await?)?;
        }
        Ok(node)
    }

    fn expect_ok(f: Frame) -> Result<(), Error> {
        match Response::decode(&f)? {
            Response::Error(e) => Err(format!("node: {}: {}", e.code, e.message).into()),
            _ => Ok(()),
        }
    }

    async fn start_node() -> Result<Arc<TestNode>, Error> {
        let node = Arc::new(TestNode::builder().collection("other").start().await?);
        node.create_room("stuff", Some("chat"));
        node.create_room("other", Some("chat"));
        node.procedure("add_one", |args| match args.param(0, "x") {
            Some(v) => match v.as_i64() {
                Some(n) => Reply::value(n + 1),
                None => Reply::error(ErrorCode::Type, "not an integer"),
            },
            None => Reply::error(ErrorCode::NumArguments, "add_one takes 1 argument"),
        });
        let weak = Arc::downgrade(&node);
        node.on_query(move |q| {
            let code = q.code.trim();
            if code == "drop_connections();" {
                // As a node that goes away: every connection is cut at
                // once (stalled ones too), without a close handshake.
                let weak = weak.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if let Some(node) = weak.upgrade() {
                        node.restart().await;
                    }
                });
                return Reply::nil();
            }
            if let Some(ms) = code
                .strip_prefix("stall(")
                .and_then(|r| r.strip_suffix(");"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                if let Some(node) = weak.upgrade() {
                    node.connection_faults(q.connection)
                        .delay_replies(Duration::from_millis(ms));
                }
                return Reply::nil();
            }
            if code.starts_with("raise(err(-1") {
                // A custom error: over HTTP a 1.9.2 node closes the
                // connection without an answer.
                return Reply::error(ErrorCode::from_code(-100), "custom");
            }
            if code == "silence();" {
                // A black hole: requests are read, nothing comes back.
                if let Some(node) = weak.upgrade() {
                    node.connection_faults(q.connection).stop_replying(true);
                }
                return Reply::nil();
            }
            q.evaluate()
        });
        Ok(node)
    }

    /// A port that was free a moment ago and that nobody listens on.
    fn closed_port() -> Result<u16, Error> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        Ok(l.local_addr()?.port())
    }

    /// Serves the files under `dir` on 127.0.0.1 from a thread; returns
    /// the base URL.
    fn serve_dir(dir: PathBuf) -> Result<String, Error> {
        let server = tiny_http::Server::http("127.0.0.1:0")?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or("the file server has no IP address")?;
        std::thread::spawn(move || {
            for req in server.incoming_requests() {
                let resp = file_response(&dir, req.url());
                let _ = req.respond(resp);
            }
        });
        Ok(format!("http://127.0.0.1:{port}/"))
    }

    fn file_response(dir: &Path, url: &str) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
        let path = url.split(['?', '#']).next().unwrap_or("/");
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "index.html" } else { rel };
        let not_found = || tiny_http::Response::from_string("not found").with_status_code(404);
        if rel.split('/').any(|c| c == ".." || c.is_empty()) {
            return not_found();
        }
        let Ok(body) = std::fs::read(dir.join(rel)) else {
            return not_found();
        };
        let mime = match Path::new(rel).extension().and_then(|e| e.to_str()) {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript",
            Some("wasm") => "application/wasm",
            Some("css") => "text/css",
            _ => "application/octet-stream",
        };
        let mut resp = tiny_http::Response::from_data(body);
        if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", mime) {
            resp.add_header(h);
        }
        resp
    }

    // ------------------------------------------------------------ WebDriver

    /// A chromedriver process and one session in it.
    struct Driver {
        child: std::process::Child,
        base: String,
        session: String,
    }

    impl Drop for Driver {
        fn drop(&mut self) {
            let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Driver {
        fn start(driver: &str, chromium: Option<&str>, profile: &Path) -> Result<Driver, Error> {
            let port = closed_port()?;
            let mut child = std::process::Command::new(driver)
                .arg(format!("--port={port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start {driver}: {e}"))?;
            let base = format!("http://127.0.0.1:{port}");
            let started = Instant::now();
            while ureq::get(&format!("{base}/status")).call().is_err() {
                if started.elapsed() > Duration::from_secs(30) {
                    let _ = child.kill();
                    return Err("chromedriver did not come up in 30 s".into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let mut options = json!({
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--no-first-run", "--disable-dev-shm-usage",
                    "--window-size=800,600",
                    format!("--user-data-dir={}", profile.display()),
                ]
            });
            if let Some(bin) = chromium {
                options["binary"] = json!(bin);
            }
            let caps = json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome", "goog:chromeOptions": options
            }}});
            let mut r = ureq::post(&format!("{base}/session")).send_json(&caps)?;
            let v: Json = r.body_mut().read_json()?;
            let session = v["value"]["sessionId"]
                .as_str()
                .ok_or_else(|| format!("no session from chromedriver: {v}"))?
                .to_owned();
            Ok(Driver {
                child,
                base,
                session,
            })
        }

        fn post(&self, path: &str, body: Json) -> Result<Json, Error> {
            let url = format!("{}/session/{}/{path}", self.base, self.session);
            let mut r = ureq::post(&url).send_json(&body)?;
            let v: Json = r.body_mut().read_json()?;
            Ok(v["value"].clone())
        }

        fn get(&self, path: &str) -> Result<Json, Error> {
            let url = format!("{}/session/{}/{path}", self.base, self.session);
            let mut r = ureq::get(&url).call()?;
            let v: Json = r.body_mut().read_json()?;
            Ok(v["value"].clone())
        }

        fn script(&self, js: &str) -> Result<Json, Error> {
            self.post("execute/sync", json!({"script": js, "args": []}))
        }

        fn switch_to(&self, handle: &str) -> Result<(), Error> {
            self.post("window", json!({"handle": handle}))?;
            Ok(())
        }

        fn screenshot(&self, path: &Path) -> Result<(), Error> {
            let b64 = self.get("screenshot")?;
            let png = base64::engine::general_purpose::STANDARD
                .decode(b64.as_str().ok_or("no screenshot data")?)?;
            std::fs::write(path, png)?;
            Ok(())
        }

        /// Polls `js` (an expression) in the current window until it is
        /// true, at most `limit`.
        fn wait_for(&self, js: &str, limit: Duration, what: &str) -> Result<(), Error> {
            let started = Instant::now();
            loop {
                if self.script(&format!("return !!({js});"))? == json!(true) {
                    return Ok(());
                }
                if started.elapsed() > limit {
                    let log = self.script("return document.body.innerText;")?;
                    return Err(format!("{what}: not seen within {limit:?}; page: {log}").into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The two-page chat; `restart` drops every connection of the node
    /// (false when it cannot), after which both pages must join again and
    /// chat on.
    fn chat(
        ws: &str,
        http: &str,
        out: &Path,
        driver: &str,
        chromium: Option<&str>,
        restart: impl Fn() -> bool,
    ) -> Result<(), Error> {
        std::fs::create_dir_all(out)?;
        let profile = out.join("chromium-profile");
        let _ = std::fs::remove_dir_all(&profile);
        let d = Driver::start(driver, chromium, &profile)?;
        let limit = Duration::from_secs(60);
        let page = |name: &str| format!("{http}index.html?ws={ws}&name={name}");

        d.post("url", json!({"url": page("alice")}))?;
        let alice = d
            .get("window")?
            .as_str()
            .ok_or("no window handle")?
            .to_owned();
        let bob = d.post("window/new", json!({"type": "tab"}))?["handle"]
            .as_str()
            .ok_or("no new window")?
            .to_owned();
        d.switch_to(&bob)?;
        d.post("url", json!({"url": page("bob")}))?;

        for (who, handle) in [("alice", &alice), ("bob", &bob)] {
            d.switch_to(handle)?;
            d.wait_for(
                "document.getElementById('status').dataset.state === 'joined'",
                limit,
                &format!("{who} joined"),
            )?;
        }
        let say = |handle: &str, text: &str| -> Result<(), Error> {
            d.switch_to(handle)?;
            d.script(&format!(
                "const t = document.getElementById('text'); t.value = {};\
                 document.getElementById('send').click(); return true;",
                json!(text)
            ))?;
            Ok(())
        };
        say(&alice, "hello from alice")?;
        say(&bob, "hi alice, bob here")?;
        let shows = |line: &str| {
            format!(
                "Array.from(document.querySelectorAll('#messages li')).some(li => li.textContent === {})",
                json!(line)
            )
        };
        d.switch_to(&alice)?;
        d.wait_for(
            &shows("bob: hi alice, bob here"),
            limit,
            "bob's message on alice's page",
        )?;
        d.screenshot(&out.join("alice.png"))?;
        d.switch_to(&bob)?;
        d.wait_for(
            &shows("alice: hello from alice"),
            limit,
            "alice's message on bob's page",
        )?;
        d.screenshot(&out.join("bob.png"))?;
        let timings = d.script("return document.getElementById('timings').textContent;")?;

        // The node drops every connection: both pages reconnect, join
        // again and chat on.
        if restart() {
            for (who, handle) in [("alice", &alice), ("bob", &bob)] {
                d.switch_to(handle)?;
                d.wait_for(
                    "document.getElementById('status').dataset.joins === '2'",
                    limit,
                    &format!("{who} joined again after the node restart"),
                )?;
            }
            say(&alice, "alice is back")?;
            d.switch_to(&bob)?;
            d.wait_for(
                &shows("alice: alice is back"),
                limit,
                "after the restart, on bob's page",
            )?;
            d.screenshot(&out.join("bob-after-restart.png"))?;
            println!("web-chat: both pages joined again after the node dropped them, and chat on");
        } else {
            println!("web-chat: restart leg skipped (it needs the testkit node)");
        }
        let timings = timings.as_str().unwrap_or_default().to_owned();
        std::fs::write(out.join("timings.txt"), format!("{timings}\n"))?;
        println!("web-chat: each page shows the other's message; {timings}");
        println!("web-chat: screenshots in {}", out.display());
        drop(d);
        let _ = std::fs::remove_dir_all(&profile);
        Ok(())
    }
}
