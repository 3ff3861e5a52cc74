// Load a CSV file (header row = column names) into a table through the queue, streamed.
//
//   node --import tsx examples/load-csv.ts items items.csv
//
// A worker must serve the queue (bulkmodel worker --tables items). The CLI does the same with
// more care for types: bulkmodel load items items.csv. Here the table's columns are all ones
// that take strings (text, numbers, timestamps, booleans), so the CSV's strings go as they are.
import { createReadStream } from 'node:fs';
import { BulkProducer, type Row } from 'bulkmodel';
import { parse } from 'csv-parse';

const [table, file] = process.argv.slice(2);
if (!table || !file) {
  console.error('usage: load-csv.ts <table> <file.csv>');
  process.exit(2);
}

/** Rows of the file, one at a time: an unquoted empty field is NULL, a quoted "" the empty string. */
async function* rows(path: string): AsyncGenerator<Row> {
  const parser = createReadStream(path).pipe(
    parse({
      columns: true,
      bom: true,
      cast: (value, ctx) => (value === '' && !ctx.quoting ? null : value) as string,
    }),
  );
  for await (const record of parser) yield record as Row;
}

const producer = new BulkProducer({
  redis: process.env.REDIS_URL,
  queue: process.env.BULKMODEL_QUEUE ?? 'bulkmodel',
});
try {
  const op = await producer.copyFrom(table, rows(file), { batchSize: 5000 });
  op.on('progress', (p) => console.log(`${p.rowsDone} rows written`));
  const { count } = await op.done();
  console.log(`loaded ${count} rows into ${table} (operation ${op.id})`);
} finally {
  await producer.close();
}
