import { randomBytes, randomUUID } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { type BulkErrorCode, BulkProducer, type Row, silentLogger } from '../src/index.js';
import { encodeRows } from '../src/queue/values.js';
import { startDashboard } from '../src/worker/dashboard/server.js';
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
 * The hostile queue writer suite: jobs written straight into BullMQ (or into their Redis hash
 * where BullMQ's API cannot produce them) by someone who can write the queue but is not
 * BulkProducer, against real CLI workers. Each attack must be refused with its code, at once
 * (never retried), write no row, touch no file outside the export directory, and leave the
 * same worker process serving.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const prefix = runPrefix('hq');
const queue = queueName('hq'); // main worker: export dir, metrics, small limits
const queue2 = queueName('hq2'); // no export dir, --show-values
let tdb: TestDb;
let s: string;
/** <s>.m and "<s>.b".c are allowed; <s>."b.c" is not. */
let [M, BC, SBC] = ['', '', ''];
let w: WorkerProcess, w2: WorkerProcess;
let producer: BulkProducer, producer2: BulkProducer;
let q: Queue, q2: Queue;
let redis: Redis;
/** base holds exports (D, the export directory) and outside (a victim file). */
let [base, D, outside] = ['', '', ''];
let metricsPort: number;

beforeAll(async () => {
  tdb = await testDb('hq');
  s = tdb.schema;
  [M, BC, SBC] = [`${s}.m`, `${s}."b.c"`, `"${s}.b".c`];
  await tdb.pool.query(`
    CREATE TABLE ${M} (id bigserial PRIMARY KEY, code text UNIQUE NOT NULL, n int, name text, ts timestamptz);
    CREATE TABLE ${BC} (id serial PRIMARY KEY, v text);
    CREATE SCHEMA "${s}.b";
    CREATE TABLE ${SBC} (id serial PRIMARY KEY, v text);
    INSERT INTO ${M} (code, n, name) SELECT 'seed' || g, g, 'seed' FROM generate_series(1, 20) g;`);
  base = mkdtempSync(join(tmpdir(), 'bm-hq-'));
  [D, outside] = [join(base, 'exports'), join(base, 'outside')];
  mkdirSync(D);
  mkdirSync(outside);
  writeFileSync(join(outside, 'victim.txt'), 'keep me');
  [w, w2] = await Promise.all([
    startWorker({
      tables: [M, SBC],
      queue,
      prefix,
      concurrency: 1,
      args: [
        ...['--export-dir', D, '--metrics-port', '0'],
        ...['--max-payload-bytes', '1000000', '--max-chunk-rows', '2000'],
      ],
    }),
    startWorker({ tables: [M], queue: queue2, prefix, concurrency: 1, args: ['--show-values'] }),
  ]);
  await w.waitForLog(/metrics and health listening/);
  metricsPort = Number(/"port":(\d+)[^\n]*metrics and health listening/.exec(w.output())?.[1]);
  producer = new BulkProducer({ redis: REDIS_URL, queue, prefix, maxPayloadBytes: 1_000_000 });
  producer2 = new BulkProducer({ redis: REDIS_URL, queue: queue2, prefix });
  q = new Queue(queue, { connection: { url: REDIS_URL }, prefix });
  q2 = new Queue(queue2, { connection: { url: REDIS_URL }, prefix });
  redis = new Redis(REDIS_URL);
});
afterAll(async () => {
  await q?.close();
  await q2?.close();
  await producer?.close();
  await producer2?.close();
  redis?.disconnect();
  for (const x of [w, w2]) if (x) expect(await stopWorker(x)).toBe(0);
  await killAll();
  for (const x of [queue, queue2]) await obliterate(x, prefix).catch(() => {});
  await deleteKeys(`${prefix}:*`);
  if (base) rmSync(base, { recursive: true, force: true });
  await tdb?.pool.query(`DROP SCHEMA IF EXISTS "${s}.b" CASCADE`);
  await tdb?.close();
});
// (c) of every attack: nothing outside the export directory, nor in the workers' cwd.
afterEach(() => {
  expect(readdirSync(base).sort()).toEqual(['exports', 'outside']);
  expect(readdirSync(outside)).toEqual(['victim.txt']);
  expect(readFileSync(join(outside, 'victim.txt'), 'utf8')).toBe('keep me');
  expect(readdirSync(ROOT).filter((n) => /\.partial$|^\.bulkmodel-|^(ok|x)\.csv$/.test(n))).toEqual(
    [],
  );
});

let seq = 0;
const uid = (tag: string) => `${tag}-${++seq}-${randomBytes(3).toString('hex')}`;
const good = (n: number): Row[] =>
  Array.from({ length: n }, (_, i) => ({ code: uid('g'), n: i, name: 'ok' }));

function chunkData(table: string, rows: Row[], over: Record<string, unknown> = {}) {
  const enc = encodeRows(rows, 0);
  return {
    v: 1,
    kind: 'bulkCreate',
    operationId: uid('op'),
    table,
    chunk: { index: 0, offset: 0 },
    options: {},
    columns: enc.columns,
    rows: enc.rows,
    ...(enc.jsonColumns ? { jsonColumns: enc.jsonColumns } : {}),
    ...over,
  };
}
const opData = <T extends object>(kind: string, extra: T) => ({
  v: 1,
  kind,
  operationId: uid('op'),
  table: M,
  options: {},
  ...extra,
});
const copyToData = (path: string) => opData('copyTo', { copyTo: { path } });
const updateData = (update: unknown) => opData('update', { update });

async function fingerprint(): Promise<string> {
  const part = (t: string) =>
    `(SELECT count(*) || ':' || coalesce(sum(hashtext(x::text)), 0) FROM ${t} x)`;
  const r = await tdb.pool.query(
    `SELECT ${part(M)} || '/' || ${part(BC)} || '/' || ${part(SBC)} AS f`,
  );
  return r.rows[0].f;
}

interface Ended {
  state: string;
  failedReason: string;
  attemptsMade: number;
  /** The job's data as stored in Redis now. */
  data: string;
}
/** Wait for a job to complete or fail; read its hash raw (its data may not be JSON). */
async function ended(qq: Queue, id: string, timeoutMs = 20_000): Promise<Ended> {
  const state = await until(
    `job ${id} to end`,
    async () => {
      const st = await qq.getJobState(id);
      return st === 'completed' || st === 'failed' ? st : undefined;
    },
    timeoutMs,
  );
  const [reason, atm, data] = await redis.hmget(
    `${prefix}:${qq.name}:${id}`,
    'failedReason',
    'atm',
    'data',
  );
  return { state, failedReason: reason ?? '', attemptsMade: Number(atm ?? 0), data: data ?? '' };
}
/** (a): failed for good, at once (1 attempt of 5), `CODE: message`. */
async function expectRefused(qq: Queue, id: string, code: BulkErrorCode): Promise<Ended> {
  const e = await ended(qq, id);
  expect(
    { state: e.state, code: e.failedReason.split(':')[0], attemptsMade: e.attemptsMade },
    e.failedReason,
  ).toEqual({ state: 'failed', code, attemptsMade: 1 });
  return e;
}
/**
 * A job's id: its place, as BulkProducer and docs/payload.md name jobs (`<op>-c<index>` for a
 * chunk, `<op>` for an operation), unless a test gives another.
 */
function placeOf(name: string, data: unknown): string | undefined {
  const d = data as { operationId?: unknown; chunk?: { index?: unknown } } | null;
  if (typeof d?.operationId !== 'string') return undefined;
  if (name === 'chunk' && typeof d.chunk?.index === 'number')
    return `${d.operationId}-c${d.chunk.index}`;
  return name === 'operation' ? d.operationId : undefined;
}
async function add(qq: Queue, name: string, data: unknown, id?: string) {
  const jobId = id ?? placeOf(name, data);
  return qq.add(name, data, { attempts: 5, ...(jobId ? { jobId } : {}) });
}
async function refused(qq: Queue, name: string, data: unknown, code: BulkErrorCode, id?: string) {
  const job = await add(qq, name, data, id);
  return expectRefused(qq, job.id!, code);
}
async function completes(qq: Queue, name: string, data: unknown, id?: string): Promise<void> {
  const job = await add(qq, name, data, id);
  const e = await ended(qq, job.id!);
  expect(e.state, e.failedReason).toBe('completed');
}
/** Add a job whose stored data is `raw` (not what BullMQ would write), while the queue is paused. */
async function addRaw(
  qq: Queue,
  name: string,
  raw: string,
  whilePaused?: (id: string) => Promise<void>,
): Promise<string> {
  await qq.pause();
  try {
    const job = await qq.add(name, { placeholder: true }, { attempts: 5 });
    await redis.hset(`${prefix}:${qq.name}:${job.id}`, 'data', raw);
    await whilePaused?.(job.id!);
    return job.id!;
  } finally {
    await qq.resume();
  }
}
/** (d): the same worker process completes a good operation. */
async function stillServes(p = producer, worker = w): Promise<void> {
  expect(worker.child.exitCode).toBeNull();
  const rows = good(5);
  const op = await p.bulkCreate(M, rows, { batchSize: 2 });
  expect(await op.done({ timeoutMs: 20_000 })).toEqual({ count: 5 });
  await tdb.pool.query(`DELETE FROM ${M} WHERE code = ANY($1)`, [rows.map((r) => r.code)]);
}

describe('hostile queue writer: copyTo exports stay in the export directory', () => {
  it('copyTo on a worker without --export-dir: EXPORT_DISABLED, no file in its cwd', async () => {
    const before = await fingerprint();
    const name = `hq-noexport-${randomBytes(4).toString('hex')}.csv`;
    const data = copyToData(name);
    await refused(q2, 'operation', data, 'EXPORT_DISABLED');
    expect((await rejection(producer2.operation(data.operationId).done())).code).toBe(
      'EXPORT_DISABLED',
    );
    const op = await producer2.copyTo(M, { path: name });
    expect((await rejection(op.done({ timeoutMs: 20_000 }))).code).toBe('EXPORT_DISABLED');
    expect(existsSync(join(ROOT, name))).toBe(false);
    expect(await fingerprint()).toBe(before);
    await stillServes(producer2, w2);
  });

  it('copyTo paths that are not plain file names: INVALID_OPTION, nothing written', async () => {
    for (const path of [
      '../x.csv',
      join(outside, 'x.csv'),
      'sub/x.csv',
      '.hidden',
      'x\u0000y',
      'a\nb',
    ]) {
      await refused(q, 'operation', copyToData(path), 'INVALID_OPTION');
    }
    expect(readdirSync(D)).toEqual([]);
    await stillServes();
  });

  it('a job id like a path never becomes one: refused; only D/ok.csv, from its own place, is written', async () => {
    // A job's id must be its place (<operationId> for an operation): any other is refused.
    await refused(
      q,
      'operation',
      copyToData('ok.csv'),
      'INVALID_PAYLOAD',
      'x/../../outside/victim',
    );
    expect(readdirSync(D)).toEqual([]);
    await completes(q, 'operation', copyToData('ok.csv'));
    expect(readdirSync(D)).toEqual(['ok.csv']);
    expect(readFileSync(join(D, 'ok.csv'), 'utf8')).toMatch(
      /^id,code,n,name,ts\n1,seed1,1,seed,\n/,
    );
  });

  it('an existing file, or a link out of D, is never replaced nor followed: FILE_EXISTS', async () => {
    const ok = readFileSync(join(D, 'ok.csv'), 'utf8');
    writeFileSync(join(D, 'app.js'), 'original');
    symlinkSync(join(outside, 'victim.txt'), join(D, 'link.csv'));
    for (const path of ['app.js', 'link.csv', 'ok.csv'])
      await refused(q, 'operation', copyToData(path), 'FILE_EXISTS');
    expect(readFileSync(join(D, 'app.js'), 'utf8')).toBe('original');
    expect(readFileSync(join(D, 'ok.csv'), 'utf8')).toBe(ok);
    expect(readdirSync(D).sort()).toEqual(['app.js', 'link.csv', 'ok.csv']);
    await stillServes();
  });

  it('a copyTo filter holding an absent value is refused, never read as no filter', async () => {
    const data = copyToData('absent.csv');
    const copyTo = { ...data.copyTo, where: { code: { $t: 'absent' } } };
    const e = await ended(q, (await add(q, 'operation', { ...data, copyTo })).id!);
    const file = join(D, 'absent.csv');
    const exported = existsSync(file) ? readFileSync(file, 'utf8').split('\n').length - 2 : 0;
    expect({ state: e.state, code: e.failedReason.split(':')[0], exported }).toEqual({
      state: 'failed',
      code: 'INVALID_OPTION',
      exported: 0,
    });
    await stillServes();
  });
});

describe('hostile queue writer: the allowlist', () => {
  it('the allowlist compares catalog identity: "<s>.b".c is allowed, <s>."b.c" is not', async () => {
    const before = await fingerprint();
    for (const t of [BC, `"${s}"."b.c"`])
      await refused(q, 'chunk', chunkData(t, [{ v: 'nope' }]), 'TABLE_NOT_ALLOWED');
    expect(await fingerprint()).toBe(before);
    await completes(q, 'chunk', chunkData(SBC, [{ v: 'yes' }]));
    expect((await tdb.pool.query(`SELECT v FROM ${SBC}`)).rows).toEqual([{ v: 'yes' }]);
    expect((await tdb.pool.query(`SELECT v FROM ${BC}`)).rows).toEqual([]);
    await stillServes();
  });
});

describe("hostile queue writer: the worker's own limits", () => {
  it('chunk indexes at or past --max-chunks: LIMIT_EXCEEDED, nothing allocated in Redis', async () => {
    const before = await fingerprint();
    const huge = chunkData(M, good(2), { chunk: { index: 2147483647, offset: 0 } });
    await refused(q, 'chunk', huge, 'LIMIT_EXCEEDED');
    expect(await redis.exists(`${prefix}:${queue}:bm:op:${huge.operationId}:done`)).toBe(0);
    await refused(
      q,
      'chunk',
      chunkData(M, good(2), { chunk: { index: 1_000_000, offset: 0 } }),
      'LIMIT_EXCEEDED',
    );
    expect(await fingerprint()).toBe(before);
    const last = good(2);
    await completes(q, 'chunk', chunkData(M, last, { chunk: { index: 999_999, offset: 0 } }));
    await tdb.pool.query(`DELETE FROM ${M} WHERE code = ANY($1)`, [last.map((r) => r.code)]);
    for await (const keys of redis.scanStream({ match: `${prefix}:${queue}:*`, count: 500 })) {
      for (const key of keys as string[]) {
        const bytes = Number(await redis.call('MEMORY', 'USAGE', key));
        expect([key, bytes < 1_000_000]).toEqual([key, true]);
      }
    }
    await stillServes();
  });

  it('job data over --max-payload-bytes: PAYLOAD_TOO_LARGE, its data dropped from Redis', async () => {
    const before = await fingerprint();
    const data = chunkData(M, [{ code: uid('big'), name: 'y'.repeat(2_000_000) }]);
    const e = await refused(q, 'chunk', data, 'PAYLOAD_TOO_LARGE');
    expect(e.data.length).toBeLessThan(200);
    expect(await fingerprint()).toBe(before);
    await stillServes();
  });

  it('more rows than a chunk batchSize or --max-chunk-rows: PAYLOAD_TOO_LARGE', async () => {
    const before = await fingerprint();
    const small = chunkData(M, good(1000), { options: { batchSize: 1 } });
    expect((await refused(q, 'chunk', small, 'PAYLOAD_TOO_LARGE')).failedReason).toMatch(
      /batchSize of 1/,
    );
    expect(
      (await refused(q, 'chunk', chunkData(M, good(2001)), 'PAYLOAD_TOO_LARGE')).failedReason,
    ).toMatch(/limit of 2000/);
    expect(await fingerprint()).toBe(before);
    await stillServes();
  });
});

describe('hostile queue writer: update() never reaches every row by accident', () => {
  it('update() refuses a missing or empty filter at once, client side: INVALID_OPTION', async () => {
    const counts = JSON.stringify(await q.getJobCounts());
    const set = { name: 'hacked' };
    for (const args of [
      { where: { id: undefined }, set },
      { where: { id: { eq: undefined } }, set },
      { where: {}, set },
    ]) {
      const err = await rejection(producer.update(M, args as never));
      expect([args, err.code]).toEqual([args, 'INVALID_OPTION']);
    }
    expect(JSON.stringify(await q.getJobCounts())).toBe(counts);
  });

  it('raw update jobs whose filter or set is absent, empty or ambiguous change no row', async () => {
    const before = await fingerprint();
    const absent = { $t: 'absent' };
    const gte0 = { $t: 'object', v: { gte: 0 } };
    // Each case sets a name of its own, so that the rows it changed can be counted.
    const cases: [(set: { name: string }) => unknown, BulkErrorCode][] = [
      [(set) => ({ where: { id: absent }, set }), 'INVALID_OPTION'],
      [(set) => ({ where: {}, set }), 'INVALID_PAYLOAD'],
      [(set) => ({ where: { id: { $t: 'object', v: { eq: absent } } }, set }), 'INVALID_OPTION'],
      // an absent condition must not drop out of the filter, widening it (here to every row)
      [(set) => ({ where: { id: absent, n: gte0 }, set }), 'INVALID_OPTION'],
      [
        (set) => ({ where: { n: { $t: 'object', v: { eq: absent, gte: 0 } } }, set }),
        'INVALID_OPTION',
      ],
      // nor out of set, silently writing fewer columns than sent
      [(set) => ({ where: { id: 1 }, set: { ...set, n: absent } }), 'INVALID_OPTION'],
      [(set) => ({ all: true, where: { id: 1 }, set }), 'INVALID_PAYLOAD'],
      [(set) => ({ all: false, set }), 'INVALID_PAYLOAD'],
    ];
    const got: unknown[] = [];
    for (const [i, [make]] of cases.entries()) {
      const name = `hacked-${i}`;
      const update = make({ name });
      const data = updateData(update);
      const job = await add(q, 'operation', data);
      const e = await ended(q, job.id!);
      const op = producer.operation(data.operationId);
      const opCode = await rejection(op.done({ timeoutMs: 5000 })).then(
        (err) => err.code,
        (err: Error) => err.message,
      );
      const changed = await tdb.pool.query(`SELECT count(*)::int AS n FROM ${M} WHERE name = $1`, [
        name,
      ]);
      const [state, code, attempts] = [e.state, e.failedReason.split(':')[0], e.attemptsMade];
      got.push({ update, state, code, attempts, opCode, rowsChanged: changed.rows[0].n });
    }
    expect(got).toEqual(
      cases.map(([make, code], i) => ({
        update: make({ name: `hacked-${i}` }),
        state: 'failed',
        code,
        attempts: 1,
        opCode: code,
        rowsChanged: 0,
      })),
    );
    expect(await fingerprint()).toBe(before);
    await stillServes();
  });

  it('update({ all: true, set }) does update every row (positive control)', async () => {
    const n = (await tdb.pool.query(`SELECT count(*)::int AS n FROM ${M}`)).rows[0].n;
    const op = await producer.update(M, { all: true, set: { name: 'everyone' } });
    expect(await op.done({ timeoutMs: 20_000 })).toEqual({ count: n });
    const r = await tdb.pool.query(`SELECT count(*)::int AS n FROM ${M} WHERE name = 'everyone'`);
    expect(r.rows[0].n).toBe(n);
  });
});

describe('hostile queue writer: operation records and the chunk ledger', () => {
  it("a foreign chunk in a pending operation's slot: CHUNK_CONFLICT, never counted as done", async () => {
    const X = uid('claim');
    const [rowsA, rowsB] = [good(3), good(3)];
    // Added first, in the slot the producer's chunk 0 will claim (its place: <X>-c0).
    await completes(q, 'chunk', { ...chunkData(M, rowsA), operationId: X });
    const op = await producer.bulkCreate(M, rowsB, { operationId: X });
    expect((await rejection(op.done({ timeoutMs: 20_000 }))).code).toBe('CHUNK_CONFLICT');
    const inM = async (rows: Row[]) =>
      (
        await tdb.pool.query(`SELECT count(*)::int AS n FROM ${M} WHERE code = ANY($1)`, [
          rows.map((r) => r.code),
        ])
      ).rows[0].n;
    expect([await inM(rowsA), await inM(rowsB)]).toEqual([3, 0]);
    await stillServes();
  });

  it("a foreign chunk beyond an operation's own chunks is refused and never counted", async () => {
    const rows = good(3);
    const op = await producer.bulkCreate(M, rows, { batchSize: 1 });
    expect(await op.done({ timeoutMs: 20_000 })).toEqual({ count: 3 });
    const before = await fingerprint();
    const extra = good(4);
    await refused(
      q,
      'chunk',
      { ...chunkData(M, extra), operationId: op.id, chunk: { index: 77, offset: 77 } },
      'CHUNK_CONFLICT',
    );
    expect(await fingerprint()).toBe(before);
    expect(await producer.operation(op.id).done()).toEqual({ count: 3 });
    await stillServes();
  });

  it('a job under an id other than its place is refused: INVALID_PAYLOAD', async () => {
    const before = await fingerprint();
    const data = chunkData(M, good(2));
    await refused(q, 'chunk', data, 'INVALID_PAYLOAD', randomUUID());
    await refused(q, 'chunk', data, 'INVALID_PAYLOAD', `${data.operationId}-c1`);
    await refused(
      q,
      'operation',
      updateData({ all: true, set: { name: 'x' } }),
      'INVALID_PAYLOAD',
      'x',
    );
    expect(await fingerprint()).toBe(before);
    await stillServes();
  });

  it('operation records made by chunk jobs alone are indexed for pruning', async () => {
    const data = chunkData(M, good(2));
    await completes(q, 'chunk', data);
    const score = await redis.zscore(`${prefix}:${queue}:bm:ops`, data.operationId);
    expect(Number.isFinite(Number(score)) && score !== null).toBe(true);
  });
});

describe('hostile queue writer: unreadable jobs', () => {
  it('job data that is not JSON: INVALID_PAYLOAD at once, a stub left; the dashboard lists it', async () => {
    const before = await fingerprint();
    const d = await startDashboard({
      redis: REDIS_URL,
      queue,
      prefix,
      port: 0,
      logger: silentLogger,
    });
    let id: string;
    try {
      id = await addRaw(q, 'chunk', 'not json {', async (jobId) => {
        for (const status of ['waiting', 'latest', 'active']) {
          const r = await fetch(
            `${d.url}queues/api/queues?activeQueue=${encodeURIComponent(queue)}&status=${status}&page=1&jobsPerPage=10`,
          );
          const body = await r.text();
          expect([status, r.status], body.slice(0, 500)).toEqual([status, 200]);
          const listed = (JSON.parse(body).queues as { jobs: { id: string }[] }[]).flatMap((x) =>
            x.jobs.map((j) => j.id),
          );
          if (status !== 'active') expect(listed).toContain(jobId);
        }
        const ops = await fetch(`${d.url}api/operations`);
        expect(ops.status).toBe(200);
        await ops.text();
      });
    } finally {
      await d.close();
    }
    const e = await ended(q, id, 10_000);
    expect([e.state, e.failedReason.split(':')[0], e.attemptsMade]).toEqual([
      'failed',
      'INVALID_PAYLOAD',
      1,
    ]);
    expect(e.data.length).toBeLessThan(100);
    expect(() => JSON.parse(e.data)).not.toThrow();
    expect(await fingerprint()).toBe(before);
    await stillServes();
  });

  it('unknown job names: INVALID_PAYLOAD; jobs nested 200,000 deep: LIMIT_EXCEEDED', async () => {
    const before = await fingerprint();
    await refused(q, 'dropTable', chunkData(M, good(2)), 'INVALID_PAYLOAD');
    const arrays = `${'['.repeat(200_000)}1${']'.repeat(200_000)}`;
    const tags = `${'{"$t":"object","v":{"k":'.repeat(30_000)}1${'}}'.repeat(30_000)}`;
    for (const [where, set] of [
      [`{"id":${arrays}}`, '{"name":"deep"}'],
      ['{"id":1}', `{"name":${tags}}`],
    ]) {
      const head = JSON.stringify(updateData({})).slice(0, -'{}}'.length);
      const raw = `${head}{"where":${where},"set":${set}}}`;
      await expectRefused(q, await addRaw(q, 'operation', raw), 'LIMIT_EXCEEDED');
    }
    expect(await fingerprint()).toBe(before);
    await stillServes();
  });
});

describe('hostile queue writer: no job-chosen name in metrics, no row value in errors', () => {
  it("metric labels come only from the catalog's names, never from a job's spelling", async () => {
    for (const t of [M, `"${s}"."m"`, `"${s}".m`, `${s.toUpperCase()}.M`])
      await completes(q, 'chunk', chunkData(t, good(1)));
    // leading space: allowed or refused, but never a label of its own
    await ended(q, (await add(q, 'chunk', chunkData(` ${M}`, good(1)))).id!);
    const unknown = [
      `${s}.zq9nope_a`,
      'zq9nope_b',
      '"zq9nope c"',
      `${s}."zq9nope""d"`,
      'public.zq9nope_e',
      `"${s}".zq9nope_f`,
      'zq9nope_g.m',
      `${s}.m_zq9nope`,
      'zq9nope{table="x"}',
      'zq9nope\nnew line',
      'zq9nope_i; DROP TABLE m',
      `"zq9nope_j"."${s}.b"`,
    ];
    for (const t of unknown) await refused(q, 'chunk', chunkData(t, good(1)), 'TABLE_NOT_ALLOWED');
    await refused(q, 'zq9nope-job', chunkData(M, good(1)), 'INVALID_PAYLOAD');
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const labels = new Set(
      [...text.matchAll(/^bulkmodel_rows_written_total\{[^\n]*?table="((?:[^"\\]|\\.)*)"/gm)].map(
        (m) => m[1]!.replace(/\\(.)/g, '$1'),
      ),
    );
    expect(labels.has(M)).toBe(true);
    expect([...labels].filter((l) => l !== M && l !== SBC)).toEqual([]);
    expect(text).not.toContain('zq9nope');
  });

  it('row values stay out of errors, job records, events and logs by default', async () => {
    const secrets = ['secret-value-123', 'secret-456', 'secret-789'];
    await tdb.pool.query(`INSERT INTO ${M} (code) VALUES ($1)`, [secrets[0]]);
    const before = await fingerprint();
    // Rows in payload version 1, so that the worker meets the bad values (version 2 refuses
    // them at enqueue, checked below too).
    const v1 = new BulkProducer({ redis: REDIS_URL, queue, prefix, payloadVersion: 1 });
    const ops = [
      [await v1.bulkCreate(M, [{ code: secrets[0], name: 'dup' }]), 'UNIQUE_VIOLATION'],
      [await v1.bulkCreate(M, [{ code: uid('c'), n: secrets[1] }]), 'INVALID_VALUE'],
      [await v1.copyFrom(M, [{ code: uid('c'), ts: secrets[2] }]), 'DATA_ERROR'],
    ] as const;
    const atEnqueue = await rejection(producer.bulkCreate(M, [{ code: uid('c'), n: secrets[1] }]));
    expect(atEnqueue.code).toBe('INVALID_VALUE');
    expect(JSON.stringify(atEnqueue.toJSON())).not.toContain(secrets[1]);
    const seen: string[] = [];
    onTestFinished(() => v1.close());
    for (const [op, code] of ops) {
      const err = await rejection(op.done({ timeoutMs: 20_000 }));
      expect(err.code).toBe(code);
      seen.push(err.message, JSON.stringify(err.toJSON({ values: true })));
      seen.push((await redis.hget(`${prefix}:${queue}:bm:op:${op.id}`, 'error')) ?? '');
      for (const id of [op.id, `${op.id}-c0`])
        seen.push((await redis.hget(`${prefix}:${queue}:${id}`, 'failedReason')) ?? '');
    }
    const events = await redis.xrange(`${prefix}:${queue}:bm:events`, '-', '+');
    seen.push(JSON.stringify(events), w.output());
    const all = seen.join('\n');
    expect(all).toMatch(/UNIQUE_VIOLATION/);
    for (const secret of secrets) expect(all).not.toContain(secret);
    expect(await fingerprint()).toBe(before);
    await stillServes();
    // positive control: a worker started with --show-values keeps Postgres's detail
    const shown = await producer2.bulkCreate(M, [{ code: secrets[0] }]);
    const err = await rejection(shown.done({ timeoutMs: 20_000 }));
    expect(err.code).toBe('UNIQUE_VIOLATION');
    expect(await redis.hget(`${prefix}:${queue2}:bm:op:${shown.id}`, 'error')).toContain(
      secrets[0],
    );
    await tdb.pool.query(`DELETE FROM ${M} WHERE code = $1`, [secrets[0]]);
  });
});
