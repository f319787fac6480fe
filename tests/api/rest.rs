//! REST reads, health and the admin token.

use serde_json::json;

use crate::helpers::{fresh_database, spawn_app, spawn_app_with, test_config};

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.0, 200);
    assert_eq!(app.get("/readyz").await.0, 200);
    let (status, body) = app.get("/no/such/path").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], 1002, "{body}");
    // The WebSocket endpoint without an upgrade is a clear 400.
    let (status, body) = app.get("/v1/ws").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], 1003);
    app.stop().await;
}

#[tokio::test]
async fn room_and_members_over_rest() {
    let app = spawn_app().await;
    let mut a = app.client("a").await;
    let mut b = app.client("b").await;
    a.ok(
        json!({"op": "createRoom", "roomInfo": {"roomID": "info", "roomName": "Info"},
                "config": {"roomDestroyDelayTime": 60, "roomAttributes": {"topic": "rust"}}}),
    )
    .await;
    b.join("info").await;
    a.say("info", "one").await;

    let (status, room) = app.get("/v1/rooms/info").await;
    assert_eq!(status, 200);
    assert_eq!(
        room["roomInfo"],
        json!({"roomID": "info", "roomName": "Info"})
    );
    assert_eq!(room["memberCount"], 2);
    assert_eq!(room["lastSeq"], 1);
    assert_eq!(room["roomDestroyDelayTime"], 60);
    assert_eq!(room["roomAttributes"], json!({"topic": "rust"}));
    assert!(chrono::DateTime::parse_from_rfc3339(room["createdAt"].as_str().unwrap()).is_ok());
    assert!(room["emptySince"].is_null());

    let (status, members) = app.get("/v1/rooms/info/members?count=1").await;
    assert_eq!(status, 200);
    assert_eq!(
        members["memberList"],
        json!([{"userID": "a", "userName": "a name"}])
    );
    assert_eq!(members["nextFlag"], "a");
    let (_, rest) = app.get("/v1/rooms/info/members?count=1&nextFlag=a").await;
    assert_eq!(rest["memberList"][0]["userID"], "b");
    assert_eq!(rest["nextFlag"], "");

    for path in [
        "/v1/rooms/ghost",
        "/v1/rooms/ghost/members",
        "/v1/rooms/ghost/messages",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["code"], 6000322);
    }
    for path in [
        "/v1/rooms/info/messages?limit=0",
        "/v1/rooms/info/messages?limit=1001",
        "/v1/rooms/info/messages?beforeSeq=-1",
        "/v1/rooms/info/messages?beforeSeq=2&afterSeq=1",
        "/v1/rooms/info/messages?bogus=1",
        "/v1/rooms/info/members?count=101",
        "/v1/rooms/bad%20id",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], 1003, "{path}");
        assert_eq!(body["error"]["reason"], "invalid_argument");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_admin_token_closes_open_rest() {
    let mut config = test_config(&fresh_database().await);
    config.admin_token = Some("let-me-in".into());
    let app = spawn_app_with(config).await;
    let mut a = app.client("a").await;
    a.create("guarded").await;
    for path in [
        "/v1/rooms/guarded",
        "/v1/rooms/guarded/messages",
        "/v1/rooms/guarded/members",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(body["error"]["reason"], "unauthorized");
        assert_eq!(app.get_with(path, Some("nope")).await.0, 401);
        assert_eq!(app.get_with(path, Some("let-me-in")).await.0, 200);
    }
    // Health checks stay open for load balancers.
    assert_eq!(app.get("/healthz").await.0, 200);
    app.stop().await;
}
