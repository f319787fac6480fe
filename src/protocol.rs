//! The wire contract of `../shared/PROTOCOL.md`: requests, replies, events and
//! error codes, and the decoder that turns one text frame into a request.
//!
//! Decoding is two-step on purpose: first the envelope (`id`, `op`), so that
//! even a request with bad fields gets a reply carrying its own `id`; then the
//! op's fields, through `serde_path_to_error` so the error names the field.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{
    ClientMessageId, MessageType, Priority, RoomId, RoomInfo, RoomMessage, UserInfo,
};

/// Every error a client can receive, with the number and reason of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
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
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::BadFrame => 1001,
            ErrorCode::UnknownOp => 1002,
            ErrorCode::InvalidArgument => 1003,
            ErrorCode::NotLoggedIn => 1004,
            ErrorCode::Unauthorized => 1005,
            ErrorCode::RateLimited => 1006,
            ErrorCode::TooLarge => 1007,
            ErrorCode::Unavailable => 1008,
            ErrorCode::Internal => 1009,
            ErrorCode::NotInRoom => 6000321,
            ErrorCode::RoomNotFound => 6000322,
            ErrorCode::RoomExists => 6000323,
            ErrorCode::RoomLimit => 6000324,
            ErrorCode::UserRoomLimit => 6000325,
            ErrorCode::RoomFull => 6000327,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NotLoggedIn => "not_logged_in",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::RoomNotFound => "room_not_found",
            ErrorCode::RoomExists => "room_exists",
            ErrorCode::RoomLimit => "room_limit",
            ErrorCode::UserRoomLimit => "user_room_limit",
            ErrorCode::RoomFull => "room_full",
        }
    }
}

/// The `error` object of a failed reply (and of REST error bodies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// With `rate_limited`: when a retry would pass.
    pub retry_after_ms: Option<u64>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// `1006 rate_limited` with the wait before a retry would pass.
    pub fn rate_limited(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
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

/// `RoomAdvancedConfig`: options that only apply when a request creates the room.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomConfig {
    pub room_destroy_delay_time: Option<u32>,
    pub room_attributes: Option<std::collections::BTreeMap<String, String>>,
}

/// The body of `sendRoomMessage`'s `message` field.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutgoingMessage {
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub message: String,
    #[serde(default)]
    pub extended_data: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SendConfig {
    #[serde(default)]
    pub priority: Priority,
}

/// One decoded request; each variant holds already-validated values.
#[derive(Debug, Clone)]
pub enum Request {
    Login {
        user_info: UserInfo,
        token: Option<String>,
    },
    CreateRoom {
        room_info: RoomInfo,
        config: RoomConfig,
    },
    JoinRoom {
        room_id: RoomId,
        since_seq: Option<i64>,
    },
    EnterRoom {
        room_info: RoomInfo,
        config: RoomConfig,
        since_seq: Option<i64>,
    },
    LeaveRoom {
        room_id: RoomId,
    },
    LeaveAllRoom,
    SendRoomMessage {
        room_id: RoomId,
        message: OutgoingMessage,
        config: SendConfig,
        client_message_id: Option<ClientMessageId>,
    },
    QueryHistoryMessage {
        room_id: RoomId,
        cursor: HistoryCursor,
        count: u32,
    },
    QueryRoomMemberList {
        room_id: RoomId,
        next_flag: Option<String>,
        count: u32,
    },
    QueryRoomOnlineMemberCount {
        room_id: RoomId,
    },
    Ping,
}

impl Request {
    /// The op name, for logs.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Login { .. } => "login",
            Request::CreateRoom { .. } => "createRoom",
            Request::JoinRoom { .. } => "joinRoom",
            Request::EnterRoom { .. } => "enterRoom",
            Request::LeaveRoom { .. } => "leaveRoom",
            Request::LeaveAllRoom => "leaveAllRoom",
            Request::SendRoomMessage { .. } => "sendRoomMessage",
            Request::QueryHistoryMessage { .. } => "queryHistoryMessage",
            Request::QueryRoomMemberList { .. } => "queryRoomMemberList",
            Request::QueryRoomOnlineMemberCount { .. } => "queryRoomOnlineMemberCount",
            Request::Ping => "ping",
        }
    }
}

