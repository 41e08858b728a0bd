//! Unit tests of the session, with a fake clock and a scripted node.

use std::time::Duration;

use thingsdb_protocol::request::Request;
use thingsdb_protocol::Room;

use super::*;
use crate::connection::testing::*;
use crate::error::LostReason;
use crate::events::{EventRx, Overflow, RoomEvent};

const T: Duration = Duration::from_secs(5);

/// The id of the single JOIN in `sent`.
fn join_id(sent: &[Sent]) -> u16 {
    let joins: Vec<u16> = sent
        .iter()
        .filter(|s| matches!(s.request, Request::Join { .. }))
        .map(|s| s.id)
        .collect();
    assert_eq!(joins.len(), 1, "{sent:?}");
    joins[0]
}

/// The node of `from` says it shuts down; the session connects to the
/// next one, which serves from then on (`from` drains). The new connection.
fn move_on(h: &mut Harness, from: ConnId) -> ConnId {
    h.frame(from, shutting_down());
    let next = connect_output(h);
    h.s.handle_connected(h.now, next, None);
    next
}

fn connect_output(h: &mut Harness) -> ConnId {
    let outs = h.outputs();
    outs.iter()
        .find_map(|o| match o {
            Output::Connect { conn, .. } => Some(*conn),
            Output::Close { .. } => None,
        })
        .unwrap_or_else(|| panic!("no connect in {outs:?}"))
}

#[test]
fn replies_match_requests_and_late_replies_after_a_timeout_are_dropped() {
    let (mut h, c) = Harness::new(1, None);
    let mut a = h.request(T);
    let sent = h.sent(c);
    assert_eq!(sent.len(), 1);
    let a_id = sent[0].id;
    h.advance(T);
    assert!(matches!(a.try_recv(), Ok(Err(Error::Timeout(_)))));
    // The id stays taken until the late reply came.
    let mut b = h.request(T);
    let b_id = h.sent(c)[0].id;
    assert_ne!(a_id, b_id);
    h.frame(c, data(a_id, 1)); // late: dropped
    assert!(b.try_recv().is_err());
    h.frame(c, data(b_id, 2));
    assert!(matches!(b.try_recv(), Ok(Ok(f)) if f.id == b_id));
    assert_eq!(
        h.s.sizes().2,
        0,
        "timed-out ids are freed by their late reply"
    );
}

#[test]
fn lost_connection_fails_in_flight_and_reconnects_with_held_requests() {
    let (mut h, c) = Harness::new(1, None);
    let mut a = h.request(T);
    let _ = h.sent(c);
    h.s.handle_lost(
        h.now,
        c,
        ConnectionLost::new(LostReason::ClosedByPeer, "bye"),
    );
    match a.try_recv() {
        Ok(Err(Error::ConnectionLost(l))) => assert_eq!(l.reason(), LostReason::ClosedByPeer),
        other => panic!("{other:?}"),
    }
    let next = connect_output(&mut h);
    let mut b = h.request(T); // held
    h.s.handle_connected(h.now, next, None);
    let sent = h.sent(next);
    assert_eq!(sent.len(), 1);
    h.frame(next, data(sent[0].id, 3));
    assert!(matches!(b.try_recv(), Ok(Ok(_))));
}

#[test]
fn rooms_with_the_same_id_in_two_collections_are_two_rooms() {
    let (mut h, c) = Harness::new(1, None);
    let (mut alpha, _, mut ra) = h.join("//alpha", Room::Id(2), Overflow::Wait, 16);
    let ja = join_id(&h.sent(c));
    h.frame(c, room_reply(ja, Some(2)));
    h.frame(c, on_join("alpha", 2));
    // A JOIN goes out for beta's room 2 too: it is another room.
    let (mut beta, _, mut rb) = h.join("@:beta", Room::Id(2), Overflow::Wait, 16);
    let jb = join_id(&h.sent(c));
    h.frame(c, room_reply(jb, Some(2)));
    h.frame(c, on_join("beta", 2));
    assert!(matches!(ra.try_recv(), Ok(Ok(k)) if &*k.collection == "alpha"));
    assert!(matches!(rb.try_recv(), Ok(Ok(k)) if &*k.collection == "beta"));
    h.frame(c, on_emit("alpha", 2, 1));
    h.frame(c, on_emit("beta", 2, 2));
    let a = drain(&mut alpha);
    let b = drain(&mut beta);
    assert_eq!(a[0], RoomEvent::Joined);
    assert_eq!(b[0], RoomEvent::Joined);
    assert_eq!(a.iter().filter_map(emitted_n).collect::<Vec<_>>(), [1]);
    assert_eq!(b.iter().filter_map(emitted_n).collect::<Vec<_>>(), [2]);
}

#[test]
fn scope_forms_name_one_collection() {
    let (mut h, c) = Harness::new(1, None);
    let (mut s1, _, _r1) = h.join("//stuff", Room::Id(7), Overflow::Wait, 16);
    let j = join_id(&h.sent(c));
    h.frame(c, room_reply(j, Some(7)));
    h.frame(c, on_join("stuff", 7));
    // Same room by another spelling: no second JOIN, a local Joined.
    let (mut s2, _, _r2) = h.join("@collection:stuff", Room::Id(7), Overflow::Wait, 16);
    assert!(h.sent(c).is_empty());
    h.frame(c, on_emit("stuff", 7, 5));
    assert_eq!(drain(&mut s1).iter().filter_map(emitted_n).count(), 1);
    let e2 = drain(&mut s2);
    assert_eq!(e2[0], RoomEvent::Joined);
    assert_eq!(e2.iter().filter_map(emitted_n).collect::<Vec<_>>(), [5]);
}

