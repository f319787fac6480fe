//! `roomd-bench`: load scenarios for roomd and the servers people would pick
//! instead. The same client drives every target, so the comparison measures
//! the servers, not the clients. See BENCHMARKS.md for the commands.

mod body;
mod client;
mod server;
mod source;
mod stats;
mod target;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use body::now_us;
use client::{Ws, writer};
use server::Server;
use stats::{histogram, human, percentiles};
use target::Target;

#[derive(Parser)]
#[command(name = "roomd-bench", version)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Write the machine-readable summary here (JSON).
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// The server's pid, to report its CPU time and memory.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
}

#[derive(Subcommand)]
enum Scenario {
    /// R rooms × M members, S senders; deliveries/s, latency, loss.
    Fanout {
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
    },
    /// Acknowledged sends: throughput and ack latency.
    Persist {
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
    },
    /// N joined, idle connections; server memory per connection.
    Connections {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        sources: u8,
        #[arg(long, default_value_t = 100)]
        room_size: usize,
    },
    /// Join/leave cycles with member events flowing.
    Churn {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        #[arg(long, default_value_t = 100)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        rooms: usize,
        #[arg(long, default_value = "10", value_parser = seconds)]
        duration: Duration,
    },
    /// A member that stops reading in a busy room: server memory over time.
    Stuck {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// Messages per second into the room.
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        #[arg(long, default_value_t = 8000)]
        body_bytes: usize,
        #[arg(long, default_value = "10", value_parser = seconds)]
        duration: Duration,
    },
    /// REST history page latency over a room with N stored messages.
    History {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// Where to bulk-load the messages (COPY).
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 10_000)]
        messages: u64,
        #[arg(long, default_value_t = 2_000)]
        requests: usize,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Bearer token for REST, if the server needs one.
        #[arg(long)]
        token: Option<String>,
    },
}

fn seconds(s: &str) -> Result<Duration, String> {
    s.trim_end_matches('s')
        .parse::<f64>()
        .map(Duration::from_secs_f64)
        .map_err(|e| e.to_string())
}

/// What one receiving connection saw.
struct Received {
    latency: Histogram<u64>,
    per_sender: HashMap<usize, u64>,
    next: HashMap<usize, u64>,
    duplicates: u64,
    out_of_order: u64,
}

async fn receive(
    target: Target,
    mut stream: SplitStream<Ws>,
    pongs: Option<tokio::sync::mpsc::Sender<Message>>,
    epoch: Instant,
    delivered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    windows: Vec<(usize, Arc<Semaphore>)>,
) -> Received {
    let mut r = Received {
        latency: histogram(),
        per_sender: HashMap::new(),
        next: HashMap::new(),
        duplicates: 0,
        out_of_order: 0,
    };
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = wait_flag(&stop) => break,
        };
        let Some(Ok(Message::Text(text))) = frame else {
            if matches!(frame, Some(Ok(_))) {
                continue;
            }
            break;
        };
        let text = text.as_str();
        if target == Target::Socketio && text == "2" {
            if let Some(pongs) = &pongs {
                let _ = pongs.try_send(Message::text("3"));
            }
            continue;
        }
        // roomd replies to a sender's own sends carry its body too.
        if target == Target::Roomd && !text.starts_with("{\"event\":\"roomMessageReceived\"") {
            continue;
        }
        let now = now_us(epoch);
        for (sender, counter, sent) in body::decode_all(text) {
            let _ = r.latency.record(now.saturating_sub(sent).max(1));
            let expected = r.next.entry(sender).or_insert(0);
            if counter < *expected {
                r.duplicates += 1;
                continue;
            }
            if counter > *expected {
                r.out_of_order += 1;
            }
            *expected = counter + 1;
            *r.per_sender.entry(sender).or_insert(0) += 1;
            if let Some((_, window)) = windows.iter().find(|(s, _)| *s == sender) {
                window.add_permits(1);
            }
            delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
    r
}

