//! REST reads: a room's history, its details and its members. Each handler
//! parses and checks its input, authorizes the reader, and answers with a
//! typed body.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use super::HttpContext;
use super::error::ApiError;
use super::query::Query;
use crate::auth::Reader;
use crate::domain::{HistoryCursor, RoomId, RoomInfo, RoomMessage, TimeRange, UserInfo};
use crate::protocol::MAX_PAGE;

/// Largest REST history page.
const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 50;

/// `GET /v1/rooms/{roomID}/messages`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessagePage {
    #[serde(rename = "roomID")]
    room_id: RoomId,
    messages: Vec<RoomMessage>,
    has_more: bool,
    /// The `beforeSeq` of the older page, when paging backwards.
    next_before_seq: Option<i64>,
    /// The `afterSeq` of the newer page, when paging forwards.
    next_after_seq: Option<i64>,
}

/// `GET /v1/rooms/{roomID}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoomBody {
    room_info: RoomInfo,
    member_count: i64,
    last_seq: i64,
    created_at: String,
    empty_since: Option<String>,
    room_destroy_delay_time: i32,
    room_attributes: Value,
}

/// `GET /v1/rooms/{roomID}/members`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MemberPage {
    member_list: Vec<UserInfo>,
    next_flag: String,
}

/// Percent-decodes and validates a roomID path segment.
fn room_id(segment: &str) -> Result<RoomId, ApiError> {
    let decoded = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| {
            ApiError::BadRequest("roomID: not valid UTF-8 after percent-decoding".into())
        })?;
    RoomId::parse(decoded.into_owned()).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Authenticates and checks that the reader may see this room.
async fn authorize(
    ctx: &HttpContext,
    room_id: &RoomId,
    authorization: Option<&str>,
) -> Result<(), ApiError> {
    match ctx.auth.reader(authorization)? {
        Reader::Admin | Reader::Anyone => Ok(()),
        Reader::User(user) if ctx.store.is_member(room_id, &user).await? => Ok(()),
        Reader::User(_) => Err(ApiError::NotAMember(room_id.clone())),
    }
}

pub(crate) async fn room_messages(
    ctx: &HttpContext,
    room: &str,
    query: &str,
    auth: Option<&str>,
) -> Result<MessagePage, ApiError> {
    let room_id = room_id(room)?;
    let query = Query::parse(query, &["beforeSeq", "afterSeq", "limit", "since", "until"])?;
    let cursor = HistoryCursor::from_bounds(query.seq("beforeSeq")?, query.seq("afterSeq")?)
        .ok_or_else(|| {
            ApiError::BadRequest("beforeSeq, afterSeq: give at most one of them".into())
        })?;
    let limit = query.count("limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    let range = TimeRange {
        since: query.time("since")?,
        until: query.time("until")?,
    };
    authorize(ctx, &room_id, auth).await?;
    if ctx.store.last_seq(&room_id).await?.is_none() {
        return Err(ApiError::RoomNotFound(room_id));
    }
    let (messages, has_more) = ctx
        .store
        .message_page(&room_id, cursor, limit, range)
        .await?;
    let backwards = cursor.is_backwards();
    let next = |seq: Option<i64>, forward: bool| seq.filter(|_| has_more && forward);
    Ok(MessagePage {
        next_before_seq: next(messages.first().map(|m| m.seq), backwards),
        next_after_seq: next(messages.last().map(|m| m.seq), !backwards),
        room_id,
        messages,
        has_more,
    })
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) async fn room_info(
    ctx: &HttpContext,
    room: &str,
    auth: Option<&str>,
) -> Result<RoomBody, ApiError> {
    let room_id = room_id(room)?;
    authorize(ctx, &room_id, auth).await?;
    let details = ctx
        .store
        .room_details(&room_id)
        .await?
        .ok_or_else(|| ApiError::RoomNotFound(room_id.clone()))?;
    Ok(RoomBody {
        room_info: RoomInfo {
            room_id,
            room_name: details.room_name,
        },
        member_count: details.member_count,
        last_seq: details.last_seq,
        created_at: rfc3339(details.created_at),
        empty_since: details.empty_since.map(rfc3339),
        room_destroy_delay_time: details.destroy_delay_secs,
        room_attributes: details.attributes,
    })
}

pub(crate) async fn room_members(
    ctx: &HttpContext,
    room: &str,
    query: &str,
    auth: Option<&str>,
) -> Result<MemberPage, ApiError> {
    let room_id = room_id(room)?;
    let query = Query::parse(query, &["nextFlag", "count"])?;
    let count = query.count("count", MAX_PAGE, MAX_PAGE)?;
    authorize(ctx, &room_id, auth).await?;
    if ctx.store.room_details(&room_id).await?.is_none() {
        return Err(ApiError::RoomNotFound(room_id));
    }
    let (member_list, next_flag) = ctx
        .store
        .member_page(&room_id, query.get("nextFlag"), count)
        .await?;
    Ok(MemberPage {
        member_list,
        next_flag,
    })
}
