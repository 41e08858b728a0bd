//! Spreading requests over the nodes of a cluster (`Balance`, `Route`),
//! against in-process testkit clusters over TCP and WebSocket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{target, within, Via};
use thingsdb_client::{Auth, Balance, Client, Route, TransportErrorKind};
use thingsdb_testkit::{TestCluster, TestNode};

const VIAS: [Via; 2] = [Via::Tcp, Via::Ws];

async fn spread(cluster: &TestCluster, via: Via, balance: Balance) -> Client {
    let mut b = Client::builder()
        .auth(Auth::password("admin", "pass"))
        .request_timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .balance(balance);
    for node in cluster.nodes() {
        b = b.target(&target(node, via)).unwrap();
    }
    b.connect().await.unwrap()
}

/// Packages each node received on its open connections.
fn received(cluster: &TestCluster) -> Vec<u64> {
    cluster
        .nodes()
        .iter()
        .map(|n| n.connections().iter().map(|c| c.received).sum())
        .collect()
}

/// Waits (a minute at most) until the client has `n` connections, each to
/// a node of its own.
async fn wait_nodes(client: &Client, n: usize) {
    within(60, async {
        loop {
            let nodes = client.nodes();
            let mut ids: Vec<_> = nodes.iter().filter_map(|l| l.node_id).collect();
            ids.sort_unstable();
            ids.dedup();
            if nodes.len() == n && ids.len() == n && nodes.iter().all(|l| l.target.is_some()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn round_robin_gives_each_node_its_turn() {
    let cluster = TestNode::builder().start_cluster(3).await.unwrap();
    for via in VIAS {
        let client = spread(&cluster, via, Balance::RoundRobin).await;
        wait_nodes(&client, 3).await;
        assert_eq!(client.connections_made(), 3, "{via:?}");
        assert_eq!(client.stats().connections, 3, "{via:?}");
        let before = received(&cluster);
        for _ in 0..30 {
            client.query("1 + 1;").await.unwrap();
        }
        let nodes = client.nodes();
        assert!(nodes.iter().all(|n| n.sent == 10), "{via:?}: {nodes:?}");
        assert!(nodes.iter().all(|n| n.in_flight == 0), "{via:?}: {nodes:?}");
        assert_eq!(nodes.iter().filter(|n| n.primary).count(), 1);
        let after = received(&cluster);
        for (i, (a, b)) in after.iter().zip(&before).enumerate() {
            // 10 queries each (and perhaps a keep-alive ping).
            assert!(a - b >= 10, "{via:?}: node {i} got {}", a - b);
        }
        client.close().await.unwrap();
        for node in cluster.nodes() {
            assert!(
                node.wait_for_connections(0, Duration::from_secs(30)).await,
                "{via:?}"
            );
        }
    }
}

#[tokio::test]
async fn fewest_in_flight_spreads_concurrent_requests_and_avoids_a_slow_node() {
    let cluster = TestNode::builder().start_cluster(3).await.unwrap();
    for via in VIAS {
        let client = spread(&cluster, via, Balance::FewestInFlight).await;
        let run = |n: usize| {
            let client = client.clone();
            async move {
                let loops = (0..16).map(|_| {
                    let client = client.clone();
                    async move {
                        for _ in 0..n {
                            client.query("1 + 1;").await.unwrap();
                        }
                    }
                });
                futures::future::join_all(loops).await;
            }
        };
        within(60, run(20)).await;
        let nodes = client.nodes();
        assert_eq!(nodes.iter().map(|n| n.sent).sum::<u64>(), 320, "{via:?}");
        // 16 at a time over three connections: each gets its share.
        assert!(nodes.iter().all(|n| n.sent > 0), "{via:?}: {nodes:?}");

        // Node 1 answers 200 ms late: the others take (nearly) all.
        // (Faults on the node's own connections: the cluster's faults are
        // shared by every node.)
        for c in cluster.node(1).connections() {
            cluster
                .node(1)
                .connection_faults(c.id)
                .delay_replies(Duration::from_millis(200));
        }
        let sent_before: BTreeMap<Option<u32>, u64> =
            client.nodes().iter().map(|n| (n.node_id, n.sent)).collect();
        within(120, run(20)).await;
        let slow = client
            .nodes()
            .iter()
            .find(|n| n.node_id == Some(1))
            .map(|n| n.sent - sent_before[&Some(1)])
            .unwrap();
        // At most a few requests in flight there at a time while the others
        // answer at once: far below an equal share (107).
        println!("{via:?}: the slow node got {slow} of 320");
        assert!(slow < 60, "{via:?}: the slow node got {slow} of 320");
        for c in cluster.node(1).connections() {
            cluster.node(1).connection_faults(c.id).reset();
        }
        client.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_request_goes_to_the_node_it_names_or_fails_clearly() {
    let cluster = TestNode::builder().start_cluster(3).await.unwrap();
    for via in VIAS {
        let client = spread(&cluster, via, Balance::FewestInFlight).await;
        for id in 0..3u32 {
            for _ in 0..3 {
                let got: u32 = client
                    .query("node_info().load().node_id;")
                    .scope("@node")
                    .route(Route::Node(id))
                    .decode()
                    .await
                    .unwrap();
                assert_eq!(got, id, "{via:?}");
            }
        }
        let e = client.query("1;").route(Route::Node(7)).await.unwrap_err();
        assert_eq!(
            e.transport_kind(),
            Some(TransportErrorKind::NotConnected),
            "{e}"
        );
        assert!(e.to_string().contains("node 7"), "{e}");
        client.close().await.unwrap();
    }
}

#[tokio::test]
async fn last_change_goes_to_the_node_that_made_it() {
    let cluster = TestNode::builder().start_cluster(3).await.unwrap();
    let ask = "node_info().load().node_id;";
    for via in VIAS {
        let client = spread(&cluster, via, Balance::RoundRobin).await;
        for _ in 0..6 {
            // Not marked idempotent: a change, as far as the client knows.
            let changed: u32 = client.query(ask).scope("@node").decode().await.unwrap();
            // Round robin would move on; the route stays with the change.
            for _ in 0..3 {
                let read: u32 = client
                    .query(ask)
                    .scope("@node")
                    .route(Route::LastChange)
                    .idempotent()
                    .decode()
                    .await
                    .unwrap();
                assert_eq!(read, changed, "{via:?}");
            }
        }
        client.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_node_that_goes_hands_its_share_to_the_others_and_gets_it_back() {
    for via in VIAS {
        let cluster = TestNode::builder().start_cluster(3).await.unwrap();
        let client = spread(&cluster, via, Balance::FewestInFlight).await;
        wait_nodes(&client, 3).await;
        // Node 2 goes away for a while (not the first connection's node).
        let primary = common::first_node(&client);
        let down = (0..3u8)
            .find(|i| u32::from(*i) != primary && *i != 0)
            .unwrap_or(2);
        let loops = (0..8).map(|_| {
            let client = client.clone();
            async move {
                let mut failed = 0;
                for _ in 0..150 {
                    if client.query("1 + 1;").idempotent().await.is_err() {
                        failed += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                failed
            }
        });
        let work = tokio::spawn(futures::future::join_all(loops));
        tokio::time::sleep(Duration::from_millis(100)).await;
        cluster
            .node(usize::from(down))
            .restart_with_downtime(Duration::from_millis(1500))
            .await;
        // Its connection moved and was let go: two connections, two nodes.
        common::wait_without_node(&client, 2, u32::from(down)).await;
        let failed: usize = within(120, work).await.unwrap().into_iter().sum();
        assert_eq!(failed, 0, "{via:?}");
        // Back after its downtime: three again.
        wait_nodes(&client, 3).await;
        let before = client
            .nodes()
            .iter()
            .find(|n| n.node_id == Some(u32::from(down)))
            .unwrap()
            .sent;
        for _ in 0..30 {
            client.query("1 + 1;").await.unwrap();
        }
        let after = client
            .nodes()
            .iter()
            .find(|n| n.node_id == Some(u32::from(down)))
            .unwrap()
            .sent;
        assert!(
            after > before,
            "{via:?}: the node that came back gets requests"
        );
        client.close().await.unwrap();
    }
}

#[tokio::test]
async fn rooms_stay_on_the_first_connection() {
    let cluster = TestNode::builder().start_cluster(3).await.unwrap();
    let id = cluster.node(0).create_room("stuff", Some("chat"));
    for via in VIAS {
        let client = spread(&cluster, via, Balance::RoundRobin).await;
        let room = client.room("//stuff", "chat").unwrap();
        let mut events = room.join().await.unwrap();
        common::wait_event(&mut events, thingsdb_client::RoomEvent::Joined).await;
        let primary = common::first_node(&client);
        let joiners: Vec<usize> = cluster
            .nodes()
            .iter()
            .map(|n| {
                n.connections()
                    .iter()
                    .filter(|c| c.rooms.contains(&id))
                    .count()
            })
            .collect();
        let mut want = vec![0, 0, 0];
        want[primary as usize] = 1;
        assert_eq!(joiners, want, "{via:?}");
        // Emits go the room's way, in order.
        for i in 0..5 {
            room.emit("n", &[i]).await.unwrap();
        }
        for i in 0..5 {
            let e = common::wait_emitted(&mut events, "n").await;
            assert_eq!(e.arg::<i64>(0).unwrap(), i, "{via:?}");
        }
        client.close().await.unwrap();
    }
}

#[tokio::test]
async fn nodes_added_later_get_a_connection_of_their_own() {
    let cluster = TestNode::builder().start_cluster(3).await.unwrap();
    let client = Client::builder()
        .target(&cluster.node(0).tcp_target())
        .unwrap()
        .auth(Auth::password("admin", "pass"))
        .balance(Balance::RoundRobin)
        .connect()
        .await
        .unwrap();
    assert_eq!(client.nodes().len(), 1);
    // As discovery does with the nodes it learns.
    let more =
        [1, 2].map(|i| thingsdb_client::Target::parse(&cluster.node(i).tcp_target()).unwrap());
    client.add_targets(more.to_vec()).await.unwrap();
    wait_nodes(&client, 3).await;
    for _ in 0..9 {
        client.query("1;").await.unwrap();
    }
    assert!(
        client.nodes().iter().all(|n| n.sent == 3),
        "{:?}",
        client.nodes()
    );
    client.close().await.unwrap();
}

#[tokio::test]
async fn one_node_keeps_one_connection() {
    let cluster = TestNode::builder().start_cluster(2).await.unwrap();
    let client = spread(&cluster, Via::Tcp, Balance::OneNode).await;
    for _ in 0..4 {
        client.query("1;").await.unwrap();
    }
    let nodes = client.nodes();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].sent, 4);
    let open: usize = cluster.nodes().iter().map(|n| n.connections().len()).sum();
    assert_eq!(open, 1);
}

#[tokio::test]
async fn a_graceful_shutdown_of_one_node_fails_no_request() {
    for via in VIAS {
        for stop_first in [false, true] {
            let cluster = TestNode::builder().start_cluster(3).await.unwrap();
            let room = cluster.node(0).create_room("stuff", Some("chat"));
            let client = spread(&cluster, via, Balance::FewestInFlight).await;
            wait_nodes(&client, 3).await;
            let mut events = client.room("//stuff", room).unwrap().join().await.unwrap();
            common::wait_event(&mut events, thingsdb_client::RoomEvent::Joined).await;
            let first = common::first_node(&client);
            let stop = if stop_first { first } else { (first + 1) % 3 };
            // Not idempotent: only what provably did not run may be resent.
            let loops = (0..8).map(|_| {
                let client = client.clone();
                async move {
                    let mut failed = Vec::new();
                    for _ in 0..100 {
                        if let Err(e) = client.query("1 + 1;").await {
                            failed.push(e.to_string());
                        }
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                    failed
                }
            });
            let work = tokio::spawn(futures::future::join_all(loops));
            tokio::time::sleep(Duration::from_millis(100)).await;
            cluster
                .node(stop as usize)
                .shutdown_gracefully(Duration::from_millis(300))
                .await;
            let failed: Vec<String> = within(120, work).await.unwrap().concat();
            assert!(failed.is_empty(), "{via:?} stop {stop}: {failed:?}");
            // Two connections left, none to the node that stopped; the room
            // went with the first connection when its node stopped.
            common::wait_without_node(&client, 2, stop).await;
            let alive = (0..3u32).find(|i| *i != stop).unwrap();
            cluster
                .node(alive as usize)
                .emit("stuff", room, "after", &[]);
            common::wait_emitted(&mut events, "after").await;
            client.close().await.unwrap();
        }
    }
}

#[tokio::test]
async fn connection_events_come_from_every_connection() {
    use thingsdb_client::ConnectionEvent;
    let cluster = TestNode::builder().start_cluster(3).await.unwrap();
    let client = spread(&cluster, Via::Tcp, Balance::RoundRobin).await;
    wait_nodes(&client, 3).await;
    let mut events = client.connection_events().await.unwrap();
    let first = common::first_node(&client);
    let other = (first + 1) % 3;
    // Another node's connection is cut: its Lost comes on the client's
    // one stream.
    cluster.node(other as usize).restart().await;
    let port = cluster.node(other as usize).tcp_addr().port();
    within(60, async {
        loop {
            match futures::StreamExt::next(&mut events).await {
                Some(ConnectionEvent::Lost { target, .. })
                    if target.to_string().contains(&port.to_string()) =>
                {
                    return
                }
                Some(_) => {}
                None => panic!("the stream ended"),
            }
        }
    })
    .await;
    client.close().await.unwrap();
}

#[tokio::test]
async fn a_node_that_says_it_is_shutting_down_is_not_connected_to() {
    let cluster = TestNode::builder().start_cluster(3).await.unwrap();
    // Node 2 is in its shutdown period: it still takes connections.
    cluster.node(0).on_query(|q| match q.code.as_str() {
        "n = node_info().load(); [n.node_id, n.status];" => thingsdb_testkit::Reply::value(vec![
            thingsdb_client::Value::from(q.node),
            thingsdb_client::Value::from(if q.node == 2 {
                "SHUTTING_DOWN"
            } else {
                "READY"
            }),
        ]),
        _ => q.evaluate(),
    });
    let client = spread(&cluster, Via::Tcp, Balance::RoundRobin).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ids: Vec<_> = client.nodes().iter().filter_map(|n| n.node_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [0, 1], "{:?}", client.nodes());
    // Back to READY: the client connects to it again.
    cluster.node(0).clear_query_handler();
    wait_nodes(&client, 3).await;
    client.close().await.unwrap();
}

#[tokio::test]
async fn connect_does_not_wait_for_a_node_that_does_not_answer() {
    // A "node" that accepts connections and never answers AUTH.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let cluster = TestNode::builder().start_cluster(2).await.unwrap();
    let client = Client::builder()
        .target(&cluster.node(0).tcp_target())
        .unwrap()
        .target(&cluster.node(1).tcp_target())
        .unwrap()
        .target(&addr.to_string())
        .unwrap()
        .auth(Auth::password("admin", "pass"))
        .connect_timeout(Duration::from_secs(600))
        .balance(Balance::RoundRobin);
    // Far less than the connect timeout: the silent one is not waited for.
    let client = within(60, client.connect()).await.unwrap();
    wait_nodes(&client, 2).await;
    for _ in 0..4 {
        client.query("1;").await.unwrap();
    }
    assert!(
        client.nodes().iter().all(|n| n.sent == 2),
        "{:?}",
        client.nodes()
    );
    client.close().await.unwrap();
    held.abort();
}

#[tokio::test]
async fn a_node_that_stays_down_is_tried_again_with_back_off() {
    let cluster = TestNode::builder().start_cluster(3).await.unwrap();
    let client = spread(&cluster, Via::Tcp, Balance::RoundRobin).await;
    wait_nodes(&client, 3).await;
    let down = (common::first_node(&client) + 1) % 3;
    let before = cluster.node(0).counters().connections_refused;
    // Its connections go, and it refuses new ones for a minute.
    cluster
        .node(down as usize)
        .restart_with_downtime(Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let tries = cluster.node(0).counters().connections_refused - before;
    // Tried again after 1, 2 and 4 s (and once by its connection's own
    // reconnect): a few times, not at every round (twelve in 6 s). A slow
    // machine only makes fewer.
    assert!((1..8).contains(&tries), "{tries} connects in 6 s");
    client.close().await.unwrap();
}
