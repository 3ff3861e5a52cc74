import { Registry } from 'prom-client';
import { BulkError } from '../core/errors.js';
import { PostgresBackend, type QueueBackend, RedisBackend } from '../queue/backend.js';
import { connectFailFast } from '../queue/connection.js';
import { startWorkerHttp } from '../worker/http.js';
import { DEFAULT_LIMITS } from '../worker/limits.js';
import { createWorkerMetrics } from '../worker/metrics.js';
import { registerQueueMetrics } from '../worker/queueMetrics.js';
import { BulkWorker } from '../worker/worker.js';
import { int, parse, str } from './args.js';
import { setHeapGrowth } from './heap.js';
import { createCliLogger } from './logger.js';
import { checkServices, QUEUE_FLAGS, queueUsage } from './services.js';

const USAGE = `bulkmodel worker — write queued chunks into Postgres

Usage: bulkmodel worker --tables <t1,t2,...> [options]

Options:
  --tables <list>       tables this worker may write (required; env BULKMODEL_TABLES; '*' for all)
  --queue <names>       queue name, or several comma-separated (one loop each) (env
                        BULKMODEL_QUEUE, default bulkmodel)
  --prefix <prefix>     BullMQ key prefix, redis backend only (default bull)
  --concurrency <n>     jobs at once, per queue (default 4)
  --name <name>         worker name recorded on the jobs it runs (default host:pid)
  --lock-duration <ms>  a job whose worker is silent this long goes to another (default 30000)
  --database <url>      Postgres URL (env DATABASE_URL)
${queueUsage(24)}
  --migrate             postgres backend: create or upgrade the queue schema at start
                        (else a missing schema is error QUEUE_SCHEMA; see bulkmodel migrate)
  --export-dir <dir>    the directory queued copyTo jobs write their files into (created if
                        missing); without it copyTo jobs are refused (EXPORT_DISABLED)
  --export-overwrite    let copyTo jobs replace files of the same name (default: FILE_EXISTS)
  --show-values         keep row values in recorded errors and logs (Postgres's detail, the
                        value refused): for debugging; by default only table, column,
                        constraint and row index are kept
  --close-timeout <ms>  on SIGTERM, wait this long for in-flight chunks (default 30000)
  --metrics-port <n>    serve Prometheus /metrics and /health (200 when Postgres and the
                        queue store answer, else 503) on this port
  --metrics-host <addr> address for --metrics-port (default 127.0.0.1; 0.0.0.0 in containers)
  --heap-growth <pct>   let V8's heap grow this many percent past the live data before a full
                        garbage collection (0-1000, default 100; 0: V8's own growth, which
                        on a machine with memory to spare can double the worker's RSS)

Limits (every job is untrusted input; a job over one fails at once, docs/SECURITY.md):
  --max-payload-bytes <n>  job data larger than this is refused unparsed (default 16777216)
  --max-chunk-rows <n>     rows in one chunk job (default 1000000)
  --max-chunks <n>         chunks in one operation (default 1000000)
  --max-nesting <n>        nesting of values in a job (default 64)

Logs: JSON lines on stderr (pretty on a terminal), passwords redacted; LOG_LEVEL sets the level.

SIGTERM or SIGINT stops taking jobs and finishes in-flight chunks; a second signal exits at
once (those chunks are replayed by another worker, exactly once, through the chunk ledger).

Examples:
  bulkmodel worker --tables items
  bulkmodel worker --tables items --export-dir /var/lib/bulkmodel/exports
  bulkmodel worker --tables items --backend postgres     # no Redis: queues in Postgres
  DATABASE_URL=postgres://app@db/app bulkmodel worker --tables public.items,orders --concurrency 8
`;

