//! Query and procedure-call builders.
//!
//! Both share one core and lay their frames out with the protocol crate's
//! encoders (`encode_query_with`, `encode_run_with`), serializing the
//! user's values with serde straight into the request frame (MessagePack,
//! structs as maps), so no value tree is built in between.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thingsdb_protocol::msgpack::{self, Kind, Reader};
use thingsdb_protocol::request;

use crate::client::{expect_data, Client};
use crate::error::Error;
use crate::observe::{Op, OpKind};
use crate::scope::Scope;

/// A boxed future, as the builders' [`decode`](Query::decode) and
/// [`raw`](Query::raw) return; the crate's one boxed-future alias.
#[cfg(not(target_arch = "wasm32"))]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A boxed future, as the builders' `IntoFuture` returns; in a browser
/// (wasm32) it is not `Send`, as nothing there is.
#[cfg(target_arch = "wasm32")]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Writes `value` as MessagePack, as requests carry it (structs as maps),
/// at the end of `buf`; returns the kind of value written. On an error
/// `buf` is left as it was. Other front ends of the client's API (the
/// HTTP client) use it to lay out values the same way.
///
/// ```
/// use bytes::BytesMut;
/// use thingsdb_protocol::msgpack::Kind;
/// #[derive(serde::Serialize)]
/// struct V { a: i64 }
/// let mut buf = BytesMut::new();
/// assert_eq!(thingsdb_client::serialize_into(&mut buf, &V { a: 1 })?, Kind::Map);
/// assert_eq!(&buf[..], &[0x81, 0xa1, b'a', 0x01]);
/// # Ok::<(), thingsdb_client::Error>(())
/// ```
pub fn serialize_into<T: Serialize + ?Sized>(buf: &mut BytesMut, value: &T) -> Result<Kind, Error> {
    let at = buf.len();
    let mut ser = rmp_serde::Serializer::new(buf.writer()).with_struct_map();
    if let Err(e) = value.serialize(&mut ser) {
        buf.truncate(at);
        return Err(Error::BadArgument(format!("cannot serialize a value: {e}")));
    }
    Reader::new(&buf[at..])
        .peek_kind()
        .map_err(|_| Error::BadArgument("a value serialized to nothing".into()))
}

/// Key/value pairs or positional values added one at a time.
#[derive(Default)]
struct Items {
    buf: BytesMut,
    count: u32,
}

impl Items {
    fn push_named<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), Error> {
        let at = self.buf.len();
        msgpack::write_str(&mut self.buf, name);
        if let Err(e) = serialize_into(&mut self.buf, value) {
            self.buf.truncate(at);
            return Err(e);
        }
        self.count += 1;
        Ok(())
    }

    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        serialize_into(&mut self.buf, value)?;
        self.count += 1;
        Ok(())
    }
}

/// The third element of a QUERY (`vars`) or RUN (`args`) payload, as the
/// user gave it: nothing, one value serialized when the request is sent,
/// or items added one at a time (by name, or by position).
enum Third<'a, V: ?Sized> {
    None,
    Value(&'a V),
    Named(Items),
    Positional(Items),
}

impl<V: Serialize + ?Sized> Third<'_, V> {
    fn is_none(&self) -> bool {
        matches!(self, Third::None)
    }

    /// Appends the element: what the protocol's encoders call back.
    fn write(&self, buf: &mut BytesMut) -> Result<(), Error> {
        match self {
            Third::None => Ok(()),
            Third::Value(v) => serialize_into(buf, *v).map(drop),
            Third::Named(items) => {
                msgpack::write_map_len(buf, items.count);
                buf.put_slice(&items.buf);
                Ok(())
            }
            Third::Positional(items) => {
                msgpack::write_array_len(buf, items.count);
                buf.put_slice(&items.buf);
                Ok(())
            }
        }
    }

    /// Adds an item, named or positional; mixing the ways is an error.
    fn push<T: Serialize + ?Sized>(
        &mut self,
        name: Option<&str>,
        value: &T,
        mixed: &'static str,
    ) -> Result<(), Error> {
        if self.is_none() {
            *self = match name {
                Some(_) => Third::Named(Items::default()),
                None => Third::Positional(Items::default()),
            };
        }
        match (self, name) {
            (Third::Named(items), Some(name)) => items.push_named(name, value),
            (Third::Positional(items), None) => items.push(value),
            _ => Err(Error::BadArgument(mixed.into())),
        }
    }
}

