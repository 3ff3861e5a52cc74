import { randomBytes } from 'node:crypto';
import { Job, type Queue, UnrecoverableError, Worker } from 'bullmq';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BulkProducer, type Row } from '../src/index.js';
import { type TestDb, testDb } from './helpers.js';
import {
  bullQueue,
  deleteKeys,
  killAll,
  lockTable,
  obliterate,
  queueName,
  rejection,
  runPrefix,
  startWorker,
  stopWorker,
  TEST_QUEUE,
  testBackend,
  until,
} from './queueHelpers.js';

/**
 * Several worker processes on one operation: they share its chunks; one SIGKILLed mid-operation
 * loses and duplicates nothing; one sent SIGTERM finishes its in-flight chunks and exits 0.
 * A table lock held by the test keeps chunks in flight (blocked inside their transactions) for
 * as long as the test needs, instead of hoping for timing.
 */
let tdb: TestDb;
const prefix = runPrefix('workers');

beforeAll(async () => {
  tdb = await testDb('qworkers');
  await tdb.pool.query(
    `CREATE TABLE ${tdb.t('items')} (id bigserial PRIMARY KEY, name text NOT NULL, n int UNIQUE)`,
  );
});
afterAll(async () => {
  await killAll();
  await tdb.close();
  await deleteKeys(`${prefix}:*`);
});

let queue: string;
let producer: BulkProducer;
let q: Queue;
beforeEach(async () => {
  await tdb.pool.query(`TRUNCATE ${tdb.t('items')} RESTART IDENTITY`);
  queue = queueName('workers');
  producer = new BulkProducer({ ...TEST_QUEUE, queue, prefix });
  q = bullQueue(queue, prefix);
});
afterEach(async () => {
  await killAll();
  await q.close();
  await producer.close();
  await obliterate(queue, prefix);
});

function rows(n: number): Row[] {
  return Array.from({ length: n }, (_, i) => ({ name: `row ${i}\t"${i}"`, n: i }));
}

/** Every input row is stored exactly once. */
async function expectExactlyOnce(n: number): Promise<void> {
  const r = await tdb.pool.query(
    `SELECT count(*)::int AS total, count(DISTINCT n)::int AS distinct_n, min(n) AS lo, max(n) AS hi FROM ${tdb.t('items')}`,
  );
  expect(r.rows[0]).toEqual({ total: n, distinct_n: n, lo: 0, hi: n - 1 });
}

async function ledgerRows(opId: string): Promise<number> {
  const r = await tdb.pool.query(
    'SELECT count(*)::int AS n FROM bulkmodel.chunk_ledger WHERE operation_id = $1',
    [opId],
  );
  return r.rows[0].n;
}

async function chunkJobs(opId: string, chunks: number): Promise<Job[]> {
  const out: Job[] = [];
  for (let i = 0; i < chunks; i++) {
    const j = await Job.fromId(q, `${opId}-c${i}`);
    if (j) out.push(j);
  }
  return out;
}

const tag = () => randomBytes(2).toString('hex');

