// The one-line endpoint at the top of the README: three IO steps of 100, 200 and 300 ms fanned out by gather(),
// which answers with their merged JSON in about 300 ms (awaited one after another: 600 ms).
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import express from 'express';
import { fanout, gather, type TaskContext } from 'express-fanout';

// Stand-ins for a file read, a database query and a remote call; each stops when its signal aborts.
const readFile = ({ signal }: TaskContext) => sleep(100, 'the file', { signal });
const queryDb = ({ signal }: TaskContext) => sleep(200, [{ id: 1 }], { signal });
const callApi = ({ signal }: TaskContext) => sleep(300, { ok: true }, { signal });

export const app = express();
// #region pitch
app.use(fanout({ budgetMs: 500 }));
app.get('/', gather({ file: readFile, db: queryDb, api: { run: callApi, timeoutMs: 150, fallback: null } }));
// #endregion

// Run directly (`npx tsx <this file>`; PORT chooses the port, 0 any free one) it listens; imported, as the tests
// import it, it does not.
if (require.main === module) {
  const server = app.listen(Number(process.env.PORT ?? 3000), () => {
    const url = `http://localhost:${(server.address() as AddressInfo).port}`;
    console.log(`Listening on ${url}\nTry: curl -i ${url}/`);
  });
}
