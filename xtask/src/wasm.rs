//! `cargo xtask wasm`: the connector in the browser.
//!
//! 1. Toolchain. With rustup's `wasm32-unknown-unknown` target installed,
//!    the usual `cargo`. Otherwise Debian's second toolchain (`rustc-web`,
//!    `cargo-web`, `rust-web-src`, `rust-web-llvm`, `lld-22`), with the
//!    standard library built from source (`-Z build-std`); the packages are
//!    installed with apt when missing (as root).
//! 2. `wasm-bindgen-cli` at exactly the `wasm-bindgen` version of
//!    Cargo.lock, by `cargo install` when missing; Chromium and chromedriver
//!    (Debian's `chromium`, `chromium-driver`) when missing.
//! 3. Builds `thingsdb-protocol` (no_std), `thingsdb-transport` and the
//!    example page for wasm32.
//! 4. Starts the harness (`web-harness serve`: a testkit node on
//!    127.0.0.1 with WebSocket) and runs the wasm-bindgen tests in headless
//!    Chromium with its address built in (`THINGSDB_WASM_WS`).
//! 5. Runs the example chat with two pages (`web-harness chat`); the
//!    screenshots and timings land in `target/web-chat/`. The page is a
//!    debug build unless `--release` is given.
//!
//! Installs already done are skipped, so a second run only builds and tests.
//!
//! `--real-node BIN` runs steps 4 and 5 against a real ThingsDB node
//! started from `BIN` with its WebSocket port, inside a private network
//! namespace with loopback only (`unshare -n`), since a node binds its
//! WebSocket port on every interface. `--serve` serves the example page
//! and a testkit node instead of testing (the page takes any node's
//! address in its `?ws=` parameter).

use std::env;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{cargo_with, output, root, run, Failure, Step};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const DEBIAN_TOOLCHAIN: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "rust-web-llvm",
    "lld-22",
];
const DEBIAN_BROWSER: &[&str] = &["chromium", "chromium-driver"];
/// The browser tests, by package.
const BROWSER_TESTS: &[(&str, &str)] = &[
    ("thingsdb-transport", "browser"),
    ("thingsdb-client", "browser"),
    ("thingsdb-http", "browser"),
];
/// Packages that must build for wasm32 as they are.
const WASM_PACKAGES: &[&str] = &[
    "thingsdb-protocol",
    "thingsdb-transport",
    "thingsdb-client",
    "thingsdb-http",
];

/// How to run cargo for wasm32 on this machine.
enum Toolchain {
    /// rustup's cargo, with the target installed.
    Rustup,
    /// Debian's `cargo-web`, `rustc-web` and its rustdoc, building std
    /// from source.
    Debian {
        cargo: PathBuf,
        rustc: PathBuf,
        rustdoc: PathBuf,
    },
}

impl Toolchain {
    /// `cargo <args>` for the wasm32 target, in its own target directory.
    fn cargo(&self, args: &[&str]) -> Command {
        let mut c = match self {
            Toolchain::Rustup => cargo_with(args),
            Toolchain::Debian {
                cargo,
                rustc,
                rustdoc,
            } => {
                let mut c = Command::new(cargo);
                c.current_dir(root()).args(args);
                for var in ["RUSTUP_TOOLCHAIN", "CARGO"] {
                    c.env_remove(var);
                }
                c.env("RUSTC", rustc)
                    .env("RUSTDOC", rustdoc)
                    .env("RUSTC_BOOTSTRAP", "1");
                c
            }
        };
        // Our crates' warnings are errors on this target too (dependencies
        // and std are built with their lints capped, as always).
        c.env("RUSTFLAGS", "-D warnings")
            .env("RUSTDOCFLAGS", "-D warnings");
        c.args(["--target", WASM_TARGET]);
        if let Toolchain::Debian { .. } = self {
            c.args(["-Z", "build-std=std,panic_abort"]);
        }
        // Our crates are small here; incremental state would only take
        // disk space.
        c.env("CARGO_TARGET_DIR", wasm_target_dir())
            .env("CARGO_INCREMENTAL", "0");
        c
    }
}

