//! roomd: a self-hosted, persistent chat-room server.
//!
//! Clients speak the wire contract of `PROTOCOL.md` over WebSocket; rooms,
//! memberships and messages live in PostgreSQL; history is also readable over
//! REST.
//!
//! # Layout
//!
//! - [`config`]: every setting, with its flag, environment variable and default.
//! - [`app`]: builds the server from a config; shared by `main` and the tests.
//! - [`protocol`]: wire types (requests, replies, events, error codes) and the decoder.
//! - [`domain`]: validated values (`RoomId`, `UserId`, names, messages).
//! - [`session`]: one WebSocket connection: login, dispatch, outbound queue, close.
//! - [`rooms`]: room operations and their rules (create, join, enter, leave, send).
//! - [`hub`]: local fan-out from rooms to this process's connections.
//! - [`committer`]: group commit: concurrent sends share a transaction, then fan out.
//! - [`store`]: all SQL, by table family; the database decides, memory only caches.
//! - [`http`]: REST routes, health checks, and the WebSocket upgrade.
//! - [`auth`]: login tokens and REST readers.
//! - [`limits`]: request, message and login rates; connection counts.
//! - [`scheduler`]: background jobs: empty-room destruction, history retention.
//! - [`metrics`]: counters exposed at `GET /metrics`.
//! - [`embedded_pg`]: a private PostgreSQL when no database URL is given.
//! - [`telemetry`]: logging setup.
//! - [`web`]: the chat page and the JavaScript client, embedded in the binary.

pub mod app;
pub mod auth;
pub mod committer;
pub mod config;
pub mod domain;
pub mod embedded_pg;
pub mod http;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod protocol;
pub mod rooms;
pub mod scheduler;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod web;

pub use app::{App, AppError};
pub use config::Config;

/// A short id tying a client-visible internal error to its log line.
pub fn correlation_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}-{n:x}", std::process::id() ^ nanos)
}
