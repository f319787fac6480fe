//! Every setting of roomd: its flag, its environment variable and its default.
//! `roomd --help` prints this table; the README repeats it.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, FromArgMatches, ValueEnum};

use crate::domain::{InvalidValue, NodeId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A secret setting: usable as a string, never printed by `Debug`, so a
/// logged config or error cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Any text parses; whether it is strong enough is for the server to say
/// (an empty secret included, which must not silently mean "none").
impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

/// Every duration setting reads the same way: `30s`, `5m`, `1h 30m`, or a
/// bare number of seconds.
fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    match s.trim().parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(s),
    }
}

/// Longest `roomDestroyDelayTime`: three hours, as in ZIM.
pub(crate) const MAX_DESTROY_DELAY: Duration = Duration::from_secs(10_800);

/// A room-destroy delay: a duration of whole seconds up to [`MAX_DESTROY_DELAY`].
fn destroy_delay(s: &str) -> Result<Duration, String> {
    let delay = duration(s).map_err(|e| e.to_string())?;
    if delay > MAX_DESTROY_DELAY || delay.subsec_nanos() != 0 {
        return Err(format!(
            "must be whole seconds from 0s to {}s",
            MAX_DESTROY_DELAY.as_secs()
        ));
    }
    Ok(delay)
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on for WebSocket and REST.
    #[arg(long, env = "ROOMD_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// PostgreSQL URL (postgres://user@host:port/db). Unset: roomd runs its
    /// own private PostgreSQL under <data-dir>/pg.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Folder for roomd's own files (the embedded PostgreSQL cluster).
    #[arg(long, env = "ROOMD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// HS256 secret for login tokens. Unset: open mode, any valid userID may
    /// log in (local development only).
    #[arg(long, env = "ROOMD_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<Secret>,

    /// Bearer token that may read every room over REST. When set, REST
    /// requires a token even in open mode.
    #[arg(long, env = "ROOMD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// Allow open mode (no auth secret) on a non-loopback address. Anyone
    /// who can reach roomd can then log in as anyone.
    #[arg(long, env = "ROOMD_INSECURE_OPEN")]
    pub insecure_open: bool,

    /// Take the client address for per-IP limits from X-Forwarded-For (set
    /// this only behind a reverse proxy that sets it).
    #[arg(long, env = "ROOMD_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,

    /// Log output format; filter with RUST_LOG (default: info).
    #[arg(long, env = "ROOMD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// How long an empty room waits before it is destroyed, unless its
    /// creator chose roomDestroyDelayTime (0s..=3h, whole seconds).
    #[arg(long, env = "ROOMD_ROOM_DESTROY_DELAY", default_value = "0s", value_parser = destroy_delay)]
    pub room_destroy_delay: Duration,

    /// How long messages are kept (e.g. 30d); older ones are deleted by a
    /// daily job. Unset: keep forever.
    #[arg(long, env = "ROOMD_HISTORY_RETENTION", value_parser = duration)]
    pub history_retention: Option<Duration>,

    /// When the retention job runs: a six-field cron expression in UTC
    /// (sec min hour day month weekday).
    #[arg(long, env = "ROOMD_RETENTION_SCHEDULE", default_value = "0 17 3 * * *")]
    pub retention_schedule: String,

    /// Names this process among roomd processes sharing one database; a
    /// restart removes the memberships left by the same node id. Default:
    /// <hostname>:<bind port>.
    #[arg(long, env = "ROOMD_NODE_ID")]
    pub node_id: Option<String>,

    /// How long a node may go without renewing its lease (in the database)
    /// before the other nodes treat it as gone and, after the reconnect
    /// grace, remove the memberships it held.
    #[arg(long, env = "ROOMD_NODE_LEASE", default_value = "10s", value_parser = duration)]
    pub node_lease: Duration,

    /// How long a dropped connection keeps its memberships before its user
    /// leaves (e.g. 30s; 0: at once). Also how long members of a stopped or
    /// crashed run have to come back after a restart.
    #[arg(long, env = "ROOMD_RECONNECT_GRACE", default_value = "30s", value_parser = duration)]
    pub reconnect_grace: Duration,

    /// Time a new connection has to log in before it is closed (4001).
    #[arg(long, env = "ROOMD_LOGIN_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub login_timeout: Duration,

    /// A connection that sends nothing at all (not even a WebSocket ping or
    /// pong) for this long is closed (4002).
    #[arg(long, env = "ROOMD_IDLE_TIMEOUT", default_value = "35s", value_parser = duration)]
    pub idle_timeout: Duration,

    /// How often the server pings each connection, so live clients always
    /// have something to answer within the idle timeout.
    #[arg(long, env = "ROOMD_PING_INTERVAL", default_value = "10s", value_parser = duration)]
    pub ping_interval: Duration,

    /// Clock skew tolerated on a token's `exp` and `nbf`; also how long a
    /// session outlives its token's `exp` without `renewToken`.
    #[arg(long, env = "ROOMD_TOKEN_LEEWAY", default_value = "30s", value_parser = duration)]
    pub token_leeway: Duration,

    /// How long a plain HTTP connection may take to send a request's
    /// headers, and may stay idle between requests, before it is closed.
    #[arg(long, env = "ROOMD_HTTP_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub http_timeout: Duration,

    /// Web origins (scheme://host[:port], comma-separated) whose pages may
    /// open /v1/ws in secured mode. Unset: any, since a page needs a token
    /// to log in. Open mode always allows only same-origin pages.
    #[arg(long, env = "ROOMD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    #[command(flatten)]
    pub limits: Limits,
}

