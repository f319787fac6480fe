//! One WebSocket connection: login, request dispatch, the outbound queue and
//! the close handshake.
//!
//! A session is two tasks. The reader decodes and handles requests; sends
//! are pipelined (up to [`MAX_SENDS_IN_FLIGHT`] wait for their commit while
//! the reader goes on), everything else waits for the sends before it, so
//! replies to one connection keep the order of its requests. The writer
//! drains the bounded [`Outbox`] onto the socket, so a slow socket never
//! blocks the tasks that fan out to it.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

/// An upgraded connection, as roomd's own upgrade path hands it over.
pub type WebSocket = WebSocketStream<TokioIo<Upgraded>>;

/// A Close frame with roomd's code and reason.
fn close_frame(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }))
}

use crate::app::AppState;
use crate::committer;
use crate::domain::{ClientMessageId, RoomId};
use crate::hub::{CloseReason, Closer, Frame, Outbox, OutboxQueue, next_conn_id};
use crate::limits::{ConnectionRates, ConnectionSlot, Limited, UserSlot};
use crate::protocol::{self, ErrorBody, ErrorCode, OutgoingMessage, Request, SendConfig};
use crate::rooms::{Caller, RoomError};
use crate::store::messages::Appended;

/// Runs a connection until it closes. `ip` is the client's address, for
/// per-address login limits.
pub async fn serve(socket: WebSocket, app: Arc<AppState>, ip: Option<IpAddr>) {
    let Some(slot) = app.connections.open() else {
        tracing::warn!("refusing a connection: at the connection limit");
        let mut socket = socket;
        let _ = socket
            .send(close_frame(
                1013,
                "server at its connection limit, try again later",
            ))
            .await;
        return;
    };
    let (sink, stream) = socket.split();
    let (outbox, queue, closer) = Outbox::new(
        app.config.limits.outbox_frames,
        app.config.limits.outbox_bytes,
    );
    let writer = tokio::spawn(write_loop(
        sink,
        queue,
        closer.clone(),
        app.config.ping_interval,
    ));
    let mut session = Session {
        conn: next_conn_id(),
        rates: app.rates.for_connection(),
        app,
        ip,
        outbox,
        closer: closer.clone(),
        caller: None,
        joined: BTreeSet::new(),
        _slot: slot,
        user_slot: None,
    };
    let conn = session.conn;
    tracing::debug!(conn, "connection opened");
    let mut stream = stream;
    session.read_loop(&mut stream).await;
    // Boxed, like request handling: a connection's task is sized for its
    // largest await, and idle connections should not carry the space of
    // the database work they do only when they end.
    Box::pin(session.leave_everything()).await;
    // The connection no longer counts against its user's or the server's limits.
    drop(session);
    if closer.reason().is_some() {
        drain_until_close(&mut stream).await;
    }
    closer.abort();
    // A writer stuck on a client that stopped reading never finishes on its
    // own; dropping it closes the socket.
    let writer_abort = writer.abort_handle();
    if tokio::time::timeout(WRITER_DRAIN, writer).await.is_err() {
        writer_abort.abort();
    }
    tracing::debug!(conn, reason = ?closer.reason(), "connection closed");
}

