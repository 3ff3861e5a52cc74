import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_URL, type TestDb, testDb } from './helpers.js';
import { createHostileTables, hostileRow } from './hostile.js';
import {
  deleteKeys,
  killAll,
  obliterate,
  prefixArgs,
  QUEUE_ARGS,
  queueName,
  runCli,
  runPrefix,
  startWorker,
  stopWorker,
  type WorkerProcess,
} from './queueHelpers.js';
import { psql } from './typeMatrix.js';

// bulkmodel load of the files people have (issue 19): TSV, JSON arrays, gzip, stdin, --create,
// --dry-run, and what a load that stops says. psql's \copy is the oracle throughout.

let tdb: TestDb;
let dir: string;
let worker: WorkerProcess;
const prefix = runPrefix('loadfmt');
const queue = queueName('loadfmt');
const pg = ['--database', DATABASE_URL];
const via = [...pg, ...QUEUE_ARGS, '--queue', queue, ...prefixArgs(prefix)];
// For tables the running worker does not allow: a queue only the load's own worker serves.
const own = (label: string) => [
  ...pg,
  ...QUEUE_ARGS,
  '--queue',
  queueName(label),
  ...prefixArgs(prefix),
  '--workers',
  '1',
];
// Every column but the generated one, which cannot be written.
const COLUMNS = 'id,t,vc,i2,i4,i8,num,f8,b,by,jb,js,ta,ia,jba,tz,ts,d,u,m,p';
const COPIES = ['tsv_copy', 'json_copy', 'gz_csv', 'gz_ndjson', 'stdin_copy'];

async function cli(
  args: string[],
  input?: string | Buffer,
): Promise<{ code: number | null; out: string }> {
  const c = runCli(args, {}, [], input);
  const { code } = await c.exited;
  return { code, out: c.output() };
}

/** Every row as Postgres's own text of the whole row, in id order. */
async function rowsText(table: string): Promise<string[]> {
  const r = await tdb.pool.query(`SELECT t::text AS r FROM ${table} t ORDER BY id`);
  return r.rows.map((x) => x.r as string);
}

