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
import { DEFAULT_DATABASE_URL, type Parsed, str, unreachable } from './args.js';

/** The Redis a command talks to: a URL, or a cluster's nodes. */
export type RedisTarget = string | RedisClusterInput;

/** The --redis and --redis-cluster flags, as every command that talks to Redis takes them. */
export const REDIS_FLAGS = {
  redis: { type: 'string' },
  'redis-cluster': { type: 'string' },
} as const;

/** The help lines of --redis and --redis-cluster, descriptions starting at column `col`. */
export function redisUsage(col: number): string {
  const cont = ' '.repeat(col);
  const pad = (flag: string) =>
    flag.length + 3 > col ? `  ${flag}\n${cont}` : `  ${flag}`.padEnd(col);
  return [
    `${pad('--redis <url>')}Redis URL (env REDIS_URL, default redis://127.0.0.1:6379)`,
    `${pad('--redis-cluster <nodes>')}a Redis Cluster instead: host:port,host:port,... (env`,
    `${cont}REDIS_CLUSTER, which wins over REDIS_URL)`,
  ].join('\n');
}

/** Where a command's queues live: Redis (one server or a cluster) or Postgres. */
export type QueueTarget =
  | { backend: 'redis'; redis: RedisTarget }
  | { backend: 'postgres'; queueDatabase: string; queueSchema?: string };

/** The flags that say where the queues live, as every command that uses a queue takes them. */
export const QUEUE_FLAGS = {
  backend: { type: 'string' },
  'queue-database': { type: 'string' },
  'queue-schema': { type: 'string' },
  ...REDIS_FLAGS,
} as const;

/** The help lines of QUEUE_FLAGS, descriptions starting at column `col`. */
export function queueUsage(col: number): string {
  const cont = ' '.repeat(col);
  const pad = (flag: string) =>
    flag.length + 3 > col ? `  ${flag}\n${cont}` : `  ${flag}`.padEnd(col);
  return [
    `${pad('--backend <kind>')}where the queues live: redis or postgres (env BULKMODEL_BACKEND,`,
    `${cont}default redis)`,
    redisUsage(col),
    `${pad('--queue-database <url>')}postgres backend: the database the queues live in (env`,
    `${cont}BULKMODEL_QUEUE_DATABASE, default the --database one)`,
    `${pad('--queue-schema <name>')}postgres backend: their schema (env BULKMODEL_QUEUE_SCHEMA,`,
    `${cont}default bulkmodel_queue)`,
  ].join('\n');
}

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
  const schema = str(p, 'queue-schema') || process.env.BULKMODEL_QUEUE_SCHEMA || undefined;
  return {
    backend: 'postgres',
    queueDatabase:
      str(p, 'queue-database') ??
      (process.env.BULKMODEL_QUEUE_DATABASE || undefined) ??
      database ??
      (process.env.DATABASE_URL || DEFAULT_DATABASE_URL),
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
  const dbUrl = database ?? (process.env.DATABASE_URL || DEFAULT_DATABASE_URL);
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
