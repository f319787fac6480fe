//! `GET /v1/cluster`: the live nodes, for the admin.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use warp::reply::{Reply, Response};

use super::HttpContext;
use super::error::ApiError;
use crate::auth::Reader;
use crate::store::NodeRow;

#[derive(Serialize)]
struct Cluster {
    nodes: Vec<Node>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Node {
    #[serde(rename = "nodeID")]
    node_id: String,
    started_at: String,
    renewed_at: String,
    expires_at: String,
    /// WebSocket sessions at its last renewal.
    connections: i32,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl From<NodeRow> for Node {
    fn from(n: NodeRow) -> Self {
        Self {
            node_id: n.node_id,
            started_at: rfc3339(n.started_at),
            renewed_at: rfc3339(n.renewed_at),
            expires_at: rfc3339(n.expires_at),
            connections: n.connections,
        }
    }
}

pub(crate) async fn cluster(ctx: Arc<HttpContext>, authorization: Option<String>) -> Response {
    let answer = async {
        match ctx.auth.reader(authorization.as_deref())? {
            Reader::Admin => {}
            Reader::Anyone | Reader::User(_) => return Err(ApiError::AdminOnly),
        }
        let nodes = ctx.store.live_nodes().await?;
        Ok(Cluster {
            nodes: nodes.into_iter().map(Node::from).collect(),
        })
    };
    match answer.await {
        Ok(cluster) => warp::reply::json(&cluster).into_response(),
        Err(e) => e.into_response(),
    }
}
