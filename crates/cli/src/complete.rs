//! What Tab completes at the prompt.
//!
//! [`context`] works out from the text before the cursor what is being
//! typed: a scope or prompt command on a line of its own, a function or
//! name where an expression starts, a property or method after a `.`, or a
//! procedure's name inside the string of `run('…` and the other functions
//! that take one. [`candidates`] turns that into completions, from the
//! function table and from what the node knows ([`Names`]: collections,
//! procedures, types, enums, properties), which the prompt fetches and
//! caches.

use crate::functions::{self, ScopeKind};
use crate::lexer::{self, Kind};

/// Words of the prompt itself (see `?`).
pub const PROMPT_COMMANDS: &[&str] = &["exit", "help", "quit"];

/// Functions whose first argument is a procedure's name.
const PROCEDURE_FUNCTIONS: &[&str] = &[
    "del_procedure",
    "has_procedure",
    "mod_procedure",
    "procedure_doc",
    "procedure_info",
    "rename_procedure",
    "run",
];

/// What is being typed at the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Context {
    /// Nothing to complete (inside a comment or an ordinary string).
    Nothing,
    /// A scope (`@…` or `//…`) on a line of its own.
    Scope,
    /// A name where an expression starts; `first` when it is the first
    /// word of a statement (where prompt commands are possible too).
    Root {
        /// The start of a new statement on its own line.
        first: bool,
    },
    /// A name after a `.`. `path` holds the property names from a `.` at
    /// the start of an expression (`.a.b.` gives `["a", "b"]`, `.` gives
    /// `[]`): the thing whose properties to offer. `None` when the value
    /// before the `.` is something else (a variable, a call).
    Chained {
        /// The properties leading to the value, from the collection's root.
        path: Option<Vec<String>>,
    },
    /// A procedure's name inside a string; `quote` closes it.
    Procedure {
        /// The string's quote character.
        quote: char,
    },
}

/// The context at the end of `before` (the text of the statement before
/// the cursor, its earlier lines included) and where the word being
/// completed starts (a byte offset in `before`).
pub fn context(before: &str) -> (usize, Context) {
    // A scope on its own line, at the start of a statement.
    let trimmed = before.trim_start();
    if (trimmed.starts_with('@') || trimmed.starts_with("//"))
        && !trimmed.contains(char::is_whitespace)
    {
        return (before.len() - trimmed.len(), Context::Scope);
    }
    let tokens = lexer::tokens(before);
    let Some(last) = tokens.last() else {
        return (before.len(), Context::Root { first: true });
    };
    match last.kind {
        Kind::Comment | Kind::Template | Kind::Regex => return (before.len(), Context::Nothing),
        Kind::Str if last.closed => return (before.len(), Context::Nothing),
        Kind::Str => {
            let quote = last.text(before).chars().next().unwrap_or('\'');
            let mut sig = tokens[..tokens.len() - 1]
                .iter()
                .rev()
                .filter(|t| t.significant());
            let paren = sig.next().is_some_and(|t| t.is_punct(before, '('));
            let name = sig
                .next()
                .filter(|t| t.kind == Kind::Name)
                .map(|t| t.text(before));
            if paren && name.is_some_and(|n| PROCEDURE_FUNCTIONS.contains(&n)) {
                return (last.start + 1, Context::Procedure { quote });
            }
            return (before.len(), Context::Nothing);
        }
        _ => {}
    }
    let (start, upto) = if last.kind == Kind::Name {
        (last.start, tokens.len() - 1)
    } else {
        (before.len(), tokens.len())
    };
    let sig: Vec<&lexer::Token> = tokens[..upto].iter().filter(|t| t.significant()).collect();
    let Some(prev) = sig.last() else {
        return (start, Context::Root { first: true });
    };
    if prev.is_punct(before, '.') {
        // Walk back over `.name` pairs to see where the chain starts.
        let mut path = Vec::new();
        let mut i = sig.len() - 1; // at a '.'
        loop {
            let before_dot = i.checked_sub(1).map(|j| sig[j]);
            match before_dot {
                Some(t) if t.kind == Kind::Name => {
                    let is_property = i >= 2 && sig[i - 2].is_punct(before, '.');
                    if is_property {
                        path.push(t.text(before).to_string());
                        i -= 2;
                        continue;
                    }
                    // A variable, keyword or call before the chain.
                    let keyword = lexer::KEYWORDS.contains(&t.text(before));
                    return (
                        start,
                        Context::Chained {
                            path: keyword.then(|| {
                                path.reverse();
                                path
                            }),
                        },
                    );
                }
                Some(t) if t.kind == Kind::Punct && !matches!(t.text(before), ")" | "]" | "}") => {
                    path.reverse();
                    return (start, Context::Chained { path: Some(path) });
                }
                None => {
                    path.reverse();
                    return (start, Context::Chained { path: Some(path) });
                }
                Some(_) => return (start, Context::Chained { path: None }),
            }
        }
    }
    (start, Context::Root { first: false })
}

