//! Every message body is `B|<sender>|<counter>|<sent µs>|<padding>`: a
//! receiver finds it in a frame without parsing JSON (roomd may batch several
//! messages into one frame, Socket.IO wraps it in its own framing), computes
//! latency from the send time (same process, same clock), and checks
//! per-sender counters for loss, duplicates and order.

use std::time::Instant;

/// The send time a body carries. Sender and receiver are one process, so an
/// `Instant` taken at the start of the run is a clock both share.
pub fn now_us(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

pub fn encode(sender: usize, counter: u64, sent_us: u64, padding: &str) -> String {
    format!("B|{sender}|{counter}|{sent_us}|{padding}")
}

/// Every body in a frame: (sender, counter, sent µs).
pub fn decode_all(text: &str) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
    text.match_indices("B|").filter_map(|(at, _)| {
        let mut parts = text[at + 2..].splitn(4, '|');
        Some((
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
        ))
    })
}
