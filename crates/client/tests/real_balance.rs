//! Spreading requests over a real ThingsDB cluster (`Balance`, `Route`):
//! three nodes on loopback; a client with a connection to each sends
//! requests by the fewest-in-flight policy, names nodes, reads its own
//! changes, and keeps going when one node is killed.
//!
//! Runs when `THINGSDB_BIN` names a node binary (over WebSocket too when
//! `THINGSDB_BIN_WS=1`, inside an isolated network namespace as `cargo
//! xtask real-node` runs it); otherwise it says it was skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{skipped, within};
use thingsdb_client::{Auth, Balance, Client, ReconnectPolicy, Route};
use thingsdb_testkit::real_node::RealCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_spread_over_a_real_cluster_over_tcp() {
    let Some(cluster) = RealCluster::from_env(3).await.unwrap() else {
        skipped("real-cluster test skipped: set THINGSDB_BIN to a ThingsDB binary");
        return;
    };
    let targets: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.tcp_target().unwrap().to_string())
        .collect();
    spread(&cluster, &targets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_spread_over_a_real_cluster_over_websocket() {
    let Some(cluster) = RealCluster::from_env(3).await.unwrap() else {
        skipped("real-cluster test skipped: set THINGSDB_BIN to a ThingsDB binary");
        return;
    };
    let Some(targets) = cluster
        .nodes
        .iter()
        .map(|n| n.ws_url().map(str::to_string))
        .collect::<Option<Vec<_>>>()
    else {
        skipped("real-cluster WebSocket test skipped: set THINGSDB_BIN_WS=1 (in an isolated network namespace)");
        return;
    };
    spread(&cluster, &targets).await;
}

async fn spread(cluster: &RealCluster, targets: &[String]) {
    let mut b = Client::builder()
        .auth(Auth::password("admin", "pass"))
        .default_scope("//stuff")
        .unwrap()
        .request_timeout(Duration::from_secs(60))
        .reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..ReconnectPolicy::default()
        })
        .balance(Balance::FewestInFlight);
    for t in targets {
        b = b.target(t).unwrap();
    }
    let client = b.connect().await.unwrap();
    let mut ids: Vec<u32> = client.nodes().iter().filter_map(|n| n.node_id).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [0, 1, 2],
        "a connection to each node: {:?}",
        client.nodes()
    );

    // A request that names a node runs there.
    for id in 0..3u32 {
        let got: u32 = client
            .query("node_info().load().node_id;")
            .scope("@node")
            .route(Route::Node(id))
            .decode()
            .await
            .unwrap();
        assert_eq!(got, id);
    }

    // Read one's own writes: the node that answered a change has it.
    for i in 0..30i64 {
        client.query(".x = x;").var("x", &i).await.unwrap();
        let x: i64 = client
            .query(".x;")
            .route(Route::LastChange)
            .idempotent()
            .decode()
            .await
            .unwrap();
        assert_eq!(x, i, "read on the node of the last change");
    }

    // 16 loops of changes and reads: every node takes a share, nothing
    // fails, and every change ran once.
    client.query(".n = 0;").await.unwrap();
    let before: Vec<u64> = client.nodes().iter().map(|n| n.sent).collect();
    let loops = (0..16).map(|_| {
        let client = client.clone();
        async move {
            for _ in 0..40 {
                client.query(".n += 1;").await.unwrap();
                client.query("1 + 1;").await.unwrap();
            }
        }
    });
    within(300, futures::future::join_all(loops)).await;
    let split: Vec<u64> = client
        .nodes()
        .iter()
        .zip(&before)
        .map(|(n, b)| n.sent - b)
        .collect();
    println!("requests per connection: {split:?}");
    assert!(split.iter().all(|n| *n > 0), "{split:?}");
    assert_eq!(split.iter().sum::<u64>(), 16 * 80);
    // Each node applies the changes in one order; wait until each has all.
    for id in 0..3u32 {
        within(60, async {
            loop {
                let n: i64 = client
                    .query(".n;")
                    .route(Route::Node(id))
                    .idempotent()
                    .decode()
                    .await
                    .unwrap();
                assert!(
                    n <= 640,
                    "node {id}: .n = {n}, more than the 640 increments sent"
                );
                if n == 640 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    // A node other than the first connection's is killed while reads run:
    // none fails, and its share goes to the others.
    let first = common::first_node(&client);
    let victim = (0..3u32).find(|i| *i != first).unwrap();
    let reads = (0..8).map(|_| {
        let client = client.clone();
        async move {
            for _ in 0..300 {
                client.query(".n;").idempotent().await.unwrap();
            }
        }
    });
    let work = tokio::spawn(futures::future::join_all(reads));
    tokio::time::sleep(Duration::from_millis(50)).await;
    cluster.nodes[victim as usize].kill().unwrap();
    within(300, work).await.unwrap();
    common::wait_without_node(&client, 2, victim).await;
    client.close().await.unwrap();
}
