//! Server pushes. Each is serialized once and the same bytes go to every
//! recipient.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::domain::{RoomId, RoomMessage, UserInfo};

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event")]
pub(crate) enum Event<'a> {
    #[serde(rename = "roomMemberJoined", rename_all = "camelCase")]
    MemberJoined {
        #[serde(rename = "roomID")]
        room_id: &'a RoomId,
        member_list: &'a [UserInfo],
    },
    #[serde(rename = "roomMemberLeft", rename_all = "camelCase")]
    MemberLeft {
        #[serde(rename = "roomID")]
        room_id: &'a RoomId,
        member_list: &'a [UserInfo],
    },
    #[serde(rename = "roomMessageReceived", rename_all = "camelCase")]
    MessagesReceived {
        #[serde(rename = "roomID")]
        room_id: &'a RoomId,
        message_list: MessageList<'a>,
    },
    /// The session's token expires soon; the client should `renewToken`.
    #[serde(rename = "tokenWillExpire", rename_all = "camelCase")]
    TokenWillExpire { seconds_left: u64 },
    /// The connection's presence in a room changed for a reason other than
    /// its own request. ZIM calls the cause `event`; it travels as `reason`
    /// because `event` is the envelope's key.
    #[serde(rename = "roomStateChanged")]
    StateChanged {
        #[serde(rename = "roomID")]
        room_id: &'a RoomId,
        state: RoomState,
        reason: RoomStateReason,
    },
}

/// A `messageList`: messages as committed (fan-out), or already serialized
/// within a byte budget (catch-up pages).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
pub(crate) enum MessageList<'a> {
    Committed(&'a [&'a RoomMessage]),
    Serialized(&'a [Box<RawValue>]),
}

/// ZIM's `RoomState`, as far as roomd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum RoomState {
    Disconnected,
}

/// Why the state changed: ZIM's `RoomEvent` names plus roomd's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum RoomStateReason {
    /// The server is stopping; memberships are kept for the reconnect grace.
    ServerShutdown,
    /// This node lost its lease (several nodes): reconnect and join again.
    NetworkDisconnected,
}

impl Event<'_> {
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_state_changed_has_the_documented_shape() {
        let room_id = RoomId::parse("r1").unwrap();
        let event = Event::StateChanged {
            room_id: &room_id,
            state: RoomState::Disconnected,
            reason: RoomStateReason::ServerShutdown,
        };
        assert_eq!(
            event.to_json(),
            r#"{"event":"roomStateChanged","roomID":"r1","state":"disconnected","reason":"serverShutdown"}"#
        );
    }
}
