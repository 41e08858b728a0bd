//! Rust source from a collection's types and enums: what
//! `thingsdb types --rust` prints.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::Spec;
use crate::management::{EnumInfo, TypeInfo};

/// Rust code for `types` and `enums` (as `types_info()` and `enums_info()`
/// give them): one `#[derive(Thing)]` struct per type and one
/// `#[derive(ThingsEnum)]` enum per enum whose values are all strings or
/// all integers, so that the node's types become the program's.
///
/// Definitions Rust has no one type for keep their text in
/// `#[thingsdb(spec = "...")]`; field names that are not Rust's style keep
/// theirs in `#[thingsdb(rename = "...")]`. A type that refers to itself
/// other than through a list or set is held in a `Box`.
///
/// ```
/// use thingsdb_client::management::TypeInfo;
/// use thingsdb_client::typed::rust_source;
/// let node: TypeInfo = TypeInfo::new("Node", &[("name", "str"), ("parentNode", "Node?")]);
/// let code = rust_source(&[node], &[]);
/// assert!(code.contains("pub struct Node {"));
/// assert!(code.contains("#[thingsdb(rename = \"parentNode\")]\n    pub parent_node: Option<Box<Node>>,"));
/// ```
pub fn rust_source(types: &[TypeInfo], enums: &[EnumInfo]) -> String {
    let enum_names: Vec<&str> = enums.iter().map(|e| e.name.as_str()).collect();
    let usable_enums: BTreeSet<&str> = enums
        .iter()
        .filter(|e| enum_kind(e).is_some())
        .map(|e| e.name.as_str())
        .collect();
    let type_names: BTreeSet<&str> = types.iter().map(|t| t.name.as_str()).collect();
    // Which types each type refers to, for the cycles that need a Box.
    let refs: BTreeMap<&str, Vec<String>> = types
        .iter()
        .map(|t| {
            let mut r = Vec::new();
            for (_, spec) in &t.fields {
                for n in Spec::parse(spec).references() {
                    r.push(n.to_string());
                }
            }
            (t.name.as_str(), r)
        })
        .collect();
    let ctx = Ctx {
        enums: &usable_enums,
        types: &type_names,
        refs: &refs,
    };

    let mut body = String::new();
    let mut uses = BTreeSet::new();
    // By name: the node lists them in no fixed order.
    let mut enums: Vec<&EnumInfo> = enums.iter().collect();
    enums.sort_by(|a, b| a.name.cmp(&b.name));
    let mut types: Vec<&TypeInfo> = types.iter().collect();
    types.sort_by(|a, b| a.name.cmp(&b.name));
    for e in enums {
        write_enum(&mut body, e);
    }
    for t in &types {
        write_type(&mut body, t, &enum_names, &ctx, &mut uses);
    }
    let mut out = String::new();
    let mut derives = vec![];
    if !types.is_empty() {
        derives.push("Thing");
    }
    if !usable_enums.is_empty() {
        derives.push("ThingsEnum");
    }
    if !uses.is_empty() {
        let list: Vec<&str> = uses.into_iter().collect();
        let _ = writeln!(out, "use thingsdb_client::typed::{{{}}};", list.join(", "));
    }
    if !derives.is_empty() {
        let _ = writeln!(out, "use thingsdb_client::{{{}}};", derives.join(", "));
    }
    out.push_str(&body);
    out
}

struct Ctx<'a> {
    enums: &'a BTreeSet<&'a str>,
    types: &'a BTreeSet<&'a str>,
    refs: &'a BTreeMap<&'a str, Vec<String>>,
}

impl Ctx<'_> {
    /// Whether `to` leads back to `from`.
    fn reaches(&self, to: &str, from: &str) -> bool {
        let mut seen = BTreeSet::new();
        let mut stack = vec![to.to_string()];
        while let Some(n) = stack.pop() {
            if n == from {
                return true;
            }
            if seen.insert(n.clone()) {
                if let Some(r) = self.refs.get(n.as_str()) {
                    stack.extend(r.iter().cloned());
                }
            }
        }
        false
    }
}

/// Whether the enum's values are all strings (`Some(false)`) or all
/// integers (`Some(true)`); `None` for other enums.
fn enum_kind(e: &EnumInfo) -> Option<bool> {
    if e.members.iter().all(|(_, v)| v.is_str()) {
        Some(false)
    } else if e.members.iter().all(|(_, v)| v.as_i64().is_some()) {
        Some(true)
    } else {
        None
    }
}

