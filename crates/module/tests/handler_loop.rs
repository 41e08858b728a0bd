//! The module runtime fed packages in memory, as a node would send them
//! (and as a node never should): no process, no sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rmpv::Value;
use serde::Deserialize;
use thingsdb_module::{Error, ErrorCode, Handler, Module, RunError, Stopped};
use thingsdb_protocol::module::{self, FromModule};
use thingsdb_protocol::{Decoder, Frame, Header, PackageType};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{oneshot, Barrier};
use tokio::task::JoinHandle;

#[derive(Debug, Deserialize)]
struct Conf {
    #[serde(default)]
    fail: bool,
    #[serde(default)]
    panic: bool,
}

#[derive(Debug, Deserialize)]
struct Req {
    op: String,
    #[serde(default)]
    ms: u64,
    #[serde(default)]
    code: i64,
    #[serde(default)]
    value: Option<Value>,
}

struct Test {
    configured: AtomicUsize,
    /// Requests of op `meet` wait here for each other.
    meet: Barrier,
}

impl Test {
    fn new(meet: usize) -> Self {
        Test {
            configured: AtomicUsize::new(0),
            meet: Barrier::new(meet),
        }
    }
}

impl Handler for Test {
    type Config = Conf;
    type Request = Req;
    type Response = Value;

