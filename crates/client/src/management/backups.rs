//! Backups (`@node` scope): new, del, info, list, has, ok.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::{Node, ScopeApi};
use crate::error::Error;

/// What `backup_info()` and `backups_info()` say about a scheduled
/// backup. Fields a newer node adds are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct BackupInfo {
    /// The backup schedule's id.
    pub id: u64,
    /// When it was scheduled, in seconds since the Unix epoch.
    pub created_at: u64,
    /// The file name template (`{DATE}`, `{TIME}`, `{CHANGE_ID}` are
    /// filled in).
    pub file_template: String,
    /// When it runs next (`2026-11-26 20:36:37Z`), or `pending`.
    #[serde(default)]
    pub next_run: Option<String>,
    /// Seconds between runs, for a repeating backup.
    #[serde(default)]
    pub repeat: Option<u64>,
    /// How many files a repeating backup keeps.
    #[serde(default)]
    pub max_files: Option<u64>,
    /// The files made so far.
    #[serde(default)]
    pub files: Vec<String>,
    /// The last run's result code (0 for success).
    #[serde(default)]
    pub result_code: Option<i64>,
    /// The last run's result message.
    #[serde(default)]
    pub result_message: Option<String>,
}

impl ScopeApi<'_, Node> {
    /// Schedules a backup of this node to `file_template` (which must end
    /// with `.tar.gz`) at `start` (now when `None`), repeated every
    /// `repeat` seconds when given, keeping at most `max_files` files;
    /// returns its id (`new_backup(file_template, start, repeat,
    /// max_files)`).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// let id = client.node().new_backup("/backups/ti_{DATE}_{TIME}.tar.gz", None, Some(86_400), Some(7)).await?;
    /// println!("{:?}", client.node().backup_info(id).await?.next_run);
    /// # Ok(()) }
    /// ```
    pub async fn new_backup(
        &self,
        file_template: &str,
        start: Option<SystemTime>,
        repeat: Option<u64>,
        max_files: Option<u64>,
    ) -> Result<u64, Error> {
        let start = match start {
            Some(t) => Some(
                t.duration_since(UNIX_EPOCH)
                    .map_err(|_| Error::BadArgument("a backup cannot start before 1970".into()))?
                    .as_secs(),
            ),
            None => None,
        };
        // The node takes max_files only after repeat, and repeat 0 means
        // "once".
        let code = match max_files {
            Some(_) => {
                "new_backup(file, is_nil(start) ? nil : datetime(start), repeat, max_files);"
            }
            None => "new_backup(file, is_nil(start) ? nil : datetime(start), repeat);",
        };
        let mut q = self
            .query(code)
            .var("file", file_template)
            .var("start", &start)
            .var("repeat", &repeat.unwrap_or(0));
        if let Some(max_files) = max_files {
            q = q.var("max_files", &max_files);
        }
        q.decode().await
    }

    /// Deletes a backup schedule, and its files when `delete_files`
    /// (`del_backup(id, delete_files)`).
    pub async fn del_backup(&self, id: u64, delete_files: bool) -> Result<(), Error> {
        self.query("del_backup(id, delete_files);")
            .var("id", &id)
            .var("delete_files", &delete_files)
            .decode()
            .await
    }

    /// One backup schedule's info (`backup_info(id)`).
    pub async fn backup_info(&self, id: u64) -> Result<BackupInfo, Error> {
        self.query("backup_info(id);").var("id", &id).decode().await
    }

    /// Every backup schedule of this node (`backups_info()`).
    pub async fn backups_info(&self) -> Result<Vec<BackupInfo>, Error> {
        self.get("backups_info();").await
    }

    /// Whether a backup schedule with this id exists (`has_backup(id)`).
    pub async fn has_backup(&self, id: u64) -> Result<bool, Error> {
        self.query("has_backup(id);").var("id", &id).decode().await
    }

    /// Whether every backup's last run succeeded (`backups_ok()`).
    pub async fn backups_ok(&self) -> Result<bool, Error> {
        self.get("backups_ok();").await
    }
}
