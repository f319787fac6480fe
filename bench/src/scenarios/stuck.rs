//! A member that stops reading in a busy roomd room: server memory over
//! time, which shows whether what roomd queues for a slow member is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::{run_id, seconds};
use crate::body;
use crate::client::{self, Ws};
use crate::server::Server;
use crate::source;
use crate::target::Target;

#[derive(Args, Clone, Copy)]
pub struct StuckArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Messages per second into the room.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    #[arg(long, default_value_t = 8000)]
    body_bytes: usize,
    #[arg(long, default_value = "10", value_parser = seconds)]
    duration: Duration,
}

pub async fn run(args: StuckArgs, server: Server) -> anyhow::Result<Value> {
    let run = run_id();
    let room = format!("stuck-{run}");
    let sender = Target::Roomd
        .member(args.addr, source::FIRST, &format!("st{run}-sender"), &room)
        .await?;
    // Joined, then never read again: its socket buffers fill, then its queue.
    let _stuck = Target::Roomd
        .member(args.addr, source::FIRST, &format!("st{run}-stuck"), &room)
        .await?;
    let (sink, stream) = sender.split();
    let acks = Arc::new(AtomicU64::new(0));
    tokio::spawn(count_acks(stream, acks.clone()));
    let tx = client::writer(sink, 4096);
    let epoch = Instant::now();
    let sending = tokio::spawn(send(tx, room, args, epoch));
    let mut samples = Vec::new();
    while epoch.elapsed() < args.duration {
        samples.push(
            json!({"t_s": epoch.elapsed().as_secs(), "acked": acks.load(Ordering::Relaxed),
                            "server_rss_kib": server.rss_kib()}),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let sent = sending.await?;
    Ok(
        json!({"scenario": "stuck", "rate": args.rate, "body_bytes": args.body_bytes, "sent": sent,
              "acked": acks.load(Ordering::Relaxed), "samples": samples}),
    )
}

/// Counts the sender's acks: they show whether roomd keeps up with the room
/// while one member falls behind.
async fn count_acks(mut stream: SplitStream<Ws>, acks: Arc<AtomicU64>) {
    while let Some(Ok(frame)) = stream.next().await {
        if frame.to_text().is_ok_and(|t| t.starts_with("{\"id\"")) {
            acks.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends at the rate until the duration is over; returns how many it sent.
async fn send(tx: mpsc::Sender<Message>, room: String, args: StuckArgs, epoch: Instant) -> u64 {
    let padding = "x".repeat(args.body_bytes);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    let mut counter = 0u64;
    while epoch.elapsed() < args.duration {
        ticker.tick().await;
        let body = body::encode(0, counter, body::now_us(epoch), &padding);
        if tx
            .send(Target::Roomd.message(counter + 10, &room, &body))
            .await
            .is_err()
        {
            break;
        }
        counter += 1;
    }
    counter
}
