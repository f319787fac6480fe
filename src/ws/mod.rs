//! The WebSocket side: the `/v1/ws` handshake, one session per connection
//! ([`session`]: reading, limits, close), what each request does
//! ([`dispatch`]), and the writer that drains the connection's outbox
//! ([`writer`]).
//!
//! roomd upgrades connections itself rather than through `warp::ws()` so it
//! can size tungstenite's buffers: warp 0.4 leaves the read buffer at
//! 128 KiB per connection, zeroed on every read.

mod dispatch;
mod session;
mod token;
mod writer;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::http::{HeaderMap, HeaderValue, Method, Request};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{self, protocol::WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::limits::{AddressPlaces, Connections, RateLimits};
use crate::metrics::Metrics;
use crate::rooms::Rooms;

/// An upgraded connection, as roomd's own upgrade path hands it over.
type WebSocket = tokio_tungstenite::WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Bytes tungstenite reads per call: small, because it is reserved for
/// every connection, idle or not; most chat frames fit, larger ones are
/// read in steps.
const READ_BUFFER: usize = 1024;

/// What sessions need of the server, and nothing more.
#[derive(Debug)]
pub(crate) struct SessionContext {
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) rates: Arc<RateLimits>,
    pub(crate) connections: Arc<Connections>,
    /// Refusals and closes are counted (and logged, rate-limited).
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) settings: SessionSettings,
    /// Cancelled to stop the server; sessions watch it to send Close frames.
    pub(crate) shutdown: CancellationToken,
    /// Upgraded sessions, which the HTTP server's graceful shutdown does not
    /// track; the server waits on this instead.
    pub(crate) sessions: TaskTracker,
    /// Bumped when this node's lease was taken away: every session closes.
    pub(crate) fenced: watch::Receiver<u64>,
}

/// The settings a session runs by.
#[derive(Debug, Clone)]
pub(crate) struct SessionSettings {
    pub(crate) login_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) outbox_frames: usize,
    pub(crate) outbox_bytes: usize,
    pub(crate) max_frame_bytes: usize,
    pub(crate) max_connections_per_user: u32,
    /// How long past its `exp` a session's token still holds.
    pub(crate) token_leeway: Duration,
}

impl From<&Config> for SessionSettings {
    fn from(config: &Config) -> Self {
        Self {
            login_timeout: config.login_timeout,
            idle_timeout: config.idle_timeout,
            ping_interval: config.ping_interval,
            outbox_frames: config.limits.outbox_frames,
            outbox_bytes: config.limits.outbox_bytes,
            max_frame_bytes: config.limits.max_frame_bytes,
            max_connections_per_user: config.limits.max_connections_per_user,
            token_leeway: config.token_leeway,
        }
    }
}

/// A request to `/v1/ws` that is not a WebSocket handshake.
#[derive(Debug, thiserror::Error)]
#[error("/v1/ws expects a WebSocket upgrade (version 13)")]
pub(crate) struct NotAnUpgrade;

/// Accepts a WebSocket handshake: once the HTTP layer has answered with
/// `101 Switching Protocols` and the returned `Sec-WebSocket-Accept`, the
/// connection becomes a session. `ip` is the client's address, for
/// per-address login limits; `unauthenticated` the connection's places
/// among unauthenticated connections, which the session keeps until login.
pub(crate) fn accept<B: Send + 'static>(
    req: &mut Request<B>,
    ip: Option<IpAddr>,
    unauthenticated: Option<AddressPlaces>,
    ctx: Arc<SessionContext>,
) -> Result<HeaderValue, NotAnUpgrade> {
    let key = handshake_key(req.method(), req.headers()).ok_or(NotAnUpgrade)?;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(req);
    let limit = ctx.settings.max_frame_bytes;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    ctx.sessions.clone().spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    tungstenite::protocol::Role::Server,
                    Some(config),
                )
                .await;
                // A task of its own, sized for the session alone: this
                // upgrade task (and its larger future) ends here.
                let session = session::serve(socket, ctx.clone(), ip, unauthenticated);
                ctx.sessions.spawn(session);
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    Ok(HeaderValue::from_str(&accept).expect("base64 is a valid header value"))
}

/// The client's `Sec-WebSocket-Key`, when the request is a version-13 handshake.
fn handshake_key(method: &Method, headers: &HeaderMap) -> Option<HeaderValue> {
    let has = |name: &str, value: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case(value))
    };
    let is_handshake = method == Method::GET
        && has("connection", "upgrade")
        && has("upgrade", "websocket")
        && has("sec-websocket-version", "13");
    headers
        .get("sec-websocket-key")
        .filter(|key| is_handshake && is_nonce(key.as_bytes()))
        .cloned()
}

/// RFC 6455: the key is 16 random bytes in base64, so 24 characters of
/// the base64 alphabet ending in `==`.
fn is_nonce(key: &[u8]) -> bool {
    let base64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    key.len() == 24 && key[..22].iter().all(base64) && &key[22..] == b"=="
}
