//! The management wrappers against the testkit: each sends the code,
//! scope and variables a node expects (no user text in the code), and
//! decodes replies shaped as a ThingsDB 1.9.2 node sends them (captured
//! from one), including fields this crate does not know. The testkit is
//! used as an application would use it: a query handler answers the
//! management code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::{connect, Via};
use rmpv::Value;
use thingsdb_client::management::{Access, CommitHistory, HistoryFilter, LogLevel};
use thingsdb_client::{Client, ErrorCode};
use thingsdb_testkit::{Query, Reply, TestNode};

/// A testkit node that answers management code from a table and records
/// every query it got.
struct Mock {
    node: TestNode,
    seen: Arc<Mutex<Vec<Query>>>,
    replies: Arc<Mutex<HashMap<String, Reply>>>,
    client: Client,
}

impl Mock {
    async fn start() -> Mock {
        let node = TestNode::start().await.unwrap();
        let seen: Arc<Mutex<Vec<Query>>> = Arc::default();
        let replies: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let (s, r) = (seen.clone(), replies.clone());
        node.on_query(move |q| {
            s.lock().unwrap().push(q.clone());
            r.lock().unwrap().get(&q.code).cloned().unwrap_or_else(|| {
                Reply::error(ErrorCode::Lookup, format!("no reply for {:?}", q.code))
            })
        });
        let client = connect(&node, Via::Tcp).await;
        Mock {
            node,
            seen,
            replies,
            client,
        }
    }

    fn reply(&self, code: &str, value: impl Into<Value>) {
        self.reply_with(code, Reply::value(value));
    }

    fn reply_with(&self, code: &str, reply: Reply) {
        self.replies.lock().unwrap().insert(code.to_string(), reply);
    }

    /// The last query: scope, code and vars (sorted by name).
    fn last(&self) -> (String, String, Vec<(String, Value)>) {
        let q = self.seen.lock().unwrap().last().cloned().unwrap();
        let mut vars = q.vars.clone();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        (q.scope_str, q.code, vars)
    }

    fn assert_last(&self, scope: &str, code: &str, vars: &[(&str, Value)]) {
        let (s, c, v) = self.last();
        assert_eq!((s.as_str(), c.as_str()), (scope, code));
        let want: Vec<(String, Value)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(v, want, "vars of {code}");
    }
}

fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

fn s(v: &str) -> Value {
    Value::from(v)
}

fn collection_reply(name: &str, history: Value) -> Value {
    map(&[
        ("collection_id", 2.into()),
        ("name", s(name)),
        ("created_at", 1795638950.into()),
        ("things", 1.into()),
        ("time_zone", s("UTC")),
        ("default_deep", 1.into()),
        ("next_free_id", 3.into()),
        ("commit_history", history),
        ("ano_types", 0.into()),
        ("a_field_from_the_future", s("ignored")),
    ])
}

fn user_reply() -> Value {
    map(&[
        ("user_id", 1.into()),
        ("name", s("admin")),
        ("created_at", 1795638950.into()),
        ("has_password", true.into()),
        (
            "access",
            Value::Array(vec![
                map(&[("scope", s("@node")), ("privileges", s("FULL"))]),
                map(&[
                    ("scope", s("@collection:stuff")),
                    ("privileges", s("QUERY|CHANGE")),
                ]),
            ]),
        ),
        (
            "tokens",
            Value::Array(vec![map(&[
                ("key", s("OOC8JFh2pxSWh3M4+XgeoB")),
                ("status", s("OK")),
                ("expiration_time", s("2026-11-26T20:35:57Z")),
                ("description", s("desc")),
                ("created_on", s("2026-11-25T20:35:57Z")),
            ])]),
        ),
        (
            "whitelists",
            map(&[
                ("rooms", Value::Array(vec![])),
                ("procedures", Value::Array(vec![s("abc"), s("/^x/i")])),
            ]),
        ),
    ])
}

