//! The page's logic, on `thingsdb-client` as on native: a [`Client`], a
//! [`Room`] and its event stream. Reconnecting and joining the room again
//! after a lost connection is the client's job.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures::StreamExt;
use thingsdb_client::{Auth, Client, Room, RoomEvent};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Document, HtmlInputElement};

const SCOPE: &str = "//stuff";
const ROOM: &str = "chat";
const EVENT: &str = "msg";

/// What the send button needs: the room, once joined.
#[derive(Default)]
struct Live {
    room: RefCell<Option<Room>>,
    /// How many times the room was joined (the status element's
    /// `data-joins`, which tests watch to see a reconnect).
    joins: Cell<u32>,
}

/// The entry point: wires the form and starts the chat.
#[wasm_bindgen(start)]
pub fn start() -> Result<(), JsValue> {
    let doc = document()?;
    let search = doc.location().ok_or("no location")?.search()?;
    let params = web_sys::UrlSearchParams::new_with_str(&search)?;
    let ws = params
        .get("ws")
        .unwrap_or_else(|| "ws://127.0.0.1:9270".into());
    let name = params.get("name").unwrap_or_else(|| "anonymous".into());
    let live = Rc::new(Live::default());

    let form = element(&doc, "form")?;
    let on_submit = {
        let live = live.clone();
        Closure::<dyn FnMut(web_sys::Event)>::new(move |e: web_sys::Event| {
            e.prevent_default();
            send_line(&live, &name);
        })
    };
    form.add_event_listener_with_callback("submit", on_submit.as_ref().unchecked_ref())?;
    // The form lives as long as the page.
    on_submit.forget();

    wasm_bindgen_futures::spawn_local(run(ws, live));
    Ok(())
}

fn document() -> Result<Document, JsValue> {
    web_sys::window()
        .and_then(|w| w.document())
        .ok_or_else(|| "no document".into())
}

fn element(doc: &Document, id: &str) -> Result<web_sys::Element, JsValue> {
    doc.get_element_by_id(id)
        .ok_or_else(|| format!("no #{id} on the page").into())
}

fn status(state: &str, text: &str) {
    if let Ok(el) = document().and_then(|d| element(&d, "status")) {
        el.set_text_content(Some(text));
        let _ = el.set_attribute("data-state", state);
    }
}

fn show(line: &str) {
    let Ok(doc) = document() else { return };
    let (Ok(list), Ok(li)) = (element(&doc, "messages"), doc.create_element("li")) else {
        return;
    };
    li.set_text_content(Some(line));
    let _ = list.append_child(&li);
}

fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or(0.0)
}

/// Emits the typed line in the room, on a task of its own.
fn send_line(live: &Live, name: &str) {
    let input = document()
        .and_then(|d| element(&d, "text"))
        .ok()
        .and_then(|e| e.dyn_into::<HtmlInputElement>().ok());
    let Some(input) = input else { return };
    let text = input.value();
    if text.is_empty() {
        return;
    }
    let Some(room) = live.room.borrow().clone() else {
        return status("error", "not in the room yet");
    };
    input.set_value("");
    let name = name.to_owned();
    wasm_bindgen_futures::spawn_local(async move {
        if let Err(e) = room.emit(EVENT, &(name, text)).await {
            status("error", &format!("send failed: {e}"));
        }
    });
}

/// Connects (trying again with backoff until the node answers), joins the
/// room and shows its events. After that the client keeps the connection
/// and the room up by itself; only if it gives up does this start over.
async fn run(ws: String, live: Rc<Live>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        status("connecting", &format!("connecting to {ws}"));
        let started = now_ms();
        match chat(&ws, &live, started).await {
            Ok(()) => return status("closed", "the room was deleted"),
            Err(e) => status(
                "reconnecting",
                &format!("{e}; trying again in {} ms", backoff.as_millis()),
            ),
        }
        let ms = u32::try_from(backoff.as_millis()).unwrap_or(u32::MAX);
        gloo_timers::future::TimeoutFuture::new(ms).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn chat(ws: &str, live: &Live, started: f64) -> Result<(), thingsdb_client::Error> {
    let client = Client::builder()
        .target(ws)?
        .auth(Auth::password("admin", "pass"))
        .default_scope(SCOPE)?
        .connect()
        .await?;
    let connected = now_ms() - started;
    let room = client.room(SCOPE, ROOM)?;
    let mut events = room.join().await?;
    *live.room.borrow_mut() = Some(room);
    let mut first = true;
    while let Some(ev) = events.next().await {
        match ev {
            RoomEvent::Joined => {
                if first {
                    first = false;
                    set_timings(connected, now_ms() - started);
                }
                live.joins.set(live.joins.get() + 1);
                status("joined", &format!("in the room, via {ws}"));
                if let Ok(el) = document().and_then(|d| element(&d, "status")) {
                    let _ = el.set_attribute("data-joins", &live.joins.get().to_string());
                }
            }
            RoomEvent::Disconnected => status("reconnecting", "connection lost; reconnecting"),
            RoomEvent::Emitted(e) if e.event == EVENT => match e.decode::<(String, String)>() {
                Ok((name, text)) => show(&format!("{name}: {text}")),
                Err(err) => status("error", &format!("a message I cannot read: {err}")),
            },
            RoomEvent::Deleted => {
                live.room.borrow_mut().take();
                return Ok(());
            }
            _ => {}
        }
    }
    // The client gave up reconnecting: start over with a new one.
    live.room.borrow_mut().take();
    Err(thingsdb_client::Error::Closed)
}

fn set_timings(connect_ms: f64, first_event_ms: f64) {
    if let Ok(el) = document().and_then(|d| element(&d, "timings")) {
        el.set_text_content(Some(&format!(
            "connected and authenticated {connect_ms:.0} ms, first event (Joined) \
             {first_event_ms:.0} ms after start"
        )));
    }
}