fn wasm_target_dir() -> PathBuf {
    root().join("target").join("wasm")
}

pub(crate) fn wasm(args: &[String]) -> Step {
    let mut serve = false;
    let mut release = false;
    let mut in_netns = false;
    let mut real_node: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--serve" => serve = true,
            "--release" => release = true,
            "--in-netns" => in_netns = true,
            "--real-node" => {
                real_node = Some(
                    it.next()
                        .ok_or_else(|| Failure("--real-node needs a path".into()))?
                        .clone(),
                )
            }
            a => {
                return Err(Failure(format!(
                    "unknown option `{a}` (wasm [--release] [--serve] [--real-node BIN])"
                )))
            }
        }
    }
    if serve && real_node.is_some() {
        return Err(Failure(
            "--serve and --real-node do not go together (a page served in a private \
             network namespace cannot be reached); serve with --serve and open the page \
             with ?ws=ws://YOUR-NODE:9270"
                .into(),
        ));
    }
    if let Some(bin) = &real_node {
        if !Path::new(bin).is_file() {
            return Err(Failure(format!("no ThingsDB binary at {bin}")));
        }
    }
    let toolchain = toolchain()?;
    let bindgen = wasm_bindgen_cli()?;
    let (chromedriver, chromium) = browser()?;

    for package in WASM_PACKAGES {
        run(toolchain.cargo(&["build", "-p", package]))?;
    }
    run(toolchain.cargo(&["build", "-p", "thingsdb-protocol", "--no-default-features"]))?;
    // The wasm32-only docs (the browser transport) have their links checked.
    let mut doc = vec!["doc", "--no-deps"];
    for package in WASM_PACKAGES {
        doc.extend(["-p", package]);
    }
    run(toolchain.cargo(&doc))?;
    let site = build_site(&toolchain, &bindgen.wasm_bindgen, release)?;

    // The native harness, built with the usual toolchain.
    run(cargo_with([
        "build",
        "-p",
        "thingsdb-web-chat",
        "--bin",
        "web-harness",
    ]))?;
    let harness = native_target_dir().join("debug").join("web-harness");

    if serve {
        let mut c = Command::new(&harness);
        c.args(["serve", "--dir"]).arg(&site);
        println!(
            "\nxtask wasm: open the printed http address with ?ws=<the ws address>&name=you \
             (for example two tabs); stop with Ctrl-D or Ctrl-C"
        );
        return run(c);
    }

    if let (Some(bin), false) = (&real_node, in_netns) {
        // Everything is built: run the rest again in a namespace of its own.
        let me = env::current_exe().map_err(|e| Failure(format!("current_exe: {e}")))?;
        let mut c = Command::new("unshare");
        c.args([
            "-n",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .arg(me)
        .args(["wasm", "--in-netns", "--real-node", bin])
        .args(release.then_some("--release"))
        .env("CARGO_NET_OFFLINE", "true");
        return run(c);
    }
    let real = real_node.as_deref();

    let node = Harness::start(&harness, real)?;
    let webdriver_json = write_webdriver_json(&chromium)?;
    for (package, test) in BROWSER_TESTS {
        let mut c = toolchain.cargo(&["test", "-p", package, "--test", test]);
        // The figures tests print their numbers.
        c.args(["--", "--nocapture"]);
        c.env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
            &bindgen.test_runner,
        )
        .env("CHROMEDRIVER", &chromedriver)
        .env("WASM_BINDGEN_TEST_WEBDRIVER_JSON", &webdriver_json)
        .env("WASM_BINDGEN_TEST_TIMEOUT", "300")
        .env("THINGSDB_WASM_WS", &node.ws)
        .env("THINGSDB_WASM_CLOSED", &node.closed)
        .env("THINGSDB_WASM_HTTP", &node.api)
        .env("THINGSDB_WASM_HTTP_DIRECT", &node.api_direct)
        .env("THINGSDB_WASM_REAL", if real.is_some() { "1" } else { "0" });
        run(c)?;
    }
    drop(node);

    let out = root().join("target").join("web-chat");
    let mut chat = Command::new(&harness);
    chat.args(["chat", "--dir"])
        .arg(&site)
        .arg("--out")
        .arg(&out)
        .arg("--chromedriver")
        .arg(&chromedriver);
    if let Some(c) = &chromium {
        chat.arg("--chromium").arg(c);
    }
    if let Some(bin) = real {
        chat.args(["--real-node", bin]);
    }
    run(chat)?;

    let wasm = site.join("pkg").join("thingsdb_web_chat_bg.wasm");
    let size = fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
    println!(
        "\nxtask wasm: browser tests and the two-page chat passed{}; \
         the chat page's wasm is {size} bytes ({} KiB); screenshots in {}",
        if real.is_some() {
            " against a real node"
        } else {
            ""
        },
        size / 1024,
        out.display()
    );
    Ok(())
}

