//! Spreading requests over the nodes of a cluster, measured where a 2-core
//! machine cannot run several busy real nodes: on testkit nodes that serve
//! one query at a time with a service time each (as a node's single
//! thread does), so one node answers at most `1 / service time` queries a
//! second. For 1, 2 and 4 nodes, one client with a connection to each
//! node (`Balance::FewestInFlight`, then `Balance::RoundRobin`; then
//! `Balance::OneNode`, one connection, for comparison) runs
//! `--loops` concurrent loops of queries for `--secs` seconds; the table
//! gives requests per second next to the nodes' ceiling, the split of the
//! requests over the nodes, and the failures (there must be none).
//!
//! ```text
//! cargo xtask bench-spread [--secs N] [--service-us N] [--loops N]
//! cargo run --release -p thingsdb-client --example bench_spread -- [--secs N] [--service-us N] [--loops N]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thingsdb_client::{Auth, Balance, Client};
use thingsdb_testkit::TestNode;

fn arg(args: &[String], flag: &str, default: f64) -> f64 {
    args.windows(2)
        .rfind(|w| w[0] == flag)
        .map(|w| {
            w[1].parse()
                .unwrap_or_else(|_| panic!("{flag} takes a number"))
        })
        .unwrap_or(default)
}

struct Row {
    policy: &'static str,
    nodes: usize,
    rate: f64,
    ceiling: f64,
    split: Vec<u64>,
    failed: u64,
}

async fn measure(
    policy: Balance,
    name: &'static str,
    nodes: usize,
    service: Duration,
    loops: usize,
    secs: f64,
) -> Row {
    let cluster = TestNode::builder()
        .service_time(service)
        .start_cluster(nodes)
        .await
        .unwrap();
    // No handler: the testkit's `eval` answers `1 + 1;`, and the node id
    // the client asks each node for.
    let mut builder = Client::builder().auth(Auth::password("admin", "pass"));
    for node in cluster.nodes() {
        builder = builder.target(&node.thingsdb_url()).unwrap();
    }
    let client = builder
        .balance(policy)
        .request_timeout(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    // Every connection up before the clock starts (one without spreading).
    let want = if policy == Balance::OneNode { 1 } else { nodes };
    let started = Instant::now();
    while client.nodes().iter().filter(|n| n.target.is_some()).count() < want {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nodes did not connect"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before: Vec<u64> = client.nodes().iter().map(|n| n.sent).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for _ in 0..loops {
        let (client, stop, ok, failed) = (client.clone(), stop.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.query("1 + 1;").await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("query failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let took = started.elapsed().as_secs_f64();
    let split = client
        .nodes()
        .iter()
        .zip(before.iter().chain(std::iter::repeat(&0)))
        .map(|(n, b)| n.sent - b)
        .collect();
    Row {
        policy: name,
        nodes,
        rate: ok.load(Ordering::Relaxed) as f64 / took,
        ceiling: nodes as f64 / service.as_secs_f64(),
        split,
        failed: failed.load(Ordering::Relaxed),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs = arg(&args, "--secs", 3.0);
    let service = Duration::from_secs_f64(arg(&args, "--service-us", 200.0) / 1e6);
    let loops = arg(&args, "--loops", 64.0) as usize;
    println!(
        "\nSpreading over testkit nodes with a service time of {service:?} per query, {loops} concurrent loops, {secs} s per row\n"
    );
    println!("| policy | nodes | requests/s | nodes' ceiling | of the ceiling | requests per node | failed |");
    println!("|---|---:|---:|---:|---:|---|---:|");
    let mut failed = 0;
    for (policy, name) in [
        (Balance::FewestInFlight, "FewestInFlight"),
        (Balance::RoundRobin, "RoundRobin"),
        // Without spreading, for comparison: the other nodes only wait
        // to be failed over to.
        (Balance::OneNode, "OneNode"),
    ] {
        for nodes in [1, 2, 4] {
            let r = measure(policy, name, nodes, service, loops, secs).await;
            let split: Vec<String> = r.split.iter().map(u64::to_string).collect();
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.0} % | {} | {} |",
                r.policy,
                r.nodes,
                r.rate,
                r.ceiling,
                100.0 * r.rate / r.ceiling,
                split.join(" / "),
                r.failed
            );
            failed += r.failed;
        }
    }
    if failed > 0 {
        eprintln!("bench-spread: {failed} requests failed");
        std::process::exit(1);
    }
}
