//! Every op's request and reply, side by side: what a client sends, how it
//! is decoded into validated values, and the body of its success reply.
//! The op names are in [`decode_op`]; the rule each op follows is in
//! `rooms/`, its SQL in `store/`, and `ws/dispatch.rs` connects them.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::error::ErrorBody;
use crate::domain::{
    ClientMessageId, HistoryCursor, MessageType, Priority, RoomId, RoomInfo, RoomMessage, RoomName,
    UserId, UserInfo,
};

/// Largest page `queryHistoryMessage` and `queryRoomMemberList` return.
pub(crate) const MAX_PAGE: u32 = 100;
/// `queryHistoryMessage`'s page size when the client names none.
const DEFAULT_HISTORY_PAGE: u32 = 20;

/// One decoded request. Login and sends are apart from the rest because a
/// session treats them apart: login is the only op before login, and sends
/// are pipelined while everything else waits its turn.
#[derive(Debug, Clone)]
pub(crate) enum Request {
    Login(Login),
    Send(SendMessage),
    Room(RoomRequest),
}

/// `login`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Login {
    pub(crate) user_info: UserInfo,
    pub(crate) token: Option<String>,
}

/// `sendRoomMessage`.
#[derive(Debug, Clone)]
pub(crate) struct SendMessage {
    pub(crate) room_id: RoomId,
    pub(crate) message: OutgoingMessage,
    pub(crate) priority: Priority,
    pub(crate) client_message_id: Option<ClientMessageId>,
}

/// The body of `sendRoomMessage`'s `message` field.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutgoingMessage {
    #[serde(rename = "type")]
    pub(crate) kind: MessageType,
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) extended_data: String,
}

/// Every other op a logged-in connection may send.
#[derive(Debug, Clone)]
pub(crate) enum RoomRequest {
    Ping,
    /// `createRoom`, `joinRoom` and `enterRoom`: one path, three modes.
    Enter(Entry),
    Leave {
        room_id: RoomId,
    },
    LeaveAll,
    /// A read of a room this connection has joined.
    Query(RoomQuery),
    /// A new token for the session, before the old one expires.
    RenewToken {
        token: String,
    },
}

/// The reads: they change nothing, and each needs the room joined.
#[derive(Debug, Clone)]
pub(crate) enum RoomQuery {
    History {
        room_id: RoomId,
        cursor: HistoryCursor,
        count: u32,
    },
    MemberList {
        room_id: RoomId,
        next_flag: Option<String>,
        count: u32,
    },
    MemberCount {
        room_id: RoomId,
    },
}

/// A request to be in a room on this connection.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) room_id: RoomId,
    pub(crate) mode: EntryMode,
    /// Catch up on stored messages after this seq once the reply is out.
    pub(crate) since_seq: Option<i64>,
}

/// What an entry does about the room's existence.
#[derive(Debug, Clone)]
pub(crate) enum EntryMode {
    /// `createRoom`: the room must not exist yet.
    Create(NewRoom),
    /// `joinRoom`: the room must exist.
    Join,
    /// `enterRoom`: joined if it exists, created otherwise.
    Enter(NewRoom),
}

/// The room a create (or an enter that creates) makes.
#[derive(Debug, Clone)]
pub(crate) struct NewRoom {
    pub(crate) room_name: RoomName,
    pub(crate) config: RoomConfig,
}

/// `RoomAdvancedConfig`: options that only apply when a request creates the room.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoomConfig {
    pub(crate) room_destroy_delay_time: Option<u32>,
    pub(crate) room_attributes: Option<BTreeMap<String, String>>,
}

