//! sendRoomMessage and queryHistoryMessage: the checks a message must pass,
//! then group commit: concurrent sends, to one room or many, share a
//! transaction, and each room's new messages leave as one event.
//!
//! Senders submit a message and get a receiver for its outcome. Rooms are
//! spread over a few committer tasks by a hash of the room id; each task
//! takes whatever is queued for its rooms (up to [`MAX_BATCH`]), locks the
//! batch's rooms in the hub (in room order, so committers never deadlock
//! with each other or with joins), stores the batch in one transaction that
//! hands each room a contiguous seq range, and after the commit fans out one
//! event per room with all of that room's new messages, then answers the
//! senders.
//!
//! One task per room keeps a connection's messages to a room in the order
//! it sent them, even with many in flight. Holding the rooms across commit
//! and fan-out keeps joins exact: a join sees either a message's seq in its
//! `lastSeq` (and catches it up) or the message's event (held for it), never
//! both and never neither. Several tasks run at once, so a slow transaction
//! for some rooms does not stop unrelated rooms.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use super::hub::{Hub, RoomGuard};
use super::{Caller, RoomError, Rooms};
use crate::domain::{HistoryCursor, MessageType, RoomId, RoomMessage, TimeRange};
use crate::metrics::Metrics;
use crate::outbox::{ConnId, Frame};
use crate::protocol::ops::{OutgoingMessage, SendMessage};
use crate::protocol::{self, Event, MessageList};
use crate::store::{Appended, PageRequest, Pending, Store, StoreError};

/// Messages stored per transaction at most.
const MAX_BATCH: usize = 256;
/// Committer tasks, each owning a share of the rooms.
const COMMITTERS: usize = 4;

/// The outcome of one submitted message, once its batch is committed.
pub(crate) type Outcome = oneshot::Receiver<Result<Appended, StoreError>>;

impl Rooms {
    /// `sendRoomMessage` from a connection that has joined the room: checks
    /// the message and queues it for the group committer, which stores it
    /// with the room's next seq and then fans it out. The returned
    /// [`Outcome`] arrives after the commit; awaiting it is the caller's
    /// choice, so one connection can have many sends in flight.
    pub(crate) async fn send(
        &self,
        caller: &Caller,
        send: SendMessage,
    ) -> Result<Outcome, RoomError> {
        self.check_size(&send.message)?;
        // Checked before storing: a refused message leaves no trace.
        self.rates
            .message(&caller.user.user_id)
            .map_err(RoomError::RateLimited)?;
        let pending = Pending {
            room_id: send.room_id,
            sender: caller.user.user_id.clone(),
            kind: send.message.kind,
            body: send.message.message,
            extended_data: send.message.extended_data,
            priority: send.priority,
            client_message_id: send.client_message_id,
        };
        Ok(self.committer.enqueue(pending, caller.conn).await?)
    }

    fn check_size(&self, message: &OutgoingMessage) -> Result<(), RoomError> {
        let limits = &self.settings.message_limits;
        let limit = match message.kind {
            MessageType::Text | MessageType::Custom => limits.text_bytes,
            MessageType::Command | MessageType::Barrage => limits.command_bytes,
        };
        if message.message.len() > limit {
            return Err(RoomError::TooLarge(format!(
                "message.message: {} bytes is above the {limit}-byte limit for {} messages",
                message.message.len(),
                message.kind.as_str()
            )));
        }
        if message.extended_data.len() > limits.extended_data_bytes {
            return Err(RoomError::TooLarge(format!(
                "message.extendedData: {} bytes is above the {}-byte limit",
                message.extended_data.len(),
                limits.extended_data_bytes
            )));
        }
        if message.message.contains('\0') || message.extended_data.contains('\0') {
            return Err(RoomError::Invalid(
                "message: must not contain NUL characters".into(),
            ));
        }
        Ok(())
    }

    /// `queryHistoryMessage`: a page of the room's current life for a
    /// member, serialized and within the page budget.
    pub(crate) async fn history(
        &self,
        caller: &Caller,
        room_id: &RoomId,
        cursor: HistoryCursor,
        count: u32,
    ) -> Result<(Vec<Box<RawValue>>, bool), RoomError> {
        let floor = self.require_joined(caller, room_id).await?;
        let page = self.page(cursor, count, floor);
        let (messages, more) = self.store.message_page(room_id, page).await?;
        let budget = self.settings.history_page_bytes;
        let (page, cut) = protocol::bounded_page(&messages, budget, cursor.is_backwards());
        Ok((page, more || cut))
    }

    /// A member's page request: the room's current life, the page budget.
    pub(super) fn page(&self, cursor: HistoryCursor, limit: u32, floor: i64) -> PageRequest {
        PageRequest {
            cursor,
            limit,
            range: TimeRange::default(),
            floor,
            max_bytes: self.settings.history_page_bytes as i64,
        }
    }
}

/// One message waiting to be stored.
struct Submission {
    message: Pending,
    /// The sending connection, which gets the reply instead of the event.
    from: ConnId,
    done: oneshot::Sender<Result<Appended, StoreError>>,
}

