//! The `roomd` binary: parse settings, start logging, run until a signal;
//! or, with `roomd token`, print a login token.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use roomd::config::Secret;
use roomd::{App, Config};

/// Self-hosted, persistent chat-room server: rooms, members and messages over
/// WebSocket (/v1/ws), history over REST, PostgreSQL underneath.
#[derive(Parser)]
#[command(
    name = "roomd",
    version,
    args_conflicts_with_subcommands = true,
    // A flag given twice takes its last value, so a script can append overrides.
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Print a login token (HS256 JWT) for a user, signed with the auth
    /// secret, alone on stdout.
    Token {
        /// The user the token logs in (its `sub`).
        #[arg(long)]
        user: String,
        /// Display name carried in the token (`name`); it wins over the
        /// name the client sends.
        #[arg(long)]
        name: Option<String>,
        /// How long the token is valid (e.g. 15m, 1h, 7d).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// The secret roomd verifies tokens with.
        #[arg(long, env = "ROOMD_AUTH_SECRET", hide_env_values = true)]
        auth_secret: Secret,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Token {
        user,
        name,
        ttl,
        auth_secret,
    }) = cli.command
    {
        let token = roomd::issue_token(&auth_secret, &user, name.as_deref(), ttl)
            .context("cannot issue the token")?;
        println!("{token}");
        return Ok(());
    }
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
