//! Typed ThingsDB against a real node: types created and migrated from
//! Rust structs, filled, read back; typed rooms; room handlers across a
//! dropped connection.
//!
//! Runs when `THINGSDB_BIN` names a node binary (or `THINGSDB_TEST_ADDR`
//! a running node with a fresh node's `admin`/`pass`); otherwise each
//! test says it was skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::handler::{release_join2_and_check, right_before, wait_log, Chat, Recorder};
use common::model::{v1, v2};
use futures::StreamExt;
use thingsdb_client::management::Step;
use thingsdb_client::typed::{Blob, Datetime, Fetch, Schema};
use thingsdb_client::{Auth, Client, ReconnectPolicy, RoomEvent, Typed};
use thingsdb_testkit::real_node::{RealNode, SKIP_MESSAGE};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

fn skipped() {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{SKIP_MESSAGE}");
}

macro_rules! real_or_skip {
    () => {
        match RealNode::from_env().await.unwrap() {
            Some(n) if n.tcp_target().is_some() => n,
            _ => {
                skipped();
                return;
            }
        }
    };
}

async fn client_at(node: &RealNode, target: &str) -> Client {
    Client::builder()
        .target(target)
        .unwrap()
        .auth(Auth::password(node.user(), node.password()))
        .request_timeout(Duration::from_secs(60))
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

async fn client(node: &RealNode) -> Client {
    client_at(node, node.tcp_target().unwrap()).await
}

async fn within<F: std::future::IntoFuture>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f.into_future())
        .await
        .expect("the operation hung")
}

fn person(name: &str) -> v2::Person {
    v2::Person {
        id: None,
        name: name.into(),
        email_address: Some(format!("{}@example.com", name.to_lowercase())),
        address: v1::Address {
            street: format!("{name} street"),
            number: Some(1),
        },
        friends: vec![],
        team: None,
        color: v1::Color::Blue,
        born: Datetime::from_unix(1_000_000_000),
        avatar: Blob(name.as_bytes().to_vec()),
        tags: vec!["x".into(), name.into()],
        scores: vec![0.5, 2.0],
        active: false,
        nickname: None,
        cache: vec![],
    }
}

