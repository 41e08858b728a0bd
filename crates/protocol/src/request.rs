//! Requests: encoders (client side) and decoding (node side).
//!
//! Encoders are small free functions that append one whole frame to a
//! [`BytesMut`], the way `postgres-protocol` writes its frontend messages.
//! User values (query variables, procedure and event arguments) are taken as
//! already-encoded MessagePack, so a higher layer can serialize straight
//! into the frame; to do that without an intermediate buffer, use
//! [`begin_frame`] and [`finish_frame`] around your own writes:
//!
//! ```
//! use bytes::BytesMut;
//! use thingsdb_protocol::{msgpack, request, PackageType};
//! let mut buf = BytesMut::new();
//! let start = request::begin_frame(&mut buf, PackageType::Query, 7);
//! msgpack::write_array_len(&mut buf, 3);
//! msgpack::write_str(&mut buf, "//stuff");
//! msgpack::write_str(&mut buf, "a * b;");
//! // ... any serializer writing into `buf` here; by hand for the example:
//! msgpack::write_map_len(&mut buf, 2);
//! msgpack::write_str(&mut buf, "a");
//! msgpack::write_int(&mut buf, 6);
//! msgpack::write_str(&mut buf, "b");
//! msgpack::write_int(&mut buf, 7);
//! request::finish_frame(&mut buf, start)?;
//!
//! let mut same = BytesMut::new();
//! request::encode_query(&mut same, 7, "//stuff", "a * b;", Some(&[0x82, 0xa1, b'a', 6, 0xa1, b'b', 7]))?;
//! assert_eq!(buf, same);
//! # Ok::<(), thingsdb_protocol::Error>(())
//! ```

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use bytes::{BufMut, Bytes, BytesMut};

use crate::error::Error;
use crate::frame::{require_empty, Frame};
use crate::header::{Header, HEADER_LEN, MAX_PAYLOAD};
use crate::msgpack::{self, expect_kind, read_id, Kind, Reader};
use crate::package_type::{Direction, PackageType};

/// A room, named by its id or by its name.
///
/// ```
/// use thingsdb_protocol::Room;
/// assert_eq!(Room::from(17), Room::Id(17));
/// assert_eq!(Room::from("chat"), Room::Name("chat".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Room {
    /// A room id, as `room.id()` returns it.
    Id(u64),
    /// A room name, as set by `room.set_name(..)`.
    Name(String),
}

impl From<u64> for Room {
    fn from(id: u64) -> Self {
        Room::Id(id)
    }
}

impl From<&str> for Room {
    fn from(name: &str) -> Self {
        Room::Name(name.to_string())
    }
}

impl From<String> for Room {
    fn from(name: String) -> Self {
        Room::Name(name)
    }
}

impl core::fmt::Display for Room {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Room::Id(id) => write!(f, "{id}"),
            Room::Name(n) => write!(f, "{n:?}"),
        }
    }
}

fn write_room(buf: &mut BytesMut, room: &Room) {
    match room {
        Room::Id(id) => msgpack::write_uint(buf, *id),
        Room::Name(n) => msgpack::write_str(buf, n),
    }
}

