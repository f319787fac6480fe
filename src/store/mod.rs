//! PostgreSQL access, one file per table family. All SQL of the crate lives
//! here; callers get domain types back and a [`StoreError`] that already says
//! whether the database was unreachable (`1008`) or something else went wrong.

mod lifecycle;
mod members;
mod messages;
mod nodes;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Embedded migrations, applied at start-up by [`Store::connect`].
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How many pooled connections roomd keeps; small, because every operation is
/// a short transaction and PostgreSQL prefers few busy connections to many.
const POOL_SIZE: u32 = 16;

/// How long a request waits for a pooled connection before it is answered
/// with `1008 unavailable` instead of hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) use lifecycle::NewRoom;
pub(crate) use members::{Entry, JoinError, Joined};
pub(crate) use messages::{Appended, PageRequest, Pending};
pub(crate) use nodes::NodeRow;

/// What went wrong with the database, already sorted by what a client is
/// told: `Unavailable` is `1008` (retry later), the rest `1009`. Cloneable
/// (the sqlx error is shared), so every sender of a failed batch gets it.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum StoreError {
    /// The database could not be reached or did not answer in time.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Arc<sqlx::Error>),
    /// Anything else the database said: a bug, logged with a correlation id.
    #[error("database error: {0}")]
    Fault(#[source] Arc<sqlx::Error>),
    /// The database answered, but not as the schema promises.
    #[error("broken invariant: {0}")]
    Invariant(&'static str),
}

impl StoreError {
    /// What a request gets when the store is gone (shutdown) before it ran.
    pub(crate) fn closed() -> Self {
        StoreError::Unavailable(Arc::new(sqlx::Error::PoolClosed))
    }

    /// What a caller that gave up waiting for the database reports.
    pub(crate) fn timed_out() -> Self {
        StoreError::Unavailable(Arc::new(sqlx::Error::PoolTimedOut))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // `Protocol` is what a connection cut during its handshake
            // looks like (e.g. "unexpected response from SSLRequest"):
            // the database is not usable now, nothing was stored.
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(Arc::new(e)),
            sqlx::Error::Database(ref db)
                if db
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")) =>
            {
                // Connection exceptions and operator intervention (shutdown).
                StoreError::Unavailable(Arc::new(e))
            }
            other => StoreError::Fault(Arc::new(other)),
        }
    }
}

/// Handle to the database, cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects and brings the schema up to date.
    pub(crate) async fn connect(options: PgConnectOptions) -> Result<Self, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// `/readyz`: does the database answer right now?
    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query!("select 1 as one")
            .fetch_one(&self.pool)
            .await?;
        Ok(())
    }

    /// The database's clock, which every stored timestamp uses.
    pub(crate) async fn now(&self) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
        Ok(sqlx::query_scalar!(r#"select now() as "now!""#)
            .fetch_one(&self.pool)
            .await?)
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::StoreError;

    #[test]
    fn a_connection_cut_during_its_handshake_is_unavailable_not_a_fault() {
        let cut = sqlx::Error::Protocol("unexpected response from SSLRequest: 0x00".into());
        assert!(matches!(StoreError::from(cut), StoreError::Unavailable(_)));
        let refused = sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert!(matches!(
            StoreError::from(refused),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::Fault(_)
        ));
    }
}
