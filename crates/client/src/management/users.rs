//! Users (`@thingsdb` scope): new, del, rename, password, info, list, has,
//! whitelists.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ScopeApi, Thingsdb, TokenInfo};
use crate::error::Error;

/// What `user_info()` and `users_info()` say about a user. Fields a newer
/// node adds are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct UserInfo {
    /// The user's id.
    pub user_id: u64,
    /// The user's name.
    pub name: String,
    /// When the user was made, in seconds since the Unix epoch.
    pub created_at: u64,
    /// Whether the user has a password (a user without one can only use
    /// tokens).
    pub has_password: bool,
    /// The user's privileges, per scope.
    #[serde(default)]
    pub access: Vec<UserAccess>,
    /// The user's tokens.
    #[serde(default)]
    pub tokens: Vec<TokenInfo>,
    /// Whitelists (`rooms`, `procedures`) and their entries: names, or
    /// regular expressions in their `/pattern/flags` form. An empty list
    /// allows nothing; a missing key allows everything.
    #[serde(default)]
    pub whitelists: BTreeMap<String, Vec<String>>,
}

/// A user's privileges in one scope, as `user_info()` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct UserAccess {
    /// The scope, as the node names it (`@thingsdb`, `@node`,
    /// `@collection:stuff`).
    pub scope: String,
    /// The privileges as the node spells them (`FULL`, `QUERY|CHANGE`);
    /// [`Access::from_names`](super::Access::from_names) turns them into
    /// flags.
    pub privileges: String,
}

impl UserAccess {
    /// The privileges as typed flags; names this crate does not know are
    /// left out.
    pub fn flags(&self) -> super::Access {
        super::Access::from_names(&self.privileges)
    }
}

impl ScopeApi<'_, Thingsdb> {
    /// Makes a new user, without a password and without privileges
    /// (`new_user(name)`).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// use thingsdb_client::management::Access;
    /// let t = client.thingsdb();
    /// t.new_user("iris").await?;
    /// t.set_password("iris", Some("s3cret")).await?;
    /// t.grant("//stuff", "iris", Access::QUERY | Access::JOIN).await?;
    /// # Ok(()) }
    /// ```
    pub async fn new_user(&self, name: &str) -> Result<(), Error> {
        self.query("new_user(name); nil;")
            .var("name", name)
            .decode()
            .await
    }

    /// Deletes a user, its tokens and its privileges (`del_user(name)`).
    pub async fn del_user(&self, name: &str) -> Result<(), Error> {
        self.query("del_user(name);")
            .var("name", name)
            .decode()
            .await
    }

    /// Renames a user (`rename_user(name, new_name)`).
    pub async fn rename_user(&self, name: &str, new_name: &str) -> Result<(), Error> {
        self.query("rename_user(name, new_name);")
            .var("name", name)
            .var("new_name", new_name)
            .decode()
            .await
    }

    /// Sets a user's password, or removes it with `None`
    /// (`set_password(name, password)`).
    pub async fn set_password(&self, name: &str, password: Option<&str>) -> Result<(), Error> {
        self.query("set_password(name, password);")
            .var("name", name)
            .var("password", &password)
            .decode()
            .await
    }

    /// One user's info; `None` for the user this client is authenticated as
    /// (`user_info(name)`, `user_info()`).
    pub async fn user_info(&self, name: Option<&str>) -> Result<UserInfo, Error> {
        match name {
            Some(name) => {
                self.query("user_info(name);")
                    .var("name", name)
                    .decode()
                    .await
            }
            None => self.get("user_info();").await,
        }
    }

    /// Every user's info (`users_info()`).
    pub async fn users_info(&self) -> Result<Vec<UserInfo>, Error> {
        self.get("users_info();").await
    }

    /// Whether a user of that name exists (`has_user(name)`).
    pub async fn has_user(&self, name: &str) -> Result<bool, Error> {
        self.query("has_user(name);")
            .var("name", name)
            .decode()
            .await
    }

    /// Adds a room or procedure name to a user's whitelist (`list` is
    /// `"rooms"` or `"procedures"`); `None` makes the whitelist exist
    /// without adding a name, which allows nothing yet
    /// (`whitelist_add(name, list, value)`). A regular expression cannot
    /// be sent as a variable; use a query with a regex literal for those.
    pub async fn whitelist_add(
        &self,
        user: &str,
        list: &str,
        value: Option<&str>,
    ) -> Result<(), Error> {
        self.whitelist(Whitelist::Add, user, list, value).await
    }

    /// Removes a name from a user's whitelist; `None` removes the whole
    /// whitelist, which allows everything again
    /// (`whitelist_del(name, list, value)`).
    pub async fn whitelist_del(
        &self,
        user: &str,
        list: &str,
        value: Option<&str>,
    ) -> Result<(), Error> {
        self.whitelist(Whitelist::Del, user, list, value).await
    }

    /// `whitelist_add` or `whitelist_del`, with or without a value.
    async fn whitelist(
        &self,
        op: Whitelist,
        user: &str,
        list: &str,
        value: Option<&str>,
    ) -> Result<(), Error> {
        let code = match (op, value.is_some()) {
            (Whitelist::Add, true) => "whitelist_add(user, list, value);",
            (Whitelist::Add, false) => "whitelist_add(user, list);",
            (Whitelist::Del, true) => "whitelist_del(user, list, value);",
            (Whitelist::Del, false) => "whitelist_del(user, list);",
        };
        let q = self.query(code).var("user", user).var("list", list);
        match value {
            Some(value) => q.var("value", value),
            None => q,
        }
        .decode()
        .await
    }
}

/// Which whitelist function the private `whitelist` helper calls.
#[derive(Clone, Copy)]
enum Whitelist {
    Add,
    Del,
}
