//! Regression tests for the room and failover defects of issue 11, and for
//! errors that keep their cause, against the testkit (which gives rooms
//! per-collection ids and runs in-process clusters, as real nodes do).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{builder, target, within, Via, ALL};
use futures::{FutureExt, StreamExt};
use thingsdb_client::{
    Auth, Client, Error, LostReason, NodeEvent, Overflow, ReconnectPolicy, RoomEvent, Value,
};
use thingsdb_testkit::{Corruption, TestCluster, TestNode};

fn n_of(ev: &RoomEvent) -> Option<i64> {
    match ev {
        RoomEvent::Emitted(e) => e.arg::<i64>(0).ok(),
        _ => None,
    }
}

/// Defect 1: room ids repeat across collections; a room is (collection, id).
#[tokio::test]
async fn rooms_with_one_id_in_two_collections_stay_apart() {
    let node = TestNode::start().await.unwrap();
    let a = node.create_room("alpha", None);
    let b = node.create_room("beta", None);
    assert_eq!((a, b), (2, 2), "each collection counts its own ids");
    for via in ALL {
        let client = common::connect(&node, via).await;
        let mut alpha = client.room("//alpha", a).unwrap().join().await.unwrap();
        // Another spelling of a collection scope: still its own room.
        let mut beta = client.room("@:beta", b).unwrap().join().await.unwrap();
        assert_eq!(within(30, alpha.next()).await, Some(RoomEvent::Joined));
        assert_eq!(within(30, beta.next()).await, Some(RoomEvent::Joined));
        assert_eq!((alpha.collection(), beta.collection()), ("alpha", "beta"));
        assert_eq!(node.room_joiners("beta", b).len(), 1, "{via:?}");
        node.emit("alpha", a, "n", &[Value::from(1)]);
        node.emit("beta", b, "n", &[Value::from(2)]);
        // A query answered after both events: both were routed by then.
        client.query("1;").await.unwrap();
        assert_eq!(n_of(&within(30, alpha.next()).await.unwrap()), Some(1));
        assert_eq!(n_of(&within(30, beta.next()).await.unwrap()), Some(2));
        assert!(alpha.next().now_or_never().is_none(), "{via:?}");
        assert!(beta.next().now_or_never().is_none(), "{via:?}");
        client.close().await.unwrap();
    }
}

/// Defect 2: two joins back to back; each stream sees exactly one `Joined`.
#[tokio::test]
async fn two_joins_back_to_back_give_one_joined_each() {
    let node = TestNode::start().await.unwrap();
    let id = node.create_room("stuff", Some("chat"));
    for via in ALL {
        let client = common::connect(&node, via).await;
        let room = client.room("//stuff", "chat").unwrap();
        let (s1, s2) = tokio::join!(room.join(), room.join());
        let (mut s1, mut s2) = (s1.unwrap(), s2.unwrap());
        node.emit("stuff", id, "n", &[Value::from(7)]);
        client.query("1;").await.unwrap();
        for s in [&mut s1, &mut s2] {
            assert_eq!(within(30, s.next()).await, Some(RoomEvent::Joined));
            assert_eq!(n_of(&within(30, s.next()).await.unwrap()), Some(7));
            assert!(s.next().now_or_never().is_none(), "{via:?}");
        }
    }
}

/// Defect 3: `leave()` delivers `Left`, then the stream ends.
#[tokio::test]
async fn leave_delivers_left_and_ends_the_stream() {
    let node = TestNode::start().await.unwrap();
    let id = node.create_room("stuff", None);
    for via in ALL {
        let client = common::connect(&node, via).await;
        // With a second stream, the room stays joined: `Left` at once.
        let mut one = common::joined_first(&client, id).await;
        let mut two = common::joined_first(&client, id).await;
        two.leave().await.unwrap();
        assert_eq!(within(30, two.next()).await, Some(RoomEvent::Left));
        assert_eq!(within(30, two.next()).await, None);
        assert_eq!(node.room_joiners("stuff", id).len(), 1);
        // The last stream leaves on the node; `Left` once it confirmed.
        one.leave().await.unwrap();
        assert!(node.room_joiners("stuff", id).is_empty());
        assert_eq!(within(30, one.next()).await, Some(RoomEvent::Left));
        assert_eq!(within(30, one.next()).await, None, "{via:?}");
    }
}

