import { spawn } from 'node:child_process';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { BulkClient, BulkProducer, type Row } from '../src/index.js';
import { portOf, startWorkerHttp } from '../src/worker/http.js';
import { type TestDb, testDb } from './helpers.js';
import {
  deleteKeys,
  killAll,
  obliterate,
  queueName,
  REDIS_URL,
  runPrefix,
  startWorker,
  stopWorker,
  until,
} from './queueHelpers.js';

/** A worker's --metrics-port: Prometheus counters after an operation, /health, its log lines. */
const prefix = runPrefix('wmetrics');
let tdb: TestDb;
let queue: string;
const open: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  tdb = await testDb('wmetrics');
  await tdb.pool.query(
    `CREATE TABLE ${tdb.t('items')} (id bigserial PRIMARY KEY, name text NOT NULL)`,
  );
});
afterEach(async () => {
  while (open.length) await open.pop()!.close();
  await killAll();
  if (queue) await obliterate(queue, prefix);
});
afterAll(async () => {
  await tdb.close();
  await deleteKeys(`${prefix}:*`);
});

function rows(n: number): Row[] {
  return Array.from({ length: n }, (_, i) => ({ name: `row ${i}` }));
}

function metricValue(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const inner = line.slice(name.length + 1, line.indexOf('}'));
    const parts = inner.split(',');
    if (want.every((w) => parts.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  throw new Error(`no ${name} ${JSON.stringify(labels)} in\n${text}`);
}

it('serves /metrics and /health, and logs one line per operation start and end', async () => {
  queue = queueName('wm');
  const table = tdb.t('items');
  const w = await startWorker({
    tables: [table],
    queue,
    prefix,
    name: 'metrics-w1',
    args: ['--metrics-port', '0'],
  });
  await w.waitForLog(/metrics and health listening/);
  const port = Number(/"port":(\d+)[^\n]*metrics and health listening/.exec(w.output())![1]);
  const base = `http://127.0.0.1:${port}`;

  const producer = new BulkProducer({ redis: REDIS_URL, queue, prefix });
  open.push(producer);
  const op = await producer.bulkCreate(table, rows(2500), { batchSize: 500 });
  expect((await op.done({ timeoutMs: 30_000 })).count).toBe(2500);
  const bad = await producer.bulkCreate(table, [{ name: null }], {});
  await expect(bad.done({ timeoutMs: 30_000 })).rejects.toMatchObject({
    code: 'NOT_NULL_VIOLATION',
  });

  // done() rejects as soon as the failure is recorded; BullMQ may still be moving the failed
  // job out of the active list: read the metrics once the queue has settled.
  const text = await until('no job left active', async () => {
    const m = await fetch(`${base}/metrics`);
    expect(m.status).toBe(200);
    const t = await m.text();
    return metricValue(t, 'bulkmodel_queue_jobs', { queue, state: 'active' }) === 0 ? t : undefined;
  });
  expect(metricValue(text, 'bulkmodel_rows_written_total', { table, kind: 'bulkCreate' })).toBe(
    2500,
  );
  expect(
    metricValue(text, 'bulkmodel_chunk_duration_seconds_count', { table, kind: 'bulkCreate' }),
  ).toBe(5);
  expect(metricValue(text, 'bulkmodel_errors_total', { code: 'NOT_NULL_VIOLATION' })).toBe(1);
  expect(metricValue(text, 'bulkmodel_workers_connected', { queue })).toBeGreaterThanOrEqual(1);
  expect(metricValue(text, 'bulkmodel_queue_jobs', { queue, state: 'active' })).toBe(0);
  expect(text).toContain('# TYPE bulkmodel_job_retries_total counter');

  const h = await fetch(`${base}/health`);
  expect(h.status).toBe(200);
  expect(await h.json()).toEqual({ ok: true, checks: { redis: 'ok', postgres: 'ok' } });

  // JSON log lines: one at the start and one at the end of each operation, with its numbers
  const lines = w
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.operationId === op.id && String(l.msg).startsWith('operation '));
  expect(lines.map((l) => l.msg)).toEqual(['operation started', 'operation completed']);
  expect(lines[1]).toMatchObject({ table, kind: 'bulkCreate', rowsDone: 2500, totalRows: 2500 });
  expect(lines[1]).toMatchObject({ chunksDone: 5, totalChunks: 5, retries: 0 });
  expect(w.output()).toMatch(
    /"operationId":"[^"]+","table"[^\n]*"state":"failed","code":"NOT_NULL_VIOLATION"[^\n]*operation failed/,
  );
  expect(await stopWorker(w)).toBe(0);
});

it('/health answers 503 naming the dependency that does not answer', async () => {
  const down = new BulkClient({ connectionString: 'postgres://postgres@127.0.0.1:1/none' });
  open.push(down);
  const server = await startWorkerHttp({
    port: 0,
    host: '127.0.0.1',
    registry: new Registry(),
    checks: {
      redis: async () => 'PONG',
      postgres: () => down.ensureConnected({ timeoutMs: 500 }),
    },
  });
  open.push({ close: () => new Promise<void>((r) => server.close(() => r())) });
  const r = await fetch(`http://127.0.0.1:${portOf(server)}/health`);
  expect(r.status).toBe(503);
  const body = (await r.json()) as { ok: boolean; checks: Record<string, string> };
  expect(body.ok).toBe(false);
  expect(body.checks.redis).toBe('ok');
  expect(body.checks.postgres).not.toBe('ok');
});

it('the CLI logger writes JSON with connection-string passwords redacted', async () => {
  const code = `import { createCliLogger } from './src/cli/logger.ts';
    const log = createCliLogger({ pretty: false });
    log.info({ url: 'postgres://app:s3cret@db:5432/x', password: 'hunter2' }, 'connecting to redis://:t0ken@r:6379');`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d) => {
    err += d;
  });
  await new Promise((r) => child.on('exit', r));
  const line = JSON.parse(err.trim().split('\n').pop()!) as Record<string, unknown>;
  expect(line).toMatchObject({
    level: 30,
    url: 'postgres://app:***@db:5432/x',
    password: '***',
    msg: 'connecting to redis://:***@r:6379',
  });
  expect(err).not.toMatch(/s3cret|hunter2|t0ken/);
});
