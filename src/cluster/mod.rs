//! Several roomd nodes on one PostgreSQL. So far: node leases with
//! fencing ([`lease`]): each node registers, renews its lease, and removes
//! the memberships of nodes whose lease lapsed (after the reconnect grace);
//! a node that finds its own lease taken away closes its connections and
//! registers anew. Cross-node delivery is still to come (docs/cluster.md).

mod lease;

pub(crate) use lease::{LeaseSettings, NodeLease};