/// Defect 5: with `Overflow::Lag`, the gap is readable as soon as the
/// consumer reaches it, with no later event; room and node streams.
#[tokio::test]
async fn lag_is_reported_without_a_further_event() {
    let node = TestNode::start().await.unwrap();
    let id = node.create_room("stuff", None);
    let client = common::connect(&node, Via::Tcp).await;
    let mut events = client
        .room("//stuff", id)
        .unwrap()
        .join_with(Overflow::Lag)
        .await
        .unwrap();
    let mut status = client.node_events().await.unwrap();
    const N: i64 = 200_000;
    for i in 0..N {
        node.emit("stuff", id, "n", &[Value::from(i)]);
    }
    for i in 0..5_000 {
        node.emit_warn(i, "w");
    }
    // A marker in another room, behind every event above on the
    // connection: once it is read, the client has handled them all.
    let marker = node.create_room("stuff", None);
    let mut mark = common::joined_first(&client, marker).await;
    node.emit("stuff", marker, "done", &[]);
    common::wait_emitted(&mut mark, "done").await;
    // Read everything (a consumer reaching the end of the gap): the count
    // of what was dropped comes out with no later event to carry it.
    assert_eq!(within(30, events.next()).await, Some(RoomEvent::Joined));
    let (emitted, lagged) = common::read_counting_lag(&mut events, N).await;
    assert_eq!(emitted + lagged, N);
    assert!(lagged > 0);
    assert!(events.next().now_or_never().is_none());
    let (mut warns, mut node_lag) = (0u64, 0u64);
    while warns + node_lag < 5_000 {
        match within(60, status.next()).await {
            Some(NodeEvent::Warn { .. }) => warns += 1,
            Some(NodeEvent::Lagged(k)) => node_lag += k,
            other => panic!("{other:?}"),
        }
    }
    assert!(node_lag > 0);
    assert!(status.next().now_or_never().is_none());
}

/// Defect 4 on the testkit: a graceful shutdown of the node a client is on,
/// under load (100 events/s, queries running): no event lost or doubled,
/// no request failed. Over TCP and WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_loses_nothing() {
    for via in [Via::Tcp, Via::Ws] {
        let cluster = TestNode::builder().start_cluster(2).await.unwrap();
        shutdown_under_load(&cluster, via).await;
    }
}

/// A client on the pool `a`, `b` over `via`: 60 s timeouts, quick
/// reconnects.
async fn pooled(a: &TestNode, b: &TestNode, via: Via) -> Client {
    Client::builder()
        .target(&target(a, via))
        .unwrap()
        .target(&target(b, via))
        .unwrap()
        .auth(Auth::password("admin", "pass"))
        .request_timeout(Duration::from_secs(60))
        .reconnect(common::fast_reconnect())
        .connect()
        .await
        .unwrap()
}

