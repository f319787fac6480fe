//! One module per subcommand, each with its flags and its `run`, which
//! returns the summary that `main` prints and writes.

pub mod churn;
pub mod connections;
pub mod fanout;
pub mod history;
pub mod persist;
pub mod stuck;

use std::time::Duration;

/// Parses `--duration`: seconds, fractions allowed, with or without an `s`.
fn seconds(s: &str) -> Result<Duration, String> {
    s.trim_end_matches('s')
        .parse::<f64>()
        .map(Duration::from_secs_f64)
        .map_err(|e| e.to_string())
}

/// Names this run's rooms and users apart from those of earlier runs against
/// the same server, which may still hold their memberships and messages.
fn run_id() -> String {
    (std::time::Instant::now().elapsed().as_nanos() % 1_000_000).to_string()
}
