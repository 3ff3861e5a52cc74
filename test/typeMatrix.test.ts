import { mkdtempSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BulkClient, BulkProducer, EXACT, type Row } from '../src/index.js';
import { DATABASE_URL, type TestDb, testDb } from './helpers.js';
import {
  deleteKeys,
  killAll,
  obliterate,
  queueName,
  REDIS_URL,
  runCli,
  runPrefix,
  startWorker,
  stopWorker,
  type WorkerProcess,
} from './queueHelpers.js';
import {
  COLUMN_NAMES,
  createSql,
  digest,
  insertSql,
  psql,
  ROW_COUNT,
  typesSql,
} from './typeMatrix.js';

/**
 * Exact values on every path (issue 14): a table with a column of every built-in type family
 * filled by psql, copied through each path into a twin, compared column by column with
 * Postgres's own text of each value. psql is the oracle: its \copy output is what the CLI's
 * CSV export must equal byte for byte.
 */
let tdb: TestDb;
let s: string;
let src: string;
let exact: BulkClient;
let plain: BulkClient;
let worker: WorkerProcess;
let producer: BulkProducer;
let dir: string;
const prefix = runPrefix('types');
const queue = queueName('types');
/** Columns whose JavaScript shapes lose information by default (documented in docs/types.md). */
const LOSSY_BY_DEFAULT = ['js', 'js2', 'jb', 'a_js', 'a_jb', 'ts', 'tz', 'a_ts'];

let twins = 0;
/** A new empty twin of the source table. */
function twin(): string {
  const name = `twin${++twins}`;
  psql(`${createSql(s, name)};`);
  return `${s}.${name}`;
}

/** Columns that differ between the source and a copy, by Postgres's text of each value. */
async function differing(copy: string, columns = COLUMN_NAMES): Promise<string[]> {
  const bad: string[] = [];
  for (const c of columns) {
    const [a, b] = [await digest(tdb.pool, src, [c]), await digest(tdb.pool, copy, [c])];
    if (!isDeepStrictEqual(a, b)) bad.push(c);
  }
  return bad;
}

async function read(db: BulkClient): Promise<Row[]> {
  const rows: Row[] = [];
  for await (const r of db.model(src).copyTo()) rows.push(r);
  return rows;
}

/** The twin holds the source's ids only (NULL elsewhere): what updateFields fills. */
function twinWithIds(): string {
  const t = twin();
  psql(`INSERT INTO ${t} (id) SELECT id FROM ${src};`);
  return t;
}

async function cli(...args: string[]): Promise<string> {
  const c = runCli(args);
  const { code } = await c.exited;
  expect(code, c.output()).toBe(0);
  return c.output();
}

beforeAll(async () => {
  tdb = await testDb('types');
  s = tdb.schema;
  src = `${s}.src`;
  psql(`${typesSql(s)}; ${createSql(s, 'src')}; ${insertSql(s, 'src')};`);
  exact = tdb.client({ decode: EXACT });
  plain = tdb.client();
  dir = mkdtempSync(join(tmpdir(), 'bm-types-'));
  const tables = Array.from({ length: 30 }, (_, i) => `${s}.twin${i + 1}`);
  worker = await startWorker({
    tables: [src, ...tables],
    queue,
    prefix,
    args: ['--export-dir', dir],
  });
  producer = new BulkProducer({ redis: REDIS_URL, queue, prefix, decode: EXACT });
});
afterAll(async () => {
  await producer?.close();
  if (worker) await stopWorker(worker);
  await killAll();
  await obliterate(queue, prefix).catch(() => {});
  await deleteKeys(`${prefix}:*`);
  await rm(dir, { recursive: true, force: true });
  await tdb?.close();
});

