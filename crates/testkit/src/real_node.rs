//! A real ThingsDB node for tests that compare against one.
//!
//! [`RealNode::from_env`] finds or starts a node:
//!
//! 1. `THINGSDB_TEST_ADDR=host:port` and/or `THINGSDB_TEST_WS=ws://host:port`
//!    name a running node (user `admin`, password `pass`, or
//!    `THINGSDB_TEST_USER` / `THINGSDB_TEST_PASSWORD`;
//!    `THINGSDB_TEST_HTTP=http://host:port` and
//!    `THINGSDB_TEST_STATUS=http://host:port` name its HTTP API and status
//!    port);
//! 2. otherwise `THINGSDB_BIN=/path/to/thingsdb` is started with `--init`
//!    and a temporary config and storage directory: the client port and
//!    node port on free ports of 127.0.0.1, a Unix socket in the temporary
//!    directory. A node always binds its WebSocket, HTTP API and status
//!    ports on every interface, so they are only enabled when
//!    `THINGSDB_BIN_WS=1` is set too (run such tests in a network
//!    namespace with only loopback: `cargo xtask real-node`). The node is killed and its files are
//!    removed when the [`RealNode`] is dropped, except when the thread
//!    drops it while panicking (a failed test): then the directory, with
//!    the node's log `node.log`, stays, and its path is printed to stderr.
//!    `THINGSDB_TEST_LOG_LEVEL` (`debug`, `info`, `warning`, ...) is passed
//!    to a started node as `--log-level`;
//! 3. otherwise there is no node: `Ok(None)`, and the caller prints
//!    [`SKIP_MESSAGE`].
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use thingsdb_testkit::real_node::{RealNode, SKIP_MESSAGE};
//! let Some(node) = RealNode::from_env().await? else {
//!     println!("{SKIP_MESSAGE}");
//!     return Ok(());
//! };
//! let mut c = node.connect_tcp().await?.expect("a TCP address");
//! c.auth(node.user(), node.password()).await?;
//! # Ok(()) }
//! ```

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use thingsdb_protocol::{request, PackageType};

use crate::raw::RawClient;

/// What a test prints when no real node is available.
pub const SKIP_MESSAGE: &str = "real-node test skipped: set THINGSDB_BIN or THINGSDB_TEST_ADDR";

/// How long a started node may take to accept clients.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running real node: found through the environment, or started by
/// [`RealNode::from_env`] and stopped on drop.
pub struct RealNode {
    tcp: Option<String>,
    ws: Option<String>,
    unix: Option<PathBuf>,
    user: String,
    password: String,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    node_port: Option<u16>,
    /// The HTTP API's and the status port's URLs.
    http: (Option<String>, Option<String>),
}

