import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendOptions } from '../src/cli/services.js';
import { BulkEvents, BulkProducer, BulkWorker, type Row, silentLogger } from '../src/index.js';
import { backendKind, openBackend, PostgresBackend } from '../src/queue/backend.js';
import { QUEUE_SCHEMA_VERSION } from '../src/queue/pgSchema.js';
import { DATABASE_URL, type TestDb, testDb } from './helpers.js';
import { queueName, rejection, runCli, until } from './queueHelpers.js';

/**
 * The Postgres backend on its own terms, whatever backend the rest of the suite runs on: the
 * queue schema is explicit and versioned (QUEUE_SCHEMA until `bulkmodel migrate`), the queues
 * can live in another database than the target, events wake readers through NOTIFY, consumer
 * groups redeliver what was not acknowledged, retention prunes, and no Redis is ever needed
 * (REDIS_URL points at a closed port throughout the CLI runs here).
 */
const NO_REDIS = { REDIS_URL: 'redis://127.0.0.1:1', REDIS_CLUSTER: '' };
let tdb: TestDb;
let admin: pg.Client;
/** A second database: the queues' own, apart from the target. */
let queueDbName: string;
let queueDbUrl: string;

function schemaName(label: string): string {
  return `bmq_${label}_${randomBytes(3).toString('hex')}`;
}

async function schemaExists(name: string, url = DATABASE_URL): Promise<boolean> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [name]);
    return r.rowCount === 1;
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  tdb = await testDb('pgq');
  admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  queueDbName = `${(process.env.TEST_DATABASE_NAME ?? 'bulkmodel_test').slice(0, 40)}_q${randomBytes(2).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${queueDbName}`);
  const u = new URL(DATABASE_URL);
  u.pathname = `/${queueDbName}`;
  queueDbUrl = u.toString();
});
afterAll(async () => {
  await admin?.query(`DROP DATABASE IF EXISTS ${queueDbName} WITH (FORCE)`).catch(() => {});
  await admin?.end();
  await tdb?.close();
});

