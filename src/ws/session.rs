//! One WebSocket connection from open to close: the connection and login
//! limits, the read loop with its timeouts, and leaving the rooms at the end.
//!
//! A session is two tasks. The reader (this module, with [`super::dispatch`])
//! decodes and handles requests; sends are pipelined (up to
//! [`MAX_SENDS_IN_FLIGHT`] wait for their commit while the reader goes on),
//! everything else waits for the sends before it, so replies to one
//! connection keep the order of its requests. The writer
//! ([`super::writer`]) drains the bounded outbox onto the socket.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::Instrument;

use super::token::{TokenLife, TokenStep};
use super::writer::{close_frame, write_loop};
use super::{SessionContext, WebSocket};
use crate::domain::RoomId;
use crate::domain::UserId;
use crate::limits::{AddressPlaces, ConnectionRates, KeyedPlace, Limited, Place};
use crate::metrics::Refusal;
use crate::outbox::{CloseReason, Closer, ConnId, Frame, Outbox, next_conn_id};
use crate::protocol::{self, ErrorBody, ErrorCode, Event, RoomStateReason};
use crate::rooms::Caller;

/// Sends of one connection waiting for their commit at once. More in flight
/// lets one busy sender share transactions with itself; the bound keeps a
/// connection from queueing without limit.
pub(super) const MAX_SENDS_IN_FLIGHT: usize = 64;

/// The reply to a send, ready once the send is committed (or refused).
pub(super) type SendReply = Pin<Box<dyn Future<Output = String> + Send>>;

/// Sends in flight on one connection, their replies in request order.
pub(super) type InFlight = FuturesOrdered<SendReply>;

/// How long a closing connection's writer may take to flush and close.
const WRITER_DRAIN: Duration = Duration::from_secs(2);

/// One connection's reader state.
pub(super) struct Session {
    pub(super) ctx: Arc<SessionContext>,
    /// The client's address, for per-address login limits.
    pub(super) ip: Option<IpAddr>,
    pub(super) conn: ConnId,
    pub(super) rates: ConnectionRates,
    pub(super) outbox: Outbox,
    pub(super) closer: Closer,
    /// Set by a successful `login`; every other op needs it.
    pub(super) caller: Option<Arc<Caller>>,
    /// Rooms this connection has joined, to leave them when it goes away.
    pub(super) joined: BTreeSet<RoomId>,
    /// This connection's place in the process-wide connection count.
    _slot: Place<UserId>,
    /// Its places among unauthenticated connections, until it logs in, so
    /// one address cannot fill the server with sessions that never do.
    pub(super) unauthenticated: Option<AddressPlaces>,
    /// Its place in the user's connection count, once logged in.
    pub(super) user_slot: Option<KeyedPlace<UserId>>,
    /// The session's token, once logged in with one.
    pub(super) token: Option<TokenLife>,
}

/// Runs a connection until it closes, inside a span naming the connection
/// (and, once logged in, its user) for every log line it causes.
pub(super) async fn serve(
    socket: WebSocket,
    ctx: Arc<SessionContext>,
    ip: Option<IpAddr>,
    unauthenticated: Option<AddressPlaces>,
) {
    let conn = next_conn_id();
    let span = tracing::info_span!("connection", conn, user = tracing::field::Empty);
    run(socket, ctx, ip, unauthenticated, conn)
        .instrument(span)
        .await
}

