//! Drives the interactive prompt through a pseudo-terminal made by
//! `script` (util-linux). Each line is sent only after the prompt asking
//! for it has appeared, so nothing depends on timing. Skipped, with a
//! message, where `script` is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use thingsdb_testkit::TestNode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const HANG: Duration = Duration::from_secs(120);

fn have_script() -> bool {
    std::process::Command::new("script")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The binary inside a pseudo-terminal; everything it prints (stdout and
/// stderr, terminal escapes included) comes out of one stream.
struct Pty {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    seen: String,
}

impl Pty {
    fn spawn(args: &str, env: &[(&str, &str)], home: &Path) -> Pty {
        let mut cmd = Command::new("script");
        cmd.args([
            "-qfec",
            &format!("{} {args}", env!("CARGO_BIN_EXE_thingsdb")),
            "/dev/null",
        ])
        .env_clear()
        .env("HOME", home)
        .env("TERM", "dumb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        Pty {
            stdin: child.stdin.take().unwrap(),
            stdout: child.stdout.take().unwrap(),
            child,
            seen: String::new(),
        }
    }

    /// Reads until `text` has been printed (after what was already
    /// waited for); returns what came before it.
    async fn expect(&mut self, text: &str) -> String {
        let read = async {
            loop {
                if let Some(i) = self.seen.find(text) {
                    let before = self.seen[..i].to_string();
                    self.seen.drain(..i + text.len());
                    return before;
                }
                let mut buf = [0u8; 4096];
                let n = self.stdout.read(&mut buf).await.unwrap();
                assert!(n > 0, "output ended before {text:?}; saw {:?}", self.seen);
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        };
        tokio::time::timeout(HANG, read)
            .await
            .unwrap_or_else(|_| panic!("no {text:?} in time"))
    }

    async fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.write_all(b"\r").await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Everything printed until the end, and the exit status.
    async fn finish_with_output(mut self) -> (std::process::ExitStatus, String) {
        let mut rest = Vec::new();
        tokio::time::timeout(HANG, self.stdout.read_to_end(&mut rest))
            .await
            .expect("the output did not end")
            .unwrap();
        let seen = self.seen.clone() + &String::from_utf8_lossy(&rest);
        (self.finish().await, seen)
    }

    async fn finish(mut self) -> std::process::ExitStatus {
        tokio::time::timeout(HANG, self.child.wait())
            .await
            .expect("the prompt did not exit")
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_runs_statements_switches_scope_and_keeps_history() {
    if !have_script() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let node = TestNode::start().await.unwrap();
    node.on_query(|q| {
        if q.code == "scope;" {
            thingsdb_testkit::Reply::value(q.scope_str.as_str())
        } else {
            q.evaluate()
        }
    });
    let home = tempfile::tempdir().unwrap();
    let mut p = Pty::spawn(
        &format!("--uri {}", node.tcp_target()),
        &[("THINGSDB_PASSWORD", "pass")],
        home.path(),
    );
    p.expect("@thingsdb> ").await;
    p.send("1 + 1;").await;
    let out = p.expect("@thingsdb> ").await;
    assert!(
        out.contains("\n2\r\n") || out.contains("\r\n2\r\n"),
        "{out:?}"
    );

    p.send("@:stuff").await;
    p.expect("@:stuff> ").await;
    p.send("scope;").await;
    let out = p.expect("@:stuff> ").await;
    assert!(out.contains("\"@:stuff\""), "{out:?}");

    // A statement over three lines.
    p.send("(6 *").await;
    p.expect(".......> ").await;
    p.send(" (3 +").await;
    p.expect(".......> ").await;
    p.send("4));").await;
    let out = p.expect("@:stuff> ").await;
    assert!(out.contains("42"), "{out:?}");

    // Errors are printed and the prompt goes on.
    p.send("1 / 0;").await;
    let out = p.expect("@:stuff> ").await;
    assert!(
        out.contains("error: zero_div (-58): division or modulo by zero"),
        "{out:?}"
    );
    p.send("@nope").await;
    let out = p.expect("@:stuff> ").await;
    assert!(out.contains("error: invalid scope \"@nope\""), "{out:?}");

    p.send("?").await;
    let out = p.expect("@:stuff> ").await;
    assert!(out.contains("switch to collection NAME"), "{out:?}");

    p.send("exit").await;
    let status = p.finish().await;
    assert!(status.success(), "{status:?}");

    let history = std::fs::read_to_string(home.path().join(".thingsdb_history")).unwrap();
    assert!(history.contains("1 + 1;"), "{history}");
    assert!(history.contains("@:stuff"), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_asks_for_the_password_without_echo() {
    if !have_script() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let node = TestNode::start().await.unwrap();
    node.add_user("iris", "s3cr3t-pw");
    let home = tempfile::tempdir().unwrap();
    let mut p = Pty::spawn(
        &format!("--uri {} --user iris -q '20 + 22;'", node.tcp_target()),
        &[],
        home.path(),
    );
    p.expect("Password for iris: ").await;
    p.send("s3cr3t-pw").await;
    let (status, rest) = p.finish_with_output().await;
    assert!(status.success(), "{status:?}: {rest:?}");
    assert!(rest.contains("42"), "{rest:?}");
    assert!(
        !rest.contains("s3cr3t-pw"),
        "the password was echoed: {rest:?}"
    );
}
