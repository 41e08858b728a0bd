//! A field's definition in a ThingsDB type (`str`, `[Person]`, `int?`,
//! `{Tag}`, ...): the one parser and printer of the spec grammar in this
//! crate.

use std::fmt;

/// A field definition of a ThingsDB type, as `set_type` / `mod_type` take
/// it and `type_info` gives it back.
///
/// The common definitions are variants; anything else the node accepts
/// (ranges like `int<0:10>`, patterns like `/^[a-z]+$/`, enums with a
/// default like `Color{RED}`, `closure`, `room`, ...) is kept word for word
/// in [`Spec::Other`]. Field flags (`&`, `-`, `+`, `^`, `*`, `?`, `!` in
/// front) are kept in [`Spec::Flagged`].
///
/// ```
/// use thingsdb_client::typed::Spec;
/// let s = Spec::parse("[Person?]?");
/// assert_eq!(
///     s,
///     Spec::Optional(Box::new(Spec::List(Box::new(Spec::Optional(Box::new(
///         Spec::Type("Person".into())
///     ))))))
/// );
/// assert_eq!(s.to_string(), "[Person?]?");
/// assert_eq!(Spec::parse("int<0:10>"), Spec::Other("int<0:10>".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Spec {
    /// `any`: any value.
    Any,
    /// `str`: a string.
    Str,
    /// `utf8`: a valid UTF-8 string.
    Utf8,
    /// `raw`: a string or bytes.
    Raw,
    /// `bytes`.
    Bytes,
    /// `int`: a 64-bit signed integer.
    Int,
    /// `uint`: an integer >= 0.
    Uint,
    /// `pint`: an integer > 0.
    Pint,
    /// `nint`: an integer < 0.
    Nint,
    /// `float`.
    Float,
    /// `number`: an integer or a float.
    Number,
    /// `bool`.
    Bool,
    /// `datetime`.
    Datetime,
    /// `timeval`.
    Timeval,
    /// `thing`: any thing.
    Thing,
    /// An instance of a type, by name.
    Type(String),
    /// A member of an enum, by name. A parsed definition cannot tell an
    /// enum from a type: [`Spec::parse`] gives [`Spec::Type`], and
    /// [`Spec::resolve_enums`] turns the enums' names into this.
    Enum(String),
    /// `[...]`: a list of the inner definition (`[]` is a list of `any`).
    List(Box<Spec>),
    /// `{...}`: a set of things (`{}` is a set of any things).
    Set(Box<Spec>),
    /// `...?`: the inner definition or `nil`.
    Optional(Box<Spec>),
    /// Field flags in front of a definition (`&`, `-`, `+`, `^`, `*`, `?`,
    /// `!`), kept as written.
    Flagged(String, Box<Spec>),
    /// Any other definition, word for word.
    Other(String),
}

const FLAGS: &[char] = &['&', '-', '+', '^', '*', '?', '!'];

impl Spec {
    /// Reads a definition. Never fails: what is not understood is kept in
    /// [`Spec::Other`] (the node is the judge of what it accepts).
    pub fn parse(s: &str) -> Spec {
        let flags_end = s.find(|c| !FLAGS.contains(&c)).unwrap_or(s.len());
        if flags_end > 0 && flags_end < s.len() {
            return Spec::Flagged(
                s[..flags_end].to_string(),
                Box::new(Spec::parse(&s[flags_end..])),
            );
        }
        Spec::parse_plain(s, true)
    }

    /// The same as [`Spec::parse`], under the name the derive macros use
    /// for `#[thingsdb(spec = "...")]`.
    pub fn from_definition(s: &str) -> Spec {
        Spec::parse(s)
    }

