// Types for roomd.js, the roomd JavaScript client. See README.md.

/** Error codes: roomd's (docs/protocol.md) and the client's own (9000xx). */
export declare const ErrorCode: {
  readonly BadFrame: 1001;
  readonly UnknownOp: 1002;
  readonly InvalidArgument: 1003;
  readonly NotLoggedIn: 1004;
  readonly Unauthorized: 1005;
  readonly RateLimited: 1006;
  readonly TooLarge: 1007;
  readonly Unavailable: 1008;
  readonly Internal: 1009;
  readonly NotInRoom: 6000321;
  readonly RoomNotFound: 6000322;
  readonly RoomExists: 6000323;
  readonly RoomLimit: 6000324;
  readonly UserRoomLimit: 6000325;
  readonly RoomFull: 6000327;
  /** The connection closed before the reply and the request could not be retried safely (it may or may not have taken effect), or the client stopped (logout, gave up reconnecting, token refused). */
  readonly ConnectionLost: 900001;
  /** Called while the client is not logged in (state `disconnected`). */
  readonly NotConnected: 900002;
  /** No reply within `requestTimeoutMs` of sending the request. */
  readonly RequestTimeout: 900003;
  /** `login()` while a login or reconnection is already under way. */
  readonly InvalidState: 900004;
};

/** How every request rejects. */
export declare class RoomdError extends Error {
  constructor(code: number, reason: string, message: string, retryAfterMs?: number);
  readonly name: 'RoomdError';
  /** One of {@link ErrorCode}. */
  readonly code: number;
  /** roomd's reason string (`room_not_found`, ...), or the client's (`connection_lost`, `not_connected`, `request_timeout`, `invalid_state`). */
  readonly reason: string;
  /** With `rate_limited` (1006): milliseconds until a retry would pass. */
  readonly retryAfterMs?: number;
}

export interface UserInfo {
  /** 1–64 bytes of `[A-Za-z0-9_.@-]`. */
  userID: string;
  /** 0–64 bytes; may be omitted. */
  userName?: string;
}

/** A user as roomd reports them. */
export interface RoomMember {
  userID: string;
  userName: string;
}

export interface RoomInfo {
  /** 1–128 bytes of `A-Za-z0-9` and `!#$%&()+-:;<=.>?@[]^_{}|~`. */
  roomID: string;
  /** 0–64 bytes. */
  roomName?: string;
}

/** A room as roomd reports it. */
export interface RoomFullInfo {
  roomID: string;
  roomName: string;
}

/** Applies only when the request creates the room. */
export interface RoomAdvancedConfig {
  /** Seconds an empty room waits before it is destroyed, 0..=10800. */
  roomDestroyDelayTime?: number;
  /** At most 20 pairs; keys 1–16 bytes, values up to 1024 bytes. */
  roomAttributes?: Record<string, string>;
}

export type MessageType = 'text' | 'command' | 'barrage' | 'custom';
export type MessagePriority = 'low' | 'medium' | 'high';

/** What sendRoomMessage takes. ZIM's numeric types (1 text, 2 command, 20 barrage, 200 custom) are accepted too. */
export interface OutgoingMessage {
  type: MessageType | 1 | 2 | 20 | 200;
  message: string;
  extendedData?: string;
}

export interface MessageSendConfig {
  /** ZIM's numeric priorities (1 low, 2 medium, 3 high) are accepted too. Default `medium`. */
  priority?: MessagePriority | 1 | 2 | 3;
  /** Idempotency key (1–64 bytes, per sender and room). Default: a fresh random one. */
  clientMessageID?: string;
}

/** A stored message. */
export interface RoomMessage {
  /** Server-unique, a decimal string (may exceed 2^53). */
  messageID: string;
  /** The room's sequence number: 1, 2, 3, ... without gaps. */
  seq: number;
  roomID: string;
  senderUserID: string;
  type: MessageType;
  message: string;
  extendedData: string;
  priority: MessagePriority;
  /** Server time of the commit, Unix milliseconds. */
  timestamp: number;
}

/** Give at most one of beforeSeq and afterSeq; neither: the newest messages. */
export interface HistoryQueryOptions {
  /** Messages with a lower seq (the page just below it). */
  beforeSeq?: number;
  /** Messages with a higher seq (the page just above it). */
  afterSeq?: number;
  /** 1..=100, default 20. */
  count?: number;
}

export interface RoomMemberQueryConfig {
  /** From the previous page's result; '' or absent starts over. */
  nextFlag?: string;
  /** 1..=100, default 100. */
  count?: number;
}

