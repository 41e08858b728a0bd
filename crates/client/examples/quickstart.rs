//! Connect, query with variables, run a procedure.
//!
//! ```text
//! cargo run -p thingsdb-client --example quickstart
//! THINGSDB_PASSWORD=pass THINGSDB_URI=thingsdb://localhost:9200 cargo run -p thingsdb-client --example quickstart
//! ```

mod common;

use serde::{Deserialize, Serialize};
use thingsdb_client::Client;
use thingsdb_testkit::Reply;

#[derive(Serialize)]
struct Vars {
    a: i64,
    b: i64,
}

#[derive(Debug, Deserialize)]
struct Info {
    answer: i64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let node = common::node().await?;
    if let Some(tk) = &node.testkit {
        // The testkit knows only arithmetic; teach it this example's code.
        tk.procedure("add_one", |args| {
            match args.param(0, "x").and_then(|v| v.as_i64()) {
                Some(x) => Reply::value(x + 1),
                None => Reply::error(thingsdb_client::ErrorCode::Type, "expected an integer"),
            }
        });
        tk.on_query(|q| match q.code.as_str() {
            "{answer: a * b};" => {
                let a = q.var("a").and_then(|v| v.as_i64()).unwrap_or(0);
                let b = q.var("b").and_then(|v| v.as_i64()).unwrap_or(0);
                Reply::value(rmpv::Value::Map(vec![("answer".into(), (a * b).into())]))
            }
            _ => q.evaluate(),
        });
    }

    let client = Client::builder()
        .target(&node.uri)?
        .auth(node.auth.clone())
        .default_scope("//stuff")?
        .connect()
        .await?;

    // A query: the result as an rmpv::Value ...
    let two = client.query("1 + 1;").await?;
    println!("1 + 1 = {two}");

    // ... or straight into a Rust type, with variables from a struct.
    let info: Info = client
        .query("{answer: a * b};")
        .vars(&Vars { a: 6, b: 7 })
        .decode()
        .await?;
    println!("the answer is {}", info.answer);

    // A procedure (created on a real node if it is missing).
    if !node.is_testkit() {
        client
            .query("if (!has_procedure('add_one')) { new_procedure('add_one', |x| x + 1); }; nil;")
            .await?;
    }
    let n: i64 = client.run("add_one").arg(&41).decode().await?;
    println!("add_one(41) = {n}");

    // Errors carry ThingsDB's code.
    match client.query("1 / 0;").await {
        Err(e) => println!("1 / 0 fails as expected: {e}"),
        Ok(v) => println!("unexpected: {v}"),
    }

    client.close().await?;
    Ok(())
}
