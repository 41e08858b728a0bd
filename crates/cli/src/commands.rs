//! What the CLI does: work out the credentials and the input, connect,
//! then run one query, a file, a procedure, watch a room, or start the
//! interactive prompt.

use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

use rmpv::Value;
use thingsdb_client::{
    Auth, Client, ConnectionEvent, Error, ErrorCode, RoomEvent, RoomRef, Scope, TlsOptions,
};

use crate::args::{Cli, Command, Secret};
use crate::error::CliError;
use crate::highlight;
use crate::output::{self, Format};
use crate::repl;

/// What the invocation asks for, worked out before connecting so that
/// usage errors need no node.
#[derive(Debug)]
pub(crate) enum Task {
    /// Run this code once.
    Query(String),
    /// Call a procedure with these arguments (an array, a map, or none).
    Run {
        procedure: String,
        args: Option<Value>,
    },
    /// Watch a room.
    Watch(RoomSpec),
    /// Export a collection.
    Export {
        /// The collection's scope.
        scope: Scope,
        /// The binary dump instead of code.
        dump: bool,
        /// Where to write; standard output when `None`.
        output: Option<std::path::PathBuf>,
    },
    /// Print a collection's types and enums.
    Types {
        /// The collection's scope.
        scope: Scope,
        /// As Rust code instead of ThingsDB definitions.
        rust: bool,
        /// Where to write; standard output when `None`.
        output: Option<std::path::PathBuf>,
    },
    /// Import a dump into a collection.
    Import {
        /// The collection's scope.
        scope: Scope,
        /// The dump.
        bytes: Vec<u8>,
        /// Import the tasks too.
        tasks: bool,
        /// Create the collection first.
        create: bool,
    },
    /// The interactive prompt.
    Repl,
}

/// How `watch` names its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomSpec {
    /// By id.
    Id(u64),
    /// By name.
    Name(String),
    /// By code that returns the room's id.
    Code(String),
}

impl RoomSpec {
    /// A room given on the command line: digits are an id, anything else a
    /// name.
    pub fn parse(room: &str) -> RoomSpec {
        match room.trim().parse::<u64>() {
            Ok(id) => RoomSpec::Id(id),
            Err(_) => RoomSpec::Name(room.to_string()),
        }
    }
}

