import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * One database per test run, so that runs never collide; each test file then works in a schema
 * of its own inside it. The database is dropped at the end.
 */
const ADMIN_URL =
  process.env.TEST_ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export default async function setup(): Promise<() => Promise<void>> {
  const name = `bulkmodel_test_${process.pid}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  process.env.TEST_DATABASE_URL = url.toString();
  process.env.TEST_DATABASE_NAME = name;
  if (process.env.BULKMODEL_TEST_BACKEND === 'postgres') {
    // The queue suite on the Postgres backend: one queue schema for the run, made here once.
    const { PostgresBackend } = await import('../src/queue/backend.js');
    const b = new PostgresBackend({
      database: url.toString(),
      schema: 'bulkmodel_queue_test',
      migrate: true,
      poolSize: 1,
    });
    try {
      await b.prepare();
    } finally {
      await b.close();
    }
  }
  return async () => {
    const a = new pg.Client({ connectionString: ADMIN_URL });
    await a.connect();
    await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await a.end();
  };
}