/// Decodes one op's fields; the envelope (`id`, `op`) is already read.
pub(crate) fn decode_op(op: &str, body: Value) -> Result<Request, ErrorBody> {
    let room = Request::Room;
    let query = |q| Request::Room(RoomRequest::Query(q));
    Ok(match op {
        "login" => Request::Login(fields(body)?),
        "sendRoomMessage" => Request::Send(fields::<SendFields>(body)?.into()),
        "ping" => room(RoomRequest::Ping),
        "createRoom" => room(RoomRequest::Enter(fields::<CreateFields>(body)?.into())),
        "joinRoom" => room(RoomRequest::Enter(fields::<JoinFields>(body)?.try_into()?)),
        "enterRoom" => room(RoomRequest::Enter(fields::<EnterFields>(body)?.try_into()?)),
        "leaveRoom" => room(RoomRequest::Leave {
            room_id: fields::<RoomFields>(body)?.room_id,
        }),
        "leaveAllRoom" => room(RoomRequest::LeaveAll),
        "queryHistoryMessage" => query(fields::<HistoryFields>(body)?.try_into()?),
        "queryRoomMemberList" => query(fields::<MemberListFields>(body)?.try_into()?),
        "queryRoomOnlineMemberCount" => query(RoomQuery::MemberCount {
            room_id: fields::<RoomFields>(body)?.room_id,
        }),
        "renewToken" => room(RoomRequest::RenewToken {
            token: fields::<TokenFields>(body)?.token,
        }),
        other => {
            return Err(ErrorBody::new(
                super::ErrorCode::UnknownOp,
                format!("unknown op {other:?}"),
            ));
        }
    })
}

/// Deserializes an op's fields; the error names the field by its path.
fn fields<T: DeserializeOwned>(body: Value) -> Result<T, ErrorBody> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names a missing field in its own message; the path is then `.`.
        let message = if path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        };
        ErrorBody::invalid(message)
    })
}

fn seq_bound(field: &str, value: Option<u64>) -> Result<Option<i64>, ErrorBody> {
    value
        .map(|v| i64::try_from(v).map_err(|_| ErrorBody::invalid(format!("{field}: out of range"))))
        .transpose()
}

