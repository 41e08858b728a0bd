//! Reconnect, failover, keep-alive and hostile input, against the testkit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{builder, fast_reconnect, joined, wait_emitted, wait_event, within, Via, ALL};
use futures::StreamExt;
use thingsdb_client::{
    ConnectionEvent, Error, ErrorCode, MoveReason, NodeStatus, ReconnectPolicy, RoomEvent, Target,
    Value,
};
use thingsdb_protocol::{Header, PackageType};
use thingsdb_testkit::{Corruption, Reply, TestNode};

#[tokio::test]
async fn restart_reconnects_reauthenticates_and_rejoins_rooms() {
    let node = TestNode::start().await.unwrap();
    let room_id = node.create_room("stuff", Some("chat"));
    for via in ALL {
        let client = builder(&node, via)
            .reconnect(fast_reconnect())
            .connect()
            .await
            .unwrap();
        let mut events = client
            .room("//stuff", "chat")
            .unwrap()
            .join()
            .await
            .unwrap();
        wait_event(&mut events, RoomEvent::Joined).await;
        let auths = node.counters().auth_ok;

        node.restart_with_downtime(Duration::from_millis(300)).await;
        wait_event(&mut events, RoomEvent::Disconnected).await;
        // A request made while reconnecting waits for the connection.
        let v = within(60, client.query("2 + 3;")).await.unwrap();
        assert_eq!(v, Value::from(5), "{via:?}");
        // Re-joined: the stream sees Joined again and events flow.
        wait_event(&mut events, RoomEvent::Joined).await;
        assert!(node.counters().auth_ok > auths, "re-authenticated");
        node.emit("stuff", room_id, "after", &[]);
        wait_emitted(&mut events, "after").await;
        assert!(client.connections_made() >= 2);
    }
}

#[tokio::test]
async fn in_flight_requests_fail_at_once_and_are_never_resent() {
    let node = TestNode::start().await.unwrap();
    let client = builder(&node, Via::Tcp)
        .reconnect(fast_reconnect())
        .connect()
        .await
        .unwrap();
    let conn = node.connections()[0].id;
    node.connection_faults(conn).stop_replying(true);
    let c = client.clone();
    let pending = tokio::spawn(async move { c.query("1 + 1;").await });
    assert!(
        node.wait_for(
            |c| c.received(PackageType::Query) == 1,
            Duration::from_secs(30)
        )
        .await
    );
    node.connection_faults(conn).close_now();
    let e = within(30, pending).await.unwrap().unwrap_err();
    assert!(matches!(e, Error::ConnectionLost(_)), "{e}");
    // The client reconnects; the lost query was not sent again.
    assert_eq!(
        within(60, client.query("1 + 2;")).await.unwrap(),
        Value::from(3)
    );
    assert_eq!(node.counters().received(PackageType::Query), 2);
}

#[tokio::test]
async fn keepalive_detects_a_silent_peer_and_reconnects() {
    let node = TestNode::start().await.unwrap();
    let room_id = node.create_room("stuff", None);
    let client = builder(&node, Via::Tcp)
        .keepalive(Some(Duration::from_millis(200)))
        .reconnect(fast_reconnect())
        .connect()
        .await
        .unwrap();
    let mut events = joined(&client, room_id).await;
    let conn = node.connections()[0].id;
    // The socket stays open but nothing comes back.
    node.connection_faults(conn).stop_replying(true);
    wait_event(&mut events, RoomEvent::Disconnected).await;
    wait_event(&mut events, RoomEvent::Joined).await;
    assert_eq!(
        within(60, client.query("4 + 4;")).await.unwrap(),
        Value::from(8)
    );
    assert!(node.counters().received(PackageType::Ping) >= 1);
}

