//! Queries, procedures and errors, over TCP, WebSocket and Unix socket,
//! against the testkit node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{builder, connect, within, Via, ALL};
use serde::{Deserialize, Serialize};
use thingsdb_client::{Auth, Client, Error, ErrorCode, Value};
use thingsdb_testkit::{Reply, TestNode};

#[tokio::test]
async fn query_over_every_transport() {
    let node = TestNode::start().await.unwrap();
    for via in ALL {
        let client = connect(&node, via).await;
        let v = within(30, client.query("1 + 1;")).await.unwrap();
        assert_eq!(v, Value::from(2), "{via:?}");
        let n: i64 = within(
            30,
            client.query("a * b;").var("a", &6).var("b", &7).decode(),
        )
        .await
        .unwrap();
        assert_eq!(n, 42, "{via:?}");
        client.ping().await.unwrap();
        client.close().await.unwrap();
    }
}

#[tokio::test]
async fn struct_vars_and_results_roundtrip_through_serde() {
    #[derive(Serialize)]
    struct Vars {
        a: i64,
        b: i64,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    struct Thing {
        #[serde(rename = "#")]
        id: u64,
        name: String,
        tags: Vec<String>,
    }
    let node = TestNode::start().await.unwrap();
    node.on_query(|q| match q.code.as_str() {
        "thing;" => Reply::value(Value::Map(vec![
            (Value::from("#"), Value::from(12)),
            (Value::from("name"), Value::from("x")),
            (
                Value::from("tags"),
                Value::Array(vec![Value::from("a"), Value::from("b")]),
            ),
        ])),
        "echo;" => Reply::value(q.var("v").cloned().unwrap_or(Value::Nil)),
        _ => q.evaluate(),
    });
    for via in ALL {
        let client = connect(&node, via).await;
        let n: i64 = client
            .query("a * b;")
            .vars(&Vars { a: 3, b: 5 })
            .decode()
            .await
            .unwrap();
        assert_eq!(n, 15);
        let t: Thing = client.query("thing;").decode().await.unwrap();
        assert_eq!(
            t,
            Thing {
                id: 12,
                name: "x".into(),
                tags: vec!["a".into(), "b".into()]
            }
        );
        // rmpv values go through serde as well.
        let mut m = BTreeMap::new();
        m.insert(
            "v",
            Value::Array(vec![Value::from(1.5), Value::Nil, Value::from(true)]),
        );
        let back = client.query("echo;").vars(&m).await.unwrap();
        assert_eq!(back, m["v"]);
    }
}

#[tokio::test]
async fn procedures_with_positional_and_named_args() {
    let node = TestNode::start().await.unwrap();
    node.procedure("add_one", |a| {
        match a.param(0, "x").and_then(|v| v.as_i64()) {
            Some(x) => Reply::value(x + 1),
            None => Reply::error(ErrorCode::Type, "expected an integer"),
        }
    });
    for via in ALL {
        let client = connect(&node, via).await;
        assert_eq!(
            client.run("add_one").arg(&41).await.unwrap(),
            Value::from(42)
        );
        assert_eq!(
            client.run("add_one").args(&(41,)).await.unwrap(),
            Value::from(42)
        );
        let named: i64 = client
            .run("add_one")
            .named("x", &41)
            .decode()
            .await
            .unwrap();
        assert_eq!(named, 42);
        #[derive(Serialize)]
        struct X {
            x: i64,
        }
        let by_struct: i64 = client
            .run("add_one")
            .args(&X { x: 1 })
            .decode()
            .await
            .unwrap();
        assert_eq!(by_struct, 2);
        let e = client.run("nope").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Lookup), "{e}");
        let e = client.run("add_one").arg(&"x").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Type), "{e}");
    }
}

#[tokio::test]
async fn node_errors_are_typed() {
    let node = TestNode::start().await.unwrap();
    node.on_query(|q| match q.code.as_str() {
        "custom;" => Reply::error(ErrorCode::from_code(-100), "my error"),
        "weird;" => Reply::error(ErrorCode::from_code(7), "odd"),
        _ => q.evaluate(),
    });
    let client = connect(&node, Via::Tcp).await;
    let e = client.query("1/0;").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ZeroDiv));
    match &e {
        Error::Thingsdb(t) => assert_eq!(t.name(), "zero_div"),
        other => panic!("{other:?}"),
    }
    let e = client.query("1 +;").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Syntax));
    let e = client.query("custom;").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Custom(-100)));
    let e = client.query("weird;").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Other(7)));
}

