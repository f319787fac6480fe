//! Fan-out: R rooms × M members, S senders; deliveries per second, latency,
//! loss, duplicates and order, with the same client against every target.
//!
//! Connection `i` is member `i / rooms` of room `i % rooms`, and connections
//! `0..senders` also send, so senders spread over the rooms.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::{run_id, seconds};
use crate::body;
use crate::client::{self, Ws};
use crate::server::{Server, Usage};
use crate::source;
use crate::stats::{histogram, percentiles};
use crate::target::Target;

#[derive(Args)]
pub struct FanoutArgs {
    #[arg(long, value_enum, default_value = "roomd")]
    target: Target,
    /// host:port of the server.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    #[arg(long, default_value_t = 100)]
    members: usize,
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Messages per second per sender; 0 sends flat out, with at most
    /// --window messages in flight per sender (seen by the next member
    /// of its room), so the comparison measures servers, not queues.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    #[arg(long, default_value_t = 64)]
    window: usize,
    #[arg(long, default_value = "10", value_parser = seconds)]
    duration: Duration,
    /// Source addresses 127.0.0.1..=127.0.0.N, for more connections
    /// than one address has ports.
    #[arg(long, default_value_t = 1)]
    sources: u8,
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
}

/// What the senders and receivers of one run share.
struct Shared {
    target: Target,
    /// The clock every body carries.
    epoch: Instant,
    run: String,
    rate: f64,
    padding: String,
    /// Per sender: the messages it may still send flat out before one is seen.
    windows: Vec<Semaphore>,
    /// Deliveries so far, to tell when the last ones have arrived.
    delivered: AtomicU64,
    stop_senders: AtomicBool,
    stop_receivers: AtomicBool,
}

/// Every connection of the run, once joined.
#[derive(Default)]
struct Mesh {
    /// Each connection's reader, with its room.
    receivers: Vec<(usize, JoinHandle<Received>)>,
    senders: Vec<Sender>,
}

struct Sender {
    index: usize,
    room: usize,
    tx: mpsc::Sender<Message>,
}

/// What one receiving connection saw.
struct Received {
    latency: Histogram<u64>,
    /// The counter expected next, per sender.
    next: HashMap<usize, u64>,
    count: u64,
    duplicates: u64,
    out_of_order: u64,
}

/// What all receivers saw, against what was sent to their rooms.
struct Tally {
    latency: Histogram<u64>,
    sent: u64,
    expected: u64,
    got: u64,
    duplicates: u64,
    out_of_order: u64,
}

