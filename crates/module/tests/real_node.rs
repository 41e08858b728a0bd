//! The example module (`kvcache`) run by a real ThingsDB node.
//!
//! Runs when `THINGSDB_BIN` names a node binary: a node is started on
//! loopback ports with a temporary storage and `modules_path`, the
//! `kvcache` binary Cargo built for this test is copied into
//! `<modules_path>/kvcache/`, installed with `new_module`, configured, and
//! called from ThingsDB code with `future`. Otherwise the test says it was
//! skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use thingsdb_client::{Auth, Client, ErrorCode, Value};
use thingsdb_testkit::real_node::{RealNode, SKIP_MESSAGE};

/// A guard against hangs only: nothing here measures time.
const PATIENCE: Duration = Duration::from_secs(90);

async fn client(node: &RealNode) -> Client {
    Client::builder()
        .target(node.tcp_target().unwrap())
        .unwrap()
        .auth(Auth::password(node.user(), node.password()))
        .default_scope("//stuff")
        .unwrap()
        .request_timeout(PATIENCE)
        .connect()
        .await
        .unwrap()
}

fn install(modules: &Path, name: &str) {
    let dir = modules.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("kvcache");
    std::fs::copy(env!("CARGO_BIN_EXE_kvcache"), &file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// `future` on the module with `fields` (ThingsDB code for a thing's
/// body), loading the answer into ThingsDB values. (A future without
/// `then` gives `[answer]`.)
fn call(fields: &str) -> String {
    format!("future({{module: 'kvcache', load: true, {fields}}}).then(|r| r);")
}

/// Retries `code` until it succeeds: a module takes a moment to start and
/// to take its configuration, and refuses calls until then.
async fn until_ok(c: &Client, code: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match c.query(code).await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{code}: {e}"),
        }
    }
}

async fn status(c: &Client) -> String {
    c.query("module_info('kvcache').load().status;")
        .scope("@thingsdb")
        .decode()
        .await
        .unwrap()
}

