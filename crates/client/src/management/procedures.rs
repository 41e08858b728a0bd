//! Procedures (`@thingsdb` and collection scopes): new, mod, del, rename,
//! info, list, has, doc.

use serde::Deserialize;

use super::{CodeScope, ScopeApi};
use crate::error::Error;

/// What `procedure_info()` and `procedures_info()` say about a procedure.
/// Fields a newer node adds are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ProcedureInfo {
    /// The procedure's name.
    pub name: String,
    /// When it was made, in seconds since the Unix epoch.
    pub created_at: u64,
    /// Its closure, as code (`|x| x + 1`).
    pub definition: String,
    /// Whether it can make changes.
    #[serde(default)]
    pub with_side_effects: bool,
    /// Its argument names.
    #[serde(default)]
    pub arguments: Vec<String>,
    /// Its documentation: the comment at the start of its closure.
    #[serde(default)]
    pub doc: String,
}

impl<K: CodeScope> ScopeApi<'_, K> {
    /// Makes a procedure from a closure's code, such as `"|x| x + 1"`. The
    /// code travels as a variable and the node compiles it with
    /// `closure()`, so nothing is pasted into the query
    /// (`new_procedure(name, closure(code))`).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// let stuff = client.collection("stuff")?;
    /// stuff.new_procedure("add_one", "|x| x + 1").await?;
    /// let two: i64 = client.run("add_one").scope("//stuff").arg(&1).decode().await?;
    /// assert_eq!(stuff.procedure_info("add_one").await?.arguments, ["x"]);
    /// # Ok(()) }
    /// ```
    pub async fn new_procedure(&self, name: &str, closure: &str) -> Result<(), Error> {
        self.query("new_procedure(name, closure(code)); nil;")
            .var("name", name)
            .var("code", closure)
            .decode()
            .await
    }

    /// Replaces a procedure's closure (`mod_procedure(name,
    /// closure(code))`).
    pub async fn mod_procedure(&self, name: &str, closure: &str) -> Result<(), Error> {
        self.query("mod_procedure(name, closure(code));")
            .var("name", name)
            .var("code", closure)
            .decode()
            .await
    }

    /// Deletes a procedure (`del_procedure(name)`).
    pub async fn del_procedure(&self, name: &str) -> Result<(), Error> {
        self.query("del_procedure(name);")
            .var("name", name)
            .decode()
            .await
    }

    /// Renames a procedure (`rename_procedure(name, new_name)`).
    pub async fn rename_procedure(&self, name: &str, new_name: &str) -> Result<(), Error> {
        self.query("rename_procedure(name, new_name);")
            .var("name", name)
            .var("new_name", new_name)
            .decode()
            .await
    }

    /// One procedure's info (`procedure_info(name)`).
    pub async fn procedure_info(&self, name: &str) -> Result<ProcedureInfo, Error> {
        self.query("procedure_info(name);")
            .var("name", name)
            .decode()
            .await
    }

    /// Every procedure's info (`procedures_info()`).
    pub async fn procedures_info(&self) -> Result<Vec<ProcedureInfo>, Error> {
        self.get("procedures_info();").await
    }

    /// Whether a procedure of that name exists (`has_procedure(name)`).
    pub async fn has_procedure(&self, name: &str) -> Result<bool, Error> {
        self.query("has_procedure(name);")
            .var("name", name)
            .decode()
            .await
    }

    /// A procedure's documentation (`procedure_doc(name)`).
    pub async fn procedure_doc(&self, name: &str) -> Result<String, Error> {
        self.query("procedure_doc(name);")
            .var("name", name)
            .decode()
            .await
    }
}
