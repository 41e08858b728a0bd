//! Simple arithmetic, evaluated like a node: the `eval` feature.
//!
//! With the testkit's `eval` feature on, a QUERY without a handler is
//! evaluated as a tiny subset of the ThingsDB language, enough for
//! connector tests (and a handler can fall back to it with
//! [`Query::evaluate`](crate::Query::evaluate)):
//!
//! - integer and float literals, `nil`, `true`, `false`, strings in single
//!   or double quotes (a doubled quote escapes it);
//! - variables from the request's `vars` (`a * b;` with `{a: 6, b: 7}`);
//! - `+ - * / %` with the usual precedence, parentheses, unary `-` and `+`;
//! - statements separated by `;`; the value of the last one is returned
//!   (empty code returns `nil`).
//!
//! As on a node, integer arithmetic that overflows gives error -59
//! (`integer overflow`), division or modulo by zero gives -58
//! (`division or modulo by zero`), an unknown variable gives -54
//! (``variable `x` is undefined``), arithmetic on other types gives -61,
//! and code that cannot be parsed gives -52 (syntax error).
//!
//! Code beyond this subset (a function or method call such as
//! `new_procedure(..)`, an assignment, a property, a list, a thing, a
//! closure: any character the subset has no use for) is not a syntax
//! error: it gets -63 (operation error) with a message saying that the
//! testkit cannot run it and how to answer it instead, with
//! [`TestNode::on_query`](crate::TestNode::on_query) (a handler that can
//! fall back to [`Query::evaluate`](crate::Query::evaluate)) or, for
//! procedures, [`TestNode::procedure`](crate::TestNode::procedure).

use rmpv::Value;
use thingsdb_protocol::ErrorCode;

use crate::reply::Reply;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    Op(char),
    Open,
    Close,
    Semi,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Lit(Value),
    Var(String),
    Neg(Box<Expr>),
    Pos(Box<Expr>),
    Bin(char, Box<Expr>, Box<Expr>),
}

struct SyntaxError {
    pos: usize,
    what: String,
    /// The code goes beyond the subset (a call, an assignment, ...), so
    /// whether a node would run it cannot be told here.
    beyond: bool,
}

fn syntax(pos: usize, what: impl Into<String>) -> SyntaxError {
    SyntaxError {
        pos,
        what: what.into(),
        beyond: false,
    }
}

/// Code the subset cannot express, met at `pos`.
fn beyond(pos: usize, what: impl Into<String>) -> SyntaxError {
    SyntaxError {
        beyond: true,
        ..syntax(pos, what)
    }
}

fn tokenize(code: &str) -> Result<Vec<(usize, Tok)>, SyntaxError> {
    let b: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let mut is_float = false;
            if i + 1 < b.len() && b[i] == '.' && b[i + 1].is_ascii_digit() {
                is_float = true;
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text: String = b[start..i].iter().collect();
            if i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                return Err(syntax(i, format!("unexpected character `{}`", b[i])));
            }
            let tok = if is_float {
                Tok::Float(text.parse().map_err(|_| syntax(start, "invalid float"))?)
            } else {
                // Too large for an i64: a node refuses it as well.
                Tok::Int(
                    text.parse()
                        .map_err(|_| syntax(start, "integer overflow"))?,
                )
            };
            out.push((start, tok));
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            let name: String = b[start..i].iter().collect();
            // A name followed by `(` is a function call.
            if b[i..].iter().find(|c| !c.is_whitespace()) == Some(&'(') {
                return Err(beyond(start, format!("the call `{name}(..)`")));
            }
            out.push((start, Tok::Ident(name)));
            continue;
        }
        if c == '\'' || c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(syntax(start, "unterminated string")),
                    Some(&q) if q == c => {
                        if b.get(i + 1) == Some(&c) {
                            s.push(c);
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    }
                    Some(&o) => {
                        s.push(o);
                        i += 1;
                    }
                }
            }
            out.push((start, Tok::Str(s)));
            continue;
        }
        let tok = match c {
            '+' | '-' | '*' | '/' | '%' => Tok::Op(c),
            '(' => Tok::Open,
            ')' => Tok::Close,
            ';' => Tok::Semi,
            // `,` `.` `=` `[` `{` `|` ...: ThingsDB syntax the subset
            // does not have.
            other => return Err(beyond(i, format!("`{other}`"))),
        };
        out.push((start, tok));
        i += 1;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    at: usize,
    end: usize,
    depth: usize,
}

