// The chat page served at `/`, driven in headless Chromium against a real
// roomd: two users in two browser contexts enter one room, see each other
// arrive, talk, reload, read history, page back through it, and leave.
//
//   ROOMD_BIN=../../target/debug/roomd \
//   ROOMD_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/roomd_js \
//   node --test test/browser/
//
// The page is compiled into the binary: rebuild roomd after editing web/.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';
import { startRoomd } from '../support/roomd.js';

const TIMEOUT = 10_000;
const artifacts = process.env.ROOMD_TEST_ARTIFACTS || 'test-artifacts';

let server;
let browser;

before(async () => {
  const launching = chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    server = await startRoomd();
  } finally {
    // Kept even when roomd failed to start, so after() can close it.
    browser = await launching;
  }
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A fresh browser profile (own localStorage) with the page open. */
async function openPage(viewport = { width: 1000, height: 640 }) {
  const context = await browser.newContext({ viewport, locale: 'en-GB', timezoneId: 'UTC' });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
  });
  await page.goto(server.httpUrl);
  return { page, context, problems };
}

async function enterRoom(page, name, roomID) {
  await page.getByLabel('Your name', { exact: true }).fill(name);
  await page.getByLabel('Room', { exact: true }).fill(roomID);
  await page.getByRole('button', { name: 'Enter room' }).click();
  await page.getByTestId('chat').waitFor();
  await page.getByTestId('connection-status').filter({ hasText: 'Connected' }).waitFor();
}

const member = (page, name) => page.getByTestId('member-list').getByTestId('member').filter({ hasText: name });
const message = (page, text) => page.getByTestId('message-list').getByTestId('message').filter({ hasText: text });

async function say(page, text) {
  const input = page.getByLabel('Message', { exact: true });
  await input.fill(text);
  await input.press('Enter');
  await message(page, text).waitFor();
  assert.equal(await input.inputValue(), '', 'the message box is cleared after sending');
}

/** The [seq, text] of every message shown, top to bottom. */
function shownMessages(page) {
  return page.getByTestId('message-list').locator('[data-testid="message"]').evaluateAll((items) =>
    items.map((li) => [Number(li.dataset.seq), li.querySelector('[data-testid="message-text"]').textContent]));
}

test('two users enter a room, see each other, talk, reload into history and leave', async () => {
  const roomID = `page-${randomUUID().slice(0, 8)}`;
  const alice = await openPage();
  const bob = await openPage({ width: 390, height: 720 }); // a phone-sized screen
  try {
    // Open mode: no token field.
    await alice.page.getByTestId('join-form').waitFor();
    assert.equal(await alice.page.getByTestId('token-input').isVisible(), false);

    await enterRoom(alice.page, 'Alice', roomID);
    assert.equal(await alice.page.getByTestId('room-title').textContent(), roomID);
    await member(alice.page, 'Alice').waitFor();

    await enterRoom(bob.page, 'Bob <b>', roomID);
    // Each sees the other in the member list: Alice live, Bob in the initial list.
    await member(alice.page, 'Bob <b>').waitFor();
    await member(bob.page, 'Alice').waitFor();
    await bob.page.getByTestId('member-count').filter({ hasText: '2' }).waitFor();

    await say(alice.page, 'Hello Bob');
    await message(bob.page, 'Hello Bob').waitFor();
    await say(bob.page, 'Hi Alice! <img src=x onerror=alert(1)>');
    await message(alice.page, 'Hi Alice!').waitFor();
    await say(alice.page, 'Shall we\nmeet at noon?');
    await message(bob.page, 'meet at noon?').waitFor();

    const expected = [
      [1, 'Hello Bob'],
      [2, 'Hi Alice! <img src=x onerror=alert(1)>'],
      [3, 'Shall we\nmeet at noon?'],
    ];
    assert.deepEqual(await shownMessages(alice.page), expected);
    assert.deepEqual(await shownMessages(bob.page), expected);
    // Names come from the member list; user data is text, never markup.
    await message(alice.page, 'Hi Alice!').getByTestId('message-author').filter({ hasText: 'Bob <b>' }).waitFor();
    assert.equal(await alice.page.locator('.messages img, .member-list b').count(), 0);

    await mkdir(artifacts, { recursive: true });
    await alice.page.screenshot({ path: path.join(artifacts, 'chat-page.png') });

    // Bob reloads: the page remembers his name and room, and entering again
    // shows the conversation from history.
    await bob.page.reload();
    await bob.page.getByTestId('join-form').waitFor();
    assert.equal(await bob.page.getByLabel('Your name', { exact: true }).inputValue(), 'Bob <b>');
    assert.equal(await bob.page.getByLabel('Room', { exact: true }).inputValue(), roomID);
    await bob.page.getByRole('button', { name: 'Enter room' }).click();
    await message(bob.page, 'meet at noon?').waitFor();
    assert.deepEqual(await shownMessages(bob.page), expected);
    await member(bob.page, 'Alice').waitFor();
    await bob.page.getByTestId('history-start').waitFor();

    // Talk continues after the reload, in order and without duplicates.
    await say(bob.page, 'Back again');
    await message(alice.page, 'Back again').waitFor();
    assert.deepEqual(await shownMessages(alice.page), [...expected, [4, 'Back again']]);

    // Bob leaves: back on the picker, and Alice sees him go.
    await bob.page.getByRole('button', { name: 'Leave room' }).click();
    await bob.page.getByTestId('join-form').waitFor();
    await member(alice.page, 'Bob <b>').waitFor({ state: 'detached' });
    await alice.page.getByTestId('member-count').filter({ hasText: '1' }).waitFor();

    assert.deepEqual([...alice.problems, ...bob.problems], []);
  } finally {
    await alice.context.close();
    await bob.context.close();
  }
});

