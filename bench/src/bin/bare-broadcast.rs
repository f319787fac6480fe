//! The ceiling of this stack: a WebSocket room broadcast with no logic, no
//! storage and no JSON. A client sends `join <room>` once, then every text
//! frame it sends goes to the other clients of its room, serialized once.
//!
//!     bare-broadcast 127.0.0.1:9001

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

type Rooms = Arc<Mutex<HashMap<String, Vec<(u64, mpsc::Sender<Message>)>>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("bare-broadcast on {addr}");
    let rooms: Rooms = Arc::default();
    let mut next_id = 0u64;
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        next_id += 1;
        let (id, rooms) = (next_id, rooms.clone());
        tokio::spawn(async move {
            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let (tx, mut rx) = mpsc::channel::<Message>(1024);
            tokio::spawn(async move {
                while let Some(frame) = rx.recv().await {
                    let mut ok = sink.feed(frame).await.is_ok();
                    while ok && let Ok(frame) = rx.try_recv() {
                        ok = sink.feed(frame).await.is_ok();
                    }
                    if !ok || sink.flush().await.is_err() {
                        break;
                    }
                }
            });
            let mut room = None;
            while let Some(Ok(frame)) = stream.next().await {
                let Message::Text(text) = &frame else {
                    continue;
                };
                match &room {
                    None => {
                        let name = text.strip_prefix("join ").unwrap_or(text).to_string();
                        rooms
                            .lock()
                            .unwrap()
                            .entry(name.clone())
                            .or_default()
                            .push((id, tx.clone()));
                        room = Some(name);
                    }
                    Some(name) => {
                        let members = rooms.lock().unwrap().get(name).cloned().unwrap_or_default();
                        for (member, tx) in members {
                            if member != id {
                                let _ = tx.try_send(frame.clone());
                            }
                        }
                    }
                }
            }
            if let Some(name) = room
                && let Some(members) = rooms.lock().unwrap().get_mut(&name)
            {
                members.retain(|(member, _)| *member != id);
            }
        });
    }
}
