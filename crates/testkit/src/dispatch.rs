//! What the node does with each request, mirroring the node's source
//! (`ti/clients.c`, `ti/collection.c`, `ti/room.c`, `ti/query.c`).

use bytes::{Bytes, BytesMut};
use rmpv::Value;
use thingsdb_protocol::{
    decode_value, msgpack, response, Credentials, EmitEvent, ErrorCode, Event, EventRoom, Frame,
    PackageType, Request, HEADER_LEN,
};

use crate::reply::{ArgValues, Args, Query, Reply};
use thingsdb_protocol::scope::is_valid_name;

use crate::reply::{parse_scope, Scope};
use crate::state::{encode_event, Shared};

const DOC_LISTENING: &str = "; see https://docs.thingsdb.io/v1/listening";
const DOC_NAMES: &str = "; see https://docs.thingsdb.io/v1/overview/names";
const DOC_PROCEDURES_API: &str = "; see https://docs.thingsdb.io/v1/procedures-api";
const DOC_SOCKET_QUERY: &str = "; see https://docs.thingsdb.io/v1/connect/socket/query";
const NOT_AUTHENTICATED: &str = "connection is not authenticated";
const BAD_SCOPE_REQUEST: &str =
    "expecting the request to contain an array with as scope as first item";

/// The result of handling one request.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Packages for this connection that a node writes before the reply
    /// (ON_LEAVE, the sender's own ON_EMIT).
    pub before: Vec<Bytes>,
    /// The reply, if the request gets one.
    pub reply: Option<Frame>,
    /// Packages for this connection that come after the reply (ON_JOIN).
    pub after: Vec<Bytes>,
}

impl Outcome {
    fn reply(f: Frame) -> Outcome {
        Outcome {
            reply: Some(f),
            ..Outcome::default()
        }
    }
}

fn empty(t: PackageType, id: u16) -> Frame {
    Frame::new(t, id, Bytes::new())
}

/// An ERROR frame, laid out by the protocol crate.
pub(crate) fn error_frame(id: u16, code: ErrorCode, msg: &str) -> Frame {
    let mut b = BytesMut::new();
    match response::encode_error(&mut b, id, code, msg) {
        Ok(()) => Frame::new(PackageType::Error, id, b.split_off(HEADER_LEN).freeze()),
        // A message over the 1 GiB payload limit: only a handler could
        // make one; it gets an empty ERROR.
        Err(_) => Frame::new(PackageType::Error, id, Bytes::new()),
    }
}

fn data_frame(id: u16, payload: Bytes) -> Frame {
    Frame::new(PackageType::Data, id, payload)
}

pub(crate) fn reply_frame(shared: &Shared, id: u16, r: &Reply) -> Frame {
    match r {
        Reply::Error { code, message } => error_frame(id, *code, message),
        other => match other.data_bytes() {
            Some(b) if b.len() > shared.config.result_size_limit => error_frame(
                id,
                ErrorCode::ResultTooLarge,
                "too much data to return; try to use a lower `deep` value and/or `wrap` things to reduce the data size; see https://docs.thingsdb.io/v1/collection-api/wrap",
            ),
            Some(b) => data_frame(id, b),
            None => error_frame(id, ErrorCode::Internal, "internal error"),
        },
    }
}

/// The first MessagePack value of a payload, read with the protocol
/// crate's bounds-checked reader before `rmpv` sees it. Bytes after it are
/// ignored, as a node ignores them.
fn first_value(p: &[u8]) -> Option<Value> {
    let mut r = msgpack::Reader::new(p);
    let s = r.skip_value().ok()?;
    decode_value(s).ok()
}

/// `[scope, ...]`: the array's items and the parsed scope, or the node's
/// error.
fn scoped(payload: &[u8]) -> Result<(Vec<Value>, String, Scope), Reply> {
    let bad = || Reply::error(ErrorCode::BadData, BAD_SCOPE_REQUEST);
    let Some(Value::Array(items)) = first_value(payload) else {
        return Err(bad());
    };
    let Some(scope_str) = items.first().and_then(|v| v.as_str()).map(str::to_string) else {
        return Err(bad());
    };
    let scope = parse_scope(&scope_str)?;
    Ok((items, scope_str, scope))
}

fn collection_of(shared: &Shared, scope: &Scope) -> Result<String, Reply> {
    match scope {
        Scope::Collection(c) => {
            if shared.lock().collections.contains(c) {
                Ok(c.clone())
            } else {
                Err(Reply::error(
                    ErrorCode::Lookup,
                    format!("collection `{c}` not found"),
                ))
            }
        }
        _ => Err(Reply::error(
            ErrorCode::BadData,
            "expecting a `collection` scope",
        )),
    }
}

