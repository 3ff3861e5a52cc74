import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type BulkClient, BulkError, type Where } from '../src/index.js';
import { type TestDb, testDb } from './helpers.js';
import { createHostileTables } from './hostile.js';

let tdb: TestDb;
let db: BulkClient;
beforeAll(async () => {
  tdb = await testDb('update');
  await createHostileTables(tdb.pool, tdb.schema);
  db = tdb.client();
});
afterAll(() => tdb.close());
beforeEach(async () => {
  await tdb.pool.query(
    `TRUNCATE ${tdb.t('hostile')}, ${tdb.t('uniq')}, ${tdb.t('pairs')}, ${tdb.t('nopk')} RESTART IDENTITY`,
  );
  // ids 1..10; n = id, name null for even ids; i8 beyond 2^53; ta arrays
  await tdb.pool.query(
    `INSERT INTO ${tdb.t('uniq')} (code, name, n) SELECT 'c' || g, CASE WHEN g % 2 = 1 THEN 'odd' || g END, g FROM generate_series(1, 10) g`,
  );
});

async function rejects(p: Promise<unknown>): Promise<BulkError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(BulkError);
    return err as BulkError;
  }
  throw new Error('expected a rejection');
}

async function flagged(): Promise<number[]> {
  const r = await tdb.pool.query(`SELECT id FROM ${tdb.t('uniq')} WHERE p = 1 ORDER BY id`);
  return r.rows.map((x) => x.id);
}

