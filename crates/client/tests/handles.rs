//! Where a client is connected, its default scope per handle, and the rooms
//! it has live streams on, against the testkit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{builder, fast_reconnect, within, Via};
use thingsdb_client::{Auth, Client, ClientBuilder, Error, ReconnectPolicy, Target, Value};
use thingsdb_testkit::{Reply, TestNode};

/// A client for a pool of TCP targets.
fn pool(targets: &[String]) -> ClientBuilder {
    let mut b = Client::builder()
        .auth(Auth::password("admin", "pass"))
        .request_timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .reconnect(fast_reconnect());
    for t in targets {
        b = b.target(t).unwrap();
    }
    b
}

fn parsed(t: &str) -> Target {
    Target::parse(t).unwrap()
}

/// Polls `f` until it holds (the test fails after a minute).
async fn until(mut f: impl FnMut() -> bool) {
    within(60, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// A TCP address nothing listens on.
fn dead_target() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr.to_string()
}

#[tokio::test]
async fn without_random_start_every_client_starts_at_the_first_target() {
    let a = TestNode::start().await.unwrap();
    let b = TestNode::start().await.unwrap();
    let targets = [a.tcp_target(), b.tcp_target()];
    for _ in 0..8 {
        let c = pool(&targets).connect().await.unwrap();
        assert_eq!(c.connection_info(), Some(parsed(&targets[0])));
        c.close().await.unwrap();
    }
    assert!(!pool(&targets).config().random_start);
}

#[tokio::test]
async fn random_start_spreads_clients_over_the_pool() {
    let a = TestNode::start().await.unwrap();
    let b = TestNode::start().await.unwrap();
    let targets = [a.tcp_target(), b.tcp_target()];
    let mut clients = Vec::new();
    // The chance that 40 clients all pick the same node is 2^-39.
    for _ in 0..40 {
        clients.push(pool(&targets).random_start(true).connect().await.unwrap());
    }
    let on_a = clients
        .iter()
        .filter(|c| c.connection_info() == Some(parsed(&targets[0])))
        .count();
    let on_b = clients
        .iter()
        .filter(|c| c.connection_info() == Some(parsed(&targets[1])))
        .count();
    assert_eq!(on_a + on_b, 40);
    assert!(on_a > 0 && on_b > 0, "{on_a} on a, {on_b} on b");
    // The nodes agree with what the clients say.
    assert_eq!(a.connections().len(), on_a);
    assert_eq!(b.connections().len(), on_b);
    for c in &clients {
        assert_eq!(c.query("1 + 1;").await.unwrap(), Value::from(2));
    }
}

#[tokio::test]
async fn random_start_goes_on_past_a_dead_node() {
    let a = TestNode::start().await.unwrap();
    let targets = [dead_target(), a.tcp_target(), dead_target()];
    for _ in 0..10 {
        let c = pool(&targets).random_start(true).connect().await.unwrap();
        assert_eq!(c.connection_info(), Some(parsed(&targets[1])));
        c.close().await.unwrap();
    }
    // A pool with nothing alive still fails.
    let dead = [dead_target(), dead_target()];
    assert!(pool(&dead).random_start(true).connect().await.is_err());
}

#[tokio::test]
async fn connection_info_follows_a_failover() {
    let a = TestNode::start().await.unwrap();
    let b = TestNode::start().await.unwrap();
    let targets = [a.tcp_target(), b.tcp_target()];
    let client = pool(&targets).connect().await.unwrap();
    assert!(client.is_connected());
    assert_eq!(client.connection_info(), Some(parsed(&targets[0])));
    a.refuse_connections_for(Duration::from_secs(3600));
    a.restart().await;
    until(|| client.connection_info() == Some(parsed(&targets[1]))).await;
    assert!(client.is_connected());
    assert_eq!(client.query("1;").await.unwrap(), Value::from(1));
    assert_eq!(b.connections().len(), 1);
}

#[tokio::test]
async fn is_connected_is_false_while_reconnecting_and_once_closed() {
    let node = TestNode::start().await.unwrap();
    let client = builder(&node, Via::Tcp)
        .reconnect(fast_reconnect())
        .connect()
        .await
        .unwrap();
    assert!(client.is_connected());
    assert_eq!(client.connection_info(), Some(parsed(&node.tcp_target())));
    node.refuse_connections_for(Duration::from_secs(3600));
    node.restart().await;
    until(|| !client.is_connected()).await;
    assert_eq!(client.connection_info(), None);
    assert!(client.closed_reason().is_none(), "it is reconnecting");
    node.accept_connections();
    until(|| client.is_connected()).await;
    assert_eq!(client.query("2;").await.unwrap(), Value::from(2));
    assert_eq!(client.connections_made(), 2);
    client.close().await.unwrap();
    assert!(!client.is_connected());
    assert_eq!(client.connection_info(), None);
}

#[tokio::test]
async fn is_connected_is_false_once_the_client_gave_up() {
    let node = TestNode::start().await.unwrap();
    let client = builder(&node, Via::Unix)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    assert!(client.is_connected());
    node.restart().await;
    until(|| client.closed_reason().is_some()).await;
    assert!(!client.is_connected());
    assert_eq!(client.connection_info(), None);
}

#[tokio::test]
async fn with_default_scope_changes_only_the_new_handle() {
    let node = TestNode::start().await.unwrap();
    node.on_query(|q| match q.code.as_str() {
        "scope;" => Reply::value(q.scope_str.clone()),
        _ => q.evaluate(),
    });
    for via in [Via::Tcp, Via::Ws] {
        let client = builder(&node, via).connect().await.unwrap();
        let stuff = client.with_default_scope("//stuff").unwrap();
        assert_eq!(stuff.default_scope().as_str(), "//stuff");
        assert_ne!(client.default_scope(), stuff.default_scope());
        let on_client = client.query("scope;").await.unwrap();
        let on_stuff = stuff.query("scope;").await.unwrap();
        assert_eq!(on_stuff, Value::from("//stuff"));
        assert_eq!(on_client, Value::from(client.default_scope().as_str()));
        // An explicit scope still wins.
        let explicit = stuff.query("scope;").scope("@node").await.unwrap();
        assert_eq!(explicit, Value::from("@node"));
        // Rooms in the default scope follow the handle.
        assert!(client.room_in_default("chat").is_err());
        assert!(stuff.room_in_default("chat").is_ok());
        // One connection for both; each keeps it open.
        assert_eq!(node.connections().len(), 1);
        drop(client);
        assert_eq!(stuff.query("scope;").await.unwrap(), Value::from("//stuff"));
        assert!(matches!(
            stuff.with_default_scope("stuff"),
            Err(Error::BadArgument(_))
        ));
        stuff.close().await.unwrap();
        until(|| node.connections().is_empty()).await;
    }
}

#[tokio::test]
async fn closing_one_handle_closes_every_scope_handle() {
    let node = TestNode::start().await.unwrap();
    let client = builder(&node, Via::Tcp).connect().await.unwrap();
    let stuff = client.with_default_scope("//stuff").unwrap();
    stuff.close().await.unwrap();
    assert!(matches!(client.query("1;").await, Err(Error::Closed)));
    assert!(!client.is_connected());
}

#[tokio::test]
async fn rooms_lists_the_rooms_with_live_streams() {
    let node = TestNode::builder()
        .collection("other")
        .start()
        .await
        .unwrap();
    let chat = node.create_room("stuff", Some("chat"));
    let news = node.create_room("stuff", Some("news"));
    let misc = node.create_room("other", Some("misc"));
    let client = builder(&node, Via::Tcp).connect().await.unwrap();
    assert!(client.rooms().await.unwrap().is_empty());

    let mut chat_1 = client
        .room("//stuff", "chat")
        .unwrap()
        .join()
        .await
        .unwrap();
    let chat_2 = client.room("//stuff", chat).unwrap().join().await.unwrap();
    let news_1 = client.room("//stuff", news).unwrap().join().await.unwrap();
    let mut misc_1 = client
        .room("//other", "misc")
        .unwrap()
        .join()
        .await
        .unwrap();
    let mut want = vec![
        ("stuff".to_string(), chat),
        ("stuff".to_string(), news),
        ("other".to_string(), misc),
    ];
    want.sort();
    assert_eq!(client.rooms().await.unwrap(), want);
    // Another handle of the connection sees the same rooms.
    let other = client.with_default_scope("//other").unwrap();
    assert_eq!(other.rooms().await.unwrap(), want);

    // A room stays while one of its streams is live.
    chat_1.leave().await.unwrap();
    assert_eq!(client.rooms().await.unwrap(), want);
    drop(chat_2);
    // Room ids are unique per collection only: the pair tells them apart.
    want.retain(|r| *r != ("stuff".to_string(), chat));
    assert_eq!(client.rooms().await.unwrap(), want);
    misc_1.leave().await.unwrap();
    want.retain(|r| *r != ("other".to_string(), misc));
    assert_eq!(want, vec![("stuff".to_string(), news)]);
    assert_eq!(client.rooms().await.unwrap(), want);

    // Still listed while reconnecting: it is joined again.
    node.refuse_connections_for(Duration::from_secs(3600));
    node.restart().await;
    until(|| !client.is_connected()).await;
    assert_eq!(client.rooms().await.unwrap(), vec![("stuff".into(), news)]);
    node.accept_connections();
    until(|| client.is_connected()).await;
    assert_eq!(client.rooms().await.unwrap(), vec![("stuff".into(), news)]);

    drop(news_1);
    client.close().await.unwrap();
    assert!(client.rooms().await.is_err());
}
