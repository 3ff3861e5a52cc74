import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { valuesCounted } from '../src/core/ops/copyTo.js';
import { type BulkClient, BulkError } from '../src/index.js';
import { HOSTILE_TEXT, type TestDb, testDb } from './helpers.js';
import { createHostileTables, expectedHostile, HOSTILE_COLUMNS, hostileRow } from './hostile.js';

let tdb: TestDb;
let db: BulkClient;
beforeAll(async () => {
  tdb = await testDb('copy');
  await createHostileTables(tdb.pool, tdb.schema);
  db = tdb.client({ decode: { timestamps: 'string' } });
});
afterAll(() => tdb.close());
beforeEach(async () => {
  await tdb.pool.query(
    `TRUNCATE ${tdb.t('hostile')}, ${tdb.t('uniq')}, ${tdb.t('pairs')}, ${tdb.t('ident_always')} RESTART IDENTITY`,
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

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function count(table: string): Promise<number> {
  return (await tdb.pool.query(`SELECT count(*)::int AS n FROM ${tdb.t(table)}`)).rows[0].n;
}

describe('copyFrom', () => {
  it('hostile round trip: copyFrom, read back, copyTo, all equal to the input', async () => {
    const input = Array.from({ length: 40 }, (_, i) => hostileRow(i));
    const m = db.model(tdb.t('hostile'));
    const res = await m.copyFrom(input, { returning: true, batchSize: 9 });
    expect(res.count).toBe(40);
    const back = (
      await tdb.pool.query(`SELECT ${HOSTILE_COLUMNS} FROM ${tdb.t('hostile')} ORDER BY id`)
    ).rows;
    expect(back).toHaveLength(40);
    const byId = new Map(back.map((r) => [r.id, r]));
    res.rows!.forEach((ret, i) => {
      const stored = byId.get(ret.id as string)!;
      const { id, ...rest } = stored;
      expect(rest).toEqual(expectedHostile(input[i]!));
      expect(ret).toEqual({ ...stored, id });
    });
    const out = await all(m.copyTo());
    expect(out).toHaveLength(40);
    for (const r of out) expect(r).toEqual(byId.get(r.id as string));
  });

  it('takes an async iterable, streamed in chunks', async () => {
    async function* gen() {
      for (let i = 0; i < 25; i++) yield hostileRow(i);
    }
    const res = await db.model(tdb.t('hostile')).copyFrom(gen(), { batchSize: 6 });
    expect(res).toEqual({ count: 25 });
    const back = (
      await tdb.pool.query(`SELECT ${HOSTILE_COLUMNS} FROM ${tdb.t('hostile')} ORDER BY id`)
    ).rows;
    back.forEach(({ id: _id, ...rest }, i) => {
      expect(rest).toEqual(expectedHostile(hostileRow(i)));
    });
  });

  it('an async iterable with returning and onConflict pairs rows across chunks', async () => {
    await tdb.pool.query(`INSERT INTO ${tdb.t('uniq')} (code) VALUES ('a4'), ('a9')`);
    async function* gen() {
      for (let i = 0; i < 12; i++) yield { code: `a${i}`, name: `tab\t${i}` };
    }
    const res = await db
      .model(tdb.t('uniq'))
      .copyFrom(gen(), { batchSize: 5, returning: ['code', 'name'], onConflict: 'ignore' });
    expect(res.count).toBe(10);
    expect(res.rows!.map((r) => r.code)).toEqual(
      [0, 1, 2, 3, 5, 6, 7, 8, 10, 11].map((i) => `a${i}`),
    );
    for (const r of res.rows!) expect(r.name).toBe(`tab\t${String(r.code).slice(1)}`);
    const back = await tdb.pool.query(`SELECT id, code FROM ${tdb.t('uniq')}`);
    const byCode = new Map(back.rows.map((r) => [r.code, r.id]));
    for (const r of res.rows!) expect(byCode.get(r.code)).toBe(r.id);
  });

  it('default decoding gives Dates, like node-postgres', async () => {
    const plain = tdb.client();
    const res = await plain
      .model(tdb.t('uniq'))
      .copyFrom([{ code: 'd', created: '2021-03-04 05:06:07.891+00' }], { returning: ['created'] });
    expect(res.rows![0]!.created).toEqual(new Date('2021-03-04T05:06:07.891Z'));
    const out = [];
    for await (const r of plain.model(tdb.t('uniq')).copyTo({ columns: ['created'] })) out.push(r);
    expect(out).toEqual([{ created: new Date('2021-03-04T05:06:07.891Z') }]);
  });

  it('returning keys only, and returning into a GENERATED ALWAYS identity', async () => {
    const r1 = await db.model(tdb.t('uniq')).copyFrom([{ code: 'a' }, { code: 'b' }], {
      returning: ['id'],
    });
    expect(r1).toEqual({ count: 2, rows: [{ id: 1 }, { id: 2 }] });
    const r2 = await db
      .model(tdb.t('ident_always'))
      .copyFrom([{ name: 'x\ty' }, { name: '\\.' }], { returning: true });
    expect(r2.rows).toEqual([
      { id: 1, name: 'x\ty' },
      { id: 2, name: '\\.' },
    ]);
    // the identity sequence moved on: a plain insert takes the next value
    const r = await tdb.pool.query(
      `INSERT INTO ${tdb.t('ident_always')} (name) VALUES ('z') RETURNING id`,
    );
    expect(r.rows[0].id).toBe(3);
  });

  it('onConflict ignore skips rows in the middle and pairs the rest by key', async () => {
    await tdb.pool.query(`INSERT INTO ${tdb.t('uniq')} (code, name) VALUES ('k3', 'old')`);
    const input = HOSTILE_TEXT.map((s, i) => ({ code: `k${i}`, name: s }));
    const res = await db
      .model(tdb.t('uniq'))
      .copyFrom(input, { onConflict: 'ignore', returning: ['code', 'name'], batchSize: 5 });
    expect(res.count).toBe(input.length - 1);
    expect(res.rows!.map((r) => r.code)).toEqual(
      input.filter((r) => r.code !== 'k3').map((r) => r.code),
    );
    for (const r of res.rows!) expect(r.name).toBe(input.find((x) => x.code === r.code)!.name);
    const back = await tdb.pool.query(`SELECT id, code, name FROM ${tdb.t('uniq')}`);
    const byCode = new Map(back.rows.map((r) => [r.code, r]));
    for (const r of res.rows!) expect(byCode.get(r.code)!.id).toBe(r.id);
    expect(byCode.get('k3')!.name).toBe('old');
    expect(back.rows).toHaveLength(input.length);
  });

  it('onConflict update', async () => {
    await tdb.pool.query(`INSERT INTO ${tdb.t('uniq')} (code, name, n) VALUES ('a', 'old', 1)`);
    const res = await db.model(tdb.t('uniq')).copyFrom(
      [
        { code: 'a', name: 'new\n', n: 2 },
        { code: 'b', name: 'new\n', n: 2 },
      ],
      { onConflict: { target: ['code'], update: ['name'] }, returning: ['code', 'name', 'n'] },
    );
    expect(res).toEqual({
      count: 2,
      rows: [
        { code: 'a', name: 'new\n', n: 1 },
        { code: 'b', name: 'new\n', n: 2 },
      ],
    });
  });

  it("transaction: 'operation' is all-or-nothing", async () => {
    await tdb.pool.query(`INSERT INTO ${tdb.t('uniq')} (code) VALUES ('taken')`);
    const rows = Array.from({ length: 9 }, (_, i) => ({ code: i === 7 ? 'taken' : `r${i}` }));
    const e = await rejects(
      db.model(tdb.t('uniq')).copyFrom(rows, { batchSize: 2, transaction: 'operation' }),
    );
    expect(e.code).toBe('UNIQUE_VIOLATION');
    expect(await count('uniq')).toBe(1);
    const e2 = await rejects(db.model(tdb.t('uniq')).copyFrom(rows, { batchSize: 2 }));
    expect(e2.code).toBe('UNIQUE_VIOLATION');
    expect(e2.committedChunks).toBe(3);
    expect(e2.committedRows).toBe(6);
    expect(await count('uniq')).toBe(7);
  });

  it('a value Postgres refuses names its row and column', async () => {
    const rows = [0, 1, 2, 3].map((i) => ({ code: `u${i}`, p: i === 2 ? -1 : 1 }));
    const e = await rejects(db.model(tdb.t('uniq')).copyFrom(rows, { batchSize: 2 }));
    expect(e.code).toBe('CHECK_VIOLATION');
    expect(e.row).toBe(2);
    expect(e.column).toBe('p');
    expect(e.table).toBe(tdb.t('uniq'));
    expect(await count('uniq')).toBe(2);
    // the same through the staging table that onConflict uses
    const e2 = await rejects(
      db.model(tdb.t('uniq')).copyFrom(rows, { batchSize: 2, onConflict: 'ignore' }),
    );
    expect(e2.code).toBe('CHECK_VIOLATION');
    expect(e2.row).toBe(2);
    expect(e2.column).toBe('p');
    const bad = await rejects(
      db
        .model(tdb.t('hostile'))
        .copyFrom([{ u: '00000000-0000-4000-8000-000000000000' }, { u: 'not-a-uuid' }]),
    );
    expect(bad.code).toBe('DATA_ERROR');
    expect(bad.row).toBe(1);
    expect(bad.column).toBe('u');
    expect(await count('hostile')).toBe(0);
  });

  it('a bad value deep in a chunk, after the COPY has started streaming, cancels that chunk alone', async () => {
    // Values are encoded as the COPY streams (64 KB pieces): row 2500 of a 3000-row chunk is
    // met long after the first pieces reached the server.
    const m = db.model(tdb.t('hostile'));
    const rows = Array.from({ length: 6000 }, (_, i) => ({
      t: `${HOSTILE_TEXT[i % HOSTILE_TEXT.length]} ${'x'.repeat(40)}`,
      i4: i === 5500 ? 2 ** 31 : i,
    }));
    for (const method of ['copyFrom', 'bulkCreate'] as const) {
      for (const returning of [false, ['id']]) {
        await tdb.pool.query(`TRUNCATE ${tdb.t('hostile')}`);
        const e = await rejects(m[method](rows, { batchSize: 3000, returning }));
        expect(e.code).toBe('INVALID_VALUE');
        expect(e.row).toBe(5500);
        expect(e.column).toBe('i4');
        expect(e.committedChunks).toBe(1);
        expect(e.committedRows).toBe(3000);
        const got = await tdb.pool.query(
          `SELECT count(*)::int AS n, max(i4) AS hi FROM ${tdb.t('hostile')}`,
        );
        expect(got.rows[0]).toEqual({ n: 3000, hi: 2999 });
      }
    }
    // The connection that carried the cancelled COPY is gone; the client goes on working.
    expect(await m.copyFrom(rows.slice(0, 10))).toEqual({ count: 10 });
  });

  it('rows with no columns take every default, with or without onConflict', async () => {
    const m = db.model(tdb.t('hostile'));
    expect(await m.copyFrom([{}, { t: 'a' }, {}])).toEqual({ count: 3 });
    expect(await m.copyFrom([{}, {}], { onConflict: 'ignore' })).toEqual({ count: 2 });
    const back = await tdb.pool.query(`SELECT t FROM ${tdb.t('hostile')} ORDER BY id`);
    // rows of one shape are written together, so serial ids need not follow input order
    expect(back.rows.map((r) => r.t).sort()).toEqual(['a', null, null, null, null]);
  });

  it('empty input is a no-op', async () => {
    expect(await db.model(tdb.t('uniq')).copyFrom([])).toEqual({ count: 0 });
    async function* none() {}
    expect(await db.model(tdb.t('uniq')).copyFrom(none(), { returning: true })).toEqual({
      count: 0,
      rows: [],
    });
  });
});

describe('copyTo', () => {
  beforeEach(async () => {
    await db
      .model(tdb.t('uniq'))
      .bulkCreate(
        HOSTILE_TEXT.map((s, i) => ({ code: `c${i}`, name: i % 4 === 3 ? null : s, n: i })),
      );
  });

  it('columns and where select what comes out, decoded', async () => {
    const rows = await all(
      db
        .model(tdb.t('uniq'))
        .copyTo({ columns: ['n', 'name'], where: { n: { gte: 10 }, name: { isNull: false } } }),
    );
    const expected = HOSTILE_TEXT.map((s, i) => ({ n: i, name: i % 4 === 3 ? null : s })).filter(
      (r) => r.n >= 10 && r.name !== null,
    );
    expect(rows.sort((a, b) => (a.n as number) - (b.n as number))).toEqual(expected);
    for (const r of rows) expect(Object.keys(r)).toEqual(['n', 'name']);
  });

  it('where with IN lists and hostile values travels safely', async () => {
    const rows = await all(
      db.model(tdb.t('uniq')).copyTo({
        columns: ['code'],
        where: { name: { in: [HOSTILE_TEXT[1]!, HOSTILE_TEXT[4]!, HOSTILE_TEXT[16]!] } },
      }),
    );
    expect(rows.map((r) => r.code).sort()).toEqual(['c1', 'c16', 'c4']);
  });

  it("format 'csv' has a header and quotes empty strings; 'text' is COPY text", async () => {
    const m = db.model(tdb.t('uniq'));
    const csv = Buffer.concat(
      await all(m.copyTo({ format: 'csv', columns: ['n', 'name'], where: { n: [12, 3, 1] } })),
    ).toString('utf8');
    const lines = csv.split('\n');
    expect(lines[0]).toBe('n,name');
    expect(lines.slice(1).sort()).toEqual(['', '1,tab\there', '12,""', '3,']);
    const text = Buffer.concat(
      await all(m.copyTo({ format: 'text', columns: ['n', 'name'], where: { n: [2, 5, 3] } })),
    ).toString('utf8');
    expect(text.split('\n').sort()).toEqual(['', '2\tnew\\nline', '3\t\\N', '5\t\\\\N']);
    // the same check against Postgres itself
    const pgText = await tdb.pool.query(
      `SELECT string_agg(n || E'\\t' || coalesce(replace(replace(name, E'\\\\', E'\\\\\\\\'), E'\\n', E'\\\\n'), E'\\\\N'), E'\\n' ORDER BY n) AS t FROM ${tdb.t('uniq')} WHERE n IN (2, 3, 5)`,
    );
    expect(text.split('\n').filter(Boolean).sort()).toEqual(pgText.rows[0].t.split('\n').sort());
  });

  it('breaking out early releases the connection and the client still works', async () => {
    const m = db.model(tdb.t('uniq'));
    for (let k = 0; k < 15; k++) {
      for await (const _ of m.copyTo()) break;
    }
    expect((await all(m.copyTo({ columns: ['id'] }))).length).toBe(HOSTILE_TEXT.length);
  });

  it('a consumer that fails mid-stream (a full disk) gives the connection back', async () => {
    // One connection in the pool: a copyTo left suspended at a yield would hold it for ever.
    await tdb.pool.query(
      `CREATE TABLE IF NOT EXISTS ${tdb.t('big')} AS SELECT g AS id, repeat('x', 100) AS t FROM generate_series(1, 200000) g`,
    );
    const one = tdb.client({ poolSize: 1 });
    try {
      const m = one.model(tdb.t('big'));
      for (let k = 0; k < 3; k++) {
        let counted: number | undefined;
        const failing = new Writable({
          write(_chunk, _enc, cb) {
            cb(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }));
          },
        });
        const values = valuesCounted(m.copyTo({ format: 'csv' }), (n) => {
          counted = n;
        });
        await expect(pipeline(Readable.from(values), failing)).rejects.toThrow(/ENOSPC/);
        expect(counted).toBeUndefined();
      }
      expect((await all(m.copyTo({ columns: ['id'] }))).length).toBe(200000);
    } finally {
      await one.close();
    }
  });

  it('unknown column and bad where are refused', async () => {
    const m = db.model(tdb.t('uniq'));
    expect((await rejects(all(m.copyTo({ columns: ['nope'] })))).code).toBe('UNKNOWN_COLUMN');
    expect((await rejects(all(m.copyTo({ where: { 'x"; drop table y; --': 1 } })))).code).toBe(
      'UNKNOWN_COLUMN',
    );
    expect((await rejects(all(m.copyTo({ where: { n: 'abc' } })))).code).toBe('INVALID_VALUE');
  });
});