    fn parse_plain(s: &str, outer: bool) -> Spec {
        if let Some(inner) = s.strip_suffix('?') {
            if !inner.is_empty() {
                return Spec::Optional(Box::new(Spec::parse_plain(inner, outer)));
            }
        }
        if outer {
            if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                return Spec::List(Box::new(Spec::parse_nested(inner, s)));
            }
            if let Some(inner) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                return Spec::Set(Box::new(Spec::parse_nested(inner, s)));
            }
        }
        match s {
            "any" => Spec::Any,
            "str" => Spec::Str,
            "utf8" => Spec::Utf8,
            "raw" => Spec::Raw,
            "bytes" => Spec::Bytes,
            "int" => Spec::Int,
            "uint" => Spec::Uint,
            "pint" => Spec::Pint,
            "nint" => Spec::Nint,
            "float" => Spec::Float,
            "number" => Spec::Number,
            "bool" => Spec::Bool,
            "datetime" => Spec::Datetime,
            "timeval" => Spec::Timeval,
            "thing" => Spec::Thing,
            _ if thingsdb_protocol::scope::is_valid_name(s) && !is_keyword(s) => {
                Spec::Type(s.to_string())
            }
            _ => Spec::Other(s.to_string()),
        }
    }

    fn parse_nested(inner: &str, whole: &str) -> Spec {
        if inner.is_empty() {
            return if whole.starts_with('{') {
                Spec::Thing
            } else {
                Spec::Any
            };
        }
        match Spec::parse_plain(inner, false) {
            Spec::Other(_) => Spec::Other(inner.to_string()),
            s => s,
        }
    }

    /// Turns [`Spec::Type`] into [`Spec::Enum`] where the name is one of
    /// `enums`, everywhere in the definition.
    pub fn resolve_enums(self, enums: &[&str]) -> Spec {
        match self {
            Spec::Type(n) if enums.contains(&n.as_str()) => Spec::Enum(n),
            Spec::List(s) => Spec::List(Box::new(s.resolve_enums(enums))),
            Spec::Set(s) => Spec::Set(Box::new(s.resolve_enums(enums))),
            Spec::Optional(s) => Spec::Optional(Box::new(s.resolve_enums(enums))),
            Spec::Flagged(f, s) => Spec::Flagged(f, Box::new(s.resolve_enums(enums))),
            s => s,
        }
    }

    /// The names of the types and enums this definition refers to.
    pub fn references(&self) -> Vec<&str> {
        match self {
            Spec::Type(n) | Spec::Enum(n) => vec![n],
            Spec::List(s) | Spec::Set(s) | Spec::Optional(s) | Spec::Flagged(_, s) => {
                s.references()
            }
            _ => Vec::new(),
        }
    }

    /// The definition without field flags.
    pub fn unflagged(&self) -> &Spec {
        match self {
            Spec::Flagged(_, s) => s.unflagged(),
            s => s,
        }
    }
}

/// Words that are definitions, not type names.
fn is_keyword(s: &str) -> bool {
    matches!(
        s,
        "nil"
            | "true"
            | "false"
            | "closure"
            | "regex"
            | "error"
            | "room"
            | "task"
            | "email"
            | "url"
            | "tel"
            | "enum"
    )
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self {
            Spec::Any => "any",
            Spec::Str => "str",
            Spec::Utf8 => "utf8",
            Spec::Raw => "raw",
            Spec::Bytes => "bytes",
            Spec::Int => "int",
            Spec::Uint => "uint",
            Spec::Pint => "pint",
            Spec::Nint => "nint",
            Spec::Float => "float",
            Spec::Number => "number",
            Spec::Bool => "bool",
            Spec::Datetime => "datetime",
            Spec::Timeval => "timeval",
            Spec::Thing => "thing",
            Spec::Type(n) | Spec::Enum(n) | Spec::Other(n) => n,
            Spec::List(s) => {
                return match **s {
                    Spec::Any => f.write_str("[]"),
                    _ => write!(f, "[{s}]"),
                }
            }
            Spec::Set(s) => {
                return match **s {
                    Spec::Thing => f.write_str("{}"),
                    _ => write!(f, "{{{s}}}"),
                }
            }
            Spec::Optional(s) => return write!(f, "{s}?"),
            Spec::Flagged(flags, s) => return write!(f, "{flags}{s}"),
        };
        f.write_str(word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_node_spellings_read_and_print_back() {
        for s in [
            "str",
            "int?",
            "[Person]",
            "[Person?]?",
            "{Tag}",
            "{}",
            "[]",
            "[]?",
            "datetime",
            "bytes",
            "thing",
            "any",
            "Color",
            "int<0:10>",
            "str<1:>",
            "/^a+$/",
            "&Person",
            "-[Node]?",
            "Color{RED}",
            "closure",
            "room?",
            "thing<Person>",
            "[int<0:3>]",
        ] {
            assert_eq!(Spec::parse(s).to_string(), s, "{s}");
        }
    }

    #[test]
    fn structure_and_enums() {
        assert_eq!(Spec::parse("{}"), Spec::Set(Box::new(Spec::Thing)));
        assert_eq!(Spec::parse("[]"), Spec::List(Box::new(Spec::Any)));
        assert_eq!(Spec::parse("closure"), Spec::Other("closure".into()));
        assert_eq!(
            Spec::parse("[[int]]"),
            Spec::List(Box::new(Spec::Other("[int]".into())))
        );
        let s = Spec::parse("[Color?]").resolve_enums(&["Color"]);
        assert_eq!(
            s,
            Spec::List(Box::new(Spec::Optional(Box::new(Spec::Enum(
                "Color".into()
            )))))
        );
        assert_eq!(Spec::parse("&[A]?").references(), vec!["A"]);
        assert_eq!(Spec::parse("&[A]?").unflagged(), &Spec::parse("[A]?"));
    }

    proptest! {
        #[test]
        fn printing_what_was_read_gives_the_text_back(s in "[a-zA-Z_?\\[\\]{}<>:0-9&*]{0,12}") {
            // Every text reads; every text that reads as something other
            // than a word kept as is prints back exactly.
            let spec = Spec::parse(&s);
            let again = Spec::parse(&spec.to_string());
            prop_assert_eq!(spec, again);
        }
    }
}
