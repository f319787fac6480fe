//! One client must not be able to take roomd down, and no room's past
//! leaks to strangers: connection timeouts and caps, bounded history,
//! room-cap abuse, secrets, origins, earlier lives, tokens over a session,
//! protocol violations, and what roomd counts when it refuses.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    RoomdProcess, WAIT, fresh_database, roomd_command, spawn_app_with, test_config,
};

/// A 32-byte secret, the shortest roomd accepts.
const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// Reads until the peer closes; returns how long that took. Panics after `within`.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + within).into(), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("connection still open after {within:?}"),
        }
    }
}

#[tokio::test]
async fn slowloris_and_idle_http_connections_are_closed_while_a_websocket_client_chats() {
    let mut config = test_config(&fresh_database().await);
    config.http_timeout = Duration::from_secs(1);
    let app = spawn_app_with(config).await;
    let mut alice = app.client("alice").await;
    alice.create("r").await;
    let mut bob = app.client("bob").await;
    bob.join("r").await;

    // A header byte every 200 ms never completes a request.
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    let slowloris = tokio::spawn(async move {
        for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "
            .iter()
            .cycle()
        {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    // A kept-alive connection that goes quiet after one request.
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 15];
    idle.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200 OK");

    let chat = async {
        for i in 0..30 {
            let sent = alice.say("r", &format!("m{i}")).await;
            bob.expect_message(&sent).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (_, idle_for) = tokio::join!(chat, closed_within(&mut idle, Duration::from_secs(5)));
    assert!(idle_for < Duration::from_secs(3), "idle for {idle_for:?}");
    tokio::time::timeout(Duration::from_secs(5), slowloris)
        .await
        .expect("the slow connection was cut within its header timeout")
        .unwrap();
    bob.ping().await;
}

#[tokio::test]
async fn plain_connections_are_capped_per_address_and_the_cap_recovers() {
    let mut config = test_config(&fresh_database().await);
    config.limits.max_http_connections_per_ip = 3;
    config.http_timeout = Duration::from_secs(30);
    let app = spawn_app_with(config).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(app.addr).await.unwrap();
        // Served, so each is counted before the next one connects.
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).await.unwrap();
        held.push(tcp);
    }
    let mut refused = TcpStream::connect(app.addr).await.unwrap();
    closed_within(&mut refused, WAIT).await;
    // Another address is not held back by this one.
    let mut carol = app.connect_from([127, 0, 0, 2]).await;
    carol.login("carol").await;
    carol.create("elsewhere").await;
    // Places come back when connections go (the metrics request needs one).
    held.clear();
    let refusals = r#"roomd_limit_refusals_total{kind="http_connections"}"#;
    assert_eq!(app.metric(refusals).await, 1.0);
    let mut dave = app
        .try_connect()
        .await
        .expect("the address has a free place again");
    dave.login("dave").await;
}

/// Messages whose bodies are control characters: each byte becomes six as JSON.
async fn fill_with_escaped(app: &crate::helpers::Endpoint, room: &str, count: usize, bytes: usize) {
    let mut writer = app.client("writer").await;
    writer.enter(room).await;
    let body = "\u{1}".repeat(bytes);
    for _ in 0..count {
        writer.say(room, &body).await;
    }
}

#[tokio::test]
async fn history_pages_stay_within_their_byte_budget_with_escaped_bodies() {
    let mut config = test_config(&fresh_database().await);
    config.limits.max_history_page_bytes = 64 * 1024;
    let app = spawn_app_with(config).await;
    // 100 messages of 4,000 bytes: 2.4 MB of JSON, or 37 budgets.
    fill_with_escaped(&app, "r", 100, 4000).await;

    let response = reqwest::get(app.http("/v1/rooms/r/messages?limit=1000"))
        .await
        .unwrap();
    let body = response.bytes().await.unwrap();
    assert!(body.len() <= 64 * 1024 + 1024, "{} bytes", body.len());
    let page: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["hasMore"], true);
    let mut seqs: Vec<i64> = Vec::new();
    let mut page = page;
    loop {
        let batch: Vec<i64> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect();
        assert!(!batch.is_empty());
        seqs.splice(0..0, batch);
        match page["nextBeforeSeq"].as_i64() {
            Some(before) => {
                let path = format!("/v1/rooms/r/messages?limit=1000&beforeSeq={before}");
                page = app.get(&path).await.1;
            }
            None => break,
        }
    }
    assert_eq!(
        seqs,
        (1..=100).collect::<Vec<_>>(),
        "every message once, in order"
    );

    let mut reader = app.client("reader").await;
    reader.join("r").await;
    let id = reader
        .send(json!({"op": "queryHistoryMessage", "roomID": "r", "count": 100}))
        .await;
    let reply = reader.reply(id).await;
    assert!(reply.to_string().len() <= 64 * 1024 + 1024);
    assert_eq!(reply["hasMore"], true);
    assert_eq!(
        reply["messageList"].as_array().unwrap().last().unwrap()["seq"],
        100
    );
}

/// The server process's resident memory, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test]
async fn a_flood_of_history_requests_is_refused_with_429_and_memory_stays_bounded() {
    let url = fresh_database().await;
    let roomd = RoomdProcess::start(
        &url,
        &[
            "--rest-requests-per-second",
            "5",
            "--rest-requests-burst",
            "5",
            "--max-concurrent-history",
            "2",
        ],
    )
    .await;
    // 400 messages of 10,000 bytes: 4 MB stored, 24 MB as JSON.
    fill_with_escaped(&roomd, "r", 400, 10_000).await;
    let before = rss(roomd.pid());
    let client = reqwest::Client::new();
    let url = roomd.http("/v1/rooms/r/messages?limit=1000");
    let responses = join_all((0..100).map(|_| client.get(&url).send())).await;
    let mut ok = 0;
    let mut refused = 0;
    for response in responses {
        let response = response.unwrap();
        match response.status().as_u16() {
            200 => ok += 1,
            429 => {
                let retry: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry >= 1);
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], 1006);
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok <= 6, "{ok} pages served past a burst of 5");
    assert_eq!(ok + refused, 100);
    let grown = rss(roomd.pid()).saturating_sub(before);
    assert!(grown < 150 * 1024 * 1024, "server grew by {grown} bytes");
}

