//! Helpers shared by the client's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use thingsdb_client::{Auth, Client, ClientBuilder, ReconnectPolicy, RoomEvent};
use thingsdb_testkit::TestNode;

/// The three transports every behaviour is checked over.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    Tcp,
    Ws,
    Unix,
}

pub const ALL: [Via; 3] = [Via::Tcp, Via::Ws, Via::Unix];

pub fn target(node: &TestNode, via: Via) -> String {
    match via {
        Via::Tcp => node.tcp_target(),
        Via::Ws => node.ws_url(),
        Via::Unix => node.unix_target(),
    }
}

/// A builder for `node` over `via` with admin/pass and test-friendly
/// timeouts (generous: they only guard against hangs).
pub fn builder(node: &TestNode, via: Via) -> ClientBuilder {
    Client::builder()
        .target(&target(node, via))
        .unwrap()
        .auth(Auth::password("admin", "pass"))
        .request_timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
}

pub async fn connect(node: &TestNode, via: Via) -> Client {
    builder(node, via).connect().await.unwrap()
}

/// Fails the test instead of hanging.
pub async fn within<F: std::future::IntoFuture>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f.into_future())
        .await
        .expect("the operation hung")
}

/// Says plainly that a test was skipped, past the test harness's output
/// capture, so it shows in every run.
pub fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{why}");
}

/// Waits (at most a minute) for `want` on a room stream, skipping other
/// events.
pub async fn wait_event(
    events: &mut thingsdb_client::RoomEvents,
    want: thingsdb_client::RoomEvent,
) {
    use futures::StreamExt;
    within(60, async {
        loop {
            match events.next().await {
                Some(e) if e == want => return,
                Some(_) => continue,
                None => panic!("stream ended waiting for {want:?}"),
            }
        }
    })
    .await
}

/// Waits (at most a minute) for an emitted event called `name`, skipping
/// other events, and returns it.
pub async fn wait_emitted(
    events: &mut thingsdb_client::RoomEvents,
    name: &str,
) -> thingsdb_client::Emitted {
    use futures::StreamExt;
    within(60, async {
        loop {
            match events.next().await {
                Some(thingsdb_client::RoomEvent::Emitted(e)) if e.event == name => return e,
                Some(_) => continue,
                None => panic!("stream ended waiting for {name}"),
            }
        }
    })
    .await
}

/// Joins room `room_id` of `//stuff` and waits for its `Joined` event.
pub async fn joined(client: &thingsdb_client::Client, room_id: u64) -> thingsdb_client::RoomEvents {
    let mut events = client
        .room("//stuff", room_id)
        .unwrap()
        .join()
        .await
        .unwrap();
    wait_event(&mut events, thingsdb_client::RoomEvent::Joined).await;
    events
}

/// Joins room `room_id` of `//stuff` and asserts that the first event is
/// `Joined` (where nothing else can come before it).
pub async fn joined_first(
    client: &thingsdb_client::Client,
    room_id: u64,
) -> thingsdb_client::RoomEvents {
    use futures::StreamExt;
    let mut events = client
        .room("//stuff", room_id)
        .unwrap()
        .join()
        .await
        .unwrap();
    assert_eq!(
        within(30, events.next()).await,
        Some(thingsdb_client::RoomEvent::Joined)
    );
    events
}

/// Reconnects quickly (20 ms, at most 200 ms apart), for ever.
pub fn fast_reconnect() -> ReconnectPolicy {
    ReconnectPolicy {
        enabled: true,
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_attempts: None,
    }
}

/// Reads a lagging stream of `n` events emitted with increasing integers
/// as their first argument: checks the order of what arrives and returns
/// how many came (`Emitted`) and how many were reported lost (`Lagged`).
pub async fn read_counting_lag(events: &mut thingsdb_client::RoomEvents, n: i64) -> (i64, i64) {
    use futures::StreamExt;
    let (mut emitted, mut lagged, mut last) = (0i64, 0i64, -1i64);
    while emitted + lagged < n {
        match within(60, events.next()).await {
            Some(RoomEvent::Emitted(e)) => {
                let k: i64 = e.arg(0).unwrap();
                assert!(k > last, "event {k} after {last}");
                last = k;
                emitted += 1;
            }
            Some(RoomEvent::Lagged(k)) => lagged += k as i64,
            other => panic!("{other:?}"),
        }
    }
    (emitted, lagged)
}