/// Nesting allowed before the parser gives up (keeps the stack small).
const MAX_DEPTH: usize = 256;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|(_, t)| t)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.at).map_or(self.end, |(p, _)| *p)
    }

    fn unexpected(&self) -> SyntaxError {
        match self.peek() {
            None => syntax(self.end, "unexpected end of statement"),
            Some(t) => syntax(self.pos(), format!("unexpected `{}`", tok_text(t))),
        }
    }

    fn program(&mut self) -> Result<Vec<Expr>, SyntaxError> {
        let mut stmts = Vec::new();
        loop {
            while self.peek() == Some(&Tok::Semi) {
                self.at += 1;
            }
            if self.peek().is_none() {
                return Ok(stmts);
            }
            stmts.push(self.expr()?);
            match self.peek() {
                None => return Ok(stmts),
                Some(Tok::Semi) => self.at += 1,
                Some(_) => return Err(self.unexpected()),
            }
        }
    }

    fn expr(&mut self) -> Result<Expr, SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(syntax(self.pos(), "maximum nesting reached"));
        }
        let mut lhs = self.term()?;
        while let Some(Tok::Op(op @ ('+' | '-'))) = self.peek().cloned() {
            self.at += 1;
            let rhs = self.term()?;
            lhs = Expr::Bin(op, Box::new(lhs), Box::new(rhs));
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn term(&mut self) -> Result<Expr, SyntaxError> {
        let mut lhs = self.unary()?;
        while let Some(Tok::Op(op @ ('*' | '/' | '%'))) = self.peek().cloned() {
            self.at += 1;
            let rhs = self.unary()?;
            lhs = Expr::Bin(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, SyntaxError> {
        match self.peek() {
            Some(Tok::Op('-')) => {
                self.at += 1;
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(syntax(self.pos(), "maximum nesting reached"));
                }
                let e = self.unary()?;
                self.depth -= 1;
                Ok(Expr::Neg(Box::new(e)))
            }
            Some(Tok::Op('+')) => {
                self.at += 1;
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(syntax(self.pos(), "maximum nesting reached"));
                }
                let e = self.unary()?;
                self.depth -= 1;
                Ok(Expr::Pos(Box::new(e)))
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr, SyntaxError> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.unexpected());
        };
        let e = match tok {
            Tok::Int(v) => Expr::Lit(Value::from(v)),
            Tok::Float(v) => Expr::Lit(Value::from(v)),
            Tok::Str(s) => Expr::Lit(Value::from(s)),
            Tok::Ident(name) => match name.as_str() {
                "nil" => Expr::Lit(Value::Nil),
                "true" => Expr::Lit(Value::from(true)),
                "false" => Expr::Lit(Value::from(false)),
                _ => Expr::Var(name),
            },
            Tok::Open => {
                self.at += 1;
                let e = self.expr()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(self.unexpected());
                }
                e
            }
            _ => return Err(self.unexpected()),
        };
        self.at += 1;
        Ok(e)
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Int(v) => v.to_string(),
        Tok::Float(v) => v.to_string(),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Ident(s) => s.clone(),
        Tok::Op(c) => c.to_string(),
        Tok::Open => "(".into(),
        Tok::Close => ")".into(),
        Tok::Semi => ";".into(),
    }
}

/// The ThingsDB name of a value's type, as error messages show it.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "bool",
        Value::Integer(_) => "int",
        Value::F32(_) | Value::F64(_) => "float",
        Value::String(_) => "str",
        Value::Binary(_) => "bytes",
        Value::Array(_) => "list",
        Value::Map(_) => "thing",
        Value::Ext(..) => "ext",
    }
}

enum Num {
    Int(i64),
    Float(f64),
}

fn num(v: &Value) -> Option<Num> {
    match v {
        Value::Integer(i) => i.as_i64().map(Num::Int),
        Value::F32(f) => Some(Num::Float(f64::from(*f))),
        Value::F64(f) => Some(Num::Float(*f)),
        Value::Boolean(b) => Some(Num::Int(i64::from(*b))),
        _ => None,
    }
}

