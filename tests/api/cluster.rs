//! Several roomd processes on one database: node leases, the sweep of a
//! dead node's members, fencing of a node whose lease was taken away.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{RoomdProcess, WAIT, fresh_database, wait_until};

const ADMIN: &str = "admin-token";

/// A node with a 1 s lease and a 1 s reconnect grace.
async fn node(url: &str, id: &str) -> RoomdProcess {
    let args = [
        "--node-id",
        id,
        "--admin-token",
        ADMIN,
        "--node-lease",
        "1s",
        "--reconnect-grace",
        "1s",
    ];
    RoomdProcess::start(url, &args).await
}

/// `(nodeID, connections)` of every live node, as `GET /v1/cluster` says.
async fn live_nodes(roomd: &RoomdProcess) -> Vec<(String, i64)> {
    let (status, body) = roomd.get_with("/v1/cluster", Some(ADMIN)).await;
    assert_eq!(status, 200, "{body}");
    body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let id = n["nodeID"].as_str().unwrap().to_owned();
            (id, n["connections"].as_i64().unwrap())
        })
        .collect()
}

async fn members(roomd: &RoomdProcess, room: &str) -> Option<i64> {
    let (status, body): (u16, Value) = roomd
        .get_with(&format!("/v1/rooms/{room}"), Some(ADMIN))
        .await;
    (status == 200).then(|| body["memberCount"].as_i64().unwrap())
}

#[tokio::test]
async fn the_cluster_lists_its_live_nodes_with_their_connections_to_the_admin_only() {
    let url = fresh_database().await;
    let n1 = node(&url, "n1").await;
    let n2 = node(&url, "n2").await;
    let _alice = n1.client("alice").await;
    let _bob = n1.client("bob").await;
    wait_until(WAIT, "both nodes listed with n1's two sessions", || async {
        live_nodes(&n2).await == [("n1".to_owned(), 2), ("n2".to_owned(), 0)]
    })
    .await;
    assert_eq!(n2.get("/v1/cluster").await.0, 401);
}

#[tokio::test]
async fn a_killed_nodes_members_leave_after_its_lease_and_the_grace_and_its_room_is_destroyed() {
    let url = fresh_database().await;
    let mut n1 = node(&url, "n1").await;
    let n2 = node(&url, "n2").await;
    let mut alice = n1.client("alice").await;
    alice.create("r").await;
    n1.kill_9();
    // Today's members stay until the lease lapses and the grace ends...
    assert_eq!(members(&n2, "r").await, Some(1));
    // ...then another node removes them, and the empty room is destroyed.
    wait_until(WAIT, "the dead node's room is destroyed", || async {
        members(&n2, "r").await.is_none()
    })
    .await;
    assert_eq!(live_nodes(&n2).await, [("n2".to_owned(), 0)]);
}

#[tokio::test]
async fn a_node_paused_past_its_lease_closes_its_connections_and_registers_again() {
    let url = fresh_database().await;
    let n1 = node(&url, "n1").await;
    let n2 = node(&url, "n2").await;
    let mut alice = n1.client("alice").await;
    alice.create("r").await;
    let mut bob = n2.client("bob").await;
    bob.join("r").await;
    n1.signal(nix::sys::signal::Signal::SIGSTOP);
    // n2 declares n1 gone once its lease (1 s) and the grace (1 s) are over.
    wait_until(WAIT, "n2 removes the paused node's member", || async {
        members(&n2, "r").await == Some(1)
    })
    .await;
    bob.expect_left("alice").await;
    n1.signal(nix::sys::signal::Signal::SIGCONT);
    let notice = alice.expect_event("roomStateChanged").await;
    assert_eq!(notice["roomID"], "r");
    assert_eq!(notice["state"], "disconnected");
    assert_eq!(notice["reason"], "networkDisconnected");
    alice.expect_closed(1012).await;
    wait_until(WAIT, "n1 registered again", || async {
        live_nodes(&n2).await.iter().any(|(id, _)| id == "n1")
    })
    .await;
    // The fenced session's own leave, after its grace, finds nothing left
    // to remove: nothing is announced twice.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    bob.expect_silence().await;
    // And alice can come back at once (cross-node events are still to come:
    // the room's member count shows it).
    let mut again = n1.client("alice").await;
    again.join("r").await;
    assert_eq!(members(&n2, "r").await, Some(2));
}
