//! The HTTP side: the accept loop every connection comes through, the
//! `/v1/ws` handshake handed to `ws`, and warp routes for everything else:
//! REST reads ([`rest`]), health and metrics ([`health`]), the embedded
//! page and client ([`assets`]). Errors have one type with its status
//! ([`error`]).

mod assets;
mod error;
mod health;
mod query;
mod rest;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::http::{self, HeaderValue, StatusCode};
use warp::reply::{Reply, Response};

use crate::auth::Authenticator;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::ws::{self, SessionContext};
use error::ApiError;

/// How long shutdown waits for plain HTTP requests in flight.
const REQUEST_DRAIN: Duration = Duration::from_secs(10);

/// What the HTTP routes need of the server.
#[derive(Debug)]
pub(crate) struct HttpContext {
    pub(crate) store: Store,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) sessions: Arc<SessionContext>,
    /// Take the client address from `X-Forwarded-For` (behind a proxy).
    pub(crate) trust_forwarded_for: bool,
}

/// Accepts connections until `shutdown`, then waits (a bounded time) for
/// the HTTP requests in flight. WebSocket sessions are not waited for here.
pub(crate) async fn serve(
    listener: TcpListener,
    ctx: Arc<HttpContext>,
    shutdown: CancellationToken,
) {
    let routes = warp::service(routes(ctx.clone()));
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let (ctx, routes) = (ctx.clone(), routes.clone());
        let service = hyper::service::service_fn(move |req| {
            serve_request(req, peer, ctx.clone(), routes.clone())
        });
        serve_connection(tcp, service, &graceful);
    }
    drop(listener);
    if tokio::time::timeout(REQUEST_DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP requests did not finish within {REQUEST_DRAIN:?}");
    }
}

/// Serves one TCP connection (HTTP/1 or HTTP/2, upgrades allowed) in a
/// task of its own, watched for graceful shutdown.
fn serve_connection<S>(tcp: TcpStream, service: S, graceful: &GracefulShutdown)
where
    S: hyper::service::Service<http::Request<Incoming>, Response = Response, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let _ = tcp.set_nodelay(true);
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
        if let Err(e) = watcher.watch(connection).await {
            tracing::debug!(error = %e, "HTTP connection ended with an error");
        }
    });
}

/// `/v1/ws` handshakes go to `ws`; everything else to the warp routes.
async fn serve_request<S>(
    mut req: http::Request<Incoming>,
    peer: SocketAddr,
    ctx: Arc<HttpContext>,
    mut routes: S,
) -> Result<Response, Infallible>
where
    S: tower_service::Service<http::Request<Incoming>, Response = Response, Error = Infallible>,
{
    if req.uri().path() != "/v1/ws" {
        return tower_service::Service::call(&mut routes, req).await;
    }
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ip = client_ip(ctx.trust_forwarded_for, peer, forwarded.as_deref());
    Ok(match ws::accept(&mut req, Some(ip), ctx.sessions.clone()) {
        Ok(accept) => switching_protocols(accept),
        Err(e) => ApiError::BadRequest(e.to_string()).into_response(),
    })
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

/// Every route but `/v1/ws`.
fn routes(ctx: Arc<HttpContext>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with_ctx = {
        let ctx = ctx.clone();
        warp::any().map(move || ctx.clone())
    };
    let authorization = || warp::header::optional::<String>("authorization");
    let raw_query = || warp::query::raw().or(warp::any().map(String::new)).unify();
    let healthz = warp::path!("healthz").and(warp::get()).map(health::healthz);
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(with_ctx.clone())
        .then(health::readyz);
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_ctx.clone())
        .and(authorization())
        .then(health::metrics);
    let messages = warp::path!("v1" / "rooms" / String / "messages")
        .and(warp::get())
        .and(raw_query())
        .and(authorization())
        .and(with_ctx.clone())
        .and_then(
            |room: String, query: String, auth: Option<String>, ctx: Arc<HttpContext>| async move {
                respond(rest::room_messages(&ctx, &room, &query, auth.as_deref()).await)
            },
        );
    let room = warp::path!("v1" / "rooms" / String)
        .and(warp::get())
        .and(authorization())
        .and(with_ctx.clone())
        .and_then(
            |room: String, auth: Option<String>, ctx: Arc<HttpContext>| async move {
                respond(rest::room_info(&ctx, &room, auth.as_deref()).await)
            },
        );
    let members = warp::path!("v1" / "rooms" / String / "members")
        .and(warp::get())
        .and(raw_query())
        .and(authorization())
        .and(with_ctx)
        .and_then(
            |room: String, query: String, auth: Option<String>, ctx: Arc<HttpContext>| async move {
                respond(rest::room_members(&ctx, &room, &query, auth.as_deref()).await)
            },
        );
    let pages = assets::routes(!ctx.auth.is_open());
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
        .or(pages)
        .unify()
        .recover(error::recover)
        .unify()
}
