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
/// per request.
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
    text: Arc<str>,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Kind {
    Thingsdb,
    Node(Option<u8>),
    Collection(Arc<str>),
}

impl Scope {
    /// Parses a scope string.
    pub fn parse(s: &str) -> Result<Scope, Error> {
        let kind = match ParsedScope::parse(s) {
            Ok(ParsedScope::Thingsdb) => Kind::Thingsdb,
            Ok(ParsedScope::Node(id)) => Kind::Node(id),
            Ok(ParsedScope::Collection(name)) => Kind::Collection(name.into()),
            Err(e) => return Err(Error::BadArgument(format!("invalid scope {s:?}: {e}"))),
        };
        Ok(Scope {
            text: s.into(),
            kind,
        })
    }

    /// The thingsdb scope, `@thingsdb` (`@t`): a client's default scope.
    pub fn thingsdb() -> Scope {
        Scope {
            text: "@thingsdb".into(),
            kind: Kind::Thingsdb,
        }
    }

    /// The scope of the connected node, `@node`.
    pub fn node() -> Scope {
        Scope {
            text: "@node".into(),
            kind: Kind::Node(None),
        }
    }

    /// The scope of a collection, `@collection:NAME`.
    pub fn collection(name: &str) -> Result<Scope, Error> {
        Scope::parse(&format!("@collection:{name}"))
    }

    /// The string sent on the wire (as given when parsed).
    pub fn as_str(&self) -> &str {
        &self.text
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
        match &self.kind {
            Kind::Collection(n) => Some(n),
            _ => None,
        }
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
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({:?})", &*self.text)
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
