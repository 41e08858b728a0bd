//! The blocking client against a real ThingsDB node, and a two-node
//! cluster: queries, errors, procedures, rooms in two collections with the
//! same room id, threads sharing the connection, and a node that drops its
//! connections (killed) with the client moving to the other node.
//!
//! Runs when `THINGSDB_BIN` names a node binary (over WebSocket too when
//! `THINGSDB_BIN_WS=1`, inside an isolated network namespace as `cargo
//! xtask real-node` runs it); otherwise each test says it was skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::skipped;
use thingsdb_client::blocking::{Client, RoomEvents};
use thingsdb_client::{Auth, ErrorCode, ReconnectPolicy, RoomEvent, Value};
use thingsdb_testkit::real_node::{RealCluster, RealNode, SKIP_MESSAGE};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// The real node, and the targets to test over (TCP, and WS when it has
/// it).
fn real(rt: &tokio::runtime::Runtime) -> Option<(RealNode, Vec<String>)> {
    let node = rt.block_on(RealNode::from_env()).unwrap()?;
    let mut targets = Vec::new();
    if let Some(t) = node.tcp_target() {
        targets.push(t.to_string());
    }
    if let Some(w) = node.ws_url() {
        targets.push(w.to_string());
    }
    Some((node, targets))
}

fn client(user: &str, password: &str, targets: &[&str]) -> Client {
    let mut b = Client::builder();
    for t in targets {
        b = b.target(t).unwrap();
    }
    b.auth(Auth::password(user, password))
        .default_scope("//stuff")
        .unwrap()
        .request_timeout(Duration::from_secs(60))
        .reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..ReconnectPolicy::default()
        })
        .connect_blocking()
        .unwrap()
}

fn wait_for(events: &mut RoomEvents, want: &RoomEvent) {
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(e) if &e == want => return,
            Ok(_) => {}
            Err(e) => panic!("waiting for {want:?}: {e:?}"),
        }
    }
}

fn next_emitted(events: &mut RoomEvents) -> thingsdb_client::Emitted {
    loop {
        match events.recv_timeout(Duration::from_secs(30)) {
            Ok(RoomEvent::Emitted(e)) => return e,
            Ok(_) => {}
            Err(e) => panic!("no event: {e:?}"),
        }
    }
}

macro_rules! real_or_skip {
    ($rt:expr) => {
        match real(&$rt) {
            Some(r) => r,
            None => {
                skipped(SKIP_MESSAGE);
                return;
            }
        }
    };
}

#[test]
fn real_blocking_queries_errors_and_procedures() {
    let rt = runtime();
    let (node, targets) = real_or_skip!(rt);
    let first = client(node.user(), node.password(), &[&targets[0]]);
    first
        .query("new_procedure('add_one', |x| x + 1); nil;")
        .send()
        .unwrap();
    for t in &targets {
        let c = client(node.user(), node.password(), &[t]);
        assert_eq!(
            c.query("1 + 1;").scope("@t").send().unwrap(),
            Value::from(2)
        );
        let v: i64 = c
            .query("a * b;")
            .var("a", &6)
            .var("b", &7)
            .decode()
            .unwrap();
        assert_eq!(v, 42);
        let e = c.query("1/0;").send().unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::ZeroDiv), "{t}: {e}");
        let e = c.query("1 +;").send().unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Syntax), "{t}: {e}");
        let e = c.run("no_such_procedure").send().unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Lookup), "{t}: {e}");
        assert_eq!(c.run("add_one").arg(&41).send().unwrap(), Value::from(42));
        let n: i64 = c.run("add_one").named("x", &41).decode().unwrap();
        assert_eq!(n, 42);
        c.ping().unwrap();
        c.authenticate().unwrap();
        let bad = Client::connect(t, Auth::password(node.user(), "wrong")).unwrap_err();
        assert_eq!(bad.code(), Some(ErrorCode::Auth), "{t}: {bad}");
        // Threads share the one connection.
        let hs: Vec<_> = (0..4)
            .map(|k| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..500i64 {
                        let v: i64 = c
                            .query("x + 1;")
                            .var("x", &(k * 1000 + i))
                            .decode()
                            .unwrap();
                        assert_eq!(v, k * 1000 + i + 1);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(c.threads(), 0);
        assert_eq!(c.connections_made(), 1);
        c.close().unwrap();
    }
}

