import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type BulkClient, BulkError, JsonText } from '../src/index.js';
import { type TestDb, testDb } from './helpers.js';
import { createHostileTables, expectedHostile, HOSTILE_COLUMNS, hostileRow } from './hostile.js';

let tdb: TestDb;
let db: BulkClient;
beforeAll(async () => {
  tdb = await testDb('bcreate');
  await createHostileTables(tdb.pool, tdb.schema);
  db = tdb.client({ decode: { timestamps: 'string' } });
});
afterAll(() => tdb.close());
beforeEach(async () => {
  await tdb.pool.query(
    `TRUNCATE ${tdb.t('hostile')}, ${tdb.t('uniq')}, ${tdb.t('pairs')}, ${tdb.t('ident_always')}, ${tdb.t('ident_default')} RESTART IDENTITY`,
  );
});

async function readHostile(): Promise<Record<string, unknown>[]> {
  const r = await tdb.pool.query(`SELECT ${HOSTILE_COLUMNS} FROM ${tdb.t('hostile')} ORDER BY id`);
  return r.rows;
}

async function count(table: string): Promise<number> {
  const r = await tdb.pool.query(`SELECT count(*)::int AS n FROM ${tdb.t(table)}`);
  return r.rows[0].n;
}

async function rejects(p: Promise<unknown>): Promise<BulkError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(BulkError);
    return err as BulkError;
  }
  throw new Error('expected a rejection');
}

