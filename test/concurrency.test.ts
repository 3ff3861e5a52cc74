import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BulkClient, BulkError, silentLogger } from '../src/index.js';
import { DATABASE_URL, type TestDb, testDb } from './helpers.js';

let tdb: TestDb;
let n = 0;
/** A fresh table per test: items(id bigserial pk, name text not null unique, value int). */
async function table(): Promise<string> {
  const t = tdb.t(`items_${n++}`);
  await tdb.pool.query(
    `CREATE TABLE ${t} (id bigserial primary key, name text not null unique, value int)`,
  );
  return t;
}

beforeAll(async () => {
  tdb = await testDb('concurrency');
});
afterAll(() => tdb.close());

const named = (count: number, tag = 'r') =>
  Array.from({ length: count }, (_, i) => ({ name: `${tag}${i}`, value: i }));

/** Every name exactly once, and nothing else in the table. */
async function expectExactlyOnce(t: string, names: string[]): Promise<void> {
  const r = await tdb.pool.query(
    `SELECT count(*)::int AS n, count(DISTINCT name)::int AS d FROM ${t}`,
  );
  expect(r.rows[0]).toEqual({ n: names.length, d: names.length });
  const missing = await tdb.pool.query(
    `SELECT count(*)::int AS n FROM unnest($1::text[]) AS x(name) WHERE NOT EXISTS (SELECT 1 FROM ${t} t WHERE t.name = x.name)`,
    [names],
  );
  expect(missing.rows[0].n).toBe(0);
}

/**
 * Make chunk 0 finish last: its pre signal waits until chunk 1 has committed, so results can
 * only come back in input order if the runner orders them (not by completion).
 */
function chunkZeroLast(db: BulkClient, pre: 'preBulkCreate' | 'preCopyFrom' | 'preUpdateFields') {
  const post = pre.replace('pre', 'post') as 'postBulkCreate' | 'postCopyFrom' | 'postUpdateFields';
  let release!: () => void;
  const chunkOneDone = new Promise<void>((r) => {
    release = r;
  });
  db.signals.on(post, (e) => {
    if (e.chunkIndex === 1) release();
  });
  db.signals.on(pre, async (e) => {
    if (e.chunkIndex === 0) await chunkOneDone;
  });
}

