import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { storedError } from '../../core/errors.js';
import { defaultLogger, type Logger, redact } from '../../core/logger.js';
import { checkOptionKeys } from '../../core/optionKeys.js';
import { isOperationId } from '../../core/options.js';
import { declaredOptions, defaultOf, fromEnv } from '../../core/settings.js';
import { type BackendKind, openBackend } from '../../queue/backend.js';
import type { RedisInput } from '../../queue/connection.js';
import { queueNames } from '../../queue/keys.js';
import { statusOf } from '../../queue/state.js';
import { registerQueueMetrics } from '../queueMetrics.js';
import { assertSafeBinding, basicAuth, type Credentials, loopbackHostOnly } from './access.js';
import { boardRouter } from './board.js';
import { boardActions, sameOriginOnly } from './csrf.js';
import {
  JobFactsCache,
  JobSampler,
  progressEvents,
  type QueueReader,
  readChunks,
  readWorkers,
  rowsPerSecond,
  WINDOW_MS,
} from './insights.js';
import { type OperationView, readOperations } from './operations.js';
import { CHARTS_JS, OPERATION_HTML, OPERATION_JS, OPERATIONS_HTML, OPERATIONS_JS } from './page.js';
import { RateTracker } from './rates.js';
import { readSignals } from './signals.js';

export interface DashboardOptions {
  /** Where the queues live: 'redis' or 'postgres'. Default BULKMODEL_BACKEND, else 'redis'. */
  backend?: BackendKind;
  /** Postgres backend: the database the queues live in (as BulkProducer's `database`). */
  database?: string;
  /** Postgres backend: the queue database, when other than `database`. Default BULKMODEL_QUEUE_DATABASE, else DATABASE_URL. */
  queueDatabase?: string;
  /** Postgres backend: the schema of the queues. Default 'bulkmodel_queue'. */
  queueSchema?: string;
  /** Redis (as BulkProducer's `redis`): a URL, options, a cluster's nodes or an instance. */
  redis?: RedisInput;
  /** The queue, or several (a list, or 'a,b'). Default BULKMODEL_QUEUE, else 'bulkmodel'. */
  queue?: string | readonly string[];
  /** BullMQ key prefix. Default 'bull'. */
  prefix?: string;
  /** Address to listen on. Default 127.0.0.1; any other needs `credentials`. */
  host?: string;
  /** Port; 0 picks a free one. Default 3000. */
  port?: number;
  /** Basic-auth user and password for every page, API and /metrics. */
  credentials?: Credentials;
  /** Allow retry and clean in bull-board. Default false (read-only). */
  allowActions?: boolean;
  /** Operations listed (most recent first). Default 200. */
  operationsLimit?: number;
  logger?: Logger;
}

export interface Dashboard {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Headers on every response, bull-board's included: no framing by any site (a framed page
 * could be clicked into "Retry all"), no script but our own files, nothing sniffed, no referrer.
 * bull-board's own stylesheet link to Google Fonts is blocked: the page falls back to local fonts.
 */
const SECURITY_HEADERS = {
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
} as const;

function securityHeaders(_req: Request, res: Response, next: NextFunction): void {
  res.set(SECURITY_HEADERS);
  next();
}

/** Our own pages and data are never cached. */
function noStore(res: Response): void {
  res.set('Cache-Control', 'no-store');
}

/** The most operations the list reads, filters and pages over. */
const MAX_LISTED = 5000;

const DASHBOARD_KEYS = declaredOptions<DashboardOptions>()('startDashboard');

/**
 * Serve the dashboard: the Operations page at `/` (and its JSON at /api/operations), bull-board
 * at /queues, Prometheus metrics at /metrics. Refuses a non-loopback host without credentials.
 */

