import { assertSafeBinding, credentialsFromEnv } from '../worker/dashboard/access.js';
import { startDashboard } from '../worker/dashboard/server.js';
import { int, parse, str } from './args.js';
import { createCliLogger } from './logger.js';
import { backendOptions, checkQueue, QUEUE_FLAGS, queueTarget, queueUsage } from './services.js';

const USAGE = `bulkmodel dashboard — watch operations, chunks and workers in a browser

Usage: bulkmodel dashboard [options]

Options:
  --port <n>          port (default 3000)
  --host <addr>       address to listen on (default 127.0.0.1)
  --queue <names>     queue name, or several comma-separated (env BULKMODEL_QUEUE, default
                      bulkmodel)
  --prefix <prefix>   BullMQ key prefix, redis backend only (default bull)
${queueUsage(22)}
  --allow-actions     allow retry and clean of jobs in bull-board (default: read-only)

Pages: / operations (live), /queues bull-board (flow trees of operations and chunks),
/api/operations JSON, /metrics Prometheus.

Credentials: BULKMODEL_DASHBOARD_USER and BULKMODEL_DASHBOARD_PASSWORD turn on basic auth for
every page. Without them the dashboard listens on loopback only and refuses any other --host.

Examples:
  bulkmodel dashboard
  bulkmodel dashboard --backend postgres --queue-database postgres://app@db/app
  BULKMODEL_DASHBOARD_USER=ops BULKMODEL_DASHBOARD_PASSWORD=... bulkmodel dashboard --host 0.0.0.0
`;

export async function runDashboard(argv: string[]): Promise<number> {
  const p = parse(
    {
      usage: USAGE,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        queue: { type: 'string' },
        prefix: { type: 'string' },
        ...QUEUE_FLAGS,
        'allow-actions': { type: 'boolean' },
      },
    },
    argv,
  );
  if (!p) return 0;
  const credentials = credentialsFromEnv();
  const host = str(p, 'host') ?? '127.0.0.1';
  const port = int(p, 'port', 3000, 0);
  const logger = createCliLogger();
  // The refusal comes first: a misconfigured dashboard must not touch the queue store at all.
  assertSafeBinding(host, credentials);
  const queueStore = await checkQueue(queueTarget(p));
  const dashboard = await startDashboard({
    ...backendOptions(queueStore),
    host,
    port,
    logger,
    allowActions: p.values['allow-actions'] === true,
    ...(credentials ? { credentials } : {}),
    ...(str(p, 'queue') ? { queue: str(p, 'queue') } : {}),
    ...(str(p, 'prefix') ? { prefix: str(p, 'prefix') } : {}),
  });
  const stop = (signal: string) => {
    logger.info({ signal }, 'stopping dashboard');
    dashboard.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  return -1;
}
