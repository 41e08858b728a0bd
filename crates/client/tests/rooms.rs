//! Rooms and events against the testkit node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{connect, joined_first, within, Via, ALL};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use thingsdb_client::{Error, ErrorCode, NodeEvent, NodeStatus, Overflow, RoomEvent, Value};
use thingsdb_testkit::{Reply, TestNode};

/// The next event that is not `Joined` (joins may be reported once more
/// when two streams race to join).
async fn next_emitted(events: &mut thingsdb_client::RoomEvents) -> thingsdb_client::Emitted {
    loop {
        match within(30, events.next()).await {
            Some(RoomEvent::Emitted(e)) => return e,
            Some(RoomEvent::Joined) => continue,
            other => panic!("expected an emitted event, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn two_clients_talk_through_a_room() {
    let node = TestNode::start().await.unwrap();
    let room_id = node.create_room("stuff", Some("chat"));
    for via in ALL {
        let a = connect(&node, via).await;
        let b = connect(&node, via).await;
        let room_a = a.room("//stuff", "chat").unwrap();
        let room_b = b.room("//stuff", room_id).unwrap();
        let mut ev_a = room_a.join().await.unwrap();
        let mut ev_b = room_b.join().await.unwrap();
        assert_eq!(ev_a.room_id(), room_id);
        assert_eq!(within(30, ev_a.next()).await, Some(RoomEvent::Joined));
        assert_eq!(within(30, ev_b.next()).await, Some(RoomEvent::Joined));

        room_a.emit("msg", &("hello", 1)).await.unwrap();
        let got_b = next_emitted(&mut ev_b).await;
        assert_eq!(got_b.event, "msg");
        let (text, n): (String, i32) = got_b.decode().unwrap();
        assert_eq!((text.as_str(), n), ("hello", 1));
        // A joined too, so A hears its own emit ...
        assert_eq!(next_emitted(&mut ev_a).await.event, "msg");

        // ... but not with emit_peers.
        room_a.emit_peers("quiet", &("psst",)).await.unwrap();
        room_b.emit("loud", &Vec::<i32>::new()).await.unwrap();
        assert_eq!(next_emitted(&mut ev_b).await.event, "quiet");
        assert_eq!(next_emitted(&mut ev_b).await.event, "loud");
        assert_eq!(next_emitted(&mut ev_a).await.event, "loud", "{via:?}");
    }
}

#[tokio::test]
async fn struct_args_are_decoded_on_the_other_side() {
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Message {
        from: String,
        body: String,
        seq: u64,
    }
    let node = TestNode::start().await.unwrap();
    let room_id = node.create_room("stuff", None);
    let a = connect(&node, Via::Tcp).await;
    let b = connect(&node, Via::Ws).await;
    let mut events = b.room("//stuff", room_id).unwrap().join().await.unwrap();
    let sent = Message {
        from: "a".into(),
        body: "hi".into(),
        seq: 9,
    };
    a.room("//stuff", room_id)
        .unwrap()
        .emit("message", &[&sent])
        .await
        .unwrap();
    let e = next_emitted(&mut events).await;
    assert_eq!(e.arg::<Message>(0).unwrap(), sent);
    let values = e.values().unwrap();
    assert_eq!(values.len(), 1);
    assert!(e.arg::<Message>(1).is_err());
}

#[tokio::test]
async fn join_by_code_and_unknown_rooms() {
    let node = TestNode::start().await.unwrap();
    let room_id = node.create_room("stuff", Some("lobby"));
    node.on_query(move |q| match q.code.as_str() {
        ".lobby.id();" => Reply::value(room_id),
        _ => q.evaluate(),
    });
    let client = connect(&node, Via::Unix).await;
    let room = client
        .room_by_code("//stuff", ".lobby.id();")
        .await
        .unwrap();
    let events = room.join().await.unwrap();
    assert_eq!(events.room_id(), room_id);

    let e = client
        .room("//stuff", 999_999)
        .unwrap()
        .join()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Lookup), "{e}");
    let e = client
        .room("//stuff", "nope")
        .unwrap()
        .join()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Lookup), "{e}");
    assert!(matches!(client.room("@t", 1), Err(Error::BadArgument(_))));
}

#[tokio::test]
async fn deleted_room_ends_with_deleted() {
    let node = TestNode::start().await.unwrap();
    let room_id = node.create_room("stuff", None);
    let client = connect(&node, Via::Tcp).await;
    let mut events = joined_first(&client, room_id).await;
    node.delete_room("stuff", room_id);
    assert_eq!(within(30, events.next()).await, Some(RoomEvent::Deleted));
    assert_eq!(within(30, events.next()).await, None);
}