#[tokio::test]
async fn bad_arguments_are_refused_before_sending() {
    let node = TestNode::start().await.unwrap();
    let client = connect(&node, Via::Tcp).await;
    let before = node.counters();
    let e = client.query("x;").vars(&[1, 2]).await.unwrap_err();
    assert!(matches!(e, Error::BadArgument(_)), "{e}");
    let e = client.query("x;").scope("stuff").await.unwrap_err();
    assert!(matches!(e, Error::BadArgument(_)), "{e}");
    let e = client.run("p").args(&5).await.unwrap_err();
    assert!(matches!(e, Error::BadArgument(_)), "{e}");
    let e = client.run("p").arg(&1).named("x", &1).await.unwrap_err();
    assert!(matches!(e, Error::BadArgument(_)), "{e}");
    assert!(Client::builder().target("nope://x").is_err());
    assert_eq!(node.counters().received_total(), before.received_total());
}

#[tokio::test]
async fn wrong_credentials_and_tokens() {
    let node = TestNode::builder()
        .token("tok123", "admin")
        .start()
        .await
        .unwrap();
    let e = builder(&node, Via::Tcp)
        .auth(Auth::password("admin", "wrong"))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Auth), "{e}");
    let client = builder(&node, Via::Ws)
        .auth(Auth::token("tok123"))
        .connect()
        .await
        .unwrap();
    assert_eq!(client.query("2 + 2;").await.unwrap(), Value::from(4));
    client.authenticate().await.unwrap();
    let dbg = format!("{client:?}");
    assert!(!dbg.contains("tok123"), "{dbg}");
}

#[tokio::test]
async fn pipelined_queries_from_many_tasks_all_match() {
    let node = TestNode::start().await.unwrap();
    for via in ALL {
        let client = connect(&node, via).await;
        let mut tasks = Vec::new();
        for t in 0..16i64 {
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..500i64 {
                    let v: i64 = c
                        .query("a * b;")
                        .var("a", &t)
                        .var("b", &i)
                        .decode()
                        .await
                        .unwrap();
                    assert_eq!(v, t * i);
                }
            }));
        }
        within(120, async {
            for t in tasks {
                t.await.unwrap();
            }
        })
        .await;
    }
}

#[tokio::test]
async fn timeout_frees_nothing_early_and_drops_the_late_reply() {
    let node = TestNode::start().await.unwrap();
    let client = connect(&node, Via::Tcp).await;
    node.faults().delay_replies(Duration::from_millis(600));
    let e = client
        .query("1 + 1;")
        .timeout(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e}");
    node.faults().reset();
    // The late reply for the timed-out request must not answer this one.
    let v = within(30, client.query("20 + 1;")).await.unwrap();
    assert_eq!(v, Value::from(21));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(client.query("3 + 1;").await.unwrap(), Value::from(4));
}

#[tokio::test]
async fn connection_lost_fails_every_request_in_flight_at_once() {
    let node = TestNode::start().await.unwrap();
    for via in ALL {
        let client = builder(&node, via)
            .reconnect(thingsdb_client::ReconnectPolicy::disabled())
            .connect()
            .await
            .unwrap();
        node.faults().stop_replying(true);
        let mut pending = Vec::new();
        for _ in 0..100 {
            let c = client.clone();
            pending.push(tokio::spawn(async move { c.query("1 + 1;").await }));
        }
        assert!(
            node.wait_for(|c| c.received_total() >= 101, Duration::from_secs(30))
                .await
        );
        node.faults().close_now();
        node.faults().reset();
        within(30, async {
            for p in pending {
                let e = p.await.unwrap().unwrap_err();
                assert!(matches!(e, Error::ConnectionLost(_)), "{via:?}: {e}");
            }
        })
        .await;
        // Reconnect is off: later requests fail clearly, never hang.
        let e = within(30, client.query("1 + 1;")).await.unwrap_err();
        assert!(matches!(e, Error::ConnectionLost(_)), "{via:?}: {e}");
        node.reset_counters();
    }
}

#[tokio::test]
async fn invalid_msgpack_in_data_fails_that_request_only() {
    let node = TestNode::start().await.unwrap();
    let client = connect(&node, Via::Tcp).await;
    node.faults()
        .corrupt_next_reply(thingsdb_testkit::Corruption::InvalidMsgpack);
    let e = client.query("1 + 1;").await.unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    assert_eq!(client.query("1 + 2;").await.unwrap(), Value::from(3));
}

#[tokio::test]
async fn raw_results_are_undecoded_msgpack() {
    let node = TestNode::start().await.unwrap();
    let client = connect(&node, Via::Unix).await;
    let raw = client.query("6 * 7;").raw().await.unwrap();
    assert_eq!(&raw[..], &[42]);
}

#[tokio::test]
async fn dropping_a_request_future_cancels_it_cleanly() {
    let node = TestNode::start().await.unwrap();
    let client = connect(&node, Via::Tcp).await;
    node.faults().delay_replies(Duration::from_millis(300));
    {
        let fut = client.query("1 + 1;");
        // Poll it once so it is queued, then drop it.
        let _ = tokio::time::timeout(Duration::from_millis(10), fut).await;
    }
    node.faults().reset();
    assert_eq!(client.query("5 + 5;").await.unwrap(), Value::from(10));
}

