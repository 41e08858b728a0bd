//! Scopes: where a request runs, parsed the way a node parses them.
//!
//! This is the node's own grammar (`ti_scope_init` in ThingsDB's
//! `src/ti/scope.c`), form by form:
//!
//! | form | scope |
//! |---|---|
//! | `@` or `/`, then any prefix of `thingsdb` that starts with `t` (`@t`, `@thingsdb`, `/thi`) | the thingsdb scope |
//! | `@` or `/`, then a prefix of `node` starting with `n` (`@n`, `@node`, `/no`) | the connected node |
//! | the same, then the separator (`:` after `@`, `/` after `/`) and a node id 0-63 (`@node:3`, `@n:3`, `/node/3`) | that node; a separator with nothing after it is the connected node |
//! | `@` or `/`, then a prefix of `collection` starting with `c`, the separator and a name (`@collection:stuff`, `@c:stuff`, `/collection/stuff`) | the collection |
//! | `@:NAME`, `//NAME` | the collection |
//!
//! A collection name starts with an ASCII letter or `_`, holds only ASCII
//! letters, digits and `_`, and is at most 255 bytes long. Everything else
//! is refused; the [`ScopeError`] says which rule was broken.
//!
//! ```
//! use thingsdb_protocol::scope::{ParsedScope, ScopeError};
//! assert_eq!(ParsedScope::parse("@t"), Ok(ParsedScope::Thingsdb));
//! assert_eq!(ParsedScope::parse("/node/3"), Ok(ParsedScope::Node(Some(3))));
//! assert_eq!(ParsedScope::parse("//stuff"), Ok(ParsedScope::Collection("stuff")));
//! assert_eq!(ParsedScope::parse("@node:64"), Err(ScopeError::BadNodeId));
//! assert_eq!(ParsedScope::parse("stuff"), Err(ScopeError::BadStart));
//! ```

use alloc::string::{String, ToString};
use core::fmt;

/// The longest name a node accepts (`TI_NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// The highest node id plus one: node ids are 0-63.
pub const NODE_ID_LIMIT: u8 = 0x40;

/// A scope string, parsed. `N` is how a collection's name is held:
/// [`ParsedScope::parse`] gives a `ParsedScope<&str>` borrowing from the
/// string, [`ParsedScope::into_owned`] a `ParsedScope<String>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParsedScope<N> {
    /// The thingsdb scope (`@thingsdb`, `@t`, ...).
    Thingsdb,
    /// A node scope: `None` for the connected node (`@node`, `@n`), or
    /// the node with that id (`@node:3`).
    Node(Option<u8>),
    /// A collection scope (`@collection:stuff`, `@:stuff`, `//stuff`).
    Collection(N),
}

/// Why a scope string is not a scope. Each is one of a node's refusals
/// (all value errors, -60, on a node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScopeError {
    /// The string is empty.
    Empty,
    /// The string holds a byte that is not ASCII.
    NotAscii,
    /// The string does not start with `@` or `/`.
    BadStart,
    /// After `@` or `/` comes no scope name the node knows.
    UnknownName,
    /// A node id that is not an integer from 0 to 63.
    BadNodeId,
    /// A collection scope without a collection name.
    MissingCollection,
    /// A collection name that breaks the naming rules.
    BadCollectionName,
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScopeError::Empty => "a scope must not be empty",
            ScopeError::NotAscii => "a scope holds only ASCII characters",
            ScopeError::BadStart => "a scope starts with '@' or '/'",
            ScopeError::UnknownName => {
                "expected a scope like @thingsdb, @t, @node, @n, @node:ID, @collection:NAME, @:NAME or //NAME"
            }
            ScopeError::BadNodeId => "a node id is an integer from 0 to 63",
            ScopeError::MissingCollection => "the collection scope needs a collection name",
            ScopeError::BadCollectionName => {
                "a collection name starts with a letter or '_' and holds only letters, digits and '_' (at most 255)"
            }
        })
    }
}