/// Where a page of history starts. Seqs are exclusive bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryCursor {
    /// The newest messages.
    Latest,
    /// Messages with a seq below this one, newest first up to the page size.
    Before(i64),
    /// Messages with a seq above this one, oldest first up to the page size.
    After(i64),
}

/// A frame that could not become a request: the reply to send instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The request's `id`, when it had a usable one.
    pub id: Option<u32>,
    pub error: ErrorBody,
}

/// Largest page `queryHistoryMessage` and `queryRoomMemberList` return.
pub const MAX_PAGE: u32 = 100;

/// Decodes one text frame into `(id, request)`.
pub fn decode(frame: &str) -> Result<(u32, Request), Rejected> {
    let reject = |id, code, message: String| Rejected {
        id,
        error: ErrorBody::new(code, message),
    };
    let object: Map<String, Value> = match serde_json::from_str::<Value>(frame) {
        Ok(Value::Object(object)) => object,
        Ok(_) => {
            return Err(reject(
                None,
                ErrorCode::BadFrame,
                "a request must be a JSON object".into(),
            ));
        }
        Err(e) => {
            return Err(reject(
                None,
                ErrorCode::BadFrame,
                format!("frame is not valid JSON: {e}"),
            ));
        }
    };
    let id = match object.get("id").and_then(Value::as_u64) {
        Some(id) if id <= u64::from(u32::MAX) => id as u32,
        _ => {
            return Err(reject(
                None,
                ErrorCode::BadFrame,
                "a request needs an \"id\" that is an integer 0..=4294967295".into(),
            ));
        }
    };
    let op = match object.get("op") {
        Some(Value::String(op)) => op.clone(),
        Some(_) => {
            return Err(reject(
                Some(id),
                ErrorCode::InvalidArgument,
                "op: must be a string".into(),
            ));
        }
        None => {
            return Err(reject(
                Some(id),
                ErrorCode::InvalidArgument,
                "op: missing field".into(),
            ));
        }
    };
    let body = Value::Object(object);
    decode_op(&op, body)
        .map(|request| (id, request))
        .map_err(|error| Rejected {
            id: Some(id),
            error,
        })
}

fn fields<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, ErrorBody> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names a missing field in its own message; the path is then `.`.
        let message = if path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        };
        ErrorBody::new(ErrorCode::InvalidArgument, message)
    })
}

fn invalid(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidArgument, message)
}

fn seq_bound(field: &str, value: Option<u64>) -> Result<Option<i64>, ErrorBody> {
    value
        .map(|v| i64::try_from(v).map_err(|_| invalid(format!("{field}: out of range"))))
        .transpose()
}

