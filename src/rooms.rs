//! Room operations and their rules: create, join, enter, leave, send, query.
//!
//! Each operation that changes a room takes the room's hub lock, changes the
//! database, and fans out the resulting event before releasing the lock; see
//! [`crate::hub`] for why. Replies are sent by the session after these return,
//! so every reply follows the commit it reports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use serde_json::Value;

use crate::committer::{Committer, Outcome};
use crate::domain::ClientMessageId;
use crate::domain::{NodeId, RoomId, RoomInfo, RoomMessage, UserInfo};
use crate::hub::{ConnId, Frame, Hub, Outbox, RoomGuard, Subscriber};
use crate::limits::{Limited, RateLimits};
use crate::metrics::Metrics;
use crate::protocol::{
    ErrorBody, ErrorCode, Event, HistoryCursor, OutgoingMessage, RoomConfig, SendConfig,
};
use crate::store::messages::{Pending, TimeRange};
use crate::store::rooms::{JoinError, JoinLimits, Joined, NewRoom};
use crate::store::{Store, StoreError};

/// Sizes the server accepts; see `Config` for their settings.
#[derive(Debug, Clone, Copy)]
pub struct MessageLimits {
    /// `text` and `custom` bodies, in bytes.
    pub text_bytes: usize,
    /// `command` and `barrage` bodies, in bytes.
    pub command_bytes: usize,
    pub extended_data_bytes: usize,
}

/// Room attributes, as ZIM bounds them.
const MAX_ATTRIBUTES: usize = 20;
const MAX_ATTRIBUTE_KEY_BYTES: usize = 16;
const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024;
/// Longest `roomDestroyDelayTime`, in seconds (three hours, as in ZIM).
pub const MAX_DESTROY_DELAY_SECS: u32 = 10_800;
/// Messages per catch-up event when a join asks for `sinceSeq`.
const CATCH_UP_PAGE: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("not in room '{0}'")]
    NotInRoom(RoomId),
    #[error("room '{0}' does not exist")]
    NotFound(RoomId),
    #[error("room '{0}' already exists")]
    Exists(RoomId),
    #[error("{0}")]
    RoomLimit(String),
    #[error("{0}")]
    UserRoomLimit(String),
    #[error("room '{0}' is full: {1}")]
    RoomFull(RoomId, String),
    #[error("too many messages; slow down")]
    RateLimited(Limited),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RoomError {
    /// The wire error; internal faults are logged here with a correlation id
    /// that the client also gets, never with their details.
    pub fn to_body(&self) -> ErrorBody {
        let code = match self {
            RoomError::Invalid(_) => ErrorCode::InvalidArgument,
            RoomError::TooLarge(_) => ErrorCode::TooLarge,
            RoomError::NotInRoom(_) => ErrorCode::NotInRoom,
            RoomError::NotFound(_) => ErrorCode::RoomNotFound,
            RoomError::Exists(_) => ErrorCode::RoomExists,
            RoomError::RoomLimit(_) => ErrorCode::RoomLimit,
            RoomError::UserRoomLimit(_) => ErrorCode::UserRoomLimit,
            RoomError::RoomFull(..) => ErrorCode::RoomFull,
            RoomError::RateLimited(limited) => {
                return ErrorBody::rate_limited(self.to_string(), limited.retry_after);
            }
            RoomError::Store(StoreError::Unavailable(e)) => {
                tracing::warn!(error = %e, "database unavailable");
                return ErrorBody::new(
                    ErrorCode::Unavailable,
                    "database unavailable; nothing was stored, retry later",
                );
            }
            RoomError::Store(StoreError::Fault(e)) => {
                let correlation = crate::correlation_id();
                tracing::error!(%correlation, error = %e, "database fault");
                return ErrorBody::new(
                    ErrorCode::Internal,
                    format!("internal error, correlation id {correlation}"),
                );
            }
        };
        ErrorBody::new(code, self.to_string())
    }
}

