//! What roomd counts, exposed at `GET /metrics` in the OpenMetrics text
//! format. One registry per server, so several servers in one process (the
//! tests) keep separate counts.

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::outbox::CloseReason;

/// A limit that refused something; the `kind` label of
/// `roomd_limit_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Refusal {
    /// A TCP connection over `--max-http-connections` (or per address).
    HttpConnections,
    /// A WebSocket session over `--max-connections`.
    Connections,
    /// A login over `--max-connections-per-user`.
    UserConnections,
    /// A request over the connection's rate.
    Requests,
    /// A message over the user's rate.
    Messages,
    /// A login over the address's rate.
    Logins,
    /// A REST request over its user's or address's rate.
    RestRequests,
    /// A history read while every history slot was busy.
    HistoryBusy,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::HttpConnections => "http_connections",
            Refusal::Connections => "connections",
            Refusal::UserConnections => "user_connections",
            Refusal::Requests => "requests",
            Refusal::Messages => "messages",
            Refusal::Logins => "logins",
            Refusal::RestRequests => "rest_requests",
            Refusal::HistoryBusy => "history_busy",
        }
    }
}

impl EncodeLabelValue for Refusal {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusalLabels {
    kind: Refusal,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CloseLabels {
    code: u16,
    reason: &'static str,
}

/// What gets a log line at most once per second, per kind: refusals and
/// closes can come in floods, and the counters have the totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Noted {
    Refusal(Refusal),
    Close(u16),
}

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
    /// Retention runs skipped because another node held the retention lock.
    pub(crate) retention_skipped: Counter,
    pub(crate) messages_expired: Counter,
    /// Messages per group-commit transaction: how well concurrent sends
    /// share commits (PostgreSQL's insert ceiling depends on it).
    pub(crate) commit_batch_messages: Histogram,
    /// Renewals of this node's lease, and times it was found taken away.
    pub(crate) lease_renewals: Counter,
    pub(crate) fencings: Counter,
    /// Things a limit refused, by limit.
    refusals: Family<RefusalLabels, Counter>,
    /// Connections the server closed, by close code.
    closes: Family<CloseLabels, Counter>,
    /// Keeps the log lines of refusals and closes to one per second each.
    log_lines: DefaultKeyedRateLimiter<Noted>,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Self {
            rooms_destroyed: Counter::default(),
            sweeps: Counter::default(),
            sweep_failures: Counter::default(),
            sweep_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            retention_runs: Counter::default(),
            retention_failures: Counter::default(),
            retention_skipped: Counter::default(),
            messages_expired: Counter::default(),
            commit_batch_messages: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            lease_renewals: Counter::default(),
            fencings: Counter::default(),
            refusals: Family::default(),
            closes: Family::default(),
            log_lines: RateLimiter::keyed(Quota::per_second(NonZeroU32::MIN)),
            registry: Registry::default(),
        };
        let registry = metrics.registered();
        Self {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// A registry with every metric under its name and help text.
    fn registered(&self) -> Registry {
        let mut registry = Registry::with_prefix("roomd");
        let counters = [
            (
                "rooms_destroyed",
                "Empty rooms destroyed after their delay",
                &self.rooms_destroyed,
            ),
            ("sweeps", "Empty-room sweeps run", &self.sweeps),
            (
                "sweep_failures",
                "Empty-room sweeps that failed and were retried at the next tick",
                &self.sweep_failures,
            ),
            (
                "retention_runs",
                "History retention runs completed",
                &self.retention_runs,
            ),
            (
                "retention_failures",
                "History retention runs that failed",
                &self.retention_failures,
            ),
            (
                "retention_skipped",
                "History retention runs skipped while another node ran it",
                &self.retention_skipped,
            ),
            (
                "messages_expired",
                "Messages deleted by history retention",
                &self.messages_expired,
            ),
            (
                "lease_renewals",
                "Renewals of this node's lease",
                &self.lease_renewals,
            ),
            (
                "fencings",
                "Times this node found its lease taken away and closed its connections",
                &self.fencings,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "sweep_seconds",
            "Duration of one empty-room sweep",
            self.sweep_seconds.clone(),
        );
        registry.register(
            "commit_batch_messages",
            "Messages submitted to one group-commit transaction",
            self.commit_batch_messages.clone(),
        );
        registry.register(
            "limit_refusals",
            "Requests, messages, logins and connections a limit refused",
            self.refusals.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections the server closed, by WebSocket close code",
            self.closes.clone(),
        );
        registry
    }
}

impl Metrics {
    /// Counts a refusal, and logs it unless one of its kind was logged
    /// within the last second.
    pub(crate) fn refused(&self, kind: Refusal) {
        self.refusals.get_or_create(&RefusalLabels { kind }).inc();
        if self.log_lines.check_key(&Noted::Refusal(kind)).is_ok() {
            tracing::info!(
                kind = kind.as_str(),
                "a limit refused (logged at most once a second per kind; see roomd_limit_refusals_total)"
            );
        }
    }

    /// Counts a connection the server closed, and logs it as `refused` does.
    pub(crate) fn closed(&self, reason: CloseReason) {
        let labels = CloseLabels {
            code: reason.code,
            reason: reason.reason,
        };
        self.closes.get_or_create(&labels).inc();
        if self.log_lines.check_key(&Noted::Close(reason.code)).is_ok() {
            tracing::info!(
                code = reason.code,
                reason = reason.reason,
                "closed a connection (logged at most once a second per code; see roomd_connections_closed_total)"
            );
        }
    }

    /// The OpenMetrics text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
