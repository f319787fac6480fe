//! Test harness: a real roomd on 127.0.0.1:0 with its own database, and real
//! WebSocket and HTTP clients.
//!
//! Databases come from `DATABASE_URL` when it is set; otherwise from one
//! throwaway PostgreSQL cluster per test binary, started with the same
//! embedded-PostgreSQL code roomd itself uses and removed when the binary
//! exits. Each test gets a fresh database, so tests run in parallel.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use roomd::embedded_pg::{EmbeddedOptions, EmbeddedPostgres};
use roomd::{App, Config};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);
/// How often a test polls state that has no event (REST, metrics).
pub const POLL: Duration = Duration::from_millis(50);
/// How long a test watches for something that must not happen.
pub const QUIET: Duration = Duration::from_millis(300);

/// `DATABASE_URL` with its database name replaced, or the throwaway cluster's URL.
fn database_url(database: &str) -> String {
    static BASE: OnceLock<Base> = OnceLock::new();
    enum Base {
        External(String),
        Embedded(String),
    }
    let base = BASE.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Base::External(url),
        _ => Base::Embedded(start_throwaway_cluster()),
    });
    match base {
        Base::Embedded(template) => template.replace("{db}", database),
        Base::External(url) => {
            let (head, query) = match url.split_once('?') {
                Some((head, query)) => (head, format!("?{query}")),
                None => (url.as_str(), String::new()),
            };
            let (scheme, rest) = head.split_once("://").expect("DATABASE_URL has a scheme");
            let authority = rest.split('/').next().unwrap_or(rest);
            format!("{scheme}://{authority}/{database}{query}")
        }
    }
}

fn start_throwaway_cluster() -> String {
    std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let root = tempfile::Builder::new()
            .prefix("roomd-test-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let pg = runtime
            .block_on(EmbeddedPostgres::start(EmbeddedOptions {
                root,
                ephemeral: true,
            }))
            .expect("throwaway PostgreSQL starts (is the PostgreSQL server package installed?)");
        let template = pg.url_for("{db}");
        // Lives until this test binary exits; its supervisor then stops it
        // and removes its folder.
        std::mem::forget(pg);
        template
    })
    .join()
    .expect("cluster thread")
}

/// Creates a fresh, empty database and returns its URL.
pub async fn fresh_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "roomd_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = PgConnection::connect(&database_url("postgres"))
        .await
        .expect("connect to the maintenance database");
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    database_url(&name)
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        roomd::telemetry::init(roomd::config::LogFormat::Text);
    }
}

/// Settings for a test server: defaults, a free port, the given database.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::defaults();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.database_url = Some(database_url.to_owned());
    config.auth_secret = None;
    config.admin_token = None;
    // Dropped connections leave at once unless a test is about the grace.
    config.reconnect_grace = Duration::ZERO;
    // Tests drive traffic far faster than people; the rate-limit tests set
    // their own limits.
    let plenty = std::num::NonZeroU32::new(1_000_000).unwrap();
    config.limits.requests_per_second = plenty;
    config.limits.requests_burst = plenty;
    config.limits.messages_per_second = plenty;
    config.limits.messages_burst = plenty;
    config.limits.logins_per_second = plenty;
    config
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub database_url: String,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
}

/// A server on a fresh database with default settings.
pub async fn spawn_app() -> TestApp {
    let url = fresh_database().await;
    spawn_app_with(test_config(&url)).await
}

pub async fn spawn_app_with(config: Config) -> TestApp {
    init_logs();
    let database_url = config.database_url.clone().unwrap_or_default();
    let app = App::build(config).await.expect("app builds");
    let addr = app.local_addr();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    TestApp {
        addr,
        database_url,
        shutdown,
        server,
    }
}

