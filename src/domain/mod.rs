//! Validated room-domain values: the bottom floor, importing nothing of ours.
//!
//! Everything that crosses an edge (a WebSocket frame, a REST path, a query
//! string, a stored row) is parsed into one of these types first, so code
//! further in never sees an id with a forbidden character or a name that is
//! too long. Each type deserializes through its `parse`, which is how a bad
//! field in a request becomes a `1003 invalid_argument` naming that field.

mod cursor;
mod ids;
mod message;

pub(crate) use cursor::{HistoryCursor, TimeRange};
pub use ids::InvalidValue;
pub(crate) use ids::{
    ClientMessageId, NodeId, RoomId, RoomInfo, RoomName, UserId, UserInfo, UserName,
};
pub(crate) use message::{MessageType, Priority, RoomMessage};
