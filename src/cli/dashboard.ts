import { assertSafeBinding, credentialsFromEnv } from '../worker/dashboard/access.js';
import { startDashboard } from '../worker/dashboard/server.js';
import { flag, int, optionsHelp, parse, str, text } from './args.js';
import { createCliLogger } from './logger.js';
import { backendOptions, checkQueue, queueTarget } from './services.js';

const USAGE = `bulkmodel dashboard — watch operations, chunks and workers in a browser

Usage: bulkmodel dashboard [options]

Options:
${optionsHelp('dashboard')}

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
  const p = parse({ usage: USAGE, command: 'dashboard' }, argv);
  if (!p) return 0;
  const credentials = credentialsFromEnv();
  const host = text(p, 'host')!;
  const port = int(p, 'port');
  const logger = createCliLogger();
  // The refusal comes first: a misconfigured dashboard must not touch the queue store at all.
  assertSafeBinding(host, credentials);
  const queueStore = await checkQueue(queueTarget(p));
  const dashboard = await startDashboard({
    ...backendOptions(queueStore),
    host,
    port,
    logger,
    allowActions: flag(p, 'allowActions'),
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
