import { createHash, randomBytes } from 'node:crypto';
import type { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countRecords, csvFileLine, csvRecordOfLine } from '../src/core/ops/copyText.js';
import {
  type BulkErrorCode,
  BulkProducer,
  BulkWorker,
  isBulkError,
  silentLogger,
} from '../src/index.js';
import { recordEnds } from '../src/producer/csvChunks.js';
import { RedisBackend } from '../src/queue/backend.js';
import { DATABASE_URL, type TestDb, testDb } from './helpers.js';
import { deleteKeys, obliterate, queueName, REDIS_URL, runPrefix, until } from './queueHelpers.js';

/**
 * Payload versions 2 and 3 (rows as COPY data, in the job or beside it) against hand-written jobs: data that Postgres would read
 * as other rows than the job declares (escaped newlines, end-of-data markers, carriage returns,
 * missing or extra fields, a wrong row count, row indexes that are not a permutation, lone
 * surrogates) is refused with INVALID_PAYLOAD and writes nothing, with and without a listener
 * in the worker's process (which decodes the rows instead of streaming them). Also: the catalog
 * check after an ALTER TABLE, file lines of CSV errors, and linear scans of hostile data.
 */
const prefix = runPrefix('copydata');
const plainQ = queueName('cd-plain');
const seenQ = queueName('cd-seen');
let tdb: TestDb;
let T: string;
let backend: RedisBackend;
let plain: BulkWorker;
let seen: BulkWorker;
let producer: BulkProducer;
const queues: Record<string, Queue> = {};
let seq = 0;

beforeAll(async () => {
  tdb = await testDb('copydata');
  T = tdb.t('t');
  await tdb.pool.query(`CREATE TABLE ${T} (id int PRIMARY KEY, name text)`);
  backend = new RedisBackend({ redis: REDIS_URL, prefix });
  const common = { redis: REDIS_URL, prefix, tables: [T], logger: silentLogger, concurrency: 2 };
  plain = new BulkWorker({ ...common, queue: plainQ, database: DATABASE_URL });
  seen = new BulkWorker({ ...common, queue: seenQ, database: DATABASE_URL });
  seen.signals.on('preCopyFrom', () => {});
  await Promise.all([plain.waitUntilReady(), seen.waitUntilReady()]);
  for (const q of [plainQ, seenQ]) queues[q] = backend.queue(q);
  producer = new BulkProducer({ redis: REDIS_URL, queue: plainQ, prefix, logger: silentLogger });
});
afterAll(async () => {
  await producer?.close();
  for (const q of Object.values(queues)) await q.close();
  await plain?.close();
  await seen?.close();
  await backend?.close();
  for (const q of [plainQ, seenQ]) await obliterate(q, prefix).catch(() => {});
  await deleteKeys(`${prefix}:*`);
  await tdb?.close();
});

interface Group {
  columns: string[];
  rows: number;
  data: string;
  rowIdx?: number[];
}

/** A group's data as bytes: text as UTF-8, except that a lone surrogate becomes CESU-8 bytes. */
function bytesOf(data: string): Buffer {
  if (data.isWellFormed()) return Buffer.from(data);
  // (Buffer.from would write U+FFFD: these are the bytes a careless encoder would send.)
  const parts = data.split(/[\ud800-\udfff]/);
  return Buffer.concat(
    parts.flatMap((p, i) =>
      i === 0 ? [Buffer.from(p)] : [Buffer.from([0xed, 0xa0, 0x80]), Buffer.from(p)],
    ),
  );
}

/** What a version 3 job may get wrong about its data (the data stored, its sha256, its length). */
interface Tamper {
  stored?: Buffer | null;
  sha256?: string;
  bytes?: number;
}

/**
 * Add a chunk job (with its operation's place as id), version 2 (data in the job) or 3 (data
 * beside it, stored first as a producer does), and wait for it to end.
 */
