//! Every management wrapper against a real ThingsDB node.
//!
//! Runs when `THINGSDB_BIN` names a node binary (each test starts its own
//! node on loopback, TCP only) or `THINGSDB_TEST_ADDR` names a running
//! node with `admin`/`pass` (then the tests that stop, restore or grow a
//! node are skipped, and names are made unique). Otherwise each test says
//! it was skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{skipped, within};
use thingsdb_client::management::{Access, CommitHistory, HistoryFilter, LogLevel};
use thingsdb_client::{Auth, Client, ErrorCode};
use thingsdb_testkit::real_node::{RealCluster, RealNode, SKIP_MESSAGE};

async fn client_for(node: &RealNode) -> Client {
    Client::builder()
        .target(node.tcp_target().expect("a TCP address"))
        .unwrap()
        .auth(Auth::password(node.user(), node.password()))
        .request_timeout(Duration::from_secs(60))
        .connect()
        .await
        .unwrap()
}

macro_rules! real_or_skip {
    () => {
        match RealNode::from_env().await.unwrap() {
            Some(node) if node.tcp_target().is_some() => {
                let client = client_for(&node).await;
                (node, client)
            }
            _ => {
                skipped(SKIP_MESSAGE);
                return;
            }
        }
    };
}

/// A name no other test (or earlier run on a shared node) uses.
fn unique(prefix: &str) -> String {
    let n = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{n}")
}

#[tokio::test]
async fn real_collections() {
    let (_node, c) = real_or_skip!();
    let t = c.thingsdb();
    let name = unique("coll");
    let renamed = format!("{name}_r");
    assert!(!t.has_collection(&name).await.unwrap());
    t.new_collection(&name).await.unwrap();
    assert!(t.has_collection(&name).await.unwrap());
    let e = t.new_collection(&name).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Lookup), "{e}");
    t.rename_collection(&name, &renamed).await.unwrap();
    let info = t.collection_info(&renamed).await.unwrap();
    assert_eq!(info.name, renamed);
    assert_eq!(info.time_zone, "UTC");
    assert_eq!(info.commit_history, Some(CommitHistory::Disabled(())));
    let all = t.collections_info().await.unwrap();
    assert!(all.iter().any(|c| c.name == "stuff"));
    assert!(all.iter().any(|c| c.collection_id == info.collection_id));

    let zones = t.time_zones_info().await.unwrap();
    assert!(
        zones.iter().any(|z| z == "Europe/Amsterdam"),
        "{}",
        zones.len()
    );
    t.set_time_zone(&renamed, "Europe/Amsterdam").await.unwrap();
    t.set_default_deep(&renamed, 3).await.unwrap();
    let scope = format!("//{renamed}");
    t.set_history(&scope, true).await.unwrap();
    let info = t.collection_info(&renamed).await.unwrap();
    assert_eq!(info.time_zone, "Europe/Amsterdam");
    assert_eq!(info.default_deep, 3);
    assert!(matches!(
        info.commit_history,
        Some(CommitHistory::Commits(_))
    ));
    // Commits, read and deleted through the history wrappers.
    for msg in ["add x", "add y", "Remove x"] {
        c.query("commit(msg); .n = 1;")
            .scope(&scope)
            .var("msg", msg)
            .await
            .unwrap();
    }
    let all = t
        .history(
            &HistoryFilter {
                first: Some(10),
                ..HistoryFilter::new(&scope)
            },
            true,
        )
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|c| c.message.as_str()).collect::<Vec<_>>(),
        ["add x", "add y", "Remove x"]
    );
    assert_eq!(all[0].by, "admin");
    assert_eq!(all[0].code.as_deref(), Some("commit(msg); .n = 1;"));
    let adds = t
        .history(
            &HistoryFilter {
                match_regex: Some("(?i)^remove".into()),
                ..HistoryFilter::new(&scope)
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(adds.len(), 1);
    assert_eq!(adds[0].code, None);
    let future = SystemTime::now() + Duration::from_secs(3600);
    let none = t
        .history(
            &HistoryFilter {
                after: Some(future),
                ..HistoryFilter::new(&scope)
            },
            false,
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    let gone = t
        .del_history(&HistoryFilter {
            contains: Some("add".into()),
            ..HistoryFilter::new(&scope)
        })
        .await
        .unwrap();
    assert_eq!(gone, 2);
    let e = t
        .history(&HistoryFilter::new(&scope), false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Lookup), "{e}");
    t.set_history(&scope, false).await.unwrap();

    // A hostile name travels as a variable: it is just a bad name.
    let e = t
        .new_collection("x'); del_collection('stuff")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Value), "{e}");
    assert!(t.has_collection("stuff").await.unwrap());

    t.del_collection(&renamed).await.unwrap();
    assert!(!t.has_collection(&renamed).await.unwrap());
}

