//! The room flow of PROTOCOL.md end to end.

use serde_json::{Value, json};

use crate::helpers::{Client, say, spawn_app};

#[tokio::test]
async fn three_users_share_a_room_and_messages_reach_the_others_once() {
    let app = spawn_app().await;
    let mut a = app.client("alice").await;
    let mut b = app.client("bob").await;
    let mut c = app.client("carol").await;

    let created = a
        .ok(json!({"op": "createRoom", "roomInfo": {"roomID": "math-101", "roomName": "Math"}}))
        .await;
    assert_eq!(
        created["roomInfo"],
        json!({"roomID": "math-101", "roomName": "Math"})
    );

    let joined = b.ok(json!({"op": "joinRoom", "roomID": "math-101"})).await;
    assert_eq!(joined["roomInfo"]["roomName"], "Math");
    assert_eq!(joined["lastSeq"], 0);
    let event = a.expect_event("roomMemberJoined").await;
    assert_eq!(event["roomID"], "math-101");
    assert_eq!(
        event["memberList"],
        json!([{"userID": "bob", "userName": "bob name"}])
    );

    c.ok(json!({"op": "joinRoom", "roomID": "math-101"})).await;
    for member in [&mut a, &mut b] {
        let event = member.expect_event("roomMemberJoined").await;
        assert_eq!(event["memberList"][0]["userID"], "carol");
    }

    // Everyone speaks; the others get each message once, in seq order; the
    // sender gets only the reply.
    let m1 = say(&mut a, "math-101", "from a").await;
    let m2 = say(&mut b, "math-101", "from b").await;
    let m3 = say(&mut c, "math-101", "from c").await;
    assert_eq!(
        (m1["seq"].clone(), m2["seq"].clone(), m3["seq"].clone()),
        (json!(1), json!(2), json!(3))
    );
    assert_eq!(m1["senderUserID"], "alice");
    assert_eq!(m1["type"], "text");
    assert_eq!(m1["priority"], "medium");
    assert!(m1["messageID"].is_string());
    assert!(m1["timestamp"].as_i64().unwrap() > 1_700_000_000_000);

    let expected = [
        (&mut a, vec![&m2, &m3]),
        (&mut b, vec![&m1, &m3]),
        (&mut c, vec![&m1, &m2]),
    ];
    for (client, messages) in expected {
        for message in messages {
            let event = client.expect_event("roomMessageReceived").await;
            assert_eq!(event["roomID"], "math-101");
            assert_eq!(event["messageList"], json!([message]));
        }
        client.expect_silence().await;
    }

    // B leaves: the others are told, and B hears nothing more.
    let left = b.ok(json!({"op": "leaveRoom", "roomID": "math-101"})).await;
    assert_eq!(left["roomID"], "math-101");
    for member in [&mut a, &mut c] {
        let event = member.expect_event("roomMemberLeft").await;
        assert_eq!(
            event["memberList"],
            json!([{"userID": "bob", "userName": "bob name"}])
        );
    }
    say(&mut a, "math-101", "after bob left").await;
    c.expect_event("roomMessageReceived").await;
    b.expect_silence().await;
    b.fails(json!({"op": "sendRoomMessage", "roomID": "math-101", "message": {"type": "text", "message": "x"}}), 6000321)
        .await;

    app.stop().await;
}

#[tokio::test]
async fn enter_room_creates_a_missing_room_and_joins_an_existing_one() {
    let app = spawn_app().await;
    let mut x = app.client("xavier").await;
    let mut y = app.client("yvonne").await;

    let entered = x
        .ok(json!({"op": "enterRoom", "roomInfo": {"roomID": "lobby", "roomName": "Lobby"}}))
        .await;
    assert_eq!(
        entered["roomInfo"],
        json!({"roomID": "lobby", "roomName": "Lobby"})
    );
    assert_eq!(entered["lastSeq"], 0);

    // Name and config only apply when enterRoom creates the room.
    let entered = y
        .ok(json!({"op": "enterRoom", "roomInfo": {"roomID": "lobby", "roomName": "Other"}}))
        .await;
    assert_eq!(entered["roomInfo"]["roomName"], "Lobby");
    let event = x.expect_event("roomMemberJoined").await;
    assert_eq!(event["memberList"][0]["userID"], "yvonne");

    let sent = say(&mut y, "lobby", "hello").await;
    let event = x.expect_event("roomMessageReceived").await;
    assert_eq!(event["messageList"][0], sent);
    y.expect_silence().await;

    // createRoom on an existing room fails and changes nothing.
    y.fails(
        json!({"op": "createRoom", "roomInfo": {"roomID": "lobby", "roomName": "Again"}}),
        6000323,
    )
    .await;
    x.expect_silence().await;
    app.stop().await;
}