/// The native target directory (`CARGO_TARGET_DIR` or `target/`).
fn native_target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root().join(p) })
        .unwrap_or_else(|| root().join("target"))
}

// -------------------------------------------------------------- toolchain

fn toolchain() -> Result<Toolchain, Failure> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if installed.lines().any(|l| l.trim() == WASM_TARGET) {
        println!("xtask wasm: using rustup's {WASM_TARGET} target");
        return Ok(Toolchain::Rustup);
    }
    println!(
        "xtask wasm: rustup has no {WASM_TARGET} target; using Debian's rustc-web with -Z build-std"
    );
    apt_install(DEBIAN_TOOLCHAIN)?;
    let files = output({
        let mut c = Command::new("dpkg");
        c.args(["-L", "rustc-web", "cargo-web"]);
        c
    })?;
    let find = |name: &str| {
        files
            .lines()
            .map(Path::new)
            .find(|p| p.parent() == Some(Path::new("/usr/bin")) && p.ends_with(name))
            .map(Path::to_path_buf)
            .ok_or_else(|| Failure(format!("rustc-web/cargo-web install no /usr/bin/{name}")))
    };
    Ok(Toolchain::Debian {
        cargo: find("cargo")?,
        rustc: find("rustc")?,
        rustdoc: find("rustdoc")?,
    })
}

/// Installs the Debian packages of `names` that are not installed yet.
fn apt_install(names: &[&str]) -> Step {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|p| !deb_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !is_root {
        return Err(Failure(format!(
            "missing Debian packages: {m}; install them with \
             `sudo apt-get install --no-install-recommends {m}` (or add rustup's \
             {WASM_TARGET} target)",
            m = missing.join(" ")
        )));
    }
    let mut update = Command::new("apt-get");
    update.args(["update", "-q"]);
    run(update)?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run(install)
}

fn deb_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

// ---------------------------------------------------------- wasm-bindgen

struct Bindgen {
    wasm_bindgen: PathBuf,
    test_runner: PathBuf,
}

/// The `wasm-bindgen` version in Cargo.lock.
fn locked_wasm_bindgen() -> Result<String, Failure> {
    let lock = fs::read_to_string(root().join("Cargo.lock"))
        .map_err(|e| Failure(format!("cannot read Cargo.lock: {e}")))?;
    lock_version(&lock, "wasm-bindgen")
        .ok_or_else(|| Failure("Cargo.lock has no wasm-bindgen".into()))
}

/// The version of package `name` in a Cargo.lock text.
fn lock_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l.trim() == wanted {
            let v = lines.next()?.trim();
            return v
                .strip_prefix("version = \"")
                .and_then(|v| v.strip_suffix('"'))
                .map(String::from);
        }
    }
    None
}

