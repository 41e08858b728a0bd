//! A pool of nodes: the client moves to another node when its node goes.
//!
//! With `THINGSDB_URIS` (comma separated, for example
//! `thingsdb://127.0.0.1:9200,thingsdb://127.0.0.1:9201`) it uses those nodes
//! of a real cluster (with `THINGSDB_PASSWORD` or `THINGSDB_TOKEN`); stop
//! the node it is on and watch it move. Without it,
//! two in-process testkit nodes stand in, and the first one says it is
//! shutting down.
//!
//! ```text
//! cargo run -p thingsdb-client --example failover
//! ```

use std::time::Duration;

use futures::StreamExt;
use thingsdb_client::{Auth, Client, NodeEvent, ReconnectPolicy};
use thingsdb_testkit::TestNode;

mod common;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut testkit = Vec::new();
    // The testkit's user; a real cluster's from the environment.
    let mut auth = Auth::password("admin", "pass");
    let uris: Vec<String> = match std::env::var("THINGSDB_URIS") {
        Ok(list) if !list.is_empty() => {
            println!("using the pool {list} (THINGSDB_URIS)");
            auth = common::env_auth()?;
            list.split(',').map(|s| s.trim().to_string()).collect()
        }
        _ => {
            for _ in 0..2 {
                testkit.push(TestNode::start().await?);
            }
            let uris: Vec<String> = testkit.iter().map(TestNode::tcp_target).collect();
            println!("THINGSDB_URIS is not set: using two in-process testkit nodes {uris:?}");
            uris
        }
    };

    let mut builder = Client::builder()
        .auth(auth)
        .keepalive(Some(Duration::from_secs(5)))
        .reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            ..ReconnectPolicy::default()
        });
    for uri in &uris {
        builder = builder.target(uri)?;
    }
    let client = builder.connect().await?;
    let mut status = client.node_events().await?;
    println!("connected; connections made: {}", client.connections_made());

    if let Some(first) = testkit.first() {
        first.emit_node_status(thingsdb_client::NodeStatus::ShuttingDown);
    } else {
        println!("stop the node the client is on; the client will move");
    }

    // Keep querying; requests wait while the client moves.
    for i in 0..10i64 {
        let v: i64 = client.query("i * 2;").var("i", &i).decode().await?;
        println!(
            "query {i}: {v} (connections made: {})",
            client.connections_made()
        );
        if let Ok(Some(NodeEvent::Status { node_id, status })) =
            tokio::time::timeout(Duration::from_millis(200), status.next()).await
        {
            println!("node {node_id} is {status}");
        }
    }
    if let Some(second) = testkit.get(1) {
        println!(
            "the second node has served {} connection(s)",
            second.counters().connections_total()
        );
    }
    client.close().await?;
    Ok(())
}