#[tokio::test]
async fn one_user_cannot_fill_the_server_with_empty_rooms() {
    let mut config = test_config(&fresh_database().await);
    config.limits.max_created_rooms_per_user = 3;
    let app = spawn_app_with(config).await;
    let mut mallory = app.client("mallory").await;
    for i in 0..3 {
        let room = format!("spam-{i}");
        mallory
            .create_with(&room, json!({"roomDestroyDelayTime": 10800}))
            .await;
        mallory.leave(&room).await;
    }
    let create = json!({"op": "createRoom", "roomInfo": {"roomID": "spam-3"}});
    mallory.fails(create, 6000325).await;
    let enter = json!({"op": "enterRoom", "roomInfo": {"roomID": "spam-4"}});
    mallory.fails(enter, 6000325).await;
    // Joining a room someone else made is not creating one.
    let mut alice = app.client("alice").await;
    alice.create("class").await;
    mallory.join("class").await;
    assert!(!app.room_exists("spam-3").await);
}

#[tokio::test]
async fn short_secrets_and_an_empty_admin_token_are_refused_at_start_up() {
    let url = fresh_database().await;
    let mut config = test_config(&url);
    config.auth_secret = Some("x".repeat(31).as_str().into());
    let error = roomd::App::build(config).await.err().expect("refused");
    assert!(error.to_string().contains("at least 32 bytes"), "{error}");
    let mut config = test_config(&url);
    config.admin_token = Some("".into());
    let error = roomd::App::build(config).await.err().expect("refused");
    assert!(error.to_string().contains("must not be empty"), "{error}");
    for env in [Some(""), Some("short")] {
        let output = roomd_command()
            .args(["--bind", "127.0.0.1:0", "--database-url", &url])
            .env("ROOMD_AUTH_SECRET", env.unwrap())
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("at least 32 bytes"), "{stderr}");
    }
}

