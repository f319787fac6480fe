//! createRoom, joinRoom and enterRoom: one path. The connection is
//! subscribed with its events held; the session queues the reply, then
//! [`Rooms::finish_entry`] streams the `sinceSeq` catch-up and releases the
//! held events, so the client sees reply, catch-up, live, with no gap.

use std::collections::BTreeMap;

use serde_json::Value;

use super::hub::{RoomGuard, Subscriber};
use super::{Caller, RoomError, Rooms};
use crate::config::MAX_DESTROY_DELAY;
use crate::domain::{HistoryCursor, RoomId, RoomInfo, UserId};
use crate::outbox::Frame;
use crate::protocol::ops::{Entry, EntryMode, NewRoom};
use crate::protocol::{self, Event, MessageList};
use crate::store::{self, Joined, StoreError};

/// Room attributes, as ZIM bounds them.
const MAX_ATTRIBUTES: usize = 20;
const MAX_ATTRIBUTE_KEY_BYTES: usize = 16;
const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024;
/// Messages per catch-up event when a join asks for `sinceSeq`.
const CATCH_UP_PAGE: u32 = 100;

/// A successful entry. The connection's events are held until
/// [`Rooms::finish_entry`].
#[derive(Debug)]
#[must_use = "the connection stays on hold until finish_entry"]
pub(crate) struct Entered {
    pub(crate) room_info: RoomInfo,
    pub(crate) last_seq: i64,
    /// Where the history of the room's current life starts.
    pub(crate) first_seq: i64,
    /// Deliver stored messages after this seq, up to `last_seq`.
    catch_up_after: Option<i64>,
}

impl Rooms {
    /// Makes the caller a member (creating the room if the entry says so)
    /// and subscribes the connection, events held.
    pub(crate) async fn enter(&self, caller: &Caller, entry: &Entry) -> Result<Entered, RoomError> {
        let (room_id, user) = (&entry.room_id, &caller.user.user_id);
        let store_entry = match &entry.mode {
            EntryMode::Join => store::Entry::Join,
            EntryMode::Enter(new) => store::Entry::CreateOrJoin(self.new_room(room_id, new, user)?),
            EntryMode::Create(new) => store::Entry::Create(self.new_room(room_id, new, user)?),
        };
        let mut room = self.hub.lock(room_id).await;
        let joined = self
            .store
            .enter_room(
                room_id,
                store_entry,
                &caller.user,
                &self.settings.node,
                self.settings.join_limits,
            )
            .await
            .map_err(|e| RoomError::from_join(room_id, e))?;
        admit(&mut room, caller, &joined);
        // A sinceSeq from an earlier life resumes at this life's start.
        let since = entry.since_seq.map(|since| since.max(joined.first_seq - 1));
        Ok(Entered {
            room_info: RoomInfo {
                room_id: room_id.clone(),
                room_name: joined.room_name,
            },
            last_seq: joined.last_seq,
            first_seq: joined.first_seq,
            catch_up_after: since.filter(|since| *since < joined.last_seq),
        })
    }

