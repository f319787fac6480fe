// roomd going away: killed and restarted (same port, same node id), shut
// down gracefully, or gone for good.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { ErrorCode } from '../../roomd.js';
import { roomdPool } from '../support/roomd.js';
import { loggedIn, logoutAll, logoutEveryClient, received, rejectsWith, seen, storedMessages, uniqueId, waitFor, waitForState } from '../support/client.js';

const roomds = roomdPool({ reconnectGrace: '10s' });
const start = roomds.start;
after(async () => {
  await logoutEveryClient();
  await roomds.killAll();
});

/** Member events seen by `client` after its `since`-th recorded event. */
function churn(client, since) {
  return client.seen.slice(since).filter((e) => e.event === 'roomMemberJoined' || e.event === 'roomMemberLeft');
}

test('killed with sends on the wire and restarted: every send resolves and is stored once', async () => {
  const first = await start();
  const [member, peer] = await Promise.all([loggedIn(first.wsUrl), loggedIn(first.wsUrl)]);
  const roomID = uniqueId('room');
  await member.createRoom({ roomID, roomName: '' });
  await peer.joinRoom(roomID);
  await waitFor(() => seen(member, 'roomMemberJoined', roomID).length === 1, 'the join');
  const peerSince = peer.seen.length;

  // Killed once the peer has received a few: by then some sends are
  // answered, some stored with their reply lost, some not read yet.
  const count = 100;
  let killed;
  peer.on('roomMessageReceived', () => {
    if (!killed && received(peer, roomID).length >= 5) killed = first.kill();
  });
  const sends = Array.from({ length: count }, (_, i) => member.sendRoomMessage({ type: 'text', message: `p${i}` }, roomID));
  await waitFor(() => killed, 'the kill');
  await killed;
  await waitForState(member, 'reconnecting');
  const second = await start({ port: first.port, nodeId: first.nodeId });

  const results = await Promise.all(sends);
  const stored = await storedMessages(second.httpUrl, roomID);
  assert.deepEqual(stored.map((m) => m.message), Array.from({ length: count }, (_, i) => `p${i}`), 'each stored once, in order');
  assert.deepEqual(stored.map((m) => m.seq), Array.from({ length: count }, (_, i) => i + 1));
  assert.deepEqual(results.map((r) => r.message), stored);

  await waitFor(() => received(peer, roomID).length >= count, 'the peer to receive every message');
  assert.deepEqual(received(peer, roomID), stored, 'the peer saw each message once');
  assert.deepEqual(received(member, roomID), [], 'the member saw its own messages only as results');
  assert.deepEqual(seen(member, 'roomStateChanged', roomID).map((e) => [e.state, e.event]), [['connecting', 'networkInterrupted'], ['connected', 'success']]);
  assert.deepEqual(churn(peer, peerSince), []);
  await logoutAll(member, peer);
});

test('a graceful shutdown is announced per room; after the restart the rooms resume without churn', async () => {
  const first = await start();
  const [member, peer] = await Promise.all([loggedIn(first.wsUrl), loggedIn(first.wsUrl)]);
  const rooms = [uniqueId('room'), uniqueId('room')];
  for (const roomID of rooms) {
    await member.createRoom({ roomID, roomName: '' });
    await peer.joinRoom(roomID);
  }
  await waitFor(() => seen(member, 'roomMemberJoined').length === 2, 'the joins');
  const since = { member: member.seen.length, peer: peer.seen.length };

  await first.stop();
  await waitForState(member, 'reconnecting');
  for (const roomID of rooms) {
    assert.deepEqual(seen(member, 'roomStateChanged', roomID), [
      { roomID, state: 'disconnected', event: 'serverShutdown', extendedData: {} },
      { roomID, state: 'connecting', event: 'networkInterrupted', extendedData: { closeCode: 1001, closeReason: 'server shutting down' } },
    ]);
  }
  assert.deepEqual(seen(member, 'connectionStateChanged').at(-1), {
    state: 'reconnecting',
    event: 'serverShutdown',
    extendedData: { closeCode: 1001, closeReason: 'server shutting down' },
  });
  // Messages sent meanwhile are on their way, not lost.
  const whileDown = peer.sendRoomMessage({ type: 'text', message: 'while down' }, rooms[0]);

  await start({ port: first.port, nodeId: first.nodeId });
  await waitForState(member, 'connected');
  await waitFor(() => rooms.every((roomID) => seen(member, 'roomStateChanged', roomID).length === 3), 'both rooms to be rejoined');
  for (const roomID of rooms) {
    assert.deepEqual(seen(member, 'roomStateChanged', roomID)[2], { roomID, state: 'connected', event: 'success', extendedData: {} });
  }
  assert.equal((await whileDown).message.seq, 1);
  await waitFor(() => received(member, rooms[0]).length === 1, 'the message sent while down');
  assert.deepEqual(churn(member, since.member), []);
  assert.deepEqual(churn(peer, since.peer), []);
  await logoutAll(member, peer);
});

test('gone for good: after maxAttempts the client gives up and says so', async () => {
  const server = await start();
  const client = await loggedIn(server.wsUrl, uniqueId('u'), { reconnect: { initialDelayMs: 10, maxDelayMs: 20, maxAttempts: 3 } });
  const roomID = uniqueId('room');
  await client.createRoom({ roomID, roomName: '' });
  await server.kill();
  await waitForState(client, 'reconnecting');
  const pending = rejectsWith(client.sendRoomMessage({ type: 'text', message: 'never' }, roomID), ErrorCode.ConnectionLost);
  await waitForState(client, 'disconnected');
  await pending;
  const last = seen(client, 'connectionStateChanged').at(-1);
  assert.equal(last.event, 'reconnectFailed');
  assert.equal(last.extendedData.attempts, 3);
  assert.deepEqual(seen(client, 'roomStateChanged', roomID).map((e) => [e.state, e.event]), [['connecting', 'networkInterrupted'], ['disconnected', 'reconnectFailed']]);
});