#[tokio::test]
async fn collections() {
    let m = Mock::start().await;
    let t = m.client.thingsdb();
    m.reply("new_collection(name); nil;", Value::Nil);
    t.new_collection("x'); del_collection('stuff")
        .await
        .unwrap();
    m.assert_last(
        "@thingsdb",
        "new_collection(name); nil;",
        &[("name", s("x'); del_collection('stuff"))],
    );
    m.reply("del_collection(name);", Value::Nil);
    t.del_collection("a").await.unwrap();
    m.assert_last("@thingsdb", "del_collection(name);", &[("name", s("a"))]);
    m.reply("rename_collection(name, new_name);", Value::Nil);
    t.rename_collection("a", "b").await.unwrap();
    m.assert_last(
        "@thingsdb",
        "rename_collection(name, new_name);",
        &[("name", s("a")), ("new_name", s("b"))],
    );
    m.reply(
        "collection_info(name);",
        collection_reply("a", s("disabled")),
    );
    let info = t.collection_info("a").await.unwrap();
    assert_eq!(info.name, "a");
    assert_eq!(info.commit_history, Some(CommitHistory::Disabled(())));
    m.reply(
        "collections_info();",
        Value::Array(vec![collection_reply("a", 7.into())]),
    );
    let all = t.collections_info().await.unwrap();
    assert_eq!(all[0].commit_history, Some(CommitHistory::Commits(7)));
    m.assert_last("@thingsdb", "collections_info();", &[]);
    m.reply("has_collection(name);", true);
    assert!(t.has_collection("a").await.unwrap());
    m.reply("set_time_zone(name, zone);", Value::Nil);
    t.set_time_zone("a", "Europe/Amsterdam").await.unwrap();
    m.assert_last(
        "@thingsdb",
        "set_time_zone(name, zone);",
        &[("name", s("a")), ("zone", s("Europe/Amsterdam"))],
    );
    m.reply("time_zones_info();", Value::Array(vec![s("UTC")]));
    assert_eq!(t.time_zones_info().await.unwrap(), ["UTC"]);
    m.reply("set_default_deep(name, deep);", Value::Nil);
    t.set_default_deep("a", 2).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "set_default_deep(name, deep);",
        &[("deep", 2.into()), ("name", s("a"))],
    );
    m.reply("set_history(scope, state);", Value::Nil);
    t.set_history("//a", true).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "set_history(scope, state);",
        &[("scope", s("//a")), ("state", true.into())],
    );
    // Commit history: every option travels as a variable, nil when unset.
    let hist = "history({scope: scope, contains: contains, match: is_nil(pattern) ? nil : regex(pattern), id: id, first: first, last: last, before: is_nil(before) ? nil : datetime(before), after: is_nil(after) ? nil : datetime(after), has_err: has_err, detail: detail});";
    m.reply(
        hist,
        Value::Array(vec![map(&[
            ("id", 1.into()),
            ("created_on", s("2026-11-25T20:00:00Z")),
            ("by", s("admin")),
            ("message", s("add x")),
            ("err_msg", s("zero_div")),
        ])]),
    );
    let f = HistoryFilter {
        last: Some(3),
        before: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
        match_regex: Some("^add".into()),
        ..HistoryFilter::new("//a")
    };
    let commits = t.history(&f, true).await.unwrap();
    assert_eq!(commits[0].err_msg.as_deref(), Some("zero_div"));
    m.assert_last(
        "@thingsdb",
        hist,
        &[
            ("after", Value::Nil),
            ("before", 1_800_000_000u64.into()),
            ("contains", Value::Nil),
            ("detail", true.into()),
            ("first", Value::Nil),
            ("has_err", Value::Nil),
            ("id", Value::Nil),
            ("last", 3.into()),
            ("pattern", s("^add")),
            ("scope", s("//a")),
        ],
    );
    let del = "del_history({scope: scope, contains: contains, match: is_nil(pattern) ? nil : regex(pattern), id: id, first: first, last: last, before: is_nil(before) ? nil : datetime(before), after: is_nil(after) ? nil : datetime(after), has_err: has_err});";
    m.reply(del, 2);
    assert_eq!(t.del_history(&HistoryFilter::new("//a")).await.unwrap(), 2);
    let (_, code, vars) = m.last();
    assert_eq!((code.as_str(), vars.len()), (del, 9));

    // The node's errors come through typed.
    m.reply_with(
        "has_collection(name);",
        Reply::error(ErrorCode::Value, "bad name"),
    );
    let e = t.has_collection("?").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Value));
    // A reply of the wrong shape is a decode error, not a panic.
    m.reply("collection_info(name);", s("not a map"));
    assert!(matches!(
        t.collection_info("a").await.unwrap_err(),
        thingsdb_client::Error::Decode(_)
    ));
}

