import { collectDefaultMetrics, Registry } from 'prom-client';
import { BulkError } from '../core/errors.js';
import { PostgresBackend, type QueueBackend, RedisBackend } from '../queue/backend.js';
import { connectFailFast } from '../queue/connection.js';
import { startWorkerHttp } from '../worker/http.js';
import { createWorkerMetrics } from '../worker/metrics.js';
import { registerQueueMetrics } from '../worker/queueMetrics.js';
import { BulkWorker } from '../worker/worker.js';
import { flag, int, optionalInt, optionsHelp, parse, str, text } from './args.js';
import { setHeapGrowth } from './heap.js';
import { createCliLogger } from './logger.js';
import { checkServices } from './services.js';

const USAGE = `bulkmodel worker — write queued chunks into Postgres

Usage: bulkmodel worker --tables <t1,t2,...> [options]

Options:
${optionsHelp('worker')}

The --max-* limits: every job is untrusted input; a job over one fails at once as
unrecoverable, and the worker goes on serving (docs/SECURITY.md).

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
  const p = parse({ usage: USAGE, command: 'worker' }, argv);
  if (!p) return 0;
  const tables = (text(p, 'tables') ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  if (tables.length === 0)
    throw new BulkError(
      'INVALID_OPTION',
      '--tables is required: the tables this worker may write (see bulkmodel worker --help)',
    );
  const heapGrowth = setHeapGrowth(optionalInt(p, 'heapGrowth'));
  const metricsPort = optionalInt(p, 'metricsPort');
  const services = await checkServices(str(p, 'database'), p);
  const queue = services.queue;
  if (flag(p, 'migrate') && queue.backend !== 'postgres')
    throw new BulkError(
      'INVALID_OPTION',
      '--migrate is for --backend postgres (Redis has no schema)',
    );
  const registry = new Registry();
  // The process's own (memory, CPU, event loop lag) beside bulkmodel's, as the dashboard's.
  if (metricsPort !== undefined) collectDefaultMetrics({ register: registry });
  const logger = createCliLogger({ showValues: flag(p, 'showValues') });
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
          migrate: flag(p, 'migrate'),
        }),
    database: services.database,
    tables,
    concurrency: int(p, 'concurrency'),
    closeTimeoutMs: int(p, 'closeTimeoutMs'),
    lockDurationMs: int(p, 'lockDurationMs'),
    ...(str(p, 'name') ? { name: str(p, 'name') } : {}),
    ...(str(p, 'queue') ? { queue: str(p, 'queue') } : {}),
    ...(str(p, 'prefix') ? { prefix: str(p, 'prefix') } : {}),
    ...(str(p, 'export-dir') ? { exportDir: str(p, 'export-dir') } : {}),
    exportOverwrite: flag(p, 'exportOverwrite'),
    showValues: flag(p, 'showValues'),
    limits: {
      maxPayloadBytes: int(p, 'maxPayloadBytes'),
      maxChunkRows: int(p, 'maxChunkRows'),
      maxChunks: int(p, 'maxChunks'),
      maxNesting: int(p, 'maxNesting'),
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
      host: text(p, 'metricsHost')!,
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
