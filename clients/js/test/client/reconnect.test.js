// Reconnection after a dropped connection: every room resumed from its last
// seq, every message seen once, pending requests retried or settled.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';

import { ErrorCode } from '../../roomd.js';
import { startRoomd } from '../support/roomd.js';
import { loggedIn, logoutAll, logoutEveryClient, newClient, received, record, rejectsWith, seen, storedMessages, uniqueId, waitFor, waitForState } from '../support/client.js';

let server;
before(async () => {
  server = await startRoomd({ reconnectGrace: '10s' });
});
after(async () => {
  await logoutEveryClient();
  await server?.stop();
});

/** Asserts seqs strictly ascending by one, from `from`. */
function assertContiguous(seqs, from, what) {
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => from + i), `${what}: not contiguous`);
}

test('a drop mid-stream: the member sees every message once, its own pending sends are stored once, nobody sees churn', async () => {
  const [member, sender, observer] = await Promise.all([loggedIn(server.wsUrl), loggedIn(server.wsUrl), loggedIn(server.wsUrl)]);
  const roomID = uniqueId('room');
  await sender.createRoom({ roomID, roomName: '' });
  await member.joinRoom(roomID);
  await observer.joinRoom(roomID);
  await waitFor(() => seen(sender, 'roomMemberJoined', roomID).length === 2, 'the joins to be announced');
  const churnBefore = { sender: sender.seen.length, observer: observer.seen.length };

  // When 50 of the sender's messages have arrived, the member fires 20 sends
  // of its own and its connection dies with them on the wire.
  let ownSends = null;
  let reconnectedQuery = null;
  member.on('roomMessageReceived', () => {
    if (ownSends || received(member, roomID).length < 50) return;
    ownSends = Array.from({ length: 20 }, (_, i) => member.sendRoomMessage({ type: 'text', message: `own ${i}` }, roomID));
    assert.equal(member._debugDropConnection(), true);
  });
  member.on('connectionStateChanged', (client, { state }) => {
    // A request made while reconnecting waits for the new connection.
    if (state === 'reconnecting') reconnectedQuery = client.queryRoomOnlineMemberCount(roomID);
  });

  const total = 200;
  const sent = await Promise.all(Array.from({ length: total }, (_, i) => sender.sendRoomMessage({ type: 'text', message: `m${i}` }, roomID)));
  await waitFor(() => ownSends, 'the drop');
  const own = await Promise.all(ownSends);
  assert.deepEqual(await reconnectedQuery, { roomID, count: 3 });

  const senderSeqs = sent.map((r) => r.message.seq);
  await waitFor(() => received(member, roomID).length >= total, `the member to receive ${total} messages (has ${received(member, roomID).length})`);
  await waitFor(() => received(observer, roomID).length >= total + 20, 'the observer to receive every message');

  // The member: the sender's messages exactly once each, in seq order, and
  // none of its own (they came back as sendRoomMessage results).
  const memberSeqs = received(member, roomID).map((m) => m.seq);
  assert.deepEqual(memberSeqs, [...senderSeqs].sort((x, y) => x - y));
  const ownSeqs = own.map((r) => r.message.seq);
  assert.deepEqual(own.map((r) => r.message.message), Array.from({ length: 20 }, (_, i) => `own ${i}`));
  assertContiguous([...memberSeqs, ...ownSeqs].sort((x, y) => x - y), 1, 'received and sent together');

  // Stored once each: 220 messages, seq 1..220.
  const stored = await storedMessages(server.httpUrl, roomID);
  assertContiguous(stored.map((m) => m.seq), 1, 'stored');
  assert.equal(stored.length, total + 20);
  assert.equal(stored.filter((m) => m.senderUserID === member.userInfo.userID).length, 20);

  // The observer saw each message once, in order.
  assertContiguous(received(observer, roomID).map((m) => m.seq), 1, 'observer');

  // The member's view of the outage, and nobody else's.
  assert.deepEqual(seen(member, 'connectionStateChanged').slice(-2).map((e) => [e.state, e.event]), [['reconnecting', 'loginInterrupted'], ['connected', 'success']]);
  assert.deepEqual(seen(member, 'roomStateChanged', roomID).map((e) => [e.state, e.event]), [['connecting', 'networkInterrupted'], ['connected', 'success']]);
  const churn = (client, since) => client.seen.slice(since).filter((e) => e.event === 'roomMemberJoined' || e.event === 'roomMemberLeft');
  assert.deepEqual(churn(sender, churnBefore.sender), []);
  assert.deepEqual(churn(observer, churnBefore.observer), []);
  await logoutAll(member, sender, observer);
});