describe('the queue schema is explicit and versioned', () => {
  it('a missing schema is QUEUE_SCHEMA for producer and worker, and nothing is created', async () => {
    const schema = schemaName('missing');
    const producer = new BulkProducer({
      backend: 'postgres',
      database: DATABASE_URL,
      queueSchema: schema,
      logger: silentLogger,
    });
    try {
      const err = await rejection(producer.bulkCreate(tdb.t('x'), [{ id: 1 }]));
      expect(err.code).toBe('QUEUE_SCHEMA');
      expect(err.message).toContain('bulkmodel migrate');
    } finally {
      await producer.close();
    }
    const worker = new BulkWorker({
      backend: 'postgres',
      queueSchema: schema,
      database: DATABASE_URL,
      tables: ['*'],
      logger: silentLogger,
    });
    try {
      const err = await rejection(worker.waitUntilReady());
      expect(err.code).toBe('QUEUE_SCHEMA');
    } finally {
      await worker.close().catch(() => {});
    }
    expect(await schemaExists(schema)).toBe(false);
  });

  it('bulkmodel migrate: --check says so, migrate creates it, runs again as a no-op', async () => {
    const schema = schemaName('cli');
    const args = ['migrate', '--database', DATABASE_URL, '--queue-schema', schema];
    const check1 = runCli([...args, '--check'], NO_REDIS);
    expect((await check1.exited).code).toBe(1);
    expect(check1.output()).toContain('not initialized');
    for (let i = 0; i < 2; i++) {
      const m = runCli(args, NO_REDIS);
      expect((await m.exited).code, m.output()).toBe(0);
      expect(m.output()).toContain(`schema ${schema}`);
    }
    const check2 = runCli([...args, '--check'], NO_REDIS);
    expect((await check2.exited).code, check2.output()).toBe(0);
    const v = await admin.query(
      `SELECT max(version)::int AS v, count(*)::int AS n FROM ${schema}.bm_version`,
    );
    expect(v.rows[0]).toEqual({ v: QUEUE_SCHEMA_VERSION, n: QUEUE_SCHEMA_VERSION });
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
  });

  it('a newer schema: accepted while its migrations keep this code working, else QUEUE_SCHEMA; never downgraded', async () => {
    const schema = schemaName('newer');
    const b = new PostgresBackend({ database: DATABASE_URL, schema, migrate: true, poolSize: 1 });
    await b.prepare();
    await b.close();
    const prepare = async (migrate: boolean) => {
      const again = new PostgresBackend({ database: DATABASE_URL, schema, migrate, poolSize: 1 });
      try {
        await again.prepare();
      } finally {
        await again.close();
      }
    };
    // An additive migration of a later release: this code still runs (a rolling deploy).
    await admin.query(
      `INSERT INTO ${schema}.bm_version (version, name, min_code_version) VALUES (998, 'additive', 1)`,
    );
    await prepare(false);
    await prepare(true);
    // One that needs newer code: refused, and left as it is.
    await admin.query(
      `INSERT INTO ${schema}.bm_version (version, name, min_code_version) VALUES (999, 'breaking', 999)`,
    );
    for (const migrate of [false, true]) {
      const err = await rejection(prepare(migrate));
      expect(err.code).toBe('QUEUE_SCHEMA');
      expect(err.message).toContain('999');
    }
    const v = await admin.query(`SELECT max(version)::int AS v FROM ${schema}.bm_version`);
    expect(v.rows[0].v).toBe(999);
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
  });

  it('a bm_version from before min_code_version is read as it is, and migrated', async () => {
    const schema = schemaName('oldver');
    const make = (migrate: boolean) =>
      new PostgresBackend({ database: DATABASE_URL, schema, migrate, poolSize: 1 });
    let b = make(true);
    await b.prepare();
    await b.close();
    await admin.query(`ALTER TABLE ${schema}.bm_version DROP COLUMN min_code_version`);
    b = make(false);
    await b.prepare(); // read-only: accepted
    await b.close();
    b = make(true);
    await b.prepare();
    await b.close();
    const col = await admin.query(
      `SELECT min_code_version FROM ${schema}.bm_version WHERE version = 1`,
    );
    expect(col.rows).toEqual([{ min_code_version: 1 }]);
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
  });

  it('a schema of version 1 (before chunk data) is QUEUE_SCHEMA until migrated, then holds data', async () => {
    const schema = schemaName('v1');
    const make = (migrate: boolean) =>
      new PostgresBackend({ database: DATABASE_URL, schema, migrate, poolSize: 1 });
    let b = make(true);
    await b.prepare();
    await b.close();
    // As the previous release left it: version 1, no bm_chunk_data.
    await admin.query(`DROP TABLE ${schema}.bm_chunk_data`);
    await admin.query(`DELETE FROM ${schema}.bm_version WHERE version > 1`);
    b = make(false);
    try {
      const err = await rejection(b.prepare());
      expect(err.code).toBe('QUEUE_SCHEMA');
      expect(err.message).toContain('at version 1');
      expect(err.message).toContain('bulkmodel migrate');
    } finally {
      await b.close();
    }
    b = make(true);
    try {
      await b.prepare();
      const state = b.state('v1q');
      await state.putChunkData('op', 0, Buffer.from('1\tx\n'));
      expect(await state.chunkData('op', 0, 100)).toEqual(Buffer.from('1\tx\n'));
    } finally {
      await b.close();
    }
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
  });

  it("BullMQ's own tables at an older version are QUEUE_SCHEMA until migrated", async () => {
    const schema = schemaName('oldbull');
    const b = new PostgresBackend({ database: DATABASE_URL, schema, migrate: true, poolSize: 1 });
    await b.prepare();
    await b.close();
    await admin.query(`DELETE FROM ${schema}.migration WHERE version > 3`);
    const old = new PostgresBackend({ database: DATABASE_URL, schema, poolSize: 1 });
    try {
      const err = await rejection(old.prepare());
      expect(err.code).toBe('QUEUE_SCHEMA');
      expect(err.message).toContain('version 3');
    } finally {
      await old.close();
    }
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
  });

  it('options are checked: a bad backend name or schema is INVALID_OPTION', () => {
    expect(() => new BulkProducer({ backend: 'mysql' as 'postgres' })).toThrow(/backend must be/);
    expect(() => new BulkProducer({ backend: 'postgres', queueSchema: 'Bad"Schema' })).toThrow(
      /lower-case identifier/,
    );
  });

  it('a role that may not create the schema gets its Postgres error, not "unreachable"', async () => {
    const role = `bmq_nopriv_${randomBytes(3).toString('hex')}`;
    await admin.query(`CREATE ROLE ${role} LOGIN`);
    try {
      const u = new URL(DATABASE_URL);
      u.username = role;
      const b = new PostgresBackend({
        database: u.toString(),
        schema: schemaName('nopriv'),
        migrate: true,
        poolSize: 1,
      });
      try {
        const err = await rejection(b.prepare());
        expect(err.code).not.toBe('CONNECTION_FAILED');
        expect(err.pgCode).toBe('42501');
      } finally {
        await b.close();
      }
    } finally {
      await admin.query(`DROP ROLE ${role}`);
    }
  });

  it('BulkEvents on a missing schema: waitUntilReady rejects with QUEUE_SCHEMA (no endless retry)', async () => {
    const events = new BulkEvents({
      backend: 'postgres',
      database: DATABASE_URL,
      queueSchema: schemaName('evmissing'),
    });
    try {
      const err = await rejection(events.waitUntilReady());
      expect(err.code).toBe('QUEUE_SCHEMA');
    } finally {
      await events.close();
    }
  });

  it('an explicit backend wins over BULKMODEL_BACKEND; an empty BULKMODEL_QUEUE_SCHEMA means the default', async () => {
    const saved = { ...process.env };
    process.env.BULKMODEL_BACKEND = 'postgres';
    process.env.BULKMODEL_QUEUE_SCHEMA = '';
    try {
      const redis = openBackend(backendOptions({ backend: 'redis', redis: 'redis://127.0.0.1:1' }));
      expect(redis.kind).toBe('redis');
      redis.disconnect();
      expect(backendKind(undefined)).toBe('postgres');
      const pgb = new PostgresBackend({ database: DATABASE_URL, poolSize: 1 });
      expect(pgb.schema).toBe('bulkmodel_queue');
      await pgb.close();
    } finally {
      process.env.BULKMODEL_BACKEND = saved.BULKMODEL_BACKEND;
      if (saved.BULKMODEL_BACKEND === undefined) delete process.env.BULKMODEL_BACKEND;
      if (saved.BULKMODEL_QUEUE_SCHEMA === undefined) delete process.env.BULKMODEL_QUEUE_SCHEMA;
      else process.env.BULKMODEL_QUEUE_SCHEMA = saved.BULKMODEL_QUEUE_SCHEMA;
    }
  });

  it('the CLI refuses --prefix with --backend postgres, and worker --migrate on Redis', async () => {
    const a = runCli(['status', '--backend', 'postgres', '--prefix', 'app'], NO_REDIS);
    expect((await a.exited).code).toBe(2);
    expect(a.output()).toContain('--prefix is for the redis backend');
    const b = runCli(
      [
        'worker',
        '--tables',
        'x',
        '--migrate',
        '--database',
        DATABASE_URL,
        '--redis',
        'redis://127.0.0.1:6379',
      ],
      { BULKMODEL_BACKEND: '' },
    );
    expect((await b.exited).code).toBe(2);
    expect(b.output()).toContain('--migrate is for --backend postgres');
  });

  it('the CLI refuses --redis with --backend postgres, and --queue-schema without it', async () => {
    const a = runCli(['status', '--backend', 'postgres', '--redis', 'redis://x'], NO_REDIS);
    expect((await a.exited).code).toBe(2);
    expect(a.output()).toContain('--redis is for the redis backend');
    const b = runCli(['status', '--queue-schema', 'x'], { ...NO_REDIS, BULKMODEL_BACKEND: '' });
    expect((await b.exited).code).toBe(2);
    expect(b.output()).toContain('--queue-schema is for --backend postgres');
  });
});