/** Sends `count` messages to a room over the raw protocol, as user `userID`. */
async function seedRoom(roomID, userID, count) {
  const ws = new WebSocket(server.wsUrl);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const waiting = new Map();
  ws.on('message', (data) => {
    const frame = JSON.parse(data.toString());
    if (frame.id == null) return;
    const done = waiting.get(frame.id);
    waiting.delete(frame.id);
    if (frame.ok) done.resolve(frame);
    else done.reject(new Error(JSON.stringify(frame.error)));
  });
  let next = 1;
  const request = (body) => new Promise((resolve, reject) => {
    const id = next++;
    waiting.set(id, { resolve, reject });
    ws.send(JSON.stringify({ id, ...body }));
  });
  try {
    await request({ op: 'login', userInfo: { userID, userName: 'Seeder' } });
    // Kept for a minute once empty, so it still exists (with its name) when the reader comes.
    await request({ op: 'enterRoom', roomInfo: { roomID, roomName: 'Long history' }, config: { roomDestroyDelayTime: 60 } });
    const sends = [];
    for (let i = 1; i <= count; i++) {
      sends.push(request({ op: 'sendRoomMessage', roomID, message: { type: 'text', message: `old message ${i}` } }));
    }
    await Promise.all(sends);
    await request({ op: 'leaveRoom', roomID });
  } finally {
    ws.close();
  }
}

test('scrolling up loads older history page by page', async () => {
  const roomID = `history-${randomUUID().slice(0, 8)}`;
  await seedRoom(roomID, `seeder-${randomUUID().slice(0, 8)}`, 75);
  const reader = await openPage();
  try {
    await enterRoom(reader.page, 'Reader', roomID);
    assert.equal(await reader.page.getByTestId('room-title').textContent(), 'Long history');
    // The newest page first, scrolled to the bottom.
    await reader.page.locator('[data-seq="75"]').waitFor();
    const first = await shownMessages(reader.page);
    assert.ok(first.length < 75, `only the newest page is loaded at first (${first.length})`);
    assert.deepEqual(first.at(-1), [75, 'old message 75']);

    // Scroll to the top until the start of the history shows.
    const log = reader.page.getByTestId('message-log');
    await reader.page.waitForFunction(() => {
      const el = document.querySelector('[data-testid="message-log"]');
      el.scrollTop = 0;
      el.dispatchEvent(new Event('scroll'));
      return !document.querySelector('[data-testid="history-start"]').hidden;
    }, null, { polling: 100, timeout: TIMEOUT });
    await reader.page.locator('[data-seq="1"]').waitFor();
    assert.ok(await log.isVisible());
    const all = await shownMessages(reader.page);
    assert.deepEqual(all, Array.from({ length: 75 }, (_, i) => [i + 1, `old message ${i + 1}`]));
    assert.deepEqual(reader.problems, []);
  } finally {
    await reader.context.close();
  }
});

/** A login token from `roomd token`. */
async function issueToken(secret, user, name) {
  const { stdout } = await promisify(execFile)(
    process.env.ROOMD_BIN,
    ['token', '--user', user, '--name', name, '--auth-secret', secret],
    { env: { ...process.env, DATABASE_URL: '' } },
  );
  return stdout.trim();
}

test('with an auth secret the page asks for a token and logs in with it', async () => {
  const secret = randomUUID();
  const secured = await startRoomd({ args: ['--auth-secret', secret] });
  const context = await browser.newContext();
  context.setDefaultTimeout(TIMEOUT);
  try {
    const page = await context.newPage();
    await page.goto(secured.httpUrl);
    const token = page.getByLabel('Login token', { exact: true });
    await token.waitFor(); // shown once /v1/info says a token is needed
    await page.getByLabel('Your name', { exact: true }).fill('Carol');
    await page.getByLabel('Room', { exact: true }).fill(`auth-${randomUUID().slice(0, 8)}`);

    // A token signed with another secret: the server refuses it.
    await token.fill(await issueToken(randomUUID(), 'carol', 'Carol'));
    await page.getByRole('button', { name: 'Enter room' }).click();
    await page.getByTestId('error').filter({ hasText: 'token' }).waitFor();
    assert.equal(await page.getByTestId('chat').isVisible(), false);
    assert.equal(await token.getAttribute('aria-invalid'), 'true');

    // The right token: in, as the user and name the token names.
    await token.fill(await issueToken(secret, 'carol', 'Carol from the token'));
    await page.getByRole('button', { name: 'Enter room' }).click();
    await page.getByTestId('chat').waitFor();
    await member(page, 'Carol from the token').waitFor();
    assert.equal(await page.getByTestId('member').getAttribute('data-user-id'), 'carol');
    await say(page, 'signed in');
    await message(page, 'signed in').getByTestId('message-author').filter({ hasText: 'Carol from the token' }).waitFor();
  } finally {
    await context.close();
    await secured.stop();
  }
});
