//! Two clients talk through a room.
//!
//! ```text
//! cargo run -p thingsdb-client --example chat
//! THINGSDB_PASSWORD=pass THINGSDB_URI=ws://localhost:9270 cargo run -p thingsdb-client --example chat
//! ```

mod common;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use thingsdb_client::{Client, RoomEvent};
use thingsdb_testkit::Reply;

#[derive(Debug, Serialize, Deserialize)]
struct Message {
    from: String,
    text: String,
}

/// Finds the room named `chat`, creating it on first use.
const ROOM_CODE: &str =
    "if (!.has('chat')) { .chat = room(); .chat.set_name('chat'); }; .chat.id();";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let node = common::node().await?;
    if let Some(tk) = &node.testkit {
        let id = tk.create_room("stuff", Some("chat"));
        tk.on_query(move |q| match q.code.as_str() {
            ROOM_CODE => Reply::value(id),
            _ => q.evaluate(),
        });
    }
    let connect = || async {
        Client::builder()
            .target(&node.uri)?
            .auth(node.auth.clone())
            .connect()
            .await
    };
    let alice = connect().await?;
    let bob = connect().await?;

    let room_alice = alice.room_by_code("//stuff", ROOM_CODE).await?;
    let room_bob = bob.room_by_code("//stuff", ROOM_CODE).await?;
    println!("room id {}", room_alice.room_ref());

    let mut bob_hears = room_bob.join().await?;
    // Wait until Bob is in before Alice speaks.
    while let Some(ev) = bob_hears.next().await {
        if ev == RoomEvent::Joined {
            break;
        }
    }

    for text in ["hi Bob", "how are you?", "bye"] {
        let msg = Message {
            from: "alice".into(),
            text: text.into(),
        };
        room_alice.emit("message", &[&msg]).await?;
        println!("alice says: {text}");
    }

    let mut heard = 0;
    while heard < 3 {
        match bob_hears.next().await {
            Some(RoomEvent::Emitted(e)) if e.event == "message" => {
                let m: Message = e.arg(0)?;
                println!("bob hears {}: {}", m.from, m.text);
                heard += 1;
            }
            Some(_) => {}
            None => break,
        }
    }
    bob_hears.leave().await?;
    alice.close().await?;
    bob.close().await?;
    println!("done: bob heard {heard} messages");
    Ok(())
}
