//! The page's logic: one connection at a time, kept up by [`run`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use thingsdb_protocol::{msgpack, request, Direction, Event, Response};
use thingsdb_transport::{connect, ConnectOptions, FrameWriter, Target};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Document, HtmlInputElement};

const SCOPE: &str = "//stuff";
const ROOM: &str = "chat";
const EVENT: &str = "msg";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_PAYLOAD: u32 = 1 << 20;

/// What the send button needs: the live connection, if any, and the
/// joined room's id.
#[derive(Default)]
struct Live {
    sender: RefCell<Option<FrameWriter>>,
    room: Cell<Option<u64>>,
    next_id: Cell<u16>,
    /// How many times the room was joined (the status element's
    /// `data-joins`, which tests watch to see a reconnect).
    joins: Cell<u32>,
}

impl Live {
    fn id(&self) -> u16 {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        id
    }
}

/// The entry point: wires the form and starts the connection loop.
#[wasm_bindgen(start)]
pub fn start() -> Result<(), JsValue> {
    let doc = document()?;
    let params =
        web_sys::UrlSearchParams::new_with_str(&doc.location().ok_or("no location")?.search()?)?;
    let ws = params
        .get("ws")
        .unwrap_or_else(|| "ws://127.0.0.1:9270".into());
    let name = params.get("name").unwrap_or_else(|| "anonymous".into());
    let live = Rc::new(Live::default());

    let form = element(&doc, "form")?;
    let on_submit = {
        let live = live.clone();
        let name = name.clone();
        Closure::<dyn FnMut(web_sys::Event)>::new(move |e: web_sys::Event| {
            e.prevent_default();
            if let Err(err) = send_line(&live, &name) {
                status("error", &format!("send failed: {err}"));
            }
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

fn send_line(live: &Live, name: &str) -> Result<(), String> {
    let doc = document().map_err(|e| format!("{e:?}"))?;
    let input: HtmlInputElement = element(&doc, "text")
        .map_err(|e| format!("{e:?}"))?
        .dyn_into()
        .map_err(|_| "#text is not an input")?;
    let text = input.value();
    if text.is_empty() {
        return Ok(());
    }
    let room = live.room.get().ok_or("not in the room yet")?;
    let mut args = Vec::new();
    msgpack::write_array_len(&mut args, 2);
    msgpack::write_str(&mut args, name);
    msgpack::write_str(&mut args, &text);
    let mut out = BytesMut::new();
    request::encode_emit(&mut out, live.id(), SCOPE, &room.into(), EVENT, &args)
        .map_err(|e| e.to_string())?;
    let mut sender = live.sender.borrow_mut();
    let tx = sender.as_mut().ok_or("not connected")?;
    tx.queue(out.freeze()).map_err(|e| e.to_string())?;
    input.set_value("");
    Ok(())
}

/// Connects, joins and shows events; after a lost connection, waits
/// (0.25 s doubling to 5 s) and does it again.
async fn run(ws: String, live: Rc<Live>) {
    let target: Target = match ws.parse() {
        Ok(t) => t,
        Err(e) => return status("error", &e.to_string()),
    };
    let mut backoff = Duration::from_millis(250);
    loop {
        status("connecting", &format!("connecting to {target}"));
        match session(&target, &live).await {
            Ok(()) => return status("closed", "the node closed the connection"),
            Err(e) => {
                live.room.set(None);
                live.sender.borrow_mut().take();
                status(
                    "reconnecting",
                    &format!("{e}; reconnecting in {} ms", backoff.as_millis()),
                );
            }
        }
        let ms = u32::try_from(backoff.as_millis()).unwrap_or(u32::MAX);
        gloo_timers::future::TimeoutFuture::new(ms).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection: authenticate, join, then show events until it ends.
/// Returns `Ok` on a clean close, `Err` with a message otherwise.
async fn session(target: &Target, live: &Live) -> Result<(), String> {
    let started = now_ms();
    let opts = ConnectOptions::default()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_max_payload(MAX_PAYLOAD);
    let conn = connect(target, &opts).await.map_err(|e| e.to_string())?;
    let connected = now_ms() - started;
    let (mut tx, mut rx) = conn.split();
    let mut out = BytesMut::new();
    let auth_id = live.id();
    request::encode_auth(&mut out, auth_id, "admin", "pass").map_err(|e| e.to_string())?;
    let join_id = live.id();
    request::encode_join(&mut out, join_id, SCOPE, &[ROOM.to_string().into()])
        .map_err(|e| e.to_string())?;
    tx.send(out.freeze()).await.map_err(|e| e.to_string())?;
    *live.sender.borrow_mut() = Some(tx);

    let mut first_event = true;
    loop {
        let Some(frame) = rx.recv().await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        if frame.id == auth_id || frame.id == join_id {
            match Response::decode(&frame).map_err(|e| e.to_string())? {
                Response::Error(e) => return Err(format!("{}: {}", e.code, e.message)),
                Response::Data(v) if frame.id == join_id => {
                    let ids = rmpv::decode::read_value(&mut &v[..]).map_err(|e| e.to_string())?;
                    let room = ids
                        .as_array()
                        .and_then(|a| a.first())
                        .and_then(rmpv::Value::as_u64)
                        .ok_or("the room `chat` does not exist")?;
                    live.room.set(Some(room));
                }
                _ => {}
            }
            continue;
        }
        if frame.package_type().map(|t| t.direction()) == Ok(Direction::Event) {
            match Event::decode(&frame).map_err(|e| e.to_string())? {
                Event::Join(_) => {
                    if first_event {
                        first_event = false;
                        set_timings(connected, now_ms() - started);
                    }
                    live.joins.set(live.joins.get() + 1);
                    status("joined", &format!("in the room, via {target}"));
                    if let Ok(el) = document().and_then(|d| element(&d, "status")) {
                        let _ = el.set_attribute("data-joins", &live.joins.get().to_string());
                    }
                }
                Event::Emit(e) if e.event == EVENT => {
                    let args = e.arg_values().map_err(|e| e.to_string())?;
                    let text = |i: usize| {
                        args.get(i)
                            .and_then(|a| rmpv::decode::read_value(&mut &a[..]).ok())
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    };
                    show(&format!("{}: {}", text(0), text(1)));
                }
                Event::Delete(_) => return Err("the room was deleted".into()),
                _ => {}
            }
        } else if let Ok(Response::Error(e)) = Response::decode(&frame) {
            status("error", &format!("{}: {}", e.code, e.message));
        }
    }
}

fn set_timings(connect_ms: f64, first_event_ms: f64) {
    if let Ok(el) = document().and_then(|d| element(&d, "timings")) {
        el.set_text_content(Some(&format!(
            "connect {connect_ms:.0} ms, first event (ON_JOIN) {first_event_ms:.0} ms after start"
        )));
    }
}
