//! Where a page of history starts and which time window it covers: shared
//! by the WebSocket query, the REST route, the join catch-up and the store.

use chrono::{DateTime, Utc};

/// Where a page of history starts. Seqs are exclusive bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HistoryCursor {
    /// The newest messages.
    Latest,
    /// Messages with a seq below this one, newest first up to the page size.
    Before(i64),
    /// Messages with a seq above this one, oldest first up to the page size.
    After(i64),
}

impl HistoryCursor {
    /// The cursor for "at most one of `before` and `after`"; `None` when
    /// both are given, which has no meaning.
    pub(crate) fn from_bounds(before: Option<i64>, after: Option<i64>) -> Option<Self> {
        match (before, after) {
            (None, None) => Some(Self::Latest),
            (Some(before), None) => Some(Self::Before(before)),
            (None, Some(after)) => Some(Self::After(after)),
            (Some(_), Some(_)) => None,
        }
    }

    /// Whether the page runs towards older messages (so "more" lies before it).
    pub(crate) fn is_backwards(self) -> bool {
        !matches!(self, Self::After(_))
    }
}

/// Optional time window of a REST history query: `since <= created_at < until`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TimeRange {
    pub(crate) since: Option<DateTime<Utc>>,
    pub(crate) until: Option<DateTime<Utc>>,
}