fn join_error(room_id: &RoomId, e: JoinError) -> RoomError {
    match e {
        JoinError::NotFound => RoomError::NotFound(room_id.clone()),
        JoinError::Exists => RoomError::Exists(room_id.clone()),
        e @ JoinError::RoomLimit(_) => RoomError::RoomLimit(e.to_string()),
        e @ JoinError::UserRoomLimit(_) => RoomError::UserRoomLimit(e.to_string()),
        e @ JoinError::RoomFull(_) => RoomError::RoomFull(room_id.clone(), e.to_string()),
        JoinError::Store(e) => RoomError::Store(e),
    }
}

/// Who is asking: one logged-in connection.
#[derive(Debug, Clone)]
pub struct Caller {
    pub conn: ConnId,
    pub user: UserInfo,
    pub outbox: Outbox,
}

/// A successful join. The connection's events are held until
/// [`Rooms::finish_entry`], which the session calls after queueing the reply,
/// so the client sees: reply, catch-up, then live events, with no gap.
#[derive(Debug)]
#[must_use = "the connection stays on hold until finish_entry"]
pub struct Entered {
    pub room_info: RoomInfo,
    pub last_seq: i64,
    /// Deliver stored messages after this seq, up to `last_seq`.
    catch_up_after: Option<i64>,
}

/// The room service, shared by every session and the REST handlers.
#[derive(Debug)]
pub struct Rooms {
    store: Store,
    hub: Arc<Hub>,
    /// Stores messages in shared transactions and fans them out.
    committer: Committer,
    limits: MessageLimits,
    default_destroy_delay_secs: u32,
    /// This process, recorded on the memberships it creates.
    node: NodeId,
    join_limits: JoinLimits,
    rates: Arc<RateLimits>,
    /// How long a dropped connection's user stays a member.
    reconnect_grace: Duration,
    /// Pending grace-period leaves; abandoned on shutdown (the next start
    /// clears members of this process anyway).
    background: TaskTracker,
    shutdown: CancellationToken,
}

/// The room service's settings.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    pub limits: MessageLimits,
    pub default_destroy_delay_secs: u32,
    pub reconnect_grace: Duration,
    pub node: NodeId,
    pub join_limits: JoinLimits,
}

