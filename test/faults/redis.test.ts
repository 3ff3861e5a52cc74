import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BulkProducer, type Row, silentLogger } from '../../src/index.js';
import { type TestDb, testDb } from '../helpers.js';
import { queueName, runPrefix, until } from '../queueHelpers.js';
import {
  type Child,
  killChildren,
  type OwnRedis,
  report,
  startOwnRedis,
  startWorkerAt,
  stopChild,
  tallyInsert,
  tallyUpdate,
  writesTrigger,
} from './harness.js';

/**
 * Redis faults, on a redis-server of the test's own run as production runs it (AOF on, no RDB
 * snapshots): SIGKILLed and started again mid-operation (it replays its AOF), and unreachable
 * for 10 seconds. Producers (one still enqueueing) and worker processes reconnect and go on;
 * every row lands once and every op.done() resolves with the full result.
 */
const prefix = runPrefix('redis');
let tdb: TestDb;
let redis: OwnRedis;
let n = 0;

beforeAll(async () => {
  tdb = await testDb('redisf');
  redis = await startOwnRedis();
});
afterAll(async () => {
  await killChildren();
  await redis?.close();
  await tdb?.close();
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

const rows = (count: number, from = 0): Row[] =>
  Array.from({ length: count }, (_, i) => ({ n: from + i, name: `r${from + i}` }));

/** An input that yields its rows slowly, so the producer is still enqueueing during the fault. */
async function* slowly(all: Row[], every: number): AsyncGenerator<Row> {
  for (let i = 0; i < all.length; i++) {
    if (i % every === 0) await new Promise((r) => setTimeout(r, 100));
    yield all[i]!;
  }
}

async function setup(label: string) {
  const queue = queueName(label);
  const producer = new BulkProducer({ redis: redis.url, queue, prefix, logger: silentLogger });
  const workers: Child[] = [];
  for (let i = 0; i < 2; i++)
    workers.push(
      await startWorkerAt({
        tables: ['*'],
        queue,
        prefix,
        redis: redis.url,
        name: `${label}-${i}`,
        concurrency: 2,
        lockDurationMs: 15_000,
      }),
    );
  return {
    producer,
    workers,
    async close() {
      for (const w of workers) expect(await stopChild(w)).toBe(0);
      await producer.close();
    },
  };
}

async function faultDuring(label: string, fault: () => Promise<void>): Promise<void> {
  const ROWS = 40_000;
  const s = await setup(label);
  const a = await table();
  const b = await table(ROWS);
  const c = await table();
  const op1 = await s.producer.bulkCreate(a, rows(ROWS), {
    batchSize: 500,
    returning: ['id', 'n'],
  });
  const op2 = await s.producer.updateFields(
    b,
    rows(ROWS).map((r) => ({ id: (r.n as number) + 1, v: r.n })),
    { fields: ['v'], batchSize: 500 },
  );
  // A third producer call is still reading its input when Redis goes away.
  let enqueued = false;
  const enqueueing = s.producer.copyFrom(c, slowly(rows(20_000), 500), { batchSize: 500 });
  void enqueueing.then(() => {
    enqueued = true;
  });
  await until('some chunks committed', async () => (await op1.status()).chunksDone >= 5, 60_000, 5);
  const enqueuedBefore = enqueued;
  await fault();
  expect(enqueuedBefore).toBe(false);
  const op3 = await enqueueing;
  const [r1, r2, r3] = await Promise.all([op1.done(), op2.done(), op3.done()]);
  expect(r1.count).toBe(ROWS);
  expect(r1.rows!.map((r) => r.n)).toEqual(rows(ROWS).map((r) => r.n));
  expect(r2).toEqual({ count: ROWS, missing: [] });
  expect(r3).toEqual({ count: 20_000 });
  const t1 = await tallyInsert(tdb.pool, a, ROWS);
  const t2 = await tallyUpdate(tdb.pool, b, ROWS, 'v = n');
  const t3 = await tallyInsert(tdb.pool, c, 20_000);
  report(`${label} bulkCreate`, t1);
  report(`${label} updateFields`, t2);
  report(`${label} copyFrom (enqueueing during the fault)`, t3);
  expect([t1, t2, t3].map((t) => t.lost + t.duplicated)).toEqual([0, 0, 0]);
  for (const w of s.workers) expect(w.child.exitCode).toBeNull();
  await s.close();
}

describe('Redis faults (own redis-server, AOF)', () => {
  it('Redis SIGKILLed and restarted mid-operation: producers and workers go on, every row once', async () => {
    await faultDuring('redis restart', async () => {
      await redis.kill();
      await redis.start();
    });
  });

  it('Redis unreachable for 10 s: producers and workers wait, then finish, every row once', async () => {
    await faultDuring('redis down 10s', async () => {
      await redis.kill();
      await new Promise((r) => setTimeout(r, 10_000));
      await redis.start();
    });
  });
});