#[test]
fn two_joins_back_to_back_give_each_stream_one_joined() {
    let (mut h, c) = Harness::new(1, None);
    let (mut s1, _, _r3) = h.join("//stuff", Room::Name("chat".into()), Overflow::Wait, 16);
    let (mut s2, _, _r4) = h.join("//stuff", Room::Name("chat".into()), Overflow::Wait, 16);
    let sent = h.sent(c);
    assert_eq!(sent.len(), 2);
    // As a node does: DATA, DATA, then one ON_JOIN.
    h.frame(c, room_reply(sent[0].id, Some(4)));
    h.frame(c, room_reply(sent[1].id, Some(4)));
    h.frame(c, on_join("stuff", 4));
    assert_eq!(drain(&mut s1), [RoomEvent::Joined]);
    assert_eq!(drain(&mut s2), [RoomEvent::Joined]);
}

#[test]
fn leave_delivers_left_after_the_events_before_it() {
    let (mut h, c) = Harness::new(1, None);
    let (mut s, sid, mut r) = h.join("//stuff", Room::Id(3), Overflow::Wait, 16);
    let j = join_id(&h.sent(c));
    h.frame(c, room_reply(j, Some(3)));
    h.frame(c, on_join("stuff", 3));
    let key = match r.try_recv() {
        Ok(Ok(k)) => k,
        other => panic!("{other:?}"),
    };
    let (ack, mut done) = oneshot::channel();
    h.s.handle_command(
        h.now,
        Command::Unsubscribe {
            key,
            stream_id: sid,
            ack: Some(ack),
        },
    );
    let sent = h.sent(c);
    assert!(matches!(sent[0].request, Request::Leave { .. }));
    h.frame(c, on_emit("stuff", 3, 9)); // before the node handled the LEAVE
    h.frame(c, on_leave("stuff", 3));
    h.frame(c, room_reply(sent[0].id, Some(3)));
    assert!(done.try_recv().is_ok());
    let evs = drain(&mut s);
    assert_eq!(evs.len(), 3, "{evs:?}");
    assert_eq!(evs[0], RoomEvent::Joined);
    assert_eq!(emitted_n(&evs[1]), Some(9));
    assert_eq!(evs[2], RoomEvent::Left);
    assert_eq!(h.s.rooms_len(), 0);
}

#[test]
fn lag_is_readable_without_a_further_event() {
    let (mut h, c) = Harness::new(1, None);
    let (mut s, _, _r5) = h.join("//stuff", Room::Id(3), Overflow::Lag, 4);
    let j = join_id(&h.sent(c));
    h.frame(c, room_reply(j, Some(3)));
    h.frame(c, on_join("stuff", 3));
    for n in 0..100 {
        h.frame(c, on_emit("stuff", 3, n));
    }
    let evs = drain(&mut s);
    assert_eq!(evs[0], RoomEvent::Joined);
    assert_eq!(evs.len(), 5, "{evs:?}");
    assert_eq!(evs[4], RoomEvent::Lagged(97));
}

#[test]
fn reconnect_rejoins_each_room_with_streams_once() {
    let (mut h, c) = Harness::new(1, None);
    let (mut s, _, _r6) = h.join("//stuff", Room::Id(3), Overflow::Wait, 16);
    let (_s2, _, _r7) = h.join("//stuff", Room::Id(3), Overflow::Wait, 16);
    let sent = h.sent(c);
    h.frame(c, room_reply(sent[0].id, Some(3)));
    h.frame(c, room_reply(sent[1].id, Some(3)));
    h.frame(c, on_join("stuff", 3));
    h.s.handle_lost(h.now, c, ConnectionLost::new(LostReason::Io, "reset"));
    let next = connect_output(&mut h);
    h.s.handle_connected(h.now, next, None);
    let j = join_id(&h.sent(next));
    h.frame(next, room_reply(j, Some(3)));
    h.frame(next, on_join("stuff", 3));
    assert_eq!(
        drain(&mut s),
        [
            RoomEvent::Joined,
            RoomEvent::Disconnected,
            RoomEvent::Joined
        ]
    );
}

#[test]
fn keepalive_gives_up_a_silent_connection() {
    let (mut h, c) = Harness::new(1, Some(Duration::from_secs(1)));
    h.advance(Duration::from_secs(1));
    let sent = h.sent(c);
    assert!(matches!(sent[0].request, Request::Ping));
    h.advance(Duration::from_secs(1));
    let outs = h.outputs();
    assert!(outs.contains(&Output::Close { conn: c }), "{outs:?}");
    assert!(outs.iter().any(|o| matches!(o, Output::Connect { .. })));
    let _ = pong(0);
}

