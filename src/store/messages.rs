//! Stored room messages and the per-room seq stream they advance.

use chrono::{DateTime, Utc};

use std::collections::HashMap;

use super::{Store, StoreError};
use crate::domain::{ClientMessageId, MessageType, Priority, RoomId, RoomMessage, UserId};
use crate::protocol::HistoryCursor;

/// A message about to be stored; the store assigns id, seq and timestamp.
#[derive(Debug, Clone)]
pub struct Pending {
    pub room_id: RoomId,
    pub sender: UserId,
    pub kind: MessageType,
    pub body: String,
    pub extended_data: String,
    pub priority: Priority,
    pub client_message_id: Option<ClientMessageId>,
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

/// A message's idempotency key, when it has one.
fn key_of(m: &Pending) -> Option<(String, String, String)> {
    m.client_message_id
        .as_ref()
        .map(|c| (m.room_id.to_string(), m.sender.to_string(), c.to_string()))
}

/// Optional time window of a REST history query: `since <= created_at < until`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeRange {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl Store {
    /// Stores a batch of messages in one transaction: each room's seq
    /// stream advances once by the number of its new messages, and they get
    /// that contiguous range in batch order. A message whose
    /// `clientMessageID` is already stored (or earlier in the batch) is not
    /// stored again; its outcome is the original. Outcomes are in batch order.
    pub async fn append_batch(&self, batch: &[Pending]) -> Result<Vec<Appended>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut outcomes: Vec<Option<Appended>> = vec![None; batch.len()];

