import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RAW_TEXT_TYPES } from '../../src/core/decode.js';
import { loadTableMeta, type TableMeta } from '../../src/core/meta.js';
import { buildCopyIn, buildCopyOut } from '../../src/core/sql/copy.js';
import { buildInsert, jsonSource, onConflictSql } from '../../src/core/sql/insert.js';
import { buildBatchEnd, buildUpdateAll, buildUpdateRange } from '../../src/core/sql/update.js';
import { buildUpdateFields } from '../../src/core/sql/updateFields.js';
import { buildWhere, dollarParams, settingParams } from '../../src/core/sql/where.js';
import { BulkError } from '../../src/index.js';
import { type TestDb, testDb } from '../helpers.js';

let tdb: TestDb;
let meta: TableMeta;
let T: string;
beforeAll(async () => {
  tdb = await testDb('whereu');
  await tdb.pool.query(
    `CREATE TABLE ${tdb.t('w')} (id int PRIMARY KEY, name varchar(5), n numeric(6,2), tags text[], "odd""col" text, ch char(3), bi bit(3))`,
  );
  await tdb.pool.query(
    `INSERT INTO ${tdb.t('w')} VALUES (1, 'a', 1.5, '{x,y}', 'q', 'ab', '101'), (2, NULL, 2, '{}', NULL, 'abc', '111'), (3, 'abcde', NULL, NULL, 'z', NULL, NULL)`,
  );
  meta = await loadTableMeta(tdb.pool, tdb.t('w'));
  T = meta.sqlName;
});
afterAll(() => tdb.close());

async function ids(where: Record<string, unknown>): Promise<number[]> {
  const w = buildWhere(meta, where, dollarParams(1), 't');
  const r = await tdb.pool.query(
    `SELECT t.id FROM ${T} AS t${w.sql ? ` WHERE ${w.sql}` : ''} ORDER BY t.id`,
    w.values,
  );
  return r.rows.map((x) => x.id);
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BulkError);
    return (err as BulkError).code;
  }
  return undefined;
}

