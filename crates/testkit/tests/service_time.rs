//! The node's service time: QUERY and RUN served one at a time per node,
//! each taking the set time. Only lower bounds on time are asserted; the
//! independence of the nodes of a cluster is shown without a clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use rmpv::Value;
use thingsdb_protocol::{Frame, PackageType, Response};
use thingsdb_testkit::{Reply, TestNode};

const SERVICE: Duration = Duration::from_millis(5);

fn echo_id(node: &TestNode) {
    node.on_query(|q| Reply::value(q.var("i").cloned().unwrap_or(Value::Nil)));
}

fn q(id: u16) -> bytes::Bytes {
    query(
        id,
        "//stuff",
        "i;",
        Some(Value::Map(vec![("i".into(), id.into())])),
    )
}

/// Reads `n` replies; returns their ids in arrival order.
async fn replies(c: &mut thingsdb_testkit::RawClient, n: usize) -> Vec<u16> {
    let mut ids = Vec::new();
    while ids.len() < n {
        let f: Frame = tokio::time::timeout(GUARD, c.recv())
            .await
            .expect("hung")
            .unwrap()
            .expect("closed");
        assert_eq!(f.package_type().unwrap(), PackageType::Data);
        let v = Response::decode(&f).unwrap().value().unwrap().unwrap();
        assert_eq!(v, Value::from(f.id));
        ids.push(f.id);
    }
    ids
}

#[tokio::test]
async fn pipelined_queries_are_served_one_at_a_time_in_order() {
    let node = TestNode::builder()
        .service_time(SERVICE)
        .start()
        .await
        .unwrap();
    echo_id(&node);
    for t in ALL {
        let mut c = authed(&node, t).await;
        let started = Instant::now();
        // One package per send (over WebSocket, one per message).
        for id in 1..=20u16 {
            c.send(&q(id)).await.unwrap();
        }
        let ids = replies(&mut c, 20).await;
        let took = started.elapsed();
        assert!(took >= SERVICE * 20, "{t:?}: 20 requests in {took:?}");
        assert_eq!(ids, (1..=20).collect::<Vec<_>>(), "{t:?}");
    }
}

#[tokio::test]
async fn the_connections_of_a_node_share_its_time() {
    let node = TestNode::builder()
        .service_time(SERVICE)
        .start()
        .await
        .unwrap();
    echo_id(&node);
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(authed(&node, T::Tcp).await);
    }
    let started = Instant::now();
    for c in &mut clients {
        let mut all = BytesMut::new();
        for id in 1..=5u16 {
            all.extend_from_slice(&q(id));
        }
        c.send(&all).await.unwrap();
    }
    for c in &mut clients {
        replies(c, 5).await;
    }
    let took = started.elapsed();
    assert!(took >= SERVICE * 20, "4 x 5 requests in {took:?}");
}

#[tokio::test]
async fn procedures_take_the_time_too_and_other_requests_keep_their_place() {
    let node = TestNode::builder()
        .service_time(SERVICE)
        .start()
        .await
        .unwrap();
    node.procedure("one", |_| Reply::value(1));
    let mut c = authed(&node, T::Tcp).await;
    let mut all = BytesMut::new();
    for id in 1..=10u16 {
        all.extend_from_slice(&run_pos(id, "//stuff", "one", vec![]));
    }
    all.extend_from_slice(&ping(11));
    let started = Instant::now();
    c.send(&all).await.unwrap();
    let mut ids = Vec::new();
    while ids.len() < 11 {
        let f = tokio::time::timeout(GUARD, c.recv())
            .await
            .expect("hung")
            .unwrap()
            .expect("closed");
        ids.push(f.id);
    }
    assert!(started.elapsed() >= SERVICE * 10);
    // The PING took no time but waited behind the procedures.
    assert_eq!(ids, (1..=11).collect::<Vec<_>>());
    // Without the time, nothing waits.
    node.set_service_time(Duration::ZERO);
    assert_eq!(node.service_time(), Duration::ZERO);
    c.send(&q(12)).await.unwrap();
    let f = tokio::time::timeout(GUARD, c.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(f.id, 12);
}

#[tokio::test]
async fn each_node_of_a_cluster_has_its_own_queue() {
    let cluster = TestNode::builder()
        .service_time(SERVICE)
        .start_cluster(2)
        .await
        .unwrap();
    let (n0, n1) = (cluster.node(0), cluster.node(1));
    echo_id(n0);
    // Node 0 is booked for an hour by one request; node 1 still serves its
    // own requests (with a shared queue they would wait behind it, and
    // the hang guard would fail the test).
    n0.set_service_time(Duration::from_secs(3600));
    assert_eq!(n1.service_time(), SERVICE);
    let mut c0 = authed(n0, T::Tcp).await;
    c0.send(&q(1)).await.unwrap();
    let mut c1 = authed(n1, T::Tcp).await;
    let mut all = BytesMut::new();
    for id in 1..=20u16 {
        all.extend_from_slice(&q(id));
    }
    let started = Instant::now();
    c1.send(&all).await.unwrap();
    replies(&mut c1, 20).await;
    assert!(started.elapsed() >= SERVICE * 20);
    drop(c0);
}
