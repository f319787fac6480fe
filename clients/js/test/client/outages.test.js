// The world changing while the client is away: roomd's database unreachable
// when it rejoins, its room destroyed, the room's stream reset. The network
// is cut with a TCP relay (test/support/proxy.js) between real parties; the
// database is changed with psql (the PostgreSQL client must be installed).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { ErrorCode } from '../../roomd.js';
import { startProxy } from '../support/proxy.js';
import { roomdPool } from '../support/roomd.js';
import {
  eventually,
  loggedIn,
  logoutAll,
  logoutEveryClient,
  received,
  replyTo,
  seen,
  sentOps,
  sql,
  uniqueId,
  waitFor,
  waitForState,
  wireRecorder,
} from '../support/client.js';

const roomds = roomdPool();
const proxies = [];

const start = roomds.start;

async function proxy(port, host) {
  const relay = await startProxy(port, host);
  proxies.push(relay);
  return relay;
}

after(async () => {
  await logoutEveryClient();
  await roomds.killAll();
  await Promise.all(proxies.map((relay) => relay.close()));
});

/** A roomd reached through a relay that the test can cut: `{server, relay, url}`. */
async function behindRelay(options) {
  const server = await start(options);
  const relay = await proxy(server.port);
  return { server, relay, url: `ws://127.0.0.1:${relay.port}/v1/ws` };
}

/** Member events seen by `client` after its `since`-th recorded event. */
function churn(client, since) {
  return client.seen.slice(since).filter((e) => e.event === 'roomMemberJoined' || e.event === 'roomMemberLeft');
}

const roomStates = (client, roomID) => seen(client, 'roomStateChanged', roomID).map((e) => [e.state, e.event]);

test('a rejoin refused for a passing reason (database unreachable, 1008) is tried again until it passes', async () => {
  // roomd reaches PostgreSQL through a relay, so its database can be cut.
  // The database may be on TCP or, as in `cargo test`'s throwaway cluster,
  // on a Unix socket named by the URL's `host` parameter.
  const database = new URL(process.env.ROOMD_TEST_DATABASE_URL);
  const databasePort = Number(database.port || 5432);
  const socketDir = database.searchParams.get('host');
  const databaseRelay = socketDir?.startsWith('/')
    ? await proxy(databasePort, `${socketDir}/.s.PGSQL.${databasePort}`)
    : await proxy(databasePort, database.hostname);
  const relayed = new URL(database);
  relayed.searchParams.delete('host');
  relayed.hostname = '127.0.0.1';
  relayed.port = String(databaseRelay.port);
  const server = await start({ databaseUrl: relayed.href });
  const wire = wireRecorder();
  const [client, peer] = await Promise.all([loggedIn(server.wsUrl, uniqueId('u'), { WebSocket: wire.WebSocket }), loggedIn(server.wsUrl)]);
  const roomID = uniqueId('room');
  await client.createRoom({ roomID, roomName: '' });
  await peer.joinRoom(roomID);
  await waitFor(() => seen(client, 'roomMemberJoined', roomID).length === 1, 'the peer to join');
  const peerSince = peer.seen.length;

  databaseRelay.cut();
  client._debugDropConnection();
  // Logging in needs no database; rejoining does, and is refused.
  const refused = () => wire.connections.flatMap((c) => sentOps(c, 'joinRoom').map((join) => replyTo(c, join))).filter((reply) => reply?.ok === false);
  await waitFor(() => refused().length >= 1, 'a rejoin to be refused');
  assert.deepEqual(refused()[0].error, { code: ErrorCode.Unavailable, reason: 'unavailable', message: 'database unavailable; nothing was stored, retry later' });
  await waitFor(
    () => seen(client, 'connectionStateChanged').some((e) => e.extendedData.closeReason === `rejoining ${roomID} failed: database unavailable; nothing was stored, retry later`),
    'the client to give up that connection',
  );
  databaseRelay.mend();

  await waitFor(() => seen(client, 'roomStateChanged', roomID).at(-1)?.state === 'connected', 'the room to be rejoined');
  assert.equal(client.state, 'connected');
  // Each refusal put the room back to connecting; it was never given up.
  const states = roomStates(client, roomID);
  assert.ok(states.length >= 3, `expected a refused rejoin between the drop and the rejoin: ${JSON.stringify(states)}`);
  assert.deepEqual(states.slice(0, -1), states.slice(0, -1).map(() => ['connecting', 'networkInterrupted']));
  assert.deepEqual(states.at(-1), ['connected', 'success']);

  // The room works again, and the peer never saw the user leave (it stayed a member throughout).
  const { message } = await peer.sendRoomMessage({ type: 'text', message: 'back' }, roomID);
  await waitFor(() => received(client, roomID).length === 1, 'the message');
  assert.deepEqual(received(client, roomID), [message]);
  assert.deepEqual(churn(peer, peerSince), []);
  await logoutAll(client, peer);
});