impl TestApp {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A connected client that has not logged in.
    pub async fn connect(&self) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(self.ws_url())
            .await
            .expect("WebSocket connects");
        Client {
            ws,
            next_id: 1,
            events: VecDeque::new(),
        }
    }

    /// A connected client logged in as `user_id` (named after it).
    pub async fn client(&self, user_id: &str) -> Client {
        let mut client = self.connect().await;
        let reply = client
            .request(json!({"op": "login", "userInfo": {"userID": user_id, "userName": format!("{user_id} name")}}))
            .await;
        assert_eq!(reply["ok"], true, "login failed: {reply}");
        client
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_with(path, None).await
    }

    pub async fn get_with(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = reqwest::Client::new().get(self.http(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Whether the room exists, as REST reports it.
    pub async fn room_exists(&self, room: &str) -> bool {
        match self.get(&format!("/v1/rooms/{room}")).await.0 {
            200 => true,
            404 => false,
            other => panic!("GET /v1/rooms/{room}: unexpected status {other}"),
        }
    }

    /// Polls until the room is gone; returns when that was seen. Panics
    /// after `within`.
    pub async fn wait_until_gone(&self, room: &str, within: Duration) -> std::time::Instant {
        let deadline = std::time::Instant::now() + within;
        loop {
            if !self.room_exists(room).await {
                return std::time::Instant::now();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "room {room} still exists after {within:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The value of one metric from `GET /metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(self.http("/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Polls until the metric reaches `at_least`; panics after [`WAIT`].
    pub async fn wait_for_metric(&self, name: &str, at_least: f64) -> f64 {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let value = self.metric(name).await;
            if value >= at_least {
                return value;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} stayed at {value}, wanted {at_least}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops the server and waits until it has fully stopped.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT * 3, self.server)
            .await
            .expect("server stops in time")
            .expect("server task");
    }

    /// A direct database connection, for checking what was stored.
    pub async fn db(&self) -> PgConnection {
        PgConnection::connect(&self.database_url)
            .await
            .expect("db connects")
    }
}

/// A WebSocket client speaking roomd's protocol.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u32,
    /// Events that arrived while waiting for a reply.
    events: VecDeque<Value>,
}

impl Client {
    /// Sends a request (an `id` is added) and returns the id.
    pub async fn send(&mut self, mut request: Value) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        request["id"] = json!(id);
        self.send_raw(Message::text(request.to_string())).await;
        id
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send frame");
    }

    /// The next frame from the server, as JSON; panics on close or timeout.
    pub async fn next_json(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("server answered in time")
                .expect("connection open")
                .expect("frame reads");
            match frame {
                Message::Text(text) => {
                    return serde_json::from_str(&text).expect("server sends JSON");
                }
                Message::Close(close) => panic!("connection closed: {close:?}"),
                _ => continue,
            }
        }
    }

    /// Waits for the reply with this id, keeping events for later.
    pub async fn reply(&mut self, id: u32) -> Value {
        loop {
            let frame = self.next_json().await;
            if frame.get("event").is_some() {
                self.events.push_back(frame);
            } else if frame["id"] == json!(id) {
                return frame;
            } else {
                panic!("unexpected reply while waiting for {id}: {frame}");
            }
        }
    }

    /// The next frame that is a reply with a null id (undecodable requests).
    pub async fn null_reply(&mut self) -> Value {
        loop {
            let frame = self.next_json().await;
            if frame.get("event").is_some() {
                self.events.push_back(frame);
            } else {
                assert_eq!(
                    frame["id"],
                    Value::Null,
                    "expected a null-id reply: {frame}"
                );
                return frame;
            }
        }
    }

    pub async fn request(&mut self, request: Value) -> Value {
        let id = self.send(request).await;
        self.reply(id).await
    }

    /// Sends a request that must succeed; returns the reply.
    pub async fn ok(&mut self, request: Value) -> Value {
        let reply = self.request(request.clone()).await;
        assert_eq!(reply["ok"], true, "{request} failed: {reply}");
        reply
    }

    /// Sends a request that must fail with `code`; returns the error object.
    pub async fn fails(&mut self, request: Value, code: u64) -> Value {
        let reply = self.request(request.clone()).await;
        assert_eq!(reply["ok"], false, "{request} should fail: {reply}");
        assert_eq!(reply["error"]["code"], json!(code), "{request}: {reply}");
        reply["error"].clone()
    }

    /// The next event (of any kind).
    pub async fn event(&mut self) -> Value {
        if let Some(event) = self.events.pop_front() {
            return event;
        }
        let frame = self.next_json().await;
        assert!(
            frame.get("event").is_some(),
            "expected an event, got {frame}"
        );
        frame
    }

    /// The next event, which must be of this kind.
    pub async fn expect_event(&mut self, kind: &str) -> Value {
        let event = self.event().await;
        assert_eq!(event["event"], kind, "unexpected event: {event}");
        event
    }

    /// Asserts nothing arrives within [`QUIET`] (checked with a ping round trip
    /// first, so anything already sent is seen).
    pub async fn expect_silence(&mut self) {
        let id = self.send(json!({"op": "ping"})).await;
        self.reply(id).await;
        assert!(
            self.events.is_empty(),
            "unexpected events: {:?}",
            self.events
        );
        if let Ok(Some(Ok(frame))) = tokio::time::timeout(QUIET, self.ws.next()).await {
            panic!("unexpected frame: {frame:?}");
        }
    }

    /// Reads (and so answers pings) for a while, keeping events; fails if
    /// the connection closes.
    pub async fn pump(&mut self, duration: Duration) {
        let until = tokio::time::Instant::now() + duration;
        while let Ok(frame) = tokio::time::timeout_at(until, self.ws.next()).await {
            match frame {
                Some(Ok(Message::Text(text))) => self
                    .events
                    .push_back(serde_json::from_str(&text).expect("JSON")),
                Some(Ok(Message::Close(close))) => panic!("closed while pumping: {close:?}"),
                Some(Ok(_)) => {}
                other => panic!("connection failed while pumping: {other:?}"),
            }
        }
    }

    /// The next raw frame, or `None` when the connection is gone.
    pub async fn raw_next(&mut self) -> Option<Message> {
        match tokio::time::timeout(WAIT, self.ws.next())
            .await
            .expect("frame in time")
        {
            Some(Ok(frame)) => Some(frame),
            _ => None,
        }
    }

    /// Waits for the server to close the connection; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("closed in time")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// Sends a text message and returns the stored message from the reply.
pub async fn say(client: &mut Client, room: &str, text: &str) -> Value {
    client
        .ok(json!({"op": "sendRoomMessage", "roomID": room, "message": {"type": "text", "message": text}}))
        .await["message"]
        .clone()
}
