import { execFileSync } from 'node:child_process';
import { Job, Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BulkProducer, BulkWorker, type Row, silentLogger } from '../../src/index.js';
import { DATABASE_URL, type TestDb, testDb } from '../helpers.js';
import { deleteKeys, obliterate, queueName, REDIS_URL, runPrefix } from '../queueHelpers.js';
import { killChildren, report, startWorkerAt, stopChild, tallyInsert } from './harness.js';

/**
 * A worker whose event loop is blocked past BullMQ's lock duration: its lock expires, another
 * worker (a child process) takes the same chunk and commits it, and then the first one wakes up
 * and runs the chunk too. The ledger keeps the effect exactly once and the result whole.
 *
 * The first worker is a BulkWorker in this process with a short lock; its preBulkCreate listener
 * busy-waits (blocking the event loop, so no lock renewal) until the chunk's ledger row has been
 * committed by the other worker — a condition polled synchronously with psql, not a sleep.
 */
const prefix = runPrefix('lock');
let tdb: TestDb;

beforeAll(async () => {
  tdb = await testDb('lockexp');
});
afterAll(async () => {
  await killChildren();
  await tdb?.close();
  await deleteKeys(`${prefix}:*`);
});

function ledgerHas(opId: string, index: number): boolean {
  const out = execFileSync(
    'psql',
    [
      DATABASE_URL,
      '-XAtc',
      `SELECT count(*) FROM bulkmodel.chunk_ledger WHERE operation_id = '${opId.replace(/'/g, "''")}' AND chunk_index = ${index} AND result IS NOT NULL`,
    ],
    { encoding: 'utf8' },
  );
  return out.trim() === '1';
}

describe('a worker blocked past its lock duration', () => {
  it('a second worker takes the same chunk; the ledger keeps its effect once', async () => {
    const ROWS = 6_000;
    const t = tdb.t('items');
    await tdb.pool.query(`CREATE TABLE ${t} (id bigserial PRIMARY KEY, n int NOT NULL, name text)`);
    const queue = queueName('lock');
    const producer = new BulkProducer({ redis: REDIS_URL, queue, prefix });
    const q = new Queue(queue, { connection: { url: REDIS_URL }, prefix });
    const blocked = new BulkWorker({
      redis: REDIS_URL,
      database: { connectionString: DATABASE_URL },
      tables: [t],
      queue,
      prefix,
      name: 'blocked',
      concurrency: 1,
      lockDurationMs: 1000,
      logger: silentLogger,
    });
    await blocked.waitUntilReady();
    let stalledChunk: { op: string; index: number } | undefined;
    let waitedPolls = 0;
    blocked.signals.on('preBulkCreate', (e) => {
      if (stalledChunk) return;
      stalledChunk = { op: e.operationId, index: e.chunkIndex };
      // Block the event loop until the other worker has committed this very chunk (bounded).
      const deadline = Date.now() + 60_000;
      while (!ledgerHas(e.operationId, e.chunkIndex)) {
        if (Date.now() > deadline) throw new Error('the other worker never took the chunk');
        waitedPolls++;
        execFileSync('sleep', ['0.1']);
      }
    });
    const other = await startWorkerAt({
      tables: [t],
      queue,
      prefix,
      redis: REDIS_URL,
      name: 'other',
      concurrency: 2,
      lockDurationMs: 1000,
    });
    try {
      const op = await producer.bulkCreate(
        t,
        Array.from({ length: ROWS }, (_, n): Row => ({ n, name: `r${n}` })),
        { batchSize: 200, returning: ['id', 'n'] },
      );
      const res = await op.done({ timeoutMs: 120_000 });
      expect(stalledChunk).toBeDefined();
      expect(waitedPolls).toBeGreaterThan(0);
      expect(res.count).toBe(ROWS);
      expect(res.rows!.map((r) => r.n)).toEqual(Array.from({ length: ROWS }, (_, n) => n));
      const ids = await tdb.pool.query(`SELECT id::text, n FROM ${t}`);
      const idOf = new Map(ids.rows.map((r) => [r.n as number, r.id as string]));
      for (const r of res.rows!) expect(String(r.id)).toBe(idOf.get(r.n as number));
      // The chunk was run by both: handed to the other worker as stalled.
      const job = await Job.fromId(q, `${op.id}-c${stalledChunk!.index}`);
      expect(job!.stalledCounter + job!.attemptsStarted).toBeGreaterThan(1);
      const tally = await tallyInsert(tdb.pool, t, ROWS);
      report('lock expiry', tally, `chunk ${stalledChunk!.index} run by both workers`);
      expect(tally).toEqual({ expected: ROWS, lost: 0, duplicated: 0 });
      // The blocked worker woke up and still serves: it takes part in a second operation.
      const op2 = await producer.bulkCreate(
        t,
        Array.from({ length: 400 }, (_, i): Row => ({ n: ROWS + i, name: 'after' })),
        { batchSize: 20 },
      );
      expect(await op2.done()).toEqual({ count: 400 });
      expect(blocked.stats.completed).toBeGreaterThan(0);
      expect(await tallyInsert(tdb.pool, t, ROWS + 400)).toEqual({
        expected: ROWS + 400,
        lost: 0,
        duplicated: 0,
      });
    } finally {
      await blocked.close();
      expect(await stopChild(other)).toBe(0);
      await q.close();
      await producer.close();
      await obliterate(queue, prefix);
    }
  });
});