/// What kind of request a builder makes.
#[derive(Clone, Copy)]
pub(crate) enum RequestKind {
    Query,
    Run,
}

/// A client a builder can be made on: the async [`Client`], or the
/// blocking one.
pub(crate) trait HasDefaultScope {
    /// The scope of requests that name none.
    fn default_scope(&self) -> &Scope;

    /// An empty buffer for a request frame of about `capacity` bytes.
    fn request_buffer(&self, capacity: usize) -> BytesMut {
        BytesMut::with_capacity(capacity)
    }
}

impl HasDefaultScope for Client {
    fn default_scope(&self) -> &Scope {
        Client::default_scope(self)
    }

    fn request_buffer(&self, capacity: usize) -> BytesMut {
        self.frame_pool().take(capacity)
    }
}

/// The one builder core of [`Query`] and [`Run`] (and of their blocking
/// twins): the scope, the code or procedure, the third payload element,
/// the timeout, the first error met while building, and, once polled, the
/// request in flight.
pub(crate) struct Core<'a, V: ?Sized, C = Client> {
    pub(crate) client: &'a C,
    kind: RequestKind,
    scope: Option<Scope>,
    /// The code of a query, the procedure of a run.
    text: &'a str,
    third: Third<'a, V>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) idempotent: bool,
    /// Where the request goes ([`Route`](crate::Route)).
    pub(crate) via: crate::balance::Via,
    pub(crate) error: Option<Error>,
    /// Set when the builder is polled as a future.
    sending: Option<BoxFuture<'a, Result<rmpv::Value, Error>>>,
}

impl<'a, V: Serialize + ?Sized, C: HasDefaultScope> Core<'a, V, C> {
    pub(crate) fn new(client: &'a C, kind: RequestKind, text: &'a str) -> Self {
        Core {
            client,
            kind,
            scope: None,
            text,
            third: Third::None,
            timeout: None,
            idempotent: false,
            via: crate::balance::Via::Balance,
            error: None,
            sending: None,
        }
    }

