// A real roomd that stops answering (frozen with SIGSTOP), refuses a login
// for its rate, or closes a connection for a frame above its size limit.
// Each test has its own roomd, so freezing one or tightening its limits
// touches no other test. Freezing reads /proc, so these tests need Linux.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { after, test } from 'node:test';

import { ErrorCode } from '../../roomd.js';
import { roomdPool } from '../support/roomd.js';
import {
  loggedIn,
  logoutAll,
  logoutEveryClient,
  newClient,
  record,
  rejectsWith,
  replyTo,
  seen,
  sentOps,
  storedMessages,
  uniqueId,
  waitFor,
  waitForState,
  wireRecorder,
} from '../support/client.js';

const roomds = roomdPool();
const frozen = new Set();

const start = roomds.start;

/** Whether every thread of `pid` is stopped (Linux: state T in /proc). */
function stopped(pid) {
  const threads = readdirSync(`/proc/${pid}/task`);
  return threads.every((tid) => /^\d+ \(.*\) T /.test(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')));
}

/**
 * Stops the roomd process (SIGSTOP): its sockets stay open, nothing is read
 * or answered. Resolves once every thread has stopped (the signal reaches a
 * thread running on another CPU a moment later).
 */
async function freeze(server) {
  frozen.add(server);
  process.kill(server.process.pid, 'SIGSTOP');
  await waitFor(() => stopped(server.process.pid), 'roomd to stop', 2000);
}

/** Lets a frozen roomd run again (SIGCONT); it then reads what arrived meanwhile. */
function thaw(server) {
  if (frozen.delete(server)) process.kill(server.process.pid, 'SIGCONT');
}

// Never leave a stopped process behind, whatever happened.
process.on('exit', () => {
  for (const server of frozen) {
    try {
      process.kill(server.process.pid, 'SIGCONT');
      process.kill(server.process.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});
after(async () => {
  for (const server of [...frozen]) thaw(server);
  await logoutEveryClient();
  await roomds.killAll();
});

/** The pings `connection` sent that roomd answered. */
function answeredPings(connection) {
  return sentOps(connection, 'ping').filter((ping) => replyTo(connection, ping)?.ok === true).length;
}

// A client that never times out would wait for the frozen server forever.
test('a request without a reply rejects with RequestTimeout; its late reply is ignored', { timeout: 10_000 }, async () => {
  const server = await start();
  const wire = wireRecorder();
  const logged = [];
  const logger = {
    debug: (message, details) => logged.push({ message, details }),
    warn: (message, details) => logged.push({ message, details }),
  };
  const client = newClient(server.wsUrl, { WebSocket: wire.WebSocket, requestTimeoutMs: 500, logger });
  const userID = uniqueId('u');
  await client.login({ userID });
  const roomID = uniqueId('room');
  await client.createRoom({ roomID, roomName: '' });

  await freeze(server);
  let error;
  let next;
  try {
    error = await rejectsWith(client.queryRoomOnlineMemberCount(roomID), ErrorCode.RequestTimeout);
    // Sent after the timeout, still to the frozen server: once thawed, roomd
    // answers the timed-out request first, then this one.
    next = client.queryRoomMemberList(roomID);
  } finally {
    thaw(server);
  }
  assert.equal(error.reason, 'request_timeout');
  assert.equal(error.message, 'no reply to queryRoomOnlineMemberCount within 500 ms');
  assert.deepEqual(await next, { roomID, memberList: [{ userID, userName: '' }], nextFlag: '' });

  const [connection] = wire.connections;
  const [timedOut] = sentOps(connection, 'queryRoomOnlineMemberCount');
  const late = logged.filter((entry) => entry.message === '[roomd] reply to no pending request');
  assert.deepEqual(late.map((entry) => entry.details), [{ id: timedOut.id, ok: true, roomID, count: 1 }]);
  const order = (frame) => connection.received.indexOf(replyTo(connection, frame));
  assert.ok(order(timedOut) < order(sentOps(connection, 'queryRoomMemberList')[0]), 'the late reply came first');
  assert.equal(client.state, 'connected');
  assert.equal(wire.connections.length, 1);
  await client.logout();
});

test('the heartbeat pings a quiet server and drops a silent one, then reconnects', async () => {
  const server = await start();
  const wire = wireRecorder();
  const client = record(newClient(server.wsUrl, { WebSocket: wire.WebSocket, heartbeatIntervalMs: 50, requestTimeoutMs: 500 }));
  await client.login({ userID: uniqueId('u') });
  // Quiet but answering: pinged, and kept.
  await waitFor(() => answeredPings(wire.connections[0]) >= 3, 'three answered pings');
  assert.equal(client.state, 'connected');

  await freeze(server);
  try {
    await waitForState(client, 'reconnecting');
  } finally {
    thaw(server);
  }
  assert.deepEqual(seen(client, 'connectionStateChanged').at(-1), {
    state: 'reconnecting',
    event: 'loginInterrupted',
    extendedData: { closeCode: 4000, closeReason: 'no reply to ping within 500 ms' },
  });
  await waitForState(client, 'connected');
  const current = wire.connections.at(-1);
  await waitFor(() => answeredPings(current) >= 3, 'three answered pings on the new connection');
  assert.equal(client.state, 'connected');
  assert.deepEqual(seen(client, 'connectionStateChanged').map((e) => [e.state, e.event]), [
    ['connecting', 'activeLogin'],
    ['connected', 'success'],
    ['reconnecting', 'loginInterrupted'],
    ['connected', 'success'],
  ]);
  await client.logout();
});

test('a rate-limited login is tried again on the same connection after retryAfterMs', async () => {
  const server = await start({ args: ['--logins-per-second', '1'] });
  // The first login from this address takes the second's only one.
  const first = await loggedIn(server.wsUrl);
  const wire = wireRecorder();
  const client = record(newClient(server.wsUrl, { WebSocket: wire.WebSocket }));
  const userID = uniqueId('u');
  assert.deepEqual(await client.login({ userID }), { userInfo: { userID, userName: '' } });

  assert.equal(wire.connections.length, 1, 'all on one connection');
  const [connection] = wire.connections;
  const logins = sentOps(connection, 'login');
  assert.ok(logins.length >= 2, `expected a refused login first, got ${logins.length} login(s)`);
  const replies = logins.map((login) => replyTo(connection, login));
  replies.slice(0, -1).forEach((refusal, i) => {
    assert.equal(refusal.ok, false);
    assert.equal(refusal.error.code, ErrorCode.RateLimited);
    assert.equal(refusal.error.reason, 'rate_limited');
    assert.ok(refusal.error.retryAfterMs > 0, `retryAfterMs ${refusal.error.retryAfterMs}`);
    // Timers may fire a millisecond early by the wall clock.
    const waited = logins[i + 1].at - refusal.at;
    assert.ok(waited >= refusal.error.retryAfterMs - 2, `tried again after ${waited} ms, retryAfterMs ${refusal.error.retryAfterMs}`);
  });
  assert.equal(replies.at(-1).ok, true);
  assert.deepEqual(seen(client, 'connectionStateChanged').map((e) => e.state), ['connecting', 'connected']);
  await logoutAll(first, client);
});

test('a request that is followed by a close every time it is sent is given up after three sends', async () => {
  // roomd closes a connection with 1009 for a frame above --max-frame-bytes.
  const server = await start({ args: ['--max-frame-bytes', '2048'] });
  const wire = wireRecorder();
  const client = record(newClient(server.wsUrl, { WebSocket: wire.WebSocket }));
  await client.login({ userID: uniqueId('u') });
  const roomID = uniqueId('room');
  await client.createRoom({ roomID, roomName: '' });

  const error = await rejectsWith(client.sendRoomMessage({ type: 'text', message: 'x'.repeat(3000) }, roomID), ErrorCode.ConnectionLost);
  assert.match(error.message, /sendRoomMessage/);
  const carriers = wire.connections.filter((connection) => sentOps(connection, 'sendRoomMessage').length > 0);
  assert.equal(carriers.length, 3, 'sent three times, once per connection');
  for (const connection of carriers) {
    assert.equal(sentOps(connection, 'sendRoomMessage').length, 1);
    assert.equal(connection.closed?.code, 1009);
  }
  // The same clientMessageID every time, so a send that was stored is not stored again.
  assert.equal(new Set(carriers.map((connection) => sentOps(connection, 'sendRoomMessage')[0].clientMessageID)).size, 1);

  // The client carries on: reconnected, the room rejoined, nothing stored.
  await waitForState(client, 'connected');
  await waitFor(() => seen(client, 'roomStateChanged', roomID).at(-1)?.state === 'connected', 'the room to be rejoined');
  assert.deepEqual(await storedMessages(server.httpUrl, roomID), []);
  assert.equal((await client.sendRoomMessage({ type: 'text', message: 'small' }, roomID)).message.seq, 1);
  await client.logout();
});
