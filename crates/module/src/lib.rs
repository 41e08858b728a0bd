#![doc = include_str!("../README.md")]
//!
//! # A handler with state and configuration
//!
//! A [`Handler`]'s configuration is checked in
//! [`configure`](Handler::configure) (a refusal makes the node refuse
//! calls until a good one comes); [`handle`](Handler::handle) runs
//! concurrently, so shared state sits behind a lock.
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
