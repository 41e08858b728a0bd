//! Events: packages a node sends unasked (id 65535).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use bytes::{Bytes, BytesMut};

use crate::error::Error;
use crate::frame::Frame;
use crate::header::EVENT_ID;
use crate::msgpack::{self, expect_kind, read_id, Kind, Reader};
use crate::package_type::{Direction, PackageType};
use crate::request::{begin_frame, finish_frame};

/// A node's status as reported by NODE_STATUS.
///
/// Unknown strings are kept in [`NodeStatus::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    /// `AWAY_SOON`: the node will soon go into away mode.
    AwaySoon,
    /// `AWAY`: the node is in away mode (storing its changes).
    Away,
    /// `READY`: the node serves requests.
    Ready,
    /// `SHUTTING_DOWN`: the node is going away; move to another node.
    ShuttingDown,
    /// `OFFLINE`: the node is offline.
    Offline,
    /// Any other status string.
    Other(String),
}

impl NodeStatus {
    /// The status for a string as the node sends it.
    pub fn parse(s: &str) -> NodeStatus {
        match s {
            "AWAY_SOON" => NodeStatus::AwaySoon,
            "AWAY" => NodeStatus::Away,
            "READY" => NodeStatus::Ready,
            "SHUTTING_DOWN" => NodeStatus::ShuttingDown,
            "OFFLINE" => NodeStatus::Offline,
            other => NodeStatus::Other(other.to_string()),
        }
    }

    /// The string as the node sends it.
    pub fn as_str(&self) -> &str {
        match self {
            NodeStatus::AwaySoon => "AWAY_SOON",
            NodeStatus::Away => "AWAY",
            NodeStatus::Ready => "READY",
            NodeStatus::ShuttingDown => "SHUTTING_DOWN",
            NodeStatus::Offline => "OFFLINE",
            NodeStatus::Other(s) => s,
        }
    }
}

impl core::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// ON_JOIN, ON_LEAVE and ON_DELETE: which room, in which scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventRoom {
    /// The scope as the node names it (`@collection:stuff`); a node always
    /// sends it, the public docs do not show it.
    pub scope: Option<String>,
    /// The room id.
    pub id: u64,
}

/// ON_EMIT: an event emitted in a joined room.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmitEvent {
    /// The scope as the node names it.
    pub scope: Option<String>,
    /// The room id.
    pub id: u64,
    /// The event name.
    pub event: String,
    /// The arguments: one encoded MessagePack array, sharing the payload.
    pub args: Bytes,
}

impl EmitEvent {
    /// The arguments, each as its own encoded MessagePack value.
    pub fn arg_values(&self) -> Result<Vec<Bytes>, Error> {
        let mut r = Reader::new(&self.args);
        let n = r.read_array_len()?;
        let mut out = Vec::with_capacity(n.min(self.args.len()));
        for _ in 0..n {
            out.push(self.args.slice_ref(r.skip_value()?));
        }
        Ok(out)
    }
}

/// A decoded event package.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// NODE_STATUS: `{id, status}`.
    NodeStatus {
        /// The node's id in its cluster.
        id: u64,
        /// Its new status.
        status: NodeStatus,
    },
    /// WARN: `{warn_code, warn_msg}`.
    Warn {
        /// The warning code (2 for a message from `log()`).
        code: i64,
        /// The message.
        message: String,
    },
    /// ON_JOIN.
    Join(EventRoom),
    /// ON_LEAVE.
    Leave(EventRoom),
    /// ON_DELETE.
    Delete(EventRoom),
    /// ON_EMIT.
    Emit(EmitEvent),
}

/// The keys an event map may carry, read in any order; others are skipped.
#[derive(Default)]
struct Fields<'a> {
    scope: Option<&'a str>,
    id: Option<u64>,
    status: Option<&'a str>,
    warn_code: Option<i64>,
    warn_msg: Option<&'a str>,
    event: Option<&'a str>,
    args: Option<&'a [u8]>,
}

fn wrong(field: &'static str, expected: &'static str) -> Error {
    Error::WrongType { field, expected }
}

// Each value's kind is checked before it is read: malformed bytes are
// `InvalidMsgpack`, a well-formed value of another kind is `WrongType`.
fn string<'a>(r: &mut Reader<'a>, field: &'static str) -> Result<&'a str, Error> {
    expect_kind(r, Kind::Str, field, "a string")?;
    r.read_str()
}

fn int(r: &mut Reader<'_>, field: &'static str) -> Result<i64, Error> {
    expect_kind(r, Kind::Int, field, "an integer")?;
    r.read_int()
}

