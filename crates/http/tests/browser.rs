//! The HTTP client in a real browser (headless Chromium through
//! wasm-bindgen-test), on the page's `fetch`.
//!
//! `cargo xtask wasm` starts the node (the testkit's, or with
//! `--real-node` a real one in a private network namespace) and a proxy
//! that adds the CORS headers a node never sends, and builds these tests
//! with the proxy's URL in `THINGSDB_WASM_HTTP` and the node's own HTTP
//! API in `THINGSDB_WASM_HTTP_DIRECT`; without them the tests say so and
//! skip. The test page comes from wasm-bindgen-test's own server, another
//! origin than either.
#![cfg(target_arch = "wasm32")]

use thingsdb_client::{Auth, Error, ErrorCode};
use thingsdb_http::{Format, HttpClient};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn api() -> Option<&'static str> {
    let url = option_env!("THINGSDB_WASM_HTTP");
    if url.is_none() {
        console_log!("skipped: THINGSDB_WASM_HTTP was not set at build time");
    }
    url
}

fn client(url: &str) -> HttpClient {
    HttpClient::builder()
        .url(url)
        .unwrap()
        .auth(Auth::password("admin", "pass"))
        .default_scope("//stuff")
        .unwrap()
        .build()
        .unwrap()
}

#[wasm_bindgen_test]
async fn queries_in_both_formats() {
    let Some(url) = api() else { return };
    let c = client(url);
    for format in [Format::MessagePack, Format::Json] {
        let v: i64 = c
            .query("a * b;")
            .var("a", &6)
            .var("b", &7)
            .format(format)
            .decode()
            .await
            .unwrap();
        assert_eq!(v, 42);
    }
    assert_eq!(c.query("1 + 1;").await.unwrap(), rmpv::Value::from(2));
}

#[wasm_bindgen_test]
async fn procedures_positional_and_named() {
    let Some(url) = api() else { return };
    let c = client(url);
    let a: i64 = c.run("add_one").arg(&41).decode().await.unwrap();
    let b: i64 = c.run("add_one").named("x", &41).decode().await.unwrap();
    assert_eq!((a, b), (42, 42));
    let e = c.run("no_such_procedure").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Lookup), "{e}");
}

#[wasm_bindgen_test]
async fn node_errors_and_auth_failures() {
    let Some(url) = api() else { return };
    let c = client(url);
    match c.query("1/0;").await {
        Err(Error::Thingsdb(t)) => {
            assert_eq!(t.code, ErrorCode::ZeroDiv);
            assert_eq!(t.message, "division or modulo by zero");
        }
        other => panic!("{other:?}"),
    }
    let bad = HttpClient::new(url, Auth::password("admin", "wrong")).unwrap();
    assert_eq!(
        bad.query("1;").await.unwrap_err().code(),
        Some(ErrorCode::Auth)
    );
}

/// A 1.9.2 node closes the connection on a custom error: fetch fails at
/// once, a typed error, not a hang.
#[wasm_bindgen_test]
async fn a_custom_error_fails_the_fetch() {
    let Some(url) = api() else { return };
    let c = client(url);
    let e = c.query("raise(err(-100, 'x'));").await.unwrap_err();
    assert!(e.is_connection_lost(), "{e:?}");
    console_log!("custom error in the browser: {}", e);
    assert_eq!(c.query("2 + 2;").await.unwrap(), rmpv::Value::from(4));
}

/// The node's own API sends no CORS headers and refuses the preflight: a
/// page from another origin cannot use it.
#[wasm_bindgen_test]
async fn the_node_itself_is_blocked_by_cors() {
    let Some(direct) = option_env!("THINGSDB_WASM_HTTP_DIRECT") else {
        console_log!("skipped: THINGSDB_WASM_HTTP_DIRECT was not set at build time");
        return;
    };
    let e = client(direct).query("1;").await.unwrap_err();
    assert!(e.is_connection_lost(), "{e:?}");
    assert!(e.to_string().contains("CORS"), "{e}");
}