    pub(crate) fn set_scope(&mut self, scope: &str) {
        match Scope::parse(scope) {
            Ok(s) => self.scope = Some(s),
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, e: Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    pub(crate) fn push<T: Serialize + ?Sized>(&mut self, name: Option<&str>, value: &T) {
        if let Err(e) = self.third.push(name, value, self.mixed()) {
            self.fail(e);
        }
    }

    /// The same builder holding a value of another type (which replaces
    /// an earlier one; items added one at a time do not mix with it).
    pub(crate) fn with_value<W: Serialize + ?Sized>(mut self, value: &'a W) -> Core<'a, W, C> {
        if matches!(self.third, Third::Named(_) | Third::Positional(_)) {
            self.fail(Error::BadArgument(self.mixed().into()));
        }
        Core {
            client: self.client,
            kind: self.kind,
            scope: self.scope,
            text: self.text,
            third: Third::Value(value),
            timeout: self.timeout,
            idempotent: self.idempotent,
            via: self.via,
            error: self.error,
            sending: None,
        }
    }

    /// The same builder, for items added one at a time (no value of
    /// type `V` is held, so the type parameter can change).
    fn with_items<W: Serialize + ?Sized>(self) -> Core<'a, W, C> {
        let third = match self.third {
            Third::Named(items) => Third::Named(items),
            Third::Positional(items) => Third::Positional(items),
            Third::None | Third::Value(_) => Third::None,
        };
        Core {
            client: self.client,
            kind: self.kind,
            scope: self.scope,
            text: self.text,
            third,
            timeout: self.timeout,
            idempotent: self.idempotent,
            via: self.via,
            error: self.error,
            sending: None,
        }
    }

    fn mixed(&self) -> &'static str {
        match self.kind {
            RequestKind::Query => "use either vars() or var(), not both",
            RequestKind::Run => "use one of args(), arg() or named() for a procedure call",
        }
    }

    /// The request frame, laid out by the protocol crate's encoders with
    /// the third element serialized straight into it.
    pub(crate) fn encode(&self) -> Result<BytesMut, Error> {
        let scope = self
            .scope
            .as_ref()
            .unwrap_or_else(|| self.client.default_scope())
            .as_str();
        let mut buf = self
            .client
            .request_buffer(32 + scope.len() + self.text.len());
        let third = (!self.third.is_none()).then_some(|b: &mut BytesMut| self.third.write(b));
        let r = match self.kind {
            RequestKind::Query => request::encode_query_with(&mut buf, 0, scope, self.text, third),
            RequestKind::Run => request::encode_run_with(&mut buf, 0, scope, self.text, third),
        };
        match r {
            Ok(()) => Ok(buf),
            // The protocol refused what was serialized: the caller's value
            // is of the wrong shape.
            Err(Error::Protocol(thingsdb_protocol::Error::WrongType { .. })) => {
                Err(Error::BadArgument(match self.kind {
                    RequestKind::Query => {
                        "query vars must serialize to a map (a struct or a map)".into()
                    }
                    RequestKind::Run => {
                        "procedure args must serialize to an array (positional) or a map (named)"
                            .into()
                    }
                }))
            }
            Err(e) => Err(e),
        }
    }

    /// The request frame, or the first error met while building.
    pub(crate) fn take_frame(&mut self) -> Result<BytesMut, Error> {
        match self.error.take() {
            Some(e) => Err(e),
            None => self.encode(),
        }
    }
}

impl<'a, V: Serialize + ?Sized> Core<'a, V> {
    /// Sends the request (or reports the first building error) and turns
    /// the DATA payload into the caller's type with `decode`; one
    /// allocation.
    fn send<T: 'a>(
        &mut self,
        decode: fn(Bytes) -> Result<T, Error>,
    ) -> BoxFuture<'a, Result<T, Error>> {
        let frame = match self.take_frame() {
            Ok(frame) => frame,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let client = self.client;
        let kind = match self.kind {
            RequestKind::Query => OpKind::Query,
            RequestKind::Run => OpKind::Run,
        };
        // Encoded already: the scope goes along for the request's span.
        let op = Op {
            kind,
            scope: client.default_scope().as_str(),
            text: self.text,
        };
        let call = client.call_via(
            op,
            self.scope.take(),
            frame,
            self.timeout,
            self.idempotent,
            self.via,
        );
        // A combinator, not an async block: an async block would keep
        // `call` twice (as captured, and as awaited).
        Box::pin(futures::FutureExt::map(call, move |r| {
            decode(expect_data(r?)?)
        }))
    }

    fn poll_value(&mut self, cx: &mut Context<'_>) -> Poll<Result<rmpv::Value, Error>> {
        if self.sending.is_none() {
            self.sending = Some(self.send(as_value));
        }
        match self.sending.as_mut() {
            Some(f) => f.as_mut().poll(cx),
            None => Poll::Ready(Err(Error::BadArgument("request already sent".into()))),
        }
    }
}

pub(crate) fn as_raw(data: Bytes) -> Result<Bytes, Error> {
    Ok(data)
}

pub(crate) fn as_value(data: Bytes) -> Result<rmpv::Value, Error> {
    // `expect_data` got these bytes from `Response::decode`, which checked
    // them: no second scan.
    thingsdb_protocol::decode_validated_value(&data).map_err(Error::Protocol)
}

pub(crate) fn as_type<T: DeserializeOwned>(data: Bytes) -> Result<T, Error> {
    rmp_serde::from_slice(&data).map_err(|e| Error::Decode(e.to_string()))
}