#[tokio::test]
async fn users_tokens_access() {
    let m = Mock::start().await;
    let t = m.client.thingsdb();
    m.reply("new_user(name); nil;", Value::Nil);
    t.new_user("iris").await.unwrap();
    m.assert_last("@thingsdb", "new_user(name); nil;", &[("name", s("iris"))]);
    for (code, _) in [
        ("del_user(name);", ()),
        ("rename_user(name, new_name);", ()),
        ("set_password(name, password);", ()),
        ("whitelist_add(user, list, value);", ()),
        ("whitelist_add(user, list);", ()),
        ("whitelist_del(user, list, value);", ()),
        ("whitelist_del(user, list);", ()),
        ("grant(scope, user, mask);", ()),
        ("revoke(scope, user, mask);", ()),
        ("del_token(key);", ()),
        ("del_expired();", ()),
    ] {
        m.reply(code, Value::Nil);
    }
    t.del_user("iris").await.unwrap();
    m.assert_last("@thingsdb", "del_user(name);", &[("name", s("iris"))]);
    t.rename_user("a", "b").await.unwrap();
    m.assert_last(
        "@thingsdb",
        "rename_user(name, new_name);",
        &[("name", s("a")), ("new_name", s("b"))],
    );
    t.set_password("a", Some("pw")).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "set_password(name, password);",
        &[("name", s("a")), ("password", s("pw"))],
    );
    t.set_password("a", None).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "set_password(name, password);",
        &[("name", s("a")), ("password", Value::Nil)],
    );
    t.whitelist_add("a", "rooms", Some("chat")).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "whitelist_add(user, list, value);",
        &[("list", s("rooms")), ("user", s("a")), ("value", s("chat"))],
    );
    t.whitelist_add("a", "rooms", None).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "whitelist_add(user, list);",
        &[("list", s("rooms")), ("user", s("a"))],
    );
    t.whitelist_del("a", "procedures", Some("p")).await.unwrap();
    t.whitelist_del("a", "procedures", None).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "whitelist_del(user, list);",
        &[("list", s("procedures")), ("user", s("a"))],
    );
    t.grant("//stuff", "a", Access::QUERY | Access::RUN)
        .await
        .unwrap();
    m.assert_last(
        "@thingsdb",
        "grant(scope, user, mask);",
        &[
            ("mask", 0x11.into()),
            ("scope", s("//stuff")),
            ("user", s("a")),
        ],
    );
    t.revoke("@node", "a", Access::FULL).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "revoke(scope, user, mask);",
        &[
            ("mask", 0x1f.into()),
            ("scope", s("@node")),
            ("user", s("a")),
        ],
    );

    m.reply("user_info(name);", user_reply());
    m.reply("user_info();", user_reply());
    m.reply("users_info();", Value::Array(vec![user_reply()]));
    m.reply("has_user(name);", false);
    let u = t.user_info(Some("admin")).await.unwrap();
    assert_eq!(u.name, "admin");
    assert_eq!(u.access[0].flags(), Access::FULL);
    assert_eq!(u.access[1].flags(), Access::QUERY | Access::CHANGE);
    assert_eq!(u.tokens[0].description, "desc");
    assert_eq!(u.whitelists["procedures"], ["abc", "/^x/i"]);
    assert_eq!(t.user_info(None).await.unwrap(), u);
    m.assert_last("@thingsdb", "user_info();", &[]);
    assert_eq!(t.users_info().await.unwrap(), vec![u]);
    assert!(!t.has_user("x").await.unwrap());

    // Tokens: each combination of expiry and description.
    for code in [
        "new_token(user);",
        "new_token(user, datetime(expires));",
        "new_token(user, nil, description);",
        "new_token(user, datetime(expires), description);",
    ] {
        m.reply(code, s("TOKEN"));
    }
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    assert_eq!(t.new_token("a", None, None).await.unwrap(), "TOKEN");
    m.assert_last("@thingsdb", "new_token(user);", &[("user", s("a"))]);
    t.new_token("a", Some(at), None).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "new_token(user, datetime(expires));",
        &[("expires", 1_800_000_000u64.into()), ("user", s("a"))],
    );
    t.new_token("a", None, Some("d")).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "new_token(user, nil, description);",
        &[("description", s("d")), ("user", s("a"))],
    );
    t.new_token("a", Some(at), Some("d")).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "new_token(user, datetime(expires), description);",
        &[
            ("description", s("d")),
            ("expires", 1_800_000_000u64.into()),
            ("user", s("a")),
        ],
    );
    let before_epoch = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
    assert!(matches!(
        t.new_token("a", Some(before_epoch), None)
            .await
            .unwrap_err(),
        thingsdb_client::Error::BadArgument(_)
    ));
    m.reply("has_token(key);", true);
    assert!(t.has_token("k").await.unwrap());
    t.del_token("k").await.unwrap();
    m.assert_last("@thingsdb", "del_token(key);", &[("key", s("k"))]);
    t.del_expired().await.unwrap();
    m.assert_last("@thingsdb", "del_expired();", &[]);
}

