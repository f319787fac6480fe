//! Abuse limits: request, message and login rates (governor) and how many
//! connections are open, kept in memory; and the size and count limits that
//! rooms check ([`MessageLimits`]) or the database decides ([`JoinLimits`]).

mod places;

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
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
    pub(crate) max_created_rooms_per_user: u32,
    pub(crate) max_members_per_room: u32,
    pub(crate) max_rooms: u32,
}

impl From<&Limits> for JoinLimits {
    fn from(limits: &Limits) -> Self {
        Self {
            max_rooms_per_user: limits.max_rooms_per_user,
            max_created_rooms_per_user: limits.max_created_rooms_per_user,
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

/// The address limits are kept per: an IPv4 address, or the /64 network
/// of an IPv6 one (a single host may hold all 2^64 of its addresses).
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(network.into())
            }
        },
    }
}

/// Who a REST request's rate is counted against: the user of its token,
/// or its address when it has none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum RestClient {
    User(UserId),
    Address(IpAddr),
}

/// The rate limiters shared by every connection of this process.
#[derive(Debug)]
pub(crate) struct RateLimits {
    request_quota: Quota,
    abuse_quota: Quota,
    messages: DefaultKeyedRateLimiter<UserId>,
    logins: DefaultKeyedRateLimiter<IpAddr>,
    rest: DefaultKeyedRateLimiter<RestClient>,
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
            rest: RateLimiter::keyed(quota(
                limits.rest_requests_per_second,
                limits.rest_requests_burst,
            )),
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
        check_keyed(&self.logins, &address_key(ip), &self.clock)
    }

    /// One REST request from this client.
    pub(crate) fn rest(&self, client: &RestClient) -> Result<(), Limited> {
        let key = match client {
            RestClient::Address(ip) => RestClient::Address(address_key(*ip)),
            user => user.clone(),
        };
        check_keyed(&self.rest, &key, &self.clock)
    }

    /// Forgets users and addresses that have been quiet long enough that
    /// their limiter is back at full burst, so the maps do not grow forever.
    pub(crate) fn forget_idle(&self) {
        self.messages.retain_recent();
        self.messages.shrink_to_fit();
        self.logins.retain_recent();
        self.logins.shrink_to_fit();
        self.rest.retain_recent();
        self.rest.shrink_to_fit();
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

pub(crate) use places::{AddressPlaces, Connections, HttpConnections, KeyedPlace, Place};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_limited_per_64_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(address_key(v4), v4);
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(address_key(mapped), v4);
    }
}
