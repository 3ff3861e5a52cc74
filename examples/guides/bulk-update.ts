// The TypeScript of docs/guides/bulk-update.md, block by block (each `// ---` starts the next).
// test/docs.test.ts checks the guide and this file agree, typechecks it and runs it.

import { BulkClient } from 'bulkmodel';

const db = new BulkClient({ connectionString: process.env.DATABASE_URL });
const items = db.model('items');

// Each row its own values; `null` writes NULL; a column a row leaves out is left alone.
const res = await items.updateFields(
  [
    { id: 1, name: 'renamed', value: null },
    { id: 2, value: 7 },
    { id: 999_999, value: 0 }, // matches nothing
  ],
  { fields: ['name', 'value'] },
);
console.log(res.count, res.missing); // 2 [ { id: 999999 } ]

// ---
await items.updateFields(
  Array.from({ length: 500 }, (_, i) => ({ sku: `sku-${i + 1}`, price: (i * 1.5).toFixed(2) })),
  { key: ['sku'], fields: ['price'], batchSize: 100 },
);

// ---
const { count } = await items.update({
  where: { value: { gte: 100, lt: 200 }, flag: false },
  set: { flag: true, payload: { reviewed: true } },
});
console.log(`${count} rows flagged`);
await db.close();