/// Runs the whole invocation; the error to print and exit with otherwise.
pub fn execute(cli: Cli) -> Result<(), CliError> {
    if let Some(Command::Status { url, check }) = &cli.command {
        return crate::http::status(url, *check, cli.timeout);
    }
    let format = if cli.json {
        Format::Compact
    } else {
        Format::Pretty
    };
    let scope = Scope::parse(&cli.scope).map_err(|e| CliError::Usage(e.to_string()))?;
    let vars = parse_vars(&cli.vars)?;
    let task = task(&cli)?;
    if !matches!(task, Task::Query(_) | Task::Repl) && !cli.vars.is_empty() {
        return Err(CliError::Usage(
            "--var applies to queries (-q, -f, standard input or the prompt)".into(),
        ));
    }
    let auth = auth(&cli)?;
    if let Some(urls) = &cli.http {
        return crate::http::run(&cli, urls, auth, task, &scope, &vars, format);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the async runtime: {e}")))?;
    let client = rt.block_on(connect(&cli, auth))?;
    let result = match task {
        Task::Query(code) => rt.block_on(async {
            let value = query(&client, scope.as_str(), &code, &vars).await?;
            print_value(&value, format)
        }),
        Task::Run { procedure, args } => rt.block_on(async {
            let value = run(&client, scope.as_str(), &procedure, args.as_ref()).await?;
            print_value(&value, format)
        }),
        Task::Watch(room) => rt.block_on(async {
            let mut out = std::io::stdout();
            watch(&client, scope.as_str(), &room, format, &mut out).await
        }),
        Task::Export {
            scope,
            dump,
            output,
        } => rt.block_on(export(&client, &scope, dump, output.as_deref())),
        Task::Types {
            scope,
            rust,
            output,
        } => rt.block_on(crate::types::types(
            &client,
            &scope,
            rust,
            output.as_deref(),
        )),
        Task::Import {
            scope,
            bytes,
            tasks,
            create,
        } => rt.block_on(import(&client, &scope, bytes, tasks, create)),
        Task::Repl => {
            let options = repl::Options {
                history: if cli.no_history {
                    None
                } else {
                    repl::history_path()
                },
                colours: highlight::colours_wanted(
                    std::io::stdout().is_terminal(),
                    std::env::var_os("NO_COLOR").as_deref(),
                ),
                format,
            };
            repl::run(&rt, &client, scope, &vars, &options)
                .map_err(|e| CliError::Io(format!("terminal: {e}")))
        }
    };
    rt.block_on(async {
        let _ = client.close().await;
    });
    result
}

/// Which task, and its input read (a file, or standard input when it is
/// not a terminal).
fn task(cli: &Cli) -> Result<Task, CliError> {
    if cli.command.is_some() && (cli.query.is_some() || cli.file.is_some()) {
        return Err(CliError::Usage(
            "-q/--query and -f/--file cannot be combined with a command".into(),
        ));
    }
    if let Some(code) = &cli.query {
        return Ok(Task::Query(code.clone()));
    }
    if let Some(path) = &cli.file {
        let code = if path.as_os_str() == "-" {
            read_stdin()?
        } else {
            std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?
        };
        return Ok(Task::Query(code));
    }
    match &cli.command {
        Some(Command::Run { procedure, args }) => Ok(Task::Run {
            procedure: procedure.clone(),
            args: args.as_deref().map(parse_run_args).transpose()?,
        }),
        Some(Command::Watch { room, code }) => {
            if scope_is_not_collection(&cli.scope) {
                return Err(CliError::Usage(format!(
                    "rooms live in collections: give a collection scope, as in --scope //stuff (not {})",
                    cli.scope
                )));
            }
            Ok(Task::Watch(match (room, code) {
                (_, Some(code)) => RoomSpec::Code(code.clone()),
                (Some(room), None) => RoomSpec::parse(room),
                (None, None) => return Err(CliError::Usage("watch needs a ROOM or --code".into())),
            }))
        }
        Some(Command::Export {
            collection,
            dump,
            output,
        }) => {
            let scope = collection_scope(collection.as_deref().unwrap_or(&cli.scope), "export")?;
            if *dump && output.is_none() && std::io::stdout().is_terminal() {
                return Err(CliError::Usage(
                    "export --dump writes binary data: redirect standard output to a file or use -o FILE".into(),
                ));
            }
            Ok(Task::Export {
                scope,
                dump: *dump,
                output: output.clone(),
            })
        }
        Some(Command::Types {
            collection,
            rust,
            output,
        }) => Ok(Task::Types {
            scope: collection_scope(collection.as_deref().unwrap_or(&cli.scope), "types")?,
            rust: *rust,
            output: output.clone(),
        }),
        Some(Command::Import {
            collection,
            file,
            tasks,
            create,
        }) => {
            let scope = collection_scope(collection, "import")?;
            let bytes = if file.as_os_str() == "-" {
                let mut bytes = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut bytes)
                    .map_err(|e| CliError::Io(format!("cannot read standard input: {e}")))?;
                bytes
            } else {
                std::fs::read(file)
                    .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?
            };
            if bytes.is_empty() {
                return Err(CliError::Usage(format!("{} is empty", file.display())));
            }
            Ok(Task::Import {
                scope,
                bytes,
                tasks: *tasks,
                create: *create,
            })
        }
        Some(Command::Status { .. }) => Err(CliError::Usage(
            "status takes no query: thingsdb status URL".into(),
        )),
        None if std::io::stdin().is_terminal() => Ok(Task::Repl),
        None => {
            let code = read_stdin()?;
            if code.trim().is_empty() {
                return Err(CliError::Usage(
                    "no query given: use -q CODE, -f FILE, a command, or code on standard input"
                        .into(),
                ));
            }
            Ok(Task::Query(code))
        }
    }
}

