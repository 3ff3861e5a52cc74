import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, type TestDb, testDb } from './helpers.js';
import { createHostileTables, hostileRow } from './hostile.js';
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

// The CLI as a user runs it (node --import tsx src/cli/main.ts ...), against real services.

let tdb: TestDb;
let dir: string;
let worker: WorkerProcess;
const prefix = runPrefix('cli');
const queue = queueName('cli');
const pg = ['--database', DATABASE_URL];
const services = [...pg, '--redis', REDIS_URL];
const via = [...services, '--queue', queue, '--prefix', prefix];

async function cli(...args: string[]): Promise<{ code: number | null; out: string }> {
  const c = runCli(args);
  const { code } = await c.exited;
  return { code, out: c.output() };
}

/** Every row as Postgres's own text of the whole row: exact for every type, NULL vs '' included. */
async function rowsText(table: string): Promise<string[]> {
  const r = await tdb.pool.query(`SELECT t::text AS r FROM ${table} t ORDER BY id`);
  return r.rows.map((x) => x.r as string);
}

beforeAll(async () => {
  tdb = await testDb('cli');
  dir = await mkdtemp(join(tmpdir(), 'bulkmodel-cli-'));
  await createHostileTables(tdb.pool, tdb.schema);
  const copies = ['csv_copy', 'ndjson_copy', 'byhand'];
  for (const c of copies)
    await tdb.pool.query(`CREATE TABLE ${tdb.t(c)} (LIKE ${tdb.t('hostile')} INCLUDING ALL)`);
  const db = tdb.client();
  await db.model(tdb.t('hostile')).bulkCreate(Array.from({ length: 28 }, (_, i) => hostileRow(i)));
  worker = await startWorker({
    tables: [...copies, 'hostile', 'uniq'].map((t) => tdb.t(t)),
    queue,
    prefix,
  });
});

afterAll(async () => {
  if (worker) await stopWorker(worker);
  await killAll();
  await obliterate(queue, prefix);
  await deleteKeys(`${prefix}:*`);
  await rm(dir, { recursive: true, force: true });
  await tdb?.close();
});

// Every column but the generated one, which cannot be written.
const COLUMNS = 'id,t,vc,i2,i4,i8,num,f8,b,by,jb,js,ta,ia,jba,tz,ts,d,u,m,p';