        // Resends of messages stored earlier.
        let keyed: Vec<&Pending> = batch
            .iter()
            .filter(|m| m.client_message_id.is_some())
            .collect();
        if !keyed.is_empty() {
            let rooms: Vec<String> = keyed.iter().map(|m| m.room_id.to_string()).collect();
            let senders: Vec<String> = keyed.iter().map(|m| m.sender.to_string()).collect();
            let cmids: Vec<String> = keyed
                .iter()
                .map(|m| {
                    m.client_message_id
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                })
                .collect();
            let stored = sqlx::query!(
                r#"select m.id, m.seq, m.room_id, m.sender_user_id, m.kind, m.body, m.extended_data,
                          m.priority, m.created_at, m.client_message_id as "client_message_id!"
                   from messages m
                   join unnest($1::text[], $2::text[], $3::text[]) as k(room_id, sender, cmid)
                     on m.room_id = k.room_id and m.sender_user_id = k.sender
                    and m.client_message_id = k.cmid"#,
                &rooms,
                &senders,
                &cmids
            )
            .fetch_all(&mut *tx)
            .await?;
            for row in stored {
                let key = (
                    row.room_id.clone(),
                    row.sender_user_id.clone(),
                    row.client_message_id.clone(),
                );
                let original = MessageRow {
                    id: row.id,
                    seq: row.seq,
                    room_id: row.room_id,
                    sender_user_id: row.sender_user_id,
                    kind: row.kind,
                    body: row.body,
                    extended_data: row.extended_data,
                    priority: row.priority,
                    created_at: row.created_at,
                }
                .into_message();
                for (i, m) in batch.iter().enumerate() {
                    if key_of(m).as_ref() == Some(&key) {
                        outcomes[i] = original.clone().map(Appended::Duplicate);
                    }
                }
            }
        }
        // Within the batch, the first of several sends with one id is stored.
        let mut first_of: HashMap<(String, String, String), usize> = HashMap::new();
        let mut later: Vec<(usize, usize)> = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            if outcomes[i].is_some() {
                continue;
            }
            if let Some(key) = key_of(m) {
                match first_of.get(&key) {
                    Some(&first) => later.push((i, first)),
                    None => {
                        first_of.insert(key, i);
                    }
                }
            }
        }
        let to_store: Vec<usize> = (0..batch.len())
            .filter(|i| outcomes[*i].is_none() && !later.iter().any(|(l, _)| l == i))
            .collect();

        if !to_store.is_empty() {
            // Advance each room's stream once; the row lock orders batches per room.
            let mut counts: Vec<(String, i64)> = Vec::new();
            for &i in &to_store {
                let room = batch[i].room_id.to_string();
                match counts.iter_mut().find(|(r, _)| *r == room) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((room, 1)),
                }
            }
            let (rooms, ns): (Vec<String>, Vec<i64>) = counts.iter().cloned().unzip();
            let advanced = sqlx::query!(
                "update room_streams s set last_seq = s.last_seq + v.n
                 from unnest($1::text[], $2::bigint[]) as v(room_id, n)
                 where s.room_id = v.room_id
                 returning s.room_id, s.last_seq",
                &rooms,
                &ns
            )
            .fetch_all(&mut *tx)
            .await?;
            let mut next_seq: HashMap<String, i64> = HashMap::new();
            for row in advanced {
                let n = counts
                    .iter()
                    .find(|(r, _)| *r == row.room_id)
                    .map_or(0, |(_, n)| *n);
                next_seq.insert(row.room_id, row.last_seq - n + 1);
            }
            let mut seqs = Vec::with_capacity(to_store.len());
            for &i in &to_store {
                let next = next_seq
                    .get_mut(batch[i].room_id.as_str())
                    .ok_or_else(|| StoreError::Fault(sqlx::Error::RowNotFound))?;
                seqs.push(*next);
                *next += 1;
            }
            let column = |f: &dyn Fn(&Pending) -> String| -> Vec<String> {
                to_store.iter().map(|&i| f(&batch[i])).collect()
            };
            let rooms = column(&|m| m.room_id.to_string());
            let senders = column(&|m| m.sender.to_string());
            let kinds = column(&|m| m.kind.as_str().to_owned());
            let bodies = column(&|m| m.body.clone());
            let extended = column(&|m| m.extended_data.clone());
            let priorities = column(&|m| m.priority.as_str().to_owned());
            let cmids: Vec<Option<String>> = to_store
                .iter()
                .map(|&i| batch[i].client_message_id.as_ref().map(ToString::to_string))
                .collect();
            let inserted = sqlx::query!(
                r#"insert into messages
                       (room_id, seq, sender_user_id, kind, body, extended_data, priority, client_message_id)
                   select * from unnest($1::text[], $2::bigint[], $3::text[], $4::text[],
                                        $5::text[], $6::text[], $7::text[], $8::text[])
                   returning id, room_id, seq, created_at"#,
                &rooms,
                &seqs,
                &senders,
                &kinds,
                &bodies,
                &extended,
                &priorities,
                &cmids as &[Option<String>],
            )
            .fetch_all(&mut *tx)
            .await?;
            let inserted: HashMap<(String, i64), (i64, DateTime<Utc>)> = inserted
                .into_iter()
                .map(|r| ((r.room_id, r.seq), (r.id, r.created_at)))
                .collect();
            for (&i, seq) in to_store.iter().zip(&seqs) {
                let m = &batch[i];
                let &(id, created_at) = inserted
                    .get(&(m.room_id.to_string(), *seq))
                    .ok_or(StoreError::Fault(sqlx::Error::RowNotFound))?;
                outcomes[i] = Some(Appended::Stored(RoomMessage {
                    message_id: id,
                    seq: *seq,
                    room_id: m.room_id.clone(),
                    sender_user_id: m.sender.clone(),
                    kind: m.kind,
                    message: m.body.clone(),
                    extended_data: m.extended_data.clone(),
                    priority: m.priority,
                    timestamp: created_at.timestamp_millis(),
                }));
            }
        }
        tx.commit().await?;
        for (i, first) in later {
            outcomes[i] = match &outcomes[first] {
                Some(Appended::Stored(m) | Appended::Duplicate(m)) => {
                    Some(Appended::Duplicate(m.clone()))
                }
                None => None,
            };
        }
        outcomes
            .into_iter()
            .map(|o| o.ok_or(StoreError::Fault(sqlx::Error::RowNotFound)))
            .collect()
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