describe('queues in another database than the target', () => {
  it('rows land in the target; records, jobs and events live in the queue database', async () => {
    const schema = schemaName('apart');
    const queue = queueName('apart');
    const T = tdb.t('apart');
    await tdb.pool.query(`CREATE TABLE ${T} (id int PRIMARY KEY, note text)`);
    const common = { backend: 'postgres' as const, queueDatabase: queueDbUrl, queueSchema: schema };
    const worker = new BulkWorker({
      ...common,
      migrate: true,
      queue,
      database: DATABASE_URL,
      tables: [T],
      logger: silentLogger,
    });
    await worker.waitUntilReady();
    const producer = new BulkProducer({ ...common, queue, logger: silentLogger });
    const events = new BulkEvents({ ...common, queue });
    const seen: string[] = [];
    events.on('*', (name) => {
      seen.push(name);
    });
    await events.waitUntilReady();
    try {
      const rows: Row[] = [
        { id: 1, note: 'tab\there' },
        { id: 2, note: 'new\nline \\ "q" 😀' },
        { id: 3, note: null },
      ];
      const op = await producer.bulkCreate(T, rows, { returning: ['id'], batchSize: 2 });
      expect(await op.done()).toEqual({ count: 3, rows: [{ id: 1 }, { id: 2 }, { id: 3 }] });
      const landed = await tdb.pool.query(`SELECT id, note FROM ${T} ORDER BY id`);
      expect(landed.rows).toEqual(rows);
      // Nothing of the queue in the target database.
      expect(await schemaExists(schema)).toBe(false);
      const q = new pg.Client({ connectionString: queueDbUrl });
      await q.connect();
      try {
        const rec = await q.query(
          `SELECT state, rows_done::int AS rows FROM ${schema}.bm_op WHERE queue = $1 AND id = $2`,
          [queue, op.id],
        );
        expect(rec.rows).toEqual([{ state: 'completed', rows: 3 }]);
        const jobs = await q.query(
          `SELECT count(*)::int AS n FROM ${schema}.job WHERE queue = $1`,
          [queue],
        );
        expect(jobs.rows[0].n).toBeGreaterThan(0);
      } finally {
        await q.end();
      }
      await until('the completed event', () => seen.includes('completed'));
      expect(seen).toEqual(expect.arrayContaining(['preBulkCreate', 'postBulkCreate', 'progress']));
    } finally {
      await events.close();
      await producer.close();
      await worker.close();
    }
  });
});