fn write_enum(out: &mut String, e: &EnumInfo) {
    let Some(ints) = enum_kind(e) else {
        let _ = writeln!(
            out,
            "\n// enum `{}` has values that are not all strings or all integers; \
             its fields are `Value`s.",
            e.name
        );
        return;
    };
    let _ = writeln!(out, "\n/// The ThingsDB enum `{}`.", e.name);
    out.push_str("#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ThingsEnum)]\n");
    if !is_camel(&e.name) || e.members.iter().any(|(n, _)| !is_camel(n)) {
        out.push_str("#[allow(non_camel_case_types)]\n");
    }
    let ident = rust_ident(&e.name);
    if ident != e.name {
        let _ = writeln!(out, "#[thingsdb(name = {:?})]", e.name);
    }
    let _ = writeln!(out, "pub enum {ident} {{");
    for (name, value) in &e.members {
        let vident = rust_ident(name);
        let mut attrs = Vec::new();
        if vident != *name {
            attrs.push(format!("rename = {name:?}"));
        }
        if ints {
            attrs.push(format!("value = {}", value.as_i64().unwrap_or_default()));
        } else if value.as_str() != Some(name.as_str()) {
            attrs.push(format!("value = {:?}", value.as_str().unwrap_or_default()));
        }
        if !attrs.is_empty() {
            let _ = writeln!(out, "    #[thingsdb({})]", attrs.join(", "));
        }
        let _ = writeln!(out, "    {vident},");
    }
    out.push_str("}\n");
}

fn write_type(
    out: &mut String,
    t: &TypeInfo,
    enum_names: &[&str],
    ctx: &Ctx<'_>,
    uses: &mut BTreeSet<&'static str>,
) {
    let _ = writeln!(
        out,
        "\n/// The ThingsDB type `{}`{}.",
        t.name,
        if t.wrap_only { " (wrap-only)" } else { "" }
    );
    out.push_str("#[derive(Debug, Clone, PartialEq, Thing)]\n");
    if !is_camel(&t.name) {
        out.push_str("#[allow(non_camel_case_types)]\n");
    }
    let ident = rust_ident(&t.name);
    if ident != t.name {
        let _ = writeln!(out, "#[thingsdb(name = {:?})]", t.name);
    }
    let _ = writeln!(out, "pub struct {ident} {{");
    let idents: Vec<String> = t.fields.iter().map(|(n, _)| field_ident(n)).collect();
    let id_ident = ["id", "thing_id", "id_"]
        .into_iter()
        .find(|c| !idents.iter().any(|i| i == c))
        .unwrap_or("id__");
    let _ = writeln!(
        out,
        "    /// The thing's id (`#`).\n    #[thingsdb(id)]\n    pub {id_ident}: Option<u64>,"
    );
    for ((name, text), fident) in t.fields.iter().zip(&idents) {
        let spec = Spec::parse(text).resolve_enums(enum_names);
        let (ty, derived) = rust_type(&spec, &t.name, ctx, false, uses);
        let mut attrs = Vec::new();
        if fident.trim_start_matches("r#") != name {
            attrs.push(format!("rename = {name:?}"));
        }
        if derived.to_string() != spec.to_string() {
            attrs.push(format!("spec = {text:?}"));
        }
        if !attrs.is_empty() {
            let _ = writeln!(out, "    #[thingsdb({})]", attrs.join(", "));
        }
        let _ = writeln!(out, "    pub {fident}: {ty},");
    }
    out.push_str("}\n");
}