describe('concurrent chunks: results in input order', () => {
  it('bulkCreate returning', async () => {
    const t = await table();
    const db = tdb.client();
    chunkZeroLast(db, 'preBulkCreate');
    const rows = named(500);
    const out = await db.model(t).bulkCreate(rows, {
      returning: true,
      batchSize: 37,
      concurrent: true,
      maxConcurrentWorkers: 4,
    });
    expect(out.count).toBe(500);
    expect(out.rows?.map((r) => r.name)).toEqual(rows.map((r) => r.name));
    expect(new Set(out.rows?.map((r) => String(r.id))).size).toBe(500);
    await expectExactlyOnce(
      t,
      rows.map((r) => r.name),
    );
    // The returned keys are the stored ones.
    const stored = await tdb.pool.query(`SELECT id::text, name FROM ${t}`);
    const byName = new Map(stored.rows.map((r) => [r.name, r.id]));
    for (const r of out.rows!) expect(String(r.id)).toBe(byName.get(r.name));
  });

  it('copyFrom returning', async () => {
    const t = await table();
    const db = tdb.client();
    chunkZeroLast(db, 'preCopyFrom');
    const rows = named(500);
    const out = await db.model(t).copyFrom(rows, {
      returning: ['id', 'name'],
      batchSize: 50,
      concurrent: true,
      maxConcurrentWorkers: 3,
    });
    expect(out.count).toBe(500);
    expect(out.rows?.map((r) => r.name)).toEqual(rows.map((r) => r.name));
    await expectExactlyOnce(
      t,
      rows.map((r) => r.name),
    );
  });

  it('updateFields: count, and missing keys in input order', async () => {
    const t = await table();
    const db = tdb.client();
    const created = await db.model(t).bulkCreate(named(300), { returning: ['id'] });
    const ids = created.rows!.map((r) => Number(r.id));
    // Interleave keys that exist with keys that do not, in reverse order.
    const input: { id: number; value: number }[] = [];
    const absent: number[] = [];
    for (let i = ids.length - 1; i >= 0; i--) {
      input.push({ id: ids[i]!, value: -ids[i]! });
      if (i % 7 === 0) {
        const ghost = 1_000_000 + i;
        absent.push(ghost);
        input.push({ id: ghost, value: 0 });
      }
    }
    chunkZeroLast(db, 'preUpdateFields');
    const out = await db.model(t).updateFields(input, {
      fields: ['value'],
      batchSize: 23,
      concurrent: true,
      maxConcurrentWorkers: 4,
    });
    expect(out.count).toBe(300);
    expect(out.missing.map((m) => Number(m.id))).toEqual(absent);
    const wrong = await tdb.pool.query(`SELECT count(*)::int AS n FROM ${t} WHERE value <> -id`);
    expect(wrong.rows[0].n).toBe(0);
  });

  it('update: every matching row, in key batches run concurrently', async () => {
    const t = await table();
    const db = tdb.client();
    await db.model(t).bulkCreate(named(400));
    const out = await db
      .model(t)
      .update(
        { where: { value: Array.from({ length: 200 }, (_, i) => i * 2) }, set: { value: -1 } },
        { batchSize: 9, concurrent: true, maxConcurrentWorkers: 4 },
      );
    expect(out.count).toBe(200);
    const r = await tdb.pool.query(`SELECT count(*)::int AS n FROM ${t} WHERE value = -1`);
    expect(r.rows[0].n).toBe(200);
  });
});

/**
 * A real pg.Pool, watched through its own events: it counts the connections that are inside a
 * transaction (BEGIN seen, not yet released) and keeps the highest number seen.
 */
function watchedPool(max: number) {
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max, application_name: 'bulkmodel' });
  const stats = { inTx: 0, peak: 0, destroyed: 0 };
  const open = new WeakSet<pg.PoolClient>();
  const wrapped = new WeakSet<pg.PoolClient>();
  pool.on('acquire', (client) => {
    if (wrapped.has(client)) return;
    wrapped.add(client);
    const query = client.query.bind(client) as (...a: unknown[]) => unknown;
    (client as unknown as { query: (...a: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const text =
        typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string } | undefined)?.text;
      if (text?.startsWith('BEGIN') && !open.has(client)) {
        open.add(client);
        stats.inTx++;
        stats.peak = Math.max(stats.peak, stats.inTx);
      }
      return query(...args);
    };
  });
  pool.on('release', (err, client) => {
    if (open.delete(client)) stats.inTx--;
    if (err) stats.destroyed++;
  });
  return { pool, stats };
}

describe('client-wide cap on concurrent batch writes', () => {
  it('holds across calls, on a pool passed in', async () => {
    const t = await table();
    const { pool, stats } = watchedPool(10);
    pool.on('error', () => {});
    const db = tdb.client({ pool, maxConcurrentBatchWrites: 2 });
    try {
      await db.ensureConnected();
      await db.model(t).meta();
      // Hold every write on a table lock until exactly `cap` chunk transactions are waiting.
      const locker = await tdb.pool.connect();
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE ${t} IN SHARE MODE`);
      const lockerPid = (await locker.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      const calls = [0, 1, 2].map((k) =>
        db.model(t).bulkCreate(named(60, `c${k}_`), {
          batchSize: 10,
          concurrent: true,
          maxConcurrentWorkers: 4,
        }),
      );
      const settled = Promise.allSettled(calls);
      try {
        for (let i = 0; i < 500; i++) {
          // Other test files share the database: count only the backends our lock holds up.
          const w = await tdb.pool.query(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))`,
            [lockerPid],
          );
          if (w.rows[0].n >= 2) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        expect(stats.inTx).toBe(2);
      } finally {
        await locker.query('COMMIT');
        locker.release();
      }
      const results = await settled;
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
      expect(stats.peak).toBe(2);
      await expectExactlyOnce(
        t,
        [0, 1, 2].flatMap((k) => named(60, `c${k}_`).map((r) => r.name)),
      );
    } finally {
      await db.close();
      await pool.end();
    }
  });
});

