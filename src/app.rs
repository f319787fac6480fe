//! Wiring: configuration in, a running server out. `main` and every test
//! build the server through [`App::build`], so tests run the real thing.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::{Config, Secret};
use crate::embedded_pg::{EmbeddedOptions, EmbeddedPgError, EmbeddedPostgres};
use crate::limits::{Connections, RateLimits};
use crate::metrics::Metrics;
use crate::rooms::{RoomSettings, Rooms};
use crate::scheduler::{Retention, Scheduler, SchedulerError};
use crate::store::Store;
use crate::store::rooms::JoinLimits;

/// How long shutdown waits for sessions to send their close frames.
const SESSION_DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(
        "refusing to listen on {0} in open mode: without --auth-secret anyone who can reach \
         roomd could log in as anyone. Set --auth-secret (ROOMD_AUTH_SECRET), bind a loopback \
         address, or pass --insecure-open if you really mean it"
    )]
    InsecureOpen(SocketAddr),
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
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    EmbeddedPg(#[from] EmbeddedPgError),
    #[error("invalid --node-id: {0}")]
    NodeId(#[from] crate::domain::InvalidValue),
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
}

/// What every connection and handler shares.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub rooms: Arc<Rooms>,
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
    pub rates: Arc<RateLimits>,
    pub connections: Arc<Connections>,
    /// Cancelled to stop the server; sessions watch it to send Close frames.
    pub shutdown: CancellationToken,
    /// Upgraded WebSocket sessions, which warp's graceful shutdown does not track.
    pub sessions: TaskTracker,
}

/// A built server, listening but not yet serving (its scheduler already runs).
pub struct App {
    state: Arc<AppState>,
    listener: TcpListener,
    local_addr: SocketAddr,
    scheduler: Scheduler,
    embedded: Option<EmbeddedPostgres>,
}

impl App {
    pub async fn build(config: Config) -> Result<Self, AppError> {
        if config.auth_secret.is_none() && !config.bind.ip().is_loopback() {
            if !config.insecure_open {
                return Err(AppError::InsecureOpen(config.bind));
            }
            tracing::warn!(
                bind = %config.bind,
                "INSECURE: open mode on a non-loopback address; anyone who can reach this \
                 server can log in as any user and read every room"
            );
        }
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| AppError::Bind {
                addr: config.bind,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: config.bind,
            source,
        })?;
        let (options, embedded) = match &config.database_url {
            Some(url) => (
                PgConnectOptions::from_str(url).map_err(AppError::DatabaseUrl)?,
                None,
            ),
            None => {
                let pg = EmbeddedPostgres::start(EmbeddedOptions {
                    root: config.data_dir.join("pg"),
                    ephemeral: false,
                })
                .await?;
                (pg.connect_options(), Some(pg))
            }
        };
        let node = config.node()?;
        let store = Store::connect(options).await?;
        let shutdown = CancellationToken::new();
        let rates = Arc::new(RateLimits::new(&config.limits));
        let metrics = Arc::new(Metrics::default());
        let rooms = Rooms::new(
            store,
            RoomSettings {
                limits: config.message_limits(),
                default_destroy_delay_secs: config.room_destroy_delay,
                reconnect_grace: config.reconnect_grace,
                node,
                join_limits: JoinLimits {
                    max_rooms_per_user: config.limits.max_rooms_per_user,
                    max_members_per_room: config.limits.max_members_per_room,
                    max_rooms: config.limits.max_rooms,
                },
            },
            rates.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        let auth = Authenticator::new(
            config.auth_secret.as_ref().map(Secret::expose),
            config.admin_token.as_ref().map(Secret::expose),
        );
        let rooms = Arc::new(rooms);
        rooms.expire_previous_run().await?;
        let retention = config.history_retention.map(|window| Retention {
            window,
            schedule: config.retention_schedule.clone(),
        });
        let scheduler = Scheduler::start(
            rooms.store().clone(),
            metrics.clone(),
            rates.clone(),
            retention,
        )
        .await?;
        let connections = Connections::new(
            config.limits.max_connections,
            config.limits.max_connections_per_user,
        );
        if auth.is_open() {
            tracing::warn!(
                "no auth secret: open mode, any userID may log in (local development only)"
            );
        }
        Ok(Self {
            state: Arc::new(AppState {
                config,
                rooms,
                auth,
                metrics,
                rates,
                connections,
                shutdown,
                sessions: TaskTracker::new(),
            }),
            listener,
            local_addr,
            scheduler,
            embedded,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// Cancel this token to stop the server (what SIGINT/SIGTERM do).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then stops accepting,
    /// closes every WebSocket with a Close frame, and stops the embedded
    /// PostgreSQL if there is one.
    pub async fn run_until_stopped(self) {
        let App {
            state,
            listener,
            local_addr,
            scheduler,
            embedded,
        } = self;
        tracing::info!(%local_addr, "roomd listening");
        // Our own accept loop (as warp's `Server` does it), so `/v1/ws` can be
        // upgraded by roomd with its own buffer sizes; see `http::serve_request`.
        let routes = warp::service(crate::http::routes(state.clone()));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = state.shutdown.cancelled() => break,
            };
            let _ = tcp.set_nodelay(true);
            let (state, routes) = (state.clone(), routes.clone());
            let service = hyper::service::service_fn(move |req| {
                crate::http::serve_request(req, peer, state.clone(), routes.clone())
            });
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                let connection = builder
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tcp), service);
                if let Err(e) = watcher.watch(connection).await {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
            });
        }
        drop(listener);
        if tokio::time::timeout(SESSION_DRAIN, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("some HTTP requests did not finish within {SESSION_DRAIN:?}");
        }
        state.sessions.close();
        if tokio::time::timeout(SESSION_DRAIN, state.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within {SESSION_DRAIN:?}");
        }
        state.rooms.wait_background().await;
        scheduler.stop().await;
        state.rooms.store().close().await;
        if let Some(pg) = embedded {
            pg.stop().await;
        }
        tracing::info!("roomd stopped");
    }
}