#[tokio::test]
async fn modules() {
    let m = Mock::start().await;
    let t = m.client.thingsdb();
    for code in [
        "new_module(name, source, conf);",
        "new_module(name, source);",
        "deploy_module(name, data);",
        "del_module(name);",
        "rename_module(name, new_name);",
        "set_module_conf(name, conf);",
        "set_module_scope(name, scope);",
        "refresh_module(name);",
        "restart_module(name);",
    ] {
        m.reply(code, Value::Nil);
    }
    t.new_module("m", "m.py", Some(&("x", 1))).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "new_module(name, source, conf);",
        &[
            ("conf", Value::Array(vec![s("x"), 1.into()])),
            ("name", s("m")),
            ("source", s("m.py")),
        ],
    );
    t.new_module("m", "m.py", None::<&()>).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "new_module(name, source);",
        &[("name", s("m")), ("source", s("m.py"))],
    );
    t.deploy_module("m", Some(b"\x00\x01")).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "deploy_module(name, data);",
        &[("data", Value::Binary(vec![0, 1])), ("name", s("m"))],
    );
    t.deploy_module("m", None).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "deploy_module(name, data);",
        &[("data", Value::Nil), ("name", s("m"))],
    );
    t.del_module("m").await.unwrap();
    t.rename_module("m", "n").await.unwrap();
    m.assert_last(
        "@thingsdb",
        "rename_module(name, new_name);",
        &[("name", s("m")), ("new_name", s("n"))],
    );
    t.set_module_conf("m", None::<&()>).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "set_module_conf(name, conf);",
        &[("conf", Value::Nil), ("name", s("m"))],
    );
    t.set_module_scope("m", Some("//stuff")).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "set_module_scope(name, scope);",
        &[("name", s("m")), ("scope", s("//stuff"))],
    );
    t.refresh_module("m").await.unwrap();
    m.client.node().restart_module("m").await.unwrap();
    m.assert_last("@node", "restart_module(name);", &[("name", s("m"))]);

    let info = map(&[
        ("name", s("m2")),
        ("created_at", 1795638997.into()),
        ("status", s("installing module...")),
        ("scope", Value::Nil),
        ("conf", map(&[("x", 1.into())])),
        ("github_owner", s("thingsdb")),
        ("github_repo", s("ThingsDB-Module-Demo")),
        ("github_with_token", false.into()),
        ("github_ref", s("default")),
    ]);
    m.reply("module_info(name);", info.clone());
    m.reply("modules_info();", Value::Array(vec![info]));
    m.reply("has_module(name);", true);
    let i = t.module_info("m2").await.unwrap();
    assert_eq!(i.github_repo.as_deref(), Some("ThingsDB-Module-Demo"));
    assert_eq!(i.scope, None);
    assert_eq!(i.conf, Some(map(&[("x", 1.into())])));
    assert_eq!(t.modules_info().await.unwrap(), vec![i]);
    assert!(t.has_module("m2").await.unwrap());
}