impl std::fmt::Debug for RealNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealNode")
            .field("tcp", &self.tcp)
            .field("ws", &self.ws)
            .field("unix", &self.unix)
            .field("started", &self.child.is_some())
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A port nothing listens on now, for a node to bind. Taken below 32768,
/// the start of Linux's range for the local ports of outgoing connections:
/// a port the kernel hands out from that range (as `bind` to port 0 does)
/// can be taken by any connection made before the node binds it, the
/// harness's own polls included, and a node that cannot bind a port runs
/// on without that listener (seen: the HTTP API's port taken, the node
/// never joined its cluster). Each process starts at its own place in the
/// range and moves on, so parallel tests rarely try the same port.
fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
    const BASE: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    for _ in 0..SPAN {
        let k = NEXT.fetch_add(1, Relaxed);
        let Ok(port) = u16::try_from(BASE + (start + k) % SPAN) else {
            continue;
        };
        if StdTcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(StdTcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

impl RealNode {
    /// Finds or starts a node as the [module documentation](self) says;
    /// `Ok(None)` when the environment names none.
    pub async fn from_env() -> std::io::Result<Option<RealNode>> {
        let user = env("THINGSDB_TEST_USER").unwrap_or_else(|| "admin".into());
        let password = env("THINGSDB_TEST_PASSWORD").unwrap_or_else(|| "pass".into());
        let (tcp, ws) = (env("THINGSDB_TEST_ADDR"), env("THINGSDB_TEST_WS"));
        if tcp.is_some() || ws.is_some() {
            let node = RealNode {
                tcp,
                ws,
                unix: None,
                user,
                password,
                child: None,
                dir: None,
                node_port: None,
                http: (env("THINGSDB_TEST_HTTP"), env("THINGSDB_TEST_STATUS")),
            };
            node.wait_ready(Instant::now() + START_TIMEOUT).await?;
            return Ok(Some(node));
        }
        match env("THINGSDB_BIN") {
            Some(bin) => {
                let with_ws = env("THINGSDB_BIN_WS").is_some_and(|v| v != "0");
                RealNode::start(Path::new(&bin), with_ws).await.map(Some)
            }
            None => Ok(None),
        }
    }

    /// Starts `bin` with `--init` and a temporary config and storage on
    /// loopback ports (and a WebSocket port on all interfaces when
    /// `with_ws`), and waits until PING and AUTH `admin`/`pass` work.
    pub async fn start(bin: &Path, with_ws: bool) -> std::io::Result<RealNode> {
        let node = RealNode::spawn(bin, with_ws, None).await?;
        node.wait_ready(Instant::now() + START_TIMEOUT).await?;
        Ok(node)
    }

    /// Starts `bin` with `--secret SECRET` (a node waiting to be added to a
    /// cluster with `new_node()`), on loopback ports like
    /// [`RealNode::start`]; returns once its ports listen.
    pub async fn start_with_secret(
        bin: &Path,
        with_ws: bool,
        secret: &str,
    ) -> std::io::Result<RealNode> {
        RealNode::spawn(bin, with_ws, Some(secret)).await
    }

    async fn spawn(bin: &Path, with_ws: bool, secret: Option<&str>) -> std::io::Result<RealNode> {
        let dir = tempfile::Builder::new().prefix("thingsdb-real").tempdir()?;
        let client_port = free_port()?;
        let node_port = free_port()?;
        let ws_port = if with_ws { free_port()? } else { 0 };
        // The HTTP ports too bind every interface: with the WebSocket one.
        let (http_api_port, http_status_port) = if with_ws {
            (free_port()?, free_port()?)
        } else {
            (0, 0)
        };
        let sock = dir.path().join("client.sock");
        let storage = dir.path().join("data");
        let modules = dir.path().join("modules");
        std::fs::create_dir_all(&storage)?;
        std::fs::create_dir_all(&modules)?;
        let conf = dir.path().join("thingsdb.conf");
        std::fs::write(
            &conf,
            format!(
                "[thingsdb]\n\
                 listen_client_port = {client_port}\n\
                 bind_client_addr = 127.0.0.1\n\
                 listen_node_port = {node_port}\n\
                 bind_node_addr = 127.0.0.1\n\
                 node_name = 127.0.0.1\n\
                 ip_support = IPV4ONLY\n\
                 http_api_port = {http_api_port}\n\
                 http_status_port = {http_status_port}\n\
                 ws_port = {ws_port}\n\
                 storage_path = {}/\n\
                 pipe_client_name = {}\n\
                 modules_path = {}\n",
                storage.display(),
                sock.display(),
                modules.display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("node.log"))?;
        let mut cmd = Command::new(bin);
        match secret {
            Some(secret) => cmd.arg("--secret").arg(secret),
            None => cmd.arg("--init"),
        };
        if let Some(level) = env("THINGSDB_TEST_LOG_LEVEL") {
            cmd.arg("--log-level").arg(level);
        }
        cmd.arg("--config")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // The node reads THINGSDB_<KEY> variables over its config file.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("THINGSDB_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd.spawn()?;
        let mut node = RealNode {
            tcp: Some(format!("127.0.0.1:{client_port}")),
            ws: with_ws.then(|| format!("ws://127.0.0.1:{ws_port}")),
            unix: Some(sock),
            user: "admin".into(),
            password: "pass".into(),
            child: Some(child),
            dir: Some(dir),
            node_port: Some(node_port),
            http: (
                with_ws.then(|| format!("http://127.0.0.1:{http_api_port}")),
                with_ws.then(|| format!("http://127.0.0.1:{http_status_port}")),
            ),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        // Wait for the client port, watching for an early exit.
        loop {
            if let Some(c) = node.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    return Err(std::io::Error::other(format!(
                        "thingsdb exited early ({status}); log:\n{}",
                        node.log()
                    )));
                }
            }
            // A node waiting for an invite listens on its node port only.
            let port = if secret.is_some() {
                node_port
            } else {
                client_port
            };
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "thingsdb did not listen in time; log:\n{}",
                    node.log()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(node)
    }

    /// The port other nodes of a cluster reach this one on (started nodes
    /// only).
    pub fn node_port(&self) -> Option<u16> {
        self.node_port
    }

    /// The node's `modules_path` (started nodes only): a module `NAME`
    /// installed with `new_module('NAME', 'FILE')` runs
    /// `<modules_path>/NAME/FILE`.
    pub fn modules_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("modules"))
    }

    /// The process id (started nodes only).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Asks a started node to shut down gracefully (SIGTERM), as an
    /// operator stopping it would; a node in a cluster tells its clients
    /// it is going away first. Returns once the signal is sent.
    pub fn terminate(&self) -> std::io::Result<()> {
        self.signal("TERM")
    }

    /// Kills a started node at once (SIGKILL): it says nothing to its
    /// clients, its connections just break. Returns once the signal is
    /// sent.
    pub fn kill(&self) -> std::io::Result<()> {
        self.signal("KILL")
    }

    fn signal(&self, name: &str) -> std::io::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| std::io::Error::other("the node was not started here"))?;
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "kill -{name} {pid}: {status}"
            )))
        }
    }

    /// Whether a started node's process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Retries PING + AUTH until both work or `deadline` passes.
    async fn wait_ready(&self, deadline: Instant) -> std::io::Result<()> {
        loop {
            let err = match self.check().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "real node not ready: {err}; log:\n{}",
                    self.log()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn check(&self) -> std::io::Result<()> {
        let mut c = match (self.connect_tcp().await?, self.connect_ws().await?) {
            (Some(c), _) | (None, Some(c)) => c,
            (None, None) => return Err(std::io::Error::other("no address")),
        };
        let mut b = BytesMut::new();
        request::encode_ping(&mut b, 1);
        let pong = c.request_timeout(&b, Duration::from_secs(5)).await?;
        let auth = c.auth(&self.user, &self.password).await?;
        if pong.package_type().ok() != Some(PackageType::Pong)
            || auth.package_type().ok() != Some(PackageType::Ok)
        {
            return Err(std::io::Error::other("PING or AUTH failed"));
        }
        Ok(())
    }

    /// The node's log so far (started nodes only).
    pub fn log(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.path().join("node.log")).ok())
            .unwrap_or_default()
    }

    /// The TCP client address, `host:port`.
    pub fn tcp_target(&self) -> Option<&str> {
        self.tcp.as_deref()
    }

    /// The TCP client address, resolved, when it is an IP address.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_deref().and_then(|t| t.parse().ok())
    }

    /// The WebSocket URL, `ws://host:port`.
    pub fn ws_url(&self) -> Option<&str> {
        self.ws.as_deref()
    }

    /// The HTTP API's URL, `http://host:port`, when it is on (see the
    /// [module documentation](self)).
    pub fn http_api_url(&self) -> Option<&str> {
        self.http.0.as_deref()
    }

    /// The status port's URL, `http://host:port`, when it is on.
    pub fn http_status_url(&self) -> Option<&str> {
        self.http.1.as_deref()
    }

    /// The Unix socket (started nodes only).
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix.as_deref()
    }

    /// The user to authenticate as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Its password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Whether this node was started here (and is stopped on drop).
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// A raw client over TCP, if the node has a TCP address.
    pub async fn connect_tcp(&self) -> std::io::Result<Option<RawClient>> {
        match &self.tcp {
            Some(t) => RawClient::tcp(t.as_str()).await.map(Some),
            None => Ok(None),
        }
    }

    /// A raw client over WebSocket, if the node has a WebSocket URL.
    pub async fn connect_ws(&self) -> std::io::Result<Option<RawClient>> {
        match &self.ws {
            Some(u) => RawClient::ws(u).await.map(Some),
            None => Ok(None),
        }
    }

    /// A raw client over the Unix socket, if the node has one.
    pub async fn connect_unix(&self) -> std::io::Result<Option<RawClient>> {
        match &self.unix {
            Some(p) => RawClient::unix(p).await.map(Some),
            None => Ok(None),
        }
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A killed node leaves its socket behind, which would block its
        // next start; the temporary directory goes too.
        if let Some(p) = &self.unix {
            if self.dir.is_some() {
                let _ = std::fs::remove_file(p);
            }
        }
        // A failed test keeps the node's files: its log tells what the
        // node did.
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!(
                    "a test failed: node log kept at {}",
                    kept.join("node.log").display()
                );
            }
        }
    }
}

