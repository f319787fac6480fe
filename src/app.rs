//! The composition root: configuration in, a running server out. `main` and
//! every test build the server through [`App::build`], so tests run the
//! real thing. Nothing below imports this module.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Authenticator, MIN_SECRET_BYTES};
use crate::cluster::{LeaseSettings, NodeLease};
use crate::config::{Config, Secret};
use crate::embedded_pg::{EmbeddedOptions, EmbeddedPgError, EmbeddedPostgres};
use crate::http::{self, HttpContext, OriginPolicy};
use crate::limits::{Connections, HttpConnections, RateLimits};
use crate::metrics::Metrics;
use crate::rooms::{RoomSettings, Rooms};
use crate::scheduler::{Retention, Scheduler, SchedulerError};
use crate::store::{Store, StoreError};
use crate::ws::{SessionContext, SessionSettings};

/// How long shutdown waits for sessions to send their close frames.
const SESSION_DRAIN: Duration = Duration::from_secs(10);

/// Why roomd could not start; the text says what to change.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct AppError(#[from] StartError);

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(
        "refusing to listen on {0} in open mode: without --auth-secret anyone who can reach \
         roomd could log in as anyone. Set --auth-secret (ROOMD_AUTH_SECRET), bind a loopback \
         address, or pass --insecure-open if you really mean it"
    )]
    InsecureOpen(SocketAddr),
    #[error(
        "--auth-secret (ROOMD_AUTH_SECRET) must be at least {MIN_SECRET_BYTES} bytes: a shorter \
         HMAC key can be guessed, and then anyone can sign a token for any user. Generate one \
         with `openssl rand -base64 48`"
    )]
    WeakSecret,
    #[error("--admin-token (ROOMD_ADMIN_TOKEN) must not be empty: leave it unset for no admin")]
    EmptyAdminToken,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid database URL: {0}")]
    DatabaseUrl(#[source] sqlx::Error),
    #[error("cannot use the database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot prepare the database: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    EmbeddedPg(#[from] EmbeddedPgError),
    #[error("invalid --node-id: {0}")]
    NodeId(#[from] crate::domain::InvalidValue),
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
}

/// A built server, listening but not yet serving (its scheduler already runs).
pub struct App {
    http: Arc<HttpContext>,
    listener: TcpListener,
    local_addr: SocketAddr,
    scheduler: Scheduler,
    embedded: Option<EmbeddedPostgres>,
    shutdown: CancellationToken,
}

impl App {
    pub async fn build(config: Config) -> Result<Self, AppError> {
        check_secrets(&config)?;
        check_open_mode(&config)?;
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.bind,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.bind,
            source,
        })?;
        let (options, embedded) = database(&config).await?;
        let store = Store::connect(options).await.map_err(StartError::from)?;
        let shutdown = CancellationToken::new();
        let metrics = Arc::new(Metrics::default());
        let rates = Arc::new(RateLimits::new(&config.limits));
        let port = local_addr.port();
        let sessions = sessions(&config, port, &store, &metrics, &rates, &shutdown).await?;
        let retention = config.history_retention.map(|window| Retention {
            window,
            schedule: config.retention_schedule.clone(),
        });
        let scheduler = Scheduler::start(store.clone(), metrics.clone(), rates.clone(), retention)
            .await
            .map_err(StartError::from)?;
        if sessions.auth.is_open() {
            tracing::warn!(
                "no auth secret: open mode, any userID may log in (local development only)"
            );
        }
        let http = Arc::new(HttpContext {
            store,
            auth: sessions.auth.clone(),
            metrics,
            sessions,
            trust_forwarded_for: config.trust_forwarded_for,
            connections: HttpConnections::new(
                config.limits.max_http_connections,
                config.limits.max_http_connections_per_ip,
            ),
            http_timeout: config.http_timeout,
            origins: OriginPolicy::new(
                config.auth_secret.is_none(),
                config.bind.ip().is_loopback(),
                &config.allowed_origins,
            ),
            rates: rates.clone(),
            history_slots: Arc::new(Semaphore::new(config.limits.max_concurrent_history)),
            history_page_bytes: config.limits.max_history_page_bytes,
        });
        Ok(Self {
            http,
            listener,
            local_addr,
            scheduler,
            embedded,
            shutdown,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Cancel this token to stop the server (what SIGINT/SIGTERM do).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then stops accepting,
    /// closes every WebSocket with a Close frame, and stops the embedded
    /// PostgreSQL if there is one.
    pub async fn run_until_stopped(self) {
        let local_addr = self.local_addr;
        tracing::info!(%local_addr, "roomd listening");
        http::serve(self.listener, self.http.clone(), self.shutdown.clone()).await;
        let sessions = &self.http.sessions;
        sessions.sessions.close();
        if tokio::time::timeout(SESSION_DRAIN, sessions.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within {SESSION_DRAIN:?}");
        }
        sessions.rooms.wait_background().await;
        self.scheduler.stop().await;
        self.http.store.close().await;
        if let Some(pg) = self.embedded {
            pg.stop().await;
        }
        tracing::info!("roomd stopped");
    }
}

/// Secrets that protect nothing are refused rather than trusted.
fn check_secrets(config: &Config) -> Result<(), StartError> {
    if config
        .auth_secret
        .as_ref()
        .is_some_and(|s| s.expose().len() < MIN_SECRET_BYTES)
    {
        return Err(StartError::WeakSecret);
    }
    if config
        .admin_token
        .as_ref()
        .is_some_and(|t| t.expose().trim().is_empty())
    {
        return Err(StartError::EmptyAdminToken);
    }
    Ok(())
}

/// Open mode on a reachable address lets anyone in as anyone: refused
/// unless asked for by name.
fn check_open_mode(config: &Config) -> Result<(), StartError> {
    if config.auth_secret.is_some() || config.bind.ip().is_loopback() {
        return Ok(());
    }
    if !config.insecure_open {
        return Err(StartError::InsecureOpen(config.bind));
    }
    tracing::warn!(
        bind = %config.bind,
        "INSECURE: open mode on a non-loopback address; anyone who can reach this \
         server can log in as any user and read every room"
    );
    Ok(())
}

/// The database to use: the configured URL, or a private cluster.
async fn database(
    config: &Config,
) -> Result<(PgConnectOptions, Option<EmbeddedPostgres>), StartError> {
    if let Some(url) = &config.database_url {
        let options = PgConnectOptions::from_str(url).map_err(StartError::DatabaseUrl)?;
        return Ok((options, None));
    }
    let pg = EmbeddedPostgres::start(EmbeddedOptions {
        root: config.data_dir.join("pg"),
        ephemeral: false,
    })
    .await?;
    Ok((pg.connect_options(), Some(pg)))
}

/// The room service and everything a session needs; the previous run's
/// leftover members are handled before the first connection.
async fn sessions(
    config: &Config,
    port: u16,
    store: &Store,
    metrics: &Arc<Metrics>,
    rates: &Arc<RateLimits>,
    shutdown: &CancellationToken,
) -> Result<Arc<SessionContext>, StartError> {
    let settings = RoomSettings {
        message_limits: (&config.limits).into(),
        join_limits: (&config.limits).into(),
        default_destroy_delay: config.room_destroy_delay,
        reconnect_grace: config.reconnect_grace,
        node: config.node(port)?,
        history_page_bytes: config.limits.max_history_page_bytes,
    };
    let rooms = Rooms::new(
        store.clone(),
        settings,
        rates.clone(),
        metrics.clone(),
        shutdown.clone(),
    );
    let rooms = Arc::new(rooms);
    rooms.expire_previous_run().await?;
    let connections = Connections::new(
        config.limits.max_connections,
        config.limits.max_connections_per_user,
    );
    let lease = LeaseSettings {
        node: config.node(port)?,
        lease: config.node_lease,
    };
    let lease = NodeLease::start(
        store.clone(),
        lease,
        rooms.clone(),
        connections.clone(),
        metrics.clone(),
        shutdown.clone(),
    )
    .await?;
    let auth = Authenticator::new(
        config.auth_secret.as_ref().map(Secret::expose),
        config.admin_token.as_ref().map(Secret::expose),
        config.token_leeway,
    );
    Ok(Arc::new(SessionContext {
        rooms,
        auth: Arc::new(auth),
        rates: rates.clone(),
        metrics: metrics.clone(),
        connections,
        settings: SessionSettings::from(config),
        shutdown: shutdown.clone(),
        sessions: TaskTracker::new(),
        fenced: lease.fenced(),
    }))
}