describe('buildWhere', () => {
  it('compiles to quoted identifiers, typed parameters and literal values', () => {
    expect(buildWhere(meta, { id: 3 }, dollarParams(1), 't')).toEqual({
      sql: 't."id" = $1::integer',
      values: ['3'],
    });
    expect(buildWhere(meta, { id: [1, 2], name: null }, dollarParams(4))).toEqual({
      sql: '"id" = ANY($4::text[]::integer[]) AND "name" IS NULL',
      values: [['1', '2']],
    });
    expect(
      buildWhere(
        meta,
        { n: { gt: '1.5', lte: 3, ne: 2 }, 'odd"col': { isNull: false } },
        dollarParams(1),
        't',
      ),
    ).toEqual({
      sql: 't."n" > $1::numeric AND t."n" <= $2::numeric AND t."n" <> $3::numeric AND t."odd""col" IS NOT NULL',
      values: ['1.5', '3', '2'],
    });
    expect(buildWhere(meta, { tags: ['x', null] }, dollarParams(1))).toEqual({
      sql: '"tags" = $1::text[]',
      values: ['{"x",NULL}'],
    });
    expect(buildWhere(meta, { id: [] }, dollarParams(1)).sql).toBe('false');
    expect(buildWhere(meta, {}, dollarParams(1))).toEqual({ sql: '', values: [] });
    expect(buildWhere(meta, undefined, dollarParams(1))).toEqual({ sql: '', values: [] });
    expect(buildWhere(meta, { id: { eq: 1 } }, settingParams, 't').sql).toBe(
      't."id" = current_setting(\'bulkmodel.w0\')::integer',
    );
  });

  it('runs: every operator selects the right rows', async () => {
    expect(await ids({ id: 2 })).toEqual([2]);
    expect(await ids({ id: [3, 1] })).toEqual([1, 3]);
    expect(await ids({ name: null })).toEqual([2]);
    expect(await ids({ name: { isNull: false } })).toEqual([1, 3]);
    expect(await ids({ name: { eq: 'a' } })).toEqual([1]);
    expect(await ids({ n: { ne: 2 } })).toEqual([1]);
    expect(await ids({ n: { gte: '1.50', lt: 2 } })).toEqual([1]);
    expect(await ids({ n: { gt: 1.5 } })).toEqual([2]);
    expect(await ids({ n: { lte: 2 } })).toEqual([1, 2]);
    expect(await ids({ name: { in: ['a', 'abcde', "x'; --"] } })).toEqual([1, 3]);
    expect(await ids({ tags: ['x', 'y'] })).toEqual([1]);
    expect(await ids({ tags: [] })).toEqual([2]);
    expect(await ids({ 'odd"col': 'z' })).toEqual([3]);
    expect(await ids({ name: { ne: null } })).toEqual([1, 3]);
    expect(await ids({})).toEqual([1, 2, 3]);
    // membership of whole array values
    expect(await ids({ tags: { in: [['x', 'y'], []] } })).toEqual([1, 2]);
    expect(await ids({ tags: { in: [['x']] } })).toEqual([]);
    // char(n) and bit(n): the filter value is not cut to one character or bit
    expect(await ids({ ch: 'ab' })).toEqual([1]);
    expect(await ids({ ch: { in: ['abc', 'zz'] } })).toEqual([2]);
    expect(await ids({ bi: '111' })).toEqual([2]);
    // values longer than the column's length compare in full, not cut short
    expect(await ids({ name: 'abcdef' })).toEqual([]);
    expect(await ids({ name: ['abcdefg'] })).toEqual([]);
  });

  it('refuses unknown columns, bad values and bad shapes', () => {
    expect(codeOf(() => buildWhere(meta, { nope: 1 }, dollarParams(1)))).toBe('UNKNOWN_COLUMN');
    expect(codeOf(() => buildWhere(meta, { 'id" OR 1=1 --': 1 }, dollarParams(1)))).toBe(
      'UNKNOWN_COLUMN',
    );
    expect(codeOf(() => buildWhere(meta, { id: 'x' }, dollarParams(1)))).toBe('INVALID_VALUE');
    expect(codeOf(() => buildWhere(meta, { id: [1, null] }, dollarParams(1)))).toBe(
      'INVALID_OPTION',
    );
    expect(codeOf(() => buildWhere(meta, { tags: { in: [null] } }, dollarParams(1)))).toBe(
      'INVALID_OPTION',
    );
    // a filter value belongs to no row
    let err: unknown;
    try {
      buildWhere(meta, { name: 'nul\u0000' }, dollarParams(1));
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'INVALID_VALUE', column: 'name' });
    expect((err as { row?: number }).row).toBeUndefined();
    expect(codeOf(() => buildWhere(meta, { id: { gt: null } }, dollarParams(1)))).toBe(
      'INVALID_OPTION',
    );
    expect(codeOf(() => buildWhere(meta, { id: { in: 5 } }, dollarParams(1)))).toBe(
      'INVALID_OPTION',
    );
    expect(codeOf(() => buildWhere(meta, [] as never, dollarParams(1)))).toBe('INVALID_OPTION');
    expect(codeOf(() => buildWhere(meta, 'id = 1' as never, dollarParams(1)))).toBe(
      'INVALID_OPTION',
    );
  });
});