/// Arguments of a RUN request, as already-encoded MessagePack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunArgs<'a> {
    /// No arguments: the payload is `[scope, procedure]`.
    None,
    /// One encoded array of positional arguments.
    Positional(&'a [u8]),
    /// One encoded map of arguments by name.
    Named(&'a [u8]),
}

/// Where a frame started in a buffer, returned by [`begin_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a begun frame must be finished with finish_frame"]
pub struct FrameStart {
    offset: usize,
}

/// Appends a header with a zero length for a frame of `package_type` and
/// `id`; write the payload after it, then call [`finish_frame`].
pub fn begin_frame(buf: &mut BytesMut, package_type: PackageType, id: u16) -> FrameStart {
    let offset = buf.len();
    buf.put_slice(&Header::new(package_type, id, 0).encode());
    FrameStart { offset }
}

/// Writes the payload length into the header that [`begin_frame`] wrote.
///
/// If the payload is longer than a node accepts ([`MAX_PAYLOAD`]),
/// the begun frame is removed from `buf` and [`Error::EncodeTooLarge`] is
/// returned.
pub fn finish_frame(buf: &mut BytesMut, start: FrameStart) -> Result<(), Error> {
    let len = buf.len() - start.offset - HEADER_LEN;
    match u32::try_from(len) {
        Ok(l) if l <= MAX_PAYLOAD => {
            buf[start.offset..start.offset + 4].copy_from_slice(&l.to_le_bytes());
            Ok(())
        }
        _ => {
            buf.truncate(start.offset);
            Err(Error::EncodeTooLarge {
                len,
                max: MAX_PAYLOAD,
            })
        }
    }
}

/// Appends a PING request.
///
/// ```
/// let mut buf = bytes::BytesMut::new();
/// thingsdb_protocol::request::encode_ping(&mut buf, 0);
/// assert_eq!(&buf[..], &[0, 0, 0, 0, 0, 0, 0x20, 0xdf]);
/// ```
pub fn encode_ping(buf: &mut BytesMut, id: u16) {
    buf.put_slice(&Header::new(PackageType::Ping, id, 0).encode());
}

/// Appends an AUTH request with a user name and password:
/// `[user, password]`.
pub fn encode_auth(buf: &mut BytesMut, id: u16, user: &str, password: &str) -> Result<(), Error> {
    let start = begin_frame(buf, PackageType::Auth, id);
    msgpack::write_array_len(buf, 2);
    msgpack::write_str(buf, user);
    msgpack::write_str(buf, password);
    finish_frame(buf, start)
}

/// Appends an AUTH request with a token: the payload is the token string.
pub fn encode_auth_token(buf: &mut BytesMut, id: u16, token: &str) -> Result<(), Error> {
    let start = begin_frame(buf, PackageType::Auth, id);
    msgpack::write_str(buf, token);
    finish_frame(buf, start)
}

/// Checks that `encoded` is exactly one MessagePack value of kind `want`.
fn check_value(encoded: &[u8], want: Kind, field: &'static str) -> Result<(), Error> {
    let expected = match want {
        Kind::Map => "one encoded MessagePack map",
        _ => "one encoded MessagePack array",
    };
    let wrong = || Error::WrongType { field, expected };
    let kind = Reader::new(encoded).peek_kind().map_err(|_| wrong())?;
    if kind != want {
        return Err(wrong());
    }
    msgpack::validate(encoded)
}

/// Appends a QUERY request: `[scope, code]`, or `[scope, code, vars]` when
/// `vars` (one encoded MessagePack map) is given.
///
/// ```
/// let mut buf = bytes::BytesMut::new();
/// thingsdb_protocol::request::encode_query(&mut buf, 0, "@t", "1 + 1;", None)?;
/// assert_eq!(buf.len(), 8 + 11);
/// // vars must be a map:
/// assert!(thingsdb_protocol::request::encode_query(&mut buf, 0, "@t", "x;", Some(&[0x90])).is_err());
/// # Ok::<(), thingsdb_protocol::Error>(())
/// ```
pub fn encode_query(
    buf: &mut BytesMut,
    id: u16,
    scope: &str,
    code: &str,
    vars: Option<&[u8]>,
) -> Result<(), Error> {
    encode_query_with(buf, id, scope, code, vars.map(put_encoded))
}

/// Appends a QUERY request whose vars map the caller writes straight into
/// the frame: `write_vars` appends exactly one MessagePack map to the
/// buffer (a serializer writing into it, say), and can fail with its own
/// error type. Without `write_vars` the payload is `[scope, code]`.
///
/// What `write_vars` wrote is checked to be one whole map; if not, or if
/// it fails, nothing is left in `buf` of this frame. This is the layout
/// [`encode_query`] uses too, so a client needs no copy of it:
///
/// ```
/// use bytes::BytesMut;
/// use thingsdb_protocol::{msgpack, request, Error};
/// let mut buf = BytesMut::new();
/// request::encode_query_with(&mut buf, 7, "//stuff", "a * b;", Some(|b: &mut BytesMut| {
///     msgpack::write_map_len(b, 2);
///     msgpack::write_str(b, "a");
///     msgpack::write_int(b, 6);
///     msgpack::write_str(b, "b");
///     msgpack::write_int(b, 7);
///     Ok::<(), Error>(())
/// }))?;
/// let mut same = BytesMut::new();
/// request::encode_query(&mut same, 7, "//stuff", "a * b;", Some(&[0x82, 0xa1, b'a', 6, 0xa1, b'b', 7]))?;
/// assert_eq!(buf, same);
///
/// // Not a map: refused, and the buffer is as it was.
/// let r = request::encode_query_with(&mut buf, 8, "@t", "x;", Some(|b: &mut BytesMut| {
///     msgpack::write_array_len(b, 0);
///     Ok::<(), Error>(())
/// }));
/// assert!(r.is_err());
/// assert_eq!(buf, same);
/// # Ok::<(), thingsdb_protocol::Error>(())
/// ```
pub fn encode_query_with<E, F>(
    buf: &mut BytesMut,
    id: u16,
    scope: &str,
    code: &str,
    write_vars: Option<F>,
) -> Result<(), E>
where
    E: From<Error>,
    F: FnOnce(&mut BytesMut) -> Result<(), E>,
{
    let start = begin_frame(buf, PackageType::Query, id);
    msgpack::write_array_len(buf, if write_vars.is_some() { 3 } else { 2 });
    msgpack::write_str(buf, scope);
    msgpack::write_str(buf, code);
    if let Some(write) = write_vars {
        write_checked(buf, start, write, &[Kind::Map], "vars")?;
    }
    Ok(finish_frame(buf, start)?)
}

/// Appends a RUN request: `[scope, procedure]`, `[scope, procedure, [args]]`
/// or `[scope, procedure, {args}]`.
pub fn encode_run(
    buf: &mut BytesMut,
    id: u16,
    scope: &str,
    procedure: &str,
    args: RunArgs<'_>,
) -> Result<(), Error> {
    let args = match args {
        RunArgs::None => None,
        RunArgs::Positional(a) => {
            check_value(a, Kind::Array, "args")?;
            Some(a)
        }
        RunArgs::Named(a) => {
            check_value(a, Kind::Map, "args")?;
            Some(a)
        }
    };
    encode_run_with(buf, id, scope, procedure, args.map(put_encoded))
}

/// Appends a RUN request whose arguments the caller writes straight into
/// the frame: `write_args` appends exactly one MessagePack array
/// (arguments by position) or map (arguments by name). Without it the
/// payload is `[scope, procedure]`. Checked and undone on failure as in
/// [`encode_query_with`].
///
/// ```
/// use bytes::BytesMut;
/// use thingsdb_protocol::{msgpack, request, Error, RunArgs};
/// let mut buf = BytesMut::new();
/// request::encode_run_with(&mut buf, 0, "@t", "add_one", Some(|b: &mut BytesMut| {
///     msgpack::write_array_len(b, 1);
///     msgpack::write_int(b, 41);
///     Ok::<(), Error>(())
/// }))?;
/// let mut same = BytesMut::new();
/// request::encode_run(&mut same, 0, "@t", "add_one", RunArgs::Positional(&[0x91, 41]))?;
/// assert_eq!(buf, same);
/// # Ok::<(), thingsdb_protocol::Error>(())
/// ```
pub fn encode_run_with<E, F>(
    buf: &mut BytesMut,
    id: u16,
    scope: &str,
    procedure: &str,
    write_args: Option<F>,
) -> Result<(), E>
where
    E: From<Error>,
    F: FnOnce(&mut BytesMut) -> Result<(), E>,
{
    let start = begin_frame(buf, PackageType::Run, id);
    msgpack::write_array_len(buf, if write_args.is_some() { 3 } else { 2 });
    msgpack::write_str(buf, scope);
    msgpack::write_str(buf, procedure);
    if let Some(write) = write_args {
        write_checked(buf, start, write, &[Kind::Array, Kind::Map], "args")?;
    }
    Ok(finish_frame(buf, start)?)
}

/// A writer that appends bytes already encoded.
fn put_encoded(v: &[u8]) -> impl FnOnce(&mut BytesMut) -> Result<(), Error> + '_ {
    move |b| {
        b.put_slice(v);
        Ok(())
    }
}