/// A query being built: `client.query(code)`, then any of
/// [`scope`](Query::scope), [`vars`](Query::vars), [`var`](Query::var),
/// [`timeout`](Query::timeout), then `.await` for an [`rmpv::Value`], or
/// [`decode`](Query::decode) into a Rust type, or [`raw`](Query::raw) for
/// the MessagePack bytes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let node = thingsdb_testkit::TestNode::start().await?;
/// # let client = thingsdb_client::Client::connect(&node.thingsdb_url(), thingsdb_client::Auth::password("admin", "pass")).await?;
/// #[derive(serde::Serialize)]
/// struct Vars { a: i64, b: i64 }
/// let v: i64 = client
///     .query("a * b;")
///     .scope("//stuff")
///     .vars(&Vars { a: 6, b: 7 })
///     .decode()
///     .await?;
/// assert_eq!(v, 42);
/// # Ok(()) }
/// ```
///
/// # Variables: `vars` or `var`, not both
///
/// Give the variables all at once with [`vars`](Query::vars) (anything
/// that serializes to a map) or one at a time with [`var`](Query::var).
/// The two do not mix, and the types see to it: after `var` the query is
/// a `Query<'_, VarByVar>`, which has no `vars`, and after `vars(&x)` it
/// is a `Query<'_, X>`, which has no `var`. To add variables in a loop,
/// collect them in a map and give it to `vars`.
///
/// ```compile_fail,E0599
/// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
/// #[derive(serde::Serialize)]
/// struct Vars { a: i64 }
/// // error[E0599]: no method named `var` found for struct `Query<'_, Vars>`
/// client.query("a * b;").vars(&Vars { a: 6 }).var("b", &7).await?;
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0599
/// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
/// # #[derive(serde::Serialize)]
/// # struct Vars { a: i64 }
/// // error[E0599]: no method named `vars` found for struct `Query<'_, VarByVar>`
/// client.query("a * b;").var("b", &7).vars(&Vars { a: 6 }).await?;
/// # Ok(()) }
/// ```
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let node = thingsdb_testkit::TestNode::start().await?;
/// # let client = thingsdb_client::Client::connect(&node.thingsdb_url(), thingsdb_client::Auth::password("admin", "pass")).await?;
/// use std::collections::BTreeMap;
/// let vars: BTreeMap<&str, i64> = [("a", 6), ("b", 7)].into_iter().collect();
/// let v: i64 = client.query("a * b;").vars(&vars).decode().await?;
/// assert_eq!(v, 42);
/// # Ok(()) }
/// ```
///
/// # As a future
///
/// A `Query` is itself a [`Future`] (for an [`rmpv::Value`]): it is sent
/// when first polled. So it goes straight into `join_all`, `select!` and
/// `tokio::time::timeout`; [`decode`](Query::decode) and
/// [`raw`](Query::raw) return futures too. Each request is pipelined on
/// the one connection: many in flight cost one write.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let node = thingsdb_testkit::TestNode::start().await?;
/// # let client = thingsdb_client::Client::connect(&node.thingsdb_url(), thingsdb_client::Auth::password("admin", "pass")).await?;
/// # node.procedure("add_one", |a| thingsdb_testkit::Reply::value(a.param(0, "x").and_then(|v| v.as_i64()).unwrap_or(0) + 1));
/// use std::time::Duration;
/// let all = futures::future::join_all((0..10).map(|i| client.query("x * 2;").var("x", &i))).await;
/// assert_eq!(all.len(), 10);
///
/// let late = tokio::time::timeout(Duration::from_secs(1), client.query("1 + 1;")).await;
///
/// tokio::select! {
///     v = client.query("1;") => println!("first: {:?}", v?),
///     v = client.run("add_one").arg(&1) => println!("first: {:?}", v?),
/// }
/// # Ok(()) }
/// ```
///
/// # Nested things
///
/// A node packs a result only `deep` levels into things (default 1):
/// a thing inside the returned thing comes back as an empty map `{}`, so
/// decoding a nested struct fails with `missing field`. Ask for more depth
/// in the code, with `return VALUE, DEEP;`:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let node = thingsdb_testkit::TestNode::start().await?;
/// # let client = thingsdb_client::Client::connect(&node.thingsdb_url(), thingsdb_client::Auth::password("admin", "pass")).await?;
/// # #[derive(serde::Serialize)] struct A { city: &'static str }
/// # #[derive(serde::Serialize)] struct P { name: &'static str, address: A }
/// # node.on_query(|_| thingsdb_testkit::Reply::serialize(&P { name: "Iris", address: A { city: "Ghent" } }));
/// #[derive(serde::Deserialize)]
/// struct Address { city: String }
/// #[derive(serde::Deserialize)]
/// struct Person { name: String, address: Address }
/// let p: Person = client
///     .query("p = {name: 'Iris', address: {city: 'Ghent'}}; return p, 2;")
///     .scope("//stuff")
///     .decode()
///     .await?;
/// assert_eq!((p.name.as_str(), p.address.city.as_str()), ("Iris", "Ghent"));
/// # Ok(()) }
/// ```
#[must_use = "a query does nothing until it is awaited"]
pub struct Query<'a, V: ?Sized = ()> {
    core: Core<'a, V>,
}

