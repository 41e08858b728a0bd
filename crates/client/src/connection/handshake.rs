//! Opening one connection: connect, authenticate, ask which node answered.
//! Which pool entry to try, and what a failure means, is the session's.

use bytes::BytesMut;
use thingsdb_protocol::{request, Direction, Response};
use thingsdb_transport::{FrameReader, FrameWriter, Target};

use crate::config::{Auth, Config};
use crate::error::{ConnectionLost, Error, LostReason};

/// The two halves of an authenticated connection.
pub(crate) struct Established {
    pub tx: FrameWriter,
    pub rx: FrameReader,
    /// The id of the node that answered, when asked (discovery or load
    /// balancing on).
    pub node_id: Option<u32>,
}

/// Connects to one target and authenticates, within the connect timeout.
pub(crate) async fn connect_one(config: &Config, target: &Target) -> Result<Established, Error> {
    crate::observe::traced_connect(target, connect_inner(config, target)).await
}

async fn connect_inner(config: &Config, target: &Target) -> Result<Established, Error> {
    let conn = thingsdb_transport::connect(target, &config.connect).await?;
    let (mut tx, mut rx) = conn.split();
    let ask = config.discover_nodes || config.balance.spreads();
    let handshake = async {
        crate::observe::traced_auth(authenticate(&mut tx, &mut rx, &config.auth)).await?;
        // Which node answered: a learnt target may reach another node.
        Ok::<_, Error>(if ask {
            node_id(&mut tx, &mut rx).await?
        } else {
            None
        })
    };
    match crate::rt::timeout(config.connect.connect_timeout, handshake).await {
        Ok(Ok(node_id)) => Ok(Established { tx, rx, node_id }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::transport(
            crate::error::TransportErrorKind::ConnectTimeout,
            format!(
                "connected to {target} but it did not answer AUTH within {:?}",
                config.connect.connect_timeout
            ),
        )),
    }
}

/// What the handshake asks a node, in `@node`: its id and its status.
pub(crate) const WHICH_NODE: &str = "n = node_info().load(); [n.node_id, n.status];";

/// Asks a fresh, authenticated connection which node it reached (id 1, in
/// `@node`), and fails when that node is shutting down: a node keeps
/// taking connections during its shutdown period, but one made then would
/// break when it exits, with whatever was written on it. `Ok(None)` when
/// the user may not ask or the answer is not a node's.
async fn node_id(tx: &mut FrameWriter, rx: &mut FrameReader) -> Result<Option<u32>, Error> {
    let mut buf = BytesMut::new();
    if request::encode_query(&mut buf, 1, "@node", WHICH_NODE, None).is_err() {
        return Ok(None);
    }
    tx.send(buf.freeze()).await?;
    loop {
        let Some(frame) = rx.recv().await? else {
            return Err(Error::ConnectionLost(ConnectionLost::new(
                LostReason::ClosedByPeer,
                "the node closed the connection after authentication",
            )));
        };
        let is_answer = frame
            .package_type()
            .is_ok_and(|t| t.direction() == Direction::Response)
            && frame.id == 1;
        if !is_answer {
            continue; // an event before the answer
        }
        let Ok(Response::Data(d)) = Response::decode(&frame) else {
            return Ok(None);
        };
        let Ok(value) = thingsdb_protocol::decode_value(&d) else {
            return Ok(None);
        };
        return which_node(&value);
    }
}

/// The node id in an answer to [`WHICH_NODE`]; an error when the node
/// says it is shutting down.
fn which_node(value: &rmpv::Value) -> Result<Option<u32>, Error> {
    let (id, status) = match value.as_array().map(Vec::as_slice) {
        Some([id, status]) => (id, status.as_str()),
        _ => (value, None),
    };
    let id = id.as_u64().and_then(|n| u32::try_from(n).ok());
    if status == Some("SHUTTING_DOWN") {
        return Err(Error::transport(
            crate::error::TransportErrorKind::ShuttingDown,
            match id {
                Some(id) => format!("node {id} is shutting down"),
                None => "the node is shutting down".to_string(),
            },
        ));
    }
    Ok(id)
}

/// Sends AUTH on a fresh connection and waits for its answer (id 0).
async fn authenticate(
    tx: &mut FrameWriter,
    rx: &mut FrameReader,
    auth: &Auth,
) -> Result<(), Error> {
    let mut buf = BytesMut::new();
    auth.encode(&mut buf, 0)?;
    tx.send(buf.freeze()).await?;
    loop {
        let Some(frame) = rx.recv().await? else {
            return Err(Error::ConnectionLost(ConnectionLost::new(
                LostReason::ClosedByPeer,
                "the node closed the connection during authentication",
            )));
        };
        if let Some(answer) = auth_answer(&frame) {
            return answer;
        }
    }
}

/// What a frame received right after AUTH says: `None` when it is not the
/// answer (an event before it: nothing is joined yet), else the outcome.
/// Shared by the async and the blocking driver.
pub(crate) fn auth_answer(frame: &thingsdb_protocol::Frame) -> Option<Result<(), Error>> {
    let t = frame.package_type().ok()?;
    if t.direction() != Direction::Response || frame.id != 0 {
        return None;
    }
    Some(match Response::decode(frame) {
        Ok(Response::Ok) => Ok(()),
        Ok(Response::Error(e)) => Err(Error::Thingsdb(e.into())),
        Ok(_) => Err(Error::Protocol(
            thingsdb_protocol::Error::UnexpectedPackageType {
                expected: "OK or ERROR",
                got: t,
            },
        )),
        Err(e) => Err(e.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value;

    #[test]
    fn the_node_says_which_it_is_and_whether_it_stops() {
        let ready = Value::Array(vec![Value::from(2), Value::from("READY")]);
        assert_eq!(which_node(&ready).ok(), Some(Some(2)));
        let away = Value::Array(vec![Value::from(1), Value::from("AWAY")]);
        assert_eq!(which_node(&away).ok(), Some(Some(1)));
        let stopping = Value::Array(vec![Value::from(0), Value::from("SHUTTING_DOWN")]);
        let e = which_node(&stopping).err();
        assert_eq!(
            e.as_ref().and_then(Error::transport_kind),
            Some(crate::error::TransportErrorKind::ShuttingDown)
        );
        assert!(e.is_some_and(|e| e.to_string().contains("node 0 is shutting down")));
        // A bare id (a stand-in that answers only that), or no id at all.
        assert_eq!(which_node(&Value::from(7)).ok(), Some(Some(7)));
        assert_eq!(which_node(&Value::from("x")).ok(), Some(None));
    }
}