describe('load and export round trip', () => {
  for (const ext of ['csv', 'ndjson']) {
    it(`${ext}: export then load into an empty copy gives identical rows`, async () => {
      const file = join(dir, `hostile.${ext}`);
      const exp = await cli('export', tdb.t('hostile'), file, '--columns', COLUMNS, ...pg);
      expect(exp.code, exp.out).toBe(0);
      expect(exp.out).toMatch(/exported 28 rows/);
      const copy = tdb.t(`${ext}_copy`);
      const load = await cli('load', copy, file, '--batch-size', '5', ...via);
      expect(load.code, load.out).toBe(0);
      expect(load.out).toMatch(/loaded 28 of 28 rows/);
      expect(await rowsText(copy)).toEqual(await rowsText(tdb.t('hostile')));
    });
  }

  it('a hand-written CSV: quoting, NULL vs empty, CRLF, boolean spellings, arrays, json, bytea', async () => {
    const file = join(dir, 'byhand.csv');
    await writeFile(
      file,
      [
        'id,t,b,ta,jb,by,i8,num,tz',
        '1,"tab\there, ""quoted"" and\nnewline",true,"{a,NULL,""NULL"",""""}","{""k"": [1, null, ""\\\\N""]}",\\x00ff,9007199254740993,0.1,2024-02-29 23:59:59.123456+00',
        '2,,FALSE,,,,,,',
        '3,"",1,{},"""just a string""",\\x,-9223372036854775808,-1e-30,1999-12-31 23:59:59.5+00\r',
        '4,😀 中文 \\N,f,"{""back\\\\slash""}",null,,0,NaN,',
      ].join('\n'),
    );
    const r = await cli('load', tdb.t('byhand'), file, ...via);
    expect(r.code, r.out).toBe(0);
    const rows = await tdb.pool.query(
      `SELECT id, t, b, ta, jb, by, i8::text, num::text, tz::text FROM ${tdb.t('byhand')} ORDER BY id`,
    );
    expect(rows.rows).toEqual([
      {
        id: '1',
        t: 'tab\there, "quoted" and\nnewline',
        b: true,
        ta: ['a', null, 'NULL', ''],
        jb: { k: [1, null, '\\N'] },
        by: Buffer.from([0, 255]),
        i8: '9007199254740993',
        num: '0.1',
        tz: '2024-02-29 23:59:59.123456+00',
      },
      { id: '2', t: null, b: false, ta: null, jb: null, by: null, i8: null, num: null, tz: null },
      {
        id: '3',
        t: '',
        b: true,
        ta: [],
        jb: 'just a string',
        by: Buffer.alloc(0),
        i8: '-9223372036854775808',
        num: '-0.000000000000000000000000000001',
        tz: '1999-12-31 23:59:59.5+00',
      },
      {
        id: '4',
        t: '😀 中文 \\N',
        b: false,
        ta: ['back\\slash'],
        jb: null,
        by: null,
        i8: '0',
        num: 'NaN',
        tz: null,
      },
    ]);
    // A CSV field is Postgres's text, as psql reads it: `null` in a jsonb column is the JSON
    // null, not SQL NULL (an unquoted empty field is SQL NULL).
    const jsonNull = await tdb.pool.query(
      `SELECT jb IS NULL AS sqlnull, jb::text AS t FROM ${tdb.t('byhand')} WHERE id = 4`,
    );
    expect(jsonNull.rows[0]).toEqual({ sqlnull: false, t: 'null' });
  });

  it('--update-fields updates matched rows and reports keys that matched none', async () => {
    const file = join(dir, 'update.csv');
    await writeFile(file, 'id,t,b\n1,renamed,false\n999999,nobody,true\n');
    const r = await cli('load', tdb.t('byhand'), file, '--update-fields', 't,b', ...via);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/updated 1 of 2 rows.*1 keys matched no row/);
    const row = await tdb.pool.query(`SELECT t, b FROM ${tdb.t('byhand')} WHERE id = 1`);
    expect(row.rows[0]).toEqual({ t: 'renamed', b: false });
  });

  it('--copy --on-conflict update:... upserts on --key; NDJSON values as they are', async () => {
    const file = join(dir, 'upsert.ndjson');
    await writeFile(
      file,
      `${[
        { code: 'a', name: 'first', n: 1 },
        { code: 'b', name: 'line\u2028sep\rcr', n: 2 },
      ]
        .map((o) => JSON.stringify(o))
        .join('\n')}\n\n`,
    );
    const upsert = ['--on-conflict', 'update:name', '--key', 'code', ...via];
    expect((await cli('load', tdb.t('uniq'), file, '--copy', ...upsert)).code).toBe(0);
    await writeFile(file, `${JSON.stringify({ code: 'a', name: 'second', n: 5 })}\n`);
    expect((await cli('load', tdb.t('uniq'), file, ...upsert)).code).toBe(0);
    const rows = await tdb.pool.query(`SELECT code, name, n FROM ${tdb.t('uniq')} ORDER BY code`);
    expect(rows.rows).toEqual([
      { code: 'a', name: 'second', n: 1 },
      { code: 'b', name: 'line\u2028sep\rcr', n: 2 },
    ]);
  });

  it('NDJSON from other tools: a BOM, integers as 1.0 / 1E2 / -0.0, a record spread over lines', async () => {
    const file = join(dir, 'other-tools.ndjson');
    await writeFile(
      file,
      `\ufeff{"code": "o1", "n": 1.0}\r\n{"code": "o2", "n": 1E2}\n{\n  "code": "o3",\n  "n": -0.0\n}\n`,
    );
    const r = await cli('load', tdb.t('uniq'), file, ...via);
    expect(r.code, r.out).toBe(0);
    const rows = await tdb.pool.query(
      `SELECT code, n FROM ${tdb.t('uniq')} WHERE code LIKE 'o%' ORDER BY code`,
    );
    expect(rows.rows).toEqual([
      { code: 'o1', n: 1 },
      { code: 'o2', n: 100 },
      { code: 'o3', n: 0 },
    ]);
    // a fraction for an integer column is refused, naming the record's first line
    await writeFile(file, `{"code": "o4", "n": 1}\n{"code": "o5",\n "n": 1.5}\n`);
    const bad = await cli('load', tdb.t('uniq'), file, ...via);
    expect(bad.code, bad.out).toBe(1);
    expect(bad.out).toMatch(/INVALID_VALUE/);
  });

  it('a value the column refuses fails the load with exit 1 and the error code', async () => {
    const file = join(dir, 'bad.csv');
    await writeFile(file, 'code,n\nok,1\nbad,not a number\n');
    const r = await cli('load', tdb.t('uniq'), file, ...via);
    expect(r.code, r.out).toBe(1);
    // Postgres parses the file's records (COPY ... CSV): its error names the file line and
    // column, never the value.
    expect(r.out).toMatch(/error DATA_ERROR: .*bad\.csv line 3: .*column n/);
    expect(r.out).not.toContain('not a number');
  });

  it('export to a directory that does not exist fails with FILE_ERROR, exit 1, and ends', async () => {
    const target = join(dir, 'no', 'such', 'dir', 'x.csv');
    const r = await cli('export', tdb.t('hostile'), target, ...pg);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/error FILE_ERROR: ENOENT.*x\.csv\.partial/);
    expect(r.out).not.toMatch(/exported/);
  });

  it('bad usage exits 2 before touching anything', async () => {
    const [noFormat, conflict, concurrency] = await Promise.all([
      cli('load', tdb.t('uniq'), join(dir, 'x.txt'), ...via),
      cli('load', tdb.t('uniq'), join(dir, 'bad.csv'), '--on-conflict', 'merge', ...via),
      cli('load', tdb.t('uniq'), join(dir, 'bad.csv'), '--concurrency', '2', ...via),
    ]);
    expect(noFormat.code).toBe(2);
    expect(noFormat.out).toMatch(/--format/);
    expect(conflict.code).toBe(2);
    expect(concurrency.code).toBe(2);
    expect(concurrency.out).toMatch(/--workers/);
  });
});

