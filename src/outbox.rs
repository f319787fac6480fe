//! A connection's outbound side as the rest of roomd sees it: the bounded
//! queue that replies and events go into, the writer's end of it, and the
//! [`Closer`] that ends the connection with a close code.
//!
//! Rooms deliver into an [`Outbox`] without knowing anything about
//! WebSockets; the connection's writer (`ws::writer`) drains the
//! [`OutboxQueue`]. A queue that fills up closes its connection as a slow
//! consumer instead of growing, so one stuck client cannot slow a room.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

/// One serialized text frame (a reply or an event). Cloning it shares the
/// bytes, so an event is serialized once for all its recipients; queues hold
/// these rather than whole WebSocket messages because they are smaller.
pub(crate) type Frame = Utf8Bytes;

/// Identifies one WebSocket connection within this process.
pub(crate) type ConnId = u64;

pub(crate) fn next_conn_id() -> ConnId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Why a connection is being closed, as a WebSocket close code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CloseReason {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
}

impl CloseReason {
    pub(crate) const GOING_AWAY: Self = Self {
        code: 1001,
        reason: "server shutting down",
    };
    pub(crate) const FRAME_TOO_LARGE: Self = Self {
        code: 1009,
        reason: "frame too large",
    };
    pub(crate) const LOGIN_TIMEOUT: Self = Self {
        code: 4001,
        reason: "login timeout",
    };
    pub(crate) const UNAUTHORIZED: Self = Self {
        code: 4001,
        reason: "unauthorized",
    };
    pub(crate) const TOKEN_EXPIRED: Self = Self {
        code: 4001,
        reason: "token expired",
    };
    pub(crate) const PROTOCOL_ERROR: Self = Self {
        code: 1002,
        reason: "WebSocket protocol error",
    };
    pub(crate) const INVALID_UTF8: Self = Self {
        code: 1007,
        reason: "text frame is not valid UTF-8",
    };
    pub(crate) const IDLE: Self = Self {
        code: 4002,
        reason: "idle timeout",
    };
    pub(crate) const ABUSE: Self = Self {
        code: 4029,
        reason: "too many rate-limited requests",
    };
    pub(crate) const TOO_MANY_CONNECTIONS: Self = Self {
        code: 4030,
        reason: "too many connections for this user",
    };
    pub(crate) const SERVER_FULL: Self = Self {
        code: 1013,
        reason: "server at its connection limit, try again later",
    };
    pub(crate) const FENCED: Self = Self {
        code: 1012,
        reason: "node fenced; reconnect and join again",
    };
    pub(crate) const CATCH_UP_FAILED: Self = Self {
        code: 1011,
        reason: "could not read history; reconnect and resume with sinceSeq",
    };
    pub(crate) const SLOW_CONSUMER: Self = Self {
        code: 4008,
        reason: "slow consumer",
    };
}

/// How long a reply waits for room in a full queue before the connection
/// is closed as a slow consumer.
const REPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The sending half of a connection's bounded outbound queue.
///
/// Replies to the connection's own requests wait for room in the queue;
/// events pushed by others never wait: if the queue is full the connection
/// is closed as a slow consumer, so one stuck client cannot slow a room.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    queue: mpsc::Sender<Frame>,
    /// Bytes queued and not yet written, shared with the [`OutboxQueue`].
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
    closer: Closer,
}

/// The receiving half, drained by the connection's writer.
#[derive(Debug)]
pub(crate) struct OutboxQueue {
    queue: mpsc::Receiver<Frame>,
    queued_bytes: Arc<AtomicUsize>,
}

impl OutboxQueue {
    fn taken(&self, frame: Frame) -> Frame {
        self.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        frame
    }

    pub(crate) async fn recv(&mut self) -> Option<Frame> {
        let frame = self.queue.recv().await?;
        Some(self.taken(frame))
    }

    pub(crate) fn try_recv(&mut self) -> Option<Frame> {
        let frame = self.queue.try_recv().ok()?;
        Some(self.taken(frame))
    }
}

/// Closes a connection once, remembering the first reason given.
#[derive(Debug, Clone, Default)]
pub(crate) struct Closer {
    token: CancellationToken,
    reason: Arc<OnceLock<CloseReason>>,
}

