//! What each request does on a connection: login, the pipelined sends, and
//! every other op, each calling its rule in `rooms/` and queueing a typed
//! reply from `protocol::ops`.

use std::sync::Arc;
use std::time::Duration;

use super::session::{InFlight, MAX_SENDS_IN_FLIGHT, SendReply, Session};
use super::token::TokenLife;
use crate::metrics::Refusal;
use crate::outbox::{CloseReason, Frame};
use crate::protocol::ops::{self, Login, RoomQuery, RoomRequest, SendMessage};
use crate::protocol::{self, ErrorBody, ErrorCode, Event, Request, RoomState, RoomStateReason};
use crate::rooms::{Caller, Entered, RoomError};
use crate::store::{Appended, StoreError};

/// A request's result: its reply is queued already, or this error is.
type Handled = Result<(), ErrorBody>;

impl Session {
    /// Handles one text frame: decoded, rate-checked, then by kind.
    pub(super) async fn handle(&mut self, text: &str, in_flight: &mut InFlight) {
        let decoded = protocol::decode(text);
        if let Err(limited) = self.rates.request() {
            let id = match &decoded {
                Ok((id, _)) => Some(*id),
                Err(rejected) => rejected.id,
            };
            self.settle(in_flight).await;
            return self.refuse(id, limited).await;
        }
        let (id, request) = match decoded {
            Ok(decoded) => decoded,
            Err(rejected) => {
                self.settle(in_flight).await;
                let reply = protocol::error_reply(rejected.id, &rejected.error);
                return self.reply(reply).await;
            }
        };
        // Anything but a send is answered after the sends before it.
        let result = match (request, self.caller.clone()) {
            (Request::Send(send), Some(caller)) => {
                return self.pipeline(id, &caller, send, in_flight).await;
            }
            (Request::Login(login), _) => {
                self.settle(in_flight).await;
                self.login(id, login).await
            }
            (Request::Room(request), Some(caller)) => {
                self.settle(in_flight).await;
                self.dispatch(id, &caller, request).await
            }
            (Request::Send(_) | Request::Room(_), None) => {
                self.settle(in_flight).await;
                Err(ErrorBody::new(
                    ErrorCode::NotLoggedIn,
                    "log in first: the first request on a connection must be login",
                ))
            }
        };
        if let Err(error) = result {
            tracing::debug!(code = error.code.code(), message = %error.message, "request failed");
            if error.code == ErrorCode::RateLimited {
                self.note_refusal();
            }
            self.reply(protocol::error_reply(Some(id), &error)).await;
        }
    }

    /// Queues a send behind the ones in flight (waiting for the oldest when
    /// [`MAX_SENDS_IN_FLIGHT`] are).
    async fn pipeline(
        &self,
        id: u32,
        caller: &Caller,
        send: SendMessage,
        in_flight: &mut InFlight,
    ) {
        if in_flight.len() >= MAX_SENDS_IN_FLIGHT
            && let Some(reply) = futures_util::StreamExt::next(in_flight).await
        {
            self.reply(reply).await;
        }
        let reply = self.send(id, caller, send).await;
        in_flight.push_back(reply);
    }

    /// Queues a send for its commit and returns its reply-to-be: the stored
    /// message once committed, or the error. Refusals are ready at once.
    async fn send(&self, id: u32, caller: &Caller, send: SendMessage) -> SendReply {
        let failed = |error: ErrorBody| -> SendReply {
            Box::pin(std::future::ready(protocol::error_reply(Some(id), &error)))
        };
        if !self.joined.contains(&send.room_id) {
            return failed(RoomError::NotInRoom(send.room_id).to_body());
        }
        match self.ctx.rooms.send(caller, send).await {
            Ok(outcome) => Box::pin(async move {
                match outcome.await.unwrap_or_else(|_| Err(StoreError::closed())) {
                    Ok(Appended::Stored(stored) | Appended::Duplicate(stored)) => {
                        protocol::ok_reply(id, &ops::Sent { message: &stored })
                    }
                    Err(e) => protocol::error_reply(Some(id), &RoomError::Store(e).to_body()),
                }
            }),
            Err(e) => {
                if matches!(e, RoomError::RateLimited(_)) {
                    self.ctx.metrics.refused(Refusal::Messages);
                    self.note_refusal();
                }
                failed(e.to_body())
            }
        }
    }