/// Runs `write`, then checks that it appended exactly one value of one of
/// the `kinds`; on any failure removes the begun frame from `buf`.
fn write_checked<E, F>(
    buf: &mut BytesMut,
    start: FrameStart,
    write: F,
    kinds: &[Kind],
    field: &'static str,
) -> Result<(), E>
where
    E: From<Error>,
    F: FnOnce(&mut BytesMut) -> Result<(), E>,
{
    let at = buf.len();
    let checked = match write(buf) {
        Ok(()) => {
            let written = &buf[at..];
            let kind = Reader::new(written).peek_kind().ok();
            match kind.filter(|k| kinds.contains(k)) {
                Some(k) => check_value(written, k, field).map_err(E::from),
                None if kinds.len() > 1 => Err(E::from(Error::WrongType {
                    field,
                    expected: "one encoded MessagePack array or map",
                })),
                None => check_value(written, kinds[0], field).map_err(E::from),
            }
        }
        Err(e) => Err(e),
    };
    if checked.is_err() {
        buf.truncate(start.offset);
    }
    checked
}

fn encode_rooms(
    buf: &mut BytesMut,
    package_type: PackageType,
    id: u16,
    scope: &str,
    rooms: &[Room],
) -> Result<(), Error> {
    let n = u32::try_from(rooms.len() + 1).map_err(|_| Error::EncodeTooLarge {
        len: rooms.len(),
        max: u32::MAX,
    })?;
    let start = begin_frame(buf, package_type, id);
    msgpack::write_array_len(buf, n);
    msgpack::write_str(buf, scope);
    for r in rooms {
        write_room(buf, r);
    }
    finish_frame(buf, start)
}

