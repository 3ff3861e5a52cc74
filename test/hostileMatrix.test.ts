import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Job, Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BulkClient, type BulkErrorCode, BulkProducer, type Row } from '../src/index.js';
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
 * The hostile-input matrix: every bad input below runs in direct mode and through the queue
 * (one worker process, one job at a time). Each must fail with a BulkError of its code, leave
 * the tables exactly as they were (nothing partial), and leave the worker serving: a good
 * operation completes on the same worker process after each one.
 */
let tdb: TestDb;
let db: BulkClient;
let worker: WorkerProcess;
let exportDir: string;
let producer: BulkProducer;
let q: Queue;
const prefix = runPrefix('matrix');
const queue = queueName('matrix');

beforeAll(async () => {
  tdb = await testDb('matrix');
  await tdb.pool.query(`
    CREATE TABLE ${tdb.t('m')} (
      id bigserial PRIMARY KEY, code text UNIQUE NOT NULL, n int CHECK (n >= 0), name text,
      by bytea, vc varchar(5), i8 bigint, jb jsonb, ts timestamptz, g int GENERATED ALWAYS AS (n * 2) STORED);
    CREATE TABLE ${tdb.t('secret')} (id bigserial PRIMARY KEY, code text, n int);
    INSERT INTO ${tdb.t('m')} (code, n, name) SELECT 'seed' || g, g, 'seed' FROM generate_series(1, 20) g;`);
  db = tdb.client();
  exportDir = mkdtempSync(join(tmpdir(), 'bm-matrix-'));
  worker = await startWorker({
    tables: [tdb.t('m')],
    queue,
    prefix,
    concurrency: 1,
    args: ['--export-dir', exportDir],
  });
  producer = new BulkProducer({ redis: REDIS_URL, queue, prefix, maxPayloadBytes: 256 * 1024 });
  q = new Queue(queue, { connection: { url: REDIS_URL }, prefix });
});
afterAll(async () => {
  if (exportDir) rmSync(exportDir, { recursive: true, force: true });
  await q?.close();
  await producer?.close();
  if (worker) expect(await stopWorker(worker)).toBe(0);
  await killAll();
  await obliterate(queue, prefix).catch(() => {});
  await deleteKeys(`${prefix}:*`);
  await tdb?.close();
});

type Kind = 'bulkCreate' | 'copyFrom' | 'updateFields' | 'update' | 'copyTo';
interface Case {
  name: string;
  kind: Kind;
  /** Table name relative to the test schema, or an absolute name when `raw`. */
  table?: string;
  raw?: boolean;
  /** The bad row (put at index 3 of 15 good rows, in the first chunk), or whole rows. */
  bad?: Row | unknown;
  rows?: unknown[];
  opts?: Record<string, unknown>;
  args?: unknown;
  code: BulkErrorCode;
  /** Code through the queue when it differs (the allowlist answers before the catalog). */
  queueCode?: BulkErrorCode;
  only?: 'direct' | 'queue';
}

let seq = 0;
const good = (n: number): Row[] =>
  Array.from({ length: n }, (_, i) => ({ code: `c${++seq}-${i}`, n: i, name: `ok ${i}` }));
const withBad = (bad: unknown): unknown[] => {
  const rows: unknown[] = good(15);
  rows[3] = bad;
  return rows;
};
const upd = (bad: unknown): unknown[] => {
  const rows: unknown[] = Array.from({ length: 15 }, (_, i) => ({ id: i + 1, name: `u${i}` }));
  rows[3] = bad;
  return rows;
};

