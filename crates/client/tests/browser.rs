//! The client in a real browser (headless Chromium through
//! wasm-bindgen-test): the same `Client`, `Query`, `Run`, `Room` and
//! `RoomEvents` as on native, over the page's WebSocket and event loop.
//!
//! `cargo xtask wasm` starts the node (the testkit's, or with
//! `--real-node` a real one in a private network namespace) and builds
//! these tests with its address in `THINGSDB_WASM_WS`, and
//! `THINGSDB_WASM_REAL=1` for a real node; without an address they say so
//! and skip. The harness's testkit node answers three queries of its own:
//! `stall(ms);` holds this connection's replies back for `ms`,
//! `drop_connections();` closes every connection just after its reply, and
//! `silence();` stops answering on this connection (its own reply
//! included) while the socket stays open.
#![cfg(target_arch = "wasm32")]

use std::future::IntoFuture;
use std::time::Duration;

use futures::future::{join_all, select, Either};
use futures::StreamExt;
use thingsdb_client::{Auth, Client, Error, ErrorCode, LostReason, ReconnectPolicy, RoomEvent};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn node() -> Option<&'static str> {
    let ws = option_env!("THINGSDB_WASM_WS");
    if ws.is_none() {
        console_log!("skipped: THINGSDB_WASM_WS was not set at build time");
    }
    ws
}

/// Whether the node is a real ThingsDB (which has no `stall` or
/// `drop_connections`).
fn real_node() -> bool {
    option_env!("THINGSDB_WASM_REAL") == Some("1")
}

/// The node, when it is the testkit (whose test-only queries a test needs);
/// `None`, saying why, against a real node or without one.
fn testkit_node(why: &str) -> Option<&'static str> {
    let ws = node()?;
    if real_node() {
        console_log!("skipped against a real node: {}", why);
        return None;
    }
    Some(ws)
}

async fn client(ws: &str) -> Client {
    within(
        Client::builder()
            .target(ws)
            .unwrap()
            .auth(Auth::password("admin", "pass"))
            .default_scope("//stuff")
            .unwrap()
            .reconnect(ReconnectPolicy {
                initial_delay: Duration::from_millis(50),
                ..ReconnectPolicy::default()
            })
            .connect(),
    )
    .await
    .expect("connect")
}

/// `fut`, which must finish within 60 s (a guard against hanging; no
/// timing is asserted).
async fn within<F: IntoFuture>(fut: F) -> F::Output {
    let guard = gloo_timers::future::TimeoutFuture::new(60_000);
    match select(Box::pin(fut.into_future()), guard).await {
        Either::Left((v, _)) => v,
        Either::Right(_) => panic!("no answer within 60 s"),
    }
}

/// The next room event (within the guard).
async fn next_event(events: &mut thingsdb_client::RoomEvents) -> RoomEvent {
    within(events.recv()).await.expect("the stream goes on")
}

#[wasm_bindgen_test]
async fn query_with_vars_and_run() {
    let Some(ws) = node() else { return };
    let c = client(ws).await;
    let product: i64 = c
        .query("a * b;")
        .var("a", &6)
        .var("b", &7)
        .decode()
        .await
        .unwrap();
    assert_eq!(product, 42);
    let v = c.query("1 + 1;").scope("@thingsdb").await.unwrap();
    assert_eq!(v, thingsdb_client::Value::from(2));
    let n: i64 = c.run("add_one").arg(&41).decode().await.unwrap();
    assert_eq!(n, 42);
    c.close().await.unwrap();
}

