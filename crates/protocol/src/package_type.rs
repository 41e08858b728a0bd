//! Package types and their direction.

use crate::error::Error;

/// Which way a package travels, and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Sent by a client, answered by exactly one response with the same id.
    Request,
    /// Sent by a node in answer to a request, with the request's id.
    Response,
    /// Sent by a node unasked, with id 65535.
    Event,
    /// Sent by a node to a module process it runs (MODULE_CONF and
    /// MODULE_REQ, protocol.md section 9).
    ToModule,
    /// Sent by a module process to its node (MODULE_CONF_OK,
    /// MODULE_CONF_ERR, MODULE_RES and MODULE_ERR).
    FromModule,
}

/// Every package type of the client protocol (protocol.md section 4) and
/// of the module protocol between a node and the module processes it runs
/// (section 9, see [`module`](crate::module)).
///
/// The deprecated request types 35 and 36 are known, so that a node or a
/// test peer can recognise them, but clients never send them.
///
/// ```
/// use thingsdb_protocol::{Direction, PackageType};
/// let t = PackageType::try_from(34).unwrap();
/// assert_eq!(t, PackageType::Query);
/// assert_eq!(t.direction(), Direction::Request);
/// assert_eq!(t.check(), 0xdd);
/// assert!(PackageType::try_from(99).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PackageType {
    /// Event 0: a node's status changed (`{id, status}`).
    NodeStatus = 0,
    /// Event 5: a warning (`{warn_code, warn_msg}`).
    Warn = 5,
    /// Event 6: this connection joined a room.
    OnJoin = 6,
    /// Event 7: this connection left a room.
    OnLeave = 7,
    /// Event 8: an event was emitted in a joined room.
    OnEmit = 8,
    /// Event 9: a joined room was deleted.
    OnDelete = 9,
    /// Response 16: answer to PING.
    Pong = 16,
    /// Response 17: success without data.
    Ok = 17,
    /// Response 18: success with a MessagePack value.
    Data = 18,
    /// Response 19: failure, `{error_code, error_msg}`.
    Error = 19,
    /// Request 32: keep-alive; allowed before authentication.
    Ping = 32,
    /// Request 33: authenticate with `[user, password]` or a token.
    Auth = 33,
    /// Request 34: run code in a scope.
    Query = 34,
    /// Request 35: deprecated (watch); never sent.
    DeprecatedWatch = 35,
    /// Request 36: deprecated (unwatch); never sent.
    DeprecatedUnwatch = 36,
    /// Request 37: run a procedure.
    Run = 37,
    /// Request 38: join rooms.
    Join = 38,
    /// Request 39: leave rooms.
    Leave = 39,
    /// Request 40: emit an event in a room.
    Emit = 40,
    /// Request 41: emit an event to every joiner but the sender.
    EmitPeer = 41,
    /// Node to module 64: the module's configuration (any value).
    ModuleConf = 64,
    /// Module to node 65: the configuration was accepted; no payload.
    ModuleConfOk = 65,
    /// Module to node 66: the configuration was refused; no payload.
    ModuleConfErr = 66,
    /// Node to module 80: a request (the `future` argument, a map).
    ModuleReq = 80,
    /// Module to node 81: the answer to the request with the same id.
    ModuleRes = 81,
    /// Module to node 82: `[error_code, error_msg]` for the request with
    /// the same id.
    ModuleErr = 82,
}

impl PackageType {
    /// Every known type, in numeric order.
    pub const ALL: [PackageType; 26] = [
        PackageType::NodeStatus,
        PackageType::Warn,
        PackageType::OnJoin,
        PackageType::OnLeave,
        PackageType::OnEmit,
        PackageType::OnDelete,
        PackageType::Pong,
        PackageType::Ok,
        PackageType::Data,
        PackageType::Error,
        PackageType::Ping,
        PackageType::Auth,
        PackageType::Query,
        PackageType::DeprecatedWatch,
        PackageType::DeprecatedUnwatch,
        PackageType::Run,
        PackageType::Join,
        PackageType::Leave,
        PackageType::Emit,
        PackageType::EmitPeer,
        PackageType::ModuleConf,
        PackageType::ModuleConfOk,
        PackageType::ModuleConfErr,
        PackageType::ModuleReq,
        PackageType::ModuleRes,
        PackageType::ModuleErr,
    ];

    /// The type byte.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The check byte that must accompany this type (`type ^ 0xff`).
    pub const fn check(self) -> u8 {
        !(self as u8)
    }

    /// Whether this is a request, a response or an event of the client
    /// protocol, or a package of the module protocol (and which way it
    /// goes).
    pub const fn direction(self) -> Direction {
        match self {
            PackageType::ModuleConf | PackageType::ModuleReq => Direction::ToModule,
            PackageType::ModuleConfOk
            | PackageType::ModuleConfErr
            | PackageType::ModuleRes
            | PackageType::ModuleErr => Direction::FromModule,
            _ => match self as u8 {
                0..=15 => Direction::Event,
                16..=31 => Direction::Response,
                _ => Direction::Request,
            },
        }
    }

