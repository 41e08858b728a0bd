//! What handlers see ([`Query`], [`Args`]) and what they answer ([`Reply`]).

use bytes::{Bytes, BytesMut};
use rmpv::Value;
use thingsdb_protocol::{encode_value, ErrorCode};

use thingsdb_protocol::scope::{ParsedScope, ScopeError};

/// A parsed scope, as handlers see it: the protocol crate's parser (the
/// node's grammar), owning its collection name.
///
/// ```
/// use thingsdb_testkit::Scope;
/// let s: Scope = Scope::Collection("stuff".into());
/// assert_eq!(s.to_string(), "@collection:stuff");
/// ```
pub type Scope = ParsedScope<String>;

/// The documentation suffix a node appends to scope errors.
const DOC_SCOPES: &str = "; see https://docs.thingsdb.io/v1/overview/scopes";

/// Parses a scope as a node does; a refusal is the node's error: -60
/// (value error) and its message, word for word.
///
/// ```
/// use thingsdb_protocol::ErrorCode;
/// use thingsdb_testkit::{parse_scope, Scope};
/// assert_eq!(parse_scope("@:stuff"), Ok(Scope::Collection("stuff".into())));
/// let e = parse_scope("@node:64").unwrap_err();
/// assert_eq!(e.error_code(), Some(ErrorCode::Value));
/// ```
pub fn parse_scope(s: &str) -> Result<Scope, Reply> {
    ParsedScope::parse(s)
        .map(ParsedScope::into_owned)
        .map_err(|e| Reply::error(ErrorCode::Value, node_scope_message(s, e)))
}

/// The message a node gives for scope `s` refused for `e`.
fn node_scope_message(s: &str, e: ScopeError) -> String {
    let (c, sep) = match s.as_bytes().first() {
        Some(b'/') => ('/', '/'),
        _ => ('@', ':'),
    };
    let what = match e {
        ScopeError::Empty => "scopes must not be empty".to_string(),
        ScopeError::NotAscii => "scopes must only contain valid ASCII characters".to_string(),
        ScopeError::BadStart => format!("scopes must start with a `@` or `/` but got `{s}` instead"),
        ScopeError::BadNodeId => {
            "a node id must be an integer value between 0 and 64".to_string()
        }
        ScopeError::MissingCollection => {
            "the collection scope requires to specify a collection".to_string()
        }
        ScopeError::BadCollectionName => "the specified collection name is invalid".to_string(),
        // `UnknownName`, and any refusal added later.
        _ if s.len() == 1 => format!(
            "expecting a scope name like `{c}thingsdb`, `{c}node{sep}...` or `{c}collection{sep}...`"
        ),
        _ => format!(
            "expecting a scope name like `{c}thingsdb`, `{c}node{sep}...` or `{c}collection{sep}...` but got `{s}` instead"
        ),
    };
    format!("invalid scope; {what}{DOC_SCOPES}")
}

/// The answer to a QUERY or RUN request.
///
/// ```
/// use thingsdb_protocol::ErrorCode;
/// use thingsdb_testkit::Reply;
/// let ok = Reply::value(42);
/// let err = Reply::error(ErrorCode::Lookup, "not here");
/// assert_eq!(err.error_code(), Some(ErrorCode::Lookup));
/// assert_eq!(ok.error_code(), None);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// DATA with this value.
    Data(Value),
    /// DATA with this already-encoded MessagePack, sent as is (it may be
    /// anything, even invalid MessagePack, which makes it a fault too).
    Raw(Bytes),
    /// ERROR with this code and message.
    Error {
        /// The error code.
        code: ErrorCode,
        /// The message.
        message: String,
    },
}

impl Reply {
    /// DATA with a value.
    pub fn value(v: impl Into<Value>) -> Reply {
        Reply::Data(v.into())
    }