async fn run(
    socket: WebSocket,
    ctx: Arc<SessionContext>,
    ip: Option<IpAddr>,
    unauthenticated: Option<AddressPlaces>,
    conn: ConnId,
) {
    let Some(slot) = ctx.connections.open() else {
        ctx.metrics.refused(Refusal::Connections);
        let mut socket = socket;
        let _ = socket.send(close_frame(CloseReason::SERVER_FULL)).await;
        return;
    };
    let (sink, mut stream) = socket.split();
    let settings = &ctx.settings;
    let (outbox, queue, closer) = Outbox::new(settings.outbox_frames, settings.outbox_bytes);
    let writer = tokio::spawn(
        write_loop(sink, queue, closer.clone(), settings.ping_interval).in_current_span(),
    );
    let mut session = Session {
        rates: ctx.rates.for_connection(),
        ctx: ctx.clone(),
        ip,
        conn,
        outbox,
        closer: closer.clone(),
        caller: None,
        joined: BTreeSet::new(),
        _slot: slot,
        unauthenticated,
        user_slot: None,
        token: None,
    };
    tracing::debug!("connection opened");
    session.read_loop(&mut stream).await;
    // Boxed, like request handling: a connection's task is sized for its
    // largest await, and idle connections should not carry the space of
    // the database work they do only when they end.
    Box::pin(session.leave_everything()).await;
    // The connection no longer counts against its user's or the server's limits.
    drop(session);
    if let Some(reason) = closer.reason() {
        ctx.metrics.closed(reason);
    }
    close(stream, closer, writer).await;
}

