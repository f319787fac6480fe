//! Room membership: one row per (room, user), however many connections.

use super::{Store, StoreError};
use crate::domain::{RoomId, UserId, UserInfo, UserName};

impl Store {
    /// Removes the user from the room. Returns whether they were a member.
    /// When the room is left empty its `empty_since` is set, in the same
    /// transaction, so the destruction countdown cannot be lost.
    pub async fn leave_room(&self, room_id: &RoomId, user_id: &UserId) -> Result<bool, StoreError> {
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

    /// Whether the user is a member of the room right now.
    pub async fn is_member(&self, room_id: &RoomId, user_id: &UserId) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar!(
            r#"select exists (select 1 from members where room_id = $1 and user_id = $2) as "member!""#,
            room_id.as_str(),
            user_id.as_str()
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// One page of members ordered by user id, starting after `after`.
    /// Returns the page and the `nextFlag` that continues it (`""` at the end).
    pub async fn member_page(
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

    pub async fn member_count(&self, room_id: &RoomId) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar!(
            r#"select count(*) as "count!" from members where room_id = $1"#,
            room_id.as_str()
        )
        .fetch_one(&self.pool)
        .await?)
    }
}