    /// DATA with any serde value, laid out as a node sends it: structs as
    /// maps of their field names, sequences and tuples as arrays, `None`
    /// and `()` as `nil`. What a client decodes the reply into with
    /// `.decode::<T>()` is what was given here.
    ///
    /// A value serde cannot encode (a map with keys that are not strings
    /// or numbers is fine; a failing `Serialize` impl is not) gets an
    /// ERROR reply, -1 (`Internal`), whose message says why, so the test
    /// sees it on the client's side.
    ///
    /// ```
    /// use rmpv::Value;
    /// use thingsdb_testkit::Reply;
    ///
    /// #[derive(serde::Serialize)]
    /// struct Person { name: String, age: u8 }
    ///
    /// let r = Reply::serialize(&Person { name: "Iris".into(), age: 7 });
    /// assert_eq!(r, Reply::value(Value::Map(vec![
    ///     (Value::from("name"), Value::from("Iris")),
    ///     (Value::from("age"), Value::from(7)),
    /// ])));
    /// assert_eq!(Reply::serialize(&(1, "two")), Reply::value(vec![Value::from(1), Value::from("two")]));
    /// assert_eq!(Reply::serialize(&None::<i64>), Reply::nil());
    /// ```
    pub fn serialize<T: serde::Serialize + ?Sized>(value: &T) -> Reply {
        let mut buf = Vec::new();
        let mut ser = rmp_serde::Serializer::new(&mut buf).with_struct_map();
        if let Err(e) = value.serialize(&mut ser) {
            return Reply::error(
                ErrorCode::Internal,
                format!("testkit: the reply cannot be serialized: {e}"),
            );
        }
        match rmpv::decode::read_value(&mut buf.as_slice()) {
            Ok(v) => Reply::Data(v),
            Err(e) => Reply::error(
                ErrorCode::Internal,
                format!("testkit: the serialized reply does not decode: {e}"),
            ),
        }
    }

    /// DATA `nil`.
    pub fn nil() -> Reply {
        Reply::Data(Value::Nil)
    }

    /// DATA with already-encoded MessagePack bytes.
    pub fn raw(b: impl Into<Bytes>) -> Reply {
        Reply::Raw(b.into())
    }

    /// ERROR with a code and a message.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply::Error {
            code,
            message: message.into(),
        }
    }

    /// The error code when this is an error.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            Reply::Error { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The DATA payload bytes (encoded MessagePack), for DATA replies.
    pub(crate) fn data_bytes(&self) -> Option<Bytes> {
        match self {
            Reply::Data(v) => {
                let mut b = BytesMut::new();
                encode_value(&mut b, v);
                Some(b.freeze())
            }
            Reply::Raw(b) => Some(b.clone()),
            Reply::Error { .. } => None,
        }
    }
}

impl From<Value> for Reply {
    fn from(v: Value) -> Self {
        Reply::Data(v)
    }
}

/// A QUERY request, as a query handler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The scope string exactly as the client sent it.
    pub scope_str: String,
    /// The parsed scope.
    pub scope: Scope,
    /// The code.
    pub code: String,
    /// The variables, by name, in the order they were sent (empty when the
    /// request had none).
    pub vars: Vec<(String, Value)>,
    /// The connection the request came on.
    pub connection: u64,
    /// The id of the node it came to (see [`crate::TestNodeBuilder::node_id`]).
    pub node: u8,
}

impl Query {
    /// The variable `name`, if the request has it.
    pub fn var(&self, name: &str) -> Option<&Value> {
        self.vars.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The code evaluated as simple arithmetic (literals, vars,
    /// `+ - * / %`, parentheses; `;`-separated statements), with a node's
    /// errors for overflow, division by zero, unknown variables and syntax;
    /// what a node without a handler answers when the `eval` feature is on.
    /// Besides, in a node scope, `node_info().load().node_id;` is the
    /// node's id, as a real node answers it, and
    /// `n = node_info().load(); [n.node_id, n.status];` its id and
    /// `READY` (clients ask it to learn which node they reached).
    ///
    /// A handler can fall back to it for code it does not recognise:
    ///
    /// ```
    /// use thingsdb_testkit::{Query, Reply, Scope};
    /// let q = Query { scope_str: "@t".into(), scope: Scope::Thingsdb, code: "6 * 7;".into(), vars: vec![], connection: 1, node: 0 };
    /// assert_eq!(q.evaluate(), Reply::value(42));
    /// let q = Query { scope_str: "@n".into(), scope: Scope::Node(None), code: "node_info().load().node_id;".into(), vars: vec![], connection: 1, node: 2 };
    /// assert_eq!(q.evaluate(), Reply::value(2));
    /// ```
    #[cfg(feature = "eval")]
    #[cfg_attr(docsrs, doc(cfg(feature = "eval")))]
    pub fn evaluate(&self) -> Reply {
        if matches!(self.scope, Scope::Node(_)) {
            match self.code.trim() {
                "node_info().load().node_id;" => return Reply::value(self.node),
                // What a client asks after AUTH to learn which node it
                // reached (a testkit node is always READY).
                "n = node_info().load(); [n.node_id, n.status];" => {
                    return Reply::value(vec![Value::from(self.node), Value::from("READY")])
                }
                _ => {}
            }
        }
        crate::eval::evaluate(&self.code, &self.vars)
    }
}

/// The arguments of a RUN request, as a procedure sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// The scope string exactly as the client sent it.
    pub scope_str: String,
    /// The parsed scope.
    pub scope: Scope,
    /// The procedure's name.
    pub procedure: String,
    /// The arguments.
    pub values: ArgValues,
    /// The connection the request came on.
    pub connection: u64,
}

/// How a RUN request passed its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgValues {
    /// No arguments (or `nil`).
    None,
    /// One array: positional arguments.
    Positional(Vec<Value>),
    /// One map: arguments by name, in the order they were sent.
    Named(Vec<(String, Value)>),
}

