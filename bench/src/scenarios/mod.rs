//! One module per subcommand, each with its flags and its `run`, which
//! returns the summary that `main` prints and writes.

pub mod churn;
pub mod connections;
pub mod fanout;
pub mod history;
pub mod persist;
pub mod stuck;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses `--duration`: seconds, fractions allowed, with or without an `s`.
fn seconds(s: &str) -> Result<Duration, String> {
    s.trim_end_matches('s')
        .parse::<f64>()
        .map(Duration::from_secs_f64)
        .map_err(|e| e.to_string())
}

/// Names this run's rooms and users apart from those of earlier runs against
/// the same server, which may still hold their memberships and messages: the
/// start time in milliseconds, and the pid for two runs started in the same
/// millisecond.
fn run_id() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    format!("{ms}-{}", std::process::id())
}
