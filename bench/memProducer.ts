// Child process of the memory run: stream N generated rows into the queue and wait until done.
// Prints {"count", "peakMb"} (peak RSS from the kernel) on stdout.
import { BulkProducer, silentLogger } from '../src/index.js';
import { makeRow } from './data.js';

const [table, queue, nArg] = process.argv.slice(2);
const n = Number(nArg);

async function* rows() {
  for (let i = 0; i < n; i++) yield makeRow(i);
}

const producer = new BulkProducer({ queue: queue!, logger: silentLogger });
try {
  const op = await producer.bulkCreate(table!, rows());
  const r = await op.done();
  process.stdout.write(
    `${JSON.stringify({ count: r.count, peakMb: Math.round(process.resourceUsage().maxRSS / 1024) })}\n`,
  );
} finally {
  await producer.close();
}
