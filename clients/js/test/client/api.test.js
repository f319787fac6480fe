// Every method and event of the client against a real roomd (open mode).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';

import RoomdClientDefault, { ErrorCode, RoomdClient, RoomdError, create } from '../../roomd.js';
import { startRoomd } from '../support/roomd.js';
import { eventually, loggedIn, logoutEveryClient, logoutAll, newClient, received, record, rejectsWith, replyTo, seen, sentOps, uniqueId, waitFor, wireRecorder } from '../support/client.js';

let server;
before(async () => {
  server = await startRoomd();
});
after(async () => {
  await logoutEveryClient();
  await server?.stop();
});

describe('construction', () => {
  test('create() and the default export make RoomdClients', () => {
    assert.equal(RoomdClientDefault, RoomdClient);
    const client = create('ws://127.0.0.1:1/v1/ws', { WebSocket });
    assert.ok(client instanceof RoomdClient);
    assert.equal(client.state, 'disconnected');
    assert.equal(client.userInfo, null);
  });

  test('without a WebSocket implementation (Node 20) construction says what to pass', () => {
    assert.equal(globalThis.WebSocket, undefined, 'this test expects Node 20, which has no WebSocket');
    assert.throws(() => new RoomdClient('ws://127.0.0.1:1/v1/ws'), /options\.WebSocket/);
  });
});

describe('login and logout', () => {
  test('report connectionStateChanged connecting, connected, disconnected', async () => {
    const client = record(newClient(server.wsUrl));
    const userID = uniqueId('u');
    const result = await client.login({ userID, userName: 'Ann' });
    assert.deepEqual(result, { userInfo: { userID, userName: 'Ann' } });
    assert.equal(client.state, 'connected');
    assert.deepEqual(client.userInfo, { userID, userName: 'Ann' });
    await client.logout();
    assert.equal(client.state, 'disconnected');
    assert.deepEqual(seen(client, 'connectionStateChanged'), [
      { state: 'connecting', event: 'activeLogin', extendedData: {} },
      { state: 'connected', event: 'success', extendedData: {} },
      { state: 'disconnected', event: 'logout', extendedData: {} },
    ]);
  });

  test('login again: same user succeeds, another user is refused (1003), during a login it is invalid', async () => {
    const client = newClient(server.wsUrl);
    const userID = uniqueId('u');
    const first = client.login({ userID });
    await rejectsWith(client.login({ userID }), ErrorCode.InvalidState);
    await first;
    assert.deepEqual(await client.login({ userID }), { userInfo: { userID, userName: '' } });
    await rejectsWith(client.login({ userID: uniqueId('other') }), ErrorCode.InvalidArgument);
    await client.logout();
  });

  test('a refused first login rejects with roomd\'s error and disconnects', async () => {
    const client = record(newClient(server.wsUrl));
    const error = await rejectsWith(client.login({ userID: 'not valid!' }), ErrorCode.InvalidArgument);
    assert.equal(error.reason, 'invalid_argument');
    assert.match(error.message, /userInfo\.userID/);
    assert.equal(client.state, 'disconnected');
    assert.equal(seen(client, 'connectionStateChanged').at(-1).event, 'loginFailed');
  });

  test('a server that cannot be reached rejects login with ConnectionLost', async () => {
    const client = record(newClient('ws://127.0.0.1:1/v1/ws'));
    const error = await rejectsWith(client.login({ userID: uniqueId('u') }), ErrorCode.ConnectionLost);
    assert.equal(error.reason, 'connection_lost');
    assert.equal(client.state, 'disconnected');
    assert.deepEqual(seen(client, 'connectionStateChanged').map((e) => e.event), ['activeLogin', 'loginInterrupted']);
  });

  test('requests before login or after logout reject with NotConnected', async () => {
    const client = newClient(server.wsUrl);
    const error = await rejectsWith(client.joinRoom('r'), ErrorCode.NotConnected);
    assert.equal(error.reason, 'not_connected');
    await client.login({ userID: uniqueId('u') });
    await client.logout();
    await rejectsWith(client.sendRoomMessage({ type: 'text', message: 'x' }, 'r'), ErrorCode.NotConnected);
  });

  test('requests made while logging in wait for the login', async () => {
    const client = newClient(server.wsUrl);
    const roomID = uniqueId('room');
    const login = client.login({ userID: uniqueId('u') });
    assert.equal(client.state, 'connecting');
    const entered = client.enterRoom({ roomID, roomName: 'early' });
    await login;
    assert.deepEqual(await entered, { roomInfo: { roomID, roomName: 'early' }, firstSeq: 1 });
    await client.logout();
  });

  test('logout leaves the rooms at once: the others see roomMemberLeft', async () => {
    const [a, b] = await Promise.all([loggedIn(server.wsUrl), loggedIn(server.wsUrl)]);
    const roomID = uniqueId('room');
    await a.createRoom({ roomID, roomName: '' });
    await b.joinRoom(roomID);
    await b.logout();
    await waitFor(() => seen(a, 'roomMemberLeft', roomID).length === 1, 'roomMemberLeft');
    assert.deepEqual(seen(a, 'roomMemberLeft', roomID)[0].memberList.map((m) => m.userID), [b.userInfo.userID]);
    await a.logout();
  });
});

