//! Stored room messages and the per-room seq stream they advance.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{Store, StoreError};
use crate::domain::{
    ClientMessageId, HistoryCursor, MessageType, Priority, RoomId, RoomMessage, TimeRange, UserId,
};

/// A message about to be stored; the store assigns id, seq and timestamp.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) room_id: RoomId,
    pub(crate) sender: UserId,
    pub(crate) kind: MessageType,
    pub(crate) body: String,
    pub(crate) extended_data: String,
    pub(crate) priority: Priority,
    pub(crate) client_message_id: Option<ClientMessageId>,
}

impl Pending {
    /// Its idempotency key, borrowed, when it has one.
    fn key(&self) -> Option<Key<'_>> {
        let cmid = self.client_message_id.as_ref()?;
        Some((self.room_id.as_str(), self.sender.as_str(), cmid.as_str()))
    }

    fn stored_as(&self, id: i64, seq: i64, created_at: DateTime<Utc>) -> RoomMessage {
        RoomMessage {
            message_id: id,
            seq,
            room_id: self.room_id.clone(),
            sender_user_id: self.sender.clone(),
            kind: self.kind,
            message: self.body.clone(),
            extended_data: self.extended_data.clone(),
            priority: self.priority,
            timestamp: created_at.timestamp_millis(),
        }
    }
}

/// `(room, sender, clientMessageID)`: what makes two sends the same message.
type Key<'a> = (&'a str, &'a str, &'a str);

/// The result of an append: stored now, or found stored by an earlier send
/// with the same `clientMessageID`.
#[derive(Debug, Clone)]
pub(crate) enum Appended {
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

/// The advisory lock history retention runs under ("retention" in ASCII,
/// cut to 8 bytes).
const RETENTION_LOCK: i64 = 0x7265_7465_6e74_696f;

/// What a history read asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageRequest {
    pub(crate) cursor: HistoryCursor,
    /// Messages at most.
    pub(crate) limit: u32,
    pub(crate) range: TimeRange,
    /// The lowest seq the reader may see (the first of the room's current
    /// life for a member; 0 for the admin).
    pub(crate) floor: i64,
    /// Bytes of message bodies (and extended data) after which the page
    /// stops early.
    pub(crate) max_bytes: i64,
}

/// A row of a budgeted page, with how many rows the page fetched before
/// the budget cut it (so "more" is known either way).
struct BudgetedRow {
    id: i64,
    seq: i64,
    room_id: String,
    sender_user_id: String,
    kind: String,
    body: String,
    extended_data: String,
    priority: String,
    created_at: DateTime<Utc>,
    fetched: i64,
}

impl BudgetedRow {
    fn into_message(self) -> Option<RoomMessage> {
        MessageRow {
            id: self.id,
            seq: self.seq,
            room_id: self.room_id,
            sender_user_id: self.sender_user_id,
            kind: self.kind,
            body: self.body,
            extended_data: self.extended_data,
            priority: self.priority,
            created_at: self.created_at,
        }
        .into_message()
    }
}

/// What becomes of each message of a batch, worked out phase by phase.
struct Plan<'b> {
    batch: &'b [Pending],
    outcomes: Vec<Option<Appended>>,
    /// `(later, first)`: a send repeating an earlier one of the same batch.
    repeats: Vec<(usize, usize)>,
}

impl<'b> Plan<'b> {
    fn new(batch: &'b [Pending]) -> Self {
        Self {
            batch,
            outcomes: vec![None; batch.len()],
            repeats: Vec::new(),
        }
    }

    /// Marks resends of messages stored by earlier batches.
    fn resent(&mut self, originals: Vec<(MessageRow, String)>) {
        let mut by_key: HashMap<Key<'b>, Vec<usize>> = HashMap::new();
        for (i, m) in self.batch.iter().enumerate() {
            if let Some(key) = m.key() {
                by_key.entry(key).or_default().push(i);
            }
        }
        for (row, cmid) in originals {
            let key = (
                row.room_id.as_str(),
                row.sender_user_id.as_str(),
                cmid.as_str(),
            );
            let Some(indices) = by_key.get(&key).cloned() else {
                continue;
            };
            let original = row.into_message().map(Appended::Duplicate);
            for i in indices {
                self.outcomes[i] = original.clone();
            }
        }
    }

