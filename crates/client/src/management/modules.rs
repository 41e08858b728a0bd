//! Modules (`@thingsdb` scope): new, deploy, del, rename, info, list,
//! configuration, scope, refresh, has; restart (`@node` scope).

use serde::{Deserialize, Serialize};

use super::{Node, ScopeApi, Thingsdb};
use crate::error::Error;

/// What `module_info()` and `modules_info()` say about a module. Fields a
/// newer node adds are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct ModuleInfo {
    /// The module's name.
    pub name: String,
    /// When it was made, in seconds since the Unix epoch.
    pub created_at: u64,
    /// Its status as the node words it (`running`, `module not
    /// installed`, ...).
    pub status: String,
    /// The only scope it may be used from, or `None` for any.
    #[serde(default)]
    pub scope: Option<String>,
    /// The file the node starts (when known).
    #[serde(default)]
    pub file: Option<String>,
    /// Its configuration (only shown to users with `CHANGE` on
    /// `@thingsdb`).
    #[serde(default)]
    pub conf: Option<rmpv::Value>,
    /// Futures waiting on it.
    #[serde(default)]
    pub tasks: Option<u64>,
    /// How often it was restarted.
    #[serde(default)]
    pub restarts: Option<u64>,
    /// For a module installed from GitHub: the owner.
    #[serde(default)]
    pub github_owner: Option<String>,
    /// For a module installed from GitHub: the repository.
    #[serde(default)]
    pub github_repo: Option<String>,
    /// For a module installed from GitHub: the ref.
    #[serde(default)]
    pub github_ref: Option<String>,
    /// For a module installed from GitHub: whether a token is used.
    #[serde(default)]
    pub github_with_token: Option<bool>,
    /// Its version, from its manifest.
    #[serde(default)]
    pub version: Option<String>,
    /// Its documentation, from its manifest.
    #[serde(default)]
    pub doc: Option<String>,
}

impl ScopeApi<'_, Thingsdb> {
    /// Registers a module: `source` is a file in the node's
    /// `modules_path` or a `github.com/owner/repo` address; `conf` (any
    /// value, or `None`) is sent to the module when it starts
    /// (`new_module(name, source, conf)`).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// let t = client.thingsdb();
    /// t.new_module("requests", "github.com/thingsdb/ThingsDB-Module-Requests", None::<&()>).await?;
    /// println!("{}", t.module_info("requests").await?.status);
    /// # Ok(()) }
    /// ```
    pub async fn new_module<C: Serialize + ?Sized>(
        &self,
        name: &str,
        source: &str,
        conf: Option<&C>,
    ) -> Result<(), Error> {
        let code = match conf {
            Some(_) => "new_module(name, source, conf);",
            None => "new_module(name, source);",
        };
        let q = self.query(code).var("name", name).var("source", source);
        match conf {
            Some(conf) => q.var("conf", conf),
            None => q,
        }
        .decode()
        .await
    }

    /// Replaces a module's code with `data` (the file's bytes; a Python
    /// module may be given as text too) and restarts it; `None` only
    /// restarts it from the file (`deploy_module(name, data)`).
    pub async fn deploy_module(&self, name: &str, data: Option<&[u8]>) -> Result<(), Error> {
        self.query("deploy_module(name, data);")
            .var("name", name)
            .var("data", &data.map(serde_bytes_ref))
            .decode()
            .await
    }

    /// Deletes a module (`del_module(name)`).
    pub async fn del_module(&self, name: &str) -> Result<(), Error> {
        self.query("del_module(name);")
            .var("name", name)
            .decode()
            .await
    }

    /// Renames a module (`rename_module(name, new_name)`).
    pub async fn rename_module(&self, name: &str, new_name: &str) -> Result<(), Error> {
        self.query("rename_module(name, new_name);")
            .var("name", name)
            .var("new_name", new_name)
            .decode()
            .await
    }

    /// One module's info (`module_info(name)`).
    pub async fn module_info(&self, name: &str) -> Result<ModuleInfo, Error> {
        self.query("module_info(name);")
            .var("name", name)
            .decode()
            .await
    }

    /// Every module's info (`modules_info()`).
    pub async fn modules_info(&self) -> Result<Vec<ModuleInfo>, Error> {
        self.get("modules_info();").await
    }

    /// Whether a module of that name exists (`has_module(name)`).
    pub async fn has_module(&self, name: &str) -> Result<bool, Error> {
        self.query("has_module(name);")
            .var("name", name)
            .decode()
            .await
    }

    /// Sets a module's configuration (any value, or `None` to remove it)
    /// and sends it to the module (`set_module_conf(name, conf)`).
    pub async fn set_module_conf<C: Serialize + ?Sized>(
        &self,
        name: &str,
        conf: Option<&C>,
    ) -> Result<(), Error> {
        self.query("set_module_conf(name, conf);")
            .var("name", name)
            .var("conf", &conf)
            .decode()
            .await
    }

    /// Limits a module to one scope (such as `//stuff`), or lifts the
    /// limit with `None` (`set_module_scope(name, scope)`).
    pub async fn set_module_scope(&self, name: &str, scope: Option<&str>) -> Result<(), Error> {
        self.query("set_module_scope(name, scope);")
            .var("name", name)
            .var("scope", &scope)
            .decode()
            .await
    }

    /// Makes the node re-read a module's manifest and restart it
    /// (`refresh_module(name)`).
    pub async fn refresh_module(&self, name: &str) -> Result<(), Error> {
        self.query("refresh_module(name);")
            .var("name", name)
            .decode()
            .await
    }
}

impl ScopeApi<'_, Node> {
    /// Restarts a module on this node (`restart_module(name)`).
    pub async fn restart_module(&self, name: &str) -> Result<(), Error> {
        self.query("restart_module(name);")
            .var("name", name)
            .decode()
            .await
    }
}

/// Bytes that serialize as MessagePack bin (not as an array of ints).
struct BinRef<'b>(&'b [u8]);

impl Serialize for BinRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

fn serde_bytes_ref(b: &[u8]) -> BinRef<'_> {
    BinRef(b)
}