#[tokio::test]
async fn real_users_tokens_and_access() {
    let (node, c) = real_or_skip!();
    let t = c.thingsdb();
    let user = unique("user");
    let renamed = format!("{user}_r");
    t.new_user(&user).await.unwrap();
    assert!(t.has_user(&user).await.unwrap());
    t.rename_user(&user, &renamed).await.unwrap();
    assert!(!t.has_user(&user).await.unwrap());
    let info = t.user_info(Some(&renamed)).await.unwrap();
    assert!(!info.has_password && info.access.is_empty() && info.tokens.is_empty());

    t.set_password(&renamed, Some("pw")).await.unwrap();
    assert!(t.user_info(Some(&renamed)).await.unwrap().has_password);
    t.grant(
        "//stuff",
        &renamed,
        Access::QUERY | Access::CHANGE | Access::JOIN,
    )
    .await
    .unwrap();
    t.grant("@node", &renamed, Access::FULL).await.unwrap();
    t.grant("@thingsdb", &renamed, Access::QUERY).await.unwrap();
    t.revoke("//stuff", &renamed, Access::CHANGE).await.unwrap();
    let info = t.user_info(Some(&renamed)).await.unwrap();
    let stuff = info
        .access
        .iter()
        .find(|a| a.scope == "@collection:stuff")
        .unwrap();
    assert_eq!(stuff.flags(), Access::QUERY | Access::JOIN, "{stuff:?}");
    let n = info.access.iter().find(|a| a.scope == "@node").unwrap();
    assert_eq!(n.flags(), Access::FULL, "{n:?}");

    // The user can log in and query //stuff but not change it.
    let as_user = Client::builder()
        .target(node.tcp_target().unwrap())
        .unwrap()
        .auth(Auth::password(&renamed, "pw"))
        .connect()
        .await
        .unwrap();
    let v: i64 = as_user
        .query("1 + 1;")
        .scope("//stuff")
        .decode()
        .await
        .unwrap();
    assert_eq!(v, 2);
    let e = as_user.query(".x = 1;").scope("//stuff").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");
    assert_eq!(
        as_user.thingsdb().user_info(None).await.unwrap().name,
        renamed
    );

    // Tokens: with and without expiry and description.
    let day = SystemTime::now() + Duration::from_secs(86_400);
    let k1 = t
        .new_token(&renamed, Some(day), Some("nightly"))
        .await
        .unwrap();
    let k2 = t.new_token(&renamed, None, None).await.unwrap();
    let k3 = t.new_token(&renamed, None, Some("x")).await.unwrap();
    let k4 = t.new_token(&renamed, Some(day), None).await.unwrap();
    assert!(t.has_token(&k1).await.unwrap());
    let tokens = t.user_info(Some(&renamed)).await.unwrap().tokens;
    assert_eq!(tokens.len(), 4);
    let tk1 = tokens.iter().find(|k| k.key == k1).unwrap();
    assert_eq!(tk1.description, "nightly");
    assert!(tk1.expiration_time.ends_with('Z'), "{tk1:?}");
    let tk2 = tokens.iter().find(|k| k.key == k2).unwrap();
    assert_eq!(tk2.expiration_time, "never");
    assert_eq!(
        tokens.iter().find(|k| k.key == k3).unwrap().description,
        "x"
    );
    let by_token = Client::connect(node.tcp_target().unwrap(), Auth::token(&k4))
        .await
        .unwrap();
    by_token.ping().await.unwrap();
    let past = SystemTime::now() - Duration::from_secs(10);
    let e = t.new_token(&renamed, Some(past), None).await.unwrap_err();
    assert!(e.code().is_some(), "{e}");
    t.del_token(&k1).await.unwrap();
    assert!(!t.has_token(&k1).await.unwrap());
    t.del_expired().await.unwrap();
    assert!(t.has_token(&k2).await.unwrap());

    // Whitelists.
    t.whitelist_add(&renamed, "rooms", None).await.unwrap();
    t.whitelist_add(&renamed, "procedures", Some("p1"))
        .await
        .unwrap();
    let wl = t.user_info(Some(&renamed)).await.unwrap().whitelists;
    assert_eq!(wl.get("rooms"), Some(&vec![]));
    assert_eq!(wl.get("procedures"), Some(&vec!["p1".to_string()]));
    t.whitelist_del(&renamed, "procedures", Some("p1"))
        .await
        .unwrap();
    t.whitelist_del(&renamed, "rooms", None).await.unwrap();
    let wl = t.user_info(Some(&renamed)).await.unwrap().whitelists;
    assert!(!wl.contains_key("rooms"), "{wl:?}");

    t.set_password(&renamed, None).await.unwrap();
    assert!(!t.user_info(Some(&renamed)).await.unwrap().has_password);
    assert!(t
        .users_info()
        .await
        .unwrap()
        .iter()
        .any(|u| u.name == renamed));
    t.del_user(&renamed).await.unwrap();
    assert!(!t.has_user(&renamed).await.unwrap());
}

