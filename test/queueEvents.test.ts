import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BulkEvents, BulkProducer, BulkWorker, type Row, silentLogger } from '../src/index.js';
import { DATABASE_URL, type TestDb, testDb } from './helpers.js';
import {
  deleteKeys,
  killAll,
  ON_POSTGRES,
  obliterate,
  queueName,
  rawRedis,
  runPrefix,
  startWorker,
  stopWorker,
  TEST_QUEUE,
  testRedisBackend,
  until,
  type WorkerProcess,
} from './queueHelpers.js';

/** Signals and progress published by a worker child process, received here through BulkEvents. */
let tdb: TestDb;
const prefix = runPrefix('events');

beforeAll(async () => {
  tdb = await testDb('qevents');
  await tdb.pool.query(
    `CREATE TABLE ${tdb.t('items')} (id bigserial PRIMARY KEY, name text NOT NULL, n int, doc jsonb)`,
  );
});
afterAll(async () => {
  await killAll();
  await tdb.close();
  await deleteKeys(`${prefix}:*`);
});

let queue: string;
let worker: WorkerProcess;
let producer: BulkProducer;
const readers: BulkEvents[] = [];
beforeEach(async () => {
  queue = queueName('events');
  worker = await startWorker({ tables: [tdb.t('items')], queue, prefix });
  producer = new BulkProducer({ ...TEST_QUEUE, queue, prefix });
});
afterEach(async () => {
  for (const r of readers.splice(0)) await r.close();
  await producer.close();
  expect(await stopWorker(worker)).toBe(0);
  await obliterate(queue, prefix);
});

type Seen = { name: string; event: Record<string, unknown> };

/** A reader that records every event. */
async function reader(options: { group?: string; consumer?: string } = {}) {
  const events = new BulkEvents({ ...TEST_QUEUE, queue, prefix, ...options });
  readers.push(events);
  const seen: Seen[] = [];
  events.on('*', (name, event) => {
    seen.push({ name, event: event as Record<string, unknown> });
  });
  await events.waitUntilReady();
  const of = (opId: string, name?: string) =>
    seen.filter((s) => s.event.operationId === opId && (name === undefined || s.name === name));
  return { events, seen, of };
}

function rows(n: number, tag = 'r'): Row[] {
  return Array.from({ length: n }, (_, i) => ({ name: `${tag}${i}`, n: i }));
}