export async function startDashboard(o: DashboardOptions = {}): Promise<Dashboard> {
  checkOptionKeys(o, DASHBOARD_KEYS, 'startDashboard');
  const host = o.host ?? defaultOf('host');
  assertSafeBinding(host, o.credentials);
  const logger = o.logger ?? defaultLogger;
  const allowActions = o.allowActions === true;
  const names = queueNames(o.queue, fromEnv('queue')!);
  const backend = openBackend(o, o.database);
  await backend.prepare().catch(async (err) => {
    await backend.close();
    throw err;
  });
  const states = names.map((n) => backend.state(n));
  // Lenient: a job whose data is not JSON (anyone who writes the queue can add one) must not
  // make bull-board's lists fail.
  const queues = names.map((n) => backend.queue(n));
  for (const q of queues)
    q.on('error', (err) =>
      logger.warn({ err: redact(String(err?.message ?? err)), queue: q.name }, 'redis error'),
    );
  const rates = new RateTracker();
  const limit = o.operationsLimit ?? defaultOf('operationsLimit');
  const jobCache = new JobFactsCache();
  // A long list read once a second is shared by the viewers polling it, not read per viewer.
  let lastList: { at: number; n: number; ops: Promise<OperationView[]> } | undefined;
  const listed = (n: number): Promise<OperationView[]> => {
    const now = Date.now();
    if (lastList && now - lastList.at < 1000 && lastList.n >= n) return lastList.ops;
    const ops = readOperations(states, rates, n);
    lastList = { at: now, n, ops };
    ops.catch(() => {
      lastList = undefined;
    });
    return ops;
  };
  const sampler = new JobSampler(queues as unknown as QueueReader[], async () => {
    const lists = await Promise.all(states.map((s) => s.records(limit)));
    return lists.flat().reduce((n, r) => n + r.retries, 0);
  });
  sampler.start();

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  registerQueueMetrics(registry, queues);
  new Gauge({
    name: 'bulkmodel_operations',
    help: `Operations by state (the ${limit} most recent)`,
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      this.reset();
      const ops = await readOperations(states, rates, limit);
      const by = new Map<string, number>();
      for (const op of ops) {
        const k = `${op.queue}\u0000${op.state}`;
        by.set(k, (by.get(k) ?? 0) + 1);
      }
      for (const [k, n] of by) {
        const [queue, state] = k.split('\u0000') as [string, string];
        this.set({ queue, state }, n);
      }
    },
  });

  const app = express();
  app.disable('x-powered-by');
  app.use(securityHeaders);
  app.use(o.credentials ? basicAuth(o.credentials) : loopbackHostOnly);
  app.use(sameOriginOnly);
  app.get('/', (_req, res) => {
    noStore(res);
    res.type('html').send(OPERATIONS_HTML);
  });
  app.get('/operations.js', (_req, res) => {
    noStore(res);
    res.type('application/javascript').send(OPERATIONS_JS);
  });
  app.get('/operation', (_req, res) => {
    noStore(res);
    res.type('html').send(OPERATION_HTML);
  });
  app.get('/operation.js', (_req, res) => {
    noStore(res);
    res.type('application/javascript').send(OPERATION_JS);
  });
  app.get('/charts.js', (_req, res) => {
    noStore(res);
    res.type('application/javascript').send(CHARTS_JS);
  });
  app.get('/api/operations', async (req, res) => {
    // Filters and pages over the most recent operations (up to MAX_LISTED of them).
    const q = req.query as Record<string, unknown>;
    const stateFilter = typeof q.state === 'string' && q.state !== '' ? q.state : undefined;
    const tableFilter = typeof q.table === 'string' && q.table !== '' ? q.table : undefined;
    const pageSize = Math.min(Math.max(Number(q.limit) || limit, 1), MAX_LISTED);
    const offset = Math.min(Math.max(Number(q.offset) || 0, 0), MAX_LISTED);
    const filtered = stateFilter !== undefined || tableFilter !== undefined;
    // Unfiltered, the page and one more (to know whether there are older ones) are enough.
    const want = filtered ? MAX_LISTED : Math.min(offset + pageSize + 1, MAX_LISTED);
    const [all, signals] = await Promise.all([listed(want), readSignals(states)]);
    const matching = all.filter(
      (op) =>
        (stateFilter === undefined || op.state === stateFilter) &&
        (tableFilter === undefined || op.table.includes(tableFilter)),
    );
    res.set('Cache-Control', 'no-store');
    res.json({
      queue: names.join(','),
      queues: names,
      time: Date.now(),
      // The operations matching, of those read: exact with a filter, else a lower bound.
      total: matching.length,
      more: matching.length > offset + pageSize,
      offset,
      operations: matching.slice(offset, offset + pageSize),
      tables: [...new Set(all.map((op) => op.table))].sort(),
      signals,
    });
  });
  app.get('/api/charts', async (_req, res) => {
    const now = Date.now();
    const events = await progressEvents(states);
    res.set('Cache-Control', 'no-store');
    res.json({
      time: now,
      rowsPerSec: rowsPerSecond(events, now),
      jobs: sampler.samples,
    });
  });
  app.get('/api/workers', async (_req, res) => {
    res.set('Cache-Control', 'no-store');
    res.json({
      time: Date.now(),
      workers: await readWorkers(queues as unknown as QueueReader[], states, jobCache, Date.now()),
    });
  });
  app.get('/api/operation', async (req, res) => {
    const q = req.query as Record<string, unknown>;
    const i = names.indexOf(typeof q.queue === 'string' ? q.queue : names[0]!);
    const id = typeof q.id === 'string' ? q.id : '';
    const rec = i >= 0 && isOperationId(id) ? await states[i]!.record(id) : null;
    res.set('Cache-Control', 'no-store');
    if (!rec) {
      res.status(404).json({ error: 'no such operation on this dashboard’s queues' });
      return;
    }
    const now = Date.now();
    const done = new Set(await states[i]!.doneChunks(id));
    const [chunks, events, workers] = await Promise.all([
      readChunks(queues[i]!, rec, done, jobCache),
      progressEvents([states[i]!]),
      states[i]!.activeWorkers([id]),
    ]);
    const view = { ...statusOf(rec, names[i]!), workers: workers.get(id) ?? [] };
    res.json({
      time: now,
      operation: view,
      error: rec.error ? storedError(rec.error, undefined, id).toJSON() : undefined,
      chunks,
      rowsPerSec: rowsPerSecond(events, now, id, {
        from: (rec.startedAt ?? rec.createdAt ?? now - WINDOW_MS) - 5000,
        to: (rec.finishedAt ?? now) + 5000,
      }),
      jobsUrl: `queues/queue/${encodeURIComponent(names[i]!)}?status=failed`,
    });
  });
  app.get('/metrics', async (_req, res) => {
    res.type(registry.contentType).send(await registry.metrics());
  });
  app.use('/queues', boardActions(allowActions), boardRouter(queues, '/queues', allowActions));
  // Our own 404 (Express's would replace the security headers with its own).
  app.use((_req, res) => {
    res.status(404).type('text/plain').send('not found\n');
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    logger.warn(
      { err: redact(String((err as Error)?.message ?? err)) },
      'dashboard request failed',
    );
    if (!res.headersSent) res.status(500).json({ error: 'internal error (see the dashboard log)' });
  });

  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(o.port ?? defaultOf('port'), host, (err?: Error) =>
      err ? reject(err) : resolve(s),
    );
    s.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host;
  const url = `http://${shown}:${port}/`;
  logger.info(
    {
      url,
      queue: names.join(','),
      auth: o.credentials ? 'basic' : 'none (loopback only)',
      allowActions,
    },
    'bulkmodel dashboard listening',
  );
  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    close() {
      closing ??= (async () => {
        await new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        });
        sampler.stop();
        for (const q of queues) await q.close();
        await backend.close();
      })();
      return closing;
    },
  };
}