#[tokio::test]
async fn corrupted_replies_fail_the_request_and_the_client_recovers() {
    let node = TestNode::start().await.unwrap();
    for via in ALL {
        let client = builder(&node, via)
            .reconnect(fast_reconnect())
            .connect()
            .await
            .unwrap();
        for c in [
            Corruption::BadCheckByte,
            Corruption::OversizedHeader,
            Corruption::Truncated,
        ] {
            node.faults().corrupt_next_reply(c);
            let e = within(60, client.query("1 + 1;")).await.unwrap_err();
            assert!(
                matches!(e, Error::ConnectionLost(_) | Error::Protocol(_)),
                "{via:?} {c:?}: {e}"
            );
            // The connection is re-made and the next request works.
            let v = within(60, client.query("1 + 1;")).await.unwrap();
            assert_eq!(v, Value::from(2), "{via:?} {c:?}");
        }
        node.faults().corrupt_next_reply(Corruption::InvalidMsgpack);
        let e = within(60, client.query("1 + 1;")).await.unwrap_err();
        assert!(matches!(e, Error::Protocol(_)), "{e}");
        node.faults()
            .corrupt_next_reply(Corruption::UnknownId(4242));
        assert_eq!(
            within(60, client.query("1 + 1;")).await.unwrap(),
            Value::from(2)
        );
    }
}

#[tokio::test]
async fn unknown_types_and_broken_events_are_dropped_without_harm() {
    let node = TestNode::start().await.unwrap();
    let room_id = node.create_room("stuff", None);
    let client = builder(&node, Via::Tcp)
        .reconnect(fast_reconnect())
        .connect()
        .await
        .unwrap();
    let mut events = joined(&client, room_id).await;
    let made = client.connections_made();
    // A package of a type nobody knows, with a valid check byte.
    let unknown = Header {
        len: 0,
        id: 7,
        type_byte: 99,
    };
    node.faults()
        .send_raw(Bytes::copy_from_slice(&unknown.encode()));
    // An ON_EMIT without its keys.
    let mut broken = Header::new(PackageType::OnEmit, 0xffff, 1)
        .encode()
        .to_vec();
    broken.push(0x80);
    node.faults().send_raw(broken);
    // An ON_EMIT with an id that is not an integer.
    let mut wrong = Header::new(PackageType::OnEmit, 0xffff, 5)
        .encode()
        .to_vec();
    wrong.extend_from_slice(&[0x81, 0xa2, b'i', b'd', 0xc0]);
    node.faults().send_raw(wrong);
    // The connection stays up and events still flow.
    node.emit("stuff", room_id, "fine", &[]);
    wait_emitted(&mut events, "fine").await;
    assert_eq!(client.query("1 + 1;").await.unwrap(), Value::from(2));
    assert_eq!(client.connections_made(), made);
}

