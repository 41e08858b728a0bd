//! The testkit speaks the protocol as a node does, over TCP, WebSocket and
//! the Unix socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rmpv::Value;
use thingsdb_protocol::{
    Event, EventRoom, Header, NodeStatus, PackageType, Response, Room, EVENT_ID,
};
use thingsdb_testkit::{Ingress, Reply, TestNode};

#[tokio::test]
async fn ping_before_auth_and_errors_before_auth() {
    let node = TestNode::start().await.unwrap();
    for t in ALL {
        let mut c = client(&node, t).await;
        let f = c.request(&ping(7)).await.unwrap();
        assert_eq!((f.id, f.package_type().unwrap()), (7, PackageType::Pong));
        let f = c.request(&query(8, "@t", "1 + 1;", None)).await.unwrap();
        assert_eq!(f.id, 8);
        assert_eq!(error_code(&f), -56, "{t:?}");
        assert_eq!(error_msg(&f), "connection is not authenticated");
        for pkg in [
            run_pos(9, "@t", "x", vec![]),
            join(10, "//stuff", &[Room::Id(1)]),
            leave(11, "//stuff", &[Room::Id(1)]),
            emit(12, "//stuff", &Room::Id(1), "e", vec![], false),
            emit(13, "//stuff", &Room::Id(1), "e", vec![], true),
        ] {
            assert_eq!(error_code(&c.request(&pkg).await.unwrap()), -56);
        }
        let f = c.request(&auth(14, "admin", "wrong")).await.unwrap();
        assert_eq!(error_code(&f), -56);
        assert_eq!(error_msg(&f), "invalid username or password");
        let f = c.request(&auth_token(15, "nope")).await.unwrap();
        assert_eq!(error_msg(&f), "invalid token");
        let f = c.request(&auth(16, "admin", "pass")).await.unwrap();
        assert_eq!(f.package_type().unwrap(), PackageType::Ok);
        let f = c.request(&query(17, "@t", "1 + 1;", None)).await.unwrap();
        assert_eq!(value(&f), Value::from(2));
    }
    let c = node.counters();
    assert_eq!(c.received(PackageType::Ping), 3);
    assert_eq!(c.received(PackageType::Auth), 9);
    assert_eq!(c.auth_failed, 6);
    assert_eq!(c.auth_ok, 3);
    assert_eq!(c.not_authenticated, 18);
    assert_eq!(c.connections(Ingress::Tcp), 1);
    assert_eq!(c.connections(Ingress::Ws), 1);
    assert_eq!(c.connections(Ingress::Unix), 1);
}

#[tokio::test]
async fn users_and_tokens_are_configurable() {
    let node = TestNode::builder()
        .user("alice", "secret")
        .token("tok123", "alice")
        .start()
        .await
        .unwrap();
    for t in ALL {
        let mut c = client(&node, t).await;
        assert_eq!(
            c.request(&auth_token(1, "tok123"))
                .await
                .unwrap()
                .package_type()
                .unwrap(),
            PackageType::Ok
        );
        let mut c = client(&node, t).await;
        assert_eq!(
            c.request(&auth(1, "alice", "secret"))
                .await
                .unwrap()
                .package_type()
                .unwrap(),
            PackageType::Ok
        );
        assert_eq!(
            node.connections()
                .iter()
                .filter(|i| i.user.as_deref() == Some("alice"))
                .count(),
            2
        );
        drop(c);
        let mut c = client(&node, t).await;
        // The default user is still there.
        assert_eq!(
            c.request(&auth(1, "admin", "pass"))
                .await
                .unwrap()
                .package_type()
                .unwrap(),
            PackageType::Ok
        );
        node.remove_token("tok123");
        let mut c2 = client(&node, t).await;
        assert_eq!(
            error_code(&c2.request(&auth_token(1, "tok123")).await.unwrap()),
            -56
        );
        node.add_token("tok123", "alice");
        // A malformed AUTH is bad data.
        let f = c2
            .request(&raw_pkg(PackageType::Auth, 2, &[0x01]))
            .await
            .unwrap();
        assert_eq!(error_code(&f), -53);
    }
}