/// The Rust type for a definition, and the definition that Rust type
/// gives (where they differ, the field keeps its text in `spec = ...`).
fn rust_type(
    spec: &Spec,
    owner: &str,
    ctx: &Ctx<'_>,
    in_list: bool,
    uses: &mut BTreeSet<&'static str>,
) -> (String, Spec) {
    let mut value = || {
        uses.insert("Value");
        ("Value".to_string(), Spec::Any)
    };
    match spec {
        Spec::Any => value(),
        Spec::Str => ("String".into(), Spec::Str),
        Spec::Utf8 | Spec::Raw => ("String".into(), Spec::Str),
        Spec::Bytes => {
            uses.insert("Blob");
            ("Blob".into(), Spec::Bytes)
        }
        Spec::Int | Spec::Uint | Spec::Pint | Spec::Nint => ("i64".into(), Spec::Int),
        Spec::Float | Spec::Number => ("f64".into(), Spec::Float),
        Spec::Bool => ("bool".into(), Spec::Bool),
        Spec::Datetime => {
            uses.insert("Datetime");
            ("Datetime".into(), Spec::Datetime)
        }
        Spec::Timeval => {
            uses.insert("Timeval");
            ("Timeval".into(), Spec::Timeval)
        }
        Spec::Thing => value(),
        Spec::Type(n) if ctx.types.contains(n.as_str()) => {
            let ident = rust_ident(n);
            if !in_list && ctx.reaches(n, owner) {
                (format!("Box<{ident}>"), Spec::Type(n.clone()))
            } else {
                (ident, Spec::Type(n.clone()))
            }
        }
        Spec::Enum(n) if ctx.enums.contains(n.as_str()) => (rust_ident(n), Spec::Enum(n.clone())),
        Spec::Type(_) | Spec::Enum(_) => value(),
        Spec::List(s) => {
            let (t, d) = rust_type(s, owner, ctx, true, uses);
            (format!("Vec<{t}>"), Spec::List(Box::new(d)))
        }
        Spec::Set(s) => {
            let (t, d) = rust_type(s, owner, ctx, true, uses);
            uses.insert("SetOf");
            (format!("SetOf<{t}>"), Spec::Set(Box::new(d)))
        }
        Spec::Optional(s) => {
            let (t, d) = rust_type(s, owner, ctx, in_list, uses);
            (format!("Option<{t}>"), Spec::Optional(Box::new(d)))
        }
        Spec::Flagged(_, s) => rust_type(s, owner, ctx, in_list, uses),
        Spec::Other(text) => {
            let head = text.split(['<', '{']).next().unwrap_or_default();
            match head {
                "int" | "uint" | "pint" | "nint" => ("i64".into(), Spec::Int),
                "float" | "number" => ("f64".into(), Spec::Float),
                "str" | "utf8" | "raw" | "email" | "url" | "tel" => ("String".into(), Spec::Str),
                _ if text.starts_with('/') => ("String".into(), Spec::Str),
                n if ctx.enums.contains(n) => (rust_ident(n), Spec::Enum(n.to_string())),
                _ => value(),
            }
        }
    }
}

fn is_camel(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && !s.contains('_')
        && !s.chars().all(|c| !c.is_ascii_lowercase())
}

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "dyn", "else", "enum", "extern", "false",
    "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
    "return", "static", "struct", "trait", "true", "type", "unsafe", "use", "where", "while",
    "abstract", "become", "box", "do", "final", "macro", "override", "priv", "typeof", "unsized",
    "virtual", "yield", "try", "gen",
];

/// A ThingsDB name as a Rust identifier: `r#` before keywords, `_` after
/// the few words that cannot be raw.
fn rust_ident(name: &str) -> String {
    match name {
        "self" | "Self" | "super" | "crate" | "_" => format!("{name}_"),
        n if KEYWORDS.contains(&n) => format!("r#{n}"),
        n => n.to_string(),
    }
}

/// A field name in snake_case, as a Rust identifier.
fn field_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if i > 0 && (prev_lower || (next_lower && chars[i - 1].is_ascii_uppercase())) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    rust_ident(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_identifiers() {
        assert_eq!(field_ident("parentNode"), "parent_node");
        assert_eq!(field_ident("type"), "r#type");
        assert_eq!(field_ident("self"), "self_");
        assert_eq!(field_ident("HTTPCode"), "http_code");
        assert!(is_camel("Person"));
        assert!(!is_camel("RED"));
        assert!(!is_camel("my_type"));
    }

    #[test]
    fn definitions_map_to_rust_types() {
        let t = TypeInfo::new(
            "T",
            &[
                ("a", "int<0:10>"),
                ("b", "[T]"),
                ("c", "T?"),
                ("d", "{T}"),
                ("e", "&str"),
                ("f", "Unknown"),
                ("g", "utf8?"),
                ("h", "closure"),
            ],
        );
        let code = rust_source(&[t], &[]);
        for line in [
            "#[thingsdb(spec = \"int<0:10>\")]\n    pub a: i64,",
            "pub b: Vec<T>,",
            "pub c: Option<Box<T>>,",
            "pub d: SetOf<T>,",
            "#[thingsdb(spec = \"&str\")]\n    pub e: String,",
            "#[thingsdb(spec = \"Unknown\")]\n    pub f: Value,",
            "#[thingsdb(spec = \"utf8?\")]\n    pub g: Option<String>,",
            "#[thingsdb(spec = \"closure\")]\n    pub h: Value,",
            "use thingsdb_client::typed::{SetOf, Value};",
        ] {
            assert!(code.contains(line), "{line}\nin\n{code}");
        }
    }
}
