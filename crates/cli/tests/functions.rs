//! Generates the prompt's table of ThingsDB functions from ThingsDB's own
//! sources, and checks that the committed table (`src/functions_table.rs`)
//! is what the sources give.
//!
//! The sources are looked for in `THINGSDB_SRC` (default
//! `/opt/thingsdb-src`); without them the test says it was skipped. With
//! `UPDATE_FUNCTIONS=1` it writes the table instead of comparing:
//!
//! ```text
//! THINGSDB_SRC=/opt/thingsdb-src UPDATE_FUNCTIONS=1 cargo test -p thingsdb-cli --test functions
//! ```
//!
//! What is read (facts about the language, not its code):
//! - every `{.name="NAME", .fn=..., FLAGS}` row of the function table in
//!   `src/ti/qbind.c`; its flags macro says where the function may be
//!   called: `ROOT…` at the start of an expression (`abs(-1)`), `CHAIN…`
//!   after a value (`x.map(…)`), `BOTH…` either way;
//! - every `fn_not_KIND_scope("NAME", …)` check in `inc/ti/fn/*.h`, which
//!   says in which scopes the function is defined (`thingsdb`, `node`,
//!   `collection` or `thingsdb_or_collection`); a function without such a
//!   check works in every scope.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const TABLE: &str = "src/functions_table.rs";

fn sources() -> PathBuf {
    std::env::var_os("THINGSDB_SRC")
        .filter(|s| !s.is_empty())
        .map_or_else(|| PathBuf::from("/opt/thingsdb-src"), PathBuf::from)
}

/// `(name, place)` for each row of the function table.
fn function_rows(qbind: &str) -> Vec<(String, &'static str)> {
    let mut rows = Vec::new();
    for line in qbind.lines() {
        let Some(rest) = line.trim().strip_prefix("{.name=\"") else {
            continue;
        };
        let Some((name, tail)) = rest.split_once('"') else {
            continue;
        };
        let flags = tail
            .trim_end()
            .trim_end_matches(['}', ','])
            .rsplit(',')
            .next()
            .unwrap_or("")
            .trim();
        let place = if flags.starts_with("BOTH") {
            "Both"
        } else if flags.starts_with("ROOT") || flags.starts_with("XROOT") {
            "Root"
        } else if flags.starts_with("CHAIN") || flags.starts_with("XCHAIN") {
            "Chain"
        } else {
            panic!("unknown flags {flags:?} for {name} in qbind.c");
        };
        rows.push((name.to_string(), place));
    }
    rows
}

/// Function name → the scope kind its `fn_not_*_scope` check allows.
fn scope_checks(fn_dir: &Path) -> BTreeMap<String, &'static str> {
    let mut checks = BTreeMap::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(fn_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "h"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("fn_not_") {
            rest = &rest[i + "fn_not_".len()..];
            let Some((kind, after)) = rest.split_once("_scope(") else {
                continue;
            };
            if !kind.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                continue;
            }
            // The definitions in fn.h take a parameter, not a literal.
            let Some(after) = after.trim_start().strip_prefix('"') else {
                continue;
            };
            let Some((name, _)) = after.split_once('"') else {
                continue;
            };
            let scopes = match kind {
                "thingsdb" => "Thingsdb",
                "node" => "Node",
                "collection" => "Collection",
                "thingsdb_or_collection" => "ThingsdbOrCollection",
                other => panic!("unknown scope check fn_not_{other}_scope in {path:?}"),
            };
            if let Some(old) = checks.insert(name.to_string(), scopes) {
                assert_eq!(old, scopes, "{name} is checked for two scope kinds");
            }
        }
    }
    checks
}

fn version(src: &Path) -> String {
    let text = std::fs::read_to_string(src.join("inc/ti/version.h")).unwrap_or_default();
    let part = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("#define TI_VERSION_{key} ")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    format!("{}.{}.{}", part("MAJOR"), part("MINOR"), part("PATCH"))
}

fn generate(src: &Path) -> String {
    let qbind = std::fs::read_to_string(src.join("src/ti/qbind.c")).unwrap();
    let mut rows = function_rows(&qbind);
    rows.sort();
    assert!(rows.len() > 200, "only {} functions found", rows.len());
    let checks = scope_checks(&src.join("inc/ti/fn"));
    for name in checks.keys() {
        assert!(
            rows.iter().any(|(n, _)| n == name),
            "{name} has a scope check but is not in the function table"
        );
    }
    let mut out = format!(
        "// GENERATED by crates/cli/tests/functions.rs from the ThingsDB {} sources\n\
         // (src/ti/qbind.c and the scope checks in inc/ti/fn/*.h). Do not edit; regenerate with\n\
         //   THINGSDB_SRC=/opt/thingsdb-src UPDATE_FUNCTIONS=1 cargo test -p thingsdb-cli --test functions\n\
         &[\n",
        version(src)
    );
    for (name, place) in &rows {
        let scopes = checks.get(name).copied().unwrap_or("Any");
        out.push_str(&format!(
            "    Function {{ name: \"{name}\", place: {place}, scopes: {scopes} }},\n"
        ));
    }
    out.push_str("]\n");
    out
}

#[test]
fn the_function_table_matches_the_thingsdb_sources() {
    let src = sources();
    if !src.join("src/ti/qbind.c").is_file() {
        eprintln!(
            "skipped: no ThingsDB sources at {} (set THINGSDB_SRC to check src/functions_table.rs)",
            src.display()
        );
        return;
    }
    let generated = generate(&src);
    let table = Path::new(env!("CARGO_MANIFEST_DIR")).join(TABLE);
    if std::env::var_os("UPDATE_FUNCTIONS").is_some_and(|v| v == "1") {
        std::fs::write(&table, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&table).unwrap_or_default();
    assert!(
        committed == generated,
        "{TABLE} is not what the sources at {} give; regenerate it with \
         THINGSDB_SRC={} UPDATE_FUNCTIONS=1 cargo test -p thingsdb-cli --test functions",
        src.display(),
        src.display()
    );
}