/// Where `cargo install` puts binaries.
fn cargo_bin_dir() -> PathBuf {
    if let Some(home) = env::var_os("CARGO_HOME") {
        return PathBuf::from(home).join("bin");
    }
    PathBuf::from(env::var_os("HOME").unwrap_or_default())
        .join(".cargo")
        .join("bin")
}

/// Every `name` on PATH and in cargo's bin directory, in that order.
fn programs(name: &str) -> Vec<PathBuf> {
    env::split_paths(&env::var_os("PATH").unwrap_or_default())
        .chain([cargo_bin_dir()])
        .map(|d| d.join(name))
        .filter(|p| p.is_file())
        .collect()
}

/// The first `name` on PATH or in cargo's bin directory.
fn find_program(name: &str) -> Option<PathBuf> {
    programs(name).into_iter().next()
}

fn wasm_bindgen_cli() -> Result<Bindgen, Failure> {
    let version = locked_wasm_bindgen()?;
    let have = |p: &Path| {
        Command::new(p)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == format!("wasm-bindgen {version}"))
            .unwrap_or(false)
    };
    // Any other version on PATH does not do: its output must match the
    // `wasm-bindgen` crate the code is built with.
    let found = programs("wasm-bindgen").into_iter().find(|p| have(p));
    let wasm_bindgen = match found {
        Some(p) => p,
        None => {
            // Not --locked: its lock file wants crates newer than some
            // registries have.
            run(cargo_with([
                "install",
                "wasm-bindgen-cli",
                "--version",
                &version,
            ]))?;
            programs("wasm-bindgen")
                .into_iter()
                .find(|p| have(p))
                .ok_or_else(|| Failure(format!("wasm-bindgen {version} not found after install")))?
        }
    };
    let test_runner = wasm_bindgen.with_file_name("wasm-bindgen-test-runner");
    if !test_runner.is_file() {
        return Err(Failure(format!(
            "no {} next to wasm-bindgen",
            test_runner.display()
        )));
    }
    println!(
        "xtask wasm: wasm-bindgen {version} at {}",
        wasm_bindgen.display()
    );
    Ok(Bindgen {
        wasm_bindgen,
        test_runner,
    })
}

// ---------------------------------------------------------------- browser

/// chromedriver, and the Chromium binary to give it when it is Debian's.
fn browser() -> Result<(PathBuf, Option<PathBuf>), Failure> {
    if let Some(d) = env::var_os("CHROMEDRIVER") {
        return Ok((PathBuf::from(d), env::var_os("CHROMIUM").map(PathBuf::from)));
    }
    if find_program("chromedriver").is_none() {
        apt_install(DEBIAN_BROWSER)?;
    }
    let driver =
        find_program("chromedriver").ok_or_else(|| Failure("no chromedriver on PATH".into()))?;
    let chromium = env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| find_program("chromium"));
    Ok((driver, chromium))
}

/// The capabilities wasm-bindgen-test-runner gives chromedriver: headless
/// as root, with a fresh profile.
fn write_webdriver_json(chromium: &Option<PathBuf>) -> Result<PathBuf, Failure> {
    let dir = wasm_target_dir().join("browser");
    let profile = dir.join("profile");
    let _ = fs::remove_dir_all(&profile);
    fs::create_dir_all(&dir).map_err(|e| Failure(format!("{}: {e}", dir.display())))?;
    let binary = match chromium {
        Some(c) => format!("\"binary\": {},", json_string(&c.to_string_lossy())),
        None => String::new(),
    };
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-dev-shm-usage",
    ]
    .iter()
    .map(|a| json_string(a))
    .chain([json_string(&format!(
        "--user-data-dir={}",
        profile.display()
    ))])
    .collect::<Vec<_>>()
    .join(", ");
    let text = format!("{{\"goog:chromeOptions\": {{{binary} \"args\": [{args}]}}}}\n");
    let path = dir.join("webdriver.json");
    fs::write(&path, text).map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    Ok(path)
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ------------------------------------------------------------------- site