#[tokio::test]
async fn after_leave_no_more_events_and_the_node_forgets_us() {
    let node = TestNode::start().await.unwrap();
    let room_id = node.create_room("stuff", None);
    let client = connect(&node, Via::Tcp).await;
    let room = client.room("//stuff", room_id).unwrap();
    let mut first = room.join().await.unwrap();
    let second = room.join().await.unwrap();
    assert_eq!(
        node.room_joiners("stuff", room_id).len(),
        1,
        "one JOIN per connection"
    );
    // Two streams of one room each get every event.
    let mut second = second;
    node.emit("stuff", room_id, "one", &[Value::from(1)]);
    assert_eq!(next_emitted(&mut first).await.event, "one");
    assert_eq!(next_emitted(&mut second).await.event, "one");
    // Leaving one stream keeps the room joined for the other.
    second.leave().await.unwrap();
    node.emit("stuff", room_id, "two", &[]);
    assert_eq!(next_emitted(&mut first).await.event, "two");
    assert_eq!(node.room_joiners("stuff", room_id).len(), 1);
    // Dropping the last sends LEAVE.
    drop(first);
    let left = within(30, async {
        while !node.room_joiners("stuff", room_id).is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let () = left;
    assert_eq!(node.emit("stuff", room_id, "three", &[]), 0);
}

#[tokio::test]
async fn a_burst_of_100k_events_arrives_complete_and_in_order() {
    let node = std::sync::Arc::new(TestNode::start().await.unwrap());
    let room_id = node.create_room("stuff", None);
    let client = connect(&node, Via::Tcp).await;
    let mut events = joined_first(&client, room_id).await;
    const N: u64 = 100_000;
    let emitter = tokio::spawn({
        let node = node.clone();
        async move {
            for i in 0..N {
                node.emit("stuff", room_id, "n", &[Value::from(i)]);
                if i % 1000 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    });
    within(300, async {
        for expected in 0..N {
            let e = next_emitted(&mut events).await;
            let (i,): (u64,) = e.decode().unwrap();
            assert_eq!(i, expected);
            if expected % 10_000 == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
    .await;
    emitter.await.unwrap();
}

#[tokio::test]
async fn lag_policy_reports_what_was_dropped() {
    let node = TestNode::start().await.unwrap();
    let room_id = node.create_room("stuff", None);
    let client = common::builder(&node, Via::Tcp)
        .event_buffer(8)
        .connect()
        .await
        .unwrap();
    let mut events = client
        .room("//stuff", room_id)
        .unwrap()
        .join_with(Overflow::Lag)
        .await
        .unwrap();
    for i in 0..200 {
        node.emit("stuff", room_id, "n", &[Value::from(i)]);
    }
    // Every event has reached the client once the ping is answered.
    client.ping().await.unwrap();
    // The buffer of 8 holds the Joined event and the first 7 emits; the
    // rest were dropped and counted. Empty it, then send one more event.
    let (mut seen, mut lagged) = (0u64, 0u64);
    assert_eq!(within(30, events.next()).await, Some(RoomEvent::Joined));
    for _ in 0..7 {
        assert!(matches!(
            within(30, events.next()).await,
            Some(RoomEvent::Emitted(_))
        ));
        seen += 1;
    }
    node.emit("stuff", room_id, "last", &[]);
    loop {
        match within(30, events.next()).await {
            Some(RoomEvent::Emitted(e)) if e.event == "last" => break,
            Some(RoomEvent::Emitted(_)) => seen += 1,
            Some(RoomEvent::Lagged(n)) => lagged += n,
            Some(RoomEvent::Joined) => {}
            other => panic!("{other:?}"),
        }
    }
    // Nothing vanished silently: every event was seen or counted.
    assert_eq!((seen, lagged), (7, 193));
    assert!(lagged > 0, "nothing lagged with a buffer of 8");
}

#[tokio::test]
async fn node_status_and_warnings_reach_every_stream() {
    let node = TestNode::start().await.unwrap();
    let client = connect(&node, Via::Ws).await;
    let mut a = client.node_events().await.unwrap();
    let mut b = client.node_events().await.unwrap();
    client.ping().await.unwrap();
    node.emit_warn(2, "careful");
    node.emit_node_status(NodeStatus::Away);
    for s in [&mut a, &mut b] {
        assert_eq!(
            within(30, s.next()).await,
            Some(NodeEvent::Warn {
                code: 2,
                message: "careful".into()
            })
        );
        assert!(matches!(
            within(30, s.next()).await,
            Some(NodeEvent::Status {
                status: NodeStatus::Away,
                ..
            })
        ));
    }
}
