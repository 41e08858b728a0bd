//! The query and procedure-call builders, and the request body a node
//! reads: a map `{"type": "query", "code": .., "vars"?: {..}}` or
//! `{"type": "run", "name": .., "args"?: [..] | {..}}`.

use std::future::IntoFuture;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thingsdb_client::{serialize_into, BoxFuture, Error, Scope};
use thingsdb_protocol::msgpack::{self, Kind};

use crate::client::HttpClient;
use crate::reply::{Body, Format};

/// The `vars` of a query or the `args` of a run, as MessagePack.
#[derive(Default)]
enum Third {
    #[default]
    None,
    /// One value given whole (`vars(&map)`, `args(&array)`).
    Whole(Bytes),
    /// Items added by name, and how many.
    Named(BytesMut, u32),
    /// Items added by position, and how many.
    Positional(BytesMut, u32),
}

impl Third {
    fn write(&self, buf: &mut BytesMut) {
        match self {
            Third::None => {}
            Third::Whole(b) => buf.put_slice(b),
            Third::Named(items, n) => {
                msgpack::write_map_len(buf, *n);
                buf.put_slice(items);
            }
            Third::Positional(items, n) => {
                msgpack::write_array_len(buf, *n);
                buf.put_slice(items);
            }
        }
    }
}

/// Which of the HTTP API's two calls a request is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Query,
    Run,
}

/// What [`Query`] and [`Run`] share.
struct Core<'a> {
    client: &'a HttpClient,
    kind: Call,
    text: &'a str,
    scope: Option<Scope>,
    third: Third,
    timeout: Option<Duration>,
    format: Option<Format>,
    error: Option<Error>,
}

impl<'a> Core<'a> {
    fn new(client: &'a HttpClient, kind: Call, text: &'a str) -> Self {
        Core {
            client,
            kind,
            text,
            scope: None,
            third: Third::None,
            timeout: None,
            format: None,
            error: None,
        }
    }

    fn fail(&mut self, e: Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    fn mixed(&self) -> Error {
        Error::BadArgument(
            match self.kind {
                Call::Query => "use either vars() or var(), not both",
                Call::Run => "use one of args(), arg() or named() for a procedure call",
            }
            .into(),
        )
    }

    fn set_scope(&mut self, scope: &str) {
        match Scope::parse(scope) {
            Ok(s) => self.scope = Some(s),
            Err(e) => self.fail(e),
        }
    }

    fn whole<T: Serialize + ?Sized>(&mut self, value: &T) {
        if !matches!(self.third, Third::None | Third::Whole(_)) {
            let e = self.mixed();
            return self.fail(e);
        }
        let mut buf = BytesMut::new();
        match serialize_into(&mut buf, value) {
            Ok(Kind::Map) => self.third = Third::Whole(buf.freeze()),
            Ok(Kind::Array) if self.kind == Call::Run => self.third = Third::Whole(buf.freeze()),
            Ok(_) => self.fail(Error::BadArgument(match self.kind {
                Call::Query => "query vars must serialize to a map (a struct or a map)".into(),
                Call::Run => {
                    "procedure args must serialize to an array (positional) or a map (named)".into()
                }
            })),
            Err(e) => self.fail(e),
        }
    }

    fn push<T: Serialize + ?Sized>(&mut self, name: Option<&str>, value: &T) {
        if matches!(self.third, Third::None) {
            self.third = match name {
                Some(_) => Third::Named(BytesMut::new(), 0),
                None => Third::Positional(BytesMut::new(), 0),
            };
        }
        let r = match (&mut self.third, name) {
            (Third::Named(buf, n), Some(name)) => {
                let at = buf.len();
                msgpack::write_str(buf, name);
                match serialize_into(buf, value) {
                    Ok(_) => {
                        *n += 1;
                        Ok(())
                    }
                    Err(e) => {
                        buf.truncate(at);
                        Err(e)
                    }
                }
            }
            (Third::Positional(buf, n), None) => serialize_into(buf, value).map(|_| *n += 1),
            _ => Err(self.mixed()),
        };
        if let Err(e) = r {
            self.fail(e);
        }
    }

    /// The request body in `format`.
    fn body(&self, format: Format) -> Result<Bytes, Error> {
        let (kind, key, third_key) = match self.kind {
            Call::Query => ("query", "code", "vars"),
            Call::Run => ("run", "name", "args"),
        };
        let has_third = !matches!(self.third, Third::None);
        let mut buf = BytesMut::with_capacity(32 + self.text.len());
        msgpack::write_map_len(&mut buf, 2 + u32::from(has_third));
        msgpack::write_str(&mut buf, "type");
        msgpack::write_str(&mut buf, kind);
        msgpack::write_str(&mut buf, key);
        msgpack::write_str(&mut buf, self.text);
        if has_third {
            msgpack::write_str(&mut buf, third_key);
            self.third.write(&mut buf);
        }
        match format {
            Format::MessagePack => Ok(buf.freeze()),
            // The same map as JSON: read back as a value tree and written
            // with serde_json (a map key that is not a string is refused).
            Format::Json => {
                let v = thingsdb_protocol::decode_value(&buf).map_err(Error::Protocol)?;
                serde_json::to_vec(&v)
                    .map(Bytes::from)
                    .map_err(|e| Error::BadArgument(format!("cannot send as JSON: {e}")))
            }
        }
    }

    async fn send(self) -> Result<Body, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let format = self.format.unwrap_or_else(|| self.client.format());
        let body = self.body(format)?;
        let scope = self.scope.as_ref().unwrap_or_else(|| self.client.scope());
        self.client.post(scope, format, body, self.timeout).await
    }
}

