//! REST reads: a room's history, its details and its members. Each handler
//! parses and checks its input, authorizes the reader, and answers with a
//! typed body.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::OwnedSemaphorePermit;

use super::HttpContext;
use super::error::ApiError;
use super::query::Query;
use crate::auth::Reader;
use crate::domain::{HistoryCursor, RoomId, RoomInfo, TimeRange, UserInfo};
use crate::limits::{Limited, RestClient};
use crate::metrics::Refusal;
use crate::protocol::{self, MAX_PAGE};
use crate::store::PageRequest;

/// Largest REST history page.
const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 50;

/// How long a history read waits for a free slot before it gets 429.
const HISTORY_SLOT_WAIT: Duration = Duration::from_secs(1);

/// `GET /v1/rooms/{roomID}/messages`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessagePage {
    #[serde(rename = "roomID")]
    room_id: RoomId,
    /// Serialized already, to keep the page within its byte budget.
    messages: Vec<Box<RawValue>>,
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

/// Who is asking, from the `Authorization` header: also the REST rate
/// limit's key (the admin, a trusted backend, is not limited).
fn identify(ctx: &HttpContext, request: &Request<'_>) -> Result<Reader, ApiError> {
    let reader = ctx.auth.reader(request.authorization);
    let client = match &reader {
        Ok(Reader::Admin) => None,
        Ok(Reader::User(user)) => Some(RestClient::User(user.clone())),
        Ok(Reader::Anyone) | Err(_) => Some(RestClient::Address(request.ip)),
    };
    if let Some(client) = client
        && let Err(limited) = ctx.rates.rest(&client)
    {
        ctx.metrics.refused(Refusal::RestRequests);
        return Err(ApiError::RateLimited(limited));
    }
    Ok(reader?)
}

/// Checks that the reader may see this room; returns the lowest seq they
/// may read: a member sees the room's current life, the admin every life.
async fn authorize(ctx: &HttpContext, room_id: &RoomId, reader: Reader) -> Result<i64, ApiError> {
    match reader {
        Reader::Admin | Reader::Anyone => Ok(0),
        Reader::User(user) => ctx
            .store
            .member_floor(room_id, &user)
            .await?
            .ok_or_else(|| ApiError::NotAMember(room_id.clone())),
    }
}

/// What every REST read has: its raw query and who sent it.
pub(crate) struct Request<'a> {
    pub(crate) query: &'a str,
    pub(crate) authorization: Option<&'a str>,
    pub(crate) ip: IpAddr,
}

pub(crate) async fn room_messages(
    ctx: &HttpContext,
    room: &str,
    request: Request<'_>,
) -> Result<MessagePage, ApiError> {
    let room_id = room_id(room)?;
    let query = Query::parse(
        request.query,
        &["beforeSeq", "afterSeq", "limit", "since", "until"],
    )?;
    let cursor = HistoryCursor::from_bounds(query.seq("beforeSeq")?, query.seq("afterSeq")?)
        .ok_or_else(|| {
            ApiError::BadRequest("beforeSeq, afterSeq: give at most one of them".into())
        })?;
    let (limit, since, until) = (
        query.count("limit", DEFAULT_LIMIT, MAX_LIMIT)?,
        query.time("since")?,
        query.time("until")?,
    );
    let reader = identify(ctx, &request)?;
    let page = PageRequest {
        cursor,
        limit,
        range: TimeRange { since, until },
        floor: authorize(ctx, &room_id, reader).await?,
        max_bytes: ctx.history_page_bytes as i64,
    };
    if ctx.store.last_seq(&room_id).await?.is_none() {
        return Err(ApiError::RoomNotFound(room_id));
    }
    let _slot = history_slot(ctx).await?;
    let (messages, more) = ctx.store.message_page(&room_id, page).await?;
    let backwards = cursor.is_backwards();
    let (messages, cut) = protocol::bounded_page(&messages, ctx.history_page_bytes, backwards);
    Ok(page_body(
        room_id,
        messages,
        more || cut,
        cursor.is_backwards(),
    ))
}

/// One of the few history reads served at once, waited for briefly: each
/// holds up to a page budget of memory.
async fn history_slot(ctx: &HttpContext) -> Result<OwnedSemaphorePermit, ApiError> {
    let slot = ctx.history_slots.clone().acquire_owned();
    match tokio::time::timeout(HISTORY_SLOT_WAIT, slot).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => {
            ctx.metrics.refused(Refusal::HistoryBusy);
            Err(ApiError::RateLimited(Limited {
                retry_after: HISTORY_SLOT_WAIT,
            }))
        }
    }
}

fn page_body(
    room_id: RoomId,
    messages: Vec<Box<RawValue>>,
    has_more: bool,
    backwards: bool,
) -> MessagePage {
    let seq_of = |m: Option<&Box<RawValue>>| m.and_then(|m| seq(m.get()));
    let next = |seq: Option<i64>, forward: bool| seq.filter(|_| has_more && forward);
    MessagePage {
        next_before_seq: next(seq_of(messages.first()), backwards),
        next_after_seq: next(seq_of(messages.last()), !backwards),
        room_id,
        messages,
        has_more,
    }
}

/// The `seq` of a serialized message.
fn seq(json: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: i64,
    }
    serde_json::from_str::<Seq>(json).ok().map(|m| m.seq)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) async fn room_info(
    ctx: &HttpContext,
    room: &str,
    request: Request<'_>,
) -> Result<RoomBody, ApiError> {
    let room_id = room_id(room)?;
    let reader = identify(ctx, &request)?;
    authorize(ctx, &room_id, reader).await?;
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
    request: Request<'_>,
) -> Result<MemberPage, ApiError> {
    let room_id = room_id(room)?;
    let query = Query::parse(request.query, &["nextFlag", "count"])?;
    let count = query.count("count", MAX_PAGE, MAX_PAGE)?;
    let next_flag = query.flag("nextFlag")?;
    let reader = identify(ctx, &request)?;
    authorize(ctx, &room_id, reader).await?;
    if ctx.store.room_details(&room_id).await?.is_none() {
        return Err(ApiError::RoomNotFound(room_id));
    }
    let (member_list, next_flag) = ctx.store.member_page(&room_id, next_flag, count).await?;
    Ok(MemberPage {
        member_list,
        next_flag,
    })
}