#[tokio::test]
async fn joining_twice_is_idempotent_and_silent() {
    let app = spawn_app().await;
    let mut a = app.client("a").await;
    let mut b = app.client("b").await;
    a.ok(json!({"op": "createRoom", "roomInfo": {"roomID": "r1", "roomName": ""}}))
        .await;
    b.ok(json!({"op": "joinRoom", "roomID": "r1"})).await;
    a.expect_event("roomMemberJoined").await;

    b.ok(json!({"op": "joinRoom", "roomID": "r1"})).await;
    b.ok(json!({"op": "enterRoom", "roomInfo": {"roomID": "r1"}}))
        .await;
    a.ok(json!({"op": "joinRoom", "roomID": "r1"})).await;
    a.expect_silence().await;
    b.expect_silence().await;

    let count = a
        .ok(json!({"op": "queryRoomOnlineMemberCount", "roomID": "r1"}))
        .await;
    assert_eq!(count["count"], 2);
    app.stop().await;
}

#[tokio::test]
async fn one_user_on_two_connections_is_one_member() {
    let app = spawn_app().await;
    let mut watcher = app.client("watcher").await;
    watcher
        .ok(json!({"op": "createRoom", "roomInfo": {"roomID": "multi"}}))
        .await;

    let mut phone = app.client("dana").await;
    let mut laptop = app.client("dana").await;
    phone.ok(json!({"op": "joinRoom", "roomID": "multi"})).await;
    let joined = watcher.expect_event("roomMemberJoined").await;
    assert_eq!(joined["memberList"][0]["userID"], "dana");
    laptop
        .ok(json!({"op": "joinRoom", "roomID": "multi"}))
        .await;
    watcher.expect_silence().await;

    let count = watcher
        .ok(json!({"op": "queryRoomOnlineMemberCount", "roomID": "multi"}))
        .await;
    assert_eq!(count["count"], 2);

    // A message from one of Dana's connections reaches her other one.
    let sent = say(&mut phone, "multi", "from the phone").await;
    assert_eq!(
        laptop.expect_event("roomMessageReceived").await["messageList"][0],
        sent
    );
    assert_eq!(
        watcher.expect_event("roomMessageReceived").await["messageList"][0],
        sent
    );
    phone.expect_silence().await;

    // The first connection leaving does not make Dana leave.
    phone
        .ok(json!({"op": "leaveRoom", "roomID": "multi"}))
        .await;
    watcher.expect_silence().await;

    // The last one going away (dropped, not left) does.
    drop(laptop);
    let left = watcher.expect_event("roomMemberLeft").await;
    assert_eq!(left["memberList"][0]["userID"], "dana");
    let count = watcher
        .ok(json!({"op": "queryRoomOnlineMemberCount", "roomID": "multi"}))
        .await;
    assert_eq!(count["count"], 1);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_senders_are_delivered_in_seq_order_without_gaps() {
    let app = spawn_app().await;
    let mut reader = app.client("reader").await;
    reader
        .ok(json!({"op": "createRoom", "roomInfo": {"roomID": "busy"}}))
        .await;
    let per_sender = 40;
    let mut senders = Vec::new();
    for i in 0..4 {
        let mut client = app.client(&format!("sender{i}")).await;
        client.ok(json!({"op": "joinRoom", "roomID": "busy"})).await;
        senders.push(client);
    }
    // Drain the join events.
    for _ in 0..4 {
        reader.expect_event("roomMemberJoined").await;
    }
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                for n in 0..per_sender {
                    say(&mut client, "busy", &format!("m{n}")).await;
                }
                client
            })
        })
        .collect();
    let mut seqs = Vec::new();
    while seqs.len() < 4 * per_sender {
        let event = reader.event().await;
        if event["event"] == "roomMessageReceived" {
            for message in event["messageList"].as_array().unwrap() {
                seqs.push(message["seq"].as_i64().unwrap());
            }
        }
    }
    let expected: Vec<i64> = (1..=(4 * per_sender) as i64).collect();
    assert_eq!(seqs, expected);
    for task in tasks {
        task.await.unwrap();
    }
    app.stop().await;
}

