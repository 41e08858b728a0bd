//! Cluster discovery: learn every node of a cluster from one seed target.
//!
//! With [`ClientBuilder::discover_nodes`], the client reads the cluster
//! from the node it connected to and adds every other node to its pool,
//! after the targets it was given, so failover needs one seed address. It
//! reads it again after every NODE_STATUS event and every reconnect, so
//! nodes added later join the pool too.
//!
//! What a node tells: `nodes_info()` (in `@node`) lists the cluster's node
//! ids, names and node-to-node ports, not client ports; so each other
//! node's `node_info()` is read through the connected node (`@node:ID`),
//! which gives its `node_name` and `client_port`. [`pool_targets`] turns
//! those into pool entries:
//!
//! | seed | entry for each other node |
//! |---|---|
//! | `host:port` (TCP) | TCP to `node_name:client_port` |
//! | `thingsdbs://` (TLS) | TLS to `node_name:client_port` (TLS terminated on the client port, as at the seed) |
//! | `ws://`, `wss://` | the same scheme and path on `node_name`, at the node's `ws_port` when it reports one; ThingsDB 1.9.2 reports none, so the [`WsPort`] rule decides: by default the seed's port (nodes on separate hosts sharing one configuration) |
//! | `unix:` | TCP to `node_name:client_port` (a socket path only reaches a node on this machine) |
//!
//! The given targets stay first, in their order; the node the seed reached
//! is not added again; duplicates (same transport, host in any case, port
//! and path) are dropped. A node that cannot be asked (offline) is left out
//! until the next discovery.
//!
//! ```no_run
//! # async fn demo() -> Result<(), thingsdb_client::Error> {
//! use thingsdb_client::{Auth, Client};
//! let client = Client::builder()
//!     .target("thingsdb://node0.local:9200")?
//!     .discover_nodes(true)
//!     .auth(Auth::password("admin", "pass"))
//!     .connect()
//!     .await?;
//! // If node0 goes away, the client moves to another node of its cluster.
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use thingsdb_transport::Target;

use crate::client::Client;
use crate::config::{ClientBuilder, Config};
use crate::error::Error;
use crate::events::NodeEvent;
use crate::lifecycle::ConnectionEvent;
use crate::management::NodeInfo;
use crate::node_events::{ConnectionEvents, NodeEvents};

impl ClientBuilder {
    /// Learns the cluster when connecting: the nodes of the cluster the
    /// first reachable target belongs to are added to the pool, after the
    /// given targets (see [the module](crate::discovery) for how each
    /// entry is made). Off by default. Needs a user that may query the
    /// `@node` scope.
    pub fn discover_nodes(mut self, on: bool) -> Self {
        self.config.discover_nodes = on;
        self
    }
}

/// How discovery picks the WebSocket port of a node it learnt from a
/// `ws://` or `wss://` seed. ThingsDB 1.9.2's `node_info()` reports no
/// WebSocket port, so the client needs a rule (a node that does report
/// one is reached there whatever the rule).
///
/// ```
/// use thingsdb_client::discovery::WsPort;
/// use thingsdb_client::Client;
/// // Several nodes on one host, each with its WebSocket port 70 above its
/// // client port (9200/9270, 9201/9271, ...):
/// let b = Client::builder().discover_nodes(true).discover_ws_port(WsPort::SeedOffset);
/// // Any other layout: a function of the node.
/// let b = Client::builder().discover_ws_port(WsPort::custom(|node| Some(9270 + node.node_id as u16)));
/// ```
#[derive(Clone, Default)]
pub enum WsPort {
    /// The seed's WebSocket port on every node: nodes on separate hosts
    /// with one configuration. The default.
    #[default]
    SameAsSeed,
    /// The seed's WebSocket port minus its client port, added to each
    /// node's client port: several nodes on one host with a fixed offset.
    SeedOffset,
    /// A function of the node's `node_info()`; `None` leaves the node out.
    Custom(WsPortFn),
}

/// The function of a [`WsPort::Custom`] rule.
pub type WsPortFn = Arc<dyn Fn(&NodeInfo) -> Option<u16> + Send + Sync>;

impl WsPort {
    /// A [`WsPort::Custom`] rule from a function.
    pub fn custom(f: impl Fn(&NodeInfo) -> Option<u16> + Send + Sync + 'static) -> WsPort {
        WsPort::Custom(Arc::new(f))
    }
}

