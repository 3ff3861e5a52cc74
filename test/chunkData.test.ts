import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresBackend, type QueueBackend } from '../src/queue/backend.js';
import type { QueueState } from '../src/queue/state.js';
import { DATABASE_URL } from './helpers.js';
import { deleteKeys, runPrefix, testRedisBackend } from './queueHelpers.js';

/**
 * Chunk data beside the jobs (payload version 3), the same contract on both stores: bytes
 * stored and read exactly (every byte value, megabytes of them), a size asked before anything
 * is read, data over the limit not read, missing data told apart, an operation's data dropped
 * as a whole, and pruned with its record. (On a Redis Cluster too: npm run test:cluster.)
 */
const prefix = runPrefix('chunkdata');
const schema = `bmq_chunkdata_${randomBytes(3).toString('hex')}`;
const backends: Record<string, QueueBackend> = {};

beforeAll(async () => {
  backends.redis = testRedisBackend(prefix);
  backends.postgres = new PostgresBackend({ database: DATABASE_URL, schema, migrate: true });
  for (const b of Object.values(backends)) await b.prepare();
});
afterAll(async () => {
  const pg = backends.postgres as PostgresBackend | undefined;
  if (pg) {
    const c = await pg.pool.connect();
    try {
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    } finally {
      c.release();
    }
  }
  for (const b of Object.values(backends)) await b.close();
  await deleteKeys(`${prefix}:*`);
});

/** Every byte value, then random bytes: n bytes in all. */
function bytes(n: number): Buffer {
  const b = randomBytes(n);
  for (let i = 0; i < 256 && i < n; i++) b[i] = i;
  return b;
}

describe.each(['redis', 'postgres'])('%s', (name) => {
  let state: QueueState;
  beforeAll(() => {
    state = backends[name]!.state(`q-${name}`);
  });

  it('stores and reads bytes exactly; missing data is null', async () => {
    const big = bytes(3 * 1024 * 1024);
    const small = Buffer.from('1\ttab\\there ünï 🙂\n\\N\t\n');
    await state.putChunkData('op-a', 0, big);
    await state.putChunkData('op-a', 7, small);
    const got = await state.chunkData('op-a', 0, 16 * 1024 * 1024);
    expect(Buffer.isBuffer(got) && got.equals(big)).toBe(true);
    const got7 = await state.chunkData('op-a', 7, 1000);
    expect(Buffer.isBuffer(got7) && got7.equals(small)).toBe(true);
    expect(await state.chunkData('op-a', 1, 1000)).toBeNull();
    expect(await state.chunkData('op-none', 0, 1000)).toBeNull();
    // Ids are checked before they get here; the store quotes them anyway.
    await state.putChunkData("op-'q\\e", 0, small);
    expect(await state.chunkData("op-'q\\e", 0, 1000)).toEqual(small);
    expect(await state.chunkData("op-'q\\", 0, 1000)).toBeNull();
    // Stored again under the same place: the first one stays (as BullMQ keeps a job id's first
    // job, which names the first data's sha256).
    await state.putChunkData('op-a', 7, Buffer.from('2\tb\n'));
    expect(await state.chunkData('op-a', 7, 1000)).toEqual(small);
  });

  it('data over the limit is not read: its size is returned', async () => {
    await state.putChunkData('op-b', 0, bytes(5000));
    expect(await state.chunkData('op-b', 0, 4999)).toEqual({ bytes: 5000 });
    const at = await state.chunkData('op-b', 0, 5000);
    expect(Buffer.isBuffer(at) && at.length).toBe(5000);
  });

  it("a chunk's data is dropped alone, an operation's as a whole, and no other's", async () => {
    for (const i of [0, 1, 2]) await state.putChunkData('op-c', i, Buffer.from(`${i}\n`));
    await state.putChunkData('op-d', 0, Buffer.from('d\n'));
    // One chunk's (its job completed), then the rest (the operation ended).
    await state.dropChunkData('op-c', 1);
    expect(await state.chunkData('op-c', 1, 100)).toBeNull();
    expect(await state.chunkData('op-c', 2, 100)).toEqual(Buffer.from('2\n'));
    await state.dropChunkData('op-c');
    for (const i of [0, 1, 2]) expect(await state.chunkData('op-c', i, 100)).toBeNull();
    expect(await state.chunkData('op-d', 0, 100)).toEqual(Buffer.from('d\n'));
    await state.dropChunkData('op-never'); // nothing to drop: no error
  });

  it('is pruned with its operation record', async () => {
    await state.register('op-old', 'i', { kind: 'copyFrom', table: 't', returning: false });
    await state.putChunkData('op-old', 0, Buffer.from('old\n'));
    await new Promise((r) => setTimeout(r, 20));
    const cutoff = Date.now();
    await new Promise((r) => setTimeout(r, 20));
    await state.register('op-new', 'i', { kind: 'copyFrom', table: 't', returning: false });
    await state.putChunkData('op-new', 0, Buffer.from('new\n'));
    expect(await state.prune(cutoff)).toBeGreaterThanOrEqual(1);
    expect(await state.chunkData('op-old', 0, 100)).toBeNull();
    expect(await state.chunkData('op-new', 0, 100)).toEqual(Buffer.from('new\n'));
  });
});
