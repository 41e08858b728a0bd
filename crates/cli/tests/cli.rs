//! Drives the `thingsdb` binary against an in-process test node.
//!
//! Each test starts a `TestNode` in its own multi-threaded runtime (so the
//! node keeps serving while the test waits for the child process) and runs
//! the binary with a clean environment. Timeouts here are hang guards only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rmpv::Value;
use thingsdb_testkit::thingsdb_protocol::ErrorCode;
use thingsdb_testkit::{Reply, TestNode};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// How long any one child may take before the test calls it hung.
const HANG: Duration = Duration::from_secs(120);

/// The binary with a clean environment, talking to `target`.
fn thingsdb(target: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_thingsdb"));
    c.env_clear()
        .arg("--uri")
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// The binary for `target`, with the admin's password in the environment.
fn admin(target: &str) -> Command {
    let mut c = thingsdb(target);
    c.env("THINGSDB_PASSWORD", "pass");
    c
}

struct Out {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Out {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

async fn output(mut cmd: Command) -> Out {
    let out = tokio::time::timeout(HANG, cmd.output())
        .await
        .expect("the binary hung")
        .expect("the binary runs");
    Out {
        status: out.status,
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

async fn output_with_stdin(mut cmd: Command, input: &str) -> Out {
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(HANG, child.wait_with_output())
        .await
        .expect("the binary hung")
        .unwrap();
    Out {
        status: out.status,
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn assert_ok(out: &Out) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        out.stdout,
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_query_prints_the_result() {
    let node = TestNode::start().await.unwrap();
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["-q", "1 + 1;"]);
    let out = output(cmd).await;
    assert_ok(&out);
    assert_eq!(out.stdout, "2\n");
    assert_eq!(out.stderr, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn things_print_as_pretty_or_compact_json() {
    let node = TestNode::start().await.unwrap();
    node.on_query(|q| {
        if q.code == "thing;" {
            Reply::value(Value::Map(vec![
                (Value::from("#"), Value::from(12)),
                (Value::from("name"), Value::from("Iris")),
                (Value::from("data"), Value::Binary(b"hi".to_vec())),
                (
                    Value::from("list"),
                    Value::Array(vec![Value::from(1), Value::F64(1.5), Value::Nil]),
                ),
            ]))
        } else {
            q.evaluate()
        }
    });
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["-q", "thing;", "--json"]);
    let out = output(cmd).await;
    assert_ok(&out);
    assert_eq!(
        out.stdout,
        "{\"#\":12,\"name\":\"Iris\",\"data\":\"aGk=\",\"list\":[1,1.5,null]}\n"
    );

    let mut cmd = admin(&node.tcp_target());
    cmd.args(["-q", "thing;"]);
    let out = output(cmd).await;
    assert_ok(&out);
    assert!(out.stdout.lines().count() > 5, "{}", out.stdout);
    assert!(
        out.stdout.starts_with("{\n  \"#\": 12,\n"),
        "{}",
        out.stdout
    );
    let parsed: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(parsed["data"], "aGk=");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_errors_print_name_and_code_and_exit_1() {
    let node = TestNode::start().await.unwrap();
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["-q", "1 / 0;"]);
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr,
        "error: zero_div (-58): division or modulo by zero\n"
    );

    let mut cmd = admin(&node.tcp_target());
    cmd.args(["--json", "-q", "1 +;"]);
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.starts_with("error: syntax (-52): "),
        "{}",
        out.stderr
    );

    // A custom error raised by code keeps its code.
    node.on_query(|_| Reply::error(ErrorCode::from_code(-100), "custom trouble"));
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["-q", "raise(err(-100, 'custom trouble'));"]);
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(1));
    assert_eq!(out.stderr, "error: custom (-100): custom trouble\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vars_are_passed_as_json_values() {
    let node = TestNode::start().await.unwrap();
    let mut cmd = admin(&node.tcp_target());
    cmd.args([
        "-s", "//stuff", "--var", "a=6", "--var", "b=7", "-q", "a * b;",
    ]);
    let out = output(cmd).await;
    assert_ok(&out);
    assert_eq!(out.stdout, "42\n");

    node.on_query(|q| {
        assert_eq!(q.scope_str, "@:stuff");
        Reply::value(q.var("v").cloned().unwrap_or(Value::Nil))
    });
    let mut cmd = admin(&node.tcp_target());
    cmd.args([
        "-s",
        "@:stuff",
        "--json",
        "--var",
        r#"v={"name": "Iris", "tags": ["a", 1, null, 2.5], "big": 18446744073709551615}"#,
        "-q",
        "v;",
    ]);
    let out = output(cmd).await;
    assert_ok(&out);
    let got: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        got,
        serde_json::json!({"name": "Iris", "tags": ["a", 1, null, 2.5], "big": 18446744073709551615u64})
    );

    // Bad JSON is a usage error, caught before connecting.
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["--var", "s=text", "-q", "s;"]);
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("--var s: invalid JSON"),
        "{}",
        out.stderr
    );
}

fn add_one(node: &TestNode) {
    node.procedure("add_one", |a| {
        match a.param(0, "x").and_then(Value::as_i64) {
            Some(x) => Reply::value(x + 1),
            None => Reply::error(ErrorCode::Type, "expected an integer"),
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_positional_or_named_arguments() {
    let node = TestNode::start().await.unwrap();
    add_one(&node);
    for args in ["[41]", r#"{"x": 41}"#] {
        let mut cmd = admin(&node.tcp_target());
        cmd.args(["-s", "//stuff", "run", "add_one", args]);
        let out = output(cmd).await;
        assert_ok(&out);
        assert_eq!(out.stdout, "42\n", "{args}");
    }

    // A procedure's error exits 1; an unknown procedure is a lookup error.
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["run", "add_one", r#"["x"]"#]);
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(1));
    assert_eq!(out.stderr, "error: type (-61): expected an integer\n");

    let mut cmd = admin(&node.tcp_target());
    cmd.args(["run", "nope", "[]"]);
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr.starts_with("error: lookup (-54): "),
        "{}",
        out.stderr
    );

    // Arguments that are neither an array nor an object: usage.
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["run", "add_one", "41"]);
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("ARGS_JSON must be"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_from_a_file_or_standard_input() {
    let node = TestNode::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("q.ti");
    std::fs::write(&file, "6 *\n7;\n").unwrap();
    let mut cmd = admin(&node.tcp_target());
    cmd.arg("-f").arg(&file);
    let out = output(cmd).await;
    assert_ok(&out);
    assert_eq!(out.stdout, "42\n");

    let mut cmd = admin(&node.tcp_target());
    cmd.args(["-f", "-"]);
    let out = output_with_stdin(cmd, "2 * 21;").await;
    assert_ok(&out);
    assert_eq!(out.stdout, "42\n");

    // Not a terminal and no -q: standard input is the query.
    let cmd = admin(&node.tcp_target());
    let out = output_with_stdin(cmd, "(1 + 2)\n * 3;\n").await;
    assert_ok(&out);
    assert_eq!(out.stdout, "9\n");

    // Nothing at all on standard input: usage.
    let out = output(admin(&node.tcp_target())).await;
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("no query given"), "{}", out.stderr);

    let mut cmd = admin(&node.tcp_target());
    cmd.arg("-f").arg(dir.path().join("missing.ti"));
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("cannot read"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_websocket_and_unix_socket() {
    let node = TestNode::start().await.unwrap();
    for target in [node.ws_url(), node.unix_target(), node.thingsdb_url()] {
        let mut cmd = admin(&target);
        cmd.args(["-q", "20 + 22;", "--json"]);
        let out = output(cmd).await;
        assert_ok(&out);
        assert_eq!(out.stdout, "42\n", "{target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_custom_ca_or_insecure() {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let node = TestNode::builder()
        .tls(ck.cert.pem(), ck.signing_key.serialize_pem())
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ck.cert.pem()).unwrap();
    let tls = node.thingsdbs_url().unwrap();
    let wss = node.wss_url().unwrap();

    for target in [&tls, &wss] {
        let mut cmd = admin(target);
        cmd.arg("--tls-ca").arg(&ca).args(["-q", "1 + 1;"]);
        let out = output(cmd).await;
        assert_ok(&out);
        assert_eq!(out.stdout, "2\n", "{target}");
    }

    // Without the CA the certificate is refused...
    let mut cmd = admin(&tls);
    cmd.args(["--timeout", "20", "-q", "1 + 1;"]);
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("cannot connect to"), "{}", out.stderr);

    // ...unless checking is turned off, which is loudly said.
    let mut cmd = admin(&tls);
    cmd.args(["--insecure", "-q", "1 + 1;"]);
    let out = output(cmd).await;
    assert_ok(&out);
    assert_eq!(out.stdout, "2\n");
    assert!(out.stderr.contains("NOT checked"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_exit_2_with_an_auth_error() {
    let node = TestNode::builder()
        .token("g00d-t0ken", "admin")
        .start()
        .await
        .unwrap();
    let mut cmd = thingsdb(&node.tcp_target());
    cmd.env("THINGSDB_PASSWORD", "wr0ng-pass")
        .args(["-q", "1 + 1;"]);
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("authentication failed"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("auth (-56)"), "{}", out.stderr);
    assert!(!out.stderr.contains("wr0ng-pass"), "{}", out.stderr);

    let mut cmd = thingsdb(&node.tcp_target());
    cmd.env("THINGSDB_TOKEN", "bad-t0ken")
        .args(["-q", "1 + 1;"]);
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("auth (-56)"), "{}", out.stderr);
    assert!(!out.stderr.contains("bad-t0ken"), "{}", out.stderr);

    // The right token works, and wins over a wrong password.
    let mut cmd = thingsdb(&node.tcp_target());
    cmd.env("THINGSDB_TOKEN", "g00d-t0ken")
        .env("THINGSDB_PASSWORD", "wr0ng-pass")
        .args(["-q", "1 + 1;"]);
    let out = output(cmd).await;
    assert_ok(&out);
    assert_eq!(out.stdout, "2\n");

    // Another user, by flag and environment.
    node.add_user("iris", "secret");
    let mut cmd = thingsdb(&node.tcp_target());
    cmd.env("THINGSDB_USER", "iris")
        .env("THINGSDB_PASSWORD", "secret")
        .args(["-q", "1 + 1;"]);
    assert_ok(&output(cmd).await);
    let mut cmd = thingsdb(&node.tcp_target());
    cmd.args(["--user", "iris", "--password", "secret", "-q", "1 + 1;"]);
    assert_ok(&output(cmd).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_password_without_a_terminal_is_a_clear_error() {
    let node = TestNode::start().await.unwrap();
    let mut cmd = thingsdb(&node.tcp_target());
    cmd.args(["-q", "1 + 1;"]);
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("THINGSDB_PASSWORD"), "{}", out.stderr);
    // Nothing was sent to the node.
    assert_eq!(node.counters().auth_ok + node.counters().auth_failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_node_fails_quickly_and_clearly() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let mut cmd = admin(&format!("127.0.0.1:{port}"));
    cmd.args(["--timeout", "5", "-q", "1 + 1;"]);
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.starts_with(&format!(
            "error: cannot connect to thingsdb://127.0.0.1:{port}"
        )),
        "{}",
        out.stderr
    );
    // A hang guard, far above the 5 s asked for.
    assert!(started.elapsed() < Duration::from_secs(60));

    let dir = tempfile::tempdir().unwrap();
    let mut cmd = admin(&format!("unix:{}", dir.path().join("none.sock").display()));
    cmd.args(["--timeout", "5", "-q", "1 + 1;"]);
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("cannot connect to unix:"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2() {
    let node = TestNode::start().await.unwrap();
    let cases: &[&[&str]] = &[
        &["-s", "stuff", "-q", "1;"],
        &["-q", "1;", "-f", "x"],
        &["-q", "1;", "run", "p"],
        &["--var", "a=1", "run", "p"],
        &["watch", "chat"],
        &["--uri", "http://localhost", "-q", "1;"],
        &["--timeout", "0", "-q", "1;"],
        &["--no-such-flag"],
    ];
    for args in cases {
        let mut cmd = admin(&node.tcp_target());
        cmd.args(*args);
        let out = output(cmd).await;
        assert_eq!(out.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
    // `watch` without a collection scope says how to give one.
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["watch", "chat"]);
    let out = output(cmd).await;
    assert!(out.stderr.contains("--scope //stuff"), "{}", out.stderr);
    assert_eq!(node.counters().auth_ok + node.counters().auth_failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_documents_exit_codes_and_hides_secrets() {
    let mut cmd = thingsdb("127.0.0.1:1");
    cmd.env("THINGSDB_PASSWORD", "hunter2-secret")
        .env("THINGSDB_TOKEN", "t0ken-secret")
        .arg("--help");
    let out = output(cmd).await;
    assert_ok(&out);
    assert!(out.stdout.contains("Exit status"), "{}", out.stdout);
    assert!(out.stdout.contains("THINGSDB_PASSWORD"));
    assert!(!out.stdout.contains("hunter2-secret"), "{}", out.stdout);
    assert!(!out.stdout.contains("t0ken-secret"), "{}", out.stdout);
}

/// A watching child and its stdout lines.
struct Watcher {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Watcher {
    fn spawn(mut cmd: Command) -> Watcher {
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        Watcher {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    async fn next_json(&mut self) -> serde_json::Value {
        let line = tokio::time::timeout(HANG, self.lines.next_line())
            .await
            .expect("no event line in time")
            .unwrap()
            .expect("stdout closed");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    async fn wait(mut self) -> (ExitStatus, String) {
        let status = tokio::time::timeout(HANG, self.child.wait())
            .await
            .expect("watch did not stop")
            .unwrap();
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            use tokio::io::AsyncReadExt;
            stderr.read_to_string(&mut err).await.unwrap();
        }
        (status, err)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_events_until_interrupted() {
    let node = TestNode::start().await.unwrap();
    let room = node.create_room("stuff", Some("chat"));
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["watch", "chat", "--scope", "//stuff", "--json"]);
    let mut w = Watcher::spawn(cmd);

    let joined = w.next_json().await;
    assert_eq!(joined, serde_json::json!({"kind": "joined", "room": room}));
    // Joined: the node knows it, so events emitted now reach the watcher.
    assert_eq!(node.room_joiners("stuff", room).len(), 1);
    node.emit("stuff", room, "new-message", &[Value::from("Hello!")]);
    node.emit(
        "stuff",
        room,
        "update",
        &[
            Value::Map(vec![
                (Value::from("#"), Value::from(5)),
                (Value::from("n"), Value::from(1)),
            ]),
            Value::Binary(vec![1, 2, 3]),
        ],
    );
    assert_eq!(
        w.next_json().await,
        serde_json::json!({"kind": "emitted", "room": room, "event": "new-message", "args": ["Hello!"]})
    );
    assert_eq!(
        w.next_json().await,
        serde_json::json!({"kind": "emitted", "room": room, "event": "update", "args": [{"#": 5, "n": 1}, "AQID"]})
    );

    // Ctrl-C stops it with status 0.
    let pid = w.child.id().unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let (status, stderr) = w.wait().await;
    assert!(status.success(), "{status:?}: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_by_id_stops_when_the_room_is_deleted() {
    let node = TestNode::start().await.unwrap();
    let room = node.create_room("stuff", None);
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["-s", "@:stuff", "watch", &room.to_string()]);
    let mut w = Watcher::spawn(cmd);
    // Pretty output: read until the first block closes.
    let mut block = String::new();
    loop {
        let line = tokio::time::timeout(HANG, w.lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        block.push_str(&line);
        block.push('\n');
        if line == "}" {
            break;
        }
    }
    let joined: serde_json::Value = serde_json::from_str(&block).unwrap();
    assert_eq!(joined["kind"], "joined");
    assert!(node.delete_room("stuff", room));
    let mut rest = String::new();
    while let Some(line) = tokio::time::timeout(HANG, w.lines.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        rest.push_str(&line);
        rest.push('\n');
    }
    let deleted: serde_json::Value = serde_json::from_str(&rest).unwrap();
    assert_eq!(
        deleted,
        serde_json::json!({"kind": "deleted", "room": room})
    );
    let (status, stderr) = w.wait().await;
    assert!(status.success(), "{status:?}: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_prints_the_connection_and_each_request_with_its_time() {
    let node = TestNode::start().await.unwrap();
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["--verbose", "-q", "1 + 1;"]);
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "2");
    let port = node.tcp_addr().port();
    for want in [
        format!("thingsdb.connect{{server.address=\"127.0.0.1\" server.port={port}}}"),
        "thingsdb.authenticate".to_string(),
        format!("INFO connected node=thingsdb://127.0.0.1:{port}"),
        "db.operation.name=\"query\"".to_string(),
        "db.query.text=\"1 + 1;\"".to_string(),
        "thingsdb.reply_time_us=".to_string(),
        "stopped reason=the client is closed".to_string(),
    ] {
        assert!(out.stderr.contains(&want), "{want} not in\n{}", out.stderr);
    }
    // Without it, nothing but the result.
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["-q", "1 + 1;"]);
    let out = output(cmd).await;
    assert_eq!(out.stderr, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_an_unknown_room_is_a_lookup_error() {
    let node = TestNode::start().await.unwrap();
    let mut cmd = admin(&node.ws_url());
    cmd.args(["-s", "//stuff", "watch", "nope"]);
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    // Watching shows the connection's life on standard error, then the
    // error.
    assert!(
        out.stderr.contains("INFO connected node=ws://"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("error: lookup (-54)")),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_a_room_found_by_code_over_a_unix_socket() {
    let node = TestNode::start().await.unwrap();
    let room = node.create_room("stuff", None);
    node.on_query(move |q| {
        if q.code == ".chat.id();" {
            Reply::value(room)
        } else {
            q.evaluate()
        }
    });
    let mut cmd = admin(&node.unix_target());
    cmd.args(["-s", "//stuff", "--json", "watch", "--code", ".chat.id();"]);
    let mut w = Watcher::spawn(cmd);
    assert_eq!(w.next_json().await["kind"], "joined");
    node.emit("stuff", room, "ping", &[]);
    assert_eq!(
        w.next_json().await,
        serde_json::json!({"kind": "emitted", "room": room, "event": "ping", "args": []})
    );
    w.child.start_kill().unwrap();
    let _ = w.wait().await;
}

/// A test node whose `export()` gives code or a dump, and whose
/// `import()` keeps what it was sent (by collection).
fn exporting_node(node: &TestNode) -> std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>> {
    let imported = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = imported.clone();
    node.add_collection("copy");
    node.add_collection("other");
    let stuff = |q: &thingsdb_testkit::Query| matches!(q.scope_str.as_str(), "//stuff" | "@:stuff");
    node.on_query(move |q| match q.code.as_str() {
        "export();" if stuff(q) => Reply::value("new_type('User');"),
        "export({dump: true});" if stuff(q) => {
            Reply::value(Value::Binary(vec![0x93, 0x01, 0xff, 0x00, b'\n']))
        }
        "export();" | "export({dump: true});" => Reply::error(
            ErrorCode::Lookup,
            "function `export` is undefined in the `@thingsdb` scope",
        ),
        "new_collection(name);" => Reply::value(Value::Nil),
        "import(dump, {import_tasks: import_tasks});" => {
            let vars: Value = Value::Map(
                q.vars
                    .iter()
                    .map(|(k, v)| (Value::from(k.as_str()), v.clone()))
                    .collect(),
            );
            seen.lock().unwrap().push((q.scope_str.clone(), vars));
            Reply::value(Value::Nil)
        }
        _ => q.evaluate(),
    });
    imported
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_prints_code_or_writes_the_dump() {
    let node = TestNode::start().await.unwrap();
    let _imported = exporting_node(&node);
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["export", "//stuff"]);
    let out = output(cmd).await;
    assert_ok(&out);
    assert_eq!(out.stdout, "new_type('User');\n");

    // The collection may come from --scope; the dump's bytes go out as they are.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stuff.dump");
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["-s", "//stuff", "export", "--dump", "-o"])
        .arg(&file);
    let out = output(cmd).await;
    assert_ok(&out);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        [0x93, 0x01, 0xff, 0x00, b'\n']
    );
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["export", "@:stuff", "--dump"]);
    let raw = cmd.output().await.unwrap();
    assert!(raw.status.success());
    assert_eq!(raw.stdout, [0x93, 0x01, 0xff, 0x00, b'\n']);

    // Not a collection: a usage error before connecting.
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["export", "@thingsdb"]);
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("export works on a collection"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_sends_the_dump_with_its_options() {
    let node = TestNode::start().await.unwrap();
    let imported = exporting_node(&node);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stuff.dump");
    std::fs::write(&file, [0x93, 0x01, 0xff]).unwrap();

    let mut cmd = admin(&node.tcp_target());
    cmd.args(["import", "//copy"]).arg(&file);
    assert_ok(&output(cmd).await);
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["import", "@:other", "-", "--tasks", "--create"]);
    assert_ok(&output_with_stdin(cmd, "\u{1}dump").await);

    let got = imported.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    let var = |v: &Value, name: &str| {
        v.as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(name)))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(got[0].0, "//copy");
    assert_eq!(
        var(&got[0].1, "dump"),
        Some(Value::Binary(vec![0x93, 0x01, 0xff]))
    );
    assert_eq!(var(&got[0].1, "import_tasks"), Some(Value::from(false)));
    assert_eq!(got[1].0, "@:other");
    assert_eq!(
        var(&got[1].1, "dump"),
        Some(Value::Binary(b"\x01dump".to_vec()))
    );
    assert_eq!(var(&got[1].1, "import_tasks"), Some(Value::from(true)));

    // A missing or empty file is a usage error.
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["import", "//copy"])
        .arg(dir.path().join("missing.dump"));
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("cannot read"), "{}", out.stderr);
    let empty = dir.path().join("empty.dump");
    std::fs::write(&empty, b"").unwrap();
    let mut cmd = admin(&node.tcp_target());
    cmd.args(["import", "//copy"]).arg(&empty);
    let out = output(cmd).await;
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("is empty"), "{}", out.stderr);
}
