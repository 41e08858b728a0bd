//! `thingsdb types`: a collection's types and enums, as ThingsDB
//! definitions or as Rust code.

use std::fmt::Write;

use thingsdb_client::management::{EnumInfo, TypeInfo};
use thingsdb_client::{Client, Scope};

use crate::error::CliError;

/// Prints the types and enums of the collection `scope`: with `rust`, as
/// `#[derive(Thing)]` structs and `#[derive(ThingsEnum)]` enums
/// (`thingsdb_client::typed::rust_source`); otherwise one line each, as
/// ThingsDB definitions.
pub async fn types(
    client: &Client,
    scope: &Scope,
    rust: bool,
    output: Option<&std::path::Path>,
) -> Result<(), CliError> {
    let name = scope.collection_name().unwrap_or_default();
    let api = client.collection(name)?;
    let types = api.types_info().await?;
    let enums = api.enums_info().await?;
    let text = if rust {
        format!(
            "// The types of collection `{name}`, as `thingsdb types --rust` printed them.\n{}",
            thingsdb_client::typed::rust_source(&types, &enums)
        )
    } else {
        definitions(&types, &enums)
    };
    crate::commands::write_out(text.as_bytes(), output, "the types")
}

/// One line per enum (`enum Color {RED: "red", ...}`) and per type
/// (`type Person {name: str, ...}`), sorted by name.
pub fn definitions(types: &[TypeInfo], enums: &[EnumInfo]) -> String {
    let mut enums: Vec<&EnumInfo> = enums.iter().collect();
    enums.sort_by(|a, b| a.name.cmp(&b.name));
    let mut types: Vec<&TypeInfo> = types.iter().collect();
    types.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    for e in enums {
        let members: Vec<String> = e
            .members
            .iter()
            .map(|(n, v)| format!("{n}: {}", crate::output::compact(v)))
            .collect();
        let _ = writeln!(out, "enum {} {{{}}}", e.name, members.join(", "));
    }
    for t in types {
        let fields: Vec<String> = t.fields.iter().map(|(n, s)| format!("{n}: {s}")).collect();
        let wpo = if t.wrap_only { " (wrap-only)" } else { "" };
        let _ = writeln!(out, "type {}{wpo} {{{}}}", t.name, fields.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_sorted_one_a_line() {
        let text = definitions(
            &[
                TypeInfo::new("B", &[("x", "int")]),
                TypeInfo::new("A", &[("b", "B?"), ("c", "Color")]),
            ],
            &[EnumInfo::new(
                "Color",
                &[("RED", "red".into()), ("N", 1.into())],
            )],
        );
        assert_eq!(
            text,
            "enum Color {RED: \"red\", N: 1}\ntype A {b: B?, c: Color}\ntype B {x: int}\n"
        );
    }
}