async function run(
  q: string,
  format: 'text' | 'csv',
  groups: Group[],
  version: 2 | 3 = 2,
  tamper: Tamper = {},
): Promise<{ state: string; reason: string }> {
  const operationId = `cd-${++seq}-${randomBytes(3).toString('hex')}`;
  const queue = queues[q]!;
  const common = {
    kind: 'copyFrom',
    operationId,
    table: T,
    chunk: { index: 0, offset: 0 },
    options: {},
    format,
  };
  let payload: object = { v: 2, ...common, groups };
  if (version === 3) {
    const parts = groups.map((g) => bytesOf(g.data));
    const data = Buffer.concat(parts);
    const stored = tamper.stored === undefined ? data : tamper.stored;
    if (stored) await backend.state(q).putChunkData(operationId, 0, stored);
    payload = {
      v: 3,
      ...common,
      data: {
        bytes: tamper.bytes ?? data.length,
        sha256: tamper.sha256 ?? createHash('sha256').update(data).digest('base64url'),
      },
      groups: groups.map(({ data: _d, ...g }, i) => ({ ...g, bytes: parts[i]!.length })),
    };
  }
  const job = await queue.add('chunk', payload, { jobId: `${operationId}-c0`, attempts: 3 });
  const state = await until(
    `job ${job.id} to end`,
    async () => {
      const s = await queue.getJobState(job.id!);
      return s === 'completed' || s === 'failed' ? s : undefined;
    },
    20_000,
  );
  const j = await queue.getJob(job.id!);
  return { state, reason: j?.failedReason ?? '' };
}

async function rows(): Promise<number> {
  return (await tdb.pool.query(`SELECT count(*)::int AS n FROM ${T}`)).rows[0].n;
}

const cols = ['id', 'name'];
/** Hostile groups: each must be refused, whatever the worker's process listens to. */
const HOSTILE: [string, 'text' | 'csv', Group[], BulkErrorCode][] = [
  [
    'text: a backslash-newline is data, so 2 declared rows are 1',
    'text',
    [{ columns: cols, rows: 2, data: '1\ta\\\nb\n' }],
    'INVALID_PAYLOAD',
  ],
  [
    'text: \\. inside a line ends COPY data',
    'text',
    [{ columns: cols, rows: 2, data: '1\ta\\.\n2\tb\n' }],
    'INVALID_PAYLOAD',
  ],
  [
    'text: \\. then a carriage return first',
    'text',
    [{ columns: cols, rows: 1, data: '\\.\r2\tb\n' }],
    'INVALID_PAYLOAD',
  ],
  [
    'text: an unescaped carriage return',
    'text',
    [{ columns: cols, rows: 1, data: '1\ta\rb\n' }],
    'INVALID_PAYLOAD',
  ],
  [
    'csv: \\. then a carriage return at a record start',
    'csv',
    [{ columns: cols, rows: 1, data: '\\.\r2,b\n' }],
    'INVALID_PAYLOAD',
  ],
  [
    'csv: \\. alone on a line',
    'csv',
    [{ columns: cols, rows: 2, data: '1,a\n\\.\n' }],
    'INVALID_PAYLOAD',
  ],
  [
    'csv: a bare carriage return outside quotes',
    'csv',
    [{ columns: cols, rows: 1, data: '1,a\r2,b\n' }],
    'INVALID_PAYLOAD',
  ],
  [
    'csv: 1 declared row holding 3',
    'csv',
    [{ columns: cols, rows: 1, data: '1,a\n2,b\n3,c\n' }],
    'INVALID_PAYLOAD',
  ],
  ['csv: an open quote', 'csv', [{ columns: cols, rows: 1, data: '1,"a\n' }], 'INVALID_PAYLOAD'],
  [
    'text: a lone surrogate',
    'text',
    [{ columns: cols, rows: 1, data: '1\ta\ud800b\n' }],
    'INVALID_PAYLOAD',
  ],
  [
    'two groups whose row indexes repeat a row',
    'text',
    [
      { columns: ['id'], rows: 1, data: '1\n', rowIdx: [0] },
      { columns: cols, rows: 1, data: '2\tb\n', rowIdx: [0] },
    ],
    'INVALID_PAYLOAD',
  ],
  [
    'a row index beyond the chunk',
    'text',
    [
      { columns: ['id'], rows: 1, data: '1\n', rowIdx: [5] },
      { columns: cols, rows: 1, data: '2\tb\n', rowIdx: [0] },
    ],
    'INVALID_PAYLOAD',
  ],
];

