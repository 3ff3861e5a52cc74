import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dateToLiteral } from '../src/core/encode.js';
import { type BulkClient, BulkError } from '../src/index.js';
import { type TestDb, testDb } from './helpers.js';

// Each test guards a defect found in review; its name says which.
let tdb: TestDb;
let db: BulkClient;
beforeAll(async () => {
  tdb = await testDb('regress');
  db = tdb.client();
  await tdb.pool.query(`
    CREATE DOMAIN ${tdb.schema}.short AS varchar(5) CHECK (VALUE <> 'bad');
    CREATE TABLE ${tdb.t('dom')} (id int PRIMARY KEY, s ${tdb.schema}.short, a ${tdb.schema}.short[]);
    CREATE TABLE ${tdb.t('skip')} (id serial PRIMARY KEY, v text);
    CREATE FUNCTION ${tdb.schema}.skip_some() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN IF NEW.v = 'skip' THEN RETURN NULL; END IF; RETURN NEW; END $$;
    CREATE TRIGGER skip_some BEFORE INSERT ON ${tdb.t('skip')} FOR EACH ROW EXECUTE FUNCTION ${tdb.schema}.skip_some();
    CREATE TABLE ${tdb.t('rounded')} (k numeric(6,1) PRIMARY KEY, v text);
    CREATE TABLE ${tdb.t('parted')} (id int, v text) PARTITION BY RANGE (id);
    CREATE TABLE ${tdb.t('parted_1')} PARTITION OF ${tdb.t('parted')} FOR VALUES FROM (0) TO (1000);
    CREATE VIEW ${tdb.t('view')} AS SELECT id, v FROM ${tdb.t('parted')};
    CREATE TABLE ${tdb.t('oids')} (id int PRIMARY KEY, o oid);
    CREATE TABLE ${tdb.t('flags')} (id int PRIMARY KEY, n int);
    CREATE TABLE ${tdb.t('fp')} (id int PRIMARY KEY, n int);
    CREATE TABLE ${tdb.t('keyed')} (c char(5), num numeric(6,1), u uuid, v text);
    CREATE TABLE ${tdb.t('styles')} (id int PRIMARY KEY, ts timestamptz, d date, iv interval, by bytea);
    INSERT INTO ${tdb.t('styles')} VALUES (1, '2026-03-04 05:06:07.123456+00', '2026-03-04', '1 year 2 mons -3 days 04:05:06.000007', '\\x00ff');
    CREATE TABLE ${tdb.t('parent')} (id int PRIMARY KEY, v text);
    CREATE TABLE ${tdb.t('child')} (extra int) INHERITS (${tdb.t('parent')});
    INSERT INTO ${tdb.t('parent')} VALUES (1, 'p'); INSERT INTO ${tdb.t('child')} VALUES (2, 'c', 0);
    CREATE TABLE ${tdb.t('protos')} (id bigserial PRIMARY KEY, "__proto__" jsonb, "constructor" text, code text UNIQUE);
  `);
});
afterAll(() => tdb.close());

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(BulkError);
    return (err as BulkError).code;
  }
  throw new Error('expected a rejection');
}

async function all<T = Record<string, unknown>>(sql: string): Promise<T[]> {
  return (await tdb.pool.query(sql)).rows as T[];
}

