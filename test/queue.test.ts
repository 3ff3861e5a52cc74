import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Job } from 'bullmq';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type BulkClient, BulkProducer, type Row } from '../src/index.js';
import { HOSTILE_TEXT, type TestDb, testDb } from './helpers.js';
import {
  ALL_BYTES,
  createHostileTables,
  expectedHostile,
  HOSTILE_COLUMNS,
  hostileRow,
} from './hostile.js';
import {
  bullQueue,
  deleteKeys,
  killAll,
  obliterate,
  queueName,
  rejection,
  runPrefix,
  startWorker,
  stopWorker,
  TEST_QUEUE,
  until,
  type WorkerProcess,
} from './queueHelpers.js';

/**
 * Queue mode end to end: a real `bulkmodel worker` child process per test, the producer in this
 * process, everything read back with plain pg.
 */
let tdb: TestDb;
let db: BulkClient;
let exportDir: string;
const prefix = runPrefix('queue');

beforeAll(async () => {
  tdb = await testDb('queue');
  await createHostileTables(tdb.pool, tdb.schema);
  await tdb.pool.query(
    `CREATE TABLE ${tdb.t('items')} (id bigserial PRIMARY KEY, name text NOT NULL, n int);
     CREATE TABLE ${tdb.t('protos')} (id bigserial PRIMARY KEY, "__proto__" jsonb, "constructor" text, "toString" text)`,
  );
  db = tdb.client();
  exportDir = await mkdtemp(join(tmpdir(), 'bulkmodel-queue-'));
});
afterAll(async () => {
  await killAll();
  await tdb.close();
  await rm(exportDir, { recursive: true, force: true });
  await deleteKeys(`${prefix}:*`);
});

let queue: string;
let worker: WorkerProcess;
let producer: BulkProducer;
beforeEach(async () => {
  await tdb.pool.query(`TRUNCATE ${tdb.t('hostile')}, ${tdb.t('items')} RESTART IDENTITY`);
  queue = queueName('rt');
  worker = await startWorker({
    tables: [tdb.t('hostile'), tdb.t('items'), tdb.t('protos')],
    queue,
    prefix,
    args: ['--export-dir', exportDir],
  });
  producer = new BulkProducer({ ...TEST_QUEUE, queue, prefix });
});
afterEach(async () => {
  await producer.close();
  expect(await stopWorker(worker)).toBe(0);
  await obliterate(queue, prefix);
});

async function hostileBack(): Promise<Row[]> {
  return (await tdb.pool.query(`SELECT ${HOSTILE_COLUMNS} FROM ${tdb.t('hostile')} ORDER BY id`))
    .rows;
}

/**
 * Chunks commit in parallel, so ids follow commit order, not input order: compare stored and
 * expected rows sorted by their uuid column (all-NULL rows, identical, last).
 */
function byU(rows: Row[]): Row[] {
  const key = (r: Row) => (r.u === null ? '~' : String(r.u));
  return [...rows].sort((a, b) => key(a).localeCompare(key(b)));
}

function expectSameRows(stored: Row[], input: Row[]): void {
  expect(stored).toHaveLength(input.length);
  expect(byU(stored.map(({ id: _id, ...rest }) => rest))).toEqual(byU(input.map(expectedHostile)));
}

/** The stored rows as a direct-mode client decodes them (what the worker returns). */
async function directRows(table: string): Promise<Map<string, Row>> {
  const out = new Map<string, Row>();
  for await (const r of db.model(table).copyTo()) out.set(String(r.id), r);
  return out;
}

async function* slowly<T>(items: T[]): AsyncGenerator<T> {
  for (const x of items) {
    await Promise.resolve();
    yield x;
  }
}