describe.each([
  ['version 2, a worker that streams the data into COPY', () => plainQ, 2 as const],
  ['version 2, a worker whose process listens (it decodes the rows)', () => seenQ, 2 as const],
  ['version 3, a worker that streams the data into COPY', () => plainQ, 3 as const],
  ['version 3, a worker whose process listens (it decodes the rows)', () => seenQ, 3 as const],
])('%s', (_label, q, version) => {
  it.each(HOSTILE)('refuses %s, writing nothing', async (_what, format, groups, code) => {
    const before = await rows();
    const r = await run(q(), format, groups, version);
    expect({ state: r.state, code: r.reason.split(':')[0] }, r.reason).toEqual({
      state: 'failed',
      code,
    });
    expect(await rows()).toBe(before);
  });

  it('refuses a record whose fields do not match the columns, writing nothing', async () => {
    const before = await rows();
    for (const data of ['77\n', '78,a,zzz\n']) {
      const r = await run(q(), 'csv', [{ columns: cols, rows: 1, data }], version);
      expect(r.state, r.reason).toBe('failed');
      // COPY's own refusal (missing or extra data) or the listener path's INVALID_PAYLOAD
      expect(r.reason).toMatch(/^(INVALID_PAYLOAD|INVALID_ROW|DATA_ERROR|DATABASE_ERROR):/);
    }
    expect(await rows()).toBe(before);
  });

  it('writes good data exactly, quotes and newlines in fields included', async () => {
    const id = 1000 + seq;
    const r = await run(
      q(),
      'csv',
      [{ columns: cols, rows: 2, data: `${id},"a ""q""\nb"\n${id + 1},"\\.\r\n"\n` }],
      version,
    );
    expect(r.state, r.reason).toBe('completed');
    const got = await tdb.pool.query(`SELECT id, name FROM ${T} WHERE id >= $1 ORDER BY id`, [id]);
    expect(got.rows).toEqual([
      { id, name: 'a "q"\nb' },
      { id: id + 1, name: '\\.\r\n' },
    ]);
  });
});

