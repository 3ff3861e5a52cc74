// The TypeScript of docs/guides/copy.md, block by block (each `// ---` starts the next).
// test/docs.test.ts checks the guide and this file agree, typechecks it and runs it.

import { createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BulkClient } from 'bulkmodel';

const db = new BulkClient({
  connectionString: process.env.DATABASE_URL,
  decode: { timestamps: 'string' }, // read timestamps back as Postgres's text: microseconds kept
});
const items = db.model('items');

async function* source() {
  for (let i = 0; i < 20_000; i++) {
    yield {
      sku: `copy-${i}`,
      name: i % 2 ? 'tab\there' : 'new\nline \\N',
      tags: ['a', null, 'b,c'],
      payload: { i },
      created_at: '2026-01-31 12:00:00.123456+00',
    };
  }
}
const { count } = await items.copyFrom(source(), { batchSize: 5000 });
console.log(`${count} rows copied`);

const withKeys = await items.copyFrom([{ sku: 'copy-keyed', name: 'k' }], { returning: ['id'] });
console.log(withKeys.rows?.[0]?.id);

// ---
let seen = 0;
for await (const row of items.copyTo({
  columns: ['id', 'name', 'created_at'],
  where: { flag: false },
})) {
  if (seen++ === 0) console.log(row.created_at); // '2026-01-31 12:00:00.123456+00'
}

// Raw CSV (with a header row) or COPY text, straight into a file:
const csv = items.copyToStream({ format: 'csv', columns: ['id', 'sku', 'name', 'tags'] });
await pipeline(csv, createWriteStream(join(tmpdir(), 'items.csv')));
await db.close();