describe('update', () => {
  const cases: [string, Where, number[]][] = [
    ['equality', { n: 3 }, [3]],
    ['IN list', { id: [2, 4, 99] }, [2, 4]],
    ['empty IN list matches nothing', { id: [] }, []],
    ['null is IS NULL', { name: null }, [2, 4, 6, 8, 10]],
    ['eq', { n: { eq: 5 } }, [5]],
    ['eq null', { name: { eq: null } }, [2, 4, 6, 8, 10]],
    ['ne', { n: { ne: 5 } }, [1, 2, 3, 4, 6, 7, 8, 9, 10]],
    ['ne null', { name: { ne: null } }, [1, 3, 5, 7, 9]],
    ['gt', { n: { gt: 8 } }, [9, 10]],
    ['gte', { n: { gte: 8 } }, [8, 9, 10]],
    ['lt', { n: { lt: 3 } }, [1, 2]],
    ['lte', { n: { lte: 3 } }, [1, 2, 3]],
    ['range', { n: { gt: 2, lte: 4 } }, [3, 4]],
    ['in', { code: { in: ['c1', 'c10', "x'; drop table x; --"] } }, [1, 10]],
    ['isNull true', { name: { isNull: true } }, [2, 4, 6, 8, 10]],
    ['isNull false', { name: { isNull: false } }, [1, 3, 5, 7, 9]],
    ['AND of columns', { name: { isNull: false }, n: { gte: 5 } }, [5, 7, 9]],
  ];
  for (const [what, where, ids] of cases) {
    it(`where ${what}`, async () => {
      const res = await db.model(tdb.t('uniq')).update({ where, set: { p: 1 } }, { batchSize: 1 });
      expect(res.count).toBe(ids.length);
      expect(await flagged()).toEqual(ids);
    });
  }

  it('all: true updates every row; an empty or undefined filter never does', async () => {
    const m = db.model(tdb.t('uniq'));
    const id: number | undefined = undefined;
    const refusals = [
      { where: {}, set: { p: 1 } },
      { where: { id }, set: { p: 1 } },
      { where: { id: { eq: undefined } }, set: { p: 1 } },
      { where: { id: { in: [1, undefined] } }, set: { p: 1 } },
      { where: { n: 1, id }, set: { p: 1 } },
      { where: undefined, set: { p: 1 } },
      { set: { p: 1 } },
      { all: false, set: { p: 1 } },
      { all: 'yes', set: { p: 1 } },
      { all: true, where: { n: 1 }, set: { p: 1 } },
      { all: true, set: { p: undefined } },
      { all: true, set: { p: 1, n: undefined } },
      { where: { n: 1 }, set: { p: 1 }, extra: 1 },
    ];
    for (const args of refusals) {
      const e = await rejects(m.update(args as never));
      expect(e.code, JSON.stringify(args)).toBe('INVALID_OPTION');
    }
    expect(await flagged()).toEqual([]);
    const res = await m.update({ all: true, set: { p: 1 } }, { batchSize: 3 });
    expect(res.count).toBe(10);
    expect(await flagged()).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('a filter or set nested 200,000 deep is INVALID_OPTION, not a stack overflow', async () => {
    let deep: unknown = 1;
    for (let i = 0; i < 200_000; i++) deep = { eq: deep };
    const m = db.model(tdb.t('uniq'));
    expect((await rejects(m.update({ where: { n: deep }, set: { p: 1 } }))).code).toBe(
      'INVALID_OPTION',
    );
    expect((await rejects(m.update({ where: { n: 1 }, set: { p: deep } }))).code).toBe(
      'INVALID_OPTION',
    );
    let arr: unknown = [1];
    for (let i = 0; i < 200_000; i++) arr = [arr];
    expect((await rejects(m.update({ where: { id: arr }, set: { p: 1 } }))).code).toBe(
      'INVALID_OPTION',
    );
    const read = async (where: unknown) => {
      for await (const _ of m.copyTo({ where: where as never })) void _;
    };
    expect((await rejects(read({ n: deep }))).code).toBe('INVALID_OPTION');
    expect((await rejects(read({ n: undefined }))).code).toBe('INVALID_OPTION');
    expect(await flagged()).toEqual([]);
  });

  it('sets hostile values and NULL on every matched row, in batches', async () => {
    const res = await db
      .model(tdb.t('uniq'))
      .update(
        { where: { n: { gte: 4 } }, set: { name: 'tab\t\\N\n"q"', p: null } },
        { batchSize: 3 },
      );
    expect(res.count).toBe(7);
    const r = await tdb.pool.query(
      `SELECT count(*)::int AS n FROM ${tdb.t('uniq')} WHERE name = $1 AND p IS NULL`,
      ['tab\t\\N\n"q"'],
    );
    expect(r.rows[0].n).toBe(7);
  });

  it('a filter on the column being set still visits every matched row once', async () => {
    const res = await db
      .model(tdb.t('uniq'))
      .update({ where: { n: { lte: 6 } }, set: { n: 100 } }, { batchSize: 2 });
    expect(res.count).toBe(6);
    const r = await tdb.pool.query(`SELECT n FROM ${tdb.t('uniq')} ORDER BY id`);
    expect(r.rows.map((x) => x.n)).toEqual([100, 100, 100, 100, 100, 100, 7, 8, 9, 10]);
  });

  it('typed filters: bigint beyond 2^53, numeric strings, timestamps, arrays, enums', async () => {
    await tdb.pool.query(
      `INSERT INTO ${tdb.t('hostile')} (i8, num, tz, ta, m, vc) VALUES
        (9007199254740993, 1.000000000000000000001, '2024-01-01 00:00:00.000001+00', '{a,NULL}', 'ok', 'x'),
        (9007199254740992, 1, '2024-01-01 00:00:00+00', '{a}', 'sad', 'x')`,
    );
    const m = db.model(tdb.t('hostile'));
    const set = { t: 'hit' };
    expect((await m.update({ where: { i8: 9007199254740993n }, set })).count).toBe(1);
    expect((await m.update({ where: { i8: { gt: '9007199254740992' } }, set })).count).toBe(1);
    expect((await m.update({ where: { num: { gt: '1' } }, set })).count).toBe(1);
    expect((await m.update({ where: { tz: { gt: '2024-01-01 00:00:00+00' } }, set })).count).toBe(
      1,
    );
    expect((await m.update({ where: { tz: new Date('2024-01-01T00:00:00Z') }, set })).count).toBe(
      1,
    );
    expect((await m.update({ where: { ta: ['a', null] }, set })).count).toBe(1);
    expect((await m.update({ where: { m: ['ok', "we'ird"] }, set })).count).toBe(1);
    // the filter value is compared in full, not cut to the column's length
    expect((await m.update({ where: { vc: 'x'.padEnd(25, 'y') }, set })).count).toBe(0);
  });

  it('composite primary key and a table without one', async () => {
    await tdb.pool.query(
      `INSERT INTO ${tdb.t('pairs')} (a, b, v) SELECT g % 3, 'k' || g, 'o' FROM generate_series(1, 9) g`,
    );
    const r1 = await db
      .model(tdb.t('pairs'))
      .update({ where: { a: 1 }, set: { v: 'one' } }, { batchSize: 1 });
    expect(r1.count).toBe(3);
    const back = await tdb.pool.query(
      `SELECT count(*)::int AS n FROM ${tdb.t('pairs')} WHERE v = 'one'`,
    );
    expect(back.rows[0].n).toBe(3);
    await tdb.pool.query(
      `INSERT INTO ${tdb.t('nopk')} (name, v) VALUES ('a', 1), ('b', 2), ('a', 3)`,
    );
    const r2 = await db.model(tdb.t('nopk')).update({ where: { name: 'a' }, set: { v: 0 } });
    expect(r2.count).toBe(2);
    const nb = await tdb.pool.query(`SELECT name, v FROM ${tdb.t('nopk')} ORDER BY name, v`);
    expect(nb.rows).toEqual([
      { name: 'a', v: 0 },
      { name: 'a', v: 0 },
      { name: 'b', v: 2 },
    ]);
  });

  it("transaction: 'operation' is all-or-nothing; per batch, earlier batches stay", async () => {
    const m = db.model(tdb.t('uniq'));
    const args = { where: { id: [3, 4, 5] }, set: { code: 'dup' } };
    const e1 = await rejects(m.update(args, { batchSize: 1, transaction: 'operation' }));
    expect(e1.code).toBe('UNIQUE_VIOLATION');
    const r1 = await tdb.pool.query(`SELECT id FROM ${tdb.t('uniq')} WHERE code = 'dup'`);
    expect(r1.rows).toEqual([]);
    const e2 = await rejects(m.update(args, { batchSize: 1 }));
    expect(e2.code).toBe('UNIQUE_VIOLATION');
    expect(e2.constraint).toBe('uniq_code_key');
    expect(e2.committedChunks).toBe(1);
    expect(e2.committedRows).toBe(1);
    const r2 = await tdb.pool.query(`SELECT id FROM ${tdb.t('uniq')} WHERE code = 'dup'`);
    expect(r2.rows).toEqual([{ id: 3 }]);
  });

  it('a NOT NULL violation fails the batch; nothing of it is written', async () => {
    const m = db.model(tdb.t('uniq'));
    const e = await rejects(
      m.update({ where: { id: { gte: 5 } }, set: { code: null } }, { batchSize: 2 }),
    );
    expect(e.code).toBe('NOT_NULL_VIOLATION');
    expect(e.column).toBe('code');
    const r = await tdb.pool.query(
      `SELECT count(*)::int AS n FROM ${tdb.t('uniq')} WHERE code IS NULL`,
    );
    expect(r.rows[0].n).toBe(0);
  });

  it('unknown columns, bad values and empty set are refused before anything runs', async () => {
    const m = db.model(tdb.t('uniq'));
    expect((await rejects(m.update({ where: { nope: 1 }, set: { n: 1 } }))).code).toBe(
      'UNKNOWN_COLUMN',
    );
    expect((await rejects(m.update({ all: true, set: { nope: 1 } }))).code).toBe('UNKNOWN_COLUMN');
    expect((await rejects(m.update({ where: { n: 'x' }, set: { n: 1 } }))).code).toBe(
      'INVALID_VALUE',
    );
    expect((await rejects(m.update({ all: true, set: { n: 2 ** 31 } }))).code).toBe(
      'INVALID_VALUE',
    );
    expect((await rejects(m.update({ all: true, set: {} }))).code).toBe('INVALID_OPTION');
    expect((await rejects(m.update({ where: { n: { gt: null } }, set: { n: 1 } }))).code).toBe(
      'INVALID_OPTION',
    );
    expect((await rejects(m.update({ where: { id: [1, null] }, set: { n: 1 } }))).code).toBe(
      'INVALID_OPTION',
    );
    const r = await tdb.pool.query(`SELECT sum(n)::int AS s FROM ${tdb.t('uniq')}`);
    expect(r.rows[0].s).toBe(55);
  });
});