/// While the server closes a connection, reads (and drops) what the client
/// still sends, until its Close reply, a pause, or [`WRITER_DRAIN`]. Closing
/// a socket with unread bytes makes the kernel reset it, and the client
/// could lose the Close frame that says why it was closed.
async fn drain_until_close(stream: &mut SplitStream<WebSocket>) {
    const PAUSE: Duration = Duration::from_millis(100);
    let drain = async {
        while let Ok(Some(Ok(frame))) = tokio::time::timeout(PAUSE, stream.next()).await {
            if frame.is_close() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(WRITER_DRAIN, drain).await;
}

struct Session {
    conn: crate::hub::ConnId,
    app: Arc<AppState>,
    ip: Option<IpAddr>,
    rates: ConnectionRates,
    outbox: Outbox,
    closer: Closer,
    /// Set by a successful `login`; every other op needs it.
    caller: Option<Caller>,
    /// Rooms this connection has joined, to leave them when it goes away.
    joined: BTreeSet<RoomId>,
    /// This connection's place in the process-wide connection count.
    _slot: ConnectionSlot,
    /// Its place in the user's connection count, once logged in.
    user_slot: Option<UserSlot>,
}

/// Whether a read error is tungstenite refusing an oversized frame or message.
fn is_too_large(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Capacity(_))
}

/// Sends of one connection waiting for their commit at once. More in flight
/// lets one busy sender share transactions with itself; the bound keeps a
/// connection from queueing without limit.
pub const MAX_SENDS_IN_FLIGHT: usize = 64;

/// The reply to a send, ready once the send is committed (or refused).
type SendReply = Pin<Box<dyn Future<Output = String> + Send>>;

/// Sends in flight on one connection, their replies in request order.
type InFlight = FuturesOrdered<SendReply>;

/// How long a closing connection's writer may take to flush and close.
const WRITER_DRAIN: Duration = Duration::from_secs(2);

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: OutboxQueue,
    closer: Closer,
    ping_interval: Duration,
) {
    let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = closer.closed() => break,
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    closer.abort();
                    return;
                }
            }
            frame = queue.recv() => {
                let Some(frame) = frame else { break };
                // Batch whatever is already queued into one flush.
                let mut ok = sink.feed(Message::Text(frame)).await.is_ok();
                while ok && let Some(frame) = queue.try_recv() {
                    ok = sink.feed(Message::Text(frame)).await.is_ok();
                }
                if !ok || sink.flush().await.is_err() {
                    closer.abort();
                    return;
                }
            }
        }
    }
    let reason = closer.reason();
    // Frames queued before the close (replies, events) still go out, unless
    // the client is being dropped for not reading them.
    if reason != Some(CloseReason::SLOW_CONSUMER) {
        while let Some(frame) = queue.try_recv() {
            if sink.feed(Message::Text(frame)).await.is_err() {
                return;
            }
        }
    }
    if let Some(reason) = reason {
        let _ = sink.send(close_frame(reason.code, reason.reason)).await;
    } else {
        let _ = sink.flush().await;
    }
    let _ = sink.close().await;
}

impl Session {
    async fn read_loop(&mut self, stream: &mut SplitStream<WebSocket>) {
        let mut in_flight = InFlight::new();
        let shutting_down = self.read_frames(stream, &mut in_flight).await;
        // Sends already queued are stored whatever happens to the
        // connection; their replies go out if it is still open, and on
        // shutdown before the notice and the Close frame.
        self.settle(&mut in_flight).await;
        if shutting_down {
            self.announce_shutdown();
            self.closer.close(CloseReason::GOING_AWAY);
        }
    }

    /// Queues the replies of every send in flight, in order.
    async fn settle(&self, in_flight: &mut InFlight) {
        while let Some(reply) = in_flight.next().await {
            self.reply(reply).await;
        }
    }

    /// Reads and handles frames until the connection ends; returns whether
    /// it ends because the server is shutting down.
    async fn read_frames(
        &mut self,
        stream: &mut SplitStream<WebSocket>,
        in_flight: &mut InFlight,
    ) -> bool {
        let login_deadline =
            tokio::time::sleep_until(Instant::now() + self.app.config.login_timeout);
        tokio::pin!(login_deadline);
        let idle_timeout = self.app.config.idle_timeout;
        let idle = tokio::time::sleep_until(Instant::now() + idle_timeout);
        tokio::pin!(idle);
        loop {
            let frame = tokio::select! {
                () = &mut idle => {
                    self.closer.close(CloseReason::IDLE);
                    return false;
                }
                () = self.closer.closed() => return false,
                () = self.app.shutdown.cancelled() => return true,
                () = &mut login_deadline, if self.caller.is_none() => {
                    self.closer.close(CloseReason::LOGIN_TIMEOUT);
                    return false;
                }
                Some(reply) = in_flight.next(), if !in_flight.is_empty() => {
                    self.reply(reply).await;
                    continue;
                }
                frame = stream.next() => frame,
            };
            match frame {
                None => return false,
                Some(Err(e)) => {
                    if is_too_large(&e) {
                        tracing::info!(conn = self.conn, "closing: frame above the size limit");
                        self.closer.close(CloseReason::FRAME_TOO_LARGE);
                    } else {
                        tracing::debug!(conn = self.conn, error = %e, "read failed");
                        self.closer.abort();
                    }
                    return false;
                }
                Some(Ok(message)) => {
                    idle.as_mut().reset(Instant::now() + idle_timeout);
                    if let Message::Text(text) = &message {
                        // Boxed: handling a request (database round trips
                        // included) takes a large future, and an idle
                        // connection should not carry its space.
                        Box::pin(self.handle(text.as_str(), in_flight)).await;
                    } else if message.is_binary() {
                        self.settle(in_flight).await;
                        if let Err(limited) = self.rates.request() {
                            self.refuse(None, limited).await;
                            continue;
                        }
                        let error = ErrorBody::new(
                            ErrorCode::BadFrame,
                            "binary frames are not accepted; send each request as a JSON text frame",
                        );
                        self.reply(protocol::error_reply(None, &error)).await;
                    } else if message.is_close() {
                        return false;
                    }
                    // Pings are answered by tungstenite itself; pongs need nothing.
                }
            }
        }
    }

