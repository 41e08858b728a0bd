//! Commit history (`@thingsdb` scope): read and delete the commits kept
//! for a scope with history on (see
//! [`set_history`](ScopeApi::set_history)).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::{ScopeApi, Thingsdb};
use crate::error::Error;

/// Which commits [`history`](ScopeApi::history) and
/// [`del_history`](ScopeApi::del_history) select. `scope` is required;
/// the node wants at least one other field set.
///
/// ```
/// use thingsdb_client::management::HistoryFilter;
/// let f = HistoryFilter { last: Some(10), ..HistoryFilter::new("//stuff") };
/// assert_eq!(f.scope, "//stuff");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    /// The scope whose history to read (`@thingsdb` or a collection).
    pub scope: String,
    /// Commits whose message or code contains this text.
    pub contains: Option<String>,
    /// Commits whose message or code matches this regular expression: a
    /// PCRE2 pattern without the slashes (`^add`; `(?i)` for any case),
    /// compiled on the node with `regex()`.
    pub match_regex: Option<String>,
    /// The commit with this id.
    pub id: Option<u64>,
    /// The first this many commits.
    pub first: Option<u64>,
    /// The last this many commits.
    pub last: Option<u64>,
    /// Commits made before this time.
    pub before: Option<SystemTime>,
    /// Commits made after this time.
    pub after: Option<SystemTime>,
    /// Only commits that failed (`true`) or succeeded (`false`).
    pub has_err: Option<bool>,
}

impl HistoryFilter {
    /// A filter on `scope` with nothing else set.
    pub fn new(scope: impl Into<String>) -> Self {
        HistoryFilter {
            scope: scope.into(),
            ..HistoryFilter::default()
        }
    }
}

/// One commit, as `history()` returns it. Fields a newer node adds are
/// ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Commit {
    /// The commit's id.
    pub id: u64,
    /// When it was made (ISO 8601, UTC).
    pub created_on: String,
    /// The user that made it.
    pub by: String,
    /// Its message (from `commit(message)`).
    pub message: String,
    /// The code that ran (only with `detail`).
    #[serde(default)]
    pub code: Option<String>,
    /// The error, when the code failed.
    #[serde(default)]
    pub err_msg: Option<String>,
}

fn secs(t: Option<SystemTime>) -> Result<Option<u64>, Error> {
    t.map(|t| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .map_err(|_| Error::BadArgument("a time before 1970".into()))
    })
    .transpose()
}

/// The options map, built on the node from variables (nil means unset).
macro_rules! history_options {
    () => {
        "{scope: scope, contains: contains, \
         match: is_nil(pattern) ? nil : regex(pattern), id: id, first: first, last: last, \
         before: is_nil(before) ? nil : datetime(before), \
         after: is_nil(after) ? nil : datetime(after), has_err: has_err"
    };
}

impl ScopeApi<'_, Thingsdb> {
    /// The commits that `filter` selects; with `detail`, each carries its
    /// code (`history(options)`).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// use thingsdb_client::management::HistoryFilter;
    /// let t = client.thingsdb();
    /// t.set_history("//stuff", true).await?;
    /// client.query("commit('add x'); .x = 1;").scope("//stuff").await?;
    /// let last = t.history(&HistoryFilter { last: Some(5), ..HistoryFilter::new("//stuff") }, true).await?;
    /// assert_eq!(last[0].message, "add x");
    /// # Ok(()) }
    /// ```
    pub async fn history(
        &self,
        filter: &HistoryFilter,
        detail: bool,
    ) -> Result<Vec<Commit>, Error> {
        const CODE: &str = concat!("history(", history_options!(), ", detail: detail});");
        self.filtered(CODE, filter)?
            .var("detail", &detail)
            .decode()
            .await
    }

    /// Deletes the commits that `filter` selects and returns how many
    /// went (`del_history(options)`).
    pub async fn del_history(&self, filter: &HistoryFilter) -> Result<u64, Error> {
        const CODE: &str = concat!("del_history(", history_options!(), "});");
        self.filtered(CODE, filter)?.decode().await
    }

    fn filtered<'q>(
        &'q self,
        code: &'q str,
        f: &HistoryFilter,
    ) -> Result<crate::request::Query<'q, crate::request::VarByVar>, Error> {
        Ok(self
            .query(code)
            .var("scope", &f.scope)
            .var("contains", &f.contains)
            .var("pattern", &f.match_regex)
            .var("id", &f.id)
            .var("first", &f.first)
            .var("last", &f.last)
            .var("before", &secs(f.before)?)
            .var("after", &secs(f.after)?)
            .var("has_err", &f.has_err))
    }
}
