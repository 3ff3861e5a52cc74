import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestDb, testDb } from './helpers.js';
import {
  killAll,
  obliterate,
  queueName,
  REDIS_URL,
  startWorker,
  stopWorker,
  until,
  type WorkerProcess,
} from './queueHelpers.js';
import { runScript, type Script } from './scriptHelpers.js';

// examples/ run as a user runs them, against real Postgres, Redis and a `bulkmodel worker`.

let tdb: TestDb;
let worker: WorkerProcess;
let dir: string;
const queue = queueName('examples');
const scripts: Script[] = [];
const env = () => ({ REDIS_URL, BULKMODEL_QUEUE: queue, ITEMS_TABLE: tdb.t('items') });

beforeAll(async () => {
  tdb = await testDb('examples');
  dir = await mkdtemp(join(tmpdir(), 'bulkmodel-examples-'));
  await tdb.pool.query(`CREATE TABLE ${tdb.t('items')} (
    id bigserial PRIMARY KEY, sku text UNIQUE NOT NULL, name text NOT NULL, price numeric(12,2),
    value integer, flag boolean NOT NULL DEFAULT false, created_at timestamptz NOT NULL DEFAULT now())`);
  worker = await startWorker({ tables: [tdb.t('items')], queue, prefix: 'bull' });
});

afterAll(async () => {
  for (const s of scripts) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  if (worker) await stopWorker(worker);
  await killAll();
  await obliterate(queue, 'bull');
  await rm(dir, { recursive: true, force: true });
  await tdb?.close();
});

describe('examples/webapp.ts', () => {
  it('POST /items enqueues, the app logs the signals, GET /operations/:id reports the result', async () => {
    const app = runScript('examples/webapp.ts', { ...env(), PORT: '0' });
    scripts.push(app);
    const base = await until(
      'the app to listen',
      () => /listening on (http:\/\/\S+)/.exec(app.output())?.[1],
    );
    const rows = Array.from({ length: 2500 }, (_, i) => ({ sku: `w-${i}`, name: `web ${i}` }));
    const post = await fetch(`${base}/items`, { method: 'POST', body: JSON.stringify(rows) });
    expect(post.status).toBe(202);
    const { operationId } = (await post.json()) as { operationId: string };

    const done = await until('the operation to complete', async () => {
      const r = await fetch(`${base}/operations/${operationId}`);
      const body = (await r.json()) as { state: string; result?: { count: number } };
      return body.state === 'completed' ? body : undefined;
    });
    expect(done.result?.count).toBe(2500);
    await until('the signals of its 3 chunks in the app log', () => {
      const seen = app.output().match(new RegExp(`postBulkCreate ${operationId} chunk`, 'g'));
      return (seen?.length ?? 0) === 3;
    });
    const n = await tdb.pool.query(`SELECT count(*)::int AS n FROM ${tdb.t('items')}`);
    expect(n.rows[0].n).toBe(2500);

    expect((await fetch(`${base}/items`, { method: 'POST', body: '{oops' })).status).toBe(400);
    expect((await fetch(`${base}/operations/nope`)).status).toBe(404);
    app.child.kill('SIGTERM');
    expect((await app.exited).code).toBe(0);
  });
});

describe('examples/load-csv.ts', () => {
  it('loads a CSV file through the queue: NULL vs empty, quoting, booleans', async () => {
    const file = join(dir, 'items.csv');
    await writeFile(
      file,
      'sku,name,price,value,flag\nc-1,"comma, ""quote""\nnewline",1.50,7,true\nc-2,"",,,f\n',
    );
    const s = runScript('examples/load-csv.ts', env(), [tdb.t('items'), file]);
    scripts.push(s);
    const { code } = await s.exited;
    expect(code, s.output()).toBe(0);
    expect(s.output()).toMatch(/loaded 2 rows/);
    const r = await tdb.pool.query(
      `SELECT sku, name, price::text, value, flag FROM ${tdb.t('items')} WHERE sku LIKE 'c-%' ORDER BY sku`,
    );
    expect(r.rows).toEqual([
      { sku: 'c-1', name: 'comma, "quote"\nnewline', price: '1.50', value: 7, flag: true },
      { sku: 'c-2', name: '', price: null, value: null, flag: false },
    ]);
  });
});
