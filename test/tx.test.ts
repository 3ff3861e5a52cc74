import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, type TestDb, testDb } from './helpers.js';

// Chunk transactions carry a server-side idle-in-transaction limit (so an orphaned claim is
// freed), set LOCAL: it never leaks into the pooled connection afterwards.

let tdb: TestDb;
let t: string;
beforeAll(async () => {
  tdb = await testDb('tx');
  t = tdb.t('items');
  await tdb.pool.query(`CREATE TABLE ${t} (id serial primary key, v int, seen text)`);
  // Record the setting in force inside the transaction that writes each row.
  await tdb.pool.query(`CREATE FUNCTION ${tdb.schema}.record_setting() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN NEW.seen := current_setting('idle_in_transaction_session_timeout'); RETURN NEW; END $$`);
  await tdb.pool.query(
    `CREATE TRIGGER rec BEFORE INSERT ON ${t} FOR EACH ROW EXECUTE FUNCTION ${tdb.schema}.record_setting()`,
  );
});
afterAll(() => tdb.close());

async function seenAndAfter(options: { chunkIdleTimeoutMs?: number }) {
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
  pool.on('error', () => {});
  const db = tdb.client({ pool, ...options });
  try {
    await tdb.pool.query(`TRUNCATE ${t}`);
    await db.model(t).bulkCreate([{ v: 1 }, { v: 2 }, { v: 3 }], { batchSize: 2 });
    const seen = await tdb.pool.query(`SELECT DISTINCT seen FROM ${t}`);
    const after = await pool.query('SHOW idle_in_transaction_session_timeout');
    return {
      seen: seen.rows.map((r) => r.seen),
      after: after.rows[0].idle_in_transaction_session_timeout,
    };
  } finally {
    await db.close();
    await pool.end();
  }
}

describe('chunk transactions', () => {
  it('run with idle_in_transaction_session_timeout (default 60 s), not leaked to the session', async () => {
    expect(await seenAndAfter({})).toEqual({ seen: ['1min'], after: '0' });
    expect(await seenAndAfter({ chunkIdleTimeoutMs: 5000 })).toEqual({ seen: ['5s'], after: '0' });
    expect(await seenAndAfter({ chunkIdleTimeoutMs: 0 })).toEqual({ seen: ['0'], after: '0' });
  });

  it('rejects a bad chunkIdleTimeoutMs', () => {
    expect(() => tdb.client({ chunkIdleTimeoutMs: -1 })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTION' }),
    );
  });
});