/// Ends the connection after its session: lets the writer send the Close
/// frame, and drops a writer stuck on a client that stopped reading.
async fn close(
    mut stream: SplitStream<WebSocket>,
    closer: Closer,
    writer: tokio::task::JoinHandle<()>,
) {
    if closer.reason().is_some() {
        drain_until_close(&mut stream).await;
    }
    closer.abort();
    let writer_abort = writer.abort_handle();
    if tokio::time::timeout(WRITER_DRAIN, writer).await.is_err() {
        writer_abort.abort();
    }
    tracing::debug!(reason = ?closer.reason(), "connection closed");
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

/// Why the read loop ended.
enum Ended {
    /// The client went, or the connection was closed for its conduct.
    Connection,
    /// The server is shutting down.
    Shutdown,
    /// This node's lease was taken away.
    Fenced,
}

impl Session {
    async fn read_loop(&mut self, stream: &mut SplitStream<WebSocket>) {
        let mut in_flight = InFlight::new();
        let ended = self.read_frames(stream, &mut in_flight).await;
        // Sends already queued are stored whatever happens to the
        // connection; their replies go out if it is still open, and on
        // shutdown before the notice and the Close frame.
        self.settle(&mut in_flight).await;
        match ended {
            Ended::Shutdown => {
                self.announce(RoomStateReason::ServerShutdown);
                self.closer.close(CloseReason::GOING_AWAY);
            }
            Ended::Fenced => {
                self.announce(RoomStateReason::NetworkDisconnected);
                self.closer.close(CloseReason::FENCED);
            }
            Ended::Connection => {}
        }
    }

    /// Reads and handles frames until the connection ends.
    async fn read_frames(
        &mut self,
        stream: &mut SplitStream<WebSocket>,
        in_flight: &mut InFlight,
    ) -> Ended {
        let settings = self.ctx.settings.clone();
        let login_deadline = tokio::time::sleep(settings.login_timeout);
        tokio::pin!(login_deadline);
        let idle = tokio::time::sleep(settings.idle_timeout);
        tokio::pin!(idle);
        let token_timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(token_timer);
        let mut fenced = self.ctx.fenced.clone();
        fenced.mark_unchanged();
        let mut token_step = None;
        loop {
            if let (None, Some(token)) = (token_step, &self.token) {
                let (at, step) = token.next();
                token_timer.as_mut().reset(at);
                token_step = Some(step);
            }
            let frame = tokio::select! {
                () = &mut token_timer, if token_step.is_some() => {
                    match token_step.take() {
                        Some(TokenStep::Warn(seconds_left)) => self.warn_token(seconds_left),
                        _ => return self.closing(CloseReason::TOKEN_EXPIRED),
                    }
                    continue;
                }
                () = &mut idle => return self.closing(CloseReason::IDLE),
                () = self.closer.closed() => return Ended::Connection,
                () = self.ctx.shutdown.cancelled() => return Ended::Shutdown,
                Ok(()) = fenced.changed() => return Ended::Fenced,
                () = &mut login_deadline, if self.caller.is_none() => {
                    return self.closing(CloseReason::LOGIN_TIMEOUT);
                }
                Some(reply) = in_flight.next(), if !in_flight.is_empty() => {
                    self.reply(reply).await;
                    continue;
                }
                frame = stream.next() => frame,
            };
            let message = match frame {
                None => return Ended::Connection,
                Some(Err(e)) => return self.read_failed(&e),
                Some(Ok(message)) => message,
            };
            idle.as_mut().reset(Instant::now() + settings.idle_timeout);
            match message {
                // Boxed: handling a request (database round trips included)
                // takes a large future, and an idle connection should not
                // carry its space.
                Message::Text(text) => {
                    let token = self.token.as_ref().map(TokenLife::expires_at_ms);
                    Box::pin(self.handle(text.as_str(), in_flight)).await;
                    if self.token.as_ref().map(TokenLife::expires_at_ms) != token {
                        // Logged in or renewed: the timer starts over.
                        token_step = None;
                    }
                }
                Message::Binary(_) => self.refuse_binary(in_flight).await,
                Message::Close(_) => return Ended::Connection,
                // Pings are answered by tungstenite itself; pongs need nothing.
                _ => {}
            }
        }
    }

    /// `tokenWillExpire`: the client should renew within `seconds_left`.
    fn warn_token(&mut self, seconds_left: u64) {
        if let Some(token) = &mut self.token {
            token.warned();
        }
        let event = Event::TokenWillExpire { seconds_left };
        self.outbox.push(Frame::from(event.to_json()));
    }

    fn closing(&self, reason: CloseReason) -> Ended {
        self.closer.close(reason);
        Ended::Connection
    }

    /// A frame that could not be read: the close code RFC 6455 names for
    /// it, or no Close frame at all when the connection itself failed.
    fn read_failed(&self, e: &tungstenite::Error) -> Ended {
        use tungstenite::error::ProtocolError;
        match e {
            tungstenite::Error::Capacity(_) => self.closer.close(CloseReason::FRAME_TOO_LARGE),
            tungstenite::Error::Utf8(_) => self.closer.close(CloseReason::INVALID_UTF8),
            // A peer that just went away (EOF without a Close) is a drop,
            // not a violation: nobody is left to tell.
            tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                self.closer.abort();
            }
            tungstenite::Error::Protocol(_) => self.closer.close(CloseReason::PROTOCOL_ERROR),
            _ => {
                tracing::debug!(error = %e, "read failed");
                self.closer.abort();
            }
        }
        Ended::Connection
    }

    async fn refuse_binary(&self, in_flight: &mut InFlight) {
        self.settle(in_flight).await;
        if let Err(limited) = self.rates.request() {
            return self.refuse(None, limited).await;
        }
        let error = ErrorBody::new(
            ErrorCode::BadFrame,
            "binary frames are not accepted; send each request as a JSON text frame",
        );
        self.reply(protocol::error_reply(None, &error)).await;
    }

    /// Queues the replies of every send in flight, in order.
    pub(super) async fn settle(&self, in_flight: &mut InFlight) {
        while let Some(reply) = in_flight.next().await {
            self.reply(reply).await;
        }
    }

    pub(super) async fn reply(&self, frame: String) {
        self.outbox.send(Frame::from(frame)).await;
    }

    /// Replies `1006` to a request over the connection's rate (and closes
    /// a connection that keeps ignoring that).
    pub(super) async fn refuse(&self, id: Option<u32>, limited: Limited) {
        let error = ErrorBody::rate_limited(
            "too many requests on this connection; slow down",
            limited.retry_after,
        );
        self.reply(protocol::error_reply(id, &error)).await;
        self.ctx.metrics.refused(Refusal::Requests);
        self.note_refusal();
    }

    pub(super) fn note_refusal(&self) {
        if !self.rates.tolerate_refusal() {
            self.closer.close(CloseReason::ABUSE);
        }
    }

    /// The connection is gone: leave its rooms (at once, or after the
    /// reconnect grace). On server shutdown members are kept: the next start
    /// clears them, and a later reconnect grace will cover the restart.
    async fn leave_everything(&mut self) {
        let Some(caller) = self.caller.take() else {
            return;
        };
        let shutting_down = self.ctx.shutdown.is_cancelled();
        for room_id in std::mem::take(&mut self.joined) {
            let rooms = &self.ctx.rooms;
            rooms.disconnect(&caller, &room_id, shutting_down).await;
        }
    }
}
