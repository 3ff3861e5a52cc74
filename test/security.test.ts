import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BulkClient, BulkProducer, type Row, silentLogger } from '../src/index.js';
import { DATABASE_URL, type TestDb, testDb } from './helpers.js';
import {
  deleteKeys,
  killAll,
  obliterate,
  queueName,
  REDIS_URL,
  rejection,
  runCli,
  runPrefix,
  startWorker,
  stopWorker,
} from './queueHelpers.js';

/**
 * Security: values never reach SQL text (every statement sent is recorded through a wrapping
 * pool and searched for the test's values); identifiers are used only after the catalog check;
 * passwords never appear in errors or log lines; a worker never writes outside its allowlist,
 * whatever table name a job carries.
 */
let tdb: TestDb;
const prefix = runPrefix('sec');

beforeAll(async () => {
  tdb = await testDb('sec');
  await tdb.pool.query(`
    CREATE TABLE ${tdb.t('m')} (id bigserial PRIMARY KEY, code text UNIQUE, n int, name text, by bytea, jb jsonb);
    CREATE TABLE ${tdb.t('secret')} (id bigserial PRIMARY KEY, code text UNIQUE, n int, name text, by bytea, jb jsonb);
    CREATE TABLE ${tdb.t('"M"')} (id bigserial PRIMARY KEY, code text UNIQUE, n int, name text, by bytea, jb jsonb);
    CREATE SCHEMA ${tdb.schema}_b;
    CREATE TABLE ${tdb.schema}_b.m (id bigserial PRIMARY KEY, code text UNIQUE, n int, name text, by bytea, jb jsonb);
    CREATE TABLE public.${tdb.schema}_m (id bigserial PRIMARY KEY, code text UNIQUE, n int, name text, by bytea, jb jsonb);`);
});
afterAll(async () => {
  await killAll();
  await tdb.pool.query(
    `DROP SCHEMA IF EXISTS ${tdb.schema}_b CASCADE; DROP TABLE IF EXISTS public.${tdb.schema}_m`,
  );
  await tdb?.close();
  await deleteKeys(`${prefix}:*`);
});

/** A pg.Pool whose every statement text (plain, prepared or COPY) is recorded. */
function recordingPool(): { pool: pg.Pool; texts: string[] } {
  const texts: string[] = [];
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
  pool.on('error', () => {});
  const record = (arg: unknown) => {
    if (typeof arg === 'string') texts.push(arg);
    else if (arg && typeof (arg as { text?: unknown }).text === 'string')
      texts.push((arg as { text: string }).text);
  };
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...a: unknown[]) => unknown;
    (client as unknown as { query: (...a: unknown[]) => unknown }).query = (...a: unknown[]) => {
      record(a[0]);
      return query(...a);
    };
  });
  const poolQuery = pool.query.bind(pool) as (...a: unknown[]) => unknown;
  (pool as unknown as { query: (...a: unknown[]) => unknown }).query = (...a: unknown[]) => {
    record(a[0]);
    return poolQuery(...a);
  };
  return { pool, texts };
}

const MARK = 'Zq7Mark';
const evil = (i: number) => `${MARK}${i}'); DROP TABLE secret; --`;

describe('values are never spliced into SQL', () => {
  it('every statement of every operation is free of the values written, filtered and set', async () => {
    const { pool, texts } = recordingPool();
    const db = new BulkClient({
      pool,
      logger: silentLogger,
      ledger: { schema: `${tdb.schema}_ledger` },
    });
    const m = db.model<Row>(tdb.t('m'));
    try {
      const rows = Array.from({ length: 30 }, (_, i) => ({
        code: evil(i),
        n: 424242 + i,
        name: `${MARK}name ${i} $1 \\' "`,
        by: Buffer.from(`${MARK}bytes`),
        jb: { k: `${MARK}json`, [`${MARK}key`]: 1 },
      }));
      await m.bulkCreate(rows.slice(0, 10), { returning: true, batchSize: 4 });
      await m.copyFrom(rows.slice(10, 20), { returning: ['id'], batchSize: 4 });
      await m.bulkCreate(rows.slice(20), {
        onConflict: { target: ['code'], update: ['name'] },
        batchSize: 4,
      });
      const ids = (await tdb.pool.query(`SELECT id, code FROM ${tdb.t('m')}`)).rows;
      await m.updateFields(
        ids.map((r) => ({ id: r.id, name: `${MARK}upd ${r.code}` })),
        { fields: ['name'], batchSize: 7 },
      );
      expect(
        (await m.update({ where: { code: evil(3) }, set: { name: `${MARK}set` } })).count,
      ).toBe(1);
      await m.update({ where: { code: [evil(4), evil(5)] }, set: { n: 5 } });
      const out: Row[] = [];
      for await (const r of m.copyTo({ where: { code: evil(7) } })) out.push(r);
      expect(out).toHaveLength(1);
      expect(out[0]!.code).toBe(evil(7));
      expect(texts.length).toBeGreaterThan(10);
      const leaked = texts.filter((t) => t.includes(MARK) || t.includes('424242'));
      expect(leaked).toEqual([]);
      // and the table named in the evil values is untouched
      expect(
        (await tdb.pool.query(`SELECT count(*)::int AS n FROM ${tdb.t('secret')}`)).rows[0].n,
      ).toBe(0);
    } finally {
      await db.close();
      await pool.end();
    }
  });

  it('identifiers reach SQL only after the catalog check', async () => {
    const { pool, texts } = recordingPool();
    const db = new BulkClient({
      pool,
      logger: silentLogger,
      ledger: { schema: `${tdb.schema}_ledger` },
    });
    try {
      const bad = [
        `${tdb.schema}."m${MARK}; DROP TABLE secret"`,
        `${tdb.schema}.m${MARK}`,
        `${MARK}_nope`,
      ];
      for (const name of bad) {
        const e = await rejection(db.model(name).bulkCreate([{ code: 'x' }]));
        expect(e.code).toBe('UNKNOWN_TABLE');
      }
      const e2 = await rejection(
        db.model(tdb.t('m')).bulkCreate([{ code: 'x', [`${MARK}col`]: 1 }]),
      );
      expect(e2.code).toBe('UNKNOWN_COLUMN');
      const e3 = await rejection(
        db.model(tdb.t('m')).update({ where: { [`${MARK}w`]: 1 }, set: { n: 1 } }),
      );
      expect(e3.code).toBe('UNKNOWN_COLUMN');
      // the catalog lookups bound the names as values; none was spliced into a statement
      expect(texts.filter((t) => t.includes(MARK))).toEqual([]);
    } finally {
      await db.close();
      await pool.end();
    }
  });
});

