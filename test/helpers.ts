import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { BulkClient, type BulkClientOptions, silentLogger } from '../src/index.js';

export const DATABASE_URL =
  process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface TestDb {
  /** A plain pg pool, for setting up tables and reading back what landed. */
  pool: pg.Pool;
  schema: string;
  /** `schema.name` for a table of this test file. */
  t(name: string): string;
  client(options?: BulkClientOptions): BulkClient;
  close(): Promise<void>;
}

/** A schema of its own for one test file; every client made here is closed by close(). */
export async function testDb(prefix: string): Promise<TestDb> {
  const schema = `${prefix}_${randomBytes(3).toString('hex')}`;
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
  pool.on('error', () => {});
  await pool.query(`CREATE SCHEMA ${schema}`);
  const clients: BulkClient[] = [];
  return {
    pool,
    schema,
    t: (name) => `${schema}.${name}`,
    client(options = {}) {
      const c = new BulkClient({
        connectionString: DATABASE_URL,
        logger: silentLogger,
        ledger: { schema: `${schema}_ledger` },
        ...options,
      });
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) await c.close();
      await pool.query(`DROP SCHEMA ${schema} CASCADE`);
      await pool.query(`DROP SCHEMA IF EXISTS ${schema}_ledger CASCADE`);
      await pool.end();
    },
  };
}

/** Strings that break naive escaping: COPY specials, quotes, unicode, SQL. */
export const HOSTILE_TEXT = [
  'plain',
  'tab\there',
  'new\nline',
  'carriage\rreturn',
  'back\\slash',
  '\\N',
  '\\.',
  '\\x00',
  "quote'single",
  'quote"double',
  '{braces,comma}',
  'NULL',
  '',
  ' leading and trailing ',
  'emoji 😀 and 中文 and é',
  "'); DROP TABLE x; --",
  'a\\tb',
  '\u2028line separator\u2029',
  '\t\n\r\\',
];