    /// The room a create makes, checked.
    fn new_room<'r>(
        &self,
        room_id: &'r RoomId,
        new: &'r NewRoom,
        creator: &'r UserId,
    ) -> Result<store::NewRoom<'r>, RoomError> {
        let delay = match new.config.room_destroy_delay_time {
            Some(secs) if u64::from(secs) > MAX_DESTROY_DELAY.as_secs() => {
                return Err(RoomError::Invalid(format!(
                    "config.roomDestroyDelayTime: must be 0..={} seconds, got {secs}",
                    MAX_DESTROY_DELAY.as_secs()
                )));
            }
            Some(secs) => secs,
            None => self.settings.default_destroy_delay.as_secs() as u32,
        };
        Ok(store::NewRoom {
            room_id,
            created_by: creator,
            room_name: &new.room_name,
            destroy_delay_secs: delay as i32,
            attributes: validate_attributes(new.config.room_attributes.as_ref())?,
        })
    }

    /// Completes an entry after its reply is queued: streams the `sinceSeq`
    /// catch-up page by page (without holding the room, so senders are not
    /// slowed), then releases the events held meanwhile and goes live.
    ///
    /// Every message committed after the join has a seq above `last_seq`
    /// and was held, so catch-up plus held events have no gap and no
    /// duplicate.
    pub(crate) async fn finish_entry(
        &self,
        entered: Entered,
        caller: &Caller,
    ) -> Result<(), StoreError> {
        let room_id = &entered.room_info.room_id;
        let caught_up = match entered.catch_up_after {
            Some(after) => self.catch_up(caller, &entered, after).await,
            None => Ok(()),
        };
        self.hub.lock(room_id).await.go_live(caller.conn);
        caught_up
    }

    /// Sends the stored messages in `(after, last_seq]`, a page per event.
    async fn catch_up(
        &self,
        caller: &Caller,
        entered: &Entered,
        mut after: i64,
    ) -> Result<(), StoreError> {
        let (room_id, last) = (&entered.room_info.room_id, entered.last_seq);
        while after < last {
            let request = self.page(
                HistoryCursor::After(after),
                CATCH_UP_PAGE,
                entered.first_seq,
            );
            let (mut page, _) = self.store.message_page(room_id, request).await?;
            page.retain(|m| m.seq <= last);
            // Within the page budget as JSON too, from the oldest on.
            let budget = self.settings.history_page_bytes;
            let (serialized, _) = protocol::bounded_page(&page, budget, false);
            let Some(newest) = serialized.len().checked_sub(1).map(|i| &page[i]) else {
                break;
            };
            after = newest.seq;
            let event = Event::MessagesReceived {
                room_id,
                message_list: MessageList::Serialized(&serialized),
            };
            if !caller.outbox.send(Frame::from(event.to_json())).await {
                break;
            }
        }
        Ok(())
    }
}

/// Subscribes the connection (events held) and tells the others when a
/// user arrived.
fn admit(room: &mut RoomGuard<'_>, caller: &Caller, joined: &Joined) {
    if joined.newly_joined {
        let event = Event::MemberJoined {
            room_id: room.room_id(),
            member_list: std::slice::from_ref(&caller.user),
        };
        let frame = Frame::from(event.to_json());
        room.broadcast(&frame, Some(caller.conn));
    }
    let subscriber = Subscriber::joining(caller.user.user_id.clone(), caller.outbox.clone());
    room.subscribe(caller.conn, subscriber, joined.first_seq);
}

/// `config.roomAttributes`, checked against ZIM's bounds, as stored.
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
        validate_attribute(key, value)?;
    }
    Ok(serde_json::to_value(attributes).expect("string maps serialize"))
}

fn validate_attribute(key: &str, value: &str) -> Result<(), RoomError> {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn attributes_are_bounded_as_zim_bounds_them() {
        assert_eq!(validate_attributes(None).unwrap(), serde_json::json!({}));
        let ok = attributes(&[("topic", "maths"), (&"k".repeat(16), &"v".repeat(1024))]);
        assert!(validate_attributes(Some(&ok)).is_ok());
        let long_key = "k".repeat(17);
        for bad in [
            attributes(&[("", "v")]),
            attributes(&[(&long_key, "v")]),
            attributes(&[("k", &"v".repeat(1025))]),
            attributes(&[("k", "a\0b")]),
        ] {
            assert!(matches!(
                validate_attributes(Some(&bad)),
                Err(RoomError::Invalid(_))
            ));
        }
        let many: BTreeMap<String, String> =
            (0..21).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(validate_attributes(Some(&many)).is_err());
        let twenty: BTreeMap<String, String> =
            (0..20).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(validate_attributes(Some(&twenty)).is_ok());
    }
}
