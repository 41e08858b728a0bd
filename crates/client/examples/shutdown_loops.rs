//! The node a client uses goes away under load, on a real 3-node cluster:
//! how many requests fail? (The scenario of issues 19 and 25.)
//!
//! Each run starts a fresh 3-node ThingsDB cluster from `THINGSDB_BIN` on
//! loopback, connects a client to a pool of the three nodes (or to node 0
//! only, learning the others with discovery: `--seed-only`), runs LOOPS
//! tasks that each send `.n += 1;` and `1 + 1;` in turn with a 10 s timeout
//! for SECS seconds, and AT seconds in stops the node the client is on:
//! `shutdown()` from another client (graceful), or SIGKILL with `--kill`
//! (then the loops send the reads `.n;` and `1 + 1;`, marked
//! `.idempotent()`). It prints per run how many requests were answered and
//! how many failed, by kind, and what went wrong first; the exit code is 1
//! when any request failed.
//!
//! `--python` runs python-thingsdb (`benches/compare/shutdown_loops.py`,
//! `pip install python-thingsdb websockets`) on the same pool at the same
//! time, so both go through the same shutdown.
//!
//! ```text
//! THINGSDB_BIN=/opt/thingsdb/bin/thingsdb \
//!   cargo run --release -p thingsdb-client --example shutdown_loops -- --runs 5 --python
//! # over WebSocket: the node binds its WebSocket port on every interface,
//! # so only inside a private network namespace
//! unshare -rn sh -c 'ip link set lo up; THINGSDB_BIN=/opt/thingsdb/bin/thingsdb \
//!   target/release/examples/shutdown_loops --ws --runs 5 --python'
//! ```
//!
//! Options: `--ws` (WebSocket instead of TCP), `--ws-nodes` (nodes with a
//! WebSocket port, the client on TCP), `--seed-only`, `--kill`,
//! `--python`, `--runs N` (1), `--secs S` (12), `--loops L` (16), `--at S`
//! (2), `--timeout S` (10), `--keepalive S` (the client's default), `--verbose`
//! (every failure), `--balance fewest|round-robin` (a connection to
//! every node, requests spread; prints the split), `--stop-other` (stop a
//! node other than the first connection's). Without `--python` or
//! `--kill`, the run reads `.n` at the end and checks it against the
//! increments answered and failed (none lost, none run twice). `RUST_LOG` (for
//! example `thingsdb_client=debug`) logs what the client does, on stderr.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thingsdb_client::discovery::WsPort;
use thingsdb_client::{Auth, Balance, Client, Error, ReconnectPolicy, Target};
use thingsdb_testkit::real_node::RealCluster;
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Debug, Clone)]
struct Opts {
    ws: bool,
    ws_nodes: bool,
    seed_only: bool,
    kill: bool,
    python: bool,
    runs: u32,
    secs: f64,
    loops: usize,
    at: f64,
    timeout: u64,
    keepalive: Option<f64>,
    verbose: bool,
    /// Spread requests over the nodes (`--balance fewest|round-robin`).
    balance: Balance,
    /// Stop a node other than the first connection's (`--stop-other`).
    stop_other: bool,
}

