//! The `roomd` binary: parse settings, start logging, run until a signal.

use clap::Parser;
use roomd::{App, Config};

/// Self-hosted, persistent chat-room server: rooms, members and messages over
/// WebSocket (/v1/ws), history over REST, PostgreSQL underneath.
#[derive(Parser)]
#[command(name = "roomd", version)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    roomd::telemetry::init(cli.config.log_format);
    let app = App::build(cli.config).await?;
    let shutdown = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        shutdown.cancel();
    });
    app.run_until_stopped().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
