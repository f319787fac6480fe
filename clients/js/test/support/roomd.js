// Starts a real roomd for a test: the binary the Rust suite just built
// (ROOMD_BIN) on the fresh database it made (ROOMD_TEST_DATABASE_URL).
// Run by hand with those two variables set, e.g.
//   ROOMD_BIN=../../target/debug/roomd \
//   ROOMD_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/roomd_js \
//   node --test test/client/
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { randomUUID } from 'node:crypto';

/** A free TCP port on 127.0.0.1, chosen by the kernel. */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run these tests through \`cargo test\`, or set it by hand (see test/support/roomd.js)`);
  }
  return value;
}

/**
 * Spawns roomd and waits until /healthz answers.
 * @param {object} [options]
 * @param {string[]} [options.args] extra command-line flags, as separate
 *   words (`['--logins-per-second', '1']`); a flag given here replaces the
 *   default below (roomd refuses a flag given twice)
 * @param {string} [options.databaseUrl] defaults to ROOMD_TEST_DATABASE_URL
 * @param {string} [options.reconnectGrace] e.g. '10s' (default '10s')
 * @param {string} [options.nodeId] defaults to a fresh id per server
 * @param {number} [options.port] defaults to a free port
 * @returns {Promise<{httpUrl: string, wsUrl: string, port: number, process: import('node:child_process').ChildProcess, stop: () => Promise<void>, kill: () => Promise<void>, logs: () => string}>}
 */
export async function startRoomd(options = {}) {
  const bin = required('ROOMD_BIN');
  const databaseUrl = required('ROOMD_TEST_DATABASE_URL');
  const port = options.port ?? (await freePort());
  const nodeId = options.nodeId ?? `js-${randomUUID().slice(0, 8)}`;
  const defaults = [
    ['--bind', `127.0.0.1:${port}`],
    ['--database-url', options.databaseUrl ?? databaseUrl],
    ['--node-id', nodeId],
    ['--reconnect-grace', options.reconnectGrace ?? '10s'],
    ['--requests-per-second', '100000'], ['--requests-burst', '100000'],
    ['--messages-per-second', '100000'], ['--messages-burst', '100000'],
    ['--logins-per-second', '100000'],
  ];
  // roomd (clap) refuses a flag given twice, so one in `args` replaces its default.
  const extra = options.args ?? [];
  const args = [...defaults.filter(([flag]) => !extra.includes(flag)).flat(), ...extra];
  const env = { ...process.env };
  delete env.DATABASE_URL;
  // roomd logs to stdout (tracing's default); errors before logging starts go to stderr.
  const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  for (const stream of [child.stdout, child.stderr]) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      output += chunk;
      if (process.env.TEST_LOG) process.stderr.write(chunk);
    });
  }
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const httpUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`roomd exited with ${child.exitCode}:\n${output}`);
    }
    try {
      const response = await fetch(`${httpUrl}/healthz`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`roomd did not come up within 30 s:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const signal = async (name) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(name);
    await exited;
  };
  return {
    httpUrl,
    wsUrl: `ws://127.0.0.1:${port}/v1/ws`,
    port,
    nodeId,
    process: child,
    /** Graceful stop (SIGTERM): members get roomStateChanged and Close 1001. */
    stop: () => signal('SIGTERM'),
    /** Abrupt stop (SIGKILL). */
    kill: () => signal('SIGKILL'),
    logs: () => output,
  };
}

/**
 * roomds started by one test file, killed together at its end:
 * `const roomds = roomdPool(); ... await roomds.start(options); ... after(roomds.killAll)`.
 * @param {object} [defaults] options every `start` begins with
 */
export function roomdPool(defaults = {}) {
  const servers = [];
  return {
    async start(options = {}) {
      const server = await startRoomd({ ...defaults, ...options });
      servers.push(server);
      return server;
    },
    killAll: () => Promise.all(servers.map((server) => server.kill())),
  };
}
