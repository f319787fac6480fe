//! The room flow of PROTOCOL.md end to end.

use serde_json::{Value, json};

use crate::helpers::{Client, spawn_app};

#[tokio::test]
async fn three_users_share_a_room_and_messages_reach_the_others_once() {
    let app = spawn_app().await;
    let mut a = app.client("alice").await;
    let mut b = app.client("bob").await;
    let mut c = app.client("carol").await;

    let created = a.create_named("math-101", "Math").await;
    assert_eq!(
        created["roomInfo"],
        json!({"roomID": "math-101", "roomName": "Math"})
    );

    let joined = b.join("math-101").await;
    assert_eq!(joined["roomInfo"]["roomName"], "Math");
    assert_eq!(joined["lastSeq"], 0);
    let event = a.expect_event("roomMemberJoined").await;
    assert_eq!(event["roomID"], "math-101");
    assert_eq!(
        event["memberList"],
        json!([{"userID": "bob", "userName": "bob name"}])
    );

    c.join("math-101").await;
    for member in [&mut a, &mut b] {
        member.expect_joined("carol").await;
    }

    // Everyone speaks; the others get each message once, in seq order; the
    // sender gets only the reply.
    let m1 = a.say("math-101", "from a").await;
    let m2 = b.say("math-101", "from b").await;
    let m3 = c.say("math-101", "from c").await;
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
    let left = b.leave("math-101").await;
    assert_eq!(left["roomID"], "math-101");
    for member in [&mut a, &mut c] {
        let event = member.expect_event("roomMemberLeft").await;
        assert_eq!(
            event["memberList"],
            json!([{"userID": "bob", "userName": "bob name"}])
        );
    }
    let after = a.say("math-101", "after bob left").await;
    c.expect_message(&after).await;
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
    x.expect_joined("yvonne").await;

    let sent = y.say("lobby", "hello").await;
    x.expect_message(&sent).await;
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
    a.create_named("r1", "").await;
    b.join("r1").await;
    a.expect_joined("b").await;

    b.join("r1").await;
    b.enter("r1").await;
    a.join("r1").await;
    a.expect_silence().await;
    b.expect_silence().await;

    assert_eq!(a.member_count("r1").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn one_user_on_two_connections_is_one_member() {
    let app = spawn_app().await;
    let mut watcher = app.client("watcher").await;
    watcher.create("multi").await;

    let mut phone = app.client("dana").await;
    let mut laptop = app.client("dana").await;
    phone.join("multi").await;
    watcher.expect_joined("dana").await;
    laptop.join("multi").await;
    watcher.expect_silence().await;

    assert_eq!(watcher.member_count("multi").await, 2);

    // A message from one of Dana's connections reaches her other one.
    let sent = phone.say("multi", "from the phone").await;
    laptop.expect_message(&sent).await;
    watcher.expect_message(&sent).await;
    phone.expect_silence().await;

    // The first connection leaving does not make Dana leave.
    phone.leave("multi").await;
    watcher.expect_silence().await;

    // The last one going away (dropped, not left) does.
    drop(laptop);
    watcher.expect_left("dana").await;
    assert_eq!(watcher.member_count("multi").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_senders_are_delivered_in_seq_order_without_gaps() {
    let app = spawn_app().await;
    let mut reader = app.client("reader").await;
    reader.create("busy").await;
    let per_sender = 40;
    let mut senders = Vec::new();
    for i in 0..4 {
        let mut client = app.client(&format!("sender{i}")).await;
        client.join("busy").await;
        senders.push(client);
    }
    for i in 0..4 {
        reader.expect_joined(&format!("sender{i}")).await;
    }
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                for n in 0..per_sender {
                    client.say("busy", &format!("m{n}")).await;
                }
                client
            })
        })
        .collect();
    let seqs: Vec<i64> = reader
        .expect_messages(4 * per_sender)
        .await
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
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
    reader.create("pipe").await;
    let per_sender = 150;
    let mut senders = Vec::new();
    for name in ["alice", "bob"] {
        let mut client = app.client(name).await;
        client.join("pipe").await;
        senders.push((name, client));
    }
    reader.expect_joined("alice").await;
    reader.expect_joined("bob").await;
    // alice sees bob join; drain it so only messages follow.
    senders[0].1.expect_joined("bob").await;
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
    let stored = reader.expect_messages(2 * per_sender as usize).await;
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
    client.create("order").await;
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
    owner.create("crowd").await;
    let mut others = Vec::new();
    for i in 1..7 {
        let mut client = app.client(&format!("u{i:02}")).await;
        client.join("crowd").await;
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
    let created = alice.create("again").await;
    assert_eq!(created["lastSeq"], 0, "{created}");
    alice.say("again", "one").await;
    alice.say("again", "two").await;
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
    alice.leave("again").await;
    app.wait_until_gone("again", std::time::Duration::from_secs(10))
        .await;
    let created = alice.create("again").await;
    assert_eq!(created["lastSeq"], 2, "{created}");
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_every_stored_message_in_commit_batches() {
    let app = spawn_app().await;
    let mut alice = app.client("alice").await;
    alice.create("counted").await;
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