#[tokio::test]
async fn node_scope_backups_and_nodes() {
    let m = Mock::start().await;
    let n = m.client.node();
    m.reply(
        "node_info();",
        map(&[
            ("node_id", 0.into()),
            ("version", s("1.9.2")),
            ("status", s("READY")),
            ("zone", 0.into()),
            ("log_level", s("WARNING")),
            ("node_name", s("127.0.0.1")),
            ("client_port", 19300.into()),
            ("node_port", 19320.into()),
            ("uptime", Value::F64(7.19)),
            ("http_api_port", s("disabled")),
            ("libuv_version", s("1.44.2")),
        ]),
    );
    let info = n.node_info().await.unwrap();
    assert_eq!((info.client_port, info.ws_port), (19300, None));
    m.assert_last("@node", "node_info();", &[]);
    m.reply(
        "nodes_info();",
        Value::Array(vec![map(&[
            ("node_id", 0.into()),
            ("syntax_version", s("v1")),
            ("status", s("READY")),
            ("zone", 0.into()),
            ("committed_change_id", 2.into()),
            ("stored_change_id", 1.into()),
            ("node_name", s("127.0.0.1")),
            ("port", 19320.into()),
            ("stream", Value::Nil),
        ])]),
    );
    let nodes = n.nodes_info().await.unwrap();
    assert_eq!((nodes[0].port, nodes[0].stream.clone()), (19320, None));
    m.reply(
        "counters();",
        map(&[
            ("queries_success", 10.into()),
            ("queries_with_error", 0.into()),
            ("longest_query_duration", Value::F64(5.0936e-05)),
            ("started_at", 1795638950.into()),
        ]),
    );
    assert_eq!(n.counters().await.unwrap().queries_success, 10);
    for code in [
        "reset_counters();",
        "set_log_level(level);",
        "shutdown();",
        "del_backup(id, delete_files);",
        "del_node(id);",
        "restore(file, {take_access: take_access, restore_tasks: restore_tasks});",
    ] {
        m.reply(code, Value::Nil);
    }
    n.reset_counters().await.unwrap();
    n.set_log_level(LogLevel::Debug).await.unwrap();
    m.assert_last("@node", "set_log_level(level);", &[("level", 0.into())]);
    n.set_log_level(LogLevel::Critical).await.unwrap();
    m.assert_last("@node", "set_log_level(level);", &[("level", 4.into())]);
    n.shutdown().await.unwrap();
    m.assert_last("@node", "shutdown();", &[]);

    let n1 = m.client.node_by_id(0).unwrap();
    n1.reset_counters().await.unwrap();
    m.assert_last("@node:0", "reset_counters();", &[]);

    // Backups.
    let once = "new_backup(file, is_nil(start) ? nil : datetime(start), repeat);";
    let kept = "new_backup(file, is_nil(start) ? nil : datetime(start), repeat, max_files);";
    m.reply(once, 1);
    m.reply(kept, 0);
    assert_eq!(
        n.new_backup("/b/x.tar.gz", None, None, None).await.unwrap(),
        1
    );
    m.assert_last(
        "@node",
        once,
        &[
            ("file", s("/b/x.tar.gz")),
            ("repeat", 0.into()),
            ("start", Value::Nil),
        ],
    );
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    n.new_backup("/b/{DATE}.tar.gz", Some(at), Some(3600), Some(2))
        .await
        .unwrap();
    m.assert_last(
        "@node",
        kept,
        &[
            ("file", s("/b/{DATE}.tar.gz")),
            ("max_files", 2.into()),
            ("repeat", 3600.into()),
            ("start", 1_800_000_000u64.into()),
        ],
    );
    let backup = map(&[
        ("id", 0.into()),
        ("created_at", 1795638997.into()),
        ("file_template", s("/b/bk_{DATE}.tar.gz")),
        ("next_run", s("2026-11-26 20:36:37Z")),
        ("repeat", 3600.into()),
        ("max_files", 2.into()),
        ("files", Value::Array(vec![])),
    ]);
    m.reply("backup_info(id);", backup.clone());
    m.reply("backups_info();", Value::Array(vec![backup]));
    m.reply("has_backup(id);", true);
    m.reply("backups_ok();", true);
    let b = n.backup_info(0).await.unwrap();
    assert_eq!((b.repeat, b.max_files), (Some(3600), Some(2)));
    assert_eq!(n.backups_info().await.unwrap(), vec![b]);
    assert!(n.has_backup(0).await.unwrap());
    assert!(n.backups_ok().await.unwrap());
    n.del_backup(0, true).await.unwrap();
    m.assert_last(
        "@node",
        "del_backup(id, delete_files);",
        &[("delete_files", true.into()), ("id", 0.into())],
    );

    // Nodes of the cluster, in @thingsdb.
    let t = m.client.thingsdb();
    m.reply("new_node(secret, address, port);", 1);
    m.reply("new_node(secret, address);", 2);
    m.reply("has_node(id);", true);
    assert_eq!(t.new_node("s", "10.0.0.2", Some(9221)).await.unwrap(), 1);
    m.assert_last(
        "@thingsdb",
        "new_node(secret, address, port);",
        &[
            ("address", s("10.0.0.2")),
            ("port", 9221.into()),
            ("secret", s("s")),
        ],
    );
    assert_eq!(t.new_node("s", "10.0.0.3", None).await.unwrap(), 2);
    t.del_node(2).await.unwrap();
    m.assert_last("@thingsdb", "del_node(id);", &[("id", 2.into())]);
    assert!(t.has_node(1).await.unwrap());
    t.restore("/b/x.tar.gz", true, false).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "restore(file, {take_access: take_access, restore_tasks: restore_tasks});",
        &[
            ("file", s("/b/x.tar.gz")),
            ("restore_tasks", false.into()),
            ("take_access", true.into()),
        ],
    );
}