/// Handle to the committer tasks; dropping every handle stops them.
#[derive(Debug, Clone)]
pub(super) struct Committer {
    shards: Arc<[mpsc::Sender<Submission>]>,
    hasher: RandomState,
}

impl Committer {
    pub(super) fn start(store: Store, hub: Arc<Hub>, metrics: Arc<Metrics>) -> Self {
        let shards = (0..COMMITTERS)
            .map(|_| {
                let (queue, mut rx) = mpsc::channel::<Submission>(MAX_BATCH * 4);
                let (store, hub, metrics) = (store.clone(), hub.clone(), metrics.clone());
                tokio::spawn(async move {
                    let mut batch = Vec::with_capacity(MAX_BATCH);
                    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                        metrics.commit_batch_messages.observe(batch.len() as f64);
                        commit(&store, &hub, std::mem::take(&mut batch)).await;
                    }
                });
                queue
            })
            .collect();
        Self {
            shards,
            hasher: RandomState::new(),
        }
    }

    /// Queues one message for storing (after commit it is fanned out to
    /// the room) and returns where its outcome will arrive: the stored
    /// message, or the original for a resent `clientMessageID`. Waits only
    /// when the room's committer is backed up. Messages queued by one task
    /// for one room are stored in the order they were queued.
    async fn enqueue(&self, message: Pending, from: ConnId) -> Result<Outcome, StoreError> {
        let shard = self.hasher.hash_one(&message.room_id) as usize % self.shards.len();
        let (done, outcome) = oneshot::channel();
        let submission = Submission {
            message,
            from,
            done,
        };
        self.shards[shard]
            .send(submission)
            .await
            .map_err(|_| StoreError::closed())?;
        Ok(outcome)
    }
}

/// Stores one batch with its rooms locked, fans out, answers the senders.
async fn commit(store: &Store, hub: &Hub, batch: Vec<Submission>) {
    let rooms: BTreeSet<RoomId> = batch.iter().map(|s| s.message.room_id.clone()).collect();
    let mut guards: Vec<RoomGuard<'_>> = Vec::with_capacity(rooms.len());
    for room in &rooms {
        guards.push(hub.lock(room).await);
    }
    let (messages, waiting): (Vec<Pending>, Vec<_>) = batch
        .into_iter()
        .map(|s| (s.message, (s.from, s.done)))
        .unzip();
    let outcomes = store_batch(store, &messages).await;
    // One pass over the batch groups what each room stored, in batch (so
    // seq) order.
    let mut stored: BTreeMap<&RoomId, Vec<(ConnId, &RoomMessage)>> = BTreeMap::new();
    for ((from, _), outcome) in waiting.iter().zip(&outcomes) {
        if let Ok(Appended::Stored(m)) = outcome {
            stored.entry(&m.room_id).or_default().push((*from, m));
        }
    }
    for guard in &mut guards {
        if let Some(messages) = stored.get(guard.room_id()) {
            fan_out(guard, messages);
        }
    }
    drop(guards);
    for ((_, done), outcome) in waiting.into_iter().zip(outcomes) {
        let _ = done.send(outcome);
    }
}

/// Each message's outcome, in batch order.
async fn store_batch(store: &Store, messages: &[Pending]) -> Vec<Result<Appended, StoreError>> {
    match store.append_batch(messages).await {
        Ok(appended) => appended.into_iter().map(Ok).collect(),
        // Another roomd on the same database raced a clientMessageID into
        // this batch: store one by one, which resolves each duplicate.
        Err(StoreError::Fault(_)) if messages.len() > 1 => {
            let mut one_by_one = Vec::with_capacity(messages.len());
            for message in messages {
                let appended = store.append_batch(std::slice::from_ref(message)).await;
                one_by_one.push(appended.map(|mut v| v.remove(0)));
            }
            one_by_one
        }
        Err(e) => {
            tracing::warn!(error = %e, messages = messages.len(), "storing a batch failed");
            messages.iter().map(|_| Err(e.clone())).collect()
        }
    }
}

/// Sends a room the messages one batch stored for it (in seq order, as the
/// store assigned them in batch order), as one event serialized once. A
/// sender gets the others' messages of the batch but not its own.
fn fan_out(room: &mut RoomGuard<'_>, stored: &[(ConnId, &RoomMessage)]) {
    let Some(room_id) = stored.first().map(|(_, m)| &m.room_id) else {
        return;
    };
    let frame = |list: &[&RoomMessage]| {
        Frame::from(
            Event::MessagesReceived {
                room_id,
                message_list: MessageList::Committed(list),
            }
            .to_json(),
        )
    };
    let all: Vec<&RoomMessage> = stored.iter().map(|(_, m)| *m).collect();
    let mut senders: Vec<ConnId> = stored.iter().map(|(from, _)| *from).collect();
    senders.sort_unstable();
    senders.dedup();
    let instead: Vec<(ConnId, Option<Frame>)> = senders
        .into_iter()
        .map(|sender| {
            let others: Vec<&RoomMessage> = stored
                .iter()
                .filter(|(from, _)| *from != sender)
                .map(|(_, m)| *m)
                .collect();
            (sender, (!others.is_empty()).then(|| frame(&others)))
        })
        .collect();
    room.broadcast_with(&frame(&all), &instead);
}
