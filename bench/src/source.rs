//! Client source addresses. One address has about 28,000 ephemeral ports
//! (Linux's default `ip_local_port_range`), fewer than a fan-out run across
//! three servers needs; all of 127.0.0.0/8 is loopback, so clients spread
//! over 127.0.0.1..=127.0.0.N instead.

use std::net::Ipv4Addr;

/// For scenarios that open few enough connections not to spread them.
pub const FIRST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// The source address of connection `i` when a run spreads over `sources`.
pub fn nth(i: usize, sources: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 1 + (i % sources.max(1) as usize) as u8)
}
