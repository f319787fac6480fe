//! A room's life in the database: created (with its seq stream, which
//! outlives it), read, and destroyed once empty past its delay.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;

use super::{Store, StoreError};
use crate::domain::{RoomId, RoomName, UserId};
use crate::limits::JoinLimits;

/// What the creator of a room decides, stored with the room.
#[derive(Debug, Clone)]
pub(crate) struct NewRoom<'a> {
    pub(crate) room_id: &'a RoomId,
    pub(crate) room_name: &'a RoomName,
    pub(crate) destroy_delay_secs: i32,
    pub(crate) attributes: Value,
    /// Whose request creates it; their live rooms are counted.
    pub(crate) created_by: &'a UserId,
}

/// Why a room could not be created.
#[derive(Debug)]
pub(super) enum Refused {
    /// It exists already.
    Exists,
    /// The server holds `--max-rooms` rooms.
    RoomLimit,
    /// The creator has `--max-created-rooms-per-user` live rooms.
    CreatorLimit,
}

/// `GET /v1/rooms/{roomID}`.
#[derive(Debug, Clone)]
pub(crate) struct RoomDetails {
    pub(crate) room_name: RoomName,
    pub(crate) destroy_delay_secs: i32,
    pub(crate) attributes: Value,
    pub(crate) member_count: i64,
    pub(crate) last_seq: i64,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) empty_since: Option<DateTime<Utc>>,
}

/// Creates the room (and its stream, unless an earlier life left one) in
/// the caller's transaction, its life starting after the stream's last seq.
/// The counts are read after the insert, so concurrent creations cannot all
/// slip under a limit.
pub(super) async fn create_in(
    tx: &mut PgConnection,
    room: &NewRoom<'_>,
    limits: JoinLimits,
) -> Result<Result<(), Refused>, StoreError> {
    sqlx::query!(
        "insert into room_streams (room_id) values ($1) on conflict do nothing",
        room.room_id.as_str()
    )
    .execute(&mut *tx)
    .await?;
    let created = sqlx::query!(
        "insert into rooms (room_id, room_name, destroy_delay_secs, attributes, created_by, first_seq)
         select $1, $2, $3, $4, $5, s.last_seq + 1 from room_streams s where s.room_id = $1
         on conflict do nothing",
        room.room_id.as_str(),
        room.room_name.as_str(),
        room.destroy_delay_secs,
        room.attributes,
        room.created_by.as_str(),
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !created {
        return Ok(Err(Refused::Exists));
    }
    // Counting under READ COMMITTED sees only committed rooms: creations
    // take turns here, so each counts the ones before it.
    sqlx::query!(
        r#"select true as "locked!" from (select pg_advisory_xact_lock($1)) l"#,
        CREATION_LOCK
    )
    .fetch_one(&mut *tx)
    .await?;
    forget_earlier_client_ids(tx, room.room_id).await?;
    let counts = sqlx::query!(
        r#"select (select count(*) from (select 1 from rooms limit $1) live) as "live!",
                  (select count(*) from (select 1 from rooms where created_by = $2 limit $3) own)
                      as "created!""#,
        i64::from(limits.max_rooms) + 1,
        room.created_by.as_str(),
        i64::from(limits.max_created_rooms_per_user) + 1,
    )
    .fetch_one(&mut *tx)
    .await?;
    if counts.live > i64::from(limits.max_rooms) {
        return Ok(Err(Refused::RoomLimit));
    }
    if counts.created > i64::from(limits.max_created_rooms_per_user) {
        return Ok(Err(Refused::CreatorLimit));
    }
    Ok(Ok(()))
}

/// The advisory lock room creations take turns on ("roomd" in ASCII).
const CREATION_LOCK: i64 = 0x72_6f6f_6d64;

/// A clientMessageID deduplicates within one life of a room: a new life
/// must store a message whose id was used in an earlier one (a client may
/// number its messages per room). The earlier life's ids are dropped; its
/// messages stay. Found through the partial unique index on the ids.
async fn forget_earlier_client_ids(
    tx: &mut PgConnection,
    room_id: &RoomId,
) -> Result<(), StoreError> {
    sqlx::query!(
        "update messages set client_message_id = null
          where room_id = $1 and client_message_id is not null",
        room_id.as_str()
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Starts the destruction countdown of those `rooms` that have no member
/// left, as of now; rooms already counting down keep their deadline.
pub(super) async fn mark_emptied(
    tx: &mut PgConnection,
    rooms: &[String],
) -> Result<(), StoreError> {
    sqlx::query!(
        "update rooms r
            set empty_since = now(),
                destroy_at = now() + make_interval(secs => r.destroy_delay_secs)
          where r.room_id = any($1)
            and r.empty_since is null
            and not exists (select 1 from members m where m.room_id = r.room_id)",
        rooms
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Stored names were validated on the way in; this only guards a hand-edited row.
pub(super) fn stored_name(name: String) -> RoomName {
    RoomName::parse(name).unwrap_or_else(|_| RoomName::parse("").expect("the empty name is valid"))
}

impl Store {
    /// The newest seq of a room's stream, `None` if no room ever had this id.
    pub(crate) async fn last_seq(&self, room_id: &RoomId) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar!(
            "select last_seq from room_streams where room_id = $1",
            room_id.as_str()
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(crate) async fn room_details(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<RoomDetails>, StoreError> {
        let row = sqlx::query!(
            r#"select r.room_name, r.destroy_delay_secs, r.attributes, r.created_at, r.empty_since,
                      s.last_seq,
                      (select count(*) from members m where m.room_id = r.room_id) as "member_count!"
               from rooms r
               join room_streams s on s.room_id = r.room_id
               where r.room_id = $1"#,
            room_id.as_str()
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| RoomDetails {
            room_name: stored_name(r.room_name),
            destroy_delay_secs: r.destroy_delay_secs,
            attributes: r.attributes,
            member_count: r.member_count,
            last_seq: r.last_seq,
            created_at: r.created_at,
            empty_since: r.empty_since,
        }))
    }

    /// Destroys up to `limit` rooms whose destruction time has passed, and
    /// returns them with the time they became empty.
    ///
    /// Safe with several sweepers on one database: `skip locked` hands each
    /// due room to exactly one of them, and a join in progress holds a share
    /// lock on its room, so the room is skipped now and, once the join has
    /// committed and cleared `destroy_at`, no longer due.
    pub(crate) async fn destroy_due_rooms(
        &self,
        limit: i64,
    ) -> Result<Vec<(RoomId, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query!(
            r#"delete from rooms
                where room_id in (
                    select r.room_id from rooms r
                     where r.destroy_at <= now()
                       and not exists (select 1 from members m where m.room_id = r.room_id)
                     order by r.destroy_at
                     limit $1
                     for update skip locked)
                returning room_id, coalesce(empty_since, now()) as "empty_since!""#,
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| Some((RoomId::parse(r.room_id).ok()?, r.empty_since)))
            .collect())
    }
}