const CASES: Case[] = [
  {
    name: 'text where an int goes',
    kind: 'bulkCreate',
    bad: { code: 'x', n: 'five' },
    code: 'INVALID_VALUE',
  },
  {
    name: 'a fraction for an int',
    kind: 'copyFrom',
    bad: { code: 'x', n: 1.5 },
    code: 'INVALID_VALUE',
  },
  {
    name: 'int4 out of range',
    kind: 'bulkCreate',
    bad: { code: 'x', n: 2 ** 31 },
    code: 'INVALID_VALUE',
  },
  {
    name: 'bigint out of range',
    kind: 'copyFrom',
    bad: { code: 'x', i8: 2n ** 63n },
    code: 'INVALID_VALUE',
  },
  {
    name: 'a number beyond 2^53 for bigint',
    kind: 'bulkCreate',
    bad: { code: 'x', i8: 2 ** 60 },
    code: 'INVALID_VALUE',
  },
  {
    name: 'a number for text',
    kind: 'copyFrom',
    bad: { code: 'x', name: 5 },
    code: 'INVALID_VALUE',
  },
  {
    name: 'NUL byte in text',
    kind: 'bulkCreate',
    bad: { code: 'x', name: 'a\u0000b' },
    code: 'INVALID_VALUE',
  },
  {
    name: 'NUL byte in COPY text',
    kind: 'copyFrom',
    bad: { code: 'x\u0000', n: 1 },
    code: 'INVALID_VALUE',
  },
  {
    name: 'lone surrogate in text',
    kind: 'bulkCreate',
    bad: { code: 'x', name: 'a\ud800' },
    code: 'INVALID_VALUE',
  },
  {
    name: 'NUL inside jsonb',
    kind: 'copyFrom',
    bad: { code: 'x', jb: { k: '\u0000' } },
    code: 'INVALID_VALUE',
  },
  {
    name: 'invalid UTF-8 Buffer meant for text',
    kind: 'bulkCreate',
    bad: { code: 'x', name: Buffer.from([0xc3, 0x28, 0xff]) },
    code: 'INVALID_VALUE',
  },
  {
    name: 'invalid UTF-8 Buffer meant for text (COPY)',
    kind: 'copyFrom',
    bad: { code: 'x', name: Buffer.from([0xff, 0xfe]) },
    code: 'INVALID_VALUE',
  },
  {
    name: 'a string for bytea',
    kind: 'bulkCreate',
    bad: { code: 'x', by: 'not bytes' },
    code: 'INVALID_VALUE',
  },
  {
    name: 'a BigInt inside json',
    kind: 'bulkCreate',
    bad: { code: 'x', jb: { big: 10n } },
    code: 'INVALID_VALUE',
  },
  {
    name: 'too long for varchar(5)',
    kind: 'bulkCreate',
    bad: { code: 'x', vc: 'toolong' },
    code: 'DATA_ERROR',
  },
  {
    name: 'an unparseable timestamp',
    kind: 'copyFrom',
    bad: { code: 'x', ts: 'not a time' },
    code: 'DATA_ERROR',
  },
  { name: 'CHECK violation', kind: 'copyFrom', bad: { code: 'x', n: -1 }, code: 'CHECK_VIOLATION' },
  {
    name: 'NOT NULL violation',
    kind: 'bulkCreate',
    bad: { code: null, n: 1 },
    code: 'NOT_NULL_VIOLATION',
  },
  {
    name: 'duplicate keys within one chunk (insert)',
    kind: 'bulkCreate',
    rows: [{ code: 'dup' }, { code: 'dup' }],
    code: 'UNIQUE_VIOLATION',
  },
  {
    name: 'duplicate keys within one chunk (updateFields)',
    kind: 'updateFields',
    rows: [
      { id: 1, name: 'a' },
      { id: 1, name: 'b' },
    ],
    opts: { fields: ['name'] },
    code: 'DUPLICATE_KEY',
  },
  {
    name: 'unknown column',
    kind: 'bulkCreate',
    bad: { code: 'x', nope: 1 },
    code: 'UNKNOWN_COLUMN',
  },
  {
    name: 'column name injection',
    kind: 'copyFrom',
    bad: { code: 'x', 'name"; DROP TABLE m; --': 1 },
    code: 'UNKNOWN_COLUMN',
  },
  {
    name: 'writing a generated column',
    kind: 'bulkCreate',
    bad: { code: 'x', g: 1 },
    code: 'READ_ONLY_COLUMN',
  },
  { name: 'a row that is an array', kind: 'bulkCreate', bad: ['x', 1], code: 'INVALID_ROW' },
  { name: 'a row that is null', kind: 'copyFrom', bad: null, code: 'INVALID_ROW' },
  {
    name: 'updateFields row without its key',
    kind: 'updateFields',
    rows: upd({ name: 'nokey' }),
    opts: { fields: ['name'] },
    code: 'MISSING_KEY',
  },
  {
    name: 'updateFields of an unknown field',
    kind: 'updateFields',
    rows: upd({ id: 4, name: 'x' }),
    opts: { fields: ['name', 'nope'] },
    code: 'UNKNOWN_COLUMN',
  },
  {
    name: 'update: unknown column in where',
    kind: 'update',
    args: { where: { 'n) OR (1=1': 1 }, set: { name: 'x' } },
    code: 'UNKNOWN_COLUMN',
  },
  {
    name: 'update: injection as a set column',
    kind: 'update',
    args: { where: { n: 1 }, set: { 'name = 1; --': 'x' } },
    code: 'UNKNOWN_COLUMN',
  },
  {
    name: 'update: a wrong type in set',
    kind: 'update',
    args: { where: { n: 1 }, set: { n: 'x' } },
    code: 'INVALID_VALUE',
  },
  {
    name: 'copyTo of an unknown column',
    kind: 'copyTo',
    opts: { columns: ['nope'] },
    code: 'UNKNOWN_COLUMN',
  },
  {
    name: 'unknown table',
    kind: 'bulkCreate',
    table: 'nope',
    rows: good(3),
    code: 'UNKNOWN_TABLE',
    queueCode: 'TABLE_NOT_ALLOWED',
  },
  {
    name: 'table name injection',
    kind: 'bulkCreate',
    table: 'm; DROP TABLE secret',
    rows: good(3),
    code: 'INVALID_IDENTIFIER',
  },
  {
    name: 'quoted table name injection',
    kind: 'copyFrom',
    table: '"m; DROP TABLE secret"',
    rows: good(3),
    code: 'UNKNOWN_TABLE',
    queueCode: 'TABLE_NOT_ALLOWED',
  },
  {
    name: 'a table not allowed',
    kind: 'bulkCreate',
    table: 'secret',
    rows: good(3),
    code: 'TABLE_NOT_ALLOWED',
    only: 'queue',
  },
  {
    name: 'batchSize 0',
    kind: 'copyFrom',
    rows: good(3),
    opts: { batchSize: 0 },
    code: 'INVALID_OPTION',
  },
  {
    name: 'an operationId with spaces',
    kind: 'bulkCreate',
    rows: good(3),
    opts: { operationId: 'a b' },
    code: 'INVALID_OPTION',
  },
  {
    name: 'an oversized row (payload over maxPayloadBytes)',
    kind: 'bulkCreate',
    bad: { code: 'x', name: 'y'.repeat(300 * 1024) },
    code: 'PAYLOAD_TOO_LARGE',
    only: 'queue',
  },
];