    async fn reply(&self, frame: String) {
        self.outbox.send(Frame::from(frame)).await;
    }

    /// Replies `1006` to a request over the connection's rate (and closes
    /// a connection that keeps ignoring that).
    async fn refuse(&self, id: Option<u32>, limited: Limited) {
        let error = ErrorBody::rate_limited(
            "too many requests on this connection; slow down",
            limited.retry_after,
        );
        self.reply(protocol::error_reply(id, &error)).await;
        self.note_refusal();
    }

    fn note_refusal(&self) {
        if !self.rates.tolerate_refusal() {
            tracing::info!(
                conn = self.conn,
                "closing: kept sending past its rate limits"
            );
            self.closer.close(CloseReason::ABUSE);
        }
    }

    async fn handle(&mut self, text: &str, in_flight: &mut InFlight) {
        let decoded = protocol::decode(text);
        let id = match &decoded {
            Ok((id, _)) => Some(*id),
            Err(rejected) => rejected.id,
        };
        if let Err(limited) = self.rates.request() {
            self.settle(in_flight).await;
            self.refuse(id, limited).await;
            return;
        }
        let (id, request) = match decoded {
            Ok(decoded) => decoded,
            Err(rejected) => {
                self.settle(in_flight).await;
                self.reply(protocol::error_reply(rejected.id, &rejected.error))
                    .await;
                return;
            }
        };
        let request = match (request, &self.caller) {
            (
                Request::SendRoomMessage {
                    room_id,
                    message,
                    config,
                    client_message_id,
                },
                Some(caller),
            ) => {
                if in_flight.len() >= MAX_SENDS_IN_FLIGHT
                    && let Some(reply) = in_flight.next().await
                {
                    self.reply(reply).await;
                }
                let reply = self
                    .send(id, caller, room_id, message, &config, client_message_id)
                    .await;
                in_flight.push_back(reply);
                return;
            }
            (request, _) => request,
        };
        // Anything but a send is answered after the sends before it.
        self.settle(in_flight).await;
        let op = request.op();
        let result = self.dispatch(id, request).await;
        if let Err(error) = result {
            tracing::debug!(conn = self.conn, op, code = error.code.code(), message = %error.message, "request failed");
            if error.code == ErrorCode::RateLimited {
                self.note_refusal();
            }
            self.reply(protocol::error_reply(Some(id), &error)).await;
        }
    }

    /// Queues a send for its commit and returns its reply-to-be: the stored
    /// message once committed, or the error. Refusals are ready at once.
    async fn send(
        &self,
        id: u32,
        caller: &Caller,
        room_id: RoomId,
        message: OutgoingMessage,
        config: &SendConfig,
        client_message_id: Option<ClientMessageId>,
    ) -> SendReply {
        let failed = |error: ErrorBody| -> SendReply {
            Box::pin(std::future::ready(protocol::error_reply(Some(id), &error)))
        };
        if !self.joined.contains(&room_id) {
            return failed(RoomError::NotInRoom(room_id).to_body());
        }
        let queued = self
            .app
            .rooms
            .send(caller, room_id, message, config, client_message_id)
            .await;
        match queued {
            Ok(outcome) => Box::pin(async move {
                match outcome.await.unwrap_or_else(|_| Err(committer::closed())) {
                    Ok(Appended::Stored(stored) | Appended::Duplicate(stored)) => {
                        protocol::ok_reply(id, &json!({ "message": stored }))
                    }
                    Err(e) => protocol::error_reply(Some(id), &RoomError::Store(e).to_body()),
                }
            }),
            Err(e) => {
                if matches!(e, RoomError::RateLimited(_)) {
                    self.note_refusal();
                }
                failed(e.to_body())
            }
        }
    }

