import { execFileSync } from 'node:child_process';
import type pg from 'pg';
import { DATABASE_URL } from './helpers.js';

/**
 * A table with a column of every built-in type family (arrays of them, a domain, an enum, a
 * composite, ranges, geometric types), and rows of hostile values in each: limits, NULL and
 * empty, -0, NaN, huge numerics, unicode, quotes, backslashes, json text as written. Filled by
 * psql itself, the reference client; each path under test copies it into a twin table, and the
 * two are compared by a digest of `t::text`, row by row.
 */

/** Column name, SQL type, and one SQL literal per row (null: SQL NULL). */
type Col = [name: string, type: string, values: (string | null)[]];

const q = (s: string) => `'${s.replace(/'/g, "''")}'`;
const HOSTILE = [
  'tab\there',
  'new\nline\r\nand crlf',
  'back\\slash \\N \\. \\x00',
  `quotes ' and " and ""`,
  '{braces,comma} (parens) [brackets]',
  'NULL',
  '',
  ' leading and trailing ',
  'émoji 😀 中文 \u2028 \u2029 \u200b',
];
const ROWS = HOSTILE.length;
/** Cycle a list of literals over the rows. */
const each = (vals: (string | null)[]): (string | null)[] =>
  Array.from({ length: ROWS }, (_, i) => vals[i % vals.length]!);