/// A cluster of real nodes on loopback, joined with the node's own tools:
/// the first node is started with `--init`, each other one with
/// `--secret` and then added from the first with `new_node()` in the
/// `@thingsdb` scope. Every node is stopped on drop.
pub struct RealCluster {
    /// The nodes, the first one the one that was initialised.
    pub nodes: Vec<RealNode>,
}

impl std::fmt::Debug for RealCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.nodes).finish()
    }
}

/// How long a node may take to join a cluster and become ready.
const JOIN_TIMEOUT: Duration = Duration::from_secs(180);

impl RealCluster {
    /// A cluster of `n` nodes from `THINGSDB_BIN`; `Ok(None)` when the
    /// variable is not set.
    /// `THINGSDB_BIN_WS=1` gives every node a WebSocket port too (bound on
    /// every interface: only inside an isolated network namespace).
    pub async fn from_env(n: usize) -> std::io::Result<Option<RealCluster>> {
        let with_ws = env("THINGSDB_BIN_WS").is_some_and(|v| v != "0");
        match env("THINGSDB_BIN") {
            Some(bin) => RealCluster::start_with(Path::new(&bin), n, with_ws)
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    /// Starts `n` nodes of `bin` and joins them into one cluster; returns
    /// when every node answers AUTH and a query.
    pub async fn start(bin: &Path, n: usize) -> std::io::Result<RealCluster> {
        RealCluster::start_with(bin, n, false).await
    }

    /// As [`RealCluster::start`], with a WebSocket port on every node when
    /// `with_ws`.
    pub async fn start_with(bin: &Path, n: usize, with_ws: bool) -> std::io::Result<RealCluster> {
        let first = RealNode::start(bin, with_ws).await?;
        let mut nodes = vec![first];
        for i in 1..n {
            let secret = format!("secret{i}");
            let node = RealNode::start_with_secret(bin, with_ws, &secret).await?;
            let port = node
                .node_port()
                .ok_or_else(|| std::io::Error::other("no node port"))?;
            let code = format!("new_node('{secret}', '127.0.0.1', {port});");
            run_query(&nodes[0], "@thingsdb", &code).await?;
            let deadline = Instant::now() + JOIN_TIMEOUT;
            loop {
                if run_query(&node, "@thingsdb", "1 + 1;").await.is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(std::io::Error::other(format!(
                        "node {i} did not join the cluster in time; log:\n{}",
                        node.log()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            nodes.push(node);
        }
        // Every node must be ready before the next test step.
        for node in &nodes {
            let deadline = Instant::now() + JOIN_TIMEOUT;
            while run_query(node, "@node", "node_info().load().status;")
                .await
                .map(|f| f.payload.as_ref() != b"\xa5READY")
                .unwrap_or(true)
            {
                if Instant::now() > deadline {
                    return Err(std::io::Error::other("a node did not become READY"));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        Ok(RealCluster { nodes })
    }
}

/// Runs `code` in `scope` on `node` over a fresh TCP connection and
/// returns the DATA reply, or an error for any other reply.
async fn run_query(
    node: &RealNode,
    scope: &str,
    code: &str,
) -> std::io::Result<thingsdb_protocol::Frame> {
    let mut c = node
        .connect_tcp()
        .await?
        .ok_or_else(|| std::io::Error::other("no TCP address"))?;
    let auth = c.auth(node.user(), node.password()).await?;
    if auth.package_type().ok() != Some(PackageType::Ok) {
        return Err(std::io::Error::other("AUTH failed"));
    }
    let mut b = BytesMut::new();
    request::encode_query(&mut b, 1, scope, code, None).map_err(std::io::Error::other)?;
    let f = c.request_timeout(&b, Duration::from_secs(30)).await?;
    if f.package_type().ok() == Some(PackageType::Data) {
        Ok(f)
    } else {
        Err(std::io::Error::other(format!(
            "query {code:?} failed: {:?}",
            thingsdb_protocol::Response::decode(&f)
        )))
    }
}