describe('events through NOTIFY', () => {
  let backend: PostgresBackend;
  const schema = schemaName('ev');
  beforeAll(async () => {
    backend = new PostgresBackend({ database: DATABASE_URL, schema, migrate: true, poolSize: 2 });
    await backend.prepare();
  });
  afterAll(async () => {
    await backend?.close();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  });

  it('a reader blocked for a minute wakes as soon as an event is published', async () => {
    const state = backend.state('wake');
    const reader = state.eventReader({ blockMs: 60_000 });
    await reader.open();
    try {
      const t0 = Date.now();
      const got = reader.read();
      await new Promise((r) => setTimeout(r, 100));
      await state.publish('progress', 'op-1', '{"x":1}', 100);
      const events = await got;
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(events.map((e) => [e.name, e.operationId, e.data])).toEqual([
        ['progress', 'op-1', '{"x":1}'],
      ]);
    } finally {
      reader.close();
    }
  });

  it('events of another queue or schema do not wake a reader; order is kept; the table is trimmed', async () => {
    const a = backend.state('order-a');
    const b = backend.state('order-b');
    const reader = a.eventReader({ from: '0', blockMs: 200 });
    await reader.open();
    try {
      await Promise.all(
        Array.from({ length: 50 }, (_, i) => a.publish('progress', `op-${i}`, String(i), 1000)),
      );
      await b.publish('progress', 'other', '{}', 1000);
      const got: string[] = [];
      for (let i = 0; i < 5 && got.length < 50; i++)
        for (const e of await reader.read()) got.push(e.operationId);
      expect(got).toHaveLength(50);
      expect(new Set(got).size).toBe(50);
      const ids = (await a.recentEvents(100)).map((e) => Number(e.id));
      expect(ids).toEqual([...ids].sort((x, y) => y - x));
      // maxLen 10: trimmed (every 100th event) to the last 10.
      for (let i = 0; i < 60; i++) await a.publish('progress', 'trim', '{}', 10);
      const kept = await admin.query(
        `SELECT count(*)::int AS n FROM ${schema}.bm_event WHERE queue = 'order-a'`,
      );
      expect(kept.rows[0].n).toBeLessThanOrEqual(20);
    } finally {
      reader.close();
    }
  });

  it('a consumer group redelivers what was not acknowledged, skips what was trimmed meanwhile', async () => {
    const state = backend.state('group');
    const first = state.eventReader({ group: 'g', consumer: 'c1', blockMs: 200 });
    await first.open();
    await state.publish('progress', 'a', '{}', 1000);
    await state.publish('progress', 'b', '{}', 1000);
    const got = await first.read();
    expect(got.map((e) => e.operationId)).toEqual(['a', 'b']);
    await first.ack(got[0]!.id);
    first.close();
    // 'b' was delivered and never acknowledged: it comes again to the same consumer.
    const again = state.eventReader({ group: 'g', consumer: 'c1', blockMs: 200 });
    await again.open();
    expect((await again.read()).map((e) => e.operationId)).toEqual(['b']);
    again.close();
    // Trimmed away before it was acknowledged: nothing to deliver, and reading goes on.
    await admin.query(`DELETE FROM ${schema}.bm_event WHERE queue = 'group'`);
    const third = state.eventReader({ group: 'g', consumer: 'c1', blockMs: 200 });
    await third.open();
    try {
      expect(await third.read()).toEqual([]);
      await state.publish('progress', 'c', '{}', 1000);
      const next: string[] = [];
      for (let i = 0; i < 5 && next.length === 0; i++)
        for (const e of await third.read()) next.push(e.operationId);
      expect(next).toEqual(['c']);
    } finally {
      third.close();
    }
  });

  it('a consumer group with a backlog delivers it at once, not after a wait', async () => {
    const state = backend.state('backlog');
    const first = state.eventReader({ group: 'g', consumer: 'c1', blockMs: 200 });
    await first.open(); // the group starts here
    first.close();
    for (const id of ['x', 'y', 'z']) await state.publish('progress', id, '{}', 1000);
    const reader = state.eventReader({ group: 'g', consumer: 'c1', blockMs: 60_000 });
    await reader.open();
    try {
      const t0 = Date.now();
      const got = await reader.read();
      expect(got.map((e) => e.operationId)).toEqual(['x', 'y', 'z']);
      expect(Date.now() - t0).toBeLessThan(5000);
    } finally {
      reader.close();
    }
  });

  it('records are pruned by age, with their chunk marks and running jobs', async () => {
    const state = backend.state('prune');
    await state.register('old', 'i1', { kind: 'bulkCreate', table: 't', returning: false });
    await state.jobStarted('old', 'j1', 'w1');
    await state.chunkDone('old', 0, 5, 'j0');
    await new Promise((r) => setTimeout(r, 20));
    const cutoff = Date.now();
    await new Promise((r) => setTimeout(r, 20));
    await state.register('new', 'i2', { kind: 'bulkCreate', table: 't', returning: false });
    expect(await state.prune(cutoff)).toBe(1);
    expect(await state.record('old')).toBeNull();
    expect((await state.record('new'))?.state).toBe('enqueueing');
    const left = await admin.query(
      `SELECT (SELECT count(*) FROM ${schema}.bm_chunk WHERE op_id = 'old')::int AS chunks,
              (SELECT count(*) FROM ${schema}.bm_active WHERE op_id = 'old')::int AS active`,
    );
    expect(left.rows[0]).toEqual({ chunks: 0, active: 0 });
  });

  it('a chunk counted twice (a replay) counts once', async () => {
    const state = backend.state('count');
    await state.register('op', 'i', { kind: 'copyFrom', table: 't', returning: false });
    await state.seal('op', { totalRows: 10, totalChunks: 2 });
    const results = await Promise.all([
      state.chunkDone('op', 0, 5, 'j0'),
      state.chunkDone('op', 0, 5, 'j0b'),
      state.chunkDone('op', 1, 5, 'j1'),
    ]);
    expect(results.map((r) => r.totalRows)).toEqual([10, 10, 10]);
    const r = await state.record('op');
    expect(r).toMatchObject({ state: 'running', rowsDone: 10, chunksDone: 2, sealed: true });
    // Counts past 2^31 (a bigint, as in Redis).
    expect(await state.finish('op', 'completed', { rowsDone: 3_000_000_000 })).toBe(true);
    expect((await state.record('op'))?.rowsDone).toBe(3_000_000_000);
    expect(await state.finish('op', 'failed', { error: '{}' })).toBe(false);
    expect(await state.fail('op', '{"code":"X"}')).toBe(false);
    expect((await state.record('op'))?.state).toBe('completed');
  });
});