#[tokio::test]
async fn real_modules() {
    let (_node, c) = real_or_skip!();
    let t = c.thingsdb();
    let name = unique("mod");
    let renamed = format!("{name}_r");
    // A module whose file is not there: every call but running it works.
    t.new_module(
        &name,
        "no_such_module.py",
        Some(
            &[("a", 1)]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        ),
    )
    .await
    .unwrap();
    assert!(t.has_module(&name).await.unwrap());
    let info = t.module_info(&name).await.unwrap();
    assert_eq!(info.name, name);
    assert_eq!(info.scope, None);
    assert_eq!(
        info.conf,
        Some(rmpv::Value::Map(vec![("a".into(), 1.into())]))
    );
    t.set_module_conf(&name, Some(&("x", 2))).await.unwrap();
    t.set_module_scope(&name, Some("//stuff")).await.unwrap();
    let info = t.module_info(&name).await.unwrap();
    assert_eq!(info.scope.as_deref(), Some("@collection:stuff"));
    assert_eq!(
        info.conf,
        Some(rmpv::Value::Array(vec!["x".into(), 2.into()]))
    );
    t.set_module_scope(&name, None).await.unwrap();
    t.set_module_conf(&name, None::<&()>).await.unwrap();
    t.rename_module(&name, &renamed).await.unwrap();
    t.refresh_module(&renamed).await.unwrap();
    c.node().restart_module(&renamed).await.unwrap();
    t.deploy_module(&renamed, Some(b"print('hello')\n"))
        .await
        .unwrap();
    t.deploy_module(&renamed, None).await.unwrap();
    let all = t.modules_info().await.unwrap();
    assert!(all.iter().any(|m| m.name == renamed), "{all:?}");
    t.new_module(&name, "other.py", None::<&()>).await.unwrap();
    t.del_module(&name).await.unwrap();
    t.del_module(&renamed).await.unwrap();
    assert!(!t.has_module(&renamed).await.unwrap());
    let e = t.module_info(&renamed).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Lookup), "{e}");
}

