//! Local fan-out: which connections of this process are in which room.
//!
//! The database says who is a *member*; the hub says which *connections* must
//! receive a room's events. Each room with at least one local connection has
//! a [`RoomState`] behind an async lock ([`Hub::lock`] returns its
//! [`RoomGuard`]), held across every join, leave and send of that room, so
//! the database change and the fan-out that follows it happen in one order
//! for everyone: events leave in seq order, and a connection that joins sees
//! every message after its join reply.
//!
//! Lock order: a room's lock first, then (briefly, never across an await)
//! the hub's map of rooms. Several rooms are locked in room-id order
//! (`rooms::messages` does), so two tasks never wait on each other.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::domain::{RoomId, UserId};
use crate::outbox::{CloseReason, ConnId, Frame, Outbox};

/// One local connection in a room.
#[derive(Debug, Clone)]
pub(crate) struct Subscriber {
    pub(crate) user_id: UserId,
    pub(crate) outbox: Outbox,
    /// While the connection is joining (its reply and any `sinceSeq`
    /// catch-up not yet queued), the room's events wait here, so they reach
    /// it after the catch-up and in order. `None` once live. Bounded like
    /// the outbox.
    held: Option<VecDeque<Frame>>,
}

impl Subscriber {
    /// A connection that has just joined: events are held until
    /// [`RoomState::go_live`].
    pub(crate) fn joining(user_id: UserId, outbox: Outbox) -> Self {
        Self {
            user_id,
            outbox,
            held: Some(VecDeque::new()),
        }
    }

    fn deliver(&mut self, frame: Frame) {
        match &mut self.held {
            None => self.outbox.push(frame),
            Some(held) if held.len() < self.outbox.capacity() => held.push_back(frame),
            Some(_) => self.outbox.close(CloseReason::SLOW_CONSUMER),
        }
    }
}

/// The local connections of one room. Reached only through [`RoomGuard`].
#[derive(Debug, Default)]
pub(crate) struct RoomState {
    /// Set when the room left the hub's map; a guard that finds it set retries.
    detached: bool,
    subscribers: HashMap<ConnId, Subscriber>,
}

impl RoomState {
    pub(crate) fn contains(&self, conn: ConnId) -> bool {
        self.subscribers.contains_key(&conn)
    }

    pub(crate) fn subscribe(&mut self, conn: ConnId, subscriber: Subscriber) {
        self.subscribers.insert(conn, subscriber);
    }

    pub(crate) fn unsubscribe(&mut self, conn: ConnId) -> Option<Subscriber> {
        self.subscribers.remove(&conn)
    }

    /// Ends a joining connection's hold: the events that arrived meanwhile
    /// are queued, then it receives events as they happen.
    pub(crate) fn go_live(&mut self, conn: ConnId) {
        if let Some(subscriber) = self.subscribers.get_mut(&conn)
            && let Some(held) = subscriber.held.take()
        {
            for frame in held {
                subscriber.outbox.push(frame);
            }
        }
    }

    /// Whether the user has any connection in the room.
    pub(crate) fn has_user(&self, user: &UserId) -> bool {
        self.subscribers.values().any(|s| &s.user_id == user)
    }

    /// Whether the user still has a connection in the room other than `except`.
    pub(crate) fn user_has_other_connection(&self, user: &UserId, except: ConnId) -> bool {
        self.subscribers
            .iter()
            .any(|(id, s)| *id != except && &s.user_id == user)
    }

    /// Pushes one already-serialized frame to every local connection but `except`.
    pub(crate) fn broadcast(&mut self, frame: &Frame, except: Option<ConnId>) {
        for (id, subscriber) in &mut self.subscribers {
            if Some(*id) != except {
                subscriber.deliver(frame.clone());
            }
        }
    }

    /// Pushes `frame` to every local connection, except that the
    /// connections listed in `instead` get their own frame (or nothing).
    /// This is how one batch's messages reach a room: senders do not get
    /// their own messages back, everyone else shares one frame.
    pub(crate) fn broadcast_with(&mut self, frame: &Frame, instead: &[(ConnId, Option<Frame>)]) {
        for (id, subscriber) in &mut self.subscribers {
            match instead.iter().find(|(conn, _)| conn == id) {
                None => subscriber.deliver(frame.clone()),
                Some((_, Some(own))) => subscriber.deliver(own.clone()),
                Some((_, None)) => {}
            }
        }
    }
}

/// Exclusive access to one room's local state; see the module docs.
pub(crate) struct RoomGuard<'h> {
    hub: &'h Hub,
    room_id: RoomId,
    state: OwnedMutexGuard<RoomState>,
}

impl RoomGuard<'_> {
    pub(crate) fn room_id(&self) -> &RoomId {
        &self.room_id
    }
}

impl std::ops::Deref for RoomGuard<'_> {
    type Target = RoomState;
    fn deref(&self) -> &RoomState {
        &self.state
    }
}

impl std::ops::DerefMut for RoomGuard<'_> {
    fn deref_mut(&mut self) -> &mut RoomState {
        &mut self.state
    }
}

impl Drop for RoomGuard<'_> {
    /// The last local connection gone: the room leaves the map (so the map
    /// holds only rooms with local connections), and a task already waiting
    /// for this lock sees `detached` and starts over with a fresh entry.
    fn drop(&mut self) {
        if !self.state.subscribers.is_empty() {
            return;
        }
        let mut rooms = self.hub.rooms.lock().expect("hub map poisoned");
        let ours = OwnedMutexGuard::mutex(&self.state);
        if rooms
            .get(&self.room_id)
            .is_some_and(|r| Arc::ptr_eq(r, ours))
        {
            rooms.remove(&self.room_id);
        }
        self.state.detached = true;
    }
}

/// Registry of rooms that have local connections.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    rooms: Mutex<HashMap<RoomId, Arc<tokio::sync::Mutex<RoomState>>>>,
}

impl Hub {
    /// Waits for exclusive access to the room's local state.
    pub(crate) async fn lock(&self, room_id: &RoomId) -> RoomGuard<'_> {
        loop {
            let room = {
                let mut rooms = self.rooms.lock().expect("hub map poisoned");
                rooms.entry(room_id.clone()).or_default().clone()
            };
            let state = room.lock_owned().await;
            if !state.detached {
                return RoomGuard {
                    hub: self,
                    room_id: room_id.clone(),
                    state,
                };
            }
        }
    }
}