    /// Handles one request of a logged-in connection and queues its reply.
    async fn dispatch(&mut self, id: u32, caller: &Caller, request: RoomRequest) -> Handled {
        let rooms = Arc::clone(&self.ctx.rooms);
        let reply = match request {
            RoomRequest::Ping => protocol::ok_reply(id, &ops::Pong {}),
            RoomRequest::Enter(entry) => {
                let entered = rooms.enter(caller, &entry).await.map_err(wire)?;
                self.joined.insert(entry.room_id);
                return self.finish_entry(id, entered, caller).await;
            }
            RoomRequest::Leave { room_id } => {
                rooms.leave(caller, &room_id).await.map_err(wire)?;
                self.joined.remove(&room_id);
                protocol::ok_reply(id, &ops::Left { room_id: &room_id })
            }
            RoomRequest::LeaveAll => {
                let left = self.leave_all(caller).await?;
                protocol::ok_reply(id, &ops::LeftAll { room_ids: &left })
            }
            RoomRequest::Query(query) => self.query(id, caller, query).await.map_err(wire)?,
            RoomRequest::RenewToken { token } => return self.renew_token(id, caller, &token).await,
        };
        self.reply(reply).await;
        Ok(())
    }

    /// A read's reply.
    async fn query(&self, id: u32, caller: &Caller, query: RoomQuery) -> Result<String, RoomError> {
        let rooms = &self.ctx.rooms;
        Ok(match query {
            RoomQuery::History {
                room_id,
                cursor,
                count,
            } => {
                let (messages, has_more) = rooms.history(caller, &room_id, cursor, count).await?;
                let page = ops::HistoryPage {
                    room_id: &room_id,
                    message_list: &messages,
                    has_more,
                };
                protocol::ok_reply(id, &page)
            }
            RoomQuery::MemberList {
                room_id,
                next_flag,
                count,
            } => {
                let (members, next_flag) = rooms
                    .member_page(caller, &room_id, next_flag.as_deref(), count)
                    .await?;
                let page = ops::MemberPage {
                    room_id: &room_id,
                    member_list: &members,
                    next_flag: &next_flag,
                };
                protocol::ok_reply(id, &page)
            }
            RoomQuery::MemberCount { room_id } => {
                let count = rooms.member_count(caller, &room_id).await?;
                protocol::ok_reply(
                    id,
                    &ops::MemberCount {
                        room_id: &room_id,
                        count,
                    },
                )
            }
        })
    }

    /// `leaveAllRoom`: every room this connection joined, in room order.
    async fn leave_all(
        &mut self,
        caller: &Caller,
    ) -> Result<Vec<crate::domain::RoomId>, ErrorBody> {
        let mut left = Vec::new();
        for room_id in self.joined.clone() {
            match self.ctx.rooms.leave(caller, &room_id).await {
                Ok(()) | Err(RoomError::NotInRoom(_)) => {
                    self.joined.remove(&room_id);
                    left.push(room_id);
                }
                Err(e) => return Err(e.to_body()),
            }
        }
        Ok(left)
    }

    /// Queues an entry's reply, then its catch-up; live events follow.
    async fn finish_entry(&self, id: u32, entered: Entered, caller: &Caller) -> Handled {
        let reply = ops::Entered {
            room_info: &entered.room_info,
            last_seq: entered.last_seq,
            first_seq: entered.first_seq,
        };
        self.reply(protocol::ok_reply(id, &reply)).await;
        if let Err(e) = self.ctx.rooms.finish_entry(entered, caller).await {
            // The reply is out, so an error reply would be a second answer.
            // Close instead: the client reconnects and resumes with sinceSeq.
            tracing::warn!(error = %e, "catch-up failed; closing so the client resumes");
            self.closer.close(CloseReason::CATCH_UP_FAILED);
        }
        Ok(())
    }

