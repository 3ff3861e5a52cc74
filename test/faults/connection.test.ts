import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BulkError, silentLogger } from '../../src/index.js';
import { DATABASE_URL, type TestDb, testDb } from '../helpers.js';
import { type PgProxy, startProxy } from './proxy.js';

// Offline connection management: ensureConnected() against a server that is gone, one that
// accepts but never answers, and a pool whose idle connections the server killed.

let tdb: TestDb;
let proxy: PgProxy;

beforeAll(async () => {
  tdb = await testDb('conn');
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

/** Wait for a condition, polling, for at most `ms`. */
async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('ensureConnected', () => {
  it('fails with CONNECTION_FAILED while the server is unreachable, succeeds once it is back', async () => {
    const db = tdb.client({ connectionString: viaProxy() });
    const first = await db.ensureConnected({ timeoutMs: 2000 });
    expect(first.ok).toBe(true);
    expect(first.serverVersion).toMatch(/^15/);

    await proxy.down();
    const started = Date.now();
    const err = await db.ensureConnected({ timeoutMs: 1500 }).catch((e: unknown) => e);
    const elapsed = Date.now() - started;
    expect(err).toBeInstanceOf(BulkError);
    expect((err as BulkError).code).toBe('CONNECTION_FAILED');
    // Bounded by its timeout (with generous slack for a loaded machine), not by the retry budget.
    expect(elapsed).toBeLessThan(1500 + 5000);

    await proxy.up();
    const back = await db.ensureConnected({ timeoutMs: 5000 });
    expect(back.ok).toBe(true);
    // And the pool serves writes again.
    await tdb.pool.query(`CREATE TABLE ${tdb.t('after_outage')} (id serial primary key, v int)`);
    const r = await db.model(tdb.t('after_outage')).bulkCreate([{ v: 1 }, { v: 2 }]);
    expect(r.count).toBe(2);
  });

  it('a server that accepts but never answers fails within the timeout, not the connect timeout', async () => {
    const db = tdb.client({ connectionString: viaProxy(), connectTimeoutMs: 60_000 });
    proxy.blackhole(true);
    try {
      const started = Date.now();
      const err = await db.ensureConnected({ timeoutMs: 1000 }).catch((e: unknown) => e);
      expect((err as BulkError).code).toBe('CONNECTION_FAILED');
      expect(Date.now() - started).toBeLessThan(1000 + 5000);
    } finally {
      proxy.blackhole(false);
      // Drop the silent connections so that the pool's pending connects fail now.
      await proxy.down();
      await proxy.up();
    }
    const ok = await db.ensureConnected({ timeoutMs: 5000 });
    expect(ok.ok).toBe(true);
  });

  it('an idle pooled connection killed by the server does not crash the process and is replaced', async () => {
    const lost: unknown[] = [];
    const db = tdb.client({
      poolSize: 3,
      logger: {
        ...silentLogger,
        warn: (o, msg) => {
          if (String(msg).includes('idle Postgres connection lost')) lost.push(o);
        },
      },
    });
    // Open three connections and leave them idle in the pool.
    await Promise.all([1, 2, 3].map(() => db.ensureConnected()));
    const pool = db.engine.pool;
    await until('3 idle connections', () => (pool.idleCount ?? 0) >= 1);
    const idleBefore = pool.idleCount ?? 0;
    const before = await tdb.pool.query(
      `SELECT pid FROM pg_stat_activity WHERE application_name = 'bulkmodel' AND datname = current_database()`,
    );
    expect(before.rows.length).toBeGreaterThanOrEqual(idleBefore);
    await tdb.pool.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'bulkmodel' AND datname = current_database()`,
    );
    // Each idle client hears of its death through the pool's error event.
    await until('pool error events', () => lost.length >= idleBefore);
    expect(pool.idleCount ?? 0).toBe(0);
    const check = await db.ensureConnected({ timeoutMs: 5000 });
    expect(check.ok).toBe(true);
    const after = await tdb.pool.query(
      `SELECT pid FROM pg_stat_activity WHERE application_name = 'bulkmodel' AND datname = current_database()`,
    );
    const old = new Set(before.rows.map((r) => r.pid));
    expect(after.rows.length).toBeGreaterThan(0);
    for (const r of after.rows) expect(old.has(r.pid)).toBe(false);
  });

  it('killed connections that the pool has not noticed yet are found and replaced', async () => {
    const db = tdb.client({ poolSize: 2, logger: silentLogger });
    await Promise.all([1, 2].map(() => db.ensureConnected()));
    // Kill them, then probe at once: a probe may get a dead connection (it is destroyed and
    // retried) or the pool may already have dropped it; either way the check succeeds.
    await tdb.pool.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'bulkmodel' AND datname = current_database()`,
    );
    const check = await db.ensureConnected({ timeoutMs: 5000 });
    expect(check.ok).toBe(true);
    const r = await db.model(tdb.t('after_outage')).bulkCreate([{ v: 3 }]);
    expect(r.count).toBe(1);
  });
});