describe('workers', () => {
  it('a chunk BullMQ failed for stalling (its worker kept vanishing) ends the operation as WORKER_LOST', async () => {
    // No bulkmodel worker records anything: BullMQ itself fails the chunk, as its stall limit
    // does (the same reason), and the parent fails for its child.
    const backend = testBackend(prefix);
    const raw = new Worker(
      queue,
      async (job) => {
        if (job.name === 'operation') throw new UnrecoverableError('parent');
        throw new UnrecoverableError('job stalled more than allowable limit');
      },
      { ...backend.bullOptions(queue), concurrency: 1 },
      backend.bullFactory,
    );
    try {
      const op = await producer.bulkCreate(tdb.t('items'), rows(3), { batchSize: 5 });
      const err = await rejection(op.done({ timeoutMs: 20_000 }));
      expect(err.code).toBe('WORKER_LOST');
      expect(err.message).toContain('job stalled more than allowable limit');
      expect((await op.status()).state).not.toBe('completed');
    } finally {
      await raw.close();
      await backend.close();
    }
  });

  it('two workers share the chunks of one operation; every row once', async () => {
    const names = [`A-${tag()}`, `B-${tag()}`];
    const workers = await Promise.all(
      names.map((name) =>
        startWorker({ tables: [tdb.t('items')], queue, prefix, name, concurrency: 4 }),
      ),
    );
    const lock = await lockTable(tdb.pool, tdb.t('items'));
    const op = await producer.bulkCreate(tdb.t('items'), rows(300), { batchSize: 7 });
    // Both workers hold four chunks each, blocked on the lock: each has taken some.
    await until('eight chunks in flight', async () => (await lock.waiting()) >= 8);
    await lock.release();
    expect(await op.done()).toEqual({ count: 300 });
    await expectExactlyOnce(300);
    const jobs = await chunkJobs(op.id, 43);
    expect(jobs).toHaveLength(43);
    const per = new Map<string, number>();
    for (const j of jobs) per.set(j.processedBy ?? '?', (per.get(j.processedBy ?? '?') ?? 0) + 1);
    expect([...per.keys()].sort()).toEqual([...names].sort());
    for (const name of names) expect(per.get(name)).toBeGreaterThanOrEqual(4);
    expect(await ledgerRows(op.id)).toBe(43);
    for (const w of workers) expect(await stopWorker(w)).toBe(0);
  });

  it('a worker SIGKILLed mid-operation, another started: every row once, full result', async () => {
    const n = 2000;
    const a = await startWorker({ tables: [tdb.t('items')], queue, prefix, lockDurationMs: 2000 });
    const op = await producer.bulkCreate(tdb.t('items'), rows(n), {
      batchSize: 7,
      returning: ['id', 'n'],
    });
    let progressed = 0;
    op.on('progress', (p) => {
      progressed = Math.max(progressed, p.chunksDone);
    });
    await until('the first progress event', () => progressed > 0);
    const lock = await lockTable(tdb.pool, tdb.t('items'));
    await until('chunks in flight', async () => (await lock.waiting()) >= 1);
    a.child.kill('SIGKILL');
    expect((await a.exited).signal).toBe('SIGKILL');
    await lock.release();
    const committedBefore = (
      await tdb.pool.query(`SELECT count(*)::int AS n FROM ${tdb.t('items')}`)
    ).rows[0].n;
    expect(committedBefore).toBeGreaterThan(0);
    expect(committedBefore).toBeLessThan(n);

    const b = await startWorker({ tables: [tdb.t('items')], queue, prefix, lockDurationMs: 2000 });
    const res = await op.done();
    expect(res.count).toBe(n);
    expect(res.rows).toHaveLength(n);
    expect(res.rows!.map((r) => r.n)).toEqual(rows(n).map((r) => r.n));
    await expectExactlyOnce(n);
    const ids = await tdb.pool.query(`SELECT id, n FROM ${tdb.t('items')}`);
    const idOf = new Map(ids.rows.map((r) => [r.n, String(r.id)]));
    for (const r of res.rows!) expect(String(r.id)).toBe(idOf.get(r.n));
    expect(await ledgerRows(op.id)).toBe(Math.ceil(n / 7));
    // the chunks the killed worker held were handed to the new one
    const jobs = await chunkJobs(op.id, Math.ceil(n / 7));
    expect(jobs.some((j) => j.stalledCounter > 0 || j.attemptsStarted > 1)).toBe(true);
    expect(await stopWorker(b)).toBe(0);
  });

  it('SIGTERM with chunks in flight: they finish, the worker exits 0, nothing lost', async () => {
    const n = 200;
    const name = `T-${tag()}`;
    const a = await startWorker({ tables: [tdb.t('items')], queue, prefix, name, concurrency: 4 });
    const lock = await lockTable(tdb.pool, tdb.t('items'));
    const op = await producer.copyFrom(tdb.t('items'), rows(n), { batchSize: 5 });
    await until('four chunks in flight', async () => (await lock.waiting()) >= 4);
    a.child.kill('SIGTERM');
    await a.waitForLog(/stopping: finishing in-flight chunks/);
    await lock.release();
    expect((await a.exited).code).toBe(0);
    expect(a.output()).not.toMatch(/did not finish in time/);
    // Nothing was left active (locked by the dead worker); what it took, it finished.
    expect(await q.getActiveCount()).toBe(0);
    const jobs = await chunkJobs(op.id, n / 5);
    const finishedByA = jobs.filter((j) => j.processedBy === name && j.finishedOn);
    expect(finishedByA.length).toBeGreaterThanOrEqual(4);
    expect(await ledgerRows(op.id)).toBe(finishedByA.length);

    const b = await startWorker({ tables: [tdb.t('items')], queue, prefix });
    expect(await op.done()).toEqual({ count: n });
    await expectExactlyOnce(n);
    const all = await chunkJobs(op.id, n / 5);
    expect(all.every((j) => j.stalledCounter === 0)).toBe(true);
    expect(await stopWorker(b)).toBe(0);
  });

  it('a second SIGTERM exits at once; the chunks it held replay exactly once elsewhere', async () => {
    const n = 120;
    const a = await startWorker({ tables: [tdb.t('items')], queue, prefix, lockDurationMs: 2000 });
    const lock = await lockTable(tdb.pool, tdb.t('items'));
    const op = await producer.bulkCreate(tdb.t('items'), rows(n), { batchSize: 6 });
    await until('chunks in flight', async () => (await lock.waiting()) >= 4);
    a.child.kill('SIGTERM');
    await a.waitForLog(/stopping: finishing in-flight chunks/);
    a.child.kill('SIGTERM');
    expect((await a.exited).code).toBe(130);
    await lock.release();
    const b = await startWorker({ tables: [tdb.t('items')], queue, prefix, lockDurationMs: 2000 });
    expect(await op.done()).toEqual({ count: n });
    await expectExactlyOnce(n);
    expect(await ledgerRows(op.id)).toBe(n / 6);
    expect(await stopWorker(b)).toBe(0);
  });

  it('cancel: chunks not started are dropped, done() rejects CANCELLED, the worker goes on', async () => {
    const a = await startWorker({ tables: [tdb.t('items')], queue, prefix, concurrency: 2 });
    const lock = await lockTable(tdb.pool, tdb.t('items'));
    const op = await producer.bulkCreate(tdb.t('items'), rows(100), { batchSize: 5 });
    await until('chunks in flight', async () => (await lock.waiting()) >= 2);
    await op.cancel();
    await lock.release();
    expect((await rejection(op.done())).code).toBe('CANCELLED');
    expect((await op.status()).state).toBe('cancelled');
    // at most the chunks already in flight committed, each whole
    const written = (await tdb.pool.query(`SELECT count(*)::int AS n FROM ${tdb.t('items')}`))
      .rows[0].n;
    expect(written % 5).toBe(0);
    expect(written).toBeLessThanOrEqual(10);
    await until(
      'nothing left to run',
      async () => (await q.getWaitingCount()) === 0 && (await q.getActiveCount()) === 0,
    );
    const after = await producer.bulkCreate(
      tdb.t('items'),
      rows(10).map((r, i) => ({ ...r, n: 1000 + i })),
    );
    expect(await after.done()).toEqual({ count: 10 });
    expect(await stopWorker(a)).toBe(0);
  });

  it('chunks whose connections are terminated mid-transaction are retried: every row once', async () => {
    const n = 140;
    const a = await startWorker({ tables: [tdb.t('items')], queue, prefix, concurrency: 4 });
    const lock = await lockTable(tdb.pool, tdb.t('items'));
    const op = await producer.bulkCreate(tdb.t('items'), rows(n), { batchSize: 7 });
    let terminated = 0;
    for (let round = 0; round < 2; round++) {
      await until('chunks blocked', async () => (await lock.waiting()) >= 4);
      const r = await tdb.pool.query(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_locks
          WHERE NOT granted AND relation = $1::regclass`,
        [tdb.t('items')],
      );
      terminated += r.rows[0].n;
    }
    expect(terminated).toBeGreaterThanOrEqual(8);
    await lock.release();
    expect(await op.done()).toEqual({ count: n });
    await expectExactlyOnce(n);
    expect(await ledgerRows(op.id)).toBe(n / 7);
    expect(a.child.exitCode).toBeNull();
    expect(await stopWorker(a)).toBe(0);
  });

  it('idle connections killed between jobs: the worker reconnects and goes on', async () => {
    const a = await startWorker({ tables: [tdb.t('items')], queue, prefix });
    const first = await producer.bulkCreate(tdb.t('items'), rows(40), { batchSize: 5 });
    expect(await first.done()).toEqual({ count: 40 });
    const killed = await tdb.pool.query(
      `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'bulkmodel' AND pid <> pg_backend_pid()`,
    );
    expect(killed.rows[0].n).toBeGreaterThan(0);
    const more = rows(80).slice(40);
    const second = await producer.copyFrom(tdb.t('items'), more, { batchSize: 5 });
    expect(await second.done()).toEqual({ count: 40 });
    await expectExactlyOnce(80);
    expect(a.child.exitCode).toBeNull();
    expect(await stopWorker(a)).toBe(0);
  });

  it('SIGTERM with chunks stuck past --close-timeout: exits anyway; they replay exactly once', async () => {
    const n = 60;
    const a = await startWorker({
      tables: [tdb.t('items')],
      queue,
      prefix,
      lockDurationMs: 2000,
      args: ['--close-timeout', '300'],
    });
    const lock = await lockTable(tdb.pool, tdb.t('items'));
    try {
      const op = await producer.bulkCreate(tdb.t('items'), rows(n), { batchSize: 5 });
      await until('chunks in flight', async () => (await lock.waiting()) >= 4);
      a.child.kill('SIGTERM');
      // the lock is still held: the worker must leave on its own
      const exit = await a.exited;
      expect(exit.signal).toBeNull();
      expect(a.output()).toMatch(/did not finish in time/);
      await lock.release();
      const b = await startWorker({
        tables: [tdb.t('items')],
        queue,
        prefix,
        lockDurationMs: 2000,
      });
      expect(await op.done()).toEqual({ count: n });
      await expectExactlyOnce(n);
      expect(await stopWorker(b)).toBe(0);
    } finally {
      await lock.release().catch(() => {});
    }
  });
});
