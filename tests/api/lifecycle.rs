//! Start, stop, restart: what survives and what does not.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{fresh_database, say, spawn_app, spawn_app_with, test_config};

#[tokio::test]
async fn a_restart_keeps_history_continues_seq_and_drops_stale_members() {
    let url = fresh_database().await;
    let app = spawn_app_with(test_config(&url)).await;
    let mut a = app.client("a").await;
    let mut b = app.client("b").await;
    a.ok(json!({"op": "createRoom", "roomInfo": {"roomID": "keep", "roomName": "Kept"}}))
        .await;
    b.ok(json!({"op": "joinRoom", "roomID": "keep"})).await;
    for i in 1..=5 {
        say(&mut a, "keep", &format!("before {i}")).await;
    }
    app.stop().await;
    assert_eq!(a.closed().await, Some(1001));
    assert_eq!(b.closed().await, Some(1001));

    let app = spawn_app_with(test_config(&url)).await;
    // Nobody is connected to the new process, so nobody is a member.
    let (status, room) = app.get("/v1/rooms/keep").await;
    assert_eq!(status, 200, "{room}");
    assert_eq!(room["memberCount"], 0);
    assert_eq!(room["lastSeq"], 5);
    assert_eq!(room["roomInfo"]["roomName"], "Kept");
    assert!(room["emptySince"].is_string());

    let mut a = app.client("a").await;
    let joined = a.ok(json!({"op": "joinRoom", "roomID": "keep"})).await;
    assert_eq!(joined["lastSeq"], 5);
    let count = a
        .ok(json!({"op": "queryRoomOnlineMemberCount", "roomID": "keep"}))
        .await;
    assert_eq!(count["count"], 1);
    let sent = say(&mut a, "keep", "after").await;
    assert_eq!(sent["seq"], 6);
    let history = a
        .ok(json!({"op": "queryHistoryMessage", "roomID": "keep"}))
        .await;
    let bodies: Vec<&str> = history["messageList"]
        .as_array()
        .unwrap()
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
    logged_in
        .ok(json!({"op": "enterRoom", "roomInfo": {"roomID": "r"}}))
        .await;
    let mut anonymous = app.connect().await;
    let addr = app.addr;
    app.stop().await;
    assert_eq!(logged_in.closed().await, Some(1001));
    assert_eq!(anonymous.closed().await, Some(1001));
    // And the port no longer accepts.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_connection_that_does_not_log_in_is_closed() {
    let mut config = test_config(&fresh_database().await);
    config.login_timeout = Duration::from_millis(300);
    let app = spawn_app_with(config).await;
    let mut idle = app.connect().await;
    assert_eq!(idle.closed().await, Some(4001));
    // A prompt login keeps the connection past the deadline.
    let mut prompt = app.client("prompt").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    prompt.ok(json!({"op": "ping"})).await;
    app.stop().await;
}

#[tokio::test]
async fn leave_all_room_leaves_every_room_of_the_connection() {
    let app = spawn_app().await;
    let mut a = app.client("a").await;
    let mut watcher = app.client("w").await;
    for room in ["one", "two", "three"] {
        a.ok(json!({"op": "enterRoom", "roomInfo": {"roomID": room}}))
            .await;
        watcher.ok(json!({"op": "joinRoom", "roomID": room})).await;
        a.expect_event("roomMemberJoined").await;
    }
    let reply = a.ok(json!({"op": "leaveAllRoom"})).await;
    let mut left: Vec<String> = serde_json::from_value(reply["roomIDs"].clone()).unwrap();
    left.sort();
    assert_eq!(left, ["one", "three", "two"]);
    for _ in 0..3 {
        let event = watcher.expect_event("roomMemberLeft").await;
        assert_eq!(event["memberList"][0]["userID"], "a");
    }
    let reply = a.ok(json!({"op": "leaveAllRoom"})).await;
    assert_eq!(reply["roomIDs"], json!([]));
    let (_, room) = app.get("/v1/rooms/one").await;
    assert_eq!(room["memberCount"], 1);
    app.stop().await;
}

#[tokio::test]
async fn the_last_leave_marks_the_room_empty_and_a_join_clears_it() {
    let app = spawn_app().await;
    let mut a = app.client("a").await;
    a.ok(json!({"op": "createRoom", "roomInfo": {"roomID": "e"}}))
        .await;
    let (_, room) = app.get("/v1/rooms/e").await;
    assert!(room["emptySince"].is_null());
    a.ok(json!({"op": "leaveRoom", "roomID": "e"})).await;
    let (_, room) = app.get("/v1/rooms/e").await;
    assert!(room["emptySince"].is_string(), "{room}");
    a.ok(json!({"op": "joinRoom", "roomID": "e"})).await;
    let (_, room) = app.get("/v1/rooms/e").await;
    assert!(room["emptySince"].is_null());
    app.stop().await;
}
