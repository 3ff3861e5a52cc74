import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type BulkClient, BulkError, type BulkErrorCode } from '../src/index.js';
import { type TestDb, testDb } from './helpers.js';
import { createHostileTables } from './hostile.js';

let tdb: TestDb;
let db: BulkClient;
beforeAll(async () => {
  tdb = await testDb('badin');
  await createHostileTables(tdb.pool, tdb.schema);
  await tdb.pool.query(`CREATE TABLE ${tdb.t('x')} (id int PRIMARY KEY)`);
  db = tdb.client();
});
afterAll(() => tdb.close());
beforeEach(async () => {
  await tdb.pool.query(
    `TRUNCATE ${tdb.t('uniq')}, ${tdb.t('hostile')}, ${tdb.t('nopk')} RESTART IDENTITY`,
  );
  await tdb.pool.query(`INSERT INTO ${tdb.t('uniq')} (code) VALUES ('existing')`);
});

async function rejects(p: Promise<unknown>, code: BulkErrorCode): Promise<BulkError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(BulkError);
    expect((err as BulkError).code).toBe(code);
    return err as BulkError;
  }
  throw new Error(`expected a rejection with ${code}`);
}

async function count(table: string): Promise<number> {
  return (await tdb.pool.query(`SELECT count(*)::int AS n FROM ${tdb.t(table)}`)).rows[0].n;
}

// bulkCreate runs with COPY by default and with INSERT ... SELECT on request: both are checked.
type Writer = 'bulkCreate' | 'bulkCreate (insert)' | 'copyFrom';
const writers: Writer[] = ['bulkCreate', 'bulkCreate (insert)', 'copyFrom'];

