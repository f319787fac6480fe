//! The room service: the rule each room op follows, between the sessions
//! that ask and the store that decides.
//!
//! - [`entry`]: createRoom, joinRoom, enterRoom (one path) and the
//!   `sinceSeq` catch-up after the reply.
//! - [`membership`]: leaving, dropped connections and the reconnect grace,
//!   a restarted node's leftovers, member queries.
//! - [`messages`]: sendRoomMessage (checks, then the group committer that
//!   stores and fans out) and queryHistoryMessage.
//! - [`hub`]: which local connections are in which room, and the per-room
//!   lock that orders every change with its fan-out.
//!
//! Each op that changes a room takes the room's hub lock, changes the
//! database, and fans out the resulting event before releasing the lock.
//! Replies are queued by the session after these return, so every reply
//! follows the commit it reports.

mod entry;
mod error;
mod hub;
mod membership;
mod messages;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use entry::Entered;
pub(crate) use error::RoomError;

use crate::domain::{NodeId, UserInfo};
use crate::limits::{JoinLimits, MessageLimits, RateLimits};
use crate::metrics::Metrics;
use crate::outbox::{ConnId, Outbox};
use crate::store::Store;
use hub::Hub;
use messages::Committer;

/// Who is asking: one logged-in connection.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) conn: ConnId,
    pub(crate) user: UserInfo,
    /// Where the room's events for this connection go.
    pub(crate) outbox: Outbox,
}

/// The room service's settings.
#[derive(Debug, Clone)]
pub(crate) struct RoomSettings {
    pub(crate) message_limits: MessageLimits,
    pub(crate) join_limits: JoinLimits,
    /// Used when a creator does not choose `roomDestroyDelayTime`.
    pub(crate) default_destroy_delay: Duration,
    /// How long a dropped connection's user stays a member.
    pub(crate) reconnect_grace: Duration,
    /// This process, recorded on the memberships it creates.
    pub(crate) node: NodeId,
    /// Bytes a history page (or catch-up event) holds at most.
    pub(crate) history_page_bytes: usize,
}

/// The room service, shared by every session.
#[derive(Debug)]
pub(crate) struct Rooms {
    store: Store,
    hub: Arc<Hub>,
    /// Stores messages in shared transactions and fans them out.
    committer: Committer,
    settings: RoomSettings,
    /// Message rates are per user, across their connections.
    rates: Arc<RateLimits>,
    /// Pending grace-period leaves; abandoned on shutdown (the next start
    /// clears members of this process anyway).
    background: TaskTracker,
    shutdown: CancellationToken,
}

impl Rooms {
    pub(crate) fn new(
        store: Store,
        settings: RoomSettings,
        rates: Arc<RateLimits>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Self {
        let hub = Arc::new(Hub::default());
        Self {
            committer: Committer::start(store.clone(), hub.clone(), metrics),
            store,
            hub,
            settings,
            rates,
            background: TaskTracker::new(),
            shutdown,
        }
    }

    /// Waits for pending grace-period leaves to finish or be abandoned.
    pub(crate) async fn wait_background(&self) {
        self.background.close();
        self.background.wait().await;
    }
}
