//! WebSocket clients of the server under test.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

pub type Ws = WebSocketStream<TcpStream>;

/// Connections opened at once. Thousands of simultaneous handshakes overflow
/// a listen backlog, and a dropped SYN is retried only after a second, which
/// would be measured as join time.
const BATCH: usize = 256;

/// Connects from `source` (see [`crate::source`]), with Nagle off so that a
/// small frame leaves at once instead of waiting for the previous one's ACK.
pub async fn connect(addr: SocketAddr, source: Ipv4Addr, path: &str) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), tcp).await?;
    Ok(ws)
}

/// Opens `count` connections, [`BATCH`] at a time, and hands each to
/// `opened` in order as its batch completes, so that early connections are
/// read from while later ones are still joining.
pub async fn open_in_batches<F>(
    count: usize,
    mut open: impl FnMut(usize) -> F,
    mut opened: impl FnMut(usize, Ws),
) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<Ws>> + Send + 'static,
{
    for start in (0..count).step_by(BATCH) {
        let batch = start..(start + BATCH).min(count);
        let tasks: Vec<_> = batch.clone().map(|i| tokio::spawn(open(i))).collect();
        for (i, task) in batch.zip(tasks) {
            opened(i, task.await??);
        }
    }
    Ok(())
}

/// Reads frames until one satisfies `done`, answering Engine.IO pings: a
/// Socket.IO server drops a client that leaves them unanswered.
pub async fn read_until(ws: &mut Ws, done: impl Fn(&str) -> bool) -> anyhow::Result<String> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .context("timed out")?
            .context("closed")??;
        if let Message::Text(text) = frame {
            if done(&text) {
                return Ok(text.to_string());
            }
            if text.as_str() == "2" {
                ws.send(Message::text("3")).await?;
            }
        }
    }
}

/// Writes frames from a queue to a sink, so that a sender and the Engine.IO
/// pongs of its connection's reader can share one connection, and frames
/// queued meanwhile go out in one flush.
pub fn writer(mut sink: SplitSink<Ws, Message>, capacity: usize) -> mpsc::Sender<Message> {
    let (tx, mut rx) = mpsc::channel::<Message>(capacity);
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
    tx
}
