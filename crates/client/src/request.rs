//! Query and procedure-call builders.
//!
//! Both serialize their values with serde straight into the request frame
//! (MessagePack, structs as maps), so no value tree is built in between.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thingsdb_protocol::msgpack::{self, Kind, Reader};
use thingsdb_protocol::{request, PackageType};

use crate::client::{expect_data, Client};
use crate::error::Error;
use crate::scope::Scope;

/// A boxed future, as the builders' `IntoFuture` returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Writes `value` as MessagePack (structs as maps) at the end of `buf`;
/// returns the kind of value written.
pub(crate) fn serialize_into<T: Serialize + ?Sized>(
    buf: &mut BytesMut,
    value: &T,
) -> Result<Kind, Error> {
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

/// Common parts of both builders.
struct Common<'a> {
    client: &'a Client,
    scope: Option<Scope>,
    timeout: Option<Duration>,
    /// The first error met while building; reported when awaited.
    error: Option<Error>,
}

impl<'a> Common<'a> {
    fn new(client: &'a Client) -> Self {
        Common {
            client,
            scope: None,
            timeout: None,
            error: None,
        }
    }

    fn set_scope(&mut self, scope: &str) {
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

    fn scope(&self) -> &Scope {
        self.scope
            .as_ref()
            .unwrap_or_else(|| self.client.default_scope())
    }

    /// Sends `frame` (or the first building error) and turns the DATA
    /// payload into the caller's type with `decode`; one allocation.
    fn finish<T: 'a>(
        self,
        frame: Result<BytesMut, Error>,
        decode: fn(Bytes) -> Result<T, Error>,
    ) -> BoxFuture<'a, Result<T, Error>> {
        let Common {
            client,
            timeout,
            error,
            ..
        } = self;
        Box::pin(async move {
            if let Some(e) = error {
                return Err(e);
            }
            decode(expect_data(client.call(frame?, timeout).await?)?)
        })
    }
}

fn as_raw(data: Bytes) -> Result<Bytes, Error> {
    Ok(data)
}

fn as_value(data: Bytes) -> Result<rmpv::Value, Error> {
    // `expect_data` got these bytes from `Response::decode`, which checked
    // them: no second scan.
    thingsdb_protocol::decode_validated_value(&data).map_err(Error::Protocol)
}

fn as_type<T: DeserializeOwned>(data: Bytes) -> Result<T, Error> {
    rmp_serde::from_slice(&data).map_err(|e| Error::Decode(e.to_string()))
}

/// A query being built: `client.query(code)`, then any of
/// [`scope`](Query::scope), [`vars`](Query::vars), [`var`](Query::var),
/// [`timeout`](Query::timeout), then `.await` for an [`rmpv::Value`], or
/// [`decode`](Query::decode) into a Rust type, or [`raw`](Query::raw) for
/// the MessagePack bytes.
///
/// ```no_run
/// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
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
#[must_use = "a query does nothing until it is awaited"]
pub struct Query<'a, V: ?Sized = ()> {
    common: Common<'a>,
    code: &'a str,
    vars: Option<&'a V>,
    pairs: Option<Items>,
}

impl<'a> Query<'a, ()> {
    pub(crate) fn new(client: &'a Client, code: &'a str) -> Self {
        Query {
            common: Common::new(client),
            code,
            vars: None,
            pairs: None,
        }
    }
}

impl<'a, V: Serialize + ?Sized> Query<'a, V> {
    /// Runs the query in this scope instead of the default one.
    pub fn scope(mut self, scope: &str) -> Self {
        self.common.set_scope(scope);
        self
    }

    /// Sets every variable at once from a value that serializes to a map
    /// (a struct, a `HashMap`, an `rmpv::Value::Map`). It is serialized
    /// straight into the request frame when the query is sent.
    pub fn vars<W: Serialize + ?Sized>(self, vars: &'a W) -> Query<'a, W> {
        Query {
            common: self.common,
            code: self.code,
            vars: Some(vars),
            pairs: self.pairs,
        }
    }

    /// Adds one variable. Cannot be combined with [`Query::vars`].
    pub fn var<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Self {
        let r = self
            .pairs
            .get_or_insert_with(Items::default)
            .push_named(name, value);
        if let Err(e) = r {
            self.common.fail(e);
        }
        self
    }

    /// Sets this request's timeout (instead of the client's).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.common.timeout = Some(timeout);
        self
    }

    fn encode(&self) -> Result<BytesMut, Error> {
        let scope = self.common.scope();
        let mut buf = BytesMut::with_capacity(32 + scope.as_str().len() + self.code.len());
        let start = request::begin_frame(&mut buf, PackageType::Query, 0);
        let with_vars = self.vars.is_some() || self.pairs.is_some();
        msgpack::write_array_len(&mut buf, 2 + u32::from(with_vars));
        msgpack::write_str(&mut buf, scope.as_str());
        msgpack::write_str(&mut buf, self.code);
        match (self.vars, &self.pairs) {
            (Some(_), Some(_)) => {
                return Err(Error::BadArgument(
                    "use either vars() or var(), not both".into(),
                ))
            }
            (Some(vars), None) => {
                if serialize_into(&mut buf, vars)? != Kind::Map {
                    return Err(Error::BadArgument(
                        "query vars must serialize to a map (a struct or a map)".into(),
                    ));
                }
            }
            (None, Some(items)) => {
                msgpack::write_map_len(&mut buf, items.count);
                buf.put_slice(&items.buf);
            }
            (None, None) => {}
        }
        request::finish_frame(&mut buf, start)?;
        Ok(buf)
    }

