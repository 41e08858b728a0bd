//! What the examples share: where to connect.
#![allow(dead_code)]

use thingsdb_client::Auth;
use thingsdb_testkit::TestNode;

/// A node to talk to: the one named by `THINGSDB_URI`, or an in-process
/// testkit node (kept alive as long as this value).
pub struct Node {
    /// The target string to connect to.
    pub uri: String,
    /// Credentials from `THINGSDB_TOKEN`, or `THINGSDB_USER` and
    /// `THINGSDB_PASSWORD` (default admin/pass, a fresh node's).
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

fn env_auth() -> Auth {
    if let Ok(token) = std::env::var("THINGSDB_TOKEN") {
        return Auth::token(token);
    }
    let user = std::env::var("THINGSDB_USER").unwrap_or_else(|_| "admin".into());
    let password = std::env::var("THINGSDB_PASSWORD").unwrap_or_else(|_| "pass".into());
    Auth::password(user, password)
}

/// The node named by `THINGSDB_URI`, or a fresh testkit node; says which.
pub async fn node() -> Result<Node, Box<dyn std::error::Error>> {
    match std::env::var("THINGSDB_URI") {
        Ok(uri) if !uri.is_empty() => {
            println!("using the ThingsDB node at {uri} (THINGSDB_URI)");
            Ok(Node {
                uri,
                auth: env_auth(),
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
