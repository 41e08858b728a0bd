//! The interactive prompt.
//!
//! Lines are gathered until they make a whole statement: while a bracket,
//! a string or a block comment is open, or a line ends with `\`, the prompt
//! asks for more. A line that is exactly a scope (`@:stuff`, `@t`, `@n`,
//! `@node:2`, `//stuff`, `@collection:x`) switches the scope; `?` or `help`
//! prints help; `exit`, `quit` or Ctrl-D leaves; Ctrl-C clears the input
//! (and interrupts a running query).
//!
//! Code is coloured as it is typed ([`highlight`]), Tab completes scopes,
//! prompt commands, functions, procedures and properties ([`complete`],
//! with names fetched from the node and cached until the scope changes or
//! a statement runs), and the history is kept across sessions in the
//! user's data directory ([`history_path`]).
//!
//! The line logic ([`Input`]) is separate from the terminal so that it can
//! be tested.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::{Hinter, HistoryHinter};
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{ColorMode, CompletionType, Config, Editor, Helper};
use thingsdb_client::{Client, Scope};
use tokio::runtime::Runtime;

use crate::commands;
use crate::complete;
use crate::functions::ScopeKind;
use crate::highlight;
use crate::lexer;
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
  Tab                   complete a scope, function, procedure or property
  Up, Down, Ctrl-R      earlier statements; Ctrl-R searches them

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

    /// The lines of the statement in progress, each ending with a line
    /// end (empty when none is in progress).
    pub fn pending(&self) -> String {
        if self.text.is_empty() {
            String::new()
        } else {
            format!("{}\n", self.text)
        }
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
        let scan = lexer::scan(&self.text);
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

/// The history file: `thingsdb/history` in the user's data directory
/// (`$XDG_DATA_HOME`, else `~/.local/share` on Linux; `~/Library/Application
/// Support` on macOS; `%APPDATA%` on Windows); none when there is no such
/// directory.
pub fn history_path() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("thingsdb").join("history"))
}

/// How long Tab waits for the node to say which names it knows.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// What the node knows that completion needs, fetched when first needed
/// and kept until the scope changes or a statement runs (which may have
/// changed it).
struct NodeNames<'a> {
    rt: &'a Runtime,
    client: &'a Client,
    scope: Scope,
    cache: RefCell<Cache>,
}

#[derive(Default)]
struct Cache {
    collections: Option<Vec<String>>,
    procedures: Option<Vec<String>>,
    types: Option<Vec<String>>,
    properties: HashMap<Vec<String>, Vec<String>>,
}

/// The names in `value`: the strings of an array and the `name` of each
/// thing in it (as `*_info()` gives them), looking into nested arrays.
fn names(value: &rmpv::Value) -> Vec<String> {
    let mut out = Vec::new();
    if let rmpv::Value::Array(items) = value {
        for item in items {
            match item {
                rmpv::Value::String(s) => out.extend(s.as_str().map(str::to_string)),
                rmpv::Value::Array(_) => out.extend(names(item)),
                rmpv::Value::Map(pairs) => out.extend(
                    pairs
                        .iter()
                        .find(|(k, _)| k.as_str() == Some("name"))
                        .and_then(|(_, v)| v.as_str())
                        .map(str::to_string),
                ),
                _ => {}
            }
        }
    }
    out
}

impl NodeNames<'_> {
    /// Runs `code` in `scope` for names; none on any error or when the
    /// node is slow.
    fn fetch(&self, scope: &str, code: &str) -> Vec<String> {
        let q = self.client.query(code).scope(scope).timeout(FETCH_TIMEOUT);
        let result = self
            .rt
            .block_on(async { tokio::time::timeout(FETCH_TIMEOUT, q).await });
        match result {
            Ok(Ok(value)) => names(&value),
            _ => Vec::new(),
        }
    }

    fn cached(
        &self,
        slot: impl Fn(&mut Cache) -> &mut Option<Vec<String>>,
        fetch: impl FnOnce() -> Vec<String>,
    ) -> Vec<String> {
        if let Some(v) = slot(&mut self.cache.borrow_mut()) {
            return v.clone();
        }
        let v = fetch();
        *slot(&mut self.cache.borrow_mut()) = Some(v.clone());
        v
    }

    /// Forgets what was fetched.
    fn forget(&self) {
        *self.cache.borrow_mut() = Cache::default();
    }
}

impl complete::Names for NodeNames<'_> {
    fn collections(&self) -> Vec<String> {
        self.cached(
            |c| &mut c.collections,
            || self.fetch("@thingsdb", "collections_info();"),
        )
    }

    fn procedures(&self) -> Vec<String> {
        self.cached(
            |c| &mut c.procedures,
            || self.fetch(self.scope.as_str(), "procedures_info();"),
        )
    }

    fn types(&self) -> Vec<String> {
        self.cached(
            |c| &mut c.types,
            || self.fetch(self.scope.as_str(), "[types_info(), enums_info()];"),
        )
    }

    fn properties(&self, path: &[String]) -> Vec<String> {
        if let Some(v) = self.cache.borrow().properties.get(path) {
            return v.clone();
        }
        // The path holds names only (the lexer's), so this is a plain
        // property lookup, without side effects.
        let code = path.iter().fold(String::new(), |code, p| code + "." + p) + ".keys();";
        let v = self.fetch(self.scope.as_str(), &code);
        self.cache
            .borrow_mut()
            .properties
            .insert(path.to_vec(), v.clone());
        v
    }
}

/// The prompt's rustyline helper: colours, Tab completion and hints from
/// the history.
struct PromptHelper<'a> {
    colours: bool,
    /// The lines of the statement typed so far (see [`Input::pending`]).
    pending: String,
    kind: ScopeKind,
    names: NodeNames<'a>,
    hinter: HistoryHinter,
}

