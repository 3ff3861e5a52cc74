import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/index.js';
import { DATABASE_URL, type TestDb, testDb } from '../helpers.js';
import { type PgProxy, startProxy } from './proxy.js';

// A connection lost while COMMIT is in flight: Postgres commits, the client never hears so and
// retries the chunk. The ledger must make that retry a no-op that recovers the chunk's result.

let tdb: TestDb;
let proxy: PgProxy;
let n = 0;

beforeAll(async () => {
  tdb = await testDb('indoubt');
  proxy = await startProxy();
});
afterAll(async () => {
  await proxy?.close();
  await tdb?.close();
});

function viaProxy(): string {
  const u = new URL(DATABASE_URL);
  u.port = String(proxy.port);
  return u.toString();
}

async function freshTable(): Promise<string> {
  const t = tdb.t(`items_${n++}`);
  // No unique constraint on name: a chunk written twice shows up as duplicate names.
  await tdb.pool.query(
    `CREATE TABLE ${t} (id bigserial primary key, name text not null, value int)`,
  );
  return t;
}

const rows = (count: number) =>
  Array.from({ length: count }, (_, i) => ({ name: `r${i}`, value: i }));

async function contents(t: string) {
  const r = await tdb.pool.query(
    `SELECT count(*)::int AS n, count(DISTINCT name)::int AS d, coalesce(sum(value), 0)::int AS s FROM ${t}`,
  );
  return r.rows[0] as { n: number; d: number; s: number };
}

function client(ledger = true) {
  const warnings: unknown[] = [];
  const db = tdb.client({
    connectionString: viaProxy(),
    logger: { ...silentLogger, warn: (o) => warnings.push(o) },
    retry: { initialDelayMs: 10, maxDelayMs: 200 },
    ...(ledger ? {} : { ledger: false }),
  });
  return { db, warnings };
}

/** Arm the cut once chunk `after` has committed, so a later chunk's COMMIT is the one cut. */
function cutAfterChunk(
  db: ReturnType<typeof client>['db'],
  signal: 'postBulkCreate' | 'postCopyFrom' | 'postUpdateFields',
  after: number,
) {
  db.signals.on(signal, (e) => {
    if (e.chunkIndex === after) proxy.armCommitCut(1);
  });
}

describe('connection lost during COMMIT', () => {
  it('bulkCreate returning: the retried chunk is recovered from the ledger, keys complete', async () => {
    const t = await freshTable();
    const { db, warnings } = client();
    cutAfterChunk(db, 'postBulkCreate', 1);
    const before = proxy.cuts;
    const input = rows(1000);
    const out = await db.model(t).bulkCreate(input, { returning: true, batchSize: 100 });
    expect(proxy.cuts - before).toBe(1);
    expect(warnings.length).toBeGreaterThanOrEqual(1);
    expect(out.count).toBe(1000);
    expect(out.rows?.map((r) => r.name)).toEqual(input.map((r) => r.name));
    expect(await contents(t)).toEqual({ n: 1000, d: 1000, s: (999 * 1000) / 2 });
    const stored = await tdb.pool.query(`SELECT id::text, name FROM ${t}`);
    const byName = new Map(stored.rows.map((r) => [r.name, r.id]));
    for (const r of out.rows!) expect(String(r.id)).toBe(byName.get(r.name));
  });

  it('copyFrom returning keys, concurrent chunks: every row once', async () => {
    const t = await freshTable();
    const { db } = client();
    cutAfterChunk(db, 'postCopyFrom', 0);
    const before = proxy.cuts;
    const input = rows(2000);
    const out = await db.model(t).copyFrom(input, {
      returning: ['id', 'name'],
      batchSize: 100,
      concurrent: true,
      maxConcurrentWorkers: 3,
    });
    expect(proxy.cuts - before).toBe(1);
    expect(out.count).toBe(2000);
    expect(out.rows?.map((r) => r.name)).toEqual(input.map((r) => r.name));
    expect(new Set(out.rows?.map((r) => String(r.id))).size).toBe(2000);
    expect(await contents(t)).toEqual({ n: 2000, d: 2000, s: (1999 * 2000) / 2 });
  });

  it('updateFields: the in-doubt chunk is counted once', async () => {
    const t = await freshTable();
    await tdb.pool.query(
      `INSERT INTO ${t} (name, value) SELECT 'r' || g, g FROM generate_series(0, 999) g`,
    );
    const ids = (await tdb.pool.query(`SELECT id FROM ${t} ORDER BY id`)).rows.map((r) => r.id);
    const { db } = client();
    cutAfterChunk(db, 'postUpdateFields', 2);
    const before = proxy.cuts;
    const out = await db.model(t).updateFields(
      ids.map((id) => ({ id, value: 7 })),
      { batchSize: 100 },
    );
    expect(proxy.cuts - before).toBe(1);
    expect(out).toEqual({ count: 1000, missing: [] });
    expect(await contents(t)).toEqual({ n: 1000, d: 1000, s: 7000 });
  });

  it('control: without the ledger the same cut writes the chunk twice', async () => {
    // Shows that the cut really leaves a committed transaction behind: only the ledger saves us.
    const t = await freshTable();
    const { db } = client(false);
    cutAfterChunk(db, 'postCopyFrom', 1);
    const out = await db.model(t).copyFrom(rows(500), { batchSize: 100 });
    expect(out.count).toBe(500);
    const c = await contents(t);
    expect(c.d).toBe(500);
    expect(c.n).toBe(600);
  });
});