describe('bad input', () => {
  it('unknown table, and injection in table names', async () => {
    for (const name of [tdb.t('nope'), 'nope_at_all']) {
      const e = await rejects(db.model(name).bulkCreate([{ a: 1 }]), 'UNKNOWN_TABLE');
      expect(e.table).toBe(name);
    }
    for (const name of [
      `${tdb.t('uniq')}; drop table ${tdb.t('x')}`,
      'a.b.c',
      `${tdb.schema}.uniq"`,
      'uniq--',
      '',
    ]) {
      await rejects(db.model(name).bulkCreate([{ code: 'q' }]), 'INVALID_IDENTIFIER');
    }
    // a quoted name is one identifier, whatever it holds
    await rejects(
      db.model(`${tdb.schema}."uniq; drop table x"`).bulkCreate([{ code: 'q' }]),
      'UNKNOWN_TABLE',
    );
    expect(await count('x')).toBe(0);
    expect(await count('uniq')).toBe(1);
  });

  for (const w of writers) {
    describe(w, () => {
      const write = (rows: unknown[], opts: Record<string, unknown> = {}, table = 'uniq') =>
        w === 'bulkCreate (insert)'
          ? db
              .model(tdb.t(table))
              .bulkCreate(rows as Record<string, unknown>[], { ...opts, strategy: 'insert' })
          : db.model(tdb.t(table))[w](rows as Record<string, unknown>[], opts);

      it('unknown column, also an injection attempt, names table, column and row', async () => {
        const e = await rejects(write([{ code: 'a' }, { code: 'b', nope: 1 }]), 'UNKNOWN_COLUMN');
        expect(e).toMatchObject({ table: tdb.t('uniq'), column: 'nope', row: 1 });
        const evil = 'name"; drop table x; --';
        const e2 = await rejects(write([{ code: 'a', [evil]: 'v' }]), 'UNKNOWN_COLUMN');
        expect(e2.column).toBe(evil);
        expect(await count('uniq')).toBe(1);
      });

      it('wrong JS type and out of range values', async () => {
        const cases: [Record<string, unknown>, string][] = [
          [{ n: 'five' }, 'n'],
          [{ n: 1.5 }, 'n'],
          [{ n: 2 ** 31 }, 'n'],
          [{ n: '-2147483649' }, 'n'],
          [{ n: true }, 'n'],
          [{ name: 5 }, 'name'],
          [{ name: { a: 1 } }, 'name'],
          [{ created: 12345 }, 'created'],
          [{ created: new Date(Number.NaN) }, 'created'],
        ];
        for (const [extra, column] of cases) {
          const e = await rejects(
            write([{ code: 'ok' }, { code: 'bad', ...extra }]),
            'INVALID_VALUE',
          );
          expect(e).toMatchObject({ table: tdb.t('uniq'), column, row: 1 });
        }
        const h: [Record<string, unknown>, string][] = [
          [{ i2: 40000 }, 'i2'],
          [{ i8: 2n ** 63n }, 'i8'],
          [{ i8: 2 ** 60 }, 'i8'],
          [{ b: 'yes' }, 'b'],
          [{ by: 'not a buffer' }, 'by'],
          [{ jb: 10n }, 'jb'],
          [{ ta: 5 }, 'ta'],
          [{ ia: [1, 'x'] }, 'ia'],
          [{ num: 'twelve' }, 'num'],
          [{ u: 5 }, 'u'],
        ];
        for (const [row, column] of h) {
          const e = await rejects(write([row], {}, 'hostile'), 'INVALID_VALUE');
          expect(e).toMatchObject({ column, row: 0 });
        }
        expect(await count('uniq')).toBe(1);
        expect(await count('hostile')).toBe(0);
      });

      it('NUL bytes and lone surrogates in text, json and arrays', async () => {
        for (const row of [
          { t: 'a\u0000b' },
          { t: 'x\ud800y' },
          { jb: { k: 'a\u0000' } },
          { jb: { 'k\udc00': 1 } },
          { jb: ['\ud83d'] },
          { ta: ['ok', 'nul\u0000'] },
          { jba: [{ a: '\u0000' }] },
        ]) {
          const e = await rejects(write([{ t: 'fine' }, row], {}, 'hostile'), 'INVALID_VALUE');
          expect(e.row).toBe(1);
          expect(e.column).toBe(Object.keys(row)[0]);
        }
        expect(await count('hostile')).toBe(0);
      });

      it('NOT NULL violation', async () => {
        const e = await rejects(write([{ code: 'a' }, { name: 'no code' }]), 'NOT_NULL_VIOLATION');
        expect(e.table).toBe(tdb.t('uniq'));
        expect(e.column).toBe('code');
        await rejects(write([{ code: null }]), 'NOT_NULL_VIOLATION');
        expect(await count('uniq')).toBe(1);
      });

      it('unique violation within a chunk and against existing rows', async () => {
        const e1 = await rejects(write([{ code: 'a' }, { code: 'a' }]), 'UNIQUE_VIOLATION');
        expect(e1.constraint).toBe('uniq_code_key');
        await rejects(write([{ code: 'b' }, { code: 'existing' }]), 'UNIQUE_VIOLATION');
        expect(await count('uniq')).toBe(1);
      });

      it('check and domain violations', async () => {
        await rejects(write([{ code: 'a', n: -1 }]), 'CHECK_VIOLATION');
        const e = await rejects(write([{ code: 'a' }, { code: 'b', p: 0 }]), 'CHECK_VIOLATION');
        expect(e.table).toBe(tdb.t('uniq'));
        await rejects(write([{ m: 'furious' }], {}, 'hostile'), 'DATA_ERROR');
        expect(await count('uniq')).toBe(1);
        expect(await count('hostile')).toBe(0);
      });

      it('writing a generated column or a GENERATED ALWAYS identity', async () => {
        const e = await rejects(
          write([{ i2: 1 }, { i2: 1, gen: 2 }], {}, 'hostile'),
          'READ_ONLY_COLUMN',
        );
        expect(e).toMatchObject({ column: 'gen', row: 1 });
        await rejects(write([{ id: 5, name: 'x' }], {}, 'ident_always'), 'READ_ONLY_COLUMN');
        await rejects(
          write([{ id: 5, name: 'x' }], { returning: true }, 'ident_always'),
          'READ_ONLY_COLUMN',
        );
        // a caller's key among reserved ones (returning) is refused too
        const e3 = await rejects(
          write([{ name: 'a' }, { id: 999, name: 'b' }], { returning: true }, 'ident_always'),
          'READ_ONLY_COLUMN',
        );
        expect(e3).toMatchObject({ column: 'id', row: 1 });
        const e2 = await rejects(
          write([{ i2: 1 }], { onConflict: { target: ['id'], update: ['gen'] } }, 'hostile'),
          'READ_ONLY_COLUMN',
        );
        expect(e2.column).toBe('gen');
        expect(await count('hostile')).toBe(0);
        expect(await count('ident_always')).toBe(0);
      });

      it('rows that are not objects', async () => {
        for (const bad of [null, 5, 'row', [1, 2], new Date(), Buffer.from('x')]) {
          const e = await rejects(write([{ code: 'a' }, bad]), 'INVALID_ROW');
          expect(e.row).toBe(1);
        }
        expect(await count('uniq')).toBe(1);
      });

      it('bad options', async () => {
        for (const opts of [
          { batchSize: 0 },
          { batchSize: -1 },
          { batchSize: 1.5 },
          { batchSize: '10' },
          { bogus: true },
          { transaction: 'sometimes' },
          { onConflict: 'replace' },
          { onConflict: { target: [], update: [] } },
          { returning: ['nope'] },
          { maxConcurrentWorkers: 0, concurrent: true },
          { operationId: 'has spaces in it' },
        ]) {
          await rejects(
            write([{ code: 'a' }], opts),
            opts.returning ? 'UNKNOWN_COLUMN' : 'INVALID_OPTION',
          );
        }
        await rejects(write('not rows' as unknown as unknown[]), 'INVALID_OPTION');
        expect(await count('uniq')).toBe(1);
      });

      it('returning on a table without a primary key is NO_KEY', async () => {
        await rejects(write([{ name: 'a' }], { returning: true }, 'nopk'), 'NO_KEY');
        expect(await count('nopk')).toBe(0);
        // with a key the rows carry, it works
        const r = await write([{ name: 'a', v: 1 }], { returning: true, key: ['name'] }, 'nopk');
        expect(r.rows).toEqual([{ name: 'a', v: 1 }]);
      });

      it('values Postgres refuses name their row (and column where one is at fault)', async () => {
        const uuid = (i: number) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
        const rows = Array.from({ length: 9 }, (_, i) => ({
          u: i === 6 ? 'nope' : uuid(i),
          t: 'x',
        }));
        const e1 = await rejects(write(rows, {}, 'hostile'), 'DATA_ERROR');
        expect(e1).toMatchObject({ table: tdb.t('hostile'), row: 6, column: 'u' });
        const e2 = await rejects(
          write([{ code: 'a' }, { code: 'b', p: 3 }, { code: 'c', p: 1 }, { code: 'd', p: 0 }]),
          'CHECK_VIOLATION',
        );
        expect(e2).toMatchObject({ row: 3, column: 'p' });
        const e3 = await rejects(
          write([
            { code: 'a', n: 1 },
            { code: 'b', n: -1 },
          ]),
          'CHECK_VIOLATION',
        );
        expect(e3).toMatchObject({ row: 1, constraint: 'uniq_n_check' });
        const e4 = await rejects(
          write([{ code: 'a' }, { code: 'b' }, { code: 'c' }, { code: 'a' }]),
          'UNIQUE_VIOLATION',
        );
        expect(e4.row).toBe(3);
        const e5 = await rejects(
          write([{ code: 'q' }, { code: 'r' }, { code: 'existing' }]),
          'UNIQUE_VIOLATION',
        );
        expect(e5.row).toBe(2);
        const e6 = await rejects(
          write([{ code: 'q' }, { code: 'r' }, { code: 's' }, { code: 't' }, { code: null }], {
            batchSize: 2,
          }),
          'NOT_NULL_VIOLATION',
        );
        expect(e6).toMatchObject({ row: 4, column: 'code', committedChunks: 2, committedRows: 4 });
        expect(await count('hostile')).toBe(0);
        expect(await count('uniq')).toBe(5);
      });

      it('a failing chunk: earlier chunks committed, and the error says how many', async () => {
        const rows = Array.from({ length: 7 }, (_, i) => ({ code: `r${i}`, n: i === 5 ? 'x' : i }));
        const e = await rejects(write(rows, { batchSize: 2 }), 'INVALID_VALUE');
        expect(e).toMatchObject({ row: 5, column: 'n', committedChunks: 2, committedRows: 4 });
        expect(await count('uniq')).toBe(5);
      });

      it('empty input is a no-op with count 0', async () => {
        expect(await write([])).toEqual({ count: 0 });
        expect(await count('uniq')).toBe(1);
      });
    });
  }

  describe('updateFields', () => {
    const uf = (rows: unknown[], opts: Record<string, unknown> = {}, table = 'uniq') =>
      db.model(tdb.t(table)).updateFields(rows as Record<string, unknown>[], opts);

    it('MISSING_KEY, DUPLICATE_KEY, NO_KEY, READ_ONLY_COLUMN, UNKNOWN_COLUMN, INVALID_OPTION', async () => {
      const e = await rejects(
        uf([
          { id: 1, n: 1 },
          { id: null, n: 2 },
        ]),
        'MISSING_KEY',
      );
      expect(e).toMatchObject({ table: tdb.t('uniq'), column: 'id', row: 1 });
      await rejects(
        uf([
          { id: 1, n: 1 },
          { id: 1, n: 2 },
        ]),
        'DUPLICATE_KEY',
      );
      await rejects(uf([{ name: 'a', v: 1 }], {}, 'nopk'), 'NO_KEY');
      await rejects(uf([{ id: 1, i2: 1, gen: 3 }], {}, 'hostile'), 'READ_ONLY_COLUMN');
      await rejects(uf([{ id: 1, nope: 1 }]), 'UNKNOWN_COLUMN');
      await rejects(uf([{ id: 1, n: 1 }], { fields: ['nope'] }), 'UNKNOWN_COLUMN');
      await rejects(uf([{ id: 1, n: 1 }], { key: ['nope'] }), 'UNKNOWN_COLUMN');
      await rejects(uf([{ id: 1, n: 1 }], { fields: [] }), 'INVALID_OPTION');
      await rejects(uf([{ id: 1, n: 1 }], { fields: ['id'] }), 'INVALID_OPTION');
      await rejects(uf([{ id: 1, n: 1 }], { batchSize: 0 }), 'INVALID_OPTION');
      await rejects(uf([{ id: 1, n: 1 }], { bogus: 1 }), 'INVALID_OPTION');
      // Options of other methods are unknown here.
      await rejects(uf([{ id: 1, n: 1 }], { returning: true }), 'INVALID_OPTION');
      await rejects(uf([{ id: 1, n: 1 }], { onConflict: 'ignore' }), 'INVALID_OPTION');
      await rejects(
        db.model(tdb.t('uniq')).bulkCreate([{ code: 'q' }], { fields: ['n'] } as never),
        'INVALID_OPTION',
      );
      await rejects(
        db.model(tdb.t('uniq')).update({ all: true, set: { n: 1 } }, { returning: true } as never),
        'INVALID_OPTION',
      );
      await rejects(uf([{ id: 1, n: 'x' }]), 'INVALID_VALUE');
      await rejects(uf([{ id: 1, code: null }]), 'NOT_NULL_VIOLATION');
      await rejects(uf([{ id: 1, n: -5 }]), 'CHECK_VIOLATION');
      await rejects(uf([7]), 'INVALID_ROW');
      const r = await tdb.pool.query(`SELECT code, n FROM ${tdb.t('uniq')}`);
      expect(r.rows).toEqual([{ code: 'existing', n: null }]);
    });

    it('values Postgres refuses name their row, whatever order the keys came in', async () => {
      await tdb.pool.query(
        `INSERT INTO ${tdb.t('uniq')} (code) SELECT 'k' || g FROM generate_series(2, 6) g`,
      );
      const rows = [6, 5, 4, 3, 2].map((id) => ({ id, n: id === 3 ? -1 : id, p: 1 }));
      const e = await rejects(uf(rows), 'CHECK_VIOLATION');
      expect(e).toMatchObject({ table: tdb.t('uniq'), row: 3, constraint: 'uniq_n_check' });
      const e2 = await rejects(
        uf([
          { id: 2, p: 1 },
          { id: 3, p: -4 },
        ]),
        'CHECK_VIOLATION',
      );
      expect(e2).toMatchObject({ row: 1, column: 'p' });
      const r = await tdb.pool.query(
        `SELECT count(*)::int AS n FROM ${tdb.t('uniq')} WHERE n IS NOT NULL OR p IS NOT NULL`,
      );
      expect(r.rows[0].n).toBe(0);
    });

    it('a unique violation against another row', async () => {
      await tdb.pool.query(`INSERT INTO ${tdb.t('uniq')} (code) VALUES ('other')`);
      await rejects(uf([{ id: 2, code: 'existing' }]), 'UNIQUE_VIOLATION');
      const r = await tdb.pool.query(`SELECT code FROM ${tdb.t('uniq')} ORDER BY id`);
      expect(r.rows).toEqual([{ code: 'existing' }, { code: 'other' }]);
    });
  });

  it('update: injection in where and set column names', async () => {
    const m = db.model(tdb.t('uniq'));
    await rejects(m.update({ where: { 'id" = 1 OR "1"="1': 1 }, set: { n: 1 } }), 'UNKNOWN_COLUMN');
    await rejects(m.update({ all: true, set: { 'n" = 1, "code': 'x' } }), 'UNKNOWN_COLUMN');
    await rejects(m.update({ all: true, set: { n: 1 } }, { batchSize: 0 }), 'INVALID_OPTION');
    await rejects(m.update({ all: true, set: { id: 1, gen: 1 } }, {}), 'UNKNOWN_COLUMN');
    const r = await tdb.pool.query(`SELECT n FROM ${tdb.t('uniq')}`);
    expect(r.rows).toEqual([{ n: null }]);
  });
});
