//! A room handler that writes down every call, for the room tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use thingsdb_client::{Emitted, Room, RoomEvent, RoomHandler};
use tokio::sync::{mpsc, Notify};

/// The events of the test room.
#[derive(Debug, Clone, PartialEq, RoomEvent)]
pub enum Chat {
    Message { user: String, text: String },
    Count(i64),
}

/// The calls a [`Recorder`] saw, in order.
pub type Log = Arc<Mutex<Vec<String>>>;

/// Writes down each call; its second `on_join` waits for `gate` (after
/// saying so on `entered`), so events can be sent while it runs.
pub struct Recorder {
    pub log: Arc<Mutex<Vec<String>>>,
    joins: usize,
    entered: mpsc::UnboundedSender<usize>,
    gate: Arc<Notify>,
}

impl Recorder {
    /// The recorder, its log, the channel its second join reports on, and
    /// the gate that lets that join finish.
    pub fn new() -> (Recorder, Log, mpsc::UnboundedReceiver<usize>, Arc<Notify>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (entered, rx) = mpsc::unbounded_channel();
        let gate = Arc::new(Notify::new());
        (
            Recorder {
                log: log.clone(),
                joins: 0,
                entered,
                gate: gate.clone(),
            },
            log,
            rx,
            gate,
        )
    }

    fn push(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
}

impl RoomHandler for Recorder {
    type Event = Chat;

    async fn on_init(&mut self, _room: &Room) {
        self.push("init".into());
    }

    async fn on_join(&mut self, room: &Room) {
        self.joins += 1;
        let n = self.joins;
        self.push(format!("join{n} start"));
        // A query from inside on_join works (the connection is not held up).
        let _ = room.client().ping().await;
        if n == 2 {
            let _ = self.entered.send(n);
            self.gate.notified().await;
        }
        self.push(format!("join{n} end"));
    }

    async fn on_event(&mut self, _room: &Room, event: Chat) {
        match event {
            Chat::Message { user, text } => self.push(format!("message {user}: {text}")),
            Chat::Count(n) => self.push(format!("count {n}")),
        }
    }

    async fn on_emit(&mut self, _room: &Room, event: Emitted) {
        self.push(format!("raw {}", event.event));
    }

    async fn on_disconnect(&mut self, _room: &Room) {
        self.push("disconnect".into());
    }

    async fn on_leave(&mut self, _room: &Room) {
        self.push("leave".into());
    }

    async fn on_delete(&mut self, _room: &Room) {
        self.push("delete".into());
    }
}

/// Waits (at most 30 s) until the log has an entry `want`.
pub async fn wait_log(log: &Arc<Mutex<Vec<String>>>, want: &str) {
    for _ in 0..1500 {
        if log.lock().unwrap().iter().any(|l| l == want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("`{want}` never came; log: {:?}", log.lock().unwrap());
}

/// The log's entries from `from` on.
pub fn log_from(log: &Arc<Mutex<Vec<String>>>, from: &str) -> Vec<String> {
    let l = log.lock().unwrap();
    let at = l
        .iter()
        .position(|e| e == from)
        .unwrap_or_else(|| panic!("no `{from}` in {l:?}"));
    l[at..].to_vec()
}

/// Something that is not `RoomEvent::Emitted`, for matching.
pub fn is_control(ev: &RoomEvent) -> bool {
    !matches!(ev, RoomEvent::Emitted(_))
}

/// With the second `on_join` waiting at its gate and the events sent:
/// checks that none was handled yet, opens the gate, and checks that
/// `on_join` finished before the events `after` were handled, in order.
pub async fn release_join2_and_check(log: &Log, gate: &Notify, after: &[&str]) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !log.lock().unwrap().iter().any(|l| l == after[0]),
        "handled during on_join: {:?}",
        log.lock().unwrap()
    );
    gate.notify_one();
    wait_log(log, after[after.len() - 1]).await;
    let mut want = vec!["join2 start", "join2 end"];
    want.extend_from_slice(after);
    assert_eq!(log_from(log, "join2 start"), want);
}

/// Whether the log has `first` right before `then`.
pub fn right_before(log: &Log, first: &str, then: &str) -> bool {
    let l = log.lock().unwrap();
    l.windows(2).any(|w| w[0] == first && w[1] == then)
}
