//! Acknowledged sends to roomd: throughput and ack latency. roomd acks a send
//! once the message is committed, so this measures its storage path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::time::Interval;
use tokio_tungstenite::tungstenite::Message;

use super::{run_id, seconds};
use crate::body;
use crate::client::Ws;
use crate::server::Server;
use crate::source;
use crate::stats::{histogram, percentiles};
use crate::target::Target;

#[derive(Args)]
pub struct PersistArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Concurrent senders, each in its own room.
    #[arg(long, default_value_t = 32)]
    senders: usize,
    /// Total messages per second; 0 sends flat out.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Sends each sender keeps in flight when flat out (1: each waits
    /// for its ack before the next).
    #[arg(long, default_value_t = 1)]
    window: usize,
    #[arg(long, default_value = "10", value_parser = seconds)]
    duration: Duration,
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
}

/// What the senders share.
struct Shared {
    epoch: Instant,
    padding: String,
    /// Each sender's rate, `None` flat out.
    rate: Option<f64>,
    window: usize,
    stop: AtomicBool,
}

/// What one sender, or all of them, got back.
struct Acks {
    latency: Histogram<u64>,
    acked: u64,
    errors: u64,
}

pub async fn run(args: PersistArgs, server: Server) -> anyhow::Result<Value> {
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        padding: "x".repeat(args.body_bytes),
        rate: (args.rate > 0.0).then(|| args.rate / args.senders as f64),
        window: args.window,
        stop: AtomicBool::new(false),
    });
    let run = run_id();
    let mut tasks = Vec::new();
    let before = server.usage();
    for s in 0..args.senders {
        let room = format!("persist-{run}-{s}");
        let user = format!("p{run}-{s}");
        let ws = Target::Roomd
            .member(args.addr, source::FIRST, &user, &room)
            .await?;
        tasks.push(tokio::spawn(sender(ws, s, room, shared.clone())));
    }
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    shared.stop.store(true, Ordering::Relaxed);
    let mut acks = Acks::new();
    for task in tasks {
        let a = task.await?;
        acks.latency.add(&a.latency)?;
        acks.acked += a.acked;
        acks.errors += a.errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let server = match (before, server.usage()) {
        (Some(b), Some(a)) => json!({"server_cpu_s": a.cpu_s - b.cpu_s,
            "server_cpu_us_per_ack": (a.cpu_s - b.cpu_s) * 1e6 / acks.acked.max(1) as f64}),
        _ => Value::Null,
    };
    Ok(
        json!({"scenario": "persist", "senders": args.senders, "window": args.window,
              "offered_rate": args.rate, "elapsed_s": elapsed,
              "acked": acks.acked, "errors": acks.errors, "acks_per_sec": acks.acked as f64 / elapsed,
              "ack_latency": percentiles(&acks.latency), "server": server}),
    )
}

/// Sends to `room` until told to stop, then waits for the acks still due.
/// At a fixed rate it keeps one send in flight; flat out, the window.
async fn sender(ws: Ws, index: usize, room: String, shared: Arc<Shared>) -> Acks {
    let (mut sink, mut stream) = ws.split();
    let mut acks = Acks::new();
    let mut ticker: Option<Interval> = shared
        .rate
        .map(|rate| tokio::time::interval(Duration::from_secs_f64(1.0 / rate)));
    let window = if ticker.is_some() {
        1
    } else {
        shared.window.max(1)
    };
    let mut id = 10u64;
    // Send time of every send in flight, by request id.
    let mut in_flight: HashMap<u64, u64> = HashMap::new();
    loop {
        let stopping = shared.stop.load(Ordering::Relaxed);
        if stopping && in_flight.is_empty() {
            break;
        }
        if !stopping && in_flight.len() < window {
            if let Some(t) = &mut ticker {
                t.tick().await;
            }
            id += 1;
            let sent = body::now_us(shared.epoch);
            let body = body::encode(index, id, sent, &shared.padding);
            if sink
                .send(Target::Roomd.message(id, &room, &body))
                .await
                .is_err()
            {
                break;
            }
            in_flight.insert(id, sent);
            continue;
        }
        match stream.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with("{\"id\":") => {
                acks.reply(&t, &mut in_flight, shared.epoch);
            }
            Some(Ok(_)) => continue,
            _ => break,
        }
    }
    acks
}

impl Acks {
    fn new() -> Self {
        Self {
            latency: histogram(),
            acked: 0,
            errors: 0,
        }
    }

    fn reply(&mut self, text: &str, in_flight: &mut HashMap<u64, u64>, epoch: Instant) {
        let reply: Value = serde_json::from_str(text).unwrap_or_default();
        let Some(sent) = reply["id"].as_u64().and_then(|i| in_flight.remove(&i)) else {
            return;
        };
        if reply["ok"] == true {
            self.acked += 1;
            let _ = self
                .latency
                .record(body::now_us(epoch).saturating_sub(sent).max(1));
        } else {
            self.errors += 1;
        }
    }
}
