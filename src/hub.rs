//! Local fan-out: which connections of this process are in which room.
//!
//! The database says who is a *member*; the hub says which *connections* must
//! receive a room's events. Each room with at least one local connection has
//! a [`LocalRoom`] whose async lock is held across every join, leave and send
//! of that room, so the database change and the fan-out that follows it
//! happen in one order for everyone: events leave in seq order, and a
//! connection that joins sees every message after its join reply.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{OwnedMutexGuard, mpsc};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use crate::domain::{RoomId, UserId};

/// One serialized text frame (a reply or an event). Cloning it shares the
/// bytes, so an event is serialized once for all its recipients; queues hold
/// these rather than whole WebSocket messages because they are smaller.
pub type Frame = Utf8Bytes;

/// Identifies one WebSocket connection within this process.
pub type ConnId = u64;

pub fn next_conn_id() -> ConnId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Why a connection is being closed, as a WebSocket close code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

impl CloseReason {
    pub const GOING_AWAY: Self = Self {
        code: 1001,
        reason: "server shutting down",
    };
    pub const FRAME_TOO_LARGE: Self = Self {
        code: 1009,
        reason: "frame too large",
    };
    pub const LOGIN_TIMEOUT: Self = Self {
        code: 4001,
        reason: "login timeout",
    };
    pub const UNAUTHORIZED: Self = Self {
        code: 4001,
        reason: "unauthorized",
    };
    pub const IDLE: Self = Self {
        code: 4002,
        reason: "idle timeout",
    };
    pub const ABUSE: Self = Self {
        code: 4029,
        reason: "too many rate-limited requests",
    };
    pub const TOO_MANY_CONNECTIONS: Self = Self {
        code: 4030,
        reason: "too many connections for this user",
    };
    pub const CATCH_UP_FAILED: Self = Self {
        code: 1011,
        reason: "could not read history; reconnect and resume with sinceSeq",
    };
    pub const SLOW_CONSUMER: Self = Self {
        code: 4008,
        reason: "slow consumer",
    };
}

/// The sending half of a connection's bounded outbound queue.
///
/// Replies to the connection's own requests wait for room in the queue;
/// events pushed by others never wait: if the queue is full the connection
/// is closed as a slow consumer, so one stuck client cannot slow a room.
#[derive(Debug, Clone)]
pub struct Outbox {
    queue: mpsc::Sender<Frame>,
    /// Bytes queued and not yet written, shared with the [`OutboxQueue`].
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
    closer: Closer,
}

/// The receiving half, drained by the connection's writer.
#[derive(Debug)]
pub struct OutboxQueue {
    queue: mpsc::Receiver<Frame>,
    queued_bytes: Arc<AtomicUsize>,
}

impl OutboxQueue {
    fn taken(&self, frame: Frame) -> Frame {
        self.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        frame
    }

    pub async fn recv(&mut self) -> Option<Frame> {
        let frame = self.queue.recv().await?;
        Some(self.taken(frame))
    }

    pub fn try_recv(&mut self) -> Option<Frame> {
        let frame = self.queue.try_recv().ok()?;
        Some(self.taken(frame))
    }
}

/// Closes a connection once, remembering the first reason given.
#[derive(Debug, Clone, Default)]
pub struct Closer {
    token: CancellationToken,
    reason: Arc<OnceLock<CloseReason>>,
}

impl Closer {
    pub fn close(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    /// Ends the connection without a close frame: the peer is gone already.
    pub fn abort(&self) {
        self.token.cancel();
    }

    pub fn reason(&self) -> Option<CloseReason> {
        self.reason.get().copied()
    }

    pub async fn closed(&self) {
        self.token.cancelled().await
    }
}

impl Outbox {
    /// A queue of at most `frames` frames and about `max_bytes` bytes.
    pub fn new(frames: usize, max_bytes: usize) -> (Self, OutboxQueue, Closer) {
        let (queue, rx) = mpsc::channel(frames);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let closer = Closer::default();
        (
            Self {
                queue,
                queued_bytes: queued_bytes.clone(),
                max_bytes,
                closer: closer.clone(),
            },
            OutboxQueue {
                queue: rx,
                queued_bytes,
            },
            closer,
        )
    }

    /// Queues a reply (or catch-up) frame, waiting for room. Returns false
    /// when the connection is gone. Replies answer the connection's own
    /// requests, so waiting only slows that connection.
    pub async fn send(&self, frame: Frame) -> bool {
        let len = frame.len();
        self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        let sent = tokio::select! {
            sent = self.queue.send(frame) => sent.is_ok(),
            () = self.closer.closed() => false,
        };
        if !sent {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
        }
        sent
    }

    /// How many frames the queue holds.
    pub fn capacity(&self) -> usize {
        self.queue.max_capacity()
    }