#[test]
fn shutting_down_makes_before_it_breaks() {
    let (mut h, old) = Harness::new(2, None);
    let (mut s, _, _r8) = h.join("//stuff", Room::Id(3), Overflow::Wait, 64);
    let j = join_id(&h.sent(old));
    h.frame(old, room_reply(j, Some(3)));
    h.frame(old, on_join("stuff", 3));
    let mut q = h.request(T);
    let q_id = h.sent(old)[0].id;
    h.frame(old, shutting_down());
    let new = connect_output(&mut h);
    // The old connection still serves until the new one is up.
    let mut q2 = h.request(T);
    let q2_id = h.sent(old)[0].id;
    h.frame(old, on_emit("stuff", 3, 1));
    h.s.handle_connected(h.now, new, None);
    assert_eq!(h.s.open_conns().len(), 2);
    assert_eq!(h.s.serving(), Some(new));
    let mut q3 = h.request(T);
    let sent = h.sent(new);
    assert_eq!(sent.len(), 2, "{sent:?}"); // the room's JOIN, then q3
    let hj = join_id(&sent);
    let q3_id = sent.iter().find(|x| x.id != hj).map(|x| x.id).unwrap_or(0);
    // Events reach both connections for a while; each is delivered once.
    h.frame(old, on_emit("stuff", 3, 2));
    h.frame(new, room_reply(hj, Some(3)));
    h.frame(new, on_join("stuff", 3));
    let leave = h.sent(old);
    assert!(matches!(leave[0].request, Request::Leave { .. }));
    h.frame(new, on_emit("stuff", 3, 3));
    h.frame(old, on_emit("stuff", 3, 3));
    h.frame(new, on_emit("stuff", 3, 4));
    h.frame(old, on_leave("stuff", 3));
    h.frame(old, room_reply(leave[0].id, Some(3)));
    h.frame(old, data(q_id, 1));
    h.frame(old, data(q2_id, 2));
    h.frame(new, data(q3_id, 3));
    assert!(matches!(q.try_recv(), Ok(Ok(_))));
    assert!(matches!(q2.try_recv(), Ok(Ok(_))));
    assert!(matches!(q3.try_recv(), Ok(Ok(_))));
    let evs = drain(&mut s);
    assert_eq!(evs[0], RoomEvent::Joined);
    assert_eq!(
        evs[1..].iter().map(emitted_n).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3), Some(4)],
        "{evs:?}"
    );
    // The old connection is closed once it has nothing left.
    assert!(h.outputs().contains(&Output::Close { conn: old }));
    assert_eq!(h.s.open_conns(), [new]);
}

#[test]
fn close_waits_for_in_flight_then_ends() {
    let (mut h, c) = Harness::new(1, None);
    let mut a = h.request(T);
    let id = h.sent(c)[0].id;
    let (ack, _done) = oneshot::channel();
    h.s.handle_command(h.now, Command::Close(ack));
    assert!(h.s.finished().is_none());
    let mut b = h.request(T);
    assert!(matches!(b.try_recv(), Ok(Err(Error::Closed))));
    h.frame(c, data(id, 1));
    assert!(matches!(a.try_recv(), Ok(Ok(_))));
    assert!(matches!(h.s.finished(), Some(Error::Closed)));
    assert_eq!(h.s.take_close_acks().len(), 1);
}

#[test]
fn deleted_room_ends_its_streams() {
    let (mut h, c) = Harness::new(1, None);
    let (mut s, _, _r9) = h.join("//stuff", Room::Id(3), Overflow::Wait, 16);
    let j = join_id(&h.sent(c));
    h.frame(c, room_reply(j, Some(3)));
    h.frame(c, on_join("stuff", 3));
    h.frame(c, on_delete("other", 3)); // another collection's room 3
    h.frame(c, on_delete("stuff", 3));
    assert_eq!(drain(&mut s), [RoomEvent::Joined, RoomEvent::Deleted]);
    assert_eq!(h.s.rooms_len(), 0);
}

#[test]
fn serving_index_follows_the_serving_connection() {
    let (mut h, old) = Harness::new(2, None);
    assert_eq!(h.s.serving_index(), Some(0));
    h.frame(old, shutting_down());
    let new = connect_output(&mut h);
    // The old connection serves until the new one is up.
    assert_eq!(h.s.serving_index(), Some(0));
    h.s.handle_connected(h.now, new, None);
    assert_eq!(h.s.serving_index(), Some(1));
    h.s.handle_lost(
        h.now,
        new,
        ConnectionLost::new(LostReason::ClosedByPeer, "gone"),
    );
    assert_eq!(h.s.serving_index(), None, "reconnecting");
    let next = connect_output(&mut h);
    h.s.handle_connected(h.now, next, None);
    assert!(h.s.serving_index().is_some());
}

#[test]
fn rooms_lists_rooms_with_streams_until_the_session_ends() {
    let (mut h, c) = Harness::new(1, None);
    let rooms = |h: &mut Harness| {
        let (tx, mut rx) = oneshot::channel();
        h.s.handle_command(h.now, Command::Rooms(tx));
        rx.try_recv().unwrap()
    };
    assert!(rooms(&mut h).is_empty());
    let (_rx, _id, _answer) = h.join("//stuff", Room::Id(3), Overflow::Wait, 8);
    let jid = join_id(&h.sent(c));
    // Listed once the node answered the first join.
    assert!(rooms(&mut h).is_empty());
    let key = RoomKey {
        collection: "stuff".into(),
        id: 3,
    };
    h.frame(c, room_reply(jid, Some(3)));
    assert_eq!(rooms(&mut h), vec![key]);
    let (ack, _done) = oneshot::channel();
    h.s.handle_command(h.now, Command::Close(ack));
    // Nothing was in flight: closed at once, and the streams ended.
    assert!(h.s.finished().is_some());
    assert!(rooms(&mut h).is_empty());
    let (tx, mut rx) = oneshot::channel();
    reject(Command::Rooms(tx), Error::Closed);
    assert_eq!(rx.try_recv().unwrap(), Vec::<RoomKey>::new());
}