/// Checks that a scope exists: the collection is known, the node is this
/// one.
fn check_scope(shared: &Shared, scope: &Scope) -> Result<(), Reply> {
    match scope {
        Scope::Collection(_) => collection_of(shared, scope).map(|_| ()),
        Scope::Node(Some(n)) if *n != shared.config.node_id => Err(Reply::error(
            ErrorCode::Lookup,
            format!("`node:{n}` does not exist"),
        )),
        _ => Ok(()),
    }
}

/// Handles one request frame of connection `conn`.
pub(crate) fn handle(shared: &Shared, conn: u64, frame: &Frame) -> Outcome {
    let id = frame.id;
    let Ok(t) = frame.package_type() else {
        // A node logs "unexpected package type" and does not answer.
        return Outcome::default();
    };
    let authed = shared
        .lock()
        .conns
        .get(&conn)
        .is_some_and(|c| c.user.is_some());
    let needs_auth = matches!(
        t,
        PackageType::Query
            | PackageType::Run
            | PackageType::Join
            | PackageType::Leave
            | PackageType::Emit
            | PackageType::EmitPeer
    );
    if needs_auth && !authed {
        shared.lock().counters.not_authenticated += 1;
        return Outcome::reply(error_frame(id, ErrorCode::Auth, NOT_AUTHENTICATED));
    }
    match t {
        PackageType::Ping => Outcome::reply(empty(PackageType::Pong, id)),
        // A node answers the deprecated watch requests with OK.
        PackageType::DeprecatedWatch | PackageType::DeprecatedUnwatch => {
            Outcome::reply(empty(PackageType::Ok, id))
        }
        PackageType::Auth => Outcome::reply(auth(shared, conn, id, frame)),
        PackageType::Query => Outcome::reply(match query(shared, conn, &frame.payload) {
            Ok(r) | Err(r) => reply_frame(shared, id, &r),
        }),
        PackageType::Run => Outcome::reply(match run(shared, conn, &frame.payload) {
            Ok(r) | Err(r) => reply_frame(shared, id, &r),
        }),
        PackageType::Join => join_leave(shared, conn, id, &frame.payload, true),
        PackageType::Leave => join_leave(shared, conn, id, &frame.payload, false),
        PackageType::Emit => emit(shared, conn, id, &frame.payload, false),
        PackageType::EmitPeer => emit(shared, conn, id, &frame.payload, true),
        // Responses and events sent to a node: logged, not answered.
        _ => Outcome::default(),
    }
}

fn auth(shared: &Shared, conn: u64, id: u16, frame: &Frame) -> Frame {
    let mut st = shared.lock();
    // The protocol crate's decoding, lenient as a node is about bytes after
    // the value.
    let user = match Request::decode_lenient(frame) {
        Ok(Request::Auth(Credentials::Token(tok))) => {
            st.tokens.get(&tok).cloned().ok_or("invalid token")
        }
        Ok(Request::Auth(Credentials::Password { user, password })) => {
            if st.users.get(&user).is_some_and(|pw| *pw == password) {
                Ok(user)
            } else {
                Err("invalid username or password")
            }
        }
        // What the protocol refuses but a node reads as strings (it does
        // not check UTF-8): such a token or name matches none.
        Err(_) => match first_value(&frame.payload) {
            Some(Value::String(_)) => Err("invalid token"),
            Some(Value::Array(a)) if a.len() == 2 && a.iter().all(Value::is_str) => {
                Err("invalid username or password")
            }
            _ => {
                st.counters.auth_failed += 1;
                return error_frame(id, ErrorCode::BadData, "invalid authentication request");
            }
        },
        Ok(_) => {
            st.counters.auth_failed += 1;
            return error_frame(id, ErrorCode::BadData, "invalid authentication request");
        }
    };
    match user {
        Ok(u) => {
            st.counters.auth_ok += 1;
            if let Some(c) = st.conns.get_mut(&conn) {
                c.user = Some(u);
            }
            empty(PackageType::Ok, id)
        }
        Err(msg) => {
            st.counters.auth_failed += 1;
            error_frame(id, ErrorCode::Auth, msg)
        }
    }
}