/// The scope of the collection named by `text` (a collection scope, as
/// in `//stuff`), for `command`.
fn collection_scope(text: &str, command: &str) -> Result<Scope, CliError> {
    let scope = Scope::parse(text).map_err(|e| CliError::Usage(error_text(&e)))?;
    if scope.collection_name().is_none() {
        return Err(CliError::Usage(format!(
            "{command} works on a collection: give one as in `thingsdb {command} //stuff` (not {text})"
        )));
    }
    Ok(scope)
}

fn scope_is_not_collection(scope: &str) -> bool {
    Scope::parse(scope).map_or(true, |s| s.collection_name().is_none())
}

fn read_stdin() -> Result<String, CliError> {
    let mut code = String::new();
    std::io::stdin()
        .read_to_string(&mut code)
        .map_err(|e| CliError::Io(format!("cannot read standard input: {e}")))?;
    Ok(code)
}

/// `--var NAME=JSON` pairs as one map value (empty when there are none).
fn parse_vars(vars: &[(String, String)]) -> Result<Value, CliError> {
    let mut pairs = Vec::with_capacity(vars.len());
    for (name, json) in vars {
        let value = output::parse_json(json).map_err(|e| {
            CliError::Usage(format!(
                "--var {name}: {e}; a string needs JSON quotes, as in --var {name}='\"text\"'"
            ))
        })?;
        pairs.retain(|(k, _): &(Value, Value)| k.as_str() != Some(name.as_str()));
        pairs.push((Value::from(name.as_str()), value));
    }
    Ok(Value::Map(pairs))
}

/// `run`'s ARGS_JSON: an array (positional) or an object (by name).
fn parse_run_args(json: &str) -> Result<Value, CliError> {
    let value = output::parse_json(json).map_err(|e| CliError::Usage(format!("ARGS_JSON: {e}")))?;
    match value {
        Value::Array(_) | Value::Map(_) => Ok(value),
        _ => Err(CliError::Usage(
            "ARGS_JSON must be a JSON array (positional arguments, as in '[41]') or object (arguments by name, as in '{\"x\": 41}')".into(),
        )),
    }
}

/// The credentials: a token, or the user with a password from the flags,
/// the environment, or a prompt without echo on the terminal.
fn auth(cli: &Cli) -> Result<Auth, CliError> {
    if let Some(token) = &cli.token {
        return Ok(Auth::token(token.expose()));
    }
    if let Some(password) = &cli.password {
        return Ok(Auth::password(&cli.user, password.expose()));
    }
    let no_password = || {
        CliError::Usage(format!(
            "no password for user {:?}: set THINGSDB_PASSWORD (or THINGSDB_TOKEN), or run in a terminal to be asked for it",
            cli.user
        ))
    };
    // The prompt reads the terminal itself, so it works while standard
    // input is a pipe, as long as there is a terminal to ask on.
    if !(std::io::stdin().is_terminal() || std::io::stderr().is_terminal()) {
        return Err(no_password());
    }
    let password = prompt_password(&format!("Password for {}: ", cli.user))
        .map(Secret::new)
        .map_err(|_| no_password())?;
    Ok(Auth::password(&cli.user, password.expose()))
}

/// Asks for a password on the terminal. Echo is turned off before the
/// prompt is shown, so nothing typed after it appears; the terminal's
/// settings are restored afterwards.
#[cfg(unix)]
fn prompt_password(prompt: &str) -> std::io::Result<String> {
    use std::io::BufRead;

    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg, Termios};

    /// Puts the terminal's settings back, however the prompt ends.
    struct Restore<'a>(&'a std::fs::File, Termios);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let _ = tcsetattr(self.0, SetArg::TCSANOW, &self.1);
        }
    }

    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let saved = tcgetattr(&tty)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&tty, SetArg::TCSANOW, &quiet)?;
    let _restore = Restore(&tty, saved);
    let mut out = &tty;
    out.write_all(prompt.as_bytes())?;
    out.flush()?;
    let mut line = String::new();
    std::io::BufReader::new(&tty).read_line(&mut line)?;
    if line.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Asks for a password on the terminal, without echo.