describe('version 3: the data beside the job', () => {
  const good = (id: number): Group[] => [{ columns: cols, rows: 1, data: `${id}\tok\n` }];

  it.each([
    ['data that is not stored', { stored: null }, 'INVALID_PAYLOAD', 'not in the queue'],
    ['a length its groups do not add up to', { bytes: 4 }, 'INVALID_PAYLOAD', 'the groups hold'],
    [
      'stored data longer than the job says',
      { stored: Buffer.from('5000\tok\n5001\tok\n') },
      'INVALID_PAYLOAD',
      'bytes, and the job says',
    ],
    ["data whose sha256 is not the job's", { sha256: 'A'.repeat(43) }, 'INVALID_PAYLOAD', 'sha256'],
    [
      'the same length and another content',
      { stored: Buffer.from('6666\tno\n') },
      'INVALID_PAYLOAD',
      'sha256',
    ],
  ] as [string, Tamper, BulkErrorCode, string][])(
    'refuses %s, writing nothing',
    async (_what, tamper, code, says) => {
      const before = await rows();
      const r = await run(plainQ, 'text', good(5000 + seq), 3, tamper);
      expect({ state: r.state, code: r.reason.split(':')[0] }, r.reason).toEqual({
        state: 'failed',
        code,
      });
      expect(r.reason).toContain(says);
      expect(await rows()).toBe(before);
    },
  );

  it('refuses data over its limit, claimed or stored', async () => {
    const q = queueName('cd-small');
    const small = new BulkWorker({
      redis: REDIS_URL,
      prefix,
      queue: q,
      tables: [T],
      database: DATABASE_URL,
      logger: silentLogger,
      limits: { maxPayloadBytes: 2000 },
    });
    queues[q] = backend.queue(q);
    try {
      await small.waitUntilReady();
      const before = await rows();
      const big = Buffer.from(`7000\t${'x'.repeat(3000)}\n`);
      // Stored over the limit (the job says 8 bytes), and claimed over it by the job.
      const cases: [Group[], Tamper][] = [
        [good(7000), { stored: big }],
        [[{ columns: cols, rows: 1, data: big.toString() }], {}],
      ];
      for (const [groups, tamper] of cases) {
        const r = await run(q, 'text', groups, 3, tamper);
        expect({ state: r.state, code: r.reason.split(':')[0] }, r.reason).toEqual({
          state: 'failed',
          code: 'PAYLOAD_TOO_LARGE',
        });
      }
      expect(await rows()).toBe(before);
    } finally {
      await small.close();
      await queues[q]!.close();
      delete queues[q];
      await obliterate(q, prefix).catch(() => {});
    }
  });

  it("a producer's operation keeps its data out of its jobs, and drops it once it ends", async () => {
    const id = 8000 + seq;
    const names = ['zq-tab\there', 'nl\nhere', 'back\\slash', '"quoted"', 'ünï 🙂', '', '\\N'];
    const input = names.map((name, i) => ({ id: id + i, name }));
    const op = await producer.copyFrom(T, input, { batchSize: 3 });
    expect(await op.done()).toEqual({ count: names.length });
    const got = await tdb.pool.query(`SELECT name FROM ${T} WHERE id >= $1 ORDER BY id`, [id]);
    expect(got.rows.map((r) => r.name)).toEqual(names);
    const job = await queues[plainQ]!.getJob(`${op.id}-c0`);
    expect(job?.data.v).toBe(3);
    expect(JSON.stringify(job?.data)).not.toContain('zq-');
    // (Dropped as each chunk job completes, and as a whole once the operation completes: the
    // worker does so right after BullMQ stored it, so done() may resolve a moment before.)
    for (const index of [0, 1, 2])
      await until(`chunk ${index}'s data to go`, async () =>
        (await backend.state(plainQ).chunkData(op.id, index, 1e9)) === null ? true : undefined,
      );
    // A failed operation's data goes too (its chunks are refused from then on).
    const bad = await producer.copyFrom(T, [{ id, name: 'duplicate key' }]);
    await expect(bad.done()).rejects.toMatchObject({ code: 'UNIQUE_VIOLATION' });
    await until("the failed operation's data to go", async () =>
      (await backend.state(plainQ).chunkData(bad.id, 0, 1e9)) === null ? true : undefined,
    );
  });
});

describe('payloadVersion 2, and 1 for a CSV file', () => {
  it('sends the data inside the job, as text, which workers write as version 3 data', async () => {
    for (const payloadVersion of [1, 2] as const) {
      const p = new BulkProducer({
        redis: REDIS_URL,
        queue: plainQ,
        prefix,
        logger: silentLogger,
        payloadVersion,
      });
      try {
        const id = 9000 + payloadVersion;
        const record = `${id},"zq ü 🙂, ""q""\ttab"\n`;
        async function* src() {
          yield Buffer.from(`id,name\n${record}`);
        }
        const op = await p.copyFromCsv(T, src());
        expect(await op.done()).toEqual({ count: 1 });
        const job = await queues[plainQ]!.getJob(`${op.id}-c0`);
        expect(job?.data.v).toBe(2);
        expect(job?.data.groups[0].data).toBe(record);
        const got = await tdb.pool.query(`SELECT name FROM ${T} WHERE id = $1`, [id]);
        expect(got.rows).toEqual([{ name: 'zq ü 🙂, "q"\ttab' }]);
      } finally {
        await p.close();
      }
    }
  });
});