/// Appends a JOIN request: `[scope, room, room, ...]`.
pub fn encode_join(buf: &mut BytesMut, id: u16, scope: &str, rooms: &[Room]) -> Result<(), Error> {
    encode_rooms(buf, PackageType::Join, id, scope, rooms)
}

/// Appends a LEAVE request: `[scope, room, room, ...]`.
pub fn encode_leave(buf: &mut BytesMut, id: u16, scope: &str, rooms: &[Room]) -> Result<(), Error> {
    encode_rooms(buf, PackageType::Leave, id, scope, rooms)
}

fn encode_emit_as(
    buf: &mut BytesMut,
    package_type: PackageType,
    id: u16,
    scope: &str,
    room: &Room,
    event: &str,
    args: &[u8],
) -> Result<(), Error> {
    check_value(args, Kind::Array, "args")?;
    let mut r = Reader::new(args);
    let n = r.read_array_len()?;
    let elements = r.remaining();
    let total = u32::try_from(n + 3).map_err(|_| Error::EncodeTooLarge {
        len: n,
        max: u32::MAX,
    })?;
    let start = begin_frame(buf, package_type, id);
    msgpack::write_array_len(buf, total);
    msgpack::write_str(buf, scope);
    write_room(buf, room);
    msgpack::write_str(buf, event);
    buf.put_slice(elements);
    finish_frame(buf, start)
}

/// Appends an EMIT request: `[scope, room, event, args...]`. `args` is one
/// encoded MessagePack array whose elements are spread into the payload
/// (so `[]`, `0x90`, sends no arguments).
pub fn encode_emit(
    buf: &mut BytesMut,
    id: u16,
    scope: &str,
    room: &Room,
    event: &str,
    args: &[u8],
) -> Result<(), Error> {
    encode_emit_as(buf, PackageType::Emit, id, scope, room, event, args)
}

/// Appends an EMIT_PEER request: as [`encode_emit`], but the node does not
/// echo the event to the sending connection.
pub fn encode_emit_peer(
    buf: &mut BytesMut,
    id: u16,
    scope: &str,
    room: &Room,
    event: &str,
    args: &[u8],
) -> Result<(), Error> {
    encode_emit_as(buf, PackageType::EmitPeer, id, scope, room, event, args)
}

// ---------------------------------------------------------------- decoding

/// How a connection authenticates: what an AUTH request carries.
///
/// One type for both sides: the client's `Auth` is this type, and
/// [`Request::decode`] gives it back on the node's side. `Debug` never
/// shows the secret.
///
/// ```
/// use thingsdb_protocol::Credentials;
/// let a = Credentials::password("admin", "pass");
/// assert_eq!(format!("{a:?}"), r#"Password { user: "admin", password: "<redacted>" }"#);
/// assert_eq!(format!("{:?}", Credentials::token("secret")), r#"Token("<redacted>")"#);
///
/// let mut buf = bytes::BytesMut::new();
/// a.encode(&mut buf, 0)?;
/// assert_eq!(&buf[8..], b"\x92\xa5admin\xa4pass");
/// # Ok::<(), thingsdb_protocol::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Credentials {
    /// A user name and password: `[user, password]`.
    Password {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// A token, as made by `new_token()`: the payload is the token string.
    Token(String),
}

impl Credentials {
    /// A user name and password.
    pub fn password(user: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials::Password {
            user: user.into(),
            password: password.into(),
        }
    }

