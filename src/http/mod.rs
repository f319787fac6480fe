//! The HTTP side: the accept loop every connection comes through, the
//! `/v1/ws` handshake handed to `ws`, and warp routes for everything else:
//! REST reads ([`rest`]), health and metrics ([`health`]), the embedded
//! page and client ([`assets`]). Errors have one type with its status
//! ([`error`]).

mod assets;
mod cluster;
mod error;
mod health;
mod origin;
mod query;
mod rest;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warp::http::{self, HeaderValue, StatusCode};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::auth::Authenticator;
use crate::limits::{AddressPlaces, HttpConnections, RateLimits, address_key};
use crate::metrics::{Metrics, Refusal};
use crate::store::Store;
use crate::ws::{self, SessionContext};
use error::ApiError;
pub(crate) use origin::OriginPolicy;

/// How long shutdown waits for plain HTTP requests in flight.
const REQUEST_DRAIN: Duration = Duration::from_secs(10);
/// Bytes a connection may buffer while reading a request head.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long the accept loop pauses after a failed accept (out of file
/// descriptors, usually), so it neither spins nor stops.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What the HTTP routes need of the server.
#[derive(Debug)]
pub(crate) struct HttpContext {
    pub(crate) store: Store,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) sessions: Arc<SessionContext>,
    /// Take the client address from `X-Forwarded-For` (behind a proxy).
    pub(crate) trust_forwarded_for: bool,
    /// Open plain HTTP connections, capped in total and per address.
    pub(crate) connections: Arc<HttpConnections>,
    /// How long a connection may take to send a request's headers, and
    /// stay idle between requests.
    pub(crate) http_timeout: Duration,
    /// Which Host and Origin headers are answered.
    pub(crate) origins: OriginPolicy,
    /// REST request rates.
    pub(crate) rates: Arc<RateLimits>,
    /// History reads served at once.
    pub(crate) history_slots: Arc<Semaphore>,
    /// Bytes of JSON a history page holds at most.
    pub(crate) history_page_bytes: usize,
}

/// The client's address, as the accept loop (or a trusted proxy) saw it;
/// carried to the routes in the request's extensions.
#[derive(Debug, Clone, Copy)]
struct ClientIp(IpAddr);

/// Accepts connections until `shutdown`, then waits (a bounded time) for
/// the HTTP requests in flight. WebSocket sessions are not waited for here.
pub(crate) async fn serve(
    listener: TcpListener,
    ctx: Arc<HttpContext>,
    shutdown: CancellationToken,
) {
    let routes = warp::service(routes(ctx.clone()));
    let connections = TaskTracker::new();
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.http_timeout)
        // Request heads are small; hyper's default buffer (~400 KiB) would
        // let each of many connections hold that much.
        .max_buf_size(MAX_HEAD_BYTES);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep
                    // serving; a connection that failed alone costs no pause.
                    tracing::warn!(error = %e, "accept failed");
                    if is_resource_exhaustion(&e) {
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Some(places) = ctx.connections.open_for(&address_key(peer.ip())) else {
            ctx.metrics.refused(Refusal::HttpConnections);
            drop(tcp);
            continue;
        };
        // Held by the service, so given back when the connection ends,
        // unless a WebSocket handshake takes them into its session.
        let peer = Peer {
            addr: peer,
            places: Arc::new(Mutex::new(Some(places))),
        };
        let (ctx, routes) = (ctx.clone(), routes.clone());
        let service = hyper::service::service_fn(move |req| {
            serve_request(req, peer.clone(), ctx.clone(), routes.clone())
        });
        let _ = tcp.set_nodelay(true);
        let connection = http1
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        connections.spawn(serve_connection(connection, shutdown.clone()));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(REQUEST_DRAIN, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP requests did not finish within {REQUEST_DRAIN:?}");
    }
}

/// An accepted connection's client, and its places among the plain HTTP
/// connections.
#[derive(Clone)]
struct Peer {
    addr: SocketAddr,
    places: Arc<Mutex<Option<AddressPlaces>>>,
}

/// Serves one HTTP/1.1 connection (upgrades allowed) until it ends or
/// becomes a WebSocket; on shutdown, finishes the request in flight and
/// closes. HTTP/2 is not spoken: nothing needs it, and its idle streams
/// would outlive every timeout here.
async fn serve_connection<C>(connection: C, shutdown: CancellationToken)
where
    C: Future<Output = Result<(), hyper::Error>> + GracefulConnection,
{
    tokio::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

/// Whether a failed accept means the process is out of something (file
/// descriptors, memory), which waiting may give back.
fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOBUFS | nix::libc::ENOMEM)
    )
}

