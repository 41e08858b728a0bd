//! Spans, stats and (feature `metrics`) metrics against the testkit node:
//! a subscriber that keeps every closed span with its fields checks what a
//! tracing backend would get.
#![cfg(feature = "observe")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{builder, fast_reconnect, joined, within, Via};
use thingsdb_client::{Client, ErrorCode, NodeStatus, Overflow, RoomEvent, Value};
use thingsdb_testkit::{Reply, TestNode};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

// ------------------------------------------------------------ the capture

/// A span's or an event's fields, as text.
#[derive(Debug, Clone, Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.to_string());
    }
}

/// A closed span: its name, its fields, and its parent's name.
#[derive(Debug, Clone)]
struct Closed {
    name: &'static str,
    fields: Fields,
    parent: Option<&'static str>,
}

impl Closed {
    fn get(&self, field: &str) -> Option<&str> {
        self.fields.0.get(field).map(String::as_str)
    }
}

/// Keeps every closed span and every event's message.
#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<Vec<Closed>>>,
    events: Arc<Mutex<Vec<(String, Fields)>>>,
}

impl Capture {
    /// Makes this capture the subscriber of the current thread (the tests
    /// run on tokio's current-thread runtime, so the client's connection
    /// task reports here too).
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(tracing_subscriber::registry().with(self.clone()))
    }

    fn spans(&self, name: &str) -> Vec<Closed> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }

    /// The request span whose `db.operation.name` is `op`.
    fn request(&self, op: &str) -> Vec<Closed> {
        self.spans("thingsdb.request")
            .into_iter()
            .filter(|s| s.get("db.operation.name") == Some(op))
            .collect()
    }

    fn messages(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(m, _)| m.clone())
            .collect()
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(f);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(f) = span.extensions_mut().get_mut::<Fields>() {
                values.record(f);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let message = f.0.get("message").cloned().unwrap_or_default();
        self.events.lock().unwrap().push((message, f));
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            let fields = span
                .extensions()
                .get::<Fields>()
                .cloned()
                .unwrap_or_default();
            self.spans.lock().unwrap().push(Closed {
                name: span.name(),
                fields,
                parent: span.parent().map(|p| p.name()),
            });
        }
    }
}

async fn node_with_procedures() -> TestNode {
    let node = TestNode::start().await.unwrap();
    node.procedure("add_one", |a| {
        match a.param(0, "x").and_then(|v| v.as_i64()) {
            Some(x) => Reply::value(x + 1),
            None => Reply::error(ErrorCode::Type, "expected an integer"),
        }
    });
    node.on_query(|q| match q.code.as_str() {
        "missing;" => Reply::error(ErrorCode::Lookup, "no such thing"),
        _ => q.evaluate(),
    });
    node
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn request_spans_follow_the_database_conventions() {
    let cap = Capture::default();
    let _guard = cap.install();
    let node = node_with_procedures().await;
    let client = builder(&node, Via::Tcp)
        .trace_query_text(true)
        .connect()
        .await
        .unwrap();
    assert_eq!(
        client.query("1 + 1;").scope("//stuff").await.unwrap(),
        Value::from(2)
    );
    assert_eq!(client.run("add_one").arg(&1).await.unwrap(), Value::from(2));
    let e = client.query("missing;").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Lookup));
    client.ping().await.unwrap();

    let port = node.tcp_addr().port().to_string();
    let queries = cap.request("query");
    assert_eq!(queries.len(), 2, "{queries:?}");
    let ok = &queries[0];
    assert_eq!(ok.get("db.system.name"), Some("thingsdb"));
    assert_eq!(ok.get("db.namespace"), Some("//stuff"));
    assert_eq!(ok.get("db.query.text"), Some("1 + 1;"));
    assert_eq!(ok.get("server.address"), Some("127.0.0.1"));
    assert_eq!(ok.get("server.port"), Some(port.as_str()));
    assert_eq!(ok.get("otel.name"), Some("query //stuff"));
    assert!(ok.get("thingsdb.reply_time_us").is_some(), "{ok:?}");
    assert_eq!(ok.get("error.type"), None);

    let failed = &queries[1];
    assert_eq!(failed.get("db.namespace"), Some("@thingsdb"));
    assert_eq!(failed.get("error.type"), Some(ErrorCode::Lookup.name()));
    assert_eq!(
        failed.get("db.response.status_code"),
        Some(ErrorCode::Lookup.code().to_string().as_str())
    );
    assert_eq!(failed.get("otel.status_code"), Some("ERROR"));
    // Answered by the node: it has the node's address too.
    assert_eq!(failed.get("server.port"), Some(port.as_str()));

    let run = &cap.request("run")[0];
    assert_eq!(run.get("db.stored_procedure.name"), Some("add_one"));
    assert_eq!(run.get("db.query.text"), None);
    assert_eq!(cap.request("ping").len(), 1);

    // The connection: a connect span with an authenticate span inside.
    let connect = cap.spans("thingsdb.connect");
    assert_eq!(connect.len(), 1);
    assert_eq!(connect[0].get("server.port"), Some(port.as_str()));
    let auth = cap.spans("thingsdb.authenticate");
    assert_eq!(auth.len(), 1);
    assert_eq!(auth[0].parent, Some("thingsdb.connect"));
    assert!(cap.messages().iter().any(|m| m == "connected"));
}