#[tokio::test]
async fn procedures_and_tasks_in_both_scopes() {
    let m = Mock::start().await;
    let proc_info = map(&[
        ("doc", s("")),
        ("name", s("addone")),
        ("created_at", 1795638957.into()),
        ("definition", s("|x| x + 1")),
        ("with_side_effects", false.into()),
        ("arguments", Value::Array(vec![s("x")])),
    ]);
    let task = map(&[
        ("id", 3.into()),
        ("at", s("2026-11-26T20:35:57Z")),
        ("owner", s("admin")),
        ("closure", s("||nil")),
        ("err", Value::Nil),
        ("args", Value::Array(vec![])),
    ]);
    for code in [
        "new_procedure(name, closure(code)); nil;",
        "mod_procedure(name, closure(code));",
        "del_procedure(name);",
        "rename_procedure(name, new_name);",
        "task(id).del();",
        "task(id).cancel();",
    ] {
        m.reply(code, Value::Nil);
    }
    m.reply("procedure_info(name);", proc_info.clone());
    m.reply("procedures_info();", Value::Array(vec![proc_info]));
    m.reply("has_procedure(name);", true);
    m.reply("procedure_doc(name);", s("Adds one."));
    m.reply("task(datetime(start), closure(code), args).id();", 3);
    m.reply(
        "tasks().map(|t| {id: t.id(), at: t.at(), owner: t.owner(), closure: t.closure(), err: t.err(), args: t.args()});",
        Value::Array(vec![task.clone()]),
    );
    m.reply(
        "t = task(id); {id: t.id(), at: t.at(), owner: t.owner(), closure: t.closure(), err: t.err(), args: t.args()};",
        task,
    );

    let stuff = m.client.collection("stuff").unwrap();
    stuff.new_procedure("addone", "|x| x + 1").await.unwrap();
    m.assert_last(
        "@collection:stuff",
        "new_procedure(name, closure(code)); nil;",
        &[("code", s("|x| x + 1")), ("name", s("addone"))],
    );
    let t = m.client.thingsdb();
    t.mod_procedure("addone", "|x| x + 2").await.unwrap();
    m.assert_last(
        "@thingsdb",
        "mod_procedure(name, closure(code));",
        &[("code", s("|x| x + 2")), ("name", s("addone"))],
    );
    stuff.rename_procedure("addone", "add").await.unwrap();
    stuff.del_procedure("add").await.unwrap();
    m.assert_last(
        "@collection:stuff",
        "del_procedure(name);",
        &[("name", s("add"))],
    );
    let p = stuff.procedure_info("addone").await.unwrap();
    assert_eq!(p.arguments, ["x"]);
    assert_eq!(t.procedures_info().await.unwrap(), vec![p]);
    assert!(stuff.has_procedure("addone").await.unwrap());
    assert_eq!(stuff.procedure_doc("addone").await.unwrap(), "Adds one.");

    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    assert_eq!(stuff.new_task(at, "|_, n| n", &[7]).await.unwrap(), 3);
    m.assert_last(
        "@collection:stuff",
        "task(datetime(start), closure(code), args).id();",
        &[
            ("args", Value::Array(vec![7.into()])),
            ("code", s("|_, n| n")),
            ("start", 1_800_000_000u64.into()),
        ],
    );
    let tasks = stuff.tasks().await.unwrap();
    assert_eq!((tasks[0].id, tasks[0].owner.as_str()), (3, "admin"));
    assert_eq!(t.task_info(3).await.unwrap(), tasks[0]);
    for code in ["task(id).set_args(args);", "task(id).set_owner(user);"] {
        m.reply(code, Value::Nil);
    }
    t.set_task_args(3, &(1, "a")).await.unwrap();
    m.assert_last(
        "@thingsdb",
        "task(id).set_args(args);",
        &[
            ("args", Value::Array(vec![1.into(), s("a")])),
            ("id", 3.into()),
        ],
    );
    stuff.set_task_owner(3, "iris").await.unwrap();
    m.assert_last(
        "@collection:stuff",
        "task(id).set_owner(user);",
        &[("id", 3.into()), ("user", s("iris"))],
    );
    stuff.cancel_task(3).await.unwrap();
    m.assert_last(
        "@collection:stuff",
        "task(id).cancel();",
        &[("id", 3.into())],
    );
    t.del_task(3).await.unwrap();
    m.assert_last("@thingsdb", "task(id).del();", &[("id", 3.into())]);

    assert!(m.client.collection("bad name").is_err());
    drop(m.node);
}

