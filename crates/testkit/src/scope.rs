//! Scope parsing, as a node does it (`ti_scope_init` in the node's source).

use thingsdb_protocol::ErrorCode;

use crate::reply::Reply;

/// The documentation suffix a node appends to scope errors.
const DOC_SCOPES: &str = "; see https://docs.thingsdb.io/v1/overview/scopes";

/// A parsed scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `@thingsdb`, `@t`, `/t`, ...
    Thingsdb,
    /// `@node`, `@n` (this node, `None`) or `@node:3` (node 3).
    Node(Option<u8>),
    /// `@collection:stuff`, `@:stuff`, `//stuff`, ...
    Collection(String),
}

impl Scope {
    /// Parses a scope string the way a node does; errors carry the node's
    /// code (-60, value error) and message.
    ///
    /// ```
    /// use thingsdb_testkit::Scope;
    /// assert_eq!(Scope::parse("@t").unwrap(), Scope::Thingsdb);
    /// assert_eq!(Scope::parse("//stuff").unwrap(), Scope::Collection("stuff".into()));
    /// assert_eq!(Scope::parse("@:stuff").unwrap(), Scope::Collection("stuff".into()));
    /// assert_eq!(Scope::parse("@node:3").unwrap(), Scope::Node(Some(3)));
    /// assert!(Scope::parse("stuff").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Scope, Reply> {
        let b = s.as_bytes();
        let n = b.len();
        if n >= 2 {
            let sep = match b[0] {
                b'@' => Some(b':'),
                b'/' => Some(b'/'),
                _ => None,
            };
            if let Some(sep) = sep {
                match b[1] {
                    b't' if "thingsdb".as_bytes().starts_with(&b[1..]) => {
                        return Ok(Scope::Thingsdb);
                    }
                    b'n' => {
                        let i = (2..n).find(|&i| b[i] == sep).unwrap_or(n);
                        if "node".as_bytes().starts_with(&b[1..i]) {
                            if i + 1 >= n {
                                return Ok(Scope::Node(None));
                            }
                            let id = &s[i + 1..];
                            return match id.parse::<u64>() {
                                Ok(v) if v < 0x40 && id.bytes().all(|c| c.is_ascii_digit()) => {
                                    Ok(Scope::Node(Some(v as u8)))
                                }
                                _ => Err(value_error(&format!(
                                    "invalid scope; a node id must be an integer value between 0 and 64{DOC_SCOPES}"
                                ))),
                            };
                        }
                    }
                    b'c' => {
                        let i = (2..n).find(|&i| b[i] == sep).unwrap_or(n);
                        if "collection".as_bytes().starts_with(&b[1..i]) {
                            if i + 1 >= n {
                                return Err(value_error(&format!(
                                    "invalid scope; the collection scope requires to specify a collection{DOC_SCOPES}"
                                )));
                            }
                            return collection(&s[i + 1..]);
                        }
                    }
                    c if c == sep && n >= 3 => return collection(&s[2..]),
                    _ => {}
                }
            }
        }
        Err(invalid_scope(s))
    }

    /// The scope's name as a node puts it in events: `@thingsdb`, `@node`
    /// or `@collection:NAME`.
    pub fn name(&self) -> String {
        match self {
            Scope::Thingsdb => "@thingsdb".to_string(),
            Scope::Node(_) => "@node".to_string(),
            Scope::Collection(c) => format!("@collection:{c}"),
        }
    }
}

/// Whether `s` follows the node's naming rules (a letter or `_`, then
/// letters, digits or `_`; at most 255 bytes).
pub fn is_valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {}
        _ => return false,
    }
    b.len() <= 255 && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn collection(name: &str) -> Result<Scope, Reply> {
    if is_valid_name(name) {
        Ok(Scope::Collection(name.to_string()))
    } else {
        Err(value_error(&format!(
            "invalid scope; the specified collection name is invalid{DOC_SCOPES}"
        )))
    }
}

fn value_error(msg: &str) -> Reply {
    Reply::error(ErrorCode::Value, msg)
}

fn invalid_scope(s: &str) -> Reply {
    if s.is_empty() {
        return value_error(&format!(
            "invalid scope; scopes must not be empty{DOC_SCOPES}"
        ));
    }
    if !s.is_ascii() {
        return value_error(&format!(
            "invalid scope; scopes must only contain valid ASCII characters{DOC_SCOPES}"
        ));
    }
    let first = s.as_bytes()[0];
    let sep = match first {
        b'@' => ':',
        b'/' => '/',
        _ => {
            return value_error(&format!(
            "invalid scope; scopes must start with a `@` or `/` but got `{s}` instead{DOC_SCOPES}"
        ))
        }
    };
    let c = first as char;
    if s.len() == 1 {
        return value_error(&format!(
            "invalid scope; expecting a scope name like `{c}thingsdb`, `{c}node{sep}...` or `{c}collection{sep}...`{DOC_SCOPES}"
        ));
    }
    value_error(&format!(
        "invalid scope; expecting a scope name like `{c}thingsdb`, `{c}node{sep}...` or `{c}collection{sep}...` but got `{s}` instead{DOC_SCOPES}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_like_a_node() {
        for s in ["@t", "@thingsdb", "/t", "/thingsdb", "@thin"] {
            assert_eq!(Scope::parse(s).unwrap(), Scope::Thingsdb, "{s}");
        }
        for s in ["@n", "@node", "/node", "@no"] {
            assert_eq!(Scope::parse(s).unwrap(), Scope::Node(None), "{s}");
        }
        assert_eq!(Scope::parse("@n:7").unwrap(), Scope::Node(Some(7)));
        assert_eq!(Scope::parse("/node/2").unwrap(), Scope::Node(Some(2)));
        assert!(Scope::parse("@node:64").is_err());
        for s in [
            "@collection:stuff",
            "@c:stuff",
            "@:stuff",
            "//stuff",
            "/collection/stuff",
        ] {
            assert_eq!(
                Scope::parse(s).unwrap(),
                Scope::Collection("stuff".into()),
                "{s}"
            );
        }
        for s in [
            "",
            "@",
            "x",
            "@tx",
            "//",
            "@:",
            "@:1abc",
            "@collection",
            "@x:y",
        ] {
            let e = Scope::parse(s).unwrap_err();
            assert_eq!(e.error_code(), Some(ErrorCode::Value), "{s}");
        }
    }

    #[test]
    fn names_follow_the_rules() {
        assert!(is_valid_name("chat_1"));
        assert!(is_valid_name("_x"));
        assert!(!is_valid_name("1x"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a-b"));
    }
}