/// Abuse limits: sizes, rates and counts. Each has a setting; docs/security.md
/// explains them.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Limits")]
pub struct Limits {
    /// Largest WebSocket frame or message accepted, in bytes; a larger one
    /// closes the connection with 1009.
    #[arg(long, env = "ROOMD_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,

    /// Largest `text`/`custom` message body, in bytes (1007 above it).
    #[arg(long, env = "ROOMD_MAX_TEXT_BYTES", default_value_t = 32 * 1024)]
    pub max_text_bytes: usize,

    /// Largest `command`/`barrage` message body, in bytes (1007 above it).
    #[arg(long, env = "ROOMD_MAX_COMMAND_BYTES", default_value_t = 5 * 1024)]
    pub max_command_bytes: usize,

    /// Largest `extendedData`, in bytes (1007 above it).
    #[arg(long, env = "ROOMD_MAX_EXTENDED_DATA_BYTES", default_value_t = 1024)]
    pub max_extended_data_bytes: usize,

    /// Frames a connection's outbound queue holds; a client that lets it
    /// fill is closed with 4008 (slow consumer).
    #[arg(long, env = "ROOMD_OUTBOX_FRAMES", default_value_t = 1024)]
    pub outbox_frames: usize,

    /// Bytes a connection's outbound queue holds before the client is closed
    /// as a slow consumer (4008).
    #[arg(long, env = "ROOMD_OUTBOX_BYTES", default_value_t = 1024 * 1024)]
    pub outbox_bytes: usize,

    /// Requests per second per connection (1006 above it).
    #[arg(long, env = "ROOMD_REQUESTS_PER_SECOND", default_value = "20")]
    pub requests_per_second: NonZeroU32,

    /// Requests a connection may send in a burst.
    #[arg(long, env = "ROOMD_REQUESTS_BURST", default_value = "40")]
    pub requests_burst: NonZeroU32,

    /// Messages per second per user, across all their connections (1006).
    #[arg(long, env = "ROOMD_MESSAGES_PER_SECOND", default_value = "10")]
    pub messages_per_second: NonZeroU32,

    /// Messages a user may send in a burst.
    #[arg(long, env = "ROOMD_MESSAGES_BURST", default_value = "20")]
    pub messages_burst: NonZeroU32,

    /// Logins per second per client IP address (1006).
    #[arg(long, env = "ROOMD_LOGINS_PER_SECOND", default_value = "10")]
    pub logins_per_second: NonZeroU32,

    /// Rate-limited requests within --abuse-window that close the
    /// connection (4029).
    #[arg(long, env = "ROOMD_ABUSE_LIMIT", default_value = "100")]
    pub abuse_limit: NonZeroU32,

    /// The window --abuse-limit counts refusals in.
    #[arg(long, env = "ROOMD_ABUSE_WINDOW", default_value = "10s", value_parser = duration)]
    pub abuse_window: Duration,

    /// Rooms one user may be a member of at once (6000325).
    #[arg(long, env = "ROOMD_MAX_ROOMS_PER_USER", default_value_t = 20)]
    pub max_rooms_per_user: u32,

