//! The `thingsdb` binary against a real ThingsDB node: export and import
//! of a collection with types, enums, procedures, tasks and data, and Tab
//! completion with names from the node.
//!
//! Runs when `THINGSDB_BIN` names a node binary (one is started on
//! loopback TCP ports with temporary storage) or `THINGSDB_TEST_ADDR`
//! names a running node with a fresh node's `admin`/`pass`; otherwise each
//! test says it was skipped. Collections get names of their own and are
//! removed afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{have_script, Pty};
use thingsdb_testkit::real_node::{RealNode, SKIP_MESSAGE};
use tokio::process::Command;

const HANG: Duration = Duration::from_secs(120);

async fn real() -> Option<RealNode> {
    let node = RealNode::from_env().await.unwrap()?;
    if node.tcp_target().is_none() {
        eprintln!("skipped: the real node has no TCP address");
        return None;
    }
    Some(node)
}

macro_rules! real_or_skip {
    () => {
        match real().await {
            Some(node) => node,
            None => {
                eprintln!("{SKIP_MESSAGE}");
                return;
            }
        }
    };
}

/// A name no other test run uses.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// The binary for the node, with its credentials, and these arguments.
fn thingsdb(node: &RealNode, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_thingsdb"));
    c.env_clear()
        .env("THINGSDB_USER", node.user())
        .env("THINGSDB_PASSWORD", node.password())
        .arg("--uri")
        .arg(node.tcp_target().unwrap())
        .args(["--timeout", "60"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Runs the binary; its standard output when it succeeds.
async fn ok(node: &RealNode, args: &[&str]) -> Vec<u8> {
    let out = tokio::time::timeout(HANG, thingsdb(node, args).output())
        .await
        .expect("the binary hung")
        .unwrap();
    assert!(
        out.status.success(),
        "thingsdb {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A query's result as compact JSON.
async fn json(node: &RealNode, scope: &str, code: &str) -> String {
    let out = ok(node, &["-s", scope, "--json", "-q", code]).await;
    String::from_utf8(out).unwrap()
}

/// Removes the collections when the test ends, however it ends.
struct Cleanup<'a>(&'a RealNode, Vec<String>);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for name in &self.1 {
            let _ = std::process::Command::new(env!("CARGO_BIN_EXE_thingsdb"))
                .env_clear()
                .env("THINGSDB_USER", self.0.user())
                .env("THINGSDB_PASSWORD", self.0.password())
                .args(["--uri", self.0.tcp_target().unwrap_or_default(), "-q"])
                .arg(format!(
                    "has_collection('{name}') && del_collection('{name}');"
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_export_and_import_round_trip() {
    let node = real_or_skip!();
    let src = unique("cli_src");
    let copy = unique("cli_copy");
    let with_tasks = unique("cli_tasks");
    let _cleanup = Cleanup(&node, vec![src.clone(), copy.clone(), with_tasks.clone()]);
    let s = format!("//{src}");
    ok(&node, &["-q", &format!("new_collection('{src}');")]).await;
    ok(
        &node,
        &[
            "-s",
            &s,
            "-q",
            "set_enum('Color', {RED: '#f00', GREEN: '#0f0'});
             set_type('User', {name: 'str', age: 'int', color: 'Color', friends: '[User]'});
             new_procedure('add_one', |x| x + 1);
             new_procedure('greet', |u| `Hello {u.name}!`);
             iris = User{name: 'Iris', age: 6, color: Color{GREEN}};
             .users = [iris, User{name: 'Cato', age: 7, friends: [iris]}];
             .greeting = 'hi';
             .nested = {a: {b: [1, 2.5, nil, true]}};
             .blob = bytes('raw');
             task(datetime().move('days', 1), |t| nil);
             nil;",
        ],
    )
    .await;

    // As code: the collection's types, enums and procedures.
    let code = String::from_utf8(ok(&node, &["export", &s]).await).unwrap();
    assert!(code.contains("set_type('User'"), "{code}");
    assert!(code.contains("set_enum('Color'"), "{code}");
    assert!(code.contains("new_procedure('add_one'"), "{code}");

    // As a dump, loaded into a new collection.
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("src.dump");
    let dump_arg = dump.to_str().unwrap();
    ok(&node, &["export", &s, "--dump", "-o", dump_arg]).await;
    assert!(std::fs::metadata(&dump).unwrap().len() > 0);
    ok(
        &node,
        &["import", &format!("//{copy}"), dump_arg, "--create"],
    )
    .await;
    let c = format!("//{copy}");

    // Both have the same data, types, enums and procedures, and export the
    // same code (but for the collection's name in its first line).
    for code in [
        "return thing(.id()), 9;",
        "types_info();",
        "enums_info();",
        "procedures_info();",
    ] {
        assert_eq!(
            json(&node, &s, code).await,
            json(&node, &c, code).await,
            "{code}"
        );
    }
    let copied = String::from_utf8(ok(&node, &["export", &c]).await).unwrap();
    assert_eq!(copied.replace(&copy, &src), code);
    assert_eq!(json(&node, &c, "run('add_one', 41);").await.trim(), "42");
    assert_eq!(
        json(&node, &c, "run('greet', .users[0]);").await.trim(),
        "\"Hello Iris!\""
    );
    // Tasks come along only with --tasks.
    assert_eq!(json(&node, &c, "tasks().len();").await.trim(), "0");
    let t = format!("//{with_tasks}");
    ok(&node, &["import", &t, dump_arg, "--create", "--tasks"]).await;
    assert_eq!(json(&node, &t, "tasks().len();").await.trim(), "1");

    // A collection that is not empty is refused, with the node's error.
    let out = tokio::time::timeout(HANG, thingsdb(&node, &["import", &c, dump_arg]).output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: operation (-63)"), "{stderr}");

    // Code is not a dump: the node refuses it, and the collection that
    // --create made is removed again.
    let code_file = dir.path().join("src.ti");
    std::fs::write(&code_file, &code).unwrap();
    let bad = unique("cli_bad");
    let _cleanup_bad = Cleanup(&node, vec![bad.clone()]);
    let args = [
        "import",
        &format!("//{bad}"),
        code_file.to_str().unwrap(),
        "--create",
    ];
    let out = tokio::time::timeout(HANG, thingsdb(&node, &args).output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: value (-60)"), "{stderr}");
    assert_eq!(
        json(&node, "@t", &format!("has_collection('{bad}');"))
            .await
            .trim(),
        "false"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prompt_completes_names_from_the_node() {
    let node = real_or_skip!();
    if !have_script() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let name = unique("cli_compl");
    let _cleanup = Cleanup(&node, vec![name.clone()]);
    ok(&node, &["-q", &format!("new_collection('{name}');")]).await;
    ok(
        &node,
        &[
            "-s",
            &format!("//{name}"),
            "-q",
            "set_type('Person', {name: 'str'});
             new_procedure('add_one', |x| x + 1);
             .greeting = 'hi';
             .people = {chief: Person{name: 'Iris'}};
             nil;",
        ],
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let args = format!(
        "--uri {} --user {} --no-history",
        node.tcp_target().unwrap(),
        node.user()
    );
    let mut p = Pty::spawn_on(
        "xterm",
        &args,
        &[("THINGSDB_PASSWORD", node.password()), ("NO_COLOR", "1")],
        home.path(),
    );
    p.expect("@thingsdb> ").await;
    // The collection's name, from collections_info().
    p.keys(&format!("@:{}\t", &name[..name.len() - 3])).await;
    p.expect(&format!("@:{name}")).await;
    p.keys("\r").await;
    let prompt = format!("@:{name}> ");
    p.expect(&prompt).await;
    // A property of the root, then one a level down, from keys().
    p.keys(".gre\t").await;
    p.expect(".greeting").await;
    p.send(";").await;
    p.expect("\"hi\"").await;
    p.expect(&prompt).await;
    p.keys(".people.chi\t").await;
    p.expect(".people.chief").await;
    p.keys(".na\t").await;
    p.expect(".people.chief.name").await;
    p.send(";").await;
    p.expect("\"Iris\"").await;
    p.expect(&prompt).await;
    // A procedure, a type, and a function of the collection scope.
    p.keys("run('add\t").await;
    p.expect("run('add_one'").await;
    p.send(", 41);").await;
    p.expect("42").await;
    p.expect(&prompt).await;
    p.keys("Pers\t").await;
    p.expect("Person").await;
    p.keys("\x15").await;
    p.keys("new_ty\t").await;
    p.expect("new_type(").await;
    p.keys("\x15").await;
    p.send("exit").await;
    assert!(p.finish().await.success());
}
