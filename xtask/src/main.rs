//! Project automation, run as `cargo xtask <command>` (the alias lives in
//! `.cargo/config.toml`).
//!
//! - `cargo xtask ci`: formatting, clippy, tests, the `no_std` build and
//!   dependency check of `thingsdb-protocol`, and the docs; what `.ci/run`
//!   calls.
//! - `cargo xtask fuzz [--secs N] [TARGET...]`: every cargo-fuzz target (or
//!   the ones named) for N seconds each (default 60), on the nightly
//!   toolchain; installs cargo-fuzz first if it is missing.
//! - `cargo xtask bench [-- CRITERION ARGS]`: the criterion benchmarks.
//! - `cargo xtask bench-e2e [--target URI].. [--http URL] [--secs N] [--python]`:
//!   the client against a node (or the testkit) next to the node's ceiling,
//!   with CPU time and allocations per request, JOIN and event-burst
//!   latency, and the memory of 10 000 requests in flight; `--http` adds
//!   the HTTP API client next to the socket client on the same node (also
//!   run against the testkit without targets); `--python` adds the
//!   official Python connector on the same node.
//! - `cargo xtask bench-observe [--target URI].. [--secs N] [--rounds N]`:
//!   the client's pipelined rate and CPU per request built without its
//!   instrumentation and with all of it (spans, stats, metrics; nothing
//!   listening), the two builds in turns.
//! - `cargo xtask bench-spread [--secs N] [--service-us N] [--loops N]`:
//!   one client spreading queries over 1, 2 and 4 testkit nodes that each
//!   serve one query at a time with a service time (default 200 us), with
//!   `Balance::FewestInFlight` and `Balance::RoundRobin`: requests/s next
//!   to the nodes' ceiling, the split per node, the failures.
//! - `cargo xtask soak [--requests N]`: the reconnect soak test, longer.
//! - `cargo xtask real-node [--bin PATH]`: every real-node test against a
//!   node started from `PATH` (or `THINGSDB_BIN`), in a private network
//!   namespace when one can be made, so WebSocket is tested too.
//! - `cargo xtask wasm [--release] [--serve] [--real-node BIN]`: the
//!   browser route (see `wasm.rs`): installs what is missing, builds for
//!   wasm32, runs the browser tests and the two-page chat in headless
//!   Chromium (against a real node in a private network namespace with
//!   `--real-node`); `--serve` serves the example page instead.
//!
//! Each step prints the command it runs and the first failing step stops
//! the run with a non-zero exit code.

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod wasm;

/// A failed step, with the message to print.
struct Failure(String);