describe('rooms', () => {
  test('create, join, enter, member list, count, leave, leave all, and the member events', async () => {
    const [a, b, c] = await Promise.all([loggedIn(server.wsUrl), loggedIn(server.wsUrl), loggedIn(server.wsUrl)]);
    const roomID = uniqueId('room');
    assert.deepEqual(await a.createRoom({ roomID, roomName: 'Math' }, { roomDestroyDelayTime: 60 }), { roomInfo: { roomID, roomName: 'Math' }, firstSeq: 1 });

    assert.deepEqual(await b.joinRoom(roomID), { roomInfo: { roomID, roomName: 'Math' }, firstSeq: 1 });
    await waitFor(() => seen(a, 'roomMemberJoined', roomID).length === 1, 'a sees b join');
    assert.deepEqual(seen(a, 'roomMemberJoined', roomID)[0], { roomID, memberList: [{ userID: b.userInfo.userID, userName: b.userInfo.userName }] });

    // enterRoom on an existing room keeps its name.
    assert.deepEqual(await c.enterRoom({ roomID, roomName: 'ignored' }), { roomInfo: { roomID, roomName: 'Math' }, firstSeq: 1 });
    await waitFor(() => seen(b, 'roomMemberJoined', roomID).length === 1, 'b sees c join');

    assert.deepEqual(await a.queryRoomOnlineMemberCount(roomID), { roomID, count: 3 });
    const everyone = [a, b, c].map((client) => client.userInfo.userID).sort();
    const first = await a.queryRoomMemberList(roomID, { count: 2 });
    assert.equal(first.roomID, roomID);
    assert.deepEqual(first.memberList.map((m) => m.userID), everyone.slice(0, 2));
    assert.notEqual(first.nextFlag, '');
    const second = await a.queryRoomMemberList(roomID, { nextFlag: first.nextFlag, count: 2 });
    assert.deepEqual(second.memberList.map((m) => m.userID), everyone.slice(2));
    assert.equal(second.nextFlag, '');
    assert.deepEqual((await a.queryRoomMemberList(roomID)).memberList.map((m) => m.userID), everyone);

    assert.deepEqual(await b.leaveRoom(roomID), { roomID });
    await waitFor(() => seen(a, 'roomMemberLeft', roomID).length === 1 && seen(c, 'roomMemberLeft', roomID).length === 1, 'a and c see b leave');
    assert.deepEqual(seen(a, 'roomMemberLeft', roomID)[0], { roomID, memberList: [{ userID: b.userInfo.userID, userName: b.userInfo.userName }] });

    const otherRoom = uniqueId('room');
    await c.enterRoom({ roomID: otherRoom, roomName: '' });
    const { roomIDs } = await c.leaveAllRoom();
    assert.deepEqual(roomIDs.sort(), [roomID, otherRoom].sort());
    await waitFor(() => seen(a, 'roomMemberLeft', roomID).length === 2, 'a sees c leave');
    assert.deepEqual(await a.queryRoomOnlineMemberCount(roomID), { roomID, count: 1 });
    // None of this was a change "for a reason other than its own request".
    assert.deepEqual([a, b, c].flatMap((client) => seen(client, 'roomStateChanged')), []);
    await logoutAll(a, b, c);
  });

  test('enterRoom creates a missing room with its name', async () => {
    const client = await loggedIn(server.wsUrl);
    const roomID = uniqueId('room');
    assert.deepEqual(await client.enterRoom({ roomID, roomName: 'New' }, { roomAttributes: { k: 'v' } }), { roomInfo: { roomID, roomName: 'New' }, firstSeq: 1 });
    assert.deepEqual(await client.queryRoomOnlineMemberCount(roomID), { roomID, count: 1 });
    await client.logout();
  });

  test('errors reject with roomd\'s codes', async () => {
    const [a, b] = await Promise.all([loggedIn(server.wsUrl), loggedIn(server.wsUrl)]);
    const roomID = uniqueId('room');
    const missing = await rejectsWith(a.joinRoom(uniqueId('missing')), ErrorCode.RoomNotFound);
    assert.equal(missing.reason, 'room_not_found');
    assert.equal(missing.name, 'RoomdError');
    assert.ok(missing instanceof Error);
    await a.createRoom({ roomID, roomName: '' });
    assert.equal((await rejectsWith(b.createRoom({ roomID, roomName: '' }), ErrorCode.RoomExists)).reason, 'room_exists');
    assert.equal((await rejectsWith(b.leaveRoom(roomID), ErrorCode.NotInRoom)).reason, 'not_in_room');
    await rejectsWith(b.sendRoomMessage({ type: 'text', message: 'x' }, roomID), ErrorCode.NotInRoom);
    await rejectsWith(b.queryHistoryMessage(roomID), ErrorCode.NotInRoom);
    await rejectsWith(b.queryRoomMemberList(roomID), ErrorCode.NotInRoom);
    await rejectsWith(b.queryRoomOnlineMemberCount(roomID), ErrorCode.NotInRoom);
    const invalid = await rejectsWith(b.joinRoom('no spaces allowed'), ErrorCode.InvalidArgument);
    assert.match(invalid.message, /roomID/);
    await rejectsWith(a.sendRoomMessage({ type: 'text', message: 'x'.repeat(40_000) }, roomID), ErrorCode.TooLarge);
    await rejectsWith(a.sendRoomMessage({ type: 'video', message: 'x' }, roomID), ErrorCode.InvalidArgument);
    await rejectsWith(a.queryHistoryMessage(roomID, { count: 0 }), ErrorCode.InvalidArgument);
    // The connection survives every one of them.
    assert.equal(a.state, 'connected');
    assert.equal((await a.sendRoomMessage({ type: 'text', message: 'still here' }, roomID)).message.seq, 1);
    await logoutAll(a, b);
  });
});