    /// A token.
    pub fn token(token: impl Into<String>) -> Credentials {
        Credentials::Token(token.into())
    }

    /// Appends the AUTH request that presents these credentials.
    pub fn encode(&self, buf: &mut BytesMut, id: u16) -> Result<(), Error> {
        match self {
            Credentials::Password { user, password } => encode_auth(buf, id, user, password),
            Credentials::Token(token) => encode_auth_token(buf, id, token),
        }
    }
}

impl core::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Credentials::Password { user, .. } => f
                .debug_struct("Password")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::Token(_) => f.debug_tuple("Token").field(&"<redacted>").finish(),
        }
    }
}

/// Arguments of a decoded RUN request; the encoded bytes are kept as they
/// came, sharing the frame's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodedRunArgs {
    /// No third element.
    None,
    /// An encoded array.
    Positional(Bytes),
    /// An encoded map.
    Named(Bytes),
}

/// A decoded request, as a node (or the testkit) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// PING.
    Ping,
    /// AUTH.
    Auth(Credentials),
    /// QUERY with its scope, code, and encoded vars map if any.
    Query {
        /// The scope, as sent.
        scope: String,
        /// The code.
        code: String,
        /// One encoded MessagePack map.
        vars: Option<Bytes>,
    },
    /// RUN.
    Run {
        /// The scope, as sent.
        scope: String,
        /// The procedure's name.
        procedure: String,
        /// The arguments.
        args: DecodedRunArgs,
    },
    /// JOIN.
    Join {
        /// The scope, as sent.
        scope: String,
        /// The rooms, in request order.
        rooms: Vec<Room>,
    },
    /// LEAVE.
    Leave {
        /// The scope, as sent.
        scope: String,
        /// The rooms, in request order.
        rooms: Vec<Room>,
    },
    /// EMIT or EMIT_PEER (`peers_only`).
    Emit {
        /// The scope, as sent.
        scope: String,
        /// The room.
        room: Room,
        /// The event name.
        event: String,
        /// The arguments, each one encoded value, sharing the payload.
        args: Vec<Bytes>,
        /// True for EMIT_PEER.
        peers_only: bool,
    },
}

fn slice_of(payload: &Bytes, part: &[u8]) -> Bytes {
    payload.slice_ref(part)
}

fn read_room(r: &mut Reader<'_>) -> Result<Room, Error> {
    match r.peek_kind()? {
        Kind::Int => read_id(r, "room", "a non-negative room id or a room name").map(Room::Id),
        Kind::Str => Ok(Room::Name(r.read_str()?.to_string())),
        Kind::Reserved => Err(Error::InvalidMsgpack("reserved marker 0xc1")),
        _ => Err(Error::WrongType {
            field: "room",
            expected: "a room id or a room name",
        }),
    }
}

fn read_head(r: &mut Reader<'_>, min: usize, what: &'static str) -> Result<(usize, String), Error> {
    expect_kind(r, Kind::Array, "payload", what)?;
    let n = r.read_array_len()?;
    if n < min {
        return Err(Error::WrongType {
            field: "payload",
            expected: what,
        });
    }
    let scope = read_string(r, "scope")?;
    Ok((n, scope))
}

fn read_string(r: &mut Reader<'_>, field: &'static str) -> Result<String, Error> {
    expect_kind(r, Kind::Str, field, "a string")?;
    r.read_str().map(ToString::to_string)
}

impl Request {
    /// Decodes a request frame. Payload parts that carry user values
    /// (vars, args) share the frame's payload.
    ///
    /// Errors mirror what a node refuses with `bad_data` (-53): for example
    /// RUN arguments spread instead of given as one array or map. Bytes
    /// after the payload's value are an error; [`Request::decode_lenient`]
    /// ignores them, as a node does.
    pub fn decode(frame: &Frame) -> Result<Request, Error> {
        Request::decode_as(frame, true)
    }

    /// Decodes a request frame as a node reads it: as [`Request::decode`],
    /// but bytes after the payload's first value are ignored.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use thingsdb_protocol::{Credentials, Frame, PackageType, Request};
    /// // ["admin", "pass"] and a stray byte after it.
    /// let p = Bytes::from_static(b"\x92\xa5admin\xa4pass\xc0");
    /// let f = Frame::new(PackageType::Auth, 0, p);
    /// assert!(Request::decode(&f).is_err());
    /// assert_eq!(
    ///     Request::decode_lenient(&f)?,
    ///     Request::Auth(Credentials::password("admin", "pass"))
    /// );
    /// # Ok::<(), thingsdb_protocol::Error>(())
    /// ```
    pub fn decode_lenient(frame: &Frame) -> Result<Request, Error> {
        Request::decode_as(frame, false)
    }

