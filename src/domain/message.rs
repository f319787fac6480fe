//! A stored message and the two enums it carries.

use serde::{Deserialize, Serialize};

use super::{RoomId, UserId};

/// A message's kind, as ZIM names them. Decides which body limit applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MessageType {
    Text,
    Command,
    Barrage,
    Custom,
}

impl MessageType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MessageType::Text => "text",
            MessageType::Command => "command",
            MessageType::Barrage => "barrage",
            MessageType::Custom => "custom",
        }
    }

    /// Reads the stored form back; the column only ever holds `as_str` values.
    pub(crate) fn from_stored(value: &str) -> Self {
        match value {
            "command" => MessageType::Command,
            "barrage" => MessageType::Barrage,
            "custom" => MessageType::Custom,
            _ => MessageType::Text,
        }
    }
}

/// Delivery priority, carried and stored; roomd delivers every priority alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Priority {
    Low,
    #[default]
    Medium,
    High,
}

impl Priority {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }

    pub(crate) fn from_stored(value: &str) -> Self {
        match value {
            "low" => Priority::Low,
            "high" => Priority::High,
            _ => Priority::Medium,
        }
    }
}

/// A stored message, exactly as clients see it (`RoomMessage` in docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoomMessage {
    #[serde(rename = "messageID", with = "decimal_string")]
    pub(crate) message_id: i64,
    pub(crate) seq: i64,
    #[serde(rename = "roomID")]
    pub(crate) room_id: RoomId,
    #[serde(rename = "senderUserID")]
    pub(crate) sender_user_id: UserId,
    #[serde(rename = "type")]
    pub(crate) kind: MessageType,
    pub(crate) message: String,
    pub(crate) extended_data: String,
    pub(crate) priority: Priority,
    /// When it was stored: the database clock at the start of the storing
    /// transaction, Unix milliseconds (messages committed together share it).
    pub(crate) timestamp: i64,
}

/// `messageID` is a decimal string on the wire so JavaScript clients never
/// lose precision on ids above 2^53.
mod decimal_string {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(crate) fn serialize<S: Serializer>(value: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}
