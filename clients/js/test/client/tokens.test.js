// A session's token over its life (roomd with --auth-secret): renewToken,
// tokenWillExpire, the tokenProvider option, and the close 4001
// "token expired". roomd closes at the token's exp plus a 30 s leeway, too
// slow for these tests: that close is simulated on the client's side of a
// real connection (wireRecorder's closeAs); roomd's own tests cover roomd
// sending it.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ErrorCode } from '../../roomd.js';
import { startRoomd } from '../support/roomd.js';
import {
  loggedIn,
  logoutEveryClient,
  newClient,
  rejectsWith,
  replyTo,
  seen,
  sentOps,
  token,
  uniqueId,
  waitFor,
  waitForState,
  wireRecorder,
} from '../support/client.js';

// roomd refuses secrets under 32 bytes.
const SECRET = 'a-secret-for-the-token-tests-of-roomd-js';
let server;
before(async () => {
  server = await startRoomd({ args: ['--auth-secret', SECRET] });
});
after(async () => {
  await logoutEveryClient();
  await server?.stop();
});

/** A tokenProvider that signs good tokens and records what it was asked. */
function provider(options = {}) {
  const calls = [];
  const tokens = [];
  const fn = async (request) => {
    calls.push(request);
    const fresh = token(SECRET, request.userID, options);
    tokens.push(fresh);
    return fresh;
  };
  return Object.assign(fn, { calls, tokens });
}

/** The ok replies to the renewToken requests of `connection`. */
function renewals(connection) {
  return sentOps(connection, 'renewToken').map((frame) => ({ token: frame.token, reply: replyTo(connection, frame) }));
}

test('a token about to expire: tokenWillExpire at once, the tokenProvider renews, and the session goes on', async () => {
  const wire = wireRecorder();
  const userID = uniqueId('u');
  const tokenProvider = provider({ ttlSeconds: 3600 });
  // 2 s left: less than roomd's 30 s warning time, so it warns at once.
  const client = await loggedIn(server.wsUrl, userID, { WebSocket: wire.WebSocket, tokenProvider, token: token(SECRET, userID, { ttlSeconds: 2 }) });

  await waitFor(() => seen(client, 'tokenWillExpire').length === 1, 'tokenWillExpire');
  const [{ second }] = seen(client, 'tokenWillExpire');
  assert.ok(Number.isInteger(second) && second >= 0 && second <= 2, `second: ${second}`);
  await waitFor(() => tokenProvider.calls.length === 1, 'the tokenProvider to be asked');
  assert.equal(tokenProvider.calls[0].userID, userID);
  assert.ok(tokenProvider.calls[0].secondsLeft <= 2);

  const [connection] = wire.connections;
  await waitFor(() => renewals(connection)[0]?.reply, 'the renewToken reply');
  const [renewal] = renewals(connection);
  assert.equal(renewal.token, tokenProvider.tokens[0]);
  assert.equal(renewal.reply.ok, true);
  // The new token's exp, in Unix milliseconds: about an hour from now.
  const hour = Date.now() + 3600_000;
  assert.ok(Math.abs(renewal.reply.expiresAt - hour) < 5_000, `expiresAt ${renewal.reply.expiresAt}, expected about ${hour}`);

  // Still the same, usable connection.
  const roomID = uniqueId('room');
  await client.createRoom({ roomID, roomName: '' });
  const { message } = await client.sendRoomMessage({ type: 'text', message: 'still here' }, roomID);
  assert.equal(message.seq, 1);
  assert.equal(client.state, 'connected');
  assert.equal(wire.connections.length, 1);
  // The renewed token has an hour left: no second warning.
  assert.equal(seen(client, 'tokenWillExpire').length, 1);
  assert.equal(tokenProvider.calls.length, 1);
  await client.logout();
});

test('renewToken by hand: a good token is accepted and used by reconnections; a refused one rejects with 1005 and changes nothing', async () => {
  const wire = wireRecorder();
  const userID = uniqueId('u');
  const client = await loggedIn(server.wsUrl, userID, { WebSocket: wire.WebSocket, token: token(SECRET, userID) });
  const roomID = uniqueId('room');
  await client.createRoom({ roomID, roomName: '' });

  const renewed = token(SECRET, userID, { ttlSeconds: 7200 });
  assert.deepEqual(await client.renewToken(renewed), { token: renewed });
  const [first] = renewals(wire.connections[0]);
  assert.equal(first.token, renewed);
  assert.equal(typeof first.reply.expiresAt, 'number');

  // Refused: another user's token, garbage. roomd's texts are stable.
  const otherUser = await rejectsWith(client.renewToken(token(SECRET, uniqueId('someone-else'))), ErrorCode.Unauthorized);
  assert.equal(otherUser.message, 'the token was issued for another user');
  const garbage = await rejectsWith(client.renewToken('not-a-jwt'), ErrorCode.Unauthorized);
  assert.equal(garbage.message, 'the token is invalid');
  const foreign = await rejectsWith(client.renewToken(token('another secret', userID)), ErrorCode.Unauthorized);
  assert.equal(foreign.message, 'the token is invalid');

  // The session stays open and usable.
  assert.equal(client.state, 'connected');
  const { message } = await client.sendRoomMessage({ type: 'text', message: 'after a refused renewal' }, roomID);
  assert.equal(message.seq, 1);
  assert.equal(wire.connections.length, 1);

  // A reconnection logs in with the last accepted token, not a refused one.
  client._debugDropConnection();
  await waitForState(client, 'reconnecting');
  await waitFor(() => seen(client, 'roomStateChanged', roomID).at(-1)?.state === 'connected', 'the room to be rejoined');
  assert.equal(sentOps(wire.connections.at(-1), 'login')[0].token, renewed);
  await client.logout();
});