/// The node of a balancing client's first connection (where its rooms
/// are joined).
pub fn first_node(client: &Client) -> u32 {
    client
        .nodes()
        .iter()
        .find(|n| n.primary)
        .and_then(|n| n.node_id)
        .expect("the first connection knows its node")
}

/// Waits (a minute at most) until a balancing client has `n` connections,
/// none of them to node `gone`.
pub async fn wait_without_node(client: &Client, n: usize, gone: u32) {
    within(60, async {
        loop {
            let nodes = client.nodes();
            if nodes.len() == n && nodes.iter().all(|l| l.node_id != Some(gone)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// Room events `got` (numbers `0..emitted.len()` emitted in order on a
/// node that stays; `emitted[n]` is when the node answered the emit of
/// `n`) through a graceful move of the client's room, which heard the
/// node say SHUTTING_DOWN at `heard`: nothing doubled or out of order, and
/// nothing missing but one run of events that the cluster delivered to
/// nobody.
///
/// A node stops forwarding room events to a node that is SHUTTING_DOWN
/// (`ti_nodes_write_rpkg` skips it) the moment it hears of it, and the
/// shutting-down node tells the other nodes before its clients. So an event
/// the staying node took between hearing it and the client's JOIN there
/// reaches no one. Part of that window comes before the client reads the
/// status (how late depends on the machine: on two cores shared by six
/// nodes, two of them running a slow query, a client read it 20-40 ms
/// after the node wrote it, and three events were lost before the status
/// was read); that part is the cluster's and is allowed up to a second.
/// What follows `heard` is the client's move (connect, AUTH and JOIN on
/// loopback): at most two events at 100 a second; more is the client's
/// loss.
pub fn assert_events_through_a_move(got: &[i64], emitted: &[Instant], heard: Option<Instant>) {
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "doubled or out of order: {got:?}"
    );
    let sent = emitted.len() as i64;
    let missing: Vec<i64> = (0..sent)
        .filter(|n| got.binary_search(n).is_err())
        .collect();
    assert!(
        missing.windows(2).all(|w| w[1] == w[0] + 1),
        "missing {missing:?} (not one run); received {} for {sent}",
        got.len()
    );
    if missing.is_empty() {
        return;
    }
    let heard = heard.expect("events were lost, but the client never heard SHUTTING_DOWN");
    let at = |n: &i64| emitted[*n as usize];
    let (before, after): (Vec<i64>, Vec<i64>) = missing.iter().partition(|n| at(n) <= heard);
    let early = before
        .first()
        .map(|n| heard.duration_since(at(n)))
        .unwrap_or_default();
    println!(
        "events lost in the move: {missing:?}; {} emitted before the client heard SHUTTING_DOWN (the first {early:?} before it), {} after",
        before.len(),
        after.len()
    );
    assert!(
        after.len() <= 2,
        "the client's move lost {after:?} (emitted after it heard SHUTTING_DOWN); all missing {missing:?}"
    );
    assert!(
        early <= Duration::from_secs(1),
        "missing {missing:?}: {before:?} were emitted {early:?} before the client heard SHUTTING_DOWN"
    );
}

/// When `client` first hears a node say SHUTTING_DOWN (set by a task that
/// watches its node events).
pub async fn heard_shutting_down(client: &Client) -> std::sync::Arc<std::sync::OnceLock<Instant>> {
    use futures::StreamExt;
    let heard = std::sync::Arc::new(std::sync::OnceLock::new());
    let mut status = client.node_events().await.unwrap();
    let h = heard.clone();
    tokio::spawn(async move {
        while let Some(ev) = status.next().await {
            if let thingsdb_client::NodeEvent::Status {
                status: thingsdb_client::NodeStatus::ShuttingDown,
                ..
            } = ev
            {
                let _ = h.set(Instant::now());
            }
        }
    });
    heard
}

/// Emits events `n` with 0, 1, 2, ... on `room`, 100 a second, until
/// `stop`; the task's result is when each was answered (`[n]` for `n`).
pub fn emit_numbers(
    room: thingsdb_client::Room,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Instant>> {
    tokio::spawn(async move {
        let mut answered = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            room.emit("n", &(answered.len() as i64,)).await.unwrap();
            answered.push(Instant::now());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        answered
    })
}
