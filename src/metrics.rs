//! What roomd counts, exposed at `GET /metrics` in the OpenMetrics text
//! format. One registry per server, so several servers in one process (the
//! tests) keep separate counts.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// Empty rooms destroyed by this process's sweeper.
    pub(crate) rooms_destroyed: Counter,
    /// Sweeps run, failed or not.
    pub(crate) sweeps: Counter,
    /// Sweeps that hit a database error (retried at the next tick).
    pub(crate) sweep_failures: Counter,
    /// Wall time of one sweep, in seconds.
    pub(crate) sweep_seconds: Histogram,
    /// Retention runs completed, and messages they deleted.
    pub(crate) retention_runs: Counter,
    pub(crate) retention_failures: Counter,
    pub(crate) messages_expired: Counter,
    /// Messages per group-commit transaction: how well concurrent sends
    /// share commits (PostgreSQL's insert ceiling depends on it).
    pub(crate) commit_batch_messages: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("roomd");
        let metrics = Self {
            rooms_destroyed: Counter::default(),
            sweeps: Counter::default(),
            sweep_failures: Counter::default(),
            sweep_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            retention_runs: Counter::default(),
            retention_failures: Counter::default(),
            messages_expired: Counter::default(),
            commit_batch_messages: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            registry: Registry::default(),
        };
        registry.register(
            "rooms_destroyed",
            "Empty rooms destroyed after their delay",
            metrics.rooms_destroyed.clone(),
        );
        registry.register("sweeps", "Empty-room sweeps run", metrics.sweeps.clone());
        registry.register(
            "sweep_failures",
            "Empty-room sweeps that failed and were retried at the next tick",
            metrics.sweep_failures.clone(),
        );
        registry.register(
            "sweep_seconds",
            "Duration of one empty-room sweep",
            metrics.sweep_seconds.clone(),
        );
        registry.register(
            "retention_runs",
            "History retention runs completed",
            metrics.retention_runs.clone(),
        );
        registry.register(
            "retention_failures",
            "History retention runs that failed",
            metrics.retention_failures.clone(),
        );
        registry.register(
            "messages_expired",
            "Messages deleted by history retention",
            metrics.messages_expired.clone(),
        );
        registry.register(
            "commit_batch_messages",
            "Messages submitted to one group-commit transaction",
            metrics.commit_batch_messages.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
