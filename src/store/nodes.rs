//! Node leases: which roomd processes are alive, and cleaning up after the
//! ones that are not.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Store, StoreError};
use crate::domain::{NodeId, RoomId, UserInfo};

/// A live node, as `GET /v1/cluster` shows it.
#[derive(Debug, Clone)]
pub(crate) struct NodeRow {
    pub(crate) node_id: String,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) renewed_at: DateTime<Utc>,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) connections: i32,
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Store {
    /// Takes (or takes over, on a restart under the same id) the node's
    /// lease with a fresh incarnation.
    pub(crate) async fn register_node(
        &self,
        node: &NodeId,
        incarnation: i64,
        lease: Duration,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "insert into nodes (node_id, incarnation, expires_at)
             values ($1, $2, now() + make_interval(secs => $3))
             on conflict (node_id) do update
                set incarnation = excluded.incarnation, started_at = now(),
                    renewed_at = now(), expires_at = excluded.expires_at, connections = 0",
            node.as_str(),
            incarnation,
            seconds(lease),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Renews the lease; false when it is no longer this incarnation's
    /// (another node declared this one gone: fenced).
    pub(crate) async fn renew_node(
        &self,
        node: &NodeId,
        incarnation: i64,
        lease: Duration,
        connections: u32,
    ) -> Result<bool, StoreError> {
        let renewed = sqlx::query!(
            "update nodes
                set renewed_at = now(), expires_at = now() + make_interval(secs => $3),
                    connections = $4
              where node_id = $1 and incarnation = $2",
            node.as_str(),
            incarnation,
            seconds(lease),
            i32::try_from(connections).unwrap_or(i32::MAX),
        )
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Live nodes, by id.
    pub(crate) async fn live_nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        Ok(sqlx::query_as!(
            NodeRow,
            "select node_id, started_at, renewed_at, expires_at, connections
               from nodes where expires_at > now() order by node_id"
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Removes nodes whose lease lapsed more than `grace` ago, and every
    /// membership they still held (a user who came back through another
    /// node holds theirs through that node). Rooms left empty start their
    /// countdown. Safe with several sweepers: `skip locked` gives each dead
    /// node to one. Returns who left which room.
    pub(crate) async fn sweep_dead_nodes(
        &self,
        grace: Duration,
    ) -> Result<Vec<(RoomId, UserInfo)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query!(
            "with dead as (
                 delete from nodes
                  where node_id in (select node_id from nodes
                                     where expires_at < now() - make_interval(secs => $1)
                                     for update skip locked)
                 returning node_id)
             delete from members m using dead where m.node_id = dead.node_id
             returning m.room_id, m.user_id, m.user_name",
            seconds(grace),
        )
        .fetch_all(&mut *tx)
        .await?;
        let gone = gone
            .into_iter()
            .map(|m| (m.room_id, m.user_id, m.user_name));
        super::members::finish_removal(tx, gone.collect()).await
    }
}