describe('messages', () => {
  test('sendRoomMessage resolves with the stored message; the others receive it, the sender does not', async () => {
    const [a, b] = await Promise.all([loggedIn(server.wsUrl), loggedIn(server.wsUrl)]);
    const roomID = uniqueId('room');
    await a.createRoom({ roomID, roomName: '' });
    await b.joinRoom(roomID);
    const { message } = await a.sendRoomMessage({ type: 'text', message: 'hello', extendedData: 'x' }, roomID);
    assert.equal(message.seq, 1);
    assert.equal(message.roomID, roomID);
    assert.equal(message.senderUserID, a.userInfo.userID);
    assert.equal(message.type, 'text');
    assert.equal(message.message, 'hello');
    assert.equal(message.extendedData, 'x');
    assert.equal(message.priority, 'medium');
    assert.equal(typeof message.messageID, 'string');
    assert.equal(typeof message.timestamp, 'number');
    await waitFor(() => received(b, roomID).length === 1, 'b receives it');
    assert.deepEqual(seen(b, 'roomMessageReceived', roomID), [{ roomID, messageList: [message] }]);

    // ZIM's numeric types and priorities.
    const command = (await a.sendRoomMessage({ type: 2, message: '{}' }, roomID, { priority: 3 })).message;
    assert.equal(command.type, 'command');
    assert.equal(command.priority, 'high');
    const custom = (await a.sendRoomMessage({ type: 200, message: 'c' }, roomID, { priority: 'low' })).message;
    assert.equal(custom.type, 'custom');
    assert.equal(custom.priority, 'low');
    await waitFor(() => received(b, roomID).length === 3, 'b receives all three');
    assert.deepEqual(received(a, roomID), []);
    await logoutAll(a, b);
  });

  test('a clientMessageID sent again returns the stored original and stores nothing', async () => {
    const [a, b] = await Promise.all([loggedIn(server.wsUrl), loggedIn(server.wsUrl)]);
    const roomID = uniqueId('room');
    await a.createRoom({ roomID, roomName: '' });
    await b.joinRoom(roomID);
    const clientMessageID = uniqueId('cmid');
    const first = await a.sendRoomMessage({ type: 'text', message: 'once' }, roomID, { clientMessageID });
    const again = await a.sendRoomMessage({ type: 'text', message: 'twice?' }, roomID, { clientMessageID });
    assert.deepEqual(again, first);
    const next = await a.sendRoomMessage({ type: 'text', message: 'next' }, roomID);
    assert.equal(next.message.seq, 2);
    await waitFor(() => received(b, roomID).length >= 2, 'b receives two');
    assert.deepEqual(received(b, roomID).map((m) => m.message), ['once', 'next']);
    await logoutAll(a, b);
  });

  test('queryHistoryMessage pages the newest, before and after a seq', async () => {
    const client = await loggedIn(server.wsUrl);
    const roomID = uniqueId('room');
    await client.createRoom({ roomID, roomName: '' });
    for (let i = 1; i <= 5; i += 1) await client.sendRoomMessage({ type: 'text', message: `m${i}` }, roomID);
    const newest = await client.queryHistoryMessage(roomID, { count: 2 });
    assert.equal(newest.roomID, roomID);
    assert.deepEqual(newest.messageList.map((m) => m.seq), [4, 5]);
    assert.equal(newest.hasMore, true);
    const older = await client.queryHistoryMessage(roomID, { beforeSeq: 4, count: 10 });
    assert.deepEqual(older.messageList.map((m) => m.message), ['m1', 'm2', 'm3']);
    assert.equal(older.hasMore, false);
    const newer = await client.queryHistoryMessage(roomID, { afterSeq: 1, count: 2 });
    assert.deepEqual(newer.messageList.map((m) => m.seq), [2, 3]);
    assert.equal(newer.hasMore, true);
    assert.deepEqual((await client.queryHistoryMessage(roomID)).messageList.length, 5);
    await client.logout();
  });

  test('a re-created room continues its seq stream, and the client tracks it from there', async () => {
    const wire = wireRecorder();
    const [a, b] = await Promise.all([loggedIn(server.wsUrl), loggedIn(server.wsUrl, uniqueId('u'), { WebSocket: wire.WebSocket })]);
    const roomID = uniqueId('room');
    await a.createRoom({ roomID, roomName: '' });
    await a.sendRoomMessage({ type: 'text', message: 'old' }, roomID);
    await a.leaveRoom(roomID);
    // Destroyed within about a second of emptying (delay 0); until then it exists.
    const created = await eventually(() => b.createRoom({ roomID, roomName: 'again' }), 'the room to be destroyed');
    // Its new life starts after the old one's last seq; b may read only from there.
    assert.deepEqual(created, { roomInfo: { roomID, roomName: 'again' }, firstSeq: 2 });
    // The stream's seq comes with createRoom's reply; a roomd too old to send
    // it there is asked with a joinRoom.
    const [connection] = wire.connections;
    const reply = replyTo(connection, sentOps(connection, 'createRoom').at(-1));
    if ('lastSeq' in reply) {
      assert.equal(reply.lastSeq, 1);
      assert.deepEqual(sentOps(connection, 'joinRoom'), []);
    } else {
      assert.equal(replyTo(connection, sentOps(connection, 'joinRoom')[0]).lastSeq, 1);
    }
    assert.deepEqual(await a.joinRoom(roomID), { roomInfo: { roomID, roomName: 'again' }, firstSeq: 2 });
    const { message } = await a.sendRoomMessage({ type: 'text', message: 'new' }, roomID);
    assert.equal(message.seq, 2);
    await waitFor(() => received(b, roomID).length === 1, 'b receives the new message');
    // Dropping b proves its tracked seq is 2, not 0: a rejoin from 0 would replay 'old'.
    b._debugDropConnection();
    await waitFor(() => seen(b, 'roomStateChanged', roomID).some((e) => e.state === 'connected'), 'b rejoins');
    await a.sendRoomMessage({ type: 'text', message: 'after' }, roomID);
    await waitFor(() => received(b, roomID).length === 2, 'b receives the next message');
    assert.deepEqual(received(b, roomID).map((m) => [m.seq, m.message]), [[2, 'new'], [3, 'after']]);
    await logoutAll(a, b);
  });
});