impl<'a> Query<'a, ()> {
    pub(crate) fn new(client: &'a Client, code: &'a str) -> Self {
        Query {
            core: Core::new(client, RequestKind::Query, code),
        }
    }
}

/// The type parameter of a [`Query`] whose variables are added one at a
/// time with [`var`](Query::var): such a query has no
/// [`vars`](Query::vars), so the two ways cannot be mixed. Never made as a
/// value.
#[derive(Debug, Clone, Copy)]
pub enum VarByVar {}

impl Serialize for VarByVar {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        match *self {}
    }
}

impl<'a> Query<'a, ()> {
    /// Sets every variable at once from a value that serializes to a map
    /// (a struct, a `HashMap`, an `rmpv::Value::Map`). It is serialized
    /// straight into the request frame when the query is sent.
    ///
    /// Only on a query without variables: after `vars` there is no
    /// [`var`](Query::var), and after `var` no `vars` (see [`Query`]).
    pub fn vars<W: Serialize + ?Sized>(self, vars: &'a W) -> Query<'a, W> {
        Query {
            core: self.core.with_value(vars),
        }
    }

    /// Adds one variable; then more with `var`. After it the query has
    /// no [`vars`](Query::vars) (see [`Query`]).
    pub fn var<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Query<'a, VarByVar> {
        self.core.push(Some(name), value);
        Query {
            core: self.core.with_items(),
        }
    }
}

impl Query<'_, VarByVar> {
    /// Adds one more variable.
    pub fn var<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Self {
        self.core.push(Some(name), value);
        self
    }
}

impl<'a, V: Serialize + ?Sized> Query<'a, V> {
    /// Runs the query in this scope instead of the default one.
    pub fn scope(mut self, scope: &str) -> Self {
        self.core.set_scope(scope);
        self
    }

    /// Sets this request's timeout (instead of the client's).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.core.timeout = Some(timeout);
        self
    }

    /// Marks the query safe to run twice (a read, or a write that sets
    /// rather than adds): when the connection goes after it was written,
    /// it is sent again (within its timeout, on the next connection)
    /// instead of failing with [`Error::ConnectionLost`]; and when a node
    /// answers REQUEST_CANCEL (-4, it gave up waiting on another node,
    /// which may have run it). Requests that
    /// provably did not run are sent again either way (see
    /// [`ClientBuilder::request_attempts`](crate::ClientBuilder::request_attempts)).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// let n: i64 = client.query(".n;").idempotent().decode().await?;
    /// # Ok(()) }
    /// ```
    pub fn idempotent(mut self) -> Self {
        self.core.idempotent = true;
        self
    }

    /// Sends this query to a given node, or to the node of the client's
    /// last change, instead of where the client's
    /// [`Balance`](crate::Balance) would (see [`Route`](crate::Route)).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// use thingsdb_client::Route;
    /// client.query(".n += 1;").await?;
    /// let n: i64 = client.query(".n;").route(Route::LastChange).decode().await?;
    /// # Ok(()) }
    /// ```
    pub fn route(mut self, route: crate::Route) -> Self {
        self.core.via = crate::balance::Via::Route(route);
        self
    }

    /// Sends the query; the result as its MessagePack bytes, undecoded.
    pub fn raw(mut self) -> BoxFuture<'a, Result<Bytes, Error>> {
        self.core.send(as_raw)
    }

    /// Sends the query; the result deserialized into `T`.
    pub fn decode<T: DeserializeOwned + 'a>(mut self) -> BoxFuture<'a, Result<T, Error>> {
        self.core.send(as_type::<T>)
    }
}

impl<V: Serialize + ?Sized> Future for Query<'_, V> {
    type Output = Result<rmpv::Value, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().core.poll_value(cx)
    }
}