macro_rules! common_methods {
    ($t:ident) => {
        impl<'a> $t<'a> {
            /// Runs in this scope instead of the client's default
            /// (`//stuff`, `@t`, `@node:1`, ...); a scope that does not
            /// parse fails the request with [`Error::BadArgument`].
            pub fn scope(mut self, scope: &str) -> Self {
                self.core.set_scope(scope);
                self
            }

            /// The time this request may take, trying other nodes
            /// included (default: the client's).
            pub fn timeout(mut self, timeout: Duration) -> Self {
                self.core.timeout = Some(timeout);
                self
            }

            /// Sends this request and reads its result in `format` (default:
            /// the client's).
            pub fn format(mut self, format: Format) -> Self {
                self.core.format = Some(format);
                self
            }

            /// Sends the request and returns the result's bytes as the node
            /// sent them (MessagePack, or JSON with [`Format::Json`]).
            pub async fn raw(self) -> Result<Bytes, Error> {
                Ok(self.core.send().await?.bytes)
            }

            /// Sends the request and decodes the result into `T` with serde.
            pub async fn decode<T: DeserializeOwned>(self) -> Result<T, Error> {
                self.core.send().await?.decode()
            }
        }

        impl<'a> IntoFuture for $t<'a> {
            type Output = Result<rmpv::Value, Error>;
            type IntoFuture = BoxFuture<'a, Result<rmpv::Value, Error>>;

            /// Sends the request; the result as a MessagePack value.
            fn into_future(self) -> Self::IntoFuture {
                Box::pin(async move { self.core.send().await?.value() })
            }
        }
    };
}

/// A query being built: `client.query(code)`, then any of
/// [`var`](Query::var), [`vars`](Query::vars), [`scope`](Query::scope),
/// [`timeout`](Query::timeout), [`format`](Query::format); then `.await`
/// for an [`rmpv::Value`], [`decode`](Query::decode) into a Rust type, or
/// [`raw`](Query::raw) for the bytes.
///
/// ```no_run
/// # async fn demo(client: thingsdb_http::HttpClient) -> Result<(), thingsdb_client::Error> {
/// let v: i64 = client.query("a * b;").scope("//stuff").var("a", &6).var("b", &7).decode().await?;
/// assert_eq!(v, 42);
/// # Ok(()) }
/// ```
#[must_use = "a query does nothing until it is awaited"]
pub struct Query<'a> {
    core: Core<'a>,
}

impl<'a> Query<'a> {
    pub(crate) fn new(client: &'a HttpClient, code: &'a str) -> Self {
        Query {
            core: Core::new(client, Call::Query, code),
        }
    }

    /// Adds a variable the code can use by name.
    pub fn var<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Self {
        self.core.push(Some(name), value);
        self
    }

    /// All variables at once: a struct or a map.
    pub fn vars<T: Serialize + ?Sized>(mut self, vars: &T) -> Self {
        self.core.whole(vars);
        self
    }
}

