import pg from 'pg';
import { BulkError } from '../core/errors.js';
import {
  checkClusterNodes,
  describe,
  probeRedis,
  type RedisClusterInput,
  redisFromEnv,
} from '../queue/connection.js';
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

/** Check that Postgres and Redis answer within a few seconds; throw a message saying how to start them. */
export async function checkServices(
  database: string | undefined,
  redis: RedisTarget,
): Promise<{ database: string; redis: RedisTarget }> {
  const dbUrl = database ?? process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL;
  await checkPostgres(dbUrl);
  return { database: dbUrl, redis: await checkRedis(redis) };
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