fn opts() -> Result<Opts, String> {
    let mut o = Opts {
        ws: false,
        ws_nodes: false,
        seed_only: false,
        kill: false,
        python: false,
        runs: 1,
        secs: 12.0,
        loops: 16,
        at: 2.0,
        timeout: 10,
        keepalive: None,
        verbose: false,
        balance: Balance::OneNode,
        stop_other: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} takes a value"));
        match a.as_str() {
            "--ws" => o.ws = true,
            "--ws-nodes" => o.ws_nodes = true,
            "--seed-only" => o.seed_only = true,
            "--kill" => o.kill = true,
            "--python" => o.python = true,
            "--verbose" => o.verbose = true,
            "--stop-other" => o.stop_other = true,
            "--balance" => {
                o.balance = match value("--balance")?.as_str() {
                    "fewest" => Balance::FewestInFlight,
                    "round-robin" => Balance::RoundRobin,
                    "one" => Balance::OneNode,
                    other => {
                        return Err(format!(
                            "--balance: fewest, round-robin or one, not {other}"
                        ))
                    }
                }
            }
            "--runs" => {
                o.runs = value("--runs")?
                    .parse()
                    .map_err(|e| format!("--runs: {e}"))?
            }
            "--secs" => {
                o.secs = value("--secs")?
                    .parse()
                    .map_err(|e| format!("--secs: {e}"))?
            }
            "--loops" => {
                o.loops = value("--loops")?
                    .parse()
                    .map_err(|e| format!("--loops: {e}"))?
            }
            "--keepalive" => {
                o.keepalive = Some(
                    value("--keepalive")?
                        .parse()
                        .map_err(|e| format!("--keepalive: {e}"))?,
                )
            }
            "--at" => o.at = value("--at")?.parse().map_err(|e| format!("--at: {e}"))?,
            "--timeout" => {
                o.timeout = value("--timeout")?
                    .parse()
                    .map_err(|e| format!("--timeout: {e}"))?
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

/// What one connector saw in one run.
#[derive(Debug, Default, Clone)]
struct Counts {
    answered: u64,
    failed: u64,
    timeouts: u64,
    lost: u64,
    node_errors: u64,
    /// `.n += 1;` answered, and failed.
    incs_ok: u64,
    incs_failed: u64,
    /// The first failures: seconds since the loops started, and the error.
    errors: Vec<(f64, String)>,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.answered += o.answered;
        self.failed += o.failed;
        self.timeouts += o.timeouts;
        self.lost += o.lost;
        self.node_errors += o.node_errors;
        self.incs_ok += o.incs_ok;
        self.incs_failed += o.incs_failed;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = opts()?;
    // RUST_LOG=thingsdb_client=debug shows what the client did.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let bin =
        std::env::var("THINGSDB_BIN").map_err(|_| "set THINGSDB_BIN to a ThingsDB node binary")?;
    let mut total = Counts::default();
    let mut total_py = Counts::default();
    let mut py_runs = 0;
    for run in 1..=o.runs {
        let (rust, py) = one_run(&o, &bin).await?;
        println!(
            "run {run}/{}: {} {}{}: rust answered {} failed {} (timeout {}, connection lost {}, node error {}){}",
            o.runs,
            if o.ws { "ws" } else { "tcp" },
            if o.kill { "SIGKILL" } else { "graceful shutdown" },
            if o.seed_only { ", seed only" } else { "" },
            rust.answered,
            rust.failed,
            rust.timeouts,
            rust.lost,
            rust.node_errors,
            match &py {
                Some(p) => format!(
                    " | python answered {} failed {} (timeout {})",
                    p.answered, p.failed, p.timeouts
                ),
                None => String::new(),
            }
        );
        let shown = if o.verbose { usize::MAX } else { 3 };
        for (t, e) in rust.errors.iter().take(shown) {
            println!("  rust  {t:6.2}s {e}");
        }
        if let Some(p) = &py {
            for (_, e) in p.errors.iter().take(shown) {
                println!("  python {e}");
            }
            total_py.add(p);
            py_runs += 1;
        }
        total.add(&rust);
    }
    println!(
        "total over {} runs: rust answered {} failed {} (timeout {}, connection lost {}, node error {}){}",
        o.runs,
        total.answered,
        total.failed,
        total.timeouts,
        total.lost,
        total.node_errors,
        if py_runs > 0 {
            format!(
                " | python answered {} failed {} (timeout {})",
                total_py.answered, total_py.failed, total_py.timeouts
            )
        } else {
            String::new()
        }
    );
    if total.failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

async fn one_run(
    o: &Opts,
    bin: &str,
) -> Result<(Counts, Option<Counts>), Box<dyn std::error::Error>> {
    let cluster = RealCluster::start_with(std::path::Path::new(bin), 3, o.ws || o.ws_nodes).await?;
    let targets: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| {
            if o.ws {
                n.ws_url().map(str::to_string)
            } else {
                n.tcp_target().map(str::to_string)
            }
        })
        .collect::<Option<_>>()
        .ok_or("a node has no address for this transport")?;
    // `.n` exists before the loops start.
    let setup = Client::builder()
        .target(cluster.nodes[0].tcp_target().ok_or("no TCP target")?)?
        .auth(Auth::password("admin", "pass"))
        .default_scope("//stuff")?
        .connect()
        .await?;
    setup.query(".n = 0;").raw().await?;
    setup.close().await?;
    // Every node has it before the loops start: a read never waits for
    // changes (crates/client/docs/consistency.md), so with the load spread
    // a node that had not applied `.n = 0` yet answered the first reads
    // with "no property `n`" (343 failed at 0.00 s in one run of ten).
    for node in &cluster.nodes {
        let c = Client::builder()
            .target(node.tcp_target().ok_or("no TCP target")?)?
            .auth(Auth::password("admin", "pass"))
            .default_scope("//stuff")?
            .connect()
            .await?;
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        while !c.query(".has('n');").decode::<bool>().await? {
            if std::time::Instant::now() > give_up {
                return Err("a node did not get `.n` within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        c.close().await?;
    }

    let given: &[String] = if o.seed_only { &targets[..1] } else { &targets };
    let mut builder = Client::builder()
        .auth(Auth::password("admin", "pass"))
        .default_scope("//stuff")?
        .request_timeout(Duration::from_secs(o.timeout))
        .reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..ReconnectPolicy::default()
        })
        .discover_nodes(o.seed_only)
        .balance(o.balance);
    if let Some(k) = o.keepalive {
        builder = builder.keepalive(Some(Duration::from_secs_f64(k)));
    }
    for t in given {
        builder = builder.target(t)?;
    }
    if o.seed_only && o.ws {
        // Nodes on one host have a WebSocket port each, which ThingsDB
        // 1.9.2 does not report: tell discovery (node ids follow the order
        // the nodes joined in).
        let ports: Vec<u16> = targets
            .iter()
            .filter_map(|t| match Target::parse(t) {
                Ok(Target::Ws { port, .. }) => Some(port),
                _ => None,
            })
            .collect();
        builder = builder.discover_ws_port(WsPort::custom(move |node| {
            ports.get(usize::try_from(node.node_id).ok()?).copied()
        }));
    }
    let client = builder.connect().await?;
    // The client's lifecycle events (connected, moved, lost), with the
    // time they came, printed after the run.
    let born = Instant::now();
    let mut lifecycle = client.connection_events().await?;
    let moves = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(ev) = lifecycle.recv().await {
            seen.push(format!("{:.2}s {ev:?}", born.elapsed().as_secs_f64()));
        }
        seen
    });

    let mut python = None;
    if o.python {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../benches/compare/shutdown_loops.py"
        );
        let pool = given.join(",");
        let mut child = tokio::process::Command::new("python3")
            .arg(script)
            .arg("--pool")
            .arg(&pool)
            .arg("--secs")
            .arg(o.secs.to_string())
            .arg("--loops")
            .arg(o.loops.to_string())
            .arg("--timeout")
            .arg(o.timeout.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        match lines.next_line().await? {
            Some(l) if l == "ready" => {}
            other => return Err(format!("python-thingsdb did not connect: {other:?}").into()),
        }
        python = Some((child, lines));
    }

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(o.secs);
    let counts = Arc::new(Mutex::new(Counts::default()));
    let mut loops = Vec::new();
    for k in 0..o.loops {
        let (client, counts, kill) = (client.clone(), counts.clone(), o.kill);
        loops.push(tokio::spawn(async move {
            let mut i = k;
            while Instant::now() < end {
                let code = match (kill, i % 2 == 0) {
                    (false, true) => ".n += 1;",
                    (true, true) => ".n;",
                    (_, false) => "1 + 1;",
                };
                i += 1;
                let sent = start.elapsed().as_secs_f64();
                // Reads may run twice: marked so, they survive the kill.
                let r: Result<bytes::Bytes, Error> = if kill {
                    client.query(code).idempotent().raw().await
                } else {
                    client.query(code).raw().await
                };
                let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
                let inc = code == ".n += 1;";
                match r {
                    Ok(_) => {
                        c.answered += 1;
                        c.incs_ok += u64::from(inc);
                    }
                    Err(e) => {
                        c.failed += 1;
                        c.incs_failed += u64::from(inc);
                        if e.is_timeout() {
                            c.timeouts += 1;
                        } else if e.is_connection_lost() {
                            c.lost += 1;
                        } else if e.code() == Some(thingsdb_client::ErrorCode::Node) {
                            c.node_errors += 1;
                        }
                        if c.errors.len() < 1000 {
                            c.errors.push((
                                start.elapsed().as_secs_f64(),
                                format!("{e} (sent at {sent:.2}s)"),
                            ));
                        }
                    }
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs_f64(o.at)).await;
    let split = |client: &Client| {
        let mut loads = client.nodes();
        loads.sort_by_key(|l| l.node_id);
        loads
            .iter()
            .map(|l| {
                format!(
                    "node {}{}: {}",
                    l.node_id.map_or("?".to_string(), |n| n.to_string()),
                    if l.primary { " (first)" } else { "" },
                    l.sent
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if o.balance != Balance::OneNode {
        println!(
            "  requests per connection before the stop: {}",
            split(&client)
        );
    }
    let serving = if o.stop_other {
        // A node other than the first connection's.
        let first = client.connection_info();
        targets
            .iter()
            .filter_map(|t| Target::parse(t).ok())
            .find(|t| Some(t) != first.as_ref())
            .ok_or("no other node")?
    } else {
        client
            .connection_info()
            .ok_or("the client serves from no node")?
    };
    let index = targets
        .iter()
        .position(|t| Target::parse(t).is_ok_and(|t| t == serving))
        .ok_or_else(|| format!("the client is on {serving}, not a node of the cluster"))?;
    let node = &cluster.nodes[index];
    if o.kill {
        node.kill()?;
    } else {
        let stopper = Client::builder()
            .target(node.tcp_target().ok_or("no TCP target")?)?
            .auth(Auth::password("admin", "pass"))
            .connect()
            .await?;
        // The node may close the connection before it answers.
        let _ = stopper.query("shutdown();").scope("@node").raw().await;
        let _ = stopper.close().await;
    }
    println!(
        "  stopped node {index} ({serving}) at {:.2}s",
        start.elapsed().as_secs_f64()
    );
    for l in loops {
        l.await?;
    }
    let rust = counts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if o.balance != Balance::OneNode {
        println!("  requests per connection at the end: {}", split(&client));
    }
    if !o.python && !o.kill {
        // Every `.n += 1;` answered ran once; a failed one may have run.
        // More than both is a duplicate.
        let alive = cluster
            .nodes
            .iter()
            .enumerate()
            .find(|(i, _)| *i != index)
            .and_then(|(_, n)| n.tcp_target())
            .ok_or("no node left")?;
        let reader = Client::builder()
            .target(alive)?
            .auth(Auth::password("admin", "pass"))
            .default_scope("//stuff")?
            .connect()
            .await?;
        let n: u64 = reader.query(".n;").decode().await?;
        let (ok, failed) = (rust.incs_ok, rust.incs_failed);
        println!(
            "  .n = {n}: {ok} increments answered, {failed} failed{}",
            if n < ok {
                " (LOST: fewer than answered)"
            } else if n > ok + failed {
                " (DUPLICATED: more than sent)"
            } else {
                ""
            }
        );
    }
    let py = match python {
        Some((mut child, mut lines)) => {
            let mut found = None;
            let mut errors = Vec::new();
            while let Some(l) = lines.next_line().await? {
                if let Some(rest) = l.strip_prefix("result ") {
                    let mut c = parse_python(rest);
                    c.errors = errors.clone();
                    found = Some(c);
                } else if let Some(e) = l.strip_prefix("error ") {
                    errors.push((0.0, e.to_string()));
                }
            }
            child.wait().await?;
            found
        }
        None => None,
    };
    let _ = client.close().await;
    drop(client);
    if let Ok(seen) = tokio::time::timeout(Duration::from_secs(5), moves).await {
        for line in seen.unwrap_or_default() {
            println!("  lifecycle: {line}");
        }
    }
    // What the nodes warn about their changes: a change killed, skipped or
    // committed with a gap is a request the cluster itself lost.
    // A node can repeat one warning millions of times: each distinct
    // message (the time stripped) once, with its count.
    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut seen: Vec<(String, usize)> = Vec::new();
        for line in node
            .log()
            .lines()
            .filter(|l| (l.starts_with("[W") || l.starts_with("[E")) && l.contains("change"))
        {
            let msg = line.split_once("] ").map_or(line, |(_, m)| m).to_string();
            match seen.iter_mut().find(|(m, _)| *m == msg) {
                Some((_, n)) => *n += 1,
                None => seen.push((msg, 1)),
            }
        }
        for (msg, n) in seen {
            println!("  node {i}: {msg} (x{n})");
        }
    }
    Ok((rust, py))
}

/// The counts the Python script prints: `answered=N failed=N timeouts=N`.
fn parse_python(line: &str) -> Counts {
    let n = |k: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
            .unwrap_or(0)
    };
    Counts {
        answered: n("answered"),
        failed: n("failed"),
        timeouts: n("timeouts"),
        ..Counts::default()
    }
}
