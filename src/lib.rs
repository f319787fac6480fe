//! roomd: a self-hosted, persistent chat-room server.
//!
//! Clients speak the wire protocol of `docs/protocol.md` over WebSocket;
//! rooms, memberships and messages live in PostgreSQL; history is also
//! readable over REST.
//!
//! # Map, from the top floor down (each imports only what is below it)
//!
//! - [`app`]: the composition root; builds everything from a [`Config`].
//! - `http/`: the accept loop (HTTP/1.1, timeouts, connection caps), the
//!   Host/Origin policy, REST reads, health and metrics, the embedded chat
//!   page and JavaScript client, and REST's error type.
//! - `ws/`: the WebSocket handshake, one session per connection
//!   (`session.rs`), what each request does (`dispatch.rs`), the session's
//!   token over its life (`token.rs`), the writer.
//! - `rooms/`: the room service: one file per family of ops with its rules
//!   (`entry.rs`, `membership.rs`, `messages.rs` with the group committer),
//!   the local fan-out hub, and `error.rs`, the one mapping of any failure
//!   to what a client is told.
//! - `scheduler`: cron jobs: empty-room destruction, history retention.
//! - `protocol/`: wire types: each op's request and reply (`ops.rs`),
//!   events, error codes, and the decoder.
//! - `store/`: all SQL, one file per table family; the database decides,
//!   memory only caches.
//! - `outbox`: a connection's bounded outbound queue, what rooms deliver
//!   into and the writer drains.
//! - `auth`, `limits/`, `metrics`: login tokens and REST readers; rates,
//!   sizes and counted places (connections per process, user, address);
//!   counters for `GET /metrics`.
//! - `domain/`, [`config`]: validated values (ids, names, messages,
//!   cursors) and every setting; they import nothing of ours but each other.
//! - [`embedded_pg`], [`telemetry`]: the private PostgreSQL when no database
//!   URL is given; logging.
//!
//! # Where an op lives
//!
//! Follow `sendRoomMessage` or `joinRoom` through four files:
//!
//! 1. `protocol/ops.rs`: its name in `decode_op`, its request fields
//!    (decoded into validated values), its reply body.
//! 2. `ws/dispatch.rs`: its arm, which calls the rule and queues the reply.
//! 3. `rooms/messages.rs` (`Rooms::send`, then the committer's `commit` and
//!    `fan_out`) or `rooms/entry.rs` (`Rooms::enter`): the rule, under the
//!    room's hub lock, and the event fanned out after the commit.
//! 4. `store/messages.rs` (`append_batch`) or `store/members.rs`
//!    (`enter_room`): its SQL.
//!
//! Adding an op touches the same four: its types in `protocol/ops.rs`, one
//! arm in `ws/dispatch.rs`, its rule in `rooms/`, its SQL in `store/`.

mod app;
mod auth;
mod cluster;
pub mod config;
mod domain;
pub mod embedded_pg;
mod http;
mod limits;
mod metrics;
mod outbox;
mod protocol;
mod rooms;
mod scheduler;
mod store;
pub mod telemetry;
mod ws;

pub use app::{App, AppError};
pub use auth::{IssueError, issue_token};
pub use config::Config;