/// Sends `count` messages without waiting for replies, then reads until all
/// are answered and `expect_from_others` messages of others have arrived.
/// Returns the replies' seqs (in reply order) and the others' messages.
async fn pipeline(
    mut client: Client,
    me: &str,
    room: &str,
    count: u32,
    expect_from_others: usize,
) -> (Vec<i64>, Vec<Value>) {
    let mut ids = Vec::new();
    for n in 0..count {
        ids.push(
            client
                .send(json!({"op": "sendRoomMessage", "roomID": room,
                             "message": {"type": "text", "message": format!("{me}-{n}")}}))
                .await,
        );
    }
    let (mut replies, mut others) = (Vec::new(), Vec::new());
    while replies.len() < ids.len() || others.len() < expect_from_others {
        let frame = client.next_json().await;
        if frame["event"] == "roomMessageReceived" {
            for message in frame["messageList"].as_array().unwrap() {
                assert_ne!(message["senderUserID"], me, "{me} got its own message back");
                others.push(message.clone());
            }
        } else if frame.get("event").is_none() {
            assert_eq!(
                frame["id"],
                json!(ids[replies.len()]),
                "replies in request order"
            );
            assert_eq!(frame["ok"], true, "{frame}");
            assert_eq!(
                frame["message"]["message"],
                format!("{me}-{}", replies.len())
            );
            replies.push(frame["message"]["seq"].as_i64().unwrap());
        }
    }
    (replies, others)
}