#[cfg(not(unix))]
fn prompt_password(prompt: &str) -> std::io::Result<String> {
    rpassword::prompt_password(prompt)
}

/// A target with TLS (`--tls`): `HOST[:PORT]` and `thingsdb://` become
/// `thingsdbs://`, `ws://` becomes `wss://`; TLS targets stay as they are.
fn with_tls(target: &str) -> Result<String, CliError> {
    let Some((scheme, rest)) = target.split_once("://") else {
        if target.to_ascii_lowercase().starts_with("unix:") {
            return Err(CliError::Usage(format!(
                "--tls: a Unix socket ({target}) has no TLS"
            )));
        }
        return Ok(format!("thingsdbs://{target}"));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "thingsdb" => Ok(format!("thingsdbs://{rest}")),
        "ws" => Ok(format!("wss://{rest}")),
        "unix" => Err(CliError::Usage(format!(
            "--tls: a Unix socket ({target}) has no TLS"
        ))),
        _ => Ok(target.to_string()),
    }
}

/// The targets in `--uri`, comma-separated, with TLS when `tls`.
fn targets(uri: &str, tls: bool) -> Result<Vec<String>, CliError> {
    let targets: Vec<String> = uri
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| if tls { with_tls(t) } else { Ok(t.to_string()) })
        .collect::<Result<_, _>>()?;
    if targets.is_empty() {
        return Err(CliError::Usage("--uri: no target given".into()));
    }
    for t in &targets {
        // Refuse user:password@host without echoing it.
        if let Some((scheme, rest)) = t.split_once("://") {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            if !scheme.eq_ignore_ascii_case("unix") && authority.contains('@') {
                return Err(CliError::Usage(
                    "--uri: credentials in the URI are not supported; use --user with THINGSDB_PASSWORD, or THINGSDB_TOKEN".into(),
                ));
            }
        }
    }
    Ok(targets)
}

/// Connects and authenticates with the settings of the command line.
pub async fn connect(cli: &Cli, auth: Auth) -> Result<Client, CliError> {
    let targets = targets(&cli.uri, cli.tls.tls)?;
    let mut builder = Client::builder();
    for t in &targets {
        builder = builder
            .target(t)
            .map_err(|e| CliError::Usage(format!("--uri: {}", error_text(&e))))?;
    }
    let shown = builder
        .config()
        .targets
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    builder = builder
        .auth(auth)
        // The code typed is shown with each request's timing (--verbose).
        .trace_query_text(cli.verbose)
        .default_scope(&cli.scope)
        .map_err(|e| CliError::Usage(error_text(&e)))?;
    if let Some(secs) = cli.timeout {
        let d = Duration::from_secs_f64(secs);
        builder = builder.request_timeout(d).connect_timeout(d);
    }
    if let Some(path) = &cli.tls.tls_ca {
        let pem = std::fs::read(path).map_err(|e| {
            CliError::Usage(format!("--tls-ca: cannot read {}: {e}", path.display()))
        })?;
        builder = builder.tls(TlsOptions::with_ca_pem(pem));
    } else if cli.tls.insecure {
        eprintln!("warning: --insecure: TLS certificates are NOT checked; anyone in between can read and change the traffic");
        builder = builder.tls(TlsOptions::dangerous_accept_any_certificate());
    }
    builder.connect().await.map_err(|source| CliError::Connect {
        targets: shown,
        source,
    })
}

/// A client error's message without the `bad argument: ` prefix.
pub fn error_text(e: &Error) -> String {
    match e {
        Error::BadArgument(m) => m.clone(),
        other => other.to_string(),
    }
}

/// Runs `code` in `scope` with `vars` (a map; sent only when not empty).
pub async fn query(
    client: &Client,
    scope: &str,
    code: &str,
    vars: &Value,
) -> Result<Value, CliError> {
    let q = client.query(code).scope(scope);
    let value = match vars {
        Value::Map(pairs) if !pairs.is_empty() => q.vars(vars).await?,
        _ => q.await?,
    };
    Ok(value)
}