describe('credentials never appear in errors or logs', () => {
  const PW = 'S3cretPw-9f1';
  it('a direct client on a wrong port: the error names no password', async () => {
    const lines: string[] = [];
    const log = (o: unknown, msg?: string) => lines.push(JSON.stringify(o) + (msg ?? ''));
    const db = new BulkClient({
      connectionString: `postgres://postgres:${PW}@127.0.0.1:1/nowhere`,
      logger: { debug: log, info: log, warn: log, error: log },
      retry: { maxElapsedMs: 300, initialDelayMs: 10, maxDelayMs: 50 },
    });
    try {
      const e = await rejection(db.ensureConnected({ timeoutMs: 500 }));
      const e2 = await rejection(db.model('t').bulkCreate([{ a: 1 }]));
      for (const err of [e, e2]) {
        expect(err.code).toBe('CONNECTION_FAILED');
        expect(`${err.message} ${JSON.stringify(err.toJSON())} ${err.stack}`).not.toContain(PW);
      }
      expect(lines.join('\n')).not.toContain(PW);
    } finally {
      await db.close();
    }
  });

  it('the worker CLI with password URLs: unreachable (exit 3) and working, no password printed', async () => {
    const down = runCli([
      'worker',
      '--tables',
      'x',
      '--database',
      `postgres://postgres:${PW}@127.0.0.1:1/db`,
      '--redis',
      `redis://:${PW}@127.0.0.1:1`,
    ]);
    expect((await down.exited).code).toBe(3);
    expect(down.output()).not.toContain(PW);
    // Postgres here trusts every password: a worker that connects with one logs none of it.
    const queue = queueName('cred');
    const u = new URL(DATABASE_URL);
    u.password = PW;
    const w = runCli([
      'worker',
      '--tables',
      tdb.t('m'),
      '--queue',
      queue,
      '--prefix',
      prefix,
      '--database',
      u.toString(),
      '--redis',
      REDIS_URL,
    ]);
    const producer = new BulkProducer({ redis: REDIS_URL, queue, prefix });
    try {
      const op = await producer.bulkCreate(tdb.t('m'), [{ code: 'cred-ok' }]);
      expect(await op.done()).toEqual({ count: 1 });
      const bad = await producer.bulkCreate(tdb.t('m'), [{ code: 'cred-bad', n: 'x' }]);
      expect((await rejection(bad.done())).code).toBe('INVALID_VALUE');
      w.child.kill('SIGTERM');
      expect((await w.exited).code).toBe(0);
      expect(w.output()).toMatch(/bulkmodel worker started/);
      expect(w.output()).not.toContain(PW);
    } finally {
      await producer.close();
      await obliterate(queue, prefix);
    }
  });
});

describe('a worker never writes outside its allowlist', () => {
  it('schema-qualified, quoted, case and search_path tricks are all TABLE_NOT_ALLOWED', async () => {
    const queue = queueName('allow');
    const w = await startWorker({ tables: [tdb.t('m')], queue, prefix, concurrency: 1 });
    const producer = new BulkProducer({ redis: REDIS_URL, queue, prefix });
    const others = [
      tdb.t('secret'),
      `${tdb.schema}."M"`,
      `${tdb.schema}."m "`,
      `${tdb.schema}."m"".secret"`,
      `${tdb.schema}_b.m`,
      `"${tdb.schema}_b".m`,
      'm',
      `${tdb.schema}_m`,
      `public.${tdb.schema}_m`,
      'pg_catalog.pg_class',
      `information_schema.tables`,
    ];
    const counts = async () => {
      const r = await tdb.pool.query(
        `SELECT (SELECT count(*) FROM ${tdb.t('secret')})
              + (SELECT count(*) FROM ${tdb.t('"M"')}) + (SELECT count(*) FROM ${tdb.schema}_b.m)
              + (SELECT count(*) FROM public.${tdb.schema}_m) AS n`,
      );
      return Number(r.rows[0].n);
    };
    try {
      for (const table of others) {
        for (const kind of ['bulkCreate', 'copyFrom'] as const) {
          const op = await producer[kind](table, [{ code: `a-${kind}`, n: 1 }]);
          const e = await rejection(op.done());
          expect([table, e.code]).toEqual([table, 'TABLE_NOT_ALLOWED']);
        }
        const up = await producer.update(table, { all: true, set: { n: 2 } });
        expect((await rejection(up.done())).code).toBe('TABLE_NOT_ALLOWED');
      }
      expect(await counts()).toBe(0);
      // the allowed table itself, under its other spellings, is served
      const ok = await producer.bulkCreate(`"${tdb.schema}"."m"`, [{ code: 'allowed' }]);
      expect(await ok.done()).toEqual({ count: 1 });
    } finally {
      await producer.close();
      expect(await stopWorker(w)).toBe(0);
      await obliterate(queue, prefix);
    }
  });
});