/// A procedure call being built: `client.run(name)`, then arguments by
/// position ([`args`](Run::args) with a tuple, slice or `Vec`;
/// [`arg`](Run::arg) one at a time) or by name ([`args`](Run::args) with a
/// struct or map; [`named`](Run::named) one at a time), then `.await`,
/// [`decode`](Run::decode) or [`raw`](Run::raw). Like [`Query`], a `Run`
/// is a [`Future`] itself, sent when first polled.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let node = thingsdb_testkit::TestNode::start().await?;
/// # let client = thingsdb_client::Client::connect(&node.thingsdb_url(), thingsdb_client::Auth::password("admin", "pass")).await?;
/// # node.procedure("add_one", |a| thingsdb_testkit::Reply::value(a.param(0, "x").and_then(|v| v.as_i64()).unwrap_or(0) + 1));
/// let a = client.run("add_one").arg(&41).await?;
/// let b: i64 = client.run("add_one").named("x", &41).decode().await?;
/// let c = client.run("add_one").args(&(41,)).await?;
/// assert_eq!((a, b, c), (42.into(), 42, 42.into()));
/// # Ok(()) }
/// ```
#[must_use = "a procedure call does nothing until it is awaited"]
pub struct Run<'a, V: ?Sized = ()> {
    core: Core<'a, V>,
}

impl<'a> Run<'a, ()> {
    pub(crate) fn new(client: &'a Client, procedure: &'a str) -> Self {
        Run {
            core: Core::new(client, RequestKind::Run, procedure),
        }
    }
}

impl<'a, V: Serialize + ?Sized> Run<'a, V> {
    /// Runs the procedure in this scope instead of the default one.
    pub fn scope(mut self, scope: &str) -> Self {
        self.core.set_scope(scope);
        self
    }

    /// Sets every argument at once: a value that serializes to an array
    /// (positional) or to a map (by name). Serialized straight into the
    /// request frame when the call is sent.
    pub fn args<W: Serialize + ?Sized>(self, args: &'a W) -> Run<'a, W> {
        Run {
            core: self.core.with_value(args),
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

    /// Sets this request's timeout (instead of the client's).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.core.timeout = Some(timeout);
        self
    }

    /// Marks the call safe to run twice (a read, or a write that sets
    /// rather than adds): when the connection goes after it was written,
    /// it is sent again (within its timeout, on the next connection)
    /// instead of failing with [`Error::ConnectionLost`]; and when a node
    /// answers REQUEST_CANCEL (-4, it gave up waiting on another node,
    /// which may have run it). Requests that
    /// provably did not run are sent again either way (see
    /// [`ClientBuilder::request_attempts`](crate::ClientBuilder::request_attempts)).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// let n: i64 = client.run("get_n").idempotent().decode().await?;
    /// # Ok(()) }
    /// ```
    pub fn idempotent(mut self) -> Self {
        self.core.idempotent = true;
        self
    }

    /// Sends this procedure call to a given node, or to the node of the client's
    /// last change, instead of where the client's
    /// [`Balance`](crate::Balance) would (see [`Route`](crate::Route)).
    ///
    /// ```no_run
    /// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
    /// use thingsdb_client::Route;
    /// client.run("add_item").arg(&"x").await?;
    /// let n: usize = client.run("item_count").route(Route::LastChange).decode().await?;
    /// # Ok(()) }
    /// ```
    pub fn route(mut self, route: crate::Route) -> Self {
        self.core.via = crate::balance::Via::Route(route);
        self
    }

    /// Sends the call; the result as its MessagePack bytes, undecoded.
    pub fn raw(mut self) -> BoxFuture<'a, Result<Bytes, Error>> {
        self.core.send(as_raw)
    }

    /// Sends the call; the result deserialized into `T`.
    pub fn decode<T: DeserializeOwned + 'a>(mut self) -> BoxFuture<'a, Result<T, Error>> {
        self.core.send(as_type::<T>)
    }
}

impl<V: Serialize + ?Sized> Future for Run<'_, V> {
    type Output = Result<rmpv::Value, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().core.poll_value(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_serialize_as_maps() {
        #[derive(Serialize)]
        struct V {
            a: i64,
        }
        let mut b = BytesMut::new();
        assert_eq!(serialize_into(&mut b, &V { a: 6 }).unwrap(), Kind::Map);
        assert_eq!(&b[..], &[0x81, 0xa1, b'a', 6]);
        b.clear();
        assert_eq!(serialize_into(&mut b, &(1, "x")).unwrap(), Kind::Array);
    }
}
