//! A pseudo-terminal driver for the prompt's tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const HANG: Duration = Duration::from_secs(120);

/// True when `script` (util-linux) can make a pseudo-terminal.
pub fn have_script() -> bool {
    std::process::Command::new("script")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The binary inside a pseudo-terminal; everything it prints (stdout and
/// stderr, terminal escapes included) comes out of one stream.
pub struct Pty {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    seen: String,
}

impl Pty {
    /// The prompt on a terminal rustyline can only read lines from.
    pub fn spawn(args: &str, env: &[(&str, &str)], home: &Path) -> Pty {
        Pty::spawn_on("dumb", args, env, home)
    }

    /// The prompt on an xterm: line editing, Tab, arrows, Ctrl-R, colours.
    pub fn spawn_on(term: &str, args: &str, env: &[(&str, &str)], home: &Path) -> Pty {
        let mut cmd = Command::new("script");
        cmd.args([
            "-qfec",
            &format!("{} {args}", env!("CARGO_BIN_EXE_thingsdb")),
            "/dev/null",
        ])
        .env_clear()
        .env("HOME", home)
        .env("TERM", term)
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
    pub async fn expect(&mut self, text: &str) -> String {
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

    pub async fn send(&mut self, line: &str) {
        self.keys(line).await;
        self.keys("\r").await;
    }

    /// Types `keys` as they are (no Enter).
    pub async fn keys(&mut self, keys: &str) {
        self.stdin.write_all(keys.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Everything printed until the end, and the exit status.
    pub async fn finish_with_output(mut self) -> (std::process::ExitStatus, String) {
        let mut rest = Vec::new();
        tokio::time::timeout(HANG, self.stdout.read_to_end(&mut rest))
            .await
            .expect("the output did not end")
            .unwrap();
        let seen = self.seen.clone() + &String::from_utf8_lossy(&rest);
        (self.finish().await, seen)
    }

    pub async fn finish(mut self) -> std::process::ExitStatus {
        tokio::time::timeout(HANG, self.child.wait())
            .await
            .expect("the prompt did not exit")
            .unwrap()
    }
}
