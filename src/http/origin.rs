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
pub(crate) struct OriginPolicy {
    mode: Mode,
    /// `--allowed-origins`, normalized: pages of these may connect (in open
    /// mode besides same-origin ones, e.g. a dev server on another port).
    allowed: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Open mode on a loopback address: a loopback `Host`, and an `Origin`
    /// (when a browser sends one) of that same host.
    OpenLoopback,
    /// Open mode with `--insecure-open`: any `Host`, same-origin pages only.
    OpenAnyHost,
    /// Secured mode: pages of the allowed origins only; none listed, any.
    Secured,
}

impl OriginPolicy {
    pub(crate) fn new(open: bool, loopback: bool, allowed: &[String]) -> Self {
        let mode = match (open, loopback) {
            (true, true) => Mode::OpenLoopback,
            (true, false) => Mode::OpenAnyHost,
            (false, _) => Mode::Secured,
        };
        let allowed = allowed.iter().filter_map(|o| normalize_origin(o)).collect();
        Self { mode, allowed }
    }

    /// Refuses a request this policy does not answer. `websocket`: the
    /// request is a `/v1/ws` handshake (secured mode checks only those).
    pub(crate) fn check(&self, headers: &HeaderMap, websocket: bool) -> Result<(), ApiError> {
        let host = header(headers, "host");
        let origin = header(headers, "origin");
        if let Mode::OpenLoopback = self.mode
            && !host.is_some_and(is_loopback_host)
        {
            return Err(ApiError::Forbidden(
                "in open mode roomd answers only requests for a loopback Host".into(),
            ));
        }
        let Some(origin) = origin else {
            // Not a web page's request.
            return Ok(());
        };
        let origin = normalize_origin(origin);
        let listed = origin.as_ref().is_some_and(|o| self.allowed.contains(o));
        match self.mode {
            Mode::Secured if !websocket || self.allowed.is_empty() || listed => Ok(()),
            Mode::Secured => Err(ApiError::Forbidden(
                "pages of this origin may not connect (--allowed-origins)".into(),
            )),
            _ if listed || origin.is_some_and(|o| same_origin(&o, host)) => Ok(()),
            _ => Err(ApiError::Forbidden(
                "in open mode only pages served by this roomd (or --allowed-origins) may connect"
                    .into(),
            )),
        }
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `scheme://host[:port]`, lowercase, without a trailing `/` or the
/// scheme's default port; `None` for what is not such an origin (`null`).
fn normalize_origin(origin: &str) -> Option<String> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = origin.split_once("://")?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => "",
    };
    let authority = authority
        .strip_suffix(default_port)
        .filter(|_| !default_port.is_empty())
        .unwrap_or(authority);
    Some(format!("{scheme}://{authority}"))
}

/// Whether a (normalized) origin is the host the request was sent to.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let (Some((scheme, authority)), Some(host)) = (origin.split_once("://"), host) else {
        return false;
    };
    normalize_origin(&format!("{scheme}://{host}"))
        .is_some_and(|h| h == format!("{scheme}://{authority}"))
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
        assert!(ok(Some("localhost:80"), Some("http://localhost")));
        assert!(ok(Some("LOCALHOST"), Some("http://localhost:80/")));
    }

    #[test]
    fn open_mode_also_lets_listed_origins_in() {
        let policy = OriginPolicy::new(true, true, &["http://localhost:5173".into()]);
        let vite = headers(Some("127.0.0.1:8080"), Some("http://localhost:5173"));
        assert!(policy.check(&vite, true).is_ok());
        let other = headers(Some("127.0.0.1:8080"), Some("http://localhost:3000"));
        assert!(policy.check(&other, true).is_err());
    }

    #[test]
    fn secured_mode_checks_websocket_origins_against_the_list_only() {
        let any = OriginPolicy::new(false, true, &[]);
        assert!(
            any.check(&headers(Some("x"), Some("https://a.example")), true)
                .is_ok()
        );
        let listed = OriginPolicy::new(false, false, &["https://app.example:443/".into()]);
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