impl<'a> Fields<'a> {
    fn read(payload: &'a [u8]) -> Result<Fields<'a>, Error> {
        let mut r = Reader::new(payload);
        expect_kind(&r, Kind::Map, "payload", "a map")?;
        let n = r.read_map_len()?;
        let mut f = Fields::default();
        for _ in 0..n {
            let key = string(&mut r, "key")?;
            match key {
                "scope" => f.scope = Some(string(&mut r, "scope")?),
                "id" => f.id = Some(read_id(&mut r, "id", "a non-negative integer")?),
                "status" => f.status = Some(string(&mut r, "status")?),
                "warn_code" => f.warn_code = Some(int(&mut r, "warn_code")?),
                "warn_msg" => f.warn_msg = Some(string(&mut r, "warn_msg")?),
                "event" => f.event = Some(string(&mut r, "event")?),
                "args" => {
                    expect_kind(&r, Kind::Array, "args", "an array")?;
                    f.args = Some(r.skip_value()?);
                }
                _ => {
                    r.skip_value()?;
                }
            }
        }
        if !r.is_empty() {
            return Err(Error::InvalidMsgpack("trailing bytes after the payload"));
        }
        Ok(f)
    }

    fn room_id(&self) -> Result<u64, Error> {
        self.id.ok_or(Error::MissingKey("id"))
    }

    fn room(&self) -> Result<EventRoom, Error> {
        Ok(EventRoom {
            scope: self.scope.map(ToString::to_string),
            id: self.room_id()?,
        })
    }
}

impl Event {
    /// Decodes an event frame. Keys may come in any order; extra keys are
    /// ignored; a missing key is [`Error::MissingKey`].
    ///
    /// ```
    /// use bytes::Bytes;
    /// use thingsdb_protocol::{Event, Frame, PackageType, EventRoom};
    /// let f = Frame::new(PackageType::OnJoin, 0xffff, Bytes::from_static(&[0x81, 0xa2, b'i', b'd', 0x11]));
    /// assert_eq!(Event::decode(&f)?, Event::Join(EventRoom { scope: None, id: 17 }));
    /// # Ok::<(), thingsdb_protocol::Error>(())
    /// ```
    pub fn decode(frame: &Frame) -> Result<Event, Error> {
        let t = frame.package_type()?;
        if t.direction() != Direction::Event {
            return Err(Error::UnexpectedPackageType {
                expected: "an event",
                got: t,
            });
        }
        let f = Fields::read(&frame.payload)?;
        Ok(match t {
            PackageType::NodeStatus => Event::NodeStatus {
                id: f.room_id()?,
                status: NodeStatus::parse(f.status.ok_or(Error::MissingKey("status"))?),
            },
            PackageType::Warn => Event::Warn {
                code: f.warn_code.ok_or(Error::MissingKey("warn_code"))?,
                message: f.warn_msg.ok_or(Error::MissingKey("warn_msg"))?.to_string(),
            },
            PackageType::OnJoin => Event::Join(f.room()?),
            PackageType::OnLeave => Event::Leave(f.room()?),
            PackageType::OnDelete => Event::Delete(f.room()?),
            _ => Event::Emit(EmitEvent {
                scope: f.scope.map(ToString::to_string),
                id: f.room_id()?,
                event: f.event.ok_or(Error::MissingKey("event"))?.to_string(),
                args: frame
                    .payload
                    .slice_ref(f.args.ok_or(Error::MissingKey("args"))?),
            }),
        })
    }

    /// The package type this event travels as.
    pub fn package_type(&self) -> PackageType {
        match self {
            Event::NodeStatus { .. } => PackageType::NodeStatus,
            Event::Warn { .. } => PackageType::Warn,
            Event::Join(_) => PackageType::OnJoin,
            Event::Leave(_) => PackageType::OnLeave,
            Event::Delete(_) => PackageType::OnDelete,
            Event::Emit(_) => PackageType::OnEmit,
        }
    }

