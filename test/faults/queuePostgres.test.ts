import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BulkProducer, type Row } from '../../src/index.js';
import { DATABASE_URL, type TestDb, testDb } from '../helpers.js';
import {
  deleteKeys,
  obliterate,
  QUEUE_ARGS,
  queueName,
  runPrefix,
  TEST_QUEUE,
  until,
} from '../queueHelpers.js';
import {
  type Child,
  ensurePostgresUp,
  killChildren,
  q,
  report,
  restartPostgres,
  startWorkerAt,
  stopChild,
  tallyInsert,
  tallyUpdate,
  writesTrigger,
} from './harness.js';
import { type PgProxy, startProxy } from './proxy.js';

/**
 * Postgres faults through the queue, with worker processes: backends terminated again and again
 * mid-chunk, the server restarted mid-operation, and Postgres unreachable for 30 seconds (a
 * proxy between the workers and Postgres refuses connections, then accepts and never answers).
 * Workers wait, reconnect and finish; every row lands once and op.done() has the full result.
 * On the Postgres backend (`npm run test:postgres:alone`) a restart takes the queue down too.
 */
const prefix = runPrefix('qpg');
let tdb: TestDb;
let proxy: PgProxy;
let n = 0;

beforeAll(async () => {
  tdb = await testDb('qpg');
  proxy = await startProxy();
});
afterAll(async () => {
  await killChildren();
  await proxy?.close();
  await ensurePostgresUp();
  await q(tdb.pool, 'SELECT 1');
  await tdb?.close();
  await deleteKeys(`${prefix}:*`);
});

async function table(prefill = 0): Promise<string> {
  const name = `t${n++}`;
  const t = tdb.t(name);
  await tdb.pool.query(
    `CREATE TABLE ${t} (id bigserial PRIMARY KEY, n int NOT NULL, name text, v int NOT NULL DEFAULT 0,
       writes int NOT NULL DEFAULT 0);
     ${writesTrigger(t, tdb.schema, name)}`,
  );
  if (prefill)
    await tdb.pool.query(
      `INSERT INTO ${t} (id, n, name) SELECT g + 1, g, 'r' || g FROM generate_series(0, ${prefill - 1}) g`,
    );
  return t;
}

const rows = (count: number): Row[] =>
  Array.from({ length: count }, (_, i) => ({ n: i, name: `r${i}` }));

async function setup(label: string, database = DATABASE_URL) {
  const queue = queueName(label);
  const producer = new BulkProducer({ ...TEST_QUEUE, queue, prefix });
  const workers: Child[] = [];
  for (let i = 0; i < 2; i++)
    workers.push(
      await startWorkerAt({
        tables: ['*'],
        queue,
        prefix,
        redis: '',
        redisArgs: QUEUE_ARGS,
        database,
        name: `${label}-${i}`,
        concurrency: 2,
        lockDurationMs: 10_000,
      }),
    );
  return {
    producer,
    workers,
    async close() {
      for (const w of workers) expect(await stopChild(w)).toBe(0);
      await producer.close();
      await obliterate(queue, prefix);
    },
  };
}