#[tokio::test]
async fn pipelined_sends_keep_request_order_and_never_come_back_to_their_sender() {
    let app = spawn_app().await;
    let mut reader = app.client("reader").await;
    reader
        .ok(json!({"op": "createRoom", "roomInfo": {"roomID": "pipe"}}))
        .await;
    let per_sender = 150;
    let mut senders = Vec::new();
    for name in ["alice", "bob"] {
        let mut client = app.client(name).await;
        client.ok(json!({"op": "joinRoom", "roomID": "pipe"})).await;
        senders.push((name, client));
    }
    reader.expect_event("roomMemberJoined").await;
    reader.expect_event("roomMemberJoined").await;
    // alice sees bob join; drain it so only messages follow.
    senders[0].1.expect_event("roomMemberJoined").await;
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|(name, client)| {
            tokio::spawn(async move {
                let (seqs, others) =
                    pipeline(client, name, "pipe", per_sender, per_sender as usize).await;
                (name, seqs, others)
            })
        })
        .collect();
    let mut stored = Vec::new();
    while stored.len() < 2 * per_sender as usize {
        let event = reader.expect_event("roomMessageReceived").await;
        stored.extend(event["messageList"].as_array().unwrap().iter().cloned());
    }
    let seqs: Vec<i64> = stored.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=2 * i64::from(per_sender)).collect::<Vec<_>>());
    for task in tasks {
        let (name, own_seqs, others) = task.await.unwrap();
        // A sender's messages are stored in the order it sent them.
        assert!(
            own_seqs.windows(2).all(|w| w[0] < w[1]),
            "{name}: {own_seqs:?}"
        );
        let in_reader_order: Vec<String> = stored
            .iter()
            .filter(|m| m["senderUserID"] == name)
            .map(|m| m["message"].as_str().unwrap().to_owned())
            .collect();
        let sent: Vec<String> = (0..per_sender).map(|n| format!("{name}-{n}")).collect();
        assert_eq!(in_reader_order, sent);
        // Each got every message of the other, once, in seq order.
        let other_seqs: Vec<i64> = others.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        let expected: Vec<i64> = stored
            .iter()
            .filter(|m| m["senderUserID"] != name)
            .map(|m| m["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(other_seqs, expected, "{name}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_request_after_pipelined_sends_is_answered_after_them() {
    let app = spawn_app().await;
    let mut client = app.client("alice").await;
    client
        .ok(json!({"op": "createRoom", "roomInfo": {"roomID": "order"}}))
        .await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(
            client
                .send(json!({"op": "sendRoomMessage", "roomID": "order",
                             "message": {"type": "text", "message": format!("m{n}")}}))
                .await,
        );
    }
    ids.push(
        client
            .send(json!({"op": "leaveRoom", "roomID": "order"}))
            .await,
    );
    ids.push(
        client
            .send(json!({"op": "sendRoomMessage", "roomID": "order",
                         "message": {"type": "text", "message": "too late"}}))
            .await,
    );
    let mut replies = Vec::new();
    for id in &ids {
        replies.push(client.reply(*id).await);
    }
    for (n, reply) in replies[..20].iter().enumerate() {
        assert_eq!(reply["message"]["seq"], json!(n + 1), "{reply}");
    }
    assert_eq!(replies[20]["ok"], true, "leave: {}", replies[20]);
    assert_eq!(
        replies[21]["error"]["code"],
        json!(6000321),
        "{}",
        replies[21]
    );
    app.stop().await;
}

#[tokio::test]
async fn member_list_pages_with_next_flag() {
    let app = spawn_app().await;
    let mut owner = app.client("u00").await;
    owner
        .ok(json!({"op": "createRoom", "roomInfo": {"roomID": "crowd"}}))
        .await;
    let mut others = Vec::new();
    for i in 1..7 {
        let mut client = app.client(&format!("u{i:02}")).await;
        client
            .ok(json!({"op": "joinRoom", "roomID": "crowd"}))
            .await;
        others.push(client);
    }
    let mut seen = Vec::new();
    let mut flag = String::new();
    loop {
        let page = owner
            .ok(json!({"op": "queryRoomMemberList", "roomID": "crowd", "nextFlag": flag, "count": 4}))
            .await;
        for member in page["memberList"].as_array().unwrap() {
            seen.push(member["userID"].as_str().unwrap().to_owned());
        }
        flag = page["nextFlag"].as_str().unwrap().to_owned();
        if flag.is_empty() {
            break;
        }
    }
    let expected: Vec<String> = (0..7).map(|i| format!("u{i:02}")).collect();
    assert_eq!(seen, expected);
    app.stop().await;
}

#[tokio::test]
async fn create_room_tells_where_the_stream_stands_and_queries_name_their_room() {
    let app = spawn_app().await;
    let mut alice = app.client("alice").await;
    let created = alice
        .ok(json!({"op": "createRoom", "roomInfo": {"roomID": "again"}}))
        .await;
    assert_eq!(created["lastSeq"], 0, "{created}");
    say(&mut alice, "again", "one").await;
    say(&mut alice, "again", "two").await;
    let history = alice
        .ok(json!({"op": "queryHistoryMessage", "roomID": "again"}))
        .await;
    assert_eq!(history["roomID"], "again", "{history}");
    let members = alice
        .ok(json!({"op": "queryRoomMemberList", "roomID": "again"}))
        .await;
    assert_eq!(members["roomID"], "again", "{members}");

    // Destroyed and created again: the seq stream continues, and the
    // creator learns where it stands (to resume with sinceSeq later).
    alice
        .ok(json!({"op": "leaveRoom", "roomID": "again"}))
        .await;
    app.wait_until_gone("again", std::time::Duration::from_secs(10))
        .await;
    let created = alice
        .ok(json!({"op": "createRoom", "roomInfo": {"roomID": "again"}}))
        .await;
    assert_eq!(created["lastSeq"], 2, "{created}");
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_every_stored_message_in_commit_batches() {
    let app = spawn_app().await;
    let mut alice = app.client("alice").await;
    alice
        .ok(json!({"op": "createRoom", "roomInfo": {"roomID": "counted"}}))
        .await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(
            alice
                .send(json!({"op": "sendRoomMessage", "roomID": "counted",
                             "message": {"type": "text", "message": format!("m{n}")}}))
                .await,
        );
    }
    for id in ids {
        assert_eq!(alice.reply(id).await["ok"], true);
    }
    assert_eq!(app.metric("roomd_commit_batch_messages_sum").await, 20.0);
    let batches = app.metric("roomd_commit_batch_messages_count").await;
    assert!((1.0..=20.0).contains(&batches), "{batches} batches");
    app.stop().await;
}