impl Closer {
    pub(crate) fn close(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    /// Ends the connection without a close frame: the peer is gone already.
    pub(crate) fn abort(&self) {
        self.token.cancel();
    }

    pub(crate) fn reason(&self) -> Option<CloseReason> {
        self.reason.get().copied()
    }

    pub(crate) async fn closed(&self) {
        self.token.cancelled().await
    }
}

impl Outbox {
    /// A queue of at most `frames` frames and about `max_bytes` bytes.
    pub(crate) fn new(frames: usize, max_bytes: usize) -> (Self, OutboxQueue, Closer) {
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
    /// requests, so waiting only slows that connection; but a client that
    /// reads nothing for [`REPLY_WAIT`] is closed as a slow consumer, or
    /// its session would wait forever and no timer of it could fire.
    pub(crate) async fn send(&self, frame: Frame) -> bool {
        let len = frame.len();
        self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        let sent = tokio::select! {
            sent = self.queue.send(frame) => sent.is_ok(),
            () = self.closer.closed() => false,
            () = tokio::time::sleep(REPLY_WAIT) => {
                self.closer.close(CloseReason::SLOW_CONSUMER);
                false
            }
        };
        if !sent {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
        }
        sent
    }

    /// Closes the connection (the first reason given wins).
    pub(crate) fn close(&self, reason: CloseReason) {
        self.closer.close(reason);
    }

    /// How many frames the queue holds.
    pub(crate) fn capacity(&self) -> usize {
        self.queue.max_capacity()
    }

    /// Queues an event without waiting; a full queue (in frames or bytes)
    /// closes the connection as a slow consumer.
    pub(crate) fn push(&self, frame: Frame) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> Frame {
        Frame::from(text.to_owned())
    }

    #[tokio::test]
    async fn pushed_events_arrive_in_order_and_are_counted_out_again() {
        let (outbox, mut queue, closer) = Outbox::new(4, 1024);
        outbox.push(frame("a"));
        outbox.push(frame("bb"));
        assert!(outbox.send(frame("ccc")).await);
        assert_eq!(outbox.queued_bytes.load(Ordering::Acquire), 6);
        for expected in ["a", "bb", "ccc"] {
            assert_eq!(queue.recv().await.as_deref(), Some(expected));
        }
        assert_eq!(outbox.queued_bytes.load(Ordering::Acquire), 0);
        assert_eq!(closer.reason(), None);
    }

    #[test]
    fn a_queue_full_of_frames_closes_its_connection_as_a_slow_consumer() {
        let (outbox, _queue, closer) = Outbox::new(2, 1024);
        outbox.push(frame("1"));
        outbox.push(frame("2"));
        assert_eq!(closer.reason(), None);
        outbox.push(frame("3"));
        assert_eq!(closer.reason(), Some(CloseReason::SLOW_CONSUMER));
    }

    #[test]
    fn a_queue_over_its_byte_budget_closes_too_but_one_large_frame_fits() {
        let (outbox, _queue, closer) = Outbox::new(100, 10);
        // The first frame always fits, however large: an event is never
        // undeliverable to an idle connection.
        outbox.push(frame(&"x".repeat(50)));
        assert_eq!(closer.reason(), None);
        outbox.push(frame("y"));
        assert_eq!(closer.reason(), Some(CloseReason::SLOW_CONSUMER));
        assert_eq!(outbox.queued_bytes.load(Ordering::Acquire), 50);
    }

    #[tokio::test]
    async fn a_reply_waits_for_room_and_gives_up_when_the_connection_closes() {
        let (outbox, mut queue, closer) = Outbox::new(1, 1024);
        assert!(outbox.send(frame("first")).await);
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.send(frame("second")).await }
        });
        assert_eq!(queue.recv().await.as_deref(), Some("first"));
        assert!(waiting.await.unwrap(), "room was made, the reply went in");
        let blocked = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.send(frame("third")).await }
        });
        closer.close(CloseReason::IDLE);
        assert!(
            !blocked.await.unwrap(),
            "a closed connection takes no reply"
        );
        assert_eq!(closer.reason(), Some(CloseReason::IDLE));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reply_to_a_client_that_reads_nothing_gives_up_as_a_slow_consumer() {
        let (outbox, _queue, closer) = Outbox::new(1, 1024);
        assert!(outbox.send(frame("fills the queue")).await);
        assert!(!outbox.send(frame("never fits")).await);
        assert_eq!(closer.reason(), Some(CloseReason::SLOW_CONSUMER));
    }

    #[test]
    fn the_first_close_reason_wins() {
        let closer = Closer::default();
        closer.close(CloseReason::ABUSE);
        closer.close(CloseReason::IDLE);
        closer.abort();
        assert_eq!(closer.reason(), Some(CloseReason::ABUSE));
    }
}
