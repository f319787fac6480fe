//! History over WebSocket and REST, clientMessageID dedup, sinceSeq catch-up.

use serde_json::{Value, json};
use sqlx::Row;

use crate::helpers::{Client, TestApp, fresh_database, spawn_app, spawn_app_with, test_config};

async fn room_with_messages(app: &TestApp, room: &str, n: usize) -> Client {
    let mut a = app.client("writer").await;
    a.create(room).await;
    for i in 1..=n {
        a.say(room, &format!("message {i}")).await;
    }
    a
}

fn seqs(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn ws_history_pages_both_ways_without_gap_or_overlap() {
    let app = spawn_app().await;
    let mut a = room_with_messages(&app, "hist", 253).await;

    // Backwards from the newest.
    let mut all: Vec<i64> = Vec::new();
    let mut request = json!({"op": "queryHistoryMessage", "roomID": "hist", "count": 100});
    loop {
        let page = a.ok(request.clone()).await;
        let page_seqs = seqs(&page["messageList"]);
        assert!(
            page_seqs.windows(2).all(|w| w[0] + 1 == w[1]),
            "ascending within a page"
        );
        all.splice(0..0, page_seqs.iter().copied());
        if page["hasMore"] == false {
            break;
        }
        request["beforeSeq"] = json!(page_seqs[0]);
    }
    assert_eq!(all, (1..=253).collect::<Vec<i64>>());

    // Forwards from the start.
    let mut all: Vec<i64> = Vec::new();
    let mut after = 0;
    loop {
        let page = a
            .ok(json!({"op": "queryHistoryMessage", "roomID": "hist", "afterSeq": after, "count": 60}))
            .await;
        let page_seqs = seqs(&page["messageList"]);
        all.extend(&page_seqs);
        if page["hasMore"] == false {
            break;
        }
        after = *page_seqs.last().unwrap();
    }
    assert_eq!(all, (1..=253).collect::<Vec<i64>>());

    let default = a
        .ok(json!({"op": "queryHistoryMessage", "roomID": "hist"}))
        .await;
    assert_eq!(
        seqs(&default["messageList"]),
        (234..=253).collect::<Vec<i64>>()
    );
    assert_eq!(default["messageList"][19]["message"], "message 253");
    app.stop().await;
}

#[tokio::test]
async fn rest_history_pages_both_ways_without_gap_or_overlap() {
    let app = spawn_app().await;
    let _a = room_with_messages(&app, "rest-hist", 260).await;

    let mut all: Vec<i64> = Vec::new();
    let mut path = "/v1/rooms/rest-hist/messages?limit=70".to_string();
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["roomID"], "rest-hist");
        all.splice(0..0, seqs(&page["messages"]));
        if page["hasMore"] == false {
            assert_eq!(page["nextBeforeSeq"], Value::Null);
            break;
        }
        path = format!(
            "/v1/rooms/rest-hist/messages?limit=70&beforeSeq={}",
            page["nextBeforeSeq"]
        );
    }
    assert_eq!(all, (1..=260).collect::<Vec<i64>>());

    let mut all: Vec<i64> = Vec::new();
    let mut after = 0;
    loop {
        let (_, page) = app
            .get(&format!(
                "/v1/rooms/rest-hist/messages?limit=1000&afterSeq={after}"
            ))
            .await;
        let page_seqs = seqs(&page["messages"]);
        all.extend(&page_seqs);
        if page["hasMore"] == false {
            break;
        }
        after = page["nextAfterSeq"].as_i64().unwrap();
    }
    assert_eq!(all, (1..=260).collect::<Vec<i64>>());

    let (_, newest) = app.get("/v1/rooms/rest-hist/messages").await;
    assert_eq!(seqs(&newest["messages"]), (211..=260).collect::<Vec<i64>>());
    assert_eq!(newest["nextBeforeSeq"], 211);
    app.stop().await;
}

