//! Failover on a real ThingsDB cluster: three nodes on loopback joined
//! with `new_node()` (with two, the one left forwards queries while it is
//! away and fails them with `node` errors, whatever the client does); the node a client holds rooms on is shut down gracefully
//! (SIGTERM: the node says SHUTTING_DOWN and keeps serving for its
//! shutdown period) while events flow at 100/s and queries run; the client
//! moves to the other node making the new connection before it lets go of
//! the old one, and loses no request; events are neither doubled nor
//! reordered, and none is lost but those the cluster itself delivers to
//! nobody (see the comment in the test).
//!
//! Runs when `THINGSDB_BIN` names a node binary (over WebSocket too when
//! `THINGSDB_BIN_WS=1`, inside an isolated network namespace as `cargo
//! xtask real-node` runs it); otherwise it says it was skipped. Joining a
//! node takes the node about 15 seconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{joined, skipped, wait_emitted, within};
use futures::StreamExt;
use thingsdb_client::{Auth, Client, ReconnectPolicy, RoomEvent, Value};
use thingsdb_testkit::real_node::RealCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load_loses_nothing_over_tcp() {
    let Some(cluster) = RealCluster::from_env(3).await.unwrap() else {
        skipped("real-cluster test skipped: set THINGSDB_BIN to a ThingsDB binary");
        return;
    };
    let a = cluster.nodes[0].tcp_target().unwrap().to_string();
    let b = cluster.nodes[1].tcp_target().unwrap().to_string();
    shutdown_under_load(&cluster, &a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load_loses_nothing_over_websocket() {
    let Some(cluster) = RealCluster::from_env(3).await.unwrap() else {
        skipped("real-cluster test skipped: set THINGSDB_BIN to a ThingsDB binary");
        return;
    };
    let (Some(a), Some(b)) = (cluster.nodes[0].ws_url(), cluster.nodes[1].ws_url()) else {
        skipped("real-cluster WebSocket test skipped: set THINGSDB_BIN_WS=1 (in an isolated network namespace)");
        return;
    };
    let (a, b) = (a.to_string(), b.to_string());
    shutdown_under_load(&cluster, &a, &b).await;
}

async fn shutdown_under_load(cluster: &RealCluster, a: &str, b: &str) {
    // The pool: node A first, then B.
    let client = Client::builder()
        .target(a)
        .unwrap()
        .target(b)
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
        .target(b)
        .unwrap()
        .auth(Auth::password("admin", "pass"))
        .default_scope("//stuff")
        .unwrap()
        .request_timeout(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();

    let room_id: u64 = client
        .query(".failover = room(); .failover.id();")
        .decode()
        .await
        .unwrap();
    let mut status = client.node_events().await.unwrap();
    let heard = common::heard_shutting_down(&client).await;
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

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let mut queries = Vec::new();
    for t in 0..4i64 {
        let (client, stop, failed, answered) = (
            client.clone(),
            stop.clone(),
            failed.clone(),
            answered.clone(),
        );
        queries.push(tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                // Task 0 runs a slow (~200 ms) query, the others quick ones.
                let code = if t == 0 {
                    "range(100).each(|_| range(10000).reduce(|x, y| x + y, 0)); a + 1;"
                } else {
                    "a + 1;"
                };
                match client.query(code).var("a", &i).decode::<i64>().await {
                    Ok(v) => {
                        assert_eq!(v, i + 1);
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("query failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    // 100 events/s from node B.
    let emitting = common::emit_numbers(room_b, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Shut node A down the way an operator would: SIGTERM.
    cluster.nodes[0].terminate().unwrap();
    // Load goes on through the node's shutdown period and past its exit.
    let mut waited = 0;
    while client.connections_made() < 2 && waited < 120 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        waited += 1;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let emitted = emitting.await.unwrap();
    let sent = emitted.len();
    for q in queries {
        q.await.unwrap();
    }
    emitter
        .room("//stuff", room_id)
        .unwrap()
        .emit("end", &Vec::<u8>::new())
        .await
        .unwrap();

    let mut got = Vec::new();
    let mut other = Vec::new();
    within(120, async {
        loop {
            match events.next().await {
                Some(RoomEvent::Emitted(e)) if e.event == "end" => break,
                Some(RoomEvent::Emitted(e)) => got.push(e.arg::<i64>(0).unwrap()),
                Some(ev) => other.push(format!("{ev:?}")),
                None => panic!("the stream ended"),
            }
        }
    })
    .await;
    let mut seen = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(100), status.next()).await {
        seen.push(format!("{ev:?}"));
    }
    skipped(&format!(
        "real-cluster {a}: {sent} events emitted, {} received, {} queries answered, {} failed; other stream items {other:?}; node events {seen:?}",
        got.len(),
        answered.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    ));
    // Nothing doubled, nothing out of order, nothing missing but the
    // cluster's own window.
    common::assert_events_through_a_move(&got, &emitted, heard.get().copied());
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failed requests");
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(client.connections_made(), 2);
    let v = within(60, client.query("1 + 1;")).await.unwrap();
    assert_eq!(v, Value::from(2));
    // The move shows in the counters: one move, no reconnect, every query
    // counted as answered.
    let stats = client.stats();
    assert_eq!((stats.moves, stats.reconnects), (1, 0), "{stats:?}");
    assert_eq!(stats.query.ok, answered.load(Ordering::Relaxed) + 2);
    assert_eq!(stats.query.total(), stats.query.ok, "{stats:?}");
}
