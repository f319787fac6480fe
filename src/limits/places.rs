//! Counted places: open connections in total and per key (a user for
//! WebSocket sessions, a client address for plain HTTP connections), each
//! count with its cap. A place is held by a value and given back when it
//! is dropped, so no path can forget to.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::domain::UserId;

/// WebSocket sessions: in the process, and per logged-in user.
pub(crate) type Connections = Places<UserId>;
/// Plain HTTP connections (and WebSocket sessions not yet logged in): in
/// the process, and per client address.
pub(crate) type HttpConnections = Places<IpAddr>;

/// What one unauthenticated connection holds among [`HttpConnections`].
pub(crate) type AddressPlaces = (Place<IpAddr>, KeyedPlace<IpAddr>);

#[derive(Debug)]
pub(crate) struct Places<K> {
    total: AtomicU32,
    max_total: u32,
    per_key: Mutex<HashMap<K, u32>>,
    /// 0: no cap per key.
    max_per_key: u32,
}

/// Holds one place in the total until dropped.
#[derive(Debug)]
pub(crate) struct Place<K: Hash + Eq>(Arc<Places<K>>);

/// Holds one of a key's places until dropped.
#[derive(Debug)]
pub(crate) struct KeyedPlace<K: Hash + Eq>(Arc<Places<K>>, K);

impl<K: Hash + Eq + Clone> Places<K> {
    pub(crate) fn new(max_total: u32, max_per_key: u32) -> Arc<Self> {
        Arc::new(Self {
            total: AtomicU32::new(0),
            max_total,
            per_key: Mutex::default(),
            max_per_key,
        })
    }

    /// A place in the total, unless it is full.
    pub(crate) fn open(self: &Arc<Self>) -> Option<Place<K>> {
        self.total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_total).then_some(n + 1)
            })
            .ok()
            .map(|_| Place(self.clone()))
    }

    /// One more place for `key`, unless it holds as many as allowed.
    pub(crate) fn claim(self: &Arc<Self>, key: &K) -> Option<KeyedPlace<K>> {
        let mut per_key = self.per_key.lock().expect("place counts poisoned");
        let count = per_key.entry(key.clone()).or_insert(0);
        if self.max_per_key != 0 && *count >= self.max_per_key {
            return None;
        }
        *count += 1;
        Some(KeyedPlace(self.clone(), key.clone()))
    }

    /// How many places are held in total.
    pub(crate) fn held(&self) -> u32 {
        self.total.load(Ordering::Acquire)
    }

    /// A place in the total and one of `key`'s, or neither.
    pub(crate) fn open_for(self: &Arc<Self>, key: &K) -> Option<(Place<K>, KeyedPlace<K>)> {
        let keyed = self.claim(key)?;
        Some((self.open()?, keyed))
    }
}

impl<K: Hash + Eq> Drop for Place<K> {
    fn drop(&mut self) {
        self.0.total.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<K: Hash + Eq> Drop for KeyedPlace<K> {
    fn drop(&mut self) {
        let mut per_key = self.0.per_key.lock().expect("place counts poisoned");
        if let Some(count) = per_key.get_mut(&self.1) {
            *count -= 1;
            if *count == 0 {
                per_key.remove(&self.1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_capped_in_total_and_per_key_and_come_back_when_dropped() {
        let places: Arc<Places<&str>> = Places::new(3, 2);
        let a1 = places.open_for(&"a").unwrap();
        let a2 = places.open_for(&"a").unwrap();
        assert!(places.open_for(&"a").is_none(), "a's cap");
        let b1 = places.open_for(&"b").unwrap();
        assert!(places.open_for(&"c").is_none(), "the total's cap");
        assert_eq!(places.total.load(Ordering::Acquire), 3);
        drop(a1);
        assert!(places.open_for(&"a").is_some(), "a place came back");
        drop((a2, b1));
        assert_eq!(places.total.load(Ordering::Acquire), 0);
        assert!(
            places.per_key.lock().unwrap().is_empty(),
            "no key kept at zero"
        );
        let unlimited: Arc<Places<&str>> = Places::new(10, 0);
        let held: Vec<_> = (0..10).map(|_| unlimited.claim(&"a").unwrap()).collect();
        assert_eq!(held.len(), 10);
    }
}