async fn shutdown_under_load(cluster: &TestCluster, via: Via) {
    let (a, b) = (cluster.node(0), cluster.node(1));
    let id = a.create_room("stuff", None);
    let client = pooled(a, b, via).await;
    let mut events = common::joined_first(&client, id).await;
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let mut queries = Vec::new();
    for t in 0..4 {
        let (client, stop, failed, answered) = (
            client.clone(),
            stop.clone(),
            failed.clone(),
            answered.clone(),
        );
        queries.push(tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                match client.query("a + 1;").var("a", &(t * 1_000_000 + i)).await {
                    Ok(v) => {
                        assert_eq!(v, Value::from(t * 1_000_000 + i + 1));
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("query failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // 100 events/s from the cluster (the emit reaches every node).
    let emitter = {
        let (b, stop) = (b.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                b.emit("stuff", id, "n", &[Value::from(n)]);
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.shutdown_gracefully(Duration::from_millis(500)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = emitter.await.unwrap();
    for q in queries {
        q.await.unwrap();
    }
    // Everything emitted, once each, in order.
    within(60, client.query("1;")).await.unwrap();
    let mut got = Vec::new();
    while let Some(Some(ev)) = events.next().now_or_never() {
        match ev {
            RoomEvent::Emitted(e) => got.push(e.arg::<i64>(0).unwrap()),
            other => panic!("{via:?}: unexpected {other:?}"),
        }
    }
    assert_eq!(got, (0..sent).collect::<Vec<_>>(), "{via:?}");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "{via:?}");
    assert!(answered.load(Ordering::Relaxed) > 0);
    assert_eq!(client.connections_made(), 2);
}

/// Errors keep their cause: a bad frame from the node is a protocol
/// violation whose source is the protocol error.
#[tokio::test]
async fn connection_lost_says_why_and_keeps_the_source() {
    let node = TestNode::start().await.unwrap();
    let client = builder(&node, Via::Tcp)
        .reconnect(common::fast_reconnect())
        .connect()
        .await
        .unwrap();
    node.faults().corrupt_next_reply(Corruption::BadCheckByte);
    let e = within(60, client.query("1;")).await.unwrap_err();
    assert!(e.is_connection_lost(), "{e}");
    assert_eq!(e.lost_reason(), Some(LostReason::ProtocolViolation));
    let mut source = std::error::Error::source(&e);
    let mut chain = Vec::new();
    while let Some(s) = source {
        chain.push(s.to_string());
        source = s.source();
    }
    assert!(chain.len() >= 2, "{chain:?}");
    assert!(chain.iter().any(|s| s.contains("check")), "{chain:?}");
    assert!(!e.is_timeout());
    assert_eq!(e.code(), None);

    // Keep-alive: a silent node is given up with its own reason.
    let quiet = builder(&node, Via::Tcp)
        .keepalive(Some(Duration::from_millis(200)))
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    let conn = node.connections().last().unwrap().id;
    node.connection_faults(conn).stop_replying(true);
    let e = within(60, quiet.query("1;")).await.unwrap_err();
    assert_eq!(e.lost_reason(), Some(LostReason::KeepAliveTimeout), "{e}");
    let e = quiet.query("1;").await.unwrap_err();
    assert!(matches!(e, Error::ConnectionLost(_)), "{e}");
}

/// `room_in_default`: a room in the default scope, no scope string.
#[tokio::test]
async fn rooms_in_the_default_scope() {
    let node = TestNode::start().await.unwrap();
    let id = node.create_room("stuff", Some("chat"));
    let client = builder(&node, Via::Tcp)
        .default_scope("//stuff")
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut events = client
        .room_in_default("chat")
        .unwrap()
        .join()
        .await
        .unwrap();
    assert_eq!(events.room_id(), id);
    assert_eq!(within(30, events.next()).await, Some(RoomEvent::Joined));
    let plain = common::connect(&node, Via::Tcp).await;
    assert!(matches!(
        plain.room_in_default("chat"),
        Err(Error::BadArgument(_))
    ));
}

/// The pool grows at run time: a node added later is where the client
/// moves when its node shuts down.
#[tokio::test]
async fn targets_added_at_run_time_are_used() {
    let cluster = TestNode::builder().start_cluster(2).await.unwrap();
    let (a, b) = (cluster.node(0), cluster.node(1));
    let id = a.create_room("stuff", None);
    let client = builder(a, Via::Tcp)
        .reconnect(common::fast_reconnect())
        .connect()
        .await
        .unwrap();
    let mut events = common::joined_first(&client, id).await;
    client
        .add_targets(vec![b.tcp_target().parse().unwrap()])
        .await
        .unwrap();
    a.shutdown_gracefully(Duration::from_millis(300)).await;
    assert_eq!(
        within(60, client.query("1 + 1;")).await.unwrap(),
        Value::from(2)
    );
    assert_eq!(b.connections().len(), 1);
    b.emit("stuff", id, "on-b", &[]);
    match within(60, events.next()).await {
        Some(RoomEvent::Emitted(e)) => assert_eq!(e.event, "on-b"),
        other => panic!("{other:?}"),
    }
}

/// Issue 25: requests in flight on the connection of a node that is
/// shutting down end as soon as that connection goes, not at their
/// deadline. The node stops answering, says SHUTTING_DOWN (the client
/// moves to the other node, the old connection drains with 16 requests in
/// flight), then closes. Over TCP and WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_on_a_draining_connection_end_when_it_closes() {
    use thingsdb_client::NodeStatus;
    for via in [Via::Tcp, Via::Ws] {
        let cluster = TestNode::builder().start_cluster(2).await.unwrap();
        let (a, b) = (cluster.node(0), cluster.node(1));
        let client = pooled(a, b, via).await;
        let conn = a.connections().last().unwrap().id;
        a.connection_faults(conn).stop_replying(true);
        let started = std::time::Instant::now();
        let in_flight: Vec<_> = (0..16i64)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move { client.query("a;").var("a", &i).await })
            })
            .collect();
        // Every one of them is written to `a` before it says it goes.
        let queries = || a.counters().received(thingsdb_protocol::PackageType::Query);
        while queries() < 16 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        a.emit_node_status(NodeStatus::ShuttingDown);
        // The client serves from `b` once connected there; `a` drains.
        while client.connections_made() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            within(60, client.query("7;")).await.unwrap(),
            Value::from(7)
        );
        a.connection_faults(conn).close_now();
        for q in in_flight {
            let e = within(60, q).await.unwrap().unwrap_err();
            assert!(e.is_connection_lost() && !e.is_timeout(), "{via:?}: {e}");
            assert_eq!(e.lost_reason(), Some(LostReason::NodeShuttingDown), "{e}");
            assert!(e.may_have_run(), "written, so it may have run: {e}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{via:?}: the requests ended by their deadline, not by the loss"
        );
    }
}
