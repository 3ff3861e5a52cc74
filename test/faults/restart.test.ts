import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/index.js';
import { DATABASE_URL, type TestDb, testDb } from '../helpers.js';

// The Postgres server restarted (pg_ctlcluster restart, fast shutdown) in the middle of an
// operation: the operation completes and every row is present exactly once.

const run = promisify(execFile);
const ROWS = 200_000;
let tdb: TestDb;
let n = 0;

async function pgIsReady(): Promise<boolean> {
  try {
    await run('pg_isready', ['-h', '127.0.0.1', '-p', '5432', '-q']);
    return true;
  } catch {
    return false;
  }
}

/** Wait (bounded) until Postgres accepts queries again; start it if it stayed down. */
async function ensurePostgresUp(): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await pgIsReady()) {
      const c = new pg.Client({ connectionString: DATABASE_URL });
      try {
        await c.connect();
        await c.query('SELECT 1');
        return;
      } catch {
        // starting up: try again
      } finally {
        await c.end().catch(() => {});
      }
    } else if (i === 50) {
      await run('pg_ctlcluster', ['--skip-systemctl-redirect', '15', 'main', 'start']).catch(
        () => {},
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('Postgres did not come back within 30 s');
}

beforeAll(async () => {
  tdb = await testDb('restart');
});
afterAll(async () => {
  await ensurePostgresUp();
  await tdb?.close();
});

async function freshTable(): Promise<string> {
  const t = tdb.t(`items_${n++}`);
  await tdb.pool.query(
    `CREATE TABLE ${t} (id bigserial primary key, name text not null, value int)`,
  );
  return t;
}

/** Restart the server once chunk `at` has committed; the operation keeps running meanwhile. */
function restartAfterChunk(
  db: ReturnType<TestDb['client']>,
  signal: 'postCopyFrom' | 'postUpdateFields',
  at: number,
) {
  let restarted: Promise<unknown> | undefined;
  db.signals.on(signal, (e) => {
    if (e.chunkIndex === at && !restarted) {
      restarted = run('pg_ctlcluster', ['--skip-systemctl-redirect', '15', 'main', 'restart']);
    }
  });
  return {
    async done() {
      expect(restarted).toBeDefined();
      await restarted;
      await ensurePostgresUp();
    },
  };
}

function client() {
  const retries: { why?: string }[] = [];
  const db = tdb.client({
    logger: {
      ...silentLogger,
      warn: (o, msg) => {
        if (String(msg).includes('retrying')) retries.push(o as { why?: string });
      },
    },
    retry: { initialDelayMs: 50, maxDelayMs: 1000, maxElapsedMs: 60_000 },
  });
  return { db, retries };
}

async function counts(t: string, mult: number) {
  const r = await tdb.pool.query(
    `SELECT count(*)::int AS n, count(DISTINCT name)::int AS d, sum(value)::bigint AS s,
            count(*) FILTER (WHERE value % $1::int <> 0 OR name <> 'r' || (value / $1::int))::int AS bad
     FROM ${t}`,
    [mult],
  );
  return r.rows[0];
}
const expected = (mult: number) => ({
  n: ROWS,
  d: ROWS,
  s: String((BigInt(ROWS) * BigInt(ROWS - 1) * BigInt(mult)) / 2n),
  bad: 0,
});

describe('Postgres restarted mid-operation', () => {
  it('copyFrom (async iterable, returning keys): completes, every row exactly once', async () => {
    const t = await freshTable();
    const { db, retries } = client();
    const restart = restartAfterChunk(db, 'postCopyFrom', 1);
    async function* source() {
      for (let i = 0; i < ROWS; i++) yield { name: `r${i}`, value: i };
    }
    const started = Date.now();
    let out: { count: number; rows?: { id?: unknown }[] };
    try {
      out = await db.model(t).copyFrom(source(), {
        returning: ['id'],
        batchSize: 5000,
        concurrent: true,
        maxConcurrentWorkers: 2,
      });
    } finally {
      await restart.done();
    }
    console.log(
      `copyFrom across a restart: ${Date.now() - started} ms, ${retries.length} chunk retries (${[...new Set(retries.map((r) => r.why))].join(', ')})`,
    );
    expect(retries.length).toBeGreaterThan(0);
    expect(out.count).toBe(ROWS);
    expect(new Set(out.rows!.map((r) => String(r.id))).size).toBe(ROWS);
    // tdb.pool's connections died with the server: the first query may need a fresh one.
    await tdb.pool.query('SELECT 1').catch(() => {});
    expect(await counts(t, 1)).toEqual(expected(1));
  });

  it('updateFields: completes, every row updated, counted once', async () => {
    const t = await freshTable();
    await ensurePostgresUp();
    await tdb.pool.query('SELECT 1').catch(() => {});
    await tdb.pool.query(
      `INSERT INTO ${t} (name, value) SELECT 'r' || g, g FROM generate_series(0, ${ROWS - 1}) g`,
    );
    const ids = await tdb.pool.query(`SELECT id::text, value FROM ${t}`);
    const { db, retries } = client();
    const restart = restartAfterChunk(db, 'postUpdateFields', 1);
    let out: { count: number; missing: unknown[] };
    try {
      out = await db.model(t).updateFields(
        ids.rows.map((r) => ({ id: r.id, value: r.value * 2 })),
        { fields: ['value'], batchSize: 5000, concurrent: true, maxConcurrentWorkers: 2 },
      );
    } finally {
      await restart.done();
    }
    expect(retries.length).toBeGreaterThan(0);
    expect(out).toEqual({ count: ROWS, missing: [] });
    await tdb.pool.query('SELECT 1').catch(() => {});
    expect(await counts(t, 2)).toEqual(expected(2));
  });
});
