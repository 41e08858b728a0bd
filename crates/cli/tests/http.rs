//! `thingsdb --http URL` and `thingsdb status URL`: against the testkit's
//! HTTP API and status port always, and against a real node when one is
//! available with its HTTP ports (`THINGSDB_BIN` with `THINGSDB_BIN_WS=1`,
//! in a network namespace of its own: `cargo xtask real-node`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use thingsdb_client::ErrorCode;
use thingsdb_testkit::real_node::{RealNode, SKIP_MESSAGE};
use thingsdb_testkit::thingsdb_protocol::NodeStatus;
use thingsdb_testkit::{Reply, TestNode};
use tokio::process::Command;

/// Runs the binary; exit code, standard output, standard error.
async fn thingsdb(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_thingsdb"))
        .env_clear()
        .env("THINGSDB_USER", "admin")
        .env("THINGSDB_PASSWORD", "pass")
        .args(["--timeout", "30"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn queries_and_procedures_over_http_on_the_testkit() {
    let node = TestNode::start().await.unwrap();
    node.procedure("add_one", |a| {
        match a.param(0, "x").and_then(|v| v.as_i64()) {
            Some(x) => Reply::value(x + 1),
            None => Reply::error(ErrorCode::Type, "expecting an integer"),
        }
    });
    let http = node.serve_http().await.unwrap();
    let url = http.api_url();
    let (code, out, err) = thingsdb(&[
        "--http", &url, "-s", "//stuff", "--var", "a=6", "--var", "b=7", "-q", "a * b;", "--json",
    ])
    .await;
    assert_eq!((code, out.trim()), (0, "42"), "{err}");
    let (code, out, err) =
        thingsdb(&["--http", &url, "-s", "//stuff", "run", "add_one", "[41]"]).await;
    assert_eq!((code, out.trim()), (0, "42"), "{err}");
    let (code, out, err) = thingsdb(&[
        "--http",
        &url,
        "-s",
        "//stuff",
        "run",
        "add_one",
        r#"{"x": 1}"#,
    ])
    .await;
    assert_eq!((code, out.trim()), (0, "2"), "{err}");
    // A ThingsDB error: exit 1, printed as the socket CLI prints it.
    let (code, _, err) = thingsdb(&["--http", &url, "-q", "1/0;"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("zero_div (-58): division or modulo by zero"),
        "{err}"
    );
    // Wrong credentials.
    let (code, _, err) = thingsdb(&["--http", &url, "--password", "wrong", "-q", "1;"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("authentication failed"), "{err}");
    // What HTTP cannot do.
    let (code, _, err) = thingsdb(&["--http", &url, "-s", "//stuff", "watch", "chat"]).await;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = thingsdb(&["--http", "thingsdb://x", "-q", "1;"]).await;
    assert_eq!(code, 2, "{err}");
}

#[tokio::test]
async fn status_exits_0_or_1_on_the_testkit() {
    let node = TestNode::start().await.unwrap();
    let http = node.serve_http().await.unwrap();
    let url = http.status_url();
    let (code, out, _) = thingsdb(&["status", &url]).await;
    assert_eq!((code, out.trim()), (0, "OK"));
    let (code, out, _) = thingsdb(&["status", &url, "--check", "status"]).await;
    assert_eq!((code, out.trim()), (0, "READY"));
    http.set_status(NodeStatus::ShuttingDown);
    let (code, out, err) = thingsdb(&["status", &url]).await;
    assert_eq!((code, out.trim()), (1, "NOK"), "{err}");
    let (code, out, _) = thingsdb(&["status", &format!("{url}/healthy")]).await;
    assert_eq!((code, out.trim()), (0, "OK"));
    drop(http);
    let (code, _, err) = thingsdb(&["status", &url]).await;
    assert_eq!(code, 1, "{err}");
}

#[tokio::test]
async fn over_http_and_status_against_a_real_node() {
    let Some(node) = RealNode::from_env().await.unwrap() else {
        eprintln!("{SKIP_MESSAGE}");
        return;
    };
    let (Some(api), Some(status)) = (node.http_api_url(), node.http_status_url()) else {
        eprintln!("{SKIP_MESSAGE} (and THINGSDB_BIN_WS=1 for the HTTP ports)");
        return;
    };
    let (code, out, err) = thingsdb(&[
        "--http", api, "-s", "//stuff", "--var", "a=6", "-q", "a * 7;",
    ])
    .await;
    assert_eq!((code, out.trim()), (0, "42"), "{err}");
    let (code, _, err) = thingsdb(&["--http", api, "-q", "raise(err(-100, 'x'));"]).await;
    assert_eq!(
        code, 2,
        "a closed connection is not a ThingsDB error: {err}"
    );
    assert!(err.contains("custom error"), "{err}");
    let (code, out, err) = thingsdb(&["status", status]).await;
    assert_eq!((code, out.trim()), (0, "OK"), "{err}");
    let (code, out, err) = thingsdb(&["status", status, "--check", "status"]).await;
    assert_eq!((code, out.trim()), (0, "READY"), "{err}");
}
