// A small web app that enqueues bulk writes from an HTTP endpoint and follows their signals.
//
//   POST /items            a JSON array of rows -> 202 { operationId } (bulkCreate through the queue)
//   GET  /operations/:id   the operation's status (state, rows done, error) and, once done, its result
//
// Run a worker beside it (bulkmodel worker --tables items), then:
//   node --import tsx examples/webapp.ts
//   curl -XPOST localhost:3001/items -d '[{"sku":"a","name":"first"}]'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { BulkEvents, BulkProducer, isBulkError, type Row } from 'bulkmodel';

const redis = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const queue = process.env.BULKMODEL_QUEUE ?? 'bulkmodel';
const table = process.env.ITEMS_TABLE ?? 'items';
const port = Number(process.env.PORT ?? 3001);
const MAX_BODY_BYTES = 10 * 1024 * 1024;

const producer = new BulkProducer({ redis, queue });
const events = new BulkEvents({ redis, queue });

// Signals published by the workers, as they commit each chunk.
events.on('postBulkCreate', (e) => {
  console.log(
    `postBulkCreate ${e.operationId} chunk ${e.chunkIndex}: ${e.count} rows into ${e.table}`,
  );
});
events.on('completed', (e) => console.log(`completed ${e.operationId}: ${e.count} rows`));
events.on('failed', (e) => console.log(`failed ${e.operationId}: ${e.error?.code}`));

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  let size = 0;
  const parts: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new Error('body too large');
    parts.push(chunk);
  }
  return JSON.parse(Buffer.concat(parts).toString('utf8'));
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (req.method === 'POST' && url.pathname === '/items') {
    let rows: unknown;
    try {
      rows = await readJson(req);
    } catch (err) {
      return send(res, 400, { error: `invalid JSON: ${(err as Error).message}` });
    }
    if (!Array.isArray(rows)) return send(res, 400, { error: 'expected a JSON array of rows' });
    // Idempotency-Key lets a client retry the POST without enqueueing twice.
    const key = req.headers['idempotency-key'];
    const op = await producer.bulkCreate(table, rows as Row[], {
      batchSize: 1000,
      ...(typeof key === 'string' ? { operationId: key } : {}),
    });
    return send(res, 202, { operationId: op.id, status: `/operations/${op.id}` });
  }
  const m = /^\/operations\/([A-Za-z0-9._-]+)$/.exec(url.pathname);
  if (req.method === 'GET' && m) {
    const op = producer.operation(m[1]!);
    const status = await op.status();
    if (status.state !== 'completed') return send(res, 200, status);
    return send(res, 200, { ...status, result: await op.done() });
  }
  send(res, 404, { error: 'not found' });
}

const server = createServer((req, res) => {
  handle(req, res).catch((err) => {
    // A BulkError carries a stable code: bad input is the client's, the rest is ours.
    if (isBulkError(err) && err.code === 'UNKNOWN_OPERATION')
      send(res, 404, { error: 'no such operation' });
    else if (
      isBulkError(err) &&
      ['INVALID_OPTION', 'INVALID_ROW', 'INVALID_VALUE'].includes(err.code)
    )
      send(res, 400, { error: err.code, message: err.message });
    else send(res, 500, { error: isBulkError(err) ? err.code : 'INTERNAL' });
  });
});

await events.waitUntilReady();
server.listen(port, '127.0.0.1', () => {
  const addr = server.address();
  console.log(
    `listening on http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : port}`,
  );
});

async function shutdown(): Promise<void> {
  server.close();
  await events.close();
  await producer.close();
}
process.once('SIGTERM', () => void shutdown());
process.once('SIGINT', () => void shutdown());
