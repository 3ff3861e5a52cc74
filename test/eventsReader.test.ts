import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { BulkEvents } from '../src/index.js';
import { publishEvent } from '../src/queue/events.js';
import { QueueKeys } from '../src/queue/keys.js';
import { RedisQueueState } from '../src/queue/redisState.js';

const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const keys = new QueueKeys(`bmevents${process.pid}`, 'q');
const state = new RedisQueueState(redis, keys);
afterAll(async () => {
  const left = await redis.keys(`${keys.prefix}:*`);
  if (left.length) await redis.del(...left);
  redis.disconnect();
});

async function until(what: string, ok: () => boolean): Promise<void> {
  const end = Date.now() + 20_000;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('BulkEvents reader', () => {
  it('survives a read error and goes on delivering from where it was', async () => {
    const events = new BulkEvents({ queue: keys.queue, prefix: keys.prefix, blockMs: 100 });
    const got: number[] = [];
    const errors: Error[] = [];
    events.on('error', (err) => errors.push(err));
    events.on('progress', (e) => {
      got.push(e.rowsDone);
    });
    try {
      await events.waitUntilReady();
      const ev = (n: number) => ({
        operationId: 'x',
        table: 't',
        kind: 'bulkCreate',
        rowsDone: n,
        chunksDone: 1,
      });
      await publishEvent(state, 'progress', ev(1));
      await until('the first event', () => got.length === 1);
      // The stream key turns into a string: every read now fails (WRONGTYPE).
      await redis.del(keys.events);
      await redis.set(keys.events, 'not a stream');
      await until('a read error', () => errors.length > 0);
      await redis.del(keys.events);
      await publishEvent(state, 'progress', ev(2));
      await until('the event after the error', () => got.length === 2);
      expect(got).toEqual([1, 2]);
    } finally {
      await events.close();
    }
  });
});
