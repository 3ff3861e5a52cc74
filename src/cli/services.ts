import { Redis } from 'ioredis';
import pg from 'pg';
import { DEFAULT_REDIS_URL } from '../producer/redis.js';
import { DEFAULT_DATABASE_URL, unreachable } from './args.js';

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
  redis: string | undefined,
): Promise<{ database: string; redis: string }> {
  const dbUrl = database ?? process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL;
  await checkPostgres(dbUrl);
  return { database: dbUrl, redis: await checkRedis(redis) };
}

/** Check that Redis answers within a few seconds; returns its URL. */
export async function checkRedis(redis: string | undefined): Promise<string> {
  const redisUrl = redis ?? process.env.REDIS_URL ?? DEFAULT_REDIS_URL;
  const r = new Redis(redisUrl, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    connectTimeout: 5000,
    retryStrategy: () => null,
  });
  r.on('error', () => {});
  try {
    await r.connect();
    await r.ping();
  } catch (err) {
    throw unreachable('Redis', redisUrl, err);
  } finally {
    r.disconnect();
  }
  return redisUrl;
}