/// The value with every `#` cleared, to compare with what was stored.
fn without_ids(mut p: v2::Person) -> v2::Person {
    p.id = None;
    p.friends = p.friends.into_iter().map(without_ids).collect();
    if let Some(t) = p.team.as_mut() {
        t.id = None;
        t.lead = t.lead.take().map(without_ids);
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_are_created_migrated_filled_and_read_back() {
    let node = real_or_skip!();
    let c = client(&node).await;
    let stuff = c.collection("stuff").unwrap();

    // v1: created from nothing.
    let v1_schema = Schema::new().with::<v1::Person>().with::<v1::Category>();
    let plan = stuff.plan(&v1_schema).await.unwrap();
    println!("plan for v1:\n{plan}");
    let kinds: Vec<&str> = plan
        .steps()
        .iter()
        .map(|s| match s {
            Step::NewEnum { .. } => "enum",
            Step::NewType { .. } => "new",
            Step::SetType { .. } => "set",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["enum", "new", "new", "new", "new", "set", "set", "set", "set"]
    );
    stuff.apply(&plan).await.unwrap();
    let again = stuff.plan(&v1_schema).await.unwrap();
    assert!(again.is_empty(), "{again}");
    let info = stuff.type_info("Person").await.unwrap();
    assert_eq!(info.fields[1], ("mail".to_string(), "str?".to_string()));
    assert_eq!(stuff.enums_info().await.unwrap()[0].members.len(), 3);

    // One v1 person before the migration.
    stuff
        .store(".people", &Vec::<v1::Person>::new())
        .await
        .unwrap();
    let old = v1::Person {
        id: None,
        name: "Old".into(),
        mail: Some("old@example.com".into()),
        address: v1::Address {
            street: "Elm".into(),
            number: None,
        },
        friends: vec![],
        team: None,
        color: v1::Color::Red,
        born: Datetime::from_unix(0),
        avatar: Blob(vec![]),
        tags: vec![],
        scores: vec![],
        active: true,
    };
    let old_id = stuff.push(".people", &old).await.unwrap().expect("an id");

    // v2: `mail` renamed to `email`, `nickname` added; the plan first.
    let v2_schema = Schema::new().with::<v2::Person>().with::<v1::Category>();
    let plan = stuff.plan(&v2_schema).await.unwrap();
    println!("plan for v2:\n{plan}");
    assert_eq!(
        plan.to_string(),
        "~ type Person: rename field mail -> email\n~ type Person: add field nickname: str?\n"
    );
    stuff.apply(&plan).await.unwrap();
    let again = stuff.plan(&v2_schema).await.unwrap();
    assert!(again.is_empty(), "{again}");

    // Filled: a friend by reference, a team with a new lead, a tree.
    let mut ada = person("Ada");
    ada.friends = vec![v2::Person {
        id: Some(old_id),
        ..person("ignored: an id refers to the existing thing")
    }];
    ada.team = Some(Box::new(v2::Team {
        id: None,
        name: "core".into(),
        lead: Some(person("Bob")),
    }));
    ada.nickname = Some("ace".into());
    ada.cache = vec![9];
    stuff.push(".people", &ada).await.unwrap();
    let tree = v1::Category {
        name: "root".into(),
        children: vec![v1::Category {
            name: "a".into(),
            children: vec![v1::Category {
                name: "a1".into(),
                children: vec![],
                parent: None,
            }],
            parent: None,
        }],
        parent: None,
    };
    stuff.store(".tree", &tree).await.unwrap();

    // Read back into the same structs, no deep tricks: wrap ...
    let people: Vec<v2::Person> = stuff.fetch(".people").await.unwrap();
    assert_eq!(people.len(), 2);
    let old_back = &people[0];
    assert_eq!(old_back.id, Some(old_id));
    assert_eq!(old_back.email_address.as_deref(), Some("old@example.com")); // renamed, kept
    assert_eq!(old_back.nickname, None); // added: its default
    let mut expected = ada.clone();
    expected.cache = vec![];
    expected.friends = vec![without_ids(old_back.clone())];
    assert_eq!(without_ids(people[1].clone()), expected);
    assert!(people[1].team.as_ref().unwrap().id.is_some());
    assert_eq!(stuff.fetch::<v1::Category>(".tree").await.unwrap(), tree);
    let found: Option<v2::Person> = stuff
        .fetch_with(
            ".people.find(|p| p.name == n)",
            &[("n", "Ada")]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .await
        .unwrap();
    assert_eq!(found.map(|p| p.nickname), Some(Some("ace".into())));
    assert_eq!(
        stuff.fetch::<Option<v2::Person>>("nil").await.unwrap(),
        None
    );

    // ... or a computed depth.
    let code = format!("return .people, {};", Vec::<v2::Person>::depth());
    let by_depth: Vec<v2::Person> = c.query(&code).scope("//stuff").decode().await.unwrap();
    assert_eq!(by_depth, people);

    // Without either, nested things come back as ids, and the error says so.
    let e = c
        .query(".people")
        .scope("//stuff")
        .decode::<Vec<v2::Person>>()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("came back as its id only"), "{e}");

    // Destructive steps only when asked: drop `nickname` from the Rust side.
    let v1_again = Schema::new().with::<v1::Person>();
    let plan = stuff.plan(&v1_again).await.unwrap();
    assert!(plan.is_destructive());
    println!("plan back to v1 (not applied):\n{plan}");
    // Old, Ada and Bob (Ada's friend is Old, by reference).
    assert_eq!(stuff.type_count("Person").await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_room_carries_an_enum_both_ways() {
    let node = real_or_skip!();
    let a = client(&node).await;
    let b = client(&node).await;
    let id: u64 = a
        .query(".chat = room(); .chat.id();")
        .scope("//stuff")
        .decode()
        .await
        .unwrap();
    let room_a = a.room("//stuff", id).unwrap();
    let room_b = b.room("//stuff", id).unwrap();
    let mut ev_a = room_a.join().await.unwrap().typed::<Chat>();
    let mut ev_b = room_b.join().await.unwrap().typed::<Chat>();
    for ev in [&mut ev_a, &mut ev_b] {
        assert!(matches!(
            within(30, ev.next()).await,
            Some(Typed::Room(RoomEvent::Joined))
        ));
    }
    let hi = Chat::Message {
        user: "a".into(),
        text: "hi".into(),
    };
    room_a.emit_event_peers(&hi).await.unwrap();
    match within(30, ev_b.next()).await {
        Some(Typed::Event(got)) => assert_eq!(got, hi),
        other => panic!("{other:?}"),
    }
    room_b.emit_event(&Chat::Count(3)).await.unwrap();
    for ev in [&mut ev_a, &mut ev_b] {
        match within(30, ev.next()).await {
            Some(Typed::Event(Chat::Count(3))) => {}
            other => panic!("{other:?}"),
        }
    }
    // From ThingsDB code, and an event the enum does not know.
    b.query(".chat.emit('message', 'node', 'from code'); .chat.emit('other', 1);")
        .scope("//stuff")
        .decode::<()>()
        .await
        .unwrap();
    match within(30, ev_a.next()).await {
        Some(Typed::Event(Chat::Message { user, text })) => {
            assert_eq!((user.as_str(), text.as_str()), ("node", "from code"))
        }
        other => panic!("{other:?}"),
    }
    match within(30, ev_a.next()).await {
        Some(Typed::Unknown(raw)) => assert_eq!(raw.event, "other"),
        other => panic!("{other:?}"),
    }
}

/// A loopback TCP proxy in front of the node, whose connections can be
/// cut (a node has no function that drops a client's connection).
struct Proxy {
    addr: String,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(to: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let c2 = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = to.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(&to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                c2.lock().unwrap().push(h);
            }
        });
        Proxy {
            addr,
            conns,
            accept,
        }
    }

    /// Drops every connection made so far.
    fn cut(&self) {
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_join_runs_again_after_a_dropped_connection_with_events_held_in_order() {
    let node = real_or_skip!();
    let proxy = Proxy::start(node.tcp_target().unwrap().to_string()).await;
    let served_client = client_at(&node, &proxy.addr).await;
    let other = client(&node).await;
    let id: u64 = other
        .query(".lobby = room(); .lobby.id();")
        .scope("//stuff")
        .decode()
        .await
        .unwrap();
    let (rec, log, mut entered, gate) = Recorder::new();
    let served = within(30, served_client.room("//stuff", id).unwrap().serve(rec))
        .await
        .unwrap();
    // `serve` returned after on_init and the first on_join.
    assert_eq!(*log.lock().unwrap(), ["init", "join1 start", "join1 end"]);
    let emitter = other.room("//stuff", id).unwrap();
    emitter.emit_event(&Chat::Count(1)).await.unwrap();
    wait_log(&log, "count 1").await;

    // The connection drops; the client reconnects and joins again.
    proxy.cut();
    assert_eq!(within(30, entered.recv()).await, Some(2));
    // While the second on_join runs, events arrive: they are held.
    for n in 2..=4 {
        emitter.emit_event(&Chat::Count(n)).await.unwrap();
    }
    emitter.emit("unknown", &("x",)).await.unwrap();
    release_join2_and_check(
        &log,
        &gate,
        &["count 2", "count 3", "count 4", "raw unknown"],
    )
    .await;
    assert!(
        right_before(&log, "disconnect", "join2 start"),
        "{:?}",
        log.lock().unwrap()
    );

    // Leave: on_leave is the last call.
    let rec = within(30, served.leave()).await.unwrap();
    assert_eq!(
        log.lock().unwrap().last().map(String::as_str),
        Some("leave")
    );
    drop(rec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_enum_wrapper_works() {
    let node = real_or_skip!();
    let c = client(&node).await;
    let s = c.collection("stuff").unwrap();
    let f = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };

    // Enums.
    s.set_enum("Size", &[("S".to_string(), 1), ("L".to_string(), 3)])
        .await
        .unwrap();
    assert!(s.has_enum("Size").await.unwrap());
    s.mod_enum_add("Size", "M", &2).await.unwrap();
    s.mod_enum_def("Size", "M").await.unwrap();
    s.mod_enum_mod("Size", "L", &4).await.unwrap();
    s.mod_enum_ren("Size", "L", "XL").await.unwrap();
    s.mod_enum_del("Size", "S").await.unwrap();
    let e = s.enum_info("Size").await.unwrap();
    assert_eq!(e.default.as_deref(), Some("M"));
    // The default member comes first.
    assert_eq!(
        e.members,
        [("M".to_string(), 2.into()), ("XL".to_string(), 4.into())]
    );
    s.rename_enum("Size", "Sizes").await.unwrap();
    assert!(!s.has_enum("Size").await.unwrap());

    // Types, referring to each other.
    s.new_type("A").await.unwrap();
    s.new_type("B").await.unwrap();
    s.set_type("A", &f(&[("b", "B?"), ("n", "int")]))
        .await
        .unwrap();
    s.set_type("B", &f(&[("a", "A?"), ("size", "Sizes")]))
        .await
        .unwrap();
    assert!(s.has_type("A").await.unwrap());
    s.mod_type_rel("A", "b", Some("a")).await.unwrap();
    c.query(".a = A{}; .a.b = B{}; .a.b.a == .a;")
        .scope("//stuff")
        .decode::<bool>()
        .await
        .map(|both_ways| assert!(both_ways))
        .unwrap();
    s.mod_type_rel("A", "b", None).await.unwrap();
    assert_eq!(s.type_count("A").await.unwrap(), 1);
    s.mod_type_add_with("A", "label", "str", "start")
        .await
        .unwrap();
    assert_eq!(
        c.query(".a.label;")
            .scope("//stuff")
            .decode::<String>()
            .await
            .unwrap(),
        "start"
    );
    s.mod_type_add("A", "extra", "int").await.unwrap();
    s.mod_type_mod("A", "extra", "int?").await.unwrap();
    s.mod_type_ren("A", "extra", "more").await.unwrap();
    s.mod_type_del("A", "more").await.unwrap();
    s.mod_type_hid("A", true).await.unwrap();
    s.mod_type_idx("A", true).await.unwrap();
    let a = s.type_info("A").await.unwrap();
    assert!(a.hide_id && a.auto_index);
    assert_eq!(a.fields, f(&[("b", "B?"), ("n", "int"), ("label", "str")]));
    s.new_type("W").await.unwrap();
    s.set_type("W", &f(&[("n", "int")])).await.unwrap();
    s.mod_type_wpo("W", true).await.unwrap();
    assert!(s.type_info("W").await.unwrap().wrap_only);
    s.rename_type("W", "Wrapper").await.unwrap();
    s.del_type("Wrapper").await.unwrap();
    let names: Vec<String> = s
        .types_info()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let e = s.type_info("Nope").await.unwrap_err();
    assert_eq!(e.code(), Some(thingsdb_client::ErrorCode::Lookup));
    s.del_enum("Sizes").await.unwrap_err(); // in use by B
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_join_runs_again_when_the_node_shuts_down_and_the_room_moves() {
    let Some(cluster) = thingsdb_testkit::real_node::RealCluster::from_env(2)
        .await
        .unwrap()
    else {
        skipped();
        return;
    };
    let (a, b) = (
        cluster.nodes[0].tcp_target().unwrap().to_string(),
        cluster.nodes[1].tcp_target().unwrap().to_string(),
    );
    let connect = |targets: Vec<String>| async move {
        let mut builder = Client::builder();
        for t in &targets {
            builder = builder.target(t).unwrap();
        }
        builder
            .auth(Auth::password("admin", "pass"))
            .request_timeout(Duration::from_secs(60))
            .connect()
            .await
            .unwrap()
    };
    let served_client = connect(vec![a, b.clone()]).await;
    let emitter_client = connect(vec![b]).await;
    let id: u64 = served_client
        .query(".moving = room(); .moving.id();")
        .scope("//stuff")
        .decode()
        .await
        .unwrap();
    let emitter = emitter_client.room("//stuff", id).unwrap();
    // The room exists on B once the change reached it.
    within(120, async {
        while emitter.emit("ready", &Vec::<u8>::new()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let (rec, log, mut entered, gate) = Recorder::new();
    let served = within(60, served_client.room("//stuff", id).unwrap().serve(rec))
        .await
        .unwrap();
    emitter.emit_event(&Chat::Count(1)).await.unwrap();
    wait_log(&log, "count 1").await;

    // SIGTERM: the node announces its shutdown; the client moves to B.
    cluster.nodes[0].terminate().unwrap();
    assert_eq!(within(120, entered.recv()).await, Some(2));
    for n in 2..=4 {
        emitter.emit_event(&Chat::Count(n)).await.unwrap();
    }
    release_join2_and_check(&log, &gate, &["count 2", "count 3", "count 4"]).await;
    // A move, not a lost connection: the room never saw a disconnect.
    assert!(
        !log.lock().unwrap().iter().any(|l| l == "disconnect"),
        "{:?}",
        log.lock().unwrap()
    );
    let _rec = within(60, served.leave()).await.unwrap();
}
