// Helpers for the client tests: logged-in clients, unique ids, event
// recording, and waiting on conditions (never on fixed sleeps).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import WebSocket from 'ws';

import { RoomdClient, RoomdError } from '../../roomd.js';

/** A fresh id, so tests sharing one database never meet. */
export function uniqueId(prefix) {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** Reconnection fast enough for tests. */
export const FAST_RECONNECT = { initialDelayMs: 20, maxDelayMs: 200 };

const everyClient = new Set();

/** A client with the `ws` package (Node 20 has no WebSocket), not logged in. */
export function newClient(url, options = {}) {
  const client = new RoomdClient(url, { WebSocket, reconnect: FAST_RECONNECT, ...options });
  everyClient.add(client);
  return client;
}

/**
 * Logs out every client the tests made, so that a failed test does not leave
 * one reconnecting forever, which would keep the test process alive.
 */
export async function logoutEveryClient() {
  await Promise.all([...everyClient].map((client) => client.logout().catch(() => {})));
  everyClient.clear();
}

/**
 * A logged-in client whose events are all recorded in `client.seen`:
 * `{ event, data }` in arrival order.
 */
export async function loggedIn(url, userID = uniqueId('u'), options = {}) {
  const client = record(newClient(url, options));
  await client.login({ userID, userName: `name of ${userID}` }, options.token);
  return client;
}

/** Records every event of `client` in `client.seen`. */
export function record(client) {
  client.seen = [];
  for (const event of ['connectionStateChanged', 'roomStateChanged', 'roomMemberJoined', 'roomMemberLeft', 'roomMessageReceived', 'tokenWillExpire']) {
    client.on(event, (_, data) => client.seen.push({ event, data }));
  }
  return client;
}

/** The data of the recorded events named `event`, optionally for one room. */
export function seen(client, event, roomID) {
  return client.seen.filter((e) => e.event === event && (roomID === undefined || e.data.roomID === roomID)).map((e) => e.data);
}

/** Every message `client` received in `roomID`, in order. */
export function received(client, roomID) {
  return seen(client, 'roomMessageReceived', roomID).flatMap((data) => data.messageList);
}

/** Polls `predicate` until it holds; fails with `what` after `timeoutMs`. */
export async function waitFor(predicate, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Waits for the client's connection state. */
export function waitForState(client, state, timeoutMs) {
  return waitFor(() => client.state === state, `state ${state} (now ${client.state})`, timeoutMs);
}

/** Asserts that `promise` rejects with a RoomdError of `code`; returns the error. */
export async function rejectsWith(promise, code) {
  let error;
  await assert.rejects(promise, (e) => {
    error = e;
    return true;
  });
  assert.ok(error instanceof RoomdError, `expected a RoomdError, got ${error}`);
  assert.equal(error.code, code, `expected code ${code}, got ${error.code}: ${error.message}`);
  return error;
}

/** Logs out every client given, ignoring those already stopped. */
export async function logoutAll(...clients) {
  await Promise.all(clients.filter(Boolean).map((client) => client.logout()));
}

/** An HS256 login token, as roomd's `token` command signs them. */
export function token(secret, sub, { ttlSeconds = 3600, name } = {}) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const body = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode({ sub, exp: Math.floor(Date.now() / 1000) + ttlSeconds, ...(name ? { name } : {}) })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

/** A room's whole stored history over REST (open mode), ascending seq. */
export async function storedMessages(httpUrl, roomID) {
  const response = await fetch(`${httpUrl}/v1/rooms/${encodeURIComponent(roomID)}/messages?limit=1000`);
  assert.equal(response.status, 200, await response.clone().text());
  return (await response.json()).messages;
}

/** Calls `attempt` until it resolves (polling, for conditions only a request can observe); returns its value. */
export async function eventually(attempt, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${error.message}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * A `ws` WebSocket class that records, for each socket the client opens,
 * the frames it sent and received (parsed, with `at` times) and how it
 * closed: what went over the wire with the real server, for assertions.
 * Pass `wire.WebSocket` as the client's `WebSocket` option.
 *
 * `connection.socket.closeAs(code, reason)` drops the connection abruptly
 * (roomd sees a network failure) while the client sees a close with `code`
 * and `reason`, as if roomd had sent them: for closes a test cannot make
 * roomd send quickly, such as 4001 "token expired" (which takes its 30 s
 * leeway).
 * @returns {{WebSocket: typeof WebSocket, connections: {socket: WebSocket, sent: object[], received: object[], closed: {code: number, reason: string}|null}[]}}
 */
export function wireRecorder() {
  const connections = [];
  const parse = (data) => {
    try {
      return JSON.parse(data.toString());
    } catch {
      return { unparsed: data.toString() };
    }
  };
  class RecordingWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      const connection = { socket: this, sent: [], received: [], closed: null };
      connections.push(connection);
      this.recorded = connection;
      this.on('message', (data) => connection.received.push({ at: Date.now(), ...parse(data) }));
      this.on('close', (code, reason) => {
        connection.closed = { code, reason: reason.toString() };
      });
    }

    send(data, ...rest) {
      this.recorded.sent.push({ at: Date.now(), ...parse(data) });
      super.send(data, ...rest);
    }

    closeAs(code, reason) {
      this.fakeClose = { code, reason };
      this.terminate();
    }

    // `ws` reports a close to its listeners (addEventListener's included) as emit('close', code, reason).
    emit(event, ...args) {
      if (event === 'close' && this.fakeClose) return super.emit(event, this.fakeClose.code, Buffer.from(this.fakeClose.reason));
      return super.emit(event, ...args);
    }
  }
  return { WebSocket: RecordingWebSocket, connections };
}

/** The frames `connection` sent with op `op`. */
export function sentOps(connection, op) {
  return connection.sent.filter((frame) => frame.op === op);
}

/** The reply `connection` received to the request `frame`. */
export function replyTo(connection, frame) {
  return connection.received.find((reply) => reply.id === frame.id && reply.event === undefined);
}

/** Runs SQL on the test database (roomd's, real) with psql; resolves with its output. */
export function sql(statement) {
  const args = [process.env.ROOMD_TEST_DATABASE_URL, '-v', 'ON_ERROR_STOP=1', '-qAt', '-c', statement];
  return new Promise((resolve, reject) => {
    execFile('psql', args, { encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error?.code === 'ENOENT') reject(new Error('psql is not installed (the PostgreSQL client is needed)'));
      else if (error) reject(new Error(`psql failed: ${stderr || error.message}`));
      else resolve(stdout.trim());
    });
  });
}