describe('a failing chunk', () => {
  const rows = (count = 100) => {
    const r: { name: string | null; value: number }[] = named(count);
    r[45]!.name = null; // NOT NULL: chunk 4 (rows 40-49) fails in Postgres
    return r;
  };

  it('sequential: stops at the failing chunk; the error says what had committed', async () => {
    const t = await table();
    const db = tdb.client();
    const prepared: number[] = [];
    db.signals.on('preBulkCreate', (e) => {
      prepared.push(e.chunkIndex);
    });
    const err = await db
      .model(t)
      .bulkCreate(rows(), { batchSize: 10 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BulkError);
    expect(err).toMatchObject({
      code: 'NOT_NULL_VIOLATION',
      committedChunks: 4,
      committedRows: 40,
    });
    // Chunks 0-4 were prepared and written in turn; at most one more was prepared ahead
    // (while chunk 4 wrote) and then dropped, never written.
    expect(prepared.slice(0, 5)).toEqual([0, 1, 2, 3, 4]);
    expect(prepared.length).toBeLessThanOrEqual(6);
    const c = await tdb.pool.query(`SELECT count(*)::int AS n, max(value) AS m FROM ${t}`);
    expect(c.rows[0]).toEqual({ n: 40, m: 39 });
  });

  it('the failed transaction connection is destroyed, not returned to the pool', async () => {
    const t = await table();
    const { pool, stats } = watchedPool(4);
    pool.on('error', () => {});
    const db = tdb.client({ pool });
    try {
      await db.model(t).bulkCreate(named(5, 'warm'), { batchSize: 10 });
      expect(stats.destroyed).toBe(0);
      const pids = new Set<number>();
      pool.on('acquire', (c) => {
        const pid = (c as unknown as { processID?: number }).processID;
        if (pid) pids.add(pid);
      });
      const err = await db
        .model(t)
        .copyFrom(rows(), { batchSize: 10 })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'NOT_NULL_VIOLATION', committedRows: 40 });
      expect(stats.destroyed).toBe(1);
      // The backend that ran the failed COPY is gone; the pool still works.
      const alive = await tdb.pool.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY($1::int[])`,
        [[...pids]],
      );
      expect(alive.rows[0].n).toBe(pids.size - 1);
      expect((await db.model(t).bulkCreate(named(1, 'after'))).count).toBe(1);
    } finally {
      await db.close();
      await pool.end();
    }
  });

  for (const op of ['bulkCreate', 'copyFrom'] as const) {
    it(`concurrent ${op}: no more chunks scheduled, table holds exactly the committed rows`, async () => {
      const t = await table();
      const db = tdb.client();
      const pre = op === 'bulkCreate' ? 'preBulkCreate' : 'preCopyFrom';
      const prepared: number[] = [];
      db.signals.on(pre, (e) => {
        prepared.push(e.chunkIndex);
      });
      const err = (await db
        .model(t)
        [op](rows(1000), { batchSize: 10, concurrent: true, maxConcurrentWorkers: 3 })
        .catch((e: unknown) => e)) as BulkError;
      expect(err).toBeInstanceOf(BulkError);
      expect(err.code).toBe('NOT_NULL_VIOLATION');
      expect(err.row).toBe(op === 'copyFrom' ? 45 : err.row);
      expect(err.committedRows).toBe((err.committedChunks ?? -1) * 10);
      // Of 100 chunks, only those started before chunk 4's failure was known ever start (how
      // many depends on how long the failure takes to report; far fewer than 100).
      expect(Math.max(...prepared)).toBeLessThan(40);
      expect(prepared.length - (err.committedChunks ?? 0)).toBeLessThanOrEqual(3);
      const c = await tdb.pool.query(`SELECT count(*)::int AS n FROM ${t}`);
      expect(c.rows[0].n).toBe(err.committedRows);
      const partial = await tdb.pool.query(
        `SELECT value / 10 AS chunk, count(*)::int AS n FROM ${t} GROUP BY 1 HAVING count(*) <> 10`,
      );
      expect(partial.rows).toEqual([]);
    });
  }

  it('a source that throws part way: in-flight chunks finish, counts are reported', async () => {
    const t = await table();
    const db = tdb.client();
    async function* source() {
      for (let i = 0; i < 35; i++) yield { name: `s${i}`, value: i };
      throw new Error('source broke');
    }
    const err = (await db
      .model(t)
      .copyFrom(source(), { batchSize: 10, concurrent: true, maxConcurrentWorkers: 2 })
      .catch((e: unknown) => e)) as BulkError;
    expect(err).toBeInstanceOf(BulkError);
    expect(err.message).toMatch(/source broke/);
    expect(err.committedRows).toBe(30);
    const c = await tdb.pool.query(`SELECT count(*)::int AS n FROM ${t}`);
    expect(c.rows[0].n).toBe(30);
  });
});

describe('four concurrent operations write every row exactly once', () => {
  it('Promise.all of four calls on one client', async () => {
    const t = await table();
    const db = tdb.client({ maxConcurrentBatchWrites: 6 });
    const m = db.model(t);
    const out = await Promise.all([
      m.bulkCreate(named(3000, 'a'), { batchSize: 250, concurrent: true, maxConcurrentWorkers: 3 }),
      m.copyFrom(named(3000, 'b'), { batchSize: 250, concurrent: true, maxConcurrentWorkers: 3 }),
      m.bulkCreate(named(3000, 'c'), { returning: true, batchSize: 200, concurrent: true }),
      m.copyFrom(named(3000, 'd'), { returning: true, batchSize: 300, concurrent: true }),
    ]);
    expect(out.map((o) => o.count)).toEqual([3000, 3000, 3000, 3000]);
    await expectExactlyOnce(
      t,
      ['a', 'b', 'c', 'd'].flatMap((tag) => named(3000, tag).map((r) => r.name)),
    );
  });

  it('four BulkClients, distinct rows', async () => {
    const t = await table();
    const clients = [0, 1, 2, 3].map(() => tdb.client({ poolSize: 3 }));
    const out = await Promise.all(
      clients.map((db, k) =>
        db.model(t).copyFrom(named(2500, `w${k}_`), {
          batchSize: 100,
          concurrent: true,
          maxConcurrentWorkers: 3,
        }),
      ),
    );
    expect(out.map((o) => o.count)).toEqual([2500, 2500, 2500, 2500]);
    await expectExactlyOnce(
      t,
      [0, 1, 2, 3].flatMap((k) => named(2500, `w${k}_`).map((r) => r.name)),
    );
  });

  it('four BulkClients delivering the same operation (at-least-once): the ledger writes it once', async () => {
    const t = await table();
    const clients = [0, 1, 2, 3].map(() => tdb.client({ poolSize: 3 }));
    const rows = named(2000, 'dup');
    const operationId = `dup-op-${n}`;
    for (const op of ['bulkCreate', 'copyFrom'] as const) {
      const out = await Promise.all(
        clients.map((db) =>
          db.model(t)[op](rows, {
            operationId: `${operationId}-${op}`,
            returning: ['id', 'name'],
            batchSize: 100,
            concurrent: true,
            maxConcurrentWorkers: 3,
            ...(op === 'copyFrom' ? { onConflict: 'ignore' as const } : {}),
          }),
        ),
      );
      // Every delivery reports the same result: the rows written once, with the same keys.
      for (const o of out) {
        expect(o.count).toBe(2000);
        expect(o.rows?.map((r) => r.name)).toEqual(rows.map((r) => r.name));
        expect(o.rows?.map((r) => String(r.id))).toEqual(out[0]!.rows?.map((r) => String(r.id)));
      }
      await expectExactlyOnce(
        t,
        rows.map((r) => r.name),
      );
      await tdb.pool.query(`TRUNCATE ${t}`);
    }
  });
});

describe('concurrent updateFields on one table', () => {
  it('overlapping keys in random orders finish without deadlock errors', async () => {
    const t = await table();
    const retried: unknown[] = [];
    const db = tdb.client({
      maxConcurrentBatchWrites: 8,
      logger: { ...silentLogger, warn: (o) => retried.push(o) },
    });
    const created = await db.model(t).bulkCreate(named(3000), { returning: ['id'] });
    const ids = created.rows!.map((r) => Number(r.id));
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const shuffled = (xs: number[]) => {
      const a = xs.slice();
      for (let i = a.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [a[i], a[j]] = [a[j]!, a[i]!];
      }
      return a;
    };
    const callers = [1, 2, 3, 4];
    const calls = callers.map((k) => {
      // Each caller touches a random two thirds of the rows, in its own random order.
      const keys = shuffled(ids).slice(0, 2000);
      return db.model(t).updateFields(
        keys.map((id) => ({ id, value: k })),
        { batchSize: 250, concurrent: true, maxConcurrentWorkers: 2 },
      );
    });
    const results = await Promise.allSettled(calls);
    for (const r of results) {
      expect(r.status === 'rejected' ? (r.reason as BulkError).code : 'ok').toBe('ok');
      if (r.status === 'fulfilled') expect(r.value).toEqual({ count: 2000, missing: [] });
    }
    // Every chunk locks its rows in key order (sorted rows, a nested loop): no deadlock at all,
    // not even one retried.
    expect(retried).toEqual([]);
    const bad = await tdb.pool.query(
      `SELECT count(*)::int AS n FROM ${t} WHERE value NOT IN (1, 2, 3, 4) AND value <> id - $1`,
      [ids[0]],
    );
    expect(bad.rows[0].n).toBe(0);
  });

  it('a deadlock from outside is retried', async () => {
    const t = await table();
    const warnings: string[] = [];
    const db = tdb.client({
      logger: { ...silentLogger, warn: (_o, msg) => warnings.push(String(msg)) },
    });
    const created = await db.model(t).bulkCreate(named(2), { returning: ['id'] });
    const [a, b] = created.rows!.map((r) => Number(r.id)) as [number, number];
    // An outside transaction locks row b, then (once our chunk holds row a and waits for b)
    // asks for row a: one of the two is chosen as the deadlock victim.
    const outside = await tdb.pool.connect();
    try {
      await outside.query('BEGIN');
      const outsidePid = (await outside.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      await outside.query(`UPDATE ${t} SET value = 100 WHERE id = $1`, [b]);
      const ours = db.model(t).updateFields(
        [
          { id: a, value: 1 },
          { id: b, value: 2 },
        ],
        { fields: ['value'] },
      );
      for (let i = 0; i < 500; i++) {
        const w = await tdb.pool.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))`,
          [outsidePid],
        );
        if (w.rows[0].n >= 1) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const outsideResult = await outside
        .query(`UPDATE ${t} SET value = 100 WHERE id = $1`, [a])
        .then(
          () => 'ok',
          (e: { code?: string }) => e.code,
        );
      await outside.query(outsideResult === 'ok' ? 'COMMIT' : 'ROLLBACK');
      const out = await ours;
      expect(out.count).toBe(2);
      if (outsideResult === 'ok') {
        // We were the victim: the chunk was retried after the outside transaction committed.
        expect(warnings).toContain('chunk failed transiently; retrying');
      } else {
        expect(outsideResult).toBe('40P01');
      }
      const r = await tdb.pool.query(`SELECT value FROM ${t} ORDER BY id`);
      expect(r.rows.map((x) => x.value)).toEqual([1, 2]);
    } finally {
      outside.release();
    }
  });
});