    /// Members one room may have (6000327).
    #[arg(long, env = "ROOMD_MAX_MEMBERS_PER_ROOM", default_value_t = 10_000)]
    pub max_members_per_room: u32,

    /// Live rooms on the server (6000324).
    #[arg(long, env = "ROOMD_MAX_ROOMS", default_value_t = 100_000)]
    pub max_rooms: u32,

    /// Connections one user may have logged in at once (login fails, close
    /// 4030; 0: no cap).
    #[arg(long, env = "ROOMD_MAX_CONNECTIONS_PER_USER", default_value_t = 10)]
    pub max_connections_per_user: u32,

    /// WebSocket connections this process accepts (close 1013 above it).
    #[arg(long, env = "ROOMD_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: u32,

    /// Plain HTTP connections (not WebSocket sessions) open at once; more
    /// are closed as soon as they are accepted.
    #[arg(long, env = "ROOMD_MAX_HTTP_CONNECTIONS", default_value_t = 1024)]
    pub max_http_connections: u32,

    /// Plain HTTP connections one client address may have open (0: no cap;
    /// behind a proxy every client shares the proxy's address).
    #[arg(long, env = "ROOMD_MAX_HTTP_CONNECTIONS_PER_IP", default_value_t = 64)]
    pub max_http_connections_per_ip: u32,

    /// REST requests per second per user token (or per address without
    /// one); 429 with Retry-After above it.
    #[arg(long, env = "ROOMD_REST_REQUESTS_PER_SECOND", default_value = "20")]
    pub rest_requests_per_second: NonZeroU32,

    /// REST requests a user or address may send in a burst.
    #[arg(long, env = "ROOMD_REST_REQUESTS_BURST", default_value = "40")]
    pub rest_requests_burst: NonZeroU32,

    /// Largest history page in bytes of JSON (REST and WebSocket); a page
    /// stops early at it, with hasMore set.
    #[arg(long, env = "ROOMD_MAX_HISTORY_PAGE_BYTES", default_value_t = 1024 * 1024)]
    pub max_history_page_bytes: usize,

    /// REST history reads served at once; more wait up to a second, then
    /// get 429.
    #[arg(long, env = "ROOMD_MAX_CONCURRENT_HISTORY", default_value_t = 8)]
    pub max_concurrent_history: usize,

    /// Rooms one user may have created that still exist, members or not
    /// (6000325): empty rooms waiting for their destruction count too.
    #[arg(long, env = "ROOMD_MAX_CREATED_ROOMS_PER_USER", default_value_t = 20)]
    pub max_created_rooms_per_user: u32,
}

impl Config {
    /// The defaults, as `roomd` with no flags would use them, whatever the
    /// environment says (so a developer's `ROOMD_*` variables cannot change
    /// what tests run with).
    pub fn defaults() -> Self {
        let command = Self::augment_args(clap::Command::new("roomd")).mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(["roomd"])
            .expect("the defaults parse");
        Self::from_arg_matches(&matches).expect("the defaults are a config")
    }

    /// The node id: as configured, or `<hostname>:<port>`, the port being
    /// the one actually listened on (so `--bind` with port 0 still names
    /// each process apart).
    pub(crate) fn node(&self, port: u16) -> Result<NodeId, InvalidValue> {
        match &self.node_id {
            Some(id) => NodeId::parse(id.clone()),
            None => {
                let host = nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| "roomd".into());
                NodeId::parse(format!("{host}:{port}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_setting_takes_units_or_bare_seconds() {
        assert_eq!(duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(duration("5m").unwrap(), Duration::from_secs(300));
        assert!(duration("soon").is_err());
        assert_eq!(destroy_delay("5").unwrap(), Duration::from_secs(5));
        assert_eq!(destroy_delay("3h").unwrap(), MAX_DESTROY_DELAY);
        assert!(destroy_delay("3h 1s").is_err());
        assert!(destroy_delay("1500ms").is_err());
    }

    #[test]
    fn defaults_ignore_the_environment() {
        // Parsing with every `env` removed is what makes this hold; a set
        // variable cannot be tested here without racing other tests.
        let defaults = Config::defaults();
        assert_eq!(defaults.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(defaults.reconnect_grace, Duration::from_secs(30));
        assert_eq!(defaults.room_destroy_delay, Duration::ZERO);
    }
}
