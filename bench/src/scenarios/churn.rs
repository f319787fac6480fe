//! Join/leave cycles on roomd with member events flowing: each client enters
//! and leaves rooms in turn, and sees the others' comings and goings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{run_id, seconds};
use crate::client::Ws;
use crate::source;
use crate::stats::{histogram, percentiles};
use crate::target::Target;

#[derive(Args)]
pub struct ChurnArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[arg(long, default_value_t = 100)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    #[arg(long, default_value = "10", value_parser = seconds)]
    duration: Duration,
}

/// What the clients share.
struct Shared {
    run: String,
    rooms: usize,
    stop: AtomicBool,
    /// Frames other than replies: the member events of the rooms entered.
    events: AtomicU64,
}

pub async fn run(args: ChurnArgs) -> anyhow::Result<Value> {
    let shared = Arc::new(Shared {
        run: run_id(),
        rooms: args.rooms,
        stop: AtomicBool::new(false),
        events: AtomicU64::new(0),
    });
    let run = &shared.run;
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (user, home) = (format!("ch{run}-{c}"), format!("churn-{run}-home"));
        let ws = Target::Roomd
            .member(args.addr, source::FIRST, &user, &home)
            .await?;
        tasks.push(tokio::spawn(client(ws, c, shared.clone())));
    }
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    shared.stop.store(true, Ordering::Relaxed);
    let mut latency = histogram();
    let mut ops = 0;
    for task in tasks {
        let (h, n) = task.await?;
        latency.add(&h)?;
        ops += n;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(
        json!({"scenario": "churn", "clients": args.clients, "rooms": args.rooms, "elapsed_s": elapsed,
              "joins_and_leaves_per_sec": ops as f64 / elapsed,
              "member_events_per_sec": shared.events.load(Ordering::Relaxed) as f64 / elapsed,
              "op_latency": percentiles(&latency)}),
    )
}

/// Client `c` enters a room and leaves it, then another, until told to
/// stop or disconnected; returns each request's latency and their count.
async fn client(mut ws: Ws, c: usize, shared: Arc<Shared>) -> (Histogram<u64>, u64) {
    let mut latency = histogram();
    let mut ops = 0u64;
    let mut id = 10u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let room = format!("churn-{}-{}", shared.run, (c + ops as usize) % shared.rooms);
        for mut request in [
            json!({"op": "enterRoom", "roomInfo": {"roomID": room}}),
            json!({"op": "leaveRoom", "roomID": room}),
        ] {
            id += 1;
            request["id"] = json!(id);
            let sent = Instant::now();
            if !exchange(&mut ws, &request, id, &shared.events).await {
                return (latency, ops);
            }
            let _ = latency.record(sent.elapsed().as_micros() as u64 + 1);
            ops += 1;
        }
    }
    (latency, ops)
}

/// Sends `request` and reads up to its reply, counting the frames before it
/// as member events; false once the connection is gone.
async fn exchange(ws: &mut Ws, request: &Value, id: u64, events: &AtomicU64) -> bool {
    if ws.send(Message::text(request.to_string())).await.is_err() {
        return false;
    }
    let prefix = format!("{{\"id\":{id},");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with(&prefix) => return true,
            Some(Ok(Message::Text(_))) => {
                events.fetch_add(1, Ordering::Relaxed);
            }
            Some(Ok(_)) => {}
            _ => return false,
        }
    }
}
