//! Operations routes: `/healthz` (the process runs), `/readyz` (the
//! database answers) and `/metrics` (OpenMetrics text).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use warp::reply::{Reply, Response};

use super::HttpContext;
use super::error::ApiError;
use crate::auth::Reader;
use crate::store::StoreError;

/// `/readyz` gives the database this long to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize)]
struct Status {
    status: &'static str,
}

pub(crate) fn healthz() -> Response {
    warp::reply::json(&Status { status: "ok" }).into_response()
}

pub(crate) async fn readyz(ctx: Arc<HttpContext>) -> Response {
    // Any failure is "not ready" (503), a fault as much as an outage.
    match tokio::time::timeout(READY_TIMEOUT, ctx.store.ping()).await {
        Ok(Ok(())) => warp::reply::json(&Status { status: "ready" }).into_response(),
        Ok(Err(e @ StoreError::Unavailable(_))) => ApiError::from(e).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            ApiError::from(StoreError::timed_out()).into_response()
        }
        Err(_) => ApiError::from(StoreError::timed_out()).into_response(),
    }
}

pub(crate) async fn metrics(ctx: Arc<HttpContext>, authorization: Option<String>) -> Response {
    match ctx.auth.reader(authorization.as_deref()) {
        Ok(Reader::Admin | Reader::Anyone) => warp::reply::with_header(
            ctx.metrics.render(),
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
        .into_response(),
        Ok(Reader::User(_)) => ApiError::AdminOnly.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