/// scope, code, vars, the value or error code wanted.
type Case = (
    &'static str,
    &'static str,
    Option<Value>,
    Result<Value, i64>,
);

#[tokio::test]
async fn default_queries_evaluate_arithmetic() {
    let node = TestNode::start().await.unwrap();
    for t in ALL {
        let mut c = authed(&node, t).await;
        let cases: Vec<Case> = vec![
            ("@t", "1 + 1;", None, Ok(2.into())),
            ("@thingsdb", "6 * 7;", None, Ok(42.into())),
            (
                "//stuff",
                "a * b;",
                Some(Value::Map(vec![
                    ("a".into(), 6.into()),
                    ("b".into(), 7.into()),
                ])),
                Ok(42.into()),
            ),
            ("@:stuff", "-(1 + 2) * 3;", None, Ok((-9).into())),
            ("@n", "1/0;", None, Err(-58)),
            ("@t", "1 +;", None, Err(-52)),
            ("@t", "c;", None, Err(-54)),
            ("//nope", "1;", None, Err(-54)),
            ("nope", "1;", None, Err(-60)),
            ("@node:5", "1;", None, Err(-54)),
        ];
        for (i, (scope, code, vars, want)) in cases.into_iter().enumerate() {
            let id = 100 + i as u16;
            let f = c.request(&query(id, scope, code, vars)).await.unwrap();
            assert_eq!(f.id, id);
            match want {
                Ok(v) => assert_eq!(value(&f), v, "{t:?} {code}"),
                Err(e) => assert_eq!(error_code(&f), e, "{t:?} {code}"),
            }
        }
        let f = c.request(&query(1, "@t", "1/0;", None)).await.unwrap();
        assert_eq!(error_msg(&f), "division or modulo by zero");
        // Vars that are not a map: a type error, as on a node.
        let p = enc(&Value::Array(vec!["@t".into(), "1;".into(), 5.into()]));
        let f = c
            .request(&raw_pkg(PackageType::Query, 2, &p))
            .await
            .unwrap();
        assert_eq!(error_code(&f), -61);
        // Not an array at all: bad data.
        let f = c
            .request(&raw_pkg(PackageType::Query, 3, &[0xc0]))
            .await
            .unwrap();
        assert_eq!(error_code(&f), -53);
    }
}

#[tokio::test]
async fn query_handlers_take_precedence_and_can_fall_back() {
    let node = TestNode::start().await.unwrap();
    node.on_query(|q| {
        if q.code == "hello;" {
            Reply::value(format!("hello from {}", q.scope_str))
        } else if q.code == "fail;" {
            Reply::error(thingsdb_protocol::ErrorCode::Custom(-100), "custom")
        } else {
            q.evaluate()
        }
    });
    for t in ALL {
        let mut c = authed(&node, t).await;
        let f = c
            .request(&query(1, "//stuff", "hello;", None))
            .await
            .unwrap();
        assert_eq!(value(&f), Value::from("hello from //stuff"));
        let f = c
            .request(&query(2, "//stuff", "fail;", None))
            .await
            .unwrap();
        assert_eq!(error_code(&f), -100);
        let f = c
            .request(&query(3, "//stuff", "2 * 2;", None))
            .await
            .unwrap();
        assert_eq!(value(&f), Value::from(4));
    }
    node.clear_query_handler();
    let mut c = authed(&node, T::Tcp).await;
    assert_eq!(
        error_code(&c.request(&query(1, "@t", "hello;", None)).await.unwrap()),
        -54
    );
}

