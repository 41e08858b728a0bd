//! Access (`@thingsdb` scope): grant and revoke privileges with typed
//! flags.

use super::{ScopeApi, Thingsdb};
use crate::error::Error;

bitflags::bitflags! {
    /// Privileges in a scope, as `grant()` and `revoke()` take them (the
    /// node's `QUERY`, `CHANGE`, `GRANT`, `JOIN` and `RUN` bits).
    ///
    /// ```
    /// use thingsdb_client::management::Access;
    /// let a = Access::QUERY | Access::RUN;
    /// assert_eq!(a.bits(), 0x11);
    /// assert_eq!(Access::FULL.bits(), 0x1f);
    /// assert_eq!(Access::from_names("QUERY|CHANGE"), Access::QUERY | Access::CHANGE);
    /// assert_eq!(Access::from_names("FULL"), Access::FULL);
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct Access: u8 {
        /// Run queries that change nothing.
        const QUERY = 0x01;
        /// Run queries that make changes.
        const CHANGE = 0x02;
        /// Grant and revoke privileges.
        const GRANT = 0x04;
        /// Join rooms.
        const JOIN = 0x08;
        /// Run procedures.
        const RUN = 0x10;
        /// Every privilege.
        const FULL = 0x1f;
    }
}

impl Access {
    /// Parses privileges as `user_info()` spells them: names joined by
    /// `|`, such as `QUERY|CHANGE` or `FULL`. Unknown names are left out.
    pub fn from_names(names: &str) -> Access {
        names
            .split('|')
            .filter_map(|n| Access::from_name(n.trim()))
            .fold(Access::empty(), |a, b| a | b)
    }
}

impl ScopeApi<'_, Thingsdb> {
    /// Grants a user privileges in a scope (`@thingsdb`, `@node` or a
    /// collection scope such as `//stuff`) (`grant(scope, user, mask)`).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// use thingsdb_client::management::Access;
    /// client.thingsdb().grant("//stuff", "iris", Access::QUERY | Access::JOIN).await?;
    /// client.thingsdb().revoke("//stuff", "iris", Access::JOIN).await?;
    /// # Ok(()) }
    /// ```
    pub async fn grant(&self, scope: &str, user: &str, access: Access) -> Result<(), Error> {
        self.query("grant(scope, user, mask);")
            .var("scope", scope)
            .var("user", user)
            .var("mask", &access.bits())
            .decode()
            .await
    }

    /// Takes privileges in a scope from a user (`revoke(scope, user,
    /// mask)`).
    pub async fn revoke(&self, scope: &str, user: &str, access: Access) -> Result<(), Error> {
        self.query("revoke(scope, user, mask);")
            .var("scope", scope)
            .var("user", user)
            .var("mask", &access.bits())
            .decode()
            .await
    }
}
