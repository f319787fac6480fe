//! Room membership: one row per (room, user), however many connections.
//! Joining (with the count limits, and creating the room first when asked)
//! and leaving both decide here, in one transaction each.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::lifecycle::{NewRoom, Refused, create_in, stored_name};
use super::{Store, StoreError};
use crate::domain::{NodeId, RoomId, RoomName, UserId, UserInfo, UserName};
use crate::limits::JoinLimits;

/// What a join does about the room's existence.
#[derive(Debug, Clone)]
pub(crate) enum Entry<'a> {
    /// The room must exist (`joinRoom`).
    Join,
    /// The room is created unless it exists (`enterRoom`).
    CreateOrJoin(NewRoom<'a>),
    /// The room must not exist yet (`createRoom`).
    Create(NewRoom<'a>),
}

/// The outcome of joining: the room as stored, where its stream stands,
/// and whether the user became a member just now (false when they already
/// were).
#[derive(Debug, Clone)]
pub(crate) struct Joined {
    pub(crate) room_name: RoomName,
    pub(crate) last_seq: i64,
    /// The first seq of the room's current life: members see history from here.
    pub(crate) first_seq: i64,
    pub(crate) newly_joined: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum JoinError {
    #[error("room does not exist")]
    NotFound,
    #[error("room already exists")]
    Exists,
    #[error("the server has reached its limit of {0} rooms")]
    RoomLimit(u32),
    #[error("the user is already in {0} rooms, the most allowed")]
    UserRoomLimit(u32),
    #[error("the user has created {0} rooms that still exist, the most allowed")]
    CreatorLimit(u32),
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
    /// Makes `user` a member of the room (idempotent), creating the room
    /// first when `entry` says so, all in one transaction.
    pub(crate) async fn enter_room(
        &self,
        room_id: &RoomId,
        entry: Entry<'_>,
        user: &UserInfo,
        node: &NodeId,
        limits: JoinLimits,
    ) -> Result<Joined, JoinError> {
        let mut tx = self.pool.begin().await?;
        let (room, must_be_new) = match &entry {
            Entry::Join => (None, false),
            Entry::CreateOrJoin(room) => (Some(room), false),
            Entry::Create(room) => (Some(room), true),
        };
        if let Some(room) = room {
            match create_in(&mut tx, room, limits).await? {
                Ok(()) => {}
                Err(Refused::Exists) if !must_be_new => {}
                Err(Refused::Exists) => return Err(JoinError::Exists),
                Err(Refused::RoomLimit) => return Err(JoinError::RoomLimit(limits.max_rooms)),
                Err(Refused::CreatorLimit) => {
                    return Err(JoinError::CreatorLimit(limits.max_created_rooms_per_user));
                }
            }
        }
        let joined = join_in(&mut tx, room_id, user, node, limits).await?;
        tx.commit().await?;
        Ok(joined)
    }

    /// Removes the user from the room. Returns whether they were a member.
    /// When the room is left empty its `empty_since` is set, in the same
    /// transaction, so the destruction countdown cannot be lost.
    pub(crate) async fn leave_room(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Serializes leaves and joins of one room so "am I the last one" is exact.
        let room = sqlx::query!(
            "select room_id from rooms where room_id = $1 for no key update",
            room_id.as_str()
        )
        .fetch_optional(&mut *tx)
        .await?;
        if room.is_none() {
            return Ok(false);
        }
        let left = sqlx::query!(
            "delete from members where room_id = $1 and user_id = $2",
            room_id.as_str(),
            user_id.as_str()
        )
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if left {
            sqlx::query!(
                "update rooms
                    set empty_since = now(),
                        destroy_at = now() + make_interval(secs => destroy_delay_secs)
                  where room_id = $1
                    and not exists (select 1 from members where room_id = $1)",
                room_id.as_str()
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(left)
    }

    /// Where the user's view of the room's history starts (the first seq
    /// of its current life), or `None` when they are not a member.
    pub(crate) async fn member_floor(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar!(
            "select r.first_seq from rooms r
               join members m on m.room_id = r.room_id
              where r.room_id = $1 and m.user_id = $2",
            room_id.as_str(),
            user_id.as_str()
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// One page of members ordered by user id, starting after `after`.
    /// Returns the page and the `nextFlag` that continues it (`""` at the end).
    pub(crate) async fn member_page(
        &self,
        room_id: &RoomId,
        after: Option<&str>,
        count: u32,
    ) -> Result<(Vec<UserInfo>, String), StoreError> {
        let rows = sqlx::query!(
            "select user_id, user_name from members
             where room_id = $1 and user_id > $2
             order by user_id
             limit $3",
            room_id.as_str(),
            after.unwrap_or(""),
            i64::from(count) + 1
        )
        .fetch_all(&self.pool)
        .await?;
        let has_more = rows.len() > count as usize;
        let members: Vec<UserInfo> = rows
            .into_iter()
            .take(count as usize)
            .filter_map(|r| {
                Some(UserInfo {
                    user_id: UserId::parse(r.user_id).ok()?,
                    user_name: UserName::parse(r.user_name).ok()?,
                })
            })
            .collect();
        let next_flag = match (has_more, members.last()) {
            (true, Some(last)) => last.user_id.to_string(),
            _ => String::new(),
        };
        Ok((members, next_flag))
    }

    pub(crate) async fn member_count(&self, room_id: &RoomId) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar!(
            r#"select count(*) as "count!" from members where room_id = $1"#,
            room_id.as_str()
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Removes the memberships this node left behind: those not claimed
    /// again since `before` (its start-up). Nobody was connected to the node
    /// when it started, so any membership a user did not come back to claim
    /// is stale. Rooms they leave empty become empty as of now. Returns who
    /// left which room.
    pub(crate) async fn clear_stale_members(
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
        let gone = gone
            .into_iter()
            .map(|m| (m.room_id, m.user_id, m.user_name));
        finish_removal(tx, gone.collect()).await
    }
}

/// Ends a sweep that removed these `(room, user, name)` memberships: rooms
/// left empty start their countdown, in the same transaction. Returns who
/// left which room (a hand-edited row that does not parse is skipped).
pub(super) async fn finish_removal(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    gone: Vec<(String, String, String)>,
) -> Result<Vec<(RoomId, UserInfo)>, StoreError> {
    let rooms: Vec<String> = gone.iter().map(|(room, _, _)| room.clone()).collect();
    super::lifecycle::mark_emptied(&mut tx, &rooms).await?;
    tx.commit().await?;
    Ok(gone
        .into_iter()
        .filter_map(|(room, user, name)| {
            let user = UserInfo {
                user_id: UserId::parse(user).ok()?,
                user_name: UserName::parse(name).ok()?,
            };
            Some((RoomId::parse(room).ok()?, user))
        })
        .collect())
}

/// The room as a join sees it, share-locked until the join commits so it
/// cannot be destroyed under it.
struct RoomRow {
    room_name: String,
    empty_since: Option<DateTime<Utc>>,
    first_seq: i64,
    last_seq: i64,
}

async fn join_in(
    tx: &mut PgConnection,
    room_id: &RoomId,
    user: &UserInfo,
    node: &NodeId,
    limits: JoinLimits,
) -> Result<Joined, JoinError> {
    let room = sqlx::query_as!(
        RoomRow,
        "select r.room_name, r.empty_since, r.first_seq, s.last_seq
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
        check_counts(tx, room_id, &user.user_id, limits).await?;
    }
    let newly_joined = claim(tx, room_id, user, node).await?;
    if room.empty_since.is_some() {
        sqlx::query!(
            "update rooms set empty_since = null, destroy_at = null where room_id = $1",
            room_id.as_str()
        )
        .execute(&mut *tx)
        .await?;
    }
    Ok(Joined {
        room_name: stored_name(room.room_name),
        last_seq: room.last_seq,
        first_seq: room.first_seq,
        newly_joined,
    })
}

/// The limits a new member must fit: rooms per user, members per room.
async fn check_counts(
    tx: &mut PgConnection,
    room_id: &RoomId,
    user_id: &UserId,
    limits: JoinLimits,
) -> Result<(), JoinError> {
    let rooms_of_user = sqlx::query_scalar!(
        r#"select count(*) as "count!" from members where user_id = $1"#,
        user_id.as_str()
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
    Ok(())
}

/// Inserts the membership, or claims it again (for this node, now) on a
/// re-join; `xmax = 0` tells a fresh row from an updated one.
async fn claim(
    tx: &mut PgConnection,
    room_id: &RoomId,
    user: &UserInfo,
    node: &NodeId,
) -> Result<bool, JoinError> {
    Ok(sqlx::query_scalar!(
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
    .await?)
}
