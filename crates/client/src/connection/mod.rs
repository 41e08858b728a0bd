//! The connection: a sans-IO [`session::Session`] holding every piece of
//! protocol state, driven by a thin tokio loop ([`driver`]) that owns the
//! sockets, and [`handshake`] for connect + AUTH.

pub(crate) mod driver;
pub(crate) mod frames;
pub(crate) mod handshake;
pub(crate) mod pool;
pub(crate) mod session;

#[cfg(test)]
mod model;
#[cfg(test)]
pub(crate) mod testing;

pub(crate) use driver::{Input, Shared};
pub(crate) use session::{deadline_after, Command, RoomKey, Subscribe};