    /// The type's name as the protocol documentation spells it.
    pub const fn name(self) -> &'static str {
        match self {
            PackageType::NodeStatus => "NODE_STATUS",
            PackageType::Warn => "WARN",
            PackageType::OnJoin => "ON_JOIN",
            PackageType::OnLeave => "ON_LEAVE",
            PackageType::OnEmit => "ON_EMIT",
            PackageType::OnDelete => "ON_DELETE",
            PackageType::Pong => "PONG",
            PackageType::Ok => "OK",
            PackageType::Data => "DATA",
            PackageType::Error => "ERROR",
            PackageType::Ping => "PING",
            PackageType::Auth => "AUTH",
            PackageType::Query => "QUERY",
            PackageType::DeprecatedWatch => "WATCH",
            PackageType::DeprecatedUnwatch => "UNWATCH",
            PackageType::Run => "RUN",
            PackageType::Join => "JOIN",
            PackageType::Leave => "LEAVE",
            PackageType::Emit => "EMIT",
            PackageType::EmitPeer => "EMIT_PEER",
            PackageType::ModuleConf => "MODULE_CONF",
            PackageType::ModuleConfOk => "MODULE_CONF_OK",
            PackageType::ModuleConfErr => "MODULE_CONF_ERR",
            PackageType::ModuleReq => "MODULE_REQ",
            PackageType::ModuleRes => "MODULE_RES",
            PackageType::ModuleErr => "MODULE_ERR",
        }
    }
}

impl TryFrom<u8> for PackageType {
    type Error = Error;

    fn try_from(b: u8) -> Result<Self, Error> {
        Ok(match b {
            0 => PackageType::NodeStatus,
            5 => PackageType::Warn,
            6 => PackageType::OnJoin,
            7 => PackageType::OnLeave,
            8 => PackageType::OnEmit,
            9 => PackageType::OnDelete,
            16 => PackageType::Pong,
            17 => PackageType::Ok,
            18 => PackageType::Data,
            19 => PackageType::Error,
            32 => PackageType::Ping,
            33 => PackageType::Auth,
            34 => PackageType::Query,
            35 => PackageType::DeprecatedWatch,
            36 => PackageType::DeprecatedUnwatch,
            37 => PackageType::Run,
            38 => PackageType::Join,
            39 => PackageType::Leave,
            40 => PackageType::Emit,
            41 => PackageType::EmitPeer,
            64 => PackageType::ModuleConf,
            65 => PackageType::ModuleConfOk,
            66 => PackageType::ModuleConfErr,
            80 => PackageType::ModuleReq,
            81 => PackageType::ModuleRes,
            82 => PackageType::ModuleErr,
            other => return Err(Error::UnknownPackageType(other)),
        })
    }
}

impl From<PackageType> for u8 {
    fn from(t: PackageType) -> u8 {
        t as u8
    }
}

impl core::fmt::Display for PackageType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_maps_to_a_type_or_an_error() {
        let mut known = 0;
        for b in 0..=255u8 {
            match PackageType::try_from(b) {
                Ok(t) => {
                    known += 1;
                    assert_eq!(t.as_u8(), b);
                    assert_eq!(t.check(), b ^ 0xff);
                }
                Err(e) => assert_eq!(e, Error::UnknownPackageType(b)),
            }
        }
        assert_eq!(known, PackageType::ALL.len());
    }

    #[test]
    fn directions_follow_the_numbering() {
        assert_eq!(PackageType::OnDelete.direction(), Direction::Event);
        assert_eq!(PackageType::Error.direction(), Direction::Response);
        assert_eq!(PackageType::Ping.direction(), Direction::Request);
        // The corrected check bytes of protocol.md section 4.
        assert_eq!(PackageType::Leave.check(), 0xd8);
        assert_eq!(PackageType::OnLeave.check(), 0xf8);
    }

    #[test]
    fn module_types_have_their_own_directions() {
        // inc/ti/proto.t.h of ThingsDB 1.9.2.
        for (b, d) in [
            (64, Direction::ToModule),
            (65, Direction::FromModule),
            (66, Direction::FromModule),
            (80, Direction::ToModule),
            (81, Direction::FromModule),
            (82, Direction::FromModule),
        ] {
            let t = PackageType::try_from(b).unwrap();
            assert_eq!(t.direction(), d, "{t}");
            assert!(t.name().starts_with("MODULE_"));
        }
        assert_eq!(PackageType::ModuleReq.check(), 0xaf);
        let others = PackageType::ALL
            .iter()
            .filter(|t| !matches!(t.direction(), Direction::ToModule | Direction::FromModule))
            .count();
        assert_eq!(others, 20);
    }
}
