//! Stored room messages and the per-room seq stream they advance.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, is_unique_violation};
use crate::domain::{ClientMessageId, MessageType, Priority, RoomId, RoomMessage, UserId};
use crate::protocol::HistoryCursor;

/// A message about to be stored; the store assigns id, seq and timestamp.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub room_id: &'a RoomId,
    pub sender: &'a UserId,
    pub kind: MessageType,
    pub body: &'a str,
    pub extended_data: &'a str,
    pub priority: Priority,
    pub client_message_id: Option<&'a ClientMessageId>,
}

/// The result of an append: stored now, or found stored by an earlier send
/// with the same `clientMessageID`.
#[derive(Debug, Clone)]
pub enum Appended {
    Stored(RoomMessage),
    Duplicate(RoomMessage),
}

/// Column set shared by every message query.
struct MessageRow {
    id: i64,
    seq: i64,
    room_id: String,
    sender_user_id: String,
    kind: String,
    body: String,
    extended_data: String,
    priority: String,
    created_at: DateTime<Utc>,
}

impl MessageRow {
    /// Rows were validated on the way in, so parsing back cannot fail for
    /// data roomd wrote; a hand-inserted bad row is skipped, not a crash.
    fn into_message(self) -> Option<RoomMessage> {
        Some(RoomMessage {
            message_id: self.id,
            seq: self.seq,
            room_id: RoomId::parse(self.room_id).ok()?,
            sender_user_id: UserId::parse(self.sender_user_id).ok()?,
            kind: MessageType::from_stored(&self.kind),
            message: self.body,
            extended_data: self.extended_data,
            priority: Priority::from_stored(&self.priority),
            timestamp: self.created_at.timestamp_millis(),
        })
    }
}

/// Optional time window of a REST history query: `since <= created_at < until`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeRange {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl Store {
    /// Stores a message with the room's next seq, in one transaction; the
    /// caller acknowledges and fans out only after this returns.
    pub async fn append_message(&self, m: NewMessage<'_>) -> Result<Appended, StoreError> {
        if let Some(cmid) = m.client_message_id
            && let Some(original) = self.find_by_client_id(m.room_id, m.sender, cmid).await?
        {
            return Ok(Appended::Duplicate(original));
        }
        let mut tx = self.pool.begin().await?;
        // The row lock on the stream orders concurrent senders to one room;
        // other rooms' streams are untouched, so rooms never wait on each other.
        let seq = sqlx::query_scalar!(
            "update room_streams set last_seq = last_seq + 1 where room_id = $1 returning last_seq",
            m.room_id.as_str()
        )
        .fetch_one(&mut *tx)
        .await?;
        let inserted = sqlx::query!(
            "insert into messages
                 (room_id, seq, sender_user_id, kind, body, extended_data, priority, client_message_id)
             values ($1, $2, $3, $4, $5, $6, $7, $8)
             returning id, created_at",
            m.room_id.as_str(),
            seq,
            m.sender.as_str(),
            m.kind.as_str(),
            m.body,
            m.extended_data,
            m.priority.as_str(),
            m.client_message_id.map(ClientMessageId::as_str),
        )
        .fetch_one(&mut *tx)
        .await;
        let row = match inserted {
            Ok(row) => row,
            Err(e) if is_unique_violation(&e, "messages_client_message_id") => {
                // A concurrent resend won the race; its message is the one.
                drop(tx);
                let cmid = m.client_message_id.expect("only set ids can collide");
                let original = self.find_by_client_id(m.room_id, m.sender, cmid).await?;
                return original
                    .map(Appended::Duplicate)
                    .ok_or(StoreError::Fault(e));
            }
            Err(e) => return Err(e.into()),
        };
        tx.commit().await?;
        Ok(Appended::Stored(RoomMessage {
            message_id: row.id,
            seq,
            room_id: m.room_id.clone(),
            sender_user_id: m.sender.clone(),
            kind: m.kind,
            message: m.body.to_owned(),
            extended_data: m.extended_data.to_owned(),
            priority: m.priority,
            timestamp: row.created_at.timestamp_millis(),
        }))
    }

    async fn find_by_client_id(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        cmid: &ClientMessageId,
    ) -> Result<Option<RoomMessage>, StoreError> {
        let row = sqlx::query_as!(
            MessageRow,
            "select id, seq, room_id, sender_user_id, kind, body, extended_data, priority, created_at
             from messages
             where room_id = $1 and sender_user_id = $2 and client_message_id = $3",
            room_id.as_str(),
            sender.as_str(),
            cmid.as_str()
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(MessageRow::into_message))
    }

    /// One page of history in ascending seq, and whether more lie beyond it
    /// in the direction of the cursor.
    pub async fn message_page(
        &self,
        room_id: &RoomId,
        cursor: HistoryCursor,
        limit: u32,
        range: TimeRange,
    ) -> Result<(Vec<RoomMessage>, bool), StoreError> {
        let fetch = i64::from(limit) + 1;
        let mut rows = match cursor {
            HistoryCursor::Latest | HistoryCursor::Before(_) => {
                let before = match cursor {
                    HistoryCursor::Before(seq) => seq,
                    _ => i64::MAX,
                };
                let mut rows = sqlx::query_as!(
                    MessageRow,
                    "select id, seq, room_id, sender_user_id, kind, body, extended_data, priority, created_at
                     from messages
                     where room_id = $1 and seq < $2
                       and ($3::timestamptz is null or created_at >= $3)
                       and ($4::timestamptz is null or created_at < $4)
                     order by seq desc
                     limit $5",
                    room_id.as_str(),
                    before,
                    range.since,
                    range.until,
                    fetch
                )
                .fetch_all(&self.pool)
                .await?;
                let has_more = rows.len() as i64 == fetch;
                rows.truncate(limit as usize);
                rows.reverse();
                return Ok((
                    rows.into_iter().filter_map(MessageRow::into_message).collect(),
                    has_more,
                ));
            }
            HistoryCursor::After(after) => sqlx::query_as!(
                MessageRow,
                "select id, seq, room_id, sender_user_id, kind, body, extended_data, priority, created_at
                 from messages
                 where room_id = $1 and seq > $2
                   and ($3::timestamptz is null or created_at >= $3)
                   and ($4::timestamptz is null or created_at < $4)
                 order by seq
                 limit $5",
                room_id.as_str(),
                after,
                range.since,
                range.until,
                fetch
            )
            .fetch_all(&self.pool)
            .await?,
        };
        let has_more = rows.len() as i64 == fetch;
        rows.truncate(limit as usize);
        Ok((
            rows.into_iter()
                .filter_map(MessageRow::into_message)
                .collect(),
            has_more,
        ))
    }

    /// History retention: deletes messages stored before `cutoff`, room by
    /// room through the `(room_id, created_at)` index, at most `batch` rows
    /// per statement so no transaction holds many locks or blocks senders
    /// for long. Returns how many messages were deleted.
    pub async fn delete_messages_before(
        &self,
        cutoff: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        let mut after = String::new();
        loop {
            let rooms = sqlx::query_scalar!(
                "select room_id from room_streams where room_id > $1 order by room_id limit 500",
                after
            )
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = rooms.last() else { break };
            after = last.clone();
            for room in &rooms {
                loop {
                    let n = sqlx::query!(
                        "delete from messages
                          where id in (select id from messages
                                        where room_id = $1 and created_at < $2
                                        limit $3)",
                        room,
                        cutoff,
                        batch
                    )
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                    deleted += n;
                    if n < batch as u64 {
                        break;
                    }
                }
            }
        }
        Ok(deleted)
    }
}