test('a room destroyed while the client was away is reported as roomNotExist and not rejoined again', async () => {
  // The user leaves at once when its connection drops, and an empty room is destroyed at once.
  const { server, relay, url } = await behindRelay({ reconnectGrace: '0s', args: ['--room-destroy-delay', '0'] });
  const wire = wireRecorder();
  const [client, peer] = await Promise.all([loggedIn(url, uniqueId('u'), { WebSocket: wire.WebSocket }), loggedIn(server.wsUrl)]);
  const [kept, gone] = [uniqueId('kept'), uniqueId('gone')];
  await peer.createRoom({ roomID: kept, roomName: '' });
  await client.joinRoom(kept);
  await client.createRoom({ roomID: gone, roomName: '' });

  relay.cut();
  await waitForState(client, 'reconnecting');
  // Alone in `gone`, the user's departure empties it and roomd destroys it.
  await eventually(async () => {
    const response = await fetch(`${server.httpUrl}/v1/rooms/${encodeURIComponent(gone)}`);
    assert.equal(response.status, 404);
  }, 'the room to be destroyed');
  relay.mend();

  await waitFor(() => seen(client, 'roomStateChanged', gone).at(-1)?.state === 'disconnected', 'the gone room to be reported');
  await waitFor(() => seen(client, 'roomStateChanged', kept).at(-1)?.state === 'connected', 'the kept room to be rejoined');
  assert.deepEqual(seen(client, 'roomStateChanged', gone), [
    { roomID: gone, state: 'connecting', event: 'networkInterrupted', extendedData: { closeCode: 1006, closeReason: '' } },
    {
      roomID: gone,
      state: 'disconnected',
      event: 'roomNotExist',
      extendedData: { code: ErrorCode.RoomNotFound, reason: 'room_not_found', message: `room '${gone}' does not exist` },
    },
  ]);
  assert.deepEqual(roomStates(client, kept), [['connecting', 'networkInterrupted'], ['connected', 'success']]);

  // After the next drop only the kept room is rejoined.
  const since = wire.connections.length;
  client._debugDropConnection();
  await waitFor(() => roomStates(client, kept).length === 4, 'the kept room to be rejoined again');
  assert.deepEqual(roomStates(client, kept).slice(2), [['connecting', 'networkInterrupted'], ['connected', 'success']]);
  const rejoins = wire.connections.slice(since).flatMap((c) => sentOps(c, 'joinRoom').map((join) => join.roomID));
  assert.deepEqual(rejoins, [kept]);
  assert.equal(seen(client, 'roomStateChanged', gone).length, 2);
  await logoutAll(client, peer);
});