    /// Tells the connection, room by room, that the server ends its
    /// presence there (shutting down, or fenced), just before the Close.
    pub(super) fn announce(&self, reason: RoomStateReason) {
        for room_id in &self.joined {
            let event = Event::StateChanged {
                room_id,
                state: RoomState::Disconnected,
                reason,
            };
            self.outbox.push(Frame::from(event.to_json()));
        }
    }

    /// `login`: once per connection (again as the same user is a no-op).
    async fn login(&mut self, id: u32, login: Login) -> Handled {
        if let Some(caller) = &self.caller {
            return self.login_again(id, caller.clone(), &login).await;
        }
        if let Some(ip) = self.ip
            && let Err(limited) = self.ctx.rates.login(ip)
        {
            self.ctx.metrics.refused(Refusal::Logins);
            return Err(ErrorBody::rate_limited(
                "too many logins from this address; slow down",
                limited.retry_after,
            ));
        }
        let logged_in = match self.ctx.auth.login(login.user_info, login.token.as_deref()) {
            Ok(logged_in) => logged_in,
            Err(e) => {
                let error = ErrorBody::new(ErrorCode::Unauthorized, e.to_string());
                self.reply(protocol::error_reply(Some(id), &error)).await;
                self.closer.close(CloseReason::UNAUTHORIZED);
                return Ok(());
            }
        };
        let user = logged_in.user;
        let Some(slot) = self.ctx.connections.claim(&user.user_id) else {
            self.ctx.metrics.refused(Refusal::UserConnections);
            let error = ErrorBody::rate_limited(
                format!(
                    "user '{}' already has {} connections, the most allowed",
                    user.user_id, self.ctx.settings.max_connections_per_user
                ),
                Duration::from_secs(1),
            );
            self.reply(protocol::error_reply(Some(id), &error)).await;
            self.closer.close(CloseReason::TOO_MANY_CONNECTIONS);
            return Ok(());
        };
        self.user_slot = Some(slot);
        self.unauthenticated = None;
        let leeway = self.ctx.settings.token_leeway;
        self.token = logged_in.expires_at.map(|exp| TokenLife::new(exp, leeway));
        tracing::Span::current().record("user", user.user_id.as_str());
        tracing::debug!("logged in");
        self.reply(protocol::ok_reply(id, &ops::LoggedIn { user_info: &user }))
            .await;
        self.caller = Some(Arc::new(Caller {
            conn: self.conn,
            user,
            outbox: self.outbox.clone(),
        }));
        Ok(())
    }

    /// `renewToken`: the session now lasts as long as the new token; a
    /// refused one leaves the old token in force.
    async fn renew_token(&mut self, id: u32, caller: &Caller, token: &str) -> Handled {
        let expires_at = self
            .ctx
            .auth
            .renew(&caller.user.user_id, token)
            .map_err(|e| ErrorBody::new(ErrorCode::Unauthorized, e.to_string()))?;
        let leeway = self.ctx.settings.token_leeway;
        self.token = expires_at.map(|exp| TokenLife::new(exp, leeway));
        let reply = ops::TokenRenewed {
            expires_at: self.token.as_ref().map(TokenLife::expires_at_ms),
        };
        self.reply(protocol::ok_reply(id, &reply)).await;
        Ok(())
    }

    /// A second `login`: fine as the same user, refused as another.
    async fn login_again(&self, id: u32, caller: Arc<Caller>, login: &Login) -> Handled {
        if caller.user.user_id != login.user_info.user_id {
            return Err(ErrorBody::invalid(format!(
                "userInfo.userID: this connection is logged in as '{}'; open a new connection for another user",
                caller.user.user_id
            )));
        }
        let reply = ops::LoggedIn {
            user_info: &caller.user,
        };
        self.reply(protocol::ok_reply(id, &reply)).await;
        Ok(())
    }
}

/// A room error as the client sees it.
fn wire(e: RoomError) -> ErrorBody {
    e.to_body()
}
