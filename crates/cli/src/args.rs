//! The command line, as clap parses it.
//!
//! Secrets (password, token) are held in [`Secret`], whose `Debug` never
//! shows them, and their environment values are hidden from `--help`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

/// Text printed at the end of `--help`.
const AFTER_HELP: &str = "\
Without -q, -f or a command, an interactive prompt starts when standard input \
is a terminal; otherwise the whole of standard input is run as one query.

The password is best given in THINGSDB_PASSWORD or typed at the prompt (it is \
asked for, without echo, when neither a password nor a token is given and a \
terminal is available); a password on the command line is visible to other \
users of the machine.

Results are printed as JSON: things with their \"#\" id, bytes as base64 \
strings, NaN and infinities as \"nan\", \"inf\", \"-inf\".

The prompt colours code as it is typed (not when standard output is not a \
terminal, or with NO_COLOR set), completes scopes, functions, procedures and \
properties on Tab, and keeps its history in the user's data directory \
($XDG_DATA_HOME/thingsdb/history, by default ~/.local/share/thingsdb/history; \
lines that begin with a space are not kept; --no-history keeps none). \
RUST_LOG sets the level of log messages on standard error (default: warn).

Exit status:
  0  success (for watch: stopped with Ctrl-C, or the room was deleted)
  1  the node refused the query or procedure (a ThingsDB error, printed as
     `error: NAME (CODE): MESSAGE`); for status: the node is not good or
     cannot be reached
  2  usage error, or the node could not be reached or refused the
     credentials, or the connection was lost

Examples:
  thingsdb -q '1 + 1;'
  thingsdb -s //stuff --var a=6 --var b=7 -q 'a * b;'
  thingsdb -s //stuff run add_one '[41]'
  thingsdb -s //stuff watch chat
  echo '.keys();' | thingsdb -s //stuff --json
  thingsdb export //stuff > stuff.ti
  thingsdb export //stuff --dump -o stuff.dump
  thingsdb import //copy stuff.dump --create
  thingsdb --http http://localhost:9210 -s //stuff -q '.keys();'
  thingsdb status http://localhost:8080 --check ready   (exit 0 or 1)";

/// A command-line client for ThingsDB.
#[derive(Parser)]
#[command(name = "thingsdb", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// The node(s) to connect to, comma-separated.
    #[arg(
        help = "The node(s) to connect to: thingsdb://HOST[:PORT], thingsdbs://HOST[:PORT] (TLS), \
                ws://HOST[:PORT][/PATH], wss://..., unix:/PATH, or HOST[:PORT]. Several, separated \
                by commas, form a pool",
        short = 'u',
        long = "uri",
        env = "THINGSDB_URI",
        value_name = "TARGET",
        default_value = "thingsdb://localhost:9200"
    )]
    pub uri: String,

    /// Run the query or procedure through a node's HTTP API (http_api_port) instead:
    /// http://HOST:9210, several separated by commas. Queries and `run` only.
    #[arg(long, env = "THINGSDB_HTTP", value_name = "URL")]
    pub http: Option<String>,

    /// The user name (with a password).
    #[arg(long, env = "THINGSDB_USER", default_value = "admin")]
    pub user: String,

    /// The password. Discouraged on the command line: prefer THINGSDB_PASSWORD or the prompt.
    #[arg(long, env = "THINGSDB_PASSWORD", hide_env_values = true)]
    pub password: Option<Secret>,

    /// A token to authenticate with instead of a user and password (wins when both are given).
    #[arg(long, env = "THINGSDB_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,

    /// The scope to run in: @thingsdb (@t), @node (@n), @node:ID, @collection:NAME (@:NAME, //NAME).
    #[arg(short, long, default_value = "@thingsdb", global = true)]
    pub scope: String,

    /// Timeout in seconds for connecting and for each request.
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub timeout: Option<f64>,

    #[command(flatten)]
    pub tls: TlsArgs,

    /// Run this code and exit.
    #[arg(short, long, value_name = "CODE", conflicts_with = "file")]
    pub query: Option<String>,

    /// Run the code in this file and exit ("-" reads standard input).
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// A query variable, its value as JSON (repeatable): --var name='"Iris"' --var n=42.
    #[arg(long = "var", value_name = "NAME=JSON", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,

    /// Print compact JSON, one line per result or event (for scripts).
    #[arg(long, global = true)]
    pub json: bool,

    /// Print the connection's life (connect, authenticate, lost, moved) and each request
    /// with its timing to standard error.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// Keep no history of the prompt across sessions (neither read nor write the file).
    #[arg(long)]
    pub no_history: bool,

    /// What to do instead of a query.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// TLS options for `thingsdbs://` and `wss://` targets.
