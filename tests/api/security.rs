//! Who gets in, how fast, how much: tokens, the open-mode guard, rate,
//! size and count limits, timeouts, and hostile clients.

use std::num::NonZeroU32;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng};
use roomd::App;
use serde_json::{Value, json};
use sqlx::Row;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{fresh_database, roomd_command, spawn_app, spawn_app_with, test_config};

fn n(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap()
}

#[tokio::test]
async fn roomd_token_prints_a_token_that_login_accepts() {
    let output = roomd_command()
        .args([
            "token", "--user", "tokened", "--name", "Tok", "--ttl", "10m",
        ])
        .env(
            "ROOMD_AUTH_SECRET",
            "cli-secret-of-at-least-thirty-two-bytes",
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let token = stdout.trim_end_matches('\n');
    assert_eq!(
        token.split('.').count(),
        3,
        "a JWT alone on stdout: {stdout:?}"
    );
    assert!(!token.contains(char::is_whitespace));

    let mut config = test_config(&fresh_database().await);
    config.auth_secret = Some("cli-secret-of-at-least-thirty-two-bytes".into());
    let app = spawn_app_with(config).await;
    let reply = app
        .connect()
        .await
        .ok(json!({"op": "login", "userInfo": {"userID": "tokened"}, "token": token}))
        .await;
    assert_eq!(reply["userInfo"]["userName"], "Tok");
    app.stop().await;

    // No secret: a clear failure, nothing on stdout.
    let output = roomd_command()
        .args(["token", "--user", "x"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--auth-secret"));
}

#[tokio::test]
async fn open_mode_refuses_a_public_address_unless_told_otherwise() {
    let url = fresh_database().await;
    let mut config = test_config(&url);
    config.bind = "0.0.0.0:0".parse().unwrap();
    let error = App::build(config.clone()).await.err().expect("refused");
    assert!(error.to_string().contains("--insecure-open"), "{error}");

    config.insecure_open = true;
    let app = spawn_app_with(config.clone()).await;
    app.stop().await;

    config.insecure_open = false;
    config.auth_secret = Some("a-secret-of-at-least-thirty-two-bytes".into());
    let app = spawn_app_with(config).await;
    app.stop().await;
}

#[tokio::test]
async fn requests_over_the_connection_rate_get_1006_and_the_connection_stays() {
    let mut config = test_config(&fresh_database().await);
    config.limits.requests_per_second = n(2);
    config.limits.requests_burst = n(5);
    let app = spawn_app_with(config).await;
    let mut client = app.client("eager").await; // the login is request 1
    for _ in 0..4 {
        client.ping().await;
    }
    let error = client.fails(json!({"op": "ping"}), 1006).await;
    assert_eq!(error["reason"], "rate_limited");
    let retry = error["retryAfterMs"].as_u64().expect("retryAfterMs");
    assert!((1..=500).contains(&retry), "{retry}");
    tokio::time::sleep(Duration::from_millis(retry)).await;
    client.ping().await;
    app.stop().await;
}

#[tokio::test]
async fn messages_over_the_user_rate_are_refused_and_not_stored() {
    let mut config = test_config(&fresh_database().await);
    config.limits.messages_per_second = n(1);
    config.limits.messages_burst = n(3);
    let app = spawn_app_with(config).await;
    let mut phone = app.client("chatty").await;
    let mut laptop = app.client("chatty").await;
    phone.create("r").await;
    laptop.join("r").await;
    phone.say("r", "1").await;
    laptop.say("r", "2").await;
    phone.say("r", "3").await;
    // The limit is per user, across connections.
    let error = laptop
        .fails(json!({"op": "sendRoomMessage", "roomID": "r", "message": {"type": "text", "message": "4"}}), 1006)
        .await;
    assert!(error["retryAfterMs"].as_u64().unwrap() > 0);
    let mut db = app.db().await;
    let stored: i64 = sqlx::query("select count(*) from messages")
        .fetch_one(&mut db)
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 3);
    laptop.ping().await;
    app.stop().await;
}

#[tokio::test]
async fn logins_over_the_address_rate_get_1006() {
    let mut config = test_config(&fresh_database().await);
    config.limits.logins_per_second = n(2);
    let app = spawn_app_with(config).await;
    let _first = app.client("one").await;
    let _second = app.client("two").await;
    let mut third = app.connect().await;
    let error = third
        .fails(
            json!({"op": "login", "userInfo": {"userID": "three"}}),
            1006,
        )
        .await;
    assert!(error["retryAfterMs"].as_u64().unwrap() > 0);
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_keeps_ignoring_limits_is_closed_with_4029() {
    let mut config = test_config(&fresh_database().await);
    config.limits.requests_per_second = n(1);
    config.limits.requests_burst = n(2);
    config.limits.abuse_limit = n(20);
    let app = spawn_app_with(config).await;
    let mut flooder = app.client("flooder").await;
    for id in 0..100u32 {
        flooder
            .send_raw(Message::text(json!({"id": id, "op": "ping"}).to_string()))
            .await;
    }
    flooder.expect_closed(4029).await;
    // Others are unaffected.
    app.client("bystander").await.ping().await;
    app.stop().await;
}

#[tokio::test]
async fn count_limits_have_their_own_codes() {
    let mut config = test_config(&fresh_database().await);
    config.limits.max_rooms = 3;
    config.limits.max_rooms_per_user = 2;
    config.limits.max_members_per_room = 2;
    let app = spawn_app_with(config).await;
    let mut a = app.client("a").await;
    let mut b = app.client("b").await;
    let mut c = app.client("c").await;
    a.create("r1").await;
    a.create("r2").await;
    let error = a
        .fails(
            json!({"op": "createRoom", "roomInfo": {"roomID": "r3"}}),
            6000325,
        )
        .await;
    assert_eq!(error["reason"], "user_room_limit");
    a.fails(
        json!({"op": "enterRoom", "roomInfo": {"roomID": "r1-again"}}),
        6000325,
    )
    .await;

    b.join("r1").await;
    let error = c
        .fails(json!({"op": "joinRoom", "roomID": "r1"}), 6000327)
        .await;
    assert_eq!(error["reason"], "room_full");

    c.create("r3").await;
    let error = c
        .fails(
            json!({"op": "enterRoom", "roomInfo": {"roomID": "r4"}}),
            6000324,
        )
        .await;
    assert_eq!(error["reason"], "room_limit");

    // Nothing half-made: the refused rooms do not exist.
    for room in ["r1-again", "r4"] {
        assert!(!app.room_exists(room).await, "{room}");
    }
    // Rejoining a room one is already in is not a new membership.
    a.join("r1").await;
    app.stop().await;
}

#[tokio::test]
async fn connection_limits_close_with_clear_codes() {
    let mut config = test_config(&fresh_database().await);
    config.limits.max_connections_per_user = 2;
    config.limits.max_connections = 3;
    let app = spawn_app_with(config).await;
    let _one = app.client("same").await;
    let _two = app.client("same").await;
    let mut three = app.connect().await;
    let error = three
        .fails(json!({"op": "login", "userInfo": {"userID": "same"}}), 1006)
        .await;
    assert!(error["message"].as_str().unwrap().contains("connections"));
    three.expect_closed(4030).await;

    let _other = app.client("other").await;
    let mut over = app.connect().await;
    over.expect_closed(1013).await;
    app.stop().await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_and_a_talking_one_is_not() {
    let mut config = test_config(&fresh_database().await);
    config.idle_timeout = Duration::from_millis(400);
    let app = spawn_app_with(config).await;
    let mut talker = app.client("talker").await;
    // The talker pings more often than the timeout, all along.
    let talking = tokio::spawn(async move {
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(1000) {
            talker.send_raw(Message::Ping(Vec::new().into())).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        talker
    });
    let mut silent = app.client("silent").await;
    silent.expect_closed(4002).await;
    let mut talker = talking.await.unwrap();
    talker.ping().await;
    app.stop().await;
}

/// Frames a hostile client sends: garbage, truncations and mutations of real
/// requests, binary frames, deep nesting, huge numbers.
fn hostile_frame(rng: &mut rand::rngs::StdRng) -> Message {
    let templates = [
        json!({"id": 1, "op": "login", "userInfo": {"userID": "mallory", "userName": "M"}}),
        json!({"id": 2, "op": "joinRoom", "roomID": "shared", "sinceSeq": 0}),
        json!({"id": 3, "op": "sendRoomMessage", "roomID": "shared", "message": {"type": "text", "message": "hi"}, "clientMessageID": "x"}),
        json!({"id": 4, "op": "queryHistoryMessage", "roomID": "shared", "beforeSeq": 10, "count": 5}),
        json!({"id": 5, "op": "enterRoom", "roomInfo": {"roomID": "elsewhere", "roomName": "E"}, "config": {"roomDestroyDelayTime": 5}}),
        json!({"id": 6, "op": "queryRoomMemberList", "roomID": "shared", "nextFlag": "", "count": 3}),
        json!({"id": 7, "op": "leaveRoom", "roomID": "elsewhere"}),
    ];
    let template = templates[rng.random_range(0..templates.len())].to_string();
    match rng.random_range(0..6) {
        0 => {
            let len = rng.random_range(0..300);
            Message::text((0..len).map(|_| rng.random::<char>()).collect::<String>())
        }
        1 => {
            let cut = rng.random_range(0..template.len());
            Message::text(template[..cut].to_string())
        }
        2 => {
            let mut bytes = template.into_bytes();
            for _ in 0..rng.random_range(1..6) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random_range(0x20..0x7f);
            }
            Message::text(String::from_utf8(bytes).unwrap())
        }
        3 => {
            let len = rng.random_range(0..500);
            Message::binary((0..len).map(|_| rng.random::<u8>()).collect::<Vec<u8>>())
        }
        4 => {
            let depth = rng.random_range(1..200);
            Message::text(format!("{}{}", "[".repeat(depth), "]".repeat(depth)))
        }
        _ => {
            let mut value: Value = serde_json::from_str(&template).unwrap();
            let key =
                ["id", "op", "roomID", "count", "sinceSeq", "message"][rng.random_range(0..6)];
            value[key] = match rng.random_range(0..5) {
                0 => json!(null),
                1 => json!(u64::MAX),
                2 => json!(-1.5e300),
                3 => json!({"nested": [1, {"x": "y"}]}),
                _ => json!("\u{0000}\u{ffff}"),
            };
            Message::text(value.to_string())
        }
    }
}

#[tokio::test]
async fn a_hostile_client_changes_nothing_for_a_well_behaved_one() {
    let app = spawn_app().await;
    let mut good = app.client("good").await;
    let mut speaker = app.client("speaker").await;
    good.create("shared").await;
    speaker.join("shared").await;
    good.expect_joined("speaker").await;

    let (ws, _) = tokio_tungstenite::connect_async(app.ws_url())
        .await
        .unwrap();
    let (mut sink, mut stream) = ws.split();
    // Read everything the server says to the hostile client; every text
    // frame must be well-formed JSON.
    let reader = tokio::spawn(async move {
        let mut replies = 0u32;
        while let Some(Ok(frame)) = stream.next().await {
            if let Message::Text(text) = frame {
                let value: Value = serde_json::from_str(&text).expect("server sends JSON");
                if value.get("event").is_none() {
                    assert!(value["ok"].is_boolean(), "{value}");
                    if value["ok"] == false {
                        assert!(value["error"]["code"].is_u64(), "{value}");
                        assert!(value["error"]["message"].is_string(), "{value}");
                    }
                    replies += 1;
                }
            }
        }
        replies
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x600d_f00d);
    for _ in 0..10_000 {
        if sink.send(hostile_frame(&mut rng)).await.is_err() {
            break;
        }
    }
    // Meanwhile the room works as if nothing happened.
    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(speaker.say("shared", &format!("legit {i}")).await);
    }
    let mut received = Vec::new();
    while received.len() < sent.len() {
        let event = good.event().await;
        if event["event"] == "roomMessageReceived" {
            for message in event["messageList"].as_array().unwrap() {
                if message["senderUserID"] == "speaker" {
                    received.push(message.clone());
                }
            }
        }
    }
    assert_eq!(received, sent);
    let _ = sink.close().await;
    let replies = reader.await.unwrap();
    assert!(replies > 9_000, "the hostile client got {replies} replies");
    assert_eq!(app.get("/healthz").await.0, 200);
    good.ping().await;
    app.stop().await;
}