impl std::fmt::Debug for WsPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WsPort::SameAsSeed => "SameAsSeed",
            WsPort::SeedOffset => "SeedOffset",
            WsPort::Custom(_) => "Custom(..)",
        })
    }
}

impl ClientBuilder {
    /// Sets how discovery picks the WebSocket port of the nodes it learns
    /// from a `ws://` or `wss://` seed (see [`WsPort`]; default: the
    /// seed's port, which suits nodes on separate hosts).
    pub fn discover_ws_port(mut self, rule: WsPort) -> Self {
        self.config.ws_port = rule;
        self
    }
}

/// What discovery learned from a connected node.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// The id of the node the client is connected to.
    pub connected: u32,
    /// `node_info()` of every node that answered, the connected one
    /// included, in node id order.
    pub nodes: Vec<NodeInfo>,
}

/// Reads the cluster through `client`: its node's `node_info()`, the
/// `nodes_info()` list, and each other node's `node_info()` through
/// `@node:ID`. Nodes that do not answer are left out.
pub async fn read_cluster(client: &Client) -> Result<Cluster, Error> {
    let me = client.node().node_info().await?;
    let connected = me.node_id;
    let mut ids: Vec<u32> = client
        .node()
        .nodes_info()
        .await?
        .into_iter()
        .map(|n| n.node_id)
        .filter(|id| *id != connected)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut nodes = vec![me];
    for id in ids {
        match client.node_by_id(id)?.node_info().await {
            Ok(info) => nodes.push(info),
            // Offline or unreachable: found again on the next discovery.
            Err(e) => tracing::debug!(node = id, error = %e, "discovery: node did not answer"),
        }
    }
    nodes.sort_by_key(|n| n.node_id);
    Ok(Cluster { connected, nodes })
}

/// The pool for a cluster: `given` first (duplicates dropped), then an
/// entry for every node of `cluster` but the connected one, made after
/// `seed`'s transport (the table in [the module](crate::discovery)).
pub fn pool_targets(given: &[Target], seed: &Target, cluster: &Cluster) -> Vec<Target> {
    pool_targets_with(given, seed, cluster, &WsPort::SameAsSeed)
}

/// [`pool_targets`] with a [`WsPort`] rule for WebSocket seeds.
pub fn pool_targets_with(
    given: &[Target],
    seed: &Target,
    cluster: &Cluster,
    ws_port: &WsPort,
) -> Vec<Target> {
    pool_entries(given, seed, cluster, ws_port)
        .into_iter()
        .map(|(t, _)| t)
        .collect()
}

/// [`pool_targets_with`], each entry with the id of the node it was
/// learnt for (`None` for the given ones).
fn pool_entries(
    given: &[Target],
    seed: &Target,
    cluster: &Cluster,
    ws_port: &WsPort,
) -> Vec<(Target, Option<u32>)> {
    let mut seen = HashSet::new();
    let mut pool = Vec::with_capacity(given.len() + cluster.nodes.len());
    let seed_client_port = cluster
        .nodes
        .iter()
        .find(|n| n.node_id == cluster.connected)
        .map(|n| n.client_port);
    let others = cluster
        .nodes
        .iter()
        .filter(|n| n.node_id != cluster.connected)
        .filter_map(|n| {
            Some((
                entry_for(seed, n, ws_port, seed_client_port)?,
                Some(n.node_id),
            ))
        });
    for (t, id) in given.iter().map(|t| (t.clone(), None)).chain(others) {
        if seen.insert(key(&t)) {
            pool.push((t, id));
        }
    }
    pool
}

/// The entry for one node, after the seed's transport; `None` when the
/// node has no usable name.
fn entry_for(
    seed: &Target,
    node: &NodeInfo,
    rule: &WsPort,
    seed_client_port: Option<u16>,
) -> Option<Target> {
    let host = node.node_name.trim();
    if host.is_empty() {
        return None;
    }
    // An IPv6 address may come in brackets; the target wants it bare.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    // The node's WebSocket port: the one it reports, else the rule's.
    let ws = |seed_port: u16| {
        node.ws_port.or_else(|| match rule {
            WsPort::SameAsSeed => Some(seed_port),
            WsPort::SeedOffset => {
                let offset = i32::from(seed_port) - i32::from(seed_client_port?);
                u16::try_from(i32::from(node.client_port) + offset).ok()
            }
            WsPort::Custom(f) => f(node),
        })
    };
    Some(match seed {
        Target::Tls { .. } => Target::tls(host, node.client_port),
        Target::Ws { port, path, .. } => Target::ws(host, ws(*port)?, path.as_str()),
        Target::Wss { port, path, .. } => Target::wss(host, ws(*port)?, path.as_str()),
        // TCP, Unix, and any transport added later: plain TCP.
        _ => Target::tcp(host, node.client_port),
    })
}