fn page_size(value: Option<u32>, default: u32) -> Result<u32, ErrorBody> {
    match value {
        None => Ok(default),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(ErrorBody::invalid(format!(
            "count: must be 1..={MAX_PAGE}, got {n}"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendFields {
    #[serde(rename = "roomID")]
    room_id: RoomId,
    message: OutgoingMessage,
    #[serde(default)]
    config: Option<SendConfig>,
    #[serde(rename = "clientMessageID")]
    client_message_id: Option<ClientMessageId>,
}

#[derive(Default, Deserialize)]
struct SendConfig {
    #[serde(default)]
    priority: Priority,
}

impl From<SendFields> for SendMessage {
    fn from(f: SendFields) -> Self {
        Self {
            room_id: f.room_id,
            message: f.message,
            priority: f.config.unwrap_or_default().priority,
            client_message_id: f.client_message_id,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateFields {
    room_info: RoomInfo,
    #[serde(default)]
    config: Option<RoomConfig>,
}

impl From<CreateFields> for Entry {
    fn from(f: CreateFields) -> Self {
        Entry {
            room_id: f.room_info.room_id,
            mode: EntryMode::Create(NewRoom {
                room_name: f.room_info.room_name,
                config: f.config.unwrap_or_default(),
            }),
            since_seq: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinFields {
    #[serde(rename = "roomID")]
    room_id: RoomId,
    since_seq: Option<u64>,
}

impl TryFrom<JoinFields> for Entry {
    type Error = ErrorBody;
    fn try_from(f: JoinFields) -> Result<Self, ErrorBody> {
        Ok(Entry {
            room_id: f.room_id,
            mode: EntryMode::Join,
            since_seq: seq_bound("sinceSeq", f.since_seq)?,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnterFields {
    room_info: RoomInfo,
    #[serde(default)]
    config: Option<RoomConfig>,
    since_seq: Option<u64>,
}

impl TryFrom<EnterFields> for Entry {
    type Error = ErrorBody;
    fn try_from(f: EnterFields) -> Result<Self, ErrorBody> {
        Ok(Entry {
            room_id: f.room_info.room_id,
            mode: EntryMode::Enter(NewRoom {
                room_name: f.room_info.room_name,
                config: f.config.unwrap_or_default(),
            }),
            since_seq: seq_bound("sinceSeq", f.since_seq)?,
        })
    }
}

#[derive(Deserialize)]
struct RoomFields {
    #[serde(rename = "roomID")]
    room_id: RoomId,
}

#[derive(Deserialize)]
struct TokenFields {
    token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryFields {
    #[serde(rename = "roomID")]
    room_id: RoomId,
    before_seq: Option<u64>,
    after_seq: Option<u64>,
    count: Option<u32>,
}

impl TryFrom<HistoryFields> for RoomQuery {
    type Error = ErrorBody;
    fn try_from(f: HistoryFields) -> Result<Self, ErrorBody> {
        let before = seq_bound("beforeSeq", f.before_seq)?;
        let after = seq_bound("afterSeq", f.after_seq)?;
        let cursor = HistoryCursor::from_bounds(before, after)
            .ok_or_else(|| ErrorBody::invalid("beforeSeq, afterSeq: give at most one of them"))?;
        Ok(RoomQuery::History {
            room_id: f.room_id,
            cursor,
            count: page_size(f.count, DEFAULT_HISTORY_PAGE)?,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemberListFields {
    #[serde(rename = "roomID")]
    room_id: RoomId,
    next_flag: Option<String>,
    count: Option<u32>,
}

impl TryFrom<MemberListFields> for RoomQuery {
    type Error = ErrorBody;
    fn try_from(f: MemberListFields) -> Result<Self, ErrorBody> {
        let next_flag = f.next_flag.filter(|flag| !flag.is_empty());
        // A flag is the last userID of the page before: anything else was
        // not given by roomd (and a NUL must never reach the database).
        if let Some(flag) = &next_flag
            && UserId::parse(flag.as_str()).is_err()
        {
            return Err(ErrorBody::invalid(
                "nextFlag: not a flag this server gave; pass the nextFlag of the page before",
            ));
        }
        Ok(RoomQuery::MemberList {
            room_id: f.room_id,
            next_flag,
            count: page_size(f.count, MAX_PAGE)?,
        })
    }
}

// Success reply bodies, one per op; `super::ok_reply` adds `id` and `ok`.

/// `ping`: nothing but the envelope.
#[derive(Debug, Serialize)]
pub(crate) struct Pong {}

/// `login`: the user as the server knows them (a token's name wins).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LoggedIn<'a> {
    pub(crate) user_info: &'a UserInfo,
}

/// `createRoom`, `joinRoom`, `enterRoom`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Entered<'a> {
    pub(crate) room_info: &'a RoomInfo,
    /// The room's newest seq at the join; a client resumes from it.
    pub(crate) last_seq: i64,
    /// The first seq of the room's current life: the oldest message a
    /// member can read (earlier lives of a re-created room are not theirs).
    pub(crate) first_seq: i64,
}

/// `leaveRoom`.
#[derive(Debug, Serialize)]
pub(crate) struct Left<'a> {
    #[serde(rename = "roomID")]
    pub(crate) room_id: &'a RoomId,
}

/// `leaveAllRoom`.
#[derive(Debug, Serialize)]
pub(crate) struct LeftAll<'a> {
    #[serde(rename = "roomIDs")]
    pub(crate) room_ids: &'a [RoomId],
}

/// `sendRoomMessage`: the message as stored (or as first stored, for a resend).
#[derive(Debug, Serialize)]
pub(crate) struct Sent<'a> {
    pub(crate) message: &'a RoomMessage,
}

/// `queryHistoryMessage`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HistoryPage<'a> {
    #[serde(rename = "roomID")]
    pub(crate) room_id: &'a RoomId,
    /// Serialized already, to keep the page within its byte budget.
    pub(crate) message_list: &'a [Box<RawValue>],
    pub(crate) has_more: bool,
}

/// `queryRoomMemberList`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MemberPage<'a> {
    #[serde(rename = "roomID")]
    pub(crate) room_id: &'a RoomId,
    pub(crate) member_list: &'a [UserInfo],
    /// Continues the list; `""` when it is done.
    pub(crate) next_flag: &'a str,
}

/// `queryRoomOnlineMemberCount`.
#[derive(Debug, Serialize)]
pub(crate) struct MemberCount<'a> {
    #[serde(rename = "roomID")]
    pub(crate) room_id: &'a RoomId,
    pub(crate) count: i64,
}

/// `renewToken`: until when the session now holds (Unix milliseconds;
/// absent in open mode, where sessions do not expire).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenRenewed {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<u64>,
}
