//! The blocking client against the testkit: requests, procedures, rooms,
//! reconnect and failover, over TCP, WebSocket and Unix sockets. The test
//! node runs on a tokio runtime of its own; the client uses none.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fast_reconnect, target, Via, ALL};
use thingsdb_client::blocking::{Client, RecvTimeoutError, TryRecvError};
use thingsdb_client::{Auth, Error, ErrorCode, RoomEvent, Value};
use thingsdb_testkit::{Reply, TestNode};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn connect(node: &TestNode, via: Via) -> Client {
    Client::builder()
        .target(&target(node, via))
        .unwrap()
        .auth(Auth::password("admin", "pass"))
        .request_timeout(Duration::from_secs(30))
        .reconnect(fast_reconnect())
        .connect_blocking()
        .unwrap()
}

/// The next event other than `skip`s, within a minute.
fn next_event(events: &mut thingsdb_client::blocking::RoomEvents) -> RoomEvent {
    events
        .recv_timeout(Duration::from_secs(60))
        .expect("no event within a minute")
}

fn wait_for(events: &mut thingsdb_client::blocking::RoomEvents, want: &RoomEvent) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(e) if &e == want => return,
            Ok(_) => {}
            Err(e) => panic!("waiting for {want:?}: {e:?}"),
        }
    }
}

#[test]
fn queries_procedures_and_errors_over_every_transport() {
    let rt = runtime();
    let node = rt.block_on(TestNode::start()).unwrap();
    node.procedure("add_one", |a| {
        match a.param(0, "x").and_then(|v| v.as_i64()) {
            Some(x) => Reply::value(x + 1),
            None => Reply::error(ErrorCode::Type, "expected an integer"),
        }
    });
    for via in ALL {
        let client = connect(&node, via);
        assert_eq!(client.threads(), 0, "{via:?}");
        assert_eq!(client.query("1 + 1;").send().unwrap(), Value::from(2));
        let v: i64 = client
            .query("a * b;")
            .var("a", &6)
            .var("b", &7)
            .decode()
            .unwrap();
        assert_eq!(v, 42);
        assert_eq!(
            client.run("add_one").arg(&41).send().unwrap(),
            Value::from(42)
        );
        let named: i64 = client.run("add_one").named("x", &1).decode().unwrap();
        assert_eq!(named, 2);
        let e = client.run("add_one").arg(&"x").send().unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Type), "{e}");
        let e = client.query("1;").scope("nonsense").send().unwrap_err();
        assert!(matches!(e, Error::BadArgument(_)), "{e}");
        client.ping().unwrap();
        assert!(client.is_connected());
        assert_eq!(client.connections_made(), 1);
        client.close().unwrap();
        assert!(!client.is_connected());
        assert!(
            matches!(client.query("1;").send(), Err(Error::Closed)),
            "{via:?}"
        );
    }
}

#[test]
fn wrong_credentials_are_an_auth_error() {
    let rt = runtime();
    let node = rt.block_on(TestNode::start()).unwrap();
    let e = Client::connect(&node.tcp_target(), Auth::password("admin", "nope")).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Auth), "{e}");
}

