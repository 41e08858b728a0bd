//! Collections (`@thingsdb` scope): new, del, rename, info, list, has;
//! time zone, default deep and commit history.

use serde::Deserialize;

use super::{ScopeApi, Thingsdb};
use crate::error::Error;

/// What `collection_info()` and `collections_info()` say about a
/// collection. Fields a newer node adds are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct CollectionInfo {
    /// The collection's id.
    pub collection_id: u64,
    /// Its name.
    pub name: String,
    /// When it was made, in seconds since the Unix epoch.
    pub created_at: u64,
    /// How many things it holds.
    pub things: u64,
    /// Its time zone (`UTC` unless set).
    pub time_zone: String,
    /// The default deep of its query results.
    pub default_deep: u8,
    /// The next free thing (and room) id.
    #[serde(default)]
    pub next_free_id: Option<u64>,
    /// Whether commit history is kept, and how many commits it holds.
    #[serde(default)]
    pub commit_history: Option<CommitHistory>,
    /// How many anonymous types it has.
    #[serde(default)]
    pub ano_types: Option<u64>,
}

/// A collection's (or the `@thingsdb` scope's) commit history: off, or on
/// with this many commits kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CommitHistory {
    /// History is kept; this many commits are stored.
    Commits(u64),
    /// The node says `"disabled"` (or another word a newer node may use).
    Disabled(#[serde(deserialize_with = "ignore_str")] ()),
}

fn ignore_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    String::deserialize(d).map(|_| ())
}

impl ScopeApi<'_, Thingsdb> {
    /// Makes a new, empty collection (`new_collection(name)`).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// client.thingsdb().new_collection("shop").await?;
    /// assert!(client.thingsdb().has_collection("shop").await?);
    /// # Ok(()) }
    /// ```
    pub async fn new_collection(&self, name: &str) -> Result<(), Error> {
        self.query("new_collection(name); nil;")
            .var("name", name)
            .decode()
            .await
    }

    /// Deletes a collection and everything in it (`del_collection(name)`).
    pub async fn del_collection(&self, name: &str) -> Result<(), Error> {
        self.query("del_collection(name);")
            .var("name", name)
            .decode()
            .await
    }

    /// Renames a collection (`rename_collection(name, new_name)`).
    pub async fn rename_collection(&self, name: &str, new_name: &str) -> Result<(), Error> {
        self.query("rename_collection(name, new_name);")
            .var("name", name)
            .var("new_name", new_name)
            .decode()
            .await
    }

    /// One collection's info (`collection_info(name)`).
    pub async fn collection_info(&self, name: &str) -> Result<CollectionInfo, Error> {
        self.query("collection_info(name);")
            .var("name", name)
            .decode()
            .await
    }

    /// Every collection's info (`collections_info()`).
    pub async fn collections_info(&self) -> Result<Vec<CollectionInfo>, Error> {
        self.get("collections_info();").await
    }

    /// Whether a collection of that name exists (`has_collection(name)`).
    pub async fn has_collection(&self, name: &str) -> Result<bool, Error> {
        self.query("has_collection(name);")
            .var("name", name)
            .decode()
            .await
    }

    /// Sets a collection's time zone, one of
    /// [`time_zones_info`](Self::time_zones_info)
    /// (`set_time_zone(name, zone)`).
    pub async fn set_time_zone(&self, collection: &str, zone: &str) -> Result<(), Error> {
        self.query("set_time_zone(name, zone);")
            .var("name", collection)
            .var("zone", zone)
            .decode()
            .await
    }

    /// Every time zone the node knows (`time_zones_info()`).
    pub async fn time_zones_info(&self) -> Result<Vec<String>, Error> {
        self.get("time_zones_info();").await
    }

    /// Sets the default deep of a collection's results, 0 to 127
    /// (`set_default_deep(name, deep)`).
    pub async fn set_default_deep(&self, collection: &str, deep: u8) -> Result<(), Error> {
        self.query("set_default_deep(name, deep);")
            .var("name", collection)
            .var("deep", &deep)
            .decode()
            .await
    }

    /// Turns commit history on or off for a scope (`@thingsdb` or a
    /// collection scope, such as `//stuff`); turning it off drops the
    /// history kept (`set_history(scope, state)`).
    pub async fn set_history(&self, scope: &str, enabled: bool) -> Result<(), Error> {
        self.query("set_history(scope, state);")
            .var("scope", scope)
            .var("state", &enabled)
            .decode()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_history_is_a_count_or_a_word() {
        let on: CommitHistory = rmp_serde::from_slice(&[0x05]).unwrap();
        assert_eq!(on, CommitHistory::Commits(5));
        let off: CommitHistory = rmp_serde::from_slice(b"\xa8disabled").unwrap();
        assert_eq!(off, CommitHistory::Disabled(()));
    }
}
