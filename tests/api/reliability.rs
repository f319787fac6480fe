//! Reconnects without churn, gap-free resume, heartbeats, slow consumers and
//! graceful shutdown, in-process. The crash and database-outage tests that
//! run the real binary are in `faults.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Row;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{WAIT, fresh_database, spawn_app_with, test_config, wait_until};

#[tokio::test]
async fn a_reconnect_within_the_grace_causes_no_churn_and_a_missing_user_leaves_after_it() {
    let mut config = test_config(&fresh_database().await);
    config.reconnect_grace = Duration::from_millis(1500);
    let app = spawn_app_with(config).await;
    let mut watcher = app.client("watcher").await;
    watcher.create("flaky").await;
    let mut phone = app.client("phone").await;
    phone.join("flaky").await;
    watcher.expect_joined("phone").await;

    // The phone's network drops and it comes back quickly.
    drop(phone);
    let mut phone = app.client("phone").await;
    phone.join("flaky").await;
    // Watching past the end of the grace for churn that must not come.
    watcher.pump(Duration::from_millis(2000)).await;
    watcher.expect_silence().await;
    assert_eq!(watcher.member_count("flaky").await, 2);

    // This time it does not come back: it leaves when the grace ends.
    drop(phone);
    let dropped = Instant::now();
    watcher.expect_left("phone").await;
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
    let acked = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for s in 0..3 {
        let mut client = app.client(&format!("live{s}")).await;
        client.join("stream").await;
        let (stop, acked) = (stop.clone(), acked.clone());
        senders.push(tokio::spawn(async move {
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                last = client.say("stream", "live").await["seq"].as_i64().unwrap();
                acked.fetch_add(1, Ordering::Relaxed);
            }
            last
        }));
    }
    // Once the live senders are going, resume from seq 10.
    let live_before = 30;
    wait_until(WAIT, "live messages acknowledged", || async {
        acked.load(Ordering::Relaxed) >= live_before
    })
    .await;
    let mut reader = app.client("reader").await;
    let joined = reader.join_since("stream", 10).await;
    let last_at_join = joined["lastSeq"].as_i64().unwrap();
    assert!(
        last_at_join >= 600 + live_before as i64,
        "the join came after the live messages: {joined}"
    );
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
        let event = reader.expect_event("roomMessageReceived").await;
        for message in event["messageList"].as_array().unwrap() {
            seen.push(message["seq"].as_i64().unwrap());
        }
    }
    // Live messages went on while the reader caught up.
    assert!(
        last_sent > last_at_join,
        "nothing was sent after the join ({last_sent})"
    );
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
    responsive.expect_joined("deaf").await;
    // Reading answers the server's pings; the responsive client sends
    // nothing of its own for three idle timeouts. Nothing the deaf client
    // sends reaches the server any more (and it reads nothing), so it
    // answers no ping and is closed: its user leaves.
    deaf.mute();
    responsive.pump(Duration::from_millis(1100)).await;
    responsive.expect_left("deaf").await;
    responsive.ping().await;
    // It was closed for being idle, and told so.
    deaf.expect_closed(4002).await;
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
    sender.expect_joined("reader").await;
    sender.expect_joined("stuck").await;
    reader.expect_joined("stuck").await;

    // 16 MB of messages: far more than socket buffers and the stuck
    // client's queue hold. The stuck client reads nothing until the server
    // has dropped it (its user left), then reads what reached it.
    let body = "x".repeat(30 * 1024);
    let count = 550;
    let (dropped, was_dropped) = tokio::sync::oneshot::channel();
    let reading = tokio::spawn(async move {
        let (mut got, mut dropped) = (0, Some(dropped));
        while got < count || dropped.is_some() {
            let event = reader.event().await;
            if event["event"] == "roomMessageReceived" {
                got += event["messageList"].as_array().unwrap().len();
            } else {
                assert_eq!(event["event"], "roomMemberLeft", "{event}");
                assert_eq!(event["memberList"][0]["userID"], "stuck", "{event}");
                dropped.take().expect("one leave").send(()).unwrap();
            }
        }
        (reader, got)
    });
    let stuck_reads = tokio::spawn(async move {
        was_dropped
            .await
            .expect("the reader saw the stuck client leave");
        // What it would send now (pongs, its Close reply) is lost, so the
        // server's side of the close cannot be reset away.
        stuck.mute();
        let mut received = 0;
        loop {
            match stuck.raw_next().await {
                Some(Message::Text(_)) => received += 1,
                Some(Message::Close(frame)) => return (received, frame.map(|f| u16::from(f.code))),
                Some(_) => {}
                None => return (received, None),
            }
        }
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

    // The stuck client was cut off: it got less than everything, then a
    // Close frame saying why (4008).
    let (received, close) = tokio::time::timeout(WAIT, stuck_reads)
        .await
        .expect("the stuck client's connection ends")
        .unwrap();
    assert!(
        received < count,
        "the stuck client got everything ({received})"
    );
    assert_eq!(close, Some(4008));
    sender.expect_left("stuck").await;
    // Counted, by close code, so an operator sees slow consumers.
    let closes = r#"roomd_connections_closed_total{code="4008",reason="slow consumer"}"#;
    assert_eq!(app.metric(closes).await, 1.0);
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
    a.expect_joined("b").await;
    a.expect_joined("c").await;
    b.expect_joined("c").await;

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