#[tokio::test]
async fn real_node_scope_and_backups() {
    let (node, c) = real_or_skip!();
    let n = c.node();
    let info = n.node_info().await.unwrap();
    assert_eq!(info.version, "1.9.2");
    assert_eq!(info.status, "READY");
    // A change moves the node's committed change id to the change's.
    let id: u64 = c
        .query(".probe = 1; change_id();")
        .scope("//stuff")
        .decode()
        .await
        .unwrap();
    let after = n.node_info().await.unwrap();
    assert!(
        after.local_committed_change_id >= Some(id),
        "{after:?} after change {id}"
    );
    assert!(after.global_committed_change_id.is_some());
    if let Some(addr) = node.tcp_addr() {
        assert_eq!(info.client_port, addr.port());
    }
    let by_id = c.node_by_id(info.node_id).unwrap();
    assert_eq!(by_id.node_info().await.unwrap().node_id, info.node_id);
    let cluster = n.nodes_info().await.unwrap();
    let me = cluster.iter().find(|x| x.node_id == info.node_id).unwrap();
    assert_eq!(me.stream, None);
    assert_eq!(me.port, info.node_port);
    assert!(c.thingsdb().has_node(info.node_id).await.unwrap());
    assert!(!c.thingsdb().has_node(63).await.unwrap());

    let counters = n.counters().await.unwrap();
    assert!(counters.queries_success > 0);
    n.reset_counters().await.unwrap();
    let after = n.counters().await.unwrap();
    assert!(after.queries_success <= 1, "{after:?}");
    n.set_log_level(LogLevel::Info).await.unwrap();
    assert_eq!(n.node_info().await.unwrap().log_level, "INFO");
    n.set_log_level(LogLevel::Warning).await.unwrap();

    assert!(n.backups_ok().await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let later = SystemTime::now() + Duration::from_secs(86_400);
    let template = format!("{}/bk_{{DATE}}.tar.gz", dir.path().display());
    let id = n
        .new_backup(&template, Some(later), Some(3600), Some(2))
        .await
        .unwrap();
    let b = n.backup_info(id).await.unwrap();
    assert_eq!(b.file_template, template);
    assert_eq!((b.repeat, b.max_files), (Some(3600), Some(2)));
    assert!(n.has_backup(id).await.unwrap());
    let e = n
        .new_backup("/tmp/x.zip", None, None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Value), "{e}");
    // A backup that runs now (the node writes it when it is idle).
    let now_file = format!("{}/now.tar.gz", dir.path().display());
    let once = n.new_backup(&now_file, None, None, None).await.unwrap();
    assert!(n.backups_info().await.unwrap().iter().any(|b| b.id == once));
    within(120, async {
        while !Path::new(&now_file).exists() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    n.del_backup(id, true).await.unwrap();
    assert!(!n.has_backup(id).await.unwrap());
    let e = n.backup_info(id).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Lookup), "{e}");
}

#[tokio::test]
async fn real_procedures_in_both_scopes() {
    let (_node, c) = real_or_skip!();
    let name = unique("proc");
    let renamed = format!("{name}_r");
    let stuff = c.collection("stuff").unwrap();
    stuff.new_procedure(&name, "|a, b| a + b").await.unwrap();
    assert!(stuff.has_procedure(&name).await.unwrap());
    let v: i64 = c
        .run(&name)
        .scope("//stuff")
        .arg(&2)
        .arg(&3)
        .decode()
        .await
        .unwrap();
    assert_eq!(v, 5);
    let info = stuff.procedure_info(&name).await.unwrap();
    assert_eq!(info.arguments, ["a", "b"]);
    assert_eq!(info.definition, "|a, b| a + b");
    assert!(!info.with_side_effects);
    stuff
        .mod_procedure(&name, "|a| {\n  'Doubles a.';\n  a * 2;\n}")
        .await
        .unwrap();
    assert_eq!(stuff.procedure_doc(&name).await.unwrap(), "Doubles a.");
    stuff.rename_procedure(&name, &renamed).await.unwrap();
    assert!(stuff
        .procedures_info()
        .await
        .unwrap()
        .iter()
        .any(|p| p.name == renamed));
    // Code that is not a closure is refused by the node, not run.
    let e = stuff.new_procedure("bad", "1 + 1").await.unwrap_err();
    assert!(e.code().is_some(), "{e}");
    stuff.del_procedure(&renamed).await.unwrap();
    assert!(!stuff.has_procedure(&renamed).await.unwrap());

    let t = c.thingsdb();
    t.new_procedure(&name, "|| 42").await.unwrap();
    let v: i64 = c.run(&name).scope("@t").decode().await.unwrap();
    assert_eq!(v, 42);
    assert_eq!(t.procedure_info(&name).await.unwrap().name, name);
    t.del_procedure(&name).await.unwrap();
    assert!(c.collection("no such").is_err());
}

