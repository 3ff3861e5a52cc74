import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type BulkClient, BulkError } from '../src/index.js';
import { DATABASE_URL, type TestDb, testDb } from './helpers.js';
import { createHostileTables, expectedHostile, HOSTILE_COLUMNS, hostileRow } from './hostile.js';

let tdb: TestDb;
let db: BulkClient;
beforeAll(async () => {
  tdb = await testDb('ufields');
  await createHostileTables(tdb.pool, tdb.schema);
  await tdb.pool.query(
    `CREATE TABLE ${tdb.t('withdef')} (id int PRIMARY KEY, v text DEFAULT 'dflt', w int DEFAULT 7)`,
  );
  db = tdb.client({ decode: { timestamps: 'string' } });
});
afterAll(() => tdb.close());
beforeEach(async () => {
  await tdb.pool.query(
    `TRUNCATE ${tdb.t('hostile')}, ${tdb.t('uniq')}, ${tdb.t('pairs')}, ${tdb.t('withdef')} RESTART IDENTITY`,
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

async function seedUniq(n: number): Promise<void> {
  await tdb.pool.query(
    `INSERT INTO ${tdb.t('uniq')} (code, name, n) SELECT 'c' || g, 'name' || g, g FROM generate_series(1, $1) g`,
    [n],
  );
}

async function uniqRows(): Promise<
  { id: number; code: string; name: string | null; n: number | null }[]
> {
  return (await tdb.pool.query(`SELECT id, code, name, n FROM ${tdb.t('uniq')} ORDER BY id`)).rows;
}

describe('updateFields', () => {
  it('writes every hostile value, each row its own, matched by primary key', async () => {
    await tdb.pool.query(
      `INSERT INTO ${tdb.t('hostile')} (t) SELECT 'before' FROM generate_series(1, 21)`,
    );
    // rows in shuffled order, every column written
    const input = Array.from({ length: 21 }, (_, i) => ({ id: String(21 - i), ...hostileRow(i) }));
    const res = await db.model(tdb.t('hostile')).updateFields(input, { batchSize: 4 });
    expect(res).toEqual({ count: 21, missing: [] });
    const back = await tdb.pool.query(`SELECT ${HOSTILE_COLUMNS} FROM ${tdb.t('hostile')}`);
    const byId = new Map(back.rows.map((r) => [r.id, r]));
    for (const row of input) {
      const { id, ...rest } = row;
      const { id: _id, ...stored } = byId.get(id)!;
      expect(stored).toEqual(expectedHostile(rest));
    }
  });

  it('writes only `fields`; other columns of the rows are left alone', async () => {
    await seedUniq(3);
    const res = await db.model(tdb.t('uniq')).updateFields(
      [
        { id: 1, name: 'A', n: 100 },
        { id: 3, name: 'C', n: 300 },
      ],
      { fields: ['name'] },
    );
    expect(res).toEqual({ count: 2, missing: [] });
    expect(await uniqRows()).toEqual([
      { id: 1, code: 'c1', name: 'A', n: 1 },
      { id: 2, code: 'c2', name: 'name2', n: 2 },
      { id: 3, code: 'c3', name: 'C', n: 3 },
    ]);
  });

  it('null writes NULL, not the column default', async () => {
    await tdb.pool.query(
      `INSERT INTO ${tdb.t('withdef')} (id, v, w) VALUES (1, 'x', 1), (2, 'y', 2)`,
    );
    await db.model(tdb.t('withdef')).updateFields([
      { id: 1, v: null },
      { id: 2, v: null, w: null },
    ]);
    const back = await tdb.pool.query(`SELECT id, v, w FROM ${tdb.t('withdef')} ORDER BY id`);
    expect(back.rows).toEqual([
      { id: 1, v: null, w: 1 },
      { id: 2, v: null, w: null },
    ]);
  });

  it('matches by `key` columns and reports keys that matched nothing', async () => {
    await seedUniq(4);
    const res = await db.model(tdb.t('uniq')).updateFields(
      [
        { code: 'c2', n: 20 },
        { code: 'nope', n: 1 },
        { code: 'c4', n: 40 },
        { code: 'gone', n: 1 },
      ],
      { key: ['code'], batchSize: 3 },
    );
    expect(res.count).toBe(2);
    expect(res.missing).toEqual([{ code: 'nope' }, { code: 'gone' }]);
    expect((await uniqRows()).map((r) => r.n)).toEqual([1, 20, 3, 40]);
  });

  it('composite keys', async () => {
    await tdb.pool.query(
      `INSERT INTO ${tdb.t('pairs')} (a, b, v) VALUES (1, 'x', 'o'), (1, 'y', 'o'), (2, 'x', 'o')`,
    );
    const res = await db.model(tdb.t('pairs')).updateFields([
      { a: 2, b: 'x', v: 'two-x' },
      { a: 1, b: 'y', v: 'one-y' },
      { a: 2, b: 'y', v: 'none' },
    ]);
    expect(res).toEqual({ count: 2, missing: [{ a: 2, b: 'y' }] });
    const back = await tdb.pool.query(`SELECT a, b, v FROM ${tdb.t('pairs')} ORDER BY a, b`);
    expect(back.rows).toEqual([
      { a: 1, b: 'x', v: 'o' },
      { a: 1, b: 'y', v: 'one-y' },
      { a: 2, b: 'x', v: 'two-x' },
    ]);
  });

  it('rows with different column sets in one chunk each write their own columns', async () => {
    await seedUniq(3);
    await db.model(tdb.t('uniq')).updateFields([
      { id: 1, name: 'N1' },
      { id: 2, n: 22 },
      { id: 3, name: 'N3', n: 33 },
    ]);
    expect(await uniqRows()).toEqual([
      { id: 1, code: 'c1', name: 'N1', n: 1 },
      { id: 2, code: 'c2', name: 'name2', n: 22 },
      { id: 3, code: 'c3', name: 'N3', n: 33 },
    ]);
  });

  it('takes an async iterable; empty input is a no-op', async () => {
    await seedUniq(5);
    async function* gen() {
      for (let i = 5; i >= 1; i--) yield { id: i, n: i * 10 };
    }
    expect(await db.model(tdb.t('uniq')).updateFields(gen(), { batchSize: 2 })).toEqual({
      count: 5,
      missing: [],
    });
    expect((await uniqRows()).map((r) => r.n)).toEqual([10, 20, 30, 40, 50]);
    expect(await db.model(tdb.t('uniq')).updateFields([])).toEqual({ count: 0, missing: [] });
  });

  it("transaction: 'operation' is all-or-nothing; per chunk, earlier chunks stay", async () => {
    await seedUniq(6);
    const rows = [1, 2, 3, 4, 5, 6].map((id) => ({ id, n: id === 5 ? -1 : id * 100 }));
    const e1 = await rejects(
      db.model(tdb.t('uniq')).updateFields(rows, { batchSize: 2, transaction: 'operation' }),
    );
    expect(e1.code).toBe('CHECK_VIOLATION');
    expect((await uniqRows()).map((r) => r.n)).toEqual([1, 2, 3, 4, 5, 6]);
    const e2 = await rejects(db.model(tdb.t('uniq')).updateFields(rows, { batchSize: 2 }));
    expect(e2.code).toBe('CHECK_VIOLATION');
    expect(e2.table).toBe(tdb.t('uniq'));
    expect(e2.committedChunks).toBe(2);
    expect(e2.committedRows).toBe(4);
    expect((await uniqRows()).map((r) => r.n)).toEqual([100, 200, 300, 400, 5, 6]);
  });

  it('a too long varchar is refused, not truncated', async () => {
    await tdb.pool.query(`INSERT INTO ${tdb.t('hostile')} (vc) VALUES ('short')`);
    const e = await rejects(
      db.model(tdb.t('hostile')).updateFields([{ id: 1, vc: 'y'.repeat(25) }]),
    );
    expect(e.code).toBe('DATA_ERROR');
    const back = await tdb.pool.query(`SELECT vc FROM ${tdb.t('hostile')}`);
    expect(back.rows).toEqual([{ vc: 'short' }]);
  });

  it('MISSING_KEY and DUPLICATE_KEY write nothing of the chunk', async () => {
    await seedUniq(3);
    const m = db.model(tdb.t('uniq'));
    const e1 = await rejects(m.updateFields([{ id: 1, n: 9 }, { n: 9 }]));
    expect(e1.code).toBe('MISSING_KEY');
    expect(e1.row).toBe(1);
    expect(e1.column).toBe('id');
    const e2 = await rejects(
      m.updateFields([
        { id: 1, n: 9 },
        { id: 2, n: 9 },
        { id: '1', n: 8 },
      ]),
    );
    expect(e2.code).toBe('DUPLICATE_KEY');
    expect(e2.row).toBe(2);
    // a repeated key in a later chunk is refused too
    const e3 = await rejects(
      m.updateFields(
        [
          { id: 2, n: 9 },
          { id: 3, n: 9 },
          { id: 2, n: 8 },
        ],
        { batchSize: 2 },
      ),
    );
    expect(e3.code).toBe('DUPLICATE_KEY');
    expect(e3.committedChunks).toBe(1);
    expect((await uniqRows()).map((r) => r.n)).toEqual([1, 9, 9]);
    // A stream is checked within each chunk (its keys are not all kept in memory).
    async function* dup() {
      yield { id: 1, n: 5 };
      yield { id: 1, n: 6 };
    }
    const e4 = await rejects(m.updateFields(dup()));
    expect(e4.code).toBe('DUPLICATE_KEY');
    expect((await uniqRows()).map((r) => r.n)).toEqual([1, 9, 9]);
  });
});

describe('updateFields through a staging table (regressions)', () => {
  it('keys are matched as given, never rounded or cut to the column size first', async () => {
    await tdb.pool.query(`
      CREATE TABLE ${tdb.t('nkey')} (k numeric(4,1) PRIMARY KEY, v int);
      CREATE TABLE ${tdb.t('vkey')} (k varchar(3) PRIMARY KEY, v int);
      INSERT INTO ${tdb.t('nkey')} VALUES (1.6, 0);
      INSERT INTO ${tdb.t('vkey')} VALUES ('abc', 0);`);
    // 1.55 would round to 1.6 in a numeric(4,1) column: it must not update the 1.6 row.
    expect(await db.model(tdb.t('nkey')).updateFields([{ k: '1.55', v: 1 }])).toEqual({
      count: 0,
      missing: [{ k: '1.55' }],
    });
    expect(
      await db.model(tdb.t('nkey')).updateFields([
        { k: '1.55', v: 2 },
        { k: '1.6', v: 3 },
      ]),
    ).toEqual({ count: 1, missing: [{ k: '1.55' }] });
    expect((await tdb.pool.query(`SELECT k::text, v FROM ${tdb.t('nkey')}`)).rows).toEqual([
      { k: '1.6', v: 3 },
    ]);
    // Too long for varchar(3): no such row, not an error.
    expect(await db.model(tdb.t('vkey')).updateFields([{ k: 'abcdef', v: 1 }])).toEqual({
      count: 0,
      missing: [{ k: 'abcdef' }],
    });
    // Values still get the column's modifier: too long for varchar(3) is refused, row named.
    await tdb.pool.query(`CREATE TABLE ${tdb.t('vval')} (id int PRIMARY KEY, s varchar(3))`);
    await tdb.pool.query(`INSERT INTO ${tdb.t('vval')} VALUES (1, 'a'), (2, 'b')`);
    const e = await rejects(
      db.model(tdb.t('vval')).updateFields([
        { id: 1, s: 'xyz' },
        { id: 2, s: 'toolong' },
      ]),
    );
    expect(e.row).toBe(1);
    expect(e.column).toBe('s');
    expect((await tdb.pool.query(`SELECT s FROM ${tdb.t('vval')} ORDER BY id`)).rows).toEqual([
      { s: 'a' },
      { s: 'b' },
    ]);
  });

  it('needs only UPDATE on the written columns and SELECT on the keys (plus TEMP)', async () => {
    const role = `${tdb.schema}_writer`;
    await tdb.pool.query(`
      CREATE TABLE ${tdb.t('priv')} (id int PRIMARY KEY, v int, secret text);
      INSERT INTO ${tdb.t('priv')} VALUES (1, 0, 's');
      CREATE ROLE ${role} LOGIN;
      GRANT USAGE ON SCHEMA ${tdb.schema} TO ${role};
      GRANT SELECT (id), UPDATE (v) ON ${tdb.t('priv')} TO ${role};`);
    try {
      const url = new URL(DATABASE_URL);
      url.username = role;
      const limited = tdb.client({ connectionString: url.toString(), ledger: false });
      expect(
        await limited.model(tdb.t('priv')).updateFields([
          { id: 1, v: 5 },
          { id: 2, v: 6 },
        ]),
      ).toEqual({ count: 1, missing: [{ id: 2 }] });
      await limited.close();
      expect((await tdb.pool.query(`SELECT v FROM ${tdb.t('priv')}`)).rows).toEqual([{ v: 5 }]);
    } finally {
      await tdb.pool.query(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
    }
  });

  it('missing keys by primary key (found from the count) and by another key (RETURNING) agree', async () => {
    await seedUniq(6);
    const rows = [
      { id: 6, n: 60 },
      { id: 99, name: 'x' },
      { id: 2, name: 'two' },
      { id: 98, n: 1 },
      { id: 1, n: 10, name: 'one' },
      { id: 97, n: 1, name: 'z' },
    ];
    const byPk = await db.model(tdb.t('uniq')).updateFields(rows, { batchSize: 4 });
    expect(byPk).toEqual({ count: 3, missing: [{ id: 99 }, { id: 98 }, { id: 97 }] });
    const byCode = await db.model(tdb.t('uniq')).updateFields(
      rows.map(({ id, ...r }) => ({ code: `c${id}`, ...r })),
      { key: ['code'], batchSize: 4 },
    );
    expect(byCode).toEqual({
      count: 3,
      missing: [{ code: 'c99' }, { code: 'c98' }, { code: 'c97' }],
    });
    const got = await tdb.pool.query(`SELECT id, name, n FROM ${tdb.t('uniq')} ORDER BY id`);
    expect(got.rows.map((r) => [r.id, r.name, r.n])).toEqual([
      [1, 'one', 10],
      [2, 'two', 2],
      [3, 'name3', 3],
      [4, 'name4', 4],
      [5, 'name5', 5],
      [6, 'name6', 60],
    ]);
  });

  it('a key naming a column twice is refused; a row a trigger skips matched, so it is not missing', async () => {
    const e = await rejects(
      db.model(tdb.t('uniq')).updateFields([{ id: 1, n: 1 }], { key: ['id', 'id'] }),
    );
    expect(e.code).toBe('INVALID_OPTION');
    await tdb.pool.query(`
      CREATE TABLE ${tdb.t('skip')} (id int PRIMARY KEY, v int);
      INSERT INTO ${tdb.t('skip')} VALUES (1, 0), (2, 0);
      CREATE FUNCTION ${tdb.schema}.skip_two() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN IF NEW.id = 2 THEN RETURN NULL; END IF; RETURN NEW; END $$;
      CREATE TRIGGER skip_two BEFORE UPDATE ON ${tdb.t('skip')}
        FOR EACH ROW EXECUTE FUNCTION ${tdb.schema}.skip_two();`);
    expect(
      await db.model(tdb.t('skip')).updateFields([
        { id: 1, v: 5 },
        { id: 2, v: 5 },
        { id: 3, v: 5 },
      ]),
    ).toEqual({ count: 1, missing: [{ id: 3 }] });
    // the same by another key (the UPDATE returns what it matched)
    await tdb.pool.query(`
      CREATE TABLE ${tdb.t('skip2')} (id int PRIMARY KEY, v int, code text UNIQUE);
      INSERT INTO ${tdb.t('skip2')} VALUES (1, 0, 'c1'), (2, 0, 'c2');
      CREATE TRIGGER skip_two BEFORE UPDATE ON ${tdb.t('skip2')}
        FOR EACH ROW EXECUTE FUNCTION ${tdb.schema}.skip_two();`);
    expect(
      await db.model(tdb.t('skip2')).updateFields(
        [
          { code: 'c1', v: 6 },
          { code: 'c2', v: 6 },
          { code: 'c3', v: 6 },
        ],
        { key: ['code'] },
      ),
    ).toEqual({ count: 1, missing: [{ code: 'c3' }] });
    expect((await tdb.pool.query(`SELECT v FROM ${tdb.t('skip')} ORDER BY id`)).rows).toEqual([
      { v: 5 },
      { v: 0 },
    ]);
    expect((await tdb.pool.query(`SELECT v FROM ${tdb.t('skip2')} ORDER BY id`)).rows).toEqual([
      { v: 6 },
      { v: 0 },
    ]);
  });

  it('a key without an index: same results (the planner may hash-join instead of a per-row scan)', async () => {
    await tdb.pool.query(`
      CREATE TABLE ${tdb.t('unidx')} (id int PRIMARY KEY, sku text, v int);
      INSERT INTO ${tdb.t('unidx')} SELECT g, 's' || g, 0 FROM generate_series(1, 3000) g;
      CREATE INDEX ON ${tdb.t('unidx')} ((lower(sku)));
      CREATE INDEX ON ${tdb.t('unidx')} (sku) WHERE v > 100;`);
    const meta = await db.meta(tdb.t('unidx'));
    // only plain btree indexes on columns count: not the expression or the partial one
    expect(meta.indexes).toEqual([['id']]);
    const ups = Array.from({ length: 1000 }, (_, i) => ({
      sku: `s${((i * 7) % 3000) + 1}`,
      v: i + 1,
    }));
    ups.push({ sku: 'nope', v: 1 });
    expect(
      await db.model(tdb.t('unidx')).updateFields(ups, { key: ['sku'], batchSize: 400 }),
    ).toEqual({
      count: 1000,
      missing: [{ sku: 'nope' }],
    });
    const got = await tdb.pool.query(
      `SELECT count(*)::int AS n, sum(v)::int AS s FROM ${tdb.t('unidx')} WHERE v > 0`,
    );
    expect(got.rows[0]).toEqual({ n: 1000, s: (1000 * 1001) / 2 });
  });

  it('a constraint broken after a group with nothing to write still names its row', async () => {
    await tdb.pool.query(
      `CREATE TABLE ${tdb.t('chk')} (id int PRIMARY KEY, b int CHECK (b < 100));
       INSERT INTO ${tdb.t('chk')} SELECT g, 0 FROM generate_series(1, 4) g`,
    );
    const e = await rejects(
      db
        .model(tdb.t('chk'))
        .updateFields([{ id: 1 }, { id: 2, b: 5 }, { id: 3, b: 500 }, { id: 4, b: 6 }]),
    );
    expect(e.code).toBe('CHECK_VIOLATION');
    expect(e.row).toBe(2);
    expect((await tdb.pool.query(`SELECT b FROM ${tdb.t('chk')} ORDER BY id`)).rows).toEqual([
      { b: 0 },
      { b: 0 },
      { b: 0 },
      { b: 0 },
    ]);
  });
});
