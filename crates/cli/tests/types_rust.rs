//! `thingsdb types --rust`: a collection's types printed as Rust that
//! compiles. The test model (the derive crate's) goes to a node, the
//! binary prints it back, and the output must equal
//! `generated/model_types.rs`, which this test compiles and checks
//! against the model: the same types, field for field.
//!
//! In CI the node is the testkit's, answering `types_info()` and
//! `enums_info()` with the model's definitions; with `THINGSDB_BIN` a real
//! node gets the types by a migration first. `UPDATE_GOLDEN=1` rewrites
//! the file from the testkit's run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../derive/tests/common/model.rs"]
mod model;

#[path = "generated/model_types.rs"]
mod generated;

use std::process::Stdio;
use std::time::Duration;

use thingsdb_client::typed::{EnumValue, Schema, Thing};
use thingsdb_client::{Auth, Client, Value};
use thingsdb_testkit::real_node::{RealNode, SKIP_MESSAGE};
use thingsdb_testkit::{Reply, TestNode};
use tokio::process::Command;

const GOLDEN: &str = include_str!("generated/model_types.rs");

/// The model as the collection holds it after the migration to v2.
fn schema() -> Schema {
    Schema::new()
        .with::<model::v2::Person>()
        .with::<model::v1::Category>()
}

/// `types_info()` and `enums_info()` of the model, as a node answers.
fn infos(schema: &Schema) -> (Value, Value) {
    let types = schema
        .types()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Value::Map(vec![
                ("type_id".into(), (i as u64).into()),
                ("name".into(), t.name.as_str().into()),
                ("wrap_only".into(), false.into()),
                ("hide_id".into(), false.into()),
                (
                    "fields".into(),
                    Value::Array(
                        t.fields
                            .iter()
                            .map(|f| {
                                Value::Array(vec![
                                    f.name.as_str().into(),
                                    f.spec.to_string().into(),
                                ])
                            })
                            .collect(),
                    ),
                ),
                ("methods".into(), Value::Map(vec![])),
            ])
        })
        .collect();
    let enums = schema
        .enums()
        .iter()
        .map(|e| {
            Value::Map(vec![
                ("name".into(), e.name.as_str().into()),
                (
                    "members".into(),
                    Value::Array(
                        e.members
                            .iter()
                            .map(|m| {
                                let v: Value = match &m.value {
                                    EnumValue::Str(s) => s.as_str().into(),
                                    EnumValue::Int(i) => (*i).into(),
                                };
                                Value::Array(vec![m.name.as_str().into(), v])
                            })
                            .collect(),
                    ),
                ),
            ])
        })
        .collect();
    (Value::Array(types), Value::Array(enums))
}

/// `thingsdb types //stuff --rust` against `target`.
async fn types_rust(target: &str, user: &str, password: &str) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(env!("CARGO_BIN_EXE_thingsdb"))
            .env_clear()
            .args([
                "--uri", target, "--user", user, "types", "//stuff", "--rust",
            ])
            .env("THINGSDB_PASSWORD", password)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("the binary hung")
    .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn fields<T: Thing>() -> Vec<(String, String)> {
    T::type_def()
        .fields
        .into_iter()
        .map(|f| (f.name, f.spec.to_string()))
        .collect()
}

#[test]
fn the_golden_file_compiles_and_is_the_model_field_for_field() {
    // It compiled (it is a module of this test); now it must say what the
    // model says.
    assert_eq!(fields::<generated::Person>(), fields::<model::v2::Person>());
    assert_eq!(fields::<generated::Team>(), fields::<model::v2::Team>());
    assert_eq!(
        fields::<generated::Address>(),
        fields::<model::v1::Address>()
    );
    assert_eq!(
        fields::<generated::Category>(),
        fields::<model::v1::Category>()
    );
    let g = Schema::new()
        .with::<generated::Person>()
        .with::<generated::Category>();
    assert_eq!(g.enums(), schema().enums());
    // And it reads what the model writes.
    let p = generated::Address {
        id: None,
        street: "Elm".into(),
        number: Some(3),
    };
    let bytes = rmp_serde::to_vec_named(&p).unwrap();
    let back: model::v1::Address = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!((back.street.as_str(), back.number), ("Elm", Some(3)));
}

#[tokio::test]
async fn types_rust_prints_the_golden_file_from_the_testkit() {
    let node = TestNode::start().await.unwrap();
    let (types, enums) = infos(&schema());
    node.on_query(move |q| match q.code.as_str() {
        "types_info();" => Reply::value(types.clone()),
        "enums_info();" => Reply::value(enums.clone()),
        _ => q.evaluate(),
    });
    let printed = types_rust(&node.tcp_target(), "admin", "pass").await;
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/generated/model_types.rs"
        );
        std::fs::write(path, &printed).unwrap();
        return;
    }
    assert_eq!(
        printed, GOLDEN,
        "the output changed: UPDATE_GOLDEN=1 rewrites the file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_rust_prints_the_golden_file_from_a_real_node() {
    let Some(node) = RealNode::from_env().await.unwrap() else {
        eprintln!("{SKIP_MESSAGE}");
        return;
    };
    let Some(target) = node.tcp_target() else {
        eprintln!("{SKIP_MESSAGE}");
        return;
    };
    let client = Client::builder()
        .target(target)
        .unwrap()
        .auth(Auth::password(node.user(), node.password()))
        .connect()
        .await
        .unwrap();
    let stuff = client.collection("stuff").unwrap();
    stuff
        .migrate(&Schema::new().with::<model::v1::Person>())
        .await
        .unwrap();
    // The node's own text for what the migration made.
    let plan = stuff.migrate(&schema()).await.unwrap();
    println!("{plan}");
    let printed = types_rust(target, node.user(), node.password()).await;
    println!("{printed}");
    assert_eq!(printed, GOLDEN);
}