/** What createRoom, joinRoom and enterRoom resolve with. */
export interface RoomInfoResult {
  roomInfo: RoomFullInfo;
  /**
   * The first seq of the room's current life: the oldest message you can
   * read there. 1 unless the room was destroyed and re-created under the
   * same id (its seqs continue the old life's, whose messages are not
   * yours to read).
   */
  firstSeq: number;
}
export interface RoomLeftResult {
  roomID: string;
}
export interface RoomsLeftResult {
  roomIDs: string[];
}
export interface MessageSentResult {
  message: RoomMessage;
}
export interface HistoryQueriedResult {
  roomID: string;
  /** Ascending seq. */
  messageList: RoomMessage[];
  /** Whether more exist beyond this page in the query's direction. */
  hasMore: boolean;
}
export interface RoomMemberQueriedResult {
  roomID: string;
  memberList: RoomMember[];
  /** '' when there are no more pages. */
  nextFlag: string;
}
export interface RoomOnlineMemberCountResult {
  roomID: string;
  count: number;
}
export interface LoggedInResult {
  userInfo: RoomMember;
}

export type ConnectionState = 'disconnected' | 'connecting' | 'connected' | 'reconnecting';

/**
 * Why the connection state changed:
 * - `activeLogin`: login() started (→ connecting)
 * - `success`: logged in, first time or again (→ connected)
 * - `loginInterrupted`: the connection was lost (→ reconnecting), or lost with
 *   reconnection disabled or during the first login (→ disconnected)
 * - `serverShutdown`: roomd is restarting, close code 1001 (→ reconnecting)
 * - `unauthorized`: the token was refused, 1005 / close 4001 (→ disconnected)
 * - `tokenExpired`: the token expired without a renewToken, close 4001
 *   "token expired" (→ disconnected; with a `tokenProvider`, → reconnecting
 *   with a fresh token)
 * - `tooManyConnections`: the user is at roomd's connection limit, close 4030 (→ disconnected)
 * - `loginFailed`: login refused for another reason, e.g. 1003 (→ disconnected)
 * - `reconnectFailed`: gave up after `reconnect.maxAttempts` (→ disconnected)
 * - `logout`: logout() (→ disconnected)
 */
export type ConnectionEvent =
  | 'activeLogin'
  | 'success'
  | 'loginInterrupted'
  | 'serverShutdown'
  | 'unauthorized'
  | 'tokenExpired'
  | 'tooManyConnections'
  | 'loginFailed'
  | 'reconnectFailed'
  | 'logout';

/** The `extendedData` of connectionStateChanged and roomStateChanged: whatever applies. */
export interface StateChangeDetails {
  /** The WebSocket close code; 4000 when the client closed it (a timeout). */
  closeCode?: number;
  closeReason?: string;
  /** With `reconnectFailed`: the attempts made. */
  attempts?: number;
  /** With `unauthorized`/`loginFailed` from a login reply, or `enterFailed`/`roomNotExist` from a rejoin: roomd's error. */
  code?: number;
  reason?: string;
  message?: string;
}

export interface ConnectionStateChangedEvent {
  state: ConnectionState;
  event: ConnectionEvent;
  extendedData: StateChangeDetails;
}

export type RoomState = 'disconnected' | 'connecting' | 'connected';

/**
 * Why a room's state changed (never for the client's own join or leave):
 * - `serverShutdown`: roomd is restarting (→ disconnected; rejoined after the reconnect)
 * - `networkInterrupted`: the connection was lost (→ connecting)
 * - `success`: rejoined after a reconnect (→ connected)
 * - `roomNotExist`: the room was destroyed meanwhile (→ disconnected)
 * - `enterFailed`: rejoining failed otherwise, details in extendedData (→ disconnected)
 * - a {@link ConnectionEvent} that stopped the client (→ disconnected)
 */
export type RoomEvent =
  | 'serverShutdown'
  | 'networkInterrupted'
  | 'success'
  | 'roomNotExist'
  | 'enterFailed'
  | ConnectionEvent;

export interface RoomStateChangedEvent {
  roomID: string;
  state: RoomState;
  event: RoomEvent;
  extendedData: StateChangeDetails;
}

export interface RoomMemberChangedEvent {
  roomID: string;
  memberList: RoomMember[];
}

export interface RoomMessageReceivedEvent {
  roomID: string;
  /** Ascending seq; each message is reported once. */
  messageList: RoomMessage[];
}

/** roomd closes the connection when the token expires (plus a 30 s leeway) unless renewToken brings a new one. */
export interface TokenWillExpireEvent {
  /** Seconds until the token expires: 30, or less when the token had less left at login or renewal. */
  second: number;
}

export interface RoomdEventMap {
  connectionStateChanged: ConnectionStateChangedEvent;
  roomStateChanged: RoomStateChangedEvent;
  roomMemberJoined: RoomMemberChangedEvent;
  roomMemberLeft: RoomMemberChangedEvent;
  roomMessageReceived: RoomMessageReceivedEvent;
  tokenWillExpire: TokenWillExpireEvent;
}

export type RoomdEventName = keyof RoomdEventMap;
export type RoomdEventHandler<E extends RoomdEventName> = (client: RoomdClient, data: RoomdEventMap[E]) => void;

