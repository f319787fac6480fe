//! Reconnects without churn, gap-free resume, heartbeats, slow consumers and
//! graceful shutdown, in-process. The crash and database-outage tests that
//! run the real binary are in `faults.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Row;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{fresh_database, spawn_app_with, test_config};

#[tokio::test]
async fn a_reconnect_within_the_grace_causes_no_churn_and_a_missing_user_leaves_after_it() {
    let mut config = test_config(&fresh_database().await);
    config.reconnect_grace = Duration::from_millis(1500);
    let app = spawn_app_with(config).await;
    let mut watcher = app.client("watcher").await;
    watcher.create("flaky").await;
    let phone = app.client("phone").await;
    let mut phone = phone;
    phone.join("flaky").await;
    watcher.expect_event("roomMemberJoined").await;

    // The phone's network drops and it comes back quickly.
    drop(phone);
    let mut phone = app.client("phone").await;
    phone.join("flaky").await;
    watcher.pump(Duration::from_millis(2000)).await;
    watcher.expect_silence().await;
    assert_eq!(watcher.member_count("flaky").await, 2);

    // This time it does not come back: it leaves when the grace ends.
    drop(phone);
    let dropped = Instant::now();
    let left = watcher.expect_event("roomMemberLeft").await;
    assert_eq!(left["memberList"][0]["userID"], "phone");
    assert!(
        dropped.elapsed() >= Duration::from_millis(1400),
        "left after {:?}",
        dropped.elapsed()
    );

    // The last member dropping starts the destruction countdown when its grace ends.
    drop(watcher);
    let dropped = Instant::now();
    let gone = app.wait_until_gone("flaky", Duration::from_secs(8)).await;
    assert!(
        gone - dropped >= Duration::from_millis(1400),
        "destroyed during the grace"
    );
    app.stop().await;
}

