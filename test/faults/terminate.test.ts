import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/index.js';
import { DATABASE_URL, type TestDb, testDb } from '../helpers.js';

// Backends terminated mid-chunk, again and again, while a large operation runs: it completes
// and every row is present exactly once.

const ROWS = 300_000;
const KILL_SQL = `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'bulkmodel' AND datname = current_database()`;

let tdb: TestDb;
let n = 0;
beforeAll(async () => {
  tdb = await testDb('terminate');
});
afterAll(() => tdb?.close());

async function freshTable(): Promise<string> {
  const t = tdb.t(`items_${n++}`);
  // No unique constraint: a chunk written twice would show as duplicate names.
  await tdb.pool.query(
    `CREATE TABLE ${t} (id bigserial primary key, name text not null, value int)`,
  );
  return t;
}

function* rows(count: number) {
  for (let i = 0; i < count; i++) yield { name: `r${i}`, value: i };
}

/**
 * Kill every bulkmodel backend of this database each time one of them is inside a chunk's
 * transaction, until `stop` is called. Returns how many times it killed.
 */
function killer() {
  const admin = new pg.Client({ connectionString: DATABASE_URL, application_name: 'killer' });
  let running = true;
  let kills = 0;
  const done = (async () => {
    await admin.connect();
    while (running) {
      const busy = await admin.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'bulkmodel' AND datname = current_database() AND xact_start IS NOT NULL AND state <> 'idle'`,
      );
      if (busy.rows[0].n > 0) {
        const r = await admin.query(KILL_SQL);
        kills += r.rows.length;
        // Give the operation room to make progress between kills.
        await new Promise((res) => setTimeout(res, 150));
      } else {
        await new Promise((res) => setTimeout(res, 10));
      }
    }
    await admin.end();
  })();
  return {
    async stop() {
      running = false;
      await done;
      return kills;
    },
  };
}

function client() {
  const retries: unknown[] = [];
  const db = tdb.client({
    logger: {
      ...silentLogger,
      warn: (o, msg) => {
        if (String(msg).includes('retrying')) retries.push(o);
      },
    },
    retry: { initialDelayMs: 20, maxDelayMs: 500, maxElapsedMs: 120_000 },
  });
  return { db, retries };
}

/** `count` rows named r0..r{count-1}, each exactly once, each with value = index * mult. */
async function checkExactlyOnce(t: string, count: number, mult = 1) {
  const r = await tdb.pool.query(
    `SELECT count(*)::int AS n, count(DISTINCT name)::int AS d, sum(value)::bigint AS s,
            count(*) FILTER (WHERE value % $1::int <> 0 OR name <> 'r' || (value / $1::int))::int AS bad
     FROM ${t}`,
    [mult],
  );
  const sum = (BigInt(count) * BigInt(count - 1) * BigInt(mult)) / 2n;
  expect(r.rows[0]).toEqual({ n: count, d: count, s: String(sum), bad: 0 });
}

describe('pg_terminate_backend fired repeatedly during a large operation', () => {
  it('bulkCreate returning: completes, every row once, keys complete', async () => {
    const t = await freshTable();
    const { db, retries } = client();
    const k = killer();
    let out: Awaited<ReturnType<ReturnType<typeof db.model>['bulkCreate']>>;
    try {
      out = await db.model(t).bulkCreate(rows(ROWS), {
        returning: ['id'],
        batchSize: 5000,
        concurrent: true,
        maxConcurrentWorkers: 2,
      });
    } finally {
      const kills = await k.stop();
      console.log(`bulkCreate: ${kills} backends terminated, ${retries.length} chunk retries`);
    }
    expect(retries.length).toBeGreaterThan(0);
    expect(out.count).toBe(ROWS);
    expect(out.rows!.length).toBe(ROWS);
    expect(new Set(out.rows!.map((r) => String(r.id))).size).toBe(ROWS);
    await checkExactlyOnce(t, ROWS);
    const ids = await tdb.pool.query(`SELECT array_agg(id::text ORDER BY value) AS ids FROM ${t}`);
    expect(ids.rows[0].ids).toEqual(out.rows!.map((r) => String(r.id)));
  });

  it('copyFrom from an async iterable: completes, every row once', async () => {
    const t = await freshTable();
    const { db, retries } = client();
    async function* source() {
      yield* rows(ROWS);
    }
    const k = killer();
    let out: { count: number };
    try {
      out = await db.model(t).copyFrom(source(), {
        batchSize: 5000,
        concurrent: true,
        maxConcurrentWorkers: 2,
      });
    } finally {
      const kills = await k.stop();
      console.log(`copyFrom: ${kills} backends terminated, ${retries.length} chunk retries`);
    }
    expect(retries.length).toBeGreaterThan(0);
    expect(out.count).toBe(ROWS);
    await checkExactlyOnce(t, ROWS);
  });

  it('updateFields: completes, every row updated once and counted once', async () => {
    const t = await freshTable();
    await tdb.pool.query(
      `INSERT INTO ${t} (name, value) SELECT 'r' || g, g FROM generate_series(0, ${ROWS - 1}) g`,
    );
    const { db, retries } = client();
    const ids = await tdb.pool.query(`SELECT id::text, value FROM ${t}`);
    const input = ids.rows.map((r) => ({ id: r.id, value: r.value * 3 }));
    const k = killer();
    let out: { count: number; missing: unknown[] };
    try {
      out = await db.model(t).updateFields(input, {
        fields: ['value'],
        batchSize: 5000,
        concurrent: true,
        maxConcurrentWorkers: 2,
      });
    } finally {
      const kills = await k.stop();
      console.log(`updateFields: ${kills} backends terminated, ${retries.length} chunk retries`);
    }
    expect(retries.length).toBeGreaterThan(0);
    expect(out).toEqual({ count: ROWS, missing: [] });
    await checkExactlyOnce(t, ROWS, 3);
  });
});
