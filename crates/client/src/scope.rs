//! Scopes: where a query or procedure runs.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use thingsdb_protocol::ParsedScope;

use crate::error::Error;

/// Where a request runs: the thingsdb scope, a node, or a collection.
///
/// A scope parses exactly as a node parses it (the one parser is
/// [`thingsdb_protocol::scope`]): `@t`, `@thingsdb`, `@n`, `@node`,
/// `@node:3`, `@n:3`, `@:stuff`, `@collection:stuff`, `//stuff`, and the
/// node's other spellings (`@c:stuff`, `/thingsdb`, `/node/3`,
/// `/collection/stuff`, any abbreviation of `thingsdb`, `node` or
/// `collection`). Other strings are refused with an error that says why.
/// The string is kept as given and sent as it is, so a scope costs nothing
/// per request; the usual spellings of the thingsdb and node scopes
/// (`@t`, `@thingsdb`, `@n`, `@node`, ...) are not even copied when parsed,
/// and a collection scope is one shared string.
///
/// ```
/// use thingsdb_client::Scope;
/// let s: Scope = "//stuff".parse()?;
/// assert_eq!(s.collection_name(), Some("stuff"));
/// assert!("@t".parse::<Scope>()?.is_thingsdb());
/// assert_eq!("@node:3".parse::<Scope>()?.node_id(), Some(Some(3)));
/// assert!("stuff".parse::<Scope>().is_err());
/// # Ok::<(), thingsdb_client::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    text: Text,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Kind {
    Thingsdb,
    Node(Option<u8>),
    /// The collection's name: `text[at..]`.
    Collection {
        at: usize,
    },
}

