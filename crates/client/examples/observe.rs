//! What a running client is doing: its `tracing` spans (printed by
//! `tracing-subscriber`'s fmt layer as each closes), its metrics as a
//! Prometheus page (`metrics-exporter-prometheus`), and `Client::stats()`.
//!
//! ```text
//! cargo run -p thingsdb-client --features metrics --example observe                # a testkit node
//! THINGSDB_BIN=/opt/thingsdb/bin/thingsdb cargo run ... --example observe            # a real node
//! THINGSDB_BIN=/opt/thingsdb/bin/thingsdb cargo run ... --example observe -- --cluster  # failover
//! ```
//!
//! With `THINGSDB_BIN` it starts a real node (or with `--cluster` a
//! cluster of two) on loopback ports through the testkit's harness; with
//! `--cluster` it then shuts the node the client is on down (SIGTERM) while
//! queries run, and the move to the other node shows in the spans, the
//! counters and the page. `RUST_LOG` overrides the filter
//! (`thingsdb_client=info` by default).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use thingsdb_client::observe::metric;
use thingsdb_client::{Auth, Client, ReconnectPolicy, RoomEvent};
use thingsdb_testkit::real_node::{RealCluster, RealNode};
use thingsdb_testkit::{Reply, TestNode};
use tracing_subscriber::fmt::format::FmtSpan;

/// The node(s) the example runs against; kept alive until the end.
enum Nodes {
    Testkit(TestNode),
    Real(RealNode),
    Cluster(RealCluster),
}

impl Nodes {
    fn targets(&self) -> Vec<String> {
        match self {
            Nodes::Testkit(n) => vec![n.tcp_target()],
            Nodes::Real(n) => vec![n.tcp_target().unwrap().to_string()],
            Nodes::Cluster(c) => c
                .nodes
                .iter()
                .map(|n| n.tcp_target().unwrap().to_string())
                .collect(),
        }
    }

    /// The credentials: those the harness started the real node(s) with,
    /// or the testkit's.
    fn auth(&self) -> Auth {
        match self {
            Nodes::Testkit(_) => Auth::password("admin", "pass"),
            Nodes::Real(n) => Auth::password(n.user(), n.password()),
            Nodes::Cluster(c) => Auth::password(c.nodes[0].user(), c.nodes[0].password()),
        }
    }

    fn is_real(&self) -> bool {
        !matches!(self, Nodes::Testkit(_))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Spans: one line per span as it closes, with its fields and times.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "thingsdb_client=info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE)
        .init();
    // Metrics: a Prometheus recorder, installed before the client exists.
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(metric::REQUEST_DURATION.into()),
            &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0],
        )?
        .build_recorder();
    let page = recorder.handle();
    metrics::set_global_recorder(recorder)?;

    let cluster = std::env::args().any(|a| a == "--cluster");
    let nodes = match std::env::var("THINGSDB_BIN") {
        Ok(bin) if cluster => {
            println!("starting a cluster of two real nodes ({bin}); joining takes a while");
            Nodes::Cluster(RealCluster::start(Path::new(&bin), 2).await?)
        }
        Ok(bin) => Nodes::Real(RealNode::start(Path::new(&bin), false).await?),
        Err(_) if cluster => return Err("--cluster needs THINGSDB_BIN".into()),
        Err(_) => {
            let node = TestNode::start().await?;
            node.create_room("stuff", Some("observe"));
            node.procedure("add_one", |a| {
                Reply::value(a.param(0, "x").and_then(|v| v.as_i64()).unwrap_or(0) + 1)
            });
            Nodes::Testkit(node)
        }
    };

    let mut builder = Client::builder()
        .auth(nodes.auth())
        .default_scope("//stuff")?
        .trace_query_text(true)
        .keepalive(Some(Duration::from_secs(2)))
        .reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..ReconnectPolicy::default()
        });
    for t in nodes.targets() {
        builder = builder.target(&t)?;
    }
    let client = builder.connect().await?;

    println!("\n--- requests ---");
    let two = client.query("1 + 1;").scope("@thingsdb").await?;
    println!("1 + 1 = {two}");
    if nodes.is_real() {
        client
            .query(
                "if (!has_procedure('add_one')) new_procedure('add_one', |x| x + 1); \
                 if (!.has('observe')) {.observe = room(); .observe.set_name('observe')}; nil;",
            )
            .await?;
    }
    let v = client.run("add_one").arg(&41).await?;
    println!("add_one(41) = {v}");
    let e = client.query("nothing_here;").await.unwrap_err();
    println!("nothing_here: {e}");
    // Pipelined, for the histogram.
    let many = futures::future::join_all((0..1000).map(|i| client.query("x;").var("x", &i))).await;
    println!("{} pipelined queries answered", many.len());

    println!("\n--- a room ---");
    let room = client.room("//stuff", "observe")?;
    let mut events = room.join().await?;
    for i in 0..3 {
        room.emit("tick", &(i,)).await?;
    }
    let mut got = 0;
    while got < 3 {
        if let Some(RoomEvent::Emitted(_)) = events.recv().await {
            got += 1;
        }
    }
    events.leave().await?;

    if let Nodes::Cluster(c) = &nodes {
        println!("\n--- failover: SIGTERM to the node the client is on ---");
        let before = client.connection_info();
        c.nodes[0].terminate()?;
        for _ in 0..1200 {
            if client.stats().moves > 0 {
                break;
            }
            // Queries go on meanwhile; the node that is going away answers
            // them until the client has moved.
            let _ = client.query("1;").scope("@thingsdb").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("moved from {before:?} to {:?}", client.connection_info());
        for _ in 0..3 {
            client.query("1 + 1;").scope("@thingsdb").await?;
        }
    }

    println!("\n--- Client::stats() ---\n{:#?}", client.stats());
    println!("\n--- the Prometheus page ---\n{}", page.render());
    client.close().await?;
    Ok(())
}