#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
impl std::error::Error for ScopeError {}

/// Whether `name` follows a node's naming rules (collections, procedures,
/// variables): an ASCII letter or `_`, then ASCII letters, digits or `_`;
/// 1 to 255 bytes.
///
/// ```
/// use thingsdb_protocol::scope::is_valid_name;
/// assert!(is_valid_name("_chat_1"));
/// assert!(!is_valid_name("1chat"));
/// assert!(!is_valid_name("a-b"));
/// ```
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {}
        _ => return false,
    }
    b.len() <= NAME_MAX && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Whether `head` is a prefix of `word` (and not empty).
fn abbreviates(head: &[u8], word: &str) -> bool {
    !head.is_empty() && word.as_bytes().starts_with(head)
}

impl<'a> ParsedScope<&'a str> {
    /// Parses a scope string as a node does.
    pub fn parse(s: &'a str) -> Result<ParsedScope<&'a str>, ScopeError> {
        let b = s.as_bytes();
        let sep = match b.first() {
            Some(b'@') => b':',
            Some(b'/') => b'/',
            _ => return Err(refusal(s)),
        };
        let Some(&second) = b.get(1) else {
            return Err(refusal(s));
        };
        // The scope name runs to the first separator after it.
        let name_end = b[2..]
            .iter()
            .position(|&c| c == sep)
            .map_or(b.len(), |i| i + 2);
        let rest = s.get(name_end + 1..).unwrap_or("");
        match second {
            b't' if abbreviates(&b[1..], "thingsdb") => Ok(ParsedScope::Thingsdb),
            b'n' if abbreviates(&b[1..name_end], "node") => {
                if rest.is_empty() {
                    return Ok(ParsedScope::Node(None));
                }
                match parse_node_id(rest) {
                    Some(id) => Ok(ParsedScope::Node(Some(id))),
                    None => Err(ScopeError::BadNodeId),
                }
            }
            b'c' if abbreviates(&b[1..name_end], "collection") => {
                if rest.is_empty() {
                    return Err(ScopeError::MissingCollection);
                }
                collection(rest)
            }
            c if c == sep && b.len() >= 3 => collection(&s[2..]),
            _ => Err(refusal(s)),
        }
    }
}

impl ParsedScope<&str> {
    /// The same scope, owning its collection name.
    pub fn into_owned(self) -> ParsedScope<String> {
        match self {
            ParsedScope::Thingsdb => ParsedScope::Thingsdb,
            ParsedScope::Node(id) => ParsedScope::Node(id),
            ParsedScope::Collection(name) => ParsedScope::Collection(name.to_string()),
        }
    }
}

fn parse_node_id(s: &str) -> Option<u8> {
    if !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Leading zeros are fine ("007"); anything 64 or more is refused.
    let digits = s.trim_start_matches('0');
    if digits.len() > 2 {
        return None;
    }
    let id: u8 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    (id < NODE_ID_LIMIT).then_some(id)
}

fn collection(name: &str) -> Result<ParsedScope<&str>, ScopeError> {
    if is_valid_name(name) {
        Ok(ParsedScope::Collection(name))
    } else {
        Err(ScopeError::BadCollectionName)
    }
}

/// Why a string that is no known scope form was refused, in the order a
/// node checks.
fn refusal(s: &str) -> ScopeError {
    if s.is_empty() {
        ScopeError::Empty
    } else if !s.is_ascii() {
        ScopeError::NotAscii
    } else if !s.starts_with(['@', '/']) {
        ScopeError::BadStart
    } else {
        ScopeError::UnknownName
    }
}

impl<N: fmt::Display> fmt::Display for ParsedScope<N> {
    /// The scope's name as a node puts it in events: `@thingsdb`,
    /// `@node`, `@node:3` or `@collection:NAME`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParsedScope::Thingsdb => f.write_str("@thingsdb"),
            ParsedScope::Node(None) => f.write_str("@node"),
            ParsedScope::Node(Some(id)) => write!(f, "@node:{id}"),
            ParsedScope::Collection(name) => write!(f, "@collection:{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ParsedScope::*;

    #[test]
    fn every_form_a_node_accepts() {
        let cases: &[(&str, ParsedScope<&str>)] = &[
            ("@t", Thingsdb),
            ("@th", Thingsdb),
            ("@thingsdb", Thingsdb),
            ("/t", Thingsdb),
            ("/thingsdb", Thingsdb),
            ("@n", Node(None)),
            ("@no", Node(None)),
            ("@node", Node(None)),
            ("/node", Node(None)),
            ("@node:", Node(None)),
            ("@n:", Node(None)),
            ("@node:3", Node(Some(3))),
            ("@n:0", Node(Some(0))),
            ("@n:63", Node(Some(63))),
            ("@n:007", Node(Some(7))),
            ("/node/2", Node(Some(2))),
            ("@collection:stuff", Collection("stuff")),
            ("@c:stuff", Collection("stuff")),
            ("@coll:stuff", Collection("stuff")),
            ("@:stuff", Collection("stuff")),
            ("//stuff", Collection("stuff")),
            ("/collection/stuff", Collection("stuff")),
            ("/c/_x1", Collection("_x1")),
        ];
        for (s, want) in cases {
            assert_eq!(ParsedScope::parse(s), Ok(*want), "{s}");
        }
    }

    #[test]
    fn every_refusal_names_its_rule() {
        use ScopeError::*;
        let cases: &[(&str, ScopeError)] = &[
            ("", Empty),
            ("@", UnknownName),
            ("/", UnknownName),
            ("x", BadStart),
            ("stuff", BadStart),
            ("é", NotAscii),
            ("@é", NotAscii),
            ("@tx", UnknownName),
            ("@thingsdbx", UnknownName),
            ("@t:x", UnknownName),
            ("@x:y", UnknownName),
            ("@nodes", UnknownName),
            ("@node/3", UnknownName),
            ("//", UnknownName),
            ("@:", UnknownName),
            ("@/stuff", UnknownName),
            ("/:stuff", UnknownName),
            ("@node:64", BadNodeId),
            ("@node:x", BadNodeId),
            ("@node:-1", BadNodeId),
            ("@n:99999999999999999999999", BadNodeId),
            ("@collection", MissingCollection),
            ("@c:", MissingCollection),
            ("@:1abc", BadCollectionName),
            ("//a b", BadCollectionName),
            ("//a-b", BadCollectionName),
            ("//é", BadCollectionName),
        ];
        for (s, want) in cases {
            assert_eq!(ParsedScope::parse(s), Err(*want), "{s}");
        }
        let long = alloc::format!("//{}", "a".repeat(256));
        assert_eq!(ParsedScope::parse(&long), Err(BadCollectionName));
        let max = alloc::format!("//{}", "a".repeat(255));
        assert!(ParsedScope::parse(&max).is_ok());
    }

    #[test]
    fn names_in_events() {
        assert_eq!(
            alloc::format!("{}", Collection("stuff")),
            "@collection:stuff"
        );
        assert_eq!(alloc::format!("{}", Node::<&str>(Some(2))), "@node:2");
        assert_eq!(alloc::format!("{}", Thingsdb::<&str>), "@thingsdb");
        assert_eq!(
            ParsedScope::parse("//x").map(ParsedScope::into_owned),
            Ok(Collection(String::from("x")))
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            let _ = ParsedScope::parse(&s);
        }

        #[test]
        fn a_parsed_collection_reparses(name in "[A-Za-z_][A-Za-z0-9_]{0,20}") {
            let s = alloc::format!("@collection:{name}");
            let p = ParsedScope::parse(&s);
            proptest::prop_assert_eq!(p, Ok(Collection(name.as_str())));
            let shown = alloc::format!("{}", Collection(name.as_str()));
            proptest::prop_assert_eq!(ParsedScope::parse(&shown), Ok(Collection(name.as_str())));
        }
    }
}