/// The scope string: one of [`KNOWN`] (no allocation), or shared.
#[derive(Clone)]
enum Text {
    Static(&'static str),
    Shared(Arc<str>),
}

/// Spellings of the thingsdb and node scopes common enough to be kept
/// without a copy.
const KNOWN: [&str; 10] = [
    "@t",
    "@thingsdb",
    "@n",
    "@node",
    "/t",
    "/thingsdb",
    "/n",
    "/node",
    "@:thingsdb",
    "@:node",
];

impl Text {
    fn new(s: &str) -> Text {
        match KNOWN.iter().find(|k| **k == s) {
            Some(k) => Text::Static(k),
            None => Text::Shared(s.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Text::Static(s) => s,
            Text::Shared(s) => s,
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl Scope {
    /// Parses a scope string.
    pub fn parse(s: &str) -> Result<Scope, Error> {
        let kind = match ParsedScope::parse(s) {
            Ok(ParsedScope::Thingsdb) => Kind::Thingsdb,
            Ok(ParsedScope::Node(id)) => Kind::Node(id),
            Ok(ParsedScope::Collection(name)) => Kind::Collection {
                at: name_at(s, name),
            },
            Err(e) => return Err(Error::BadArgument(format!("invalid scope {s:?}: {e}"))),
        };
        Ok(Scope {
            text: Text::new(s),
            kind,
        })
    }

    /// The thingsdb scope, `@thingsdb` (`@t`): a client's default scope.
    pub fn thingsdb() -> Scope {
        Scope {
            text: Text::Static("@thingsdb"),
            kind: Kind::Thingsdb,
        }
    }

    /// The scope of the connected node, `@node`.
    pub fn node() -> Scope {
        Scope {
            text: Text::Static("@node"),
            kind: Kind::Node(None),
        }
    }

    /// The scope of a collection, `@collection:NAME`.
    pub fn collection(name: &str) -> Result<Scope, Error> {
        Scope::parse(&format!("@collection:{name}"))
    }

    /// The string sent on the wire (as given when parsed).
    pub fn as_str(&self) -> &str {
        self.text.as_str()
    }

    /// True for the thingsdb scope.
    pub fn is_thingsdb(&self) -> bool {
        self.kind == Kind::Thingsdb
    }

    /// For a node scope, `Some(None)` for the connected node or
    /// `Some(Some(id))` for a given node; `None` for other scopes.
    pub fn node_id(&self) -> Option<Option<u32>> {
        match self.kind {
            Kind::Node(id) => Some(id.map(u32::from)),
            _ => None,
        }
    }

    /// The collection's name for a collection scope.
    pub fn collection_name(&self) -> Option<&str> {
        match self.kind {
            Kind::Collection { at } => self.as_str().get(at..),
            _ => None,
        }
    }
}

/// Where a collection's name, as the parser gave it, starts in the scope
/// string `s`: the parser returns a part of `s` that ends it.
fn name_at(s: &str, name: &str) -> usize {
    let at = (name.as_ptr() as usize).wrapping_sub(s.as_ptr() as usize);
    if s.get(at..) == Some(name) {
        at
    } else {
        s.len().saturating_sub(name.len())
    }
}

impl FromStr for Scope {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Scope::parse(s)
    }
}

impl TryFrom<&str> for Scope {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        Scope::parse(s)
    }
}

impl TryFrom<String> for Scope {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Scope::parse(&s)
    }
}

impl TryFrom<&Scope> for Scope {
    type Error = Error;
    fn try_from(s: &Scope) -> Result<Self, Error> {
        Ok(s.clone())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({:?})", self.as_str())
    }
}

impl Default for Scope {
    /// `@thingsdb` (`@t`), the default scope of a client.
    fn default() -> Self {
        Scope::thingsdb()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_form_parses() {
        for s in ["@t", "@thingsdb", "@n", "@node", "/t", "@thin", "/node"] {
            assert!(Scope::parse(s).is_ok(), "{s}");
        }
        assert_eq!(Scope::parse("@node:3").unwrap().node_id(), Some(Some(3)));
        assert_eq!(Scope::parse("@n:0").unwrap().node_id(), Some(Some(0)));
        assert_eq!(Scope::parse("/node/2").unwrap().node_id(), Some(Some(2)));
        for s in [
            "@:stuff",
            "//stuff",
            "@collection:stuff",
            "@c:stuff",
            "/collection/stuff",
        ] {
            assert_eq!(
                Scope::parse(s).unwrap().collection_name(),
                Some("stuff"),
                "{s}"
            );
        }
        assert_eq!(Scope::parse("//stuff").unwrap().as_str(), "//stuff");
    }

    #[test]
    fn the_usual_spellings_are_not_copied_and_compare_by_text() {
        for s in ["@t", "@thingsdb", "@n", "@node", "/t", "/node"] {
            let scope = Scope::parse(s).unwrap();
            assert!(matches!(scope.text, Text::Static(_)), "{s}");
            assert_eq!(scope.as_str(), s);
        }
        assert!(matches!(
            Scope::parse("@thin").unwrap().text,
            Text::Shared(_)
        ));
        // One spelling, kept either way, is one scope.
        let shared = Scope {
            text: Text::Shared("@t".into()),
            kind: Kind::Thingsdb,
        };
        assert_eq!(Scope::parse("@t").unwrap(), shared);
        use std::hash::BuildHasher;
        let state = std::hash::RandomState::new();
        assert_eq!(
            state.hash_one(Scope::parse("@t").unwrap()),
            state.hash_one(&shared)
        );
        assert_eq!(Scope::default().to_string(), "@thingsdb");
        assert_eq!(format!("{:?}", Scope::node()), "Scope(\"@node\")");
    }

    #[test]
    fn a_collection_name_is_the_end_of_the_scope_string() {
        assert_eq!(name_at("//stuff", "stuff"), 2);
        // Not a part of the string: the length decides.
        assert_eq!(name_at("@collection:stuff", &String::from("stuff")), 12);
        let s = Scope::collection("other").unwrap();
        assert_eq!(
            (s.as_str(), s.collection_name()),
            ("@collection:other", Some("other"))
        );
    }

    #[test]
    fn bad_forms_are_refused_with_a_reason() {
        for s in [
            "",
            "stuff",
            "@",
            "@x",
            "@node:x",
            "@node:-1",
            "//",
            "@:",
            "//1abc",
            "@t:x",
            "//a b",
            "@collection:",
            "@node:64",
        ] {
            let e = Scope::parse(s).unwrap_err();
            assert!(e.to_string().contains("invalid scope"), "{s}: {e}");
        }
    }
}
