//! HTTP routes: the WebSocket endpoint, REST history and room reads, health.
//!
//! REST handlers return their own JSON errors (`{"error": {...}}`, the same
//! object as WebSocket error replies) instead of warp rejections, so every
//! failure a client sees has a code, a reason and a message.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, protocol::WebSocketConfig};
use warp::http::{self, StatusCode};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::app::AppState;
use crate::auth::Reader;
use crate::domain::RoomId;
use crate::protocol::{ErrorBody, ErrorCode, HistoryCursor};
use crate::store::StoreError;
use crate::store::messages::TimeRange;

/// Largest REST history page.
const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 50;
/// `/readyz` gives the database this long to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// A REST failure: an HTTP status and the protocol's error object.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("not a member of room '{0}'")]
    Forbidden(RoomId),
    #[error("room '{0}' does not exist")]
    RoomNotFound(RoomId),
    #[error("no route for {0}")]
    NoRoute(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    fn status_and_body(&self) -> (StatusCode, ErrorBody) {
        let (status, code) = match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::NotInRoom),
            ApiError::RoomNotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::RoomNotFound),
            ApiError::NoRoute(_) => (StatusCode::NOT_FOUND, ErrorCode::UnknownOp),
            ApiError::Store(StoreError::Unavailable(e)) => {
                tracing::warn!(error = %e, "database unavailable");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorBody::new(ErrorCode::Unavailable, "database unavailable, retry later"),
                );
            }
            ApiError::Store(StoreError::Fault(e)) => {
                let correlation = crate::correlation_id();
                tracing::error!(%correlation, error = %e, "database fault");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorBody::new(
                        ErrorCode::Internal,
                        format!("internal error, correlation id {correlation}"),
                    ),
                );
            }
        };
        (status, ErrorBody::new(code, self.to_string()))
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.status_and_body();
        warp::reply::with_status(warp::reply::json(&json!({ "error": body })), status)
            .into_response()
    }
}

fn respond(result: Result<Value, ApiError>) -> Result<Response, Infallible> {
    Ok(match result {
        Ok(body) => warp::reply::json(&body).into_response(),
        Err(e) => e.into_response(),
    })
}

/// Every route roomd serves.
pub fn routes(
    app: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with_app = {
        let app = app.clone();
        warp::any().map(move || app.clone())
    };
    let authorization = warp::header::optional::<String>("authorization");
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();

    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&json!({ "status": "ok" })).into_response());

    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(with_app.clone())
        .then(|app: Arc<AppState>| async move {
            let ready = tokio::time::timeout(READY_TIMEOUT, app.rooms.store().ping()).await;
            match ready {
                Ok(Ok(())) => warp::reply::json(&json!({ "status": "ready" })).into_response(),
                _ => ApiError::Store(StoreError::Unavailable(sqlx::Error::PoolTimedOut))
                    .into_response(),
            }
        });

    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(authorization)
        .and(with_app.clone())
        .then(|auth: Option<String>, app: Arc<AppState>| async move {
            match app.auth.reader(auth.as_deref()) {
                Ok(Reader::Admin | Reader::Anyone) => warp::reply::with_header(
                    app.metrics.render(),
                    "content-type",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .into_response(),
                Ok(Reader::User(_)) => {
                    let mut response =
                        ApiError::Unauthorized("metrics need the admin token".into())
                            .into_response();
                    *response.status_mut() = StatusCode::FORBIDDEN;
                    response
                }
                Err(e) => ApiError::Unauthorized(e.to_string()).into_response(),
            }
        });

    let messages = warp::path!("v1" / "rooms" / String / "messages")
        .and(warp::get())
        .and(raw_query)
        .and(authorization)
        .and(with_app.clone())
        .and_then(
            |room: String, query: String, auth: Option<String>, app: Arc<AppState>| async move {
                respond(room_messages(&app, &room, &query, auth.as_deref()).await)
            },
        );

    let room = warp::path!("v1" / "rooms" / String)
        .and(warp::get())
        .and(authorization)
        .and(with_app.clone())
        .and_then(
            |room: String, auth: Option<String>, app: Arc<AppState>| async move {
                respond(room_info(&app, &room, auth.as_deref()).await)
            },
        );

    let members = warp::path!("v1" / "rooms" / String / "members")
        .and(warp::get())
        .and(raw_query)
        .and(authorization)
        .and(with_app.clone())
        .and_then(
            |room: String, query: String, auth: Option<String>, app: Arc<AppState>| async move {
                respond(room_members(&app, &room, &query, auth.as_deref()).await)
            },
        );

    healthz
        .or(readyz)
        .unify()
        .or(metrics)
        .unify()
        .or(messages)
        .unify()
        .or(room)
        .unify()
        .or(members)
        .unify()
        .or(crate::web::routes(app))
        .unify()
        .recover(|rejection: Rejection| async move {
            let response = if rejection.is_not_found() {
                ApiError::NoRoute("this path".into()).into_response()
            } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
                let mut response = ApiError::NoRoute("this method".into()).into_response();
                *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                response
            } else {
                ApiError::BadRequest(format!("{rejection:?}")).into_response()
            };
            Ok::<_, Infallible>(response)
        })
        .unify()
}