/// Builds the example page and lays out the site to serve: `index.html`
/// and `pkg/` from wasm-bindgen. Returns its directory.
///
/// Without `release` the page is a debug build: it shares the standard
/// library build of the tests, which keeps CI short; the size figure of
/// docs/benchmarks.md is from `--release`.
fn build_site(
    toolchain: &Toolchain,
    wasm_bindgen: &Path,
    release: bool,
) -> Result<PathBuf, Failure> {
    let mut args = vec!["build", "-p", "thingsdb-web-chat", "--lib"];
    if release {
        args.push("--release");
    }
    let mut build = toolchain.cargo(&args);
    // What a page wants: small code. Debug info would only be stripped
    // again by wasm-bindgen; the function names (the `name` section, two
    // fifths of the file) are not, so the linker drops them.
    build
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    run(build)?;
    let wasm = wasm_target_dir()
        .join(WASM_TARGET)
        .join(if release { "release" } else { "debug" })
        .join("thingsdb_web_chat.wasm");
    let site = root().join("target").join("web-chat").join("site");
    let mut bindgen = Command::new(wasm_bindgen);
    bindgen
        .args(["--target", "web", "--no-typescript", "--out-dir"])
        .arg(site.join("pkg"))
        .arg(&wasm);
    run(bindgen)?;
    let page = root().join("examples/web-chat/www/index.html");
    fs::copy(&page, site.join("index.html"))
        .map_err(|e| Failure(format!("{}: {e}", page.display())))?;
    Ok(site)
}

// ---------------------------------------------------------------- harness

/// A running `web-harness serve`; it stops when its standard input closes,
/// which dropping this does.
struct Harness {
    child: std::process::Child,
    ws: String,
    closed: String,
    /// The HTTP API behind a CORS proxy, and the API itself.
    api: String,
    api_direct: String,
}

impl Harness {
    fn start(bin: &Path, real_node: Option<&str>) -> Result<Harness, Failure> {
        let mut c = Command::new(bin);
        c.arg("serve");
        if let Some(node) = real_node {
            c.args(["--real-node", node]);
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Failure(format!("cannot start {}: {e}", bin.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Failure("no harness output".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut value = |key: &str| -> Result<String, Failure> {
            let line = lines
                .next()
                .and_then(Result::ok)
                .ok_or_else(|| Failure("the harness ended before giving its addresses".into()))?;
            line.strip_prefix(key)
                .map(String::from)
                .ok_or_else(|| Failure(format!("unexpected harness line {line:?}")))
        };
        let ws = value("ws=");
        let closed = value("closed=");
        let api = value("api=");
        let api_direct = value("api_direct=");
        let (ws, closed, api, api_direct) = match (ws, closed, api, api_direct) {
            (Ok(w), Ok(c), Ok(a), Ok(d)) => (w, c, a, d),
            (Err(e), ..) | (_, Err(e), ..) | (.., Err(e), _) | (.., Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let what = if real_node.is_some() {
            "real ThingsDB node"
        } else {
            "testkit node"
        };
        println!("xtask wasm: {what} at {ws}");
        Ok(Harness {
            child,
            ws,
            closed,
            api,
            api_direct,
        })
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::{json_string, lock_version};

    #[test]
    fn versions_are_read_from_a_lock_file() {
        let lock = "[[package]]\nname = \"wasm-bindgen-test\"\nversion = \"0.3.80\"\n\n\
                    [[package]]\nname = \"wasm-bindgen\"\nversion = \"0.2.130\"\n";
        assert_eq!(
            lock_version(lock, "wasm-bindgen").as_deref(),
            Some("0.2.130")
        );
        assert_eq!(
            lock_version(lock, "wasm-bindgen-test").as_deref(),
            Some("0.3.80")
        );
        assert_eq!(lock_version(lock, "js-sys"), None);
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(json_string("\n"), r#""\u000a""#);
    }
}
