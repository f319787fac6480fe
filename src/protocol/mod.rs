//! The wire format (docs/protocol.md): requests, replies, events and error
//! codes, and the decoder that turns one text frame into a request.
//!
//! Decoding is two-step on purpose: first the envelope (`id`, `op`), so that
//! even a request with bad fields gets a reply carrying its own `id`; then the
//! op's fields ([`ops`]), through `serde_path_to_error` so the error names
//! the field.

mod error;
mod event;
pub(crate) mod ops;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::domain::RoomMessage;

pub(crate) use error::{ErrorBody, ErrorCode};
pub(crate) use event::{Event, MessageList, RoomState, RoomStateReason};
pub(crate) use ops::{MAX_PAGE, Request};

/// A frame that could not become a request: the reply to send instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejected {
    /// The request's `id`, when it had a usable one.
    pub(crate) id: Option<u32>,
    pub(crate) error: ErrorBody,
}

/// Decodes one text frame into `(id, request)`.
pub(crate) fn decode(frame: &str) -> Result<(u32, Request), Rejected> {
    let (id, op, body) = envelope(frame)?;
    ops::decode_op(&op, body)
        .map(|request| (id, request))
        .map_err(|error| Rejected {
            id: Some(id),
            error,
        })
}

/// Reads `id` and `op`; returns them with the whole object for the fields.
fn envelope(frame: &str) -> Result<(u32, String, Value), Rejected> {
    let reject = |id, error| Rejected { id, error };
    let bad_frame = |message: String| reject(None, ErrorBody::new(ErrorCode::BadFrame, message));
    let object: Map<String, Value> = match serde_json::from_str::<Value>(frame) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err(bad_frame("a request must be a JSON object".into())),
        Err(e) => return Err(bad_frame(format!("frame is not valid JSON: {e}"))),
    };
    let id = match object.get("id").and_then(Value::as_u64) {
        Some(id) if id <= u64::from(u32::MAX) => id as u32,
        _ => {
            return Err(bad_frame(
                "a request needs an \"id\" that is an integer 0..=4294967295".into(),
            ));
        }
    };
    let op = match object.get("op") {
        Some(Value::String(op)) => op.clone(),
        Some(_) => return Err(reject(Some(id), ErrorBody::invalid("op: must be a string"))),
        None => return Err(reject(Some(id), ErrorBody::invalid("op: missing field"))),
    };
    Ok((id, op, Value::Object(object)))
}

/// Serializes a page of messages (ascending seq) within `max_bytes` of
/// JSON; returns the page and whether it was cut. Bodies can grow sixfold
/// when escaped, so a page bounded by its raw size alone can still be far
/// larger on the wire. A page read `backwards` (towards older messages)
/// keeps its newest messages and loses the oldest, so that paging on with
/// `beforeSeq` misses nothing; either way at least one message is kept.
pub(crate) fn bounded_page(
    messages: &[RoomMessage],
    max_bytes: usize,
    backwards: bool,
) -> (Vec<Box<RawValue>>, bool) {
    let mut page = Vec::with_capacity(messages.len());
    let mut bytes = 0;
    let mut cut = false;
    let in_reading_order: Box<dyn Iterator<Item = &RoomMessage>> = if backwards {
        Box::new(messages.iter().rev())
    } else {
        Box::new(messages.iter())
    };
    for message in in_reading_order {
        let json = serde_json::value::to_raw_value(message).expect("messages serialize");
        bytes += json.get().len() + 1;
        if bytes > max_bytes && !page.is_empty() {
            cut = true;
            break;
        }
        page.push(json);
    }
    if backwards {
        page.reverse();
    }
    (page, cut)
}

/// A successful reply: `{"id", "ok": true, ...body}`.
pub(crate) fn ok_reply<T: Serialize>(id: u32, body: &T) -> String {
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
pub(crate) fn error_reply(id: Option<u32>, error: &ErrorBody) -> String {
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
        let room_id = crate::domain::RoomId::parse("r").unwrap();
        let reply = ok_reply(
            8,
            &ops::MemberCount {
                room_id: &room_id,
                count: 2,
            },
        );
        assert_eq!(reply, r#"{"id":8,"ok":true,"roomID":"r","count":2}"#);
        assert_eq!(ok_reply(9, &ops::Pong {}), r#"{"id":9,"ok":true}"#);
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