#[test]
fn threads_share_one_connection() {
    let rt = runtime();
    let node = rt.block_on(TestNode::start()).unwrap();
    let client = connect(&node, Via::Tcp);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let c = client.clone();
            std::thread::spawn(move || {
                for i in 0..200i64 {
                    let v: i64 = c
                        .query("x + 1;")
                        .var("x", &(t * 1000 + i))
                        .decode()
                        .unwrap();
                    assert_eq!(v, t * 1000 + i + 1);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(node.connections().len(), 1);
    assert_eq!(client.threads(), 0);
}

#[test]
fn rooms_in_two_collections_with_one_id_and_a_blocking_receiver() {
    let rt = runtime();
    let node = rt.block_on(TestNode::start()).unwrap();
    let a = node.create_room("stuff", Some("chat"));
    let b = node.create_room("other", Some("chat"));
    assert_eq!(a, b, "the testkit gives both first rooms the same id");
    for via in ALL {
        let client = connect(&node, via);
        let mut ea = client.room("//stuff", a).unwrap().join().unwrap();
        let mut eb = client.room("//other", "chat").unwrap().join().unwrap();
        assert_eq!(client.threads(), 1);
        assert_eq!((ea.collection(), eb.collection()), ("stuff", "other"));
        wait_for(&mut ea, &RoomEvent::Joined);
        wait_for(&mut eb, &RoomEvent::Joined);
        assert!(matches!(ea.try_recv(), Err(TryRecvError::Empty)));
        assert!(matches!(
            ea.recv_timeout(Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout)
        ));
        node.emit("other", b, "only-b", &[Value::from(1)]);
        client
            .room("//stuff", a)
            .unwrap()
            .emit("only-a", &(2,))
            .unwrap();
        match next_event(&mut ea) {
            RoomEvent::Emitted(e) => {
                assert_eq!(e.event, "only-a");
                let (n,): (i64,) = e.decode().unwrap();
                assert_eq!(n, 2);
            }
            other => panic!("{other:?}"),
        }
        match next_event(&mut eb) {
            RoomEvent::Emitted(e) => assert_eq!(e.event, "only-b"),
            other => panic!("{other:?}"),
        }
        // Requests still work while the event thread reads.
        assert_eq!(client.query("3 + 4;").send().unwrap(), Value::from(7));
        let mut rooms = client.rooms().unwrap();
        rooms.sort();
        assert_eq!(rooms, [("other".into(), b), ("stuff".into(), a)]);
        ea.leave().unwrap();
        assert_eq!(ea.by_ref().last(), Some(RoomEvent::Left));
        assert_eq!(client.rooms().unwrap(), [("other".into(), b)]);
        drop(eb);
        client.close().unwrap();
    }
}

#[test]
fn a_dropped_connection_is_remade_and_rooms_rejoined() {
    let rt = runtime();
    let node = rt.block_on(TestNode::start()).unwrap();
    let room = node.create_room("stuff", None);
    for via in ALL {
        // Without rooms: the caller notices the drop before writing.
        let client = connect(&node, via);
        assert_eq!(client.query("1;").send().unwrap(), Value::from(1));
        let conn = node.connections().last().unwrap().id;
        node.connection_faults(conn).close_now();
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(
            client.query("2;").send().unwrap(),
            Value::from(2),
            "{via:?}"
        );
        assert_eq!(client.connections_made(), 2);
        client.close().unwrap();

        // With a room: the event thread reconnects and re-joins.
        let client = connect(&node, via);
        let mut events = client.room("//stuff", room).unwrap().join().unwrap();
        wait_for(&mut events, &RoomEvent::Joined);
        let conn = node.connections().last().unwrap().id;
        node.connection_faults(conn).close_now();
        wait_for(&mut events, &RoomEvent::Disconnected);
        wait_for(&mut events, &RoomEvent::Joined);
        node.emit("stuff", room, "after", &[]);
        match next_event(&mut events) {
            RoomEvent::Emitted(e) => assert_eq!(e.event, "after"),
            other => panic!("{other:?}"),
        }
        assert_eq!(client.query("5;").send().unwrap(), Value::from(5));
        drop(events);
        client.close().unwrap();
    }
}

#[test]
fn failover_to_the_next_node_of_the_pool() {
    let rt = runtime();
    let a = Arc::new(rt.block_on(TestNode::start()).unwrap());
    let b = rt.block_on(TestNode::start()).unwrap();
    let client = Client::builder()
        .target(&a.tcp_target())
        .unwrap()
        .target(&b.tcp_target())
        .unwrap()
        .auth(Auth::password("admin", "pass"))
        .reconnect(fast_reconnect())
        .request_timeout(Duration::from_secs(30))
        .connect_blocking()
        .unwrap();
    assert_eq!(client.query("1;").send().unwrap(), Value::from(1));
    a.refuse_connections_for(Duration::from_secs(3600));
    rt.block_on(a.restart());
    // Idempotent: sent again on the next node even if it was written on
    // the dying connection.
    assert_eq!(
        client.query("2;").idempotent().send().unwrap(),
        Value::from(2)
    );
    assert_eq!(
        client.connection_info(),
        Some(b.tcp_target().parse().unwrap())
    );
    assert_eq!(b.connections().len(), 1);
}

#[test]
fn a_silent_node_times_requests_out() {
    let rt = runtime();
    let node = rt.block_on(TestNode::start()).unwrap();
    let client = connect(&node, Via::Tcp);
    node.faults().stop_replying(true);
    let t = Instant::now();
    let e = client
        .query("1;")
        .timeout(Duration::from_millis(200))
        .send()
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    // The session times it out at its deadline and the caller sees that
    // at once, not at the caller's own guard a second after the deadline.
    assert!(
        t.elapsed() < Duration::from_millis(1200),
        "{:?}",
        t.elapsed()
    );
    node.faults().stop_replying(false);
    assert_eq!(client.query("1;").send().unwrap(), Value::from(1));
}