impl PromptHelper<'_> {
    fn set_scope(&mut self, scope: &Scope) {
        self.kind = ScopeKind::of(scope);
        self.names.scope = scope.clone();
        self.names.forget();
    }
}

impl Completer for PromptHelper<'_> {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = format!("{}{}", self.pending, line.get(..pos).unwrap_or(line));
        let (start, context) = complete::context(&before);
        // A word that began on an earlier line cannot be replaced.
        let Some(start_in_line) = start.checked_sub(self.pending.len()) else {
            return Ok((pos, Vec::new()));
        };
        let word = &before[start..];
        let found = complete::candidates(&context, word, self.kind, &self.names);
        Ok((
            start_in_line,
            found
                .into_iter()
                .map(|c| Pair {
                    display: c.display,
                    replacement: c.replacement,
                })
                .collect(),
        ))
    }
}

impl Hinter for PromptHelper<'_> {
    type Hint = String;

    fn hint(&self, line: &str, pos: usize, ctx: &rustyline::Context<'_>) -> Option<String> {
        if !self.colours {
            return None;
        }
        let hint = self.hinter.hint(line, pos, ctx)?;
        // Of a statement over several lines, the rest of this line.
        let hint = hint.split('\n').next().unwrap_or_default().to_string();
        (!hint.is_empty()).then_some(hint)
    }
}

impl Highlighter for PromptHelper<'_> {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.colours {
            Cow::Owned(highlight::highlight(&self.pending, line))
        } else {
            Cow::Borrowed(line)
        }
    }

    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if self.colours {
            Cow::Owned(highlight::hint(hint))
        } else {
            Cow::Borrowed(hint)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, kind: CmdKind) -> bool {
        self.colours && kind != CmdKind::MoveCursor
    }
}

impl Validator for PromptHelper<'_> {}

impl Helper for PromptHelper<'_> {}

/// How the prompt behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// The history file; `None` keeps no history across sessions.
    pub history: Option<PathBuf>,
    /// Colour the code as it is typed.
    pub colours: bool,
    /// How results are printed.
    pub format: Format,
}

/// Runs the prompt until the user leaves. Queries run on `rt`, where the
/// client's connection lives; the terminal is read on this thread.
pub fn run(
    rt: &Runtime,
    client: &Client,
    scope: Scope,
    vars: &rmpv::Value,
    options: &Options,
) -> Result<(), ReadlineError> {
    let config = Config::builder()
        .auto_add_history(false)
        .history_ignore_space(true)
        .max_history_size(10_000)?
        .completion_type(CompletionType::List)
        .color_mode(if options.colours {
            ColorMode::Enabled
        } else {
            ColorMode::Disabled
        })
        .build();
    let mut editor: Editor<PromptHelper<'_>, FileHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(PromptHelper {
        colours: options.colours,
        pending: String::new(),
        kind: ScopeKind::of(&scope),
        names: NodeNames {
            rt,
            client,
            scope: scope.clone(),
            cache: RefCell::new(Cache::default()),
        },
        hinter: HistoryHinter::new(),
    }));
    let history = options.history.as_deref();
    if let Some(path) = history {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // A missing or unreadable history is not worth a complaint.
        let _ = editor.load_history(path);
    }
    let mut history_warned = false;
    let mut scope = scope;
    let mut input = Input::new();
    eprintln!("Connected; scope {scope}. Type ? for help, exit or Ctrl-D to leave.");
    loop {
        let prompt = if input.is_empty() {
            format!("{scope}> ")
        } else {
            format!("{}> ", ".".repeat(scope.as_str().len()))
        };
        if let Some(h) = editor.helper_mut() {
            h.pending = input.pending();
        }
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                input.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e),
        };
        let entry = match input.feed(&line) {
            Action::More | Action::Nothing => None,
            Action::Help => {
                println!("{HELP}");
                None
            }
            Action::Exit => break,
            Action::BadScope(why) => {
                eprintln!("error: {why}");
                None
            }
            Action::SwitchScope(s) => {
                if let Some(h) = editor.helper_mut() {
                    h.set_scope(&s);
                }
                scope = s;
                Some(line)
            }
            Action::Run(code) => {
                run_one(rt, client, &scope, &code, vars, options.format);
                // The statement may have changed what there is to complete.
                if let Some(h) = editor.helper() {
                    h.names.forget();
                }
                Some(code)
            }
        };
        if let Some(entry) = entry {
            // Lines that begin with a space are not kept (rustyline's
            // history_ignore_space).
            let added = editor.add_history_entry(entry.as_str()).unwrap_or(false);
            if let (true, Some(path)) = (added, history) {
                // Saved at once, so that a session that is killed keeps
                // its history and parallel sessions add to one file.
                if let Err(e) = editor.append_history(path) {
                    if !history_warned {
                        eprintln!(
                            "warning: cannot save the history to {}: {e}",
                            path.display()
                        );
                        history_warned = true;
                    }
                }
            }
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
    fn names_from_lists_and_infos() {
        let thing = |name: &str| {
            rmpv::Value::Map(vec![
                (rmpv::Value::from("collection_id"), rmpv::Value::from(2)),
                (rmpv::Value::from("name"), rmpv::Value::from(name)),
            ])
        };
        let v = rmpv::Value::Array(vec![
            rmpv::Value::Array(vec![thing("User")]),
            rmpv::Value::Array(vec![thing("Color"), rmpv::Value::from(3)]),
            rmpv::Value::from("greeting"),
        ]);
        assert_eq!(names(&v), vec!["User", "Color", "greeting"]);
        assert!(names(&rmpv::Value::Nil).is_empty());
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
