//! Typed wrappers for ThingsDB's management functions.
//!
//! The functions live on three scope handles, one per kind of scope, so a
//! call reads like the ThingsDB code it sends and cannot go to a scope
//! that does not have the function:
//!
//! | handle | scope | functions |
//! |---|---|---|
//! | [`Client::thingsdb`] | `@thingsdb` | collections, users, tokens, access, modules, nodes of the cluster, time zones, commit history, and `@thingsdb` procedures and tasks |
//! | [`Client::node`], [`Client::node_by_id`] | `@node`, `@node:ID` | node and cluster info, counters, log level, shutdown, backups, module restarts |
//! | [`Client::collection`] | `@collection:NAME` | procedures and tasks; types and enums, migrations from Rust types ([`Plan`]), typed reads and writes; a distributed lock ([`LockGuard`]) |
//!
//! Every wrapper sends its arguments as query variables, never pasted into
//! the code, and decodes the result into a serde struct that ignores
//! fields it does not know (a newer node may add some), or into `()`.
//!
//! The examples on these pages need a real node, so they are compiled but
//! not run: `thingsdb-testkit` runs none of the management functions (its
//! README says how to answer the code a wrapper sends).
//! `tests/real_management.rs` runs every wrapper against ThingsDB.
//!
//! ```no_run
//! # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
//! use thingsdb_client::management::Access;
//! let t = client.thingsdb();
//! t.new_collection("shop").await?;
//! t.new_user("iris").await?;
//! t.grant("//shop", "iris", Access::QUERY | Access::RUN).await?;
//! let token = t.new_token("iris", None, Some("shop front")).await?;
//! for c in t.collections_info().await? {
//!     println!("{} holds {} things", c.name, c.things);
//! }
//! let node = client.node().node_info().await?;
//! println!("node {} runs ThingsDB {}", node.node_id, node.version);
//! client.collection("shop")?.new_procedure("add_one", "|x| x + 1").await?;
//! # let _ = token; Ok(()) }
//! ```

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::client::Client;
use crate::error::Error;
use crate::request::Query;
use crate::scope::Scope;

mod access;
mod backups;
mod collections;
mod history;
mod lock;
mod migrate;
mod modules;
mod nodes;
mod procedures;
mod tasks;
mod tokens;
mod types;
mod users;

pub use access::Access;
pub use backups::BackupInfo;
pub use collections::{CollectionInfo, CommitHistory};
pub use history::{Commit, HistoryFilter};
pub use lock::LockGuard;
pub use migrate::{Plan, Step};
pub use modules::ModuleInfo;
pub use nodes::{ClusterNodeInfo, Counters, LogLevel, NodeInfo};
pub use procedures::ProcedureInfo;
pub use tasks::TaskInfo;
pub use tokens::TokenInfo;
pub use types::{EnumInfo, TypeInfo};
pub use users::{UserAccess, UserInfo};

/// Marks a handle of the `@thingsdb` scope.
#[derive(Debug, Clone, Copy)]
pub enum Thingsdb {}

/// Marks a handle of a node scope (`@node` or `@node:ID`).
#[derive(Debug, Clone, Copy)]
pub enum Node {}

/// Marks a handle of a collection scope.
#[derive(Debug, Clone, Copy)]
pub enum Collection {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Thingsdb {}
    impl Sealed for super::Node {}
    impl Sealed for super::Collection {}
}

/// The kinds of scope a [`ScopeApi`] handle can be for.
pub trait ScopeKind: sealed::Sealed {}
impl ScopeKind for Thingsdb {}
impl ScopeKind for Node {}
impl ScopeKind for Collection {}

/// The scopes that hold procedures and tasks: `@thingsdb` and collections.
pub trait CodeScope: ScopeKind {}
impl CodeScope for Thingsdb {}
impl CodeScope for Collection {}

/// A handle on one scope, with the management functions that scope has as
/// methods. Cheap: it borrows the [`Client`] and holds the scope.
///
/// Get one with [`Client::thingsdb`], [`Client::node`],
/// [`Client::node_by_id`] or [`Client::collection`].
#[derive(Debug, Clone)]
pub struct ScopeApi<'a, K: ScopeKind> {
    client: &'a Client,
    scope: Scope,
    kind: PhantomData<K>,
}

impl<'a, K: ScopeKind> ScopeApi<'a, K> {
    fn new(client: &'a Client, scope: Scope) -> Self {
        ScopeApi {
            client,
            scope,
            kind: PhantomData,
        }
    }

    /// The scope this handle sends its queries to.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// A query in this handle's scope.
    fn query(&self, code: &'a str) -> Query<'a> {
        self.client.query(code).scope(self.scope.as_str())
    }

    /// Runs `code` with no variables and decodes its result.
    async fn get<T: DeserializeOwned + 'a>(&self, code: &'a str) -> Result<T, Error> {
        self.query(code).decode().await
    }
}

impl Client {
    /// The `@thingsdb` scope's management functions: collections, users,
    /// tokens, access, modules and the nodes of the cluster.
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// if !client.thingsdb().has_collection("shop").await? {
    ///     client.thingsdb().new_collection("shop").await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn thingsdb(&self) -> ScopeApi<'_, Thingsdb> {
        ScopeApi::new(self, Scope::thingsdb())
    }

    /// The connected node's management functions (`@node`).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// let counters = client.node().counters().await?;
    /// println!("{} queries ran", counters.queries_success);
    /// # Ok(()) }
    /// ```
    pub fn node(&self) -> ScopeApi<'_, Node> {
        ScopeApi::new(self, Scope::node())
    }

    /// Another node's management functions (`@node:ID`), asked through the
    /// connected node.
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// let info = client.node_by_id(1)?.node_info().await?;
    /// assert_eq!(info.node_id, 1);
    /// # Ok(()) }
    /// ```
    pub fn node_by_id(&self, id: u32) -> Result<ScopeApi<'_, Node>, Error> {
        Ok(ScopeApi::new(self, Scope::parse(&format!("@node:{id}"))?))
    }

    /// A collection's procedure and task functions (`@collection:NAME`).
    /// Fails when `name` is not a valid collection name.
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// for p in client.collection("stuff")?.procedures_info().await? {
    ///     println!("{}({})", p.name, p.arguments.join(", "));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn collection(&self, name: &str) -> Result<ScopeApi<'_, Collection>, Error> {
        Ok(ScopeApi::new(self, Scope::collection(name)?))
    }
}