#[tokio::test]
async fn real_tasks() {
    let (_node, c) = real_or_skip!();
    let stuff = c.collection("stuff").unwrap();
    let at = SystemTime::now() + Duration::from_secs(3600);
    let key = unique("task");
    let id = stuff
        .new_task(at, "|_, k, n| .set(k, n)", &(key.as_str(), 42))
        .await
        .unwrap();
    let info = stuff.task_info(id).await.unwrap();
    assert_eq!(info.id, id);
    assert_eq!(info.owner, "admin");
    // The node keeps a closure without its blanks.
    assert_eq!(info.closure, "|_,k,n|.set(k,n)");
    assert_eq!(info.args, vec![rmpv::Value::from(key.as_str()), 42.into()]);
    assert!(info.at.is_some());
    assert!(stuff.tasks().await.unwrap().iter().any(|t| t.id == id));
    stuff.set_task_args(id, &("other", 7)).await.unwrap();
    let info2 = stuff.task_info(id).await.unwrap();
    assert_eq!(info2.args, vec![rmpv::Value::from("other"), 7.into()]);
    let t = c.thingsdb();
    let owner = unique("owner");
    t.new_user(&owner).await.unwrap();
    t.grant("//stuff", &owner, Access::FULL).await.unwrap();
    stuff.set_task_owner(id, &owner).await.unwrap();
    assert_eq!(stuff.task_info(id).await.unwrap().owner, owner);
    stuff.cancel_task(id).await.unwrap();
    assert_eq!(stuff.task_info(id).await.unwrap().at, None);
    stuff.del_task(id).await.unwrap();
    let e = stuff.task_info(id).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Lookup), "{e}");

    // A task that runs now, in the @thingsdb scope.
    let id = t
        .new_task(SystemTime::now(), "|_| 1 + 1", &[0u8; 0])
        .await
        .unwrap();
    within(120, async {
        while t.tasks().await.unwrap().iter().any(|x| x.id == id) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
}

/// Stopping, restoring and growing a node: only on nodes started here.
#[tokio::test]
async fn real_shutdown_and_restore() {
    let (mut node, c) = real_or_skip!();
    if !node.is_started() {
        skipped("real_shutdown_and_restore skipped: needs THINGSDB_BIN (it stops the node)");
        return;
    }
    let t = c.thingsdb();
    let n = c.node();
    c.query(".before_backup = 1;")
        .scope("//stuff")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = format!("{}/full.tar.gz", dir.path().display());
    n.new_backup(&file, None, None, None).await.unwrap();
    within(120, async {
        while !Path::new(&file).exists() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    // Give the node a moment to finish writing; then check the record.
    within(120, async {
        while n
            .backups_info()
            .await
            .unwrap()
            .iter()
            .all(|b| b.files.is_empty())
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    // A restore needs empty collections.
    c.query(".del('before_backup'); .after_backup = 1; .del('after_backup');")
        .scope("//stuff")
        .await
        .unwrap();
    t.restore(&file, false, false).await.unwrap();
    // The restore runs on the node after the reply, and replaces the
    // users: connections made before it ends keep users without
    // privileges, so each try connects anew.
    let restored = within(120, async {
        loop {
            let fresh = client_for(&node).await;
            let r: Result<(bool, bool), _> = fresh
                .query("[.has('before_backup'), .has('after_backup')];")
                .scope("//stuff")
                .decode()
                .await;
            if let Ok(v) = r {
                if v == (true, false) {
                    return (v, fresh);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let (restored, c) = restored;
    assert_eq!(restored, (true, false));

    c.node().shutdown().await.unwrap();
    within(120, async {
        while node.is_running() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

/// new_node / del_node on a real 2-node cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_new_and_del_node() {
    let Some(mut cluster) = RealCluster::from_env(1).await.unwrap() else {
        skipped("real_new_and_del_node skipped: set THINGSDB_BIN to a ThingsDB binary");
        return;
    };
    let bin = std::env::var("THINGSDB_BIN").unwrap();
    let c = client_for(&cluster.nodes[0]).await;
    let t = c.thingsdb();
    let second = RealNode::start_with_secret(Path::new(&bin), false, "s3cret")
        .await
        .unwrap();
    let id = t
        .new_node("s3cret", "127.0.0.1", second.node_port())
        .await
        .unwrap();
    assert_eq!(id, 1);
    assert!(t.has_node(id).await.unwrap());
    let cluster_view = within(180, async {
        loop {
            let nodes = c.node().nodes_info().await.unwrap();
            if nodes.len() == 2 && nodes.iter().all(|n| n.status == "READY") {
                return nodes;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    assert!(cluster_view
        .iter()
        .any(|n| n.node_id == 1 && n.stream.is_some()));
    let e = t.del_node(id).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Operation), "{e}");
    drop(second); // killed
    cluster.nodes.truncate(1);
    within(180, async {
        loop {
            match t.del_node(id).await {
                Ok(()) => return,
                Err(e) if e.code() == Some(ErrorCode::Operation) => {
                    tokio::time::sleep(Duration::from_millis(250)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    assert!(!t.has_node(id).await.unwrap());
}

/// Discovery on a real 2-node cluster: seeded with node 0 only, the client
/// learns node 1; node 0 goes away (gracefully, or killed); the client
/// moves to node 1, joins its room again, and gets every event emitted
/// after that.
/// A client seeded with one node's address only, learning the rest of the
/// cluster, with quick reconnects.
async fn discovering_client(seed: &str) -> Client {
    Client::builder()
        .target(seed)
        .unwrap()
        .auth(Auth::password("admin", "pass"))
        .discover_nodes(true)
        .default_scope("//stuff")
        .unwrap()
        .keepalive(Some(Duration::from_secs(2)))
        .reconnect(thingsdb_client::ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..thingsdb_client::ReconnectPolicy::default()
        })
        .request_timeout(Duration::from_secs(60))
        .connect()
        .await
        .unwrap()
}

async fn failover_with_one_seed(kill: bool) {
    use common::{joined, wait_emitted, wait_event};
    use futures::StreamExt;
    use thingsdb_client::RoomEvent;

    let Some(mut cluster) = RealCluster::from_env(2).await.unwrap() else {
        skipped("real discovery test skipped: set THINGSDB_BIN to a ThingsDB binary");
        return;
    };
    let a = cluster.nodes[0].tcp_target().unwrap().to_string();
    let b = cluster.nodes[1].tcp_target().unwrap().to_string();
    let client = discovering_client(&a).await;
    // What discovery learns from the seed: node 0, then node 1.
    let seed = thingsdb_client::Target::parse(&a).unwrap();
    let pool: Vec<String> =
        thingsdb_client::discovery::discover(&client, std::slice::from_ref(&seed), &seed)
            .await
            .unwrap()
            .iter()
            .map(|t| format!("{}:{}", t.host().unwrap(), t.port().unwrap()))
            .collect();
    assert_eq!(
        pool,
        [a.clone(), b.clone()],
        "the pool learnt from one seed"
    );

    let emitter = Client::builder()
        .target(&b)
        .unwrap()
        .auth(Auth::password("admin", "pass"))
        .default_scope("//stuff")
        .unwrap()
        .connect()
        .await
        .unwrap();
    let room_id: u64 = client
        .query(".discovery = room(); .discovery.id();")
        .decode()
        .await
        .unwrap();
    let mut events = joined(&client, room_id).await;
    let room_b = emitter.room("//stuff", room_id).unwrap();
    within(120, async {
        while room_b.emit("before", &Vec::<u8>::new()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    wait_emitted(&mut events, "before").await;

    if kill {
        drop(cluster.nodes.remove(0)); // SIGKILL
    } else {
        cluster.nodes[0].terminate().unwrap();
    }
    // The client moves to node 1: after a SIGKILL the connection breaks
    // and the room is joined again (Disconnected, then Joined); on a
    // graceful stop the node says SHUTTING_DOWN and the client moves
    // before it lets go of node 0 (make-before-break: the room stays
    // joined, no events in between).
    if kill {
        wait_event(&mut events, RoomEvent::Joined).await;
    }
    within(180, async {
        loop {
            if let Ok(info) = client.node().node_info().await {
                if info.node_id == 1 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(client.connections_made() >= 2);
    // Every event emitted after the move arrives, once and in order.
    for i in 0..50u32 {
        room_b.emit("n", &(i,)).await.unwrap();
    }
    let mut next = 0u32;
    within(120, async {
        while next < 50 {
            match events.next().await {
                Some(RoomEvent::Emitted(e)) if e.event == "n" => {
                    assert_eq!(e.decode::<(u32,)>().unwrap(), (next,));
                    next += 1;
                }
                Some(_) => {}
                None => panic!("the stream ended"),
            }
        }
    })
    .await;
    let v: i64 = within(60, client.query("1 + 1;").decode()).await.unwrap();
    assert_eq!(v, 2);
    let node = within(60, client.node().node_info()).await.unwrap();
    assert_eq!(node.node_id, 1, "the client is on node 1 now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_discovery_failover_graceful() {
    failover_with_one_seed(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_discovery_failover_sigkill() {
    failover_with_one_seed(true).await;
}

/// The lock helper: one holder at a time, hand-over on release, time-out
/// while waiting, release on drop, and expiry by the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_lock() {
    let (node, c) = real_or_skip!();
    let coll = unique("lock");
    c.thingsdb().new_collection(&coll).await.unwrap();
    let locks = c.collection(&coll).unwrap();
    locks.install_locks().await.unwrap();
    locks.install_locks().await.unwrap(); // a second time does nothing
    let other = client_for(&node).await;
    let name = "invoices";
    assert!(!locks.is_locked(name).await.unwrap());

    let a = locks
        .lock(name, Duration::from_secs(600), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(locks.is_locked(name).await.unwrap());
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (o2, coll2, other2) = (order.clone(), coll.clone(), other.clone());
    let waiter = tokio::spawn(async move {
        let g = other2
            .collection(&coll2)
            .unwrap()
            .lock(name, Duration::from_secs(600), Duration::from_secs(120))
            .await
            .unwrap();
        o2.lock().unwrap().push("b acquired");
        g
    });
    // B is queued once its room exists; then A lets go.
    within(60, async {
        loop {
            let n: usize = c
                .query("(.locks.get(name) || {queue: []}).queue.len();")
                .scope(&format!("//{coll}"))
                .var("name", name)
                .decode()
                .await
                .unwrap();
            if n == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    order.lock().unwrap().push("a releasing");
    assert!(a.release().await.unwrap());
    let b = within(120, waiter).await.unwrap();
    assert_eq!(*order.lock().unwrap(), ["a releasing", "b acquired"]);

    // While B holds it, a short wait times out and leaves the queue.
    let e = locks
        .lock(name, Duration::from_secs(600), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(e, thingsdb_client::Error::Timeout(_)), "{e}");
    // Dropping B's guard releases it.
    drop(b);
    within(60, async {
        while locks.is_locked(name).await.unwrap() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    // A holder whose time runs out loses the lock to the next waiter.
    let short = locks
        .lock(name, Duration::from_secs(1), Duration::from_secs(60))
        .await
        .unwrap();
    let next = other
        .collection(&coll)
        .unwrap()
        .lock(name, Duration::from_secs(600), Duration::from_secs(120))
        .await
        .unwrap();
    assert!(!short.release().await.unwrap(), "already expired");
    assert!(next.release().await.unwrap());
    assert!(!locks.is_locked(name).await.unwrap());
}

/// Discovery keeps learning: a node added to the cluster after the client
/// connected joins its pool (through the refresh on NODE_STATUS events or
/// reconnects), so the client can move to it when the seed is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_discovery_learns_a_node_added_later() {
    use common::{joined, wait_event};
    use futures::StreamExt;
    use thingsdb_client::RoomEvent;

    let Some(mut cluster) = RealCluster::from_env(1).await.unwrap() else {
        skipped("real discovery test skipped: set THINGSDB_BIN to a ThingsDB binary");
        return;
    };
    let bin = std::env::var("THINGSDB_BIN").unwrap();
    let a = cluster.nodes[0].tcp_target().unwrap().to_string();
    let client = discovering_client(&a).await;
    let room_id: u64 = client
        .query(".later = room(); .later.id();")
        .decode()
        .await
        .unwrap();
    let mut events = joined(&client, room_id).await;
    let mut status = client.node_events().await.unwrap();

    let second = RealNode::start_with_secret(Path::new(&bin), false, "later")
        .await
        .unwrap();
    client
        .thingsdb()
        .new_node("later", "127.0.0.1", second.node_port())
        .await
        .unwrap();
    cluster.nodes.push(second);
    within(180, async {
        loop {
            let nodes = client.node().nodes_info().await.unwrap();
            if nodes.len() == 2 && nodes.iter().all(|n| n.status == "READY") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    let mut seen = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(100), status.next()).await {
        seen.push(format!("{ev:?}"));
    }
    eprintln!("node events while node 1 joined: {seen:?}");
    assert!(!seen.is_empty(), "node 0 said nothing while node 1 joined");
    // The refresh those events started sent its queries before these, on
    // the same connection: once these are answered, so are its.
    let seed = thingsdb_client::Target::parse(&a).unwrap();
    let pool = thingsdb_client::discovery::discover(&client, std::slice::from_ref(&seed), &seed)
        .await
        .unwrap();
    assert_eq!(pool.len(), 2);
    drop(cluster.nodes.remove(0)); // SIGKILL the seed
    wait_event(&mut events, RoomEvent::Disconnected).await;
    within(180, async {
        loop {
            match events.next().await {
                Some(RoomEvent::Joined) => return,
                Some(_) => {}
                None => panic!("the stream ended"),
            }
        }
    })
    .await;
    let info = within(60, client.node().node_info()).await.unwrap();
    assert_eq!(info.node_id, 1);
}
