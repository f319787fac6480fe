//! Faults with the real `roomd` binary: `kill -9` under load, and the
//! database going away and coming back. Clients record every acknowledged
//! message and compare with what is stored afterwards.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use roomd::embedded_pg::{EmbeddedOptions, EmbeddedPostgres};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, Row};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::fresh_database;

/// A `roomd` process; killed when dropped.
struct Roomd {
    child: Child,
    port: u16,
}

impl Roomd {
    async fn start(database_url: &str, port: u16) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_roomd"));
        command
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(["--database-url", database_url])
            .args(["--node-id", "fault-node", "--reconnect-grace", "1s"])
            .args([
                "--messages-per-second",
                "1000000",
                "--messages-burst",
                "1000000",
            ])
            .args([
                "--requests-per-second",
                "1000000",
                "--requests-burst",
                "1000000",
            ])
            .args(["--logins-per-second", "1000000"])
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if std::env::var_os("TEST_LOG").is_none() {
            command.stderr(Stdio::null());
        }
        let child = command.spawn().expect("roomd starts");
        let roomd = Roomd { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = reqwest::get(roomd.url("/healthz")).await
                && response.status() == 200
            {
                return roomd;
            }
            assert!(Instant::now() < deadline, "roomd did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn kill_9(&mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        self.child.wait().unwrap();
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Roomd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One request over a connection that may fail at any moment.
async fn ask(ws: &mut Ws, id: u32, request: Value) -> Option<Value> {
    let mut request = request;
    request["id"] = json!(id);
    ws.send(Message::text(request.to_string())).await.ok()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.ok()?? {
            Ok(Message::Text(text)) => {
                let frame: Value = serde_json::from_str(&text).ok()?;
                if frame["id"] == json!(id) {
                    return Some(frame);
                }
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Connects, logs in and joins `room`, retrying until `deadline`.
async fn session(port: u16, user: &str, room: &str, deadline: Instant) -> Ws {
    loop {
        assert!(Instant::now() < deadline, "{user} could not get back in");
        if let Ok((mut ws, _)) =
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/v1/ws")).await
        {
            let login = ask(
                &mut ws,
                1,
                json!({"op": "login", "userInfo": {"userID": user}}),
            )
            .await;
            let enter = ask(
                &mut ws,
                2,
                json!({"op": "enterRoom", "roomInfo": {"roomID": room}}),
            )
            .await;
            if login.is_some_and(|r| r["ok"] == true) && enter.is_some_and(|r| r["ok"] == true) {
                return ws;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `count` messages with clientMessageIDs `user-0..`, resending each
/// until it is acknowledged (through 1008s, lost replies and reconnects).
/// Returns clientMessageID → acknowledged seq.
async fn send_all(
    port: Arc<AtomicUsize>,
    user: String,
    room: &'static str,
    count: usize,
    progress: Arc<AtomicUsize>,
) -> BTreeMap<String, i64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut acked = BTreeMap::new();
    let mut ws = None;
    let mut id = 10;
    for n in 0..count {
        let cmid = format!("{user}-{n}");
        loop {
            assert!(Instant::now() < deadline, "{cmid} never acknowledged");
            let conn = match &mut ws {
                Some(conn) => conn,
                None => ws.insert(
                    session(port.load(Ordering::Relaxed) as u16, &user, room, deadline).await,
                ),
            };
            id += 1;
            let request = json!({"op": "sendRoomMessage", "roomID": room, "clientMessageID": cmid,
                                 "message": {"type": "text", "message": format!("{cmid} body")}});
            match ask(conn, id, request).await {
                Some(reply) if reply["ok"] == true => {
                    acked.insert(cmid.clone(), reply["message"]["seq"].as_i64().unwrap());
                    progress.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(reply) => {
                    assert_eq!(reply["error"]["code"], 1008, "{reply}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                None => {
                    ws = None;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    acked
}

/// Every acknowledged message is stored once under its seq, and the room's
/// seq has no gap.
async fn assert_history_matches(database_url: &str, room: &str, acked: &BTreeMap<String, i64>) {
    let mut db = PgConnection::connect(database_url).await.unwrap();
    let rows =
        sqlx::query("select seq, client_message_id from messages where room_id = $1 order by seq")
            .bind(room)
            .fetch_all(&mut db)
            .await
            .unwrap();
    let stored: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let seqs: Vec<i64> = stored.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "seq has a gap"
    );
    let by_cmid: BTreeMap<&str, i64> = stored.iter().map(|(seq, c)| (c.as_str(), *seq)).collect();
    assert_eq!(
        by_cmid.len(),
        stored.len(),
        "a clientMessageID was stored twice"
    );
    for (cmid, seq) in acked {
        assert_eq!(
            by_cmid.get(cmid.as_str()),
            Some(seq),
            "{cmid} acknowledged as {seq}"
        );
    }
}

async fn wait_for(progress: &AtomicUsize, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.load(Ordering::Relaxed) < at_least {
        assert!(
            Instant::now() < deadline,
            "load stalled at {}",
            progress.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_message() {
    let url = fresh_database().await;
    let port = free_port();
    let mut roomd = Roomd::start(&url, port).await;
    let shared_port = Arc::new(AtomicUsize::new(port as usize));
    let progress = Arc::new(AtomicUsize::new(0));

    // A member who will never come back after the crash, alone in a room.
    let mut ghost = session(
        port,
        "ghost",
        "ghost-room",
        Instant::now() + Duration::from_secs(10),
    )
    .await;
    assert!(ask(&mut ghost, 3, json!({"op": "ping"})).await.is_some());

    let senders: Vec<_> = (0..5)
        .map(|i| {
            tokio::spawn(send_all(
                shared_port.clone(),
                format!("s{i}"),
                "crash-room",
                600,
                progress.clone(),
            ))
        })
        .collect();
    wait_for(&progress, 1000).await;
    roomd.kill_9();
    let killed_at = Instant::now();
    drop(ghost);

    let mut roomd = Roomd::start(&url, port).await;
    let mut acked = BTreeMap::new();
    for sender in senders {
        acked.extend(sender.await.unwrap());
    }
    assert_eq!(acked.len(), 3000);
    assert_history_matches(&url, "crash-room", &acked).await;

    // The ghost's membership died with the process: removed after the
    // grace, and its room (destroy delay 0) destroyed on schedule.
    let mut db = PgConnection::connect(&url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let exists: bool =
            sqlx::query("select exists (select 1 from rooms where room_id = 'ghost-room')")
                .fetch_one(&mut db)
                .await
                .unwrap()
                .get(0);
        if !exists {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ghost-room survived {:?} after the crash",
            killed_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let members: i64 = sqlx::query("select count(*) from members where user_id = 'ghost'")
        .fetch_one(&mut db)
        .await
        .unwrap()
        .get(0);
    assert_eq!(members, 0);
    assert!(roomd.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_fast_and_heals_without_losing_or_doubling_messages() {
    let root = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        root: root.path().join("pg"),
        ephemeral: false,
    };
    let pg = EmbeddedPostgres::start(options.clone()).await.unwrap();
    let url = pg.url_for(roomd::embedded_pg::DATABASE);
    let port = free_port();
    let mut roomd = Roomd::start(&url, port).await;
    let shared_port = Arc::new(AtomicUsize::new(port as usize));
    let progress = Arc::new(AtomicUsize::new(0));
    let mut probe = session(
        port,
        "probe",
        "outage-room",
        Instant::now() + Duration::from_secs(10),
    )
    .await;

    let senders: Vec<_> = (0..5)
        .map(|i| {
            tokio::spawn(send_all(
                shared_port.clone(),
                format!("o{i}"),
                "outage-room",
                500,
                progress.clone(),
            ))
        })
        .collect();
    wait_for(&progress, 600).await;
    pg.stop().await;

    // While it is down: requests that need the database fail with 1008
    // within 5 s, readiness says 503, and the process stays up.
    let asked = Instant::now();
    let reply = ask(
        &mut probe,
        4,
        json!({"op": "queryRoomOnlineMemberCount", "roomID": "outage-room"}),
    )
    .await
    .expect("a reply while the database is down");
    assert_eq!(reply["error"]["code"], 1008, "{reply}");
    assert!(
        asked.elapsed() <= Duration::from_secs(5),
        "1008 took {:?}",
        asked.elapsed()
    );
    assert_eq!(
        reqwest::get(roomd.url("/readyz")).await.unwrap().status(),
        503
    );
    assert_eq!(
        reqwest::get(roomd.url("/healthz")).await.unwrap().status(),
        200
    );
    let before = progress.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        progress.load(Ordering::Relaxed) <= before + 5,
        "acks while the database is down"
    );
    assert!(roomd.is_running());

    let pg = EmbeddedPostgres::start(options).await.unwrap();
    let mut acked = BTreeMap::new();
    for sender in senders {
        acked.extend(sender.await.unwrap());
    }
    assert_eq!(acked.len(), 2500);
    assert_eq!(
        reqwest::get(roomd.url("/readyz")).await.unwrap().status(),
        200
    );
    assert_history_matches(&url, "outage-room", &acked).await;
    assert!(roomd.is_running());
    drop(roomd);
    pg.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_roomd_and_its_embedded_postgres_within_ten_seconds() {
    use std::os::unix::process::CommandExt;
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_roomd"));
    command
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Started the way a script's background job is: with SIGINT ignored,
    // which its children inherit and shells cannot trap.
    unsafe {
        command.pre_exec(|| {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGINT,
                nix::sys::signal::SigHandler::SigIgn,
            )
            .map(|_| ())
            .map_err(std::io::Error::from)
        });
    }
    let child = command.spawn().unwrap();
    let mut roomd = Roomd { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(roomd.url("/readyz"))
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "roomd did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = session(
        port,
        "stayer",
        "stay",
        Instant::now() + Duration::from_secs(10),
    )
    .await;
    let pid = nix::unistd::Pid::from_raw(roomd.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopping = Instant::now();
    while roomd.is_running() {
        assert!(
            stopping.elapsed() < Duration::from_secs(10),
            "roomd still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The client got a proper close, and the private cluster is down.
    let mut closed = false;
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(5), client.next()).await {
        if let Ok(Message::Close(frame)) = frame {
            assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001));
            closed = true;
            break;
        }
    }
    assert!(closed, "no close frame");
    assert!(
        !data.path().join("pg/data/postmaster.pid").exists(),
        "PostgreSQL left running"
    );
}