pub(crate) fn query(shared: &Shared, conn: u64, payload: &[u8]) -> Result<Reply, Reply> {
    let (items, scope_str, scope) = scoped(payload)?;
    if let Scope::Node(Some(n)) = scope {
        check_scope(shared, &Scope::Node(Some(n)))?;
    }
    let Some(code) = items.get(1).and_then(|v| v.as_str()) else {
        return Err(Reply::error(
            ErrorCode::Type,
            format!(
                "expecting the code in a `query` request to be of type `string`{DOC_SOCKET_QUERY}"
            ),
        ));
    };
    check_scope(shared, &scope)?;
    let vars = match items.get(2) {
        None => Vec::new(),
        Some(Value::Map(m)) => {
            let mut vars = Vec::with_capacity(m.len());
            for (k, v) in m {
                match k.as_str() {
                    Some(k) if is_valid_name(k) => vars.push((k.to_string(), v.clone())),
                    _ => {
                        return Err(Reply::error(
                            ErrorCode::Value,
                            format!("each argument name in a `query` request must follow the naming rules{DOC_NAMES}"),
                        ))
                    }
                }
            }
            vars
        }
        Some(_) => {
            return Err(Reply::error(
                ErrorCode::Type,
                format!("expecting variable for a `query` to be of type `map`{DOC_SOCKET_QUERY}"),
            ))
        }
    };
    let q = Query {
        scope_str,
        scope,
        code: code.to_string(),
        vars,
        connection: conn,
        node: shared.config.node_id,
    };
    let handler = shared.lock().query_handler.clone();
    Ok(match handler {
        Some(h) => h(&q),
        None => no_handler(&q),
    })
}

/// A query without a handler: evaluated with the `eval` feature, refused
/// without it.
#[cfg(feature = "eval")]
fn no_handler(q: &Query) -> Reply {
    q.evaluate()
}

/// A query without a handler: evaluated with the `eval` feature, refused
/// without it.
#[cfg(not(feature = "eval"))]
fn no_handler(_: &Query) -> Reply {
    Reply::error(
        ErrorCode::Operation,
        "the testkit has no query handler: register one with TestNode::on_query, or turn on the testkit's `eval` feature for simple arithmetic",
    )
}

pub(crate) fn run(shared: &Shared, conn: u64, payload: &[u8]) -> Result<Reply, Reply> {
    let (items, scope_str, scope) = scoped(payload)?;
    let Some(name) = items.get(1).and_then(|v| v.as_str()) else {
        return Err(Reply::error(
            ErrorCode::Type,
            format!("expecting the array in a `run` request to have a second value of type `str`{DOC_PROCEDURES_API}"),
        ));
    };
    if let Scope::Node(_) = scope {
        return Err(Reply::error(
            ErrorCode::BadData,
            format!("cannot make a `run` request to the `node` scope{DOC_PROCEDURES_API}"),
        ));
    }
    check_scope(shared, &scope)?;
    let Some(proc_fn) = shared.lock().procedures.get(name).cloned() else {
        return Err(Reply::error(
            ErrorCode::Lookup,
            format!("procedure `{name}` not found"),
        ));
    };
    let values = match items.get(2) {
        None | Some(Value::Nil) => ArgValues::None,
        Some(Value::Array(a)) => ArgValues::Positional(a.clone()),
        Some(Value::Map(m)) => {
            let mut named = Vec::with_capacity(m.len());
            for (k, v) in m {
                match k.as_str() {
                    Some(k) => named.push((k.to_string(), v.clone())),
                    None => {
                        return Err(Reply::error(
                            ErrorCode::Value,
                            format!(
                                "arguments keys must be of type `str` but got type `{}` instead",
                                mp_type_name(k)
                            ),
                        ))
                    }
                }
            }
            ArgValues::Named(named)
        }
        Some(_) => {
            return Err(Reply::error(
                ErrorCode::BadData,
                "run expects arguments to be of type map or array; no arguments (or nil) is also accepted as a valid request",
            ))
        }
    };
    let args = Args {
        scope_str,
        scope,
        procedure: name.to_string(),
        values,
        connection: conn,
    };
    Ok(proc_fn(&args))
}

fn mp_type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "bool",
        Value::Integer(_) => "integer",
        Value::F32(_) | Value::F64(_) => "float",
        Value::String(_) => "string",
        Value::Binary(_) => "binary",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Ext(..) => "extension",
    }
}

fn room_event(join: bool, scope: &str, id: u64) -> Option<Bytes> {
    let r = EventRoom {
        scope: Some(scope.to_string()),
        id,
    };
    encode_event(&if join {
        Event::Join(r)
    } else {
        Event::Leave(r)
    })
}