/// What makes two targets the same node for the pool: the target with
/// its host in lower case.
fn key(t: &Target) -> Target {
    let mut t = t.clone();
    match &mut t {
        Target::Tcp { host, .. }
        | Target::Tls { host, .. }
        | Target::Ws { host, .. }
        | Target::Wss { host, .. } => host.make_ascii_lowercase(),
        _ => {}
    }
    t
}

/// The pool for `client`'s cluster: [`read_cluster`] then
/// [`pool_targets`] with `given` and `seed`. The client runs it after
/// connecting, and again after a reconnect or a NODE_STATUS event, when
/// [`Config::discover_nodes`] is on, and adds the result with
/// [`Client::add_targets`].
pub async fn discover(
    client: &Client,
    given: &[Target],
    seed: &Target,
) -> Result<Vec<Target>, Error> {
    let cluster = read_cluster(client).await?;
    Ok(pool_targets_with(
        given,
        seed,
        &cluster,
        &client.config().ws_port,
    ))
}

/// Connects as [`ClientBuilder::connect`] does; with discovery on, learns
/// the cluster through the new connection, adds it to the pool, and keeps
/// learning in the background (see [`spawn_refresh`]).
pub(crate) async fn connect(config: Config) -> Result<Client, Error> {
    let on = config.discover_nodes;
    let given = config.targets.clone();
    let random_start = config.random_start;
    let client = Client::connect_with(config).await?;
    // Started at a random node: the seed is the node reached.
    let seed = if random_start {
        client.connection_info().or_else(|| given.first().cloned())
    } else {
        given.first().cloned()
    };
    if let (true, Some(seed)) = (on, seed) {
        // Listen first, so that no status change after the first
        // discovery goes unnoticed.
        let events = client.node_events().await;
        let connections = client.connection_events().await;
        learn(&client, &given, &seed).await;
        match (events, connections) {
            (Ok(events), Ok(connections)) => {
                spawn_refresh(&client, given, seed, events, connections)
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cluster discovery: no events; not refreshed")
            }
        }
    }
    Ok(client)
}