async function fingerprint(): Promise<string> {
  const r = await tdb.pool.query(
    `SELECT (SELECT count(*) || ':' || coalesce(sum(hashtext(m::text)), 0) FROM ${tdb.t('m')} m) || '/' ||
            (SELECT count(*) FROM ${tdb.t('secret')}) AS f`,
  );
  return r.rows[0].f;
}

function tableOf(c: Case): string {
  if (!c.table) return tdb.t('m');
  return c.table.startsWith('"') || c.table.includes(';')
    ? `${tdb.schema}.${c.table}`
    : tdb.t(c.table);
}

async function runDirect(c: Case): Promise<unknown> {
  const model = db.model(tableOf(c));
  const rows = (c.rows ?? withBad(c.bad)) as Row[];
  const opts = { batchSize: 5, ...c.opts };
  if (c.kind === 'update') return model.update(c.args as never, opts);
  if (c.kind === 'copyTo') {
    for await (const _ of model.copyTo(c.opts as never)) void _;
    return;
  }
  return model[c.kind](rows, opts as never);
}

async function runQueued(c: Case): Promise<unknown> {
  const t = tableOf(c);
  const rows = (c.rows ?? withBad(c.bad)) as Row[];
  const opts = { batchSize: 5, ...c.opts };
  const op =
    c.kind === 'update'
      ? await producer.update(t, c.args as never, opts)
      : c.kind === 'copyTo'
        ? await producer.copyTo(t, { path: `m-${seq++}.csv`, ...(c.opts as object) })
        : await producer[c.kind](t, rows, opts as never);
  return op.done();
}

async function stillServes(): Promise<void> {
  expect(worker.child.exitCode).toBeNull();
  const rows = good(7);
  const op = await producer.bulkCreate(tdb.t('m'), rows, { batchSize: 3 });
  expect(await op.done()).toEqual({ count: 7 });
  await tdb.pool.query(`DELETE FROM ${tdb.t('m')} WHERE code = ANY($1)`, [rows.map((r) => r.code)]);
}

