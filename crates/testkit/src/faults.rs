//! Fault injection: make the node misbehave on purpose.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::state::{Command, Shared};

/// A way to spoil the next reply of a connection; see
/// [`Faults::corrupt_next_reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// The reply's header carries a wrong check byte.
    BadCheckByte,
    /// Instead of the reply, a header announcing a payload of `u32::MAX`
    /// bytes (far over the node's 1 GiB limit) is sent, with the reply's
    /// id and type and nothing after it.
    OversizedHeader,
    /// Only part of the reply is sent (its header and half its payload, or
    /// half its header when it has no payload), then the connection is
    /// closed. Over WebSocket the part is one message.
    Truncated,
    /// The reply is replaced by a DATA package with the same id whose
    /// payload is not valid MessagePack (`0xc1`, a never-used marker).
    InvalidMsgpack,
    /// Before the reply, a DATA reply (`nil`) with this id, which the
    /// client did not ask for, is sent; the real reply follows.
    UnknownId(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    All,
    One(u64),
}

/// Fault injection for all connections ([`crate::TestNode::faults`]) or for
/// one ([`crate::TestNode::connection_faults`]).
///
/// Settings made for all connections also apply to connections made later;
/// [`Faults::reset`] clears them. One-shot faults (closing, corrupting the
/// next reply, sending raw bytes) for all connections act on the
/// connections open at the time of the call.
///
/// ```no_run
/// # async fn demo(node: &thingsdb_testkit::TestNode) {
/// use std::time::Duration;
/// use thingsdb_testkit::Corruption;
/// node.faults().delay_replies(Duration::from_millis(200));
/// node.faults().corrupt_next_reply(Corruption::BadCheckByte);
/// node.faults().reset();
/// # }
/// ```
#[derive(Clone)]
pub struct Faults {
    pub(crate) shared: Arc<Shared>,
    target: Target,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("target", &self.target)
            .finish()
    }
}

impl Faults {
    pub(crate) fn all(shared: Arc<Shared>) -> Faults {
        Faults {
            shared,
            target: Target::All,
        }
    }

    pub(crate) fn one(shared: Arc<Shared>, conn: u64) -> Faults {
        Faults {
            shared,
            target: Target::One(conn),
        }
    }

    fn each(&self, mut f: impl FnMut(&mut crate::state::ConnEntry)) {
        let mut st = self.shared.lock();
        match self.target {
            Target::All => st.conns.values_mut().for_each(f),
            Target::One(id) => {
                if let Some(c) = st.conns.get_mut(&id) {
                    f(c)
                }
            }
        }
    }

    /// Closes the connection(s) now, without a reply to anything pending.
    pub fn close_now(&self) {
        let mut n = 0;
        self.each(|c| {
            if c.tx.send(Command::Close).is_ok() {
                n += 1;
            }
        });
        self.shared.lock().counters.closed_by_fault += n;
    }

    /// Closes the connection(s) when `n` more packages have been received;
    /// the `n`-th is not answered. For all connections, every connection
    /// made later closes at its `n`-th package too. `n == 0` closes now.
    pub fn close_after(&self, n: u64) {
        if n == 0 {
            return self.close_now();
        }
        self.each(|c| c.close_after = Some(n));
        if self.target == Target::All {
            self.shared.lock().close_after = Some(n);
        }
    }

    /// Waits `d` before writing each reply (events are not delayed).
    /// Replies stay in order, so later requests wait too.
    pub fn delay_replies(&self, d: Duration) {
        match self.target {
            Target::All => self.shared.lock().faults.delay = d,
            Target::One(_) => self.each(|c| c.faults.delay = d),
        }
    }

    /// While `on`, requests are read (and counted) but not answered; the
    /// socket stays open and events are still sent.
    pub fn stop_replying(&self, on: bool) {
        match self.target {
            Target::All => self.shared.lock().faults.silent = on,
            Target::One(_) => self.each(|c| c.faults.silent = on),
        }
    }

    /// While `on`, replies and events are written one byte per write (over
    /// WebSocket: one byte per frame, as one fragmented message).
    pub fn byte_by_byte(&self, on: bool) {
        match self.target {
            Target::All => self.shared.lock().faults.byte_by_byte = on,
            Target::One(_) => self.each(|c| c.faults.byte_by_byte = on),
        }
    }

    /// Spoils the next reply of the connection(s); see [`Corruption`].
    pub fn corrupt_next_reply(&self, c: Corruption) {
        self.each(|e| e.corruptions.push_back(c));
    }

    /// Writes `bytes` to the connection(s) as they are (over WebSocket as
    /// one binary message): a bad header, a reply for an id nobody asked,
    /// half a package, anything.
    pub fn send_raw(&self, bytes: impl Into<Bytes>) {
        let b: Bytes = bytes.into();
        self.each(|c| {
            let _ = c.tx.send(Command::Raw(b.clone()));
        });
    }

    /// Clears every setting (delay, silence, byte-by-byte, close-after and
    /// pending corruptions) of the connection(s), and for all connections
    /// also the defaults for new ones.
    pub fn reset(&self) {
        self.each(|c| {
            c.faults = Default::default();
            c.close_after = None;
            c.corruptions.clear();
        });
        if self.target == Target::All {
            let mut st = self.shared.lock();
            st.faults = Default::default();
            st.close_after = None;
        }
    }
}