impl Args {
    /// The positional argument at `idx` (`None` for named arguments).
    pub fn get(&self, idx: usize) -> Option<&Value> {
        match &self.values {
            ArgValues::Positional(v) => v.get(idx),
            _ => None,
        }
    }

    /// The named argument `name` (`None` for positional arguments).
    pub fn named(&self, name: &str) -> Option<&Value> {
        match &self.values {
            ArgValues::Named(v) => v.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A procedure parameter, whichever way it was passed: the positional
    /// argument `idx`, or the named argument `name`.
    ///
    /// ```
    /// use rmpv::Value;
    /// use thingsdb_testkit::{ArgValues, Args, Scope};
    /// let a = Args { scope_str: "@t".into(), scope: Scope::Thingsdb, procedure: "add_one".into(),
    ///     values: ArgValues::Named(vec![("x".into(), Value::from(41))]), connection: 1 };
    /// assert_eq!(a.param(0, "x"), Some(&Value::from(41)));
    /// ```
    pub fn param(&self, idx: usize, name: &str) -> Option<&Value> {
        self.get(idx).or_else(|| self.named(name))
    }

    /// How many arguments were passed.
    pub fn len(&self) -> usize {
        match &self.values {
            ArgValues::None => 0,
            ArgValues::Positional(v) => v.len(),
            ArgValues::Named(v) => v.len(),
        }
    }

    /// Whether no arguments were passed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value whose `Serialize` fails half-way.
    struct Broken;

    impl serde::Serialize for Broken {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::{Error, SerializeSeq};
            let mut seq = s.serialize_seq(Some(2))?;
            seq.serialize_element(&1)?;
            Err(S::Error::custom("no second element"))
        }
    }

    /// Bytes that serialize as MessagePack bin.
    struct Bin(&'static [u8]);

    impl serde::Serialize for Bin {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    #[test]
    fn serialize_lays_out_values_as_a_node_sends_them() {
        #[derive(serde::Serialize)]
        struct Inner {
            n: Option<u8>,
        }
        #[derive(serde::Serialize)]
        struct Outer {
            name: &'static str,
            inner: Inner,
            list: Vec<i64>,
            raw: Bin,
        }
        let r = Reply::serialize(&Outer {
            name: "x",
            inner: Inner { n: None },
            list: vec![1, -2],
            raw: Bin(b"\x00\x01"),
        });
        let map = |kv: Vec<(&str, Value)>| {
            Value::Map(kv.into_iter().map(|(k, v)| (Value::from(k), v)).collect())
        };
        assert_eq!(
            r,
            Reply::Data(map(vec![
                ("name", Value::from("x")),
                ("inner", map(vec![("n", Value::Nil)])),
                ("list", Value::Array(vec![Value::from(1), Value::from(-2)])),
                ("raw", Value::Binary(vec![0, 1])),
            ]))
        );
    }

    #[test]
    fn a_value_serde_cannot_encode_is_an_internal_error_that_says_why() {
        let r = Reply::serialize(&Broken);
        assert_eq!(r.error_code(), Some(ErrorCode::Internal));
        let Reply::Error { message, .. } = r else {
            unreachable!()
        };
        assert!(message.contains("no second element"), "{message}");
    }
}