#[tokio::test]
async fn shutting_down_node_moves_the_client_and_its_rooms() {
    let a = TestNode::start().await.unwrap();
    let b = TestNode::start().await.unwrap();
    let room_a = a.create_room("stuff", Some("chat"));
    let room_b = b.create_room("stuff", Some("chat"));
    let client = thingsdb_client::Client::builder()
        .target(&a.tcp_target())
        .unwrap()
        .target(&b.ws_url())
        .unwrap()
        .auth(thingsdb_client::Auth::password("admin", "pass"))
        .reconnect(fast_reconnect())
        .connect()
        .await
        .unwrap();
    // Joined by id: the same id on both nodes (each testkit starts at 1).
    assert_eq!(room_a, room_b);
    let mut events = client
        .room("//stuff", room_a)
        .unwrap()
        .join()
        .await
        .unwrap();
    wait_event(&mut events, RoomEvent::Joined).await;
    a.emit_node_status(NodeStatus::ShuttingDown);
    // Make before break: the room is joined on b, then left on a, and the
    // connection to a is closed once it has nothing left to answer.
    assert!(a.wait_for_connections(0, Duration::from_secs(60)).await);
    assert_eq!(b.counters().connections_total(), 1);
    assert_eq!(b.room_joiners("stuff", room_b).len(), 1);
    b.emit("stuff", room_b, "from-b", &[]);
    // The stream saw neither `Disconnected` nor a second `Joined`.
    match within(60, events.recv()).await {
        Some(RoomEvent::Emitted(e)) => assert_eq!(e.event, "from-b"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        within(60, client.query("1 + 1;")).await.unwrap(),
        Value::from(2)
    );
}

#[tokio::test]
async fn reconnect_gives_up_after_max_attempts() {
    let node = TestNode::start().await.unwrap();
    let client = builder(&node, Via::Tcp)
        .reconnect(ReconnectPolicy {
            max_attempts: Some(3),
            ..fast_reconnect()
        })
        .connect()
        .await
        .unwrap();
    node.refuse_connections_for(Duration::from_secs(3600));
    node.restart().await;
    within(60, async {
        while client.closed_reason().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let e = client.query("1 + 1;").await.unwrap_err();
    assert!(matches!(e, Error::ConnectionLost(_)), "{e}");
}

#[tokio::test]
async fn credentials_never_show_in_debug_output() {
    let node = TestNode::start().await.unwrap();
    let b = builder(&node, Via::Tcp).auth(thingsdb_client::Auth::password("admin", "pass"));
    let text = format!("{b:?} {:?}", b.config());
    assert!(!text.contains("\"pass\""), "{text}");
    let client = b.connect().await.unwrap();
    assert!(!format!("{client:?}").contains("\"pass\""));
}

/// 200 000 requests (override with THINGSDB_SOAK_REQUESTS) from 32 tasks
/// while the node drops every connection every few thousand packages.
/// Every request resolves exactly once, no id stays taken, and the room
/// hears events again after each reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_requests_through_random_connection_drops() {
    let total: u64 = std::env::var("THINGSDB_SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let node = Arc::new(TestNode::start().await.unwrap());
    let room_id = node.create_room("stuff", None);
    let client = builder(&node, Via::Tcp)
        .reconnect(fast_reconnect())
        .request_timeout(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    let mut events = joined(&client, room_id).await;

    let ok = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let tasks = 32;
    let per_task = total / tasks;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (client, ok, lost) = (client.clone(), ok.clone(), lost.clone());
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                let a = (t * per_task + i) as i64;
                match client.query("a + 1;").var("a", &a).decode::<i64>().await {
                    Ok(v) => {
                        assert_eq!(v, a + 1);
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Error::ConnectionLost(_)) => {
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
        }));
    }
    // The chaos: every connection is dropped after a random few thousand
    // packages.
    let chaos = {
        let node = node.clone();
        tokio::spawn(async move {
            let mut seen = std::collections::HashSet::new();
            loop {
                for c in node.connections() {
                    if seen.insert(c.id) {
                        let n = 2_000 + rand::random_range(0..4_000u64);
                        node.connection_faults(c.id).close_after(n);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    within(600, async {
        for h in handles {
            h.await.unwrap();
        }
    })
    .await;
    chaos.abort();
    node.faults().reset();
    let (ok, lost) = (ok.load(Ordering::Relaxed), lost.load(Ordering::Relaxed));
    assert_eq!(
        ok + lost,
        tasks * per_task,
        "every request resolved exactly once"
    );
    assert!(ok > 0);
    eprintln!(
        "soak: {ok} ok, {lost} lost with their connection, {} connections",
        client.connections_made()
    );
    // No id stays taken once everything is answered.
    within(60, async {
        while client.in_flight() > 0 {
            client.ping().await.ok();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // The room hears events again after the reconnects.
    let drained = within(60, async {
        loop {
            node.emit("stuff", room_id, "alive", &[]);
            match tokio::time::timeout(Duration::from_millis(500), events.next()).await {
                Ok(Some(RoomEvent::Emitted(e))) if e.event == "alive" => return true,
                Ok(Some(_)) | Err(_) => continue,
                Ok(None) => return false,
            }
        }
    })
    .await;
    assert!(drained);
}

#[tokio::test]
async fn close_while_the_connection_is_lost_returns() {
    let node = TestNode::start().await.unwrap();
    let client = builder(&node, Via::Tcp)
        .reconnect(fast_reconnect())
        .connect()
        .await
        .unwrap();
    node.faults().stop_replying(true);
    let c = client.clone();
    let pending = tokio::spawn(async move { c.query("1 + 1;").await });
    assert!(
        node.wait_for(
            |c| c.received(PackageType::Query) == 1,
            Duration::from_secs(30)
        )
        .await
    );
    // close() waits for the query; then the node goes away for good.
    let c = client.clone();
    let closing = tokio::spawn(async move { c.close().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    node.refuse_connections_for(Duration::from_secs(3600));
    node.restart().await;
    within(30, closing).await.unwrap().unwrap();
    assert!(matches!(
        within(30, pending).await.unwrap(),
        Err(Error::ConnectionLost(_))
    ));
    assert!(matches!(client.query("1;").await, Err(Error::Closed)));
}

#[tokio::test]
async fn a_stalled_consumer_does_not_trip_keepalive() {
    let node = TestNode::start().await.unwrap();
    let room_id = node.create_room("stuff", None);
    let client = builder(&node, Via::Tcp)
        .keepalive(Some(Duration::from_millis(100)))
        .event_buffer(4)
        .connect()
        .await
        .unwrap();
    let mut events = client
        .room("//stuff", room_id)
        .unwrap()
        .join()
        .await
        .unwrap();
    // Fill the buffer and more: reading pauses (Overflow::Wait).
    for i in 0..50 {
        node.emit("stuff", room_id, "n", &[thingsdb_client::Value::from(i)]);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Everything arrives, on the first connection.
    let mut seen = 0;
    while seen < 50 {
        if let Some(RoomEvent::Emitted(_)) = within(30, events.next()).await {
            seen += 1;
        }
    }
    assert_eq!(client.connections_made(), 1);
}

#[tokio::test]
async fn a_join_answered_while_the_room_is_being_left_joins_again() {
    let node = TestNode::start().await.unwrap();
    let room_id = node.create_room("stuff", Some("chat"));
    let client = builder(&node, Via::Tcp).connect().await.unwrap();
    let first = client
        .room("//stuff", room_id)
        .unwrap()
        .join()
        .await
        .unwrap();
    // Slow replies, so the JOIN below is answered after the LEAVE is sent.
    node.faults().delay_replies(Duration::from_millis(300));
    let joins = node.counters().received(PackageType::Join);
    let by_name = client.room("//stuff", "chat").unwrap();
    let second = tokio::spawn(async move { by_name.join().await });
    assert!(
        node.wait_for(
            |c| c.received(PackageType::Join) > joins,
            Duration::from_secs(30)
        )
        .await
    );
    drop(first); // the last stream so far: LEAVE goes out behind the JOIN
    let mut second = within(30, second).await.unwrap().unwrap();
    node.faults().reset();
    wait_event(&mut second, RoomEvent::Joined).await;
    node.emit("stuff", room_id, "still-joined", &[]);
    wait_emitted(&mut second, "still-joined").await;
    assert_eq!(node.room_joiners("stuff", room_id).len(), 1);
}

#[tokio::test]
async fn an_abandoned_join_is_left_again() {
    let node = TestNode::start().await.unwrap();
    let room_id = node.create_room("stuff", None);
    let client = builder(&node, Via::Tcp)
        .request_timeout(Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    node.faults().delay_replies(Duration::from_millis(400));
    let e = client
        .room("//stuff", room_id)
        .unwrap()
        .join()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e}");
    node.faults().reset();
    // The late JOIN reply finds nobody waiting: the client leaves again.
    within(30, async {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if node.counters().received(PackageType::Leave) == 1
                && node.room_joiners("stuff", room_id).is_empty()
            {
                return;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn idempotent_requests_are_sent_again_after_a_lost_connection() {
    let node = TestNode::start().await.unwrap();
    let client = builder(&node, Via::Tcp)
        .reconnect(fast_reconnect())
        .connect()
        .await
        .unwrap();
    let conn = node.connections()[0].id;
    node.connection_faults(conn).stop_replying(true);
    let c = client.clone();
    let pending = tokio::spawn(async move { c.query("1 + 1;").idempotent().await });
    assert!(
        node.wait_for(
            |c| c.received(PackageType::Query) == 1,
            Duration::from_secs(30)
        )
        .await
    );
    node.connection_faults(conn).close_now();
    // Sent again on the next connection, and answered there.
    assert_eq!(within(60, pending).await.unwrap().unwrap(), Value::from(2));
    assert_eq!(node.counters().received(PackageType::Query), 2);
}

#[tokio::test]
async fn node_errors_are_sent_again_until_the_node_takes_them() {
    let node = TestNode::start().await.unwrap();
    let tries = Arc::new(AtomicU64::new(0));
    let t = tries.clone();
    node.on_query(move |q| {
        if t.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::error(
                ErrorCode::Node,
                "cannot find a node for handling this request",
            )
        } else {
            q.evaluate()
        }
    });
    let client = builder(&node, Via::Tcp).connect().await.unwrap();
    assert_eq!(
        within(60, client.query("2 + 2;")).await.unwrap(),
        Value::from(4)
    );
    assert_eq!(tries.load(Ordering::SeqCst), 3);
    // Within the cap only: each attempt answered -51 fails after 2.
    tries.store(0, Ordering::SeqCst);
    let capped = builder(&node, Via::Tcp)
        .request_attempts(2)
        .connect()
        .await
        .unwrap();
    let e = within(60, capped.query("2 + 2;")).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Node), "{e}");
    assert_eq!(e.attempts(), 2, "{e}");
    assert!(!e.may_have_run());
}

#[tokio::test]
async fn connection_events_show_each_move() {
    let a = TestNode::start().await.unwrap();
    let b = TestNode::start().await.unwrap();
    let client = thingsdb_client::Client::builder()
        .target(&a.tcp_target())
        .unwrap()
        .target(&b.tcp_target())
        .unwrap()
        .auth(thingsdb_client::Auth::password("admin", "pass"))
        .reconnect(fast_reconnect())
        .connect()
        .await
        .unwrap();
    let mut events = client.connection_events().await.unwrap();
    let (ta, tb) = (
        Target::parse(&a.tcp_target()).unwrap(),
        Target::parse(&b.tcp_target()).unwrap(),
    );
    a.emit_node_status(NodeStatus::ShuttingDown);
    match within(60, events.next()).await {
        Some(ConnectionEvent::Connected { target, .. }) => assert_eq!(target, tb),
        other => panic!("{other:?}"),
    }
    match within(60, events.next()).await {
        Some(ConnectionEvent::Moved { from, to, why }) => {
            assert_eq!(
                (from, to, why),
                (ta.clone(), tb.clone(), MoveReason::ShuttingDown)
            )
        }
        other => panic!("{other:?}"),
    }
    // b goes away: lost, then back on a.
    b.restart_with_downtime(Duration::from_secs(3600)).await;
    let mut seen = Vec::new();
    within(60, async {
        while let Some(ev) = events.next().await {
            let moved = matches!(ev, ConnectionEvent::Moved { .. });
            seen.push(ev);
            if moved {
                break;
            }
        }
    })
    .await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, ConnectionEvent::Lost { target, .. } if *target == tb)),
        "{seen:?}"
    );
    assert!(
        matches!(seen.last(), Some(ConnectionEvent::Moved { from, to, why: MoveReason::Lost }) if *from == tb && *to == ta),
        "{seen:?}"
    );
}
