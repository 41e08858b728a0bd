//! Failover on a real ThingsDB cluster: two nodes on loopback joined with
//! `new_node()`; the node a client holds rooms on is shut down; the client
//! moves to the other node and its rooms keep receiving events.
//!
//! Runs when `THINGSDB_BIN` names a node binary; otherwise it says it was
//! skipped. Joining a node takes the node about 15 seconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{joined, skipped, wait_emitted, wait_event, within};
use futures::StreamExt;
use thingsdb_client::{Auth, Client, ReconnectPolicy, RoomEvent, Value};
use thingsdb_testkit::real_node::RealCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_moves_to_another_node_and_keeps_its_rooms() {
    let Some(cluster) = RealCluster::from_env(2).await.unwrap() else {
        skipped("real-cluster test skipped: set THINGSDB_BIN to a ThingsDB binary");
        return;
    };
    let a = cluster.nodes[0].tcp_target().unwrap().to_string();
    let b = cluster.nodes[1].tcp_target().unwrap().to_string();

    // The pool: node A first, then B.
    let client = Client::builder()
        .target(&a)
        .unwrap()
        .target(&b)
        .unwrap()
        .auth(Auth::password("admin", "pass"))
        .default_scope("//stuff")
        .unwrap()
        .keepalive(Some(Duration::from_secs(2)))
        .reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..ReconnectPolicy::default()
        })
        .request_timeout(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    // An emitter that stays on node B.
    let emitter = Client::builder()
        .target(&b)
        .unwrap()
        .default_scope("//stuff")
        .unwrap()
        .connect()
        .await
        .unwrap();

    let room_id: u64 = client
        .query(".failover = room(); .failover.id();")
        .decode()
        .await
        .unwrap();
    let mut status = client.node_events().await.unwrap();
    let mut events = joined(&client, room_id).await;
    let room_b = emitter.room("//stuff", room_id).unwrap();
    // The room exists on B once the change reached it.
    within(120, async {
        while room_b.emit("before", &Vec::<u8>::new()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    wait_emitted(&mut events, "before").await;
    assert_eq!(client.connections_made(), 1);

    // Shut node A down the way an operator would.
    cluster.nodes[0].terminate().unwrap();

    // The client leaves A (on SHUTTING_DOWN, or when the connection ends)
    // and joins the room again on B.
    wait_event(&mut events, RoomEvent::Disconnected).await;
    wait_event(&mut events, RoomEvent::Joined).await;
    assert!(client.connections_made() >= 2);
    room_b.emit("after", &("still here",)).await.unwrap();
    wait_emitted(&mut events, "after").await;
    let v = within(60, client.query("1 + 1;")).await.unwrap();
    assert_eq!(v, Value::from(2));

    // What the node said on its way out, for the record.
    let mut seen = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(100), status.next()).await {
        seen.push(format!("{ev:?}"));
    }
    skipped(&format!("real-cluster: node events seen: {seen:?}"));
}