describe('every command', () => {
  const flags: Record<string, string[]> = {
    worker: ['--tables', '--queue', '--concurrency', '--database', '--redis', '--export-dir'],
    demo: ['--rows', '--workers', '--queue', '--batch-size', '--database', '--redis'],
    status: ['--queue', '--redis', '--limit', '--json'],
    load: [
      '--format',
      '--update-fields',
      '--key',
      '--copy',
      '--on-conflict',
      '--batch-size',
      '--workers',
      '--concurrency',
      '--queue',
      '--redis',
      '--database',
      '--wait',
      '--no-wait',
    ],
    export: ['--format', '--columns', '--where', '--database'],
  };

  it('--help exits 0, names its flags and shows examples', async () => {
    const cmds = Object.keys(flags);
    const results = await Promise.all(cmds.map((c) => cli(c, '--help')));
    results.forEach((r, i) => {
      expect(r.code, cmds[i]).toBe(0);
      expect(r.out).toMatch(/Examples?:/);
      for (const f of flags[cmds[i]!]!) expect(r.out, `${cmds[i]} ${f}`).toContain(f);
    });
    const top = await cli('--help');
    expect(top.code).toBe(0);
    for (const c of cmds) expect(top.out).toContain(c);
  });

  it('an unreachable service exits 3 and names it, with how to start it', async () => {
    const badPg = 'postgres://postgres@127.0.0.1:1/postgres';
    const badRedis = 'redis://127.0.0.1:1';
    const file = join(dir, 'bad.csv');
    const [load, loadRedis, exp, status] = await Promise.all([
      cli('load', 'uniq', file, '--database', badPg, '--redis', REDIS_URL),
      cli('load', 'uniq', file, '--database', DATABASE_URL, '--redis', badRedis),
      cli('export', 'uniq', join(dir, 'never.csv'), '--database', badPg),
      cli('status', '--redis', badRedis),
    ]);
    for (const r of [load, exp]) {
      expect(r.code, r.out).toBe(3);
      expect(r.out).toMatch(
        /cannot reach Postgres at postgres:\/\/postgres@127\.0\.0\.1:1\/.*start it/,
      );
    }
    for (const r of [loadRedis, status]) {
      expect(r.code, r.out).toBe(3);
      expect(r.out).toMatch(/cannot reach Redis at redis:\/\/127\.0\.0\.1:1.*start it/);
    }
  });

  it('demo --rows 20000 succeeds and the table holds the rows', async () => {
    const r = await cli(
      'demo',
      '--rows',
      '20000',
      '--queue',
      queueName('demo'),
      '--export-dir',
      join(dir, 'demo'),
      ...services,
    );
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/summary/);
    const n = await tdb.pool.query('SELECT count(*)::int AS n FROM bulkmodel_demo.items');
    expect(n.rows[0].n).toBe(20000);
  });
});
