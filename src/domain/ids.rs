//! Ids and names: rooms, users, nodes, and a message's idempotency key.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value was refused; the text is shown to clients after the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(String);

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub(crate) struct $name(String);

        impl $name {
            pub(crate) fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_newtype!(
    /// A room's id: 1–128 bytes of ZIM's room-id alphabet.
    RoomId
);
string_newtype!(
    /// A user's id: 1–64 bytes of `[A-Za-z0-9_.@-]`.
    UserId
);
string_newtype!(
    /// A room's display name: 0–64 bytes of UTF-8.
    RoomName
);
string_newtype!(
    /// A user's display name: 0–64 bytes of UTF-8.
    UserName
);
string_newtype!(
    /// Names one roomd process among those sharing a database; its
    /// memberships carry it so a restart removes only its own leftovers.
    NodeId
);
string_newtype!(
    /// The sender's idempotency key for one message: 1–64 bytes.
    ClientMessageId
);

/// Punctuation ZIM allows in room ids besides ASCII letters and digits.
const ROOM_ID_PUNCTUATION: &str = "!#$%&()+-:;<=.>?@[]^_{}|~";

impl RoomId {
    pub(crate) const MAX_BYTES: usize = 128;

    pub(crate) fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
        let value = value.into();
        if value.is_empty() || value.len() > Self::MAX_BYTES {
            return Err(InvalidValue(format!(
                "roomID must be 1-{} bytes, got {}",
                Self::MAX_BYTES,
                value.len()
            )));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || ROOM_ID_PUNCTUATION.contains(*c)))
        {
            return Err(InvalidValue(format!(
                "roomID may only contain A-Z, a-z, 0-9 and {ROOM_ID_PUNCTUATION}; found {bad:?}"
            )));
        }
        Ok(Self(value))
    }
}

impl UserId {
    pub(crate) const MAX_BYTES: usize = 64;

    pub(crate) fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
        let value = value.into();
        if value.is_empty() || value.len() > Self::MAX_BYTES {
            return Err(InvalidValue(format!(
                "userID must be 1-{} bytes, got {}",
                Self::MAX_BYTES,
                value.len()
            )));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "_.@-".contains(*c)))
        {
            return Err(InvalidValue(format!(
                "userID may only contain A-Z, a-z, 0-9 and _.@-; found {bad:?}"
            )));
        }
        Ok(Self(value))
    }
}

fn bounded_text(what: &str, value: String, max: usize) -> Result<String, InvalidValue> {
    if value.len() > max {
        return Err(InvalidValue(format!(
            "{what} must be at most {max} bytes, got {}",
            value.len()
        )));
    }
    if value.contains('\0') {
        // PostgreSQL text cannot hold NUL; refuse it here rather than fail at insert.
        return Err(InvalidValue(format!(
            "{what} must not contain NUL characters"
        )));
    }
    Ok(value)
}

impl RoomName {
    pub(crate) fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
        bounded_text("roomName", value.into(), 64).map(Self)
    }
}

impl UserName {
    pub(crate) fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
        bounded_text("userName", value.into(), 64).map(Self)
    }
}

impl NodeId {
    pub(crate) fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
        let value = bounded_text("node id", value.into(), 128)?;
        if value.is_empty() {
            return Err(InvalidValue("node id must not be empty".into()));
        }
        Ok(Self(value))
    }
}

impl ClientMessageId {
    pub(crate) fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
        let value = bounded_text("clientMessageID", value.into(), 64)?;
        if value.is_empty() {
            return Err(InvalidValue("clientMessageID must be 1-64 bytes".into()));
        }
        Ok(Self(value))
    }
}

/// A user as the protocol shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UserInfo {
    #[serde(rename = "userID")]
    pub(crate) user_id: UserId,
    #[serde(rename = "userName", default = "empty_user_name")]
    pub(crate) user_name: UserName,
}

fn empty_user_name() -> UserName {
    UserName(String::new())
}

/// A room as the protocol shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RoomInfo {
    #[serde(rename = "roomID")]
    pub(crate) room_id: RoomId,
    #[serde(rename = "roomName", default = "empty_room_name")]
    pub(crate) room_name: RoomName,
}

fn empty_room_name() -> RoomName {
    RoomName(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_follow_zims_alphabet() {
        assert!(RoomId::parse("math-101").is_ok());
        assert!(RoomId::parse("a!#$%&()+-:;<=.>?@[]^_{}|~Z9").is_ok());
        assert!(RoomId::parse("x".repeat(128)).is_ok());
        assert!(RoomId::parse("").is_err());
        assert!(RoomId::parse("x".repeat(129)).is_err());
        assert!(RoomId::parse("has space").is_err());
        assert!(RoomId::parse("quote'").is_err());
        assert!(RoomId::parse("slash/").is_err());
        assert!(RoomId::parse("é").is_err());
    }

    #[test]
    fn user_ids_are_narrower() {
        assert!(UserId::parse("alice.b@example-1_x").is_ok());
        assert!(UserId::parse("a#b").is_err());
        assert!(UserId::parse("x".repeat(65)).is_err());
        assert!(UserId::parse("").is_err());
    }

    #[test]
    fn names_are_bounded_in_bytes_not_chars() {
        assert!(RoomName::parse("é".repeat(32)).is_ok());
        assert!(RoomName::parse("é".repeat(33)).is_err());
        assert!(UserName::parse("").is_ok());
        assert!(UserName::parse("a\0b").is_err());
    }
}
