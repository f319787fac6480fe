//! REST failures: each variant carries its HTTP status, and the body is the
//! same `error` object WebSocket replies carry. Room and store errors reach
//! the wire through `RoomError::to_body`, the one mapping both sides share.

use serde::Serialize;
use warp::http::header::RETRY_AFTER;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::{Reply, Response};

use crate::auth::AuthError;
use crate::domain::RoomId;
use crate::limits::Limited;
use crate::protocol::{ErrorBody, ErrorCode};
use crate::rooms::RoomError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    #[error("not a member of room '{0}'")]
    NotAMember(RoomId),
    #[error("this needs the admin token")]
    AdminOnly,
    #[error("{0}")]
    Forbidden(String),
    #[error("too many requests; slow down")]
    RateLimited(Limited),
    #[error("room '{0}' does not exist")]
    RoomNotFound(RoomId),
    #[error("no route for this path")]
    NoRoute,
    #[error("no route for this method")]
    MethodNotAllowed,
    #[error(transparent)]
    Room(#[from] RoomError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Room(RoomError::Store(e))
    }
}

/// `{"error": {...}}`.
#[derive(Serialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotAMember(_) | ApiError::AdminOnly | ApiError::Forbidden(_) => {
                StatusCode::FORBIDDEN
            }
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RoomNotFound(_) | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Room(e) => status_of(e.code()),
        }
    }

    fn body(&self) -> ErrorBody {
        let code = match self {
            ApiError::BadRequest(_) => ErrorCode::InvalidArgument,
            ApiError::Unauthorized(_) | ApiError::AdminOnly | ApiError::Forbidden(_) => {
                ErrorCode::Unauthorized
            }
            ApiError::RateLimited(limited) => {
                return ErrorBody::rate_limited(self.to_string(), limited.retry_after);
            }
            ApiError::NotAMember(_) => ErrorCode::NotInRoom,
            ApiError::RoomNotFound(_) => ErrorCode::RoomNotFound,
            ApiError::NoRoute | ApiError::MethodNotAllowed => ErrorCode::UnknownOp,
            // A read changes nothing, so say only what a client must do.
            ApiError::Room(RoomError::Store(StoreError::Unavailable(e))) => {
                tracing::warn!(error = %e, "database unavailable");
                return ErrorBody::new(ErrorCode::Unavailable, "database unavailable, retry later");
            }
            ApiError::Room(e) => return e.to_body(),
        };
        ErrorBody::new(code, self.to_string())
    }
}

/// The HTTP status that goes with a room error's code.
fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidArgument | ErrorCode::BadFrame | ErrorCode::UnknownOp => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::NotLoggedIn | ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::NotInRoom => StatusCode::FORBIDDEN,
        ErrorCode::RoomNotFound => StatusCode::NOT_FOUND,
        ErrorCode::RoomExists | ErrorCode::RoomLimit => StatusCode::CONFLICT,
        ErrorCode::UserRoomLimit | ErrorCode::RoomFull => StatusCode::BAD_REQUEST,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let envelope = ErrorEnvelope { error: self.body() };
        let mut response =
            warp::reply::with_status(warp::reply::json(&envelope), self.status()).into_response();
        if let ApiError::RateLimited(limited) = &self {
            // Whole seconds, rounded up: a client that waits this long passes.
            let secs = limited.retry_after.as_millis().div_ceil(1000).max(1);
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs as u64));
        }
        response
    }
}

/// The answer to a request no route took: 404 or 405, or 400 for anything
/// else warp refused (its text is never shown: it can hold internals).
pub(crate) async fn recover(
    rejection: warp::Rejection,
) -> Result<Response, std::convert::Infallible> {
    let error = if rejection.is_not_found() {
        ApiError::NoRoute
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else {
        tracing::debug!(?rejection, "request refused");
        ApiError::BadRequest("the request could not be read".into())
    };
    Ok(error.into_response())
}