fn join_leave(shared: &Shared, conn: u64, id: u16, payload: &[u8], join: bool) -> Outcome {
    let err = |r: Reply| Outcome::reply(reply_frame(shared, id, &r));
    let (items, _, scope) = match scoped(payload) {
        Ok(x) => x,
        Err(r) => return err(r),
    };
    let collection = match collection_of(shared, &scope) {
        Ok(c) => c,
        Err(r) => return err(r),
    };
    let scope_name = Scope::Collection(collection.clone()).to_string();
    let mut out = Outcome::default();
    let mut result = Vec::with_capacity(items.len().saturating_sub(1));
    let mut failed = None;
    {
        let mut st = shared.lock();
        for item in &items[1..] {
            let room = match item {
                Value::String(s) => s.as_str().and_then(|n| st.room_by_name(&collection, n)),
                Value::Integer(i) => {
                    // A node casts a negative id to u64; it then finds nothing.
                    let rid = i.as_u64().or_else(|| i.as_i64().map(|v| v as u64));
                    rid.and_then(|r| st.room_by_id(&collection, r))
                }
                _ => {
                    failed = Some(if join {
                        format!("join request only accepts integer room id's or string room names{DOC_LISTENING}")
                    } else {
                        format!("leave request only accepts integer room id's or string room names{DOC_LISTENING}")
                    });
                    break;
                }
            };
            let Some(rid) = room else {
                result.push(Value::Nil);
                continue;
            };
            result.push(Value::from(rid));
            let Some(r) = st.rooms.get_mut(&(collection.clone(), rid)) else {
                continue;
            };
            if join {
                if r.joined.insert(conn) {
                    out.after.extend(room_event(true, &scope_name, rid));
                }
            } else if r.joined.remove(&conn) {
                out.before.extend(room_event(false, &scope_name, rid));
            }
        }
        let n = (out.before.len() + out.after.len()) as u64;
        st.counters.events_sent += n;
    }
    if let Some(msg) = failed {
        // Rooms handled before the bad item stay joined (or left), as on a
        // node; the reply is the error.
        out.reply = Some(error_frame(id, ErrorCode::BadData, &msg));
        return out;
    }
    let mut p = BytesMut::new();
    thingsdb_protocol::encode_value(&mut p, &Value::Array(result));
    out.reply = Some(data_frame(id, p.freeze()));
    out
}

fn emit(shared: &Shared, conn: u64, id: u16, payload: &[u8], peers_only: bool) -> Outcome {
    let err = |r: Reply| Outcome::reply(reply_frame(shared, id, &r));
    let (items, _, scope) = match scoped(payload) {
        Ok(x) => x,
        Err(r) => return err(r),
    };
    let collection = match collection_of(shared, &scope) {
        Ok(c) => c,
        Err(r) => return err(r),
    };
    let (Some(room), Some(event)) = (items.get(1), items.get(2).and_then(|v| v.as_str())) else {
        return err(Reply::error(ErrorCode::BadData, "invalid emit request"));
    };
    let mut st = shared.lock();
    let rid = match room {
        Value::String(s) => {
            let name = s.as_str().unwrap_or("");
            match st.room_by_name(&collection, name) {
                Some(r) => r,
                None if is_valid_name(name) => {
                    drop(st);
                    return err(Reply::error(
                        ErrorCode::Lookup,
                        format!("collection `{collection}` has no `room` with name `{name}`"),
                    ));
                }
                None => {
                    drop(st);
                    return err(Reply::error(
                        ErrorCode::Value,
                        format!("room name must follow the naming rules{DOC_NAMES}"),
                    ));
                }
            }
        }
        Value::Integer(i) if i.as_u64().is_some() => {
            let n = i.as_u64().unwrap_or(0);
            match st.room_by_id(&collection, n) {
                Some(r) => r,
                None => {
                    drop(st);
                    return err(Reply::error(
                        ErrorCode::Lookup,
                        format!("collection `{collection}` has no `room` with id {n}"),
                    ));
                }
            }
        }
        _ => {
            drop(st);
            return err(Reply::error(
                ErrorCode::BadData,
                format!("emit request only accepts an integer room id or string room name{DOC_LISTENING}"),
            ));
        }
    };
    // The arguments are passed through as sent.
    let mut args = BytesMut::new();
    msgpack::write_array_len(&mut args, (items.len() - 3) as u32);
    for v in &items[3..] {
        thingsdb_protocol::encode_value(&mut args, v);
    }
    let key = (collection.clone(), rid);
    let ev = Event::Emit(EmitEvent {
        scope: Some(Scope::Collection(collection).to_string()),
        id: rid,
        event: event.to_string(),
        args: args.freeze(),
    });
    let mut out = Outcome::reply(empty(PackageType::Ok, id));
    if let Some(pkg) = encode_event(&ev) {
        let joined: Vec<u64> = st
            .rooms
            .get(&key)
            .map(|r| r.joined.iter().copied().collect())
            .unwrap_or_default();
        for c in joined {
            if c == conn {
                if !peers_only {
                    // A node writes the sender's own ON_EMIT before the OK.
                    out.before.push(pkg.clone());
                    st.counters.events_sent += 1;
                }
            } else {
                st.send_to(c, pkg.clone());
            }
        }
    }
    out
}