/// Calls `procedure` in `scope` with `args` (an array or a map).
pub async fn run(
    client: &Client,
    scope: &str,
    procedure: &str,
    args: Option<&Value>,
) -> Result<Value, CliError> {
    let r = client.run(procedure).scope(scope);
    let value = match args {
        Some(args) => r.args(args).await?,
        None => r.await?,
    };
    Ok(value)
}

/// Exports the collection of `scope`: as ThingsDB code (text, with a line
/// end added when it has none), or with `dump` as the binary dump; to
/// `output`, or standard output.
pub async fn export(
    client: &Client,
    scope: &Scope,
    dump: bool,
    output: Option<&std::path::Path>,
) -> Result<(), CliError> {
    let code = if dump {
        "export({dump: true});"
    } else {
        "export();"
    };
    let value = client.query(code).scope(scope.as_str()).await?;
    let bytes = match value {
        Value::Binary(b) if dump => b,
        Value::String(s) if !dump => {
            let mut text = s.into_bytes();
            if !text.ends_with(b"\n") {
                text.push(b'\n');
            }
            text
        }
        other => {
            return Err(CliError::Io(format!(
                "export() returned {} instead of {}",
                output::compact(&other),
                if dump { "bytes" } else { "a string" }
            )))
        }
    };
    write_out(&bytes, output, "the export")
}

/// Writes `bytes` to the file `output`, or to standard output (a closed
/// pipe is not an error there); `what` names them in errors.
pub(crate) fn write_out(
    bytes: &[u8],
    output: Option<&std::path::Path>,
    what: &str,
) -> Result<(), CliError> {
    match output {
        Some(path) => std::fs::write(path, bytes)
            .map_err(|e| CliError::Io(format!("cannot write {}: {e}", path.display()))),
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(bytes).and_then(|()| out.flush()) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => Err(CliError::Io(format!("cannot write {what}: {e}"))),
            }
        }
    }
}

/// Loads the dump `bytes` into the (empty) collection of `scope` with the
/// node's `import()`; with `tasks` its tasks too, with `create` after
/// creating the collection.
pub async fn import(
    client: &Client,
    scope: &Scope,
    bytes: Vec<u8>,
    tasks: bool,
    create: bool,
) -> Result<(), CliError> {
    if create {
        let name = scope.collection_name().unwrap_or_default();
        let vars = Value::Map(vec![(Value::from("name"), Value::from(name))]);
        client
            .query("new_collection(name);")
            .scope("@thingsdb")
            .vars(&vars)
            .await?;
    }
    let vars = Value::Map(vec![
        (Value::from("dump"), Value::Binary(bytes)),
        (Value::from("import_tasks"), Value::from(tasks)),
    ]);
    let result = client
        .query("import(dump, {import_tasks: import_tasks});")
        .scope(scope.as_str())
        .vars(&vars)
        .await;
    let Err(e) = result else {
        return Ok(());
    };
    if create {
        // Leave no half-made collection behind, so that the same command
        // can be run again.
        let name = scope.collection_name().unwrap_or_default();
        let vars = Value::Map(vec![(Value::from("name"), Value::from(name))]);
        if client
            .query("del_collection(name);")
            .scope("@thingsdb")
            .vars(&vars)
            .await
            .is_ok()
        {
            eprintln!("note: the import failed; collection {name} (made by --create) was removed");
        }
    } else if e.code() == Some(ErrorCode::Lookup) {
        eprintln!("note: --create makes the collection first");
    }
    Err(e.into())
}

pub(crate) fn print_value(value: &Value, format: Format) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", output::render(value, format)).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // The reader went away (`| head`): nothing more to say.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Io(format!("cannot write the result: {e}"))),
    }
}