/// A procedure call being built: `client.run(name)`, then positional
/// arguments with [`arg`](Run::arg), arguments by name with
/// [`named`](Run::named), or all at once with [`args`](Run::args); and
/// [`scope`](Run::scope), [`timeout`](Run::timeout),
/// [`format`](Run::format). Then `.await`, [`decode`](Run::decode) or
/// [`raw`](Run::raw).
///
/// ```no_run
/// # async fn demo(client: thingsdb_http::HttpClient) -> Result<(), thingsdb_client::Error> {
/// let v: i64 = client.run("add_one").scope("//stuff").arg(&41).decode().await?;
/// let w: i64 = client.run("add_one").scope("//stuff").named("x", &41).decode().await?;
/// assert_eq!(v, w);
/// # Ok(()) }
/// ```
#[must_use = "a procedure call does nothing until it is awaited"]
pub struct Run<'a> {
    core: Core<'a>,
}

impl<'a> Run<'a> {
    pub(crate) fn new(client: &'a HttpClient, procedure: &'a str) -> Self {
        Run {
            core: Core::new(client, Call::Run, procedure),
        }
    }

    /// Adds the next positional argument.
    pub fn arg<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.core.push(None, value);
        self
    }

    /// Adds an argument by name.
    pub fn named<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Self {
        self.core.push(Some(name), value);
        self
    }

    /// All arguments at once: an array or tuple (positional) or a struct or
    /// map (by name).
    pub fn args<T: Serialize + ?Sized>(mut self, args: &T) -> Self {
        self.core.whole(args);
        self
    }
}

common_methods!(Query);
common_methods!(Run);

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value;

    fn client() -> HttpClient {
        HttpClient::builder()
            .url("http://127.0.0.1:9")
            .and_then(|b| b.build())
            .unwrap()
    }

    fn body_of(core: &Core<'_>, f: Format) -> Value {
        let b = core.body(f).unwrap();
        match f {
            Format::MessagePack => thingsdb_protocol::decode_value(&b).unwrap(),
            Format::Json => serde_json::from_slice(&b).unwrap(),
        }
    }

    fn map(pairs: Vec<(&str, Value)>) -> Value {
        Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        )
    }

    #[test]
    fn query_bodies() {
        let c = client();
        let q = c.query("a * b;").var("a", &6).var("b", &7);
        let want = map(vec![
            ("type", "query".into()),
            ("code", "a * b;".into()),
            ("vars", map(vec![("a", 6.into()), ("b", 7.into())])),
        ]);
        assert_eq!(body_of(&q.core, Format::MessagePack), want);
        assert_eq!(body_of(&q.core, Format::Json), want);
        let q = c.query("1;");
        assert_eq!(
            body_of(&q.core, Format::MessagePack),
            map(vec![("type", "query".into()), ("code", "1;".into())])
        );
    }

    #[test]
    fn run_bodies() {
        let c = client();
        let r = c.run("add").arg(&1).arg(&"x");
        assert_eq!(
            body_of(&r.core, Format::MessagePack),
            map(vec![
                ("type", "run".into()),
                ("name", "add".into()),
                ("args", Value::Array(vec![1.into(), "x".into()])),
            ])
        );
        let r = c.run("add").args(&(1, 2));
        assert!(r.core.error.is_none());
        #[derive(Serialize)]
        struct A {
            x: i64,
        }
        let r = c.run("add").args(&A { x: 41 });
        assert_eq!(
            body_of(&r.core, Format::Json),
            map(vec![
                ("type", "run".into()),
                ("name", "add".into()),
                ("args", map(vec![("x", 41.into())])),
            ])
        );
    }

    #[test]
    fn wrong_shapes_and_mixing_are_refused() {
        let c = client();
        assert!(matches!(
            c.query("x;").vars(&[1, 2]).core.error,
            Some(Error::BadArgument(_))
        ));
        assert!(matches!(
            c.run("p").args(&5).core.error,
            Some(Error::BadArgument(_))
        ));
        assert!(matches!(
            c.run("p").arg(&1).named("x", &2).core.error,
            Some(Error::BadArgument(_))
        ));
        assert!(matches!(
            c.query("x;")
                .var("a", &1)
                .vars(&std::collections::HashMap::from([("b", 2)]))
                .core
                .error,
            Some(Error::BadArgument(_))
        ));
        assert!(matches!(
            c.query("x;").scope("nonsense").core.error,
            Some(Error::BadArgument(_))
        ));
        // A map with a key JSON cannot carry.
        let q = c.query("x;").vars(&std::collections::BTreeMap::from([(
            "a",
            std::collections::BTreeMap::from([((1, 2), 3)]),
        )]));
        assert!(q.core.body(Format::MessagePack).is_ok());
        assert!(matches!(
            q.core.body(Format::Json),
            Err(Error::BadArgument(_))
        ));
    }
}
