//! Typed ThingsDB against the testkit's node (runs in CI): migrations
//! send the right functions in the right order, reads ask for the right
//! shape, typed rooms both ways, and a handler's calls across a dropped
//! connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::handler::{release_join2_and_check, right_before, wait_log, Chat, Recorder};
use common::model::{v1, v2};
use futures::StreamExt;
use thingsdb_client::management::Step;
use thingsdb_client::typed::Schema;
use thingsdb_client::{Auth, Client, ReconnectPolicy, RoomEvent, Typed, Value};
use thingsdb_testkit::{Reply, TestNode};

async fn connect(node: &TestNode) -> Client {
    Client::builder()
        .target(&node.tcp_target())
        .unwrap()
        .auth(Auth::password("admin", "pass"))
        .request_timeout(Duration::from_secs(30))
        .reconnect(ReconnectPolicy {
            enabled: true,
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            max_attempts: None,
        })
        .connect()
        .await
        .unwrap()
}

async fn within<F: std::future::IntoFuture>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f.into_future())
        .await
        .expect("the operation hung")
}

fn info(name: &str, fields: &[(&str, &str)]) -> Value {
    Value::Map(vec![
        ("type_id".into(), 0.into()),
        ("name".into(), name.into()),
        ("wrap_only".into(), false.into()),
        (
            "fields".into(),
            Value::Array(
                fields
                    .iter()
                    .map(|(n, s)| Value::Array(vec![(*n).into(), (*s).into()]))
                    .collect(),
            ),
        ),
    ])
}

/// A node that has the v1 types (and a stranger) and writes down every
/// other query with its variables.
fn v1_node(node: &TestNode) -> Arc<Mutex<Vec<String>>> {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s2 = seen.clone();
    node.on_query(move |q| match q.code.as_str() {
        "types_info();" => Reply::value(Value::Array(vec![
            info(
                "Person",
                &[
                    ("name", "str"),
                    ("mail", "str?"),
                    ("address", "Address"),
                    ("friends", "[Person]"),
                    ("team", "Team?"),
                    ("color", "Color"),
                    ("born", "datetime"),
                    ("avatar", "bytes"),
                    ("tags", "[str]"),
                    ("scores", "[float]"),
                    ("active", "int"),
                    ("gone", "str"),
                ],
            ),
            info("Address", &[("street", "str"), ("number", "int?")]),
            info("Stranger", &[("x", "int")]),
        ])),
        "enums_info();" => Reply::value(Value::Array(vec![Value::Map(vec![
            ("name".into(), "Color".into()),
            (
                "members".into(),
                Value::Array(vec![Value::Array(vec!["Red".into(), "Red".into()])]),
            ),
        ])])),
        code => {
            let vars: Vec<String> = q.vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s2.lock()
                .unwrap()
                .push(format!("{code} [{}]", vars.join(" ")));
            Reply::nil()
        }
    });
    seen
}

#[tokio::test]
async fn a_migration_runs_its_steps_in_order_and_skips_removals_unless_allowed() {
    let node = TestNode::start().await.unwrap();
    let seen = v1_node(&node);
    let c = connect(&node).await;
    let stuff = c.collection("stuff").unwrap();
    let schema = Schema::new().with::<v2::Person>();
    let plan = stuff.plan(&schema).await.unwrap();
    assert_eq!(
        plan.to_string(),
        "~ enum Color: add member Green: \"Green\"\n\
         ~ enum Color: add member Blue: \"Blue\"\n\
         + type Team\n\
         + type Team {name: str, lead: Person?}\n\
         ~ type Person: rename field mail -> email\n\
         ~ type Person: change field active: int -> bool\n\
         ~ type Person: add field nickname: str?\n\
         - type Person: remove field gone (destructive) (skipped)\n"
    );
    stuff.apply(&plan).await.unwrap();
    let want = [
        "mod_enum(name, 'add', member, value); [name=\"Color\" member=\"Green\" value=\"Green\"]",
        "mod_enum(name, 'add', member, value); [name=\"Color\" member=\"Blue\" value=\"Blue\"]",
        "new_type(name); nil; [name=\"Team\"]",
        "set_type(name, fields); [name=\"Team\" fields={\"name\": \"str\", \"lead\": \"Person?\"}]",
        "mod_type(name, 'ren', field, new_name); [name=\"Person\" field=\"mail\" new_name=\"email\"]",
        "mod_type(name, 'mod', field, spec); [name=\"Person\" field=\"active\" spec=\"bool\"]",
        "mod_type(name, 'add', field, spec); [name=\"Person\" field=\"nickname\" spec=\"str?\"]",
    ];
    assert_eq!(*seen.lock().unwrap(), want);
    // Allowed, the removal runs last.
    seen.lock().unwrap().clear();
    stuff
        .apply(&plan.clone().allow_destructive())
        .await
        .unwrap();
    let all = seen.lock().unwrap().clone();
    assert_eq!(all.len(), want.len() + 1);
    assert_eq!(
        all[want.len()],
        "mod_type(name, 'del', field); [name=\"Person\" field=\"gone\"]"
    );
    // A step the node refuses stops the migration and names the step.
    node.on_query(|q| match q.code.as_str() {
        "types_info();" | "enums_info();" => Reply::value(Value::Array(vec![])),
        _ => Reply::error(
            thingsdb_client::ErrorCode::Lookup,
            "enum `Color` already exists",
        ),
    });
    let e = stuff
        .migrate(&Schema::new().with::<v1::Address>())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("in migration step `+ type Address`"),
        "{e}"
    );
    assert!(matches!(plan.steps()[2], Step::NewType { .. }));
}

