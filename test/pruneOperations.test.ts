import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { QueueKeys } from '../src/queue/keys.js';
import { RedisQueueState } from '../src/queue/redisState.js';

const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const keys = new QueueKeys(`bmprune${process.pid}`, 'q');
afterAll(async () => {
  const left = await redis.keys(`${keys.prefix}:*`);
  if (left.length) await redis.del(...left);
  redis.disconnect();
});

describe('operation records', () => {
  it('are pruned after the retention: hash, chunk bitmap, running jobs, index entry; newer ones stay', async () => {
    const day = 24 * 3600_000;
    const now = Date.now();
    for (const [id, age] of [
      ['old1', 9 * day],
      ['old2', 8 * day],
      ['new1', 1 * day],
    ] as const) {
      await redis
        .multi()
        .hset(keys.op(id), { state: 'completed' })
        .setbit(keys.opDone(id), 3, 1)
        .hset(keys.opActive(id), `${id}-c3`, 'w1')
        .zadd(keys.ops, String(now - age), id)
        .exec();
    }
    const state = new RedisQueueState(redis, keys);
    expect(await state.prune(now - 7 * day)).toBe(2);
    expect(await redis.zrange(keys.ops, 0, -1)).toEqual(['new1']);
    expect(
      await redis.exists(
        keys.op('old1'),
        keys.opDone('old1'),
        keys.opActive('old1'),
        keys.op('old2'),
      ),
    ).toBe(0);
    expect(await redis.exists(keys.op('new1'), keys.opDone('new1'), keys.opActive('new1'))).toBe(3);
  });
});