/** The standard WebSocket constructor (browsers, Node 22+) or a compatible one such as the `ws` package's. */
export type WebSocketConstructor = new (url: string) => {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: (event: any) => void): void;
};

export interface ReconnectOptions {
  /** Reconnect after a lost connection. Default true. */
  enabled?: boolean;
  /** Delay before the first attempt; doubles with each failed one. Default 500. */
  initialDelayMs?: number;
  /** Longest delay between attempts. Default 10000. */
  maxDelayMs?: number;
  /** Failed attempts in a row before giving up (`reconnectFailed`). Default Infinity. */
  maxAttempts?: number;
  /** Fraction 0..1 of each delay taken off at random, so clients do not return all at once. Default 0.5. */
  jitter?: number;
}

/** Anything with some of console's methods, e.g. `console`. */
export interface Logger {
  debug?(message: string, details?: unknown): void;
  info?(message: string, details?: unknown): void;
  warn?(message: string, details?: unknown): void;
  error?(message: string, details?: unknown): void;
}

/** What the client tells a {@link TokenProvider}. */
export interface TokenRequest {
  /** The logged-in user: the token's `sub` must be this. */
  userID: string;
  /** Seconds the current token has left; 0 when it has expired or was refused. */
  secondsLeft: number;
}

/**
 * Returns a fresh token for the user (from your backend). The client calls
 * it on `tokenWillExpire` and then renews with the result, and before
 * reconnecting when the old token expired or a re-login refused it. It
 * must settle within `requestTimeoutMs`; a failure is logged and tried
 * again later, it never throws into your code.
 */
export type TokenProvider = (request: TokenRequest) => string | Promise<string>;

export interface RoomdClientOptions {
  /** Default: globalThis.WebSocket. Node 20 has none: pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  reconnect?: ReconnectOptions;
  /** How long a request may wait for its reply once sent. Default 15000. */
  requestTimeoutMs?: number;
  /** After this long without a frame from roomd, ping it; no reply within requestTimeoutMs drops the connection (and reconnects). 0 disables. Default 20000. */
  heartbeatIntervalMs?: number;
  /** Default: silent. */
  logger?: Logger;
  /** Lets the client renew the token by itself, see {@link TokenProvider}. Default: none (renew on `tokenWillExpire` yourself). */
  tokenProvider?: TokenProvider;
}

export declare class RoomdClient {
  /** @param url roomd's WebSocket URL, e.g. `ws://127.0.0.1:8080/v1/ws`. */
  constructor(url: string, options?: RoomdClientOptions);

  readonly state: ConnectionState;
  /** The logged-in user as roomd knows them, or null. */
  readonly userInfo: RoomMember | null;

  /** Connects and logs in; `token` is required when roomd has an auth secret. */
  login(userInfo: UserInfo, token?: string): Promise<LoggedInResult>;
  /** Leaves every room and closes the connection; never reconnects. */
  logout(): Promise<void>;
  /**
   * Replaces the session's token before it expires. Logged in, roomd checks
   * it: resolves once accepted (reconnections then use it too); a refused
   * token rejects with 1005 (Unauthorized) and the session keeps its old one.
   * While (re)connecting it is used by the coming login and checked once
   * logged in; while disconnected it is only kept.
   */
  renewToken(token: string): Promise<{ token: string }>;

  createRoom(roomInfo: RoomInfo, config?: RoomAdvancedConfig): Promise<RoomInfoResult>;
  joinRoom(roomID: string): Promise<RoomInfoResult>;
  enterRoom(roomInfo: RoomInfo, config?: RoomAdvancedConfig): Promise<RoomInfoResult>;
  leaveRoom(roomID: string): Promise<RoomLeftResult>;
  leaveAllRoom(): Promise<RoomsLeftResult>;
  sendRoomMessage(message: OutgoingMessage, roomID: string, config?: MessageSendConfig): Promise<MessageSentResult>;
  queryHistoryMessage(roomID: string, options?: HistoryQueryOptions): Promise<HistoryQueriedResult>;
  queryRoomMemberList(roomID: string, config?: RoomMemberQueryConfig): Promise<RoomMemberQueriedResult>;
  queryRoomOnlineMemberCount(roomID: string): Promise<RoomOnlineMemberCountResult>;

  on<E extends RoomdEventName>(event: E, handler: RoomdEventHandler<E>): void;
  /** Without a handler: removes every handler of the event. */
  off<E extends RoomdEventName>(event: E, handler?: RoomdEventHandler<E>): void;

  /** TEST ONLY: drops the connection abruptly, as a network failure would. False when there is none. */
  _debugDropConnection(): boolean;
}

/** ZIM-style factory: the same as `new RoomdClient(url, options)`. */
export declare function create(url: string, options?: RoomdClientOptions): RoomdClient;

export default RoomdClient;