pub async fn run(args: FanoutArgs, server: Server) -> anyhow::Result<Value> {
    if args.members < 2 {
        bail!("fanout needs at least 2 members per room");
    }
    let shared = Arc::new(Shared::new(&args));
    let connect_started = Instant::now();
    let mesh = join(&args, &shared).await?;
    eprintln!(
        "{} connections in {:?}",
        args.rooms * args.members,
        connect_started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let before = server.usage();
    let sending: Vec<_> = mesh
        .senders
        .into_iter()
        .map(|sender| tokio::spawn(send(sender, shared.clone())))
        .collect();
    let started = Instant::now();
    tokio::time::sleep(args.duration).await;
    shared.stop_senders.store(true, Ordering::Relaxed);
    let mut sent = HashMap::new();
    for task in sending {
        let (sender, count) = task.await?;
        sent.insert(sender, count);
    }
    let send_window = started.elapsed();
    settle(
        &shared.delivered,
        Duration::from_secs(1),
        Duration::from_secs(30),
    )
    .await;
    let elapsed = started.elapsed();
    let after = server.usage();
    shared.stop_receivers.store(true, Ordering::Relaxed);
    let tally = Tally::collect(mesh.receivers, &sent, args.rooms).await?;
    Ok(summary(
        &args,
        &tally,
        [send_window, elapsed],
        [before, after],
    ))
}

impl Shared {
    fn new(args: &FanoutArgs) -> Self {
        Self {
            target: args.target,
            epoch: Instant::now(),
            run: run_id(),
            rate: args.rate,
            padding: "x".repeat(args.body_bytes),
            windows: (0..args.senders)
                .map(|_| Semaphore::new(args.window))
                .collect(),
            delivered: AtomicU64::new(0),
            stop_senders: AtomicBool::new(false),
            stop_receivers: AtomicBool::new(false),
        }
    }
}

/// Connects and joins every member, reading from each as soon as it joined:
/// member events and Engine.IO pings arrive while the rest still connect.
async fn join(args: &FanoutArgs, shared: &Arc<Shared>) -> anyhow::Result<Mesh> {
    let (target, addr, rooms, sources) = (args.target, args.addr, args.rooms, args.sources);
    let mut mesh = Mesh::default();
    let open = |i: usize| {
        let (m, r) = (i / rooms, i % rooms);
        let room = format!("bench-{}-{r}", shared.run);
        let user = format!("u{}-{r}-{m}", shared.run);
        async move {
            target
                .member(addr, source::nth(i, sources), &user, &room)
                .await
        }
    };
    client::open_in_batches(rooms * args.members, open, |i, ws| {
        mesh.attach(args, shared, i, ws)
    })
    .await?;
    Ok(mesh)
}

impl Mesh {
    fn attach(&mut self, args: &FanoutArgs, shared: &Arc<Shared>, i: usize, ws: Ws) {
        let (member, room) = (i / args.rooms, i % args.rooms);
        // This member frees window slots for the senders just before it.
        let watched = (0..args.senders)
            .filter(|s| s % args.rooms == room && (s / args.rooms + 1) % args.members == member)
            .collect();
        let (sink, stream) = ws.split();
        let tx = client::writer(sink, 4096);
        if i < args.senders {
            let sender = Sender {
                index: i,
                room,
                tx: tx.clone(),
            };
            self.senders.push(sender);
        }
        let reader = receive(shared.clone(), stream, tx, watched);
        self.receivers.push((room, tokio::spawn(reader)));
    }
}

/// Sends until told to stop, at the rate or flat out within the window;
/// returns the sender's index and how many it sent.
async fn send(sender: Sender, shared: Arc<Shared>) -> (usize, u64) {
    let room = format!("bench-{}-{}", shared.run, sender.room);
    let window = &shared.windows[sender.index];
    let mut ticker = (shared.rate > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / shared.rate));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        t
    });
    let mut counter = 0u64;
    while !shared.stop_senders.load(Ordering::Relaxed) {
        match &mut ticker {
            Some(t) => {
                t.tick().await;
            }
            // A lost message never frees its slot: give up waiting after a while.
            None => {
                if let Ok(Ok(permit)) =
                    tokio::time::timeout(Duration::from_secs(1), window.acquire()).await
                {
                    permit.forget();
                }
            }
        }
        let body = body::encode(
            sender.index,
            counter,
            body::now_us(shared.epoch),
            &shared.padding,
        );
        let frame = shared.target.message(counter + 10, &room, &body);
        if sender.tx.send(frame).await.is_err() {
            break;
        }
        counter += 1;
    }
    (sender.index, counter)
}

/// Reads one connection until told to stop. `pongs` is the connection's
/// writer: Engine.IO pings are answered from here.
async fn receive(
    shared: Arc<Shared>,
    mut stream: SplitStream<Ws>,
    pongs: mpsc::Sender<Message>,
    watched: Vec<usize>,
) -> Received {
    let mut received = Received::new();
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = wait_flag(&shared.stop_receivers) => break,
        };
        let Some(Ok(Message::Text(text))) = frame else {
            if matches!(frame, Some(Ok(_))) {
                continue;
            }
            break;
        };
        let text = text.as_str();
        if shared.target == Target::Socketio && text == "2" {
            let _ = pongs.try_send(Message::text("3"));
            continue;
        }
        // roomd replies to a sender's own sends carry its body too.
        if shared.target == Target::Roomd && !text.starts_with("{\"event\":\"roomMessageReceived\"")
        {
            continue;
        }
        received.record(text, &shared, &watched);
    }
    received
}

