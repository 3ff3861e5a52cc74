import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BulkEvents,
  BulkProducer,
  BulkWorker,
  type Operation,
  type Row,
  silentLogger,
} from '../src/index.js';
import { hashPick } from '../src/producer/producer.js';
import { startDashboard } from '../src/worker/dashboard/server.js';
import { DATABASE_URL, type TestDb, testDb } from './helpers.js';
import {
  deleteKeys,
  obliterate,
  prefixArgs,
  QUEUE_ARGS,
  queueName,
  rejection,
  runCli,
  runPrefix,
  TEST_QUEUE,
  until,
} from './queueHelpers.js';

/**
 * Operations spread over several queues: a producer picks one per operation (by a hash of its
 * id, or its own pickQueue), one worker process serves all of them, and handles, statuses,
 * events, the CLI and the dashboard find each operation on its queue. Runs against the single
 * Redis, and against a Redis Cluster in `npm run test:cluster`.
 */
const prefix = runPrefix('multi');
const names = [queueName('mqa'), queueName('mqb'), queueName('mqc')];
let tdb: TestDb;
let T: string;
let producer: BulkProducer;
let worker: BulkWorker;

beforeAll(async () => {
  tdb = await testDb('multiq');
  T = tdb.t('items');
  await tdb.pool.query(`CREATE TABLE ${T} (id bigserial PRIMARY KEY, n int UNIQUE, name text)`);
  producer = new BulkProducer({ ...TEST_QUEUE, queue: names, prefix, logger: silentLogger });
  worker = new BulkWorker({
    ...TEST_QUEUE,
    queue: names.join(','),
    prefix,
    tables: [T],
    database: DATABASE_URL,
    concurrency: 2,
    logger: silentLogger,
  });
  await worker.waitUntilReady();
});
afterAll(async () => {
  await producer?.close();
  await worker?.close();
  for (const q of names) await obliterate(q, prefix).catch(() => {});
  await deleteKeys(`${prefix}:*`);
  await tdb?.close();
});

const rows = (from: number, n: number): Row[] =>
  Array.from({ length: n }, (_, i) => ({ n: from + i, name: `r${from + i}\t"\\` }));

