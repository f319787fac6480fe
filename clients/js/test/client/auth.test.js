// Tokens (roomd with --auth-secret) and the closes that must not reconnect:
// 4001 (token refused) and 4030 (too many connections for the user).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ErrorCode } from '../../roomd.js';
import { startRoomd } from '../support/roomd.js';
import { loggedIn, logoutEveryClient, newClient, record, rejectsWith, seen, token, uniqueId, waitFor, waitForState } from '../support/client.js';

// roomd refuses secrets under 32 bytes.
const SECRET = 'test-secret-for-the-js-client-of-roomd';
let server;
before(async () => {
  server = await startRoomd({ args: ['--auth-secret', SECRET] });
});
after(async () => {
  await logoutEveryClient();
  await server?.stop();
});

test('a valid token logs in; its name claim wins over the given userName', async () => {
  const userID = uniqueId('u');
  const client = await loggedIn(server.wsUrl, userID, { token: token(SECRET, userID, { name: 'From Token' }) });
  assert.deepEqual(client.userInfo, { userID, userName: 'From Token' });
  await client.logout();
});

test('a refused token rejects login with 1005 and disconnects as unauthorized', async () => {
  const userID = uniqueId('u');
  const refused = [
    [undefined, 'a token is required'],
    ['not-a-jwt', 'the token is invalid'],
    [token('another secret', userID), 'the token is invalid'],
    [token(SECRET, uniqueId('someone-else')), 'the token was issued for another user'],
    // Beyond roomd's 30 s leeway.
    [token(SECRET, userID, { ttlSeconds: -120 }), 'the token has expired'],
  ];
  for (const [bad, message] of refused) {
    const client = record(newClient(server.wsUrl));
    const error = await rejectsWith(client.login({ userID }, bad), ErrorCode.Unauthorized);
    assert.equal(error.reason, 'unauthorized');
    // roomd's texts are stable (never a JWT library's).
    assert.equal(error.message, message);
    assert.equal(client.state, 'disconnected');
    assert.deepEqual(seen(client, 'connectionStateChanged').map((e) => [e.state, e.event]), [['connecting', 'activeLogin'], ['disconnected', 'unauthorized']]);
  }
});

test('renewToken supplies the token of later logins; one refused at a re-login ends reconnection (4001)', async () => {
  const userID = uniqueId('u');
  const client = await loggedIn(server.wsUrl, userID, { token: token(SECRET, userID) });
  const roomID = uniqueId('room');
  await client.createRoom({ roomID, roomName: '' });

  // A good renewed token: the reconnection logs in with it.
  const renewed = token(SECRET, userID, { ttlSeconds: 60 });
  assert.deepEqual(await client.renewToken(renewed), { token: renewed });
  client._debugDropConnection();
  await waitForState(client, 'reconnecting');
  await waitFor(() => seen(client, 'roomStateChanged', roomID).at(-1)?.state === 'connected', 'the room to be rejoined');

  // A bad one, given as the connection is lost (logged in, roomd would
  // refuse it at once and the session keep its token): the next
  // reconnection logs in with it, is refused, and the client stops there.
  let renewal;
  let pending;
  const renewOnce = (c, { state }) => {
    if (state !== 'reconnecting') return;
    c.off('connectionStateChanged', renewOnce);
    renewal = rejectsWith(c.renewToken('expired-or-revoked'), ErrorCode.ConnectionLost);
    pending = rejectsWith(c.queryRoomOnlineMemberCount(roomID), ErrorCode.ConnectionLost);
  };
  client.on('connectionStateChanged', renewOnce);
  client._debugDropConnection();
  await waitForState(client, 'disconnected');
  await Promise.all([renewal, pending]);
  const last = seen(client, 'connectionStateChanged').at(-1);
  assert.equal(last.event, 'unauthorized');
  assert.equal(last.extendedData.code, ErrorCode.Unauthorized);
  assert.equal(last.extendedData.message, 'the token is invalid');
  assert.deepEqual(seen(client, 'roomStateChanged', roomID).map((e) => [e.state, e.event]), [
    ['connecting', 'networkInterrupted'],
    ['connected', 'success'],
    ['connecting', 'networkInterrupted'],
    ['disconnected', 'unauthorized'],
  ]);
});

test('a user at the connection limit is refused with 1006 and 4030, and the client does not retry', async () => {
  const limited = await startRoomd({ args: ['--max-connections-per-user', '1'] });
  try {
    const userID = uniqueId('u');
    const first = await loggedIn(limited.wsUrl, userID);
    const second = record(newClient(limited.wsUrl));
    const error = await rejectsWith(second.login({ userID }), ErrorCode.RateLimited);
    assert.equal(typeof error.retryAfterMs, 'number');
    assert.equal(second.state, 'disconnected');
    assert.deepEqual(seen(second, 'connectionStateChanged').at(-1), {
      state: 'disconnected',
      event: 'tooManyConnections',
      extendedData: { closeCode: 4030, closeReason: 'too many connections for this user' },
    });
    await first.logout();
  } finally {
    await limited.stop();
  }
});