describe('events', () => {
  test('off() removes one handler, or all of an event; unknown events are refused; a throwing handler harms no other', async () => {
    const [a, b] = await Promise.all([loggedIn(server.wsUrl), loggedIn(server.wsUrl)]);
    const roomID = uniqueId('room');
    await a.createRoom({ roomID, roomName: '' });
    const calls = [];
    const one = (client, data) => {
      assert.equal(client, a);
      calls.push(['one', data.roomID]);
    };
    const two = () => calls.push(['two']);
    a.on('roomMemberJoined', () => {
      throw new Error('a broken handler');
    });
    a.on('roomMemberJoined', one);
    a.on('roomMemberJoined', two);
    await b.joinRoom(roomID);
    await waitFor(() => calls.length === 2, 'both handlers');
    assert.deepEqual(calls, [['one', roomID], ['two']]);

    a.off('roomMemberJoined', one);
    await b.leaveRoom(roomID);
    await b.joinRoom(roomID);
    await waitFor(() => seen(a, 'roomMemberJoined', roomID).length === 2, 'the second join');
    assert.deepEqual(calls, [['one', roomID], ['two'], ['two']]);

    a.off('roomMemberJoined');
    await b.leaveRoom(roomID);
    await waitFor(() => seen(a, 'roomMemberLeft', roomID).length === 2, 'the second leave');
    await b.joinRoom(roomID);
    // b's send is answered after its join is announced to a (one room, one order).
    await b.sendRoomMessage({ type: 'text', message: 'x' }, roomID);
    await waitFor(() => received(a, roomID).length === 1, 'the message');
    assert.equal(calls.length, 3);
    assert.equal(a.seen.filter((e) => e.event === 'roomMemberJoined').length, 2, 'record() handlers were removed too');

    assert.throws(() => a.on('roomMemberJoin', () => {}), TypeError);
    await logoutAll(a, b);
  });
});

describe('RoomdError', () => {
  test('carries code, reason, message and retryAfterMs', () => {
    const error = new RoomdError(ErrorCode.RateLimited, 'rate_limited', 'slow down', 250);
    assert.equal(error.code, 1006);
    assert.equal(error.reason, 'rate_limited');
    assert.equal(error.message, 'slow down');
    assert.equal(error.retryAfterMs, 250);
    assert.equal(new RoomdError(1, 'r', 'm').retryAfterMs, undefined);
  });
});
