//! REST history page latency over one roomd room with N stored messages,
//! bulk-loaded straight into PostgreSQL: sending 10 M messages through roomd
//! would take longer than the measurement.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::bail;
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::stats::{histogram, percentiles};

#[derive(Args)]
pub struct HistoryArgs {
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
}

/// COPY data goes out in chunks of about this many bytes, rather than as one
/// string: 10 M rows are nearly a gigabyte.
const CHUNK: usize = 1 << 20;

pub async fn run(args: HistoryArgs) -> anyhow::Result<Value> {
    // Named after the count, not the run: a later run reuses the messages.
    let room = format!("history-{}", args.messages);
    let mut db = PgConnection::connect(&args.database_url).await?;
    let loaded: Option<i64> =
        sqlx::query_scalar("select last_seq from room_streams where room_id = $1")
            .bind(&room)
            .fetch_optional(&mut db)
            .await?;
    if loaded != Some(args.messages as i64) {
        let started = Instant::now();
        load(&mut db, &room, args.messages).await?;
        eprintln!(
            "loaded {} messages in {:?}",
            args.messages,
            started.elapsed()
        );
    }
    let latency = pages(&args, &room).await?;
    Ok(
        json!({"scenario": "history", "messages": args.messages, "limit": args.limit,
              "requests": args.requests, "page_latency": percentiles(&latency),
              "mean_ms": latency.mean() / 1000.0}),
    )
}

/// Replaces the room's messages with `messages` numbered ones.
async fn load(db: &mut PgConnection, room: &str, messages: u64) -> anyhow::Result<()> {
    sqlx::query("delete from messages where room_id = $1")
        .bind(room)
        .execute(&mut *db)
        .await?;
    sqlx::query(
        "insert into room_streams (room_id, last_seq) values ($1, $2)
                 on conflict (room_id) do update set last_seq = excluded.last_seq",
    )
    .bind(room)
    .bind(messages as i64)
    .execute(&mut *db)
    .await?;
    let mut copy = db
        .copy_in_raw("copy messages (room_id, seq, sender_user_id, kind, body, extended_data, priority) from stdin")
        .await?;
    let mut chunk = String::with_capacity(CHUNK);
    for seq in 1..=messages {
        chunk.push_str(&format!(
            "{room}\t{seq}\tbench\ttext\tB|0|{seq}|0|history message {seq}\t\tmedium\n"
        ));
        if chunk.len() > CHUNK - 256 {
            copy.send(chunk.as_bytes()).await?;
            chunk.clear();
        }
    }
    copy.send(chunk.as_bytes()).await?;
    copy.finish().await?;
    // Fresh statistics, or the planner may not use the index on a table
    // that just grew by millions of rows.
    sqlx::query("analyze messages").execute(&mut *db).await?;
    Ok(())
}

/// Fetches `requests` pages, each before a pseudo-random cursor: random so
/// that pages come from all over the room rather than one warm spot, seeded
/// so that every run asks for the same ones.
async fn pages(args: &HistoryArgs, room: &str) -> anyhow::Result<Histogram<u64>> {
    let (addr, limit, messages) = (args.addr, args.limit as u64, args.messages);
    let client = reqwest::Client::new();
    let mut latency = histogram();
    let mut rng_state = 0x9e3779b97f4a7c15u64;
    for _ in 0..args.requests {
        // xorshift64
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let before = 1 + limit + rng_state % messages.saturating_sub(limit).max(1);
        let url =
            format!("http://{addr}/v1/rooms/{room}/messages?limit={limit}&beforeSeq={before}");
        let mut request = client.get(&url);
        if let Some(token) = &args.token {
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
    Ok(latency)
}