test('renewToken while disconnected only keeps the token', async () => {
  const wire = wireRecorder();
  const client = newClient(server.wsUrl, { WebSocket: wire.WebSocket });
  const later = token(SECRET, uniqueId('u'));
  assert.deepEqual(await client.renewToken(later), { token: later });
  assert.equal(wire.connections.length, 0);
  assert.equal(client.state, 'disconnected');
});

test('with a tokenProvider, a re-login refused for its token asks for a fresh one and logs in with it', async () => {
  const wire = wireRecorder();
  const userID = uniqueId('u');
  const tokenProvider = provider({ name: 'From Provider' });
  const client = await loggedIn(server.wsUrl, userID, { WebSocket: wire.WebSocket, tokenProvider, token: token(SECRET, userID) });
  const roomID = uniqueId('room');
  await client.createRoom({ roomID, roomName: '' });

  let renewal;
  const renewOnce = (c, { state }) => {
    if (state !== 'reconnecting') return;
    c.off('connectionStateChanged', renewOnce);
    renewal = rejectsWith(c.renewToken('not-a-jwt'), ErrorCode.Unauthorized);
  };
  client.on('connectionStateChanged', renewOnce);
  client._debugDropConnection();
  await waitFor(() => seen(client, 'roomStateChanged', roomID).at(-1)?.state === 'connected', 'the room to be rejoined');
  // The app's token was refused at the re-login, then again once logged in with the provider's.
  await renewal;
  assert.deepEqual(tokenProvider.calls, [{ userID, secondsLeft: 0 }]);
  const logins = wire.connections.slice(1).map((c) => sentOps(c, 'login')[0].token);
  assert.deepEqual(logins, ['not-a-jwt', tokenProvider.tokens[0]]);
  assert.deepEqual(client.userInfo, { userID, userName: 'From Provider' });
  assert.equal(client.state, 'connected');
  await client.sendRoomMessage({ type: 'text', message: 'back' }, roomID);
  await client.logout();
});

test('a failing tokenProvider is logged, and the session goes on until roomd closes it', async () => {
  const warnings = [];
  const logger = { warn: (message, details) => warnings.push([message, details]) };
  const userID = uniqueId('u');
  let calls = 0;
  const tokenProvider = async () => {
    calls += 1;
    throw new Error('the backend is down');
  };
  const client = await loggedIn(server.wsUrl, userID, { logger, tokenProvider, token: token(SECRET, userID, { ttlSeconds: 2 }) });
  await waitFor(() => warnings.length === 1, 'the failure to be logged');
  assert.equal(calls, 1);
  assert.match(warnings[0][0], /tokenProvider failed/);
  assert.equal(warnings[0][1].message, 'the backend is down');
  assert.equal(client.state, 'connected');
  const roomID = uniqueId('room');
  await client.createRoom({ roomID, roomName: '' });
  await client.logout();
});

test('close 4001 "token expired" without a tokenProvider: the client stops (tokenExpired)', async () => {
  const wire = wireRecorder();
  const userID = uniqueId('u');
  const client = await loggedIn(server.wsUrl, userID, { WebSocket: wire.WebSocket, token: token(SECRET, userID) });
  const roomID = uniqueId('room');
  await client.createRoom({ roomID, roomName: '' });
  // Answered or cut off by the close: either way settled.
  const pending = client.queryRoomOnlineMemberCount(roomID).catch(() => {});
  wire.connections[0].socket.closeAs(4001, 'token expired');
  await waitForState(client, 'disconnected');
  await pending;
  const details = { closeCode: 4001, closeReason: 'token expired' };
  assert.deepEqual(seen(client, 'connectionStateChanged').at(-1), { state: 'disconnected', event: 'tokenExpired', extendedData: details });
  assert.deepEqual(seen(client, 'roomStateChanged', roomID), [{ roomID, state: 'disconnected', event: 'tokenExpired', extendedData: details }]);
  assert.equal(wire.connections.length, 1);
});

test('close 4001 "token expired" with a tokenProvider: a fresh token, a reconnection, the rooms resumed', async () => {
  const wire = wireRecorder();
  const userID = uniqueId('u');
  const tokenProvider = provider();
  const client = await loggedIn(server.wsUrl, userID, { WebSocket: wire.WebSocket, tokenProvider, token: token(SECRET, userID) });
  const roomID = uniqueId('room');
  await client.createRoom({ roomID, roomName: '' });
  await client.sendRoomMessage({ type: 'text', message: 'before' }, roomID);

  wire.connections[0].socket.closeAs(4001, 'token expired');
  await waitFor(() => seen(client, 'roomStateChanged', roomID).at(-1)?.state === 'connected', 'the room to be rejoined');
  assert.deepEqual(
    seen(client, 'connectionStateChanged').slice(-2).map((e) => [e.state, e.event]),
    [['reconnecting', 'tokenExpired'], ['connected', 'success']],
  );
  assert.deepEqual(tokenProvider.calls, [{ userID, secondsLeft: 0 }]);
  assert.equal(wire.connections.length, 2);
  const [login] = sentOps(wire.connections[1], 'login');
  assert.equal(login.token, tokenProvider.tokens[0]);
  const [rejoin] = sentOps(wire.connections[1], 'joinRoom');
  assert.equal(rejoin.sinceSeq, 1);
  const { message } = await client.sendRoomMessage({ type: 'text', message: 'after' }, roomID);
  assert.equal(message.seq, 2);
  await client.logout();
});
