import pg from 'pg';
import { BulkError } from '../core/errors.js';
import { backendKind, PostgresBackend } from '../queue/backend.js';
import {
  checkClusterNodes,
  describe,
  probeRedis,
  type RedisClusterInput,
  redisEnv,
  redisFromEnv,
} from '../queue/connection.js';
import { checkSchemaName } from '../queue/pgSchema.js';
import { type Parsed, str, text, unreachable } from './args.js';

/** The Redis a command talks to: a URL, or a cluster's nodes. */
export type RedisTarget = string | RedisClusterInput;

/** Where a command's queues live: Redis (one server or a cluster) or Postgres. */
export type QueueTarget =
  | { backend: 'redis'; redis: RedisTarget }
  | { backend: 'postgres'; queueDatabase: string; queueSchema?: string };

/**
 * The queue store the flags and environment name. The Postgres backend's database defaults to
 * the target database (`database`, else DATABASE_URL, else the local default).
 */
export function queueTarget(p: Parsed, database?: string): QueueTarget {
  const kind = backendKind(str(p, 'backend'));
  if (kind === 'redis') {
    for (const f of ['queue-database', 'queue-schema'])
      if (str(p, f) !== undefined)
        throw new BulkError('INVALID_OPTION', `--${f} is for --backend postgres`);
    return { backend: 'redis', redis: redisTarget(p) };
  }
  for (const f of ['redis', 'redis-cluster'])
    if (str(p, f) !== undefined)
      throw new BulkError(
        'INVALID_OPTION',
        `--${f} is for the redis backend, not --backend postgres`,
      );
  if (str(p, 'prefix') !== undefined)
    throw new BulkError(
      'INVALID_OPTION',
      '--prefix is for the redis backend: on --backend postgres the schema (--queue-schema) keeps queues apart',
    );
  const schema = text(p, 'queueSchema');
  return {
    backend: 'postgres',
    queueDatabase: text(p, 'queueDatabase') ?? database ?? text(p, 'database')!,
    ...(schema ? { queueSchema: checkSchemaName(schema) } : {}),
  };
}

/** What BulkProducer, BulkWorker, BulkEvents and the dashboard take for a target. */
export function backendOptions(
  t: QueueTarget,
):
  | { backend: 'redis'; redis: RedisTarget }
  | { backend: 'postgres'; queueDatabase: string; queueSchema?: string } {
  // The kind always goes along: an explicit --backend redis must win over BULKMODEL_BACKEND.
  if (t.backend === 'redis') return { backend: 'redis', redis: t.redis };
  return {
    backend: 'postgres',
    queueDatabase: t.queueDatabase,
    ...(t.queueSchema ? { queueSchema: t.queueSchema } : {}),
  };
}

/** Environment for a child process (a local worker) that should reach the same queues. */
export function queueEnv(t: QueueTarget): Record<string, string> {
  if (t.backend === 'redis') return { BULKMODEL_BACKEND: 'redis', ...redisEnv(t.redis) };
  return {
    BULKMODEL_BACKEND: 'postgres',
    BULKMODEL_QUEUE_DATABASE: t.queueDatabase,
    ...(t.queueSchema ? { BULKMODEL_QUEUE_SCHEMA: t.queueSchema } : {}),
  };
}

/** Check that the queue store answers; throws a message saying how to start it. */
export async function checkQueue(t: QueueTarget): Promise<QueueTarget> {
  if (t.backend === 'redis') await checkRedis(t.redis);
  else await checkPostgres(t.queueDatabase);
  return t;
}

/** --redis-cluster, else --redis, else REDIS_CLUSTER, else REDIS_URL, else the default. */
export function redisTarget(p: Parsed): RedisTarget {
  const cluster = str(p, 'redis-cluster');
  const url = str(p, 'redis');
  if (cluster !== undefined && url !== undefined)
    throw new BulkError('INVALID_OPTION', 'give --redis or --redis-cluster, not both');
  if (cluster !== undefined) {
    checkClusterNodes(cluster);
    return { cluster };
  }
  if (url !== undefined) return url;
  const env = redisFromEnv();
  if (typeof env !== 'string') checkClusterNodes(env.cluster as string);
  return env;
}

/** Postgres answers but cannot take us yet: too many clients (53300), starting up (57P03). */
const BUSY = new Set(['53300', '57P03']);

/** Check that Postgres answers (waiting out a busy server); throw a message saying how to start it. */
export async function checkPostgres(url: string, busyForMs = 15_000): Promise<void> {
  const deadline = Date.now() + busyForMs;
  for (let wait = 100; ; wait = Math.min(wait * 2, 2000)) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('SELECT 1');
      return;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (!code || !BUSY.has(code) || Date.now() + wait > deadline)
        throw unreachable('Postgres', url, err);
    } finally {
      await client.end().catch(() => {});
    }
    await new Promise((r) => setTimeout(r, wait));
  }
}

/**
 * Check that Postgres and the queue store answer within a few seconds; throw a message saying
 * how to start them. Returns the database and where the queues live.
 */
export async function checkServices(
  database: string | undefined,
  p: Parsed,
): Promise<{ database: string; queue: QueueTarget }> {
  const dbUrl = database ?? text(p, 'database')!;
  const queue = queueTarget(p, dbUrl);
  await checkPostgres(dbUrl);
  if (queue.backend === 'redis' || queue.queueDatabase !== dbUrl) await checkQueue(queue);
  return { database: dbUrl, queue };
}

/** Check that Redis (or the cluster) answers within a few seconds; returns the target. */
export async function checkRedis(target: RedisTarget): Promise<RedisTarget> {
  try {
    await probeRedis(target);
  } catch (err) {
    throw unreachable('Redis', describe(target), err);
  }
  return target;
}

/**
 * Postgres backend: create or upgrade the queue schema (BullMQ's migrations, then bulkmodel's)
 * when `migrate`, else check it (QUEUE_SCHEMA when missing or old). Nothing to do for Redis.
 */
export async function prepareQueueStore(t: QueueTarget, migrate: boolean): Promise<void> {
  if (t.backend === 'redis') return;
  const b = new PostgresBackend({
    database: t.queueDatabase,
    ...(t.queueSchema ? { schema: t.queueSchema } : {}),
    migrate,
    poolSize: 1,
  });
  try {
    await b.prepare();
  } finally {
    await b.close();
  }
}
