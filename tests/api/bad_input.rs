//! Hostile and malformed input: a clear error, nothing stored, nobody hurt.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::spawn_app;

#[tokio::test]
async fn malformed_frames_get_errors_and_the_connection_stays_open() {
    let app = spawn_app().await;
    let mut a = app.client("a").await;

    for frame in [
        "{not json",
        "[1,2]",
        "42",
        "\"str\"",
        "",
        r#"{"op":"ping"}"#,
        r#"{"id":"7","op":"ping"}"#,
        r#"{"id":-1,"op":"ping"}"#,
        r#"{"id":4294967296,"op":"ping"}"#,
    ] {
        a.send_raw(Message::text(frame)).await;
        let reply = a.null_reply().await;
        assert_eq!(reply["ok"], false, "{frame}");
        assert_eq!(reply["error"]["code"], 1001, "{frame}: {reply}");
        assert_eq!(reply["error"]["reason"], "bad_frame");
    }

    a.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    let reply = a.null_reply().await;
    assert_eq!(reply["error"]["code"], 1001);

    let error = a.fails(json!({"op": "teleport"}), 1002).await;
    assert_eq!(error["reason"], "unknown_op");
    assert!(error["message"].as_str().unwrap().contains("teleport"));
    a.fails(json!({"op": 5}), 1003).await;
    a.fails(json!({}), 1003).await;

    a.ok(json!({"op": "ping"})).await;
    app.stop().await;
}

