//! Every error code this server can produce today, each followed by proof
//! that the connection still works.

use serde_json::json;

use crate::helpers::{fresh_database, spawn_app, spawn_app_with, test_config};

#[tokio::test]
async fn requests_before_login_get_1004() {
    let app = spawn_app().await;
    let mut client = app.connect().await;
    let error = client
        .fails(json!({"op": "joinRoom", "roomID": "r"}), 1004)
        .await;
    assert_eq!(error["reason"], "not_logged_in");
    client.fails(json!({"op": "ping"}), 1004).await;
    client
        .ok(json!({"op": "login", "userInfo": {"userID": "late", "userName": "Late"}}))
        .await;
    client.ok(json!({"op": "ping"})).await;
    app.stop().await;
}

#[tokio::test]
async fn room_errors_have_zims_codes() {
    let app = spawn_app().await;
    let mut a = app.client("a").await;
    let mut b = app.client("b").await;

    let error = a
        .fails(json!({"op": "joinRoom", "roomID": "nowhere"}), 6000322)
        .await;
    assert_eq!(error["reason"], "room_not_found");
    assert!(error["message"].as_str().unwrap().contains("nowhere"));

    a.ok(json!({"op": "createRoom", "roomInfo": {"roomID": "here"}}))
        .await;
    let error = b
        .fails(
            json!({"op": "createRoom", "roomInfo": {"roomID": "here"}}),
            6000323,
        )
        .await;
    assert_eq!(error["reason"], "room_exists");

    // Members-only: b has not joined.
    let send = json!({"op": "sendRoomMessage", "roomID": "here", "message": {"type": "text", "message": "hi"}});
    let error = b.fails(send.clone(), 6000321).await;
    assert_eq!(error["reason"], "not_in_room");
    b.fails(
        json!({"op": "queryHistoryMessage", "roomID": "here"}),
        6000321,
    )
    .await;
    b.fails(
        json!({"op": "queryRoomMemberList", "roomID": "here"}),
        6000321,
    )
    .await;
    b.fails(
        json!({"op": "queryRoomOnlineMemberCount", "roomID": "here"}),
        6000321,
    )
    .await;
    b.fails(json!({"op": "leaveRoom", "roomID": "here"}), 6000321)
        .await;

    // Nothing b tried was stored.
    let history = a
        .ok(json!({"op": "queryHistoryMessage", "roomID": "here"}))
        .await;
    assert_eq!(history["messageList"], json!([]));

    b.ok(json!({"op": "joinRoom", "roomID": "here"})).await;
    b.ok(send).await;
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_get_1007_and_nothing_is_stored() {
    let app = spawn_app().await;
    let mut a = app.client("a").await;
    a.ok(json!({"op": "createRoom", "roomInfo": {"roomID": "big"}}))
        .await;
    let cases = [
        ("text", "x".repeat(32 * 1024 + 1), String::new()),
        ("custom", "x".repeat(32 * 1024 + 1), String::new()),
        ("command", "x".repeat(5 * 1024 + 1), String::new()),
        ("barrage", "x".repeat(5 * 1024 + 1), String::new()),
        ("text", "ok".into(), "x".repeat(1025)),
    ];
    for (kind, body, extended) in cases {
        let error = a
            .fails(
                json!({"op": "sendRoomMessage", "roomID": "big",
                       "message": {"type": kind, "message": body, "extendedData": extended}}),
                1007,
            )
            .await;
        assert_eq!(error["reason"], "too_large");
    }
    // At the limit is fine.
    a.ok(json!({"op": "sendRoomMessage", "roomID": "big",
                "message": {"type": "text", "message": "x".repeat(32 * 1024)}}))
        .await;
    let history = a
        .ok(json!({"op": "queryHistoryMessage", "roomID": "big"}))
        .await;
    assert_eq!(history["messageList"].as_array().unwrap().len(), 1);
    assert_eq!(history["messageList"][0]["seq"], 1);
    app.stop().await;
}

#[tokio::test]
async fn out_of_range_arguments_get_1003_naming_the_field() {
    let app = spawn_app().await;
    let mut a = app.client("a").await;
    let error = a
        .fails(
            json!({"op": "createRoom", "roomInfo": {"roomID": "slow"}, "config": {"roomDestroyDelayTime": 10801}}),
            1003,
        )
        .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("roomDestroyDelayTime"),
        "{error}"
    );
    a.ok(json!({"op": "createRoom", "roomInfo": {"roomID": "slow"}, "config": {"roomDestroyDelayTime": 10800}}))
        .await;
    let error = a
        .fails(
            json!({"op": "queryHistoryMessage", "roomID": "slow", "count": 101}),
            1003,
        )
        .await;
    assert!(
        error["message"].as_str().unwrap().starts_with("count"),
        "{error}"
    );
    let error = a
        .fails(
            json!({"op": "queryHistoryMessage", "roomID": "slow", "beforeSeq": 5, "afterSeq": 1}),
            1003,
        )
        .await;
    assert!(
        error["message"].as_str().unwrap().contains("beforeSeq"),
        "{error}"
    );
    let error = a
        .fails(json!({"op": "sendRoomMessage", "roomID": "slow", "message": {"type": "video", "message": "x"}}), 1003)
        .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("message.type"),
        "{error}"
    );
    a.fails(
        json!({"op": "login", "userInfo": {"userID": "someone-else"}}),
        1003,
    )
    .await;
    a.ok(json!({"op": "login", "userInfo": {"userID": "a"}}))
        .await;
    a.ok(json!({"op": "ping"})).await;
    app.stop().await;
}

fn token(secret: &str, sub: &str, exp_offset_secs: i64) -> String {
    let exp = chrono::Utc::now().timestamp() + exp_offset_secs;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "exp": exp, "name": "Token Name"}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn with_a_secret_login_needs_a_valid_token_for_that_user() {
    let mut config = test_config(&fresh_database().await);
    config.auth_secret = Some("s3cret-of-at-least-thirty-two-bytes".into());
    let app = spawn_app_with(config).await;

    let good = token("s3cret-of-at-least-thirty-two-bytes", "ann", 600);
    let reply = app
        .connect()
        .await
        .ok(json!({"op": "login", "userInfo": {"userID": "ann", "userName": "x"}, "token": good}))
        .await;
    assert_eq!(
        reply["userInfo"],
        json!({"userID": "ann", "userName": "Token Name"})
    );

    let bad_tokens = [
        None,
        Some(token("other", "ann", 600)),
        Some(token("s3cret-of-at-least-thirty-two-bytes", "bob", 600)),
        Some(token("s3cret-of-at-least-thirty-two-bytes", "ann", -3600)),
        Some("not.a.token".to_string()),
    ];
    for bad in bad_tokens {
        let mut client = app.connect().await;
        let error = client
            .fails(
                json!({"op": "login", "userInfo": {"userID": "ann"}, "token": bad}),
                1005,
            )
            .await;
        assert_eq!(error["reason"], "unauthorized");
        assert_eq!(client.closed().await, Some(4001), "token {bad:?}");
    }
    app.stop().await;
}