    /// Appends this event as a frame with id 65535 (node side). Keys are
    /// written in the order a node writes them, `scope` included when set.
    ///
    /// The args of an [`Event::Emit`] must be one encoded array.
    pub fn encode(&self, buf: &mut BytesMut) -> Result<(), Error> {
        let start = begin_frame(buf, self.package_type(), EVENT_ID);
        match self {
            Event::NodeStatus { id, status } => {
                msgpack::write_map_len(buf, 2);
                msgpack::write_str(buf, "id");
                msgpack::write_uint(buf, *id);
                msgpack::write_str(buf, "status");
                msgpack::write_str(buf, status.as_str());
            }
            Event::Warn { code, message } => {
                msgpack::write_map_len(buf, 2);
                msgpack::write_str(buf, "warn_code");
                msgpack::write_int(buf, *code);
                msgpack::write_str(buf, "warn_msg");
                msgpack::write_str(buf, message);
            }
            Event::Join(r) | Event::Leave(r) | Event::Delete(r) => {
                msgpack::write_map_len(buf, 1 + u32::from(r.scope.is_some()));
                write_scope(buf, r.scope.as_deref());
                msgpack::write_str(buf, "id");
                msgpack::write_uint(buf, r.id);
            }
            Event::Emit(e) => {
                if Reader::new(&e.args).peek_kind() != Ok(Kind::Array)
                    || msgpack::validate(&e.args).is_err()
                {
                    buf.truncate(buf.len() - crate::HEADER_LEN);
                    return Err(wrong("args", "one encoded MessagePack array"));
                }
                msgpack::write_map_len(buf, 3 + u32::from(e.scope.is_some()));
                write_scope(buf, e.scope.as_deref());
                msgpack::write_str(buf, "id");
                msgpack::write_uint(buf, e.id);
                msgpack::write_str(buf, "event");
                msgpack::write_str(buf, &e.event);
                msgpack::write_str(buf, "args");
                bytes::BufMut::put_slice(buf, &e.args);
            }
        }
        finish_frame(buf, start)
    }
}

fn write_scope(buf: &mut BytesMut, scope: Option<&str>) {
    if let Some(s) = scope {
        msgpack::write_str(buf, "scope");
        msgpack::write_str(buf, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Decoder, MAX_PAYLOAD};

    fn roundtrip(e: Event) {
        let mut b = BytesMut::new();
        e.encode(&mut b).unwrap();
        let f = Frame::parse(b.freeze(), MAX_PAYLOAD).unwrap();
        assert_eq!(f.id, EVENT_ID);
        assert_eq!(Event::decode(&f).unwrap(), e);
    }

    #[test]
    fn every_event_roundtrips() {
        roundtrip(Event::NodeStatus {
            id: 2,
            status: NodeStatus::Other("SYNCHRONIZING".into()),
        });
        roundtrip(Event::Warn {
            code: 2,
            message: "hi".into(),
        });
        roundtrip(Event::Join(EventRoom {
            scope: Some("@collection:stuff".into()),
            id: 17,
        }));
        roundtrip(Event::Delete(EventRoom { scope: None, id: 1 }));
        roundtrip(Event::Emit(EmitEvent {
            scope: Some("@collection:stuff".into()),
            id: 9,
            event: "msg".into(),
            args: Bytes::from_static(&[0x92, 0x01, 0xa1, b'x']),
        }));
    }

    #[test]
    fn emit_args_split_into_values() {
        let e = EmitEvent {
            scope: None,
            id: 1,
            event: "e".into(),
            args: Bytes::from_static(&[0x92, 0x01, 0xa1, b'x']),
        };
        let v = e.arg_values().unwrap();
        assert_eq!(
            v,
            [Bytes::from_static(&[1]), Bytes::from_static(&[0xa1, b'x'])]
        );
    }

    #[test]
    fn missing_and_mistyped_keys_are_errors() {
        let f = |t, p: &'static [u8]| Frame::new(t, EVENT_ID, Bytes::from_static(p));
        assert_eq!(
            Event::decode(&f(PackageType::OnJoin, &[0x80])),
            Err(Error::MissingKey("id"))
        );
        assert!(matches!(
            Event::decode(&f(
                PackageType::OnJoin,
                &[0x81, 0xa2, b'i', b'd', 0xa1, b'x']
            )),
            Err(Error::WrongType { field: "id", .. })
        ));
        assert!(Event::decode(&f(PackageType::OnEmit, &[0x81, 0xa2, b'i', b'd', 0x01])).is_err());
        assert!(Event::decode(&f(PackageType::Warn, &[0xc1])).is_err());
        assert!(Event::decode(&f(PackageType::Data, &[0x01])).is_err());
    }

    #[test]
    fn emit_with_bad_args_is_refused_and_rolled_back() {
        let mut b = BytesMut::new();
        let e = Event::Emit(EmitEvent {
            scope: None,
            id: 1,
            event: "e".into(),
            args: Bytes::from_static(&[0x01]),
        });
        assert!(e.encode(&mut b).is_err());
        assert!(b.is_empty());
        let mut d = Decoder::new();
        d.feed(&b);
        assert_eq!(d.next_frame().unwrap(), None);
    }
}