/// Collections made fresh for one test: each counts its own room ids.
fn fresh_collections(c: &Client, n: usize) -> Vec<String> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (0..n)
        .map(|i| {
            let name = format!("b{stamp}_{i}");
            c.query(&format!("new_collection('{name}');"))
                .scope("@t")
                .send()
                .unwrap();
            name
        })
        .collect()
}

#[test]
fn real_blocking_rooms_with_one_id_in_two_collections_stay_apart() {
    let rt = runtime();
    let (node, targets) = real_or_skip!(rt);
    for t in &targets {
        let c = client(node.user(), node.password(), &[t]);
        let names = fresh_collections(&c, 2);
        let ids: Vec<u64> = names
            .iter()
            .map(|n| {
                c.query(".r = room(); .r.id();")
                    .scope(&format!("//{n}"))
                    .decode()
                    .unwrap()
            })
            .collect();
        assert_eq!(ids[0], ids[1], "room ids are per collection");
        let mut alpha = c
            .room(&format!("//{}", names[0]), ids[0])
            .unwrap()
            .join()
            .unwrap();
        let mut beta = c
            .room(&format!("@:{}", names[1]), ids[1])
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(c.threads(), 1);
        wait_for(&mut alpha, &RoomEvent::Joined);
        wait_for(&mut beta, &RoomEvent::Joined);
        for (i, n) in names.iter().enumerate() {
            c.query(&format!(".r.emit('n', {i});"))
                .scope(&format!("@collection:{n}"))
                .send()
                .unwrap();
        }
        for (i, s) in [&mut alpha, &mut beta].into_iter().enumerate() {
            assert_eq!(next_emitted(s).arg::<usize>(0).unwrap(), i, "{t}");
        }
        c.room(&format!("//{}", names[0]), ids[0])
            .unwrap()
            .emit("end", &())
            .unwrap_err(); // () is not an array of arguments
        c.room(&format!("//{}", names[0]), ids[0])
            .unwrap()
            .emit("end", &[0; 0])
            .unwrap();
        assert_eq!(next_emitted(&mut alpha).event, "end");
        alpha.leave().unwrap();
        assert_eq!(alpha.by_ref().last(), Some(RoomEvent::Left));
        drop(beta);
        c.close().unwrap();
    }
}

/// A two-node cluster: the node the client is on is killed (its
/// connections just break); the client reconnects to the other node,
/// re-joins its room there and goes on answering requests. Both with a
/// room (the event thread reconnects) and without (the next request does).
#[test]
fn real_blocking_failover_on_a_two_node_cluster() {
    let rt = runtime();
    let Some(cluster) = rt.block_on(RealCluster::from_env(2)).unwrap() else {
        skipped("real-cluster test skipped: set THINGSDB_BIN to a ThingsDB binary");
        return;
    };
    let a = cluster.nodes[0].tcp_target().unwrap().to_string();
    let b = cluster.nodes[1].tcp_target().unwrap().to_string();
    let (user, pass) = (cluster.nodes[0].user(), cluster.nodes[0].password());
    let with_room = client(user, pass, &[&a, &b]);
    let plain = client(user, pass, &[&a, &b]);
    let id: u64 = with_room
        .query(".has('fo') || (.fo = room()); .fo.id();")
        .decode()
        .unwrap();
    let mut events = with_room.room("//stuff", id).unwrap().join().unwrap();
    wait_for(&mut events, &RoomEvent::Joined);
    assert_eq!(plain.query("1 + 1;").send().unwrap(), Value::from(2));
    assert_eq!(with_room.connection_info(), Some(a.parse().unwrap()));

    cluster.nodes[0].kill().unwrap();
    wait_for(&mut events, &RoomEvent::Disconnected);
    wait_for(&mut events, &RoomEvent::Joined);
    assert_eq!(with_room.connection_info(), Some(b.parse().unwrap()));
    // A read, safe to send again whatever happened to the first attempt.
    let v = plain.query("6 * 7;").idempotent().send().unwrap();
    assert_eq!(v, Value::from(42));
    assert_eq!(plain.connection_info(), Some(b.parse().unwrap()));
    assert_eq!(plain.connections_made(), 2);
    // Events flow on the new node.
    plain
        .room("//stuff", id)
        .unwrap()
        .emit("after", &["failover"])
        .unwrap();
    assert_eq!(next_emitted(&mut events).event, "after");
}