    /// Handles one request and queues its reply; errors are replied by the caller.
    async fn dispatch(&mut self, id: u32, request: Request) -> Result<(), ErrorBody> {
        if let Request::Login { user_info, token } = request {
            return self.login(id, user_info, token).await;
        }
        let Some(caller) = self.caller.clone() else {
            return Err(ErrorBody::new(
                ErrorCode::NotLoggedIn,
                "log in first: the first request on a connection must be login",
            ));
        };
        let rooms = &self.app.rooms;
        let room_error = |e: RoomError| e.to_body();
        let reply = match request {
            Request::Login { .. } => unreachable!("handled above"),
            Request::Ping => protocol::ok_reply(id, &json!({})),
            Request::CreateRoom { room_info, config } => {
                let entered = rooms
                    .create(&caller, &room_info, &config)
                    .await
                    .map_err(room_error)?;
                self.joined.insert(room_info.room_id);
                let reply = json!({ "roomInfo": entered.room_info, "lastSeq": entered.last_seq });
                return self.finish_entry(id, reply, entered, &caller).await;
            }
            Request::JoinRoom { room_id, since_seq } => {
                let entered = rooms
                    .join(&caller, &room_id, since_seq)
                    .await
                    .map_err(room_error)?;
                self.joined.insert(room_id);
                let reply = json!({ "roomInfo": entered.room_info, "lastSeq": entered.last_seq });
                return self.finish_entry(id, reply, entered, &caller).await;
            }
            Request::EnterRoom {
                room_info,
                config,
                since_seq,
            } => {
                let entered = rooms
                    .enter(&caller, &room_info, &config, since_seq)
                    .await
                    .map_err(room_error)?;
                self.joined.insert(room_info.room_id);
                let reply = json!({ "roomInfo": entered.room_info, "lastSeq": entered.last_seq });
                return self.finish_entry(id, reply, entered, &caller).await;
            }
            Request::LeaveRoom { room_id } => {
                rooms.leave(&caller, &room_id).await.map_err(room_error)?;
                self.joined.remove(&room_id);
                protocol::ok_reply(id, &json!({ "roomID": room_id }))
            }
            Request::LeaveAllRoom => {
                let mut left = Vec::new();
                for room_id in self.joined.clone() {
                    match rooms.leave(&caller, &room_id).await {
                        Ok(()) | Err(RoomError::NotInRoom(_)) => {
                            self.joined.remove(&room_id);
                            left.push(room_id);
                        }
                        Err(e) => return Err(e.to_body()),
                    }
                }
                protocol::ok_reply(id, &json!({ "roomIDs": left }))
            }
            Request::SendRoomMessage { .. } => {
                unreachable!("sends of a logged-in caller are pipelined by handle")
            }
            Request::QueryHistoryMessage {
                room_id,
                cursor,
                count,
            } => {
                let (messages, has_more) = rooms
                    .history(&caller, &room_id, cursor, count)
                    .await
                    .map_err(room_error)?;
                protocol::ok_reply(
                    id,
                    &json!({ "roomID": room_id, "messageList": messages, "hasMore": has_more }),
                )
            }
            Request::QueryRoomMemberList {
                room_id,
                next_flag,
                count,
            } => {
                rooms
                    .require_joined(&caller, &room_id)
                    .await
                    .map_err(room_error)?;
                let (members, next_flag) = rooms
                    .store()
                    .member_page(&room_id, next_flag.as_deref(), count)
                    .await
                    .map_err(|e| RoomError::Store(e).to_body())?;
                protocol::ok_reply(
                    id,
                    &json!({ "roomID": room_id, "memberList": members, "nextFlag": next_flag }),
                )
            }
            Request::QueryRoomOnlineMemberCount { room_id } => {
                rooms
                    .require_joined(&caller, &room_id)
                    .await
                    .map_err(room_error)?;
                let count = rooms
                    .store()
                    .member_count(&room_id)
                    .await
                    .map_err(|e| RoomError::Store(e).to_body())?;
                protocol::ok_reply(id, &json!({ "roomID": room_id, "count": count }))
            }
        };
        self.reply(reply).await;
        Ok(())
    }

