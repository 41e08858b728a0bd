//! What the examples share: where to connect.
#![allow(dead_code)]

use thingsdb_client::Auth;
use thingsdb_testkit::TestNode;

/// A node to talk to: the one named by `THINGSDB_URI`, or an in-process
/// testkit node (kept alive as long as this value).
pub struct Node {
    /// The target string to connect to.
    pub uri: String,
    /// Credentials: for a real node from `THINGSDB_TOKEN`, or
    /// `THINGSDB_USER` (default `admin`) and `THINGSDB_PASSWORD` (required:
    /// no password is guessed); for the testkit node its `admin`/`pass`.
    pub auth: Auth,
    /// The testkit node, when no real node was named.
    pub testkit: Option<TestNode>,
}

impl Node {
    /// True when talking to the in-process testkit node.
    pub fn is_testkit(&self) -> bool {
        self.testkit.is_some()
    }
}

/// Credentials for a real node: `THINGSDB_TOKEN`, or `THINGSDB_USER`
/// (default `admin`) with `THINGSDB_PASSWORD`; an error naming what to set
/// when there is neither a token nor a password.
pub fn env_auth() -> Result<Auth, String> {
    if let Ok(token) = std::env::var("THINGSDB_TOKEN") {
        return Ok(Auth::token(token));
    }
    let user = std::env::var("THINGSDB_USER").unwrap_or_else(|_| "admin".into());
    match std::env::var("THINGSDB_PASSWORD") {
        Ok(password) => Ok(Auth::password(user, password)),
        Err(_) => Err(format!(
            "set THINGSDB_PASSWORD (the password of {user}) or THINGSDB_TOKEN for the real node"
        )),
    }
}

/// The node named by `THINGSDB_URI`, or a fresh testkit node; says which.
pub async fn node() -> Result<Node, Box<dyn std::error::Error>> {
    match std::env::var("THINGSDB_URI") {
        Ok(uri) if !uri.is_empty() => {
            println!("using the ThingsDB node at {uri} (THINGSDB_URI)");
            Ok(Node {
                uri,
                auth: env_auth()?,
                testkit: None,
            })
        }
        _ => {
            let node = TestNode::start().await?;
            let uri = node.tcp_target();
            println!(
                "THINGSDB_URI is not set: using an in-process testkit node at {uri} \
                 (set THINGSDB_URI=thingsdb://host:9200 to use a real node)"
            );
            Ok(Node {
                uri,
                auth: Auth::password("admin", "pass"),
                testkit: Some(node),
            })
        }
    }
}
