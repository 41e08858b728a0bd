//! Nodes: info, cluster, counters, log level, shutdown (`@node` scope);
//! adding, removing and restoring nodes (`@thingsdb` scope).

use serde::{Deserialize, Serialize};

use super::{Node, ScopeApi, Thingsdb};
use crate::error::Error;

/// What `node_info()` says about a node. Fields a newer node adds are
/// ignored; the ones that may be missing are `Option`s.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct NodeInfo {
    /// The node's id in its cluster.
    pub node_id: u32,
    /// The ThingsDB version (`1.9.2`).
    pub version: String,
    /// The node's status (`READY`, `AWAY`, `AWAY_SOON`, `SHUTTING_DOWN`,
    /// `SYNCHRONIZING`, ...).
    pub status: String,
    /// The node's zone.
    #[serde(default)]
    pub zone: u8,
    /// Its log level (`DEBUG` .. `CRITICAL`).
    #[serde(default)]
    pub log_level: String,
    /// The name (address) other nodes reach it by.
    pub node_name: String,
    /// The port clients connect to.
    pub client_port: u16,
    /// The port other nodes connect to.
    pub node_port: u16,
    /// The WebSocket port, when the node reports one (1.9.2 does not).
    #[serde(default)]
    pub ws_port: Option<u16>,
    /// `ALL`, `IPV4ONLY` or `IPV6ONLY`.
    #[serde(default)]
    pub ip_support: Option<String>,
    /// Where the node stores its data.
    #[serde(default)]
    pub storage_path: Option<String>,
    /// Seconds since the node started.
    #[serde(default)]
    pub uptime: f64,
    /// Clients connected now.
    #[serde(default)]
    pub connected_clients: Option<u64>,
    /// Changes waiting to be processed.
    #[serde(default)]
    pub changes_in_queue: Option<u64>,
    /// The id the next change gets.
    #[serde(default)]
    pub next_change_id: Option<u64>,
    /// The last change this node has applied: once it is at least a
    /// change's id (`change_id()` inside the change), every read on this
    /// node sees that change (see [`balance`](crate::balance)).
    #[serde(default)]
    pub local_committed_change_id: Option<u64>,
    /// The last change this node has stored on disk.
    #[serde(default)]
    pub local_stored_change_id: Option<u64>,
    /// The last change every node of the cluster has applied.
    #[serde(default)]
    pub global_committed_change_id: Option<u64>,
    /// The last change every node of the cluster has stored.
    #[serde(default)]
    pub global_stored_change_id: Option<u64>,
    /// The next free thing id.
    #[serde(default)]
    pub next_free_id: Option<u64>,
    /// The largest result the node sends, in bytes.
    #[serde(default)]
    pub result_size_limit: Option<u64>,
    /// Scheduled backups.
    #[serde(default)]
    pub scheduled_backups: Option<u64>,
    /// The syntax version (`v1`).
    #[serde(default)]
    pub syntax_version: Option<String>,
    /// Where modules live.
    #[serde(default)]
    pub modules_path: Option<String>,
    /// The operating system.
    #[serde(default)]
    pub platform: Option<String>,
    /// The processor architecture.
    #[serde(default)]
    pub architecture: Option<String>,
}

/// One node as `nodes_info()` lists the cluster. Note that `port` is the
/// node-to-node port, not the client port: ask that node's
/// [`node_info`](ScopeApi::node_info) (through
/// [`Client::node_by_id`](crate::Client::node_by_id)) for its client port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ClusterNodeInfo {
    /// The node's id.
    pub node_id: u32,
    /// Its status, as the asked node last heard it.
    pub status: String,
    /// Its zone.
    #[serde(default)]
    pub zone: u8,
    /// The name (address) nodes reach it by.
    pub node_name: String,
    /// Its node-to-node port.
    pub port: u16,
    /// The last change it committed.
    #[serde(default)]
    pub committed_change_id: Option<u64>,
    /// The last change it stored.
    #[serde(default)]
    pub stored_change_id: Option<u64>,
    /// The syntax version it speaks.
    #[serde(default)]
    pub syntax_version: Option<String>,
    /// The asked node's connection to it; `None` for the asked node
    /// itself (or a node it is not connected to).
    #[serde(default)]
    pub stream: Option<String>,
}