    async fn configure(&self, c: Conf) -> Result<(), Error> {
        if c.panic {
            panic!("configure panics");
        }
        if c.fail {
            return Err(Error::value("refused"));
        }
        self.configured.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn handle(&self, r: Req) -> Result<Value, Error> {
        match r.op.as_str() {
            "echo" => Ok(r.value.unwrap_or(Value::Nil)),
            "sleep" => {
                tokio::time::sleep(Duration::from_millis(r.ms)).await;
                Ok(r.value.unwrap_or(Value::Nil))
            }
            "never" => std::future::pending().await,
            "fail" => Err(Error::custom(r.code, "failed")),
            "panic" => panic!("handler panics"),
            "meet" => {
                self.meet.wait().await;
                Ok(r.value.unwrap_or(Value::Nil))
            }
            other => Err(Error::value(format!("no op {other}"))),
        }
    }

    fn timeout(&self, r: &Req) -> Option<Duration> {
        if r.op == "panic_in_timeout" {
            panic!("timeout panics");
        }
        (r.op == "quick").then(|| Duration::from_millis(5))
    }
}

/// The node's side of a module run in memory.
struct Node {
    to_module: Option<DuplexStream>,
    from_module: DuplexStream,
    decoder: Decoder,
    stop: Option<oneshot::Sender<()>>,
    run: JoinHandle<Result<Stopped, RunError>>,
}

fn start(module: Module<Test>) -> Node {
    let (node_w, module_r) = tokio::io::duplex(1 << 16);
    let (module_w, node_r) = tokio::io::duplex(1 << 16);
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(module.run_with(module_r, module_w, async move {
        if stopped.await.is_err() {
            std::future::pending::<()>().await;
        }
    }));
    Node {
        to_module: Some(node_w),
        from_module: node_r,
        decoder: Decoder::new(),
        stop: Some(stop),
        run,
    }
}

fn encoded(v: &Value) -> Vec<u8> {
    rmp_serde::to_vec_named(v).unwrap()
}

fn thing(kv: &[(&str, Value)]) -> Value {
    Value::Map(
        kv.iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

fn req_frame(id: u16, kv: &[(&str, Value)]) -> BytesMut {
    let mut b = BytesMut::new();
    module::encode_request(&mut b, id, &encoded(&thing(kv))).unwrap();
    b
}

impl Node {
    async fn send(&mut self, b: &[u8]) {
        self.to_module
            .as_mut()
            .expect("input open")
            .write_all(b)
            .await
            .unwrap();
    }

    async fn req(&mut self, id: u16, kv: &[(&str, Value)]) {
        self.send(&req_frame(id, kv)).await;
    }

    async fn conf(&mut self, v: &Value) {
        let mut b = BytesMut::new();
        module::encode_conf(&mut b, &encoded(v)).unwrap();
        self.send(&b).await;
    }

    /// The next package from the module; `None` once its output ended.
    async fn next(&mut self) -> Option<(u16, FromModule)> {
        loop {
            if let Some(f) = self.decoder.next_frame().unwrap() {
                return Some((f.id, FromModule::decode(&f).unwrap()));
            }
            let mut buf = [0u8; 4096];
            let n = self.from_module.read(&mut buf).await.unwrap();
            if n == 0 {
                self.decoder.finish().unwrap();
                return None;
            }
            self.decoder.feed(&buf[..n]);
        }
    }

    async fn expect_value(&mut self) -> (u16, Value) {
        match self.next().await {
            Some((id, FromModule::Response(b))) => {
                (id, thingsdb_protocol::decode_value(&b).unwrap())
            }
            other => panic!("expected a MODULE_RES, got {other:?}"),
        }
    }

    async fn expect_error(&mut self) -> (u16, ErrorCode, String) {
        match self.next().await {
            Some((id, FromModule::Error(e))) => (id, e.code, e.message),
            other => panic!("expected a MODULE_ERR, got {other:?}"),
        }
    }

    fn close_input(&mut self) {
        self.to_module = None;
    }

    fn shutdown(&mut self) {
        let _ = self.stop.take().expect("once").send(());
    }

    /// Closes the input, checks the module wrote nothing more, and returns
    /// how it stopped.
    async fn finish(mut self) -> Result<Stopped, RunError> {
        self.close_input();
        assert!(self.next().await.is_none(), "an unexpected package");
        self.run.await.unwrap()
    }
}

fn echo(v: impl Into<Value>) -> Vec<(&'static str, Value)> {
    vec![("op", "echo".into()), ("value", v.into())]
}

fn sleep(ms: u64, v: impl Into<Value>) -> Vec<(&'static str, Value)> {
    vec![
        ("op", "sleep".into()),
        ("ms", ms.into()),
        ("value", v.into()),
    ]
}

#[tokio::test(start_paused = true)]
async fn configurations_are_answered_in_order() {
    let mut n = start(Module::new(Test::new(1)));
    n.conf(&thing(&[])).await;
    assert_eq!(n.next().await, Some((0, FromModule::ConfOk)));
    n.conf(&thing(&[("fail", true.into())])).await;
    assert_eq!(n.next().await, Some((0, FromModule::ConfErr)));
    // A value of the wrong shape, a panic, and bytes that are no
    // MessagePack: refused, not fatal.
    n.conf(&Value::from("not a map")).await;
    n.conf(&thing(&[("panic", true.into())])).await;
    let mut b = BytesMut::new();
    module::encode_conf(&mut b, &[0xc1]).unwrap();
    n.send(&b).await;
    n.conf(&thing(&[])).await;
    for want in [
        FromModule::ConfErr,
        FromModule::ConfErr,
        FromModule::ConfErr,
        FromModule::ConfOk,
    ] {
        assert_eq!(n.next().await, Some((0, want)));
    }
    n.req(1, &echo("still here")).await;
    assert_eq!(n.expect_value().await, (1, Value::from("still here")));
    assert_eq!(n.finish().await.unwrap(), Stopped::InputClosed);
}

#[tokio::test(start_paused = true)]
async fn answers_come_as_requests_finish() {
    let mut n = start(Module::new(Test::new(1)));
    n.req(1, &sleep(100, "slow")).await;
    n.req(2, &echo("fast")).await;
    assert_eq!(n.expect_value().await, (2, Value::from("fast")));
    assert_eq!(n.expect_value().await, (1, Value::from("slow")));
    n.finish().await.unwrap();
}

#[tokio::test]
async fn requests_run_concurrently() {
    // Three requests that finish only when all three are running.
    let mut n = start(Module::new(Test::new(3)));
    for id in [10, 11, 12] {
        n.req(id, &[("op", "meet".into()), ("value", id.into())])
            .await;
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(n.expect_value().await.0);
    }
    ids.sort_unstable();
    assert_eq!(ids, [10, 11, 12]);
    n.finish().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_reused_id_drops_the_older_request() {
    let mut n = start(Module::new(Test::new(1)));
    n.req(7, &sleep(1000, "old")).await;
    n.req(7, &sleep(10, "new")).await;
    assert_eq!(n.expect_value().await, (7, Value::from("new")));
    // The old one would have answered at 1000 ms: the marker at 2000 ms
    // comes first because the old one never does.
    n.req(8, &sleep(2000, "marker")).await;
    assert_eq!(n.expect_value().await, (8, Value::from("marker")));
    // An id is free again once answered.
    n.req(7, &echo("again")).await;
    assert_eq!(n.expect_value().await, (7, Value::from("again")));
    n.finish().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn bad_requests_are_answered_with_bad_data() {
    let mut n = start(Module::new(Test::new(1)));
    let payloads: [&[u8]; 4] = [
        &[0xc1],       // not MessagePack
        &[0x01, 0x02], // two values
        &[0x81, 0xa1], // cut short
        &[0x80],       // a map without `op`
    ];
    for (id, p) in payloads.iter().enumerate() {
        let mut b = BytesMut::new();
        module::encode_request(&mut b, id as u16, p).unwrap();
        n.send(&b).await;
        let (got, code, msg) = n.expect_error().await;
        assert_eq!((got, code), (id as u16, ErrorCode::BadData), "{msg}");
    }
    n.req(9, &[("op", Value::from(5))]).await;
    assert_eq!(n.expect_error().await.1, ErrorCode::BadData);
    n.req(10, &echo(1)).await;
    assert_eq!(n.expect_value().await, (10, Value::from(1)));
    n.finish().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn unknown_and_misdirected_packages_are_ignored() {
    let mut n = start(Module::new(Test::new(1)));
    let mut b = BytesMut::new();
    // An unknown type with a correct check byte, a client QUERY, a module
    // answer, a DATA response and an empty MODULE_REQ.
    b.extend_from_slice(
        &Header {
            len: 1,
            id: 1,
            type_byte: 99,
        }
        .encode(),
    );
    b.extend_from_slice(&[0xc0]);
    thingsdb_protocol::request::encode_query(&mut b, 2, "@t", "1;", None).unwrap();
    module::encode_response(&mut b, 3, &[0x01]).unwrap();
    Frame::new(PackageType::Data, 4, Bytes::from_static(&[0x02]))
        .encode_into(&mut b)
        .unwrap();
    n.send(&b).await;
    n.req(5, &echo("after")).await;
    assert_eq!(n.expect_value().await, (5, Value::from("after")));
    let mut b = BytesMut::new();
    module::encode_request(&mut b, 6, &[]).unwrap();
    n.send(&b).await;
    assert_eq!(n.expect_error().await.1, ErrorCode::BadData);
    n.finish().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn handler_errors_keep_their_codes() {
    let mut n = start(Module::new(Test::new(1)));
    for (code, want) in [
        (-100, ErrorCode::Custom(-100)),
        (-127, ErrorCode::Custom(-127)),
        (-54, ErrorCode::Lookup),
        (-50, ErrorCode::Assert),
        // Codes a node refuses from a module become `operation`.
        (-5, ErrorCode::Operation),
        (3, ErrorCode::Operation),
    ] {
        n.req(1, &[("op", "fail".into()), ("code", code.into())])
            .await;
        let (id, got, msg) = n.expect_error().await;
        assert_eq!((id, got), (1, want), "{code}: {msg}");
    }
    for op in ["panic", "panic_in_timeout"] {
        n.req(2, &[("op", op.into())]).await;
        let (id, code, _) = n.expect_error().await;
        assert_eq!((id, code), (2, ErrorCode::Operation), "{op}");
    }
    n.req(3, &echo("alive")).await;
    assert_eq!(n.expect_value().await, (3, Value::from("alive")));
    n.finish().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn requests_past_their_timeout_are_cancelled() {
    let mut n = start(Module::new(Test::new(1)).timeout(Duration::from_secs(1)));
    n.req(1, &[("op", "never".into())]).await;
    let (id, code, msg) = n.expect_error().await;
    assert_eq!((id, code), (1, ErrorCode::Cancelled), "{msg}");
    // The handler's own timeout for a request.
    n.req(2, &[("op", "quick".into())]).await;
    n.req(3, &sleep(100, "in time")).await;
    assert_eq!(n.expect_error().await.0, 2);
    assert_eq!(n.expect_value().await, (3, Value::from("in time")));
    n.finish().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_answers_or_cancels_requests_in_flight() {
    let mut n = start(Module::new(Test::new(1)).shutdown_grace(Duration::from_secs(1)));
    n.req(1, &sleep(100, "done in time")).await;
    n.req(2, &[("op", "never".into())]).await;
    // Both reached the module before the shutdown.
    n.req(3, &echo("sync")).await;
    assert_eq!(n.expect_value().await.0, 3);
    n.shutdown();
    assert_eq!(n.expect_value().await, (1, Value::from("done in time")));
    // A request arriving while the module stops is cancelled at once.
    n.req(4, &echo("late")).await;
    assert_eq!(n.expect_error().await.0, 4);
    let (id, code, msg) = n.expect_error().await;
    assert_eq!((id, code), (2, ErrorCode::Cancelled), "{msg}");
    // The module closed its output and stopped, with the input still open.
    assert!(n.next().await.is_none());
    assert_eq!(n.run.await.unwrap().unwrap(), Stopped::Shutdown);
}

#[tokio::test(start_paused = true)]
async fn end_of_input_lets_requests_finish() {
    let mut n = start(Module::new(Test::new(1)));
    n.req(1, &sleep(300, "finished")).await;
    n.req(2, &echo("sync")).await;
    assert_eq!(n.expect_value().await.0, 2);
    n.close_input();
    assert_eq!(n.expect_value().await, (1, Value::from("finished")));
    assert_eq!(n.finish().await.unwrap(), Stopped::InputClosed);
}

#[tokio::test(start_paused = true)]
async fn an_oversized_length_ends_the_module_after_answering() {
    let mut n = start(Module::new(Test::new(1)).max_payload(1024));
    n.req(1, &sleep(100, "answered")).await;
    n.req(2, &echo("sync")).await;
    assert_eq!(n.expect_value().await.0, 2);
    n.send(&Header::new(PackageType::ModuleReq, 3, 1025).encode())
        .await;
    assert_eq!(n.expect_value().await, (1, Value::from("answered")));
    match n.finish().await {
        Err(RunError::Protocol(thingsdb_protocol::Error::PayloadTooLarge {
            len: 1025, ..
        })) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_bad_check_byte_ends_the_module() {
    let mut n = start(Module::new(Test::new(1)));
    n.send(&[0, 0, 0, 0, 1, 0, 80, 0x00]).await;
    match n.finish().await {
        Err(RunError::Protocol(thingsdb_protocol::Error::BadCheckByte { .. })) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn input_in_single_bytes_reassembles() {
    let mut n = start(Module::new(Test::new(1)));
    let mut b = BytesMut::new();
    for id in 0..5u16 {
        b.extend_from_slice(&req_frame(id, &echo(u64::from(id) * 1000)));
    }
    for byte in b.iter() {
        n.send(&[*byte]).await;
    }
    for id in 0..5u16 {
        assert_eq!(
            n.expect_value().await,
            (id, Value::from(u64::from(id) * 1000))
        );
    }
    n.finish().await.unwrap();
}

fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("[a-z]{1,4}", inner), 0..4).prop_map(|kv| {
                Value::Map(kv.into_iter().map(|(k, v)| (Value::from(k), v)).collect())
            }),
        ]
    })
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any bytes from the node: the module never panics or hangs, every
    /// package it writes is one a node accepts, and it stops with an
    /// answer or a typed error.
    #[test]
    fn any_input_gives_valid_output_or_a_typed_error(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
        valid in any::<bool>(),
    ) {
        block_on(async move {
            let mut n = start(Module::new(Test::new(1)));
            if valid {
                // A valid request first, so that the rest is read.
                n.req(1, &echo("first")).await;
            }
            for c in &chunks {
                n.send(c).await;
            }
            n.close_input();
            while let Some(f) = n.next().await {
                let _ = f;
            }
            match n.run.await.unwrap() {
                Ok(_) | Err(RunError::Protocol(_)) => {}
                Err(e) => panic!("{e}"),
            }
        });
    }

    /// Values of every kind come back unchanged, each under its own id,
    /// whatever the order the requests finish in.
    #[test]
    fn values_roundtrip_under_their_ids(
        values in proptest::collection::vec((any_value(), 0u64..50), 1..12),
    ) {
        block_on(async move {
            let mut n = start(Module::new(Test::new(1)));
            for (id, (v, ms)) in values.iter().enumerate() {
                n.req(id as u16, &sleep(*ms, v.clone())).await;
            }
            let mut got = vec![None; values.len()];
            for _ in 0..values.len() {
                let (id, v) = n.expect_value().await;
                let slot = &mut got[usize::from(id)];
                assert!(slot.is_none(), "id {id} answered twice");
                *slot = Some(v);
            }
            for (g, (v, _)) in got.into_iter().zip(values) {
                assert_eq!(g, Some(v));
            }
            n.finish().await.unwrap();
        });
    }
}

#[tokio::test(start_paused = true)]
async fn huge_durations_do_not_overflow() {
    let m = Module::new(Test::new(1))
        .timeout(Duration::MAX)
        .shutdown_grace(Duration::MAX);
    let mut n = start(m);
    n.req(1, &sleep(10, "ok")).await;
    n.close_input();
    assert_eq!(n.expect_value().await, (1, Value::from("ok")));
    assert_eq!(n.finish().await.unwrap(), Stopped::InputClosed);
}