    /// Queues an event without waiting; a full queue (in frames or bytes)
    /// closes the connection as a slow consumer.
    pub fn push(&self, frame: Frame) {
        let len = frame.len();
        let queued = self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if queued + len > self.max_bytes && queued > 0 {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.closer.close(CloseReason::SLOW_CONSUMER);
            return;
        }
        if self.queue.try_send(frame).is_err() {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            if !self.queue.is_closed() {
                self.closer.close(CloseReason::SLOW_CONSUMER);
            }
        }
    }
}

/// One local connection in a room.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub user_id: UserId,
    pub outbox: Outbox,
    /// While the connection is joining (its reply and any `sinceSeq`
    /// catch-up not yet queued), the room's events wait here, so they reach
    /// it after the catch-up and in order. `None` once live. Bounded like
    /// the outbox.
    held: Option<VecDeque<Frame>>,
}

impl Subscriber {
    /// A connection that has just joined: events are held until
    /// [`RoomState::go_live`].
    pub fn joining(user_id: UserId, outbox: Outbox) -> Self {
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
            Some(_) => self.outbox.closer.close(CloseReason::SLOW_CONSUMER),
        }
    }
}

/// The local connections of one room. Reached only through [`RoomGuard`].
#[derive(Debug, Default)]
pub struct RoomState {
    /// Set when the room left the hub's map; a guard that finds it set retries.
    detached: bool,
    subscribers: HashMap<ConnId, Subscriber>,
}

impl RoomState {
    pub fn contains(&self, conn: ConnId) -> bool {
        self.subscribers.contains_key(&conn)
    }

    pub fn subscribe(&mut self, conn: ConnId, subscriber: Subscriber) {
        self.subscribers.insert(conn, subscriber);
    }

    pub fn unsubscribe(&mut self, conn: ConnId) -> Option<Subscriber> {
        self.subscribers.remove(&conn)
    }

    /// Ends a joining connection's hold: the events that arrived meanwhile
    /// are queued, then it receives events as they happen.
    pub fn go_live(&mut self, conn: ConnId) {
        if let Some(subscriber) = self.subscribers.get_mut(&conn)
            && let Some(held) = subscriber.held.take()
        {
            for frame in held {
                subscriber.outbox.push(frame);
            }
        }
    }

    /// Whether the user has any connection in the room.
    pub fn has_user(&self, user: &UserId) -> bool {
        self.subscribers.values().any(|s| &s.user_id == user)
    }

    /// Whether the user still has a connection in the room other than `except`.
    pub fn user_has_other_connection(&self, user: &UserId, except: ConnId) -> bool {
        self.subscribers
            .iter()
            .any(|(id, s)| *id != except && &s.user_id == user)
    }

    /// Pushes one already-serialized frame to every local connection but `except`.
    pub fn broadcast(&mut self, frame: &Frame, except: Option<ConnId>) {
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
    pub fn broadcast_with(&mut self, frame: &Frame, instead: &[(ConnId, Option<Frame>)]) {
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
pub struct RoomGuard<'h> {
    hub: &'h Hub,
    room_id: RoomId,
    room: Arc<tokio::sync::Mutex<RoomState>>,
    state: Option<OwnedMutexGuard<RoomState>>,
}

impl RoomGuard<'_> {
    pub fn room_id(&self) -> &RoomId {
        &self.room_id
    }
}

impl std::ops::Deref for RoomGuard<'_> {
    type Target = RoomState;
    fn deref(&self) -> &RoomState {
        self.state.as_ref().expect("held until drop")
    }
}

impl std::ops::DerefMut for RoomGuard<'_> {
    fn deref_mut(&mut self) -> &mut RoomState {
        self.state.as_mut().expect("held until drop")
    }
}

impl Drop for RoomGuard<'_> {
    fn drop(&mut self) {
        let Some(mut state) = self.state.take() else {
            return;
        };
        if state.subscribers.is_empty() {
            let mut rooms = self.hub.rooms.lock().expect("hub map poisoned");
            if rooms
                .get(&self.room_id)
                .is_some_and(|r| Arc::ptr_eq(r, &self.room))
            {
                rooms.remove(&self.room_id);
            }
            state.detached = true;
        }
    }
}

/// Registry of rooms that have local connections.
#[derive(Debug, Default)]
pub struct Hub {
    rooms: Mutex<HashMap<RoomId, Arc<tokio::sync::Mutex<RoomState>>>>,
}

impl Hub {
    /// Waits for exclusive access to the room's local state.
    pub async fn lock(&self, room_id: &RoomId) -> RoomGuard<'_> {
        loop {
            let room = {
                let mut rooms = self.rooms.lock().expect("hub map poisoned");
                rooms.entry(room_id.clone()).or_default().clone()
            };
            let state = room.clone().lock_owned().await;
            if !state.detached {
                return RoomGuard {
                    hub: self,
                    room_id: room_id.clone(),
                    room,
                    state: Some(state),
                };
            }
        }
    }
}