describe(`hostile input matrix (${CASES.length} inputs, direct and queued)`, () => {
  it('has at least 30 inputs', () => expect(CASES.length).toBeGreaterThanOrEqual(30));

  for (const c of CASES) {
    if (c.only !== 'queue')
      it(`direct: ${c.name} -> ${c.code}`, async () => {
        const before = await fingerprint();
        const err = await rejection(runDirect(c));
        expect(err.code).toBe(c.code);
        expect(await fingerprint()).toBe(before);
      });
    if (c.only !== 'direct')
      it(`queue: ${c.name} -> ${c.queueCode ?? c.code}`, async () => {
        const before = await fingerprint();
        const err = await rejection(runQueued(c));
        expect(err.code).toBe(c.queueCode ?? c.code);
        expect(await fingerprint()).toBe(before);
        // A refused export leaves no file behind, not even an empty .partial one.
        expect(readdirSync(exportDir)).toEqual([]);
        await stillServes();
      });
  }

  it('queue: an operation id reused with different rows -> OPERATION_CONFLICT, the first intact', async () => {
    const rows = good(10);
    const first = await producer.bulkCreate(tdb.t('m'), rows, {
      operationId: `reuse-${queue}`,
      batchSize: 5,
    });
    expect(await first.done()).toEqual({ count: 10 });
    const before = await fingerprint();
    const other = rows.map((r, i) => (i === 7 ? { ...r, name: 'changed' } : r));
    const err = await rejection(
      producer.bulkCreate(tdb.t('m'), other, { operationId: `reuse-${queue}`, batchSize: 5 }),
    );
    expect(err.code).toBe('OPERATION_CONFLICT');
    // and as another kind of operation
    const err2 = await rejection(
      producer.copyFrom(tdb.t('m'), rows, { operationId: `reuse-${queue}`, batchSize: 5 }),
    );
    expect(err2.code).toBe('OPERATION_CONFLICT');
    expect(await fingerprint()).toBe(before);
    await stillServes();
  });

  const straight = async (name: string, data: unknown, opId?: string) => {
    const before = await fingerprint();
    const job = await q.add(name, data, { attempts: 5 });
    const failed = await until('the job to fail', async () => {
      // State first, then the job: a job read before it failed carries stale fields.
      if ((await q.getJobState(job.id!)) !== 'failed') return undefined;
      return (await Job.fromId(q, job.id!)) ?? undefined;
    });
    expect(failed.failedReason).toMatch(/^INVALID_PAYLOAD/);
    expect(failed.attemptsMade).toBe(1);
    if (opId)
      expect((await rejection(producer.operation(opId).done())).code).toBe('INVALID_PAYLOAD');
    expect(await fingerprint()).toBe(before);
    await stillServes();
  };

  it('queue: malformed payloads added straight to the queue -> INVALID_PAYLOAD, never retried', async () => {
    const enc = encodeRows(good(3), 0);
    const base = {
      v: 1,
      kind: 'bulkCreate',
      operationId: `raw-${queue}`,
      table: tdb.t('m'),
      chunk: { index: 0, offset: 0 },
      options: {},
      columns: enc.columns,
      rows: enc.rows,
    };
    // each under an operation id of its own (a failed operation skips its other chunks)
    const id = () => `raw-${queue}-${seq++}`;
    await straight('chunk', 'just a string');
    await straight('chunk', { ...base, operationId: id(), rows: [['too', 'short']] });
    await straight('chunk', { ...base, operationId: id(), extra: 'field' });
    await straight('chunk', { ...base, operationId: id(), rows: [[{ $t: 'nope', v: 1 }, 1, 'x']] });
    await straight('chunk', { ...base, operationId: id(), kind: 'dropTable' });
    await straight('seal', { ...base, operationId: id() });
  });

  it('queue: a payload of another version -> INVALID_PAYLOAD recorded on its operation', async () => {
    const enc = encodeRows(good(3), 0);
    await straight(
      'chunk',
      {
        v: 3,
        kind: 'bulkCreate',
        operationId: `v3-${queue}`,
        table: tdb.t('m'),
        chunk: { index: 0, offset: 0 },
        options: {},
        columns: enc.columns,
        rows: enc.rows,
      },
      `v3-${queue}`,
    );
  });
});
