//! Rooms and their seq streams.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Store, StoreError};
use crate::domain::{NodeId, RoomId, RoomName, UserId, UserInfo, UserName};

/// What the creator of a room decides, stored with the room.
#[derive(Debug, Clone)]
pub struct NewRoom<'a> {
    pub room_id: &'a RoomId,
    pub room_name: &'a RoomName,
    pub destroy_delay_secs: i32,
    pub attributes: Value,
}

/// The outcome of joining: the room as stored, its newest seq, and whether
/// the user became a member just now (false when they already were).
#[derive(Debug, Clone)]
pub struct Joined {
    pub room_name: RoomName,
    pub last_seq: i64,
    pub newly_joined: bool,
}

/// `GET /v1/rooms/{roomID}`.
#[derive(Debug, Clone)]
pub struct RoomDetails {
    pub room_name: RoomName,
    pub destroy_delay_secs: i32,
    pub attributes: Value,
    pub member_count: i64,
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
    pub empty_since: Option<DateTime<Utc>>,
}

/// Count limits checked when a user joins or a room is created.
#[derive(Debug, Clone, Copy)]
pub struct JoinLimits {
    pub max_rooms_per_user: u32,
    pub max_members_per_room: u32,
    pub max_rooms: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("room does not exist")]
    NotFound,
    #[error("room already exists")]
    Exists,
    #[error("the server has reached its limit of {0} rooms")]
    RoomLimit(u32),
    #[error("the user is already in {0} rooms, the most allowed")]
    UserRoomLimit(u32),
    #[error("the room has reached its limit of {0} members")]
    RoomFull(u32),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for JoinError {
    fn from(e: sqlx::Error) -> Self {
        JoinError::Store(e.into())
    }
}

impl Store {
    /// Creates the room and makes `creator` its first member, atomically.
    /// With `must_be_new`, an existing room is an error (`createRoom`);
    /// without, the existing room is joined instead (`enterRoom`) and the
    /// given name and config are ignored.
    pub async fn create_or_join_room(
        &self,
        room: NewRoom<'_>,
        creator: &UserInfo,
        must_be_new: bool,
        node: &NodeId,
        limits: JoinLimits,
    ) -> Result<Joined, JoinError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!(
            "insert into room_streams (room_id) values ($1) on conflict do nothing",
            room.room_id.as_str()
        )
        .execute(&mut *tx)
        .await?;
        let created = sqlx::query!(
            "insert into rooms (room_id, room_name, destroy_delay_secs, attributes)
             values ($1, $2, $3, $4)
             on conflict do nothing",
            room.room_id.as_str(),
            room.room_name.as_str(),
            room.destroy_delay_secs,
            room.attributes,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !created && must_be_new {
            return Err(JoinError::Exists);
        }
        if created {
            // Counted after the insert, so concurrent creations cannot all
            // slip under the limit.
            let live = sqlx::query_scalar!(
                r#"select count(*) as "count!" from (select 1 from rooms limit $1) live"#,
                i64::from(limits.max_rooms) + 1
            )
            .fetch_one(&mut *tx)
            .await?;
            if live > i64::from(limits.max_rooms) {
                return Err(JoinError::RoomLimit(limits.max_rooms));
            }
        }
        let joined = join_in(&mut tx, room.room_id, creator, node, limits).await?;
        tx.commit().await?;
        Ok(joined)
    }

    /// Makes `user` a member of an existing room (idempotent).
    pub async fn join_room(
        &self,
        room_id: &RoomId,
        user: &UserInfo,
        node: &NodeId,
        limits: JoinLimits,
    ) -> Result<Joined, JoinError> {
        let mut tx = self.pool.begin().await?;
        let joined = join_in(&mut tx, room_id, user, node, limits).await?;
        tx.commit().await?;
        Ok(joined)
    }

