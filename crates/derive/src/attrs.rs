//! The `#[thingsdb(...)]` attributes, read once for every derive.

use syn::{Attribute, LitInt, LitStr, Result};

/// What `#[thingsdb(...)]` said on one item (container, field or variant).
#[derive(Default)]
pub struct Attrs {
    /// `name = "T"` (container) or `rename = "x"` (field, variant).
    pub rename: Option<LitStr>,
    /// `skip`: not part of the type; `Default` when read.
    pub skip: bool,
    /// `id`: the thing's id (`#`), an `Option<u64>`.
    pub id: bool,
    /// `spec = "..."`: the field's ThingsDB definition, as written.
    pub spec: Option<LitStr>,
    /// `renamed_from = "old"`: the field's earlier name, for migrations.
    pub renamed_from: Vec<LitStr>,
    /// `value = 3` / `value = "x"` on an enum member.
    pub value: Option<syn::Lit>,
}

impl Attrs {
    /// Reads every `#[thingsdb(...)]` of `attrs`; `allowed` lists the keys
    /// this kind of item takes.
    pub fn parse(attrs: &[Attribute], allowed: &[&str]) -> Result<Attrs> {
        let mut out = Attrs::default();
        for attr in attrs {
            if !attr.path().is_ident("thingsdb") {
                continue;
            }
            attr.parse_nested_meta(|meta| {
                let key = meta
                    .path
                    .get_ident()
                    .map(|i| i.to_string())
                    .unwrap_or_default();
                if !allowed.contains(&key.as_str()) {
                    return Err(meta.error(format!(
                        "unknown thingsdb attribute here; expected one of: {}",
                        allowed.join(", ")
                    )));
                }
                match key.as_str() {
                    "name" | "rename" => out.rename = Some(meta.value()?.parse()?),
                    "skip" => out.skip = true,
                    "id" => out.id = true,
                    "spec" => out.spec = Some(meta.value()?.parse()?),
                    "renamed_from" => out.renamed_from.push(meta.value()?.parse()?),
                    "value" => {
                        let lit: syn::Lit = meta.value()?.parse()?;
                        match &lit {
                            syn::Lit::Str(_) | syn::Lit::Int(_) => {}
                            _ => return Err(meta.error("an enum value is a string or an integer")),
                        }
                        out.value = Some(lit);
                    }
                    _ => unreachable!("checked against `allowed`"),
                }
                Ok(())
            })?;
        }
        Ok(out)
    }
}

/// `lower_snake_case` of a Rust identifier (`NewMessage` -> `new_message`).
pub fn snake_case(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 4);
    let chars: Vec<char> = ident.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if i > 0 && (prev_lower || (next_lower && chars[i - 1].is_uppercase())) {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// An integer literal as i64, with a spanned error.
pub fn int_value(lit: &LitInt) -> Result<i64> {
    lit.base10_parse::<i64>()
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn snake_case_splits_words() {
        assert_eq!(snake_case("Message"), "message");
        assert_eq!(snake_case("NewMessage"), "new_message");
        assert_eq!(snake_case("HTTPRequest"), "http_request");
        assert_eq!(snake_case("Ping2Pong"), "ping2_pong");
        assert_eq!(snake_case("a"), "a");
    }
}
