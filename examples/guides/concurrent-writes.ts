// The TypeScript of docs/guides/concurrent-writes.md, block by block (each `// ---` starts the next).
// test/docs.test.ts checks the guide and this file agree, typechecks it and runs it.

import { BulkClient } from 'bulkmodel';

const db = new BulkClient({
  connectionString: process.env.DATABASE_URL,
  poolSize: 8,
  maxConcurrentBatchWrites: 6, // never more than 6 chunks in flight, whatever the calls
});
const items = db.model('items');

// An async iterable of any length: memory holds about maxConcurrentWorkers chunks.
async function* generate(n: number) {
  for (let i = 0; i < n; i++) yield { sku: `c-${i}`, name: `row ${i}`, value: i };
}

const { count } = await items.copyFrom(generate(50_000), {
  batchSize: 5000,
  concurrent: true,
  maxConcurrentWorkers: 4,
  onProgress: (p) => console.log(`${p.rows} rows in ${p.chunks} chunks`),
});
console.log(count);

// ---
await items.update(
  { where: { value: { lt: 25_000 } }, set: { flag: true } },
  { batchSize: 10_000, concurrent: true, maxConcurrentWorkers: 2 },
);
await db.close();
