//! Which `Host` and `Origin` headers roomd answers.
//!
//! In open mode anyone who reaches roomd can act as anyone, so the reach
//! must really be the local user's: a web page on another site must not
//! open `/v1/ws` (Origin), and a DNS-rebinding name must not reach REST or
//! `/metrics` (Host). In secured mode a page needs a token to log in, so
//! pages from any origin may connect unless `--allowed-origins` says which.

use warp::http::HeaderMap;

use super::error::ApiError;

#[derive(Debug, Clone)]
pub(crate) enum OriginPolicy {
    /// Open mode on a loopback address: a loopback `Host`, and an `Origin`
    /// (when a browser sends one) of that same host.
    OpenLoopback,
    /// Open mode with `--insecure-open`: any `Host`, same-origin pages only.
    OpenAnyHost,
    /// Secured mode: pages of these origins only; empty, any.
    Secured(Vec<String>),
}

impl OriginPolicy {
    pub(crate) fn new(open: bool, loopback: bool, allowed: &[String]) -> Self {
        match (open, loopback) {
            (true, true) => Self::OpenLoopback,
            (true, false) => Self::OpenAnyHost,
            (false, _) => Self::Secured(
                allowed
                    .iter()
                    .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                    .collect(),
            ),
        }
    }

    /// Refuses a request this policy does not answer. `websocket`: the
    /// request is a `/v1/ws` handshake (secured mode checks only those).
    pub(crate) fn check(&self, headers: &HeaderMap, websocket: bool) -> Result<(), ApiError> {
        let host = header(headers, "host");
        let origin = header(headers, "origin");
        match self {
            Self::OpenLoopback => {
                if !host.is_some_and(is_loopback_host) {
                    return Err(ApiError::Forbidden(
                        "in open mode roomd answers only requests for a loopback Host".into(),
                    ));
                }
                same_origin(origin, host)
            }
            Self::OpenAnyHost => same_origin(origin, host),
            Self::Secured(allowed) => match origin {
                Some(origin) if websocket && !allowed.is_empty() => {
                    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
                    if allowed.contains(&origin) {
                        Ok(())
                    } else {
                        Err(ApiError::Forbidden(format!(
                            "pages of origin {origin} may not connect (--allowed-origins)"
                        )))
                    }
                }
                _ => Ok(()),
            },
        }
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Without an `Origin` the request is not a web page's; with one, the
/// page must come from the host it talks to.
fn same_origin(origin: Option<&str>, host: Option<&str>) -> Result<(), ApiError> {
    let Some(origin) = origin else {
        return Ok(());
    };
    let authority = origin.split_once("://").map(|(_, rest)| rest);
    match (authority, host) {
        (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(ApiError::Forbidden(
            "in open mode only pages served by this roomd may connect".into(),
        )),
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use warp::http::HeaderValue;

    use super::*;

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [("host", host), ("origin", origin)] {
            if let Some(value) = value {
                headers.insert(name, HeaderValue::from_str(value).unwrap());
            }
        }
        headers
    }

    #[test]
    fn open_mode_on_loopback_answers_only_loopback_hosts_and_its_own_pages() {
        let policy = OriginPolicy::new(true, true, &[]);
        let ok = |h, o| policy.check(&headers(h, o), true).is_ok();
        assert!(ok(Some("127.0.0.1:8080"), None));
        assert!(ok(Some("localhost:8080"), Some("http://localhost:8080")));
        assert!(ok(Some("[::1]:8080"), None));
        assert!(!ok(Some("attacker.example"), None));
        assert!(!ok(
            Some("attacker.example:8080"),
            Some("http://attacker.example:8080")
        ));
        assert!(!ok(None, None));
        assert!(!ok(Some("127.0.0.1:8080"), Some("http://evil.example")));
        assert!(!ok(Some("127.0.0.1:8080"), Some("null")));
    }

    #[test]
    fn secured_mode_checks_websocket_origins_against_the_list_only() {
        let any = OriginPolicy::new(false, true, &[]);
        assert!(
            any.check(&headers(Some("x"), Some("https://a.example")), true)
                .is_ok()
        );
        let listed = OriginPolicy::new(false, false, &["https://app.example/".into()]);
        assert!(
            listed
                .check(&headers(Some("x"), Some("https://APP.example")), true)
                .is_ok()
        );
        assert!(
            listed
                .check(&headers(Some("x"), Some("https://b.example")), true)
                .is_err()
        );
        assert!(listed.check(&headers(Some("x"), None), true).is_ok());
        assert!(
            listed
                .check(&headers(Some("x"), Some("https://b.example")), false)
                .is_ok()
        );
    }
}