async fn wait_flag(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `counter` has not moved for `quiet`, at most `max`.
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

#[allow(clippy::too_many_arguments)]
async fn fanout(
    target: Target,
    addr: SocketAddr,
    rooms: usize,
    members: usize,
    senders: usize,
    rate: f64,
    window: usize,
    duration: Duration,
    sources: u8,
    body_bytes: usize,
    pid: Option<u32>,
) -> anyhow::Result<Value> {
    if members < 2 {
        bail!("fanout needs at least 2 members per room");
    }
    let epoch = Instant::now();
    let run = epoch.elapsed().as_nanos() % 1_000_000;
    let windows: Vec<Arc<Semaphore>> = (0..senders)
        .map(|_| Arc::new(Semaphore::new(window)))
        .collect();
    let delivered = Arc::new(AtomicU64::new(0));
    let stop_receivers = Arc::new(AtomicBool::new(false));
    let mut receivers = Vec::new();
    let mut sender_sinks = Vec::new();
    let connect_started = Instant::now();
    // Connect everyone, a few hundred at a time.
    let total = members * rooms;
    let mut pending = Vec::new();
    for i in 0..total {
        let (m, r) = (i / rooms, i % rooms);
        let source = source::nth(i, sources);
        let room = format!("bench-{run}-{r}");
        let user = format!("u{run}-{r}-{m}");
        pending.push(tokio::spawn(async move {
            (r, m, target.member(addr, source, &user, &room).await)
        }));
        if pending.len() < 256 && i + 1 < total {
            continue;
        }
        for task in pending.drain(..) {
            let (r, m, ws) = task.await?;
            attach(
                target,
                r,
                m,
                ws?,
                senders,
                rooms,
                epoch,
                &delivered,
                &stop_receivers,
                &mut receivers,
                &mut sender_sinks,
                &windows,
                members,
            );
        }
    }
    eprintln!(
        "{} connections in {:?}",
        rooms * members,
        connect_started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let before = Server::new(pid).usage();
    let stop_senders = Arc::new(AtomicBool::new(false));
    let padding = "x".repeat(body_bytes);
    let mut sending = Vec::new();
    for (sender, room, tx) in sender_sinks {
        let (stop, padding) = (stop_senders.clone(), padding.clone());
        let window = windows[sender].clone();
        let room = format!("bench-{run}-{room}");
        sending.push(tokio::spawn(async move {
            let mut counter = 0u64;
            let mut ticker = (rate > 0.0).then(|| {
                let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                t
            });
            while !stop.load(Ordering::Relaxed) {
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
                let b = body::encode(sender, counter, now_us(epoch), &padding);
                if tx
                    .send(target.message(counter + 10, &room, &b))
                    .await
                    .is_err()
                {
                    break;
                }
                counter += 1;
            }
            (sender, counter)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    stop_senders.store(true, Ordering::Relaxed);
    let mut sent = HashMap::new();
    for task in sending {
        let (sender, count) = task.await?;
        sent.insert(sender, count);
    }
    let send_window = started.elapsed();
    settle(&delivered, Duration::from_secs(1), Duration::from_secs(30)).await;
    let elapsed = started.elapsed();
    let after = Server::new(pid).usage();
    stop_receivers.store(true, Ordering::Relaxed);

    let mut latency = histogram();
    let (mut got, mut duplicates, mut out_of_order, mut expected) = (0u64, 0u64, 0u64, 0u64);
    for (room, task) in receivers {
        let r = task.await?;
        latency.add(&r.latency)?;
        duplicates += r.duplicates;
        out_of_order += r.out_of_order;
        got += r.per_sender.values().sum::<u64>();
        for (sender, count) in &sent {
            if sender % rooms == room {
                expected += count;
            }
        }
    }
    // A sender does not receive its own messages.
    let own: u64 = sent.values().sum();
    let expected = expected.saturating_sub(own);
    let deliveries_per_sec = got as f64 / elapsed.as_secs_f64();
    let cpu = match (before, after) {
        (Some(b), Some(a)) => json!({"server_cpu_s": a.cpu_s - b.cpu_s,
            "server_cpu_us_per_delivery": (a.cpu_s - b.cpu_s) * 1e6 / got.max(1) as f64, "server_rss_kib": a.rss_kib}),
        _ => Value::Null,
    };
    Ok(json!({
        "scenario": "fanout", "target": format!("{target:?}").to_lowercase(),
        "rooms": rooms, "members": members, "senders": senders, "rate_per_sender": rate, "window": window,
        "send_window_s": send_window.as_secs_f64(), "elapsed_s": elapsed.as_secs_f64(),
        "sent": own, "expected_deliveries": expected, "deliveries": got,
        "deliveries_per_sec": deliveries_per_sec,
        "lost": expected.saturating_sub(got), "duplicated": duplicates, "out_of_order": out_of_order,
        "latency": percentiles(&latency), "server": cpu,
    }))
}

type Receivers = Vec<(usize, tokio::task::JoinHandle<Received>)>;

#[allow(clippy::too_many_arguments)]
fn attach(
    target: Target,
    room: usize,
    member: usize,
    ws: Ws,
    senders: usize,
    rooms: usize,
    epoch: Instant,
    delivered: &Arc<AtomicU64>,
    stop: &Arc<AtomicBool>,
    receivers: &mut Receivers,
    sender_sinks: &mut Vec<(usize, usize, tokio::sync::mpsc::Sender<Message>)>,
    windows: &[Arc<Semaphore>],
    members: usize,
) {
    // This member frees window slots for the senders just before it.
    let watched = (0..senders)
        .filter(|s| s % rooms == room && (s / rooms + 1) % members == member)
        .map(|s| (s, windows[s].clone()))
        .collect();
    let (sink, stream) = ws.split();
    let tx = writer(sink, 4096);
    let sender = member * rooms + room;
    if sender < senders {
        sender_sinks.push((sender, room, tx.clone()));
    }
    receivers.push((
        room,
        tokio::spawn(receive(
            target,
            stream,
            Some(tx),
            epoch,
            delivered.clone(),
            stop.clone(),
            watched,
        )),
    ));
}

#[allow(clippy::too_many_arguments)]
async fn persist(
    addr: SocketAddr,
    senders: usize,
    rate: f64,
    window: usize,
    duration: Duration,
    body_bytes: usize,
    pid: Option<u32>,
) -> anyhow::Result<Value> {
    let epoch = Instant::now();
    let run = epoch.elapsed().as_nanos() % 1_000_000;
    let padding = "x".repeat(body_bytes);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let before = Server::new(pid).usage();
    for s in 0..senders {
        let ws = Target::Roomd
            .member(
                addr,
                source::FIRST,
                &format!("p{run}-{s}"),
                &format!("persist-{run}-{s}"),
            )
            .await?;
        let (stop, padding) = (stop.clone(), padding.clone());
        let room = format!("persist-{run}-{s}");
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let mut latency = histogram();
            let mut acked = 0u64;
            let mut errors = 0u64;
            let per_sender = rate / senders as f64;
            let mut ticker = (rate > 0.0)
                .then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / per_sender)));
            let mut id = 10u64;
            // Send time of every send in flight, by request id.
            let mut in_flight: HashMap<u64, u64> = HashMap::new();
            let window = if ticker.is_some() { 1 } else { window.max(1) };
            loop {
                let stopping = stop.load(Ordering::Relaxed);
                if stopping && in_flight.is_empty() {
                    break;
                }
                if !stopping && in_flight.len() < window {
                    if let Some(t) = &mut ticker {
                        t.tick().await;
                    }
                    id += 1;
                    let sent = now_us(epoch);
                    let b = body::encode(s, id, sent, &padding);
                    if sink
                        .send(Target::Roomd.message(id, &room, &b))
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
                        let reply: Value = serde_json::from_str(&t).unwrap_or_default();
                        let Some(sent) = reply["id"].as_u64().and_then(|i| in_flight.remove(&i))
                        else {
                            continue;
                        };
                        if reply["ok"] == true {
                            acked += 1;
                            let _ = latency.record(now_us(epoch).saturating_sub(sent).max(1));
                        } else {
                            errors += 1;
                        }
                    }
                    Some(Ok(_)) => continue,
                    _ => break,
                }
            }
            (latency, acked, errors)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latency = histogram();
    let (mut acked, mut errors) = (0, 0);
    for task in tasks {
        let (h, a, e) = task.await?;
        latency.add(&h)?;
        acked += a;
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = Server::new(pid).usage();
    let cpu = match (before, after) {
        (Some(b), Some(a)) => {
            json!({"server_cpu_s": a.cpu_s - b.cpu_s, "server_cpu_us_per_ack": (a.cpu_s - b.cpu_s) * 1e6 / acked.max(1) as f64})
        }
        _ => Value::Null,
    };
    Ok(
        json!({"scenario": "persist", "senders": senders, "window": window, "offered_rate": rate, "elapsed_s": elapsed,
              "acked": acked, "errors": errors, "acks_per_sec": acked as f64 / elapsed,
              "ack_latency": percentiles(&latency), "server": cpu}),
    )
}

async fn connections(
    addr: SocketAddr,
    count: usize,
    sources: u8,
    room_size: usize,
    pid: Option<u32>,
) -> anyhow::Result<Value> {
    let run = Instant::now().elapsed().as_nanos() % 1_000_000;
    let baseline = Server::new(pid).rss_kib();
    let mut open = Vec::with_capacity(count);
    let mut pending = Vec::new();
    let started = Instant::now();
    for i in 0..count {
        let source = source::nth(i, sources);
        pending.push(tokio::spawn(async move {
            Target::Roomd
                .member(
                    addr,
                    source,
                    &format!("c{run}-{i}"),
                    &format!("idle-{run}-{}", i / room_size),
                )
                .await
        }));
        if pending.len() >= 256 {
            for task in pending.drain(..) {
                open.push(task.await??);
            }
        }
    }
    for task in pending.drain(..) {
        open.push(task.await??);
    }
    let connect_s = started.elapsed().as_secs_f64();
    // Keep answering pings while idle.
    let keep: Vec<_> = open
        .into_iter()
        .map(|ws| {
            tokio::spawn(async move {
                let (_sink, mut stream) = ws.split();
                while let Some(Ok(_)) = stream.next().await {}
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = Server::new(pid).rss_kib();
    let per_conn = match (baseline, after) {
        (Some(b), Some(a)) => json!((a.saturating_sub(b)) as f64 * 1024.0 / count as f64 / 1024.0),
        _ => Value::Null,
    };
    let result = json!({"scenario": "connections", "count": count, "connect_s": connect_s,
                        "server_rss_kib_before": baseline, "server_rss_kib_after": after,
                        "server_kib_per_connection": per_conn});
    for k in keep {
        k.abort();
    }
    Ok(result)
}

async fn churn(
    addr: SocketAddr,
    clients: usize,
    rooms: usize,
    duration: Duration,
) -> anyhow::Result<Value> {
    let run = Instant::now().elapsed().as_nanos() % 1_000_000;
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut ws = Target::Roomd
            .member(
                addr,
                source::FIRST,
                &format!("ch{run}-{c}"),
                &format!("churn-{run}-home"),
            )
            .await?;
        let (stop, events) = (stop.clone(), events.clone());
        tasks.push(tokio::spawn(async move {
            let mut latency = histogram();
            let mut ops = 0u64;
            let mut id = 10u64;
            while !stop.load(Ordering::Relaxed) {
                let room = format!("churn-{run}-{}", (c + ops as usize) % rooms);
                for request in [
                    json!({"op": "enterRoom", "roomInfo": {"roomID": room}}),
                    json!({"op": "leaveRoom", "roomID": room}),
                ] {
                    id += 1;
                    let mut request = request;
                    request["id"] = json!(id);
                    let sent = Instant::now();
                    if ws.send(Message::text(request.to_string())).await.is_err() {
                        return (latency, ops);
                    }
                    let prefix = format!("{{\"id\":{id},");
                    loop {
                        match ws.next().await {
                            Some(Ok(Message::Text(t))) if t.starts_with(&prefix) => break,
                            Some(Ok(Message::Text(_))) => {
                                events.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(Ok(_)) => {}
                            _ => return (latency, ops),
                        }
                    }
                    let _ = latency.record(sent.elapsed().as_micros() as u64 + 1);
                    ops += 1;
                }
            }
            (latency, ops)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latency = histogram();
    let mut ops = 0;
    for task in tasks {
        let (h, n) = task.await?;
        latency.add(&h)?;
        ops += n;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(
        json!({"scenario": "churn", "clients": clients, "rooms": rooms, "elapsed_s": elapsed,
              "joins_and_leaves_per_sec": ops as f64 / elapsed,
              "member_events_per_sec": events.load(Ordering::Relaxed) as f64 / elapsed,
              "op_latency": percentiles(&latency)}),
    )
}

async fn stuck(
    addr: SocketAddr,
    rate: f64,
    body_bytes: usize,
    duration: Duration,
    pid: Option<u32>,
) -> anyhow::Result<Value> {
    let run = Instant::now().elapsed().as_nanos() % 1_000_000;
    let room = format!("stuck-{run}");
    let sender = Target::Roomd
        .member(addr, source::FIRST, &format!("st{run}-sender"), &room)
        .await?;
    // Joined, then never read again: its socket buffers fill, then its queue.
    let _stuck = Target::Roomd
        .member(addr, source::FIRST, &format!("st{run}-stuck"), &room)
        .await?;
    let (sink, mut stream) = sender.split();
    let acks = Arc::new(AtomicU64::new(0));
    let counted = acks.clone();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = stream.next().await {
            if frame.to_text().is_ok_and(|t| t.starts_with("{\"id\"")) {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let tx = writer(sink, 4096);
    let epoch = Instant::now();
    let padding = "x".repeat(body_bytes);
    let sending = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let mut counter = 0u64;
        while epoch.elapsed() < duration {
            ticker.tick().await;
            let b = body::encode(0, counter, now_us(epoch), &padding);
            if tx
                .send(Target::Roomd.message(counter + 10, &room, &b))
                .await
                .is_err()
            {
                break;
            }
            counter += 1;
        }
        counter
    });
    let mut samples = Vec::new();
    while epoch.elapsed() < duration {
        samples.push(
            json!({"t_s": epoch.elapsed().as_secs(), "acked": acks.load(Ordering::Relaxed),
                            "server_rss_kib": Server::new(pid).rss_kib()}),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let sent = sending.await?;
    Ok(
        json!({"scenario": "stuck", "rate": rate, "body_bytes": body_bytes, "sent": sent,
              "acked": acks.load(Ordering::Relaxed), "samples": samples}),
    )
}

async fn history(
    addr: SocketAddr,
    database_url: &str,
    messages: u64,
    requests: usize,
    limit: u32,
    token: Option<String>,
) -> anyhow::Result<Value> {
    use sqlx::Connection;
    let room = format!("history-{messages}");
    let mut db = sqlx::PgConnection::connect(database_url).await?;
    let loaded: Option<i64> =
        sqlx::query_scalar("select last_seq from room_streams where room_id = $1")
            .bind(&room)
            .fetch_optional(&mut db)
            .await?;
    if loaded != Some(messages as i64) {
        let started = Instant::now();
        sqlx::query("delete from messages where room_id = $1")
            .bind(&room)
            .execute(&mut db)
            .await?;
        sqlx::query(
            "insert into room_streams (room_id, last_seq) values ($1, $2)
                     on conflict (room_id) do update set last_seq = excluded.last_seq",
        )
        .bind(&room)
        .bind(messages as i64)
        .execute(&mut db)
        .await?;
        let mut copy = db
            .copy_in_raw("copy messages (room_id, seq, sender_user_id, kind, body, extended_data, priority) from stdin")
            .await?;
        let mut chunk = String::with_capacity(1 << 20);
        for seq in 1..=messages {
            chunk.push_str(&format!(
                "{room}\t{seq}\tbench\ttext\tB|0|{seq}|0|history message {seq}\t\tmedium\n"
            ));
            if chunk.len() > (1 << 20) - 256 {
                copy.send(chunk.as_bytes()).await?;
                chunk.clear();
            }
        }
        copy.send(chunk.as_bytes()).await?;
        copy.finish().await?;
        sqlx::query("analyze messages").execute(&mut db).await?;
        eprintln!("loaded {messages} messages in {:?}", started.elapsed());
    }
    let client = reqwest::Client::new();
    let mut latency = histogram();
    let mut rng_state = 0x9e3779b97f4a7c15u64;
    for _ in 0..requests {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let before = 1 + limit as u64 + rng_state % messages.saturating_sub(limit as u64).max(1);
        let url =
            format!("http://{addr}/v1/rooms/{room}/messages?limit={limit}&beforeSeq={before}");
        let mut request = client.get(&url);
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let started = Instant::now();
        let response = request.send().await?;
        if !response.status().is_success() {
            bail!("GET {url}: {}", response.status());
        }
        response.bytes().await?;
        let _ = latency.record(started.elapsed().as_micros() as u64 + 1);
    }
    Ok(
        json!({"scenario": "history", "messages": messages, "limit": limit, "requests": requests,
              "page_latency": percentiles(&latency),
              "mean_ms": latency.mean() / 1000.0}),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let pid = cli.server_pid;
    let summary = match cli.scenario {
        Scenario::Fanout {
            target,
            addr,
            rooms,
            members,
            senders,
            rate,
            window,
            duration,
            sources,
            body_bytes,
        } => {
            fanout(
                target, addr, rooms, members, senders, rate, window, duration, sources, body_bytes,
                pid,
            )
            .await?
        }
        Scenario::Persist {
            addr,
            senders,
            rate,
            window,
            duration,
            body_bytes,
        } => persist(addr, senders, rate, window, duration, body_bytes, pid).await?,
        Scenario::Connections {
            addr,
            count,
            sources,
            room_size,
        } => connections(addr, count, sources, room_size, pid).await?,
        Scenario::Churn {
            addr,
            clients,
            rooms,
            duration,
        } => churn(addr, clients, rooms, duration).await?,
        Scenario::Stuck {
            addr,
            rate,
            body_bytes,
            duration,
        } => stuck(addr, rate, body_bytes, duration, pid).await?,
        Scenario::History {
            addr,
            database_url,
            messages,
            requests,
            limit,
            token,
        } => history(addr, &database_url, messages, requests, limit, token).await?,
    };
    print!("{}", human(&summary));
    if let Some(path) = cli.json {
        std::fs::write(&path, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