describe('statement builders', () => {
  const cols = () => ['id', 'name', 'n'].map((c) => meta.byName.get(c)!);

  it('onConflictSql', () => {
    expect(onConflictSql(undefined)).toBe('');
    expect(onConflictSql('ignore')).toBe(' ON CONFLICT DO NOTHING');
    expect(onConflictSql({ target: ['id'], update: ['name', 'odd"col'] })).toBe(
      ' ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name", "odd""col" = EXCLUDED."odd""col"',
    );
    expect(onConflictSql({ target: ['id'], update: [] })).toBe(' ON CONFLICT ("id") DO NOTHING');
  });

  it('buildInsert: one JSON document, typed casts, runs', async () => {
    const text = buildInsert(meta, cols(), jsonSource(cols()), { onConflict: 'ignore' });
    expect(text).toBe(
      `INSERT INTO ${T} AS t ("id", "name", "n") SELECT c0, c1, c2 FROM (SELECT x.i, (x.e->>0)::integer AS c0, (x.e->>1)::character varying AS c1, (x.e->>2)::numeric AS c2 FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, i)) AS src ON CONFLICT DO NOTHING`,
    );
    const r = await tdb.pool.query(text, [
      JSON.stringify([
        ['10', 'b\t"', '9.99'],
        ['1', 'dup', null],
      ]),
    ]);
    expect(r.rowCount).toBe(1);
    const ret = buildInsert(meta, cols(), jsonSource(cols()), {
      returning: { columns: [meta.byName.get('id')!, meta.byName.get('n')!], pairKey: ['id'] },
    });
    expect(ret).toContain('RETURNING t."id", t."n"');
    // each column's own output text: no ::text cast (it trims char(n), adds inet's /32)
    expect(ret).toContain('SELECT DISTINCT ON (ins."id") src.i, ins."id", ins."n" FROM');
    const r2 = await tdb.pool.query({
      text: ret,
      values: [
        JSON.stringify([
          ['20', null, '1'],
          ['21', 'x', null],
        ]),
      ],
      rowMode: 'array',
      types: RAW_TEXT_TYPES,
    });
    expect(r2.rows.sort()).toEqual([
      ['1', '20', '1.00'],
      ['2', '21', null],
    ]);
    await expect(
      tdb.pool.query(text.replace(' ON CONFLICT DO NOTHING', ''), [
        JSON.stringify([['30', 'toolong', null]]),
      ]),
    ).rejects.toMatchObject({ code: '22001' });
    await tdb.pool.query(`DELETE FROM ${T} WHERE id >= 10`);
  });

  it('buildUpdateFields: UPDATE ... FROM the document, RETURNING ordinals', async () => {
    const g = {
      columns: [meta.byName.get('id')!, meta.byName.get('name')!],
      rowIdx: [0, 1],
      values: [
        ['3', 'zz'],
        ['99', 'no'],
      ],
    };
    const st = buildUpdateFields(meta, g, 1);
    expect(st.text).toBe(
      `WITH v AS MATERIALIZED (SELECT x.i, (x.e->>0)::integer AS c0, (x.e->>1)::character varying AS c1 FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, i)) ` +
        `UPDATE ONLY ${T} AS t SET "name" = v.c1 FROM v WHERE t."id" = v.c0 RETURNING v.i`,
    );
    expect(st.values).toEqual(['[["3","zz"],["99","no"]]']);
    const client = await tdb.pool.connect();
    try {
      await client.query('BEGIN');
      const r = await client.query({ text: st.text, values: st.values, rowMode: 'array' });
      expect(r.rows).toEqual([['1']]);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
  });

  it('buildBatchEnd / buildUpdateRange / buildUpdateAll', async () => {
    const key = [meta.byName.get('id')!];
    const sel = buildBatchEnd(meta, key, 't."n" IS NOT NULL', [], ['1'], 10);
    expect(sel).toEqual({
      text: `SELECT t."id"::text FROM ONLY ${T} AS t WHERE t."n" IS NOT NULL AND (t."id") > ($1::integer) ORDER BY t."id" OFFSET $2 LIMIT 1`,
      values: ['1', 9],
    });
    // Fewer than 10 rows after key 1: no end key, the range is open.
    const rs = await tdb.pool.query({ text: sel.text, values: sel.values, rowMode: 'array' });
    expect(rs.rows).toEqual([]);
    const one = buildBatchEnd(meta, key, '', [], null, 1);
    expect(
      (await tdb.pool.query({ text: one.text, values: one.values, rowMode: 'array' })).rows,
    ).toEqual([['1']]);
    const set = [{ col: meta.byName.get('name')!, lit: 'new' }];
    const up = buildUpdateRange(meta, key, set, 't."id" > $1::integer', ['0'], ['0'], ['3']);
    expect(up).toEqual({
      text: `UPDATE ONLY ${T} AS t SET "name" = $2::character varying WHERE t."id" > $1::integer AND (t."id") > ($3::integer) AND (t."id") <= ($4::integer)`,
      values: ['0', 'new', '0', '3'],
    });
    const open = buildUpdateRange(meta, key, set, '', [], ['1'], null);
    expect(open.text).toBe(
      `UPDATE ONLY ${T} AS t SET "name" = $1::character varying WHERE (t."id") > ($2::integer)`,
    );
    const all = buildUpdateAll(meta, set, 't."id" = $2::integer', ['2']);
    expect(all).toEqual({
      text: `UPDATE ONLY ${T} AS t SET "name" = $1::character varying WHERE t."id" = $2::integer`,
      values: ['new', '2'],
    });
    const client = await tdb.pool.connect();
    try {
      await client.query('BEGIN');
      expect((await client.query(up.text, up.values)).rowCount).toBe(3);
      expect((await client.query(open.text, open.values)).rowCount).toBe(2);
      expect((await client.query(all.text, all.values)).rowCount).toBe(1);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
  });

  it('buildCopyIn / buildCopyOut', () => {
    expect(buildCopyIn(meta, cols())).toBe(`COPY ${T} ("id", "name", "n") FROM STDIN`);
    // Always the query form (it also reads views, partitioned tables and generated columns).
    expect(buildCopyOut(meta, cols(), '', 'text')).toBe(
      `COPY (SELECT t."id", t."name", t."n" FROM ONLY ${T} AS t) TO STDOUT`,
    );
    expect(buildCopyOut(meta, cols(), 't."id" = 1', 'csv')).toBe(
      `COPY (SELECT t."id", t."name", t."n" FROM ONLY ${T} AS t WHERE t."id" = 1) TO STDOUT WITH (FORMAT csv, HEADER true)`,
    );
  });
});
