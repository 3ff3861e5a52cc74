import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BulkProducer, type Row, silentLogger } from '../../src/index.js';
import { DATABASE_URL, type TestDb, testDb } from '../helpers.js';
import { deleteKeys, obliterate, queueName, REDIS_URL, runPrefix, until } from '../queueHelpers.js';
import {
  killChildren,
  report,
  startWorkerAt,
  stopChild,
  tallyInsert,
  tallyUpdate,
  writesTrigger,
} from './harness.js';

/**
 * Two server-side faults, in direct mode and through the queue (a worker process):
 * - a COPY aborted mid-stream: pg_terminate_backend once Postgres has read part of a large
 *   copyFrom chunk (pg_stat_progress_copy says how far it got);
 * - a deadlock: an outside transaction locks the chunk's last row, waits until the chunk's
 *   UPDATE is blocked on it, then locks the chunk's first row. Postgres aborts the chunk
 *   (40P01; the outside session's deadlock_timeout is longer, so it is never the victim).
 * Each is retried and lands exactly once.
 */
const prefix = runPrefix('abort');
let tdb: TestDb;
let admin: pg.Pool;
let n = 0;

beforeAll(async () => {
  tdb = await testDb('abortdl');
  admin = new pg.Pool({ connectionString: DATABASE_URL, max: 3, application_name: 'faults' });
  admin.on('error', () => {});
});
afterAll(async () => {
  await killChildren();
  await admin?.end();
  await tdb?.close();
  await deleteKeys(`${prefix}:*`);
});

async function table(prefill = 0): Promise<string> {
  const name = `t${n++}`;
  const t = tdb.t(name);
  await tdb.pool.query(
    `CREATE TABLE ${t} (id bigserial PRIMARY KEY, n int NOT NULL, name text, v int NOT NULL DEFAULT 0,
       writes int NOT NULL DEFAULT 0);
     ${writesTrigger(t, tdb.schema, name)}`,
  );
  if (prefill)
    await tdb.pool.query(
      `INSERT INTO ${t} (id, n, name) SELECT g + 1, g, 'r' || g FROM generate_series(0, ${prefill - 1}) g`,
    );
  return t;
}

const rows = (count: number): Row[] =>
  Array.from({ length: count }, (_, i) => ({ n: i, name: `row ${i} ${'x'.repeat(40)}` }));

/**
 * Hold a COPY into `t` for a second at the row whose n is `at` (a row trigger sleeps there),
 * so that the COPY is surely mid-stream when the test looks: without it, a fast machine can
 * copy past the point between two looks, and the abort would never come.
 */
async function pauseCopyAt(t: string, at: number): Promise<void> {
  const fn = `${t}_pause`;
  await tdb.pool.query(
    `CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN IF NEW.n = ${at} THEN PERFORM pg_sleep(1); END IF; RETURN NEW; END $$;
     CREATE TRIGGER pause BEFORE INSERT ON ${t} FOR EACH ROW EXECUTE FUNCTION ${fn}()`,
  );
}

/** Terminate the backend running a COPY into `t` once it has read `after` rows of it. */
async function abortCopyMidStream(
  t: string,
  after: number,
  ended: () => boolean = () => false,
): Promise<number> {
  const pid = await until(
    'a COPY part way through',
    async () => {
      // Fail at once, saying why, rather than wait out the deadline.
      if (ended()) throw new Error('the copy ended before it was seen part way through');
      const r = await admin.query(
        `SELECT p.pid FROM pg_stat_progress_copy p
          WHERE p.relid = $1::regclass AND p.tuples_processed >= $2`,
        [t, after],
      );
      return r.rows[0]?.pid as number | undefined;
    },
    60_000,
    2,
  );
  const r = await admin.query('SELECT pg_terminate_backend($1) AS ok', [pid]);
  expect(r.rows[0].ok).toBe(true);
  return pid;
}

/** Lock the chunk's rows in the opposite order from an outside transaction: a deadlock. */
async function deadlockAgainst(t: string, first: number, last: number): Promise<void> {
  const c = await admin.connect();
  try {
    await c.query("SET deadlock_timeout = '30s'");
    await c.query('BEGIN');
    await c.query(`SELECT 1 FROM ${t} WHERE id = $1 FOR UPDATE`, [last]);
    await until(
      "the chunk's UPDATE blocked on the outside lock",
      async () => {
        const r = await admin.query(
          `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid)
            WHERE NOT l.granted AND a.application_name = 'bulkmodel' AND a.datname = current_database()`,
        );
        return r.rows[0].n > 0;
      },
      60_000,
      5,
    );
    // The chunk holds the first rows and waits for `last`; now wait for `first`: a cycle.
    await c.query(`SELECT 1 FROM ${t} WHERE id = $1 FOR UPDATE`, [first]);
    await c.query('COMMIT');
  } finally {
    c.release();
  }
}

