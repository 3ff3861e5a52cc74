// The TypeScript of docs/guides/connection-management.md, block by block (each `// ---` starts the next).
// test/docs.test.ts checks the guide and this file agree, typechecks it and runs it.

import { BulkClient, isBulkError } from 'bulkmodel';
import pg from 'pg';

const db = new BulkClient({
  connectionString: process.env.DATABASE_URL,
  connectTimeoutMs: 5000,
  retry: { maxElapsedMs: 30_000 }, // give up on a chunk after 30 s of transient failures
});

try {
  const check = await db.ensureConnected({ timeoutMs: 5000 });
  console.log(`Postgres ${check.serverVersion}, ${check.latencyMs} ms, ${check.replaced} replaced`);
} catch (err) {
  if (isBulkError(err) && err.code === 'CONNECTION_FAILED') console.error('database down');
  throw err;
}
await db.close();

// ---
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
pool.on('error', () => {}); // an idle client dropping must not crash the process
const shared = new BulkClient({ pool, maxConcurrentBatchWrites: 4 });
await shared.model('items').bulkCreate([{ sku: 'pooled', name: 'via a shared pool' }]);
await shared.close();
await pool.end();
