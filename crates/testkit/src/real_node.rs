//! A real ThingsDB node for tests that compare against one.
//!
//! [`RealNode::from_env`] finds or starts a node:
//!
//! 1. `THINGSDB_TEST_ADDR=host:port` and/or `THINGSDB_TEST_WS=ws://host:port`
//!    name a running node (user `admin`, password `pass`, or
//!    `THINGSDB_TEST_USER` / `THINGSDB_TEST_PASSWORD`);
//! 2. otherwise `THINGSDB_BIN=/path/to/thingsdb` is started with `--init`
//!    and a temporary config and storage directory: the client port and
//!    node port on free ports of 127.0.0.1, a Unix socket in the temporary
//!    directory, the HTTP API and status ports off. A node always binds its
//!    WebSocket port on every interface, so WebSocket is only enabled when
//!    `THINGSDB_BIN_WS=1` is set too. The node is killed and its files are
//!    removed when the [`RealNode`] is dropped;
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

fn free_port() -> std::io::Result<u16> {
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
        let dir = tempfile::Builder::new().prefix("thingsdb-real").tempdir()?;
        let client_port = free_port()?;
        let node_port = free_port()?;
        let ws_port = if with_ws { free_port()? } else { 0 };
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
                 http_api_port = 0\n\
                 http_status_port = 0\n\
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
        cmd.arg("--init")
            .arg("--config")
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
            if tokio::net::TcpStream::connect(("127.0.0.1", client_port))
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
        node.wait_ready(deadline).await?;
        Ok(node)
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
    }
}