/// What the node knows that completions need; the prompt fetches these
/// (and caches them), tests give fixed ones.
pub trait Names {
    /// The names of the node's collections.
    fn collections(&self) -> Vec<String>;
    /// The procedures of the current scope.
    fn procedures(&self) -> Vec<String>;
    /// The types and enums of the current collection.
    fn types(&self) -> Vec<String>;
    /// The properties of the thing at `path` from the collection's root.
    fn properties(&self, path: &[String]) -> Vec<String>;
}

/// One completion: what is shown, and what replaces the word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Shown in the list.
    pub display: String,
    /// Put in place of the word.
    pub replacement: String,
}

impl Candidate {
    fn plain(s: &str) -> Candidate {
        Candidate {
            display: s.to_string(),
            replacement: s.to_string(),
        }
    }

    fn call(name: &str) -> Candidate {
        Candidate {
            display: format!("{name}()"),
            replacement: format!("{name}("),
        }
    }
}

/// The completions of `word` in `context`, for a scope of `kind`, sorted
/// and without duplicates.
pub fn candidates(
    context: &Context,
    word: &str,
    kind: ScopeKind,
    names: &dyn Names,
) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let mut add = |c: Candidate| {
        if c.replacement.starts_with(word) && c.replacement != word {
            out.push(c);
        }
    };
    match context {
        Context::Nothing => {}
        Context::Scope => {
            for s in ["@thingsdb", "@node", "@collection:", "@t", "@n", "@:"] {
                add(Candidate::plain(s));
            }
            if word.starts_with("@:") || word.starts_with("@collection:") || word.starts_with("//")
            {
                let prefix = if word.starts_with("//") {
                    "//"
                } else if word.starts_with("@:") {
                    "@:"
                } else {
                    "@collection:"
                };
                for c in names.collections() {
                    add(Candidate::plain(&format!("{prefix}{c}")));
                }
            }
        }
        Context::Root { first } => {
            if *first {
                for c in PROMPT_COMMANDS {
                    add(Candidate::plain(c));
                }
            }
            for f in functions::FUNCTIONS {
                if f.place.at_root() && f.scopes.allows(kind) {
                    add(Candidate::call(f.name));
                }
            }
            for k in lexer::KEYWORDS.iter().chain(lexer::CONSTANTS) {
                add(Candidate::plain(k));
            }
            if kind == ScopeKind::Collection && !word.is_empty() {
                for t in names.types() {
                    add(Candidate::plain(&t));
                }
            }
        }
        Context::Chained { path } => {
            if let (Some(path), ScopeKind::Collection) = (path, kind) {
                for p in names.properties(path) {
                    add(Candidate::plain(&p));
                }
            }
            for f in functions::FUNCTIONS {
                if f.place.chained() && f.scopes.allows(kind) {
                    add(Candidate::call(f.name));
                }
            }
        }
        Context::Procedure { quote } => {
            if kind != ScopeKind::Node {
                for p in names.procedures() {
                    add(Candidate {
                        display: p.clone(),
                        replacement: format!("{p}{quote}"),
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| a.replacement.cmp(&b.replacement));
    out.dedup_by(|a, b| a.replacement == b.replacement);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl Names for Fixed {
        fn collections(&self) -> Vec<String> {
            vec!["stuff".into(), "store".into()]
        }
        fn procedures(&self) -> Vec<String> {
            vec!["add_one".into(), "add_two".into()]
        }
        fn types(&self) -> Vec<String> {
            vec!["User".into(), "Color".into()]
        }
        fn properties(&self, path: &[String]) -> Vec<String> {
            match path {
                [] => vec!["users".into(), "greeting".into()],
                [a] if a == "users" => vec!["count_all".into()],
                _ => vec![],
            }
        }
    }

    fn complete(before: &str, kind: ScopeKind) -> (usize, Vec<String>) {
        let (start, ctx) = context(before);
        let word = &before[start..];
        let c = candidates(&ctx, word, kind, &Fixed);
        (start, c.into_iter().map(|c| c.replacement).collect())
    }

    #[test]
    fn scopes_and_collection_names() {
        let (start, c) = complete("@", ScopeKind::Thingsdb);
        assert_eq!(start, 0);
        assert!(
            c.contains(&"@thingsdb".to_string()) && c.contains(&"@node".to_string()),
            "{c:?}"
        );
        assert_eq!(
            complete("@:st", ScopeKind::Thingsdb).1,
            vec!["@:store", "@:stuff"]
        );
        assert_eq!(
            complete("  //stu", ScopeKind::Thingsdb),
            (2, vec!["//stuff".to_string()])
        );
        assert_eq!(
            complete("@collection:sto", ScopeKind::Node).1,
            vec!["@collection:store"]
        );
        assert_eq!(complete("@th", ScopeKind::Node).1, vec!["@thingsdb"]);
    }

    #[test]
    fn functions_valid_in_the_scope() {
        let (_, c) = complete("new_col", ScopeKind::Thingsdb);
        assert_eq!(c, vec!["new_collection("]);
        assert!(complete("new_col", ScopeKind::Collection).1.is_empty());
        let (_, c) = complete("x = new_t", ScopeKind::Collection);
        assert_eq!(c, vec!["new_type("]);
        // Prompt commands only as the first word.
        assert!(complete("ex", ScopeKind::Thingsdb)
            .1
            .contains(&"exit".to_string()));
        assert!(!complete("1; ex", ScopeKind::Thingsdb)
            .1
            .contains(&"exit".to_string()));
        assert!(complete("ret", ScopeKind::Node)
            .1
            .contains(&"return".to_string()));
        // Types in a collection.
        assert_eq!(complete("Us", ScopeKind::Collection).1, vec!["User"]);
    }

    #[test]
    fn properties_and_methods_after_a_dot() {
        let (start, c) = complete(".gre", ScopeKind::Collection);
        assert_eq!((start, c), (1, vec!["greeting".to_string()]));
        let (_, c) = complete("x = .users.co", ScopeKind::Collection);
        assert!(c.contains(&"count_all".to_string()), "{c:?}");
        assert!(c.contains(&"copy(".to_string()), "{c:?}");
        assert!(c.contains(&"count(".to_string()), "{c:?}");
        // After a variable: methods only.
        let (_, c) = complete("x.co", ScopeKind::Collection);
        assert!(c.contains(&"copy(".to_string()), "{c:?}");
        assert!(!c.contains(&"count_all".to_string()), "{c:?}");
        // After a call: methods only.
        let (_, c) = complete("range(3).map", ScopeKind::Thingsdb);
        assert_eq!(c, vec!["map(", "map_id(", "map_type(", "map_wrap("]);
        // No properties outside a collection.
        let (_, c) = complete(".gre", ScopeKind::Thingsdb);
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn procedures_in_run() {
        let (start, c) = complete("run('add", ScopeKind::Collection);
        assert_eq!(start, 5);
        assert_eq!(c, vec!["add_one'", "add_two'"]);
        let (_, c) = complete("x = procedure_info(\"add_t", ScopeKind::Thingsdb);
        assert_eq!(c, vec!["add_two\""]);
        // Other strings complete nothing.
        assert!(complete("x = 'add", ScopeKind::Collection).1.is_empty());
        assert!(complete("// ab", ScopeKind::Collection).1.is_empty());
    }

    #[test]
    fn over_several_lines() {
        let (start, ctx) = context("x = [\n  .us");
        assert_eq!((start, ctx), (9, Context::Chained { path: Some(vec![]) }));
        // Within a statement, `@` and `//` lines are code, not scopes.
        assert_ne!(context("[\n@").1, Context::Scope);
        assert_eq!(context("[\n//stu").1, Context::Nothing);
    }
}