describe('scans of hostile data stay linear', () => {
  // Quadratic scans of these took hours; linear ones take milliseconds. No time is asserted:
  // a quadratic scan would outlast the test's timeout.
  const quotes = '"'.repeat(8_000_000);
  it('countRecords: millions of quotes, and millions of short records', () => {
    expect(countRecords(`1,${quotes}\n`, 'csv').records).toBe(1);
    expect(countRecords('1,a\n'.repeat(2_000_000), 'csv').records).toBe(2_000_000);
    expect(countRecords('\\\\'.repeat(4_000_000), 'text').records).toBe(-1);
  });
  it('recordEnds: millions of quotes, and short records with one quote at the end', () => {
    expect(recordEnds(Buffer.from(`${quotes}\n`), 0, false).ends).toHaveLength(1);
    const many = Buffer.from(`${'1,a\n'.repeat(2_000_000)}"`);
    const r = recordEnds(many, 0, false);
    expect(r.ends).toHaveLength(2_000_000);
    expect(r.inQuote).toBe(true);
  });
});

describe('CSV errors name the line of the file', () => {
  it('maps Postgres line numbers to the line where the record starts', () => {
    // Postgres counts the first record as one line whatever its quoted newlines.
    expect(csvFileLine('1,"x\ny"\nzz,c\n', 5, 2)).toBe(7);
    expect(csvFileLine('1,a\n2,"x\ny"\nzz,c\n', 5, 4)).toBe(8);
    expect(csvFileLine('1,a\n2,b\n', 10, 2)).toBe(11);
    // Postgres's own count, checked with psql: before it knows the line ending (the first
    // record) a quoted carriage return counts as a line, a quoted newline does not; after, a
    // quoted newline does. (psql: '"a\r\nb",1\nc,x' fails at line 3, '"a\nb",1\nc,x' at 2.)
    expect(csvFileLine('"a\r\nb",1\nc,x\n', 1, 3)).toBe(3);
    expect(csvFileLine('"a\nb",1\nc,x\n', 1, 2)).toBe(3);
    expect(csvFileLine('z,1\n"a\nb",1\nc,x\n', 1, 4)).toBe(4);
    expect(csvRecordOfLine('a\nb\n', 9)).toBeUndefined();
  });

  it('copyFromCsv: a bad value after multi-line records: its line and the table column', async () => {
    const t = tdb.t('lines');
    await tdb.pool.query(`CREATE TABLE ${t} (id int PRIMARY KEY, n int)`);
    // A queue of its own: the suite's other workers serving plainQ do not allow this table.
    const q = queueName('cd-lines');
    const w = new BulkWorker({
      redis: REDIS_URL,
      prefix,
      queue: q,
      tables: [t],
      database: DATABASE_URL,
      logger: silentLogger,
    });
    const linesProducer = new BulkProducer({
      redis: REDIS_URL,
      queue: q,
      prefix,
      logger: silentLogger,
    });
    await w.waitUntilReady();
    try {
      const csv = 'id,n\n1,"2\n"\n3,"\n4"\nx,5\n';
      async function* src() {
        yield Buffer.from(csv);
      }
      for (const onConflict of [undefined, 'ignore' as const]) {
        const op = await linesProducer.copyFromCsv(t, src(), {
          path: 'f.csv',
          ...(onConflict ? { onConflict } : {}),
        });
        const err = await op.done().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isBulkError(err), String(err)).toBe(true);
        if (!isBulkError(err)) return;
        expect({ line: err.line, column: err.column }, err.message).toEqual({
          line: 6,
          column: 'id',
        });
        expect(err.message).toContain('line 6');
      }
      expect((await tdb.pool.query(`SELECT count(*)::int AS n FROM ${t}`)).rows[0].n).toBe(0);
    } finally {
      await linesProducer.close();
      await w.close();
      await obliterate(q, prefix).catch(() => {});
    }
  });
});