describe('no Redis at all', () => {
  it('npm run demo -- --backend postgres: the demo runs with Redis unreachable', async () => {
    const dir = `/tmp/bulkmodel-pgdemo-${process.pid}-${randomBytes(2).toString('hex')}`;
    const schema = schemaName('demo');
    const d = runCli(
      [
        'demo',
        '--rows',
        '3000',
        '--batch-size',
        '1000',
        '--backend',
        'postgres',
        '--queue-schema',
        schema,
        '--database',
        DATABASE_URL,
        '--queue',
        queueName('demo'),
        '--export-dir',
        dir,
      ],
      NO_REDIS,
    );
    const { code } = await d.exited;
    expect(code, d.output()).toBe(0);
    expect(d.output()).toContain('3,000 rows, 300 updated (expected 3,000 and 300)');
    expect(d.output()).toContain('--backend postgres');
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
  }, 120_000);

  it('is not what a Redis error looks like: an unreachable queue database exits 3 naming Postgres', async () => {
    const r = runCli(
      ['status', '--backend', 'postgres', '--queue-database', 'postgres://nobody@127.0.0.1:1/x'],
      NO_REDIS,
    );
    expect((await r.exited).code).toBe(3);
    expect(r.output()).toContain('cannot reach Postgres');
  });
});
