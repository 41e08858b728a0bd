//! The example module as a process, driven over its stdin and stdout the
//! way a node drives it, without a node: the end of stdin and SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use bytes::BytesMut;
use rmpv::Value;
use thingsdb_module::ErrorCode;
use thingsdb_protocol::module::{self, FromModule};
use thingsdb_protocol::Decoder;

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    decoder: Decoder,
}

fn spawn() -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvcache"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("THINGSDB_MODULE_LOG", "info")
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().unwrap();
    Proc {
        child,
        stdin,
        stdout,
        decoder: Decoder::new(),
    }
}

fn value(v: &Value) -> Vec<u8> {
    rmp_serde::to_vec_named(v).unwrap()
}

fn thing(kv: &[(&str, Value)]) -> Value {
    Value::Map(
        kv.iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

impl Proc {
    fn send(&mut self, b: &[u8]) {
        let w = self.stdin.as_mut().unwrap();
        w.write_all(b).unwrap();
        w.flush().unwrap();
    }

    fn req(&mut self, id: u16, kv: &[(&str, Value)]) {
        let mut b = BytesMut::new();
        module::encode_request(&mut b, id, &value(&thing(kv))).unwrap();
        self.send(&b);
    }

    fn next(&mut self) -> Option<(u16, FromModule)> {
        loop {
            if let Some(f) = self.decoder.next_frame().unwrap() {
                return Some((f.id, FromModule::decode(&f).unwrap()));
            }
            let mut buf = [0u8; 4096];
            let n = self.stdout.read(&mut buf).unwrap();
            if n == 0 {
                self.decoder.finish().unwrap();
                return None;
            }
            self.decoder.feed(&buf[..n]);
        }
    }

    /// Waits for the exit; returns whether it succeeded, and stderr.
    fn wait(mut self) -> (bool, String) {
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.success(), err)
    }
}

#[test]
fn the_module_answers_and_exits_when_stdin_ends() {
    let mut p = spawn();
    let mut b = BytesMut::new();
    module::encode_conf(&mut b, &value(&thing(&[("max_keys", 1.into())]))).unwrap();
    p.send(&b);
    assert_eq!(p.next(), Some((0, FromModule::ConfOk)));
    p.req(
        1,
        &[
            ("op", "set".into()),
            ("key", "a".into()),
            ("value", 7.into()),
        ],
    );
    assert!(matches!(p.next(), Some((1, FromModule::Response(_)))));
    p.req(
        2,
        &[
            ("op", "set".into()),
            ("key", "b".into()),
            ("value", 8.into()),
        ],
    );
    match p.next() {
        Some((2, FromModule::Error(e))) => assert_eq!(e.code, ErrorCode::MaxQuota),
        other => panic!("{other:?}"),
    }
    p.req(3, &[("op", "get".into()), ("key", "a".into())]);
    match p.next() {
        Some((3, FromModule::Response(v))) => {
            assert_eq!(thingsdb_protocol::decode_value(&v).unwrap(), Value::from(7));
        }
        other => panic!("{other:?}"),
    }
    p.stdin = None; // the node closes the module's stdin
    assert_eq!(p.next(), None);
    let (ok, stderr) = p.wait();
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("kvcache module stopped (InputClosed)"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn sigterm_cancels_requests_in_flight_and_exits_while_stdin_is_open() {
    let mut p = spawn();
    p.req(
        1,
        &[
            ("op", "get".into()),
            ("key", "x".into()),
            ("wait", 600.into()),
        ],
    );
    // Answered after the `get` was taken: the `get` is in flight.
    p.req(2, &[("op", "keys".into())]);
    assert!(matches!(p.next(), Some((2, FromModule::Response(_)))));
    let pid = p.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    match p.next() {
        Some((1, FromModule::Error(e))) => assert_eq!(e.code, ErrorCode::Cancelled, "{e}"),
        other => panic!("{other:?}"),
    }
    // The output ends and the process exits though stdin stays open.
    assert_eq!(p.next(), None);
    assert!(p.stdin.is_some());
    let (ok, stderr) = p.wait();
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("kvcache module stopped (Shutdown)"),
        "{stderr}"
    );
}
