import { BulkProducer } from '../producer/producer.js';
import type { OperationStatus } from '../queue/state.js';
import { int, optionsHelp, parse, str } from './args.js';
import { backendOptions, checkQueue, queueTarget } from './services.js';

const USAGE = `bulkmodel status — recent operations, or one operation

Usage: bulkmodel status [operation-id ...] [options]

Without an id: the most recent operations on the queues, newest first. With ids: those
operations (queue, kind, table, state, rows and chunks done of total, retries, error code).

Options:
${optionsHelp('status')}

Exit codes: 0 ok, 1 a named operation failed or was cancelled, 2 bad usage (or no such operation),
3 the queue store (Redis, or the queue database) unreachable.

Examples:
  bulkmodel status
  bulkmodel status --backend postgres
  bulkmodel status --queue bulkmodel-demo --limit 5
  bulkmodel status 7d5c0a4e-8a31-4a55-9d56-0c1e2f3a4b5c --json
  bulkmodel load items big.csv --no-wait | xargs bulkmodel status
`;

export function formatStatus(s: OperationStatus): string {
  const total = s.totalRows === undefined ? '?' : String(s.totalRows);
  const err = s.error ? `  ${s.error.code}: ${s.error.message}` : '';
  return `${s.id}  ${s.queue}  ${s.kind.padEnd(12)} ${s.table.padEnd(24)} ${s.state.padEnd(10)} ${s.rowsDone}/${total} rows  ${s.chunksDone}/${s.totalChunks ?? '?'} chunks${err}`;
}

export async function runStatus(argv: string[]): Promise<number> {
  const p = parse({ usage: USAGE, command: 'status' }, argv);
  if (!p) return 0;
  const queueStore = await checkQueue(queueTarget(p));
  const producer = new BulkProducer({
    ...backendOptions(queueStore),
    ...(str(p, 'queue') ? { queue: str(p, 'queue') } : {}),
    ...(str(p, 'prefix') ? { prefix: str(p, 'prefix') } : {}),
  });
  try {
    const limit = int(p, 'limit');
    const out: OperationStatus[] = [];
    if (p.positionals.length > 0)
      for (const id of p.positionals) out.push(await producer.operation(id).status());
    else out.push(...(await producer.operations({ limit })));
    if (p.values.json) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    else if (out.length === 0)
      process.stdout.write(`no operations on queue ${producer.queues.join(', ')}\n`);
    else for (const s of out) process.stdout.write(`${formatStatus(s)}\n`);
    return out.some((s) => s.state === 'failed' || s.state === 'cancelled') &&
      p.positionals.length > 0
      ? 1
      : 0;
  } finally {
    await producer.close();
  }
}