describe('BulkEvents from a worker process', () => {
  it('receives pre/post signals, progress and completed for bulkCreate and updateFields', async () => {
    const r = await reader();
    const typed: number[] = [];
    r.events.on('postBulkCreate', (e) => {
      typed.push(e.count);
    });
    const op = await producer.bulkCreate(tdb.t('items'), rows(20), { batchSize: 5 });
    expect((await op.done()).count).toBe(20);
    await until('completed event', () => r.of(op.id, 'completed').length === 1);
    expect(r.of(op.id, 'preBulkCreate')).toHaveLength(4);
    const posts = r.of(op.id, 'postBulkCreate');
    expect(posts).toHaveLength(4);
    for (const p of posts) {
      expect(p.event).toMatchObject({ table: tdb.t('items'), count: 5, rowsCount: 5 });
      expect(p.event.rows).toBeUndefined();
    }
    expect(typed).toEqual([5, 5, 5, 5]);
    const progress = r.of(op.id, 'progress').map((p) => p.event.rowsDone as number);
    expect(progress).toHaveLength(4);
    expect(Math.max(...progress)).toBe(20);
    expect(r.of(op.id, 'completed')[0]!.event).toMatchObject({ count: 20, state: 'completed' });

    const uf = await producer.updateFields(
      tdb.t('items'),
      Array.from({ length: 9 }, (_, i) => ({ id: i + 1, n: -i })),
      { fields: ['n'], batchSize: 4 },
    );
    expect((await uf.done()).count).toBe(9);
    await until('completed event', () => r.of(uf.id, 'completed').length === 1);
    expect(r.of(uf.id, 'preUpdateFields')).toHaveLength(3);
    // chunks run in parallel: order by chunk index
    const ufPosts = r
      .of(uf.id, 'postUpdateFields')
      .sort((a, b) => (a.event.chunkIndex as number) - (b.event.chunkIndex as number));
    expect(ufPosts.map((p) => p.event.count)).toEqual([4, 4, 1]);
  });

  it('signals: false on an operation publishes no signal events (progress still flows)', async () => {
    const r = await reader();
    const quiet = await producer.bulkCreate(tdb.t('items'), rows(12), {
      batchSize: 4,
      signals: false,
    });
    await quiet.done();
    // A later operation with signals on: once its events arrived, the quiet one's would have too.
    const loud = await producer.bulkCreate(tdb.t('items'), rows(4), { batchSize: 4 });
    await loud.done();
    await until('the loud completed event', () => r.of(loud.id, 'completed').length === 1);
    expect(r.of(loud.id, 'postBulkCreate')).toHaveLength(1);
    expect(
      r
        .of(quiet.id)
        .map((s) => s.name)
        .sort(),
    ).toEqual(['completed', 'progress', 'progress', 'progress']);
  });

  it('a consumer group gets every event at least once, including those sent while it was closed', async () => {
    const group = `g-${randomBytes(3).toString('hex')}`;
    const first = await reader({ group, consumer: 'c1' });
    const op1 = await producer.bulkCreate(tdb.t('items'), rows(6), { batchSize: 2 });
    await op1.done();
    await until('op1 completed in the group', () => first.of(op1.id, 'completed').length === 1);
    expect(first.of(op1.id, 'postBulkCreate')).toHaveLength(3);
    await first.events.close();

    // published while no member of the group is reading
    const op2 = await producer.bulkCreate(tdb.t('items'), rows(8), { batchSize: 2 });
    await op2.done();

    const again = await reader({ group, consumer: 'c1' });
    await until('op2 completed in the group', () => again.of(op2.id, 'completed').length >= 1);
    const posts = again.of(op2.id, 'postBulkCreate');
    expect(new Set(posts.map((p) => p.event.chunkIndex))).toEqual(new Set([0, 1, 2, 3]));
    expect(again.of(op2.id, 'progress').length).toBeGreaterThanOrEqual(4);
  });

  it('in the worker process, worker.signals runs pre listeners that may adjust rows', async () => {
    const q2 = queueName('inproc');
    const w = new BulkWorker({
      ...TEST_QUEUE,
      queue: q2,
      prefix,
      database: DATABASE_URL,
      tables: [tdb.t('items')],
      logger: silentLogger,
    });
    const p2 = new BulkProducer({ ...TEST_QUEUE, queue: q2, prefix });
    try {
      const counts: number[] = [];
      w.signals.on('preBulkCreate', (e) => {
        // json values reach listeners as objects (a worker without listeners keeps them as
        // text): a change to one is written
        for (const r of e.rows) (r.doc as { k: number[] }).k.push(r.n as number);
        e.rows = e.rows.map((r) => ({ ...r, name: String(r.name).toUpperCase() }));
      });
      w.signals.on('postBulkCreate', (e) => {
        counts.push(e.count);
      });
      await w.waitUntilReady();
      const op = await p2.bulkCreate(
        tdb.t('items'),
        rows(6, 'low').map((r) => ({ ...r, doc: { k: [0] } })),
        { batchSize: 3, returning: ['name'] },
      );
      const res = await op.done();
      expect(res.rows!.map((r) => r.name)).toEqual(rows(6, 'LOW').map((r) => r.name));
      expect(counts.sort()).toEqual([3, 3]);
      const back = await tdb.pool.query(
        `SELECT count(*)::int AS n FROM ${tdb.t('items')} WHERE name LIKE 'LOW%'`,
      );
      expect(back.rows[0].n).toBe(6);
      const docs = await tdb.pool.query(
        `SELECT n, doc FROM ${tdb.t('items')} WHERE name LIKE 'LOW%' ORDER BY n`,
      );
      expect(docs.rows).toEqual(rows(6).map((r) => ({ n: r.n, doc: { k: [0, r.n] } })));
    } finally {
      await p2.close();
      await w.close();
      await obliterate(q2, prefix);
    }
  });

  it.skipIf(ON_POSTGRES)(
    'a consumer group whose pending events were trimmed away keeps reading (Redis)',
    async () => {
      const group = `g-${randomBytes(3).toString('hex')}`;
      const b = testRedisBackend(prefix);
      const stream = b.keys(queue).events;
      await b.close();
      const raw = rawRedis();
      try {
        const first = await reader({ group, consumer: 'c1' });
        await first.events.close();
        // an event delivered to c1 and never acknowledged, then trimmed from the stream
        await raw.xadd(stream, '*', 'name', 'progress', 'op', 'x', 'data', '{}');
        await raw.xreadgroup('GROUP', group, 'c1', 'COUNT', 10, 'STREAMS', stream, '>');
        await raw.xtrim(stream, 'MAXLEN', 0);
        const again = await reader({ group, consumer: 'c1' });
        const op = await producer.bulkCreate(tdb.t('items'), rows(2), { batchSize: 2 });
        await op.done();
        await until('the new events', () => again.of(op.id, 'completed').length >= 1);
      } finally {
        raw.disconnect();
      }
    },
  );
});