#[tokio::test]
async fn query_text_stays_out_of_spans_unless_asked_for() {
    let cap = Capture::default();
    let _guard = cap.install();
    let node = node_with_procedures().await;
    let client = builder(&node, Via::Ws).connect().await.unwrap();
    client
        .query("secret = 'hunter2'; 1;")
        .await
        .unwrap_or(Value::Nil);
    let q = &cap.request("query")[0];
    assert_eq!(q.get("db.query.text"), None);
    assert!(!format!("{q:?}").contains("hunter2"));
}

#[tokio::test]
async fn stats_count_requests_by_kind_and_outcome() {
    // Every test of this file has a subscriber: a callsite first met on a
    // thread without one may be cached as uninteresting for the others.
    let _guard = Capture::default().install();
    let node = node_with_procedures().await;
    let client = builder(&node, Via::Tcp)
        .request_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    for i in 0..5 {
        client.query("x + 1;").var("x", &i).await.unwrap();
    }
    client.query("missing;").await.unwrap_err();
    client.run("add_one").arg(&1).await.unwrap();
    client.run("add_one").arg(&"no").await.unwrap_err();
    client.run("nope").await.unwrap_err();
    client.ping().await.unwrap();
    client.authenticate().await.unwrap();
    // Sent, then dropped before the answer: cancelled.
    {
        let mut f = Box::pin(client.query("1;"));
        assert!(futures::poll!(f.as_mut()).is_pending());
    }
    let s = client.stats();
    assert_eq!((s.query.ok, s.query.error, s.query.cancelled), (5, 1, 1));
    assert_eq!((s.run.ok, s.run.error), (1, 2));
    assert_eq!((s.ping.ok, s.authenticate.ok), (1, 1));
    assert_eq!(s.query.total(), 7);
    assert_eq!((s.connections, s.reconnects, s.moves), (1, 0, 0));
    assert!(s.bytes_sent > 0 && s.bytes_received > 0, "{s:?}");
    // Every byte counted is a whole package: 11 requests of at least a
    // header each went out.
    assert!(s.bytes_sent >= 11 * 8, "{s:?}");
}

#[tokio::test]
async fn stats_count_room_events_delivered_and_lagged() {
    let cap = Capture::default();
    let _guard = cap.install();
    let node = TestNode::start().await.unwrap();
    let room_id = node.create_room("stuff", Some("chat"));
    let client = builder(&node, Via::Tcp)
        .event_buffer(8)
        .connect()
        .await
        .unwrap();
    let mut lagging = client
        .room("//stuff", room_id)
        .unwrap()
        .join_with(Overflow::Lag)
        .await
        .unwrap();
    let mut waiting = client
        .room("//stuff", "chat")
        .unwrap()
        .join()
        .await
        .unwrap();
    for i in 0..20 {
        node.emit("stuff", room_id, "n", &[Value::from(i)]);
    }
    // The waiting stream holds the Joined and 7 events, then the connection
    // waits for it to be read.
    let mut got = 0;
    while got < 20 {
        match within(30, waiting.recv()).await {
            Some(RoomEvent::Emitted(_)) => got += 1,
            Some(_) => {}
            None => panic!("the stream ended"),
        }
    }
    client.ping().await.unwrap();
    let s = client.stats();
    assert_eq!(s.rooms.len(), 2, "{s:?}");
    let by_id = s
        .rooms
        .iter()
        .find(|r| r.room == room_id.to_string())
        .unwrap();
    let by_name = s.rooms.iter().find(|r| r.room == "\"chat\"").unwrap();
    assert_eq!(by_id.collection, "stuff");
    // A Lag stream of 8 holds the Joined and 7 events: 13 lagged.
    assert_eq!((by_id.delivered, by_id.lagged), (7, 13));
    // A Wait stream loses nothing.
    assert_eq!((by_name.delivered, by_name.lagged), (20, 0));
    lagging.leave().await.unwrap();
    let joins = cap.spans("thingsdb.join");
    assert_eq!(joins.len(), 2);
    assert_eq!(joins[0].get("db.namespace"), Some("//stuff"));
    assert_eq!(joins[1].get("room"), Some("\"chat\""));
    assert_eq!(cap.spans("thingsdb.leave").len(), 1);
}

