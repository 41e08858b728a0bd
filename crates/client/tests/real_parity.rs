//! Random start, connection info, scope handles and `rooms()` against real
//! ThingsDB nodes. Run when `THINGSDB_BIN` names a node binary (see
//! `real_node.rs`); otherwise each test says it was skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{skipped, within};
use thingsdb_client::{Auth, Client, Target, Value};
use thingsdb_testkit::real_node::{RealCluster, RealNode, SKIP_MESSAGE};

fn builder(user: &str, password: &str) -> thingsdb_client::ClientBuilder {
    Client::builder()
        .auth(Auth::password(user, password))
        .request_timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10))
}

/// The client port of the node `client` is connected to, as the node says.
async fn node_port(client: &Client) -> u16 {
    within(
        60,
        client
            .query("node_info().load().client_port;")
            .scope("@node")
            .decode(),
    )
    .await
    .unwrap()
}

fn port_of(t: &Target) -> Option<u16> {
    match t {
        Target::Tcp { port, .. } => Some(*port),
        _ => None,
    }
}

#[tokio::test]
async fn scope_handles_connection_info_and_rooms_on_a_real_node() {
    let Some(node) = RealNode::from_env().await.unwrap() else {
        skipped(SKIP_MESSAGE);
        return;
    };
    let Some(target) = node.tcp_target() else {
        skipped("real-node test skipped: the node has no TCP target");
        return;
    };
    let client = builder(node.user(), node.password())
        .target(target)
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert!(client.is_connected());
    let info = client.connection_info().unwrap();
    assert_eq!(info, Target::parse(target).unwrap());
    assert_eq!(port_of(&info), Some(node_port(&client).await));

    // `.id()` of the collection: only in a collection scope.
    let stuff = client.with_default_scope("//stuff").unwrap();
    let id: u64 = within(60, stuff.query(".id();").decode()).await.unwrap();
    assert!(id > 0);
    assert!(within(60, client.query(".id();")).await.is_err());
    // The original handle still runs in `@thingsdb`.
    let same: u64 = within(
        60,
        client
            .query("collection_info('stuff').load().collection_id;")
            .decode(),
    )
    .await
    .unwrap();
    assert_eq!(same, id);

    // rooms(): the pair of collection and room id, while a stream is live.
    let room_id: u64 = within(60, stuff.query(".parity = room(); .parity.id();").decode())
        .await
        .unwrap();
    assert!(within(60, client.rooms()).await.unwrap().is_empty());
    let mut events = within(60, stuff.room_in_default(room_id).unwrap().join())
        .await
        .unwrap();
    assert_eq!(
        within(60, client.rooms()).await.unwrap(),
        vec![("stuff".to_string(), room_id)]
    );
    within(60, events.leave()).await.unwrap();
    assert!(within(60, client.rooms()).await.unwrap().is_empty());

    client.close().await.unwrap();
    assert!(!stuff.is_connected());
    assert_eq!(stuff.connection_info(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_start_spreads_clients_over_a_real_cluster() {
    let Some(cluster) = RealCluster::from_env(2).await.unwrap() else {
        skipped("real-cluster test skipped: set THINGSDB_BIN to a ThingsDB binary");
        return;
    };
    let targets: Vec<String> = cluster
        .nodes
        .iter()
        .filter_map(|n| n.tcp_target().map(str::to_string))
        .collect();
    assert_eq!(targets.len(), 2);
    let mut on = [0usize; 2];
    // The chance that 24 clients all pick the same node is 2^-23.
    for _ in 0..24 {
        let mut b = builder("admin", "pass").random_start(true);
        for t in &targets {
            b = b.target(t).unwrap();
        }
        let client = within(60, b.connect()).await.unwrap();
        let info = client.connection_info().unwrap();
        // The node agrees with what the client says.
        assert_eq!(port_of(&info), Some(node_port(&client).await));
        let i = targets
            .iter()
            .position(|t| Target::parse(t).unwrap() == info)
            .unwrap();
        on[i] += 1;
        assert_eq!(
            within(60, client.query("1 + 1;")).await.unwrap(),
            Value::from(2)
        );
        client.close().await.unwrap();
    }
    assert!(on[0] > 0 && on[1] > 0, "clients per node: {on:?}");
}
