// The TypeScript of docs/guides/bulk-create.md, block by block (each `// ---` starts the next).
// test/docs.test.ts checks the guide and this file agree, typechecks it and runs it.

import { BulkClient, isBulkError } from 'bulkmodel';

const db = new BulkClient({ connectionString: process.env.DATABASE_URL });
const items = db.model('items'); // or 'public.items'

const rows = Array.from({ length: 10_000 }, (_, i) => ({
  sku: `sku-${i}`,
  name: `item ${i}`,
  price: (i / 100).toFixed(2), // numeric as a string: exact
  tags: i % 2 ? ['odd', null] : [],
  payload: { i, note: 'any JSON value' },
}));
const { count } = await items.bulkCreate(rows, { batchSize: 2000 });
console.log(`${count} rows in 5 chunks`);

// ---
const created = await items.bulkCreate(
  [
    { sku: 'new-1', name: 'one' },
    { sku: 'new-2', name: 'two', flag: true },
  ],
  { returning: ['id', 'sku', 'created_at'] },
);
for (const row of created.rows ?? []) console.log(row.id, row.sku, row.created_at);

// ---
await items.bulkCreate([{ sku: 'new-1', name: 'ignored' }], { onConflict: 'ignore' });
await items.bulkCreate([{ sku: 'new-1', name: 'renamed', price: '1.50' }], {
  onConflict: { target: ['sku'], update: ['name', 'price'] },
});

// ---
try {
  await items.bulkCreate([{ sku: 'ok', name: 'fine' }, { sku: 'bad' }], {
    transaction: 'operation',
  });
} catch (err) {
  if (!isBulkError(err)) throw err;
  console.log(err.code, err.column, err.row); // NOT_NULL_VIOLATION name 1
}
await db.close();