#[tokio::test]
async fn rest_history_filters_by_time() {
    let app = spawn_app().await;
    let mut a = room_with_messages(&app, "timed", 3).await;
    let mut db = app.db().await;
    // Move the first two messages an hour into the past.
    sqlx::query("update messages set created_at = created_at - interval '1 hour' where seq <= 2")
        .execute(&mut db)
        .await
        .unwrap();
    let cut = (chrono::Utc::now() - chrono::Duration::minutes(30)).to_rfc3339();
    let cut = cut.replace('+', "%2B");
    let (status, recent) = app
        .get(&format!("/v1/rooms/timed/messages?since={cut}"))
        .await;
    assert_eq!(status, 200, "{recent}");
    assert_eq!(seqs(&recent["messages"]), vec![3]);
    let (_, old) = app
        .get(&format!("/v1/rooms/timed/messages?until={cut}"))
        .await;
    assert_eq!(seqs(&old["messages"]), vec![1, 2]);
    let (status, bad) = app.get("/v1/rooms/timed/messages?since=yesterday").await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["code"], 1003);
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("since")
    );
    a.say("timed", "still works").await;
    app.stop().await;
}

#[tokio::test]
async fn non_members_cannot_read_history() {
    let mut config = test_config(&fresh_database().await);
    config.auth_secret = Some("secret-of-at-least-thirty-two-bytes".into());
    config.admin_token = Some("admin-token".into());
    let app = spawn_app_with(config).await;
    let user_token = |sub: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({"sub": sub, "exp": chrono::Utc::now().timestamp() + 600}),
            &jsonwebtoken::EncodingKey::from_secret(b"secret-of-at-least-thirty-two-bytes"),
        )
        .unwrap()
    };
    let mut member = app.connect().await;
    member
        .ok(json!({"op": "login", "userInfo": {"userID": "member"}, "token": user_token("member")}))
        .await;
    member.create("private").await;
    member.say("private", "secret plans").await;
    let mut outsider = app.connect().await;
    outsider
        .ok(json!({"op": "login", "userInfo": {"userID": "outsider"}, "token": user_token("outsider")}))
        .await;
    outsider
        .fails(
            json!({"op": "queryHistoryMessage", "roomID": "private"}),
            6000321,
        )
        .await;

    let path = "/v1/rooms/private/messages";
    let (status, body) = app.get(path).await;
    assert_eq!((status, body["error"]["code"].clone()), (401, json!(1005)));
    let (status, _) = app.get_with(path, Some("wrong")).await;
    assert_eq!(status, 401);
    let (status, body) = app.get_with(path, Some(&user_token("outsider"))).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!(6000321))
    );
    let (status, body) = app.get_with(path, Some(&user_token("member"))).await;
    assert_eq!(status, 200);
    assert_eq!(body["messages"][0]["message"], "secret plans");
    let (status, body) = app.get_with(path, Some("admin-token")).await;
    assert_eq!(status, 200);
    assert_eq!(body["messages"][0]["message"], "secret plans");
    let (status, _) = app
        .get_with("/v1/rooms/private/members", Some(&user_token("outsider")))
        .await;
    assert_eq!(status, 403);
    app.stop().await;
}

#[tokio::test]
async fn a_resent_client_message_id_returns_the_original() {
    let app = spawn_app().await;
    let mut a = app.client("a").await;
    let mut b = app.client("b").await;
    a.create("dedup").await;
    b.join("dedup").await;
    a.expect_joined("b").await;

    let first = a.say_with_id("dedup", "hello", "c-1").await;
    let again = a.say_with_id("dedup", "hello", "c-1").await;
    assert_eq!(first, again);
    // Even with a different body, the id decides.
    let changed = a.say_with_id("dedup", "hello, edited", "c-1").await;
    assert_eq!(first, changed);
    // Another sender may use the same id.
    let other = b.say_with_id("dedup", "mine", "c-1").await;
    assert_eq!(other["seq"], 2);

    // Each stored message is delivered once; the resends are not.
    b.expect_message(&first).await;
    b.expect_silence().await;
    a.expect_message(&other).await;
    a.expect_silence().await;

    let mut db = app.db().await;
    let stored: i64 = sqlx::query("select count(*) from messages where room_id = 'dedup'")
        .fetch_one(&mut db)
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 2);
    app.stop().await;
}