describe('bulkCreate', () => {
  it.each(['auto', 'copy', 'insert'] as const)(
    'round-trips every hostile value, returning: true pairs rows to input (strategy %s)',
    async (strategy) => {
      const input = Array.from({ length: 30 }, (_, i) => hostileRow(i));
      const res = await db.model(tdb.t('hostile')).bulkCreate(input, {
        returning: true,
        batchSize: 7,
        strategy,
      });
      expect(res.count).toBe(30);
      const back = await readHostile();
      expect(back).toHaveLength(30);
      const byId = new Map(back.map((r) => [r.id, r]));
      res.rows!.forEach((ret, i) => {
        const stored = byId.get(ret.id as string)!;
        const { id, ...rest } = stored;
        expect(rest).toEqual(expectedHostile(input[i]!));
        expect(ret).toEqual({ ...stored, id });
      });
      // a JSON string is stored as a JSON string, not parsed
      const kinds = await tdb.pool.query(
        `SELECT jsonb_typeof(jb) AS k, json_typeof(js) AS j FROM ${tdb.t('hostile')} ORDER BY id`,
      );
      expect(kinds.rows[3].k).toBe('string');
      expect(kinds.rows[2].j).toBe('string');
    },
  );

  it('returning a column list gives those columns and the key; false gives none', async () => {
    const m = db.model(tdb.t('uniq'));
    const r1 = await m.bulkCreate([{ code: 'a', name: 'x' }], { returning: ['name', 'created'] });
    expect(r1).toEqual({
      count: 1,
      rows: [{ id: 1, name: 'x', created: '2020-01-01 00:00:00+00' }],
    });
    const r2 = await m.bulkCreate([{ code: 'b' }], { returning: false });
    expect(r2).toEqual({ count: 1 });
    expect(await count('uniq')).toBe(2);
  });

  it('onConflict ignore skips rows in the middle and pairs the rest by key', async () => {
    const m = db.model(tdb.t('uniq'));
    await m.bulkCreate([{ code: 'c2' }, { code: 'c5' }]);
    const input = Array.from({ length: 8 }, (_, i) => ({ code: `c${i}`, name: `n${i}` }));
    const res = await m.bulkCreate(input, { returning: true, onConflict: 'ignore', batchSize: 3 });
    expect(res.count).toBe(6);
    expect(res.rows!.map((r) => r.code)).toEqual(['c0', 'c1', 'c3', 'c4', 'c6', 'c7']);
    expect(res.rows!.map((r) => r.name)).toEqual(['n0', 'n1', 'n3', 'n4', 'n6', 'n7']);
    const back = await tdb.pool.query(`SELECT id, code, name FROM ${tdb.t('uniq')}`);
    const byCode = new Map(back.rows.map((r) => [r.code, r]));
    for (const r of res.rows!) expect(byCode.get(r.code)!.id).toBe(r.id);
    expect(byCode.get('c2')!.name).toBeNull();
  });

  it('onConflict ignore with a key repeated inside one chunk returns the row once', async () => {
    const m = db.model(tdb.t('ident_default'));
    const res = await m.bulkCreate(
      [
        { id: 1, name: 'first' },
        { id: 1, name: 'again' },
        { id: 2, name: 'two' },
      ],
      { returning: true, onConflict: 'ignore' },
    );
    const back = await tdb.pool.query(
      `SELECT id::int, name FROM ${tdb.t('ident_default')} ORDER BY id`,
    );
    expect(back.rows).toEqual([
      { id: 1, name: 'first' },
      { id: 2, name: 'two' },
    ]);
    expect(res.count).toBe(2);
    expect(res.rows).toEqual([
      { id: '1', name: 'first' },
      { id: '2', name: 'two' },
    ]);
  });

  it('onConflict update writes the named columns and returns every row', async () => {
    const m = db.model(tdb.t('uniq'));
    await m.bulkCreate([
      { code: 'a', name: 'old', n: 1 },
      { code: 'b', name: 'old', n: 1 },
    ]);
    const res = await m.bulkCreate(
      [
        { code: 'x', name: 'new', n: 5 },
        { code: 'a', name: 'new', n: 5 },
        { code: 'y', name: 'new', n: 5 },
      ],
      { returning: ['code', 'name', 'n'], onConflict: { target: ['code'], update: ['name'] } },
    );
    expect(res.count).toBe(3);
    expect(res.rows).toEqual([
      { code: 'x', name: 'new', n: 5 },
      { code: 'a', name: 'new', n: 1 },
      { code: 'y', name: 'new', n: 5 },
    ]);
    const back = await tdb.pool.query(`SELECT code, name, n FROM ${tdb.t('uniq')} ORDER BY code`);
    expect(back.rows).toEqual([
      { code: 'a', name: 'new', n: 1 },
      { code: 'b', name: 'old', n: 1 },
      { code: 'x', name: 'new', n: 5 },
      { code: 'y', name: 'new', n: 5 },
    ]);
  });

  it('onConflict update leaves a column alone for rows that do not carry it', async () => {
    const m = db.model(tdb.t('uniq'));
    await m.bulkCreate([{ code: 'a', name: 'old', n: 7 }]);
    for (const upsert of [m.bulkCreate.bind(m), m.copyFrom.bind(m)]) {
      const res = await upsert(
        [
          { code: 'a', name: 'renamed' },
          { code: 'z', name: 'new', n: 2 },
        ],
        {
          onConflict: { target: ['code'], update: ['name', 'n'] },
        },
      );
      expect(res.count).toBe(2);
      const back = await tdb.pool.query(`SELECT code, name, n FROM ${tdb.t('uniq')} ORDER BY code`);
      expect(back.rows).toEqual([
        { code: 'a', name: 'renamed', n: 7 },
        { code: 'z', name: 'new', n: 2 },
      ]);
    }
  });

  it("transaction 'operation' with returning reserves keys on its own connection (a 1-connection pool does not hang)", async () => {
    const one = tdb.client({ poolSize: 1, connectTimeoutMs: 3000 });
    for (const write of ['bulkCreate', 'copyFrom'] as const) {
      const res = await one
        .model(tdb.t('ident_default'))
        [write]([{ name: 'p1' }, { name: 'p2' }, { name: 'p3' }], {
          returning: true,
          transaction: 'operation',
          batchSize: 2,
        });
      expect(res.rows?.map((r) => r.name)).toEqual(['p1', 'p2', 'p3']);
      expect(new Set(res.rows?.map((r) => r.id)).size).toBe(3);
    }
    expect(await count('ident_default')).toBe(6);
  });

  it('identity columns: ALWAYS and BY DEFAULT keys come back', async () => {
    const a = await db
      .model(tdb.t('ident_always'))
      .bulkCreate([{ name: 'a' }, { name: 'b' }], { returning: true });
    expect(a.rows).toEqual([
      { id: 1, name: 'a' },
      { id: 2, name: 'b' },
    ]);
    await db.model(tdb.t('ident_always')).bulkCreate([{ name: 'c' }]);
    const d = await db
      .model(tdb.t('ident_default'))
      .bulkCreate([{ name: 'a' }, { id: 100, name: 'b' }, { name: 'c' }], { returning: ['id'] });
    expect(d.rows).toEqual([{ id: '1' }, { id: '100' }, { id: '2' }]);
    const back = await tdb.pool.query(`SELECT id, name FROM ${tdb.t('ident_always')} ORDER BY id`);
    expect(back.rows).toEqual([
      { id: 1, name: 'a' },
      { id: 2, name: 'b' },
      { id: 3, name: 'c' },
    ]);
  });

  it('keys drawn from every kind of default come back as stored: integers, numeric, uuid, text with commas', async () => {
    const defaults: [string, string][] = [
      ['int4', 'integer GENERATED BY DEFAULT AS IDENTITY'],
      ['int8', "bigint DEFAULT 9007199254740993 + nextval('keyseq')"],
      ['num', "numeric(30,3) DEFAULT nextval('keyseq') + 0.5"],
      ['uuid', 'uuid DEFAULT gen_random_uuid()'],
      ['text', "text DEFAULT 'k,' || nextval('keyseq') || ',\"x\"'"],
    ];
    await tdb.pool.query(`CREATE SEQUENCE ${tdb.t('keyseq')}`);
    for (const [name, type] of defaults) {
      const t = tdb.t(`keys_${name}`);
      const col = type.replace("'keyseq'", `'${tdb.t('keyseq')}'`);
      await tdb.pool.query(`CREATE TABLE ${t} (id ${col} PRIMARY KEY, n bigserial, v text)`);
      for (const method of ['bulkCreate', 'copyFrom'] as const) {
        const rows = Array.from({ length: 7 }, (_, i) => ({ v: `${method} ${i}` }));
        const res = await db.model(t)[method](rows, { returning: ['id', 'v'], batchSize: 3 });
        const stored = await tdb.pool.query(
          `SELECT id::text AS id, v FROM ${t} WHERE v LIKE $1 ORDER BY n`,
          [`${method} %`],
        );
        // Every row its own key, as Postgres stores it (decoded as the client decodes).
        const back = res.rows ?? [];
        expect(back.map((r) => String(r.id)).sort(), `${name} ${method}`).toEqual(
          stored.rows.map((r) => r.id).sort(),
        );
        expect(back.map((r) => r.v)).toEqual(rows.map((r) => r.v));
        const byV = new Map(stored.rows.map((r) => [r.v, r.id]));
        for (const r of back) expect(String(r.id)).toBe(byV.get(r.v));
      }
    }
  });

  it('composite primary key pairs returned rows', async () => {
    const res = await db.model(tdb.t('pairs')).bulkCreate(
      [
        { a: 1, b: 'x', v: 'one' },
        { a: 1, b: 'y', v: 'two' },
        { a: 2, b: 'x', v: 'three' },
      ],
      { returning: ['v'], batchSize: 2 },
    );
    expect(res.rows).toEqual([
      { a: 1, b: 'x', v: 'one' },
      { a: 1, b: 'y', v: 'two' },
      { a: 2, b: 'x', v: 'three' },
    ]);
  });

  it('rows that omit a column get its default; mixed shapes in one chunk', async () => {
    const res = await db
      .model(tdb.t('uniq'))
      .bulkCreate(
        [
          { code: 'a' },
          { code: 'b', created: '2030-05-06 07:08:09.123456+00' },
          { code: 'c', name: null },
        ],
        {
          returning: ['code', 'created', 'name'],
        },
      );
    expect(res.rows).toEqual([
      { id: 1, code: 'a', created: '2020-01-01 00:00:00+00', name: null },
      { id: 2, code: 'b', created: '2030-05-06 07:08:09.123456+00', name: null },
      { id: 3, code: 'c', created: '2020-01-01 00:00:00+00', name: null },
    ]);
  });

  it('rows with no columns take every default', async () => {
    const e = await rejects(db.model(tdb.t('uniq')).bulkCreate([{ code: 'a' }, {}, {}]));
    // uniq.code is NOT NULL without a default: the chunk fails as a whole
    expect(e.code).toBe('NOT_NULL_VIOLATION');
    expect(await count('uniq')).toBe(0);
    expect(await db.model(tdb.t('hostile')).bulkCreate([{}, {}])).toEqual({ count: 2 });
    const r = await db.model(tdb.t('hostile')).bulkCreate([{}, { t: 'x' }], { returning: ['t'] });
    expect(r.rows).toEqual([
      { id: '3', t: null },
      { id: '4', t: 'x' },
    ]);
    expect(await count('hostile')).toBe(4);
  });

  it('char(n) and bit(n) values are neither cut nor refused', async () => {
    await tdb.pool.query(
      `CREATE TABLE ${tdb.t('fixed')} (id int PRIMARY KEY, ch char(3), bi bit(3))`,
    );
    const m = db.model(tdb.t('fixed'));
    await m.bulkCreate([
      { id: 1, ch: 'abc', bi: '101' },
      { id: 2, ch: 'a', bi: '011' },
    ]);
    await m.updateFields([{ id: 2, ch: 'xyz', bi: '110' }]);
    expect((await m.update({ where: { ch: 'abc' }, set: { bi: '111' } })).count).toBe(1);
    const back = await tdb.pool.query(`SELECT id, ch, bi FROM ${tdb.t('fixed')} ORDER BY id`);
    expect(back.rows).toEqual([
      { id: 1, ch: 'abc', bi: '111' },
      { id: 2, ch: 'xyz', bi: '110' },
    ]);
    const e = await rejects(m.bulkCreate([{ id: 3, bi: '1' }]));
    expect(e.code).toBe('DATA_ERROR');
  });

  it('concurrent chunks: returned rows still pair to input, in input order', async () => {
    const input = Array.from({ length: 40 }, (_, i) => ({ code: `k${i}`, name: `n${i}` }));
    const res = await db.model(tdb.t('uniq')).bulkCreate(input, {
      returning: ['code', 'name'],
      batchSize: 3,
      concurrent: true,
      maxConcurrentWorkers: 4,
    });
    expect(res.count).toBe(40);
    expect(res.rows!.map((r) => r.code)).toEqual(input.map((r) => r.code));
    const back = await tdb.pool.query(`SELECT id, code, name FROM ${tdb.t('uniq')}`);
    const byCode = new Map(back.rows.map((r) => [r.code, r]));
    for (const r of res.rows!) expect(byCode.get(r.code)).toEqual(r);
  });

  it('takes an async iterable', async () => {
    async function* gen() {
      for (let i = 0; i < 11; i++) yield { code: `g${i}` };
    }
    const res = await db.model(tdb.t('uniq')).bulkCreate(gen(), { batchSize: 4 });
    expect(res.count).toBe(11);
    expect(await count('uniq')).toBe(11);
  });

  it('empty input is a no-op with count 0', async () => {
    expect(await db.model(tdb.t('uniq')).bulkCreate([])).toEqual({ count: 0 });
    expect(await db.model(tdb.t('uniq')).bulkCreate([], { returning: true })).toEqual({
      count: 0,
      rows: [],
    });
  });

  it("transaction: 'operation' is all-or-nothing", async () => {
    const m = db.model(tdb.t('uniq'));
    await m.bulkCreate([{ code: 'taken' }]);
    const rows = Array.from({ length: 10 }, (_, i) => ({ code: i === 8 ? 'taken' : `t${i}` }));
    const err = await rejects(m.bulkCreate(rows, { batchSize: 3, transaction: 'operation' }));
    expect(err.code).toBe('UNIQUE_VIOLATION');
    expect(await count('uniq')).toBe(1);
    // per chunk: the first two chunks stay committed and the error says so
    const err2 = await rejects(m.bulkCreate(rows, { batchSize: 3 }));
    expect(err2.code).toBe('UNIQUE_VIOLATION');
    expect(err2.committedChunks).toBe(2);
    expect(err2.committedRows).toBe(6);
    expect(await count('uniq')).toBe(7);
  });

  it('JsonText values are written as their JSON text, by COPY and by INSERT', async () => {
    const m = db.model(tdb.t('hostile'));
    const text = '{"k": [1, null, "tab\\there \\\\N 😀"], "q": "\\"x\\""}';
    for (const strategy of ['copy', 'insert'] as const) {
      await tdb.pool.query(`TRUNCATE ${tdb.t('hostile')}`);
      const r = await m.bulkCreate(
        [
          {
            t: 'a',
            jb: new JsonText(text),
            js: new JsonText(text),
            jba: [new JsonText('{"a":1}'), null],
          },
          { t: 'b', jb: [new JsonText('{"n":2}'), 3] },
        ],
        { strategy, returning: ['jb', 'js'] },
      );
      expect(r.rows![0]).toEqual({
        id: expect.any(String),
        jb: JSON.parse(text),
        js: JSON.parse(text),
      });
      expect(r.rows![1]!.jb).toEqual([{ n: 2 }, 3]);
      const back = await tdb.pool.query(
        `SELECT jb, js::text AS js, jba FROM ${tdb.t('hostile')} ORDER BY t`,
      );
      expect(back.rows[0]).toEqual({ jb: JSON.parse(text), js: text, jba: [{ a: 1 }, null] });
    }
  });

  it('a JsonText that is not JSON is refused naming its row; a NUL escape is INVALID_VALUE', async () => {
    const m = db.model(tdb.t('hostile'));
    for (const strategy of ['copy', 'insert'] as const) {
      const e = await rejects(
        m.bulkCreate([{ jb: new JsonText('{}') }, { jb: new JsonText('{nope') }], { strategy }),
      );
      expect(e.code).toBe('DATA_ERROR');
      if (strategy === 'copy') expect(e.row).toBe(1);
      expect(await count('hostile')).toBe(0);
    }
    const nul = await rejects(m.bulkCreate([{ jb: new JsonText('{"a": "x\\u0000"}') }]));
    expect(nul.code).toBe('INVALID_VALUE');
    expect(nul.column).toBe('jb');
    expect(await count('hostile')).toBe(0);
  });

  it('a too long varchar is refused, not truncated', async () => {
    const err = await rejects(db.model(tdb.t('hostile')).bulkCreate([{ vc: 'x'.repeat(21) }]));
    expect(err.code).toBe('DATA_ERROR');
    expect(await count('hostile')).toBe(0);
  });
});
