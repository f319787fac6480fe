// The roomd chat page: pick a name, enter a room, talk.
//
// Plain ES module on top of the JavaScript client the server ships at
// /sdk/roomd.js. No framework, no build step. User data only ever reaches
// the page through textContent and attributes, never innerHTML.
import { RoomdClient } from '/sdk/roomd.js';

const HISTORY_PAGE = 30;
const MEMBER_PAGE = 100;
// ZIM's room id alphabet (see docs/protocol.md).
const ROOM_ID = /^[A-Za-z0-9!#$%&()+\-:;<=.>?@[\]^_{}|~]{1,128}$/;
const USER_ID = /^[A-Za-z0-9_.@-]{1,64}$/;
const STORE = { name: 'roomd.chat.name', userID: 'roomd.chat.userID', room: 'roomd.chat.room' };

const $ = (id) => document.getElementById(id);
const ui = {
  connection: $('connection'),
  connectionText: $('connection-text'),
  alert: $('alert'),
  alertText: $('alert-text'),
  alertDismiss: $('alert-dismiss'),
  picker: $('picker'),
  joinForm: $('join-form'),
  name: $('name'),
  nameError: $('name-error'),
  tokenField: $('token-field'),
  token: $('token'),
  tokenError: $('token-error'),
  room: $('room'),
  roomError: $('room-error'),
  enterButton: $('enter-button'),
  chat: $('chat'),
  roomTitle: $('room-title'),
  leaveButton: $('leave-button'),
  memberCount: $('member-count'),
  memberList: $('member-list'),
  log: $('log'),
  loadOlder: $('load-older'),
  historyStart: $('history-start'),
  messages: $('messages'),
  sendForm: $('send-form'),
  messageInput: $('message-input'),
  sendButton: $('send-button'),
};

// ---------------------------------------------------------------- storage

const storage = {
  get(key) {
    try { return localStorage.getItem(key); } catch { return null; }
  },
  set(key, value) {
    try { localStorage.setItem(key, value); } catch { /* private mode: fine */ }
  },
};

function browserUserID() {
  let id = storage.get(STORE.userID);
  if (!id || !USER_ID.test(id)) {
    const bytes = crypto.getRandomValues(new Uint8Array(6));
    id = 'web-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    storage.set(STORE.userID, id);
  }
  return id;
}

/** The claims of a JWT, unverified (the server verifies); null if unreadable. */
function tokenClaims(token) {
  try {
    const part = token.split('.')[1];
    const base64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

const utf8Length = (text) => new TextEncoder().encode(text).length;

// ---------------------------------------------------------------- status and errors

const STATE_TEXT = {
  offline: 'Not connected',
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  disconnected: 'Disconnected',
};

function showConnection(state) {
  ui.connection.dataset.state = state;
  ui.connectionText.textContent = STATE_TEXT[state] ?? state;
}

function describeError(err) {
  if (!err) return 'Something went wrong.';
  const code = err.code;
  switch (err.reason) {
    case 'unauthorized': return 'The server did not accept the login token.';
    case 'rate_limited': {
      const wait = err.retryAfterMs ? ` Try again in ${Math.ceil(err.retryAfterMs / 1000)} s.` : ' Try again shortly.';
      return 'Slow down: too many requests.' + wait;
    }
    case 'too_large': return 'That message is too long.';
    case 'unavailable': return 'The server cannot reach its database right now; nothing was sent. Try again later.';
    case 'not_in_room': return 'You are no longer in this room.';
    case 'room_limit': return 'The server has reached its room limit.';
    case 'user_room_limit': return 'You are in too many rooms already.';
    case 'room_full': return 'This room is full.';
    case 'connection_lost': return 'The connection was lost before the server answered. Please try again.';
    case 'not_connected': return 'Not connected to the server.';
    case 'request_timeout': return 'The server did not answer in time. Please try again.';
    default: break;
  }
  const text = err.message || String(err);
  return code ? `${text} (error ${code})` : text;
}

function showError(errOrText) {
  const text = typeof errOrText === 'string' ? errOrText : describeError(errOrText);
  ui.alertText.textContent = text;
  ui.alert.hidden = false;
}

function clearError() {
  ui.alert.hidden = true;
  ui.alertText.textContent = '';
}

ui.alertDismiss.addEventListener('click', clearError);

// ---------------------------------------------------------------- server info

let authRequired = false;
const infoLoaded = fetch('/v1/info', { headers: { accept: 'application/json' } })
  .then((response) => (response.ok ? response.json() : Promise.reject(new Error(`HTTP ${response.status}`))))
  .then((info) => {
    authRequired = Boolean(info.authRequired);
    ui.tokenField.hidden = !authRequired;
    ui.token.required = authRequired;
  })
  .catch((err) => {
    showError(`Could not ask the server whether it needs a token (${err.message}).`);
  });

function wsUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/v1/ws`;
}

// ---------------------------------------------------------------- session

let client = null;
/** { userID, userName, asked, token } of the logged-in client. */
let session = null;
/** The room on screen, or null on the picker. */
let room = null;
/** userID → userName of everyone seen in this page's life (names outlive membership). */
const names = new Map();

function displayName(userID) {
  const name = names.get(userID);
  return name ? name : userID;
}

function rememberName(user) {
  if (!user || !user.userID) return;
  const known = names.get(user.userID);
  if (user.userName && user.userName !== known) {
    names.set(user.userID, user.userName);
    refreshAuthor(user.userID);
  }
}

function dropClient() {
  const old = client;
  client = null;
  session = null;
  if (old) {
    old.off('connectionStateChanged', onConnectionState);
    old.off('roomMemberJoined', onMemberJoined);
    old.off('roomMemberLeft', onMemberLeft);
    old.off('roomMessageReceived', onMessages);
    old.off('roomStateChanged', onRoomState);
    try { old.logout(); } catch { /* already gone */ }
  }
  showConnection('offline');
}

async function ensureLogin(userID, userName, token) {
  if (client && session && session.userID === userID && session.asked === userName && session.token === token) {
    return;
  }
  dropClient();
  // Reconnects with backoff on its own, rejoining rooms where it left off.
  const next = new RoomdClient(wsUrl());
  next.on('connectionStateChanged', onConnectionState);
  next.on('roomMemberJoined', onMemberJoined);
  next.on('roomMemberLeft', onMemberLeft);
  next.on('roomMessageReceived', onMessages);
  next.on('roomStateChanged', onRoomState);
  client = next;
  showConnection('connecting');
  try {
    const result = await next.login({ userID, userName }, token || undefined);
    const user = (result && result.userInfo) || { userID, userName };
    // With a token the server may replace the name with the token's own.
    session = { userID: user.userID || userID, userName: user.userName ?? userName, asked: userName, token };
    rememberName({ userID: session.userID, userName: session.userName });
    if (client === next) showConnection('connected');
  } catch (err) {
    if (client === next) dropClient();
    throw err;
  }
}

// ---------------------------------------------------------------- client events

function onConnectionState(source, data) {
  if (source !== client) return; // a client we already dropped
  const state = data && data.state;
  if (!state) return;
  showConnection(state);
  if (state === 'disconnected' && session) {
    // The client gave up (or the server turned us away for good).
    const r = room;
    dropClient();
    if (r) goToPicker();
    showError('Lost the connection to the server. Enter the room again to reconnect.');
  }
}

function onRoomState(source, data) {
  if (source !== client || !room || !data || data.roomID !== room.roomID) return;
  const r = room;
  if (data.state === 'connected' && r.opened) {
    // Back after a drop: the client has rejoined the room and replays the
    // messages we missed; who came and went meanwhile we must ask again.
    clearError();
    r.memberBacklog = [];
    loadMembers(r).catch((err) => room === r && showError(err));
  } else if (data.state === 'disconnected') {
    // The server restarting: the client reconnects and rejoins on its own,
    // and the connection status says so.
    if (data.event === 'serverShutdown') return;
    const why = {
      kickedOut: 'You were removed from the room.',
      roomNotExist: 'The room no longer exists.',
      unauthorized: 'The server no longer accepts your login token.',
      tokenExpired: 'Your login token has expired.',
    }[data.event] || 'You are no longer in the room.';
    goToPicker();
    showError(why);
  }
}

function onMemberJoined(source, data) {
  if (!room || !data || data.roomID !== room.roomID) return;
  memberEvent(room, 'joined', data.memberList || []);
}

function onMemberLeft(source, data) {
  if (!room || !data || data.roomID !== room.roomID) return;
  memberEvent(room, 'left', data.memberList || []);
}

function onMessages(source, data) {
  if (!room || !data || data.roomID !== room.roomID) return;
  addMessages(room, data.messageList || []);
}

// ---------------------------------------------------------------- picker

function fieldError(input, errorEl, text) {
  errorEl.textContent = text;
  if (text) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
  return !text;
}

function validatePicker() {
  const name = ui.name.value.trim();
  const roomID = ui.room.value.trim();
  const token = ui.token.value.trim();
  const checks = [];
  let nameText = '';
  if (!name) nameText = 'Enter a name.';
  else if (utf8Length(name) > 64) nameText = 'That name is too long (64 bytes at most).';
  checks.push([ui.name, fieldError(ui.name, ui.nameError, nameText)]);
  let tokenText = '';
  let userID = browserUserID();
  if (authRequired) {
    const claims = token ? tokenClaims(token) : null;
    if (!token) tokenText = 'This server needs a login token.';
    else if (!claims || typeof claims.sub !== 'string' || !USER_ID.test(claims.sub)) tokenText = 'That is not a roomd login token.';
    else userID = claims.sub;
  }
  checks.push([ui.token, fieldError(ui.token, ui.tokenError, tokenText)]);
  let roomText = '';
  if (!roomID) roomText = 'Enter a room.';
  else if (!ROOM_ID.test(roomID)) roomText = 'Room names use letters, digits and the listed symbols only, up to 128.';
  checks.push([ui.room, fieldError(ui.room, ui.roomError, roomText)]);
  const firstBad = checks.find(([, ok]) => !ok);
  if (firstBad) {
    firstBad[0].focus();
    return null;
  }
  return { name, roomID, token: authRequired ? token : '', userID };
}

function goToPicker() {
  room = null;
  ui.chat.hidden = true;
  ui.picker.hidden = false;
  ui.roomTitle.textContent = '';
  ui.memberList.replaceChildren();
  ui.messages.replaceChildren();
  ui.memberCount.textContent = '';
  document.title = 'roomd chat';
  ui.room.focus();
}

let entering = false;

ui.joinForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  if (entering) return;
  entering = true;
  try {
    await enter();
  } finally {
    entering = false;
  }
});

async function enter() {
  await infoLoaded;
  const wanted = validatePicker();
  if (!wanted) return;
  clearError();
  storage.set(STORE.name, wanted.name);
  storage.set(STORE.room, wanted.roomID);
  ui.enterButton.disabled = true;
  ui.enterButton.textContent = 'Entering…';
  const r = newRoom(wanted.roomID);
  try {
    await ensureLogin(wanted.userID, wanted.name, wanted.token);
    room = r;
    const result = await client.enterRoom({ roomID: wanted.roomID, roomName: wanted.roomID });
    if (room !== r) return;
    openRoom(r, (result && result.roomInfo) || { roomID: wanted.roomID, roomName: '' });
  } catch (err) {
    if (room === r) room = null;
    if (err && err.reason === 'unauthorized') {
      fieldError(ui.token, ui.tokenError, 'The server did not accept this token.');
      dropClient();
    }
    showError(err);
  } finally {
    ui.enterButton.disabled = false;
    ui.enterButton.textContent = 'Enter room';
  }
}

// ---------------------------------------------------------------- room

function newRoom(roomID) {
  return {
    roomID,
    members: new Map(),
    /** Member events that arrive while the initial list is still paging in. */
    memberBacklog: [],
    /** seq → <li> of every message shown. */
    bySeq: new Map(),
    oldestSeq: null,
    /** Set once the chat view shows this room. */
    opened: false,
    hasMore: false,
    loadingOlder: false,
    historyReady: false,
  };
}

function openRoom(r, roomInfo) {
  r.opened = true;
  ui.picker.hidden = true;
  ui.chat.hidden = false;
  ui.memberList.replaceChildren();
  ui.messages.replaceChildren();
  ui.loadOlder.hidden = true;
  ui.historyStart.hidden = true;
  const title = roomInfo.roomName || r.roomID;
  ui.roomTitle.textContent = title;
  document.title = `${title} · roomd chat`;
  // Until the list arrives we know one member for sure: ourselves.
  r.members.set(session.userID, session.userName);
  renderMembers(r);
  ui.messageInput.focus();
  loadMembers(r).catch((err) => room === r && showError(err));
  loadNewest(r).catch((err) => room === r && showError(err));
}

async function leaveRoom() {
  const r = room;
  if (!r) return;
  ui.leaveButton.disabled = true;
  try {
    await client.leaveRoom(r.roomID);
  } catch (err) {
    if (!err || err.reason !== 'not_in_room') {
      // We could not tell the server; dropping the connection makes it let
      // us go once the reconnect grace is over.
      dropClient();
      showError(err);
    }
  } finally {
    ui.leaveButton.disabled = false;
  }
  if (room === r) goToPicker();
}

ui.leaveButton.addEventListener('click', leaveRoom);

// ---------------------------------------------------------------- members

async function loadMembers(r) {
  const listed = new Map();
  let nextFlag = '';
  do {
    const page = await client.queryRoomMemberList(r.roomID, { nextFlag, count: MEMBER_PAGE });
    if (room !== r) return;
    for (const member of page.memberList || []) listed.set(member.userID, member.userName);
    nextFlag = page.nextFlag || '';
  } while (nextFlag);
  r.members = listed;
  for (const [userID, userName] of listed) rememberName({ userID, userName });
  // Events that arrived while paging happened after some part of the list
  // was read; replaying them in order on top of the list gives the truth.
  const backlog = r.memberBacklog || [];
  r.memberBacklog = null;
  for (const [kind, list] of backlog) applyMemberEvent(r, kind, list, false);
  renderMembers(r);
}

function memberEvent(r, kind, list) {
  for (const member of list) rememberName(member);
  if (r.memberBacklog) {
    r.memberBacklog.push([kind, list]);
    // Show the change now anyway; the full list corrects it when it lands.
  }
  applyMemberEvent(r, kind, list, true);
  renderMembers(r);
}

function applyMemberEvent(r, kind, list, announce) {
  for (const member of list) {
    if (kind === 'joined') r.members.set(member.userID, member.userName);
    else r.members.delete(member.userID);
    if (announce && member.userID !== session?.userID) {
      addNote(`${member.userName || member.userID} ${kind === 'joined' ? 'joined' : 'left'}`);
    }
  }
}

function renderMembers(r) {
  const sorted = [...r.members].sort(([aID, aName], [bID, bName]) => {
    if (aID === session?.userID) return -1;
    if (bID === session?.userID) return 1;
    return (aName || aID).localeCompare(bName || bID) || aID.localeCompare(bID);
  });
  const items = sorted.map(([userID, userName]) => {
    const li = document.createElement('li');
    li.className = 'member';
    li.dataset.testid = 'member';
    li.dataset.userId = userID;
    const avatar = document.createElement('span');
    avatar.className = 'avatar';
    avatar.setAttribute('aria-hidden', 'true');
    avatar.textContent = initial(userName || userID);
    avatar.style.setProperty('--hue', hue(userID));
    const name = document.createElement('span');
    name.className = 'member-name';
    name.textContent = userName || userID;
    if (userName) name.title = userID;
    li.append(avatar, name);
    if (userID === session?.userID) {
      const you = document.createElement('span');
      you.className = 'you';
      you.textContent = '(you)';
      li.append(' ', you);
    }
    return li;
  });
  ui.memberList.replaceChildren(...items);
  ui.memberCount.textContent = `(${r.members.size})`;
}

function initial(text) {
  const first = [...text.trim()][0];
  return first ? first.toUpperCase() : '?';
}

function hue(text) {
  let h = 0;
  for (const ch of text) h = (h * 31 + ch.codePointAt(0)) % 360;
  return String(h);
}

// ---------------------------------------------------------------- messages

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const dayTimeFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

function timeElement(timestamp) {
  const date = new Date(Number(timestamp) || Date.now());
  const el = document.createElement('time');
  el.dateTime = date.toISOString();
  const today = new Date();
  const sameDay = date.toDateString() === today.toDateString();
  el.textContent = (sameDay ? timeFormat : dayTimeFormat).format(date);
  el.title = fullFormat.format(date);
  return el;
}

function messageElement(message) {
  const mine = message.senderUserID === session?.userID;
  const li = document.createElement('li');
  li.className = mine ? 'message mine' : 'message';
  li.dataset.testid = 'message';
  li.dataset.seq = String(message.seq);
  li.dataset.sender = message.senderUserID;
  li.dataset.time = String(Number(message.timestamp) || 0);
  const meta = document.createElement('div');
  meta.className = 'meta';
  const author = document.createElement('span');
  author.className = 'author';
  author.dataset.testid = 'message-author';
  author.dataset.userId = message.senderUserID;
  author.textContent = displayName(message.senderUserID);
  meta.append(author, ' ', timeElement(message.timestamp));
  if (message.type && message.type !== 'text') {
    const tag = document.createElement('span');
    tag.className = 'tag';
    tag.textContent = message.type;
    meta.append(' ', tag);
  }
  const body = document.createElement('p');
  body.className = 'text';
  body.dataset.testid = 'message-text';
  body.textContent = message.message ?? '';
  li.append(meta, body);
  return li;
}

function refreshAuthor(userID) {
  for (const el of ui.messages.querySelectorAll('.author')) {
    if (el.dataset.userId === userID) el.textContent = displayName(userID);
  }
}

function nearBottom() {
  return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 48;
}

function scrollToBottom() {
  ui.log.scrollTop = ui.log.scrollHeight;
}

/**
 * Puts messages in the log in seq order, each seq once. Elements without a
 * seq (join/leave notes, messages being sent) stay where they are.
 * `older`: a history page above what is shown; the view stays put.
 * `own`: our own message; the view follows it.
 */
function addMessages(r, list, { older = false, own = false } = {}) {
  if (room !== r || !list.length) return;
  const stick = own || nearBottom();
  const fromBottom = ui.log.scrollHeight - ui.log.scrollTop;
  const seqs = [...r.bySeq.keys()].sort((a, b) => a - b);
  const pending = ui.messages.querySelector('.message.pending');
  for (const message of list) {
    const seq = Number(message.seq);
    if (!Number.isFinite(seq) || r.bySeq.has(seq)) continue;
    const el = messageElement(message);
    // Insert before the first shown message with a larger seq, if any.
    let lo = 0;
    let hi = seqs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (seqs[mid] < seq) lo = mid + 1;
      else hi = mid;
    }
    ui.messages.insertBefore(el, lo < seqs.length ? r.bySeq.get(seqs[lo]) : pending);
    seqs.splice(lo, 0, seq);
    r.bySeq.set(seq, el);
    group(el);
    group(el.nextElementSibling);
    if (r.oldestSeq === null || seq < r.oldestSeq) r.oldestSeq = seq;
  }
  if (older) ui.log.scrollTop = ui.log.scrollHeight - fromBottom;
  else if (stick) scrollToBottom();
}

const GROUP_GAP_MS = 5 * 60_000;

/**
 * A message right after another from the same sender, within a few minutes,
 * is drawn as part of that one: its name and time are only visually hidden.
 */
function group(el) {
  if (!el || !el.dataset.seq) return;
  const before = el.previousElementSibling;
  const continued = Boolean(before && before.dataset.seq
    && before.dataset.sender === el.dataset.sender
    && Math.abs(Number(el.dataset.time) - Number(before.dataset.time)) < GROUP_GAP_MS);
  el.classList.toggle('continued', continued);
}

function addNote(text) {
  const li = document.createElement('li');
  li.className = 'note';
  li.dataset.testid = 'note';
  li.textContent = text;
  const stick = nearBottom();
  ui.messages.insertBefore(li, ui.messages.querySelector('.message.pending'));
  group(li.nextElementSibling);
  if (stick) scrollToBottom();
}

function showHistoryEdge(r) {
  if (room !== r) return;
  // Hiding the focused button would drop keyboard focus on the floor.
  if (!r.hasMore && document.activeElement === ui.loadOlder) ui.log.focus();
  ui.loadOlder.hidden = !r.hasMore;
  ui.historyStart.hidden = r.hasMore || !r.historyReady;
}

async function loadNewest(r) {
  ui.log.setAttribute('aria-busy', 'true');
  try {
    const page = await client.queryHistoryMessage(r.roomID, { count: HISTORY_PAGE });
    if (room !== r) return;
    r.hasMore = Boolean(page.hasMore);
    r.historyReady = true;
    addMessages(r, page.messageList || []);
    scrollToBottom();
  } finally {
    if (room === r) ui.log.removeAttribute('aria-busy');
  }
  showHistoryEdge(r);
  // Keep loading until the log can scroll, so scrolling up can load more.
  while (room === r && r.hasMore && ui.log.scrollHeight <= ui.log.clientHeight) {
    if (!(await loadOlder(r))) break;
  }
}

/** Loads the page before the oldest message shown; false when nothing came. */
async function loadOlder(r = room) {
  if (!r || room !== r || r.loadingOlder || !r.hasMore || r.oldestSeq === null) return false;
  r.loadingOlder = true;
  ui.loadOlder.disabled = true;
  ui.loadOlder.textContent = 'Loading…';
  ui.log.setAttribute('aria-busy', 'true');
  try {
    const page = await client.queryHistoryMessage(r.roomID, { beforeSeq: r.oldestSeq, count: HISTORY_PAGE });
    if (room !== r) return false;
    const list = page.messageList || [];
    r.hasMore = Boolean(page.hasMore) && list.length > 0;
    addMessages(r, list, { older: true });
    return list.length > 0;
  } catch (err) {
    if (room === r) showError(err);
    return false;
  } finally {
    r.loadingOlder = false;
    ui.loadOlder.disabled = false;
    ui.loadOlder.textContent = 'Load older messages';
    if (room === r) ui.log.removeAttribute('aria-busy');
    showHistoryEdge(r);
  }
}

ui.loadOlder.addEventListener('click', () => loadOlder());
ui.log.addEventListener('scroll', () => {
  if (room && ui.log.scrollTop < 64) loadOlder();
}, { passive: true });

// ---------------------------------------------------------------- sending

function pendingElement(text) {
  const li = document.createElement('li');
  li.className = 'message mine pending';
  li.dataset.testid = 'pending-message';
  const meta = document.createElement('div');
  meta.className = 'meta';
  const author = document.createElement('span');
  author.className = 'author';
  author.textContent = session ? session.userName || session.userID : '';
  const state = document.createElement('span');
  state.className = 'sending';
  state.textContent = 'sending…';
  meta.append(author, ' ', state);
  const body = document.createElement('p');
  body.className = 'text';
  body.textContent = text;
  li.append(meta, body);
  return li;
}

async function send() {
  const r = room;
  const text = ui.messageInput.value;
  if (!r || !client || !text.trim()) {
    ui.messageInput.focus();
    return;
  }
  ui.messageInput.value = '';
  autoGrow();
  const pending = pendingElement(text);
  ui.messages.append(pending);
  scrollToBottom();
  try {
    const result = await client.sendRoomMessage({ type: 'text', message: text }, r.roomID);
    pending.remove();
    if (result && result.message) addMessages(r, [result.message], { own: true });
  } catch (err) {
    pending.remove();
    if (room === r) {
      showError(err);
      // Give the text back so nothing typed is lost.
      if (!ui.messageInput.value) {
        ui.messageInput.value = text;
        autoGrow();
      }
    }
  }
}

ui.sendForm.addEventListener('submit', (event) => {
  event.preventDefault();
  send();
});

ui.messageInput.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});

function autoGrow() {
  const input = ui.messageInput;
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
}

ui.messageInput.addEventListener('input', autoGrow);

// ---------------------------------------------------------------- start

ui.name.value = storage.get(STORE.name) || '';
ui.room.value = storage.get(STORE.room) || '';
(ui.name.value ? ui.room : ui.name).focus();