/// A connection that can be asked to finish its request and close.
trait GracefulConnection {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S> GracefulConnection for http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

/// `/v1/ws` handshakes go to `ws`; everything else to the warp routes.
async fn serve_request<S>(
    mut req: http::Request<Incoming>,
    peer: Peer,
    ctx: Arc<HttpContext>,
    mut routes: S,
) -> Result<Response, Infallible>
where
    S: tower_service::Service<http::Request<Incoming>, Response = Response, Error = Infallible>,
{
    let websocket = req.uri().path() == "/v1/ws";
    if let Err(e) = ctx.origins.check(req.headers(), websocket) {
        return Ok(e.into_response());
    }
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let ip = client_ip(ctx.trust_forwarded_for, peer.addr, forwarded);
    if !websocket {
        req.extensions_mut().insert(ClientIp(ip));
        return tower_service::Service::call(&mut routes, req).await;
    }
    // Until it logs in, a session counts as its connection did.
    let places = peer.places.lock().expect("places poisoned").take();
    Ok(
        match ws::accept(&mut req, Some(ip), places, ctx.sessions.clone()) {
            Ok(accept) => switching_protocols(accept),
            Err(e) => ApiError::BadRequest(e.to_string()).into_response(),
        },
    )
}

fn switching_protocols(accept: HeaderValue) -> Response {
    let mut response = Response::new(Default::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert("upgrade", HeaderValue::from_static("websocket"));
    headers.insert("connection", HeaderValue::from_static("upgrade"));
    headers.insert("sec-websocket-accept", accept);
    response
}

/// The client's address: the TCP peer, or the first X-Forwarded-For hop
/// when roomd is told to trust its proxy.
fn client_ip(trust_forwarded_for: bool, peer: SocketAddr, forwarded: Option<&str>) -> IpAddr {
    if trust_forwarded_for
        && let Some(first) = forwarded.and_then(|f| f.split(',').next())
        && let Ok(ip) = first.trim().parse()
    {
        return ip;
    }
    peer.ip()
}

/// A handler's typed body as JSON, or its error.
fn respond<T: Serialize>(result: Result<T, ApiError>) -> Result<Response, Infallible> {
    Ok(match result {
        Ok(body) => warp::reply::json(&body).into_response(),
        Err(e) => e.into_response(),
    })
}

/// `GET`, and `HEAD` (which load balancers use) answered alike.
pub(super) fn get() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::get().or(warp::head()).unify()
}

/// What every REST read takes from the request, owned.
type Parts = (String, Option<String>, ClientIp);

fn rest_parts() -> impl Filter<Extract = (Parts,), Error = Rejection> + Clone {
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and(authorization())
        .and(warp::ext::get::<ClientIp>())
        .map(|query, auth, ip| (query, auth, ip))
}

/// The `Authorization` header; one that is not text counts as a bad token.
fn authorization() -> impl Filter<Extract = (Option<String>,), Error = Infallible> + Clone {
    warp::header::headers_cloned().map(|headers: warp::http::HeaderMap| {
        headers
            .get("authorization")
            .map(|v| v.to_str().unwrap_or("invalid").to_owned())
    })
}

fn request(parts: &Parts) -> rest::Request<'_> {
    rest::Request {
        query: &parts.0,
        authorization: parts.1.as_deref(),
        ip: parts.2.0,
    }
}

/// Every route but `/v1/ws`.
fn routes(ctx: Arc<HttpContext>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with_ctx = {
        let ctx = ctx.clone();
        warp::any().map(move || ctx.clone())
    };
    let healthz = warp::path!("healthz").and(get()).map(health::healthz);
    let readyz = warp::path!("readyz")
        .and(get())
        .and(with_ctx.clone())
        .then(health::readyz);
    let metrics = warp::path!("metrics")
        .and(get())
        .and(with_ctx.clone())
        .and(authorization())
        .then(health::metrics);
    let cluster = warp::path!("v1" / "cluster")
        .and(get())
        .and(with_ctx.clone())
        .and(authorization())
        .then(cluster::cluster);
    let messages = warp::path!("v1" / "rooms" / String / "messages")
        .and(get())
        .and(rest_parts())
        .and(with_ctx.clone())
        .and_then(
            |room: String, parts: Parts, ctx: Arc<HttpContext>| async move {
                respond(rest::room_messages(&ctx, &room, request(&parts)).await)
            },
        );
    let room = warp::path!("v1" / "rooms" / String)
        .and(get())
        .and(rest_parts())
        .and(with_ctx.clone())
        .and_then(
            |room: String, parts: Parts, ctx: Arc<HttpContext>| async move {
                respond(rest::room_info(&ctx, &room, request(&parts)).await)
            },
        );
    let members = warp::path!("v1" / "rooms" / String / "members")
        .and(get())
        .and(rest_parts())
        .and(with_ctx)
        .and_then(
            |room: String, parts: Parts, ctx: Arc<HttpContext>| async move {
                respond(rest::room_members(&ctx, &room, request(&parts)).await)
            },
        );
    let pages = assets::routes(!ctx.auth.is_open());
    healthz
        .or(readyz)
        .unify()
        .or(metrics)
        .unify()
        .or(cluster)
        .unify()
        .or(messages)
        .unify()
        .or(room)
        .unify()
        .or(members)
        .unify()
        .or(pages)
        .unify()
        .recover(error::recover)
        .unify()
}
