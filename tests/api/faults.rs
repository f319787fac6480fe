//! Faults with the real `roomd` binary: `kill -9` under load, and the
//! database going away and coming back. Clients record every acknowledged
//! message and compare with what is stored afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use roomd::embedded_pg::{EmbeddedOptions, EmbeddedPostgres};
use serde_json::json;
use sqlx::{Connection, PgConnection, Row};

use crate::helpers::{
    Client, Endpoint, RoomdProcess, free_port, fresh_database, roomd_command, wait_until,
};

/// The settings every fault test's roomd runs with.
const ROOMD_ARGS: &[&str] = &["--node-id", "fault-node", "--reconnect-grace", "1s"];

/// Connects, logs in and enters `room`, retrying until `deadline` (through
/// a server that is down or a database that is away).
async fn session(server: Endpoint, user: &str, room: &str, deadline: Instant) -> Client {
    loop {
        assert!(Instant::now() < deadline, "{user} could not get back in");
        if let Some(mut client) = server.try_connect().await {
            let login = client
                .try_request(json!({"op": "login", "userInfo": {"userID": user}}))
                .await;
            if login.is_some_and(|r| r["ok"] == true) {
                let enter = client
                    .try_request(json!({"op": "enterRoom", "roomInfo": {"roomID": room}}))
                    .await;
                if enter.is_some_and(|r| r["ok"] == true) {
                    return client;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `count` messages with clientMessageIDs `user-0..`, resending each
/// until it is acknowledged (through 1008s, lost replies and reconnects).
/// Returns clientMessageID → acknowledged seq.
async fn send_all(
    server: Endpoint,
    user: String,
    room: &'static str,
    count: usize,
    progress: Arc<AtomicUsize>,
) -> BTreeMap<String, i64> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut acked = BTreeMap::new();
    let mut connection = None;
    for n in 0..count {
        let cmid = format!("{user}-{n}");
        loop {
            assert!(Instant::now() < deadline, "{cmid} never acknowledged");
            let client = match &mut connection {
                Some(client) => client,
                None => connection.insert(session(server, &user, room, deadline).await),
            };
            let request = json!({"op": "sendRoomMessage", "roomID": room, "clientMessageID": cmid,
                                 "message": {"type": "text", "message": format!("{cmid} body")}});
            match client.try_request(request).await {
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
                    connection = None;
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
    assert_eq!(
        stored.len(),
        acked.len(),
        "stored exactly the acknowledged messages"
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
    wait_until(
        Duration::from_secs(60),
        &format!("{at_least} acknowledged messages"),
        || async { progress.load(Ordering::Relaxed) >= at_least },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_message() {
    let url = fresh_database().await;
    let mut roomd = RoomdProcess::start(&url, ROOMD_ARGS).await;
    let server = *roomd;
    let progress = Arc::new(AtomicUsize::new(0));

    // A member who will never come back after the crash, alone in a room.
    let mut ghost = server.client("ghost").await;
    ghost.enter("ghost-room").await;

    let senders: Vec<_> = (0..5)
        .map(|i| {
            tokio::spawn(send_all(
                server,
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
    let acked_before_the_crash = progress.load(Ordering::Relaxed);
    assert!(
        acked_before_the_crash < 3000,
        "the crash came after all the load ({acked_before_the_crash} acknowledged)"
    );
    drop(ghost);

    let mut roomd = RoomdProcess::start_on(roomd.port(), &url, ROOMD_ARGS).await;
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
    let mut roomd = RoomdProcess::start(&url, ROOMD_ARGS).await;
    let server = *roomd;
    let progress = Arc::new(AtomicUsize::new(0));
    let mut probe = server.client("probe").await;
    probe.enter("outage-room").await;

    let senders: Vec<_> = (0..5)
        .map(|i| {
            tokio::spawn(send_all(
                server,
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
    let reply = probe
        .try_request(json!({"op": "queryRoomOnlineMemberCount", "roomID": "outage-room"}))
        .await
        .expect("a reply while the database is down");
    assert_eq!(reply["error"]["code"], 1008, "{reply}");
    assert!(
        asked.elapsed() <= Duration::from_secs(5),
        "1008 took {:?}",
        asked.elapsed()
    );
    assert_eq!(server.status("/readyz").await, Some(503));
    assert_eq!(server.status("/healthz").await, Some(200));
    let before = progress.load(Ordering::Relaxed);
    assert!(before < 2500, "the outage came after all the load");
    // Watching for acknowledgements that must not come.
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
    assert_eq!(server.status("/readyz").await, Some(200));
    assert_history_matches(&url, "outage-room", &acked).await;
    assert!(roomd.is_running());
    drop(roomd);
    pg.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_roomd_and_its_embedded_postgres_within_ten_seconds() {
    use std::os::unix::process::CommandExt;
    let data = tempfile::tempdir().unwrap();
    let mut command = roomd_command();
    command.arg("--data-dir").arg(data.path());
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
    let mut roomd = RoomdProcess::launch(command, free_port()).await;
    let mut client = roomd.client("stayer").await;
    client.enter("stay").await;
    roomd.signal(nix::sys::signal::Signal::SIGTERM);
    let status = roomd.exited_within(Duration::from_secs(10)).await;
    assert!(status.success(), "roomd exited with {status} after SIGTERM");
    // The client got a proper close, and the private cluster is down.
    client.expect_closed(1001).await;
    assert!(
        !data.path().join("pg/data/postmaster.pid").exists(),
        "PostgreSQL left running"
    );
}