    fn decode_as(frame: &Frame, strict: bool) -> Result<Request, Error> {
        let t = frame.package_type()?;
        if t.direction() != Direction::Request {
            return Err(Error::UnexpectedPackageType {
                expected: "a request",
                got: t,
            });
        }
        let p = &frame.payload;
        let mut r = Reader::new(p);
        let req = match t {
            PackageType::Ping => {
                require_empty(t, p)?;
                return Ok(Request::Ping);
            }
            PackageType::Auth => match r.peek_kind()? {
                Kind::Str => Request::Auth(Credentials::Token(r.read_str()?.to_string())),
                Kind::Array if r.clone().read_array_len()? == 2 => {
                    r.read_array_len()?;
                    let user = read_string(&mut r, "user")?;
                    let password = read_string(&mut r, "password")?;
                    Request::Auth(Credentials::Password { user, password })
                }
                _ => {
                    return Err(Error::WrongType {
                        field: "payload",
                        expected: "[user, password] or a token string",
                    })
                }
            },
            PackageType::Query => {
                let (n, scope) = read_head(&mut r, 2, "[scope, code, vars?]")?;
                let code = read_string(&mut r, "code")?;
                let vars = match n {
                    2 => None,
                    3 => {
                        if r.peek_kind()? != Kind::Map {
                            return Err(Error::WrongType {
                                field: "vars",
                                expected: "a map",
                            });
                        }
                        Some(slice_of(p, r.skip_value()?))
                    }
                    _ => {
                        return Err(Error::WrongType {
                            field: "payload",
                            expected: "[scope, code, vars?]",
                        })
                    }
                };
                Request::Query { scope, code, vars }
            }
            PackageType::Run => {
                let (n, scope) = read_head(&mut r, 2, "[scope, procedure, args?]")?;
                let procedure = read_string(&mut r, "procedure")?;
                let args = match (n, if n > 2 { Some(r.peek_kind()?) } else { None }) {
                    (2, _) => DecodedRunArgs::None,
                    (3, Some(Kind::Array)) => {
                        DecodedRunArgs::Positional(slice_of(p, r.skip_value()?))
                    }
                    (3, Some(Kind::Map)) => DecodedRunArgs::Named(slice_of(p, r.skip_value()?)),
                    _ => {
                        return Err(Error::WrongType {
                            field: "args",
                            expected: "one array or one map",
                        })
                    }
                };
                Request::Run {
                    scope,
                    procedure,
                    args,
                }
            }
            PackageType::Join | PackageType::Leave => {
                let (n, scope) = read_head(&mut r, 1, "[scope, room, ...]")?;
                let mut rooms = Vec::with_capacity((n - 1).min(r.remaining().len()));
                for _ in 1..n {
                    rooms.push(read_room(&mut r)?);
                }
                if t == PackageType::Join {
                    Request::Join { scope, rooms }
                } else {
                    Request::Leave { scope, rooms }
                }
            }
            PackageType::Emit | PackageType::EmitPeer => {
                let (n, scope) = read_head(&mut r, 3, "[scope, room, event, args...]")?;
                let room = read_room(&mut r)?;
                let event = read_string(&mut r, "event")?;
                let mut args = Vec::with_capacity((n - 3).min(r.remaining().len()));
                for _ in 3..n {
                    args.push(slice_of(p, r.skip_value()?));
                }
                Request::Emit {
                    scope,
                    room,
                    event,
                    args,
                    peers_only: t == PackageType::EmitPeer,
                }
            }
            PackageType::DeprecatedWatch | PackageType::DeprecatedUnwatch => {
                return Err(Error::UnexpectedPackageType {
                    expected: "a supported request",
                    got: t,
                })
            }
            _ => unreachable_request(t)?,
        };
        if strict && !r.is_empty() {
            return Err(Error::InvalidMsgpack("trailing bytes after the payload"));
        }
        Ok(req)
    }
}

