//! Error codes and the `error` object every failed reply (WebSocket or REST)
//! carries. Which internal error becomes which code is decided in one place,
//! `rooms::error`; this module only knows the numbers and the shape.

use std::time::Duration;

use serde::Serialize;

/// Every error a client can receive, with the number and reason of the table
/// in docs/protocol.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    BadFrame,
    UnknownOp,
    InvalidArgument,
    NotLoggedIn,
    Unauthorized,
    RateLimited,
    TooLarge,
    Unavailable,
    Internal,
    NotInRoom,
    RoomNotFound,
    RoomExists,
    RoomLimit,
    UserRoomLimit,
    RoomFull,
}

impl ErrorCode {
    pub(crate) fn code(self) -> u32 {
        self.entry().0
    }

    pub(crate) fn reason(self) -> &'static str {
        self.entry().1
    }

    /// The code table, one line per code so number and reason cannot drift.
    fn entry(self) -> (u32, &'static str) {
        match self {
            ErrorCode::BadFrame => (1001, "bad_frame"),
            ErrorCode::UnknownOp => (1002, "unknown_op"),
            ErrorCode::InvalidArgument => (1003, "invalid_argument"),
            ErrorCode::NotLoggedIn => (1004, "not_logged_in"),
            ErrorCode::Unauthorized => (1005, "unauthorized"),
            ErrorCode::RateLimited => (1006, "rate_limited"),
            ErrorCode::TooLarge => (1007, "too_large"),
            ErrorCode::Unavailable => (1008, "unavailable"),
            ErrorCode::Internal => (1009, "internal"),
            ErrorCode::NotInRoom => (6000321, "not_in_room"),
            ErrorCode::RoomNotFound => (6000322, "room_not_found"),
            ErrorCode::RoomExists => (6000323, "room_exists"),
            ErrorCode::RoomLimit => (6000324, "room_limit"),
            ErrorCode::UserRoomLimit => (6000325, "user_room_limit"),
            ErrorCode::RoomFull => (6000327, "room_full"),
        }
    }
}

/// The `error` object of a failed reply (and of REST error bodies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    /// With `rate_limited`: when a retry would pass.
    pub(crate) retry_after_ms: Option<u64>,
}

impl ErrorBody {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// `1003 invalid_argument`: the message names the field.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    /// `1006 rate_limited` with the wait before a retry would pass.
    pub(crate) fn rate_limited(message: impl Into<String>, retry_after: Duration) -> Self {
        Self {
            retry_after_ms: Some(retry_after.as_millis().max(1) as u64),
            ..Self::new(ErrorCode::RateLimited, message)
        }
    }
}

impl Serialize for ErrorBody {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Error", 4)?;
        st.serialize_field("code", &self.code.code())?;
        st.serialize_field("reason", self.code.reason())?;
        st.serialize_field("message", &self.message)?;
        if let Some(ms) = self.retry_after_ms {
            st.serialize_field("retryAfterMs", &ms)?;
        }
        st.end()
    }
}