#[derive(ClapArgs, Debug, Clone)]
pub struct TlsArgs {
    /// Connect with TLS: HOST:PORT and thingsdb:// targets become thingsdbs://, ws:// becomes wss://.
    #[arg(long, visible_alias = "ssl")]
    pub tls: bool,

    /// Trust only the CA certificate(s) in this PEM file (for thingsdbs:// and wss://).
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub tls_ca: Option<PathBuf>,

    /// DANGEROUS: accept any TLS certificate, without checking it. For testing only.
    #[arg(long)]
    pub insecure: bool,
}

/// The subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Run a procedure and print its result.
    Run {
        /// The procedure's name.
        procedure: String,
        /// The arguments as JSON: an array (positional) or an object (by name).
        #[arg(
            value_name = "ARGS_JSON",
            help = "The arguments as JSON: an array for positional arguments ('[41]'), \
                    an object for arguments by name ('{\"x\": 41}')"
        )]
        args: Option<String>,
    },
    /// Join a room and print its events as they arrive, until Ctrl-C or until the room
    /// is deleted. Needs a collection scope (-s //stuff).
    Watch {
        /// The room: its id, or its name.
        #[arg(required_unless_present = "code")]
        room: Option<String>,
        /// Find the room by running this code, which returns the room's id (e.g. '.chat.id();').
        #[arg(long, value_name = "CODE", conflicts_with = "room")]
        code: Option<String>,
    },
    /// Print a collection's types, enums and procedures as ThingsDB code (the node's
    /// export()), or with --dump the whole collection, data included, in the binary form
    /// that `thingsdb import` loads.
    Export {
        /// The collection (//NAME, @:NAME or @collection:NAME); default: --scope.
        collection: Option<String>,
        /// The binary dump (export({dump: true})) instead of code.
        #[arg(long)]
        dump: bool,
        /// Write to this file instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print a collection's types and enums: as ThingsDB definitions, or with --rust as
    /// Rust code (#[derive(Thing)] structs and #[derive(ThingsEnum)] enums for
    /// thingsdb-client) to start a program from the node's types.
    Types {
        /// The collection (//NAME, @:NAME or @collection:NAME); default: --scope.
        collection: Option<String>,
        /// Rust code instead of ThingsDB definitions.
        #[arg(long)]
        rust: bool,
        /// Write to this file instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Ask a node's status port (http_status_port) and exit 0 when it is good, 1 when not
    /// (or unreachable), like a readiness probe; prints the node's answer.
    Status {
        /// The status port: http://HOST:8080 (a path /ready, /status or /healthy chooses the check).
        url: String,
        /// What to check.
        #[arg(long, value_enum, default_value_t = Probe::Ready)]
        check: Probe,
    },
    /// Load a dump made by `export --dump` into an empty collection (the node's import()).
    /// Code made by `export` without --dump is loaded with `thingsdb -s //NAME -f FILE`.
    Import {
        /// The collection to load into (//NAME, @:NAME or @collection:NAME).
        collection: String,
        /// The dump ("-" reads standard input).
        file: PathBuf,
        /// Import the collection's tasks too (import_tasks: true); the tasks then belong to this user.
        #[arg(long)]
        tasks: bool,
        /// Create the collection first (new_collection() in @thingsdb).
        #[arg(long)]
        create: bool,
    },
}

/// What `thingsdb status` asks a node's status port.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `/status`: READY, AWAY or SYNCHRONIZING is good; NOK is not.
    Status,
    /// `/ready`: whether the node takes requests.
    Ready,
    /// `/healthy`: whether the node's process answers.
    Healthy,
}

impl Probe {
    /// The probe's name (and its path without the `/`).
    pub fn as_str(self) -> &'static str {
        match self {
            Probe::Status => "status",
            Probe::Ready => "ready",
            Probe::Healthy => "healthy",
        }
    }
}

/// A password or token: `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, to hand to the client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

impl fmt::Debug for Cli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cli")
            .field("uri", &self.uri)
            .field("http", &self.http)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("token", &self.token)
            .field("scope", &self.scope)
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .field("query", &self.query)
            .field("file", &self.file)
            .field("vars", &self.vars)
            .field("json", &self.json)
            .field("verbose", &self.verbose)
            .field("no_history", &self.no_history)
            .field("command", &self.command)
            .finish()
    }
}

