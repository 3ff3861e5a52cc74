import { Redis } from 'ioredis';
import pg from 'pg';
import { DEFAULT_REDIS_URL } from '../producer/redis.js';
import { DEFAULT_DATABASE_URL, unreachable } from './args.js';

/** Check that Postgres and Redis answer within a few seconds; throw a message saying how to start them. */
export async function checkServices(
  database: string | undefined,
  redis: string | undefined,
): Promise<{ database: string; redis: string }> {
  const dbUrl = database ?? process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL;
  const redisUrl = redis ?? process.env.REDIS_URL ?? DEFAULT_REDIS_URL;
  const client = new pg.Client({ connectionString: dbUrl, connectionTimeoutMillis: 5000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (err) {
    throw unreachable('Postgres', dbUrl, err);
  } finally {
    await client.end().catch(() => {});
  }
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
  return { database: dbUrl, redis: redisUrl };
}
