//! N joined, idle roomd connections: server memory per connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::run_id;
use crate::client::{self, Ws};
use crate::server::Server;
use crate::source;
use crate::target::Target;

#[derive(Args)]
pub struct ConnectionsArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    #[arg(long, default_value_t = 1)]
    sources: u8,
    #[arg(long, default_value_t = 100)]
    room_size: usize,
}

pub async fn run(args: ConnectionsArgs, server: Server) -> anyhow::Result<Value> {
    let baseline = server.rss_kib();
    let started = Instant::now();
    let open = join(&args).await?;
    let connect_s = started.elapsed().as_secs_f64();
    // Reading is what answers roomd's pings (tungstenite replies as it reads);
    // unanswered, roomd would time the connections out.
    let keep: Vec<_> = open
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} }))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = server.rss_kib();
    let per_connection = match (baseline, after) {
        (Some(b), Some(a)) => json!(a.saturating_sub(b) as f64 / args.count as f64),
        _ => Value::Null,
    };
    for k in keep {
        k.abort();
    }
    Ok(
        json!({"scenario": "connections", "count": args.count, "connect_s": connect_s,
              "server_rss_kib_before": baseline, "server_rss_kib_after": after,
              "server_kib_per_connection": per_connection}),
    )
}

/// Logs in and joins `count` users, `room_size` to a room.
async fn join(args: &ConnectionsArgs) -> anyhow::Result<Vec<Ws>> {
    let (addr, sources, room_size) = (args.addr, args.sources, args.room_size);
    let run = run_id();
    let mut open = Vec::with_capacity(args.count);
    let join = |i: usize| {
        let user = format!("c{run}-{i}");
        let room = format!("idle-{run}-{}", i / room_size);
        async move {
            Target::Roomd
                .member(addr, source::nth(i, sources), &user, &room)
                .await
        }
    };
    client::open_in_batches(args.count, join, |_, ws| open.push(ws)).await?;
    Ok(open)
}
