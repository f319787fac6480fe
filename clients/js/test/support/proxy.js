// A TCP relay to put between two real parties (the client and roomd, or
// roomd and PostgreSQL), so that a test can cut the network between them and
// mend it again. It forwards bytes and nothing else: it never reads, answers
// or alters what goes through.
import { connect, createServer } from 'node:net';

/**
 * Listens on a free port of 127.0.0.1 and relays each connection to
 * `targetHost`:`targetPort`, or to the Unix socket `targetHost` when it is a
 * path (a PostgreSQL socket such as `/tmp/x/.s.PGSQL.5432`).
 * @param {number} targetPort
 * @param {string} [targetHost]
 * @returns {Promise<{port: number, cut: () => void, mend: () => void, close: () => Promise<void>}>}
 *   `cut()` closes every relayed connection and, until `mend()`, resets each
 *   new one as soon as it is accepted, as a link that went down would look
 *   to both ends. (Relayed ones are closed, not reset: resetAndDestroy() on
 *   them made Node 20 spin at exit now and then.)
 */
export async function startProxy(targetPort, targetHost = '127.0.0.1') {
  const sockets = new Set();
  let open = true;
  const server = createServer((downstream) => {
    downstream.on('error', () => {});
    if (!open) {
      // Reset rather than closed: a half-open handshake that reads an end of
      // stream is not a clean "unreachable" to every client library.
      downstream.resetAndDestroy();
      return;
    }
    const upstream = targetHost.startsWith('/')
      ? connect({ path: targetHost })
      : connect(targetPort, targetHost);
    upstream.on('error', () => {});
    const pair = [downstream, upstream];
    for (const socket of pair) {
      sockets.add(socket);
      socket.on('close', () => {
        sockets.delete(socket);
        for (const other of pair) other.destroy();
      });
    }
    downstream.pipe(upstream);
    upstream.pipe(downstream);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const cut = () => {
    open = false;
    for (const socket of sockets) socket.destroy();
  };
  return {
    port: server.address().port,
    cut,
    mend: () => {
      open = true;
    },
    close: () =>
      new Promise((resolve) => {
        cut();
        server.close(() => resolve());
      }),
  };
}