#[wasm_bindgen_test]
async fn errors_are_typed() {
    let Some(ws) = node() else { return };
    let c = client(ws).await;
    let e = c.query("1;").scope("//nope").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Lookup), "{e}");
    let e = c.run("no_such_procedure").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Lookup), "{e}");
    // The client goes on after errors.
    let v: i64 = c.query("2 + 2;").decode().await.unwrap();
    assert_eq!(v, 4);
    // Bad input is a typed error before anything is sent.
    let e = c.query("1;").scope("not a scope").await.unwrap_err();
    assert!(matches!(e, Error::BadArgument(_)), "{e}");
    // A browser has no TCP: a clear error, not a panic.
    let e = Client::connect("thingsdb://127.0.0.1:9200", Auth::password("admin", "pass"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ws:// and wss://"), "{e}");
}

#[wasm_bindgen_test]
async fn ten_thousand_pipelined_requests() {
    let Some(ws) = node() else { return };
    let c = client(ws).await;
    const N: i64 = 10_000;
    let results = within(join_all((0..N).map(|i| {
        let c = &c;
        async move {
            let v: i64 = c
                .query("a + b;")
                .var("a", &i)
                .var("b", &1)
                .decode()
                .await
                .unwrap();
            (i, v)
        }
    })))
    .await;
    assert_eq!(results.len(), N as usize);
    for (i, v) in results {
        assert_eq!(v, i + 1);
    }
    assert_eq!(c.in_flight(), 0);
    c.close().await.unwrap();
}

#[wasm_bindgen_test]
async fn per_request_timeouts() {
    let Some(ws) = testkit_node("it cannot be told to hold replies back") else {
        return;
    };
    let c = client(ws).await;
    // From now on the node holds this connection's replies back 3 s.
    c.query("stall(3000);").await.unwrap();
    let e = within(c.query("1 + 1;").timeout(Duration::from_millis(200)))
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    // A request with time enough still gets its answer.
    let v: i64 = within(c.query("3 + 4;").timeout(Duration::from_secs(30)).decode())
        .await
        .unwrap();
    assert_eq!(v, 7);
}

#[wasm_bindgen_test]
async fn rooms_in_two_collections_emit_and_receive() {
    let Some(ws) = node() else { return };
    let c = client(ws).await;
    let stuff = c.room("//stuff", "chat").unwrap();
    let other = c.room("//other", "chat").unwrap();
    let mut in_stuff = within(stuff.join()).await.unwrap();
    let mut in_other = within(other.join()).await.unwrap();
    assert_eq!(next_event(&mut in_stuff).await, RoomEvent::Joined);
    assert_eq!(next_event(&mut in_other).await, RoomEvent::Joined);
    assert_eq!(in_stuff.collection(), "stuff");
    assert_eq!(in_other.collection(), "other");

    stuff.emit("msg", &("in stuff", 1)).await.unwrap();
    other.emit("msg", &("in other", 2)).await.unwrap();
    // Each stream sees its own room's event only, whatever the ids.
    for (events, want) in [
        (&mut in_stuff, ("in stuff", 1)),
        (&mut in_other, ("in other", 2)),
    ] {
        match next_event(events).await {
            RoomEvent::Emitted(e) => {
                assert_eq!(e.event, "msg");
                let (text, n): (String, i64) = e.decode().unwrap();
                assert_eq!((text.as_str(), n), want);
            }
            other => panic!("expected an emit, got {other:?}"),
        }
    }

    // A second client hears the first one's emit to peers.
    let c2 = client(ws).await;
    let mut heard = within(c2.room("//stuff", "chat").unwrap().join())
        .await
        .unwrap();
    assert_eq!(next_event(&mut heard).await, RoomEvent::Joined);
    stuff.emit_peers("msg", &("to peers", 3)).await.unwrap();
    match next_event(&mut heard).await {
        RoomEvent::Emitted(e) => assert_eq!(e.arg::<String>(0).unwrap(), "to peers"),
        other => panic!("expected an emit, got {other:?}"),
    }

    // Streams are `Stream`s too; leaving ends them.
    within(in_other.leave()).await.unwrap();
    let rest: Vec<RoomEvent> = within(in_other.collect()).await;
    assert_eq!(rest.last(), Some(&RoomEvent::Left), "{rest:?}");
    c.close().await.unwrap();
    c2.close().await.unwrap();
}

#[wasm_bindgen_test]
async fn node_drops_the_connection_reconnect_and_rejoin() {
    let Some(ws) = testkit_node("it cannot be told to drop connections") else {
        return;
    };
    let c = client(ws).await;
    let room = c.room("//stuff", "chat").unwrap();
    let mut events = within(room.join()).await.unwrap();
    assert_eq!(next_event(&mut events).await, RoomEvent::Joined);
    assert_eq!(c.connections_made(), 1);

    // Requests waiting on a stalled connection when it is dropped fail
    // with a typed error; nothing stays pending. (`stall` holds back its
    // own reply too.)
    let stall = c.query("stall(60000);").into_future();
    let stalled = c.query("5 + 5;").into_future();
    let killer = client(ws).await;
    let ((lost_stall, lost), dropped) = within(futures::future::join(
        futures::future::join(stall, stalled),
        async {
            // Both requests are on the wire before the node drops it.
            while c.in_flight() < 2 {
                gloo_timers::future::TimeoutFuture::new(10).await;
            }
            killer.query("drop_connections();").await
        },
    ))
    .await;
    dropped.unwrap();
    for r in [lost_stall, lost] {
        match r.unwrap_err() {
            Error::ConnectionLost(l) => assert_ne!(l.reason(), LostReason::Other, "{l}"),
            e => panic!("expected a lost connection, got {e}"),
        }
    }
    killer.close().await.unwrap();

    // The room stream says so, and is joined again on the new connection.
    assert_eq!(next_event(&mut events).await, RoomEvent::Disconnected);
    assert_eq!(next_event(&mut events).await, RoomEvent::Joined);
    assert!(c.connections_made() >= 2);
    let v: i64 = within(c.query("20 + 22;").decode()).await.unwrap();
    assert_eq!(v, 42);
    room.emit("msg", &("after", 0)).await.unwrap();
    match next_event(&mut events).await {
        RoomEvent::Emitted(e) => assert_eq!(e.arg::<String>(0).unwrap(), "after"),
        other => panic!("expected an emit, got {other:?}"),
    }
    c.close().await.unwrap();
}

#[wasm_bindgen_test]
async fn keepalive_keeps_a_healthy_connection_and_gives_up_a_silent_one() {
    let Some(ws) = node() else { return };
    const PERIOD_MS: u32 = 500;
    let c = within(
        Client::builder()
            .target(ws)
            .unwrap()
            .auth(Auth::password("admin", "pass"))
            .default_scope("//stuff")
            .unwrap()
            .keepalive(Some(Duration::from_millis(PERIOD_MS.into())))
            .reconnect(ReconnectPolicy {
                initial_delay: Duration::from_millis(50),
                ..ReconnectPolicy::default()
            })
            .connect(),
    )
    .await
    .expect("connect");

    // Idle for several periods: a ping goes out each period, and one left
    // unanswered for a period would cost the connection, so the same
    // connection still being there means every ping was answered.
    gloo_timers::future::TimeoutFuture::new(8 * PERIOD_MS).await;
    assert_eq!(c.connections_made(), 1);
    let v: i64 = within(c.query("1 + 2;").decode()).await.unwrap();
    assert_eq!(v, 3);
    assert_eq!(c.connections_made(), 1);

    if real_node() {
        console_log!("silent part skipped against a real node: it cannot be told to go silent");
        c.close().await.unwrap();
        return;
    }
    // The node stops answering on this connection but keeps the socket
    // open: only keep-alive can tell. The requests waiting on it fail
    // with the keep-alive reason (neither has a timeout of its own).
    let (silenced, waiting) = within(futures::future::join(
        c.query("silence();").into_future(),
        c.query("2 + 2;").into_future(),
    ))
    .await;
    for r in [silenced, waiting] {
        match r {
            Err(Error::ConnectionLost(l)) => {
                assert_eq!(l.reason(), LostReason::KeepAliveTimeout, "{l}")
            }
            other => panic!("expected a connection lost to keep-alive, got {other:?}"),
        }
    }
    // A new connection is made and answers.
    within(async {
        while c.connections_made() < 2 {
            gloo_timers::future::TimeoutFuture::new(10).await;
        }
    })
    .await;
    let v: i64 = within(c.query("20 + 22;").decode()).await.unwrap();
    assert_eq!(v, 42);
    c.close().await.unwrap();
}

#[wasm_bindgen_test]
async fn close_ends_everything() {
    let Some(ws) = node() else { return };
    let c = client(ws).await;
    let mut events = within(c.room("//stuff", "chat").unwrap().join())
        .await
        .unwrap();
    assert_eq!(next_event(&mut events).await, RoomEvent::Joined);
    let v: i64 = c.query("1 + 2;").decode().await.unwrap();
    assert_eq!(v, 3);
    within(c.close()).await.unwrap();
    let e = c.query("1;").await.unwrap_err();
    assert!(matches!(e, Error::Closed), "{e}");
    // The stream ends rather than waiting forever.
    while let Some(ev) = within(events.recv()).await {
        assert!(
            matches!(ev, RoomEvent::Disconnected | RoomEvent::Left),
            "{ev:?}"
        );
    }
}

/// Prints how long `Client::connect` (WebSocket open and AUTH) and the
/// first room event (`Joined`) take from the page: medians of 20 clients.
/// Speed is not asserted; the numbers are the figures of docs/benchmarks.md.
#[wasm_bindgen_test]
async fn figures_client_connect_and_first_event() {
    let Some(ws) = node() else { return };
    const N: usize = 20;
    let (mut connect_ms, mut event_ms) = (Vec::new(), Vec::new());
    for _ in 0..N {
        let t0 = js_sys::Date::now();
        let c = client(ws).await;
        connect_ms.push(js_sys::Date::now() - t0);
        let mut events = within(c.room("//stuff", "chat").unwrap().join())
            .await
            .unwrap();
        assert_eq!(next_event(&mut events).await, RoomEvent::Joined);
        event_ms.push(js_sys::Date::now() - t0);
        drop(events);
        within(c.close()).await.unwrap();
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    console_log!(
        "figures: {N} clients to {ws}, medians from the start: connected (open + AUTH) {} ms, \
         first room event (Joined) {} ms",
        median(&mut connect_ms),
        median(&mut event_ms)
    );
}

#[wasm_bindgen_test]
async fn pool_skips_a_node_that_is_down() {
    let Some(ws) = node() else { return };
    let Some(closed) = option_env!("THINGSDB_WASM_CLOSED") else {
        console_log!("skipped: THINGSDB_WASM_CLOSED was not set at build time");
        return;
    };
    let c = within(
        Client::builder()
            .target(closed)
            .unwrap()
            .target(ws)
            .unwrap()
            .auth(Auth::password("admin", "pass"))
            .connect(),
    )
    .await
    .expect("the second pool entry answers");
    let v: i64 = c.query("6 * 7;").scope("//stuff").decode().await.unwrap();
    assert_eq!(v, 42);
    // Alone, the dead node is a typed connect error.
    let e = within(Client::connect(closed, Auth::password("admin", "pass")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Transport(_)), "{e}");
    c.close().await.unwrap();
}
