//! Group commit: concurrent sends, to one room or many, share a transaction.
//!
//! Senders submit a message and wait for its outcome. A few committer tasks
//! each take whatever is queued (up to [`MAX_BATCH`]), lock the batch's rooms
//! in the hub (in room order, so committers never deadlock), store the batch
//! in one transaction that hands each room a contiguous seq range, and after
//! the commit fan out every message in seq order and answer the senders.
//! Holding the rooms across commit and fan-out is what keeps joins exact: a
//! join sees either a message's seq in its `lastSeq` (and catches it up) or
//! the message's event (held for it), never both and never neither.
//!
//! Several committers run at once, so a slow transaction for some rooms does
//! not stop unrelated rooms; batches for the same room are ordered by the
//! room's hub lock.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::domain::{RoomId, RoomMessage};
use crate::hub::{ConnId, Hub, RoomGuard};
use crate::protocol::Event;
use crate::store::messages::{Appended, Pending};
use crate::store::{Store, StoreError};

/// Messages stored per transaction at most.
pub const MAX_BATCH: usize = 256;
/// Transactions in flight at once.
pub const COMMITTERS: usize = 4;

/// One message waiting to be stored.
pub struct Submission {
    pub message: Pending,
    /// The sending connection, which gets the reply instead of the event.
    pub from: ConnId,
    pub done: oneshot::Sender<Result<Appended, StoreError>>,
}

/// Handle to the committer tasks; dropping every handle stops them.
#[derive(Debug, Clone)]
pub struct Committer {
    queue: mpsc::Sender<Submission>,
}

impl Committer {
    pub fn start(store: Store, hub: Arc<Hub>) -> Self {
        let (queue, rx) = mpsc::channel::<Submission>(MAX_BATCH * COMMITTERS * 4);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..COMMITTERS {
            let (store, hub, rx) = (store.clone(), hub.clone(), rx.clone());
            tokio::spawn(async move {
                while let Some(batch) = next_batch(&rx).await {
                    commit(&store, &hub, batch).await;
                }
            });
        }
        Self { queue }
    }

    /// Stores one message (after commit, fanned out to the room) and
    /// returns the stored message, or the original for a resent
    /// `clientMessageID`.
    pub async fn submit(&self, message: Pending, from: ConnId) -> Result<Appended, StoreError> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Submission {
                message,
                from,
                done,
            })
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolClosed))?;
        outcome
            .await
            .unwrap_or(Err(StoreError::Unavailable(sqlx::Error::PoolClosed)))
    }
}

/// Waits for one submission, then takes what else is already queued.
async fn next_batch(rx: &Mutex<mpsc::Receiver<Submission>>) -> Option<Vec<Submission>> {
    let mut rx = rx.lock().await;
    let first = rx.recv().await?;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    Some(batch)
}

async fn commit(store: &Store, hub: &Hub, batch: Vec<Submission>) {
    let rooms: BTreeSet<RoomId> = batch.iter().map(|s| s.message.room_id.clone()).collect();
    let mut guards: Vec<RoomGuard<'_>> = Vec::with_capacity(rooms.len());
    for room in &rooms {
        guards.push(hub.lock(room).await);
    }
    let messages: Vec<Pending> = batch.iter().map(|s| s.message.clone()).collect();
    let outcome = match store.append_batch(&messages).await {
        // Another roomd on the same database raced a clientMessageID into
        // this batch: store one by one, which resolves each duplicate.
        Err(StoreError::Fault(_)) if messages.len() > 1 => {
            let mut one_by_one = Vec::with_capacity(messages.len());
            for message in &messages {
                one_by_one.push(
                    store
                        .append_batch(std::slice::from_ref(message))
                        .await
                        .map(|mut v| v.remove(0)),
                );
            }
            Ok(one_by_one)
        }
        Ok(appended) => Ok(appended.into_iter().map(Ok).collect()),
        Err(e) => Err(e),
    };
    let outcomes: Vec<Result<Appended, StoreError>> = match outcome {
        Ok(outcomes) => outcomes,
        Err(e) => {
            tracing::warn!(error = %e, messages = batch.len(), "storing a batch failed");
            let text = e.to_string();
            batch.iter().map(|_| Err(clone_error(&e, &text))).collect()
        }
    };
    // Fan out after the commit, in seq order (the batch is in seq order
    // within each room), each message serialized once.
    for (submission, outcome) in batch.iter().zip(&outcomes) {
        if let Ok(Appended::Stored(stored)) = outcome {
            let guard = guards
                .iter_mut()
                .find(|g| g.room_id() == &stored.room_id)
                .expect("every batch room is locked");
            fan_out(guard, stored, submission.from);
        }
    }
    drop(guards);
    for (submission, outcome) in batch.into_iter().zip(outcomes) {
        let _ = submission.done.send(outcome);
    }
}

fn fan_out(room: &mut RoomGuard<'_>, stored: &RoomMessage, from: ConnId) {
    let event = Event::RoomMessageReceived {
        room_id: &stored.room_id,
        message_list: std::slice::from_ref(stored),
    };
    room.broadcast(&Message::text(event.to_json()), Some(from));
}

/// Errors are not `Clone` (they wrap `sqlx::Error`); every sender of a
/// failed batch gets the same kind of error with the same text.
fn clone_error(e: &StoreError, text: &str) -> StoreError {
    let inner = sqlx::Error::Protocol(text.to_owned());
    match e {
        StoreError::Unavailable(_) => StoreError::Unavailable(inner),
        StoreError::Fault(_) => StoreError::Fault(inner),
    }
}