    /// The messages to store: everything not resent, and of several sends
    /// with one key in this batch only the first.
    fn split_repeats(&mut self) -> Vec<usize> {
        let mut first_of: HashMap<Key<'b>, usize> = HashMap::new();
        let mut to_store = Vec::with_capacity(self.batch.len());
        for (i, m) in self.batch.iter().enumerate() {
            if self.outcomes[i].is_some() {
                continue;
            }
            match m.key().map(|key| *first_of.entry(key).or_insert(i)) {
                Some(first) if first != i => self.repeats.push((i, first)),
                _ => to_store.push(i),
            }
        }
        to_store
    }

    /// Outcomes in batch order; repeats get what their first send got.
    fn finish(mut self) -> Result<Vec<Appended>, StoreError> {
        for (later, first) in std::mem::take(&mut self.repeats) {
            self.outcomes[later] = match &self.outcomes[first] {
                Some(Appended::Stored(m) | Appended::Duplicate(m)) => {
                    Some(Appended::Duplicate(m.clone()))
                }
                None => None,
            };
        }
        self.outcomes
            .into_iter()
            .map(|o| {
                o.ok_or(StoreError::Invariant(
                    "a message of the batch has no outcome",
                ))
            })
            .collect()
    }
}

impl Store {
    /// Stores a batch of messages in one transaction: each room's seq
    /// stream advances once by the number of its new messages, and they get
    /// that contiguous range in batch order. A message whose
    /// `clientMessageID` is already stored (or earlier in the batch) is not
    /// stored again; its outcome is the original. Outcomes are in batch order.
    pub(crate) async fn append_batch(
        &self,
        batch: &[Pending],
    ) -> Result<Vec<Appended>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut plan = Plan::new(batch);
        plan.resent(stored_originals(&mut tx, batch).await?);
        let to_store = plan.split_repeats();
        if !to_store.is_empty() {
            let seqs = advance_streams(&mut tx, batch, &to_store).await?;
            let stored = insert_messages(&mut tx, batch, &to_store, &seqs).await?;
            for (i, message) in to_store.into_iter().zip(stored) {
                plan.outcomes[i] = Some(Appended::Stored(message));
            }
        }
        tx.commit().await?;
        plan.finish()
    }

    /// One page of history in ascending seq, and whether more lie beyond it
    /// in the direction of the cursor. The page stops early once its bodies
    /// reach `page.max_bytes` (at least one message is always returned), so
    /// one request cannot make the server hold a huge page.
    pub(crate) async fn message_page(
        &self,
        room_id: &RoomId,
        page: PageRequest,
    ) -> Result<(Vec<RoomMessage>, bool), StoreError> {
        let fetch = i64::from(page.limit) + 1;
        let (before, after) = match page.cursor {
            HistoryCursor::Latest => (Some(i64::MAX), None),
            HistoryCursor::Before(seq) => (Some(seq), None),
            HistoryCursor::After(seq) => (None, Some(seq)),
        };
        let mut rows = match (before, after) {
            (Some(before), _) => self.rows_before(room_id, before, &page, fetch).await?,
            (None, after) => {
                self.rows_after(room_id, after.unwrap_or(0), &page, fetch)
                    .await?
            }
        };
        let fetched = rows.first().map_or(0, |r| r.fetched);
        let has_more = fetched == fetch || (rows.len() as i64) < fetched;
        rows.truncate(page.limit as usize);
        if page.cursor.is_backwards() {
            rows.reverse();
        }
        let messages = rows
            .into_iter()
            .filter_map(BudgetedRow::into_message)
            .collect();
        Ok((messages, has_more))
    }

    /// Up to `fetch` messages below `before`, newest first, cut at the budget.
    async fn rows_before(
        &self,
        room_id: &RoomId,
        before: i64,
        page: &PageRequest,
        fetch: i64,
    ) -> Result<Vec<BudgetedRow>, StoreError> {
        Ok(sqlx::query_as!(
            BudgetedRow,
            r#"select id as "id!", seq as "seq!", room_id as "room_id!", sender_user_id as "sender_user_id!",
                      kind as "kind!", body as "body!", extended_data as "extended_data!",
                      priority as "priority!", created_at as "created_at!", fetched as "fetched!"
               from (select *, count(*) over () as fetched,
                            sum(octet_length(body) + octet_length(extended_data)) over (order by seq desc)
                              - (octet_length(body) + octet_length(extended_data)) as bytes_before
                       from (select * from messages
                              where room_id = $1 and seq < $2 and seq >= $3
                                and ($4::timestamptz is null or created_at >= $4)
                                and ($5::timestamptz is null or created_at < $5)
                              order by seq desc
                              limit $6) newest) page
              where bytes_before < $7
              order by seq desc"#,
            room_id.as_str(),
            before,
            page.floor,
            page.range.since,
            page.range.until,
            fetch,
            page.max_bytes,
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Up to `fetch` messages above `after`, oldest first, cut at the budget.
    async fn rows_after(
        &self,
        room_id: &RoomId,
        after: i64,
        page: &PageRequest,
        fetch: i64,
    ) -> Result<Vec<BudgetedRow>, StoreError> {
        Ok(sqlx::query_as!(
            BudgetedRow,
            r#"select id as "id!", seq as "seq!", room_id as "room_id!", sender_user_id as "sender_user_id!",
                      kind as "kind!", body as "body!", extended_data as "extended_data!",
                      priority as "priority!", created_at as "created_at!", fetched as "fetched!"
               from (select *, count(*) over () as fetched,
                            sum(octet_length(body) + octet_length(extended_data)) over (order by seq)
                              - (octet_length(body) + octet_length(extended_data)) as bytes_before
                       from (select * from messages
                              where room_id = $1 and seq > $2 and seq >= $3
                                and ($4::timestamptz is null or created_at >= $4)
                                and ($5::timestamptz is null or created_at < $5)
                              order by seq
                              limit $6) oldest) page
              where bytes_before < $7
              order by seq"#,
            room_id.as_str(),
            after,
            page.floor,
            page.range.since,
            page.range.until,
            fetch,
            page.max_bytes,
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// History retention, once per cluster at a time: under a session
    /// advisory lock, so when several nodes run it at once all but one skip
    /// (`None`). PostgreSQL releases the lock if the connection dies.
    pub(crate) async fn expire_messages(
        &self,
        cutoff: DateTime<Utc>,
        batch: i64,
    ) -> Result<Option<u64>, StoreError> {
        let mut holder = self.pool.acquire().await?;
        let locked = sqlx::query_scalar!(
            r#"select pg_try_advisory_lock($1) as "locked!""#,
            RETENTION_LOCK
        )
        .fetch_one(&mut *holder)
        .await?;
        if !locked {
            return Ok(None);
        }
        let deleted = self.delete_messages_before(cutoff, batch).await;
        let unlocked = sqlx::query_scalar!(
            r#"select pg_advisory_unlock($1) as "unlocked!""#,
            RETENTION_LOCK
        )
        .fetch_one(&mut *holder)
        .await;
        if unlocked.is_err() {
            // Never hand a connection that may still hold the lock back to the pool.
            let _ = holder.close().await;
        }
        deleted.map(Some)
    }

    /// Deletes messages stored before `cutoff`, room by room through the
    /// `(room_id, created_at)` index, at most `batch` rows per statement so
    /// no transaction holds many locks or blocks senders for long. Returns
    /// how many messages were deleted.
    async fn delete_messages_before(
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

/// The stored originals of the batch's keyed messages, with their keys.
async fn stored_originals(
    tx: &mut PgConnection,
    batch: &[Pending],
) -> Result<Vec<(MessageRow, String)>, StoreError> {
    let keys: Vec<Key<'_>> = batch.iter().filter_map(Pending::key).collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: for<'k> fn(&'k Key<'k>) -> &'k str| -> Vec<String> {
        keys.iter().map(|k| f(k).to_owned()).collect()
    };
    let rows = sqlx::query!(
        r#"select m.id, m.seq, m.room_id, m.sender_user_id, m.kind, m.body, m.extended_data,
                  m.priority, m.created_at, m.client_message_id as "client_message_id!"
           from messages m
           join unnest($1::text[], $2::text[], $3::text[]) as k(room_id, sender, cmid)
             on m.room_id = k.room_id and m.sender_user_id = k.sender
            and m.client_message_id = k.cmid"#,
        &column(|k| k.0),
        &column(|k| k.1),
        &column(|k| k.2),
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let row = MessageRow {
                id: r.id,
                seq: r.seq,
                room_id: r.room_id,
                sender_user_id: r.sender_user_id,
                kind: r.kind,
                body: r.body,
                extended_data: r.extended_data,
                priority: r.priority,
                created_at: r.created_at,
            };
            (row, r.client_message_id)
        })
        .collect())
}

/// Advances each room's stream once by its number of new messages (the row
/// lock orders batches per room) and returns the seq of each message to
/// store, in `to_store` order.
async fn advance_streams(
    tx: &mut PgConnection,
    batch: &[Pending],
    to_store: &[usize],
) -> Result<Vec<i64>, StoreError> {
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for &i in to_store {
        *counts.entry(batch[i].room_id.as_str()).or_default() += 1;
    }
    let (rooms, ns): (Vec<String>, Vec<i64>) = counts
        .iter()
        .map(|(room, n)| ((*room).to_owned(), *n))
        .unzip();
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
    let mut next_seq: HashMap<String, i64> = HashMap::with_capacity(advanced.len());
    for row in advanced {
        let n = counts.get(row.room_id.as_str()).copied().unwrap_or(0);
        next_seq.insert(row.room_id, row.last_seq - n + 1);
    }
    to_store
        .iter()
        .map(|&i| {
            let next = next_seq
                .get_mut(batch[i].room_id.as_str())
                .ok_or(StoreError::Invariant("a message's room has no seq stream"))?;
            *next += 1;
            Ok(*next - 1)
        })
        .collect()
}

/// Inserts the messages with their seqs; returns them as stored, in order.
async fn insert_messages(
    tx: &mut PgConnection,
    batch: &[Pending],
    to_store: &[usize],
    seqs: &[i64],
) -> Result<Vec<RoomMessage>, StoreError> {
    let column = |f: fn(&Pending) -> &str| -> Vec<String> {
        to_store.iter().map(|&i| f(&batch[i]).to_owned()).collect()
    };
    let cmids: Vec<Option<String>> = to_store
        .iter()
        .map(|&i| {
            batch[i]
                .client_message_id
                .as_ref()
                .map(|c| c.as_str().to_owned())
        })
        .collect();
    let inserted = sqlx::query!(
        r#"insert into messages
               (room_id, seq, sender_user_id, kind, body, extended_data, priority, client_message_id)
           select * from unnest($1::text[], $2::bigint[], $3::text[], $4::text[],
                                $5::text[], $6::text[], $7::text[], $8::text[])
           returning id, room_id, seq, created_at"#,
        &column(|m| m.room_id.as_str()),
        seqs,
        &column(|m| m.sender.as_str()),
        &column(|m| m.kind.as_str()),
        &column(|m| &m.body),
        &column(|m| &m.extended_data),
        &column(|m| m.priority.as_str()),
        &cmids as &[Option<String>],
    )
    .fetch_all(&mut *tx)
    .await?;
    // Rows come back in no promised order; find each by (room, seq).
    let mut rows: HashMap<String, HashMap<i64, (i64, DateTime<Utc>)>> = HashMap::new();
    for r in inserted {
        rows.entry(r.room_id)
            .or_default()
            .insert(r.seq, (r.id, r.created_at));
    }
    to_store
        .iter()
        .zip(seqs)
        .map(|(&i, &seq)| {
            let m = &batch[i];
            let &(id, created_at) = rows
                .get(m.room_id.as_str())
                .and_then(|room| room.get(&seq))
                .ok_or(StoreError::Invariant(
                    "an inserted message was not returned",
                ))?;
            Ok(m.stored_as(id, seq, created_at))
        })
        .collect()
}
