//! A caller whose request finds the connection idle reads its answer from
//! its own task (one task woken per request instead of two); these check
//! that the connection always goes back to the connection task: after an
//! answer, after a caller stops waiting, and when another caller comes
//! meanwhile. A connection left with a task that no longer listens loses
//! events and answers: each test would hang, and `within` fails it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{builder, wait_emitted, within, Via, ALL};
use thingsdb_client::Client;
use thingsdb_testkit::TestNode;

/// A client whose connection task wakes for nothing of its own: no
/// keepalive, and a request timeout far beyond the tests' waits (its
/// timer would wake the task and hide a connection left with a caller).
async fn connect(node: &TestNode, via: Via) -> Client {
    builder(node, via)
        .request_timeout(Duration::from_secs(600))
        .keepalive(None)
        .connect()
        .await
        .unwrap()
}

/// A first request: it arms the connection's timer (the connection task
/// then takes over to wait for it); later requests find it armed and are
/// stepped by their callers.
async fn first_request(a: &Client) {
    within(30, a.query("0;").scope("//stuff").raw())
        .await
        .unwrap();
}

/// `n` comes back for `n;`, one request at a time.
async fn answers(a: &Client, n: i64, via: Via) {
    let v: i64 = within(
        30,
        a.query(&format!("{n};")).scope("//stuff").decode::<i64>(),
    )
    .await
    .unwrap();
    assert_eq!(v, n, "{via:?}");
}

/// After a request answered one at a time, nothing in flight: an event
/// that comes later is read (by the connection task) while the caller only
/// waits on the room.
#[tokio::test]
async fn events_come_in_after_a_request_with_nothing_in_flight() {
    let node = TestNode::start().await.unwrap();
    let room_id = node.create_room("stuff", None);
    for via in ALL {
        let a = connect(&node, via).await;
        let b = connect(&node, via).await;
        let mut events = common::joined(&a, room_id).await;
        for i in 0..3i64 {
            let v: i64 = within(30, a.query("1 + 1;").scope("//stuff").decode::<i64>())
                .await
                .unwrap();
            assert_eq!(v, 2);
            b.room("//stuff", room_id)
                .unwrap()
                .emit("tick", &[i])
                .await
                .unwrap();
            let e = within(30, wait_emitted(&mut events, "tick")).await;
            assert_eq!(e.decode::<(i64,)>().unwrap(), (i,), "{via:?}");
        }
    }
}

/// A caller that stops waiting (its future dropped while it read the
/// connection) gives it back: events and later answers still come.
#[tokio::test]
async fn a_caller_that_stops_waiting_gives_the_connection_back() {
    let node = TestNode::start().await.unwrap();
    let room_id = node.create_room("stuff", None);
    for via in ALL {
        let a = connect(&node, via).await;
        let b = connect(&node, via).await;
        let mut events = common::joined(&a, room_id).await;
        first_request(&a).await;
        node.faults().delay_replies(Duration::from_millis(300));
        let gave_up = tokio::time::timeout(
            Duration::from_millis(20),
            a.query("1 + 1;").scope("//stuff").raw(),
        )
        .await;
        assert!(gave_up.is_err(), "{via:?}: answered within 20 ms");
        node.faults().reset();
        b.room("//stuff", room_id)
            .unwrap()
            .emit("after", &[1])
            .await
            .unwrap();
        within(30, wait_emitted(&mut events, "after")).await;
        let v: i64 = within(30, a.query("2 + 2;").scope("//stuff").decode::<i64>())
            .await
            .unwrap();
        assert_eq!(v, 4, "{via:?}");
    }
}

/// One caller reads the connection from its task; another request comes
/// meanwhile from another task, through the connection task, which takes
/// the connection over: the first caller, on a task of its own, is still
/// woken with its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_is_answered_when_the_connection_task_takes_over() {
    let node = TestNode::start().await.unwrap();
    for via in ALL {
        let a = connect(&node, via).await;
        first_request(&a).await;
        node.faults().delay_replies(Duration::from_millis(200));
        let first = tokio::spawn({
            let a = a.clone();
            async move { a.query("1;").scope("//stuff").raw().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = within(30, a.query("2;").scope("//stuff").raw()).await;
        let first = within(30, first).await.unwrap();
        node.faults().reset();
        assert!(
            first.is_ok() && second.is_ok(),
            "{via:?}: {first:?} {second:?}"
        );
        // And the connection still answers one at a time.
        answers(&a, 3, via).await;
    }
}

/// A caller outside any runtime (a plain thread with a minimal executor)
/// reads its answer from the connection itself, and the connection task
/// (on the runtime the client was made on) still serves the next caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_outside_the_runtime_is_answered() {
    let node = TestNode::start().await.unwrap();
    for via in ALL {
        let a = connect(&node, via).await;
        first_request(&a).await;
        let from_thread = {
            let a = a.clone();
            std::thread::spawn(move || {
                (1..=3i64)
                    .map(|i| {
                        futures::executor::block_on(
                            a.query("x;").scope("//stuff").var("x", &i).decode::<i64>(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        };
        let got = within(30, tokio::task::spawn_blocking(move || from_thread.join()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            [1, 2, 3],
            "{via:?}"
        );
        answers(&a, 4, via).await;
    }
}

/// The runtime the client was made on shuts down (its connection task
/// with it): callers, waiting or coming later, get an error rather than
/// wait for ever.
#[test]
fn callers_get_an_error_when_the_connection_task_is_gone() {
    let node_rt = tokio::runtime::Runtime::new().unwrap();
    let node = node_rt.block_on(TestNode::start()).unwrap();
    for via in ALL {
        let client_rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let a = client_rt.block_on(connect(&node, via));
        client_rt
            .block_on(a.query("0;").scope("//stuff").raw())
            .unwrap();
        // One request in flight when the runtime goes.
        node.faults().delay_replies(Duration::from_secs(5));
        let waiting = {
            let a = a.clone();
            node_rt.spawn(async move { a.query("1;").scope("//stuff").raw().await })
        };
        node_rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
        drop(client_rt);
        let (waiting, later) = node_rt.block_on(async {
            let waiting = within(30, waiting).await.unwrap();
            let later = within(30, a.query("2;").scope("//stuff").raw()).await;
            (waiting, later)
        });
        node.faults().reset();
        assert!(
            waiting.is_err() && later.is_err(),
            "{via:?}: {waiting:?} {later:?}"
        );
    }
}