describe('catalog changes', () => {
  it('an ALTER TABLE after the snapshot: CATALOG_MISMATCH, nothing written; the next operation uses the new types', async () => {
    const t = tdb.t('alter');
    await tdb.pool.query(`CREATE TABLE ${t} (id int PRIMARY KEY, j jsonb, b bytea)`);
    const q = queueName('cd-alter');
    const w = new BulkWorker({
      redis: REDIS_URL,
      prefix,
      queue: q,
      tables: [t],
      database: DATABASE_URL,
      logger: silentLogger,
    });
    await w.waitUntilReady();
    const p1 = new BulkProducer({ redis: REDIS_URL, queue: q, prefix, logger: silentLogger });
    try {
      await until('the worker to publish the snapshot', async () =>
        (await backend.state(q).snapshot(t)) !== null ? true : undefined,
      );
      expect(
        await (await p1.copyFrom(t, [{ id: 1, j: { a: 1 }, b: Buffer.from('AB') }])).done(),
      ).toEqual({
        count: 1,
      });
      await tdb.pool.query(
        `ALTER TABLE ${t} ALTER j TYPE text USING j::text, ALTER b TYPE text USING encode(b, 'hex')`,
      );
      // p1 still encodes for jsonb and bytea (its snapshot is seconds old), the worker's
      // catalog is as old: the check in the chunk's transaction finds the change.
      const stale = await p1.copyFrom(t, [{ id: 2, j: 'hello', b: Buffer.from('AB') }]);
      const err = await stale.done().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isBulkError(err) && err.code, String(err)).toBe('CATALOG_MISMATCH');
      expect((await tdb.pool.query(`SELECT id FROM ${t} ORDER BY id`)).rows).toEqual([{ id: 1 }]);
      // The worker published the new snapshot: a producer reading it encodes for text.
      const p2 = new BulkProducer({ redis: REDIS_URL, queue: q, prefix, logger: silentLogger });
      try {
        expect(await (await p2.copyFrom(t, [{ id: 3, j: 'hello', b: 'AB' }])).done()).toEqual({
          count: 1,
        });
      } finally {
        await p2.close();
      }
      expect((await tdb.pool.query(`SELECT j, b FROM ${t} WHERE id = 3`)).rows[0]).toEqual({
        j: 'hello',
        b: 'AB',
      });
    } finally {
      await p1.close();
      await w.close();
      await obliterate(q, prefix).catch(() => {});
    }
  });

  it('the same operation id enqueued again after a snapshot appeared encodes as the first time', async () => {
    const t = tdb.t('again');
    await tdb.pool.query(`CREATE TABLE ${t} (id int PRIMARY KEY, name text)`);
    const q = queueName('cd-again');
    const p = new BulkProducer({ redis: REDIS_URL, queue: q, prefix, logger: silentLogger });
    const input = [
      { id: 1, name: 'a' },
      { id: 2, name: 'b' },
    ];
    try {
      // No worker yet: no snapshot, so version 1 chunks.
      const first = await p.copyFrom(t, input, { operationId: 'again-1' });
      const w = new BulkWorker({
        redis: REDIS_URL,
        prefix,
        queue: q,
        tables: [t],
        database: DATABASE_URL,
        logger: silentLogger,
      });
      try {
        await w.waitUntilReady();
        expect(await first.done()).toEqual({ count: 2 });
        const p2 = new BulkProducer({ redis: REDIS_URL, queue: q, prefix, logger: silentLogger });
        try {
          await until('the snapshot', async () =>
            (await backend.state(q).snapshot(t)) !== null ? true : undefined,
          );
          const again = await p2.copyFrom(t, input, { operationId: 'again-1' });
          expect(await again.done()).toEqual({ count: 2 });
        } finally {
          await p2.close();
        }
      } finally {
        await w.close();
      }
      expect((await tdb.pool.query(`SELECT count(*)::int AS n FROM ${t}`)).rows[0].n).toBe(2);
    } finally {
      await p.close();
      await obliterate(q, prefix).catch(() => {});
    }
  });
});
