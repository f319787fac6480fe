// The six ZIM room snippets the README promises, run as written: `zim` is a
// logged-in RoomdClient; where a snippet uses `roomID`, a variable holds a
// fresh id. Their outcomes are observed from outside, without editing them:
// a proxy records the promise of every call, console.log is mocked.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ErrorCode } from '../../roomd.js';
import { startRoomd } from '../support/roomd.js';
import { loggedIn, logoutEveryClient, uniqueId, waitFor } from '../support/client.js';

let server;
before(async () => {
  server = await startRoomd();
});
after(async () => {
  await logoutEveryClient();
  await server?.stop();
});

/** `client` behind a proxy that records how each promise it returns settles. */
function observed(client) {
  const outcomes = [];
  const proxy = new Proxy(client, {
    get(target, property) {
      const value = target[property];
      if (typeof value !== 'function') return value;
      return (...args) => {
        const result = value.apply(target, args);
        if (result instanceof Promise) {
          const outcome = { method: property, settled: false };
          outcomes.push(outcome);
          result.then(
            (value) => Object.assign(outcome, { settled: true, value }),
            (error) => Object.assign(outcome, { settled: true, error }),
          );
        }
        return result;
      };
    },
  });
  return { proxy, outcomes };
}

/** Waits for the `index`-th recorded call to settle and returns its outcome. */
async function outcome(outcomes, index) {
  await waitFor(() => outcomes[index]?.settled, `call ${index} to settle`);
  return outcomes[index];
}

test('the ZIM snippets run unchanged', async (t) => {
  const client = await loggedIn(server.wsUrl);
  const peer = await loggedIn(server.wsUrl);
  const { proxy: zim, outcomes } = observed(client);
  const log = t.mock.method(console, 'log', () => {});
  const logged = () => log.mock.calls.map((call) => call.arguments);
  const peerInfo = { userID: peer.userInfo.userID, userName: peer.userInfo.userName };

  // Snippets 5 and 6: member events.
  zim.on('roomMemberJoined', function (zim, { roomID, memberList }) { console.log(roomID, memberList); });
  zim.on('roomMemberLeft', function (zim, { roomID, memberList }) { console.log(roomID, memberList); });

  // Snippet 1, literally: roomd refuses the empty roomID (1003) and the catch runs.
  zim.createRoom({ roomID: '', roomName: '' }).then(function ({ roomInfo }) { /* ok */ }).catch(function (err) { /* failed */ });
  const refused = await outcome(outcomes, 0);
  assert.equal(refused.method, 'createRoom');
  assert.equal(refused.error?.code, ErrorCode.InvalidArgument);

  // Snippet 1 with an id: the then runs.
  {
    const roomID = uniqueId('created');
    zim.createRoom({ roomID: roomID, roomName: '' }).then(function ({ roomInfo }) { /* ok */ }).catch(function (err) { /* failed */ });
    assert.deepEqual((await outcome(outcomes, 1)).value, { roomInfo: { roomID, roomName: '' }, firstSeq: 1 });
  }

  // Snippet 3.
  const roomID = uniqueId('entered');
  zim.enterRoom({ roomID: roomID, roomName: '' }).then(function ({ roomInfo }) {});
  assert.deepEqual((await outcome(outcomes, 2)).value, { roomInfo: { roomID, roomName: '' }, firstSeq: 1 });

  // Snippet 2, in a room the peer made.
  {
    const roomID = uniqueId('joined');
    await peer.createRoom({ roomID, roomName: 'Peer' });
    zim.joinRoom(roomID).then(function ({ roomInfo }) {});
    assert.deepEqual((await outcome(outcomes, 3)).value, { roomInfo: { roomID, roomName: 'Peer' }, firstSeq: 1 });
  }

  // The member events reach snippets 5 and 6.
  await peer.joinRoom(roomID);
  await peer.leaveRoom(roomID);
  await waitFor(() => logged().length === 2, 'both member events to be logged');
  assert.deepEqual(logged(), [
    [roomID, [peerInfo]],
    [roomID, [peerInfo]],
  ]);
  assert.deepEqual(client.seen.filter((e) => e.event.startsWith('roomMember')).map((e) => e.event), ['roomMemberJoined', 'roomMemberLeft']);

  // Snippet 4.
  zim.leaveRoom(roomID).then(function ({ roomID }) {});
  assert.deepEqual((await outcome(outcomes, 4)).value, { roomID });
  await client.logout();
  await peer.logout();
});
