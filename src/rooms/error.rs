//! The room service's errors, and the one place where any failure inside
//! roomd becomes what a client is told: [`RoomError::to_body`]. WebSocket
//! replies and REST error bodies both go through it.

use crate::domain::RoomId;
use crate::limits::Limited;
use crate::protocol::{ErrorBody, ErrorCode};
use crate::store::{JoinError, StoreError};

#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum RoomError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("not in room '{0}'")]
    NotInRoom(RoomId),
    #[error("room '{0}' does not exist")]
    NotFound(RoomId),
    #[error("room '{0}' already exists")]
    Exists(RoomId),
    #[error("the server has reached its limit of {0} rooms")]
    RoomLimit(u32),
    #[error("the user is already in {0} rooms, the most allowed")]
    UserRoomLimit(u32),
    #[error("the user has created {0} rooms that still exist, the most allowed")]
    CreatorLimit(u32),
    #[error("room '{0}' is full: the room has reached its limit of {1} members")]
    RoomFull(RoomId, u32),
    #[error("too many messages; slow down")]
    RateLimited(Limited),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RoomError {
    /// A failed join of `room_id`, in the room service's terms.
    pub(crate) fn from_join(room_id: &RoomId, e: JoinError) -> Self {
        match e {
            JoinError::NotFound => RoomError::NotFound(room_id.clone()),
            JoinError::Exists => RoomError::Exists(room_id.clone()),
            JoinError::RoomLimit(max) => RoomError::RoomLimit(max),
            JoinError::UserRoomLimit(max) => RoomError::UserRoomLimit(max),
            JoinError::CreatorLimit(max) => RoomError::CreatorLimit(max),
            JoinError::RoomFull(max) => RoomError::RoomFull(room_id.clone(), max),
            JoinError::Store(e) => RoomError::Store(e),
        }
    }

    /// The code a client gets for this error.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            RoomError::Invalid(_) => ErrorCode::InvalidArgument,
            RoomError::TooLarge(_) => ErrorCode::TooLarge,
            RoomError::NotInRoom(_) => ErrorCode::NotInRoom,
            RoomError::NotFound(_) => ErrorCode::RoomNotFound,
            RoomError::Exists(_) => ErrorCode::RoomExists,
            RoomError::RoomLimit(_) => ErrorCode::RoomLimit,
            RoomError::UserRoomLimit(_) | RoomError::CreatorLimit(_) => ErrorCode::UserRoomLimit,
            RoomError::RoomFull(..) => ErrorCode::RoomFull,
            RoomError::RateLimited(_) => ErrorCode::RateLimited,
            RoomError::Store(StoreError::Unavailable(_)) => ErrorCode::Unavailable,
            RoomError::Store(StoreError::Fault(_) | StoreError::Invariant(_)) => {
                ErrorCode::Internal
            }
        }
    }

    /// The wire error. Database faults are logged here with a correlation
    /// id that the client also gets, never with their details.
    pub(crate) fn to_body(&self) -> ErrorBody {
        match self {
            RoomError::RateLimited(limited) => {
                ErrorBody::rate_limited(self.to_string(), limited.retry_after)
            }
            RoomError::Store(e @ StoreError::Unavailable(_)) => {
                tracing::warn!(error = %e, "database unavailable");
                ErrorBody::new(
                    self.code(),
                    "database unavailable; nothing was stored, retry later",
                )
            }
            RoomError::Store(e) => {
                let correlation = correlation_id();
                tracing::error!(%correlation, error = %e, "database fault");
                ErrorBody::new(
                    self.code(),
                    format!("internal error, correlation id {correlation}"),
                )
            }
            _ => ErrorBody::new(self.code(), self.to_string()),
        }
    }
}

/// A short id tying a client-visible internal error to its log line.
fn correlation_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}-{n:x}", std::process::id() ^ nanos)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn internal_faults_reach_clients_as_a_correlation_id_only() {
        let fault = RoomError::Store(StoreError::Fault(Arc::new(sqlx::Error::RowNotFound)));
        let body = fault.to_body();
        assert_eq!(body.code, ErrorCode::Internal);
        assert!(body.message.starts_with("internal error, correlation id "));
        assert!(!body.message.contains("no rows"), "{}", body.message);
        let down = RoomError::Store(StoreError::closed()).to_body();
        assert_eq!(down.code, ErrorCode::Unavailable);
        assert!(!down.message.contains("pool"), "{}", down.message);
    }
}