beforeAll(async () => {
  tdb = await testDb('loadfmt');
  dir = await mkdtemp(join(tmpdir(), 'bulkmodel-loadfmt-'));
  await createHostileTables(tdb.pool, tdb.schema);
  for (const c of COPIES)
    await tdb.pool.query(`CREATE TABLE ${tdb.t(c)} (LIKE ${tdb.t('hostile')} INCLUDING ALL)`);
  await tdb.pool.query(
    `CREATE TABLE ${tdb.t('nums')} (id int PRIMARY KEY, v numeric CHECK (v < 1000), note text)`,
  );
  await tdb
    .client()
    .model(tdb.t('hostile'))
    .bulkCreate(Array.from({ length: 28 }, (_, i) => hostileRow(i)));
  worker = await startWorker({
    tables: [...COPIES, 'hostile', 'nums'].map((t) => tdb.t(t)),
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

describe('formats', () => {
  it('TSV as psql \\copy writes it (tab delimiter, CSV quoting) loads back exactly', async () => {
    const file = join(dir, 'hostile.tsv');
    psql(
      `\\copy ${tdb.t('hostile')} (${COLUMNS}) to '${file}' with (format csv, delimiter E'\\t', header)`,
    );
    const r = await cli(['load', tdb.t('tsv_copy'), file, '--batch-size', '5', ...via]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/loaded 28 of 28 rows/);
    expect(await rowsText(tdb.t('tsv_copy'))).toEqual(await rowsText(tdb.t('hostile')));
  });

  it('gzip both ways: export .gz is psql’s bytes compressed, and .csv.gz / .ndjson.gz load exactly', async () => {
    const oracle = join(dir, 'oracle.csv');
    psql(`\\copy ${tdb.t('hostile')} (${COLUMNS}) to '${oracle}' with (format csv, header)`);
    for (const [ext, table] of [
      ['csv', 'gz_csv'],
      ['ndjson', 'gz_ndjson'],
    ] as const) {
      const file = join(dir, `hostile.${ext}.gz`);
      const exp = await cli(['export', tdb.t('hostile'), file, '--columns', COLUMNS, ...pg]);
      expect(exp.code, exp.out).toBe(0);
      const bytes = await readFile(file);
      expect(bytes.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
      if (ext === 'csv') expect(gunzipSync(bytes)).toEqual(await readFile(oracle));
      const load = await cli(['load', tdb.t(table), file, '--batch-size', '4', ...via]);
      expect(load.code, load.out).toBe(0);
      expect(await rowsText(tdb.t(table))).toEqual(await rowsText(tdb.t('hostile')));
    }
  });

  it('export to stdout (-) gives psql’s bytes', async () => {
    const oracle = join(dir, 'oracle-stdout.csv');
    psql(`\\copy ${tdb.t('hostile')} (${COLUMNS}) to '${oracle}' with (format csv, header)`);
    const r = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'export',
        tdb.t('hostile'),
        '-',
        '--format',
        'csv',
        '--columns',
        COLUMNS,
        ...pg,
      ],
      { cwd: join(import.meta.dirname, '..') },
    );
    expect(r.status, String(r.stderr)).toBe(0);
    expect(r.stdout).toEqual(await readFile(oracle));
    expect(String(r.stderr)).toMatch(/exported 28 rows .* to stdout/);
  });

  it('a JSON array file (pretty-printed) loads exactly, from a file and from stdin', async () => {
    const nd = join(dir, 'for-json.ndjson');
    const exp = await cli(['export', tdb.t('hostile'), nd, '--columns', COLUMNS, ...pg]);
    expect(exp.code, exp.out).toBe(0);
    const records = (await readFile(nd, 'utf8')).split('\n').filter(Boolean);
    const json = `\uFEFF[\r\n  ${records.join(',\n\n  ')}\n]\n`;
    const file = join(dir, 'hostile.json');
    await writeFile(file, json);
    const r = await cli(['load', tdb.t('json_copy'), file, '--batch-size', '6', ...via]);
    expect(r.code, r.out).toBe(0);
    expect(await rowsText(tdb.t('json_copy'))).toEqual(await rowsText(tdb.t('hostile')));
    const s = await cli(['load', tdb.t('stdin_copy'), '-', '--format', 'json', ...via], json);
    expect(s.code, s.out).toBe(0);
    expect(s.out).toMatch(/loaded 28 of 28 rows/);
    expect(await rowsText(tdb.t('stdin_copy'))).toEqual(await rowsText(tdb.t('hostile')));
  });

  it('--delimiter, --null, --no-header and --columns read a file as COPY with those options does', async () => {
    const file = join(dir, 'semi.txt');
    await writeFile(file, '1;NA;plain\n2;"NA";"semi;colon"\n3;7.25;\n');
    const r = await cli([
      'load',
      tdb.t('nums'),
      file,
      '--format',
      'csv',
      '--delimiter',
      ';',
      '--null',
      'NA',
      '--no-header',
      '--columns',
      'id,v,note',
      ...via,
    ]);
    // "NA" quoted is text, not NULL: the numeric column refuses it, naming line 2.
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/error DATA_ERROR: .*semi\.txt line 2: .*column v/);
    await writeFile(file, '1;NA;plain\n2;1;"NA"\n3;7.25;\n');
    await tdb.pool.query(`TRUNCATE ${tdb.t('nums')}`);
    const ok = await cli([
      'load',
      tdb.t('nums'),
      file,
      '--format',
      'csv',
      '--delimiter',
      ';',
      '--null',
      'NA',
      '--no-header',
      '--columns',
      'id,v,note',
      ...via,
    ]);
    expect(ok.code, ok.out).toBe(0);
    const mine = await rowsText(tdb.t('nums'));
    await tdb.pool.query(`TRUNCATE ${tdb.t('nums')}`);
    psql(
      `\\copy ${tdb.t('nums')} (id, v, note) from '${file}' with (format csv, delimiter ';', null 'NA')`,
    );
    expect(mine).toEqual(await rowsText(tdb.t('nums')));
    expect(mine).toEqual(['(1,,plain)', '(2,1,NA)', '(3,7.25,"")']);
    await tdb.pool.query(`TRUNCATE ${tdb.t('nums')}`);
  });
});

describe('--create and --dry-run', () => {
  const HEADER = [
    'id',
    'Name With Space',
    'quo"te',
    'ünï',
    'big',
    'amount',
    'flag',
    'day',
    'at',
    'uid',
    'doc',
    'empty',
  ];
  const csvField = (s: string) => (/[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  const odd =
    `\uFEFF${HEADER.map(csvField).join(',')}\r\n` +
    '1,plain,"multi\r\nline ""q""",ü,9007199254740993,1.5,t,2024-02-29,2024-01-01 10:00:00+02,a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,"{""a"":1}",\r\n' +
    '2,"",x,,2,-3e5,false,2024-03-01,2024-01-01T10:00:00Z,a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12,[1],\r\n' +
    '3,"tab\there",,z,,,,,,,,\r\n';

  it('--create types columns from the sample; the table takes what psql \\copy takes', async () => {
    const file = join(dir, 'odd.csv');
    await writeFile(file, odd);
    const table = `${tdb.schema}.created`;
    const r = await cli(['load', table, file, '--create', ...own('create-csv')]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('creating the table (types from the first 3 rows)');
    expect(r.out).toContain('"Name With Space" text');
    const types = await tdb.pool.query(
      `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'created' ORDER BY ordinal_position`,
      [tdb.schema],
    );
    expect(types.rows.map((x) => `${x.column_name} ${x.data_type}`)).toEqual([
      'id integer',
      'Name With Space text',
      'quo"te text',
      'ünï text',
      'big bigint',
      'amount numeric',
      'flag boolean',
      'day date',
      'at timestamp with time zone',
      'uid uuid',
      'doc jsonb',
      'empty text',
    ]);
    // The oracle: psql's \copy of the same file into a table of the same columns.
    await tdb.pool.query(`CREATE TABLE ${tdb.schema}.oracle (LIKE ${table})`);
    psql(`\\copy ${tdb.schema}.oracle from '${file}' with (format csv, header)`);
    expect(await rowsText(table)).toEqual(await rowsText(`${tdb.schema}.oracle`));
    expect((await rowsText(table)).length).toBe(3);
  });

  it('--create from NDJSON keys: numbers by their digits, objects as jsonb', async () => {
    const file = join(dir, 'keys.ndjson');
    await writeFile(
      file,
      '{"id": 1, "n": 12345678901234567890, "ok": true, "when": "2024-01-02", "o": {"a": [1]}}\n' +
        '{"id": 2, "n": 1.5, "s": "x", "o": [1, 2]}\n',
    );
    const table = `${tdb.schema}.from_keys`;
    const r = await cli(['load', table, file, '--create', ...own('create-json')]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(
      /"id" integer,\s+"n" numeric,\s+"ok" boolean,\s+"when" date,\s+"o" jsonb,\s+"s" text/,
    );
    expect(await rowsText(table)).toEqual([
      '(1,12345678901234567890,t,2024-01-02,"{""a"": [1]}",)',
      '(2,1.5,,,"[1, 2]",x)',
    ]);
  });

  it('--dry-run writes nothing, names the first problem’s line and exits 1; with --create no table is left', async () => {
    const file = join(dir, 'dry.csv');
    await writeFile(file, 'id,v\n1,1\n2,"multi\nline"\n3,5000\n');
    const before = await rowsText(tdb.t('nums'));
    const r = await cli(['load', tdb.t('nums'), file, '--dry-run', ...pg, ...QUEUE_ARGS]);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toContain('dry run: nothing is written');
    expect(r.out).toMatch(/problem: +DATA_ERROR: .*dry\.csv line 3: .*column v/);
    // Every problem of the sample, as --on-error skip would find them.
    expect(r.out).toMatch(/problem: +CHECK_VIOLATION: .*dry\.csv line 5: .*nums_v_check/);
    expect(await rowsText(tdb.t('nums'))).toEqual(before);
    await writeFile(file, 'id,v\n1,1\n2,2\n');
    const ok = await cli(['load', `${tdb.schema}.never`, file, '--create', '--dry-run', ...pg]);
    expect(ok.code, ok.out).toBe(0);
    expect(ok.out).toContain('would create the table');
    expect(ok.out).toMatch(/ok: +the first 2 rows went in \(rolled back\)/);
    const left = await tdb.pool.query('SELECT to_regclass($1) AS t', [`${tdb.schema}.never`]);
    expect(left.rows[0].t).toBeNull();
  });
});

describe('a load that stops', () => {
  it('CSV: names the failing file line, and how many rows committed from which lines — as the table holds', async () => {
    await tdb.pool.query(`TRUNCATE ${tdb.t('nums')}`);
    const lines = ['id,v'];
    for (let i = 1; i <= 12; i++) lines.push(i === 8 ? `${i},"not a number"` : `${i},${i}`);
    const file = join(dir, 'stop.csv');
    await writeFile(file, `${lines.join('\n')}\n`);
    const r = await cli(['load', tdb.t('nums'), file, '--batch-size', '3', ...via]);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/error DATA_ERROR: .*stop\.csv line 9: .*column v/);
    expect(r.out).not.toContain('not a number');
    const m =
      /(\d+) rows of 12 read had committed before it stopped and stay in the table \(file lines ([^)]*)\)/.exec(
        r.out,
      );
    expect(m, r.out).not.toBeNull();
    const ids = (await tdb.pool.query(`SELECT id FROM ${tdb.t('nums')} ORDER BY id`)).rows.map(
      (x) => x.id as number,
    );
    expect(Number(m![1])).toBe(ids.length);
    // File line L holds id L-1: the lines reported are exactly the rows in the table.
    const reported: number[] = [];
    for (const span of m![2]!.split(/, | and /)) {
      const [a, b] = span.split('-').map(Number) as [number, number?];
      for (let l = a; l <= (b ?? a); l++) reported.push(l - 1);
    }
    expect(reported).toEqual(ids);
    expect(ids).not.toContain(7);
    expect(ids).not.toContain(8);
  });

  it('NDJSON with multi-line records: the row Postgres refused is named by its file line, not its index', async () => {
    await tdb.pool.query(`TRUNCATE ${tdb.t('nums')}`);
    const records: string[] = [];
    for (let i = 1; i <= 6; i++)
      records.push(
        i % 2 ? `{"id": ${i},\n "v": ${i}}` : `{"id": ${i}, "v": ${i === 6 ? 5000 : i}}`,
      );
    // Lines: 1-2, 3, 4-5, 6, 7-8, 9: record 6 (index 5) starts on line 9.
    const file = join(dir, 'stop.ndjson');
    await writeFile(file, `${records.join('\n')}\n`);
    const r = await cli(['load', tdb.t('nums'), file, '--batch-size', '2', ...via]);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/error CHECK_VIOLATION: .*stop\.ndjson line 9: /);
    expect(r.out).not.toMatch(/row 5/);
    const n = (await tdb.pool.query(`SELECT count(*)::int AS n FROM ${tdb.t('nums')}`)).rows[0].n;
    expect(r.out).toContain(`${n} rows of 6 read had committed`);
  });
});

describe('--on-error skip', () => {
  it('skips the records Postgres refuses, writes them verbatim to the rejects file with line and reason, loads the rest once', async () => {
    await tdb.pool.query(`TRUNCATE ${tdb.t('nums')}`);
    const lines = ['id,v,note'];
    for (let i = 1; i <= 20; i++) {
      if (i === 4) lines.push('4,x,"multi\nline ""q"""');
      else if (i === 9) lines.push('9,5000,too big');
      else if (i === 12) lines.push('3,1,a second id 3');
      else lines.push(`${i},${i},ok`);
    }
    const file = join(dir, 'skip.csv');
    await writeFile(file, `${lines.join('\n')}\n`);
    const rejects = join(dir, 'skipped.csv');
    const r = await cli([
      'load',
      tdb.t('nums'),
      file,
      '--on-error',
      'skip',
      '--rejects',
      rejects,
      '--batch-size',
      '5',
      ...via,
    ]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/loaded 17 of 20 rows/);
    // Two records carry id 3 (lines 4 and 14): chunks commit in either order, and the one
    // that comes second is refused.
    const m = /rejected 3 records \(file lines (4, 5 and 11|5, 11 and 14)\)/.exec(r.out);
    expect(m, r.out).not.toBeNull();
    const dupFirst = m![1]!.startsWith('4');
    const ids = (await tdb.pool.query(`SELECT id FROM ${tdb.t('nums')} ORDER BY id`)).rows.map(
      (x) => x.id as number,
    );
    expect(ids).toEqual([1, 2, 3, 5, 6, 7, 8, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20]);
    const kept = await tdb.pool.query(`SELECT note FROM ${tdb.t('nums')} WHERE id = 3`);
    expect(kept.rows[0].note).toBe(dupFirst ? 'a second id 3' : 'ok');
    const records = ['4,x,"multi\nline ""q"""\n', '9,5000,too big\n'];
    if (dupFirst) records.unshift('3,3,ok\n');
    else records.push('3,1,a second id 3\n');
    expect(await readFile(rejects, 'utf8')).toBe(`id,v,note\n${records.join('')}`);
    const log = (await readFile(`${rejects}.log`, 'utf8')).split('\n').filter(Boolean);
    expect(log).toHaveLength(3);
    expect(log).toContainEqual(expect.stringMatching(/^line 5: DATA_ERROR: .*column v$/));
    expect(log).toContainEqual(expect.stringMatching(/^line 11: CHECK_VIOLATION: .*nums_v_check/));
    expect(log).toContainEqual(
      expect.stringMatching(
        new RegExp(`^line ${dupFirst ? 4 : 14}: UNIQUE_VIOLATION: .*nums_pkey`),
      ),
    );
    // No values in what travelled through the queue.
    expect(log.join('\n')).not.toMatch(/too big|5000|multi/);
    // The rejects file, fixed, loads on its own.
    await writeFile(rejects, 'id,v,note\n4,4,fixed\n9,9,fixed\n');
    const again = await cli(['load', tdb.t('nums'), rejects, ...via]);
    expect(again.code, again.out).toBe(0);
    expect(
      (await tdb.pool.query(`SELECT count(*)::int AS n FROM ${tdb.t('nums')}`)).rows[0].n,
    ).toBe(19);
  });

  it('counts lines as Postgres does: after a first record with a CRLF inside quotes, the bad record is the one skipped', async () => {
    await tdb.pool.query(`TRUNCATE ${tdb.t('nums')}`);
    const file = join(dir, 'crlf-first.csv');
    await writeFile(file, 'id,v,note\n1,1,"multi\r\nline"\n2,x,bad\n3,3,ok\n');
    const r = await cli(['load', tdb.t('nums'), file, '--on-error', 'skip', ...via]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/rejected 1 records \(file lines 4\)/);
    const ids = (await tdb.pool.query(`SELECT id FROM ${tdb.t('nums')} ORDER BY id`)).rows;
    expect(ids.map((x) => x.id)).toEqual([1, 3]);
    expect(await readFile(join(dir, 'crlf-first.rejects.csv'), 'utf8')).toBe(
      'id,v,note\n2,x,bad\n',
    );
  });

  it('a skipping load that stops still writes what its committed chunks skipped, and leaves those lines out', async () => {
    await tdb.pool.query(`TRUNCATE ${tdb.t('nums')}`);
    // One worker running one chunk at a time: chunk 0 (lines 2-4) commits skipping line 3;
    // chunk 1 (lines 5-7) has two bad records, one more than --max-errors 1.
    const file = join(dir, 'skip-stop.csv');
    await writeFile(file, 'id,v\n1,1\n2,x\n3,3\n4,y\n5,z\n6,6\n');
    const rejects = join(dir, 'skip-stop.rejects.csv');
    const r = await cli([
      'load',
      tdb.t('nums'),
      file,
      '--on-error',
      'skip',
      '--max-errors',
      '1',
      '--batch-size',
      '3',
      '--concurrency',
      '1',
      ...own('skip-stop'),
    ]);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(
      /2 rows of 6 read had committed before it stopped and stay in the table \(file lines 2 and 4\)/,
    );
    expect(r.out).toMatch(/those chunks skipped 1 records \(file lines 3\)/);
    expect(await readFile(rejects, 'utf8')).toBe('id,v\n2,x\n');
    const ids = (await tdb.pool.query(`SELECT id FROM ${tdb.t('nums')} ORDER BY id`)).rows;
    expect(ids.map((x) => x.id)).toEqual([1, 3]);
  });

  it('without a header the rejects file holds the records alone', async () => {
    await tdb.pool.query(`TRUNCATE ${tdb.t('nums')}`);
    const file = join(dir, 'nohead.csv');
    await writeFile(file, '1,1\n2,x\n');
    const r = await cli([
      'load',
      tdb.t('nums'),
      file,
      '--no-header',
      '--columns',
      'id,v',
      '--on-error',
      'skip',
      ...via,
    ]);
    expect(r.code, r.out).toBe(0);
    expect(await readFile(join(dir, 'nohead.rejects.csv'), 'utf8')).toBe('2,x\n');
    const inputAgain = await cli([
      'load',
      tdb.t('nums'),
      file,
      '--on-error',
      'skip',
      '--rejects',
      file,
      '--no-header',
      '--columns',
      'id,v',
      ...via,
    ]);
    expect(inputAgain.code, inputAgain.out).toBe(2);
    expect(inputAgain.out).toContain('--rejects names the input file');
  });

  for (const format of ['ndjson', 'json'] as const) {
    it(`${format}: skips records that do not read, that the encoder refuses and that Postgres refuses, by file line`, async () => {
      await tdb.pool.query(`TRUNCATE ${tdb.t('nums')}`);
      const records = [
        '{"id": 1, "v": 1}',
        '{"id": 2,\n  "v": "x"}', // lines 2-3: not a number (the encoder refuses it)
        '{"id": 3, "v": {"a": 1}}', // line 4: an object for a number (the reader refuses it)
        '{"id": 4, "v": 99999999999}', // line 5: the CHECK refuses it (Postgres)
        '{"id": 5, "v": 5}',
        '{"id": 6,\n "v": 5000, "note": "tab\\there"}', // lines 7-8: the CHECK again
        '{"id": 7, "v": 7}',
      ];
      const text = format === 'json' ? `[\n${records.join(',\n')}\n]\n` : `${records.join('\n')}\n`;
      // The JSON array's opening bracket is line 1: every record is one line further down.
      const at = (l: number) => (format === 'json' ? l + 1 : l);
      const file = join(dir, `skip-rows.${format}`);
      await writeFile(file, text);
      const r = await cli([
        'load',
        tdb.t('nums'),
        file,
        '--on-error',
        'skip',
        '--batch-size',
        '2',
        ...via,
      ]);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toContain(
        `rejected 4 records (file lines ${at(2)}, ${at(4)}, ${at(5)} and ${at(7)})`,
      );
      const ids = (await tdb.pool.query(`SELECT id FROM ${tdb.t('nums')} ORDER BY id`)).rows;
      expect(ids.map((x) => x.id)).toEqual([1, 5, 7]);
      const rejects = await readFile(join(dir, `skip-rows.rejects.${format}`), 'utf8');
      const kept = [records[1], records[2], records[3], records[5]];
      expect(rejects).toBe(
        format === 'json' ? `[\n${kept.join(',\n')}\n]\n` : `${kept.join('\n')}\n`,
      );
      // The rejects file is the input's format: it reads back as four records.
      if (format === 'json') expect(JSON.parse(rejects)).toHaveLength(4);
      const log = (await readFile(join(dir, `skip-rows.rejects.${format}.log`), 'utf8'))
        .split('\n')
        .filter(Boolean);
      expect(log.map((l) => l.split(':').slice(0, 2).join(':'))).toEqual([
        `line ${at(2)}: INVALID_VALUE`,
        `line ${at(4)}: INVALID_VALUE`,
        `line ${at(5)}: CHECK_VIOLATION`,
        `line ${at(7)}: CHECK_VIOLATION`,
      ]);
      expect(log.join('\n')).not.toMatch(/99999999999|5000|tab/);
    });
  }

  it('--max-errors bounds what one chunk may skip: one more stops the load as --on-error stop does', async () => {
    await tdb.pool.query(`TRUNCATE ${tdb.t('nums')}`);
    const file = join(dir, 'many-bad.csv');
    await writeFile(file, 'id,v\n1,a\n2,b\n3,3\n');
    const r = await cli([
      'load',
      tdb.t('nums'),
      file,
      '--on-error',
      'skip',
      '--max-errors',
      '1',
      '--rejects',
      join(dir, 'mb.csv'),
      ...via,
    ]);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/error DATA_ERROR: .*many-bad\.csv line 3: .*after 1 skipped records/);
    expect(r.out).toContain('nothing had committed');
    expect(
      (await tdb.pool.query(`SELECT count(*)::int AS n FROM ${tdb.t('nums')}`)).rows[0].n,
    ).toBe(0);
    const upsert = await cli([
      'load',
      tdb.t('nums'),
      file,
      '--on-error',
      'skip',
      '--on-conflict',
      'ignore',
      ...via,
    ]);
    expect(upsert.code, upsert.out).toBe(2);
    expect(upsert.out).toContain('--on-error skip is for plain inserts');
  });
});

describe('refused before anything is written', () => {
  it('bad flags exit 2; a damaged gzip, a JSON file that is not an array exit 1 with the line', async () => {
    const nd = join(dir, 'x.ndjson');
    await writeFile(nd, '{"id":1}\n');
    const notGz = join(dir, 'fake.csv.gz');
    await writeFile(notGz, 'id,v\n1,1\n');
    const notArray = join(dir, 'obj.json');
    await writeFile(notArray, '\n\n{"id": 1}\n');
    const existing = join(dir, 'for-existing.csv');
    await writeFile(existing, 'id,v\n1,1\n');
    const trailing = join(dir, 'trailing.json');
    await writeFile(trailing, '[{"id": 1},\n]\n');
    const truncated = join(dir, 'cut.json.gz');
    await writeFile(truncated, gzipSync('[{"id": 1}, {"id": 2').subarray(0, 20));
    const before = await rowsText(tdb.t('nums'));
    const cases = await Promise.all([
      cli(['load', tdb.t('nums'), nd, '--null', 'NA', ...via]),
      cli(['load', tdb.t('nums'), existing, '--format', 'csv', '--no-header', ...via]),
      cli(['load', tdb.t('nums'), '-', ...via], ''),
      cli(['load', tdb.t('nums'), existing, '--format', 'csv', '--delimiter', 'ab', ...via]),
      cli(['load', tdb.t('hostile'), existing, '--create', ...via]),
      cli(['load', tdb.t('nums'), notGz, ...via]),
      cli(['load', tdb.t('nums'), notArray, ...via]),
      cli(['load', tdb.t('nums'), truncated, ...via]),
      cli(['load', tdb.t('nums'), trailing, ...via]),
    ]);
    const [nullJson, noHeader, stdinNoFormat, delim, exists, fakeGz, obj, cut, comma] = cases;
    expect(comma!.code, comma!.out).toBe(1);
    expect(comma!.out).toMatch(/error INVALID_ROW: .*trailing\.json line 2: expected an object/);
    expect(nullJson!.code, nullJson!.out).toBe(2);
    expect(nullJson!.out).toContain('--null is for csv and tsv files');
    expect(noHeader!.code, noHeader!.out).toBe(2);
    expect(noHeader!.out).toContain('--no-header needs --columns');
    expect(stdinNoFormat!.code, stdinNoFormat!.out).toBe(2);
    expect(stdinNoFormat!.out).toContain('needs --format');
    expect(delim!.code, delim!.out).toBe(2);
    expect(delim!.out).toContain('delimiter must be one ASCII character');
    expect(exists!.code, exists!.out).toBe(2);
    expect(exists!.out).toContain('exists already');
    expect(fakeGz!.code, fakeGz!.out).toBe(1);
    expect(fakeGz!.out).toMatch(/error FILE_ERROR: .*fake\.csv\.gz: not a gzip file/);
    expect(obj!.code, obj!.out).toBe(1);
    expect(obj!.out).toMatch(
      /error INVALID_ROW: .*obj\.json line 3: a JSON file must hold one array/,
    );
    expect(cut!.code, cut!.out).toBe(1);
    expect(cut!.out).toMatch(/error FILE_ERROR: .*cut\.json\.gz/);
    // Nothing of any of them reached the table.
    expect(await rowsText(tdb.t('nums'))).toEqual(before);
  });
});