/// Discovery through the testkit: a node that cannot be asked is left out,
/// and a failing discovery still connects with the given targets.
#[tokio::test]
async fn discovery_leaves_out_what_it_cannot_learn() {
    let node = TestNode::start().await.unwrap();
    let port = node.tcp_addr().port();
    node.on_query(move |q| match q.code.as_str() {
        "node_info();" => Reply::value(map(&[
            ("node_id", 0.into()),
            ("version", s("1.9.2")),
            ("status", s("READY")),
            ("node_name", s("127.0.0.1")),
            ("client_port", port.into()),
            ("node_port", 9220.into()),
        ])),
        // Node 1 is listed, but the testkit cannot forward to @node:1.
        "nodes_info();" => Reply::value(Value::Array(
            [0, 1]
                .iter()
                .map(|id| {
                    map(&[
                        ("node_id", (*id).into()),
                        ("status", s("READY")),
                        ("node_name", s("127.0.0.1")),
                        ("port", 9220.into()),
                    ])
                })
                .collect(),
        )),
        _ => q.evaluate(),
    });
    let seed = node.tcp_target();
    let c = common::builder(&node, Via::Tcp)
        .discover_nodes(true)
        .connect()
        .await
        .unwrap();
    let seed = thingsdb_client::Target::parse(&seed).unwrap();
    let pool = thingsdb_client::discovery::discover(&c, std::slice::from_ref(&seed), &seed)
        .await
        .unwrap();
    assert_eq!(pool, vec![seed]);
    let cluster = thingsdb_client::discovery::read_cluster(&c).await.unwrap();
    assert_eq!(cluster.connected, 0);
    assert_eq!(cluster.nodes.len(), 1);

    // No @node answers at all: the given targets, and a working client.
    node.on_query(|q| match q.code.as_str() {
        "node_info();" => Reply::error(ErrorCode::Forbidden, "no access"),
        _ => q.evaluate(),
    });
    let c = common::builder(&node, Via::Tcp)
        .discover_nodes(true)
        .connect()
        .await
        .unwrap();
    assert!(thingsdb_client::discovery::read_cluster(&c).await.is_err());
    assert_eq!(c.query("6 * 7;").await.unwrap(), Value::from(42));
}

/// With discovery on, the client asks which node answered after AUTH; the
/// connection events carry it.
#[tokio::test]
async fn with_discovery_the_client_knows_which_node_answered() {
    use futures::StreamExt;
    let a = TestNode::start().await.unwrap();
    a.on_query(|q| match q.code.as_str() {
        "n = node_info().load(); [n.node_id, n.status];" => {
            Reply::value(vec![Value::from(7), Value::from("READY")])
        }
        _ => q.evaluate(),
    });
    let c = common::builder(&a, Via::Tcp)
        .discover_nodes(true)
        .reconnect(common::fast_reconnect())
        .connect()
        .await
        .unwrap();
    let mut events = c.connection_events().await.unwrap();
    a.restart().await;
    let target_a = thingsdb_client::Target::parse(&a.tcp_target()).unwrap();
    let connected = common::within(60, async {
        loop {
            match events.next().await {
                Some(thingsdb_client::ConnectionEvent::Connected { target, node_id }) => {
                    break (target, node_id)
                }
                Some(_) => {}
                None => panic!("the stream ended"),
            }
        }
    })
    .await;
    assert_eq!(connected, (target_a, Some(7)));
    assert_eq!(c.query("6 * 7;").await.unwrap(), Value::from(42));
}