describe(`every built-in type family, exactly (${COLUMN_NAMES.length} columns, ${ROW_COUNT} rows)`, () => {
  it('the source holds what psql wrote', async () => {
    expect(await digest(tdb.pool, src)).toHaveLength(ROW_COUNT);
  });

  for (const path of ['bulkCreate copy', 'bulkCreate insert', 'copyFrom', 'updateFields'] as const)
    it(`direct ${path}: rows read with EXACT write back exactly`, async () => {
      const rows = await read(exact);
      const t = path === 'updateFields' ? twinWithIds() : twin();
      const m = exact.model(t);
      if (path === 'copyFrom') await m.copyFrom(rows);
      else if (path === 'updateFields') await m.updateFields(rows, { fields: COLUMN_NAMES });
      else await m.bulkCreate(rows, { strategy: path === 'bulkCreate copy' ? 'copy' : 'insert' });
      expect(await differing(t)).toEqual([]);
    });

  it('direct, default decoding: what is read is accepted back; only the documented shapes lose', async () => {
    const rows = await read(plain);
    for (const strategy of ['copy', 'insert'] as const) {
      const t = twin();
      await plain.model(t).bulkCreate(rows, { strategy });
      expect(LOSSY_BY_DEFAULT).toEqual(expect.arrayContaining(await differing(t)));
    }
    const t = twinWithIds();
    await plain.model(t).updateFields(rows, { fields: COLUMN_NAMES });
    expect(LOSSY_BY_DEFAULT).toEqual(expect.arrayContaining(await differing(t)));
  });

  for (const db of ['exact', 'default'] as const)
    it(`returning gives what copyTo gives (${db} decoding), by either strategy`, async () => {
      const client = db === 'exact' ? exact : plain;
      const rows = await read(client);
      for (const strategy of ['copy', 'insert'] as const) {
        const t = twin();
        const res = await client.model(t).bulkCreate(rows, { strategy, returning: true });
        const back: Row[] = [];
        for await (const r of client.model(t).copyTo()) back.push(r);
        expect(res.rows).toEqual(back);
        if (db === 'exact') expect(res.rows).toEqual(rows);
      }
    });

  for (const kind of ['bulkCreate', 'copyFrom', 'updateFields'] as const)
    it(`queue ${kind}: exact, and returned rows as direct mode returns them`, async () => {
      const rows = await read(exact);
      const t = kind === 'updateFields' ? twinWithIds() : twin();
      const op =
        kind === 'updateFields'
          ? await producer.updateFields(t, rows, { fields: COLUMN_NAMES, batchSize: 4 })
          : await producer[kind](t, rows, { batchSize: 4, returning: true });
      const res = await op.done();
      expect(res.count).toBe(ROW_COUNT);
      expect(await differing(t)).toEqual([]);
      if (kind !== 'updateFields') expect(res.rows).toEqual(rows);
    });

  it('queue returning, default decoding: the producer decodes as direct mode does', async () => {
    const p = new BulkProducer({ redis: REDIS_URL, queue, prefix });
    try {
      const rows = await read(exact);
      const t = twin();
      const res = await (await p.bulkCreate(t, rows, { returning: true, batchSize: 3 })).done();
      const direct: Row[] = [];
      for await (const r of plain.model(t).copyTo()) direct.push(r);
      // (chunks commit in parallel: rows sit in the table in commit order)
      direct.sort((a, b) => Number(a.id) - Number(b.id));
      expect(res.rows).toEqual(direct);
    } finally {
      await p.close();
    }
  });

  it('CLI export CSV equals psql \\copy byte for byte; loaded back it is exact', async () => {
    const file = join(dir, 'src.csv');
    await cli('export', src, file, '--database', DATABASE_URL);
    const oracle = psql(`\\copy ${src} to stdout csv header`);
    expect(await readFile(file, 'utf8')).toBe(oracle);
    const t = twin();
    await cli(
      'load',
      t,
      file,
      '--batch-size',
      '3',
      '--database',
      DATABASE_URL,
      '--redis',
      REDIS_URL,
      '--queue',
      queue,
      '--prefix',
      prefix,
    );
    expect(await differing(t)).toEqual([]);
  });

  it('CLI export NDJSON, loaded back, is exact (json text byte for byte, jsonb numbers of any length)', async () => {
    const file = join(dir, 'src.ndjson');
    await cli('export', src, file, '--database', DATABASE_URL);
    const t = twin();
    await cli(
      'load',
      t,
      file,
      '--batch-size',
      '3',
      '--database',
      DATABASE_URL,
      '--redis',
      REDIS_URL,
      '--queue',
      queue,
      '--prefix',
      prefix,
    );
    expect(await differing(t)).toEqual([]);
  });

  it('queued copyTo writes what the CLI export writes, CSV and NDJSON alike', async () => {
    for (const format of ['csv', 'ndjson'] as const) {
      const name = `queued.${format}`;
      await (await producer.copyTo(src, { path: name, format })).done();
      const mine = join(dir, `cli.${format}`);
      await cli('export', src, mine, '--database', DATABASE_URL);
      expect(await readFile(join(dir, name), 'utf8')).toBe(await readFile(mine, 'utf8'));
    }
  });
});
