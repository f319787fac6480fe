//! `roomd-bench`: load scenarios for roomd and the servers people would pick
//! instead. The same client drives every target, so the comparison measures
//! the servers, not the clients. See BENCHMARKS.md for the commands.

mod body;
mod client;
mod scenarios;
mod server;
mod source;
mod stats;
mod target;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use scenarios::{churn, connections, fanout, history, persist, stuck};
use server::Server;

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
    Fanout(fanout::FanoutArgs),
    /// Acknowledged sends: throughput and ack latency.
    Persist(persist::PersistArgs),
    /// N joined, idle connections; server memory per connection.
    Connections(connections::ConnectionsArgs),
    /// Join/leave cycles with member events flowing.
    Churn(churn::ChurnArgs),
    /// A member that stops reading in a busy room: server memory over time.
    Stuck(stuck::StuckArgs),
    /// REST history page latency over a room with N stored messages.
    History(history::HistoryArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let server = Server::new(cli.server_pid);
    let summary = match cli.scenario {
        Scenario::Fanout(args) => fanout::run(args, server).await?,
        Scenario::Persist(args) => persist::run(args, server).await?,
        Scenario::Connections(args) => connections::run(args, server).await?,
        Scenario::Churn(args) => churn::run(args).await?,
        Scenario::Stuck(args) => stuck::run(args, server).await?,
        Scenario::History(args) => history::run(args).await?,
    };
    print!("{}", stats::human(&summary));
    if let Some(path) = cli.json {
        std::fs::write(&path, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