/// `NAME=JSON` into its two halves (the JSON is checked later, with the
/// name in the message).
fn parse_var(s: &str) -> Result<(String, String), String> {
    let (name, json) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=JSON, got {s:?}"))?;
    let name = name.trim();
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "invalid variable name {name:?}: a name starts with a letter or '_' and holds only letters, digits and '_'"
        ));
    }
    Ok((name.to_string(), json.to_string()))
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    let t: f64 = s
        .parse()
        .map_err(|_| format!("expected a number of seconds, got {s:?}"))?;
    if t.is_finite() && t > 0.0 && t <= 1e9 {
        Ok(t)
    } else {
        Err("the timeout must be a positive number of seconds".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("thingsdb").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn one_shot_query_with_vars() {
        let c = parse(&[
            "-u", "ws://h:1", "-s", "//stuff", "--var", "a=6", "--var", "b= [1]", "-q", "a;",
        ])
        .unwrap();
        assert_eq!(c.uri, "ws://h:1");
        assert_eq!(c.scope, "//stuff");
        assert_eq!(c.query.as_deref(), Some("a;"));
        assert_eq!(
            c.vars,
            vec![("a".into(), "6".into()), ("b".into(), " [1]".into())]
        );
        assert!(c.command.is_none());
    }

    #[test]
    fn bad_vars_are_refused() {
        assert!(parse(&["--var", "novalue"]).is_err());
        assert!(parse(&["--var", "1a=2"]).is_err());
        assert!(parse(&["--var", "=2"]).is_err());
    }

    #[test]
    fn query_and_file_conflict() {
        assert!(parse(&["-q", "1;", "-f", "x.ti"]).is_err());
    }

    #[test]
    fn subcommands_take_the_scope_after_them() {
        let c = parse(&["run", "add_one", "[41]", "-s", "//stuff", "--json"]).unwrap();
        assert_eq!(c.scope, "//stuff");
        assert!(c.json);
        match c.command {
            Some(Command::Run { procedure, args }) => {
                assert_eq!(procedure, "add_one");
                assert_eq!(args.as_deref(), Some("[41]"));
            }
            other => panic!("{other:?}"),
        }
        let c = parse(&["watch", "chat", "--scope", "//stuff"]).unwrap();
        assert!(
            matches!(c.command, Some(Command::Watch { room: Some(r), code: None }) if r == "chat")
        );
        let c = parse(&["watch", "--code", ".chat.id();"]).unwrap();
        assert!(matches!(
            c.command,
            Some(Command::Watch {
                room: None,
                code: Some(_)
            })
        ));
        assert!(parse(&["watch"]).is_err());
    }

    #[test]
    fn export_and_import() {
        let c = parse(&["export", "//stuff", "--dump", "-o", "s.dump"]).unwrap();
        match c.command {
            Some(Command::Export {
                collection,
                dump,
                output,
            }) => {
                assert_eq!(collection.as_deref(), Some("//stuff"));
                assert!(dump);
                assert_eq!(output, Some(PathBuf::from("s.dump")));
            }
            other => panic!("{other:?}"),
        }
        let c = parse(&["-s", "//stuff", "export"]).unwrap();
        assert!(matches!(
            c.command,
            Some(Command::Export {
                collection: None,
                dump: false,
                ..
            })
        ));
        let c = parse(&["import", "//copy", "s.dump", "--tasks", "--create"]).unwrap();
        match c.command {
            Some(Command::Import {
                collection,
                file,
                tasks,
                create,
            }) => {
                assert_eq!(collection, "//copy");
                assert_eq!(file, PathBuf::from("s.dump"));
                assert!(tasks && create);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["import", "//copy"]).is_err());
    }

    #[test]
    fn prompt_flags() {
        let c = parse(&["--no-history", "--ssl", "--token", "t"]).unwrap();
        assert!(c.no_history && c.tls.tls);
        assert!(parse(&["--tls"]).unwrap().tls.tls);
    }

    #[test]
    fn timeouts_must_be_positive() {
        assert_eq!(parse(&["--timeout", "2.5"]).unwrap().timeout, Some(2.5));
        assert!(parse(&["--timeout", "0"]).is_err());
        assert!(parse(&["--timeout", "-1"]).is_err());
        assert!(parse(&["--timeout", "x"]).is_err());
    }

    #[test]
    fn tls_ca_and_insecure_conflict() {
        assert!(parse(&["--tls-ca", "ca.pem", "--insecure"]).is_err());
    }

    #[test]
    fn secrets_are_not_in_debug() {
        let c = parse(&["--password", "hunter2", "--token", "tok3n"]).unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2") && !d.contains("tok3n"), "{d}");
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("hunter2"));
    }
}