/// The service for one accepted TCP connection: `/v1/ws` upgrades are
/// handled here, everything else goes to the warp routes.
///
/// roomd upgrades WebSockets itself rather than through `warp::ws()` so it
/// can size tungstenite's buffers: warp 0.4 leaves the read buffer at
/// 128 KiB per connection, zeroed on every read.
pub async fn serve_request<S>(
    req: http::Request<hyper::body::Incoming>,
    peer: SocketAddr,
    app: Arc<AppState>,
    mut routes: S,
) -> Result<Response, Infallible>
where
    S: tower_service::Service<
            http::Request<hyper::body::Incoming>,
            Response = Response,
            Error = Infallible,
        >,
{
    if req.uri().path() == "/v1/ws" {
        return Ok(upgrade(req, peer, app));
    }
    tower_service::Service::call(&mut routes, req).await
}

fn upgrade(
    mut req: http::Request<hyper::body::Incoming>,
    peer: SocketAddr,
    app: Arc<AppState>,
) -> Response {
    let headers = req.headers();
    let has = |name: &str, value: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case(value))
    };
    let key = headers.get("sec-websocket-key").cloned();
    let Some(key) = key.filter(|_| {
        req.method() == http::Method::GET
            && has("connection", "upgrade")
            && has("upgrade", "websocket")
            && has("sec-websocket-version", "13")
    }) else {
        return ApiError::BadRequest("/v1/ws expects a WebSocket upgrade (version 13)".into())
            .into_response();
    };
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ip = client_ip(&app, Some(peer), forwarded.as_deref());
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let limit = app.config.limits.max_frame_bytes;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let sessions = app.sessions.clone();
    sessions.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    tungstenite::protocol::Role::Server,
                    Some(config),
                )
                .await;
                // A task of its own, sized for the session alone: this
                // upgrade task (and its larger future) ends here.
                app.sessions
                    .clone()
                    .spawn(crate::session::serve(socket, app, ip));
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    let mut response = Response::new(Default::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert("upgrade", http::HeaderValue::from_static("websocket"));
    headers.insert("connection", http::HeaderValue::from_static("upgrade"));
    headers.insert(
        "sec-websocket-accept",
        http::HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    response
}

/// Bytes tungstenite reads per call: small, because it is reserved for
/// every connection, idle or not (4 KiB of the ~10 KiB an idle connection
/// costs at 4096); most chat frames fit, larger ones are read in steps.
const READ_BUFFER: usize = 1024;

/// The client's address: the TCP peer, or the first X-Forwarded-For hop
/// when roomd is told to trust its proxy.
fn client_ip(app: &AppState, peer: Option<SocketAddr>, forwarded: Option<&str>) -> Option<IpAddr> {
    if app.config.trust_forwarded_for
        && let Some(first) = forwarded.and_then(|f| f.split(',').next())
        && let Ok(ip) = first.trim().parse()
    {
        return Some(ip);
    }
    peer.map(|p| p.ip())
}

/// Percent-decodes and validates a roomID path segment.
fn room_id(segment: &str) -> Result<RoomId, ApiError> {
    let decoded = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| {
            ApiError::BadRequest("roomID: not valid UTF-8 after percent-decoding".into())
        })?;
    RoomId::parse(decoded.into_owned()).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Query parameters as name → value, refusing repeats and unknown names.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str, known: &[&str]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
            .into_owned()
            .collect();
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !known.contains(&name.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "{name}: unknown query parameter (known: {})",
                    known.join(", ")
                )));
            }
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(ApiError::BadRequest(format!(
                    "{name}: given more than once"
                )));
            }
        }
        Ok(Self(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn seq(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    ApiError::BadRequest(format!("{name}: must be a non-negative integer"))
                })
            })
            .transpose()
    }

    fn count(&self, name: &str, default: u32, max: u32) -> Result<u32, ApiError> {
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

    fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
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

/// Authenticates and checks that the reader may see this room.
async fn authorize(
    app: &AppState,
    room_id: &RoomId,
    authorization: Option<&str>,
) -> Result<(), ApiError> {
    let reader = app
        .auth
        .reader(authorization)
        .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    match reader {
        Reader::Admin | Reader::Anyone => Ok(()),
        Reader::User(user) => {
            if app.rooms.store().is_member(room_id, &user).await? {
                Ok(())
            } else {
                Err(ApiError::Forbidden(room_id.clone()))
            }
        }
    }
}

async fn room_messages(
    app: &AppState,
    room: &str,
    query: &str,
    auth: Option<&str>,
) -> Result<Value, ApiError> {
    let room_id = room_id(room)?;
    let query = Query::parse(query, &["beforeSeq", "afterSeq", "limit", "since", "until"])?;
    let cursor = match (query.seq("beforeSeq")?, query.seq("afterSeq")?) {
        (None, None) => HistoryCursor::Latest,
        (Some(before), None) => HistoryCursor::Before(before),
        (None, Some(after)) => HistoryCursor::After(after),
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "beforeSeq, afterSeq: give at most one of them".into(),
            ));
        }
    };
    let limit = query.count("limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    let range = TimeRange {
        since: query.time("since")?,
        until: query.time("until")?,
    };
    authorize(app, &room_id, auth).await?;
    let store = app.rooms.store();
    if store.last_seq(&room_id).await?.is_none() {
        return Err(ApiError::RoomNotFound(room_id));
    }
    let (messages, has_more) = store.message_page(&room_id, cursor, limit, range).await?;
    let older = matches!(cursor, HistoryCursor::Latest | HistoryCursor::Before(_));
    let next_before = (older && has_more)
        .then(|| messages.first().map(|m| m.seq))
        .flatten();
    let next_after = (!older && has_more)
        .then(|| messages.last().map(|m| m.seq))
        .flatten();
    Ok(json!({
        "roomID": room_id,
        "messages": messages,
        "hasMore": has_more,
        "nextBeforeSeq": next_before,
        "nextAfterSeq": next_after,
    }))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn room_info(app: &AppState, room: &str, auth: Option<&str>) -> Result<Value, ApiError> {
    let room_id = room_id(room)?;
    authorize(app, &room_id, auth).await?;
    let details = app
        .rooms
        .store()
        .room_details(&room_id)
        .await?
        .ok_or_else(|| ApiError::RoomNotFound(room_id.clone()))?;
    Ok(json!({
        "roomInfo": { "roomID": room_id, "roomName": details.room_name },
        "memberCount": details.member_count,
        "lastSeq": details.last_seq,
        "createdAt": rfc3339(details.created_at),
        "emptySince": details.empty_since.map(rfc3339),
        "roomDestroyDelayTime": details.destroy_delay_secs,
        "roomAttributes": details.attributes,
    }))
}

async fn room_members(
    app: &AppState,
    room: &str,
    query: &str,
    auth: Option<&str>,
) -> Result<Value, ApiError> {
    let room_id = room_id(room)?;
    let query = Query::parse(query, &["nextFlag", "count"])?;
    let count = query.count(
        "count",
        crate::protocol::MAX_PAGE,
        crate::protocol::MAX_PAGE,
    )?;
    authorize(app, &room_id, auth).await?;
    let store = app.rooms.store();
    if store.room_details(&room_id).await?.is_none() {
        return Err(ApiError::RoomNotFound(room_id));
    }
    let (members, next_flag) = store
        .member_page(&room_id, query.get("nextFlag"), count)
        .await?;
    Ok(json!({ "memberList": members, "nextFlag": next_flag }))
}