    /// The newest seq of a room's stream, `None` if no room ever had this id.
    pub async fn last_seq(&self, room_id: &RoomId) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar!(
            "select last_seq from room_streams where room_id = $1",
            room_id.as_str()
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn room_details(&self, room_id: &RoomId) -> Result<Option<RoomDetails>, StoreError> {
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
            room_name: RoomName::parse(r.room_name).unwrap_or_else(|_| unreachable_name()),
            destroy_delay_secs: r.destroy_delay_secs,
            attributes: r.attributes,
            member_count: r.member_count,
            last_seq: r.last_seq,
            created_at: r.created_at,
            empty_since: r.empty_since,
        }))
    }

    /// Removes the memberships this node left behind: those not claimed
    /// again since `before` (its start-up). Nobody was connected to the node
    /// when it started, so any membership a user did not come back to claim
    /// is stale. Rooms they leave empty become empty as of now. Returns who
    /// left which room.
    pub async fn clear_stale_members(
        &self,
        node: &NodeId,
        before: DateTime<Utc>,
    ) -> Result<Vec<(RoomId, UserInfo)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query!(
            "delete from members where node_id = $1 and claimed_at < $2
             returning room_id, user_id, user_name",
            node.as_str(),
            before
        )
        .fetch_all(&mut *tx)
        .await?;
        let rooms: Vec<String> = gone.iter().map(|m| m.room_id.clone()).collect();
        sqlx::query!(
            "update rooms r
                set empty_since = now(),
                    destroy_at = now() + make_interval(secs => r.destroy_delay_secs)
              where r.room_id = any($1)
                and r.empty_since is null
                and not exists (select 1 from members m where m.room_id = r.room_id)",
            &rooms
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(gone
            .into_iter()
            .filter_map(|m| {
                Some((
                    RoomId::parse(m.room_id).ok()?,
                    UserInfo {
                        user_id: UserId::parse(m.user_id).ok()?,
                        user_name: UserName::parse(m.user_name).ok()?,
                    },
                ))
            })
            .collect())
    }

    /// Destroys up to `limit` rooms whose destruction time has passed, and
    /// returns them with the time they became empty.
    ///
    /// Safe with several sweepers on one database: `skip locked` hands each
    /// due room to exactly one of them, and a join in progress holds a share
    /// lock on its room, so the room is skipped now and, once the join has
    /// committed and cleared `destroy_at`, no longer due.
    pub async fn destroy_due_rooms(
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

/// Stored names were validated on the way in; this only guards a hand-edited row.
fn unreachable_name() -> RoomName {
    RoomName::parse("").expect("the empty name is valid")
}

async fn join_in(
    tx: &mut sqlx::PgConnection,
    room_id: &RoomId,
    user: &UserInfo,
    node: &NodeId,
    limits: JoinLimits,
) -> Result<Joined, JoinError> {
    // FOR SHARE keeps the room from being destroyed until this join commits.
    let room = sqlx::query!(
        "select r.room_name, r.empty_since, s.last_seq
         from rooms r join room_streams s on s.room_id = r.room_id
         where r.room_id = $1
         for share of r",
        room_id.as_str()
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(JoinError::NotFound)?;
    let already = sqlx::query_scalar!(
        r#"select exists (select 1 from members where room_id = $1 and user_id = $2) as "member!""#,
        room_id.as_str(),
        user.user_id.as_str()
    )
    .fetch_one(&mut *tx)
    .await?;
    if !already {
        let rooms_of_user = sqlx::query_scalar!(
            r#"select count(*) as "count!" from members where user_id = $1"#,
            user.user_id.as_str()
        )
        .fetch_one(&mut *tx)
        .await?;
        if rooms_of_user >= i64::from(limits.max_rooms_per_user) {
            return Err(JoinError::UserRoomLimit(limits.max_rooms_per_user));
        }
        // Bounded: never reads more index entries than the limit.
        let members = sqlx::query_scalar!(
            r#"select count(*) as "count!" from (select 1 from members where room_id = $1 limit $2) m"#,
            room_id.as_str(),
            i64::from(limits.max_members_per_room)
        )
        .fetch_one(&mut *tx)
        .await?;
        if members >= i64::from(limits.max_members_per_room) {
            return Err(JoinError::RoomFull(limits.max_members_per_room));
        }
    }
    // A re-join claims the membership again (for this node, now); `xmax = 0`
    // tells a fresh row from an updated one.
    let newly_joined = sqlx::query_scalar!(
        r#"insert into members (room_id, user_id, user_name, node_id) values ($1, $2, $3, $4)
           on conflict (room_id, user_id)
           do update set claimed_at = now(), node_id = excluded.node_id
           returning (xmax = 0) as "inserted!""#,
        room_id.as_str(),
        user.user_id.as_str(),
        user.user_name.as_str(),
        node.as_str(),
    )
    .fetch_one(&mut *tx)
    .await?;
    if room.empty_since.is_some() {
        sqlx::query!(
            "update rooms set empty_since = null, destroy_at = null where room_id = $1",
            room_id.as_str()
        )
        .execute(&mut *tx)
        .await?;
    }
    Ok(Joined {
        room_name: RoomName::parse(room.room_name).unwrap_or_else(|_| unreachable_name()),
        last_seq: room.last_seq,
        newly_joined,
    })
}