/// A node's counters (`counters()`), since it started or since
/// [`reset_counters`](ScopeApi::reset_counters). Fields a newer node adds
/// are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Counters {
    /// Queries that succeeded.
    pub queries_success: u64,
    /// Queries that failed.
    pub queries_with_error: u64,
    /// Tasks that succeeded.
    #[serde(default)]
    pub tasks_success: u64,
    /// Tasks that failed.
    #[serde(default)]
    pub tasks_with_error: u64,
    /// Changes committed.
    #[serde(default)]
    pub changes_committed: u64,
    /// Changes that failed.
    #[serde(default)]
    pub changes_failed: u64,
    /// Changes skipped.
    #[serde(default)]
    pub changes_skipped: u64,
    /// Changes that arrived with a gap.
    #[serde(default)]
    pub changes_with_gap: u64,
    /// Changes killed.
    #[serde(default)]
    pub changes_killed: u64,
    /// Changes not aligned.
    #[serde(default)]
    pub changes_unaligned: u64,
    /// Things garbage collected.
    #[serde(default)]
    pub garbage_collected: u64,
    /// Times the quorum was lost.
    #[serde(default)]
    pub quorum_lost: u64,
    /// Queries answered from the query cache.
    #[serde(default)]
    pub queries_from_cache: u64,
    /// Cached queries never used again.
    #[serde(default)]
    pub wasted_cache: u64,
    /// The longest query, in seconds.
    #[serde(default)]
    pub longest_query_duration: f64,
    /// The average query, in seconds.
    #[serde(default)]
    pub average_query_duration: f64,
    /// The longest change, in seconds.
    #[serde(default)]
    pub longest_change_duration: f64,
    /// The average change, in seconds.
    #[serde(default)]
    pub average_change_duration: f64,
    /// When counting started, in seconds since the Unix epoch.
    #[serde(default)]
    pub started_at: u64,
    /// The largest result sent, in bytes.
    #[serde(default)]
    pub largest_result_size: u64,
}

/// A node's log level, for [`set_log_level`](ScopeApi::set_log_level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum LogLevel {
    /// Everything.
    Debug,
    /// Informational messages and worse.
    Info,
    /// Warnings and worse (a node's default).
    Warning,
    /// Errors and worse.
    Error,
    /// Critical errors only.
    Critical,
}

impl LogLevel {
    /// The number the node takes (0 for debug to 4 for critical).
    pub fn as_int(self) -> u8 {
        match self {
            LogLevel::Debug => 0,
            LogLevel::Info => 1,
            LogLevel::Warning => 2,
            LogLevel::Error => 3,
            LogLevel::Critical => 4,
        }
    }
}

impl ScopeApi<'_, Node> {
    /// This node's info (`node_info()`).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// let info = client.node().node_info().await?;
    /// println!("node {} ({}) is {}", info.node_id, info.version, info.status);
    /// # Ok(()) }
    /// ```
    pub async fn node_info(&self) -> Result<NodeInfo, Error> {
        self.get("node_info();").await
    }

    /// Every node of the cluster, as this node sees them (`nodes_info()`).
    pub async fn nodes_info(&self) -> Result<Vec<ClusterNodeInfo>, Error> {
        self.get("nodes_info();").await
    }

    /// This node's counters (`counters()`).
    pub async fn counters(&self) -> Result<Counters, Error> {
        self.get("counters();").await
    }

    /// Sets the counters back to zero (`reset_counters()`).
    pub async fn reset_counters(&self) -> Result<(), Error> {
        self.get("reset_counters();").await
    }

    /// Sets this node's log level (`set_log_level(level)`).
    pub async fn set_log_level(&self, level: LogLevel) -> Result<(), Error> {
        self.query("set_log_level(level);")
            .var("level", &level.as_int())
            .decode()
            .await
    }

    /// Shuts this node down; it tells its clients `SHUTTING_DOWN` first
    /// (`shutdown()`).
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.get("shutdown();").await
    }
}

impl ScopeApi<'_, Thingsdb> {
    /// Adds a node to the cluster and returns its id. The new node must be
    /// running with `--secret SECRET` and listen on `address`:`port`
    /// (`port` defaults to 9220) (`new_node(secret, address, port)`).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// let id = client.thingsdb().new_node("s3cret", "10.0.0.2", None).await?;
    /// # Ok(()) }
    /// ```
    pub async fn new_node(
        &self,
        secret: &str,
        address: &str,
        port: Option<u16>,
    ) -> Result<u32, Error> {
        let code = match port {
            Some(_) => "new_node(secret, address, port);",
            None => "new_node(secret, address);",
        };
        let q = self
            .query(code)
            .var("secret", secret)
            .var("address", address);
        match port {
            Some(port) => q.var("port", &port),
            None => q,
        }
        .decode()
        .await
    }

    /// Removes a node from the cluster; it must be offline
    /// (`del_node(id)`).
    pub async fn del_node(&self, id: u32) -> Result<(), Error> {
        self.query("del_node(id);").var("id", &id).decode().await
    }

    /// Whether the cluster has a node with this id (`has_node(id)`).
    pub async fn has_node(&self, id: u32) -> Result<bool, Error> {
        self.query("has_node(id);").var("id", &id).decode().await
    }

    /// Restores a backup file (`.tar.gz`, as made by
    /// [`new_backup`](ScopeApi::new_backup)) over the whole ThingsDB; the
    /// node must have no tasks, modules or running futures. With
    /// `take_access`, the connected user's privileges are taken from the
    /// backup; with `restore_tasks`, the backup's tasks are restored (not
    /// both) (`restore(file, {take_access, restore_tasks})`).
    pub async fn restore(
        &self,
        file: &str,
        take_access: bool,
        restore_tasks: bool,
    ) -> Result<(), Error> {
        self.query("restore(file, {take_access: take_access, restore_tasks: restore_tasks});")
            .var("file", file)
            .var("take_access", &take_access)
            .var("restore_tasks", &restore_tasks)
            .decode()
            .await
    }
}