#[tokio::test]
async fn procedures_run_with_positional_or_named_arguments() {
    let node = TestNode::start().await.unwrap();
    node.procedure("add_one", |a| {
        match a.param(0, "x").and_then(Value::as_i64) {
            Some(x) => Reply::value(x + 1),
            None => Reply::error(thingsdb_protocol::ErrorCode::Type, "expecting an int"),
        }
    });
    for t in ALL {
        let mut c = authed(&node, t).await;
        let f = c
            .request(&run_pos(300, "@t", "add_one", vec![41.into()]))
            .await
            .unwrap();
        assert_eq!((f.id, value(&f)), (300, Value::from(42)));
        let f = c
            .request(&run_named(301, "//stuff", "add_one", vec![("x", 1.into())]))
            .await
            .unwrap();
        assert_eq!(value(&f), Value::from(2));
        let f = c
            .request(&run_pos(302, "@t", "add_one", vec!["a".into()]))
            .await
            .unwrap();
        assert_eq!(error_code(&f), -61);
        let f = c
            .request(&run_pos(303, "@t", "nope", vec![]))
            .await
            .unwrap();
        assert_eq!(error_code(&f), -54);
        assert_eq!(error_msg(&f), "procedure `nope` not found");
        let f = c
            .request(&run_spread(304, "@t", "add_one", 41.into()))
            .await
            .unwrap();
        assert_eq!(error_code(&f), -53);
        assert!(error_msg(&f).starts_with("run expects arguments to be of type map or array"));
        let f = c
            .request(&run_pos(305, "@node", "add_one", vec![1.into()]))
            .await
            .unwrap();
        assert_eq!(error_code(&f), -53);
    }
    assert_eq!(node.counters().received(PackageType::Run), 18);
}

