//! Query strings of the REST routes: known names only, each at most once,
//! values checked with an error that names the parameter.

use chrono::{DateTime, Utc};

use super::error::ApiError;
use crate::domain::UserId;

/// Query parameters as name → value, refusing repeats and unknown names.
#[derive(Debug)]
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: &str, known: &[&str]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
            .into_owned()
            .collect();
        let mut seen: Vec<&str> = Vec::with_capacity(pairs.len());
        for (name, _) in &pairs {
            if !known.contains(&name.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "{name}: unknown query parameter (known: {})",
                    known.join(", ")
                )));
            }
            if seen.contains(&name.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "{name}: given more than once"
                )));
            }
            seen.push(name);
        }
        Ok(Self(pairs))
    }

    /// The value, if given and not empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn seq(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    ApiError::BadRequest(format!("{name}: must be a non-negative integer"))
                })
            })
            .transpose()
    }

    pub(crate) fn count(&self, name: &str, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("{name}: must be an integer 1..={max}"))
                }),
        }
    }

    /// A member-list flag: the last userID of the page before, so nothing
    /// else (a NUL above all) ever reaches the database.
    pub(crate) fn flag(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.get(name) {
            Some(flag) if UserId::parse(flag).is_err() => Err(ApiError::BadRequest(format!(
                "{name}: not a flag this server gave; pass the nextFlag of the page before"
            ))),
            flag => Ok(flag),
        }
    }

    pub(crate) fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.get(name)
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| {
                        ApiError::BadRequest(format!("{name}: not an RFC 3339 time ({e})"))
                    })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(result: Result<impl std::fmt::Debug, ApiError>) -> String {
        match result {
            Err(ApiError::BadRequest(message)) => message,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn names_must_be_known_and_given_once() {
        let known = &["limit", "beforeSeq"];
        assert!(Query::parse("limit=5&beforeSeq=3", known).is_ok());
        assert!(refused(Query::parse("lmit=5", known)).starts_with("lmit: unknown"));
        assert!(refused(Query::parse("limit=5&limit=6", known)).contains("more than once"));
    }

    #[test]
    fn values_are_checked_and_empty_means_absent() {
        let q = Query::parse(
            "limit=&beforeSeq=7&since=2026-01-02T03:04:05Z",
            &["limit", "beforeSeq", "since"],
        )
        .unwrap();
        assert_eq!(q.count("limit", 50, 1000).unwrap(), 50);
        assert_eq!(q.seq("beforeSeq").unwrap(), Some(7));
        assert!(q.time("since").unwrap().is_some());
        let bad = Query::parse(
            "limit=0&beforeSeq=-1&since=yesterday",
            &["limit", "beforeSeq", "since"],
        )
        .unwrap();
        assert!(refused(bad.count("limit", 50, 1000)).starts_with("limit:"));
        assert!(refused(bad.seq("beforeSeq")).starts_with("beforeSeq:"));
        assert!(refused(bad.time("since")).starts_with("since:"));
        let flags = Query::parse("nextFlag=bob&other=a%00b", &["nextFlag", "other"]).unwrap();
        assert_eq!(flags.flag("nextFlag").unwrap(), Some("bob"));
        assert!(refused(flags.flag("other")).starts_with("other:"));
        let big = Query::parse("limit=1001", &["limit"]).unwrap();
        assert!(big.count("limit", 50, 1000).is_err());
        let encoded = Query::parse("limit=%31%30", &["limit"]).unwrap();
        assert_eq!(encoded.count("limit", 50, 1000).unwrap(), 10);
    }
}