#[tokio::test]
async fn reads_ask_for_the_shape_of_the_type() {
    let node = TestNode::start().await.unwrap();
    let codes: Arc<Mutex<Vec<String>>> = Arc::default();
    let c2 = codes.clone();
    node.on_query(move |q| {
        c2.lock().unwrap().push(q.code.clone());
        Reply::value(Value::Array(vec![Value::Map(vec![
            ("#".into(), 5.into()),
            ("street".into(), "Elm".into()),
            ("number".into(), Value::Nil),
        ])]))
    });
    let c = connect(&node).await;
    let got: Vec<v1::Address> = c
        .collection("stuff")
        .unwrap()
        .fetch(".addresses")
        .await
        .unwrap();
    assert_eq!(
        got,
        [v1::Address {
            street: "Elm".into(),
            number: None
        }]
    );
    assert_eq!(
        *codes.lock().unwrap(),
        ["return (.addresses).map_wrap('Address'), 1;"]
    );
}

#[tokio::test]
async fn stores_send_the_value_as_a_variable_and_build_instances_from_it() {
    let node = TestNode::start().await.unwrap();
    let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let s2 = seen.clone();
    node.on_query(move |q| {
        s2.lock()
            .unwrap()
            .push((q.code.clone(), q.var("v").cloned().unwrap_or(Value::Nil)));
        Reply::value(42)
    });
    let c = connect(&node).await;
    let stuff = c.collection("stuff").unwrap();
    let a = v1::Address {
        street: "x'); del_collection('stuff".into(),
        number: Some(2),
    };
    let id = stuff.push(".addresses", &a).await.unwrap();
    assert_eq!(id, Some(42));
    let seen = seen.lock().unwrap();
    // The value travels as `v`, never pasted into the code.
    assert_eq!(
        seen[0].0,
        "x = Address({street:v.street,number:v.number}); .addresses.push(x); is_thing(x) ? x.id() : nil;"
    );
    assert_eq!(
        seen[0].1,
        Value::Map(vec![
            ("street".into(), a.street.as_str().into()),
            ("number".into(), 2.into())
        ])
    );
}

#[tokio::test]
async fn a_typed_room_carries_an_enum_both_ways() {
    let node = TestNode::start().await.unwrap();
    let id = node.create_room("stuff", Some("chat"));
    let a = connect(&node).await;
    let b = connect(&node).await;
    let room_a = a.room("//stuff", "chat").unwrap();
    let room_b = b.room("//stuff", id).unwrap();
    let mut ev_a = room_a.join().await.unwrap().typed::<Chat>();
    let mut ev_b = room_b.join().await.unwrap().typed::<Chat>();
    for ev in [&mut ev_a, &mut ev_b] {
        assert!(matches!(
            within(10, ev.next()).await,
            Some(Typed::Room(RoomEvent::Joined))
        ));
    }
    let hi = Chat::Message {
        user: "a".into(),
        text: "hi".into(),
    };
    room_a.emit_event_peers(&hi).await.unwrap();
    match within(10, ev_b.recv()).await {
        Some(Typed::Event(got)) => assert_eq!(got, hi),
        other => panic!("{other:?}"),
    }
    room_b.emit_event(&Chat::Count(7)).await.unwrap();
    for ev in [&mut ev_a, &mut ev_b] {
        assert!(matches!(
            within(10, ev.next()).await,
            Some(Typed::Event(Chat::Count(7)))
        ));
    }
    // Unknown and ill-fitting events are kept, not dropped.
    node.emit("stuff", id, "other", &[1.into()]);
    node.emit("stuff", id, "count", &["not a number".into()]);
    assert!(matches!(within(10, ev_a.next()).await, Some(Typed::Unknown(e)) if e.event == "other"));
    assert!(
        matches!(within(10, ev_a.next()).await, Some(Typed::Invalid(e, _)) if e.event == "count")
    );
    // Back to the untyped stream.
    assert_eq!(ev_a.inner().room_id(), id);
}

