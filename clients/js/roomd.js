// roomd JavaScript client: the ZIM room API's shape over roomd's WebSocket
// protocol (docs/protocol.md), with automatic reconnection that resumes every
// room without a missed or repeated message.
//
// One ES module, no dependencies. Browsers use their WebSocket; Node 20 needs
// one injected (`new RoomdClient(url, { WebSocket })` with the `ws` package).
// Only the standard WebSocket surface is used: addEventListener, send, close,
// readyState.

/**
 * Every error code a request can reject with: roomd's own (docs/protocol.md)
 * and the client's (9000xx), which roomd never sends.
 */
export const ErrorCode = Object.freeze({
  BadFrame: 1001,
  UnknownOp: 1002,
  InvalidArgument: 1003,
  NotLoggedIn: 1004,
  Unauthorized: 1005,
  RateLimited: 1006,
  TooLarge: 1007,
  Unavailable: 1008,
  Internal: 1009,
  NotInRoom: 6000321,
  RoomNotFound: 6000322,
  RoomExists: 6000323,
  RoomLimit: 6000324,
  UserRoomLimit: 6000325,
  RoomFull: 6000327,
  /** The connection closed before the reply, and the request could not be retried safely (it may or may not have taken effect), or the client stopped (logout, gave up reconnecting, token refused). */
  ConnectionLost: 900001,
  /** Called while the client is not logged in (state `disconnected`). */
  NotConnected: 900002,
  /** No reply within `requestTimeoutMs` of sending the request. */
  RequestTimeout: 900003,
  /** `login()` while a login or reconnection is already under way. */
  InvalidState: 900004,
});

/** A failed request: roomd's error, or one of the client's own (9000xx). */
export class RoomdError extends Error {
  /**
   * @param {number} code one of {@link ErrorCode}
   * @param {string} reason roomd's reason string, e.g. `room_not_found`
   * @param {string} message
   * @param {number} [retryAfterMs] with `rate_limited`: when a retry would pass
   */
  constructor(code, reason, message, retryAfterMs) {
    super(message);
    this.name = 'RoomdError';
    this.code = code;
    this.reason = reason;
    if (retryAfterMs !== undefined) this.retryAfterMs = retryAfterMs;
  }
}

const CLIENT_REASONS = {
  [ErrorCode.ConnectionLost]: 'connection_lost',
  [ErrorCode.NotConnected]: 'not_connected',
  [ErrorCode.RequestTimeout]: 'request_timeout',
  [ErrorCode.InvalidState]: 'invalid_state',
};

function clientError(code, message) {
  return new RoomdError(code, CLIENT_REASONS[code], message);
}

function serverError(error) {
  return new RoomdError(error.code, error.reason, error.message, error.retryAfterMs);
}

/** ZIM's numeric message types and priorities, so ZIM code sending `{ type: 1 }` works. */
const ZIM_MESSAGE_TYPES = new Map([[1, 'text'], [2, 'command'], [20, 'barrage'], [200, 'custom']]);
const ZIM_PRIORITIES = new Map([[1, 'low'], [2, 'medium'], [3, 'high']]);

/** Ops that may be sent again on a new connection after a drop left them unanswered. */
const RETRIABLE = new Set([
  'joinRoom', // joining a room one is in is idempotent and silent
  'enterRoom',
  'sendRoomMessage', // always carries a clientMessageID: a resend returns the stored original
  'queryHistoryMessage',
  'queryRoomMemberList',
  'queryRoomOnlineMemberCount',
  'renewToken', // checking the same token again changes nothing
]);

/**
 * Times one request is put on the wire at most. A request that keeps being
 * followed by a drop may be what causes it (e.g. a frame above the server's
 * limit, closed with 1009), so it is rejected rather than resent forever.
 */
const MAX_SENDS = 3;

const EVENTS = new Set([
  'connectionStateChanged',
  'roomStateChanged',
  'roomMemberJoined',
  'roomMemberLeft',
  'roomMessageReceived',
  'tokenWillExpire',
]);

/** Close codes after which reconnecting cannot help (4001 "token expired" can, with a tokenProvider). */
const FATAL_CLOSE_CODES = { 4001: 'unauthorized', 4030: 'tooManyConnections' };

/** roomd's close reason when a session's token ran out without a renewToken. */
const TOKEN_EXPIRED_REASON = 'token expired';

/** The code the client closes with when it gives up on a connection itself. */
const CLIENT_CLOSE_CODE = 4000;

/**
 * An idempotency key for sendRoomMessage. crypto.randomUUID exists only in
 * secure contexts (https, localhost), and roomd's chat page may be served
 * over plain http, so fall back to getRandomValues, which exists everywhere.
 */
