import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Job, Queue } from 'bullmq';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BulkProducer, type Row } from '../src/index.js';
import { encodeRows } from '../src/queue/values.js';
import { type TestDb, testDb } from './helpers.js';
import {
  deleteKeys,
  killAll,
  obliterate,
  queueName,
  REDIS_URL,
  rejection,
  runPrefix,
  startWorker,
  stopWorker,
  until,
  type WorkerProcess,
} from './queueHelpers.js';

/**
 * Bad input through the queue: each fails its operation with its code, writes nothing, is never
 * retried, and the same worker process then completes a good operation. Workers run one job at
 * a time here, so "nothing written" covers the chunks after the bad one too.
 */
let tdb: TestDb;
const prefix = runPrefix('bad');

beforeAll(async () => {
  tdb = await testDb('qbad');
  await tdb.pool.query(`
    CREATE TABLE ${tdb.t('items')} (id bigserial PRIMARY KEY, name text NOT NULL, n int);
    CREATE TABLE ${tdb.t('secret')} (id bigserial PRIMARY KEY, name text NOT NULL, n int);`);
});
afterAll(async () => {
  await killAll();
  await tdb.close();
  await deleteKeys(`${prefix}:*`);
});

let queue: string;
let worker: WorkerProcess;
let producer: BulkProducer;
let q: Queue;
beforeEach(async () => {
  await tdb.pool.query(`TRUNCATE ${tdb.t('items')}, ${tdb.t('secret')} RESTART IDENTITY`);
  queue = queueName('bad');
  worker = await startWorker({ tables: [tdb.t('items')], queue, prefix, concurrency: 1 });
  producer = new BulkProducer({ redis: REDIS_URL, queue, prefix });
  q = new Queue(queue, { connection: { url: REDIS_URL }, prefix });
});
afterEach(async () => {
  await q.close();
  await producer.close();
  expect(await stopWorker(worker)).toBe(0);
  await obliterate(queue, prefix);
});

async function count(table: string): Promise<number> {
  return (await tdb.pool.query(`SELECT count(*)::int AS n FROM ${tdb.t(table)}`)).rows[0].n;
}

function goodRows(n: number, tag = 'good'): Row[] {
  return Array.from({ length: n }, (_, i) => ({ name: `${tag}${i}`, n: i }));
}

/** The worker that failed the bad operation is still alive and completes a good one. */
async function sameWorkerStillServes(): Promise<void> {
  expect(worker.child.exitCode).toBeNull();
  const before = await count('items');
  const op = await producer.bulkCreate(tdb.t('items'), goodRows(12, 'after'), { batchSize: 5 });
  expect(await op.done()).toEqual({ count: 12 });
  expect(await count('items')).toBe(before + 12);
}

/** 15 rows in chunks of 5; row 3 (in the first chunk) is bad. */
function withBadRow(bad: Row): Row[] {
  const rows = goodRows(15);
  rows[3] = bad;
  return rows;
}

/** Every chunk job of the operation that ran, ran once: none was retried. */
async function noChunkRetried(opId: string): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const job = await Job.fromId(q, `${opId}-c${i}`);
    if (job) expect(job.attemptsMade).toBeLessThanOrEqual(1);
  }
}

