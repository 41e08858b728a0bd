//! A chat in a ThingsDB room, as a web page (wasm32).
//!
//! The page (`www/index.html`) is opened with `?ws=ws://HOST:PORT&name=NAME`.
//! It connects to the node with `thingsdb-client` (over the browser's
//! WebSocket), authenticates as `admin`, joins the room named `chat` in
//! `//stuff`, shows every `msg` event of that room as `NAME: TEXT` and
//! emits one for each line typed. When the connection is lost it says so;
//! the client reconnects with backoff and joins the room again.
//!
//! Build and serve it with `cargo xtask wasm --serve` (see the README).
//! On targets other than wasm32 this crate is empty apart from its
//! harness binary.

#[cfg(target_arch = "wasm32")]
mod page;

#[cfg(target_arch = "wasm32")]
pub use page::start;