#[tokio::test]
async fn close_waits_for_in_flight_then_refuses() {
    let node = TestNode::start().await.unwrap();
    let client = connect(&node, Via::Ws).await;
    node.faults().delay_replies(Duration::from_millis(200));
    let c = client.clone();
    let pending = tokio::spawn(async move { c.query("1 + 1;").await });
    assert!(
        node.wait_for(|c| c.received_total() >= 2, Duration::from_secs(30))
            .await
    );
    within(30, client.close()).await.unwrap();
    assert_eq!(pending.await.unwrap().unwrap(), Value::from(2));
    let e = client.query("1 + 1;").await.unwrap_err();
    assert!(matches!(e, Error::Closed), "{e}");
}

#[tokio::test]
async fn all_ids_in_flight_makes_the_next_request_wait() {
    let node = TestNode::start().await.unwrap();
    let client = builder(&node, Via::Tcp)
        .keepalive(None)
        .connect()
        .await
        .unwrap();
    node.faults().stop_replying(true);
    let total = 65_536 + 100;
    let mut handles = Vec::with_capacity(total);
    for _ in 0..total {
        let c = client.clone();
        handles.push(tokio::spawn(async move { c.query("1 + 1;").await }));
    }
    // The node sees at most 65536 queries (plus the AUTH) while none is answered.
    assert!(
        node.wait_for(|c| c.received_total() > 65_536, Duration::from_secs(60))
            .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node.counters().received_total(), 65_537);
    node.faults().stop_replying(false);
    // Replies held back are not resent by the node: a connection drop
    // ends this test's requests; what matters is the count above and that
    // nothing hangs.
    node.faults().close_now();
    within(120, async {
        for h in handles {
            let _ = h.await.unwrap();
        }
    })
    .await;
}

/// Queries and procedure calls are futures themselves: `join_all`,
/// `select!` and `timeout` take them as they are.
#[tokio::test]
async fn builders_are_futures() {
    let node = TestNode::start().await.unwrap();
    node.procedure("add_one", |a| {
        match a.param(0, "x").and_then(Value::as_i64) {
            Some(x) => Reply::value(x + 1),
            None => Reply::error(ErrorCode::Type, "expecting an int"),
        }
    });
    let client = connect(&node, Via::Tcp).await;
    let all = within(
        30,
        futures::future::join_all((0..20i64).map(|i| client.query("x * 2;").var("x", &i))),
    )
    .await;
    let got: Vec<Value> = all.into_iter().map(Result::unwrap).collect();
    let want: Vec<Value> = (0..20i64).map(|i| Value::from(i * 2)).collect();
    assert_eq!(got, want);
    let v = tokio::time::timeout(Duration::from_secs(30), client.run("add_one").arg(&41))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, Value::from(42));
    let v = tokio::select! {
        v = client.query("6 * 7;") => v.unwrap(),
        () = tokio::time::sleep(Duration::from_secs(30)) => panic!("no answer"),
    };
    assert_eq!(v, Value::from(42));
}

/// Requests first polled all at once, with nothing else running between:
/// beyond the connection task's command queue (4 096), each waits for room
/// itself. Every one is answered.
#[tokio::test(flavor = "current_thread")]
async fn requests_beyond_a_full_command_queue_wait_for_room() {
    let node = TestNode::start().await.unwrap();
    let client = Client::connect(&node.tcp_target(), Auth::password("admin", "pass"))
        .await
        .unwrap();
    let mut calls: Vec<_> = (0..6000).map(|_| client.query("1 + 1;").raw()).collect();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for c in &mut calls {
        assert!(c.as_mut().poll(&mut cx).is_pending());
    }
    let answers = within(60, futures::future::join_all(calls)).await;
    assert!(answers.iter().all(Result::is_ok));
    client.close().await.unwrap();
}

/// A request waiting for room in a full command queue gives up at its own
/// deadline, with `Error::Timeout`. The node is gone: the connection task
/// holds what it takes from the queue, and the room that leaves goes to
/// the requests already waiting for it, in their order (these were polled
/// once and never again, so they keep it and send nothing): the queue
/// stays full, and a later request waits for room until its deadline.
#[tokio::test]
async fn a_request_waiting_for_room_times_out_at_its_deadline() {
    let node = TestNode::start().await.unwrap();
    let client = builder(&node, Via::Tcp)
        .request_timeout(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    drop(node);
    within(30, async {
        while client.is_connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut waiting: Vec<_> = (0..8192 + 4096 + 500)
        .map(|_| client.query("1 + 1;").raw())
        .collect();
    for c in &mut waiting {
        assert!(c.as_mut().poll(&mut cx).is_pending());
    }
    // The connection task takes what it will meanwhile.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let late = (0..10).map(|_| {
        client
            .query("1 + 1;")
            .timeout(Duration::from_millis(100))
            .raw()
    });
    for r in within(30, futures::future::join_all(late)).await {
        let e = r.unwrap_err();
        assert!(e.is_timeout(), "{e:?}");
    }
}
