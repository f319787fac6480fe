//! Test harness: a real roomd on 127.0.0.1:0 with its own database, in this
//! process ([`spawn_app`]) or as the real binary ([`RoomdProcess`]), and real
//! WebSocket and HTTP clients ([`Client`], [`Endpoint`]).
//!
//! Databases come from `DATABASE_URL` when it is set; otherwise from one
//! throwaway PostgreSQL cluster per test binary, started with the same
//! embedded-PostgreSQL code roomd itself uses and removed when the binary
//! exits. Each test gets a fresh database, so tests run in parallel.

use std::collections::VecDeque;
use std::io::{Read, Seek};
use std::net::SocketAddr;
use std::ops::Deref;
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use roomd::embedded_pg::{EmbeddedOptions, EmbeddedPostgres};
use roomd::{App, Config};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
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
    config.limits.rest_requests_per_second = plenty;
    config.limits.rest_requests_burst = plenty;
    config.limits.max_created_rooms_per_user = 1_000_000;
    // Every test client connects from 127.0.0.1, often many at once.
    config.limits.max_http_connections_per_ip = 0;
    config
}

/// Polls `condition` every [`POLL`] until it holds; panics with `what` after
/// `within`.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what}: not after {within:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Where a roomd listens, and the HTTP and WebSocket clients for it. Both
/// kinds of server ([`TestApp`], [`RoomdProcess`]) dereference to one.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub addr: SocketAddr,
}

impl Endpoint {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A connected client that has not logged in.
    pub async fn connect(&self) -> Client {
        self.try_connect().await.expect("WebSocket connects")
    }

    /// A connected client, or `None` when the server does not accept one
    /// (for tests where it may be down).
    pub async fn try_connect(&self) -> Option<Client> {
        let tcp = TcpStream::connect(self.addr).await.ok()?;
        self.handshake(tcp).await
    }