describe('bad input through the queue', () => {
  it('a table not in the allowlist: TABLE_NOT_ALLOWED, nothing written', async () => {
    const op = await producer.bulkCreate(tdb.t('secret'), goodRows(15), { batchSize: 5 });
    const err = await rejection(op.done());
    expect(err.code).toBe('TABLE_NOT_ALLOWED');
    expect(err.table).toBe(tdb.t('secret'));
    expect(await count('secret')).toBe(0);
    await noChunkRetried(op.id);
    // an update and a copyTo are refused the same way
    const up = await producer.update(tdb.t('secret'), { where: { n: 1 }, set: { name: 'x' } });
    expect((await rejection(up.done())).code).toBe('TABLE_NOT_ALLOWED');
    await sameWorkerStillServes();
  });

  it('an unknown column: UNKNOWN_COLUMN naming it, nothing written (refused at enqueue, or by the worker)', async () => {
    // Payload version 2 (the default, once a worker published the table's columns) refuses at
    // enqueue; version 1 leaves it to the worker. Either fails the operation with the code.
    const early = await rejection(
      producer.bulkCreate(tdb.t('items'), withBadRow({ name: 'x', nope: 1 }), {
        batchSize: 5,
        operationId: `early-${queue}`,
      }),
    );
    expect(early.code).toBe('UNKNOWN_COLUMN');
    expect((await rejection(producer.operation(`early-${queue}`).done())).code).toBe(
      'UNKNOWN_COLUMN',
    );
    const v1 = new BulkProducer({ redis: REDIS_URL, queue, prefix, payloadVersion: 1 });
    try {
      const op = await v1.bulkCreate(tdb.t('items'), withBadRow({ name: 'x', nope: 1 }), {
        batchSize: 5,
      });
      const err = await rejection(op.done());
      expect(err.code).toBe('UNKNOWN_COLUMN');
      expect(err.message).toContain('nope');
      await noChunkRetried(op.id);
    } finally {
      await v1.close();
    }
    expect(await count('items')).toBe(0);
    await sameWorkerStillServes();
  });

  it('a wrong type: INVALID_VALUE naming column and row, nothing written (at enqueue, or by the worker)', async () => {
    const early = await rejection(
      producer.copyFrom(tdb.t('items'), withBadRow({ name: 'x', n: 'abc' }), { batchSize: 5 }),
    );
    expect([early.code, early.column, early.row]).toEqual(['INVALID_VALUE', 'n', 3]);
    const v1 = new BulkProducer({ redis: REDIS_URL, queue, prefix, payloadVersion: 1 });
    try {
      const op = await v1.copyFrom(tdb.t('items'), withBadRow({ name: 'x', n: 'abc' }), {
        batchSize: 5,
      });
      const err = await rejection(op.done());
      expect([err.code, err.column, err.row]).toEqual(['INVALID_VALUE', 'n', 3]);
      await noChunkRetried(op.id);
    } finally {
      await v1.close();
    }
    expect(await count('items')).toBe(0);
    await sameWorkerStillServes();
  });

  it('a NOT NULL violation: NOT_NULL_VIOLATION, nothing written', async () => {
    const op = await producer.bulkCreate(tdb.t('items'), withBadRow({ name: null, n: 1 }), {
      batchSize: 5,
      returning: true,
    });
    const err = await rejection(op.done());
    expect(err.code).toBe('NOT_NULL_VIOLATION');
    expect(err.pgCode).toBe('23502');
    expect(await count('items')).toBe(0);
    await noChunkRetried(op.id);
    await sameWorkerStillServes();
  });

  it('updateFields of an unknown field: UNKNOWN_COLUMN, nothing changed', async () => {
    await (await producer.bulkCreate(tdb.t('items'), goodRows(10))).done();
    const op = await producer.updateFields(
      tdb.t('items'),
      goodRows(10).map((r, i) => ({ id: i + 1, ...r, name: 'changed' })),
      { fields: ['name', 'nope'], batchSize: 3 },
    );
    expect((await rejection(op.done())).code).toBe('UNKNOWN_COLUMN');
    const changed = await tdb.pool.query(
      `SELECT count(*)::int AS n FROM ${tdb.t('items')} WHERE name = 'changed'`,
    );
    expect(changed.rows[0].n).toBe(0);
    await sameWorkerStillServes();
  });

  it('a malformed job added straight to the queue fails with INVALID_PAYLOAD, not retried', async () => {
    const job = await q.add('chunk', { garbage: true, rows: 'DROP TABLE x' }, { attempts: 5 });
    const failed = await until('the malformed job to fail', async () => {
      // State first, then the job: a job read before it failed carries stale fields.
      if ((await q.getJobState(job.id!)) !== 'failed') return undefined;
      return (await Job.fromId(q, job.id!)) ?? undefined;
    });
    expect(failed.failedReason).toMatch(/^INVALID_PAYLOAD/);
    expect(failed.attemptsMade).toBe(1);
    // a job name the worker does not know, with data of the right shape
    const odd = await q.add(
      'drop-everything',
      { v: 1, operationId: 'x', seal: true },
      { attempts: 5 },
    );
    const oddFailed = await until('the odd job to fail', async () => {
      // State first, then the job: a job read before it failed carries stale fields.
      if ((await q.getJobState(odd.id!)) !== 'failed') return undefined;
      return (await Job.fromId(q, odd.id!)) ?? undefined;
    });
    expect(oddFailed.failedReason).toMatch(/^INVALID_PAYLOAD/);
    expect(oddFailed.attemptsMade).toBe(1);
    expect(await count('items')).toBe(0);
    await sameWorkerStillServes();
  });

  it('a payload of another version fails its operation with INVALID_PAYLOAD, not retried', async () => {
    const opId = `v2-${queue}`;
    const enc = encodeRows(goodRows(3), 0);
    const job = await q.add(
      'chunk',
      {
        v: 4,
        kind: 'bulkCreate',
        operationId: opId,
        table: tdb.t('items'),
        chunk: { index: 0, offset: 0 },
        options: {},
        columns: enc.columns,
        rows: enc.rows,
      },
      { attempts: 5 },
    );
    const j = await until('the job to be failed', async () => {
      if ((await q.getJobState(job.id!)) !== 'failed') return undefined;
      return (await Job.fromId(q, job.id!)) ?? undefined;
    });
    expect(j.attemptsMade).toBe(1);
    // the worker recorded the failure under the operation id the job named
    const err = await rejection(producer.operation(opId).done());
    expect(err.code).toBe('INVALID_PAYLOAD');
    expect(err.message).toContain('version 4');
    expect(await count('items')).toBe(0);
    await sameWorkerStillServes();
  });

  it('an allowed table created after the worker started is allowed under any spelling', async () => {
    const name = `later_${queue.replace(/[^a-z0-9]/g, '_')}`;
    const other = queueName('later');
    const w = await startWorker({ tables: [name], queue: other, prefix });
    const p2 = new BulkProducer({ redis: REDIS_URL, queue: other, prefix });
    try {
      await tdb.pool.query(`CREATE TABLE public.${name} (id serial PRIMARY KEY, v text)`);
      const op = await p2.bulkCreate(`public.${name}`, [{ v: 'a' }, { v: 'b' }]);
      expect(await op.done()).toEqual({ count: 2 });
      // and a table of the same name in another schema is still refused
      await tdb.pool.query(`CREATE TABLE ${tdb.t(name)} (id serial PRIMARY KEY, v text)`);
      const bad = await p2.bulkCreate(tdb.t(name), [{ v: 'x' }]);
      expect((await rejection(bad.done())).code).toBe('TABLE_NOT_ALLOWED');
      expect(
        (await tdb.pool.query(`SELECT count(*)::int AS n FROM ${tdb.t(name)}`)).rows[0].n,
      ).toBe(0);
    } finally {
      await p2.close();
      expect(await stopWorker(w)).toBe(0);
      await obliterate(other, prefix);
      await tdb.pool.query(`DROP TABLE IF EXISTS public.${name}`);
    }
  });

  it('copyTo paths that are not plain file names are refused at enqueue', async () => {
    const outside = join(tmpdir(), `bulkmodel-evil-${queue}.csv`);
    for (const path of [
      '../../evil.csv',
      outside,
      '.',
      '..',
      'a/b.csv',
      'a\\b.csv',
      '.hidden',
      'x\u0000y',
      'a\nb',
      '',
      'é'.repeat(200),
    ]) {
      const err = await rejection(producer.copyTo(tdb.t('items'), { path }));
      expect([path, err.code]).toEqual([path, 'INVALID_OPTION']);
    }
    expect(existsSync(outside)).toBe(false);
  });

  it('copyTo without an export directory is refused by the worker: EXPORT_DISABLED', async () => {
    const op = await producer.copyTo(tdb.t('items'), { path: 'items.csv' });
    expect((await rejection(op.done())).code).toBe('EXPORT_DISABLED');
    await sameWorkerStillServes();
  });

  it('copyTo never replaces a file, nor follows a link, unless told to overwrite', async () => {
    const exportDir = mkdtempSync(join(tmpdir(), 'bulkmodel-export-'));
    const outsideDir = mkdtempSync(join(tmpdir(), 'bulkmodel-outside-'));
    const victim = join(outsideDir, 'victim.txt');
    writeFileSync(victim, 'keep me');
    symlinkSync(victim, join(exportDir, 'link.csv'));
    writeFileSync(join(exportDir, 'app.js'), 'original');
    const other = queueName('symlink');
    const start = (args: string[]) =>
      startWorker({
        tables: [tdb.t('items')],
        queue: other,
        prefix,
        args: ['--export-dir', exportDir, ...args],
      });
    let w = await start([]);
    const p2 = new BulkProducer({ redis: REDIS_URL, queue: other, prefix });
    try {
      await tdb.pool.query(`INSERT INTO ${tdb.t('items')} (name, n) VALUES ('console.log(1)', 1)`);
      for (const path of ['link.csv', 'app.js']) {
        const err = await rejection((await p2.copyTo(tdb.t('items'), { path })).done());
        expect([path, err.code]).toEqual([path, 'FILE_EXISTS']);
      }
      expect(readFileSync(victim, 'utf8')).toBe('keep me');
      expect(readFileSync(join(exportDir, 'app.js'), 'utf8')).toBe('original');
      const ok = await (await p2.copyTo(tdb.t('items'), { path: 'data.csv' })).done();
      expect(ok.path).toBe(join(realpathSync(exportDir), 'data.csv'));
      expect(readFileSync(join(exportDir, 'data.csv'), 'utf8')).toBe(
        'id,name,n\n1,console.log(1),1\n',
      );
      // a second export of the same name is refused; no temporary file is left behind
      const again = await rejection((await p2.copyTo(tdb.t('items'), { path: 'data.csv' })).done());
      expect(again.code).toBe('FILE_EXISTS');
      expect(readdirSync(exportDir).sort()).toEqual(['app.js', 'data.csv', 'link.csv']);
      // with --export-overwrite the link itself is replaced, never what it points to
      expect(await stopWorker(w)).toBe(0);
      w = await start(['--export-overwrite']);
      await (await p2.copyTo(tdb.t('items'), { path: 'link.csv' })).done();
      expect(lstatSync(join(exportDir, 'link.csv')).isSymbolicLink()).toBe(false);
      expect(readFileSync(victim, 'utf8')).toBe('keep me');
      expect(readdirSync(outsideDir)).toEqual(['victim.txt']);
    } finally {
      await p2.close();
      expect(await stopWorker(w)).toBe(0);
      await obliterate(other, prefix);
      rmSync(exportDir, { recursive: true, force: true });
      rmSync(outsideDir, { recursive: true, force: true });
    }
  });
});