    /// Sends the query; the result as its MessagePack bytes, undecoded.
    pub fn raw(self) -> BoxFuture<'a, Result<Bytes, Error>> {
        let frame = self.encode();
        self.common.finish(frame, as_raw)
    }

    /// Sends the query; the result deserialized into `T`.
    pub fn decode<T: DeserializeOwned + 'a>(self) -> BoxFuture<'a, Result<T, Error>> {
        let frame = self.encode();
        self.common.finish(frame, as_type::<T>)
    }
}

impl<'a, V: Serialize + ?Sized> IntoFuture for Query<'a, V> {
    type Output = Result<rmpv::Value, Error>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let frame = self.encode();
        self.common.finish(frame, as_value)
    }
}

/// A procedure call being built: `client.run(name)`, then arguments by
/// position ([`args`](Run::args) with a tuple, slice or `Vec`;
/// [`arg`](Run::arg) one at a time) or by name ([`args`](Run::args) with a
/// struct or map; [`named`](Run::named) one at a time), then `.await`,
/// [`decode`](Run::decode) or [`raw`](Run::raw).
///
/// ```no_run
/// # async fn demo(client: thingsdb_client::Client) -> Result<(), thingsdb_client::Error> {
/// let a = client.run("add_one").arg(&41).await?;
/// let b: i64 = client.run("add_one").named("x", &41).decode().await?;
/// let c = client.run("add_one").args(&(41,)).await?;
/// # Ok(()) }
/// ```
#[must_use = "a procedure call does nothing until it is awaited"]
pub struct Run<'a, V: ?Sized = ()> {
    common: Common<'a>,
    procedure: &'a str,
    args: Option<&'a V>,
    positional: Option<Items>,
    named: Option<Items>,
}

impl<'a> Run<'a, ()> {
    pub(crate) fn new(client: &'a Client, procedure: &'a str) -> Self {
        Run {
            common: Common::new(client),
            procedure,
            args: None,
            positional: None,
            named: None,
        }
    }
}

impl<'a, V: Serialize + ?Sized> Run<'a, V> {
    /// Runs the procedure in this scope instead of the default one.
    pub fn scope(mut self, scope: &str) -> Self {
        self.common.set_scope(scope);
        self
    }

    /// Sets every argument at once: a value that serializes to an array
    /// (positional) or to a map (by name). Serialized straight into the
    /// request frame when the call is sent.
    pub fn args<W: Serialize + ?Sized>(self, args: &'a W) -> Run<'a, W> {
        Run {
            common: self.common,
            procedure: self.procedure,
            args: Some(args),
            positional: self.positional,
            named: self.named,
        }
    }

    /// Adds the next positional argument.
    pub fn arg<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        let r = self
            .positional
            .get_or_insert_with(Items::default)
            .push(value);
        if let Err(e) = r {
            self.common.fail(e);
        }
        self
    }

    /// Adds an argument by name.
    pub fn named<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Self {
        let r = self
            .named
            .get_or_insert_with(Items::default)
            .push_named(name, value);
        if let Err(e) = r {
            self.common.fail(e);
        }
        self
    }

    /// Sets this request's timeout (instead of the client's).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.common.timeout = Some(timeout);
        self
    }

    fn encode(&self) -> Result<BytesMut, Error> {
        let scope = self.common.scope();
        let mut buf = BytesMut::with_capacity(32 + scope.as_str().len() + self.procedure.len());
        let start = request::begin_frame(&mut buf, PackageType::Run, 0);
        let given = usize::from(self.args.is_some())
            + usize::from(self.positional.is_some())
            + usize::from(self.named.is_some());
        if given > 1 {
            return Err(Error::BadArgument(
                "use one of args(), arg() or named() for a procedure call".into(),
            ));
        }
        msgpack::write_array_len(&mut buf, 2 + u32::from(given == 1));
        msgpack::write_str(&mut buf, scope.as_str());
        msgpack::write_str(&mut buf, self.procedure);
        if let Some(args) = self.args {
            let kind = serialize_into(&mut buf, args)?;
            if kind != Kind::Array && kind != Kind::Map {
                return Err(Error::BadArgument(
                    "procedure args must serialize to an array (positional) or a map (named)"
                        .into(),
                ));
            }
        }
        if let Some(items) = &self.positional {
            msgpack::write_array_len(&mut buf, items.count);
            buf.put_slice(&items.buf);
        }
        if let Some(items) = &self.named {
            msgpack::write_map_len(&mut buf, items.count);
            buf.put_slice(&items.buf);
        }
        request::finish_frame(&mut buf, start)?;
        Ok(buf)
    }

    /// Sends the call; the result as its MessagePack bytes, undecoded.
    pub fn raw(self) -> BoxFuture<'a, Result<Bytes, Error>> {
        let frame = self.encode();
        self.common.finish(frame, as_raw)
    }

    /// Sends the call; the result deserialized into `T`.
    pub fn decode<T: DeserializeOwned + 'a>(self) -> BoxFuture<'a, Result<T, Error>> {
        let frame = self.encode();
        self.common.finish(frame, as_type::<T>)
    }
}

impl<'a, V: Serialize + ?Sized> IntoFuture for Run<'a, V> {
    type Output = Result<rmpv::Value, Error>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let frame = self.encode();
        self.common.finish(frame, as_value)
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