describe('Postgres faults through the queue', () => {
  it('backends terminated again and again mid-chunk: bulkCreate and updateFields, every row once', async () => {
    const ROWS = 60_000;
    const s = await setup('term');
    const a = await table();
    const b = await table(ROWS);
    const admin = new pg.Client({ connectionString: DATABASE_URL, application_name: 'killer' });
    await admin.connect();
    let running = true;
    let kills = 0;
    const killer = (async () => {
      while (running) {
        const r = await admin.query(
          `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
            WHERE application_name = 'bulkmodel' AND datname = current_database()
              AND xact_start IS NOT NULL AND state <> 'idle'`,
        );
        kills += r.rows[0].n;
        await new Promise((res) => setTimeout(res, r.rows[0].n ? 200 : 10));
      }
    })();
    let created: { count: number; rows?: Row[] };
    let updated: { count: number; missing?: Row[] };
    try {
      const op1 = await s.producer.bulkCreate(a, rows(ROWS), {
        batchSize: 1000,
        returning: ['id', 'n'],
      });
      const op2 = await s.producer.updateFields(
        b,
        rows(ROWS).map((r) => ({ id: (r.n as number) + 1, v: r.n })),
        { fields: ['v'], batchSize: 1000 },
      );
      [created, updated] = await Promise.all([op1.done(), op2.done()]);
    } finally {
      running = false;
      await killer;
      await admin.end();
    }
    expect(kills).toBeGreaterThan(0);
    expect(created.count).toBe(ROWS);
    expect(created.rows!.map((r) => r.n)).toEqual(rows(ROWS).map((r) => r.n));
    expect(updated).toEqual({ count: ROWS, missing: [] });
    const t1 = await tallyInsert(tdb.pool, a, ROWS);
    const t2 = await tallyUpdate(tdb.pool, b, ROWS, 'v = n');
    report('queue terminate bulkCreate', t1, `${kills} backends terminated`);
    report('queue terminate updateFields', t2);
    expect([t1, t2].map((t) => t.lost + t.duplicated)).toEqual([0, 0]);
    await s.close();
  });

  it('the server restarted mid-operation: copyFrom returning and update complete, every row once', async () => {
    const ROWS = 80_000;
    const s = await setup('restart');
    const a = await table();
    const b = await table(ROWS);
    const op1 = await s.producer.copyFrom(a, rows(ROWS), { batchSize: 1000, returning: ['id'] });
    const op2 = await s.producer.update(b, { where: { v: 0 }, set: { v: 7 } }, { batchSize: 200 });
    await until(
      'some chunks committed',
      async () => (await op1.status()).chunksDone >= 5,
      60_000,
      5,
    );
    await restartPostgres();
    await ensurePostgresUp();
    const [r1, r2] = await Promise.all([op1.done(), op2.done()]);
    expect(r1.count).toBe(ROWS);
    expect(new Set(r1.rows!.map((r) => String(r.id))).size).toBe(ROWS);
    expect(r2.count).toBe(ROWS);
    const t1 = await tallyInsert(tdb.pool, a, ROWS);
    const t2 = await tallyUpdate(tdb.pool, b, ROWS, 'v = 7');
    report('queue restart copyFrom', t1);
    report('queue restart update', t2);
    expect([t1, t2].map((t) => t.lost + t.duplicated)).toEqual([0, 0]);
    await s.close();
  });

  it('Postgres unreachable for 30 s (refused 15 s, then silent 15 s): workers wait and finish', async () => {
    const ROWS = 40_000;
    const u = new URL(DATABASE_URL);
    u.port = String(proxy.port);
    const s = await setup('outage', u.toString());
    const a = await table();
    const op = await s.producer.bulkCreate(a, rows(ROWS), {
      batchSize: 500,
      returning: ['id', 'n'],
    });
    await until(
      'some chunks committed',
      async () => (await op.status()).chunksDone >= 3,
      60_000,
      5,
    );
    await proxy.down();
    const downAt = Date.now();
    await new Promise((r) => setTimeout(r, 15_000));
    proxy.blackhole(true);
    await proxy.up();
    await new Promise((r) => setTimeout(r, 15_000));
    proxy.blackhole(false);
    const during = (await op.status()).state;
    console.log(`outage of ${Date.now() - downAt} ms; operation state at its end: ${during}`);
    const r = await op.done();
    expect(r.count).toBe(ROWS);
    expect(r.rows!.map((x) => x.n)).toEqual(rows(ROWS).map((x) => x.n));
    const t = await tallyInsert(tdb.pool, a, ROWS);
    report('queue postgres unreachable 30s', t);
    expect(t.lost + t.duplicated).toBe(0);
    for (const w of s.workers) expect(w.child.exitCode).toBeNull();
    await s.close();
  });
});
