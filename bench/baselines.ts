import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import pgPromise from 'pg-promise';
import type { BenchRow } from './data.js';

/**
 * Hand-written strategies, as a careful user writes them with pg and pg-copy-streams: the
 * baselines bulkmodel is measured against. Each takes rows and writes them; nothing is shared
 * with bulkmodel's code.
 */
const esc = (s: string) =>
  s.replace(/[\\\n\r\t]/g, (c) =>
    c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t',
  );
const arr = (a: (string | null)[]) =>
  `{${a.map((x) => (x === null ? 'NULL' : `"${x.replace(/[\\"]/g, '\\$&')}"`)).join(',')}}`;

export function copyLine(r: BenchRow): string {
  return `${esc(r.name)}\t${r.value}\t${r.price}\t${esc(arr(r.tags))}\t${esc(JSON.stringify(r.payload))}\t${r.created_at}\t${r.flag ? 't' : 'f'}\n`;
}

const COLS = 'name, value, price, tags, payload, created_at, flag';

async function copyText(
  client: pg.PoolClient,
  table: string,
  text: string | Iterable<string>,
): Promise<void> {
  const stream = client.query(copyFrom(`COPY ${table} (${COLS}) FROM STDIN`));
  await pipeline(Readable.from(typeof text === 'string' ? [text] : text), stream);
}

async function withClient<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    return await fn(c);
  } finally {
    c.release();
  }
}

/** COPY text of all rows, encoded before timing: the Postgres ceiling. */
export function copyPreEncoded(pool: pg.Pool, table: string, text: string): Promise<void> {
  return withClient(pool, (c) => copyText(c, table, text));
}

/** COPY text, escaped in JS while streaming. */
export function copyStreaming(pool: pg.Pool, table: string, rows: BenchRow[]): Promise<void> {
  function* lines() {
    let buf = '';
    for (const r of rows) {
      buf += copyLine(r);
      if (buf.length > 1 << 16) {
        yield buf;
        buf = '';
      }
    }
    if (buf) yield buf;
  }
  return withClient(pool, (c) => copyText(c, table, lines()));
}

/** INSERT ... SELECT FROM jsonb_to_recordset($1) RETURNING id, 5k rows per statement. */
export async function insertRecordset(
  pool: pg.Pool,
  table: string,
  rows: BenchRow[],
): Promise<number> {
  let n = 0;
  for (let i = 0; i < rows.length; i += 5000) {
    const r = await pool.query(
      `INSERT INTO ${table} (${COLS}) SELECT ${COLS} FROM jsonb_to_recordset($1::jsonb) AS x(name text, value int, price numeric, tags text[], payload jsonb, created_at timestamptz, flag boolean) RETURNING id`,
      [JSON.stringify(rows.slice(i, i + 5000))],
    );
    n += r.rowCount ?? 0;
  }
  return n;
}

/** Multi-row VALUES with one bind parameter per value, 1k rows per statement. */
export async function insertValues(pool: pg.Pool, table: string, rows: BenchRow[]): Promise<void> {
  for (let i = 0; i < rows.length; i += 1000) {
    const part = rows.slice(i, i + 1000);
    const values: unknown[] = [];
    const tuples = part.map((r) => {
      const b = values.length;
      values.push(
        r.name,
        r.value,
        r.price,
        r.tags,
        JSON.stringify(r.payload),
        r.created_at,
        r.flag,
      );
      return `($${b + 1}, $${b + 2}, $${b + 3}, $${b + 4}, $${b + 5}, $${b + 6}, $${b + 7})`;
    });
    await pool.query(`INSERT INTO ${table} (${COLS}) VALUES ${tuples.join(', ')}`, values);
  }
}

const pgp = pgPromise({ capSQL: true });

/** pg-promise's multi-row insert helper (values inlined as escaped literals), 5k rows. */
export async function insertPgPromise(url: string, table: string, rows: BenchRow[]): Promise<void> {
  const [schema, name] = table.split('.');
  const db = pgp({ connectionString: url, max: 1 });
  const cs = new pgp.helpers.ColumnSet(
    [
      'name',
      'value',
      'price',
      { name: 'tags', cast: 'text[]' },
      { name: 'payload', mod: ':json' },
      'created_at',
      'flag',
    ],
    { table: new pgp.helpers.TableName({ schema: schema!, table: name! }) },
  );
  try {
    for (let i = 0; i < rows.length; i += 5000)
      await db.none(pgp.helpers.insert(rows.slice(i, i + 5000), cs));
  } finally {
    await db.$pool.end();
  }
}