test('a room destroyed and re-created while the client was away is rejoined in its new life (firstSeq)', async () => {
  // The user leaves at once when its connection drops, and an empty room is destroyed at once.
  const { server, relay, url } = await behindRelay({ reconnectGrace: '0s', args: ['--room-destroy-delay', '0'] });
  const wire = wireRecorder();
  const [client, peer] = await Promise.all([loggedIn(url, uniqueId('u'), { WebSocket: wire.WebSocket }), loggedIn(server.wsUrl)]);
  const roomID = uniqueId('room');
  await peer.createRoom({ roomID, roomName: '' });
  assert.equal((await client.joinRoom(roomID)).firstSeq, 1);
  await peer.sendRoomMessage({ type: 'text', message: 'old 1' }, roomID);
  await waitFor(() => received(client, roomID).length === 1, 'the first message');

  relay.cut();
  await waitForState(client, 'reconnecting');
  await eventually(async () => assert.equal((await peer.queryRoomOnlineMemberCount(roomID)).count, 1), 'the client to leave the room');
  // A message the client is not there for, then the room's end and a new life.
  await peer.sendRoomMessage({ type: 'text', message: 'old 2' }, roomID);
  await peer.leaveRoom(roomID);
  const created = await eventually(() => peer.createRoom({ roomID, roomName: 'again' }), 'the room to be destroyed');
  assert.equal(created.firstSeq, 3);
  await peer.sendRoomMessage({ type: 'text', message: 'new 3' }, roomID);
  relay.mend();

  // The rejoin from seq 1 gets the new life only: 'old 2' was never the client's.
  await waitFor(() => received(client, roomID).length === 2, 'the new life\'s message');
  const [rejoin] = sentOps(wire.connections.at(-1), 'joinRoom');
  assert.equal(rejoin.sinceSeq, 1);
  assert.equal(replyTo(wire.connections.at(-1), rejoin).firstSeq, 3);
  assert.deepEqual(roomStates(client, roomID), [['connecting', 'networkInterrupted'], ['connected', 'success']]);

  // The client now stands at seq 3 (not stuck at 1 below the gap): the next rejoin says so.
  client._debugDropConnection();
  await waitFor(() => roomStates(client, roomID).length === 4, 'the second rejoin');
  assert.equal(sentOps(wire.connections.at(-1), 'joinRoom')[0].sinceSeq, 3);
  await peer.sendRoomMessage({ type: 'text', message: 'new 4' }, roomID);
  await waitFor(() => received(client, roomID).length === 3, 'the next message');
  assert.deepEqual(received(client, roomID).map((m) => [m.seq, m.message]), [[1, 'old 1'], [3, 'new 3'], [4, 'new 4']]);
  await logoutAll(client, peer);
});

test('a room whose stream went backwards (roomd database reset) is followed from its new start', async () => {
  const { server, relay, url } = await behindRelay();
  const wire = wireRecorder();
  const [client, peer] = await Promise.all([loggedIn(url, uniqueId('u'), { WebSocket: wire.WebSocket }), loggedIn(server.wsUrl)]);
  const roomID = uniqueId('room');
  await peer.createRoom({ roomID, roomName: '' });
  await client.joinRoom(roomID);
  for (const text of ['m1', 'm2', 'm3']) await peer.sendRoomMessage({ type: 'text', message: text }, roomID);
  await waitFor(() => received(client, roomID).length === 3, 'the first three messages');

  relay.cut();
  await waitForState(client, 'reconnecting');
  // The room's messages are lost and its stream starts over, as after
  // restoring an old backup of roomd's database.
  await sql(`delete from messages where room_id = '${roomID}'; update room_streams set last_seq = 0 where room_id = '${roomID}'`);
  relay.mend();

  await waitFor(() => seen(client, 'roomStateChanged', roomID).at(-1)?.state === 'connected', 'the rejoin');
  const [rejoin] = sentOps(wire.connections.at(-1), 'joinRoom');
  assert.equal(rejoin.sinceSeq, 3);
  assert.equal(replyTo(wire.connections.at(-1), rejoin).lastSeq, 0);
  const { message } = await peer.sendRoomMessage({ type: 'text', message: 'new stream' }, roomID);
  assert.equal(message.seq, 1);
  await waitFor(() => received(client, roomID).length === 4, 'the message of the new stream');
  assert.deepEqual(received(client, roomID).map((m) => [m.seq, m.message]), [[1, 'm1'], [2, 'm2'], [3, 'm3'], [1, 'new stream']]);
  await logoutAll(client, peer);
});