export async function runWorker(argv: string[]): Promise<number> {
  const p = parse(
    {
      usage: USAGE,
      options: {
        tables: { type: 'string' },
        queue: { type: 'string' },
        prefix: { type: 'string' },
        concurrency: { type: 'string' },
        name: { type: 'string' },
        'lock-duration': { type: 'string' },
        database: { type: 'string' },
        ...QUEUE_FLAGS,
        migrate: { type: 'boolean' },
        'export-dir': { type: 'string' },
        'export-overwrite': { type: 'boolean' },
        'show-values': { type: 'boolean' },
        'max-payload-bytes': { type: 'string' },
        'max-chunk-rows': { type: 'string' },
        'max-chunks': { type: 'string' },
        'max-nesting': { type: 'string' },
        'close-timeout': { type: 'string' },
        'metrics-port': { type: 'string' },
        'metrics-host': { type: 'string' },
        'heap-growth': { type: 'string' },
      },
    },
    argv,
  );
  if (!p) return 0;
  const tables = (str(p, 'tables') ?? process.env.BULKMODEL_TABLES ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  if (tables.length === 0)
    throw new BulkError(
      'INVALID_OPTION',
      '--tables is required: the tables this worker may write (see bulkmodel worker --help)',
    );
  const growth = str(p, 'heap-growth') !== undefined ? int(p, 'heap-growth', 0, 0) : undefined;
  if (growth !== undefined && growth > 1000)
    throw new BulkError('INVALID_OPTION', `--heap-growth must be at most 1000, got ${growth}`);
  const heapGrowth = setHeapGrowth(growth);
  const metricsPort = str(p, 'metrics-port') ? int(p, 'metrics-port', 0, 0) : undefined;
  const services = await checkServices(str(p, 'database'), p);
  const queue = services.queue;
  if (p.values.migrate === true && queue.backend !== 'postgres')
    throw new BulkError(
      'INVALID_OPTION',
      '--migrate is for --backend postgres (Redis has no schema)',
    );
  const registry = new Registry();
  const logger = createCliLogger({ showValues: p.values['show-values'] === true });
  logger.debug({ heapGrowthPercent: heapGrowth }, 'heap growth past live data before a full GC');
  const worker = new BulkWorker({
    logger,
    ...(metricsPort !== undefined ? { metrics: createWorkerMetrics(registry) } : {}),
    ...(queue.backend === 'redis'
      ? { backend: 'redis' as const, redis: queue.redis }
      : {
          backend: 'postgres' as const,
          queueDatabase: queue.queueDatabase,
          ...(queue.queueSchema ? { queueSchema: queue.queueSchema } : {}),
          migrate: p.values.migrate === true,
        }),
    database: services.database,
    tables,
    concurrency: int(p, 'concurrency', 4),
    closeTimeoutMs: int(p, 'close-timeout', 30_000),
    lockDurationMs: int(p, 'lock-duration', 30_000),
    ...(str(p, 'name') ? { name: str(p, 'name') } : {}),
    ...(str(p, 'queue') ? { queue: str(p, 'queue') } : {}),
    ...(str(p, 'prefix') ? { prefix: str(p, 'prefix') } : {}),
    ...(str(p, 'export-dir') ? { exportDir: str(p, 'export-dir') } : {}),
    exportOverwrite: p.values['export-overwrite'] === true,
    showValues: p.values['show-values'] === true,
    limits: {
      maxPayloadBytes: int(p, 'max-payload-bytes', DEFAULT_LIMITS.maxPayloadBytes),
      maxChunkRows: int(p, 'max-chunk-rows', DEFAULT_LIMITS.maxChunkRows),
      maxChunks: int(p, 'max-chunks', DEFAULT_LIMITS.maxChunks),
      maxNesting: int(p, 'max-nesting', DEFAULT_LIMITS.maxNesting),
    },
  });
  await worker.waitUntilReady();
  if (metricsPort !== undefined) {
    // Connections of its own: with Redis, failing fast while it is away (the health check and
    // the scrape must not queue commands).
    let health: QueueBackend;
    if (queue.backend === 'redis') {
      const fast = connectFailFast(queue.redis);
      fast.on('error', () => {});
      health = new RedisBackend({
        redis: fast,
        ...(str(p, 'prefix') ? { prefix: str(p, 'prefix') } : {}),
      });
    } else {
      health = new PostgresBackend({
        database: queue.queueDatabase,
        ...(queue.queueSchema ? { schema: queue.queueSchema } : {}),
        poolSize: 2,
      });
    }
    const queues = worker.queues.map((q) => health.queue(q));
    for (const q of queues) q.on('error', () => {});
    registerQueueMetrics(registry, queues);
    const server = await startWorkerHttp({
      port: metricsPort,
      host: str(p, 'metrics-host') ?? '127.0.0.1',
      registry,
      checks: {
        [queue.backend === 'redis' ? 'redis' : 'queue database']: () => health.ping(),
        postgres: () => worker.db.ensureConnected({ timeoutMs: 2000 }),
      },
    });
    const addr = server.address() as { port: number };
    logger.info({ port: addr.port }, 'metrics and health listening');
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      worker.logger.warn(
        { signal },
        'second signal: exiting now; in-flight chunks will be replayed elsewhere',
      );
      process.exit(130);
    }
    stopping = true;
    worker.logger.info({ signal }, 'stopping: finishing in-flight chunks');
    worker.close().then(
      () => process.exit(0),
      (err) => {
        worker.logger.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // A worker whose loop ended by itself (not by a signal) is no use running on: say so, exit 1.
  worker.untilStopped().then(
    () => {
      if (!stopping) process.exit(1);
    },
    (err) => {
      worker.logger.error({ err }, 'the worker loop failed; exiting');
      process.exit(1);
    },
  );
  return -1;
}