#[tokio::test]
async fn a_move_and_a_reconnect_show_in_spans_and_counters() {
    let cap = Capture::default();
    let _guard = cap.install();
    let a = TestNode::start().await.unwrap();
    let b = TestNode::start().await.unwrap();
    let room = a.create_room("stuff", Some("chat"));
    assert_eq!(room, b.create_room("stuff", Some("chat")));
    let client = Client::builder()
        .target(&a.tcp_target())
        .unwrap()
        .target(&b.tcp_target())
        .unwrap()
        .auth(thingsdb_client::Auth::password("admin", "pass"))
        .reconnect(fast_reconnect())
        .connect()
        .await
        .unwrap();
    let _events = joined(&client, room).await;
    a.emit_node_status(NodeStatus::ShuttingDown);
    assert!(a.wait_for_connections(0, Duration::from_secs(60)).await);
    within(60, async {
        while client.stats().moves == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let s = client.stats();
    assert_eq!((s.moves, s.reconnects, s.connections), (1, 0, 2), "{s:?}");
    let b_port = b.tcp_addr().port().to_string();
    let moves = cap.spans("thingsdb.move");
    assert_eq!(moves.len(), 1, "{moves:?}");
    let named = |t: &str| t.parse::<thingsdb_client::Target>().unwrap().to_string();
    assert_eq!(moves[0].get("from"), Some(named(&a.tcp_target()).as_str()));
    assert_eq!(moves[0].get("to"), Some(named(&b.tcp_target()).as_str()));
    // The connection to b was made inside the move.
    let connects = cap.spans("thingsdb.connect");
    assert_eq!(connects.last().unwrap().parent, Some("thingsdb.move"));
    assert_eq!(
        connects.last().unwrap().get("server.port"),
        Some(b_port.as_str())
    );
    assert!(cap.messages().iter().any(|m| m == "moved"));
    // Requests are answered by b now, and their spans say so.
    client.query("1 + 1;").await.unwrap();
    let last = cap.request("query").pop().expect("a query span");
    assert_eq!(last.get("server.port"), Some(b_port.as_str()));

    // b closes the connection: it is lost and made again.
    b.faults().close_now();
    within(60, async {
        while client.stats().reconnects == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let s = client.stats();
    assert_eq!((s.reconnects, s.connections_lost), (1, 1), "{s:?}");
    assert!(!cap.spans("thingsdb.reconnect").is_empty());
    assert!(cap.messages().iter().any(|m| m == "connection lost"));
}

/// The metrics, through a Prometheus recorder of this thread.
#[cfg(feature = "metrics")]
#[tokio::test]
async fn metrics_reach_the_recorder() {
    use thingsdb_client::observe::metric;
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let _guard = Capture::default().install();
    let node = node_with_procedures().await;
    let room_id = node.create_room("stuff", None);
    let client = builder(&node, Via::Tcp).connect().await.unwrap();
    let mut events = joined(&client, room_id).await;
    client.query("1 + 1;").await.unwrap();
    client.query("missing;").await.unwrap_err();
    node.emit("stuff", room_id, "n", &[]);
    client.ping().await.unwrap();
    assert!(matches!(
        within(30, events.recv()).await,
        Some(RoomEvent::Emitted(_))
    ));
    let page = handle.render();
    for name in [
        metric::REQUEST_DURATION,
        metric::IN_FLIGHT,
        metric::RECONNECTS,
        metric::MOVES,
        metric::EVENTS_DELIVERED,
        metric::BYTES_RECEIVED,
        metric::BYTES_SENT,
    ] {
        assert!(page.contains(name), "{name} missing from\n{page}");
    }
    assert!(page.contains(r#"kind="query",outcome="ok""#), "{page}");
    assert!(page.contains(r#"kind="query",outcome="error""#), "{page}");
    assert!(
        page.contains(&format!(
            r#"{}{{collection="stuff",room="{room_id}"}} 1"#,
            metric::EVENTS_DELIVERED
        )),
        "{page}"
    );
    assert!(page.contains(&format!("{} 0", metric::IN_FLIGHT)), "{page}");
}
