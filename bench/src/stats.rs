//! Latency histograms and the summary every scenario prints.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Microseconds, 1 µs to 10 minutes: a stalled server shows as a long tail
/// rather than as a recording error.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

pub fn percentiles(h: &Histogram<u64>) -> Value {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    json!({"count": h.len(), "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99),
           "p999_ms": ms(0.999), "max_ms": h.max() as f64 / 1000.0})
}

/// The summary for a terminal: one `key: value` line per top-level field, the
/// same fields as the JSON file.
pub fn human(summary: &Value) -> String {
    let mut out = String::new();
    if let Value::Object(map) = summary {
        for (key, value) in map {
            out.push_str(&format!("{key:>26}: {value}\n"));
        }
    }
    out
}
