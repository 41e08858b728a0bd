//! The blocking client: no async runtime in the program's own code. Query,
//! call a procedure, join a room and read its events with a timeout.
//!
//! ```text
//! cargo run -p thingsdb-client --example blocking
//! THINGSDB_URI=thingsdb://localhost:9200 cargo run -p thingsdb-client --example blocking
//! ```
//!
//! Without `THINGSDB_URI` it talks to an in-process testkit node (which
//! runs on a tokio runtime of its own; the client uses none).

mod common;

use std::time::Duration;

use thingsdb_client::blocking::{Client, RecvTimeoutError};
use thingsdb_client::RoomEvent;
use thingsdb_testkit::Reply;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Only for the testkit node, when no real node is named.
    let rt = tokio::runtime::Runtime::new()?;
    let node = rt.block_on(common::node())?;
    let mut room_id = None;
    if let Some(tk) = &node.testkit {
        tk.procedure("add_one", |args| {
            match args.param(0, "x").and_then(|v| v.as_i64()) {
                Some(x) => Reply::value(x + 1),
                None => Reply::error(thingsdb_client::ErrorCode::Type, "expected an integer"),
            }
        });
        room_id = Some(tk.create_room("stuff", Some("chat")));
    }

    let client = Client::builder()
        .target(&node.uri)?
        .auth(node.auth.clone())
        .default_scope("//stuff")?
        .request_timeout(Duration::from_secs(10))
        .connect_blocking()?;
    println!(
        "connected to {:?}; threads: {}",
        client.connection_info(),
        client.threads()
    );

    let sum: i64 = client
        .query("a + b;")
        .var("a", &20)
        .var("b", &22)
        .decode()?;
    println!("a + b = {sum}");

    if !node.is_testkit() {
        client
            .query("has_procedure('add_one') || new_procedure('add_one', |x| x + 1); nil;")
            .send()?;
        room_id = Some(
            client
                .query(".has('chat') || (.chat = room()); .chat.id();")
                .decode()?,
        );
    }
    let n: i64 = client.run("add_one").arg(&41).decode()?;
    println!("add_one(41) = {n}");

    let Some(room_id) = room_id else {
        return Ok(());
    };
    let room = client.room("//stuff", room_id)?;
    let mut events = room.join()?;
    // Joining started the one event thread.
    println!("joined room {room_id}; threads: {}", client.threads());
    room.emit("msg", &("hello from the blocking client",))?;
    loop {
        match events.recv_timeout(Duration::from_secs(5)) {
            Ok(RoomEvent::Emitted(e)) => {
                let (text,): (String,) = e.decode()?;
                println!("event {}: {text}", e.event);
                break;
            }
            Ok(other) => println!("{other:?}"),
            Err(RecvTimeoutError::Timeout) => {
                println!("no event within 5 s");
                break;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    events.leave()?;
    client.close()?;
    Ok(())
}