/** One INSERT per row in one transaction. */
export function insertPerRow(pool: pg.Pool, table: string, rows: BenchRow[]): Promise<void> {
  return withClient(pool, async (c) => {
    await c.query('BEGIN');
    for (const r of rows) {
      await c.query(`INSERT INTO ${table} (${COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)`, [
        r.name,
        r.value,
        r.price,
        r.tags,
        JSON.stringify(r.payload),
        r.created_at,
        r.flag,
      ]);
    }
    await c.query('COMMIT');
  });
}

type Upd = { id: string; name: string; value: number };

/** COPY the new values into a temp table, ANALYZE, UPDATE ... FROM it; 20k rows per chunk. */
export async function updateViaTempCopy(pool: pg.Pool, table: string, ups: Upd[]): Promise<void> {
  await withClient(pool, async (c) => {
    for (let i = 0; i < ups.length; i += 20000) {
      const part = ups.slice(i, i + 20000);
      await c.query('BEGIN');
      await c.query('CREATE TEMP TABLE u (id bigint, name text, value int) ON COMMIT DROP');
      const stream = c.query(copyFrom('COPY u (id, name, value) FROM STDIN'));
      await pipeline(
        Readable.from([part.map((u) => `${u.id}\t${esc(u.name)}\t${u.value}\n`).join('')]),
        stream,
      );
      await c.query('ANALYZE u');
      await c.query(
        `UPDATE ${table} AS t SET name = u.name, value = u.value FROM u WHERE t.id = u.id`,
      );
      await c.query('COMMIT');
    }
  });
}

/** UPDATE ... FROM jsonb_to_recordset($1), 20k rows per statement. */
export async function updateViaRecordset(pool: pg.Pool, table: string, ups: Upd[]): Promise<void> {
  for (let i = 0; i < ups.length; i += 20000) {
    await pool.query(
      `UPDATE ${table} AS t SET name = u.name, value = u.value FROM jsonb_to_recordset($1::jsonb) AS u(id bigint, name text, value int) WHERE t.id = u.id`,
      [JSON.stringify(ups.slice(i, i + 20000))],
    );
  }
}

/** Django bulk_update's shape: CASE WHEN per field, 1,000 rows per statement, bound parameters. */
export async function updateCaseWhen(pool: pg.Pool, table: string, ups: Upd[]): Promise<void> {
  await withClient(pool, async (c) => {
    await c.query('BEGIN');
    for (let i = 0; i < ups.length; i += 1000) {
      const part = ups.slice(i, i + 1000);
      const values: unknown[] = [];
      const p = (v: unknown) => {
        values.push(v);
        return `$${values.length}`;
      };
      const nameCase = part
        .map((u) => `WHEN id = ${p(u.id)}::bigint THEN ${p(u.name)}::text`)
        .join(' ');
      const valueCase = part
        .map((u) => `WHEN id = ${p(u.id)}::bigint THEN ${p(u.value)}::int`)
        .join(' ');
      const ids = part.map((u) => `${p(u.id)}::bigint`).join(', ');
      await c.query(
        `UPDATE ${table} SET name = CASE ${nameCase} END, value = CASE ${valueCase} END WHERE id IN (${ids})`,
        values,
      );
    }
    await c.query('COMMIT');
  });
}

/** Homogeneous update in one statement. */
export async function updateAllPlain(pool: pg.Pool, table: string): Promise<number> {
  const r = await pool.query(`UPDATE ${table} SET flag = true WHERE value >= 0`);
  return r.rowCount ?? 0;
}

/** SELECT every row, with pg's type parsers. */
export async function selectAll(pool: pg.Pool, table: string): Promise<number> {
  const r = await pool.query(`SELECT ${COLS} FROM ${table}`);
  return r.rows.length;
}