fn err(code: ErrorCode, msg: impl Into<String>) -> Reply {
    Reply::error(code, msg)
}

fn overflow() -> Reply {
    err(ErrorCode::Overflow, "integer overflow")
}

fn zero_div() -> Reply {
    err(ErrorCode::ZeroDiv, "division or modulo by zero")
}

fn binop(op: char, a: Value, b: Value) -> Result<Value, Reply> {
    let not_supported = |a: &Value, b: &Value| {
        err(
            ErrorCode::Type,
            format!(
                "`{op}` not supported between `{}` and `{}`",
                type_name(a),
                type_name(b)
            ),
        )
    };
    if op == '+' {
        if let (Value::String(x), Value::String(y)) = (&a, &b) {
            if let (Some(x), Some(y)) = (x.as_str(), y.as_str()) {
                return Ok(Value::from(format!("{x}{y}")));
            }
        }
    }
    let (Some(x), Some(y)) = (num(&a), num(&b)) else {
        return Err(not_supported(&a, &b));
    };
    match (x, y) {
        (Num::Int(x), Num::Int(y)) => {
            let r = match op {
                '+' => x.checked_add(y).ok_or_else(overflow)?,
                '-' => x.checked_sub(y).ok_or_else(overflow)?,
                '*' => x.checked_mul(y).ok_or_else(overflow)?,
                '/' => {
                    if y == 0 {
                        return Err(zero_div());
                    }
                    x.checked_div(y).ok_or_else(overflow)?
                }
                _ => {
                    if y == 0 {
                        return Err(zero_div());
                    }
                    x.checked_rem(y).ok_or_else(overflow)?
                }
            };
            Ok(Value::from(r))
        }
        (x, y) => {
            let f = |n: Num| match n {
                Num::Int(i) => i as f64,
                Num::Float(f) => f,
            };
            let (x, y) = (f(x), f(y));
            if (op == '/' || op == '%') && y == 0.0 {
                return Err(zero_div());
            }
            Ok(Value::from(match op {
                '+' => x + y,
                '-' => x - y,
                '*' => x * y,
                '/' => x / y,
                _ => x % y,
            }))
        }
    }
}

fn eval(e: &Expr, vars: &[(String, Value)]) -> Result<Value, Reply> {
    match e {
        Expr::Lit(v) => Ok(v.clone()),
        Expr::Var(name) => vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| err(ErrorCode::Lookup, format!("variable `{name}` is undefined"))),
        Expr::Neg(inner) => {
            let v = eval(inner, vars)?;
            match num(&v) {
                Some(Num::Int(i)) => i.checked_neg().map(Value::from).ok_or_else(overflow),
                Some(Num::Float(f)) => Ok(Value::from(-f)),
                None => Err(err(
                    ErrorCode::Type,
                    format!("`-` not supported by type `{}`", type_name(&v)),
                )),
            }
        }
        Expr::Pos(inner) => {
            let v = eval(inner, vars)?;
            match num(&v) {
                Some(Num::Int(i)) => Ok(Value::from(i)),
                Some(Num::Float(f)) => Ok(Value::from(f)),
                None => Err(err(
                    ErrorCode::Type,
                    format!("`+` not supported by type `{}`", type_name(&v)),
                )),
            }
        }
        Expr::Bin(op, a, b) => {
            let a = eval(a, vars)?;
            let b = eval(b, vars)?;
            binop(*op, a, b)
        }
    }
}

