// The TypeScript of docs/guides/migrating-from-django-bulkmodel.md, block by block (each `// ---` starts the next).
// test/docs.test.ts checks the guide and this file agree, typechecks it and runs it.

import { BulkClient } from 'bulkmodel';

const db = new BulkClient({ connectionString: process.env.DATABASE_URL });
const foos = db.model<{ id?: number; name: string; value: number }>('app_foo');

const created = await foos.bulkCreate(
  [
    { name: 'a', value: 1 },
    { name: 'b', value: 2 },
  ],
  { returning: true, batchSize: 1000, concurrent: true, maxConcurrentWorkers: 4 },
);
const rows = created.rows ?? [];
await foos.updateFields(
  rows.map((r) => ({ id: r.id, value: r.value + 10 })),
  { fields: ['value'] },
);
await foos.update({ where: { value: { gte: 10 } }, set: { name: 'big' } });
await foos.copyFrom([{ name: 'c', value: 3 }]);
for await (const row of foos.copyTo()) console.log(row.id, row.name, row.value);
await db.close();