function newClientMessageID() {
  if (typeof globalThis.crypto.randomUUID === 'function') return globalThis.crypto.randomUUID();
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * What the client knows of one room it has joined.
 *
 * `lastSeq` is the highest seq such that every message up to it has reached
 * the application (as an event, as a sendRoomMessage result, or by predating
 * the join); it is the `sinceSeq` of the next rejoin, so nothing is missed.
 * `ahead` holds seqs above it that have already reached the application, so
 * a catch-up repeating them is filtered out and nothing is shown twice.
 */
class RoomTrack {
  constructor(roomID, lastSeq) {
    this.roomID = roomID;
    this.lastSeq = lastSeq;
    this.ahead = new Set();
    /** While retried sends of this room are unanswered: the message lists held back. */
    this.held = null;
    /** Those retried sends. */
    this.holders = null;
  }

  /**
   * Seqs up to `seq` are not the application's to see (a re-created room
   * starts a new life at `seq + 1`), so they count as seen.
   */
  skipTo(seq) {
    if (seq <= this.lastSeq) return;
    this.lastSeq = seq;
    for (const ahead of this.ahead) if (ahead <= seq) this.ahead.delete(ahead);
    while (this.ahead.delete(this.lastSeq + 1)) this.lastSeq += 1;
  }

  /** Records that the message `seq` reached the application; false if it already had. */
  accept(seq) {
    if (seq <= this.lastSeq || this.ahead.has(seq)) return false;
    if (seq === this.lastSeq + 1) {
      this.lastSeq = seq;
      while (this.ahead.delete(this.lastSeq + 1)) this.lastSeq += 1;
    } else {
      this.ahead.add(seq);
    }
    return true;
  }
}

const silentLogger = {};

/**
 * A connection to roomd for one user, shaped like ZIM's room API.
 *
 * Requests made while the client is (re)connecting wait and are sent once it
 * is logged in again; a dropped connection is re-established with
 * exponential backoff, logged in again and every room rejoined from its last
 * seen seq.
 */
export class RoomdClient {
  /**
   * @param {string} url roomd's WebSocket URL, e.g. `ws://127.0.0.1:8080/v1/ws`
   * @param {object} [options] see `RoomdClientOptions` in roomd.d.ts
   */
  constructor(url, options = {}) {
    this._url = url;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== 'function') {
      throw new TypeError('no WebSocket implementation: pass one as options.WebSocket (in Node 20, the `ws` package)');
    }
    const reconnect = options.reconnect ?? {};
    this._reconnect = {
      enabled: reconnect.enabled ?? true,
      initialDelayMs: reconnect.initialDelayMs ?? 500,
      maxDelayMs: reconnect.maxDelayMs ?? 10_000,
      maxAttempts: reconnect.maxAttempts ?? Infinity,
      jitter: reconnect.jitter ?? 0.5,
    };
    this._requestTimeoutMs = options.requestTimeoutMs ?? 15_000;
    this._heartbeatIntervalMs = options.heartbeatIntervalMs ?? 20_000;
    this._logger = options.logger ?? silentLogger;
    this._tokenProvider = options.tokenProvider ?? null;
    if (this._tokenProvider !== null && typeof this._tokenProvider !== 'function') {
      throw new TypeError('options.tokenProvider must be a function returning a token (or a promise of one)');
    }

    /** @type {Map<string, Function[]>} */
    this._handlers = new Map();
    /** @type {'disconnected'|'connecting'|'connected'|'reconnecting'} */
    this._state = 'disconnected';
    this._userInfo = null;
    /** The token of the next login; while logged in, the one roomd holds (after the last successful renewal). */
    this._token = undefined;
    /** The next connection must first get a token from the tokenProvider (the last one expired or was refused). */
    this._needFreshToken = false;
    /** The current connection logs in with a token the tokenProvider just gave: a refusal of it is final. */
    this._tokenFresh = false;
    /** The tokenProvider call under way, shared by everything that wants a token meanwhile. */
    this._fetchingToken = null;
    /** Counts login() calls, so a token fetched for an earlier session is not used by a later one. */
    this._session = 0;
    /** The current socket; frames and close events of any other are stale. */
    this._ws = null;
    /** Whether `_ws` has completed login, so requests can go straight out. */
    this._loggedIn = false;
    /** Requests on the wire, by id, in the order sent. */
    this._inflight = new Map();
    /** Requests waiting for a logged-in connection, in call order. */
    this._queue = [];
    /** @type {Map<string, RoomTrack>} rooms joined, to rejoin after a reconnect */
    this._rooms = new Map();
    this._lastId = 0;
    this._lastFrameAt = 0;
    /** Failed connection attempts since the last successful login. */
    this._attempt = 0;
    /** The promise callbacks of a login() that has not finished. */
    this._loginWaiter = null;
    /** The error of the last refused login, reported if the connection then ends. */
    this._loginError = null;
    this._timers = { retry: null, connect: null, login: null, heartbeat: null };
  }

  /** @returns {'disconnected'|'connecting'|'connected'|'reconnecting'} */
  get state() {
    return this._state;
  }

  /** The logged-in user as roomd knows them (a token's `name` claim wins), or null. */
  get userInfo() {
    return this._userInfo;
  }

  // ---- events -------------------------------------------------------------

  /** Calls `handler(client, data)` for each `event`. */
  on(event, handler) {
    if (!EVENTS.has(event)) throw new TypeError(`unknown event ${JSON.stringify(event)}`);
    const handlers = this._handlers.get(event) ?? [];
    handlers.push(handler);
    this._handlers.set(event, handlers);
  }

  /** Removes `handler` from `event`, or every handler of `event` when none is given. */
  off(event, handler) {
    if (handler === undefined) {
      this._handlers.delete(event);
      return;
    }
    const handlers = this._handlers.get(event);
    const index = handlers ? handlers.indexOf(handler) : -1;
    if (index >= 0) handlers.splice(index, 1);
  }

  _emit(event, data) {
    for (const handler of [...(this._handlers.get(event) ?? [])]) {
      try {
        handler(this, data);
      } catch (error) {
        // One failing handler must not break the client or the other handlers.
        this._log('error', `a ${event} handler threw`, error);
      }
    }
  }

  _setState(state, event, extendedData = {}) {
    if (state === this._state) return;
    this._state = state;
    this._log('info', `connection ${state} (${event})`);
    this._emit('connectionStateChanged', { state, event, extendedData });
  }

  _emitRoomState(roomID, state, event, extendedData = {}) {
    this._emit('roomStateChanged', { roomID, state, event, extendedData });
  }

  _log(level, message, details) {
    const log = this._logger[level];
    if (typeof log !== 'function') return;
    if (details === undefined) log.call(this._logger, `[roomd] ${message}`);
    else log.call(this._logger, `[roomd] ${message}`, details);
  }

  // ---- login and logout ---------------------------------------------------

  /**
   * Connects and logs in. Later drops are repaired automatically; a failure
   * of this first connection is not retried: login() rejects.
   * @returns {Promise<{userInfo: {userID: string, userName: string}}>}
   */
  login(userInfo, token) {
    if (this._state === 'connected') {
      // roomd accepts the same user again and refuses another one (1003).
      return this._call('login', { userInfo, token }, (reply) => ({ userInfo: reply.userInfo }));
    }
    if (this._state !== 'disconnected') {
      return Promise.reject(clientError(ErrorCode.InvalidState, `login() while ${this._state}; wait for it, or logout() first`));
    }
    this._userInfo = userInfo;
    this._token = token;
    this._needFreshToken = false;
    this._tokenFresh = false;
    this._fetchingToken = null;
    this._session += 1;
    this._attempt = 0;
    const done = new Promise((resolve, reject) => {
      this._loginWaiter = { resolve, reject };
    });
    this._setState('connecting', 'activeLogin');
    try {
      this._openSocket();
    } catch (error) {
      // The WebSocket constructor refuses a malformed URL.
      this._loginError = error;
      this._end('loginFailed', { message: error.message });
    }
    return done;
  }

  /**
   * Gives the session a new token before its current one expires. Logged
   * in, roomd checks it (`renewToken` op): it resolves once roomd accepted
   * it, and from then on reconnections log in with it too; a refused token
   * rejects (1005) and changes nothing, the session keeps its old token.
   * While (re)connecting, the token is used by the coming login and sent
   * again once logged in. While disconnected it is only kept.
   * @returns {Promise<{token: string}>}
   */
  renewToken(token) {
    if (this._state === 'disconnected') {
      this._token = token;
      return Promise.resolve({ token });
    }
    if (!this._loggedIn) this._token = token;
    return this._call('renewToken', { token }, () => {
      this._token = token;
      return { token };
    });
  }

  /**
   * Leaves every room (so the others see it at once rather than after the
   * server's reconnect grace) and closes the connection. Never reconnects.
   */
  async logout() {
    if (this._state === 'disconnected') return;
    if (this._loggedIn && this._rooms.size > 0) {
      try {
        await this.leaveAllRoom();
      } catch (error) {
        // Closing leaves the rooms anyway, after the grace.
        this._log('warn', 'leaving the rooms before logout failed', error);
      }
    }
    if (this._state !== 'disconnected') this._end('logout');
  }

  // ---- rooms --------------------------------------------------------------

  /** Creates a room and joins it. Rejects with 6000323 if it exists. */
  async createRoom(roomInfo, config) {
    // A re-created room continues its old seq stream, so the room is tracked
    // from the reply's lastSeq: the sinceSeq of a later rejoin.
    const created = await this._call('createRoom', { roomInfo, config }, (reply) =>
      typeof reply.lastSeq === 'number' ? this._track(reply) : null,
    );
    if (created) return created;
    // An older roomd replies without lastSeq: learn it from a join (silent
    // for a member) before tracking the room.
    return this._call('joinRoom', { roomID: roomInfo.roomID }, (reply) => this._track(reply));
  }

  /** Joins an existing room. Rejects with 6000322 if there is none. */
  joinRoom(roomID) {
    return this._call('joinRoom', { roomID }, (reply) => this._track(reply));
  }

  /** Joins a room, creating it first if needed (name and config apply only then). */
  enterRoom(roomInfo, config) {
    return this._call('enterRoom', { roomInfo, config }, (reply) => this._track(reply));
  }

  _track(reply) {
    const { roomInfo, lastSeq } = reply;
    // Joining a room this connection is in already changes nothing: every
    // message up to lastSeq has reached us as an event before this reply.
    if (!this._rooms.has(roomInfo.roomID)) {
      this._rooms.set(roomInfo.roomID, new RoomTrack(roomInfo.roomID, lastSeq));
    }
    // An older roomd sends no firstSeq: its members read a room from seq 1.
    return { roomInfo, firstSeq: reply.firstSeq ?? 1 };
  }

  leaveRoom(roomID) {
    return this._call('leaveRoom', { roomID }, (reply) => {
      this._rooms.delete(reply.roomID);
      return { roomID: reply.roomID };
    });
  }

  leaveAllRoom() {
    return this._call('leaveAllRoom', {}, (reply) => {
      this._rooms.clear();
      return { roomIDs: reply.roomIDs };
    });
  }

  /**
   * Sends a message; resolves once it is stored, with the stored message.
   * Every send carries a clientMessageID (config.clientMessageID, or a fresh
   * one), so a send interrupted by a drop is resent and stored once.
   */
  sendRoomMessage(message, roomID, config) {
    const priority = config?.priority;
    const fields = {
      roomID,
      message: {
        type: ZIM_MESSAGE_TYPES.get(message?.type) ?? message?.type,
        message: message?.message,
        extendedData: message?.extendedData,
      },
      config: { priority: ZIM_PRIORITIES.get(priority) ?? priority },
      clientMessageID: config?.clientMessageID ?? newClientMessageID(),
    };
    return this._call('sendRoomMessage', fields, (reply) => {
      this._rooms.get(reply.message.roomID)?.accept(reply.message.seq);
      return { message: reply.message };
    });
  }

  /** A page of history, ascending seq: the newest, or before/after a seq. */
  queryHistoryMessage(roomID, options) {
    const fields = { roomID, beforeSeq: options?.beforeSeq, afterSeq: options?.afterSeq, count: options?.count };
    return this._call('queryHistoryMessage', fields, (reply) => ({
      roomID,
      messageList: reply.messageList,
      hasMore: reply.hasMore,
    }));
  }

  /** A page of members by userID; pass the reply's nextFlag back for the next ('' when done). */
  queryRoomMemberList(roomID, config) {
    const fields = { roomID, nextFlag: config?.nextFlag, count: config?.count };
    return this._call('queryRoomMemberList', fields, (reply) => ({
      roomID,
      memberList: reply.memberList,
      nextFlag: reply.nextFlag,
    }));
  }

  queryRoomOnlineMemberCount(roomID) {
    return this._call('queryRoomOnlineMemberCount', { roomID }, (reply) => ({
      roomID: reply.roomID,
      count: reply.count,
    }));
  }

  /**
   * TEST ONLY: kills the connection abruptly, as a network failure would
   * (`terminate()` with the `ws` package, else a close with code 4000), so
   * that tests can exercise reconnection. Returns false when not connected.
   */
  _debugDropConnection() {
    const ws = this._ws;
    if (!ws) return false;
    if (typeof ws.terminate === 'function') ws.terminate();
    else ws.close(CLIENT_CLOSE_CODE, 'dropped for a test');
    return true;
  }

  // ---- requests -----------------------------------------------------------

  /**
   * Sends a request now, or once logged in when (re)connecting.
   * `onReply` turns a successful reply into the promise's value; it runs as
   * the reply is read, before any later frame, so the client's room state
   * always follows the wire's order.
   */
  _call(op, fields, onReply = (reply) => reply) {
    if (this._state === 'disconnected') {
      return Promise.reject(clientError(ErrorCode.NotConnected, `${op}: not logged in; call login() first`));
    }
    return new Promise((resolve, reject) => {
      const request = { op, fields, onReply, resolve, reject, internal: false, id: 0, sends: 0, timer: null, hold: null };
      if (this._loggedIn) this._transmit(request);
      else this._queue.push(request);
    });
  }

  /** Requests the client makes for itself (login, rejoin, heartbeat): never queued nor retried. */
  _internal(op, fields, onReply, onError) {
    this._transmit({ op, fields, onReply, resolve() {}, reject: onError, internal: true, id: 0, sends: 0, timer: null, hold: null });
  }

  _transmit(request) {
    this._lastId = this._lastId >= 0xffffffff ? 1 : this._lastId + 1;
    request.id = this._lastId;
    request.sends += 1;
    this._inflight.set(request.id, request);
    request.timer = setTimeout(() => this._timedOut(request), this._requestTimeoutMs);
    try {
      this._ws.send(JSON.stringify({ id: request.id, op: request.op, ...request.fields }));
    } catch (error) {
      // The socket is closing; its close event requeues or rejects the request.
      this._log('debug', `could not send ${request.op}`, error);
    }
  }

  _timedOut(request) {
    if (this._inflight.get(request.id) !== request) return;
    this._inflight.delete(request.id);
    if (request.internal) {
      // Without its login, rejoin or heartbeat answered the session is not usable.
      this._abandon(`no reply to ${request.op} within ${this._requestTimeoutMs} ms`);
      return;
    }
    this._finish(request, clientError(ErrorCode.RequestTimeout, `no reply to ${request.op} within ${this._requestTimeoutMs} ms`));
  }

  /** Settles a request that will not be answered on the wire. */
  _finish(request, error, value) {
    clearTimeout(request.timer);
    if (error) request.reject(error);
    else request.resolve(value);
    this._unhold(request);
  }

  // ---- the connection -----------------------------------------------------

  _openSocket() {
    const ws = new this._WebSocket(this._url);
    this._ws = ws;
    ws.addEventListener('open', () => {
      if (this._ws === ws) this._onOpen();
    });
    ws.addEventListener('message', (event) => {
      if (this._ws === ws) this._onFrame(event.data);
    });
    ws.addEventListener('close', (event) => {
      if (this._ws === ws) this._onSocketGone(event.code, event.reason);
    });
    // A close event always follows an error, and browsers hide its cause;
    // listening also keeps the `ws` package from throwing it.
    ws.addEventListener('error', () => {});
    this._timers.connect = setTimeout(() => this._abandon(`could not connect within ${this._requestTimeoutMs} ms`), this._requestTimeoutMs);
  }

  _onOpen() {
    clearTimeout(this._timers.connect);
    this._lastFrameAt = Date.now();
    this._sendLogin();
  }

  _sendLogin() {
    this._internal(
      'login',
      { userInfo: this._userInfo, token: this._token },
      (reply) => this._onLoggedIn(reply.userInfo),
      (error) => this._onLoginRefused(error),
    );
  }

  _onLoginRefused(error) {
    this._loginError = error;
    if (error.code === ErrorCode.RateLimited) {
      // Too many logins from this address: the connection stays open, try
      // again on it. (Or the user is at their connection limit: the server
      // closes with 4030 right after, which ends the client.)
      this._timers.login = setTimeout(() => this._sendLogin(), error.retryAfterMs ?? 1000);
      return;
    }
    if (error.code === ErrorCode.Unauthorized && this._tokenProvider && this._state === 'reconnecting' && !this._tokenFresh) {
      // A re-login refused the token it had (it expired during the outage,
      // say): ask the tokenProvider for a fresh one and reconnect with it.
      this._log('info', `the token was refused (${error.message}); getting a fresh one from the tokenProvider`);
      this._needFreshToken = true;
      this._abandon('the token was refused');
      return;
    }
    const event = error.code === ErrorCode.Unauthorized ? 'unauthorized' : 'loginFailed';
    this._end(event, { code: error.code, reason: error.reason, message: error.message });
  }

  _onLoggedIn(userInfo) {
    this._loggedIn = true;
    this._userInfo = userInfo;
    this._loginError = null;
    this._tokenFresh = false;
    // The backoff starts over once the session works: now, or when a room
    // is rejoined (a rejoin refused for a passing reason keeps it growing).
    if (this._rooms.size === 0) this._attempt = 0;
    this._startHeartbeat();
    // Rejoins go out before the waiting requests (roomd answers in order), so
    // those find their rooms joined.
    for (const room of this._rooms.values()) this._rejoin(room);
    for (const request of this._queue.splice(0)) this._transmit(request);
    const login = this._loginWaiter;
    this._loginWaiter = null;
    this._setState('connected', 'success');
    login?.resolve({ userInfo });
  }

  /**
   * Rejoins a room from its last seen seq: roomd then sends every message
   * after it as catch-up events. If sends to this room are being retried,
   * one of them may already be stored and so be in the catch-up; the
   * room's messages are held until those sends are answered, and the ones
   * that turn out to be this client's are reported only through their
   * sendRoomMessage result.
   */
  _rejoin(room) {
    const retried = this._queue.filter((r) => r.op === 'sendRoomMessage' && r.sends > 0 && r.fields.roomID === room.roomID);
    if (retried.length > 0) {
      room.held = [];
      room.holders = new Set(retried);
      for (const request of retried) request.hold = room;
    }
    const roomID = room.roomID;
    this._internal(
      'joinRoom',
      { roomID, sinceSeq: room.lastSeq },
      (reply) => {
        this._attempt = 0;
        if (reply.lastSeq < room.lastSeq) {
          // The room's stream went backwards: roomd's database was reset.
          // Follow the new stream rather than drop its messages as seen.
          room.lastSeq = reply.lastSeq;
          room.ahead.clear();
        }
        // The room was destroyed and re-created meanwhile: its messages
        // before firstSeq belong to the old life and are never sent, so
        // the catch-up (after this reply) starts at firstSeq.
        if (typeof reply.firstSeq === 'number') room.skipTo(reply.firstSeq - 1);
        this._emitRoomState(roomID, 'connected', 'success');
      },
      (error) => {
        if (error.code === ErrorCode.Unavailable || error.code === ErrorCode.RateLimited) {
          // Passing trouble: reconnect later and try again.
          this._abandon(`rejoining ${roomID} failed: ${error.message}`);
          return;
        }
        this._attempt = 0;
        this._rooms.delete(roomID);
        const event = error.code === ErrorCode.RoomNotFound ? 'roomNotExist' : 'enterFailed';
        this._emitRoomState(roomID, 'disconnected', event, { code: error.code, reason: error.reason, message: error.message });
      },
    );
  }

  /** A retried send was answered (or given up): release its room's held messages after the last. */
  _unhold(request) {
    const room = request.hold;
    if (!room) return;
    request.hold = null;
    if (!room.holders?.delete(request) || room.holders.size > 0) return;
    const held = room.held;
    room.held = null;
    room.holders = null;
    for (const messageList of held) this._deliverMessages(room.roomID, messageList);
  }

  _startHeartbeat() {
    if (!(this._heartbeatIntervalMs > 0)) return;
    // Browsers do not expose WebSocket pings, so a connection that died
    // silently (sleep, network switch) shows only as silence: after a quiet
    // interval ask with a ping, whose timeout abandons the connection.
    this._timers.heartbeat = setInterval(() => {
      if (this._loggedIn && Date.now() - this._lastFrameAt >= this._heartbeatIntervalMs) {
        this._internal('ping', {}, () => {}, () => {});
      }
    }, this._heartbeatIntervalMs);
  }

  _clearTimers() {
    clearTimeout(this._timers.retry);
    clearTimeout(this._timers.connect);
    clearTimeout(this._timers.login);
    clearInterval(this._timers.heartbeat);
  }

  /** Gives up on the current socket without waiting for its close handshake. */
  _abandon(reason) {
    const ws = this._ws;
    if (!ws) return;
    this._onSocketGone(CLIENT_CLOSE_CODE, reason);
    ws.close(CLIENT_CLOSE_CODE, 'client gave up on the connection');
  }

  _onFrame(data) {
    this._lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      this._log('warn', 'ignoring a frame that is not JSON', data);
      return;
    }
    if (frame === null || typeof frame !== 'object') {
      this._log('warn', 'ignoring a frame that is not a JSON object', data);
      return;
    }
    if (typeof frame.event === 'string') {
      this._onEvent(frame);
      return;
    }
    const request = this._inflight.get(frame.id);
    if (!request) {
      // A reply to a request that timed out, or an error without an id.
      this._log(frame.ok === false ? 'warn' : 'debug', 'reply to no pending request', frame);
      return;
    }
    this._inflight.delete(frame.id);
    clearTimeout(request.timer);
    if (!frame.ok) {
      request.reject(serverError(frame.error));
    } else {
      try {
        request.resolve(request.onReply(frame));
      } catch (error) {
        // A reply without the fields its op promises: a server out of contract.
        request.reject(error);
      }
    }
    this._unhold(request);
  }

  _onEvent(frame) {
    switch (frame.event) {
      case 'roomMessageReceived': {
        const room = this._rooms.get(frame.roomID);
        if (room?.held) room.held.push(frame.messageList);
        else this._deliverMessages(frame.roomID, frame.messageList);
        break;
      }
      case 'roomMemberJoined':
      case 'roomMemberLeft':
        this._emit(frame.event, { roomID: frame.roomID, memberList: frame.memberList });
        break;
      case 'roomStateChanged':
        // `event` names the frame's kind, so roomd carries ZIM's event value as `reason`.
        this._emitRoomState(frame.roomID, frame.state, frame.reason, frame.extendedData ?? {});
        break;
      case 'tokenWillExpire':
        this._onTokenWillExpire(frame.secondsLeft);
        break;
      default:
        this._log('debug', 'ignoring an unknown event', frame);
    }
  }

  /**
   * roomd closes the connection (4001 "token expired") once the token has
   * expired, plus its leeway, unless renewToken brings a new one. ZIM's
   * event (`{ second }`) goes to the application; with a tokenProvider the
   * client renews by itself too.
   */
  _onTokenWillExpire(secondsLeft) {
    const second = typeof secondsLeft === 'number' ? secondsLeft : 0;
    this._log('info', `the token expires in ${second} s`);
    this._emit('tokenWillExpire', { second });
    if (!this._tokenProvider) return;
    const session = this._session;
    this._fetchToken(second).then(
      (token) => {
        if (session !== this._session || this._state === 'disconnected') return;
        return this.renewToken(token).then(() => this._log('info', 'renewed the token from the tokenProvider'));
      },
    ).catch((error) => {
      if (session !== this._session || this._state === 'disconnected') return;
      // roomd closes at expiry with 4001 "token expired"; the reconnection
      // then asks the tokenProvider again.
      this._log('warn', 'renewing the token from the tokenProvider failed; roomd will close the connection when the token expires', error);
    });
  }

  /**
   * A token from the tokenProvider, within requestTimeoutMs. Calls made
   * while one is under way share it.
   */
  _fetchToken(secondsLeft) {
    if (this._fetchingToken) return this._fetchingToken;
    const userID = this._userInfo?.userID;
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the tokenProvider gave no token within ${this._requestTimeoutMs} ms`)), this._requestTimeoutMs);
    });
    const fetching = Promise.race([
      Promise.resolve().then(() => this._tokenProvider({ userID, secondsLeft })),
      timeout,
    ]).then((token) => {
      if (typeof token !== 'string' || token === '') throw new TypeError(`the tokenProvider returned ${token === '' ? 'an empty string' : typeof token}, not a token`);
      return token;
    }).finally(() => {
      clearTimeout(timer);
      if (this._fetchingToken === fetching) this._fetchingToken = null;
    });
    this._fetchingToken = fetching;
    return fetching;
  }

  /** Reports messages the application has not seen yet (a catch-up may repeat some). */
  _deliverMessages(roomID, messageList) {
    const room = this._rooms.get(roomID);
    const fresh = room ? messageList.filter((message) => room.accept(message.seq)) : messageList;
    if (fresh.length > 0) this._emit('roomMessageReceived', { roomID, messageList: fresh });
  }

  /**
   * The socket closed (or was abandoned): retry what can be retried on the
   * next connection, settle the rest, and reconnect unless that cannot help.
   */
  _onSocketGone(code, reason) {
    const wasLoggedIn = this._loggedIn;
    this._ws = null;
    this._loggedIn = false;
    this._clearTimers();
    const details = { closeCode: code, closeReason: reason };
    let fatal = FATAL_CLOSE_CODES[code];
    if (code === 4001 && reason === TOKEN_EXPIRED_REASON) {
      // The session outlived its token. With a tokenProvider: reconnect
      // with a fresh token (memberships last the server's reconnect grace).
      if (this._tokenProvider && this._state === 'connected' && this._reconnect.enabled) {
        fatal = undefined;
        this._needFreshToken = true;
      } else {
        fatal = 'tokenExpired';
      }
    }
    if (fatal || this._state === 'connecting' || !this._reconnect.enabled) {
      this._end(fatal ?? 'loginInterrupted', details);
      return;
    }
    const unanswered = [...this._inflight.values()];
    this._inflight.clear();
    for (const room of this._rooms.values()) {
      // Held catch-up is dropped unreported; the next rejoin brings it again.
      room.held = null;
      room.holders = null;
    }
    const retry = [];
    for (const request of unanswered) {
      clearTimeout(request.timer);
      request.hold = null;
      if (request.internal) continue; // made again for the next connection
      if (request.op === 'leaveRoom' || request.op === 'leaveAllRoom') this._leaveLocally(request);
      else if (RETRIABLE.has(request.op) && request.sends < MAX_SENDS) retry.push(request);
      else this._finish(request, clientError(ErrorCode.ConnectionLost, `the connection closed before ${request.op} was answered; it may or may not have taken effect`));
    }
    this._queue.unshift(...retry);
    const giveUp = this._attempt >= this._reconnect.maxAttempts;
    if (!giveUp) {
      // Scheduled before the events below, so a handler calling logout() cancels it.
      const { initialDelayMs, maxDelayMs, jitter } = this._reconnect;
      const delay = Math.min(maxDelayMs, initialDelayMs * 2 ** this._attempt) * (1 - jitter * Math.random());
      this._timers.retry = setTimeout(() => {
        this._attempt += 1;
        this._reconnectNow();
      }, delay);
    }
    if (wasLoggedIn) {
      const event = code === 1001 ? 'serverShutdown' : this._needFreshToken ? 'tokenExpired' : 'loginInterrupted';
      this._setState('reconnecting', event, details);
      for (const roomID of this._rooms.keys()) this._emitRoomState(roomID, 'connecting', 'networkInterrupted', details);
    }
    if (giveUp && this._state !== 'disconnected') this._end('reconnectFailed', { ...details, attempts: this._attempt });
  }

  /** One reconnection attempt: a fresh token first if the last one is spent, then the socket. */
  _reconnectNow() {
    if (!this._needFreshToken) {
      this._openSocket();
      return;
    }
    const session = this._session;
    this._fetchToken(0).then(
      (token) => {
        if (session !== this._session || this._state !== 'reconnecting' || this._ws) return;
        this._token = token;
        this._needFreshToken = false;
        this._tokenFresh = true;
        this._openSocket();
      },
      (error) => {
        if (session !== this._session || this._state !== 'reconnecting' || this._ws) return;
        // Like a failed connection attempt: try again after the backoff.
        this._log('warn', 'the tokenProvider failed; trying again', error);
        this._onSocketGone(CLIENT_CLOSE_CODE, `the tokenProvider failed: ${error?.message ?? error}`);
      },
    );
  }

  /**
   * A leave cut off by a drop counts as done: the client will not rejoin the
   * room, so the server removes the user once its reconnect grace ends.
   */
  _leaveLocally(request) {
    if (request.op === 'leaveRoom') {
      this._rooms.delete(request.fields.roomID);
      this._finish(request, null, { roomID: request.fields.roomID });
    } else {
      const roomIDs = [...this._rooms.keys()];
      this._rooms.clear();
      this._finish(request, null, { roomIDs });
    }
  }

  /** Stops for good: closes the socket, settles every request, reports the rooms and the connection as disconnected. */
  _end(event, extendedData = {}) {
    const ws = this._ws;
    this._ws = null;
    this._loggedIn = false;
    this._clearTimers();
    if (ws) ws.close(1000, event);
    const pending = [...this._inflight.values(), ...this._queue];
    this._inflight.clear();
    this._queue = [];
    const error = clientError(ErrorCode.ConnectionLost, `the client disconnected (${event})`);
    for (const request of pending) {
      if (request.internal) clearTimeout(request.timer);
      else if (request.op === 'leaveRoom' || request.op === 'leaveAllRoom') this._leaveLocally(request);
      else this._finish(request, error);
    }
    const roomIDs = [...this._rooms.keys()];
    this._rooms.clear();
    if (event !== 'logout') {
      for (const roomID of roomIDs) this._emitRoomState(roomID, 'disconnected', event, extendedData);
    }
    const login = this._loginWaiter;
    this._loginWaiter = null;
    const loginError = this._loginError ?? error;
    this._loginError = null;
    this._setState('disconnected', event, extendedData);
    login?.reject(loginError);
  }
}

/** ZIM-style factory: `create(url, options)` is `new RoomdClient(url, options)`. */
export function create(url, options) {
  return new RoomdClient(url, options);
}

export default RoomdClient;
