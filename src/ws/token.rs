//! A session's token over its life: warned 30 s before it expires
//! (`tokenWillExpire`), closed with 4001 once it has expired (plus the
//! `--token-leeway`) unless `renewToken` brought a new one. Open mode has
//! no tokens.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// How long before expiry the client is told to renew, as in ZIM.
const WARN_BEFORE: Duration = Duration::from_secs(30);
/// Timers never reach further than this (a token may claim any `exp`).
const FARTHEST: Duration = Duration::from_secs(365 * 24 * 3600);

/// What happens when the token's timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenStep {
    /// Send `tokenWillExpire` with this many seconds left.
    Warn(u64),
    /// The token is gone: close the connection.
    Expire,
}

/// The token of a logged-in session.
#[derive(Debug, Clone)]
pub(super) struct TokenLife {
    /// Unix seconds.
    expires_at: u64,
    /// The clock skew tolerated past `expires_at` (`--token-leeway`).
    leeway: Duration,
    warned: bool,
}

impl TokenLife {
    pub(super) fn new(expires_at: u64, leeway: Duration) -> Self {
        Self {
            expires_at,
            leeway,
            warned: false,
        }
    }

    /// Unix milliseconds, for `renewToken`'s reply.
    pub(super) fn expires_at_ms(&self) -> u64 {
        self.expires_at.saturating_mul(1000)
    }

    /// When the timer fires next, and what it then does. The session ends
    /// at `exp` plus the leeway, measured from `exp` (a token accepted
    /// within its leeway gets only what is left of it).
    pub(super) fn next(&self) -> (Instant, TokenStep) {
        let expires = Duration::from_secs(self.expires_at);
        let left = expires.saturating_sub(unix_now()).min(FARTHEST);
        if self.warned {
            let ends = (expires + self.leeway)
                .saturating_sub(unix_now())
                .min(FARTHEST);
            return (Instant::now() + ends, TokenStep::Expire);
        }
        let warn_in = left.saturating_sub(WARN_BEFORE);
        let seconds_left = if warn_in.is_zero() {
            left.as_secs()
        } else {
            WARN_BEFORE.as_secs()
        };
        (Instant::now() + warn_in, TokenStep::Warn(seconds_left))
    }

    /// The warning went out; next is the expiry.
    pub(super) fn warned(&mut self) {
        self.warned = true;
    }
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_warned_about_thirty_seconds_ahead_then_expires_after_the_leeway() {
        let now = unix_now().as_secs();
        let mut life = TokenLife::new(now + 100, Duration::from_secs(30));
        let (at, step) = life.next();
        assert_eq!(step, TokenStep::Warn(30));
        let warn_in = at - Instant::now();
        assert!(warn_in > Duration::from_secs(68) && warn_in <= Duration::from_secs(70));
        life.warned();
        let (at, step) = life.next();
        assert_eq!(step, TokenStep::Expire);
        assert!(at - Instant::now() > Duration::from_secs(128));
    }

    #[test]
    fn a_token_past_its_exp_gets_only_what_is_left_of_the_leeway() {
        let now = unix_now().as_secs();
        let mut life = TokenLife::new(now.saturating_sub(20), Duration::from_secs(30));
        life.warned();
        let (at, step) = life.next();
        assert_eq!(step, TokenStep::Expire);
        assert!(at - Instant::now() <= Duration::from_secs(11));
        let (at, _) = TokenLife::new(u64::MAX, Duration::from_secs(30)).next();
        assert!(at > Instant::now());
    }

    #[test]
    fn a_token_with_little_left_is_warned_at_once_with_what_is_left() {
        let now = unix_now().as_secs();
        let (at, step) = TokenLife::new(now + 10, Duration::from_secs(30)).next();
        assert!(matches!(step, TokenStep::Warn(9 | 10)));
        assert!(at <= Instant::now());
        let (_, step) = TokenLife::new(now.saturating_sub(5), Duration::from_secs(30)).next();
        assert_eq!(step, TokenStep::Warn(0));
    }
}