#[tokio::test]
async fn on_join_runs_again_after_the_node_drops_the_connection_and_events_wait_for_it() {
    let node = TestNode::start().await.unwrap();
    let id = node.create_room("stuff", Some("lobby"));
    let c = connect(&node).await;
    let (rec, log, mut entered, gate) = Recorder::new();
    let served = within(10, c.room("//stuff", "lobby").unwrap().serve(rec))
        .await
        .unwrap();
    assert_eq!(*log.lock().unwrap(), ["init", "join1 start", "join1 end"]);
    node.emit("stuff", id, "count", &[1.into()]);
    wait_log(&log, "count 1").await;

    node.faults().close_now();
    assert_eq!(within(10, entered.recv()).await, Some(2));
    // Joined again (the node lists the new connection), on_join still running.
    assert_eq!(node.room_joiners("stuff", id).len(), 1);
    for n in 2..=4 {
        assert_eq!(node.emit("stuff", id, "count", &[n.into()]), 1);
    }
    node.emit("stuff", id, "message", &["x".into(), "y".into()]);
    node.emit("stuff", id, "unknown", &[]);
    // The connection keeps reading while on_join runs: a query gets its answer.
    assert!(c.ping().await.is_ok());
    release_join2_and_check(
        &log,
        &gate,
        &[
            "count 2",
            "count 3",
            "count 4",
            "message x: y",
            "raw unknown",
        ],
    )
    .await;
    assert!(
        right_before(&log, "disconnect", "join2 start"),
        "{:?}",
        log.lock().unwrap()
    );

    // Emitting needs no join; leaving calls on_leave last.
    served.room().emit_event(&Chat::Count(9)).await.unwrap();
    wait_log(&log, "count 9").await;
    let _rec = within(10, served.leave()).await.unwrap();
    assert_eq!(
        log.lock().unwrap().last().map(String::as_str),
        Some("leave")
    );
    for _ in 0..100 {
        if node.room_joiners("stuff", id).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(node.room_joiners("stuff", id).is_empty());
}

#[tokio::test]
async fn on_delete_ends_the_serving() {
    let node = TestNode::start().await.unwrap();
    let id = node.create_room("stuff", None);
    let c = connect(&node).await;
    let (rec, log, _entered, _gate) = Recorder::new();
    let served = within(10, c.room("//stuff", id).unwrap().serve(rec))
        .await
        .unwrap();
    node.emit("stuff", id, "count", &[5.into()]);
    assert!(node.delete_room("stuff", id));
    let _rec = within(10, served.finished()).await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        ["init", "join1 start", "join1 end", "count 5", "delete"]
    );
}

#[tokio::test]
async fn serving_a_missing_room_fails_before_any_call() {
    let node = TestNode::start().await.unwrap();
    let c = connect(&node).await;
    let (rec, log, _entered, _gate) = Recorder::new();
    let e = c
        .room("//stuff", 12345)
        .unwrap()
        .serve(rec)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(thingsdb_client::ErrorCode::Lookup));
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_dropped_served_room_keeps_serving() {
    let node = TestNode::start().await.unwrap();
    let id = node.create_room("stuff", None);
    let c = connect(&node).await;
    let (rec, log, _entered, _gate) = Recorder::new();
    let served = within(10, c.room("//stuff", id).unwrap().serve(rec))
        .await
        .unwrap();
    drop(served);
    node.emit("stuff", id, "count", &[8.into()]);
    wait_log(&log, "count 8").await;
    assert_eq!(node.room_joiners("stuff", id).len(), 1);
}

#[tokio::test]
async fn on_join_runs_again_after_a_move_ahead_of_a_shutdown() {
    let cluster = TestNode::builder().start_cluster(2).await.unwrap();
    let (a, b) = (cluster.node(0), cluster.node(1));
    let id = a.create_room("stuff", Some("lobby"));
    let c = Client::builder()
        .target(&a.tcp_target())
        .unwrap()
        .target(&b.tcp_target())
        .unwrap()
        .auth(Auth::password("admin", "pass"))
        .request_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let (rec, log, mut entered, gate) = Recorder::new();
    let served = within(10, c.room("//stuff", id).unwrap().serve(rec))
        .await
        .unwrap();
    a.emit("stuff", id, "count", &[1.into()]);
    wait_log(&log, "count 1").await;

    // Node a announces its shutdown: the client moves to b without losing
    // the room (no disconnect), and on_join runs again.
    a.emit_node_status(thingsdb_client::NodeStatus::ShuttingDown);
    assert_eq!(within(10, entered.recv()).await, Some(2));
    for n in 2..=3 {
        b.emit("stuff", id, "count", &[n.into()]);
    }
    release_join2_and_check(&log, &gate, &["count 2", "count 3"]).await;
    assert!(!log.lock().unwrap().iter().any(|l| l == "disconnect"));
    let _rec = within(10, served.leave()).await.unwrap();
}
