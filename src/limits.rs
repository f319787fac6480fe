//! Abuse limits: request, message and login rates (governor) and how many
//! connections are open, kept in memory; and the size and count limits that
//! rooms check ([`MessageLimits`]) or the database decides ([`JoinLimits`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Limits;
use crate::domain::UserId;

/// Sizes a message may have; see `Limits` for their settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MessageLimits {
    /// `text` and `custom` bodies, in bytes.
    pub(crate) text_bytes: usize,
    /// `command` and `barrage` bodies, in bytes.
    pub(crate) command_bytes: usize,
    pub(crate) extended_data_bytes: usize,
}

impl From<&Limits> for MessageLimits {
    fn from(limits: &Limits) -> Self {
        Self {
            text_bytes: limits.max_text_bytes,
            command_bytes: limits.max_command_bytes,
            extended_data_bytes: limits.max_extended_data_bytes,
        }
    }
}

/// Count limits checked inside the transaction that joins a user or creates
/// a room, so the database decides them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JoinLimits {
    pub(crate) max_rooms_per_user: u32,
    pub(crate) max_members_per_room: u32,
    pub(crate) max_rooms: u32,
}

impl From<&Limits> for JoinLimits {
    fn from(limits: &Limits) -> Self {
        Self {
            max_rooms_per_user: limits.max_rooms_per_user,
            max_members_per_room: limits.max_members_per_room,
            max_rooms: limits.max_rooms,
        }
    }
}

/// Over a rate limit: how long until the next request would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limited {
    pub(crate) retry_after: Duration,
}

fn quota(per_second: NonZeroU32, burst: NonZeroU32) -> Quota {
    Quota::per_second(per_second).allow_burst(burst)
}

/// The rate limiters shared by every connection of this process.
#[derive(Debug)]
pub(crate) struct RateLimits {
    request_quota: Quota,
    abuse_quota: Quota,
    messages: DefaultKeyedRateLimiter<UserId>,
    logins: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl RateLimits {
    pub(crate) fn new(limits: &Limits) -> Self {
        let abuse_period = limits.abuse_window / limits.abuse_limit.get();
        let abuse_quota = Quota::with_period(abuse_period.max(Duration::from_nanos(1)))
            .expect("period is positive")
            .allow_burst(limits.abuse_limit);
        Self {
            request_quota: quota(limits.requests_per_second, limits.requests_burst),
            abuse_quota,
            messages: RateLimiter::keyed(quota(limits.messages_per_second, limits.messages_burst)),
            logins: RateLimiter::keyed(Quota::per_second(limits.logins_per_second)),
            clock: DefaultClock::default(),
        }
    }

    /// Limits for one new connection.
    pub(crate) fn for_connection(&self) -> ConnectionRates {
        ConnectionRates {
            requests: RateLimiter::direct(self.request_quota),
            abuse: RateLimiter::direct(self.abuse_quota),
            clock: self.clock.clone(),
        }
    }

    /// One message from this user, whichever connection it comes from.
    pub(crate) fn message(&self, user: &UserId) -> Result<(), Limited> {
        check_keyed(&self.messages, user, &self.clock)
    }

    /// One login attempt from this address.
    pub(crate) fn login(&self, ip: IpAddr) -> Result<(), Limited> {
        check_keyed(&self.logins, &ip, &self.clock)
    }

    /// Forgets users and addresses that have been quiet long enough that
    /// their limiter is back at full burst, so the maps do not grow forever.
    pub(crate) fn forget_idle(&self) {
        self.messages.retain_recent();
        self.messages.shrink_to_fit();
        self.logins.retain_recent();
        self.logins.shrink_to_fit();
    }
}

fn check_keyed<K: Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
    clock: &DefaultClock,
) -> Result<(), Limited> {
    limiter.check_key(key).map_err(|not_until| Limited {
        retry_after: not_until.wait_time_from(clock.now()),
    })
}

/// The per-connection limiters.
#[derive(Debug)]
pub(crate) struct ConnectionRates {
    requests: DefaultDirectRateLimiter,
    /// Counts refused requests; running out means the client ignores limits.
    abuse: DefaultDirectRateLimiter,
    clock: DefaultClock,
}

impl ConnectionRates {
    /// One request on this connection.
    pub(crate) fn request(&self) -> Result<(), Limited> {
        self.requests.check().map_err(|not_until| Limited {
            retry_after: not_until.wait_time_from(self.clock.now()),
        })
    }

    /// Records a refused request; false once the connection has been
    /// refused too often within the abuse window.
    pub(crate) fn tolerate_refusal(&self) -> bool {
        self.abuse.check().is_ok()
    }
}

/// Open connections, in total and per logged-in user.
#[derive(Debug)]
pub(crate) struct Connections {
    total: AtomicU32,
    max_total: u32,
    per_user: Mutex<HashMap<UserId, u32>>,
    max_per_user: u32,
}

/// Holds one place among the open connections until dropped.
#[derive(Debug)]
pub(crate) struct ConnectionSlot(Arc<Connections>);

/// Holds one of a user's connection places until dropped.
#[derive(Debug)]
pub(crate) struct UserSlot(Arc<Connections>, UserId);

impl Connections {
    pub(crate) fn new(max_total: u32, max_per_user: u32) -> Arc<Self> {
        Arc::new(Self {
            total: AtomicU32::new(0),
            max_total,
            per_user: Mutex::default(),
            max_per_user,
        })
    }

    /// A place for a new connection, unless the process is full.
    pub(crate) fn open(self: &Arc<Self>) -> Option<ConnectionSlot> {
        self.total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_total).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionSlot(self.clone()))
    }

    /// A place for one more connection of this user, unless they have
    /// reached their limit.
    pub(crate) fn log_in(self: &Arc<Self>, user: &UserId) -> Option<UserSlot> {
        let mut per_user = self.per_user.lock().expect("connection counts poisoned");
        let count = per_user.entry(user.clone()).or_insert(0);
        if *count >= self.max_per_user {
            return None;
        }
        *count += 1;
        Some(UserSlot(self.clone(), user.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.total.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut per_user = self.0.per_user.lock().expect("connection counts poisoned");
        if let Some(count) = per_user.get_mut(&self.1) {
            *count -= 1;
            if *count == 0 {
                per_user.remove(&self.1);
            }
        }
    }
}