/// A room event as a JSON-ready value: `kind`, `room`, and for emitted
/// events `event` and `args`.
pub fn event_value(room_id: u64, event: &RoomEvent) -> Value {
    let s = |k: &str| Value::from(k);
    let mut pairs = vec![];
    let kind = match event {
        RoomEvent::Joined => "joined",
        RoomEvent::Left => "left",
        RoomEvent::Deleted => "deleted",
        RoomEvent::Emitted(_) => "emitted",
        RoomEvent::Lagged(_) => "lagged",
        RoomEvent::Disconnected => "disconnected",
        _ => "other",
    };
    pairs.push((s("kind"), s(kind)));
    pairs.push((s("room"), Value::from(room_id)));
    match event {
        RoomEvent::Emitted(e) => {
            pairs.push((s("event"), s(&e.event)));
            match e.values() {
                Ok(args) => pairs.push((s("args"), Value::Array(args))),
                Err(err) => {
                    pairs.push((s("args"), Value::Binary(e.args.to_vec())));
                    pairs.push((s("error"), Value::from(err.to_string())));
                }
            }
        }
        RoomEvent::Lagged(n) => pairs.push((s("dropped"), Value::from(*n))),
        _ => {}
    }
    Value::Map(pairs)
}

/// Ctrl-C (and on Unix SIGTERM), registered at once so that no signal
/// between now and the first wait is lost.
struct Stop {
    #[cfg(unix)]
    signals: (tokio::signal::unix::Signal, tokio::signal::unix::Signal),
}

impl Stop {
    fn new() -> Result<Stop, CliError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let io = |e: std::io::Error| CliError::Io(format!("cannot handle signals: {e}"));
            Ok(Stop {
                signals: (
                    signal(SignalKind::interrupt()).map_err(io)?,
                    signal(SignalKind::terminate()).map_err(io)?,
                ),
            })
        }
        #[cfg(not(unix))]
        Ok(Stop {})
    }

    async fn wait(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.signals.0.recv() => {}
            _ = self.signals.1.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Joins the room and prints its events to `out` until Ctrl-C (Ok), the
/// room's deletion (Ok), or the end of the connection (an error). What
/// happens to the connection meanwhile (lost, moved to another node) goes
/// to stderr, so `out` holds events only.
pub async fn watch<W: Write>(
    client: &Client,
    scope: &str,
    room: &RoomSpec,
    format: Format,
    out: &mut W,
) -> Result<(), CliError> {
    let mut stop = Stop::new()?;
    let room = match room {
        RoomSpec::Id(id) => client.room(scope, RoomRef::Id(*id))?,
        RoomSpec::Name(name) => client.room(scope, name.as_str())?,
        RoomSpec::Code(code) => client.room_by_code(scope, code).await?,
    };
    let mut events = room.join().await?;
    let mut connection = client.connection_events().await?;
    let room_id = events.room_id();
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.wait() => return Ok(()),
            Some(ev) = connection.recv() => {
                eprintln!("{}", connection_line(&ev));
                continue;
            }
            ev = events.recv() => ev,
        };
        let Some(event) = event else {
            return Err(CliError::Request(Error::ConnectionLost(
                "the connection closed; no more events".into(),
            )));
        };
        let text = output::render(&event_value(room_id, &event), format);
        match writeln!(out, "{text}").and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(CliError::Io(format!("cannot write an event: {e}"))),
        }
        if event == RoomEvent::Deleted {
            return Ok(());
        }
    }
}

