//! Tasks (`@thingsdb` and collection scopes): new, list, info, del,
//! cancel.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{CodeScope, ScopeApi};
use crate::error::Error;

/// A scheduled task, read with its methods (`id()`, `at()`, `owner()`,
/// `closure()`, `err()`, `args()`). Fields a newer node adds are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct TaskInfo {
    /// The task's id.
    pub id: u64,
    /// When it runs next (ISO 8601, UTC), or `None` when it has run and is
    /// not scheduled again.
    #[serde(default)]
    pub at: Option<String>,
    /// The user that owns it.
    pub owner: String,
    /// Its closure, as code.
    pub closure: String,
    /// The error of its last run, if it failed.
    #[serde(default)]
    pub err: Option<rmpv::Value>,
    /// The arguments it runs with.
    #[serde(default)]
    pub args: Vec<rmpv::Value>,
}

/// Code that reads task `t`'s parts into a thing.
macro_rules! task_as_map {
    () => {
        "{id: t.id(), at: t.at(), owner: t.owner(), closure: t.closure(), err: t.err(), args: t.args()}"
    };
}

impl<K: CodeScope> ScopeApi<'_, K> {
    /// Schedules a task that runs `closure` (code, such as
    /// `"|task, name| log(name)"`; its first argument is the task itself)
    /// at `start` with `args`, and returns its id (`task(start,
    /// closure(code), args)`).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// use std::time::{Duration, SystemTime};
    /// let stuff = client.collection("stuff")?;
    /// let at = SystemTime::now() + Duration::from_secs(3600);
    /// let id = stuff.new_task(at, "|_, n| .n = n", &[42]).await?;
    /// stuff.cancel_task(id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn new_task<A: Serialize + ?Sized>(
        &self,
        start: SystemTime,
        closure: &str,
        args: &A,
    ) -> Result<u64, Error> {
        let start = start
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::BadArgument("a task cannot start before 1970".into()))?
            .as_secs();
        self.query("task(datetime(start), closure(code), args).id();")
            .var("start", &start)
            .var("code", closure)
            .var("args", args)
            .decode()
            .await
    }

    /// Every task of this scope (`tasks()`).
    pub async fn tasks(&self) -> Result<Vec<TaskInfo>, Error> {
        const CODE: &str = concat!("tasks().map(|t| ", task_as_map!(), ");");
        self.get(CODE).await
    }

    /// One task (`task(id)`).
    pub async fn task_info(&self, id: u64) -> Result<TaskInfo, Error> {
        const CODE: &str = concat!("t = task(id); ", task_as_map!(), ";");
        self.query(CODE).var("id", &id).decode().await
    }

    /// Deletes a task (`task(id).del()`).
    pub async fn del_task(&self, id: u64) -> Result<(), Error> {
        self.query("task(id).del();").var("id", &id).decode().await
    }

    /// Replaces a task's arguments (a sequence) (`task(id).set_args(args)`).
    pub async fn set_task_args<A: Serialize + ?Sized>(
        &self,
        id: u64,
        args: &A,
    ) -> Result<(), Error> {
        self.query("task(id).set_args(args);")
            .var("id", &id)
            .var("args", args)
            .decode()
            .await
    }

    /// Gives a task to another user, whose privileges it then runs with
    /// (`task(id).set_owner(user)`).
    pub async fn set_task_owner(&self, id: u64, user: &str) -> Result<(), Error> {
        self.query("task(id).set_owner(user);")
            .var("id", &id)
            .var("user", user)
            .decode()
            .await
    }

    /// Cancels a task: it stays, but will not run (again)
    /// (`task(id).cancel()`).
    pub async fn cancel_task(&self, id: u64) -> Result<(), Error> {
        self.query("task(id).cancel();")
            .var("id", &id)
            .decode()
            .await
    }
}