impl Rooms {
    pub fn new(
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
            limits: settings.limits,
            default_destroy_delay_secs: settings.default_destroy_delay_secs,
            reconnect_grace: settings.reconnect_grace,
            node: settings.node,
            join_limits: settings.join_limits,
            rates,
            background: TaskTracker::new(),
            shutdown,
        }
    }

    /// Waits for pending grace-period leaves to finish or be abandoned.
    pub async fn wait_background(&self) {
        self.background.close();
        self.background.wait().await;
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    fn new_room<'r>(
        &self,
        info: &'r RoomInfo,
        config: &RoomConfig,
    ) -> Result<NewRoom<'r>, RoomError> {
        let delay = config
            .room_destroy_delay_time
            .unwrap_or(self.default_destroy_delay_secs);
        if delay > MAX_DESTROY_DELAY_SECS {
            return Err(RoomError::Invalid(format!(
                "config.roomDestroyDelayTime: must be 0..={MAX_DESTROY_DELAY_SECS} seconds, got {delay}"
            )));
        }
        let attributes = validate_attributes(config.room_attributes.as_ref())?;
        Ok(NewRoom {
            room_id: &info.room_id,
            room_name: &info.room_name,
            destroy_delay_secs: delay as i32,
            attributes,
        })
    }

    /// `createRoom`: a new room with the caller as its first member.
    pub async fn create(
        &self,
        caller: &Caller,
        info: &RoomInfo,
        config: &RoomConfig,
    ) -> Result<Entered, RoomError> {
        let new_room = self.new_room(info, config)?;
        let mut room = self.hub.lock(&info.room_id).await;
        let joined = self
            .store
            .create_or_join_room(new_room, &caller.user, true, &self.node, self.join_limits)
            .await
            .map_err(|e| join_error(&info.room_id, e))?;
        self.admit(&mut room, caller, &info.room_id, &joined);
        Ok(entered(&info.room_id, joined, None))
    }

    /// `joinRoom`: join an existing room.
    pub async fn join(
        &self,
        caller: &Caller,
        room_id: &RoomId,
        since_seq: Option<i64>,
    ) -> Result<Entered, RoomError> {
        let mut room = self.hub.lock(room_id).await;
        let joined = self
            .store
            .join_room(room_id, &caller.user, &self.node, self.join_limits)
            .await
            .map_err(|e| join_error(room_id, e))?;
        self.admit(&mut room, caller, room_id, &joined);
        Ok(entered(room_id, joined, since_seq))
    }

    /// `enterRoom`: join, creating the room first if it does not exist.
    pub async fn enter(
        &self,
        caller: &Caller,
        info: &RoomInfo,
        config: &RoomConfig,
        since_seq: Option<i64>,
    ) -> Result<Entered, RoomError> {
        let new_room = self.new_room(info, config)?;
        let mut room = self.hub.lock(&info.room_id).await;
        let joined = self
            .store
            .create_or_join_room(new_room, &caller.user, false, &self.node, self.join_limits)
            .await
            .map_err(|e| join_error(&info.room_id, e))?;
        self.admit(&mut room, caller, &info.room_id, &joined);
        Ok(entered(&info.room_id, joined, since_seq))
    }

    /// Subscribes the connection and tells the others when a user arrived.
    fn admit(&self, room: &mut RoomGuard<'_>, caller: &Caller, room_id: &RoomId, joined: &Joined) {
        if joined.newly_joined {
            let event = Event::RoomMemberJoined {
                room_id,
                member_list: std::slice::from_ref(&caller.user),
            };
            room.broadcast(&Frame::from(event.to_json()), Some(caller.conn));
        }
        room.subscribe(
            caller.conn,
            Subscriber::joining(caller.user.user_id.clone(), caller.outbox.clone()),
        );
    }

    /// Completes a join after its reply is queued: streams the `sinceSeq`
    /// catch-up page by page (without holding the room, so senders are not
    /// slowed), then releases the events held meanwhile and goes live.
    ///
    /// Every message committed after the join has a seq above `last_seq`
    /// and was held, so catch-up plus held events have no gap and no
    /// duplicate.
    pub async fn finish_entry(&self, entered: Entered, caller: &Caller) -> Result<(), StoreError> {
        let room_id = &entered.room_info.room_id;
        let mut caught_up = Ok(());
        if let Some(mut after) = entered.catch_up_after {
            while after < entered.last_seq {
                let page = self
                    .store
                    .message_page(
                        room_id,
                        HistoryCursor::After(after),
                        CATCH_UP_PAGE,
                        TimeRange::default(),
                    )
                    .await;
                let page = match page {
                    Ok((page, _)) => page,
                    Err(e) => {
                        caught_up = Err(e);
                        break;
                    }
                };
                let page: Vec<RoomMessage> = page
                    .into_iter()
                    .filter(|m| m.seq <= entered.last_seq)
                    .collect();
                let Some(last) = page.last() else { break };
                after = last.seq;
                let page: Vec<&RoomMessage> = page.iter().collect();
                let event = Event::RoomMessageReceived {
                    room_id,
                    message_list: &page,
                };
                if !caller.outbox.send(Frame::from(event.to_json())).await {
                    break;
                }
            }
        }
        self.hub.lock(room_id).await.go_live(caller.conn);
        caught_up
    }

    /// `leaveRoom` and disconnects: the connection leaves; the user leaves
    /// with their last connection, and the others are told.
    pub async fn leave(&self, caller: &Caller, room_id: &RoomId) -> Result<(), RoomError> {
        let mut room = self.hub.lock(room_id).await;
        if !room.contains(caller.conn) {
            return Err(RoomError::NotInRoom(room_id.clone()));
        }
        // Database first: if it fails, the connection is still in the room.
        let left = !room.user_has_other_connection(&caller.user.user_id, caller.conn)
            && self.store.leave_room(room_id, &caller.user.user_id).await?;
        room.unsubscribe(caller.conn);
        if left {
            announce_left(&mut room, &caller.user, room_id);
        }
        Ok(())
    }

    /// A connection went away without leaving. Its user leaves now, after
    /// the reconnect grace unless they come back, or (`keep_membership`, on
    /// shutdown) not at all.
    pub async fn disconnect(
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
        if self.reconnect_grace.is_zero() {
            if let Err(e) = self.depart(&mut room, &caller.user, room_id).await {
                tracing::warn!(room = %room_id, user = %caller.user.user_id, error = %e,
                    "could not record a disconnected user's leave");
            }
            return;
        }
        drop(room);
        let rooms = Arc::clone(self);
        let user = caller.user.clone();
        let room_id = room_id.clone();
        self.background.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(rooms.reconnect_grace) => {}
                () = rooms.shutdown.cancelled() => return,
            }
            let mut room = rooms.hub.lock(&room_id).await;
            if !room.has_user(&user.user_id)
                && let Err(e) = rooms.depart(&mut room, &user, &room_id).await
            {
                tracing::warn!(room = %room_id, user = %user.user_id, error = %e,
                    "could not record a leave after the reconnect grace");
            }
        });
    }

    /// Handles the memberships this node left behind when it last stopped
    /// or crashed: after the reconnect grace (at once when it is zero), those
    /// whose users did not come back are removed and the room is told.
    pub async fn expire_previous_run(self: &Arc<Self>) -> Result<(), StoreError> {
        let started = self.store.now().await?;
        if self.reconnect_grace.is_zero() {
            return self.remove_unclaimed(started).await;
        }
        let rooms = Arc::clone(self);
        self.background.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(rooms.reconnect_grace) => {}
                () = rooms.shutdown.cancelled() => return,
            }
            if let Err(e) = rooms.remove_unclaimed(started).await {
                tracing::warn!(error = %e, "could not remove memberships of the previous run");
            }
        });
        Ok(())
    }

    async fn remove_unclaimed(
        &self,
        started: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let gone = self.store.clear_stale_members(&self.node, started).await?;
        if !gone.is_empty() {
            tracing::info!(count = gone.len(), node = %self.node, "removed memberships left over from the previous run");
        }
        for (room_id, user) in &gone {
            let mut room = self.hub.lock(room_id).await;
            announce_left(&mut room, user, room_id);
        }
        Ok(())
    }

    /// Removes the membership and tells the remaining connections.
    async fn depart(
        &self,
        room: &mut RoomGuard<'_>,
        user: &UserInfo,
        room_id: &RoomId,
    ) -> Result<(), StoreError> {
        if self.store.leave_room(room_id, &user.user_id).await? {
            announce_left(room, user, room_id);
        }
        Ok(())
    }

    /// `sendRoomMessage` from a connection that has joined `room_id`:
    /// checks the message and queues it for the group committer, which
    /// stores it with the room's next seq and then fans it out. The returned
    /// [`Outcome`] arrives after the commit; awaiting it is the caller's
    /// choice, so one connection can have many sends in flight.
    pub async fn send(
        &self,
        caller: &Caller,
        room_id: RoomId,
        message: OutgoingMessage,
        config: &SendConfig,
        client_message_id: Option<ClientMessageId>,
    ) -> Result<Outcome, RoomError> {
        self.check_size(&message)?;
        // Checked before storing: a refused message leaves no trace.
        self.rates
            .message(&caller.user.user_id)
            .map_err(RoomError::RateLimited)?;
        let pending = Pending {
            room_id,
            sender: caller.user.user_id.clone(),
            kind: message.kind,
            body: message.message,
            extended_data: message.extended_data,
            priority: config.priority,
            client_message_id,
        };
        Ok(self.committer.enqueue(pending, caller.conn).await?)
    }

    fn check_size(&self, message: &OutgoingMessage) -> Result<(), RoomError> {
        use crate::domain::MessageType::*;
        let limit = match message.kind {
            Text | Custom => self.limits.text_bytes,
            Command | Barrage => self.limits.command_bytes,
        };
        if message.message.len() > limit {
            return Err(RoomError::TooLarge(format!(
                "message.message: {} bytes is above the {limit}-byte limit for {} messages",
                message.message.len(),
                message.kind.as_str()
            )));
        }
        if message.extended_data.len() > self.limits.extended_data_bytes {
            return Err(RoomError::TooLarge(format!(
                "message.extendedData: {} bytes is above the {}-byte limit",
                message.extended_data.len(),
                self.limits.extended_data_bytes
            )));
        }
        if message.message.contains('\0') || message.extended_data.contains('\0') {
            return Err(RoomError::Invalid(
                "message: must not contain NUL characters".into(),
            ));
        }
        Ok(())
    }

    /// Fails with `not_in_room` unless this connection has joined the room.
    pub async fn require_joined(&self, caller: &Caller, room_id: &RoomId) -> Result<(), RoomError> {
        if self.hub.lock(room_id).await.contains(caller.conn) {
            Ok(())
        } else {
            Err(RoomError::NotInRoom(room_id.clone()))
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Pages history for a member (`queryHistoryMessage`).
    pub async fn history(
        &self,
        caller: &Caller,
        room_id: &RoomId,
        cursor: HistoryCursor,
        count: u32,
    ) -> Result<(Vec<RoomMessage>, bool), RoomError> {
        self.require_joined(caller, room_id).await?;
        Ok(self
            .store
            .message_page(room_id, cursor, count, TimeRange::default())
            .await?)
    }
}

/// Tells the room's connections that a user left; the leaver is no longer subscribed.
fn announce_left(room: &mut RoomGuard<'_>, user: &UserInfo, room_id: &RoomId) {
    let event = Event::RoomMemberLeft {
        room_id,
        member_list: std::slice::from_ref(user),
    };
    room.broadcast(&Frame::from(event.to_json()), None);
}

fn entered(room_id: &RoomId, joined: Joined, since_seq: Option<i64>) -> Entered {
    Entered {
        room_info: RoomInfo {
            room_id: room_id.clone(),
            room_name: joined.room_name,
        },
        last_seq: joined.last_seq,
        catch_up_after: since_seq.filter(|since| *since < joined.last_seq),
    }
}

fn validate_attributes(attributes: Option<&BTreeMap<String, String>>) -> Result<Value, RoomError> {
    let Some(attributes) = attributes else {
        return Ok(Value::Object(Default::default()));
    };
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(RoomError::Invalid(format!(
            "config.roomAttributes: at most {MAX_ATTRIBUTES} attributes, got {}",
            attributes.len()
        )));
    }
    for (key, value) in attributes {
        if key.is_empty() || key.len() > MAX_ATTRIBUTE_KEY_BYTES {
            return Err(RoomError::Invalid(format!(
                "config.roomAttributes: keys must be 1-{MAX_ATTRIBUTE_KEY_BYTES} bytes, got {key:?}"
            )));
        }
        if value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
            return Err(RoomError::Invalid(format!(
                "config.roomAttributes.{key}: values must be at most {MAX_ATTRIBUTE_VALUE_BYTES} bytes"
            )));
        }
        if key.contains('\0') || value.contains('\0') {
            return Err(RoomError::Invalid(
                "config.roomAttributes: must not contain NUL characters".into(),
            ));
        }
    }
    Ok(serde_json::to_value(attributes).expect("string maps serialize"))
}