impl Received {
    fn new() -> Self {
        Self {
            latency: histogram(),
            next: HashMap::new(),
            count: 0,
            duplicates: 0,
            out_of_order: 0,
        }
    }

    fn record(&mut self, text: &str, shared: &Shared, watched: &[usize]) {
        let now = body::now_us(shared.epoch);
        for (sender, counter, sent) in body::decode_all(text) {
            let _ = self.latency.record(now.saturating_sub(sent).max(1));
            let expected = self.next.entry(sender).or_insert(0);
            if counter < *expected {
                self.duplicates += 1;
                continue;
            }
            if counter > *expected {
                self.out_of_order += 1;
            }
            *expected = counter + 1;
            self.count += 1;
            if watched.contains(&sender) {
                shared.windows[sender].add_permits(1);
            }
            shared.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A `select!` arm that fires once `flag` is set, so that a reader waiting
/// on a quiet connection still stops.
async fn wait_flag(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `counter` has not moved for `quiet`, at most `max`: messages
/// still queued in a server when the senders stop count as delivered late,
/// not as lost.
async fn settle(counter: &AtomicU64, quiet: Duration, max: Duration) {
    let started = Instant::now();
    let mut last = counter.load(Ordering::Relaxed);
    let mut since = Instant::now();
    while started.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = counter.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
    }
}

impl Tally {
    /// `sent` is the count per sender; sender `s` sends to room `s % rooms`.
    async fn collect(
        receivers: Vec<(usize, JoinHandle<Received>)>,
        sent: &HashMap<usize, u64>,
        rooms: usize,
    ) -> anyhow::Result<Self> {
        let mut tally = Tally {
            latency: histogram(),
            sent: sent.values().sum(),
            expected: 0,
            got: 0,
            duplicates: 0,
            out_of_order: 0,
        };
        for (room, task) in receivers {
            let r = task.await?;
            tally.latency.add(&r.latency)?;
            tally.duplicates += r.duplicates;
            tally.out_of_order += r.out_of_order;
            tally.got += r.count;
            for (sender, count) in sent {
                if sender % rooms == room {
                    tally.expected += count;
                }
            }
        }
        // A sender does not receive its own messages.
        tally.expected = tally.expected.saturating_sub(tally.sent);
        Ok(tally)
    }
}

/// The times are the send window and the send window plus settling; the
/// usages are the server's before the senders started and after settling.
fn summary(
    args: &FanoutArgs,
    tally: &Tally,
    [send_window, elapsed]: [Duration; 2],
    usage: [Option<Usage>; 2],
) -> Value {
    let server = match usage {
        [Some(b), Some(a)] => json!({"server_cpu_s": a.cpu_s - b.cpu_s,
            "server_cpu_us_per_delivery": (a.cpu_s - b.cpu_s) * 1e6 / tally.got.max(1) as f64,
            "server_rss_kib": a.rss_kib}),
        _ => Value::Null,
    };
    json!({
        "scenario": "fanout", "target": format!("{:?}", args.target).to_lowercase(),
        "rooms": args.rooms, "members": args.members, "senders": args.senders,
        "rate_per_sender": args.rate, "window": args.window,
        "send_window_s": send_window.as_secs_f64(), "elapsed_s": elapsed.as_secs_f64(),
        "sent": tally.sent, "expected_deliveries": tally.expected, "deliveries": tally.got,
        "deliveries_per_sec": tally.got as f64 / elapsed.as_secs_f64(),
        "lost": tally.expected.saturating_sub(tally.got), "duplicated": tally.duplicates,
        "out_of_order": tally.out_of_order,
        "latency": percentiles(&tally.latency), "server": server,
    })
}
