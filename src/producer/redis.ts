import { Redis, type RedisOptions } from 'ioredis';
import { redact } from '../core/logger.js';

/** Redis given as a URL, ioredis options, or an ioredis instance (shared, not closed by us). */
export type RedisInput = string | RedisOptions | Redis;

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** An ioredis connection fit for BullMQ (maxRetriesPerRequest: null) and whether we own it. */
export function connect(input: RedisInput | undefined): { redis: Redis; owned: boolean } {
  if (input instanceof Redis) return { redis: input, owned: false };
  const base = { maxRetriesPerRequest: null, enableReadyCheck: true } as const;
  if (input === undefined || typeof input === 'string') {
    const url = input ?? process.env.REDIS_URL ?? DEFAULT_REDIS_URL;
    return { redis: new Redis(url, base), owned: true };
  }
  return { redis: new Redis({ ...input, ...base }), owned: true };
}

/** Where a Redis connection points, without its password. */
export function describe(input: RedisInput | undefined): string {
  if (input instanceof Redis) return `${input.options.host}:${input.options.port}`;
  if (input === undefined || typeof input === 'string')
    return redact(input ?? process.env.REDIS_URL ?? DEFAULT_REDIS_URL);
  return `${input.host ?? '127.0.0.1'}:${input.port ?? 6379}`;
}

/** Keys bulkmodel keeps beside the BullMQ queue (same prefix and queue name, under `bm:`). */
export class QueueKeys {
  constructor(
    readonly prefix: string,
    readonly queue: string,
  ) {}
  /** BullMQ's qualified queue name, used as a parent's `queue`. */
  get qualified(): string {
    return `${this.prefix}:${this.queue}`;
  }
  op(id: string): string {
    return `${this.prefix}:${this.queue}:bm:op:${id}`;
  }
  opDone(id: string): string {
    return `${this.prefix}:${this.queue}:bm:op:${id}:done`;
  }
  /** Sorted set of operation ids by creation time. */
  get ops(): string {
    return `${this.prefix}:${this.queue}:bm:ops`;
  }
  /** Catalog snapshots of allowed tables (workers publish, producers read). */
  get catalog(): string {
    return `${this.prefix}:${this.queue}:bm:catalog`;
  }
  /** Stream of signals and progress events. */
  get events(): string {
    return `${this.prefix}:${this.queue}:bm:events`;
  }
}

/** Job ids: the operation's parent is the operation id; chunks and the seal hang off it. */
export const jobIds = {
  parent: (op: string) => op,
  chunk: (op: string, index: number) => `${op}-c${index}`,
  seal: (op: string) => `${op}-seal`,
};

const MOVE_STATE = `
local s = redis.call('hget', KEYS[1], 'state')
if s == 'completed' or s == 'failed' or s == 'cancelled' then return 0 end
redis.call('hset', KEYS[1], unpack(ARGV))
return 1`;

/**
 * Set an operation's state (and other fields) unless it has already ended: completed, failed
 * and cancelled are final, so a chunk finishing late cannot turn a cancelled operation back
 * into a running one. Returns whether the state moved.
 */
export async function moveState(
  redis: Redis,
  key: string,
  fields: Record<string, string> & { state: string },
): Promise<boolean> {
  const args = Object.entries(fields).flat();
  return (await redis.eval(MOVE_STATE, 1, key, ...args)) === 1;
}
