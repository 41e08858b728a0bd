//! What a node's HTTP answer means: the result, or the same
//! [`Error`] the socket client gives for the same refusal.
//!
//! A node answers `200` with the result in the request's content type, and
//! an error with a `text/plain` body `<message> (<code>)\r\n` and a status
//! chosen from the code (`src/ti/api.c`). Some answers come before the
//! request is read and carry only a fixed body (`UNAUTHORIZED\r\n`,
//! `NOT FOUND\r\n`, ...); those are mapped by their status.

use bytes::Bytes;
use thingsdb_client::{Error, ErrorCode, ThingsdbError};
use thingsdb_client::{TransportError, TransportErrorKind};

/// The body formats a node speaks: MessagePack (the default) or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// `application/msgpack`: compact, and binary values stay binary.
    #[default]
    MessagePack,
    /// `application/json`: readable; binary values travel as arrays of
    /// numbers one way and as base64 strings the other.
    Json,
}

impl Format {
    /// The `Content-Type` sent, exactly as a node compares it (the whole
    /// string: a node answers `415` to `application/json; charset=utf-8`).
    ///
    /// ```
    /// use thingsdb_http::Format;
    /// assert_eq!(Format::MessagePack.content_type(), "application/msgpack");
    /// assert_eq!(Format::Json.content_type(), "application/json");
    /// ```
    pub fn content_type(self) -> &'static str {
        match self {
            Format::MessagePack => "application/msgpack",
            Format::Json => "application/json",
        }
    }
}

/// The ThingsDB code a node gives an HTTP status when its body carries no
/// `(<code>)` (the node's fixed bodies): the inverse of the node's table.
fn code_for_status(status: u16) -> Option<ErrorCode> {
    Some(match status {
        400 => ErrorCode::BadData,
        401 => ErrorCode::Auth,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::Lookup,
        422 => ErrorCode::Operation,
        500 => ErrorCode::Internal,
        503 => ErrorCode::Node,
        _ => return None,
    })
}

/// Splits a node's error body `<message> (<code>)` (with or without the
/// trailing line end) into the code and the message.
///
/// ```
/// use thingsdb_http::parse_error_body;
/// use thingsdb_client::ErrorCode;
/// let (code, msg) = parse_error_body("division or modulo by zero (-58)\r\n").unwrap();
/// assert_eq!(code, ErrorCode::ZeroDiv);
/// assert_eq!(msg, "division or modulo by zero");
/// assert!(parse_error_body("UNAUTHORIZED\r\n").is_none());
/// ```
pub fn parse_error_body(body: &str) -> Option<(ErrorCode, &str)> {
    let body = body.trim_end_matches(['\r', '\n']);
    let inner = body.strip_suffix(')')?;
    let open = inner.rfind(" (")?;
    let code: i64 = inner[open + 2..].parse().ok()?;
    Some((ErrorCode::from_code(code), &inner[..open]))
}

/// The error for a non-`200` answer: a [`ThingsdbError`] with the node's
/// code and message when the body carries them, or with the code the
/// status stands for (`401` is [`ErrorCode::Auth`], `503`
/// [`ErrorCode::Node`], ...); a status a node never sends for a query
/// (`405`, `415`, or a proxy's `502`) is [`Error::Transport`] naming it.
///
/// ```
/// use thingsdb_http::status_error;
/// use thingsdb_client::ErrorCode;
/// let e = status_error(422, b"division or modulo by zero (-58)\r\n");
/// assert_eq!(e.code(), Some(ErrorCode::ZeroDiv));
/// let e = status_error(401, b"UNAUTHORIZED\r\n");
/// assert_eq!(e.code(), Some(ErrorCode::Auth));
/// assert!(status_error(415, b"UNSUPPORTED MEDIA TYPE\r\n").code().is_none());
/// ```
pub fn status_error(status: u16, body: &[u8]) -> Error {
    let text = String::from_utf8_lossy(body);
    if let Some((code, message)) = parse_error_body(&text) {
        return Error::Thingsdb(ThingsdbError::new(code, message));
    }
    let fixed = text.trim_end_matches(['\r', '\n']);
    match code_for_status(status) {
        Some(code) => Error::Thingsdb(ThingsdbError::new(
            code,
            match status {
                401 => format!("the node refused the credentials (HTTP 401 {fixed})"),
                404 => format!("the node does not know this scope (HTTP 404 {fixed})"),
                503 => format!("the node cannot take requests now (HTTP 503 {fixed})"),
                _ => format!("HTTP {status} {fixed}"),
            },
        )),
        None => Error::Transport(http_error(format!(
            "unexpected HTTP status {status}: {fixed}"
        ))),
    }
}

