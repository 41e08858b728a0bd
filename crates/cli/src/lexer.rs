//! A lexer for ThingsDB code, as the prompt needs it: to know whether a
//! statement is complete, to colour code as it is typed, and to know what
//! is being typed where Tab is pressed.
//!
//! It follows ThingsDB's grammar (`grammar/grammar.py` in ThingsDB's
//! sources): strings in `'…'` or `"…"` where a doubled quote is part of
//! the string, template strings in `` `…` ``, regular expressions
//! `/…/flags` where an expression may start, numbers (`42`, `0x1f`,
//! `0b101`, `0o17`, `1.5`, `.5`, `1.5e-3`), names, and comments (`// …`
//! to the end of the line, `/* … */`). It never fails: anything else is a
//! one-character [`Kind::Punct`] token, and a string or comment still open
//! at the end of the text is a token with `closed == false`.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Spaces, tabs and line ends.
    Space,
    /// `// …` or `/* … */`.
    Comment,
    /// `'…'` or `"…"`.
    Str,
    /// `` `…` ``.
    Template,
    /// An integer or float.
    Number,
    /// `/…/flags`.
    Regex,
    /// A name: a variable, property, function, keyword or type.
    Name,
    /// Any other single character (an operator or bracket).
    Punct,
}

/// One token: its kind and where it is in the text (byte offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: Kind,
    /// Its first byte.
    pub start: usize,
    /// One past its last byte.
    pub end: usize,
    /// False for a string, template or block comment not closed before the
    /// end of the text.
    pub closed: bool,
}

impl Token {
    /// The token's text in `code` (the text it was made from).
    pub fn text<'a>(&self, code: &'a str) -> &'a str {
        code.get(self.start..self.end).unwrap_or("")
    }

    /// True for a punctuation token that is exactly `c`.
    pub fn is_punct(&self, code: &str, c: char) -> bool {
        self.kind == Kind::Punct && self.text(code).starts_with(c)
    }

    /// True for tokens that carry meaning (not space or comments).
    pub fn significant(&self) -> bool {
        !matches!(self.kind, Kind::Space | Kind::Comment)
    }
}

/// The keywords of ThingsDB's grammar.
pub const KEYWORDS: &[&str] = &["break", "continue", "else", "for", "if", "in", "return"];

/// Names that are values: `true`, `false`, `nil`, and the floats `inf`
/// and `nan`.
pub const CONSTANTS: &[&str] = &["false", "inf", "nan", "nil", "true"];

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Can a regular expression start after `prev` (the last significant
/// token)? Only where an expression can: not after a value.
fn regex_may_follow(code: &str, prev: Option<&Token>) -> bool {
    match prev {
        None => true,
        Some(t) => match t.kind {
            Kind::Punct => !matches!(t.text(code), ")" | "]" | "}"),
            Kind::Name => t.text(code) == "return",
            _ => false,
        },
    }
}

/// Can a `.` followed by a digit start a number here (rather than a
/// property of a value)?
fn number_may_follow(code: &str, prev: Option<&Token>) -> bool {
    match prev {
        None => true,
        Some(t) => t.kind == Kind::Punct && !matches!(t.text(code), ")" | "]" | "}"),
    }
}

/// The tokens of `code`, in order, covering every byte of it.
pub fn tokens(code: &str) -> Vec<Token> {
    let b = code.as_bytes();
    let len = b.len();
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let mut out: Vec<Token> = Vec::new();
    let mut i = 0;
    while i < len {
        let start = i;
        let c = b[i];
        let prev = out.iter().rev().find(|t| t.significant());
        let mut closed = true;
        let kind = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                while i < len && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
                    i += 1;
                }
                Kind::Space
            }
            b'/' if at(i + 1) == b'/' => {
                i = code[i..].find('\n').map_or(len, |n| i + n);
                Kind::Comment
            }
            b'/' if at(i + 1) == b'*' => {
                match code[i + 2..].find("*/") {
                    Some(n) => i += 2 + n + 2,
                    None => {
                        i = len;
                        closed = false;
                    }
                }
                Kind::Comment
            }
            b'\'' | b'"' | b'`' => {
                i += 1;
                loop {
                    match b[i..].iter().position(|&x| x == c) {
                        // A doubled quote is part of the string.
                        Some(n) if at(i + n + 1) == c => i += n + 2,
                        Some(n) => {
                            i += n + 1;
                            break;
                        }
                        None => {
                            i = len;
                            closed = false;
                            break;
                        }
                    }
                }
                if c == b'`' {
                    Kind::Template
                } else {
                    Kind::Str
                }
            }
            b'0'..=b'9' => {
                i = number_end(b, i);
                Kind::Number
            }
            b'.' if at(i + 1).is_ascii_digit() && number_may_follow(code, prev) => {
                i = number_end(b, i);
                Kind::Number
            }
            b'/' if regex_may_follow(code, prev) => match regex_end(b, i) {
                Some(end) => {
                    i = end;
                    Kind::Regex
                }
                None => {
                    i += 1;
                    Kind::Punct
                }
            },
            c if is_name_start(c) => {
                while i < len && is_name_byte(b[i]) {
                    i += 1;
                }
                Kind::Name
            }
            _ => {
                i += code[i..].chars().next().map_or(1, char::len_utf8);
                Kind::Punct
            }
        };
        out.push(Token {
            kind,
            start,
            end: i,
            closed,
        });
    }
    out
}

