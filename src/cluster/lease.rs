//! A node's lease: taken at start with a fresh incarnation, renewed a few
//! times per lease period, and the sweep of nodes whose lease lapsed.
//!
//! Fencing: a renewal that matches no row means another node declared
//! this one gone (it was paused or cut off past its lease and the grace)
//! and already removed its members. Its connections must not go on as if
//! nothing happened: the lease bumps the fencing generation, every session
//! tells its client (`roomStateChanged` `networkDisconnected`, Close 1012,
//! reconnect and join again), and the node registers anew.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::domain::NodeId;
use crate::limits::Connections;
use crate::metrics::Metrics;
use crate::rooms::Rooms;
use crate::store::{Store, StoreError};

/// Renewals per lease period: a node survives a few lost renewals.
const RENEWALS_PER_LEASE: u32 = 4;

#[derive(Debug, Clone)]
pub(crate) struct LeaseSettings {
    pub(crate) node: NodeId,
    /// How long a node's silence is tolerated before it counts as gone.
    pub(crate) lease: Duration,
}

/// The running lease; dropping it does not release the lease (a restart
/// under the same node id takes it over; otherwise it lapses).
#[derive(Debug)]
pub(crate) struct NodeLease {
    /// Bumped at every fencing; sessions watch it.
    fenced: watch::Receiver<u64>,
}

impl NodeLease {
    /// Registers the node and keeps its lease until `shutdown`.
    pub(crate) async fn start(
        store: Store,
        settings: LeaseSettings,
        rooms: Arc<Rooms>,
        connections: Arc<Connections>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        let mut incarnation = fresh_incarnation();
        store
            .register_node(&settings.node, incarnation, settings.lease)
            .await?;
        let (fencing, fenced) = watch::channel(0);
        let period = (settings.lease / RENEWALS_PER_LEASE).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                let held = connections.held();
                match renew(&store, &settings, incarnation, held, &fencing).await {
                    Renewal::Renewed => {
                        metrics.lease_renewals.inc();
                    }
                    Renewal::Fenced(fresh) => {
                        metrics.fencings.inc();
                        incarnation = fresh.unwrap_or(incarnation);
                    }
                    Renewal::Failed => {}
                }
                if let Err(e) = rooms.sweep_dead_nodes().await {
                    tracing::warn!(error = %e, "could not sweep lapsed node leases");
                }
            }
        });
        Ok(Self { fenced })
    }

    /// What sessions watch to learn the node was fenced.
    pub(crate) fn fenced(&self) -> watch::Receiver<u64> {
        self.fenced.clone()
    }
}

/// What one renewal found.
enum Renewal {
    Renewed,
    /// The lease was taken away; the new incarnation, when registering
    /// again worked (else the next tick finds none and tries again).
    Fenced(Option<i64>),
    /// The database did not answer; the next tick tries again.
    Failed,
}

/// One renewal; after a fencing, registers anew.
async fn renew(
    store: &Store,
    settings: &LeaseSettings,
    incarnation: i64,
    connections: u32,
    fencing: &watch::Sender<u64>,
) -> Renewal {
    let node = &settings.node;
    let renewed = store.renew_node(node, incarnation, settings.lease, connections);
    match renewed.await {
        Ok(true) => Renewal::Renewed,
        Ok(false) => {
            tracing::warn!(%node, "this node's lease was taken away: closing its connections");
            fencing.send_modify(|generation| *generation += 1);
            let fresh = fresh_incarnation();
            match store.register_node(node, fresh, settings.lease).await {
                Ok(()) => Renewal::Fenced(Some(fresh)),
                Err(e) => {
                    tracing::warn!(error = %e, "could not register again; retrying");
                    Renewal::Fenced(None)
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not renew this node's lease");
            Renewal::Failed
        }
    }
}

/// A value no earlier start of this node used.
fn fresh_incarnation() -> i64 {
    use std::hash::{BuildHasher, RandomState};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    RandomState::new().hash_one((nanos, std::process::id())) as i64
}