describe('hostile rows through the queue land exactly as sent', () => {
  it('bulkCreate with returning, 7 rows a chunk', async () => {
    const input = Array.from({ length: 40 }, (_, i) => hostileRow(i));
    const op = await producer.bulkCreate(tdb.t('hostile'), input, {
      returning: true,
      batchSize: 7,
    });
    const res = await op.done();
    expect(res.count).toBe(40);
    expect(res.rows).toHaveLength(40);
    const stored = new Map((await hostileBack()).map((r) => [String(r.id), r]));
    expect(stored.size).toBe(40);
    const direct = await directRows(tdb.t('hostile'));
    res.rows!.forEach((r, i) => {
      const { id: _id, ...rest } = stored.get(String(r.id))!;
      expect(rest).toEqual(expectedHostile(input[i]!));
      expect(r).toEqual(direct.get(String(r.id)));
    });
  });

  it('copyFrom of an AsyncIterable', async () => {
    const input = Array.from({ length: 33 }, (_, i) => hostileRow(i));
    const op = await producer.copyFrom(tdb.t('hostile'), slowly(input), { batchSize: 5 });
    expect(await op.done()).toEqual({ count: 33 });
    expectSameRows(await hostileBack(), input);
  });

  it('updateFields gives each row its own hostile values; update sets hostile values', async () => {
    const n = 30;
    await (
      await producer.copyFrom(
        tdb.t('hostile'),
        Array.from({ length: n }, (_, i) => hostileRow(i)),
      )
    ).done();
    const target = (i: number) => hostileRow(i + 3);
    const changes = Array.from({ length: n }, (_, i) => ({ id: BigInt(i + 1), ...target(i) }));
    const uf = await producer.updateFields(tdb.t('hostile'), changes, {
      fields: Object.keys(target(0)),
      batchSize: 4,
    });
    expect(await uf.done()).toMatchObject({ count: n, missing: [] });
    // whatever row got id i + 1, updateFields gave it target(i)
    const back = await hostileBack();
    expect(back).toHaveLength(n);
    back.forEach(({ id, ...rest }, i) => {
      expect(id).toBe(String(i + 1));
      expect(rest).toEqual(expectedHostile(target(i)));
    });

    const set = {
      t: '\t\n\\N\\.\'"😀',
      by: ALL_BYTES,
      jb: { __proto__x: { deep: [null, '\\N', { e: '' }] }, n: 1.5 },
      ta: [null, '', 'NULL', 'a,b', '{x}'],
      i8: 2n ** 62n + 7n,
      num: '-12345678901234567890.000000000000000000001',
      tz: '2024-02-29 23:59:59.123456+00',
    };
    const op = await producer.update(tdb.t('hostile'), {
      where: { id: { in: ['2', '4', '6'] } },
      set,
    });
    expect(await op.done()).toEqual({ count: 3 });
    const changed = (
      await tdb.pool.query(
        `SELECT id, t, by, jb, ta, i8, num, tz::text AS tz FROM ${tdb.t('hostile')} WHERE t = $1 ORDER BY id`,
        [set.t],
      )
    ).rows;
    expect(changed.map((r) => r.id)).toEqual(['2', '4', '6']);
    for (const r of changed)
      expect(r).toEqual({ ...set, id: r.id, i8: set.i8.toString(), tz: set.tz });
  });

  it('copyTo writes the same bytes as direct mode (csv), and ndjson keeps every string', async () => {
    const input = Array.from({ length: 25 }, (_, i) => hostileRow(i));
    await (await producer.copyFrom(tdb.t('hostile'), input)).done();
    const csv = await producer.copyTo(tdb.t('hostile'), { path: 'hostile.csv', format: 'csv' });
    const res = await csv.done();
    expect(res.count).toBe(25);
    const parts: Buffer[] = [];
    for await (const b of db.model(tdb.t('hostile')).copyTo({ format: 'csv' })) parts.push(b);
    expect(await readFile(join(exportDir, 'hostile.csv'))).toEqual(Buffer.concat(parts));

    const nd = await producer.copyTo(tdb.t('hostile'), {
      path: 'hostile.ndjson',
      format: 'ndjson',
      columns: ['id', 't', 'ta', 'jb', 'js', 'i8', 'num', 'by', 'f8'],
      where: { id: { gt: 3 } },
    });
    expect((await nd.done()).count).toBe(22);
    const lines = (await readFile(join(exportDir, 'hostile.ndjson'), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    const stored = (
      await tdb.pool.query(
        `SELECT id, t, ta, jb, js, i8, num, by, f8 FROM ${tdb.t('hostile')} WHERE id > 3 ORDER BY id`,
      )
    ).rows.map((r) => ({
      ...r,
      // as Postgres's to_json writes them
      by: r.by === null ? null : `\\x${r.by.toString('hex')}`,
      f8: typeof r.f8 === 'number' && !Number.isFinite(r.f8) ? String(r.f8) : r.f8,
    }));
    expect(lines.sort((a, b) => Number(a.id) - Number(b.id))).toEqual(stored);
  });

  it('columns named __proto__, constructor and toString: written, returned and exported as own properties', async () => {
    const input = [
      JSON.parse('{"__proto__": {"isAdmin": true}, "constructor": "c", "toString": "t"}'),
      JSON.parse('{"__proto__": null, "constructor": null}'),
    ];
    const r = await (await producer.bulkCreate(tdb.t('protos'), input, { returning: true })).done();
    expect(r.count).toBe(2);
    for (const row of r.rows!) {
      expect(Object.getPrototypeOf(row)).toBe(Object.prototype);
      expect(Object.hasOwn(row, '__proto__')).toBe(true);
    }
    expect(Object.getOwnPropertyDescriptor(r.rows![0], '__proto__')?.value).toEqual({
      isAdmin: true,
    });
    expect((r.rows![0] as { isAdmin?: unknown }).isAdmin).toBeUndefined();
    expect(r.rows![0]!.toString).toBe('t');
    const stored = await tdb.pool.query(
      `SELECT "__proto__"::text AS p, "constructor" AS c FROM ${tdb.t('protos')} ORDER BY id`,
    );
    expect(stored.rows).toEqual([
      { p: '{"isAdmin": true}', c: 'c' },
      { p: null, c: null },
    ]);
    // one column named alone is a one-column list, through the queue too
    const nd = await producer.copyTo(tdb.t('protos'), {
      path: `protos-${queue}.ndjson`,
      format: 'ndjson',
      columns: '__proto__',
    });
    expect((await nd.done()).count).toBe(2);
    const lines = (await readFile(join(exportDir, `protos-${queue}.ndjson`), 'utf8'))
      .trim()
      .split('\n');
    // (json values as Postgres writes their text: jsonb puts a space after a colon)
    expect(lines).toEqual(['{"__proto__":{"isAdmin": true}}', '{"__proto__":null}']);
  });

  it('escaping-hostile text values survive one per row', async () => {
    const rows = HOSTILE_TEXT.map((name, n) => ({ name, n }));
    const op = await producer.bulkCreate(tdb.t('items'), rows, {
      batchSize: 3,
      returning: ['id', 'name'],
    });
    const res = await op.done();
    expect(res.rows!.map((r) => r.name)).toEqual(HOSTILE_TEXT);
    const back = await tdb.pool.query(`SELECT name FROM ${tdb.t('items')} ORDER BY n`);
    expect(back.rows.map((r) => r.name)).toEqual(HOSTILE_TEXT);
  });
});

describe('results', () => {
  it('returned keys are complete and in input order across many chunks', async () => {
    const rows = Array.from({ length: 500 }, (_, i) => ({ name: `r${i}`, n: i }));
    const op = await producer.bulkCreate(tdb.t('items'), rows, {
      returning: ['id', 'n'],
      batchSize: 7,
    });
    const res = await op.done();
    expect(res.count).toBe(500);
    expect(res.rows!.map((r) => r.n)).toEqual(rows.map((r) => r.n));
    const back = await tdb.pool.query(`SELECT id, n FROM ${tdb.t('items')}`);
    const idOf = new Map(back.rows.map((r) => [r.n, r.id]));
    for (const r of res.rows!) expect(String(r.id)).toBe(idOf.get(r.n));
    expect(new Set(res.rows!.map((r) => String(r.id))).size).toBe(500);
    const status = await op.status();
    expect(status).toMatchObject({
      state: 'completed',
      rowsDone: 500,
      totalRows: 500,
      totalChunks: 72,
    });
  });

  it('copyFrom with returning from an AsyncIterable, and progress up to the total', async () => {
    const rows = Array.from({ length: 60 }, (_, i) => ({ name: `a${i}`, n: i }));
    const op = await producer.copyFrom(tdb.t('items'), slowly(rows), {
      returning: true,
      batchSize: 7,
    });
    let last = 0;
    op.on('progress', (p) => {
      last = Math.max(last, p.rowsDone);
    });
    const res = await op.done();
    expect(res.count).toBe(60);
    expect(res.rows!.map((r) => r.name)).toEqual(rows.map((r) => r.name));
    await until('progress to reach every row', () => last === 60);
    expect(
      res.rows!.every(
        (r) => typeof r.id === 'string' || typeof r.id === 'bigint' || typeof r.id === 'number',
      ),
    ).toBe(true);
  });

  it('operationId makes enqueue idempotent; reusing it for other rows is OPERATION_CONFLICT', async () => {
    const rows = Array.from({ length: 20 }, (_, i) => ({ name: `x${i}`, n: i }));
    const opts = { batchSize: 6, operationId: `idem-${queue}` };
    const a = await producer.bulkCreate(tdb.t('items'), rows, opts);
    const b = await producer.bulkCreate(tdb.t('items'), rows, opts);
    expect(b.id).toBe(a.id);
    expect((await a.done()).count).toBe(20);
    expect((await b.done()).count).toBe(20);
    // and once more after it finished
    const c = await producer.bulkCreate(tdb.t('items'), rows, opts);
    expect((await c.done()).count).toBe(20);
    const back = await tdb.pool.query(`SELECT count(*)::int AS n FROM ${tdb.t('items')}`);
    expect(back.rows[0].n).toBe(20);

    const other = rows.map((r) => ({ ...r, name: `${r.name}!` }));
    expect((await rejection(producer.bulkCreate(tdb.t('items'), other, opts))).code).toBe(
      'OPERATION_CONFLICT',
    );
    expect(
      (await rejection(producer.bulkCreate(tdb.t('items'), rows.slice(0, 19), opts))).code,
    ).toBe('OPERATION_CONFLICT');
    expect(
      (await rejection(producer.bulkCreate(tdb.t('items'), [...rows, rows[0]!], opts))).code,
    ).toBe('OPERATION_CONFLICT');
    expect((await rejection(producer.copyFrom(tdb.t('items'), rows, opts))).code).toBe(
      'OPERATION_CONFLICT',
    );
    const after = await tdb.pool.query(`SELECT count(*)::int AS n FROM ${tdb.t('items')}`);
    expect(after.rows[0].n).toBe(20);
  });

  it('empty input: count 0 (and no rows when returning)', async () => {
    expect(await (await producer.bulkCreate(tdb.t('items'), [])).done()).toEqual({ count: 0 });
    expect(
      await (await producer.copyFrom(tdb.t('items'), slowly([]), { returning: true })).done(),
    ).toEqual({ count: 0, rows: [] });
    expect(
      await (await producer.updateFields(tdb.t('items'), [], { fields: ['n'] })).done(),
    ).toMatchObject({
      count: 0,
    });
  });

  it('a chunk over the payload limit is refused at enqueue; the operation fails, nothing written', async () => {
    const small = new BulkProducer({ ...TEST_QUEUE, queue, prefix, maxPayloadBytes: 4000 });
    try {
      const id = `big-${queue}`;
      const rows = Array.from({ length: 30 }, (_, i) => ({ name: 'x'.repeat(i * 30), n: i }));
      const err = await rejection(
        small.bulkCreate(tdb.t('items'), rows, { batchSize: 10, operationId: id }),
      );
      expect(err.code).toBe('PAYLOAD_TOO_LARGE');
      expect(err.message).toMatch(/lower batchSize/);
      // its handle does not wait for the seal timeout: it rejects with the same error
      expect((await rejection(small.operation(id).done())).code).toBe('PAYLOAD_TOO_LARGE');
      const n = await tdb.pool.query(`SELECT count(*)::int AS n FROM ${tdb.t('items')}`);
      expect(n.rows[0].n).toBeLessThanOrEqual(10); // only chunk 0 went out
    } finally {
      await small.close();
    }
  });

  it('an input that throws part way fails the operation; its handle rejects', async () => {
    const id = `src-${queue}`;
    async function* failing() {
      for (let i = 0; i < 12; i++) yield { name: `s${i}`, n: i };
      throw new Error('source broke');
    }
    await expect(
      producer.bulkCreate(tdb.t('items'), failing(), { batchSize: 5, operationId: id }),
    ).rejects.toThrow('source broke');
    const err = await rejection(producer.operation(id).done());
    expect(err.code).toBe('ENQUEUE_STOPPED');
    expect(err.message).toContain('source broke');
  });

  it('done() of an operation whose jobs were removed since still resolves from its counters', async () => {
    const op = await producer.bulkCreate(tdb.t('items'), [{ name: 'a' }, { name: 'b' }]);
    expect(await op.done()).toEqual({ count: 2 });
    const q = bullQueue(queue, prefix);
    try {
      await (await Job.fromId(q, op.id))!.remove();
    } finally {
      await q.close();
    }
    expect(await producer.operation(op.id).done()).toEqual({ count: 2 });
  });

  it('updateFields through the queue reports the keys that matched no row', async () => {
    await (await producer.bulkCreate(tdb.t('items'), [{ name: 'a' }, { name: 'b' }])).done();
    const op = await producer.updateFields(
      tdb.t('items'),
      [
        { id: 1, n: 10 },
        { id: 99, n: 1 },
        { id: 2, n: 20 },
        { id: 98, n: 1 },
      ],
      { fields: ['n'], batchSize: 1 },
    );
    const res = await op.done();
    expect(res.count).toBe(2);
    expect(res.missing!.map((m) => Number(m.id)).sort()).toEqual([98, 99]);
    const back = await tdb.pool.query(`SELECT id, n FROM ${tdb.t('items')} ORDER BY id`);
    expect(back.rows).toEqual([
      { id: '1', n: 10 },
      { id: '2', n: 20 },
    ]);
  });

  it('two producers enqueueing the same operationId at once write its rows once', async () => {
    const other = new BulkProducer({ ...TEST_QUEUE, queue, prefix });
    try {
      const rows = Array.from({ length: 50 }, (_, i) => ({ name: `c${i}`, n: i }));
      const opts = { batchSize: 4, operationId: `race-${queue}`, returning: ['n'] };
      const [a, b] = await Promise.all([
        producer.bulkCreate(tdb.t('items'), rows, opts),
        other.bulkCreate(tdb.t('items'), rows, opts),
      ]);
      const [ra, rb] = await Promise.all([a.done(), b.done()]);
      expect(ra.count).toBe(50);
      expect(rb).toEqual(ra);
      expect(ra.rows!.map((r) => r.n)).toEqual(rows.map((r) => r.n));
      const back = await tdb.pool.query(
        `SELECT count(*)::int AS n, count(DISTINCT n)::int AS d FROM ${tdb.t('items')}`,
      );
      expect(back.rows[0]).toEqual({ n: 50, d: 50 });
    } finally {
      await other.close();
    }
  });

  it('many operations watched at once: no listener warning, and no listener left once they end', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      const ops = await Promise.all(
        Array.from({ length: 15 }, (_, k) =>
          producer.bulkCreate(tdb.t('items'), [{ name: `m${k}`, n: k }]),
        ),
      );
      const seen = new Set<string>();
      for (const op of ops) op.on('progress', (p) => seen.add(p.operationId));
      const results = await Promise.all(ops.map((op) => op.done()));
      expect(results.every((r) => r.count === 1)).toBe(true);
      await until('every operation to report progress', () => seen.size === 15);
      // internal, read only: the shared reader of this producer holds no per-operation listener
      const handles = (
        producer as unknown as {
          handles: Map<string, { reader: { emitter: import('node:events').EventEmitter } }>;
        }
      ).handles;
      const reader = [...handles.values()][0]!.reader.emitter;
      await until('the progress listeners to go', () => reader.listenerCount('progress') === 0);
      expect(reader.listenerCount('completed')).toBe(0);
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings).not.toContain('MaxListenersExceededWarning');
  });

  it('cancel() of an operation that already completed leaves it completed', async () => {
    const op = await producer.bulkCreate(tdb.t('items'), [{ name: 'done' }]);
    expect(await op.done()).toEqual({ count: 1 });
    await op.cancel();
    expect((await op.status()).state).toBe('completed');
    expect(await op.done()).toEqual({ count: 1 });
  });

  it('done() that gives up is TIMEOUT (the operation goes on); an unknown id is UNKNOWN_OPERATION', async () => {
    // A queue no worker serves: the operation waits.
    const idle = new BulkProducer({ ...TEST_QUEUE, queue: queueName('idle'), prefix });
    try {
      const op = await idle.bulkCreate(tdb.t('items'), [{ name: 'waits' }]);
      const err = await rejection(op.done({ timeoutMs: 300 }));
      expect(err.code).toBe('TIMEOUT');
      expect((await op.status()).state).toBe('queued');
      const unknown = await rejection(idle.operation('no-such-operation').status());
      expect(unknown.code).toBe('UNKNOWN_OPERATION');
      await op.cancel();
    } finally {
      await idle.close();
    }
  });
});