#[tokio::test]
async fn rooms_join_leave_emit_delete() {
    let node = TestNode::start().await.unwrap();
    let chat = node.create_room("stuff", Some("chat"));
    for t in ALL {
        let mut a = authed(&node, t).await;
        let mut b = authed(&node, t).await;
        // JOIN by id and by name; unknown rooms are nil; the reply comes
        // before the ON_JOIN.
        let f = a
            .request(&join(1, "//stuff", &[Room::Id(chat), Room::Id(456)]))
            .await
            .unwrap();
        assert_eq!(value(&f), Value::Array(vec![chat.into(), Value::Nil]));
        assert!(a.events.is_empty(), "ON_JOIN must follow the reply");
        let ev = next_event(&mut a).await;
        assert_eq!(
            ev,
            Event::Join(EventRoom {
                scope: Some("@collection:stuff".into()),
                id: chat
            })
        );
        let f = b
            .request(&join(2, "@:stuff", &[Room::from("chat")]))
            .await
            .unwrap();
        assert_eq!(value(&f), Value::Array(vec![chat.into()]));
        assert!(matches!(next_event(&mut b).await, Event::Join(_)));
        // Joining again: the id, no second ON_JOIN (checked below by the
        // next event being the ON_EMIT).
        let f = b
            .request(&join(3, "//stuff", &[Room::Id(chat)]))
            .await
            .unwrap();
        assert_eq!(value(&f), Value::Array(vec![chat.into()]));

        // EMIT reaches both; EMIT_PEER all but the sender.
        let f = a
            .request(&emit(
                4,
                "//stuff",
                &Room::Id(chat),
                "msg",
                vec!["hi".into(), 1.into()],
                false,
            ))
            .await
            .unwrap();
        assert_eq!(f.package_type().unwrap(), PackageType::Ok);
        for c in [&mut a, &mut b] {
            match take_event(c).await {
                Event::Emit(e) => {
                    assert_eq!(e.scope.as_deref(), Some("@collection:stuff"));
                    assert_eq!((e.id, e.event.as_str()), (chat, "msg"));
                    assert_eq!(
                        e.arg_list().unwrap(),
                        vec![Value::from("hi"), Value::from(1)]
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        let f = a
            .request(&emit(
                5,
                "//stuff",
                &Room::from("chat"),
                "peer",
                vec![],
                true,
            ))
            .await
            .unwrap();
        assert_eq!(f.package_type().unwrap(), PackageType::Ok);
        match next_event(&mut b).await {
            Event::Emit(e) => assert_eq!(e.event, "peer"),
            other => panic!("{other:?}"),
        }
        // The sender got nothing: a PING's PONG comes next.
        let f = a.request(&ping(6)).await.unwrap();
        assert_eq!(f.package_type().unwrap(), PackageType::Pong);
        assert!(a.events.is_empty());

        // EMIT to unknown rooms, JOIN outside a collection.
        let f = a
            .request(&emit(7, "//stuff", &Room::Id(9999), "x", vec![], false))
            .await
            .unwrap();
        assert_eq!(error_code(&f), -54);
        assert_eq!(
            error_msg(&f),
            "collection `stuff` has no `room` with id 9999"
        );
        let f = a
            .request(&emit(8, "//stuff", &Room::from("nope"), "x", vec![], false))
            .await
            .unwrap();
        assert_eq!(error_code(&f), -54);
        let f = a.request(&join(9, "@t", &[Room::Id(chat)])).await.unwrap();
        assert_eq!(error_code(&f), -53);
        assert_eq!(error_msg(&f), "expecting a `collection` scope");

        // LEAVE: ON_LEAVE, then [id]; unknown rooms nil.
        let f = a
            .request(&leave(10, "//stuff", &[Room::Id(chat), Room::from("nope")]))
            .await
            .unwrap();
        assert_eq!(value(&f), Value::Array(vec![chat.into(), Value::Nil]));
        assert!(
            matches!(take_event(&mut a).await, Event::Leave(EventRoom { id, .. }) if id == chat)
        );
        assert_eq!(node.room_joiners("stuff", chat).len(), 1);

        // Node-side emit and NODE_STATUS / WARN reach the joiners and all
        // authenticated connections.
        assert_eq!(
            node.emit("stuff", chat, "from-node", &[Value::from(true)]),
            1
        );
        assert!(matches!(next_event(&mut b).await, Event::Emit(e) if e.event == "from-node"));
        assert_eq!(node.emit_node_status(NodeStatus::ShuttingDown), 2);
        assert_eq!(node.emit_warn(2, "careful"), 2);
        for c in [&mut a, &mut b] {
            assert_eq!(
                next_event(c).await,
                Event::NodeStatus {
                    id: 0,
                    status: NodeStatus::ShuttingDown
                }
            );
            assert_eq!(
                next_event(c).await,
                Event::Warn {
                    code: 2,
                    message: "careful".into()
                }
            );
        }
        // A connection that joined again gets ON_DELETE when the room goes.
        let room = node.create_room("stuff", None);
        b.request(&join(11, "//stuff", &[Room::Id(room)]))
            .await
            .unwrap();
        assert!(matches!(take_event(&mut b).await, Event::Join(_)));
        assert!(node.delete_room("stuff", room));
        assert_eq!(
            next_event(&mut b).await,
            Event::Delete(EventRoom {
                scope: Some("@collection:stuff".into()),
                id: room
            })
        );
        assert!(!node.delete_room("stuff", room));
        drop((a, b));
        assert!(node.wait_for_connections(0, GUARD).await);
        assert!(node.room_joiners("stuff", chat).is_empty());
    }
}

#[tokio::test]
async fn events_have_id_65535_and_the_node_key_order() {
    let node = TestNode::start().await.unwrap();
    let r = node.create_room("stuff", None);
    let mut c = authed(&node, T::Tcp).await;
    c.request(&join(1, "//stuff", &[Room::Id(r)]))
        .await
        .unwrap();
    let f = c.recv_timeout(GUARD).await.unwrap().unwrap();
    assert_eq!(f.id, EVENT_ID);
    let keys: Vec<String> = match thingsdb_protocol::decode_value(&f.payload).unwrap() {
        Value::Map(m) => m
            .into_iter()
            .map(|(k, _)| k.as_str().unwrap().to_string())
            .collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(keys, ["scope", "id"]);
    c.request(&emit(2, "//stuff", &Room::Id(r), "e", vec![], false))
        .await
        .unwrap();
    let f = c.events.pop().unwrap();
    let keys: Vec<String> = match thingsdb_protocol::decode_value(&f.payload).unwrap() {
        Value::Map(m) => m
            .into_iter()
            .map(|(k, _)| k.as_str().unwrap().to_string())
            .collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(keys, ["scope", "id", "event", "args"]);
}

#[tokio::test]
async fn bad_check_byte_and_oversized_length_close_without_reply() {
    let node = TestNode::builder().max_payload(1024).start().await.unwrap();
    for t in ALL {
        let mut c = authed(&node, t).await;
        let mut p = ping(1).to_vec();
        p[7] = 0xd9; // a LEAVE-like wrong check byte
        c.send(&p).await.unwrap();
        expect_closed(&mut c).await;

        let mut c = authed(&node, t).await;
        let h = Header {
            len: 1025,
            id: 2,
            type_byte: PackageType::Query.as_u8(),
        };
        let mut p = h.encode().to_vec();
        p.extend(std::iter::repeat_n(0u8, 1025));
        c.send(&p).await.unwrap();
        expect_closed(&mut c).await;
    }
    // A WebSocket message shorter than a header closes too.
    let mut c = authed(&node, T::Ws).await;
    c.send(&[0, 0, 0]).await.unwrap();
    expect_closed(&mut c).await;
    assert_eq!(node.counters().bad_packages, 7);
    assert_eq!(node.counters().replies_sent, 7, "only the AUTH replies");
}

#[tokio::test]
async fn stream_transports_reassemble_split_and_batched_packages() {
    let node = TestNode::start().await.unwrap();
    for t in [T::Tcp, T::Unix] {
        let mut c = client(&node, t).await;
        let mut all = auth(1, "admin", "pass").to_vec();
        all.extend_from_slice(&query(2, "@t", "2 + 3;", None));
        all.extend_from_slice(&ping(3));
        for b in &all {
            c.send(std::slice::from_ref(b)).await.unwrap();
        }
        let f = c.recv_timeout(GUARD).await.unwrap().unwrap();
        assert_eq!((f.id, f.package_type().unwrap()), (1, PackageType::Ok));
        let f = c.recv_timeout(GUARD).await.unwrap().unwrap();
        assert_eq!((f.id, value(&f)), (2, Value::from(5)));
        let f = c.recv_timeout(GUARD).await.unwrap().unwrap();
        assert_eq!((f.id, f.package_type().unwrap()), (3, PackageType::Pong));
    }
}

#[tokio::test]
async fn unknown_types_are_ignored_and_deprecated_ones_get_ok() {
    let node = TestNode::start().await.unwrap();
    for t in ALL {
        let mut c = authed(&node, t).await;
        c.send(&raw_pkg(PackageType::Data, 5, &[0x01]))
            .await
            .unwrap();
        let f = c
            .request(&raw_pkg(PackageType::DeprecatedWatch, 6, &[]))
            .await
            .unwrap();
        assert_eq!(f.package_type().unwrap(), PackageType::Ok);
        // Nothing came for id 5.
        assert!(c.other.is_empty());
    }
    assert_eq!(node.counters().received(PackageType::Data), 3);
}

#[tokio::test]
async fn large_replies_and_results_over_the_limit() {
    let node = TestNode::builder()
        .result_size_limit(100_000)
        .start()
        .await
        .unwrap();
    node.on_query(|q| match q.code.as_str() {
        "big;" => Reply::value("x".repeat(50_000)),
        _ => Reply::value("x".repeat(200_000)),
    });
    for t in ALL {
        let mut c = authed(&node, t).await;
        let f = c.request(&query(1, "@t", "big;", None)).await.unwrap();
        assert_eq!(value(&f).as_str().unwrap().len(), 50_000);
        let f = c.request(&query(2, "@t", "huge;", None)).await.unwrap();
        assert_eq!(error_code(&f), -6);
    }
}

#[tokio::test]
async fn responses_decode_with_the_protocol_crate() {
    let node = TestNode::start().await.unwrap();
    let mut c = authed(&node, T::Ws).await;
    let f = c.request(&query(9, "@t", "nil;", None)).await.unwrap();
    assert_eq!(
        Response::decode(&f).unwrap(),
        Response::Data(bytes::Bytes::from_static(&[0xc0]))
    );
}