test('a drop with other requests in flight: createRoom rejects, leaveRoom counts as done, queries and joins are retried', async () => {
  const [client, other] = await Promise.all([loggedIn(server.wsUrl), loggedIn(server.wsUrl)]);
  const [kept, left, joined] = [uniqueId('kept'), uniqueId('left'), uniqueId('joined')];
  await client.createRoom({ roomID: kept, roomName: '' });
  await client.createRoom({ roomID: left, roomName: '' });
  await other.createRoom({ roomID: joined, roomName: 'J' });

  const create = rejectsWith(client.createRoom({ roomID: uniqueId('new'), roomName: '' }), ErrorCode.ConnectionLost);
  const leave = client.leaveRoom(left);
  const join = client.joinRoom(joined);
  const history = client.queryHistoryMessage(kept);
  client._debugDropConnection();

  const lost = await create;
  assert.equal(lost.reason, 'connection_lost');
  assert.deepEqual(await leave, { roomID: left });
  assert.deepEqual(await join, { roomInfo: { roomID: joined, roomName: 'J' }, firstSeq: 1 });
  assert.deepEqual(await history, { roomID: kept, messageList: [], hasMore: false });
  await waitForState(client, 'connected');
  // Only the kept room was rejoined; the left one is not this connection's.
  assert.deepEqual(seen(client, 'roomStateChanged').filter((e) => e.state === 'connected').map((e) => e.roomID), [kept]);
  await rejectsWith(client.sendRoomMessage({ type: 'text', message: 'x' }, left), ErrorCode.NotInRoom);
  await client.sendRoomMessage({ type: 'text', message: 'x' }, joined);
  await waitFor(() => received(other, joined).length === 1, 'the message in the joined room');
  await logoutAll(client, other);
});

test('with reconnection disabled a drop disconnects: rooms and pending requests are told', async () => {
  const client = await loggedIn(server.wsUrl, uniqueId('u'), { reconnect: { enabled: false } });
  const roomID = uniqueId('room');
  await client.createRoom({ roomID, roomName: '' });
  const pending = rejectsWith(client.queryRoomOnlineMemberCount(roomID), ErrorCode.ConnectionLost);
  client._debugDropConnection();
  await pending;
  assert.equal(client.state, 'disconnected');
  assert.deepEqual(seen(client, 'connectionStateChanged').at(-1), { state: 'disconnected', event: 'loginInterrupted', extendedData: { closeCode: 1006, closeReason: '' } });
  assert.deepEqual(seen(client, 'roomStateChanged', roomID).map((e) => [e.state, e.event]), [['disconnected', 'loginInterrupted']]);
  await rejectsWith(client.joinRoom(roomID), ErrorCode.NotConnected);
  // It can log in again by hand.
  await client.login({ userID: uniqueId('u') });
  await client.logout();
});

test('with only the standard WebSocket surface (as in browsers) it works, and the test drop closes with 4000', async () => {
  const opened = [];
  /** A real `ws` socket showing what browsers have and nothing else (no terminate, no EventEmitter). */
  class StandardWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    CONNECTING = 0;
    OPEN = 1;
    CLOSING = 2;
    CLOSED = 3;
    #ws;
    constructor(url) {
      this.#ws = new WebSocket(url);
      opened.push(this);
    }
    get readyState() {
      return this.#ws.readyState;
    }
    send(data) {
      this.#ws.send(data);
    }
    close(code, reason) {
      this.#ws.close(code, reason);
    }
    addEventListener(type, listener) {
      this.#ws.addEventListener(type, listener);
    }
    removeEventListener(type, listener) {
      this.#ws.removeEventListener(type, listener);
    }
  }
  const client = record(newClient(server.wsUrl, { WebSocket: StandardWebSocket }));
  const peer = await loggedIn(server.wsUrl);
  await client.login({ userID: uniqueId('u') });
  const roomID = uniqueId('room');
  await client.createRoom({ roomID, roomName: '' });
  await peer.joinRoom(roomID);

  assert.equal(client._debugDropConnection(), true);
  await waitForState(client, 'reconnecting');
  assert.equal(seen(client, 'connectionStateChanged').at(-1).extendedData.closeCode, 4000);
  await waitForState(client, 'connected');
  await waitFor(() => seen(client, 'roomStateChanged', roomID).at(-1)?.state === 'connected', 'the rejoin');
  assert.equal(opened.length, 2);
  // Both ways over the new connection.
  const { message } = await peer.sendRoomMessage({ type: 'text', message: 'to the browser' }, roomID);
  await waitFor(() => received(client, roomID).length === 1, 'the message');
  assert.deepEqual(received(client, roomID), [message]);
  assert.equal((await client.sendRoomMessage({ type: 'text', message: 'from the browser' }, roomID)).message.seq, 2);
  await logoutAll(client, peer);
  assert.equal(client._debugDropConnection(), false);
});
