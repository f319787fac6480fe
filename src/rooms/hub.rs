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
    /// The first seq of the room's current life, as its joins saw it. A
    /// life cannot end while anyone is subscribed, so it holds for them all.
    first_seq: i64,
    subscribers: HashMap<ConnId, Subscriber>,
}

impl RoomState {
    pub(crate) fn contains(&self, conn: ConnId) -> bool {
        self.subscribers.contains_key(&conn)
    }

    pub(crate) fn subscribe(&mut self, conn: ConnId, subscriber: Subscriber, first_seq: i64) {
        self.first_seq = first_seq;
        self.subscribers.insert(conn, subscriber);
    }

    /// Where the history a subscribed connection may read starts.
    pub(crate) fn first_seq(&self) -> i64 {
        self.first_seq
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::OutboxQueue;

    fn member(user: &str) -> (Subscriber, OutboxQueue) {
        let (outbox, queue, _closer) = Outbox::new(16, 1 << 20);
        let user = UserId::parse(user).unwrap();
        (Subscriber::joining(user, outbox), queue)
    }

    fn drained(queue: &mut OutboxQueue) -> Vec<String> {
        std::iter::from_fn(|| queue.try_recv().map(|f| f.to_string())).collect()
    }

    #[tokio::test]
    async fn a_joining_connection_gets_held_events_only_when_it_goes_live() {
        let hub = Hub::default();
        let room_id = RoomId::parse("r").unwrap();
        let mut room = hub.lock(&room_id).await;
        let (joining, mut queue) = member("a");
        room.subscribe(1, joining, 1);
        room.broadcast(&Frame::from("e1".to_owned()), None);
        assert!(drained(&mut queue).is_empty(), "held while joining");
        room.go_live(1);
        room.broadcast(&Frame::from("e2".to_owned()), None);
        assert_eq!(drained(&mut queue), ["e1", "e2"]);
    }

    #[tokio::test]
    async fn senders_get_their_own_frame_or_none_and_everyone_else_the_shared_one() {
        let hub = Hub::default();
        let room_id = RoomId::parse("r").unwrap();
        let mut room = hub.lock(&room_id).await;
        let mut queues = Vec::new();
        for (conn, user) in [(1, "a"), (2, "b"), (3, "c")] {
            let (subscriber, queue) = member(user);
            room.subscribe(conn, subscriber, 1);
            room.go_live(conn);
            queues.push(queue);
        }
        let all = Frame::from("all".to_owned());
        let others = Frame::from("without-1".to_owned());
        room.broadcast_with(&all, &[(1, Some(others)), (2, None)]);
        assert_eq!(drained(&mut queues[0]), ["without-1"]);
        assert!(drained(&mut queues[1]).is_empty());
        assert_eq!(drained(&mut queues[2]), ["all"]);
        room.broadcast(&Frame::from("x".to_owned()), Some(3));
        assert_eq!(drained(&mut queues[2]), Vec::<String>::new());
        assert!(room.has_user(&UserId::parse("b").unwrap()));
        assert!(!room.user_has_other_connection(&UserId::parse("c").unwrap(), 3));
    }

    #[tokio::test]
    async fn an_emptied_room_leaves_the_map_and_a_later_lock_gets_a_fresh_one() {
        let hub = Hub::default();
        let room_id = RoomId::parse("r").unwrap();
        {
            let mut room = hub.lock(&room_id).await;
            let (subscriber, _queue) = member("a");
            room.subscribe(1, subscriber, 1);
        }
        assert_eq!(hub.rooms.lock().unwrap().len(), 1);
        {
            let mut room = hub.lock(&room_id).await;
            assert!(room.unsubscribe(1).is_some());
        }
        assert!(hub.rooms.lock().unwrap().is_empty());
        assert!(!hub.lock(&room_id).await.contains(1));
    }
}
