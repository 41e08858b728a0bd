//! Colours for ThingsDB code as it is typed: keywords, constants, strings,
//! numbers, regular expressions, comments, function names, type and enum
//! names (`User{…}`, `Color{RED}`) and `.property` access, with ANSI escape codes (only when the prompt's colours are on:
//! standard output is a terminal and `NO_COLOR` is not set).

use crate::functions;
use crate::lexer::{self, Kind, Token};

/// The colour of each kind of code.
mod sgr {
    pub const KEYWORD: &str = "\x1b[1;35m";
    pub const CONSTANT: &str = "\x1b[35m";
    pub const STRING: &str = "\x1b[32m";
    pub const NUMBER: &str = "\x1b[33m";
    pub const REGEX: &str = "\x1b[31m";
    pub const COMMENT: &str = "\x1b[90m";
    pub const FUNCTION: &str = "\x1b[36m";
    pub const PROPERTY: &str = "\x1b[34m";
    pub const TYPE: &str = "\x1b[1;33m";
    pub const HINT: &str = "\x1b[90m";
    pub const RESET: &str = "\x1b[0m";
}

/// True when colours are wanted: standard output is a terminal and
/// `NO_COLOR` is not set to something (see <https://no-color.org>).
pub fn colours_wanted(stdout_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The colour of token `i` of `tokens` (made from `code`), if any.
fn colour(code: &str, tokens: &[Token], i: usize) -> Option<&'static str> {
    let t = tokens.get(i)?;
    match t.kind {
        Kind::Space | Kind::Punct => None,
        Kind::Comment => Some(sgr::COMMENT),
        Kind::Str | Kind::Template => Some(sgr::STRING),
        Kind::Number => Some(sgr::NUMBER),
        Kind::Regex => Some(sgr::REGEX),
        Kind::Name => {
            let name = t.text(code);
            let prev = tokens[..i].iter().rev().find(|t| t.significant());
            let after_dot = prev.is_some_and(|p| p.is_punct(code, '.'));
            let next = tokens[i + 1..].iter().find(|t| t.significant());
            let called = next.is_some_and(|n| n.is_punct(code, '('));
            let instance = next.is_some_and(|n| n.is_punct(code, '{'));
            if after_dot {
                Some(if called { sgr::FUNCTION } else { sgr::PROPERTY })
            } else if lexer::KEYWORDS.contains(&name) {
                Some(sgr::KEYWORD)
            } else if lexer::CONSTANTS.contains(&name) {
                Some(sgr::CONSTANT)
            } else if called && functions::lookup(name).is_some_and(|f| f.place.at_root()) {
                Some(sgr::FUNCTION)
            } else if instance {
                Some(sgr::TYPE)
            } else {
                None
            }
        }
    }
}

/// `line` with colours, read as the continuation of `before` (the lines of
/// the statement typed so far, each ending with a line end), so that a
/// string or comment opened on an earlier line is coloured as one.
pub fn highlight(before: &str, line: &str) -> String {
    let code = format!("{before}{line}");
    let tokens = lexer::tokens(&code);
    let offset = before.len();
    let mut out = String::with_capacity(line.len() + 32);
    for (i, t) in tokens.iter().enumerate() {
        if t.end <= offset {
            continue;
        }
        let text = &code[t.start.max(offset)..t.end];
        match colour(&code, &tokens, i) {
            Some(c) => {
                out.push_str(c);
                out.push_str(text);
                out.push_str(sgr::RESET);
            }
            None => out.push_str(text),
        }
    }
    out
}

/// A hint (the rest of a line from the history), dimmed.
pub fn hint(text: &str) -> String {
    format!("{}{text}{}", sgr::HINT, sgr::RESET)
}

/// `text` without ANSI colour sequences.
#[cfg(test)]
pub fn strip(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_keep_the_text() {
        for line in [
            "x = 'a' + `b` + 1.5; // c",
            "if (true) { .name.upper(); } else { abs(-1); }",
            "/* open",
            "r = /a+/i;",
            "é;",
        ] {
            assert_eq!(strip(&highlight("", line)), line);
        }
    }

    #[test]
    fn each_kind_gets_its_colour() {
        let h = highlight("", "if (x) return abs(.age) + .name.len() // done");
        assert!(
            h.contains(&format!("{}if{}", sgr::KEYWORD, sgr::RESET)),
            "{h:?}"
        );
        assert!(
            h.contains(&format!("{}return{}", sgr::KEYWORD, sgr::RESET)),
            "{h:?}"
        );
        assert!(
            h.contains(&format!("{}abs{}", sgr::FUNCTION, sgr::RESET)),
            "{h:?}"
        );
        assert!(
            h.contains(&format!("{}age{}", sgr::PROPERTY, sgr::RESET)),
            "{h:?}"
        );
        assert!(
            h.contains(&format!("{}len{}", sgr::FUNCTION, sgr::RESET)),
            "{h:?}"
        );
        assert!(
            h.contains(&format!("{}// done{}", sgr::COMMENT, sgr::RESET)),
            "{h:?}"
        );
        // A plain variable is not coloured.
        assert!(h.contains("(x)"), "{h:?}");
        let h = highlight("", "nil; 'str'; 42; /re/;");
        assert!(
            h.contains(&format!("{}nil{}", sgr::CONSTANT, sgr::RESET)),
            "{h:?}"
        );
        assert!(
            h.contains(&format!("{}'str'{}", sgr::STRING, sgr::RESET)),
            "{h:?}"
        );
        assert!(
            h.contains(&format!("{}42{}", sgr::NUMBER, sgr::RESET)),
            "{h:?}"
        );
        assert!(
            h.contains(&format!("{}/re/{}", sgr::REGEX, sgr::RESET)),
            "{h:?}"
        );
        let h = highlight("", "u = User{name: 'x'}; Color{RED}; if (x) {1} else {2};");
        assert!(
            h.contains(&format!("{}User{}", sgr::TYPE, sgr::RESET)),
            "{h:?}"
        );
        assert!(
            h.contains(&format!("{}Color{}", sgr::TYPE, sgr::RESET)),
            "{h:?}"
        );
        assert!(
            h.contains(&format!("{}else{}", sgr::KEYWORD, sgr::RESET)),
            "{h:?}"
        );
        // An unknown name called at the start is a variable (a closure).
        let h = highlight("", "f(1);");
        assert!(h.starts_with("f("), "{h:?}");
    }

    #[test]
    fn a_string_opened_on_an_earlier_line_goes_on() {
        let h = highlight("x = 'abc\n", "def' + 1;");
        assert!(
            h.starts_with(&format!("{}def'{}", sgr::STRING, sgr::RESET)),
            "{h:?}"
        );
        assert_eq!(strip(&h), "def' + 1;");
    }

    #[test]
    fn no_color_and_terminals() {
        use std::ffi::OsStr;
        assert!(colours_wanted(true, None));
        assert!(colours_wanted(true, Some(OsStr::new(""))));
        assert!(!colours_wanted(true, Some(OsStr::new("1"))));
        assert!(!colours_wanted(false, None));
    }
}
