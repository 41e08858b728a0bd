//! The interactive prompt.
//!
//! Lines are gathered until they make a whole statement: while a bracket,
//! a string or a block comment is open, or a line ends with `\`, the prompt
//! asks for more. A line that is exactly a scope (`@:stuff`, `@t`, `@n`,
//! `@node:2`, `//stuff`, `@collection:x`) switches the scope; `?` or `help`
//! prints help; `exit`, `quit` or Ctrl-D leaves; Ctrl-C clears the input
//! (and interrupts a running query).
//!
//! The line logic ([`Input`]) is separate from the terminal so that it can
//! be tested.

use std::io::Write;
use std::path::PathBuf;

use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Config, Editor};
use thingsdb_client::{Client, Scope};
use tokio::runtime::Runtime;

use crate::commands;
use crate::output::{self, Format};

/// Text shown for `?` and `help`.
pub const HELP: &str = "\
Type ThingsDB code and press Enter; a statement continues over several lines
while a bracket, string or comment is open, or when a line ends with \\.

  @thingsdb, @t         switch to the thingsdb scope
  @node, @n, @node:ID   switch to the connected node, or node ID
  @:NAME, //NAME        switch to collection NAME (also @collection:NAME)
  ? or help             this help
  exit, quit, Ctrl-D    leave
  Ctrl-C                clear the input, or interrupt a running query

Results are printed as JSON (things with their \"#\" id, bytes as base64).
Lines that begin with a space are not saved in the history.";

/// What a line of input asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The statement is not finished: read another line.
    More,
    /// Run this code.
    Run(String),
    /// Switch to this scope.
    SwitchScope(Scope),
    /// A scope was meant, but it is not a valid one; the reason.
    BadScope(String),
    /// Print the help.
    Help,
    /// Leave the prompt.
    Exit,
    /// Nothing to do (an empty line).
    Nothing,
}

/// The lines typed so far of a statement not yet finished.
#[derive(Debug, Default, Clone)]
pub struct Input {
    text: String,
}

impl Input {
    /// An empty input.
    pub fn new() -> Self {
        Input::default()
    }

    /// True when no statement is in progress.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Forgets the statement in progress (Ctrl-C).
    pub fn clear(&mut self) {
        self.text.clear();
    }

    /// Takes one line of input and says what to do.
    pub fn feed(&mut self, line: &str) -> Action {
        if self.text.is_empty() {
            let word = line.trim();
            match word {
                "" => return Action::Nothing,
                "?" | "help" => return Action::Help,
                "exit" | "quit" => return Action::Exit,
                _ => {}
            }
            if let Some(action) = scope_switch(word) {
                return action;
            }
        }
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(line);
        let scan = scan(&self.text);
        if scan.at_top_level() && self.text.trim_end().ends_with('\\') {
            // An explicit continuation: drop the backslash.
            let keep = self.text.trim_end().len() - 1;
            self.text.truncate(keep);
            return Action::More;
        }
        if scan.is_complete() {
            let code = std::mem::take(&mut self.text);
            if code.trim().is_empty() {
                return Action::Nothing;
            }
            Action::Run(code)
        } else {
            Action::More
        }
    }
}

