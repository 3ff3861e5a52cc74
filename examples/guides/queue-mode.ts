// The TypeScript of docs/guides/queue-mode.md, block by block (each `// ---` starts the next).
// test/docs.test.ts checks the guide and this file agree, typechecks it and runs it.

import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BulkEvents, BulkProducer, BulkWorker } from 'bulkmodel';

const redis = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const queue = process.env.BULKMODEL_QUEUE ?? 'bulkmodel';

const worker = new BulkWorker({
  redis,
  queue,
  database: process.env.DATABASE_URL,
  tables: ['items'],
  concurrency: 4,
  // The directory copyTo jobs write their files into; without one they are refused.
  exportDir: await mkdtemp(join(tmpdir(), 'bulkmodel-exports-')),
});
worker.signals.on('preBulkCreate', (e) => {
  for (const row of e.rows) row.name = String(row.name).toUpperCase(); // runs in the worker
});
await worker.waitUntilReady();

// ---
const producer = new BulkProducer({ redis, queue });

const rows = Array.from({ length: 10_000 }, (_, i) => ({ sku: `q-${i}`, name: `queued ${i}` }));
const op = await producer.bulkCreate('items', rows, { batchSize: 1000, returning: ['id', 'sku'] });
op.on('progress', (p) => console.log(`${p.rowsDone}/${p.totalRows ?? '?'} rows`));
const result = await op.done(); // rejects with the worker's BulkError if a chunk failed
console.log(result.count, result.rows?.[0]); // 10000 { id: '...', sku: 'q-0' }
console.log(await op.status()); // state, rowsDone, chunksDone, retries, ...

// ---
const again = await producer.updateFields(
  'items',
  rows.slice(0, 100).map((r, i) => ({ sku: r.sku, value: i })),
  { key: ['sku'], fields: ['value'], operationId: 'nightly-values-2026-01-31' },
);
await again.done();
const same = await producer.updateFields(
  'items',
  rows.slice(0, 100).map((r, i) => ({ sku: r.sku, value: i })),
  { key: ['sku'], fields: ['value'], operationId: 'nightly-values-2026-01-31' },
);
console.log((await same.done()).count); // 100, written once

// ---
const events = new BulkEvents({ redis, queue });
events.on('postUpdate', (e) => console.log(`update of ${e.table}: ${e.count} rows`));
await events.waitUntilReady();

await (
  await producer.update('items', { where: { value: { lt: 50 } }, set: { flag: true } })
).done();
const exported = await (
  await producer.copyTo('items', { path: 'items.ndjson', format: 'ndjson' })
).done();
console.log(exported.path); // written by the worker, inside its exportDir

await events.close();
await producer.close();
await worker.close(); // graceful: finishes in-flight chunks