/// Discovers and adds what it found to the pool; a failure is logged, not
/// returned (discovery is an extra: a user without `@node` access still
/// connects).
async fn learn(client: &Client, given: &[Target], seed: &Target) {
    let pool = read_cluster(client)
        .await
        .map(|c| pool_entries(given, seed, &c, &client.config().ws_port));
    match pool {
        Ok(pool) => {
            // A learnt entry is that node only if that node answers there.
            if let Err(e) = client.add_nodes(pool).await {
                tracing::debug!(error = %e, "cluster discovery: pool not updated");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cluster discovery failed; the pool is unchanged"),
    }
}

/// Learns the cluster again after every NODE_STATUS event and after every
/// new connection (a [`ConnectionEvent::Connected`]), for as long as the
/// client lives. The task holds no strong handle between rounds, so it
/// does not keep the connection open; it ends when the client is gone.
/// Nodes are only ever added to the pool (a removed node is skipped as
/// unreachable).
fn spawn_refresh(
    client: &Client,
    given: Vec<Target>,
    seed: Target,
    events: NodeEvents,
    connections: ConnectionEvents,
) {
    use futures::StreamExt;
    let weak = client.downgrade();
    let mut events = futures::stream::select(
        events.map(|e| matches!(e, NodeEvent::Status { .. })),
        connections.map(|e| matches!(e, ConnectionEvent::Connected { .. })),
    );
    crate::rt::spawn(async move {
        // Ends when both streams end: the client is gone.
        while let Some(changed) = events.next().await {
            if !changed {
                continue;
            }
            let Some(client) = weak.upgrade() else {
                return;
            };
            if client.closed_reason().is_some() {
                return;
            }
            learn(&client, &given, &seed).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::management::ClusterNodeInfo;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Captured from a real 2-node ThingsDB 1.9.2 cluster (testkit
    // RealCluster): node 0 client port 45713, node 1 client port 33973.
    /// `nodes_info()` asked on node 0.
    const NODES_INFO_VIA_0: &str = "\
    9289a76e6f64655f696400ae73796e7461785f76657273696f6ea27631a6737461747573a55245414459a47a\
    6f6e6500b3636f6d6d69747465645f6368616e67655f696402b073746f7265645f6368616e67655f696402a9\
    6e6f64655f6e616d65a93132372e302e302e31a4706f7274cdafe3a673747265616dc089a76e6f64655f6964\
    01ae73796e7461785f76657273696f6ea27631a6737461747573a55245414459a47a6f6e6500b3636f6d6d69\
    747465645f6368616e67655f696402b073746f7265645f6368616e67655f696402a96e6f64655f6e616d65a9\
    3132372e302e302e31a4706f7274cda5eda673747265616dbc3c6e6f64652d6f75743a313e203132372e302e\
    302e313a3432343737";
    /// `nodes_info()` asked on node 1.
    const NODES_INFO_VIA_1: &str = "\
    9289a76e6f64655f696400ae73796e7461785f76657273696f6ea27631a6737461747573a55245414459a47a\
    6f6e6500b3636f6d6d69747465645f6368616e67655f696402b073746f7265645f6368616e67655f696402a9\
    6e6f64655f6e616d65a93132372e302e302e31a4706f7274cdafe3a673747265616dbb3c6e6f64652d696e3a\
    303e203132372e302e302e313a353439363889a76e6f64655f696401ae73796e7461785f76657273696f6ea2\
    7631a6737461747573a55245414459a47a6f6e6500b3636f6d6d69747465645f6368616e67655f696402b073\
    746f7265645f6368616e67655f696402a96e6f64655f6e616d65a93132372e302e302e31a4706f7274cda5ed\
    a673747265616dc0";
    /// `node_info()` of node 0, asked on node 0.
    const NODE_INFO_0: &str = "\
    de002aa76e6f64655f696400a776657273696f6ea5312e392e32ae73796e7461785f76657273696f6ea27631\
    af6d73677061636b5f76657273696f6ea5332e322e31b06c6962636c6572695f76657273696f6ea6312e302e\
    3261ad6c696275765f76657273696f6ea6312e34342e32b06c696270637265325f76657273696f6ea531302e\
    3432a6737461747573a55245414459a47a6f6e6500a96c6f675f6c6576656ca75741524e494e47a96e6f6465\
    5f6e616d65a93132372e302e302e31ab636c69656e745f706f7274cdb291a96e6f64655f706f7274cdafe3aa\
    69705f737570706f7274a8495056344f4e4c59ac73746f726167655f70617468be2f746d702f7468696e6773\
    64622d7265616c53336f624c562f646174612fa6757074696d65cb402f341ad7134422b06368616e6765735f\
    696e5f717565756500b261726368697665645f696e5f6d656d6f727900ad617263686976655f66696c657301\
    b66c6f63616c5f73746f7265645f6368616e67655f696402b96c6f63616c5f636f6d6d69747465645f636861\
    6e67655f696402b7676c6f62616c5f73746f7265645f6368616e67655f696402ba676c6f62616c5f636f6d6d\
    69747465645f6368616e67655f696402b364625f73746f7265645f6368616e67655f696401ae6e6578745f63\
    68616e67655f696403ac6361636865645f6e616d65731cb0687474705f7374617475735f706f7274a8646973\
    61626c6564ad687474705f6170695f706f7274a864697361626c6564b17363686564756c65645f6261636b75\
    707300ac79616a6c5f76657273696f6ea5322e312e30b1636f6e6e65637465645f636c69656e747301b17265\
    73756c745f73697a655f6c696d6974ce01400000ae6361636865645f7175657269657300b57468726573686f\
    6c645f71756572795f6361636865cca0b563616368655f65787069726174696f6e5f74696d65cd0384b27079\
    74686f6e5f696e746572707265746572b92f726f6f742f2e7079656e762f7368696d732f707974686f6eac6d\
    6f64756c65735f70617468d9202f746d702f7468696e677364622d7265616c53336f624c562f6d6f64756c65\
    73a8706c6174666f726da56c696e7578ac617263686974656374757265a5616d643634ac6e6578745f667265\
    655f696403b56c6962776562736f636b6574735f76657273696f6eae342e332e39392d756e6b6e6f776eae63\
    6f6d6d69745f686973746f7279a864697361626c6564";
    /// `node_info()` of node 1, asked on node 0 through `@node:1`.
    const NODE_INFO_1: &str = "\
    de002aa76e6f64655f696401a776657273696f6ea5312e392e32ae73796e7461785f76657273696f6ea27631\
    af6d73677061636b5f76657273696f6ea5332e322e31b06c6962636c6572695f76657273696f6ea6312e302e\
    3261ad6c696275765f76657273696f6ea6312e34342e32b06c696270637265325f76657273696f6ea531302e\
    3432a6737461747573a55245414459a47a6f6e6500a96c6f675f6c6576656ca75741524e494e47a96e6f6465\
    5f6e616d65a93132372e302e302e31ab636c69656e745f706f7274cd84b5a96e6f64655f706f7274cda5edaa\
    69705f737570706f7274a8495056344f4e4c59ac73746f726167655f70617468be2f746d702f7468696e6773\
    64622d7265616c444b455950422f646174612fa6757074696d65cb402e7b96fc864de2b06368616e6765735f\
    696e5f717565756500b261726368697665645f696e5f6d656d6f727900ad617263686976655f66696c657301\
    b66c6f63616c5f73746f7265645f6368616e67655f696402b96c6f63616c5f636f6d6d69747465645f636861\
    6e67655f696402b7676c6f62616c5f73746f7265645f6368616e67655f696402ba676c6f62616c5f636f6d6d\
    69747465645f6368616e67655f696402b364625f73746f7265645f6368616e67655f696401ae6e6578745f63\
    68616e67655f696403ac6361636865645f6e616d65731cb0687474705f7374617475735f706f7274a8646973\
    61626c6564ad687474705f6170695f706f7274a864697361626c6564b17363686564756c65645f6261636b75\
    707300ac79616a6c5f76657273696f6ea5322e312e30b1636f6e6e65637465645f636c69656e747300b17265\
    73756c745f73697a655f6c696d6974ce01400000ae6361636865645f7175657269657300b57468726573686f\
    6c645f71756572795f6361636865cca0b563616368655f65787069726174696f6e5f74696d65cd0384b27079\
    74686f6e5f696e746572707265746572b92f726f6f742f2e7079656e762f7368696d732f707974686f6eac6d\
    6f64756c65735f70617468d9202f746d702f7468696e677364622d7265616c444b455950422f6d6f64756c65\
    73a8706c6174666f726da56c696e7578ac617263686974656374757265a5616d643634ac6e6578745f667265\
    655f696403b56c6962776562736f636b6574735f76657273696f6eae342e332e39392d756e6b6e6f776eae63\
    6f6d6d69745f686973746f7279a864697361626c6564";

    fn cluster(connected: u32) -> Cluster {
        let nodes = [NODE_INFO_0, NODE_INFO_1]
            .iter()
            .map(|h| rmp_serde::from_slice::<NodeInfo>(&hex(h)).unwrap())
            .collect();
        Cluster { connected, nodes }
    }

    #[test]
    fn real_replies_decode() {
        let via0: Vec<ClusterNodeInfo> = rmp_serde::from_slice(&hex(NODES_INFO_VIA_0)).unwrap();
        let via1: Vec<ClusterNodeInfo> = rmp_serde::from_slice(&hex(NODES_INFO_VIA_1)).unwrap();
        assert_eq!(via0.len(), 2);
        // Each node names itself with no stream.
        assert_eq!(via0[0].stream, None);
        assert!(via0[1].stream.is_some());
        assert_eq!(via1[1].stream, None);
        // nodes_info() gives node ports, not client ports.
        let c = cluster(0);
        assert_eq!(via0[1].port, c.nodes[1].node_port);
        assert_ne!(via0[1].port, c.nodes[1].client_port);
        assert_eq!(
            (c.nodes[0].client_port, c.nodes[1].client_port),
            (45713, 33973)
        );
        assert_eq!(c.nodes[1].ws_port, None);
    }

    #[test]
    fn ws_port_rules_for_learnt_nodes() {
        // Node 0 (client port 45713) is the seed at ws port 45783 (+70).
        let seed = Target::ws("127.0.0.1", 45783, "/");
        let c = cluster(0);
        let port = |rule: &WsPort| match pool_targets_with(&[], &seed, &c, rule).as_slice() {
            [Target::Ws { port, .. }] => Some(*port),
            [] => None,
            other => panic!("{other:?}"),
        };
        assert_eq!(port(&WsPort::SameAsSeed), Some(45783));
        assert_eq!(port(&WsPort::SeedOffset), Some(33973 + 70));
        assert_eq!(
            port(&WsPort::custom(|n| Some(9270 + n.node_id as u16))),
            Some(9271)
        );
        assert_eq!(port(&WsPort::custom(|_| None)), None, "left out");
        // The default is the seed's port.
        assert!(matches!(
            ClientBuilder::new().config().ws_port,
            WsPort::SameAsSeed
        ));
    }

    #[test]
    fn tcp_seed_gets_the_other_node_by_client_port() {
        let seed = Target::parse("127.0.0.1:45713").unwrap();
        let pool = pool_targets(std::slice::from_ref(&seed), &seed, &cluster(0));
        assert_eq!(pool, vec![seed, Target::tcp("127.0.0.1", 33973)]);
        // Seeded on node 1 instead: node 0 is added.
        let seed = Target::parse("127.0.0.1:33973").unwrap();
        let pool = pool_targets(std::slice::from_ref(&seed), &seed, &cluster(1));
        assert_eq!(pool, vec![seed, Target::tcp("127.0.0.1", 45713)]);
    }

    #[test]
    fn given_targets_stay_first_and_duplicates_go() {
        let seed = Target::parse("127.0.0.1:45713").unwrap();
        let other = Target::parse("10.0.0.9:9200").unwrap();
        // The other node given already (host in another case): not twice.
        let given = [
            seed.clone(),
            other.clone(),
            Target::tcp("127.0.0.1", 33973),
            seed.clone(),
        ];
        let pool = pool_targets(&given, &seed, &cluster(0));
        assert_eq!(pool, vec![seed, other, Target::tcp("127.0.0.1", 33973)]);
    }

    #[test]
    fn transports_follow_the_seed() {
        let c = cluster(0);
        let tls = Target::parse("thingsdbs://127.0.0.1:45713").unwrap();
        assert_eq!(
            pool_targets(&[], &tls, &c),
            vec![Target::tls("127.0.0.1", 33973)]
        );
        // No ws_port reported (1.9.2): the seed's WebSocket port and path.
        let ws = Target::parse("ws://127.0.0.1:9270/db").unwrap();
        assert_eq!(
            pool_targets(&[], &ws, &c),
            vec![Target::ws("127.0.0.1", 9270, "/db")]
        );
        let wss = Target::parse("wss://127.0.0.1:9271").unwrap();
        assert_eq!(
            pool_targets(&[], &wss, &c),
            vec![Target::wss("127.0.0.1", 9271, "/")]
        );
        // A node that reports its WebSocket port gets it.
        let mut c2 = c.clone();
        c2.nodes[1].ws_port = Some(9280);
        assert_eq!(
            pool_targets(&[], &ws, &c2),
            vec![Target::ws("127.0.0.1", 9280, "/db")]
        );
        // A Unix socket seed reaches the others over TCP.
        let unix = Target::unix("/tmp/ti.sock");
        assert_eq!(
            pool_targets(std::slice::from_ref(&unix), &unix, &c),
            vec![unix, Target::tcp("127.0.0.1", 33973)]
        );
    }

    #[test]
    fn nameless_nodes_and_single_nodes_add_nothing() {
        let seed = Target::parse("127.0.0.1:45713").unwrap();
        let mut c = cluster(0);
        c.nodes[1].node_name = " ".into();
        assert_eq!(
            pool_targets(std::slice::from_ref(&seed), &seed, &c),
            vec![seed.clone()]
        );
        c.nodes.truncate(1);
        assert_eq!(
            pool_targets(std::slice::from_ref(&seed), &seed, &c),
            vec![seed]
        );
        let mut c = cluster(0);
        c.nodes[1].node_name = "[::1]".into();
        assert_eq!(
            pool_targets(&[], &Target::tcp("::1", 1), &c),
            vec![Target::tcp("::1", 33973)]
        );
    }
}
