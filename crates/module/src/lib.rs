//! Write ThingsDB modules in Rust.
//!
//! A ThingsDB node runs modules as child processes and talks to them over
//! their stdin and stdout (the module protocol of
//! [`thingsdb_protocol::module`]); ThingsDB code calls them with
//! `future({module: 'NAME', ...})`. This crate is the module's side: you
//! implement a [`Handler`] (typed configuration, typed requests, async
//! answers, errors with ThingsDB error codes) and [`Module::run`] does the
//! rest: framing, concurrency, per-request timeouts, logging to stderr and
//! a clean exit when the node closes stdin or sends SIGTERM.
//!
//! ```no_run
//! use std::collections::HashMap;
//! use std::process::ExitCode;
//! use std::sync::Mutex;
//!
//! use serde::Deserialize;
//! use thingsdb_module::{Error, Handler, Module};
//!
//! /// `future({module: 'counter', name: 'a'})` counts calls per name.
//! #[derive(Default)]
//! struct Counter {
//!     counts: Mutex<HashMap<String, u64>>,
//!     limit: Mutex<u64>,
//! }
//!
//! #[derive(Deserialize)]
//! struct Config { limit: u64 }
//!
//! #[derive(Deserialize)]
//! struct Req { name: String }
//!
//! impl Handler for Counter {
//!     type Config = Config;
//!     type Request = Req;
//!     type Response = u64;
//!
//!     async fn configure(&self, c: Config) -> Result<(), Error> {
//!         if c.limit == 0 {
//!             return Err(Error::value("`limit` must be positive"));
//!         }
//!         *self.limit.lock().map_err(|_| Error::operation("poisoned"))? = c.limit;
//!         Ok(())
//!     }
//!
//!     async fn handle(&self, req: Req) -> Result<u64, Error> {
//!         let limit = *self.limit.lock().map_err(|_| Error::operation("poisoned"))?;
//!         let mut counts = self.counts.lock().map_err(|_| Error::operation("poisoned"))?;
//!         let n = counts.entry(req.name).or_default();
//!         if *n >= limit {
//!             return Err(Error::max_quota("limit reached"));
//!         }
//!         *n += 1;
//!         Ok(*n)
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> ExitCode {
//!     let _ = thingsdb_module::init_logging();
//!     match Module::new(Counter::default()).run().await {
//!         Ok(_) => ExitCode::SUCCESS,
//!         Err(e) => {
//!             tracing::error!("{e}");
//!             ExitCode::FAILURE
//!         }
//!     }
//! }
//! ```
//!
//! The crate's `kvcache` binary (`src/bin/kvcache`) is a complete example,
//! with what a node needs to install it; see the crate's README.
//!
//! # What the node does (ThingsDB 1.9.2)
//!
//! - It starts the module when `new_module('NAME', 'FILE')` is called, or
//!   at its own start, from `<modules_path>/NAME/FILE` (and restarts it up
//!   to three times when it exits unasked); it sends its configuration
//!   first, if it has one, and refuses calls to the module until the
//!   module answers it.
//! - The request is the thing given to `future`, with its keys `module`
//!   and, if given, `deep` and `load`; things inside it carry their ids
//!   (`#`) down to `deep` levels.
//! - The answer reaches ThingsDB code as `mpdata`, or as a value when the
//!   request said `load: true`.
//! - It never times a module's request out itself; it stops a module with
//!   SIGTERM (`restart_module`, `del_module`, its own shutdown).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod error;
pub mod handler;
pub mod logging;
pub mod runtime;

pub use error::{Error, RunError};
pub use handler::Handler;
pub use logging::init_logging;
pub use runtime::{Module, Stopped};
pub use thingsdb_protocol::ErrorCode;

// The README's examples are compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