/// The end of the number starting at `i`.
fn number_end(b: &[u8], mut i: usize) -> usize {
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    if at(i) == b'0' && matches!(at(i + 1), b'x' | b'o' | b'b') && at(i + 2).is_ascii_hexdigit() {
        i += 2;
        while at(i).is_ascii_hexdigit() {
            i += 1;
        }
        return i;
    }
    while at(i).is_ascii_digit() {
        i += 1;
    }
    if at(i) == b'.' && at(i + 1).is_ascii_digit() {
        i += 1;
        while at(i).is_ascii_digit() {
            i += 1;
        }
    }
    if at(i) == b'e'
        && (at(i + 1).is_ascii_digit()
            || (matches!(at(i + 1), b'+' | b'-') && at(i + 2).is_ascii_digit()))
    {
        i += 2;
        while at(i).is_ascii_digit() {
            i += 1;
        }
    }
    i
}

/// The end of the regular expression starting with the `/` at `i`, when it
/// closes on the same line.
fn regex_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'\n' => return None,
            b'/' => {
                j += 1;
                while j < b.len() && b[j].is_ascii_lowercase() {
                    j += 1;
                }
                return Some(j);
            }
            _ => j += 1,
        }
    }
    None
}

/// Where a scan of some code ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// A string, template or block comment is still open.
    pub open: bool,
    /// Opening brackets not yet closed (negative with too many closing ones).
    pub depth: i64,
}

impl Scan {
    /// Outside strings and comments.
    pub fn at_top_level(self) -> bool {
        !self.open
    }

    /// Nothing left open. (Too many closing brackets count as complete:
    /// the node reports the syntax error.)
    pub fn is_complete(self) -> bool {
        self.at_top_level() && self.depth <= 0
    }
}

/// Follows brackets, strings and comments to the end of `code`.
pub fn scan(code: &str) -> Scan {
    let mut depth: i64 = 0;
    let mut open = false;
    for t in tokens(code) {
        open = !t.closed;
        if t.kind == Kind::Punct {
            match t.text(code) {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => depth -= 1,
                _ => {}
            }
        }
    }
    Scan { open, depth }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(code: &str) -> Vec<(Kind, &str)> {
        tokens(code)
            .into_iter()
            .filter(|t| t.kind != Kind::Space)
            .map(|t| (t.kind, t.text(code)))
            .collect()
    }

    #[test]
    fn every_byte_is_in_one_token() {
        for code in [
            "x = 'a''b' + `t{x}` /* c */ // d\n.y.z(1.5e-3, 0x1F);",
            "é = ü;",
            "'open",
            "/*",
            "",
        ] {
            let ts = tokens(code);
            let mut at = 0;
            for t in &ts {
                assert_eq!(t.start, at, "{code:?}");
                assert!(t.end > t.start, "{code:?}");
                at = t.end;
            }
            assert_eq!(at, code.len(), "{code:?}");
        }
    }

    #[test]
    fn strings_numbers_names_and_comments() {
        use Kind::*;
        assert_eq!(
            kinds("x = 'it''s' + \"q\" + `t`; // c"),
            vec![
                (Name, "x"),
                (Punct, "="),
                (Str, "'it''s'"),
                (Punct, "+"),
                (Str, "\"q\""),
                (Punct, "+"),
                (Template, "`t`"),
                (Punct, ";"),
                (Comment, "// c"),
            ]
        );
        assert_eq!(
            kinds("[1, -2.5, .5, 1.5e-3, 0x1f, 0b101, 0o17]"),
            vec![
                (Punct, "["),
                (Number, "1"),
                (Punct, ","),
                (Punct, "-"),
                (Number, "2.5"),
                (Punct, ","),
                (Number, ".5"),
                (Punct, ","),
                (Number, "1.5e-3"),
                (Punct, ","),
                (Number, "0x1f"),
                (Punct, ","),
                (Number, "0b101"),
                (Punct, ","),
                (Number, "0o17"),
                (Punct, "]"),
            ]
        );
        assert_eq!(
            kinds(".a.b /* x */ ;"),
            vec![
                (Punct, "."),
                (Name, "a"),
                (Punct, "."),
                (Name, "b"),
                (Comment, "/* x */"),
                (Punct, ";"),
            ]
        );
    }

    #[test]
    fn regexes_only_where_an_expression_starts() {
        use Kind::*;
        assert_eq!(
            kinds("r = /a(b/i;"),
            vec![(Name, "r"), (Punct, "="), (Regex, "/a(b/i"), (Punct, ";")]
        );
        assert_eq!(
            kinds("a / b / c;"),
            vec![
                (Name, "a"),
                (Punct, "/"),
                (Name, "b"),
                (Punct, "/"),
                (Name, "c"),
                (Punct, ";")
            ]
        );
        assert_eq!(
            kinds("(1) / 2"),
            vec![
                (Punct, "("),
                (Number, "1"),
                (Punct, ")"),
                (Punct, "/"),
                (Number, "2")
            ]
        );
        assert_eq!(kinds("x.test(/\\//)")[4], (Regex, "/\\//"));
    }

    #[test]
    fn open_strings_and_comments_are_not_closed() {
        let t = tokens("x = 'abc");
        assert!(!t.last().unwrap().closed);
        let t = tokens("/* abc");
        assert!(!t.last().unwrap().closed);
        let t = tokens("// abc");
        assert!(t.last().unwrap().closed);
        assert!(!scan("'it''s").is_complete());
        assert!(scan("'it''s';").is_complete());
        assert_eq!(scan("f((1, [2]").depth, 2);
        assert!(scan("x = /(/;").is_complete());
    }
}