/// A connection event as one line of text.
fn connection_line(ev: &ConnectionEvent) -> String {
    match ev {
        ConnectionEvent::Connected { target, node_id } => match node_id {
            Some(id) => format!("connected to node {id} at {target}"),
            None => format!("connected to {target}"),
        },
        ConnectionEvent::Moved { from, to, why } => format!("moved from {from} to {to} ({why:?})"),
        ConnectionEvent::Lost { target, reason } => format!("lost {target}: {reason}"),
        ConnectionEvent::AuthFailed { target, error } => {
            format!("authentication failed at {target}: {error}")
        }
        ConnectionEvent::GaveUp { error } => format!("gave up: {error}"),
        ConnectionEvent::Lagged(n) => format!("{n} connection events missed"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_events_read_as_lines() {
        let a: thingsdb_client::Target = "127.0.0.1:9200".parse().unwrap();
        let b: thingsdb_client::Target = "127.0.0.1:9201".parse().unwrap();
        let line = connection_line(&ConnectionEvent::Moved {
            from: a,
            to: b.clone(),
            why: thingsdb_client::MoveReason::ShuttingDown,
        });
        assert!(
            line.starts_with("moved from ") && line.ends_with("(ShuttingDown)"),
            "{line}"
        );
        let line = connection_line(&ConnectionEvent::Connected {
            target: b,
            node_id: Some(1),
        });
        assert!(line.starts_with("connected to node 1 at "), "{line}");
    }

    #[test]
    fn rooms_by_id_or_name() {
        assert_eq!(RoomSpec::parse("17"), RoomSpec::Id(17));
        assert_eq!(RoomSpec::parse("chat"), RoomSpec::Name("chat".into()));
    }

    #[test]
    fn vars_become_a_map_and_the_last_wins() {
        let v = parse_vars(&[
            ("a".into(), "6".into()),
            ("b".into(), "[1, \"x\"]".into()),
            ("a".into(), "7".into()),
        ])
        .unwrap();
        assert_eq!(
            v,
            Value::Map(vec![
                (
                    Value::from("b"),
                    Value::Array(vec![Value::from(1), Value::from("x")])
                ),
                (Value::from("a"), Value::from(7)),
            ])
        );
        let e = parse_vars(&[("s".into(), "text".into())]).unwrap_err();
        assert!(e.to_string().contains("--var s: invalid JSON"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn run_args_are_an_array_or_an_object() {
        assert_eq!(
            parse_run_args("[41]").unwrap(),
            Value::Array(vec![Value::from(41)])
        );
        assert!(matches!(
            parse_run_args(r#"{"x": 41}"#).unwrap(),
            Value::Map(_)
        ));
        assert!(parse_run_args("41").is_err());
        assert!(parse_run_args("[").is_err());
    }

    #[test]
    fn targets_are_split_and_credentials_refused() {
        assert_eq!(
            targets("a:1, ws://b:2 ,", false).unwrap(),
            vec!["a:1".to_string(), "ws://b:2".to_string()]
        );
        assert!(targets(" , ", false).is_err());
        let e = targets("thingsdb://admin:s3cret@host", false).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(targets("unix:/tmp/a@b.sock", false).is_ok());
        assert!(targets("ws://host/path@x", false).is_ok());
    }

    #[test]
    fn tls_turns_targets_into_tls_ones() {
        assert_eq!(
            targets("h:9200,thingsdb://a,ws://b:1/p,wss://c,thingsdbs://d", true).unwrap(),
            vec![
                "thingsdbs://h:9200",
                "thingsdbs://a",
                "wss://b:1/p",
                "wss://c",
                "thingsdbs://d"
            ]
        );
        assert!(targets("unix:/tmp/s", true).is_err());
        assert!(targets("thingsdb://admin:s3cret@host", true).is_err());
    }

    #[test]
    fn export_and_import_need_a_collection() {
        assert_eq!(
            collection_scope("//stuff", "export").unwrap().as_str(),
            "//stuff"
        );
        let e = collection_scope("@t", "import").unwrap_err();
        assert!(
            e.to_string().contains("import works on a collection"),
            "{e}"
        );
        assert!(collection_scope("stuff", "export").is_err());
    }

    #[test]
    fn events_as_values() {
        let e = thingsdb_client::Emitted {
            event: "msg".into(),
            args: vec![0x92, 0xa2, b'h', b'i', 0x07].into(),
        };
        assert_eq!(
            output::compact(&event_value(3, &RoomEvent::Emitted(e))),
            r#"{"kind":"emitted","room":3,"event":"msg","args":["hi",7]}"#
        );
        assert_eq!(
            output::compact(&event_value(3, &RoomEvent::Joined)),
            r#"{"kind":"joined","room":3}"#
        );
        assert_eq!(
            output::compact(&event_value(3, &RoomEvent::Lagged(5))),
            r#"{"kind":"lagged","room":3,"dropped":5}"#
        );
    }
}
