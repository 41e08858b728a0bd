//! Drives the interactive prompt through a pseudo-terminal made by
//! `script` (util-linux), with real keystrokes: lines, Tab, arrows,
//! Ctrl-R. Each key is sent only after what it answers has appeared, so
//! nothing depends on timing. Skipped, with a message, where `script` is
//! not installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{have_script, Pty};
use thingsdb_testkit::TestNode;

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

    let history = std::fs::read_to_string(history_file(home.path())).unwrap();
    assert!(history.contains("1 + 1;"), "{history}");
    assert!(history.contains("@:stuff"), "{history}");
}

/// Where the prompt keeps its history for a user with this home (and no
/// XDG_DATA_HOME).
fn history_file(home: &Path) -> std::path::PathBuf {
    home.join(".local/share/thingsdb/history")
}

const UP: &str = "\x1b[A";
const CTRL_R: &str = "\x12";
const CTRL_U: &str = "\x15";

/// A test node that knows two collections, a procedure, a type and an
/// enum, and properties at the root of `stuff` and in `.users`.
async fn node_with_names() -> TestNode {
    use rmpv::Value;
    use thingsdb_testkit::Reply;
    let node = TestNode::start().await.unwrap();
    let info = |names: &[&str]| {
        Value::Array(
            names
                .iter()
                .map(|n| Value::Map(vec![(Value::from("name"), Value::from(*n))]))
                .collect(),
        )
    };
    let list = |names: &[&str]| Value::Array(names.iter().map(|n| Value::from(*n)).collect());
    node.on_query(move |q| match q.code.as_str() {
        "collections_info();" if q.scope_str == "@thingsdb" => {
            Reply::value(info(&["stuff", "store"]))
        }
        "procedures_info();" => Reply::value(info(&["add_one", "greet"])),
        "[types_info(), enums_info()];" => {
            Reply::value(Value::Array(vec![info(&["User"]), info(&["Color"])]))
        }
        ".keys();" => Reply::value(list(&["greeting", "users"])),
        ".greeting;" => Reply::value("hi"),
        ".users.keys();" => Reply::value(list(&["count_all"])),
        _ => q.evaluate(),
    });
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tab_completes_scopes_functions_procedures_and_properties() {
    if !have_script() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let node = node_with_names().await;
    let home = tempfile::tempdir().unwrap();
    let mut p = Pty::spawn_on(
        "xterm",
        &format!("--uri {}", node.tcp_target()),
        &[("THINGSDB_PASSWORD", "pass"), ("NO_COLOR", "1")],
        home.path(),
    );
    p.expect("@thingsdb> ").await;

    // A scope, with the node's collection names.
    p.keys("@:stu\t").await;
    p.expect("@:stuff").await;
    p.keys("\r").await;
    p.expect("@:stuff> ").await;

    // A property of the collection's root, then run it.
    p.keys(".gre\t").await;
    p.expect(".greeting").await;
    p.send(";").await;
    p.expect("\"hi\"").await;
    p.expect("@:stuff> ").await;
    // On the second line of a statement too; Ctrl-C drops the statement.
    p.send("[1,").await;
    p.expect(".......> ").await;
    p.keys(".gre\t").await;
    p.expect(".greeting").await;
    p.keys("\x03").await;
    p.expect("@:stuff> ").await;
    // Deeper: the properties of `.users`, and its methods.
    p.keys(".users.cou\t").await;
    p.expect(".users.count").await;
    p.keys("_\t").await;
    p.expect(".users.count_all").await;
    p.keys(CTRL_U).await;

    // A procedure's name in run('…').
    p.keys("run('add\t").await;
    p.expect("run('add_one'").await;
    p.keys(CTRL_U).await;

    // Functions of this scope only: new_type( in a collection, a type name.
    p.keys("x = new_ty\t").await;
    p.expect("x = new_type(").await;
    p.keys(CTRL_U).await;
    p.keys("Us\t").await;
    p.expect("User").await;
    p.keys(CTRL_U).await;

    // Two Tabs list what is possible.
    p.keys("x.map\t\t").await;
    let listed = p.expect("map_wrap()").await;
    assert!(
        listed.contains("map_id()") && listed.contains("map_type()"),
        "{listed:?}"
    );
    p.keys(CTRL_U).await;

    // In @thingsdb: new_collection( completes, new_type( does not.
    p.send("@t").await;
    p.expect("@t> ").await;
    p.keys("new_coll\t").await;
    p.expect("new_collection(").await;
    p.keys(CTRL_U).await;
    p.keys("new_ty\t\t").await;
    // Nothing to complete: the bell, and the line stays as it was.
    p.expect("\x07").await;
    p.keys(CTRL_U).await;
    p.send("exit").await;
    assert!(p.finish().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrows_and_ctrl_r_recall_statements_from_earlier_sessions() {
    if !have_script() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let node = TestNode::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let args = format!("--uri {}", node.tcp_target());
    let env = [("THINGSDB_PASSWORD", "pass"), ("NO_COLOR", "1")];

    // First session: two statements, one over two lines, and one that
    // begins with a space (not kept).
    let mut p = Pty::spawn_on("xterm", &args, &env, home.path());
    p.expect("@thingsdb> ").await;
    p.send("6 * 7;").await;
    p.expect("42").await;
    p.expect("@thingsdb> ").await;
    p.send("(10 +").await;
    p.expect(".........> ").await;
    p.send("1);").await;
    p.expect("@thingsdb> ").await;
    p.send(" 100 + 1;").await;
    p.expect("101").await;
    p.expect("@thingsdb> ").await;
    p.send("exit").await;
    assert!(p.finish().await.success());
    let history = std::fs::read_to_string(history_file(home.path())).unwrap();
    assert!(history.contains("6 * 7;"), "{history:?}");
    assert!(!history.contains("100 + 1"), "{history:?}");

    // Second session: Up brings back the last statement (both lines).
    let mut p = Pty::spawn_on("xterm", &args, &env, home.path());
    p.expect("@thingsdb> ").await;
    p.keys(UP).await;
    p.expect("1);").await;
    p.keys("\r").await;
    p.expect("\n11\r\n").await;
    p.expect("@thingsdb> ").await;
    // Ctrl-R finds the older one.
    p.keys(CTRL_R).await;
    p.expect("reverse-i-search").await;
    p.keys("6 *").await;
    p.expect("6 * 7;").await;
    p.keys("\r").await;
    p.expect("\n42\r\n").await;
    p.expect("@thingsdb> ").await;
    p.send("exit").await;
    assert!(p.finish().await.success());

    // --no-history neither reads nor writes the file.
    let before = std::fs::read_to_string(history_file(home.path())).unwrap();
    let mut p = Pty::spawn_on("xterm", &format!("{args} --no-history"), &env, home.path());
    p.expect("@thingsdb> ").await;
    p.send("5 + 5;").await;
    p.expect("10").await;
    p.expect("@thingsdb> ").await;
    // Up goes back to this session's statement, and no further: the
    // earlier sessions' ones were not read.
    p.keys(UP).await;
    p.expect("5 + 5;").await;
    p.keys(UP).await;
    p.keys("\r").await;
    p.expect("\n10\r\n").await;
    p.expect("@thingsdb> ").await;
    p.send("exit").await;
    assert!(p.finish().await.success());
    let after = std::fs::read_to_string(history_file(home.path())).unwrap();
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_is_coloured_on_a_terminal_but_not_with_no_color() {
    if !have_script() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let node = TestNode::start().await.unwrap();
    node.on_query(|_| thingsdb_testkit::Reply::value("ab"));
    let home = tempfile::tempdir().unwrap();
    let args = format!("--uri {} --no-history", node.tcp_target());
    let typed = "'a' + 'b'; // c";

    let mut p = Pty::spawn_on(
        "xterm",
        &args,
        &[("THINGSDB_PASSWORD", "pass")],
        home.path(),
    );
    p.expect("@thingsdb> ").await;
    p.send(typed).await;
    let out = p.expect("\"ab\"").await;
    assert!(
        out.contains("\x1b[32m'a'\x1b[0m"),
        "no string colour: {out:?}"
    );
    assert!(
        out.contains("\x1b[90m// c\x1b[0m"),
        "no comment colour: {out:?}"
    );
    p.expect("@thingsdb> ").await;
    p.send("exit").await;
    assert!(p.finish().await.success());

    for (extra_env, pipe) in [(Some(("NO_COLOR", "1")), ""), (None, " | cat")] {
        let mut env = vec![("THINGSDB_PASSWORD", "pass")];
        env.extend(extra_env);
        let mut p = Pty::spawn_on("xterm", &format!("{args}{pipe}"), &env, home.path());
        p.expect("@thingsdb> ").await;
        p.send(typed).await;
        let out = p.expect("\"ab\"").await;
        assert!(
            !out.contains("\x1b[3"),
            "coloured with {extra_env:?}{pipe}: {out:?}"
        );
        p.expect("@thingsdb> ").await;
        p.send("exit").await;
        assert!(p.finish().await.success());
    }
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