#[test]
fn node_error_answers_are_sent_again_after_a_back_off() {
    let (mut h, c) = Harness::new(1, None);
    let mut a = h.request(T);
    let first = h.sent(c)[0].id;
    h.frame(c, node_error(first));
    assert!(
        a.try_recv().is_err(),
        "not failed: waits for its next attempt"
    );
    assert!(h.sent(c).is_empty(), "not at once: after a back-off");
    let at = h.s.poll_timeout().expect("a timer for the next attempt");
    assert!(at > h.now && at <= h.now + Duration::from_millis(100));
    h.advance(Duration::from_millis(100));
    let again = h.sent(c);
    assert_eq!(again.len(), 1);
    h.frame(c, data(again[0].id, 7));
    assert!(matches!(a.try_recv(), Ok(Ok(_))));
}

#[test]
fn node_errors_stop_at_the_attempt_cap_and_say_how_often() {
    let (mut h, c) = Harness::new(1, None);
    let mut a = h.request(Duration::from_secs(60));
    for _ in 0..4 {
        let sent = h.sent(c);
        assert_eq!(sent.len(), 1);
        h.frame(c, node_error(sent[0].id));
        h.advance(Duration::from_secs(2));
    }
    assert!(h.sent(c).is_empty());
    match a.try_recv() {
        Ok(Err(e)) => {
            assert_eq!(e.attempts(), 4);
            assert_eq!(e.code(), Some(thingsdb_protocol::ErrorCode::Node));
            assert!(!e.may_have_run());
            assert!(matches!(e, Error::Retried { .. }));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn node_errors_are_not_sent_again_past_the_deadline() {
    let (mut h, c) = Harness::new(1, None);
    let mut a = h.request(Duration::from_millis(30));
    let id = h.sent(c)[0].id;
    h.frame(c, node_error(id));
    // The back-off (at least 50 ms) ends after the deadline: fail now.
    match a.try_recv() {
        Ok(Err(e)) => assert_eq!(e.code(), Some(thingsdb_protocol::ErrorCode::Node)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lost_connection_fails_written_requests_and_sends_the_rest_again() {
    let (mut h, c) = Harness::new(1, None);
    let mut plain = h.request(T);
    let mut idem = h.request_with(T, true);
    let _ = h.sent(c); // both written
    let mut unwritten = h.request(T); // queued, never taken by the driver
    h.s.handle_lost(h.now, c, ConnectionLost::new(LostReason::Io, "reset"));
    match plain.try_recv() {
        Ok(Err(e)) => {
            assert!(e.is_connection_lost());
            assert!(e.may_have_run());
            assert_eq!(e.attempts(), 1);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        idem.try_recv().is_err(),
        "idempotent: waits for the next connection"
    );
    assert!(unwritten.try_recv().is_err(), "never written: waits too");
    let next = connect_output(&mut h);
    h.s.handle_connected(h.now, next, None);
    let sent = h.sent(next);
    assert_eq!(sent.len(), 2, "{sent:?}");
    for s in &sent {
        h.frame(next, data(s.id, 1));
    }
    assert!(matches!(idem.try_recv(), Ok(Ok(_))));
    assert!(matches!(unwritten.try_recv(), Ok(Ok(_))));
}

#[test]
fn an_idempotent_request_that_ran_says_so_when_it_fails_later() {
    let (mut h, c) = Harness::new(1, None);
    let mut idem = h.request_with(T, true);
    let _ = h.sent(c);
    h.s.handle_lost(h.now, c, ConnectionLost::new(LostReason::Io, "reset"));
    let next = connect_output(&mut h);
    h.s.handle_connected(h.now, next, None);
    let id = h.sent(next)[0].id;
    h.advance(T);
    match idem.try_recv() {
        Ok(Err(e)) => {
            assert!(e.is_timeout());
            assert_eq!(e.attempts(), 2);
            assert!(e.may_have_run());
        }
        other => panic!("{other:?}"),
    }
    h.frame(next, data(id, 1)); // late: dropped
}

#[test]
fn requests_on_a_draining_connection_end_when_it_is_lost() {
    let (mut h, c) = Harness::new(2, None);
    let mut a = h.request(T);
    let mut b = h.request_with(T, true);
    let _ = h.sent(c);
    let next = move_on(&mut h, c);
    // The old node closes without answering (a WebSocket close without a
    // closing handshake, as a node that shuts down does).
    h.s.handle_lost(
        h.now,
        c,
        ConnectionLost::new(LostReason::WebSocket, "closed without a closing handshake"),
    );
    match a.try_recv() {
        Ok(Err(e)) => assert_eq!(e.lost_reason(), Some(LostReason::NodeShuttingDown)),
        other => panic!("at once, not by its deadline: {other:?}"),
    }
    let sent = h.sent(next);
    assert_eq!(sent.len(), 1, "the idempotent one goes to the new node");
    h.frame(next, data(sent[0].id, 1));
    assert!(matches!(b.try_recv(), Ok(Ok(_))));
}

/// The lifecycle events, as text.
fn events(h: &mut Harness) -> Vec<String> {
    std::iter::from_fn(|| h.s.poll_event())
        .map(|e| match e {
            Lifecycle::Connected { index, .. } => format!("connected {index}"),
            Lifecycle::Moved { from, to, why } => format!("moved {from}->{to} {why:?}"),
            Lifecycle::Lost { index, lost } => format!("lost {index} {:?}", lost.reason()),
            Lifecycle::AuthFailed { index, .. } => format!("auth failed {index}"),
            Lifecycle::GaveUp { .. } => "gave up".to_string(),
        })
        .collect()
}

#[test]
fn lifecycle_events_show_each_move() {
    let (mut h, c) = Harness::new(2, None);
    assert_eq!(events(&mut h), ["connected 0"]);
    // Make before break on SHUTTING_DOWN.
    let next = move_on(&mut h, c);
    assert_eq!(events(&mut h), ["connected 1", "moved 0->1 ShuttingDown"]);
    // Lost, then a failed connect with bad credentials, then back.
    h.s.handle_lost(h.now, next, ConnectionLost::new(LostReason::Io, "reset"));
    let again = connect_output(&mut h);
    let auth = Error::Thingsdb(ThingsdbError::new(
        thingsdb_protocol::ErrorCode::Auth,
        "bad credentials",
    ));
    h.s.handle_connect_failed(h.now, again, &auth);
    let third = connect_output(&mut h);
    h.s.handle_connected(h.now, third, None);
    let seen = events(&mut h);
    assert_eq!(seen[0], "lost 1 Io");
    assert_eq!(seen[1], "auth failed 1");
    assert!(seen[2].starts_with("connected "), "{seen:?}");
    // The draining connection was let go meanwhile.
    assert!(!seen.iter().any(|e| e == "gave up"));
}

#[test]
fn lifecycle_says_when_the_session_gives_up() {
    let (mut h, c) = Harness::new(1, None);
    h.s.cfg.reconnect.enabled = false;
    let _ = events(&mut h);
    h.s.handle_lost(h.now, c, ConnectionLost::new(LostReason::Io, "reset"));
    assert_eq!(events(&mut h), ["lost 0 Io", "gave up"]);
    // A close is not giving up.
    let (mut h, _) = Harness::new(1, None);
    let _ = events(&mut h);
    let (ack, _done) = tokio::sync::oneshot::channel();
    h.s.handle_command(h.now, Command::Close(ack));
    assert!(events(&mut h).is_empty());
}

#[test]
fn request_cancel_is_sent_again_only_for_idempotent_requests() {
    let (mut h, c) = Harness::new(1, None);
    let mut plain = h.request(T);
    let mut idem = h.request_with(T, true);
    let sent = h.sent(c);
    let cancel = |id| {
        let mut b = BytesMut::new();
        let _ = thingsdb_protocol::response::encode_error(
            &mut b,
            id,
            thingsdb_protocol::ErrorCode::RequestCancel,
            "request is cancelled",
        );
        Frame::new(
            PackageType::Error,
            id,
            b.split_off(thingsdb_protocol::HEADER_LEN).freeze(),
        )
    };
    h.frame(c, cancel(sent[0].id));
    h.frame(c, cancel(sent[1].id));
    // The plain one gets the node's answer as it is.
    match plain.try_recv() {
        Ok(Ok(f)) => assert_eq!(f.type_byte, PackageType::Error as u8),
        other => panic!("{other:?}"),
    }
    assert!(idem.try_recv().is_err(), "sent again after a back-off");
    // Cancelled at every attempt: it fails at the cap (4 in the harness),
    // saying it may have run.
    for _ in 0..3 {
        h.advance(Duration::from_millis(500));
        let again = h.sent(c);
        assert_eq!(again.len(), 1);
        h.frame(c, cancel(again[0].id));
    }
    match idem.try_recv() {
        Ok(Err(e)) => {
            assert_eq!(
                e.code(),
                Some(thingsdb_protocol::ErrorCode::RequestCancel),
                "{e}"
            );
            assert!(e.may_have_run());
            assert_eq!(e.attempts(), 4);
        }
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------ the first round

/// A session with no connection yet, for a pool of `pool` nodes.
fn unstarted(pool: usize, random_start: bool, seed: u64) -> Session {
    Session::new(SessionConfig {
        keepalive: None,
        reconnect: crate::config::ReconnectPolicy::default(),
        random_start,
        request_attempts: 4,
        seed,
    })
    .with_nodes(pool)
}

impl Session {
    fn with_nodes(mut self, pool: usize) -> Session {
        self.handle_command(Instant::now(), Command::AddNodes(pool_entries(pool)));
        self
    }
}

/// The one connect the session asks for now: its connection, pool entry
/// and delay.
fn one_connect(s: &mut Session) -> (ConnId, usize, Duration) {
    let outs: Vec<Output> = std::iter::from_fn(|| s.poll_output()).collect();
    let connects: Vec<_> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Connect {
                conn, index, delay, ..
            } => Some((*conn, *index, *delay)),
            Output::Close { .. } => None,
        })
        .collect();
    assert_eq!(connects.len(), 1, "{outs:?}");
    connects[0]
}

#[test]
fn the_first_round_tries_each_node_once_then_ends_with_the_last_error() {
    let now = Instant::now();
    let mut s = unstarted(3, false, 1);
    let mut tried = Vec::new();
    for k in 0..3 {
        let (conn, index, delay) = one_connect(&mut s);
        assert_eq!(delay, Duration::ZERO, "no back-off in the first round");
        assert!(s.finished().is_none());
        tried.push(index);
        let e = refused(format!("refused {k}"));
        s.handle_connect_failed(now, conn, &e);
    }
    assert_eq!(tried, [0, 1, 2]);
    assert!(s.poll_output().is_none(), "no fourth attempt");
    let e = s.finished().map(ToString::to_string);
    assert!(e.as_ref().is_some_and(|e| e.contains("refused 2")), "{e:?}");
    let gave_up =
        std::iter::from_fn(|| s.poll_event()).any(|e| matches!(e, Lifecycle::GaveUp { .. }));
    assert!(gave_up);
}

#[test]
fn bad_credentials_end_the_first_round_at_once() {
    let now = Instant::now();
    let mut s = unstarted(3, false, 1);
    let (conn, _, _) = one_connect(&mut s);
    s.handle_connect_failed(now, conn, &refused("refused"));
    let (conn, index, _) = one_connect(&mut s);
    assert_eq!(index, 1);
    let auth = Error::Thingsdb(ThingsdbError::new(
        thingsdb_protocol::ErrorCode::Auth,
        "invalid username or password",
    ));
    s.handle_connect_failed(now, conn, &auth);
    assert!(s.poll_output().is_none(), "node 2 is not tried");
    assert_eq!(
        s.finished().and_then(Error::code),
        Some(thingsdb_protocol::ErrorCode::Auth)
    );
}

#[test]
fn the_first_connection_that_answers_serves_and_says_which_node() {
    let now = Instant::now();
    let mut s = unstarted(2, false, 1);
    let (conn, _, _) = one_connect(&mut s);
    s.handle_connect_failed(now, conn, &refused("refused"));
    let (conn, index, _) = one_connect(&mut s);
    s.handle_connected(now, conn, Some(7));
    assert_eq!(s.serving_index(), Some(index));
    let connected: Vec<_> = std::iter::from_fn(|| s.poll_event())
        .filter_map(|e| match e {
            Lifecycle::Connected { index, node_id, .. } => Some((index, node_id)),
            _ => None,
        })
        .collect();
    assert_eq!(connected, [(1, Some(7))]);
    // Later failures are reconnects with back-off, not the first round.
    s.handle_lost(now, conn, ConnectionLost::new(LostReason::Io, "reset"));
    let (c2, _, _) = one_connect(&mut s);
    s.handle_connect_failed(now, c2, &refused("refused"));
    let (c3, _, _) = one_connect(&mut s);
    s.handle_connect_failed(now, c3, &refused("refused"));
    let (_, _, delay) = one_connect(&mut s);
    assert!(delay > Duration::ZERO, "a full round failed: back-off");
    assert!(s.finished().is_none());
}

#[test]
fn a_random_start_comes_from_the_seed() {
    let start = |seed| one_connect(&mut unstarted(4, true, seed)).1;
    for seed in 0..20 {
        assert_eq!(start(seed), start(seed), "seed {seed} replays");
    }
    let seen: std::collections::BTreeSet<usize> = (0..64).map(start).collect();
    assert!(seen.len() > 1, "always {seen:?}");
    assert_eq!(one_connect(&mut unstarted(4, false, 5)).1, 0);
}

#[test]
fn a_learnt_node_that_reaches_another_node_is_a_failed_connect() {
    let now = Instant::now();
    let mut s = unstarted(1, false, 1);
    let (conn, _, _) = one_connect(&mut s);
    s.handle_connected(now, conn, Some(0));
    // Discovery learns node 1 at a guessed address.
    let learnt = thingsdb_transport::Target::tcp("127.0.0.1", 9300);
    s.handle_command(
        now,
        Command::AddNodes(vec![crate::connection::pool::PoolEntry {
            target: learnt.clone(),
            node: Some(1),
        }]),
    );
    assert_eq!(s.pool().len(), 2);
    // The serving node shuts down: the move goes to the learnt entry.
    s.handle_frame(now, conn, shutting_down());
    let (next, index, _) = one_connect(&mut s);
    assert_eq!(index, 1);
    // Node 0 answered there: not node 1.
    s.handle_connected(now, next, Some(0));
    let outs: Vec<Output> = std::iter::from_fn(|| s.poll_output()).collect();
    assert!(
        outs.contains(&Output::Close { conn: next }),
        "the wrong node's connection is closed: {outs:?}"
    );
    assert!(
        outs.iter()
            .any(|o| matches!(o, Output::Connect { index: 0, .. })),
        "and the next entry tried: {outs:?}"
    );
    assert_eq!(s.serving_index(), Some(0), "the old node serves meanwhile");
}

/// Joins room 7 of `stuff` on `c` and answers it; the stream has seen its
/// `Joined`.
fn joined_room(h: &mut Harness, c: ConnId) -> EventRx<RoomEvent> {
    let (mut rx, _, _reply) = h.join("//stuff", Room::Id(7), Overflow::Wait, 64);
    let id = join_id(&h.sent(c));
    h.frame(c, room_reply(id, Some(7)));
    assert_eq!(drain(&mut rx), [RoomEvent::Joined]);
    rx
}

/// A room whose move to the next node completes after that node too said
/// it shuts down moves on to the connection serving by then (make before
/// break again), and no event is delivered twice.
#[test]
fn a_room_moves_on_when_its_new_node_shuts_down_during_the_move() {
    let (mut h, c1) = Harness::new(3, None);
    let mut rx = joined_room(&mut h, c1);
    let c2 = move_on(&mut h, c1);
    let move_2 = join_id(&h.sent(c2));
    // The second node says it goes too, before the room is joined there:
    // the first is let go.
    let c3 = move_on(&mut h, c2);
    assert!(h.sent(c3).is_empty(), "the room is still moving to c2");
    // The move to c2 completes: the room goes on to c3 at once.
    h.frame(c2, room_reply(move_2, Some(7)));
    let move_3 = join_id(&h.sent(c3));
    // Events of the window come from c2 and, once joined, from c3 too.
    h.frame(c2, on_emit("stuff", 7, 1));
    h.frame(c3, room_reply(move_3, Some(7)));
    h.frame(c3, on_emit("stuff", 7, 1));
    h.frame(c2, on_emit("stuff", 7, 2));
    h.frame(c3, on_emit("stuff", 7, 2));
    let leave = h
        .sent(c2)
        .into_iter()
        .find(|s| matches!(s.request, Request::Leave { .. }))
        .expect("left on c2");
    h.frame(c2, data(leave.id, 0));
    h.frame(c3, on_emit("stuff", 7, 3));
    let got: Vec<u64> = drain(&mut rx).iter().filter_map(emitted_n).collect();
    assert_eq!(got, [1, 2, 3], "each once, in order");
}

/// A room moving to a node that goes away before the room is joined there,
/// when the node it came from is gone too, is joined nowhere: its streams
/// hear `Disconnected` and it is joined again on the next connection.
#[test]
fn a_room_whose_both_sides_of_a_move_went_is_joined_again() {
    let (mut h, c1) = Harness::new(3, None);
    let mut rx = joined_room(&mut h, c1);
    let c2 = move_on(&mut h, c1);
    let _move_2 = join_id(&h.sent(c2));
    // c1 goes first (c2 says it shuts down, so the draining c1 is let go),
    // then c2 breaks before it answered the JOIN.
    h.frame(c2, shutting_down());
    let c3 = connect_output(&mut h);
    h.s.handle_lost(h.now, c2, ConnectionLost::new(LostReason::Io, "reset"));
    assert_eq!(drain(&mut rx), [RoomEvent::Disconnected]);
    h.s.handle_connected(h.now, c3, None);
    let again = join_id(&h.sent(c3));
    h.frame(c3, room_reply(again, Some(7)));
    h.frame(c3, on_emit("stuff", 7, 5));
    let got = drain(&mut rx);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], RoomEvent::Joined);
    assert_eq!(emitted_n(&got[1]), Some(5));
}

// Tests added for mutants that survived `cargo mutants` over the session's
// connection-loss, hand-over, close and timeout code (issue 25).

/// A request that timed out is not waited for: `close()` finishes without
/// its late reply.
#[test]
fn close_does_not_wait_for_a_timed_out_request() {
    let (mut h, _c) = Harness::new(1, None);
    let mut rx = h.request(T);
    h.advance(T);
    assert!(matches!(rx.try_recv(), Ok(Err(e)) if e.is_timeout()));
    let (ack, _ack_rx) = oneshot::channel();
    h.s.handle_command(h.now, Command::Close(ack));
    assert!(h.s.finished().is_some(), "closed at once");
}

/// Keep-alive pings go out every period while their pongs come, and a
/// connection that keeps talking is not given up while a pong is slow.
#[test]
fn keepalive_pings_every_period_and_traffic_counts_as_alive() {
    let period = Duration::from_secs(1);
    let (mut h, c) = Harness::new(1, Some(period));
    for _ in 0..3 {
        h.advance(period);
        let pings: Vec<Sent> = h
            .sent(c)
            .into_iter()
            .filter(|s| matches!(s.request, Request::Ping))
            .collect();
        assert_eq!(pings.len(), 1, "one ping per period");
        h.frame(c, pong(pings[0].id));
    }
    // A ping out, no pong, but replies to requests keep coming.
    h.advance(period);
    let mut rx = h.request(T);
    let id = h
        .sent(c)
        .into_iter()
        .find(|s| !matches!(s.request, Request::Ping))
        .map(|s| s.id)
        .expect("the request");
    h.frame(c, data(id, 1));
    assert!(matches!(rx.try_recv(), Ok(Ok(_))));
    h.advance(period);
    assert_eq!(h.s.open_conns(), [c], "heard from: not given up");
}

/// The lost serving connection is where a move comes from: a reconnect
/// that lands on another node says so.
#[test]
fn a_reconnect_to_another_node_is_a_move_because_of_the_loss() {
    let (mut h, c) = Harness::new(2, None);
    let _ = events(&mut h);
    h.s.handle_lost(h.now, c, ConnectionLost::new(LostReason::Io, "reset"));
    let again = connect_output(&mut h); // the same node first
    h.s.handle_connect_failed(h.now, again, &refused("refused"));
    let other = connect_output(&mut h);
    h.s.handle_connected(h.now, other, None);
    assert_eq!(
        events(&mut h),
        ["lost 0 Io", "connected 1", "moved 0->1 Lost"]
    );
}

/// SHUTTING_DOWN moves the client only when there is somewhere to go and
/// it is not moving already.
#[test]
fn shutting_down_moves_only_with_another_node_and_once() {
    let (mut h, c) = Harness::new(1, None);
    h.frame(c, shutting_down());
    assert!(h.outputs().is_empty(), "a pool of one: nowhere to go");
    let (mut h, c) = Harness::new(3, None);
    h.frame(c, shutting_down());
    let _next = connect_output(&mut h);
    h.frame(c, shutting_down());
    assert!(h.outputs().is_empty(), "one move at a time");
}

/// A room being left does not move to the next node.
#[test]
fn a_room_being_left_is_not_moved() {
    let (mut h, c1) = Harness::new(2, None);
    let (mut rx, stream_id, _reply) = h.join("//stuff", Room::Id(7), Overflow::Wait, 16);
    let id = join_id(&h.sent(c1));
    h.frame(c1, room_reply(id, Some(7)));
    assert_eq!(drain(&mut rx), [RoomEvent::Joined]);
    let (ack, _ack_rx) = oneshot::channel();
    h.s.handle_command(
        h.now,
        Command::Unsubscribe {
            key: RoomKey {
                collection: "stuff".into(),
                id: 7,
            },
            stream_id,
            ack: Some(ack),
        },
    );
    assert!(h
        .sent(c1)
        .iter()
        .any(|s| matches!(s.request, Request::Leave { .. })));
    let c2 = move_on(&mut h, c1);
    assert!(h.sent(c2).is_empty(), "no JOIN for a room being left");
}

/// A draining connection that closes takes only its own rooms along: a
/// room being left on the serving connection waits for its LEAVE there.
#[test]
fn a_closing_draining_connection_leaves_other_rooms_alone() {
    let (mut h, c1) = Harness::new(2, None);
    let mut first = h.request(T);
    let first_id = h.sent(c1)[0].id;
    let c2 = move_on(&mut h, c1);
    let (mut rx, stream_id, _reply) = h.join("//stuff", Room::Id(7), Overflow::Wait, 16);
    let id = join_id(&h.sent(c2));
    h.frame(c2, room_reply(id, Some(7)));
    assert_eq!(drain(&mut rx), [RoomEvent::Joined]);
    let (ack, mut ack_rx) = oneshot::channel();
    h.s.handle_command(
        h.now,
        Command::Unsubscribe {
            key: RoomKey {
                collection: "stuff".into(),
                id: 7,
            },
            stream_id,
            ack: Some(ack),
        },
    );
    let leave = h
        .sent(c2)
        .into_iter()
        .find(|s| matches!(s.request, Request::Leave { .. }))
        .expect("a LEAVE on c2");
    // The last answer on c1: it closes.
    h.frame(c1, data(first_id, 1));
    assert!(matches!(first.try_recv(), Ok(Ok(_))));
    assert_eq!(h.s.open_conns(), [c2]);
    assert!(
        ack_rx.try_recv().is_err(),
        "not left before the node says so"
    );
    assert_eq!(h.s.rooms_len(), 1);
    h.frame(c2, data(leave.id, 0));
    assert!(ack_rx.try_recv().is_ok());
    assert_eq!(drain(&mut rx), [RoomEvent::Left]);
    assert_eq!(h.s.rooms_len(), 0);
}

/// A room that could not start its move (no request id free for the
/// JOIN on the new connection) stays joined on the draining one; when that
/// connection goes, the room is joined again on the serving one at once.
#[test]
fn a_room_that_could_not_move_is_joined_again_when_its_draining_connection_goes() {
    let (mut h, c) = Harness::new(2, None);
    let (mut stream, _, _r) = h.join("//stuff", Room::Id(7), Overflow::Wait, 16);
    let j = join_id(&h.sent(c));
    h.frame(c, room_reply(j, Some(7)));
    h.frame(c, on_join("stuff", 7));
    // Every id of the 16-bit space in flight on `c`.
    let replies: Vec<_> = (0..crate::in_flight::MAX_IN_FLIGHT)
        .map(|_| h.request(T))
        .collect();
    assert_eq!(h.s.in_flight(), crate::in_flight::MAX_IN_FLIGHT);
    let _ = h.s.poll_transmit(c);
    let n = move_on(&mut h, c);
    // No id for the JOIN on `n`: the room stays where it is.
    assert!(h
        .sent(n)
        .iter()
        .all(|s| !matches!(s.request, Request::Join { .. })));
    h.s.handle_lost(
        h.now,
        c,
        ConnectionLost::new(LostReason::ClosedByPeer, "bye"),
    );
    // Its requests failed (ids free again); the room is joined on `n`.
    let j2 = join_id(&h.sent(n));
    h.frame(n, room_reply(j2, Some(7)));
    h.frame(n, on_emit("stuff", 7, 9));
    let events = drain(&mut stream);
    assert!(events.contains(&RoomEvent::Disconnected), "{events:?}");
    assert_eq!(events.iter().filter_map(emitted_n).collect::<Vec<_>>(), [9]);
    drop(replies);
}

#[test]
fn an_answered_request_leaves_its_frame_for_the_next_one_and_a_resent_one_keeps_it() {
    let (mut h, c) = Harness::new(1, None);
    let mut a = h.request(T);
    let sent = h.sent(c);
    assert!(
        h.s.spent_frames().is_empty(),
        "in flight: kept for a resend"
    );
    // NODE_ERROR: sent again after a back-off, with the same frame.
    h.frame(c, node_error(sent[0].id));
    assert!(h.s.spent_frames().is_empty());
    h.advance(Duration::from_secs(2));
    let again = h.sent(c);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].request, sent[0].request);
    h.frame(c, data(again[0].id, 1));
    assert!(matches!(a.try_recv(), Ok(Ok(_))));
    let spent = std::mem::take(h.s.spent_frames());
    assert_eq!(spent.len(), 1);
    assert!(spent[0].len() >= thingsdb_protocol::HEADER_LEN);
}