/// A single word that names a scope switches to it. Words starting with
/// `@` are always taken as scopes (no code starts with `@`); words starting
/// with `//` only when they are valid scopes (else they are comments).
fn scope_switch(word: &str) -> Option<Action> {
    if word.contains(char::is_whitespace) {
        return None;
    }
    if word.starts_with('@') {
        return Some(match Scope::parse(word) {
            Ok(s) => Action::SwitchScope(s),
            Err(e) => Action::BadScope(commands::error_text(&e)),
        });
    }
    if word.starts_with("//") {
        return Scope::parse(word).ok().map(Action::SwitchScope);
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Code,
    Str(char),
    LineComment,
    BlockComment,
}

/// Where a scan of the code ended.
#[derive(Debug, Clone, Copy)]
struct Scan {
    state: State,
    depth: i64,
}

impl Scan {
    /// Outside strings and comments.
    fn at_top_level(self) -> bool {
        matches!(self.state, State::Code | State::LineComment)
    }

    /// Nothing left open. (Too many closing brackets count as complete:
    /// the node reports the syntax error.)
    fn is_complete(self) -> bool {
        self.at_top_level() && self.depth <= 0
    }
}

/// Follows brackets, strings (`'..'`, `".."`, template strings `` `..` ``,
/// a quote doubled inside its string being part of it) and comments
/// (`// ..` to the end of the line, `/* .. */`).
fn scan(code: &str) -> Scan {
    let mut state = State::Code;
    let mut depth: i64 = 0;
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        match state {
            State::Code => match c {
                '\'' | '"' | '`' => state = State::Str(c),
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                '/' if chars.peek() == Some(&'/') => {
                    chars.next();
                    state = State::LineComment;
                }
                '/' if chars.peek() == Some(&'*') => {
                    chars.next();
                    state = State::BlockComment;
                }
                _ => {}
            },
            // A doubled quote leaves the string and enters it again at
            // once, which keeps the balance right without a special case.
            State::Str(q) if c == q => state = State::Code,
            State::Str(_) => {}
            State::LineComment if c == '\n' => state = State::Code,
            State::LineComment => {}
            State::BlockComment if c == '*' && chars.peek() == Some(&'/') => {
                chars.next();
                state = State::Code;
            }
            State::BlockComment => {}
        }
    }
    Scan { state, depth }
}

/// The history file: `$XDG_DATA_HOME/thingsdb/history` when that variable
/// is set, else `~/.thingsdb_history`; none without a home directory.
pub fn history_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("thingsdb").join("history"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".thingsdb_history"))
}

/// Runs the prompt until the user leaves. Queries run on `rt`, where the
/// client's connection lives; the terminal is read on this thread.
pub fn run(
    rt: &Runtime,
    client: &Client,
    scope: Scope,
    vars: &rmpv::Value,
    format: Format,
) -> Result<(), rustyline::error::ReadlineError> {
    let config = Config::builder()
        .auto_add_history(false)
        .history_ignore_space(true)
        .max_history_size(10_000)?
        .build();
    let mut editor: Editor<(), DefaultHistory> = Editor::with_config(config)?;
    let history = history_path();
    if let Some(path) = &history {
        // A missing or unreadable history is not worth a complaint.
        let _ = editor.load_history(path);
    }
    let mut scope = scope;
    let mut input = Input::new();
    eprintln!("Connected; scope {scope}. Type ? for help, exit or Ctrl-D to leave.");
    loop {
        let prompt = if input.is_empty() {
            format!("{scope}> ")
        } else {
            format!("{}> ", ".".repeat(scope.as_str().len()))
        };
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                input.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e),
        };
        match input.feed(&line) {
            Action::More | Action::Nothing => {}
            Action::Help => println!("{HELP}"),
            Action::Exit => break,
            Action::BadScope(why) => eprintln!("error: {why}"),
            Action::SwitchScope(s) => {
                let _ = editor.add_history_entry(line.as_str());
                scope = s;
            }
            Action::Run(code) => {
                let _ = editor.add_history_entry(code.as_str());
                run_one(rt, client, &scope, &code, vars, format);
            }
        }
    }
    if let Some(path) = &history {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = editor.save_history(path) {
            eprintln!(
                "warning: cannot save the history to {}: {e}",
                path.display()
            );
        }
    }
    Ok(())
}

