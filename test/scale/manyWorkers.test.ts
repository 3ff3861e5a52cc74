import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BulkEvents, BulkProducer, type ProgressEvent, type Row } from '../../src/index.js';
import { writesTrigger } from '../faults/harness.js';
import { type TestDb, testDb } from '../helpers.js';
import {
  deleteKeys,
  killAll,
  obliterate,
  queueName,
  runPrefix,
  startWorker,
  stopWorker,
  TEST_QUEUE,
  until,
  type WorkerProcess,
} from '../queueHelpers.js';

/**
 * Eight worker processes of concurrency 4 (32 chunks at once on 2 cores) on one operation of
 * 500,000 rows, then on updates of every row in a shuffled order, then on updates whose chunks
 * overlap (each key in two chunks, in other orders): every row written exactly once per
 * operation (a trigger counts a row's updates), no deadlock (Postgres's own counter), progress
 * that only moves forward and ends at the total. Runs alone (`npm run test:scale`): it takes
 * the whole machine.
 */
const ROWS = Number(process.env.SCALE_ROWS ?? 500_000);
const WORKERS = 8;
const prefix = runPrefix('scale');
const queue = queueName('scale');
let tdb: TestDb;
let T: string;
let producer: BulkProducer;
let events: BulkEvents;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  tdb = await testDb('scale');
  T = tdb.t('items');
  await tdb.pool.query(
    `CREATE TABLE ${T} (id bigserial PRIMARY KEY, n int UNIQUE NOT NULL, name text, v bigint,
       writes int NOT NULL DEFAULT 0);
     ${writesTrigger(T, tdb.schema, 'items')}`,
  );
  workers.push(
    ...(await Promise.all(
      Array.from({ length: WORKERS }, (_, i) =>
        startWorker({ tables: [T], queue, prefix, concurrency: 4, name: `s${i}` }),
      ),
    )),
  );
  producer = new BulkProducer({ ...TEST_QUEUE, queue, prefix });
  events = new BulkEvents({ ...TEST_QUEUE, queue, prefix });
  // Events of workers that counted chunks at once may arrive crossed: keep what moves forward,
  // as Operation's 'progress' does.
  events.on('progress', (p) => {
    const seen = progress.get(p.operationId);
    if (seen && p.chunksDone > (seen.at(-1)?.chunksDone ?? 0)) seen.push(p);
  });
  await events.waitUntilReady();
}, 120_000);
afterAll(async () => {
  await events?.close();
  await producer?.close();
  for (const w of workers) await stopWorker(w);
  await killAll();
  await obliterate(queue, prefix).catch(() => {});
  await deleteKeys(`${prefix}:*`);
  await tdb?.close();
});

async function deadlocks(): Promise<number> {
  const r = await tdb.pool.query(
    'SELECT deadlocks::int AS n FROM pg_stat_database WHERE datname = current_database()',
  );
  return r.rows[0].n;
}

/**
 * Follow an operation's progress from before it is enqueued (32 chunks at once finish much of
 * it while the producer still enqueues): it only moves forward, and ends at the totals.
 */
const progress = new Map<string, ProgressEvent[]>();
function followProgress(operationId: string): ProgressEvent[] {
  const seen: ProgressEvent[] = [];
  progress.set(operationId, seen);
  return seen;
}

function expectForward(seen: ProgressEvent[], rows: number, chunks: number): void {
  expect(seen.length).toBeGreaterThan(1);
  for (let i = 1; i < seen.length; i++) {
    expect(seen[i]!.chunksDone).toBeGreaterThan(seen[i - 1]!.chunksDone);
    expect(seen[i]!.rowsDone).toBeGreaterThanOrEqual(seen[i - 1]!.rowsDone);
  }
  expect(seen.at(-1)).toMatchObject({ rowsDone: rows, chunksDone: chunks });
}

/** A deterministic shuffle (LCG), so that a failure can be replayed. */
function shuffled(n: number, seed: number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  let s = seed;
  for (let i = n - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

describe(`${WORKERS} worker processes on one operation of ${ROWS} rows`, () => {
  it('copyFrom: every row once, progress forward to the total', async () => {
    const before = await deadlocks();
    const rows = function* (): Generator<Row> {
      for (let n = 0; n < ROWS; n++) yield { n, name: `row ${n}\t"${n}"\\` };
    };
    const seen = followProgress('scale-copy');
    const op = await producer.copyFrom(T, rows(), { batchSize: 2000, operationId: 'scale-copy' });
    expect(await op.done({ timeoutMs: 600_000 })).toEqual({ count: ROWS });
    const r = await tdb.pool.query(
      `SELECT count(*)::int AS c, count(DISTINCT n)::int AS d, min(n) AS lo, max(n) AS hi FROM ${T}`,
    );
    expect(r.rows[0]).toEqual({ c: ROWS, d: ROWS, lo: 0, hi: ROWS - 1 });
    await until('the last progress event', () => seen.at(-1)?.rowsDone === ROWS, 30_000);
    expectForward(seen, ROWS, Math.ceil(ROWS / 2000));
    const s = await op.status();
    expect(s).toMatchObject({ state: 'completed', rowsDone: ROWS, totalRows: ROWS });
    expect(await deadlocks()).toBe(before);
  });

  it('updateFields of every row in a shuffled order: each row updated once', async () => {
    const before = await deadlocks();
    const order = shuffled(ROWS, 7);
    const seen = followProgress('scale-shuffled');
    const op = await producer.updateFields(
      T,
      (function* () {
        for (const n of order) yield { n, v: n * 2 + 1 };
      })(),
      { key: 'n', fields: ['v'], batchSize: 2000, operationId: 'scale-shuffled' },
    );
    expect(await op.done({ timeoutMs: 600_000 })).toEqual({ count: ROWS, missing: [] });
    const r = await tdb.pool.query(
      `SELECT count(*) FILTER (WHERE writes = 1 AND v = n * 2 + 1)::int AS ok FROM ${T}`,
    );
    expect(r.rows[0].ok).toBe(ROWS);
    await until('the last progress event', () => seen.at(-1)?.rowsDone === ROWS, 30_000);
    expectForward(seen, ROWS, Math.ceil(ROWS / 2000));
    expect(await deadlocks()).toBe(before);
  });

  it('updateFields whose chunks overlap, in other orders: no deadlock, each chunk once', async () => {
    const before = await deadlocks();
    const span = Math.min(ROWS, 100_000);
    // Every key twice: in a shuffled pass, then in another; chunks of both passes run at once
    // (32 at a time), each locking rows the other's chunks hold.
    const a = shuffled(span, 11);
    const b = shuffled(span, 13);
    const op = await producer.updateFields(
      T,
      (function* () {
        for (const n of a) yield { n, v: n * 3 };
        for (const n of b) yield { n, v: n * 3 };
      })(),
      { key: 'n', fields: ['v'], batchSize: 2000 },
    );
    const res = await op.done({ timeoutMs: 600_000 });
    expect(res.missing).toEqual([]);
    expect(res.count).toBe(span * 2);
    const r = await tdb.pool.query(
      `SELECT count(*) FILTER (WHERE writes = 3 AND v = n * 3)::int AS ok,
              count(*) FILTER (WHERE n < $1)::int AS span FROM ${T}`,
      [span],
    );
    expect(r.rows[0]).toEqual({ ok: span, span });
    expect(await deadlocks()).toBe(before);
  });

  it('the workers stop cleanly', async () => {
    for (const w of workers.splice(0)) expect(await stopWorker(w)).toBe(0);
  });
});