describe('several queues', () => {
  it('spreads operations by a hash of their id; one worker serves every queue; each row once', async () => {
    const ops: Operation[] = [];
    for (let k = 0; k < 12; k++)
      ops.push(await producer.copyFrom(T, rows(k * 100, 100), { batchSize: 30 }));
    const placed = await Promise.all(ops.map((op) => op.queueName()));
    // Each on the queue its id hashes to; with 12 random ids, more than one queue is used.
    expect(placed).toEqual(ops.map((op) => names[hashPick(op.id, names.length)]));
    expect(new Set(placed).size).toBeGreaterThan(1);
    for (const op of ops) expect(await op.done({ timeoutMs: 30_000 })).toEqual({ count: 100 });
    const r = await tdb.pool.query(
      `SELECT count(*)::int AS c, count(DISTINCT n)::int AS d FROM ${T} WHERE n < 1200`,
    );
    expect(r.rows[0]).toEqual({ c: 1200, d: 1200 });
  });

  it('the same operation id always lands on the same queue: enqueueing it again is idempotent', async () => {
    const id = `mq-same-${Date.now()}`;
    const a = await producer.bulkCreate(T, rows(5000, 10), { operationId: id, returning: ['n'] });
    const other = new BulkProducer({ ...TEST_QUEUE, queue: names, prefix });
    try {
      const b = await other.bulkCreate(T, rows(5000, 10), { operationId: id, returning: ['n'] });
      expect(await b.queueName()).toBe(await a.queueName());
      const res = await b.done({ timeoutMs: 30_000 });
      expect(res.count).toBe(10);
      expect(res.rows!.map((x) => x.n)).toEqual(rows(5000, 10).map((x) => x.n));
      // A handle made from the id alone finds it, from a producer that did not enqueue it.
      const c = other.operation(id);
      expect(await c.queueName()).toBe(await a.queueName());
      expect((await c.status()).state).toBe('completed');
    } finally {
      await other.close();
    }
  });

  it('finds an operation on any queue, whatever pickQueue chose; lists every queue', async () => {
    const last = names[names.length - 1]!;
    const picky = new BulkProducer({
      ...TEST_QUEUE,
      queue: names,
      prefix,
      pickQueue: () => last,
    });
    try {
      const op = await picky.update(T, { where: { n: [5000, 5001] }, set: { name: 'picked' } });
      expect(await op.queueName()).toBe(last);
      expect(await op.done({ timeoutMs: 30_000 })).toEqual({ count: 2 });
      // The default pick may name another queue: the handle looks on the others.
      const found = producer.operation(op.id);
      expect(await found.queueName()).toBe(last);
      const listed = await producer.operations({ limit: 100 });
      expect(listed.find((s) => s.id === op.id)).toMatchObject({ queue: last, state: 'completed' });
      expect(new Set(listed.map((s) => s.queue)).size).toBeGreaterThan(1);
      const times = listed.map((s) => s.createdAt ?? 0);
      expect([...times].sort((x, y) => y - x)).toEqual(times);
    } finally {
      await picky.close();
    }
  });

  it('refuses a pickQueue that names another queue, and bad queue names', async () => {
    const bad = new BulkProducer({ ...TEST_QUEUE, queue: names, prefix, pickQueue: () => 'x' });
    try {
      const err = await rejection(bad.bulkCreate(T, rows(9000, 1)));
      expect(err.code).toBe('INVALID_OPTION');
      expect(err.message).toContain('pickQueue returned "x"');
    } finally {
      await bad.close();
    }
    for (const queue of ['a:b', 'a{b}', '', 'a b', [names[0]!, names[0]!]]) {
      expect(() => new BulkProducer({ ...TEST_QUEUE, queue, prefix })).toThrow(
        /queue|INVALID_OPTION/,
      );
    }
  });

  it('BulkEvents over several queues hears each queue', async () => {
    const events = new BulkEvents({ ...TEST_QUEUE, queue: names, prefix });
    const heard = new Map<string, number>();
    events.on('completed', (e) => {
      heard.set(e.operationId, e.count ?? -1);
    });
    try {
      await events.waitUntilReady();
      // Ids that the hash spreads over two queues at least (six random ones can all land on
      // one queue, 3 times in 729): the test is about hearing every queue, not about chance.
      const ids: string[] = [];
      for (let i = 0; ids.length < 6; i++) {
        const id = `${names[0]}-heard-${i}`;
        const q = hashPick(id, names.length);
        if (ids.length < 5 || ids.some((x) => hashPick(x, names.length) !== q)) ids.push(id);
      }
      const ops: Operation[] = [];
      for (let k = 0; k < 6; k++)
        ops.push(await producer.bulkCreate(T, rows(6000 + k * 10, 10), { operationId: ids[k]! }));
      await Promise.all(ops.map((op) => op.done({ timeoutMs: 30_000 })));
      await until('every end event', () => ops.every((op) => heard.get(op.id) === 10));
      expect(new Set(await Promise.all(ops.map((op) => op.queueName()))).size).toBeGreaterThan(1);
    } finally {
      await events.close();
    }
  });

  it('the dashboard and the CLI show operations of every queue, with their queue', async () => {
    const dash = await startDashboard({
      ...TEST_QUEUE,
      queue: names,
      prefix,
      port: 0,
      logger: silentLogger,
    });
    try {
      const op = await producer.bulkCreate(T, rows(7000, 5));
      await op.done({ timeoutMs: 30_000 });
      const data = (await (await fetch(`${dash.url}api/operations`)).json()) as {
        queues: string[];
        operations: { id: string; queue: string; state: string }[];
      };
      expect(data.queues).toEqual(names);
      expect(data.operations.find((o) => o.id === op.id)).toMatchObject({
        queue: await op.queueName(),
        state: 'completed',
      });
      const metrics = await (await fetch(`${dash.url}metrics`)).text();
      for (const q of names) expect(metrics).toContain(`bulkmodel_queue_jobs{queue="${q}"`);
    } finally {
      await dash.close();
    }
    const c = runCli([
      'status',
      '--queue',
      names.join(','),
      ...prefixArgs(prefix),
      ...QUEUE_ARGS,
      '--json',
      '--limit',
      '200',
    ]);
    expect((await c.exited).code, c.output()).toBe(0);
    const listed = JSON.parse(c.output()) as { queue: string }[];
    expect(new Set(listed.map((s) => s.queue))).toEqual(new Set(names));
  });
});