function directClient() {
  const retries: string[] = [];
  const db = tdb.client({
    logger: {
      ...silentLogger,
      warn: (o, msg) => {
        if (String(msg).includes('retrying')) retries.push(String((o as { why?: string }).why));
      },
    },
    retry: { initialDelayMs: 20, maxDelayMs: 500 },
  });
  return { db, retries };
}

describe('COPY aborted mid-stream by the server', () => {
  const ROWS = 150_000;

  it('direct mode: one large copyFrom chunk, its backend terminated mid-COPY: retried, every row once', async () => {
    const t = await table();
    await pauseCopyAt(t, 20_000);
    const { db, retries } = directClient();
    const copying = db.model(t).copyFrom(rows(ROWS), { batchSize: ROWS, returning: ['id'] });
    let ended = false;
    copying.then(
      () => {
        ended = true;
      },
      () => {
        ended = true;
      },
    );
    await abortCopyMidStream(t, 20_000, () => ended);
    const res = await copying;
    expect(retries.length).toBeGreaterThan(0);
    expect(res.count).toBe(ROWS);
    expect(new Set(res.rows!.map((r) => String(r.id))).size).toBe(ROWS);
    const tally = await tallyInsert(tdb.pool, t, ROWS);
    report('COPY aborted mid-stream (direct)', tally, `${retries.length} retries`);
    expect(tally).toEqual({ expected: ROWS, lost: 0, duplicated: 0 });
  });

  it('through the queue: the worker retries the chunk; every row once; the worker serves on', async () => {
    const t = await table();
    await pauseCopyAt(t, 20_000);
    const queue = queueName('abort');
    const producer = new BulkProducer({ redis: REDIS_URL, queue, prefix });
    const w = await startWorkerAt({ tables: [t], queue, prefix, redis: REDIS_URL, name: 'abort' });
    try {
      const op = await producer.copyFrom(t, rows(ROWS), { batchSize: 75_000 });
      await abortCopyMidStream(t, 20_000);
      expect(await op.done()).toEqual({ count: ROWS });
      const tally = await tallyInsert(tdb.pool, t, ROWS);
      report('COPY aborted mid-stream (queue)', tally);
      expect(tally).toEqual({ expected: ROWS, lost: 0, duplicated: 0 });
      expect(w.output()).toMatch(/retrying/);
    } finally {
      expect(await stopChild(w)).toBe(0);
      await producer.close();
      await obliterate(queue, prefix);
    }
  });
});

describe('a deadlock against an outside transaction', () => {
  const ROWS = 2_000;
  const input = () => rows(ROWS).map((r) => ({ id: (r.n as number) + 1, v: (r.n as number) + 5 }));

  it('direct mode updateFields: the chunk is the victim, retried, every row updated once', async () => {
    const t = await table(ROWS);
    const { db, retries } = directClient();
    const updating = db.model(t).updateFields(input(), { fields: ['v'], batchSize: ROWS });
    await deadlockAgainst(t, 1, ROWS);
    expect(await updating).toEqual({ count: ROWS, missing: [] });
    expect(retries).toContain('deadlock detected');
    const tally = await tallyUpdate(tdb.pool, t, ROWS, 'v = n + 5');
    report('deadlock (direct)', tally, `${retries.length} retries`);
    expect(tally).toEqual({ expected: ROWS, lost: 0, duplicated: 0 });
  });

  it('through the queue: retried by the worker, every row updated once', async () => {
    const t = await table(ROWS);
    const queue = queueName('deadlock');
    const producer = new BulkProducer({ redis: REDIS_URL, queue, prefix });
    const w = await startWorkerAt({ tables: [t], queue, prefix, redis: REDIS_URL, name: 'dl' });
    try {
      const op = await producer.updateFields(t, input(), { fields: ['v'], batchSize: ROWS });
      await deadlockAgainst(t, 1, ROWS);
      expect(await op.done()).toEqual({ count: ROWS, missing: [] });
      expect(w.output()).toMatch(/deadlock detected/);
      const tally = await tallyUpdate(tdb.pool, t, ROWS, 'v = n + 5');
      report('deadlock (queue)', tally);
      expect(tally).toEqual({ expected: ROWS, lost: 0, duplicated: 0 });
    } finally {
      expect(await stopChild(w)).toBe(0);
      await producer.close();
      await obliterate(queue, prefix);
    }
  });
});