fn page_size(value: Option<u32>, default: u32) -> Result<u32, ErrorBody> {
    match value {
        None => Ok(default),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(invalid(format!("count: must be 1..={MAX_PAGE}, got {n}"))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginFields {
    user_info: UserInfo,
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateFields {
    room_info: RoomInfo,
    #[serde(default)]
    config: Option<RoomConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinFields {
    #[serde(rename = "roomID")]
    room_id: RoomId,
    since_seq: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnterFields {
    room_info: RoomInfo,
    #[serde(default)]
    config: Option<RoomConfig>,
    since_seq: Option<u64>,
}

#[derive(Deserialize)]
struct RoomFields {
    #[serde(rename = "roomID")]
    room_id: RoomId,
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryFields {
    #[serde(rename = "roomID")]
    room_id: RoomId,
    before_seq: Option<u64>,
    after_seq: Option<u64>,
    count: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemberListFields {
    #[serde(rename = "roomID")]
    room_id: RoomId,
    next_flag: Option<String>,
    count: Option<u32>,
}

fn decode_op(op: &str, body: Value) -> Result<Request, ErrorBody> {
    Ok(match op {
        "login" => {
            let f: LoginFields = fields(body)?;
            Request::Login {
                user_info: f.user_info,
                token: f.token,
            }
        }
        "createRoom" => {
            let f: CreateFields = fields(body)?;
            Request::CreateRoom {
                room_info: f.room_info,
                config: f.config.unwrap_or_default(),
            }
        }
        "joinRoom" => {
            let f: JoinFields = fields(body)?;
            Request::JoinRoom {
                room_id: f.room_id,
                since_seq: seq_bound("sinceSeq", f.since_seq)?,
            }
        }
        "enterRoom" => {
            let f: EnterFields = fields(body)?;
            Request::EnterRoom {
                room_info: f.room_info,
                config: f.config.unwrap_or_default(),
                since_seq: seq_bound("sinceSeq", f.since_seq)?,
            }
        }
        "leaveRoom" => {
            let f: RoomFields = fields(body)?;
            Request::LeaveRoom { room_id: f.room_id }
        }
        "leaveAllRoom" => Request::LeaveAllRoom,
        "sendRoomMessage" => {
            let f: SendFields = fields(body)?;
            Request::SendRoomMessage {
                room_id: f.room_id,
                message: f.message,
                config: f.config.unwrap_or_default(),
                client_message_id: f.client_message_id,
            }
        }
        "queryHistoryMessage" => {
            let f: HistoryFields = fields(body)?;
            let cursor = match (
                seq_bound("beforeSeq", f.before_seq)?,
                seq_bound("afterSeq", f.after_seq)?,
            ) {
                (None, None) => HistoryCursor::Latest,
                (Some(before), None) => HistoryCursor::Before(before),
                (None, Some(after)) => HistoryCursor::After(after),
                (Some(_), Some(_)) => {
                    return Err(invalid("beforeSeq, afterSeq: give at most one of them"));
                }
            };
            Request::QueryHistoryMessage {
                room_id: f.room_id,
                cursor,
                count: page_size(f.count, 20)?,
            }
        }
        "queryRoomMemberList" => {
            let f: MemberListFields = fields(body)?;
            Request::QueryRoomMemberList {
                room_id: f.room_id,
                next_flag: f.next_flag.filter(|flag| !flag.is_empty()),
                count: page_size(f.count, MAX_PAGE)?,
            }
        }
        "queryRoomOnlineMemberCount" => {
            let f: RoomFields = fields(body)?;
            Request::QueryRoomOnlineMemberCount { room_id: f.room_id }
        }
        "ping" => Request::Ping,
        other => {
            return Err(ErrorBody::new(
                ErrorCode::UnknownOp,
                format!("unknown op {other:?}"),
            ));
        }
    })
}

/// A successful reply: `{"id", "ok": true, ...body}`.
pub fn ok_reply<T: Serialize>(id: u32, body: &T) -> String {
    #[derive(Serialize)]
    struct Ok<'a, T> {
        id: u32,
        ok: bool,
        #[serde(flatten)]
        body: &'a T,
    }
    serde_json::to_string(&Ok { id, ok: true, body }).expect("reply bodies always serialize")
}

/// A failed reply: `{"id", "ok": false, "error": {...}}`; `id` is null when
/// the request had none we could read.
pub fn error_reply(id: Option<u32>, error: &ErrorBody) -> String {
    #[derive(Serialize)]
    struct Err<'a> {
        id: Option<u32>,
        ok: bool,
        error: &'a ErrorBody,
    }
    serde_json::to_string(&Err {
        id,
        ok: false,
        error,
    })
    .expect("error replies always serialize")
}

/// Server pushes. Serialized once per event and shared by every recipient.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Event<'a> {
    #[serde(rename_all = "camelCase")]
    RoomMemberJoined {
        #[serde(rename = "roomID")]
        room_id: &'a RoomId,
        member_list: &'a [UserInfo],
    },
    #[serde(rename_all = "camelCase")]
    RoomMemberLeft {
        #[serde(rename = "roomID")]
        room_id: &'a RoomId,
        member_list: &'a [UserInfo],
    },
    #[serde(rename_all = "camelCase")]
    RoomMessageReceived {
        #[serde(rename = "roomID")]
        room_id: &'a RoomId,
        message_list: &'a [&'a RoomMessage],
    },
}

impl Event<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(frame: &str) -> Rejected {
        decode(frame).expect_err("should be rejected")
    }

    #[test]
    fn envelope_errors_carry_the_id_when_there_is_one() {
        assert_eq!(rejected("nope").id, None);
        assert_eq!(rejected("nope").error.code, ErrorCode::BadFrame);
        assert_eq!(rejected("[1]").error.code, ErrorCode::BadFrame);
        assert_eq!(rejected(r#"{"op":"ping"}"#).id, None);
        assert_eq!(rejected(r#"{"id":-1,"op":"ping"}"#).id, None);
        let r = rejected(r#"{"id":3,"op":"fly"}"#);
        assert_eq!((r.id, r.error.code), (Some(3), ErrorCode::UnknownOp));
        let r = rejected(r#"{"id":4}"#);
        assert_eq!((r.id, r.error.code), (Some(4), ErrorCode::InvalidArgument));
    }

    #[test]
    fn field_errors_name_the_field() {
        let r = rejected(r#"{"id":1,"op":"joinRoom"}"#);
        assert_eq!(r.error.code, ErrorCode::InvalidArgument);
        assert!(r.error.message.contains("roomID"), "{}", r.error.message);
        let r = rejected(r#"{"id":1,"op":"joinRoom","roomID":5}"#);
        assert!(
            r.error.message.starts_with("roomID:"),
            "{}",
            r.error.message
        );
        let r = rejected(r#"{"id":1,"op":"login","userInfo":{"userID":"a b"}}"#);
        assert!(
            r.error.message.starts_with("userInfo.userID:"),
            "{}",
            r.error.message
        );
        let r = rejected(r#"{"id":1,"op":"queryHistoryMessage","roomID":"r","count":0}"#);
        assert!(r.error.message.starts_with("count:"), "{}", r.error.message);
    }

    #[test]
    fn replies_have_the_documented_shape() {
        let reply = error_reply(Some(7), &ErrorBody::new(ErrorCode::RoomNotFound, "gone"));
        let v: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"]["code"], 6000322);
        assert_eq!(v["error"]["reason"], "room_not_found");
        let reply = ok_reply(8, &serde_json::json!({"count": 2}));
        assert_eq!(reply, r#"{"id":8,"ok":true,"count":2}"#);
    }

    mod hostile_input {
        use proptest::prelude::*;

        use super::*;

        /// Any failed decode must still produce a reply a client can parse.
        fn assert_well_formed_rejection(rejected: &Rejected) {
            let reply: Value = serde_json::from_str(&error_reply(rejected.id, &rejected.error))
                .expect("error replies are JSON");
            assert_eq!(reply["ok"], false);
            assert!(reply["id"].is_null() || reply["id"].is_u64());
            assert!(reply["error"]["code"].is_u64());
            assert!(reply["error"]["reason"].is_string());
            assert!(reply["error"]["message"].is_string());
        }

        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Value::from),
                ".{0,40}".prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 64, 8, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                    prop::collection::btree_map(".{0,12}", inner, 0..8)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        const OPS: &[&str] = &[
            "login",
            "createRoom",
            "joinRoom",
            "enterRoom",
            "leaveRoom",
            "leaveAllRoom",
            "sendRoomMessage",
            "queryHistoryMessage",
            "queryRoomMemberList",
            "queryRoomOnlineMemberCount",
            "ping",
        ];
        const FIELDS: &[&str] = &[
            "userInfo",
            "token",
            "roomInfo",
            "config",
            "roomID",
            "sinceSeq",
            "message",
            "clientMessageID",
            "beforeSeq",
            "afterSeq",
            "count",
            "nextFlag",
        ];

        /// Requests with a real op and random values in its real field names.
        fn plausible_request() -> impl Strategy<Value = Value> {
            (
                any::<u32>(),
                prop::sample::select(OPS),
                prop::collection::vec((prop::sample::select(FIELDS), any_json()), 0..6),
            )
                .prop_map(|(id, op, fields)| {
                    let mut object = Map::new();
                    object.insert("id".into(), id.into());
                    object.insert("op".into(), op.into());
                    for (name, value) in fields {
                        object.insert(name.into(), value);
                    }
                    Value::Object(object)
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_text_never_panics(frame in any::<String>()) {
                if let Err(rejected) = decode(&frame) {
                    assert_well_formed_rejection(&rejected);
                }
            }

            #[test]
            fn arbitrary_json_never_panics(value in any_json()) {
                if let Err(rejected) = decode(&value.to_string()) {
                    assert_well_formed_rejection(&rejected);
                }
            }

            #[test]
            fn plausible_requests_decode_or_name_their_problem(value in plausible_request()) {
                let id = value["id"].as_u64().map(|id| id as u32);
                match decode(&value.to_string()) {
                    Ok((decoded_id, _)) => prop_assert_eq!(Some(decoded_id), id),
                    Err(rejected) => {
                        assert_well_formed_rejection(&rejected);
                        prop_assert_eq!(rejected.id, id, "a usable id is always echoed");
                        prop_assert_eq!(rejected.error.code, ErrorCode::InvalidArgument);
                    }
                }
            }
        }
    }
}
