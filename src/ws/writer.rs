//! A connection's writer task: drains its outbox onto the socket and pings
//! the client, so a slow socket never blocks the tasks that fan out to it.

use std::time::Duration;

use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::WebSocket;
use crate::outbox::{CloseReason, Closer, OutboxQueue};

/// A Close frame with roomd's code and reason.
pub(super) fn close_frame(reason: CloseReason) -> Message {
    Message::Close(Some(CloseFrame {
        code: reason.code.into(),
        reason: reason.reason.into(),
    }))
}

/// Writes queued frames (batching whatever is queued into one flush) and
/// pings, until the connection is closed; then the Close frame.
pub(super) async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: OutboxQueue,
    closer: Closer,
    ping_interval: Duration,
) {
    let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let written = tokio::select! {
            biased;
            () = closer.closed() => break,
            _ = ping.tick() => sink.send(Message::Ping(Default::default())).await.is_ok(),
            frame = queue.recv() => {
                let Some(frame) = frame else { break };
                let mut ok = sink.feed(Message::Text(frame)).await.is_ok();
                while ok && let Some(frame) = queue.try_recv() {
                    ok = sink.feed(Message::Text(frame)).await.is_ok();
                }
                ok && sink.flush().await.is_ok()
            }
        };
        if !written {
            closer.abort();
            return;
        }
    }
    finish(sink, queue, closer.reason()).await;
}

/// Frames queued before the close (replies, events) still go out, unless
/// the client is being dropped for not reading them; then the Close frame.
async fn finish(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: OutboxQueue,
    reason: Option<CloseReason>,
) {
    if reason != Some(CloseReason::SLOW_CONSUMER) {
        while let Some(frame) = queue.try_recv() {
            if sink.feed(Message::Text(frame)).await.is_err() {
                return;
            }
        }
    }
    match reason {
        Some(reason) => {
            let _ = sink.send(close_frame(reason)).await;
        }
        None => {
            let _ = sink.flush().await;
        }
    }
    let _ = sink.close().await;
}