#[tokio::test]
async fn missing_and_ill_typed_fields_name_the_field() {
    let app = spawn_app().await;
    let mut a = app.client("a").await;
    a.ok(json!({"op": "createRoom", "roomInfo": {"roomID": "r"}}))
        .await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"op": "joinRoom"}), "roomID"),
        (json!({"op": "joinRoom", "roomID": 7}), "roomID"),
        (
            json!({"op": "joinRoom", "roomID": "r", "sinceSeq": "3"}),
            "sinceSeq",
        ),
        (
            json!({"op": "joinRoom", "roomID": "r", "sinceSeq": -1}),
            "sinceSeq",
        ),
        (json!({"op": "createRoom"}), "roomInfo"),
        (
            json!({"op": "createRoom", "roomInfo": {"roomName": "x"}}),
            "roomID",
        ),
        (
            json!({"op": "createRoom", "roomInfo": {"roomID": "r2", "roomName": 5}}),
            "roomInfo.roomName",
        ),
        (
            json!({"op": "createRoom", "roomInfo": {"roomID": "r2"}, "config": {"roomDestroyDelayTime": "x"}}),
            "config.roomDestroyDelayTime",
        ),
        (json!({"op": "sendRoomMessage", "roomID": "r"}), "message"),
        (
            json!({"op": "sendRoomMessage", "roomID": "r", "message": {"type": "text"}}),
            "message",
        ),
        (
            json!({"op": "sendRoomMessage", "roomID": "r", "message": {"type": "text", "message": 1}}),
            "message.message",
        ),
        (
            json!({"op": "sendRoomMessage", "roomID": "r", "message": {"type": "text", "message": "x"}, "config": {"priority": "urgent"}}),
            "config.priority",
        ),
        (
            json!({"op": "sendRoomMessage", "roomID": "r", "message": {"type": "text", "message": "x"}, "clientMessageID": ""}),
            "clientMessageID",
        ),
        (
            json!({"op": "sendRoomMessage", "roomID": "r", "message": {"type": "text", "message": "x"}, "clientMessageID": "c".repeat(65)}),
            "clientMessageID",
        ),
        (
            json!({"op": "queryHistoryMessage", "roomID": "r", "count": "ten"}),
            "count",
        ),
        (
            json!({"op": "queryRoomMemberList", "roomID": "r", "count": 0}),
            "count",
        ),
    ];
    for (request, field) in cases {
        let error = a.fails(request.clone(), 1003).await;
        assert_eq!(error["reason"], "invalid_argument");
        assert!(
            error["message"].as_str().unwrap().contains(field),
            "{request}: message should name {field}: {error}"
        );
    }
    // None of it stored anything.
    let history = a
        .ok(json!({"op": "queryHistoryMessage", "roomID": "r"}))
        .await;
    assert_eq!(history["messageList"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn room_ids_are_validated() {
    let app = spawn_app().await;
    let mut a = app.client("a").await;
    let too_long = "r".repeat(129);
    for bad in [
        "",
        too_long.as_str(),
        "with space",
        "quote'",
        "slash/",
        "émoji",
        "tab\t",
        "a\"b",
        "back\\slash",
        "comma,",
    ] {
        let error = a
            .fails(
                json!({"op": "enterRoom", "roomInfo": {"roomID": bad}}),
                1003,
            )
            .await;
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .starts_with("roomInfo.roomID"),
            "{bad:?}: {error}"
        );
        a.fails(json!({"op": "joinRoom", "roomID": bad}), 1003)
            .await;
    }
    let longest = "r".repeat(128);
    let odd = "!#$%&()+-:;<=.>?@[]^_{}|~";
    for good in [longest.as_str(), odd, "Z"] {
        a.ok(json!({"op": "enterRoom", "roomInfo": {"roomID": good}}))
            .await;
    }
    a.fails(
        json!({"op": "createRoom", "roomInfo": {"roomID": "n", "roomName": "x".repeat(65)}}),
        1003,
    )
    .await;
    a.fails(
        json!({"op": "login", "userInfo": {"userID": "a", "userName": "x".repeat(65)}}),
        1003,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn quotes_and_sql_are_stored_verbatim() {
    let app = spawn_app().await;
    let mut a = app.client("a").await;
    let mut b = app.client("b").await;
    let room = "x;drop-table(messages)--";
    let name = "Robert'); DROP TABLE rooms;-- \"quoted\" \\ é 😀";
    let created = a
        .ok(json!({"op": "createRoom", "roomInfo": {"roomID": room, "roomName": name}}))
        .await;
    assert_eq!(created["roomInfo"]["roomName"], name);
    b.ok(json!({"op": "joinRoom", "roomID": room})).await;
    let body = "'; delete from messages; -- \" \\n \u{1F600} <script>alert(1)</script>";
    let extended = r#"{"k": "v'"}"#;
    let sent = a
        .ok(json!({"op": "sendRoomMessage", "roomID": room,
                   "message": {"type": "custom", "message": body, "extendedData": extended}}))
        .await["message"]
        .clone();
    assert_eq!(sent["message"], body);
    assert_eq!(sent["extendedData"], extended);
    assert_eq!(sent["roomID"], room);
    let event = b.expect_event("roomMessageReceived").await;
    assert_eq!(event["messageList"][0], sent);
    let history = b
        .ok(json!({"op": "queryHistoryMessage", "roomID": room}))
        .await;
    assert_eq!(history["messageList"], json!([sent]));
    let encoded: String = url_escape(room);
    let (status, rest) = app.get(&format!("/v1/rooms/{encoded}")).await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["roomInfo"]["roomName"], name);
    app.stop().await;
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn an_oversized_frame_closes_only_that_connection_with_1009() {
    let app = spawn_app().await;
    let mut a = app.client("a").await;
    let mut b = app.client("b").await;
    a.ok(json!({"op": "createRoom", "roomInfo": {"roomID": "r"}}))
        .await;
    b.ok(json!({"op": "joinRoom", "roomID": "r"})).await;
    a.expect_joined("b").await;

    let mut attacker = app.client("mallory").await;
    attacker.ok(json!({"op": "joinRoom", "roomID": "r"})).await;
    a.expect_joined("mallory").await;
    b.expect_joined("mallory").await;
    let huge = json!({"id": 1, "op": "sendRoomMessage", "roomID": "r",
                      "message": {"type": "text", "message": "x".repeat(70 * 1024)}});
    attacker.send_raw(Message::text(huge.to_string())).await;
    attacker.expect_closed(1009).await;

    // The attacker's connection is gone, so it left; the others carry on.
    a.expect_left("mallory").await;
    b.expect_left("mallory").await;
    let sent = a.say("r", "still here").await;
    assert_eq!(sent["seq"], 1);
    b.expect_message(&sent).await;
    app.stop().await;
}