#[tokio::test]
async fn resuming_with_since_seq_while_others_send_has_no_gap_and_no_duplicate() {
    let app = spawn_app_with(test_config(&fresh_database().await)).await;
    let mut writer = app.client("writer").await;
    writer.create("stream").await;
    for i in 0..600 {
        writer.say("stream", &format!("backlog {i}")).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for s in 0..3 {
        let mut client = app.client(&format!("live{s}")).await;
        client.join("stream").await;
        let stop = stop.clone();
        senders.push(tokio::spawn(async move {
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                last = client.say("stream", "live").await["seq"].as_i64().unwrap();
            }
            last
        }));
    }
    // Let the live senders get going, then resume from seq 10.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut reader = app.client("reader").await;
    let joined = reader.join_since("stream", 10).await;
    assert!(joined["lastSeq"].as_i64().unwrap() >= 600);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_sent = i64::MAX;
    loop {
        if seen.len() as i64 >= 700 && !stop.load(Ordering::Relaxed) {
            stop.store(true, Ordering::Relaxed);
            last_sent = 0;
            for sender in senders.drain(..) {
                last_sent = last_sent.max(sender.await.unwrap());
            }
        }
        if seen.last().copied() == Some(last_sent) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stuck after {} messages",
            seen.len()
        );
        let event = reader.event().await;
        if event["event"] == "roomMessageReceived" {
            for message in event["messageList"].as_array().unwrap() {
                seen.push(message["seq"].as_i64().unwrap());
            }
        }
    }
    let expected: Vec<i64> = (11..=last_sent).collect();
    assert_eq!(
        seen, expected,
        "every seq after sinceSeq exactly once, in order"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_server_pings_and_closes_a_connection_that_stops_answering() {
    let mut config = test_config(&fresh_database().await);
    config.ping_interval = Duration::from_millis(100);
    config.idle_timeout = Duration::from_millis(350);
    let app = spawn_app_with(config).await;
    let mut responsive = app.client("responsive").await;
    responsive.create("hb").await;
    let mut deaf = app.client("deaf").await;
    deaf.join("hb").await;
    responsive.expect_event("roomMemberJoined").await;
    // Reading answers the server's pings; the responsive client sends
    // nothing of its own for three idle timeouts. The deaf client reads
    // nothing, so it answers no ping and is closed: its user leaves.
    responsive.pump(Duration::from_millis(1100)).await;
    let left = responsive.expect_event("roomMemberLeft").await;
    assert_eq!(left["memberList"][0]["userID"], "deaf");
    responsive.ping().await;
    // Its pongs for the pings it reads now may hit the closed socket first.
    assert!(matches!(deaf.closed().await, None | Some(4002)));
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_without_slowing_the_room() {
    let mut config = test_config(&fresh_database().await);
    config.limits.outbox_frames = 32;
    config.limits.outbox_bytes = 256 * 1024;
    let app = spawn_app_with(config).await;
    let mut sender = app.client("sender").await;
    sender.create("firehose").await;
    let mut reader = app.client("reader").await;
    reader.join("firehose").await;
    let mut stuck = app.client("stuck").await;
    stuck.join("firehose").await;
    sender.expect_event("roomMemberJoined").await;
    sender.expect_event("roomMemberJoined").await;
    reader.expect_event("roomMemberJoined").await;

    // 16 MB of messages: far more than socket buffers and the stuck
    // client's queue hold. The stuck client reads nothing meanwhile.
    let body = "x".repeat(30 * 1024);
    let count = 550;
    let reading = tokio::spawn(async move {
        let mut got = 0;
        while got < count {
            let event = reader.event().await;
            if event["event"] == "roomMessageReceived" {
                got += event["messageList"].as_array().unwrap().len();
            }
        }
        (reader, got)
    });
    for _ in 0..count {
        sender
            .ok(json!({"op": "sendRoomMessage", "roomID": "firehose",
                       "message": {"type": "text", "message": body}}))
            .await;
    }
    let (_reader, got) = tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, count);

    // The stuck client was cut off: reading now ends before all messages,
    // with a close (4008) or the socket going away.
    let mut received = 0;
    let mut close = None;
    loop {
        match stuck.raw_next().await {
            Some(Message::Text(_)) => received += 1,
            Some(Message::Close(frame)) => {
                close = frame.map(|f| u16::from(f.code));
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    assert!(
        received < count,
        "the stuck client got everything ({received})"
    );
    assert!(matches!(close, None | Some(4008)), "{close:?}");
    let left = sender.expect_event("roomMemberLeft").await;
    assert_eq!(left["memberList"][0]["userID"], "stuck");
    app.stop().await;
}

#[tokio::test]
async fn shutdown_announces_itself_and_a_quick_restart_causes_no_churn() {
    let url = fresh_database().await;
    let config = || {
        let mut config = test_config(&url);
        config.reconnect_grace = Duration::from_secs(2);
        config
    };
    let app = spawn_app_with(config()).await;
    let mut a = app.client("a").await;
    let mut b = app.client("b").await;
    let mut c = app.client("c").await;
    a.create("steady").await;
    b.join("steady").await;
    c.join("steady").await;
    for _ in 0..2 {
        a.expect_event("roomMemberJoined").await;
    }
    b.expect_event("roomMemberJoined").await;

    // B has messages in flight when the server stops.
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            b.send(json!({"op": "sendRoomMessage", "roomID": "steady", "clientMessageID": format!("b-{i}"),
                          "message": {"type": "text", "message": "in flight"}}))
                .await,
        );
    }
    let mut db = app.db().await;
    app.stop().await;

    // Everything B got an ack for is stored, and everything stored was acked.
    let mut acked = Vec::new();
    let mut shutdown_notice = None;
    loop {
        match b.raw_next().await {
            Some(Message::Text(text)) => {
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                if frame["event"] == "roomStateChanged" {
                    shutdown_notice = Some(frame);
                } else if frame["ok"] == true && frame["message"].is_object() {
                    acked.push(frame["message"]["seq"].as_i64().unwrap());
                }
            }
            Some(Message::Close(frame)) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001));
                break;
            }
            Some(_) => {}
            None => panic!("closed without a close frame"),
        }
    }
    let notice = shutdown_notice.expect("roomStateChanged before the close");
    assert_eq!(notice["roomID"], "steady");
    assert_eq!(notice["state"], "disconnected");
    assert_eq!(notice["reason"], "serverShutdown");
    let stored: Vec<i64> = sqlx::query("select seq from messages order by seq")
        .fetch_all(&mut db)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, acked);
    assert!(!acked.is_empty());
    drop(ids);

    // A quick restart: A and B come back, C does not.
    let app = spawn_app_with(config()).await;
    let mut a = app.client("a").await;
    a.join("steady").await;
    let mut b = app.client("b").await;
    b.join("steady").await;
    let left = a.expect_event("roomMemberLeft").await;
    assert_eq!(
        left["memberList"],
        json!([{"userID": "c", "userName": "c name"}])
    );
    // No joined/left for A or B at any point.
    a.expect_silence().await;
    drop(c);
    app.stop().await;
}
