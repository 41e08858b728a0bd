//! ThingsDB's functions, as the prompt completes and highlights them.
//!
//! The table is generated from ThingsDB's sources (see
//! `tests/functions.rs`), never typed by hand: each function with where it
//! may be called and the scopes it is defined in.

use thingsdb_client::Scope;

/// Where a function may be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// At the start of an expression: `abs(-1)`.
    Root,
    /// Chained after a value: `x.map(…)`.
    Chain,
    /// Either way: `closure(…)` and `x.closure()`.
    Both,
}

impl Place {
    /// True when a function of this place can start an expression.
    pub fn at_root(self) -> bool {
        matches!(self, Place::Root | Place::Both)
    }

    /// True when a function of this place can follow a value and a `.`.
    pub fn chained(self) -> bool {
        matches!(self, Place::Chain | Place::Both)
    }
}

/// The scopes a function is defined in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scopes {
    /// Every scope.
    Any,
    /// `@thingsdb` only.
    Thingsdb,
    /// `@node` scopes only.
    Node,
    /// Collection scopes only.
    Collection,
    /// `@thingsdb` and collection scopes.
    ThingsdbOrCollection,
}

/// The three kinds of scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    /// `@thingsdb`.
    Thingsdb,
    /// `@node`, `@node:ID`.
    Node,
    /// A collection.
    Collection,
}

impl ScopeKind {
    /// The kind of `scope`.
    pub fn of(scope: &Scope) -> ScopeKind {
        if scope.is_thingsdb() {
            ScopeKind::Thingsdb
        } else if scope.node_id().is_some() {
            ScopeKind::Node
        } else {
            ScopeKind::Collection
        }
    }
}

impl Scopes {
    /// True when a function with these scopes works in a scope of `kind`.
    pub fn allows(self, kind: ScopeKind) -> bool {
        match self {
            Scopes::Any => true,
            Scopes::Thingsdb => kind == ScopeKind::Thingsdb,
            Scopes::Node => kind == ScopeKind::Node,
            Scopes::Collection => kind == ScopeKind::Collection,
            Scopes::ThingsdbOrCollection => kind != ScopeKind::Node,
        }
    }
}

/// One ThingsDB function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    /// Its name.
    pub name: &'static str,
    /// Where it may be called.
    pub place: Place,
    /// The scopes it is defined in.
    pub scopes: Scopes,
}

use Place::{Both, Chain, Root};
use Scopes::{Any, Collection, Node, Thingsdb, ThingsdbOrCollection};

/// Every function of ThingsDB, sorted by name.
pub const FUNCTIONS: &[Function] = include!("functions_table.rs");

/// The function called `name`.
pub fn lookup(name: &str) -> Option<&'static Function> {
    FUNCTIONS
        .binary_search_by(|f| f.name.cmp(name))
        .ok()
        .and_then(|i| FUNCTIONS.get(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_unique_and_complete() {
        assert!(FUNCTIONS.len() > 200, "{}", FUNCTIONS.len());
        assert!(FUNCTIONS.windows(2).all(|w| w[0].name < w[1].name));
        for f in FUNCTIONS {
            assert!(
                f.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                f.name
            );
        }
    }

    #[test]
    fn places_and_scopes_follow_the_node() {
        let export = lookup("export").unwrap();
        assert_eq!(export.place, Root);
        assert_eq!(export.scopes, Collection);
        assert!(!export.scopes.allows(ScopeKind::Thingsdb));
        let new_collection = lookup("new_collection").unwrap();
        assert_eq!(new_collection.scopes, Thingsdb);
        assert!(lookup("map").unwrap().place.chained());
        assert!(!lookup("map").unwrap().place.at_root());
        assert_eq!(lookup("abs").unwrap().scopes, Any);
        assert_eq!(
            lookup("procedures_info").unwrap().scopes,
            ThingsdbOrCollection
        );
        assert_eq!(lookup("new_user").unwrap().scopes, Thingsdb);
        assert_eq!(lookup("nodes_info").unwrap().scopes, Node);
        assert_eq!(lookup("counters").unwrap().scopes, Node);
        assert_eq!(lookup("err").unwrap().place, Both);
        assert_eq!(lookup("push").unwrap().place, Chain);
        assert!(lookup("no_such_function").is_none());
    }

    #[test]
    fn scope_kinds() {
        let kind = |s: &str| ScopeKind::of(&Scope::parse(s).unwrap());
        assert_eq!(kind("@t"), ScopeKind::Thingsdb);
        assert_eq!(kind("@node:2"), ScopeKind::Node);
        assert_eq!(kind("//stuff"), ScopeKind::Collection);
        assert!(Scopes::ThingsdbOrCollection.allows(ScopeKind::Collection));
        assert!(!Scopes::ThingsdbOrCollection.allows(ScopeKind::Node));
    }
}
