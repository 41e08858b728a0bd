//! Tokens (`@thingsdb` scope): new (with expiration time and
//! description), del, del_expired, has.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::{ScopeApi, Thingsdb};
use crate::error::Error;

/// A token as `user_info()` lists it. Fields a newer node adds are
/// ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct TokenInfo {
    /// The token itself (what [`Auth::token`](crate::Auth::token) takes).
    pub key: String,
    /// `OK`, or `EXPIRED`.
    pub status: String,
    /// When it expires (ISO 8601, UTC), or `never`.
    pub expiration_time: String,
    /// Its description (empty when none was given).
    #[serde(default)]
    pub description: String,
    /// When it was made (ISO 8601, UTC).
    #[serde(default)]
    pub created_on: Option<String>,
}

impl ScopeApi<'_, Thingsdb> {
    /// Makes a token for a user and returns it; it expires at `expires`
    /// (which must lie in the future) or never, and carries an optional
    /// description (`new_token(user, expiration_time, description)`).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// use std::time::{Duration, SystemTime};
    /// let day = SystemTime::now() + Duration::from_secs(86_400);
    /// let token = client.thingsdb().new_token("admin", Some(day), Some("for the nightly job")).await?;
    /// let job = thingsdb_client::Client::connect("localhost:9200", thingsdb_client::Auth::token(token)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn new_token(
        &self,
        user: &str,
        expires: Option<SystemTime>,
        description: Option<&str>,
    ) -> Result<String, Error> {
        // Seconds since the epoch; `datetime(int)` on the node. A time
        // before the epoch is in the past, which the node refuses anyway.
        let expires = match expires {
            Some(t) => Some(
                t.duration_since(UNIX_EPOCH)
                    .map_err(|_| Error::BadArgument("a token cannot expire before 1970".into()))?
                    .as_secs(),
            ),
            None => None,
        };
        let code = match (expires.is_some(), description.is_some()) {
            (false, false) => "new_token(user);",
            (true, false) => "new_token(user, datetime(expires));",
            (false, true) => "new_token(user, nil, description);",
            (true, true) => "new_token(user, datetime(expires), description);",
        };
        let mut q = self.query(code).var("user", user);
        if let Some(expires) = expires {
            q = q.var("expires", &expires);
        }
        if let Some(description) = description {
            q = q.var("description", description);
        }
        q.decode().await
    }

    /// Deletes a token (`del_token(key)`).
    pub async fn del_token(&self, key: &str) -> Result<(), Error> {
        self.query("del_token(key);").var("key", key).decode().await
    }

    /// Deletes every expired token of every user (`del_expired()`).
    pub async fn del_expired(&self) -> Result<(), Error> {
        self.get("del_expired();").await
    }

    /// Whether a token exists (`has_token(key)`).
    pub async fn has_token(&self, key: &str) -> Result<bool, Error> {
        self.query("has_token(key);").var("key", key).decode().await
    }
}
