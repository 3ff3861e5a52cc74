import { BulkError } from '../core/errors.js';
import { BulkWorker } from '../worker/worker.js';
import { int, parse, str } from './args.js';
import { checkServices } from './services.js';

const USAGE = `bulkmodel worker — write queued chunks into Postgres

Usage: bulkmodel worker --tables <t1,t2,...> [options]

Options:
  --tables <list>       tables this worker may write (required; env BULKMODEL_TABLES; '*' for all)
  --queue <name>        queue name (env BULKMODEL_QUEUE, default bulkmodel)
  --prefix <prefix>     BullMQ key prefix (default bull)
  --concurrency <n>     jobs at once (default 4)
  --name <name>         worker name recorded on the jobs it runs (default host:pid)
  --lock-duration <ms>  a job whose worker is silent this long goes to another (default 30000)
  --database <url>      Postgres URL (env DATABASE_URL)
  --redis <url>         Redis URL (env REDIS_URL, default redis://127.0.0.1:6379)
  --export-dir <dir>    where copyTo jobs may write files (default: current directory)
  --close-timeout <ms>  on SIGTERM, wait this long for in-flight chunks (default 30000)

SIGTERM or SIGINT stops taking jobs and finishes in-flight chunks; a second signal exits at
once (those chunks are replayed by another worker, exactly once, through the chunk ledger).

Examples:
  bulkmodel worker --tables items
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
        redis: { type: 'string' },
        'export-dir': { type: 'string' },
        'close-timeout': { type: 'string' },
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
  const services = await checkServices(str(p, 'database'), str(p, 'redis'));
  const worker = new BulkWorker({
    redis: services.redis,
    database: services.database,
    tables,
    concurrency: int(p, 'concurrency', 4),
    closeTimeoutMs: int(p, 'close-timeout', 30_000),
    lockDurationMs: int(p, 'lock-duration', 30_000),
    ...(str(p, 'name') ? { name: str(p, 'name') } : {}),
    ...(str(p, 'queue') ? { queue: str(p, 'queue') } : {}),
    ...(str(p, 'prefix') ? { prefix: str(p, 'prefix') } : {}),
    ...(str(p, 'export-dir') ? { exportDir: str(p, 'export-dir') } : {}),
  });
  await worker.waitUntilReady();
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
  return -1;
}
