//! A distributed lock kept in a collection: the counterpart of
//! python-thingsdb's `thingsdb.misc.lock`, built on procedures, tasks and
//! rooms.
//!
//! [`install_locks`](ScopeApi::install_locks) adds four procedures
//! (`lock_acquire`, `lock_release`, `lock_granted`, `lock_locked`) and a
//! `.locks` thing to a collection. Each [`lock`](ScopeApi::lock) call
//! queues a waiter with its own room; the first waiter holds the lock; on
//! release (or when a holder's time runs out, by a task on the node) the
//! next waiter is told through its room. A waiter that joins its room
//! after that message went out asks `lock_granted`, so no hand-over is
//! missed.

use std::time::Duration;

use futures::StreamExt;

use super::{Collection, ScopeApi};
use crate::client::Client;
use crate::error::Error;
use crate::events::RoomEvent;

/// The ThingsDB code that installs the lock procedures (once).
const INSTALL: &str = r"
if (!has_procedure('lock_acquire')) {
    .has('locks') || .set('locks', {});
    new_procedure('lock_acquire', |name, timeout| {
        lk = .locks.get(name);
        if (is_nil(lk)) {
            lk = {queue: []};
            .locks.set(name, lk);
        };
        waiter = {room: room(), timeout: timeout, task: nil};
        lk.queue.push(waiter);
        first = lk.queue.len() == 1;
        if (first) {
            waiter.task = task(
                datetime().move('seconds', timeout),
                |_, name, id| wse(run('lock_release', name, id)),
                [name, waiter.room.id()]);
        };
        [first, waiter.room.id()];
    });
    new_procedure('lock_release', |name, id| {
        lk = .locks.get(name);
        if (is_nil(lk) || lk.queue.len() == 0) return false;
        head = lk.queue[0].room.id() == id;
        gone = lk.queue.remove(|w| w.room.id() == id);
        gone.each(|w| is_task(w.task) && w.task.del());
        if (head && lk.queue.len() > 0) {
            next = lk.queue[0];
            next.task = task(
                datetime().move('seconds', next.timeout),
                |_, name, id| wse(run('lock_release', name, id)),
                [name, next.room.id()]);
            next.room.emit('go');
        };
        if (lk.queue.len() == 0) .locks.del(name);
        gone.len() > 0;
    });
    new_procedure('lock_granted', |name, id| {
        lk = .locks.get(name);
        !is_nil(lk) && lk.queue.len() > 0 && lk.queue[0].room.id() == id;
    });
    new_procedure('lock_locked', |name| {
        !is_nil(.locks.get(name));
    });
};
nil;
";

/// A held lock. Release it with [`LockGuard::release`]; dropping it
/// releases it from a spawned task (when a Tokio runtime is running), and
/// the node releases it anyway when its time runs out.
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard {
    client: Client,
    scope: String,
    name: String,
    id: u64,
    released: bool,
}

impl LockGuard {
    /// This hold's id (the id of the waiter's room).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Releases the lock and hands it to the next waiter. Returns `false`
    /// when it was no longer held (its time had run out).
    pub async fn release(mut self) -> Result<bool, Error> {
        self.released = true;
        release(&self.client, &self.scope, &self.name, self.id).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (client, scope, name, id) = (
            self.client.clone(),
            std::mem::take(&mut self.scope),
            std::mem::take(&mut self.name),
            self.id,
        );
        crate::rt::try_spawn(async move {
            if let Err(e) = release(&client, &scope, &name, id).await {
                tracing::warn!(lock = %name, error = %e, "releasing a dropped lock failed");
            }
        });
    }
}

async fn release(client: &Client, scope: &str, name: &str, id: u64) -> Result<bool, Error> {
    client
        .run("lock_release")
        .scope(scope)
        .arg(name)
        .arg(&id)
        .decode()
        .await
}

impl ScopeApi<'_, Collection> {
    /// Installs the lock procedures in this collection; does nothing when
    /// they are there already. Needs `CHANGE` on the collection.
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// use std::time::Duration;
    /// if !client.thingsdb().has_collection("lock").await? {
    ///     client.thingsdb().new_collection("lock").await?;
    /// }
    /// let locks = client.collection("lock")?;
    /// locks.install_locks().await?;
    /// let guard = locks.lock("invoices", Duration::from_secs(60), Duration::from_secs(10)).await?;
    /// // ... only one holder at a time gets here ...
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn install_locks(&self) -> Result<(), Error> {
        self.get(INSTALL).await
    }

    /// Takes the lock `name`, waiting at most `wait` for it; the node
    /// releases it by itself after `hold_for` (whole seconds, at least
    /// one). Fails with [`Error::Timeout`] when the lock did not come in
    /// time (the waiter is taken out of the queue then).
    pub async fn lock(
        &self,
        name: &str,
        hold_for: Duration,
        wait: Duration,
    ) -> Result<LockGuard, Error> {
        let scope = self.scope.as_str().to_owned();
        let secs = hold_for.as_secs().max(1);
        let (first, id): (bool, u64) = self
            .client
            .run("lock_acquire")
            .scope(&scope)
            .arg(name)
            .arg(&secs)
            .decode()
            .await?;
        let guard = LockGuard {
            client: self.client.clone(),
            scope,
            name: name.to_owned(),
            id,
            released: false,
        };
        if first {
            return Ok(guard);
        }
        match crate::rt::timeout(wait, self.wait_turn(&guard)).await {
            Ok(Ok(())) => Ok(guard),
            // Not granted: the guard's drop takes the waiter out.
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Timeout(wait)),
        }
    }

    /// Waits in the waiter's room for the lock to be handed over.
    async fn wait_turn(&self, guard: &LockGuard) -> Result<(), Error> {
        let room = self.client.room(guard.scope.as_str(), guard.id)?;
        let mut events = room.join().await?;
        let result = loop {
            match events.next().await {
                // (Re-)joined: the hand-over may have happened before.
                Some(RoomEvent::Joined) => {
                    if self.is_granted(guard).await? {
                        break Ok(());
                    }
                }
                Some(RoomEvent::Emitted(e)) if e.event == "go" => break Ok(()),
                Some(RoomEvent::Deleted) => {
                    break Err(Error::ConnectionLost(
                        "the lock's waiting room was deleted".into(),
                    ))
                }
                Some(_) => {}
                None => break Err(Error::Closed),
            }
        };
        let _ = events.leave().await;
        result
    }

    async fn is_granted(&self, guard: &LockGuard) -> Result<bool, Error> {
        self.client
            .run("lock_granted")
            .scope(&guard.scope)
            .arg(&guard.name)
            .arg(&guard.id)
            .decode()
            .await
    }

    /// Whether anyone holds or waits for the lock `name`.
    pub async fn is_locked(&self, name: &str) -> Result<bool, Error> {
        self.client
            .run("lock_locked")
            .scope(self.scope.as_str())
            .arg(name)
            .decode()
            .await
    }
}
