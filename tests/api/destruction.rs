//! Empty rooms are destroyed after their delay by the scheduler: on time,
//! exactly once, across restarts and with two servers on one database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::{PgConnection, Row};

use crate::helpers::{
    Client, Endpoint, POLL, RoomdProcess, WAIT, fresh_database, spawn_app, spawn_app_with,
    test_config, wait_until,
};

/// The contract: destroyed within 2 s after the deadline.
const WITHIN: Duration = Duration::from_secs(2);

/// A client of `user` who created `room` with this destroy delay.
async fn create_with_delay(server: &Endpoint, user: &str, room: &str, delay: u32) -> Client {
    let mut client = server.client(user).await;
    client
        .create_with(room, json!({"roomDestroyDelayTime": delay}))
        .await;
    client
}

/// `select user_id from members`, sorted.
async fn members(db: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar("select user_id from members order by user_id")
        .fetch_all(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn with_no_delay_an_empty_room_is_gone_within_two_seconds_and_its_history_stays() {
    let app = spawn_app().await;
    let mut a = create_with_delay(&app, "a", "brief", 0).await;
    let first = a.say("brief", "one").await;
    a.say("brief", "two").await;
    a.leave("brief").await;
    let left = Instant::now();
    let gone = app.wait_until_gone("brief", WITHIN * 2).await;
    assert!(
        gone - left <= WITHIN,
        "destroyed {:?} after the last leave",
        gone - left
    );

    a.fails(json!({"op": "joinRoom", "roomID": "brief"}), 6000322)
        .await;
    let (status, history) = app.get("/v1/rooms/brief/messages").await;
    assert_eq!(status, 200);
    assert_eq!(history["messages"].as_array().unwrap().len(), 2);
    assert_eq!(history["messages"][0], first);

    // A room created later under the same id continues the seq stream.
    a.create("brief").await;
    assert_eq!(a.say("brief", "three").await["seq"], 3);
    assert_eq!(app.metric("roomd_rooms_destroyed_total").await, 1.0);
    app.stop().await;
}

#[tokio::test]
async fn a_join_within_the_delay_cancels_destruction_and_the_next_countdown_starts_over() {
    let app = spawn_app().await;
    let mut a = create_with_delay(&app, "a", "patient", 2).await;
    a.leave("patient").await;
    let first_leave = Instant::now();
    // Halfway through the countdown (waited out on purpose).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut b = app.client("b").await;
    b.join("patient").await;

    // Well past the first deadline, the room is still there.
    tokio::time::sleep_until((first_leave + Duration::from_secs(2) + WITHIN).into()).await;
    assert!(app.room_exists("patient").await);
    assert_eq!(b.member_count("patient").await, 1);

    b.leave("patient").await;
    let second_leave = Instant::now();
    let gone = app.wait_until_gone("patient", Duration::from_secs(6)).await;
    let after = gone - second_leave;
    assert!(
        after >= Duration::from_secs(2) - Duration::from_millis(100),
        "destroyed early: {after:?}"
    );
    assert!(
        after <= Duration::from_secs(2) + WITHIN,
        "destroyed late: {after:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn dropping_the_connection_counts_as_leaving() {
    let app = spawn_app().await;
    let a = create_with_delay(&app, "a", "dropped", 0).await;
    drop(a);
    let dropped = Instant::now();
    let gone = app.wait_until_gone("dropped", WITHIN * 2).await;
    assert!(
        gone - dropped <= WITHIN,
        "destroyed {:?} after the drop",
        gone - dropped
    );
    app.stop().await;
}

#[tokio::test]
async fn a_restart_in_the_middle_of_the_delay_keeps_the_original_deadline() {
    let url = fresh_database().await;
    let app = spawn_app_with(test_config(&url)).await;
    let mut a = create_with_delay(&app, "a", "restarted", 3).await;
    a.leave("restarted").await;
    let left = Instant::now();
    app.stop().await;

    let app = spawn_app_with(test_config(&url)).await;
    assert!(
        app.room_exists("restarted").await,
        "destroyed before its deadline"
    );
    let gone = app
        .wait_until_gone("restarted", Duration::from_secs(8))
        .await;
    let after = gone - left;
    assert!(
        after >= Duration::from_secs(3) - Duration::from_millis(100),
        "destroyed early: {after:?}"
    );
    assert!(
        after <= Duration::from_secs(3) + WITHIN,
        "destroyed late: {after:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_stop_keeps_memberships_for_the_next_start_to_clear() {
    let url = fresh_database().await;
    // A restart of the same node: same node id, another port.
    let config = || {
        let mut config = test_config(&url);
        config.node_id = Some("restarting-node".into());
        config
    };
    let app = spawn_app_with(config()).await;
    let _a = create_with_delay(&app, "a", "kept", 1).await;
    let mut db = app.db().await;
    app.stop().await;
    assert_eq!(
        members(&mut db).await,
        ["a"],
        "shutdown keeps memberships for the next start to clear"
    );
    let app = spawn_app_with(config()).await;
    assert_eq!(members(&mut db).await, Vec::<String>::new());
    app.stop().await;
}

#[tokio::test]
async fn members_of_a_crashed_run_are_removed_at_start_up_and_their_rooms_count_down() {
    let url = fresh_database().await;
    let node = ["--node-id", "crashing-node", "--reconnect-grace", "0s"];
    let mut roomd = RoomdProcess::start(&url, &node).await;
    let mut a = create_with_delay(&roomd, "a", "orphaned", 1).await;
    // A member through another node on the same database, which the
    // crashed node's restart must leave alone.
    let mut config = test_config(&url);
    config.node_id = Some("bystander-node".into());
    let bystander = spawn_app_with(config).await;
    let mut b = bystander.client("b").await;
    b.enter("elsewhere").await;
    let mut db = bystander.db().await;
    assert_eq!(members(&mut db).await, ["a", "b"]);

    // A real crash: the process dies at once, nobody leaves, and the
    // client's connection just breaks (a stop would close it with 1001).
    roomd.kill_9();
    assert_eq!(a.closed().await, None, "a crash sends no Close frame");
    assert_eq!(
        members(&mut db).await,
        ["a", "b"],
        "the crash removed no membership"
    );
    let empty: bool =
        sqlx::query_scalar("select empty_since is not null from rooms where room_id = 'orphaned'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert!(!empty, "the crashed run recorded no leave");

    // The same node starts again: its memberships are gone at once (no
    // grace), and the orphaned room counts down its delay from there.
    let restarting = Instant::now();
    let roomd = RoomdProcess::start(&url, &node).await;
    let started = Instant::now();
    assert_eq!(members(&mut db).await, ["b"]);
    let gone = roomd
        .wait_until_gone("orphaned", Duration::from_secs(6))
        .await;
    assert!(
        gone - restarting >= Duration::from_secs(1) - Duration::from_millis(100),
        "destroyed before its delay: {:?} after the restart began",
        gone - restarting
    );
    assert!(
        gone - started <= Duration::from_secs(1) + WITHIN,
        "destroyed late: {:?} after the restart",
        gone - started
    );
    assert!(bystander.room_exists("elsewhere").await);
    b.ping().await;
    assert_eq!(members(&mut db).await, ["b"]);
    bystander.stop().await;
}

#[tokio::test]
async fn two_servers_sweeping_one_database_destroy_each_room_once_and_never_a_joined_one() {
    let url = fresh_database().await;
    let mut config_a = test_config(&url);
    config_a.node_id = Some("node-a".into());
    let mut config_b = test_config(&url);
    config_b.node_id = Some("node-b".into());
    config_b.limits.max_rooms_per_user = 1000;
    let a = spawn_app_with(config_a).await;
    let b = spawn_app_with(config_b).await;

    // 300 empty rooms, all due in one second; half of them are joined
    // through server B right around their deadline.
    let rooms = 300;
    let mut db = a.db().await;
    sqlx::query(
        "with ids as (select 'race-' || g as id from generate_series(1, $1) g),
              streams as (insert into room_streams (room_id) select id from ids)
         insert into rooms (room_id, room_name, destroy_delay_secs, empty_since, destroy_at)
         select id, '', 1, now(), now() + interval '1 second' from ids",
    )
    .bind(rooms)
    .execute(&mut db)
    .await
    .unwrap();
    let due = Instant::now() + Duration::from_secs(1);

    let mut joiners = Vec::new();
    for worker in 0..5 {
        let mut client = b.client(&format!("joiner{worker}")).await;
        joiners.push(tokio::spawn(async move {
            tokio::time::sleep_until((due - Duration::from_millis(150)).into()).await;
            let mut kept = Vec::new();
            for i in (1..=rooms).filter(|i| i % 2 == 0 && i % 5 == worker) {
                let room = format!("race-{i}");
                let reply = client
                    .request(json!({"op": "joinRoom", "roomID": room}))
                    .await;
                if reply["ok"] == true {
                    kept.push(room);
                } else {
                    assert_eq!(reply["error"]["code"], 6000322, "{reply}");
                }
            }
            (client, kept)
        }));
    }
    let mut kept = Vec::new();
    let mut clients = Vec::new();
    for joiner in joiners {
        let (client, rooms) = joiner.await.unwrap();
        kept.extend(rooms);
        clients.push(client);
    }
    // Otherwise "never a joined one" would hold for want of any.
    assert!(!kept.is_empty(), "no join got in before the sweep");

    // Every room nobody joined is destroyed, by exactly one of the servers.
    let deadline = Instant::now() + Duration::from_secs(10);
    let remaining = loop {
        let remaining: i64 = sqlx::query("select count(*) from rooms")
            .fetch_one(&mut db)
            .await
            .unwrap()
            .get(0);
        if remaining == kept.len() as i64 || Instant::now() > deadline {
            break remaining;
        }
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(remaining, kept.len() as i64);
    let destroyed = a.metric("roomd_rooms_destroyed_total").await
        + b.metric("roomd_rooms_destroyed_total").await;
    assert_eq!(destroyed, (rooms as usize - kept.len()) as f64);

    // Every successful join left its user in an existing room.
    for room in &kept {
        let member: bool = sqlx::query(
            "select exists (select 1 from members m join rooms r using (room_id) where m.room_id = $1)",
        )
        .bind(room)
        .fetch_one(&mut db)
        .await
        .unwrap()
        .get(0);
        assert!(member, "{room} was joined but lost its member");
    }
    let orphans: i64 = sqlx::query(
        "select count(*) from members m where not exists (select 1 from rooms r where r.room_id = m.room_id)",
    )
    .fetch_one(&mut db)
    .await
    .unwrap()
    .get(0);
    assert_eq!(orphans, 0);
    // The joiners are still there: nothing was swept from under them.
    drop(clients);
    a.stop().await;
    b.stop().await;
}

/// Messages acknowledged so far by a [`chatter`].
type Acked = Arc<AtomicUsize>;

/// Sends messages to `room` until `stop`, counting acknowledgements in
/// `acked`; returns the acknowledged seqs in order and the longest wait
/// for one acknowledgement.
fn chatter(
    mut client: Client,
    room: &'static str,
    stop: Arc<AtomicBool>,
    acked: Acked,
) -> tokio::task::JoinHandle<(Vec<i64>, Duration)> {
    tokio::spawn(async move {
        let (mut seqs, mut longest) = (Vec::new(), Duration::ZERO);
        while !stop.load(Ordering::Relaxed) {
            let asked = Instant::now();
            let message = client.say(room, "load").await;
            longest = longest.max(asked.elapsed());
            seqs.push(message["seq"].as_i64().unwrap());
            acked.fetch_add(1, Ordering::Relaxed);
        }
        (seqs, longest)
    })
}

/// Waits until `acked` reaches `at_least`.
async fn wait_for_acks(acked: &Acked, at_least: usize) {
    wait_until(
        WAIT,
        &format!("{at_least} acknowledged messages"),
        || async { acked.load(Ordering::Relaxed) >= at_least },
    )
    .await;
}

/// The seqs stored in `room`, in order.
async fn stored_seqs(db: &mut PgConnection, room: &str) -> Vec<i64> {
    sqlx::query_scalar("select seq from messages where room_id = $1 order by seq")
        .bind(room)
        .fetch_all(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_sweeper_keeps_time_while_the_server_is_busy() {
    let app = spawn_app().await;
    let mut room_owner = app.client("owner").await;
    room_owner.create("busy").await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Acked::default();
    let mut senders = Vec::new();
    for i in 0..20 {
        let mut client = app.client(&format!("sender{i}")).await;
        client.join("busy").await;
        senders.push(chatter(client, "busy", stop.clone(), acked.clone()));
    }
    // The load is on before the countdown starts, and stays on through it.
    wait_for_acks(&acked, 100).await;
    let mut a = create_with_delay(&app, "a", "timely", 1).await;
    a.leave("timely").await;
    let left = Instant::now();
    let acked_at_leave = acked.load(Ordering::Relaxed);
    let gone = app.wait_until_gone("timely", Duration::from_secs(8)).await;
    let acked_meanwhile = acked.load(Ordering::Relaxed) - acked_at_leave;
    stop.store(true, Ordering::Relaxed);
    let mut seqs = Vec::new();
    for sender in senders {
        seqs.extend(sender.await.unwrap().0);
    }
    let after = gone - left;
    assert!(
        after <= Duration::from_secs(1) + WITHIN,
        "destroyed {after:?} after the leave under load"
    );
    assert!(
        acked_meanwhile >= 300,
        "only {acked_meanwhile} messages during the countdown: not busy"
    );
    // And the load was real: every acknowledged message is stored, once.
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    assert_eq!(stored_seqs(&mut app.db().await, "busy").await, seqs);
    drop(room_owner);
    app.stop().await;
}

#[tokio::test]
async fn a_thousand_rooms_due_at_once_are_destroyed_without_stalling_messages() {
    /// Longer than any acknowledgement may wait while the rooms go.
    const STALL: Duration = Duration::from_millis(500);
    let app = spawn_app().await;
    let mut talker = app.client("talker").await;
    talker.create("chatty").await;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Acked::default();
    let talking = chatter(talker, "chatty", stop.clone(), acked.clone());
    wait_for_acks(&acked, 10).await;

    let mut db = app.db().await;
    sqlx::query(
        "with ids as (select 'bulk-' || g as id from generate_series(1, 1000) g),
              streams as (insert into room_streams (room_id) select id from ids)
         insert into rooms (room_id, room_name, destroy_delay_secs, empty_since, destroy_at)
         select id, '', 0, now(), now() from ids",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let acked_when_due = acked.load(Ordering::Relaxed);
    let deadline = Instant::now() + WAIT;
    loop {
        let remaining: i64 = sqlx::query("select count(*) from rooms where room_id like 'bulk-%'")
            .fetch_one(&mut db)
            .await
            .unwrap()
            .get(0);
        if remaining == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{remaining} rooms still due");
        tokio::time::sleep(POLL).await;
    }
    let acked_when_gone = acked.load(Ordering::Relaxed);
    // Still flowing afterwards.
    wait_for_acks(&acked, acked_when_gone + 10).await;
    stop.store(true, Ordering::Relaxed);
    let (seqs, longest) = talking.await.unwrap();

    assert_eq!(app.metric("roomd_rooms_destroyed_total").await, 1000.0);
    assert!(
        acked_when_gone > acked_when_due,
        "no message was acknowledged while the rooms were being destroyed"
    );
    assert!(
        longest < STALL,
        "a message waited {longest:?} for its acknowledgement"
    );
    // Every message sent through the sweep was acknowledged in order,
    // without a gap, and stored exactly so.
    assert!(seqs.len() >= 21, "{} messages", seqs.len());
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    assert_eq!(stored_seqs(&mut db, "chatty").await, seqs);
    app.stop().await;
}

#[tokio::test]
async fn a_failing_sweep_is_retried_at_the_next_tick() {
    let app = spawn_app().await;
    let mut a = create_with_delay(&app, "a", "stubborn", 0).await;
    let mut db = app.db().await;
    let failures_before = app.metric("roomd_sweep_failures_total").await;
    assert_eq!(failures_before, 0.0);
    // Make every sweep fail: the rooms table is briefly elsewhere. Two
    // failures counted: a failed sweep is counted, and the next tick tries
    // again (and fails again).
    sqlx::query("alter table rooms rename to rooms_away")
        .execute(&mut db)
        .await
        .unwrap();
    let failures = app
        .wait_for_metric("roomd_sweep_failures_total", failures_before + 2.0)
        .await;
    assert!(failures > failures_before);
    sqlx::query("alter table rooms_away rename to rooms")
        .execute(&mut db)
        .await
        .unwrap();

    // With the table back, a later sweep succeeds: the room, due at once,
    // is destroyed, and the next sweep fails no more.
    a.leave("stubborn").await;
    app.wait_until_gone("stubborn", WITHIN * 2).await;
    let failures = app.metric("roomd_sweep_failures_total").await;
    let sweeps = app.metric("roomd_sweeps_total").await;
    app.wait_for_metric("roomd_sweeps_total", sweeps + 1.0)
        .await;
    assert_eq!(
        app.metric("roomd_sweep_failures_total").await,
        failures,
        "sweeps still failing after the table came back"
    );
    app.stop().await;
}

#[tokio::test]
async fn retention_deletes_only_messages_older_than_the_window() {
    let mut config = test_config(&fresh_database().await);
    config.history_retention = Some(Duration::from_secs(3600));
    config.retention_schedule = "* * * * * *".into();
    let app = spawn_app_with(config).await;
    let mut a = app.client("a").await;
    a.create("old-and-new").await;
    for i in 1..=6 {
        a.say("old-and-new", &format!("m{i}")).await;
    }
    let mut db = app.db().await;
    sqlx::query("update messages set created_at = now() - interval '2 hours' where seq <= 3")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("update messages set created_at = now() - interval '50 minutes' where seq = 4")
        .execute(&mut db)
        .await
        .unwrap();
    // Two more completed runs: at least one started after the backdating.
    let runs = app.metric("roomd_retention_runs_total").await;
    app.wait_for_metric("roomd_retention_runs_total", runs + 2.0)
        .await;
    let seqs: Vec<i64> = a
        .history("old-and-new")
        .await
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [4, 5, 6]);
    assert_eq!(app.metric("roomd_messages_expired_total").await, 3.0);
    // The seq stream is unaffected.
    assert_eq!(a.say("old-and-new", "m7").await["seq"], 7);
    app.stop().await;
}

#[tokio::test]
async fn retention_runs_once_at_a_time_across_nodes() {
    let mut config = test_config(&fresh_database().await);
    config.history_retention = Some(Duration::from_secs(3600));
    config.retention_schedule = "* * * * * *".into();
    let app = spawn_app_with(config).await;
    let mut a = app.client("a").await;
    a.create("r").await;
    a.say("r", "old").await;
    let mut db = app.db().await;
    sqlx::query("update messages set created_at = now() - interval '2 hours'")
        .execute(&mut db)
        .await
        .unwrap();
    // Another node is running retention: it holds the lock (the constant
    // is `RETENTION_LOCK` in src/store/messages.rs).
    let mut other_node = app.db().await;
    sqlx::query("select pg_advisory_lock(8243122671965202799)")
        .execute(&mut other_node)
        .await
        .unwrap();
    app.wait_for_metric("roomd_retention_skipped_total", 2.0)
        .await;
    assert_eq!(a.history("r").await.len(), 1, "nothing deleted meanwhile");
    assert_eq!(app.metric("roomd_retention_runs_total").await, 0.0);
    drop(other_node);
    app.wait_for_metric("roomd_retention_runs_total", 1.0).await;
    assert!(a.history("r").await.is_empty());
    app.stop().await;
}