export const COLS: Col[] = [
  ['b', 'boolean', each(['true', 'false', null])],
  ['i2', 'smallint', each(['-32768', '32767', '0', null])],
  ['i4', 'integer', each(['-2147483648', '2147483647', '0', null])],
  ['i8', 'bigint', each(['-9223372036854775808', '9223372036854775807', '9007199254740993', null])],
  [
    'num',
    'numeric',
    each([
      q(`1${'0'.repeat(999)}.${'9'.repeat(100)}`),
      q('-0.000000000000000000001'),
      q('NaN'),
      q('Infinity'),
      q('-Infinity'),
      q('1.10'),
      null,
    ]),
  ],
  ['n12', 'numeric(12,2)', each([q('9999999999.99'), q('-0.50'), q('0'), null])],
  [
    'f8',
    'double precision',
    each([
      q('-0'),
      q('NaN'),
      q('Infinity'),
      q('-Infinity'),
      q('1.7976931348623157e308'),
      q('5e-324'),
      q('0.1'),
      null,
    ]),
  ],
  ['f4', 'real', each([q('-0'), q('3.4028235e38'), q('1e-45'), q('0.1'), q('NaN'), null])],
  ['mon', 'money', each([q('-92233720368547758.08'), q('1.5'), q('0'), null])],
  ['t', 'text', HOSTILE.map(q)],
  ['vc', 'varchar(40)', HOSTILE.map(q)],
  ['ch', 'char(5)', each([q('ab'), q(''), q('abcde'), q('é'), null])],
  ['nm', 'name', each([q('name "x"'), q(''), null])],
  ['c1', '"char"', each([q('a'), q('\\'), null])],
  [
    'by',
    'bytea',
    each([
      `decode(${q(Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0')).join(''))}, 'hex')`,
      q('\\x'),
      null,
    ]),
  ],
  [
    'js',
    'json',
    each([
      q('{"a":1,"a":2}'),
      q('  {\n  "k" : [1, 2.50, 1e400, -0, "\\u2028\\u0041"]\n}  '),
      q('"just a string"'),
      q('null'),
      q('123456789012345678901234567890'),
      null,
    ]),
  ],
  [
    'jb',
    'jsonb',
    each([
      q(
        '{"big": 12345678901234567890, "tiny": 1e-400, "huge": 1e400, "x": 1.10, "z": 0.0, "m": -0}',
      ),
      q('[1, "two", null, true, {"nested": [[]]}]'),
      q('"a string"'),
      q('null'),
      q('{"__proto__": {"isAdmin": true}, "constructor": 1}'),
      null,
    ]),
  ],
  [
    'd',
    'date',
    each([
      q('infinity'),
      q('-infinity'),
      q('4713-01-01 BC'),
      q('2026-02-28'),
      q('5874897-12-31'),
      null,
    ]),
  ],
  ['tm', 'time', each([q('00:00:00'), q('23:59:59.999999'), q('24:00:00'), null])],
  ['tmz', 'timetz', each([q('12:34:56.789012+05:30'), q('00:00:00-15:59'), null])],
  [
    'ts',
    'timestamp',
    each([
      q('infinity'),
      q('-infinity'),
      q('2026-01-02 03:04:05.678901'),
      q('0001-01-01 00:00:00 BC'),
      q('294276-12-31 23:59:59.999999'),
      null,
    ]),
  ],
  [
    'tz',
    'timestamptz',
    each([
      q('2026-01-02 03:04:05.678901+00'),
      q('1900-01-01 00:00:00+00'),
      q('infinity'),
      q('2000-02-29 12:00:00.000001-08'),
      null,
    ]),
  ],
  [
    'iv',
    'interval',
    each([
      q('1 year 2 mons 3 days 04:05:06.789012'),
      q('-1 days +00:00:00.000001'),
      q('00:00:00'),
      q('-178000000 years'),
      q('P1Y2M3DT4H5M6.5S'),
      null,
    ]),
  ],
  [
    'u',
    'uuid',
    each([
      q('00000000-0000-0000-0000-000000000000'),
      q('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
      null,
    ]),
  ],
  ['inet', 'inet', each([q('10.0.0.1'), q('10.0.0.0/8'), q('::1'), q('2001:db8::1/64'), null])],
  ['cidr', 'cidr', each([q('10.0.0.0/8'), q('2001:db8::/32'), null])],
  ['mac', 'macaddr', each([q('08:00:2b:01:02:03'), null])],
  ['mac8', 'macaddr8', each([q('08:00:2b:01:02:03:04:05'), null])],
  ['bt', 'bit(3)', each([q('101'), q('000'), null])],
  ['vb', 'bit varying(8)', each([q(''), q('1'), q('10101010'), null])],
  ['tsv', 'tsvector', each([q("'a':1 'b\\\\c':2 'it''s'"), q(''), null])],
  ['tsq', 'tsquery', each([q("'a' & !'b' | 'c\\\\d'"), null])],
  ['pt', 'point', each([q('(1.5,-0)'), q('(1e308,-1e-308)'), q('(NaN,Infinity)'), null])],
  ['ln', 'line', each([q('{1,-1,0}'), null])],
  ['lseg', 'lseg', each([q('[(0,0),(1,1)]'), null])],
  ['box', 'box', each([q('(1,1),(0,0)'), null])],
  ['path', 'path', each([q('[(0,0),(1,1),(2,0)]'), q('((0,0),(1,1))'), null])],
  ['poly', 'polygon', each([q('((0,0),(1,1),(1,0))'), null])],
  ['circ', 'circle', each([q('<(1,2),3>'), q('<(0,-0),0.5>'), null])],
  ['x', 'xml', each([q('<a b="c">t &amp; "q"</a>'), q(''), null])],
  ['oid', 'oid', each([q('4294967295'), q('0'), null])],
  ['lsn', 'pg_lsn', each([q('16/B374D848'), null])],
  ['r4', 'int4range', each([q('[1,10)'), q('empty'), q('(,)'), null])],
  ['rn', 'numrange', each([q('[1.10,2.20]'), q('(,5)'), null])],
  ['rtz', 'tstzrange', each([q('["2026-01-01 00:00:00.000001+00",infinity)'), null])],
  ['rd', 'daterange', each([q('[2026-01-01,2026-02-01)'), null])],
  ['mr', 'int4multirange', each([q('{[1,3),[5,7)}'), q('{}'), null])],
  ['dom', 'DOMSCHEMA.short_text', each([q('ok'), q(''), q('tab\t'), null])],
  ['domi', 'DOMSCHEMA.pos_int', each(['1', '2147483647', null])],
  ['en', 'DOMSCHEMA.mood', each([q('happy'), q('sad "quoted"'), q('with space'), null])],
  [
    'comp',
    'DOMSCHEMA.pair',
    each([
      `ROW(${q('a,"b"\\c')}, 1.5)::DOMSCHEMA.pair`,
      `ROW(NULL, NULL)::DOMSCHEMA.pair`,
      `ROW('', -0)::DOMSCHEMA.pair`,
      null,
    ]),
  ],
  [
    'a_i4',
    'integer[]',
    each([q('{1,NULL,-3}'), q('{}'), q('{{1,2},{3,4}}'), q('[0:2]={7,8,9}'), null]),
  ],
  [
    'a_t',
    'text[]',
    each([
      `ARRAY[${HOSTILE.slice(0, 6).map(q).join(', ')}, NULL]`,
      q('{}'),
      q('{"",NULL,"NULL"}'),
      null,
    ]),
  ],
  ['a_num', 'numeric[]', each([q('{1.10,NaN,-Infinity,NULL}'), null])],
  ['a_f8', 'double precision[]', each([q('{-0,NaN,Infinity,1e-300}'), null])],
  ['a_b', 'boolean[]', each([q('{t,f,NULL}'), null])],
  ['a_by', 'bytea[]', each([q('{"\\\\x00ff","\\\\x",NULL}'), null])],
  ['a_js', 'json[]', each([q('{"{\\"a\\":1,\\"a\\":2}","[1, 2.50]",NULL,"null"}'), null])],
  ['a_jb', 'jsonb[]', each([q('{"{\\"n\\": 12345678901234567890}","\\"s\\""}'), null])],
  ['a_ts', 'timestamptz[]', each([q('{"2026-01-02 03:04:05.678901+00",infinity,NULL}'), null])],
  ['a_d', 'date[]', each([q('{2026-01-01,infinity,NULL}'), null])],
  ['a_u', 'uuid[]', each([q('{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}'), null])],
  ['a_iv', 'interval[]', each([q('{"1 day 00:00:00.000001",NULL}'), null])],
  ['a_pt', 'point[]', each([q('{"(1,2)","(-0,3.5)"}'), null])],
  ['a_en', 'DOMSCHEMA.mood[]', each([q('{happy,"sad \\"quoted\\""}'), null])],
  ['a_dom', 'DOMSCHEMA.short_text[]', each([q('{ok,"",NULL}'), null])],
  ['a_comp', 'DOMSCHEMA.pair[]', each([`ARRAY[ROW('x', 1)::DOMSCHEMA.pair, NULL]`, null])],
  ['a_mon', 'money[]', each([q('{1.50,-2}'), null])],
  // json (not jsonb) keeps escapes jsonb refuses, and whitespace; nested past 200 with an escape
  [
    'js2',
    'json',
    each([
      q('"\\u0000 and \\ud800"'),
      q(`${'['.repeat(250)}"\\u0041"${']'.repeat(250)}`),
      q(' [1] '),
      null,
    ]),
  ],
  // elements split by ';' (box), and the vectors that look like arrays but are not
  ['a_box', 'box[]', each([q('{(1,1),(0,0);(3,3),(2,2)}'), q('{}'), null])],
  ['i2v', 'int2vector', each([q('1 2 3'), q(''), null])],
  ['oidv', 'oidvector', each([q('26 23'), null])],
];

export function createSql(schema: string, table: string): string {
  const cols = COLS.map(([n, t]) => `"${n}" ${t.replace(/DOMSCHEMA/g, schema)}`).join(',\n  ');
  return `CREATE TABLE ${schema}.${table} (id int PRIMARY KEY,\n  ${cols})`;
}

export function typesSql(schema: string): string {
  return `
    CREATE DOMAIN ${schema}.short_text AS varchar(10) CHECK (VALUE <> 'bad');
    CREATE DOMAIN ${schema}.pos_int AS integer CHECK (VALUE > 0);
    CREATE TYPE ${schema}.mood AS ENUM ('happy', 'sad "quoted"', 'with space');
    CREATE TYPE ${schema}.pair AS (label text, weight numeric);`;
}

export function insertSql(schema: string, table: string): string {
  const rows = Array.from({ length: ROWS }, (_, i) => {
    const vals = COLS.map(([, , v]) => (v[i] ?? 'NULL').replace(/DOMSCHEMA/g, schema));
    return `(${i + 1}, ${vals.join(', ')})`;
  });
  // A row of all NULLs too.
  rows.push(`(${ROWS + 1}${', NULL'.repeat(COLS.length)})`);
  return `INSERT INTO ${schema}.${table} (id, ${COLS.map(([n]) => `"${n}"`).join(', ')}) VALUES\n${rows.join(',\n')}`;
}

/** Run SQL with psql itself (the reference client), as a script. */
export function psql(sql: string, args: string[] = []): string {
  return execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', DATABASE_URL, ...args], {
    input: sql,
    encoding: 'utf8',
    env: { ...process.env, PGTZ: 'UTC', PGDATESTYLE: 'ISO, MDY', PGCLIENTENCODING: 'UTF8' },
  });
}

/** A digest of each row's text, as Postgres prints it, in id order. */
export async function digest(pool: pg.Pool, table: string, columns?: string[]): Promise<string[]> {
  const cols = columns
    ? `(${columns.map((c) => `t."${c}"::text`).join(` || E'\\x1f' || `)})`
    : 't::text';
  const r = await pool.query(`SELECT id, ${cols} AS v FROM ${table} AS t ORDER BY id`);
  return r.rows.map((x) => `${x.id}|${x.v}`);
}

export const COLUMN_NAMES = COLS.map(([n]) => n);
export const ROW_COUNT = ROWS + 1;