/// Runs one statement from the prompt and prints its result or error;
/// Ctrl-C abandons it.
fn run_one(
    rt: &Runtime,
    client: &Client,
    scope: &Scope,
    code: &str,
    vars: &rmpv::Value,
    format: Format,
) {
    let result = rt.block_on(async {
        tokio::select! {
            r = commands::query(client, scope.as_str(), code, vars) => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    match result {
        Some(Ok(value)) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", output::render(&value, format));
            let _ = out.flush();
        }
        Some(Err(e)) => eprintln!("error: {e}"),
        None => eprintln!("interrupted (the query may still finish on the node)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(lines: &[&str]) -> Vec<Action> {
        let mut input = Input::new();
        lines.iter().map(|l| input.feed(l)).collect()
    }

    #[test]
    fn a_whole_statement_runs_at_once() {
        assert_eq!(feed_all(&["1 + 1;"]), vec![Action::Run("1 + 1;".into())]);
        assert_eq!(feed_all(&["  "]), vec![Action::Nothing]);
    }

    #[test]
    fn open_brackets_ask_for_more() {
        assert_eq!(
            feed_all(&["x = {", "  a: [1,", "  2],", "};"]),
            vec![
                Action::More,
                Action::More,
                Action::More,
                Action::Run("x = {\n  a: [1,\n  2],\n};".into())
            ]
        );
        assert_eq!(
            feed_all(&["range(3).map(|i| (", "i * 2));"]),
            vec![
                Action::More,
                Action::Run("range(3).map(|i| (\ni * 2));".into())
            ]
        );
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        assert_eq!(
            feed_all(&["'(' + \"[\" + `{`;"]),
            vec![Action::Run("'(' + \"[\" + `{`;".into())]
        );
        assert_eq!(
            feed_all(&["1; // (", "2;"]),
            vec![Action::Run("1; // (".into()), Action::Run("2;".into())]
        );
        assert_eq!(
            feed_all(&["1 /* (", "[ */ + 1;"]),
            vec![Action::More, Action::Run("1 /* (\n[ */ + 1;".into())]
        );
    }

    #[test]
    fn open_strings_ask_for_more() {
        assert_eq!(
            feed_all(&["'it''s", "multi';"]),
            vec![Action::More, Action::Run("'it''s\nmulti';".into())]
        );
        assert_eq!(
            feed_all(&["\"a", "b\";"]),
            vec![Action::More, Action::Run("\"a\nb\";".into())]
        );
        assert_eq!(
            feed_all(&["'it''s';"]),
            vec![Action::Run("'it''s';".into())]
        );
    }

    #[test]
    fn a_trailing_backslash_continues() {
        assert_eq!(
            feed_all(&["1 + \\", "2;"]),
            vec![Action::More, Action::Run("1 + \n2;".into())]
        );
        // Inside an open string the backslash is part of the string.
        assert_eq!(
            feed_all(&["'a\\", "';"]),
            vec![Action::More, Action::Run("'a\\\n';".into())]
        );
    }

    #[test]
    fn extra_closing_brackets_are_left_to_the_node() {
        assert_eq!(feed_all(&["1);"]), vec![Action::Run("1);".into())]);
    }

    #[test]
    fn scope_lines_switch() {
        for s in [
            "@:stuff",
            "@t",
            "@n",
            "@node:2",
            "//stuff",
            "@collection:x",
            "  @thingsdb  ",
        ] {
            match Input::new().feed(s) {
                Action::SwitchScope(scope) => assert_eq!(scope.as_str(), s.trim()),
                other => panic!("{s}: {other:?}"),
            }
        }
        assert!(
            matches!(Input::new().feed("@nope"), Action::BadScope(m) if m.contains("invalid scope"))
        );
        assert!(matches!(Input::new().feed("@node:x"), Action::BadScope(_)));
        // A comment that is not a scope is code.
        assert_eq!(Input::new().feed("// note"), Action::Run("// note".into()));
        // Within a statement, a scope-like line is part of the code.
        let mut input = Input::new();
        assert_eq!(input.feed("["), Action::More);
        assert_eq!(input.feed("//stuff"), Action::More);
        assert_eq!(input.feed("];"), Action::Run("[\n//stuff\n];".into()));
    }

    #[test]
    fn help_and_exit() {
        assert_eq!(Input::new().feed("?"), Action::Help);
        assert_eq!(Input::new().feed(" help "), Action::Help);
        assert_eq!(Input::new().feed("exit"), Action::Exit);
        assert_eq!(Input::new().feed("quit"), Action::Exit);
        // Inside a statement they are just code.
        let mut input = Input::new();
        assert_eq!(input.feed("("), Action::More);
        assert_eq!(input.feed("exit"), Action::More);
    }

    #[test]
    fn clear_forgets_the_statement() {
        let mut input = Input::new();
        assert_eq!(input.feed("x = ["), Action::More);
        assert!(!input.is_empty());
        input.clear();
        assert!(input.is_empty());
        assert_eq!(input.feed("1;"), Action::Run("1;".into()));
    }
}