// Non-request types are refused above; kept as an error, not a panic.
fn unreachable_request(t: PackageType) -> Result<Request, Error> {
    Err(Error::UnexpectedPackageType {
        expected: "a request",
        got: t,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(buf: &BytesMut) -> Request {
        let f = Frame::parse(Bytes::copy_from_slice(buf), MAX_PAYLOAD).unwrap();
        Request::decode(&f).unwrap()
    }

    #[test]
    fn every_encoder_decodes_back() {
        let mut b = BytesMut::new();
        encode_ping(&mut b, 1);
        assert_eq!(decode(&b), Request::Ping);

        b.clear();
        encode_auth(&mut b, 1, "admin", "pass").unwrap();
        assert_eq!(
            decode(&b),
            Request::Auth(Credentials::Password {
                user: "admin".into(),
                password: "pass".into()
            })
        );

        b.clear();
        encode_auth_token(&mut b, 1, "tok").unwrap();
        assert_eq!(decode(&b), Request::Auth(Credentials::Token("tok".into())));

        b.clear();
        encode_run(&mut b, 1, "@t", "p", RunArgs::Named(&[0x81, 0xa1, b'x', 1])).unwrap();
        assert_eq!(
            decode(&b),
            Request::Run {
                scope: "@t".into(),
                procedure: "p".into(),
                args: DecodedRunArgs::Named(Bytes::from_static(&[0x81, 0xa1, b'x', 1]))
            }
        );

        b.clear();
        encode_leave(&mut b, 1, "//stuff", &[Room::Id(1), Room::from("r")]).unwrap();
        assert_eq!(
            decode(&b),
            Request::Leave {
                scope: "//stuff".into(),
                rooms: alloc::vec![Room::Id(1), Room::Name("r".into())]
            }
        );

        b.clear();
        encode_emit_peer(
            &mut b,
            1,
            "//stuff",
            &Room::Id(3),
            "ev",
            &[0x92, 0x01, 0xc0],
        )
        .unwrap();
        assert_eq!(
            decode(&b),
            Request::Emit {
                scope: "//stuff".into(),
                room: Room::Id(3),
                event: "ev".into(),
                args: alloc::vec![Bytes::from_static(&[1]), Bytes::from_static(&[0xc0])],
                peers_only: true
            }
        );
    }

    #[test]
    fn encoders_refuse_wrong_value_shapes() {
        let mut b = BytesMut::new();
        assert!(encode_run(&mut b, 0, "@t", "p", RunArgs::Positional(&[0x80])).is_err());
        assert!(encode_run(&mut b, 0, "@t", "p", RunArgs::Named(&[0x90])).is_err());
        assert!(encode_run(&mut b, 0, "@t", "p", RunArgs::Positional(&[0x91])).is_err());
        assert!(encode_emit(&mut b, 0, "@t", &Room::Id(1), "e", &[0x01]).is_err());
        assert!(encode_query(&mut b, 0, "@t", "x", Some(&[])).is_err());
        assert!(b.is_empty(), "a refused request leaves nothing behind");
    }

    #[test]
    fn spread_run_arguments_are_refused_like_a_node_does() {
        // The public docs' ["@t", "add_one", 41].
        let mut p = alloc::vec::Vec::new();
        msgpack::write_array_len(&mut p, 3);
        msgpack::write_str(&mut p, "@t");
        msgpack::write_str(&mut p, "add_one");
        msgpack::write_int(&mut p, 41);
        let f = Frame::new(PackageType::Run, 0, Bytes::from(p));
        assert!(matches!(
            Request::decode(&f),
            Err(Error::WrongType { field: "args", .. })
        ));
    }

    #[test]
    fn finish_frame_refuses_oversized_payloads_and_rolls_back() {
        let mut b = BytesMut::new();
        b.put_slice(b"keep");
        let s = begin_frame(&mut b, PackageType::Query, 0);
        b.resize(4 + HEADER_LEN + MAX_PAYLOAD as usize + 1, 0);
        assert!(matches!(
            finish_frame(&mut b, s),
            Err(Error::EncodeTooLarge { .. })
        ));
        assert_eq!(&b[..], b"keep");
    }

    #[test]
    fn credentials_debug_is_redacted() {
        let c = Credentials::Password {
            user: "admin".into(),
            password: "secret".into(),
        };
        assert!(!alloc::format!("{c:?}").contains("secret"));
        assert!(!alloc::format!("{:?}", Credentials::Token("tk".into())).contains("tk\""));
    }
}