/// The status of a WebSocket handshake with these extra headers.
async fn handshake_status(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> u16 {
    let mut request = reqwest::Client::new()
        .get(format!("http://{addr}/v1/ws"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status().as_u16()
}

async fn status_with_host(addr: std::net::SocketAddr, path: &str, host: &str) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    response[9..12].parse().unwrap()
}

#[tokio::test]
async fn open_mode_answers_only_loopback_hosts_and_its_own_pages() {
    let app = spawn_app_with(test_config(&fresh_database().await)).await;
    let own = format!("http://{}", app.addr);
    assert_eq!(handshake_status(app.addr, &[]).await, 101);
    assert_eq!(handshake_status(app.addr, &[("origin", &own)]).await, 101);
    assert_eq!(
        handshake_status(app.addr, &[("origin", "http://evil.example")]).await,
        403
    );
    for path in ["/healthz", "/metrics", "/v1/rooms/r/messages", "/"] {
        assert_eq!(
            status_with_host(app.addr, path, "attacker.example").await,
            403
        );
        assert_eq!(
            status_with_host(app.addr, path, "attacker.example:80").await,
            403
        );
    }
    assert_eq!(
        status_with_host(app.addr, "/healthz", "localhost").await,
        200
    );
    let (status, body) = app.get("/healthz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));

    let mut config = test_config(&fresh_database().await);
    config.auth_secret = Some(SECRET.into());
    config.allowed_origins = vec!["https://app.example".into()];
    let secured = spawn_app_with(config).await;
    let origin = |o| [("origin", o)];
    assert_eq!(
        handshake_status(secured.addr, &origin("https://app.example")).await,
        101
    );
    assert_eq!(
        handshake_status(secured.addr, &origin("https://other.example")).await,
        403
    );
    assert_eq!(handshake_status(secured.addr, &[]).await, 101);
}

/// A login token signed with the test secret.
fn token(user: &str, claims: Value) -> String {
    let mut all = json!({"sub": user, "exp": now() + 3600});
    for (k, v) in claims.as_object().unwrap() {
        all[k] = v.clone();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &all,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn secured_app(admin: Option<&str>) -> crate::helpers::TestApp {
    let mut config = test_config(&fresh_database().await);
    config.auth_secret = Some(SECRET.into());
    // Sessions outlive their token by this much: short, so expiry is quick to see.
    config.token_leeway = Duration::from_secs(2);
    config.admin_token = admin.map(Into::into);
    spawn_app_with(config).await
}

async fn login_with(
    app: &crate::helpers::TestApp,
    user: &str,
    token: &str,
) -> crate::helpers::Client {
    let mut client = app.connect().await;
    client
        .ok(json!({"op": "login", "userInfo": {"userID": user}, "token": token}))
        .await;
    client
}

#[tokio::test]
async fn a_recreated_room_shows_its_members_only_its_own_life_and_the_admin_every_life() {
    let app = secured_app(Some("admin-token")).await;
    let mut alice = login_with(&app, "alice", &token("alice", json!({}))).await;
    let first = alice.create("r").await;
    assert_eq!(
        (first["lastSeq"].as_i64(), first["firstSeq"].as_i64()),
        (Some(0), Some(1))
    );
    for i in 0..5 {
        alice.say("r", &format!("old {i}")).await;
    }
    alice.leave("r").await;
    crate::helpers::wait_until(WAIT, "the empty room is destroyed", || async {
        app.get_with("/v1/rooms/r", Some("admin-token")).await.0 == 404
    })
    .await;

    let bob_token = token("bob", json!({}));
    let mut bob = login_with(&app, "bob", &bob_token).await;
    let reborn = bob.create("r").await;
    assert_eq!(
        (reborn["lastSeq"].as_i64(), reborn["firstSeq"].as_i64()),
        (Some(5), Some(6))
    );
    let mut carol = login_with(&app, "carol", &token("carol", json!({}))).await;
    let joined = carol.join_since("r", 0).await;
    assert_eq!(joined["firstSeq"], 6);
    carol.expect_silence().await;
    assert!(carol.history("r").await.is_empty());
    let new = bob.say("r", "new life").await;
    assert_eq!(new["seq"], 6);
    carol.expect_message(&new).await;
    let (status, page) = app.get_with("/v1/rooms/r/messages", Some(&bob_token)).await;
    assert_eq!(status, 200);
    let seqs: Vec<&Value> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["seq"])
        .collect();
    assert_eq!(seqs, [&json!(6)]);
    let (_, page) = app
        .get_with("/v1/rooms/r/messages", Some("admin-token"))
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 6);
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused_and_errors_say_nothing_of_the_library() {
    let app = secured_app(None).await;
    let early = token("alice", json!({"nbf": now() + 120}));
    let mut client = app.connect().await;
    let error = client
        .fails(
            json!({"op": "login", "userInfo": {"userID": "alice"}, "token": early}),
            1005,
        )
        .await;
    assert_eq!(error["message"], "the token is not valid yet");
    client.expect_closed(4001).await;
    let mut client = app.connect().await;
    let error = client
        .fails(
            json!({"op": "login", "userInfo": {"userID": "alice"}, "token": "a.b.c"}),
            1005,
        )
        .await;
    assert_eq!(error["message"], "the token is invalid");
    let (status, body) = app.get_with("/v1/rooms/r/messages", Some("a.b.c")).await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (401, Some("the token is invalid"))
    );
    // A header that is not text is a bad token, not a dump of the request.
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(b"GET /v1/rooms/r HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    for internal in [
        "Rejection",
        "InvalidHeader",
        "Error {",
        "Base64",
        "InvalidToken",
    ] {
        assert!(!response.contains(internal), "{response}");
    }
}

#[tokio::test]
async fn a_nul_in_any_cursor_is_a_clear_error_not_a_database_one() {
    let app = spawn_app_with(test_config(&fresh_database().await)).await;
    let mut alice = app.client("alice").await;
    alice.create("r").await;
    let list = json!({"op": "queryRoomMemberList", "roomID": "r", "nextFlag": "a\u{0}b"});
    let error = alice.fails(list, 1003).await;
    assert!(error["message"].as_str().unwrap().starts_with("nextFlag:"));
    let history = json!({"op": "queryHistoryMessage", "roomID": "r", "beforeSeq": "\u{0}"});
    alice.fails(history, 1003).await;
    for path in [
        "/v1/rooms/r/members?nextFlag=a%00b",
        "/v1/rooms/r/messages?beforeSeq=%00",
        "/v1/rooms/r/messages?since=%00",
        "/v1/rooms/a%00b/messages",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(
            (status, body["error"]["code"].as_u64()),
            (400, Some(1003)),
            "{path}"
        );
    }
}

#[tokio::test]
async fn protocol_violations_close_with_the_rfc_6455_codes() {
    let app = spawn_app_with(test_config(&fresh_database().await)).await;
    let mask = [1u8, 2, 3, 4];
    let masked = |opcode: u8, payload: &[u8]| {
        let mut frame = vec![opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    };
    let cases: [(Vec<u8>, u16); 4] = [
        (masked(0x81, &[0xff, 0xfe, 0xfd]), 1007),
        (masked(0x81 | 0x40, b"{}"), 1002),
        (vec![0x81, 0x02, b'{', b'}'], 1002),
        (masked(0x83, b"{}"), 1002),
    ];
    for (frame, code) in cases {
        let mut client = app.client("alice").await;
        client.write_raw(&frame).await;
        client.expect_closed(code).await;
    }
}

#[tokio::test]
async fn a_session_ends_with_its_token_unless_renewed() {
    let app = secured_app(None).await;
    let expires = now() + 2;
    let short = token("alice", json!({"exp": expires}));
    let mut lapsing = login_with(&app, "alice", &short).await;
    let warned = lapsing.expect_event("tokenWillExpire").await;
    assert!(warned["secondsLeft"].as_u64().unwrap() <= 2, "{warned}");
    let mut renewing = login_with(&app, "alice", &short).await;
    renewing.expect_event("tokenWillExpire").await;
    let bob = token("bob", json!({}));
    let error = renewing
        .fails(json!({"op": "renewToken", "token": bob}), 1005)
        .await;
    assert_eq!(error["message"], "the token was issued for another user");
    let fresh = token("alice", json!({"exp": now() + 3600}));
    let renewed = renewing
        .ok(json!({"op": "renewToken", "token": fresh}))
        .await;
    assert!(renewed["expiresAt"].as_u64().unwrap() >= (now() + 3500) * 1000);
    // exp + the leeway (2 s each): the lapsing session goes, the renewed one stays.
    let code = lapsing.closed_within(Duration::from_secs(15)).await;
    assert_eq!(code, Some(4001));
    assert!(
        now() >= expires + 2,
        "closed before exp and the leeway had passed"
    );
    renewing.ping().await;
    renewing.create("still-here").await;
}

#[tokio::test]
async fn refusals_are_counted_and_logged_once_a_second() {
    let url = fresh_database().await;
    let mut roomd = RoomdProcess::start(
        &url,
        &["--messages-per-second", "1", "--messages-burst", "1"],
    )
    .await;
    let mut alice = roomd.client("alice").await;
    alice.create("r").await;
    alice.say("r", "one").await;
    let send = json!({"op": "sendRoomMessage", "roomID": "r", "message": {"type": "text", "message": "two"}});
    for _ in 0..3 {
        alice.fails(send.clone(), 1006).await;
    }
    let refusals = r#"roomd_limit_refusals_total{kind="messages"}"#;
    assert_eq!(roomd.metric(refusals).await, 3.0);
    let log = roomd.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("a limit refused") && l.contains("messages"));
    assert_eq!(
        lines.count(),
        1,
        "three refusals within a second, one line:\n{log}"
    );
}

#[tokio::test]
async fn head_is_answered_and_a_malformed_websocket_key_is_refused() {
    let app = spawn_app_with(test_config(&fresh_database().await)).await;
    let client = reqwest::Client::new();
    for path in ["/healthz", "/readyz", "/v1/info", "/", "/sdk/roomd.js"] {
        let response = client.head(app.http(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "HEAD {path}");
    }
    for key in ["not-base64!", "dGhlIHNhbXBsZQ==", ""] {
        let mut tcp = TcpStream::connect(app.addr).await.unwrap();
        let request = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 400", "key {key:?}");
    }
    // HTTP/2 cleartext is not spoken: its preface gets no HTTP/2 answer.
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer)).await;
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
        "{answer:?}"
    );
}

#[tokio::test]
async fn sessions_count_against_their_address_until_they_log_in() {
    let mut config = test_config(&fresh_database().await);
    config.limits.max_http_connections_per_ip = 2;
    let app = spawn_app_with(config).await;
    let mut first = app.connect().await;
    let _second = app.connect().await;
    // Two sessions that have not logged in hold the address's two places.
    let mut refused = TcpStream::connect(app.addr).await.unwrap();
    closed_within(&mut refused, WAIT).await;
    // Logged in, a session no longer counts against its address.
    first.login("alice").await;
    let mut third = app.try_connect().await.expect("a place came back at login");
    third.login("bob").await;
}

#[tokio::test]
async fn a_client_message_id_of_an_earlier_life_stores_a_new_message() {
    let app = spawn_app_with(test_config(&fresh_database().await)).await;
    let mut alice = app.client("alice").await;
    alice.create("r").await;
    let old = alice.say_with_id("r", "first life", "alice-1").await;
    alice.leave("r").await;
    app.wait_until_gone("r", WAIT).await;
    alice.create("r").await;
    let mut bob = app.client("bob").await;
    bob.join("r").await;
    let new = alice.say_with_id("r", "second life", "alice-1").await;
    assert_eq!(new["seq"], old["seq"].as_i64().unwrap() + 1);
    assert_eq!(new["message"], "second life");
    bob.expect_message(&new).await;
    // Within the life, the id still deduplicates.
    let again = alice.say_with_id("r", "resent", "alice-1").await;
    assert_eq!(again, new);
}

#[tokio::test]
async fn a_client_that_just_goes_away_is_not_counted_as_a_protocol_violation() {
    let app = spawn_app_with(test_config(&fresh_database().await)).await;
    let mut alice = app.client("alice").await;
    alice.create("r").await;
    let mut bob = app.client("bob").await;
    bob.join("r").await;
    alice.expect_joined("bob").await;
    drop(bob);
    alice.expect_left("bob").await;
    let violations =
        r#"roomd_connections_closed_total{code="1002",reason="WebSocket protocol error"}"#;
    assert_eq!(app.metric(violations).await, 0.0);
}
