// The TypeScript of docs/guides/signals.md, block by block (each `// ---` starts the next).
// test/docs.test.ts checks the guide and this file agree, typechecks it and runs it.

import { BulkClient } from 'bulkmodel';

const db = new BulkClient({ connectionString: process.env.DATABASE_URL });

db.signals.on('preBulkCreate', (e) => {
  for (const row of e.rows) row.name = String(row.name).trim(); // adjust rows before they are written
});
db.signals.on('postBulkCreate', (e) => {
  console.log(`${e.table}: chunk ${e.chunkIndex} wrote ${e.count} rows`);
});
db.signals.on('postUpdateFields', (e) => {
  if (e.missing.length > 0) console.warn(`${e.missing.length} keys matched no row`);
});

const items = db.model('items');
await items.bulkCreate([{ sku: 's-1', name: '  padded  ' }], { returning: ['name'] });
await items.bulkCreate([{ sku: 's-2', name: 'quiet' }], { signals: false }); // this call sends none
await items.updateFields([{ sku: 'nope', value: 1 }], { key: ['sku'] });
await db.close();

// ---
import { BulkEvents } from 'bulkmodel';

const events = new BulkEvents({
  redis: process.env.REDIS_URL,
  queue: process.env.BULKMODEL_QUEUE ?? 'bulkmodel',
});
events.on('postBulkCreate', (e) => console.log(`${e.count} rows into ${e.table}`));
events.on('failed', (e) => console.error(e.operationId, e.error?.code));
await events.waitUntilReady();
await events.close();