    /// A connected client from another loopback address (`127.0.0.x`), for
    /// limits kept per client address.
    pub async fn connect_from(&self, ip: [u8; 4]) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((ip, 0)))
            .expect("bind the source address");
        let tcp = socket.connect(self.addr).await.expect("TCP connects");
        self.handshake(tcp).await.expect("WebSocket connects")
    }

    async fn handshake(&self, tcp: TcpStream) -> Option<Client> {
        let link = Link { tcp, muted: false };
        let (ws, _) = tokio_tungstenite::client_async(self.ws_url(), link)
            .await
            .ok()?;
        Some(Client {
            ws,
            next_id: 1,
            events: VecDeque::new(),
        })
    }

    /// A connected client logged in as `user_id` (named "<user_id> name").
    pub async fn client(&self, user_id: &str) -> Client {
        let mut client = self.connect().await;
        client.login(user_id).await;
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

    /// The HTTP status of `GET path`, or `None` when nothing answers.
    pub async fn status(&self, path: &str) -> Option<u16> {
        let response = reqwest::get(self.http(path)).await.ok()?;
        Some(response.status().as_u16())
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
    pub async fn wait_until_gone(&self, room: &str, within: Duration) -> Instant {
        let deadline = Instant::now() + within;
        loop {
            if !self.room_exists(room).await {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
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
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.metric(name).await;
            if value >= at_least {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{name} stayed at {value}, wanted {at_least}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A roomd in this process, on its own database.
pub struct TestApp {
    endpoint: Endpoint,
    pub database_url: String,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
}

impl Deref for TestApp {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
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
        endpoint: Endpoint { addr },
        database_url,
        shutdown,
        server,
    }
}

impl TestApp {
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

/// The `roomd` binary, with none of the developer's `ROOMD_*` variables or
/// `DATABASE_URL` in its environment: only its arguments configure it.
pub fn roomd_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roomd"));
    for (key, _) in std::env::vars_os() {
        if key.as_encoded_bytes().starts_with(b"ROOMD_") {
            command.env_remove(key);
        }
    }
    command.env_remove("DATABASE_URL").stdin(Stdio::null());
    command
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The real `roomd` binary as a child process; killed (SIGKILL) when
/// dropped. Its log goes to the terminal with `TEST_LOG`, otherwise to a
/// file shown when it fails to start.
pub struct RoomdProcess {
    child: Child,
    endpoint: Endpoint,
    log: Option<std::fs::File>,
}

impl Deref for RoomdProcess {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl RoomdProcess {
    /// `roomd` on `database_url` and a free port, with the test limits of
    /// [`test_config`] (no rate limit in the way) and `extra_args`.
    pub async fn start(database_url: &str, extra_args: &[&str]) -> Self {
        Self::start_on(free_port(), database_url, extra_args).await
    }

    /// [`RoomdProcess::start`] on a given port (to restart on the one a
    /// killed process had).
    pub async fn start_on(port: u16, database_url: &str, extra_args: &[&str]) -> Self {
        let mut command = roomd_command();
        let plenty = "1000000";
        command
            .args(["--database-url", database_url])
            .args(["--requests-per-second", plenty, "--requests-burst", plenty])
            .args(["--messages-per-second", plenty, "--messages-burst", plenty])
            .args(["--logins-per-second", plenty])
            .args([
                "--rest-requests-per-second",
                plenty,
                "--rest-requests-burst",
                plenty,
            ])
            .args(["--max-created-rooms-per-user", plenty])
            .args(["--max-http-connections-per-ip", "0"])
            .args(extra_args);
        Self::launch(command, port).await
    }

    /// Runs `command` (from [`roomd_command`]) listening on `port`, and
    /// waits until `/readyz` answers 200.
    pub async fn launch(mut command: Command, port: u16) -> Self {
        command.args(["--bind", &format!("127.0.0.1:{port}")]);
        // roomd logs to stdout and reports start-up errors on stderr.
        let log = if std::env::var_os("TEST_LOG").is_some() {
            None
        } else {
            let file = tempfile::tempfile().expect("log file");
            command.stdout(file.try_clone().expect("log file"));
            command.stderr(file.try_clone().expect("log file"));
            Some(file)
        };
        let child = command.spawn().expect("roomd starts");
        let mut roomd = RoomdProcess {
            child,
            endpoint: Endpoint {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            },
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while roomd.status("/readyz").await != Some(200) {
            if let Some(status) = roomd.child.try_wait().expect("roomd's status") {
                panic!(
                    "roomd exited ({status}) before it was ready:\n{}",
                    roomd.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "roomd not ready after a minute:\n{}",
                roomd.log()
            );
            tokio::time::sleep(POLL).await;
        }
        roomd
    }

    /// Its process id, for reading its resources from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far (when its log goes to a file).
    pub fn log_text(&mut self) -> String {
        self.log()
    }

    fn log(&mut self) -> String {
        let Some(file) = &mut self.log else {
            return "(log on stderr)".into();
        };
        let mut text = String::new();
        let _ = file.rewind();
        let _ = file.read_to_string(&mut text);
        text
    }

    pub fn port(&self) -> u16 {
        self.endpoint.addr.port()
    }

    /// Sends the process a signal.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal roomd");
    }

    /// A crash: SIGKILL, and waits until the process is gone.
    pub fn kill_9(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let status = self.child.wait().expect("roomd exits");
        assert!(!status.success(), "killed roomd exited with {status}");
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("roomd's status").is_none()
    }

    /// Waits for the process to exit by itself; panics after `within`.
    pub async fn exited_within(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("roomd's status") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "roomd still running after {within:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for RoomdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client's TCP connection, which can be made to lose everything the
/// client writes ([`Client::mute`]).
struct Link {
    tcp: TcpStream,
    muted: bool,
}

impl AsyncRead for Link {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.muted {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.muted {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.muted {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// A WebSocket client speaking roomd's protocol.
pub struct Client {
    ws: WebSocketStream<Link>,
    next_id: u32,
    /// Events that arrived while waiting for a reply.
    events: VecDeque<Value>,
}

/// The wire steps of the room flow, each asserting that it succeeded. Tests
/// about the wire shape itself use [`Client::request`] with raw JSON.
impl Client {
    /// Logs in as `user` named "<user> name"; returns the reply.
    pub async fn login(&mut self, user: &str) -> Value {
        self.ok(json!({"op": "login", "userInfo": {"userID": user, "userName": format!("{user} name")}}))
            .await
    }

    /// Creates `room` (no name, default config); returns the reply.
    pub async fn create(&mut self, room: &str) -> Value {
        self.ok(json!({"op": "createRoom", "roomInfo": {"roomID": room}}))
            .await
    }

    /// Creates `room` named `name`; returns the reply.
    pub async fn create_named(&mut self, room: &str, name: &str) -> Value {
        self.ok(json!({"op": "createRoom", "roomInfo": {"roomID": room, "roomName": name}}))
            .await
    }

    /// Creates `room` with this `config` (roomDestroyDelayTime, ...);
    /// returns the reply.
    pub async fn create_with(&mut self, room: &str, config: Value) -> Value {
        self.ok(json!({"op": "createRoom", "roomInfo": {"roomID": room}, "config": config}))
            .await
    }

    /// Joins `room`; returns the reply.
    pub async fn join(&mut self, room: &str) -> Value {
        self.ok(json!({"op": "joinRoom", "roomID": room})).await
    }

    /// Joins `room`, resuming after `seq`; returns the reply.
    pub async fn join_since(&mut self, room: &str, seq: i64) -> Value {
        self.ok(json!({"op": "joinRoom", "roomID": room, "sinceSeq": seq}))
            .await
    }

    /// Enters `room` (created when missing, joined otherwise); returns the reply.
    pub async fn enter(&mut self, room: &str) -> Value {
        self.ok(json!({"op": "enterRoom", "roomInfo": {"roomID": room}}))
            .await
    }

    /// Leaves `room`; returns the reply.
    pub async fn leave(&mut self, room: &str) -> Value {
        self.ok(json!({"op": "leaveRoom", "roomID": room})).await
    }

    /// Sends a text message; returns the stored message from the reply.
    pub async fn say(&mut self, room: &str, text: &str) -> Value {
        let reply = self
            .ok(json!({"op": "sendRoomMessage", "roomID": room, "message": {"type": "text", "message": text}}))
            .await;
        stored_message(reply)
    }

    /// Sends a text message with a clientMessageID; returns the stored
    /// message from the reply.
    pub async fn say_with_id(&mut self, room: &str, text: &str, client_message_id: &str) -> Value {
        let reply = self
            .ok(json!({"op": "sendRoomMessage", "roomID": room, "clientMessageID": client_message_id,
                       "message": {"type": "text", "message": text}}))
            .await;
        stored_message(reply)
    }

    /// The room's online member count.
    pub async fn member_count(&mut self, room: &str) -> u64 {
        let reply = self
            .ok(json!({"op": "queryRoomOnlineMemberCount", "roomID": room}))
            .await;
        reply["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("count in {reply}"))
    }

    /// The room's newest history page (the server's default count).
    pub async fn history(&mut self, room: &str) -> Vec<Value> {
        let reply = self
            .ok(json!({"op": "queryHistoryMessage", "roomID": room}))
            .await;
        reply["messageList"]
            .as_array()
            .unwrap_or_else(|| panic!("messageList in {reply}"))
            .clone()
    }

    /// A ping round trip: proof that the connection works.
    pub async fn ping(&mut self) {
        self.ok(json!({"op": "ping"})).await;
    }
}

fn stored_message(reply: Value) -> Value {
    let message = reply["message"].clone();
    assert!(
        message["seq"].is_i64() && message["messageID"].is_string(),
        "a send's reply carries the stored message: {reply}"
    );
    message
}

/// Requests, replies and events.
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

    /// A request over a connection that may fail at any moment (a server
    /// being killed, a database going away): its reply, or `None` when the
    /// connection breaks or no reply comes within [`WAIT`]. Events are kept.
    pub async fn try_request(&mut self, mut request: Value) -> Option<Value> {
        let id = self.next_id;
        self.next_id += 1;
        request["id"] = json!(id);
        self.ws
            .send(Message::text(request.to_string()))
            .await
            .ok()?;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
            {
                Ok(Message::Text(text)) => {
                    let frame: Value = serde_json::from_str(&text).expect("server sends JSON");
                    if frame.get("event").is_some() {
                        self.events.push_back(frame);
                    } else if frame["id"] == json!(id) {
                        return Some(frame);
                    } else {
                        panic!("unexpected reply while waiting for {id}: {frame}");
                    }
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
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

    /// The next event, which must tell that `user` (alone) joined.
    pub async fn expect_joined(&mut self, user: &str) -> Value {
        self.expect_member_event("roomMemberJoined", user).await
    }

    /// The next event, which must tell that `user` (alone) left.
    pub async fn expect_left(&mut self, user: &str) -> Value {
        self.expect_member_event("roomMemberLeft", user).await
    }

    async fn expect_member_event(&mut self, kind: &str, user: &str) -> Value {
        let event = self.expect_event(kind).await;
        assert_eq!(
            event["memberList"].as_array().map(|list| list.len()),
            Some(1),
            "one member per event: {event}"
        );
        assert_eq!(event["memberList"][0]["userID"], user, "{event}");
        event
    }

    /// The next `count` messages, from consecutive `roomMessageReceived`
    /// events (any other event fails, and so does an event that would go
    /// past `count`).
    pub async fn expect_messages(&mut self, count: usize) -> Vec<Value> {
        let mut messages = Vec::new();
        while messages.len() < count {
            let event = self.expect_event("roomMessageReceived").await;
            let list = event["messageList"]
                .as_array()
                .unwrap_or_else(|| panic!("messageList in {event}"));
            messages.extend(list.iter().cloned());
        }
        assert_eq!(
            messages.len(),
            count,
            "more messages than expected: {messages:?}"
        );
        messages
    }

    /// The next event, which must deliver exactly this one message.
    pub async fn expect_message(&mut self, message: &Value) {
        let event = self.expect_event("roomMessageReceived").await;
        assert_eq!(event["messageList"], json!([message]), "{event}");
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

    /// From now on everything this client writes is lost, as on a network
    /// that drops its upstream: the server hears nothing more from it (no
    /// pong, no Close reply), while the client still reads what the server
    /// sends, up to its Close frame. (A client that writes to a connection
    /// the server has closed can get a reset before it reads that frame.)
    pub fn mute(&mut self) {
        self.ws.get_mut().muted = true;
    }

    /// Writes raw bytes to the socket, around the WebSocket framing (for
    /// frames no well-behaved client would send).
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let tcp = &mut self.ws.get_mut().tcp;
        tcp.write_all(bytes).await.expect("raw write");
    }

    /// Like [`Client::closed`], for closes that take longer than [`WAIT`].
    pub async fn closed_within(&mut self, within: Duration) -> Option<u16> {
        let deadline = Instant::now() + within;
        loop {
            let frame = tokio::time::timeout_at(deadline.into(), self.ws.next())
                .await
                .expect("closed in time");
            match frame {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Waits for the server to close the connection; returns the close code
    /// (`None` when the connection went away without a Close frame).
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

    /// Waits for the server to close the connection with a Close frame
    /// carrying exactly `code`.
    pub async fn expect_closed(&mut self, code: u16) {
        assert_eq!(self.closed().await, Some(code), "closed with {code}");
    }
}