/// Waits until the node's log (which holds the module's stderr) has
/// `needle` at least `n` times.
async fn log_has(node: &RealNode, needle: &str, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    while node.log().matches(needle).count() < n {
        assert!(
            Instant::now() < deadline,
            "{n} x {needle:?} not in the node's log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_node_runs_the_example_module() {
    let Some(mut node) = RealNode::from_env().await.unwrap() else {
        println!("{SKIP_MESSAGE}");
        return;
    };
    let Some(modules) = node.modules_path() else {
        println!("module test skipped: it needs a node started here (THINGSDB_BIN), to install into its modules_path");
        return;
    };
    install(&modules, "kvcache");
    let c = client(&node).await;

    // Install and configure.
    c.query("new_module('kvcache', 'kvcache', {max_keys: 3, timeout: 1.5}); nil;")
        .scope("@thingsdb")
        .await
        .unwrap();
    until_ok(&c, &call("op: 'keys'")).await;
    assert_eq!(status(&c).await, "running");
    log_has(&node, "kvcache module started", 1).await;
    log_has(&node, "kvcache configured", 1).await;

    // Results, with values of several types loaded back into ThingsDB.
    c.query(&call(
        "op: 'set', key: 'a', value: {x: [1, 2.5, 'three', nil, true]}",
    ))
    .await
    .unwrap();
    let v = c.query(&call("op: 'get', key: 'a'")).await.unwrap();
    let want = Value::Map(vec![(
        Value::from("x"),
        Value::Array(vec![
            Value::from(1),
            Value::from(2.5),
            Value::from("three"),
            Value::Nil,
            Value::Boolean(true),
        ]),
    )]);
    assert_eq!(v, want);
    // Without `load` the answer is mpdata, which `.load()` reads.
    let v = c
        .query("future({module: 'kvcache', op: 'keys'}).then(|r| r.load());")
        .await
        .unwrap();
    assert_eq!(v, Value::Array(vec![Value::from("a")]));

    // Module errors reach ThingsDB code with their codes.
    let e = c.query(&call("op: 'get', key: 'nope'")).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Lookup), "{e}");
    let code: i64 = c
        .query("future({module: 'kvcache', op: 'get', key: 'nope'}).else(|e| e.code());")
        .decode()
        .await
        .unwrap();
    assert_eq!(code, -54);
    for k in ["b", "c"] {
        c.query(&call(&format!("op: 'set', key: '{k}', value: 1")))
            .await
            .unwrap();
    }
    let e = c
        .query(&call("op: 'set', key: 'd', value: 1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::MaxQuota), "{e}");
    let e = c.query(&call("op: 'nosuchop'")).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadData), "{e}");
    let e = c
        .query(&call("op: 'set', key: 'a', value: 1, ttl: -1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Value), "{e}");

    // A request running past the module's timeout is cancelled.
    let e = c
        .query(&call("op: 'get', key: 'late', wait: 600"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Cancelled), "{e}");
    assert!(e.to_string().contains("did not answer within"), "{e}");

    // A new configuration; requests run concurrently: a `get` waiting for
    // a key is answered by a `set` from another query.
    c.query("set_module_conf('kvcache', {max_keys: 10, timeout: 60}); nil;")
        .scope("@thingsdb")
        .await
        .unwrap();
    log_has(&node, "kvcache configured", 2).await;
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move { c.query(&call("op: 'get', key: 'later', wait: 60")).await })
    };
    // Set the key until the waiter has it (the waiter may not have
    // reached the module when the first `set` runs; it sees a later one).
    let deadline = Instant::now() + PATIENCE;
    while !waiter.is_finished() {
        assert!(Instant::now() < deadline, "the waiting get never returned");
        c.query(&call("op: 'set', key: 'later', value: 'now'"))
            .await
            .unwrap();
        c.query(&call("op: 'del', key: 'later'")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(waiter.await.unwrap().unwrap(), Value::from("now"));

    // A configuration the module refuses: the node marks it and refuses
    // calls; a good one brings it back.
    c.query("set_module_conf('kvcache', {max_keys: 0}); nil;")
        .scope("@thingsdb")
        .await
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !status(&c).await.starts_with("configuration error") {
        assert!(Instant::now() < deadline, "status: {}", status(&c).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = c.query(&call("op: 'keys'")).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Operation), "{e}");
    assert!(node.log().contains("configuration refused"));
    c.query("set_module_conf('kvcache', {max_keys: 10, timeout: 60}); nil;")
        .scope("@thingsdb")
        .await
        .unwrap();
    let keys = until_ok(&c, &call("op: 'keys'")).await;
    assert_eq!(keys.as_array().map(Vec::len), Some(3), "{keys:?}");

    // A restart while a request is in flight: the module stops on SIGTERM
    // (the request is cancelled), and a new process starts with an empty
    // cache and the configuration again.
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move { c.query(&call("op: 'get', key: 'never', wait: 600")).await })
    };
    // Let the request reach the module before restarting it.
    let deadline = Instant::now() + PATIENCE;
    loop {
        // (`tasks` is shown in the @node scope only.)
        let tasks: u64 = c
            .query("module_info('kvcache').load().tasks;")
            .scope("@node")
            .decode()
            .await
            .unwrap();
        if tasks > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the request never reached the module"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.query("restart_module('kvcache');")
        .scope("@node")
        .await
        .unwrap();
    let e = waiter.await.unwrap().unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Cancelled), "{e}");
    log_has(&node, "kvcache module stopped (Shutdown)", 1).await;
    log_has(&node, "kvcache module started", 2).await;
    let keys = until_ok(&c, &call("op: 'keys'")).await;
    assert_eq!(keys, Value::Array(vec![]));
    assert_eq!(status(&c).await, "running");

    // The node shuts down: the module gets SIGTERM and exits cleanly.
    drop(c);
    node.terminate().unwrap();
    log_has(&node, "kvcache module stopped (Shutdown)", 2).await;
    let deadline = Instant::now() + PATIENCE;
    while node.is_running() {
        assert!(Instant::now() < deadline, "the node did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = node.log();
    assert!(!log.contains("kvcache module failed"), "{log}");
    // What the node logged about the module, for `--nocapture`.
    for line in log
        .lines()
        .filter(|l| l.contains("kvcache") || l.contains("module"))
    {
        println!("{line}");
    }
}

/// Whether loopback is this process's only network interface (as in the
/// namespace `cargo xtask real-node` makes).
fn loopback_only() -> bool {
    // /proc/self/net follows the network namespace (/sys/class/net
    // follows where sysfs was mounted).
    match std::fs::read_to_string("/proc/self/net/dev") {
        Ok(dev) => dev
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .all(|name| name.trim() == "lo"),
        Err(_) => false,
    }
}

/// The packaged install: a GitHub source whose module directory already
/// holds `module.json` and its `main` file is used as it is; the
/// functions `module.json` exposes are called as `kvpkg.get(..)`.
///
/// Runs only where loopback is the only network interface: were the local
/// `module.json` refused, the node would try to download the module.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_node_runs_the_packaged_example_module() {
    if !loopback_only() {
        println!("packaged-module test skipped: it runs only in a network namespace with loopback alone (cargo xtask real-node)");
        return;
    }
    let Some(node) = RealNode::from_env().await.unwrap() else {
        println!("{SKIP_MESSAGE}");
        return;
    };
    let Some(modules) = node.modules_path() else {
        println!("module test skipped: it needs a node started here (THINGSDB_BIN), to install into its modules_path");
        return;
    };
    let manifest: serde_json::Value =
        serde_json::from_str(include_str!("../src/bin/kvcache/module.json")).unwrap();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let platform = format!("{}/{arch}", std::env::consts::OS);
    let Some(main) = manifest["main"][&platform].as_str() else {
        println!("packaged-module test skipped: module.json has no `main` for {platform}");
        return;
    };
    let dir = modules.join("kvpkg");
    let file = dir.join(main);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        dir.join("module.json"),
        include_str!("../src/bin/kvcache/module.json"),
    )
    .unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_kvcache"), &file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let c = client(&node).await;
    c.query("new_module('kvpkg', 'github.com/thingsdb-rs/kvcache'); nil;")
        .scope("@thingsdb")
        .await
        .unwrap();
    // Without a configuration the node calls the module at once, with the
    // module's defaults (and `load: true` from module.json).
    until_ok(&c, "kvpkg.set('a', 42);").await;
    let v = c.query("kvpkg.get('a').then(|v| v);").await.unwrap();
    assert_eq!(v, Value::from(42));
    let code: i64 = c
        .query("kvpkg.get('missing').else(|e| e.code());")
        .decode()
        .await
        .unwrap();
    assert_eq!(code, -54);
    let v = c.query("kvpkg.keys().then(|k| k);").await.unwrap();
    assert_eq!(v, Value::Array(vec![Value::from("a")]));
    let version: String = c
        .query("module_info('kvpkg').load().version;")
        .scope("@thingsdb")
        .decode()
        .await
        .unwrap();
    assert_eq!(version, manifest["version"].as_str().unwrap());
}
