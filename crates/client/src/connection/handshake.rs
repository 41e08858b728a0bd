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
            node_id(&mut tx, &mut rx).await
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

/// Asks a fresh, authenticated connection which node it reached (id 1, in
/// `@node`); `None` when the user may not ask or the answer is not a
/// node id.
async fn node_id(tx: &mut FrameWriter, rx: &mut FrameReader) -> Option<u32> {
    let mut buf = BytesMut::new();
    request::encode_query(&mut buf, 1, "@node", "node_info().load().node_id;", None).ok()?;
    tx.send(buf.freeze()).await.ok()?;
    loop {
        let frame = rx.recv().await.ok()??;
        if frame.package_type().ok()?.direction() != Direction::Response || frame.id != 1 {
            continue; // an event before the answer
        }
        return match Response::decode(&frame).ok()? {
            Response::Data(d) => thingsdb_protocol::decode_value(&d)
                .ok()?
                .as_u64()
                .and_then(|n| u32::try_from(n).ok()),
            _ => None,
        };
    }
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
