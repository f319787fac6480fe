//! Start, stop, restart: what survives and what does not.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{fresh_database, spawn_app, spawn_app_with, test_config};

#[tokio::test]
async fn a_restart_keeps_history_continues_seq_and_drops_stale_members() {
    let url = fresh_database().await;
    // A restart of the same node: same node id, another port.
    let config = || {
        let mut config = test_config(&url);
        config.node_id = Some("restarting-node".into());
        config
    };
    let app = spawn_app_with(config()).await;
    let mut a = app.client("a").await;
    let mut b = app.client("b").await;
    a.create_named("keep", "Kept").await;
    b.join("keep").await;
    for i in 1..=5 {
        a.say("keep", &format!("before {i}")).await;
    }
    app.stop().await;
    a.expect_closed(1001).await;
    b.expect_closed(1001).await;

    let app = spawn_app_with(config()).await;
    // Nobody is connected to the new process, so nobody is a member.
    let (status, room) = app.get("/v1/rooms/keep").await;
    assert_eq!(status, 200, "{room}");
    assert_eq!(room["memberCount"], 0);
    assert_eq!(room["lastSeq"], 5);
    assert_eq!(room["roomInfo"]["roomName"], "Kept");
    assert!(room["emptySince"].is_string());

    let mut a = app.client("a").await;
    let joined = a.join("keep").await;
    assert_eq!(joined["lastSeq"], 5);
    assert_eq!(a.member_count("keep").await, 1);
    let sent = a.say("keep", "after").await;
    assert_eq!(sent["seq"], 6);
    let history = a.history("keep").await;
    let bodies: Vec<&str> = history
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        [
            "before 1", "before 2", "before 3", "before 4", "before 5", "after"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn shutdown_closes_every_websocket_with_a_close_frame() {
    let app = spawn_app().await;
    let mut logged_in = app.client("a").await;
    logged_in.enter("r").await;
    let mut anonymous = app.connect().await;
    let addr = app.addr;
    app.stop().await;
    logged_in.expect_closed(1001).await;
    anonymous.expect_closed(1001).await;
    // And the port no longer accepts.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_connection_that_does_not_log_in_is_closed() {
    let mut config = test_config(&fresh_database().await);
    config.login_timeout = Duration::from_millis(300);
    let app = spawn_app_with(config).await;
    let mut idle = app.connect().await;
    idle.expect_closed(4001).await;
    // A prompt login keeps the connection past the deadline (waited out).
    let mut prompt = app.client("prompt").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    prompt.ping().await;
    app.stop().await;
}

#[tokio::test]
async fn leave_all_room_leaves_every_room_of_the_connection() {
    let app = spawn_app().await;
    let mut a = app.client("a").await;
    let mut watcher = app.client("w").await;
    for room in ["one", "two", "three"] {
        a.enter(room).await;
        watcher.join(room).await;
        a.expect_joined("w").await;
    }
    let reply = a.ok(json!({"op": "leaveAllRoom"})).await;
    let mut left: Vec<String> = serde_json::from_value(reply["roomIDs"].clone()).unwrap();
    left.sort();
    assert_eq!(left, ["one", "three", "two"]);
    let mut told: Vec<String> = Vec::new();
    for _ in 0..3 {
        let event = watcher.expect_left("a").await;
        told.push(event["roomID"].as_str().unwrap().to_owned());
    }
    told.sort();
    assert_eq!(told, left, "one roomMemberLeft per room");
    let reply = a.ok(json!({"op": "leaveAllRoom"})).await;
    assert_eq!(reply["roomIDs"], json!([]));
    let (status, room) = app.get("/v1/rooms/one").await;
    assert_eq!(status, 200, "{room}");
    assert_eq!(room["memberCount"], 1);
    app.stop().await;
}

#[tokio::test]
async fn the_last_leave_marks_the_room_empty_and_a_join_clears_it() {
    let app = spawn_app().await;
    let mut a = app.client("a").await;
    // The room's REST view: a 200 for this very room, so that a missing
    // field is not mistaken for an error body.
    let room = async || {
        let (status, room) = app.get("/v1/rooms/e").await;
        assert_eq!(status, 200, "{room}");
        assert_eq!(room["roomInfo"]["roomID"], "e", "{room}");
        room
    };
    a.create("e").await;
    let shown = room().await;
    assert!(shown["emptySince"].is_null(), "{shown}");
    a.leave("e").await;
    let shown = room().await;
    assert!(shown["emptySince"].is_string(), "{shown}");
    a.join("e").await;
    let shown = room().await;
    assert!(shown["emptySince"].is_null(), "{shown}");
    app.stop().await;
}