#[tokio::test]
async fn joining_with_since_seq_replays_what_was_missed_then_live() {
    let app = spawn_app().await;
    let mut a = room_with_messages(&app, "resume", 150).await;
    let mut b = app.client("b").await;
    let joined = b.join_since("resume", 20).await;
    assert_eq!(joined["lastSeq"], 150);
    let replayed = b.expect_messages(130).await;
    assert_eq!(seqs(&json!(replayed)), (21..=150).collect::<Vec<i64>>());
    let live = a.say("resume", "live").await;
    b.expect_message(&live).await;
    b.expect_silence().await;

    // Up to date: nothing to replay.
    let mut c = app.client("c").await;
    c.ok(json!({"op": "enterRoom", "roomInfo": {"roomID": "resume"}, "sinceSeq": 151}))
        .await;
    c.expect_silence().await;
    app.stop().await;
}

#[tokio::test]
async fn history_reads_are_index_range_scans() {
    let app = spawn_app().await;
    let mut db = app.db().await;
    // Enough rooms and rows that a sequential scan would never be chosen.
    sqlx::query("insert into room_streams (room_id, last_seq) select 'room' || g, 100 from generate_series(1, 200) g")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query(
        "insert into messages (room_id, seq, sender_user_id, kind, body, extended_data, priority)
         select 'room' || (g % 200 + 1), g / 200 + 1, 'u', 'text', 'x', '', 'medium'
         from generate_series(0, 19999) g",
    )
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query("analyze messages")
        .execute(&mut db)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "explain select id, seq from messages
         where room_id = 'room7' and seq < 50
           and (null::timestamptz is null or created_at >= null)
         order by seq desc limit 21",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index Scan Backward using messages_room_seq"),
        "history should be a backward range scan on (room_id, seq):\n{plan}"
    );
    app.stop().await;
}

#[tokio::test]
async fn concurrent_resends_of_one_client_message_id_store_it_once() {
    let app = spawn_app().await;
    let mut first = app.client("twin").await;
    let mut second = app.client("twin").await;
    first.create("twins").await;
    second.join("twins").await;
    // Both connections fire the same ids at once, so they meet in one batch
    // or in racing batches.
    let mut ids = Vec::new();
    for n in 0..50 {
        let request = json!({"op": "sendRoomMessage", "roomID": "twins", "clientMessageID": format!("dup-{n}"),
                             "message": {"type": "text", "message": format!("m{n}")}});
        ids.push((
            first.send(request.clone()).await,
            second.send(request).await,
        ));
    }
    for (a, b) in ids {
        let a = first.reply(a).await;
        let b = second.reply(b).await;
        assert_eq!(a["ok"], true, "{a}");
        assert_eq!(
            a["message"], b["message"],
            "both sends answer with the one stored message"
        );
    }
    let mut db = app.db().await;
    let rows: Vec<(i64, String)> =
        sqlx::query("select seq, client_message_id from messages order by seq")
            .fetch_all(&mut db)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(rows.len(), 50);
    assert_eq!(
        rows.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=50).collect::<Vec<i64>>()
    );
    let mut stored_ids: Vec<&str> = rows.iter().map(|(_, id)| id.as_str()).collect();
    stored_ids.sort();
    let mut sent_ids: Vec<String> = (0..50).map(|n| format!("dup-{n}")).collect();
    sent_ids.sort();
    assert_eq!(stored_ids, sent_ids, "each clientMessageID stored once");
    app.stop().await;
}