type Step = Result<(), Failure>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("fuzz") => fuzz(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("bench-e2e") => bench_e2e(&args[1..]),
        Some("bench-observe") => bench_observe(&args[1..]),
        Some("bench-spread") => bench_spread(&args[1..]),
        Some("soak") => soak(&args[1..]),
        Some("model") => model(&args[1..]),
        Some("real-node") => real_node(&args[1..]),
        Some("wasm") => wasm::wasm(&args[1..]),
        Some("-h" | "--help" | "help") => {
            print_usage();
            Ok(())
        }
        other => {
            print_usage();
            Err(Failure(match other {
                Some(c) => format!("unknown command `{c}`"),
                None => "no command given".to_string(),
            }))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("xtask: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn print_usage() {
    eprintln!(
        "usage: cargo xtask <command>\n\n\
         commands:\n  \
           ci                         fmt, clippy, tests, no_std checks, docs\n  \
           fuzz [--secs N] [TARGET..] run cargo-fuzz targets (default: all, 60 s each)\n  \
           bench [-- ARGS]            run the criterion benchmarks\n  \
           bench-e2e [--target URI].. [--http URL] [--secs N] [--python]  client vs raw floor, HTTP API vs socket, in-flight memory\n  \
           bench-observe [--target URI].. [--secs N] [--rounds N]  pipelined rate with and without the client's instrumentation\n  \
           bench-spread [--secs N] [--service-us N] [--loops N]  one client over 1, 2, 4 testkit nodes with a service time\n  \
           soak [--requests N]        the reconnect soak test (default 2 000 000 requests)\n  \
           model [--cases N]          the client session's model-based test (default 100 000 cases)\n  \
           real-node [--bin PATH]     every real-node test (THINGSDB_BIN), WS in a private netns\n  \
           wasm [--release] [--serve] [--real-node BIN]  browser build and tests in headless Chromium"
    );
}

/// The workspace root: the parent of this crate's directory. It does not
/// depend on where the target directory is.
fn root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// `cargo` through rustup's proxy, so that `+nightly` works, with the
/// variables an outer `cargo run` set removed so they cannot pin the
/// toolchain of the inner run.
fn cargo() -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(root());
    for var in ["RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC", "CARGO"] {
        c.env_remove(var);
    }
    c
}

fn describe(c: &Command) -> String {
    let mut s = String::new();
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            s.push_str(&format!("{}={} ", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    s.push_str(&c.get_program().to_string_lossy());
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion, printing it first.
fn run(mut c: Command) -> Step {
    let what = describe(&c);
    println!("\n==> {what}");
    let status = c
        .status()
        .map_err(|e| Failure(format!("could not start `{what}`: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure(format!("`{what}` failed ({status})")))
    }
}

/// Runs a command and returns its standard output, printing it first.
fn output(mut c: Command) -> Result<String, Failure> {
    let what = describe(&c);
    println!("\n==> {what}");
    let out = c
        .output()
        .map_err(|e| Failure(format!("could not start `{what}`: {e}")))?;
    if !out.status.success() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        return Err(Failure(format!("`{what}` failed ({})", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cargo_with<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = cargo();
    c.args(args);
    c
}

// --------------------------------------------------------------------- ci

fn ci() -> Step {
    run(cargo_with(["fmt", "--all", "--", "--check"]))?;
    run(cargo_with([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo_with(["test", "--workspace", "--all-targets"]))?;
    run(cargo_with(["test", "--workspace", "--doc"]))?;
    // The client's optional instrumentation: with metrics, and without any.
    run(cargo_with([
        "clippy",
        "-p",
        "thingsdb-client",
        "--all-targets",
        "--features",
        "metrics",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo_with([
        "test",
        "-p",
        "thingsdb-client",
        "--features",
        "metrics",
        "--test",
        "observe",
    ]))?;
    run(cargo_with([
        "clippy",
        "-p",
        "thingsdb-client",
        "--no-default-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo_with([
        "build",
        "-p",
        "thingsdb-protocol",
        "--no-default-features",
    ]))?;
    protocol_deps_are_no_std()?;
    let mut doc = cargo_with(["doc", "--workspace", "--no-deps"]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    run(doc)?;
    wasm::wasm(&[])?;
    println!("\nxtask ci: all steps passed");
    Ok(())
}

/// With its default features off, no dependency of `thingsdb-protocol`
/// may have its `std` feature enabled. Proc-macro crates run on the host
/// at build time, so their own dependencies do not count.
fn protocol_deps_are_no_std() -> Step {
    let tree = output(cargo_with([
        "tree",
        "-p",
        "thingsdb-protocol",
        "--no-default-features",
        "--edges",
        "normal,features",
        "--prefix",
        "depth",
    ]))?;
    let offenders = std_features(&tree);
    if !tree.contains("bytes") {
        return Err(Failure(format!(
            "unexpected `cargo tree` output (no `bytes` in it):\n{tree}"
        )));
    }
    if offenders.is_empty() {
        println!("no dependency of thingsdb-protocol enables `std` without default features");
        Ok(())
    } else {
        Err(Failure(format!(
            "without default features, thingsdb-protocol still enables `std` in: {}",
            offenders.join(", ")
        )))
    }
}

/// The `... feature "std"` nodes of a `cargo tree --prefix depth -e
/// features` listing, outside proc-macro subtrees.
fn std_features(tree: &str) -> Vec<String> {
    let mut offenders = Vec::new();
    let mut skip_below: Option<usize> = None;
    for line in tree.lines() {
        let digits = line.chars().take_while(char::is_ascii_digit).count();
        let Ok(depth) = line[..digits].parse::<usize>() else {
            continue; // a blank line or a section heading
        };
        let node = line[digits..].trim();
        if let Some(d) = skip_below {
            if depth > d {
                continue;
            }
            skip_below = None;
        }
        if node.contains("(proc-macro)") {
            skip_below = Some(depth);
            continue;
        }
        if node.contains("feature \"std\"") {
            offenders.push(node.to_string());
        }
    }
    offenders
}

// ------------------------------------------------------------------- fuzz

fn fuzz(args: &[String]) -> Step {
    let mut secs: u64 = 60;
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" => {
                let v = it
                    .next()
                    .ok_or_else(|| Failure("--secs needs a number".into()))?;
                secs = v
                    .parse()
                    .map_err(|_| Failure(format!("--secs: `{v}` is not a number")))?;
            }
            s if s.starts_with("--secs=") => {
                let v = &s["--secs=".len()..];
                secs = v
                    .parse()
                    .map_err(|_| Failure(format!("--secs: `{v}` is not a number")))?;
            }
            s if s.starts_with('-') => return Err(Failure(format!("unknown option `{s}`"))),
            t => targets.push(t.to_string()),
        }
    }

    // cargo-fuzz, installed when missing.
    let have_fuzz = fuzz_cargo(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_fuzz {
        run(cargo_with(["install", "cargo-fuzz", "--locked"]))?;
    }

    if targets.is_empty() {
        let list = output(fuzz_cargo(["+nightly", "fuzz", "list"]))?;
        targets = list
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
    }
    if targets.is_empty() {
        return Err(Failure("no fuzz targets found".into()));
    }
    for t in &targets {
        // cargo-fuzz keeps its builds in fuzz/target and looks for the
        // binaries there; a target directory set for the main workspace
        // would send them elsewhere.
        run(fuzz_cargo([
            "+nightly".to_string(),
            "fuzz".into(),
            "run".into(),
            "-O".into(),
            t.clone(),
            "--".into(),
            format!("-max_total_time={secs}"),
            "-print_final_stats=1".into(),
        ]))?;
    }
    println!(
        "\nxtask fuzz: {} target(s), {secs} s each, no crash",
        targets.len()
    );
    Ok(())
}

/// `cargo` for cargo-fuzz commands: as [`cargo`], without a target
/// directory override.
fn fuzz_cargo<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = cargo_with(args);
    c.env_remove("CARGO_TARGET_DIR");
    c
}

// ------------------------------------------------------------------ bench

fn bench(args: &[String]) -> Step {
    let extra: Vec<&String> = match args.first().map(String::as_str) {
        Some("--") => args[1..].iter().collect(),
        _ => args.iter().collect(),
    };
    let mut c = cargo_with([
        "bench",
        "-p",
        "thingsdb-benches",
        "--bench",
        "protocol",
        "--",
    ]);
    c.args(extra);
    run(c)?;
    let example = root().join("crates/transport/examples/roundtrip_bench.rs");
    if example.exists() {
        run(cargo_with([
            "run",
            "--release",
            "-p",
            "thingsdb-transport",
            "--example",
            "roundtrip_bench",
        ]))?;
    }
    Ok(())
}

// -------------------------------------------------------------- bench-e2e

/// The value after `flag` in `args`, for every occurrence.
fn values_of<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

/// `cargo VERB --release` of the client's `bench_e2e` example.
fn bench_e2e_cargo(verb: &str) -> Command {
    cargo_with([
        verb,
        "--release",
        "--quiet",
        "-p",
        "thingsdb-client",
        "--example",
        "bench_e2e",
    ])
}

fn bench_e2e(args: &[String]) -> Step {
    let targets = values_of(args, "--target");
    let secs = values_of(args, "--secs").last().copied().unwrap_or("1.5");
    let example = |extra: &[&str]| {
        let mut c = bench_e2e_cargo("run");
        c.arg("--").args(extra);
        c
    };
    // The HTTP API next to the socket client on the same node
    // (crates/http/examples/bench_http.rs): with --http URL and a TCP
    // --target, or both on an in-process testkit node without targets.
    let http = values_of(args, "--http");
    let tcp_target = targets.iter().find(|t| !t.starts_with("ws"));
    if let (Some(url), Some(t)) = (http.last(), tcp_target) {
        run(http_bench(&["--secs", secs, "--target", t, "--http", url]))?;
    } else if targets.is_empty() {
        run(http_bench(&["--secs", secs]))?;
    } else if !http.is_empty() {
        return Err(Failure(
            "--http needs a TCP --target of the same node".into(),
        ));
    }
    let mut main_args = vec!["--secs", secs];
    for t in &targets {
        main_args.extend(["--target", t]);
    }
    run(example(&main_args))?;
    // Memory: one fresh process per transport.
    if targets.is_empty() {
        run(example(&["--memory-only"]))?;
    }
    for t in &targets {
        run(example(&["--memory-only", "--target", t]))?;
    }
    if args.iter().any(|a| a == "--python") {
        let tcp = targets
            .iter()
            .find(|t| !t.starts_with("ws"))
            .map(|t| t.trim_start_matches("thingsdb://"));
        let ws = targets.iter().find(|t| t.starts_with("ws://"));
        if tcp.is_none() && ws.is_none() {
            return Err(Failure("--python needs a --target of a real node".into()));
        }
        // PYTHON names an interpreter with python-thingsdb and websockets.
        let python = env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut c = Command::new(python);
        c.current_dir(root())
            .arg("benches/compare/python_thingsdb.py")
            .args(["--secs", secs]);
        if let Some(t) = tcp {
            c.args(["--tcp", t]);
        }
        if let Some(w) = ws {
            c.args(["--ws", w]);
        }
        run(c)?;
    }
    Ok(())
}

/// `cargo run --release` of the HTTP benchmark with `extra` arguments.
fn http_bench(extra: &[&str]) -> Command {
    let mut c = cargo_with([
        "run",
        "--release",
        "--quiet",
        "-p",
        "thingsdb-http",
        "--example",
        "bench_http",
        "--",
    ]);
    c.args(extra);
    c
}

// ---------------------------------------------------------- bench-observe

/// The client's pipelined rate built without its instrumentation and with
/// all of it (spans, stats, metrics), nothing listening: two builds of the
/// `bench_e2e` example run in turns, round after round, so both meet the
/// same machine.
/// `cargo xtask bench-spread`: the client's `bench_spread` example, built
/// for release, with the options given (each checked to be a number).
fn bench_spread(args: &[String]) -> Step {
    let mut c = cargo_with([
        "run",
        "--release",
        "--quiet",
        "-p",
        "thingsdb-client",
        "--example",
        "bench_spread",
        "--",
    ]);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" | "--service-us" | "--loops" => {
                let v = it
                    .next()
                    .ok_or_else(|| Failure(format!("{a} needs a number")))?;
                v.parse::<f64>()
                    .map_err(|_| Failure(format!("{a}: `{v}` is not a number")))?;
                c.args([a.as_str(), v.as_str()]);
            }
            other => return Err(Failure(format!("unknown option `{other}`"))),
        }
    }
    run(c)
}

fn bench_observe(args: &[String]) -> Step {
    let targets = values_of(args, "--target");
    let secs = values_of(args, "--secs").last().copied().unwrap_or("2");
    let rounds: usize = values_of(args, "--rounds")
        .last()
        .copied()
        .unwrap_or("5")
        .parse()
        .map_err(|_| Failure("--rounds takes a number".into()))?;
    let dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("release")
        .join("examples");
    let variants = [
        // `blocking` only: the example's blocking rows need it, and it
        // carries no instrumentation.
        (
            "without",
            vec!["--no-default-features", "--features", "blocking"],
        ),
        ("with", vec!["--features", "metrics"]),
    ];
    let mut bins = Vec::new();
    for (name, features) in &variants {
        let mut c = bench_e2e_cargo("build");
        c.args(features);
        run(c)?;
        let bin = dir.join(format!("bench_e2e_{name}"));
        std::fs::copy(dir.join("bench_e2e"), &bin)
            .map_err(|e| Failure(format!("cannot copy the bench_e2e build: {e}")))?;
        bins.push(bin);
    }
    // (transport, variant) -> rounds of (req/s, CPU us/req)
    let mut cells: std::collections::BTreeMap<(String, usize), Vec<(f64, f64)>> =
        std::collections::BTreeMap::new();
    for round in 0..rounds {
        // Each round the other build goes first.
        let order: Vec<usize> = if round % 2 == 0 {
            vec![0, 1]
        } else {
            vec![1, 0]
        };
        for v in order {
            let mut c = Command::new(&bins[v]);
            c.args(["--pipelined-only", "--secs", secs]);
            for t in &targets {
                c.args(["--target", t]);
            }
            for line in output(c)?.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                if let ["pipelined", transport, rate, cpu] = f[..] {
                    let (Ok(rate), Ok(cpu)) = (rate.parse(), cpu.parse()) else {
                        continue;
                    };
                    cells
                        .entry((transport.to_string(), v))
                        .or_default()
                        .push((rate, cpu));
                }
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    println!(
        "\nPipelined `1+1;`, {secs} s per run, {rounds} rounds, builds in turns; median (best) of the rounds\n"
    );
    println!("| transport | without (req/s) | with (req/s) | rate difference | without (CPU us/req) | with (CPU us/req) | CPU difference |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let transports: std::collections::BTreeSet<String> =
        cells.keys().map(|(t, _)| t.clone()).collect();
    for t in transports {
        let get = |v: usize| cells.get(&(t.clone(), v)).cloned().unwrap_or_default();
        let (a, b) = (get(0), get(1));
        let best = |c: &[(f64, f64)]| c.iter().map(|x| x.0).fold(0.0, f64::max);
        let (ra, rb) = (
            median(a.iter().map(|x| x.0).collect()),
            median(b.iter().map(|x| x.0).collect()),
        );
        let (ca, cb) = (
            median(a.iter().map(|x| x.1).collect()),
            median(b.iter().map(|x| x.1).collect()),
        );
        println!(
            "| {t} | {ra:.0} ({:.0}) | {rb:.0} ({:.0}) | {:+.1}% | {ca:.2} | {cb:.2} | {:+.1}% |",
            best(&a),
            best(&b),
            (rb / ra - 1.0) * 100.0,
            (cb / ca - 1.0) * 100.0
        );
    }
    Ok(())
}

// ------------------------------------------------------------------- soak

fn soak(args: &[String]) -> Step {
    let requests = values_of(args, "--requests")
        .last()
        .copied()
        .unwrap_or("2000000");
    let mut c = cargo_with([
        "test",
        "--release",
        "-p",
        "thingsdb-client",
        "--test",
        "resilience",
        "soak",
        "--",
        "--nocapture",
    ]);
    c.env("THINGSDB_SOAK_REQUESTS", requests);
    run(c)
}

/// The model-based test of the client's session with `--cases N` random
/// cases (CI runs 2 000).
fn model(args: &[String]) -> Step {
    let cases = values_of(args, "--cases")
        .last()
        .copied()
        .unwrap_or("100000");
    if cases.parse::<u64>().is_err() {
        return Err(Failure(format!("--cases takes a number, not {cases:?}")));
    }
    let mut c = cargo_with([
        "test",
        "--release",
        "-p",
        "thingsdb-client",
        "--lib",
        "connection::model",
        "--",
        "--nocapture",
    ]);
    c.env("PROPTEST_CASES", cases);
    run(c)
}

// -------------------------------------------------------------- real-node

/// The real-node test targets, by package.
const REAL_NODE_TESTS: &[(&str, &str)] = &[
    ("thingsdb-testkit", "differential"),
    ("thingsdb-transport", "real_node"),
    ("thingsdb-client", "real_node"),
    ("thingsdb-client", "real_cluster"),
    ("thingsdb-client", "real_balance"),
    ("thingsdb-client", "real_consistency"),
    ("thingsdb-client", "blocking_real"),
    ("thingsdb-client", "real_management"),
    ("thingsdb-module", "real_node"),
    ("thingsdb-cli", "real_node"),
    ("thingsdb-cli", "types_rust"),
    ("thingsdb-derive", "real_node"),
    ("thingsdb-http", "real_node"),
    ("thingsdb-cli", "http"),
];

fn real_node(args: &[String]) -> Step {
    let bin = values_of(args, "--bin")
        .last()
        .map(|s| s.to_string())
        .or_else(|| env::var("THINGSDB_BIN").ok())
        .ok_or_else(|| Failure("give --bin PATH or set THINGSDB_BIN".into()))?;
    if !Path::new(&bin).exists() {
        return Err(Failure(format!("no ThingsDB binary at {bin}")));
    }
    // Build first, outside the namespace, so cargo can reach the registry.
    for (package, test) in REAL_NODE_TESTS {
        run(cargo_with([
            "test", "--no-run", "-p", package, "--test", test,
        ]))?;
    }
    // A node binds its WebSocket port on every interface: only enable it in
    // a network namespace whose one interface is loopback.
    let isolated = Command::new("unshare")
        .args(["-n", "--", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !isolated {
        println!(
            "xtask: cannot make a network namespace here; WebSocket real-node tests are skipped"
        );
    }
    for (package, test) in REAL_NODE_TESTS {
        let cargo_test = format!("cargo test -p {package} --test {test} -- --nocapture");
        let mut c = if isolated {
            let mut c = Command::new("unshare");
            c.args(["-n", "--", "sh", "-c"])
                .arg(format!("ip link set lo up && {cargo_test}"))
                .env("THINGSDB_BIN_WS", "1");
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &cargo_test]);
            c
        };
        c.current_dir(root()).env("THINGSDB_BIN", &bin);
        for var in ["RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC", "CARGO"] {
            c.env_remove(var);
        }
        run(c)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::std_features;

    #[test]
    fn std_features_are_found_outside_proc_macros() {
        let tree = "\
0thingsdb-protocol v0.1.0 (/w/crates/protocol)
1bytes v1.12.2
1bytes feature \"std\"
2bytes v1.12.2
1thiserror v2.0.21
2thiserror-impl feature \"default\"
3thiserror-impl v2.0.21 (proc-macro)
4proc-macro2 feature \"std\"
5proc-macro2 v1.0.107
2other feature \"std\"
";
        assert_eq!(
            std_features(tree),
            vec!["bytes feature \"std\"", "other feature \"std\""]
        );
        assert!(std_features("0thingsdb-protocol v0.1.0\n1bytes v1.12.2\n").is_empty());
    }
}
