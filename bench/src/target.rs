//! What differs between the servers under test: how a client becomes a
//! member of a room, and how it sends a message there.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::bail;
use clap::ValueEnum;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Ws};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Target {
    Roomd,
    Socketio,
    Bare,
}

impl Target {
    /// Opens a connection that is a member of `room`; `user` matters only to
    /// roomd, which requires a login.
    pub async fn member(
        self,
        addr: SocketAddr,
        source: Ipv4Addr,
        user: &str,
        room: &str,
    ) -> anyhow::Result<Ws> {
        match self {
            Target::Roomd => roomd_member(addr, source, user, room).await,
            Target::Socketio => socketio_member(addr, source, room).await,
            Target::Bare => {
                let mut ws = client::connect(addr, source, "/").await?;
                ws.send(Message::text(format!("join {room}"))).await?;
                Ok(ws)
            }
        }
    }

    /// A message carrying `body` to `room`; `id` is roomd's request id, which
    /// its reply echoes.
    pub fn message(self, id: u64, room: &str, body: &str) -> Message {
        Message::text(match self {
            Target::Roomd => format!(
                "{{\"id\":{id},\"op\":\"sendRoomMessage\",\"roomID\":\"{room}\",\"message\":{{\"type\":\"text\",\"message\":\"{body}\"}}}}"
            ),
            Target::Socketio => format!("42[\"msg\",\"{body}\"]"),
            Target::Bare => body.to_string(),
        })
    }
}

async fn roomd_member(
    addr: SocketAddr,
    source: Ipv4Addr,
    user: &str,
    room: &str,
) -> anyhow::Result<Ws> {
    let mut ws = client::connect(addr, source, "/v1/ws").await?;
    ws.send(Message::text(
        json!({"id": 1, "op": "login", "userInfo": {"userID": user}}).to_string(),
    ))
    .await?;
    let reply = client::read_until(&mut ws, |t| t.starts_with("{\"id\":1")).await?;
    if !reply.contains("\"ok\":true") {
        bail!("login failed: {reply}");
    }
    ws.send(Message::text(
        json!({"id": 2, "op": "enterRoom", "roomInfo": {"roomID": room}}).to_string(),
    ))
    .await?;
    let reply = client::read_until(&mut ws, |t| t.starts_with("{\"id\":2")).await?;
    if !reply.contains("\"ok\":true") {
        bail!("enterRoom failed: {reply}");
    }
    Ok(ws)
}

/// The Engine.IO open packet, then the Socket.IO connect, then the peer
/// server's own `join` event (bench/socketio/server.js).
async fn socketio_member(addr: SocketAddr, source: Ipv4Addr, room: &str) -> anyhow::Result<Ws> {
    let mut ws = client::connect(addr, source, "/socket.io/?EIO=4&transport=websocket").await?;
    client::read_until(&mut ws, |t| t.starts_with('0')).await?;
    ws.send(Message::text("40")).await?;
    client::read_until(&mut ws, |t| t.starts_with("40")).await?;
    ws.send(Message::text(format!("42[\"join\",\"{room}\"]")))
        .await?;
    Ok(ws)
}