/// Evaluates `code` with `vars`; see the [module documentation](self).
pub(crate) fn evaluate(code: &str, vars: &[(String, Value)]) -> Reply {
    let parsed = tokenize(code).and_then(|toks| {
        let end = code.chars().count();
        Parser {
            toks,
            at: 0,
            end,
            depth: 0,
        }
        .program()
    });
    let stmts = match parsed {
        Ok(s) => s,
        Err(e) if e.beyond => {
            return err(
                ErrorCode::Operation,
                format!(
                    "the testkit cannot run this code (at position {}, {}): its evaluator knows \
                     only arithmetic (literals, variables, `+ - * / %`, parentheses, `;`); \
                     answer it with a handler registered with TestNode::on_query, or register \
                     procedures with TestNode::procedure",
                    e.pos, e.what
                ),
            )
        }
        Err(e) => {
            return err(
                ErrorCode::Syntax,
                format!("error at line 1, position {}, {}", e.pos, e.what),
            )
        }
    };
    let mut last = Value::Nil;
    for s in &stmts {
        match eval(s, vars) {
            Ok(v) => last = v,
            Err(r) => return r,
        }
    }
    Reply::Data(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(code: &str) -> Value {
        match evaluate(code, &[]) {
            Reply::Data(v) => v,
            other => panic!("{code}: {other:?}"),
        }
    }

    fn code(code: &str) -> ErrorCode {
        evaluate(code, &[])
            .error_code()
            .unwrap_or_else(|| panic!("{code} did not fail"))
    }

    #[test]
    fn arithmetic() {
        assert_eq!(ok("1 + 1;"), Value::from(2));
        assert_eq!(ok("6 * 7"), Value::from(42));
        assert_eq!(ok("2 + 3 * 4;"), Value::from(14));
        assert_eq!(ok("(2 + 3) * 4;"), Value::from(20));
        assert_eq!(ok("-3 - -3;"), Value::from(0));
        assert_eq!(ok("7 / 2;"), Value::from(3));
        assert_eq!(ok("-7 / 2;"), Value::from(-3));
        assert_eq!(ok("-7 % 3;"), Value::from(-1));
        assert_eq!(ok("1; 2; 3;"), Value::from(3));
        assert_eq!(ok(""), Value::Nil);
        assert_eq!(ok("nil;"), Value::Nil);
        assert_eq!(ok("'it''s';"), Value::from("it's"));
        assert_eq!(ok("\"a\" + 'b';"), Value::from("ab"));
        assert_eq!(ok("1.5 * 2;"), Value::from(3.0));
        assert_eq!(ok("-9223372036854775807 - 1;"), Value::from(i64::MIN));
    }

    #[test]
    fn errors_carry_node_codes() {
        assert_eq!(code("1/0;"), ErrorCode::ZeroDiv);
        assert_eq!(code("1 % 0;"), ErrorCode::ZeroDiv);
        assert_eq!(code("9223372036854775807 + 1;"), ErrorCode::Overflow);
        assert_eq!(code("x;"), ErrorCode::Lookup);
        assert_eq!(code("'a' * 2;"), ErrorCode::Type);
        for bad in ["1 +;", "(1", "1 2", "99999999999999999999", "1a", ")"] {
            assert_eq!(code(bad), ErrorCode::Syntax, "{bad}");
        }
        let deep = "(".repeat(10_000);
        assert_eq!(code(&deep), ErrorCode::Syntax);
        let deep = "-".repeat(10_000) + "1";
        assert_eq!(code(&deep), ErrorCode::Syntax);
    }

    #[test]
    fn code_beyond_the_subset_says_how_to_answer_it() {
        for (code_, at) in [
            (
                "new_procedure(name, closure(code)); nil;",
                "the call `new_procedure(..)`",
            ),
            ("foo()", "the call `foo(..)`"),
            ("1 = 2", "`=`"),
            ("{", "`{`"),
            ("x.y;", "`.`"),
            ("[1, 2];", "`[`"),
            ("|x| x + 1", "`|`"),
        ] {
            let r = evaluate(code_, &[]);
            assert_eq!(r.error_code(), Some(ErrorCode::Operation), "{code_}");
            let Reply::Error { message, .. } = r else {
                unreachable!()
            };
            assert!(
                message.contains("the testkit cannot run this code"),
                "{message}"
            );
            assert!(message.contains(at), "{code_}: {message}");
            assert!(message.contains("TestNode::on_query"), "{message}");
            assert!(message.contains("TestNode::procedure"), "{message}");
        }
    }

    #[test]
    fn messages_match_the_node() {
        assert_eq!(
            evaluate("1/0;", &[]),
            Reply::error(ErrorCode::ZeroDiv, "division or modulo by zero")
        );
        assert_eq!(
            evaluate("c;", &[]),
            Reply::error(ErrorCode::Lookup, "variable `c` is undefined")
        );
    }
}
