//! Leaving: by request, by a dropped connection after the reconnect grace,
//! or because a restarted node's members did not come back. And the member
//! queries, which need the caller to have joined on this connection.
//!
//! A user is a member once however many connections they have in the
//! room; they leave with the last one, and only then are the others told.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::hub::RoomGuard;
use super::{Caller, RoomError, Rooms};
use crate::domain::{RoomId, UserInfo};
use crate::outbox::Frame;
use crate::protocol::Event;
use crate::store::StoreError;

impl Rooms {
    /// `leaveRoom` (and `leaveAllRoom`, room by room): the connection
    /// leaves; the user leaves with their last connection.
    pub(crate) async fn leave(&self, caller: &Caller, room_id: &RoomId) -> Result<(), RoomError> {
        let mut room = self.hub.lock(room_id).await;
        if !room.contains(caller.conn) {
            return Err(RoomError::NotInRoom(room_id.clone()));
        }
        // Database first: if it fails, the connection is still in the room.
        let left = !room.user_has_other_connection(&caller.user.user_id, caller.conn)
            && self.store.leave_room(room_id, &caller.user.user_id).await?;
        room.unsubscribe(caller.conn);
        if left {
            announce_left(&mut room, &caller.user);
        }
        Ok(())
    }

    /// A connection went away without leaving. Its user leaves now, after
    /// the reconnect grace unless they come back, or (`keep_membership`, on
    /// shutdown) not at all.
    pub(crate) async fn disconnect(
        self: &Arc<Self>,
        caller: &Caller,
        room_id: &RoomId,
        keep_membership: bool,
    ) {
        let mut room = self.hub.lock(room_id).await;
        if room.unsubscribe(caller.conn).is_none()
            || keep_membership
            || room.has_user(&caller.user.user_id)
        {
            return;
        }
        if self.settings.reconnect_grace.is_zero() {
            self.depart(&mut room, &caller.user).await;
            return;
        }
        drop(room);
        let rooms = Arc::clone(self);
        let (user, room_id) = (caller.user.clone(), room_id.clone());
        self.background.spawn(async move {
            if rooms.wait_grace().await {
                let mut room = rooms.hub.lock(&room_id).await;
                if !room.has_user(&user.user_id) {
                    rooms.depart(&mut room, &user).await;
                }
            }
        });
    }

    /// Waits out the reconnect grace; false when the server stops first.
    async fn wait_grace(&self) -> bool {
        tokio::select! {
            () = tokio::time::sleep(self.settings.reconnect_grace) => true,
            () = self.shutdown.cancelled() => false,
        }
    }

    /// Removes a departed user's membership and tells the remaining
    /// connections; a failure is logged (the next restart clears it).
    async fn depart(&self, room: &mut RoomGuard<'_>, user: &UserInfo) {
        match self.store.leave_room(room.room_id(), &user.user_id).await {
            Ok(true) => announce_left(room, user),
            Ok(false) => {}
            Err(e) => tracing::warn!(room = %room.room_id(), user = %user.user_id, error = %e,
                "could not record a disconnected user's leave"),
        }
    }

    /// Handles the memberships this node left behind when it last stopped
    /// or crashed: after the reconnect grace (at once when it is zero), those
    /// whose users did not come back are removed and the room is told.
    pub(crate) async fn expire_previous_run(self: &Arc<Self>) -> Result<(), StoreError> {
        let started = self.store.now().await?;
        if self.settings.reconnect_grace.is_zero() {
            return self.remove_unclaimed(started).await;
        }
        let rooms = Arc::clone(self);
        self.background.spawn(async move {
            if rooms.wait_grace().await
                && let Err(e) = rooms.remove_unclaimed(started).await
            {
                tracing::warn!(error = %e, "could not remove memberships of the previous run");
            }
        });
        Ok(())
    }

    async fn remove_unclaimed(&self, started: DateTime<Utc>) -> Result<(), StoreError> {
        let node = &self.settings.node;
        let gone = self.store.clear_stale_members(node, started).await?;
        if !gone.is_empty() {
            tracing::info!(count = gone.len(), %node, "removed memberships left over from the previous run");
        }
        for (room_id, user) in &gone {
            announce_left(&mut self.hub.lock(room_id).await, user);
        }
        Ok(())
    }

    /// Removes the memberships of nodes whose lease lapsed more than the
    /// reconnect grace ago, and tells this node's connections in those rooms.
    pub(crate) async fn sweep_dead_nodes(&self) -> Result<(), StoreError> {
        let gone = self
            .store
            .sweep_dead_nodes(self.settings.reconnect_grace)
            .await?;
        if !gone.is_empty() {
            tracing::info!(
                count = gone.len(),
                "removed memberships of nodes whose lease lapsed"
            );
        }
        for (room_id, user) in &gone {
            announce_left(&mut self.hub.lock(room_id).await, user);
        }
        Ok(())
    }

    /// Fails with `not_in_room` unless this connection has joined the room;
    /// returns the first seq of the room's life, where its history starts.
    pub(crate) async fn require_joined(
        &self,
        caller: &Caller,
        room_id: &RoomId,
    ) -> Result<i64, RoomError> {
        let room = self.hub.lock(room_id).await;
        if room.contains(caller.conn) {
            Ok(room.first_seq())
        } else {
            Err(RoomError::NotInRoom(room_id.clone()))
        }
    }

    /// `queryRoomMemberList`: a page of members and the flag continuing it.
    pub(crate) async fn member_page(
        &self,
        caller: &Caller,
        room_id: &RoomId,
        next_flag: Option<&str>,
        count: u32,
    ) -> Result<(Vec<UserInfo>, String), RoomError> {
        self.require_joined(caller, room_id).await?;
        Ok(self.store.member_page(room_id, next_flag, count).await?)
    }

    /// `queryRoomOnlineMemberCount`.
    pub(crate) async fn member_count(
        &self,
        caller: &Caller,
        room_id: &RoomId,
    ) -> Result<i64, RoomError> {
        self.require_joined(caller, room_id).await?;
        Ok(self.store.member_count(room_id).await?)
    }
}

/// Tells the room's connections that a user left; the leaver is no longer subscribed.
fn announce_left(room: &mut RoomGuard<'_>, user: &UserInfo) {
    let event = Event::MemberLeft {
        room_id: room.room_id(),
        member_list: std::slice::from_ref(user),
    };
    let frame = Frame::from(event.to_json());
    room.broadcast(&frame, None);
}