    /// Tells the connection, room by room, that the server is going away
    /// (its memberships survive for the reconnect grace).
    fn announce_shutdown(&self) {
        for room_id in &self.joined {
            let event = json!({
                "event": "roomStateChanged",
                "roomID": room_id,
                "state": "disconnected",
                "reason": "serverShutdown",
            });
            self.outbox.push(Frame::from(event.to_string()));
        }
    }

    /// Queues a join's reply, then its catch-up; live events follow.
    async fn finish_entry(
        &self,
        id: u32,
        reply: serde_json::Value,
        entered: crate::rooms::Entered,
        caller: &Caller,
    ) -> Result<(), ErrorBody> {
        self.reply(protocol::ok_reply(id, &reply)).await;
        if let Err(e) = self.app.rooms.finish_entry(entered, caller).await {
            // The reply is out, so an error reply would be a second answer.
            // Close instead: the client reconnects and resumes with sinceSeq.
            tracing::warn!(conn = self.conn, error = %e, "catch-up failed; closing so the client resumes");
            self.closer.close(CloseReason::CATCH_UP_FAILED);
        }
        Ok(())
    }

    async fn login(
        &mut self,
        id: u32,
        user_info: crate::domain::UserInfo,
        token: Option<String>,
    ) -> Result<(), ErrorBody> {
        if let Some(caller) = &self.caller {
            if caller.user.user_id != user_info.user_id {
                return Err(ErrorBody::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "userInfo.userID: this connection is logged in as '{}'; open a new connection for another user",
                        caller.user.user_id
                    ),
                ));
            }
            let reply = protocol::ok_reply(id, &json!({ "userInfo": caller.user }));
            self.reply(reply).await;
            return Ok(());
        }
        if let Some(ip) = self.ip
            && let Err(limited) = self.app.rates.login(ip)
        {
            return Err(ErrorBody::rate_limited(
                "too many logins from this address; slow down",
                limited.retry_after,
            ));
        }
        match self.app.auth.login(user_info, token.as_deref()) {
            Ok(user) => {
                let Some(slot) = self.app.connections.log_in(&user.user_id) else {
                    let error = ErrorBody::rate_limited(
                        format!(
                            "user '{}' already has {} connections, the most allowed",
                            user.user_id, self.app.config.limits.max_connections_per_user
                        ),
                        std::time::Duration::from_secs(1),
                    );
                    self.reply(protocol::error_reply(Some(id), &error)).await;
                    self.closer.close(CloseReason::TOO_MANY_CONNECTIONS);
                    return Ok(());
                };
                self.user_slot = Some(slot);
                tracing::debug!(conn = self.conn, user = %user.user_id, "logged in");
                self.reply(protocol::ok_reply(id, &json!({ "userInfo": user })))
                    .await;
                self.caller = Some(Caller {
                    conn: self.conn,
                    user,
                    outbox: self.outbox.clone(),
                });
                Ok(())
            }
            Err(e) => {
                let error = ErrorBody::new(ErrorCode::Unauthorized, e.to_string());
                self.reply(protocol::error_reply(Some(id), &error)).await;
                self.closer.close(CloseReason::UNAUTHORIZED);
                Ok(())
            }
        }
    }

    /// The connection is gone: leave its rooms (at once, or after the
    /// reconnect grace). On server shutdown members are kept: the next start
    /// clears them, and a later reconnect grace will cover the restart.
    async fn leave_everything(&mut self) {
        let Some(caller) = self.caller.take() else {
            return;
        };
        let shutting_down = self.app.shutdown.is_cancelled();
        for room_id in std::mem::take(&mut self.joined) {
            self.app
                .rooms
                .disconnect(&caller, &room_id, shutting_down)
                .await;
        }
    }
}