/// A successful answer: the result's bytes in the request's format.
#[derive(Debug, Clone)]
pub(crate) struct Body {
    pub(crate) format: Format,
    pub(crate) bytes: Bytes,
}

impl Body {
    /// The result as a MessagePack value (a JSON answer is read into one).
    pub(crate) fn value(&self) -> Result<rmpv::Value, Error> {
        match self.format {
            Format::MessagePack => {
                thingsdb_protocol::decode_value(&self.bytes).map_err(Error::Protocol)
            }
            Format::Json => serde_json::from_slice(&self.bytes)
                .map_err(|e| Error::Decode(format!("the node's JSON: {e}"))),
        }
    }

    /// The result as a Rust type.
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        match self.format {
            Format::MessagePack => {
                rmp_serde::from_slice(&self.bytes).map_err(|e| Error::Decode(e.to_string()))
            }
            Format::Json => {
                serde_json::from_slice(&self.bytes).map_err(|e| Error::Decode(e.to_string()))
            }
        }
    }
}

/// A transport error of kind [`TransportErrorKind::Http`]: an HTTP
/// exchange that did not give a ThingsDB answer.
pub(crate) fn http_error(message: impl Into<String>) -> TransportError {
    TransportError::new(TransportErrorKind::Http, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn node_bodies_become_thingsdb_errors() {
        let e = status_error(404, b"collection `nope` not found (-54)\r\n");
        match &e {
            Error::Thingsdb(t) => {
                assert_eq!(t.code, ErrorCode::Lookup);
                assert_eq!(t.message, "collection `nope` not found");
            }
            other => panic!("{other:?}"),
        }
        // A message that itself holds parentheses keeps them.
        let (c, m) = parse_error_body("bad (thing) here (-53)\r\n").unwrap();
        assert_eq!((c, m), (ErrorCode::BadData, "bad (thing) here"));
        // Unknown codes are kept.
        let (c, _) = parse_error_body("x (-100)").unwrap();
        assert_eq!(c.code(), -100);
    }

    #[test]
    fn fixed_bodies_map_by_status() {
        for (status, code) in [
            (400, ErrorCode::BadData),
            (401, ErrorCode::Auth),
            (403, ErrorCode::Forbidden),
            (404, ErrorCode::Lookup),
            (422, ErrorCode::Operation),
            (500, ErrorCode::Internal),
            (503, ErrorCode::Node),
        ] {
            assert_eq!(status_error(status, b"FIXED\r\n").code(), Some(code));
        }
        for status in [405, 415, 502, 302] {
            assert!(matches!(
                status_error(status, b"X\r\n"),
                Error::Transport(m) if m.message().contains(&status.to_string())
                    && m.kind() == thingsdb_client::TransportErrorKind::Http
            ));
        }
    }

    #[test]
    fn not_error_bodies() {
        assert!(parse_error_body("").is_none());
        assert!(parse_error_body("()").is_none());
        assert!(parse_error_body("x (abc)").is_none());
        assert!(parse_error_body("x(-5)").is_none());
    }

    proptest! {
        #[test]
        fn error_bodies_round_trip(msg in "[^\r\n]{0,40}", code in any::<i32>()) {
            let body = format!("{msg} ({code})\r\n");
            let (c, m) = parse_error_body(&body).unwrap();
            prop_assert_eq!(c.code(), i64::from(code));
            prop_assert_eq!(m, msg.as_str());
        }

        #[test]
        fn any_body_gives_an_error_without_panicking(status in 100u16..600, body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = status_error(status, &body);
        }
    }
}