describe('regressions', () => {
  it('a domain over varchar(5) refuses a long value on every path, never truncates it', async () => {
    const m = db.model(tdb.t('dom'));
    expect(await code(m.bulkCreate([{ id: 1, s: 'abcdefgh' }], { strategy: 'insert' }))).toBe(
      'DATA_ERROR',
    );
    expect(await code(m.bulkCreate([{ id: 1, s: 'abcdefgh' }], { strategy: 'copy' }))).toBe(
      'DATA_ERROR',
    );
    expect(await code(m.bulkCreate([{ id: 1, a: ['abcdefgh'] }], { strategy: 'insert' }))).toBe(
      'DATA_ERROR',
    );
    expect(await code(m.bulkCreate([{ id: 2, s: 'bad' }], { strategy: 'insert' }))).toBe(
      'CHECK_VIOLATION',
    );
    await m.bulkCreate([{ id: 1, s: 'abc', a: ['x', null] }]);
    expect(await code(m.updateFields([{ id: 1, s: 'zyxwvuts' }]))).toBe('DATA_ERROR');
    expect(await code(m.updateFields([{ id: 1, a: ['zyxwvuts'] }]))).toBe('DATA_ERROR');
    expect(await all(`SELECT id, s, a::text FROM ${tdb.t('dom')}`)).toEqual([
      { id: 1, s: 'abc', a: '{x,NULL}' },
    ]);
  });

  it('COPY counts the rows Postgres wrote when a trigger skips some, and returns only those', async () => {
    const m = db.model(tdb.t('skip'));
    const r = await m.copyFrom([{ v: 'a' }, { v: 'skip' }, { v: 'c' }], { returning: ['id', 'v'] });
    expect(r.count).toBe(2);
    expect(r.rows?.map((x) => x.v)).toEqual(['a', 'c']);
    const k = await m.bulkCreate([{ v: 'skip' }, { v: 'd' }], { returning: ['id'] });
    expect(k.count).toBe(1);
    expect(k.rows).toHaveLength(1);
    expect((await all(`SELECT count(*)::int AS n FROM ${tdb.t('skip')}`))[0]).toEqual({ n: 3 });
  });

  it('returned rows pair to input by the key as stored, also when numeric(6,1) rounds it', async () => {
    const m = db.model(tdb.t('rounded'));
    for (const strategy of ['insert', 'copy'] as const) {
      await tdb.pool.query(`TRUNCATE ${tdb.t('rounded')}`);
      const r = await m.bulkCreate(
        [
          { k: '1.25', v: 'a' },
          { k: '2.0', v: 'b' },
        ],
        { returning: true, strategy },
      );
      expect(r.count).toBe(2);
      expect(r.rows).toEqual([
        { k: '1.3', v: 'a' },
        { k: '2.0', v: 'b' },
      ]);
    }
  });

  it("update with transaction: 'operation' reads its key batches on its own connection (a 1-connection pool)", async () => {
    const one = tdb.client({ poolSize: 1, connectTimeoutMs: 3000 });
    await tdb.pool.query(`INSERT INTO ${tdb.t('flags')} SELECT g, 0 FROM generate_series(1, 10) g`);
    const r = await one
      .model(tdb.t('flags'))
      .update({ where: { n: 0 }, set: { n: 1 } }, { transaction: 'operation', batchSize: 3 });
    expect(r.count).toBe(10);
  });

  it('copyTo reads partitioned tables and views', async () => {
    await db.model(tdb.t('parted')).bulkCreate([
      { id: 1, v: 'x' },
      { id: 2, v: 'y' },
    ]);
    for (const t of ['parted', 'view']) {
      const rows = [];
      for await (const r of db.model(tdb.t(t)).copyTo({ columns: ['id', 'v'] })) rows.push(r);
      expect(rows.sort((a, b) => Number(a.id) - Number(b.id))).toEqual([
        { id: 1, v: 'x' },
        { id: 2, v: 'y' },
      ]);
    }
  });

  it('a connection is never without an error listener, even as the pool hands a new one out', async () => {
    // A backend killed right after ReadyForQuery reports FATAL while the pool is handing the
    // client out; with no listener at that moment the process crashed (seen in the fault suite).
    const c = tdb.client({ poolSize: 2 });
    const client = await c.engine.pool.connect();
    try {
      expect(
        (client as unknown as { listenerCount(e: string): number }).listenerCount('error'),
      ).toBeGreaterThan(0);
    } finally {
      client.release();
    }
  });

  it('oid columns take values up to 2^32-1', async () => {
    await db.model(tdb.t('oids')).bulkCreate([{ id: 1, o: 4294967295 }]);
    expect(await all(`SELECT o::text FROM ${tdb.t('oids')}`)).toEqual([{ o: '4294967295' }]);
  });

  it('after a chunk fails, no later chunk is prepared (no pre signal, no reserved keys)', async () => {
    const c = tdb.client();
    const seen: number[] = [];
    c.signals.on('preBulkCreate', (e) => {
      seen.push(e.chunkIndex);
      if (e.chunkIndex === 1) throw new Error('stop here');
    });
    const rows = Array.from({ length: 10 }, (_, i) => ({ id: 100 + i, n: i }));
    expect(await code(c.model(tdb.t('flags')).bulkCreate(rows, { batchSize: 2 }))).toBe(
      'SIGNAL_REJECTED',
    );
    expect(seen).toEqual([0, 1]);
  });

  it('postUpdate reports the set a preUpdate listener changed, which is what was written', async () => {
    const c = tdb.client();
    let reported: unknown;
    c.signals.on('preUpdate', (e) => {
      e.set.n = 42;
    });
    c.signals.on('postUpdate', (e) => {
      reported = e.set;
    });
    await tdb.pool.query(`INSERT INTO ${tdb.t('flags')} VALUES (500, 0)`);
    await c.model(tdb.t('flags')).update({ where: { id: 500 }, set: { n: 7 } });
    expect(reported).toEqual({ n: 42 });
    expect(await all(`SELECT n FROM ${tdb.t('flags')} WHERE id = 500`)).toEqual([{ n: 42 }]);
  });

  it('a Date keeps its exact instant when the local offset has seconds (historical local mean time)', async () => {
    const tz = process.env.TZ;
    process.env.TZ = 'Asia/Kolkata';
    try {
      const lit = dateToLiteral(new Date('1870-06-01T12:00:00Z'));
      expect(lit).toBe('1870-06-01T17:21:10.000+05:21:10');
      const r = await tdb.pool.query('SELECT $1::timestamptz = $2::timestamptz AS same', [
        lit,
        '1870-06-01T12:00:00Z',
      ]);
      expect(r.rows[0].same).toBe(true);
    } finally {
      if (tz === undefined) delete process.env.TZ;
      else process.env.TZ = tz;
    }
  });

  it('a returned row keeps a jsonb column named __proto__ as an own property, not its prototype', async () => {
    const m = db.model(tdb.t('protos'));
    for (const strategy of ['copy', 'insert'] as const) {
      // JSON.parse makes "__proto__" an own property (an object literal would not)
      const input = JSON.parse(
        `{"__proto__": {"isAdmin": true}, "constructor": "c", "code": "p-${strategy}"}`,
      );
      const { rows } = await m.bulkCreate([input], { returning: true, strategy });
      const row = rows![0]!;
      expect(Object.getPrototypeOf(row)).toBe(Object.prototype);
      expect((row as { isAdmin?: unknown }).isAdmin).toBeUndefined();
      expect(Object.hasOwn(row, '__proto__')).toBe(true);
      expect(Object.getOwnPropertyDescriptor(row, '__proto__')?.value).toEqual({ isAdmin: true });
      expect(row.constructor).toBe('c');
    }
  });

  it('copyTo columns takes one name as a one-column list; a number is INVALID_OPTION, not a TypeError', async () => {
    const m = db.model(tdb.t('fp'));
    await m.bulkCreate([{ id: 1, n: 5 }]);
    const rows: unknown[] = [];
    for await (const r of m.copyTo({ columns: 'id' })) rows.push(r);
    expect(rows).toEqual([{ id: 1 }]);
    const read = async (columns: unknown) => {
      for await (const _ of m.copyTo({ columns: columns as never })) void _;
    };
    expect(await code(read(5))).toBe('INVALID_OPTION');
    expect(await code(read([]))).toBe('INVALID_OPTION');
  });

  it('an operation id repeated with another fingerprint is CHUNK_CONFLICT, never skipped as done', async () => {
    const m = db.model(tdb.t('fp'));
    const opts = { operationId: 'fp-op-1', batchSize: 2 };
    const first = await m.bulkCreate(
      [
        { id: 10, n: 1 },
        { id: 11, n: 1 },
      ],
      { ...opts, fingerprint: 'A' },
    );
    expect(first.count).toBe(2);
    // the same call again: recovered from the ledger, nothing written twice
    const again = await m.bulkCreate(
      [
        { id: 10, n: 1 },
        { id: 11, n: 1 },
      ],
      { ...opts, fingerprint: 'A' },
    );
    expect(again.count).toBe(2);
    expect(
      await code(
        m.bulkCreate(
          [
            { id: 12, n: 1 },
            { id: 13, n: 1 },
          ],
          { ...opts, fingerprint: 'B' },
        ),
      ),
    ).toBe('CHUNK_CONFLICT');
    expect(await all(`SELECT id FROM ${tdb.t('fp')} WHERE id >= 10 ORDER BY id`)).toEqual([
      { id: 10 },
      { id: 11 },
    ]);
    expect(await code(m.update({ all: true, set: { n: 2 } }, { ...opts, fingerprint: 'C' }))).toBe(
      'CHUNK_CONFLICT',
    );
  });

  it('an INVALID_VALUE message names column and row, never the value; the value stays on the error', async () => {
    const m = db.model(tdb.t('fp'));
    try {
      await m.bulkCreate([{ id: 20, n: 'secret-value-1' }]);
      throw new Error('expected a rejection');
    } catch (err) {
      const e = err as BulkError;
      expect(e.code).toBe('INVALID_VALUE');
      expect(e.column).toBe('n');
      expect(e.row).toBe(0);
      expect(e.message).not.toContain('secret-value-1');
      expect(e.value).toContain('secret-value-1');
      expect(JSON.stringify(e)).not.toContain('secret-value-1');
    }
  });

  it('a ledger made before fingerprints gains the column; its old rows match any fingerprint', async () => {
    const schema = `${tdb.schema}_oldledger`;
    await tdb.pool.query(`
      CREATE SCHEMA ${schema};
      CREATE TABLE ${schema}.chunk_ledger (operation_id text NOT NULL, chunk_index integer NOT NULL,
        result jsonb, created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (operation_id, chunk_index));
      INSERT INTO ${schema}.chunk_ledger VALUES ('old-op', 0, '{"count": 1}');`);
    try {
      const c = tdb.client({ ledger: { schema } });
      const m = c.model(tdb.t('fp'));
      // the chunk committed before the upgrade is recovered, not written again nor refused
      const r = await m.bulkCreate([{ id: 100, n: 1 }], {
        operationId: 'old-op',
        fingerprint: 'x',
      });
      expect(r.count).toBe(1);
      expect(await all(`SELECT id FROM ${tdb.t('fp')} WHERE id = 100`)).toEqual([]);
      await m.bulkCreate([{ id: 101, n: 1 }], { operationId: 'new-op', fingerprint: 'y' });
      expect(
        await all(`SELECT operation_id, fingerprint FROM ${schema}.chunk_ledger ORDER BY 1`),
      ).toEqual([
        { operation_id: 'new-op', fingerprint: 'y' },
        { operation_id: 'old-op', fingerprint: null },
      ]);
    } finally {
      await tdb.pool.query(`DROP SCHEMA ${schema} CASCADE`);
    }
  });

  it('writes through a parent table never reach the tables that inherit from it', async () => {
    const m = db.model(tdb.t('parent'));
    expect((await m.update({ all: true, set: { v: 'changed' } })).count).toBe(1);
    expect((await m.updateFields([{ id: 2, v: 'x' }], { fields: ['v'] })).missing).toEqual([
      { id: 2 },
    ]);
    const read: unknown[] = [];
    for await (const r of m.copyTo()) read.push(r);
    expect(read).toEqual([{ id: 1, v: 'changed' }]);
    expect(await all(`SELECT id, v FROM ONLY ${tdb.t('child')}`)).toEqual([{ id: 2, v: 'c' }]);
  });

  it("the allowlist refuses the ledger's schema and the system catalogs, even under '*'", async () => {
    const { Allowlist } = await import('../src/worker/allowlist.js');
    const c = tdb.client();
    await c.model(tdb.t('fp')).bulkCreate([{ id: 500, n: 1 }], { operationId: 'ledger-made' });
    const ledger = c.engine.ledger!.schema;
    const star = new Allowlist(['*'], c, ledger);
    expect((await star.check(tdb.t('fp'))).name).toBe('fp');
    for (const t of [`${ledger}.chunk_ledger`, 'pg_catalog.pg_class', 'information_schema.tables'])
      expect(await code(star.check(t))).toBe('TABLE_NOT_ALLOWED');
    const listed = new Allowlist([`${ledger}.chunk_ledger`], c, ledger);
    expect(await code(listed.check(`${ledger}.chunk_ledger`))).toBe('TABLE_NOT_ALLOWED');
  });

  it("a connection string's own DateStyle, IntervalStyle or bytea_output cannot break decoding", async () => {
    const url = new URL(process.env.TEST_DATABASE_URL ?? '');
    url.searchParams.set(
      'options',
      '-c DateStyle=German -c IntervalStyle=iso_8601 -c bytea_output=escape -c extra_float_digits=0',
    );
    const c = tdb.client({ connectionString: url.toString() });
    const rows: unknown[] = [];
    for await (const r of c.model(tdb.t('styles')).copyTo()) rows.push(r);
    const [r] = rows as { ts: Date; d: Date; iv: { toPostgres(): string }; by: Buffer }[];
    expect(r!.ts.toISOString()).toBe('2026-03-04T05:06:07.123Z');
    expect(r!.iv.toPostgres()).toContain('6.000007 seconds');
    expect(r!.by).toEqual(Buffer.from([0, 255]));
  });

  it('a misspelt decode option is INVALID_OPTION, not a silent fallback to the lossy shapes', () => {
    for (const decode of [{ timestamps: 'strings' }, { json: 'txt' }, 'EXACT', { jsonn: 'text' }])
      expect(() => tdb.client({ decode: decode as never })).toThrow(
        expect.objectContaining({ code: 'INVALID_OPTION' }),
      );
  });

  it('updateFields refuses keys Postgres holds equal though their text differs', async () => {
    const m = db.model(tdb.t('keyed'));
    const pairs: [string, unknown, unknown][] = [
      ['c', 'ab', 'ab   '],
      ['num', '1', '1.0'],
      ['u', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'],
    ];
    for (const [k, a, b] of pairs) {
      const e = await code(
        m.updateFields(
          [
            { [k]: a, v: 'first' },
            { [k]: b, v: 'second' },
          ],
          { key: k, fields: ['v'] },
        ),
      );
      expect([k, e]).toEqual([k, 'DUPLICATE_KEY']);
    }
  });

  it('a 200,000-digit number string is refused at once (no regex backtracking)', async () => {
    // (Quadratic backtracking took 10 s for 60,000 digits: this would outlast the test's timeout.)
    expect(
      await code(db.model(tdb.t('fp')).bulkCreate([{ id: 1, n: `${'1'.repeat(200_000)}x` }])),
    ).toBe('INVALID_VALUE');
  });

  it('onConflict with a misspelt key, or a column twice, is INVALID_OPTION', async () => {
    const m = db.model(tdb.t('fp'));
    for (const onConflict of [
      { target: ['id'], updates: ['n'] },
      { target: ['id'], update: ['n', 'n'] },
      ['id'],
    ])
      expect(
        await code(m.bulkCreate([{ id: 900, n: 1 }], { onConflict: onConflict as never })),
      ).toBe('INVALID_OPTION');
  });
});
