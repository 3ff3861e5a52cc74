import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BulkProducer, BulkWorker, silentLogger } from '../src/index.js';
import { connect } from '../src/queue/connection.js';
import { bullPrefix, hasHashTag, QueueKeys } from '../src/queue/keys.js';
import { DATABASE_URL, type TestDb, testDb } from './helpers.js';
import { runCli, runPrefix, TEST_CLUSTER } from './queueHelpers.js';

const run = promisify(execFile);

/**
 * bulkmodel on a real three-master Redis Cluster (the one `npm run test:cluster` gives, or one
 * this file starts): every key of a queue, BullMQ's and bulkmodel's, hashes to one slot; queues
 * spread over the nodes; the CLI reaches the cluster with --redis-cluster.
 */
let dir: string | undefined;
let nodes: string;
let cluster: Cluster;
let tdb: TestDb;
const prefix = runPrefix('cluster');

beforeAll(async () => {
  if (TEST_CLUSTER) nodes = TEST_CLUSTER;
  else {
    dir = mkdtempSync(join(tmpdir(), 'bulkmodel-cluster-test-'));
    const { stdout } = await run('scripts/redis-cluster.sh', ['start', dir], {
      env: { ...process.env, REDIS_CLUSTER_BASE_PORT: '31001' },
    });
    nodes = /REDIS_CLUSTER=(\S+)/.exec(stdout)![1]!;
  }
  cluster = connect({ cluster: nodes }).redis as Cluster;
  await new Promise<void>((r) => cluster.once('ready', () => r()));
  tdb = await testDb('cluster');
}, 60_000);
afterAll(async () => {
  cluster?.disconnect();
  await tdb?.close();
  if (dir) await run('scripts/redis-cluster.sh', ['stop', dir]);
});

/** Every key under the prefix, on every master, with its slot and node. */
async function keysBySlot(): Promise<Map<string, { slot: number; node: string }>> {
  const out = new Map<string, { slot: number; node: string }>();
  for (const node of cluster.nodes('master')) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      for (const k of keys)
        out.set(k, {
          slot: Number(await node.cluster('KEYSLOT', k)),
          node: `${node.options.host}:${node.options.port}`,
        });
    } while (cursor !== '0');
  }
  return out;
}

/** Queue names whose slots live on `count` different nodes (names are hashed, not chosen). */
async function namesOnNodes(count: number): Promise<string[]> {
  const byNode = new Map<string, string>();
  const slots = (await cluster.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
  const nodeOf = (slot: number) => {
    const r = slots.find(([lo, hi]) => slot >= lo && slot <= hi)!;
    return `${r[2][0]}:${r[2][1]}`;
  };
  for (let i = 0; byNode.size < count; i++) {
    const name = `cq${i}-${process.pid}`;
    const slot = Number(await cluster.cluster('KEYSLOT', `{${name}}`));
    const node = nodeOf(slot);
    if (!byNode.has(node)) byNode.set(node, name);
  }
  return [...byNode.values()];
}

describe('keys and slots', () => {
  it('hash tags: a queue of its own slot unless the prefix has a tag', () => {
    expect(bullPrefix('bull', 'items', true)).toBe('bull:{items}');
    expect(bullPrefix('bull', 'items', false)).toBe('bull');
    expect(bullPrefix('{app}', 'items', true)).toBe('{app}');
    expect(bullPrefix('x{}y', 'items', true)).toBe('x{}y:{items}');
    expect(hasHashTag('a{b}')).toBe(true);
    expect(hasHashTag('a{}b}')).toBe(false);
    expect(new QueueKeys('bull', 'q', true).op('o1')).toBe('bull:{q}:q:bm:op:o1');
  });

  it('every key of each queue hashes to one slot, and the queues sit on different nodes', async () => {
    const T = tdb.t('items');
    await tdb.pool.query(`CREATE TABLE ${T} (id bigserial PRIMARY KEY, n int UNIQUE, v text)`);
    const names = await namesOnNodes(3);
    const exportDir = mkdtempSync(join(tmpdir(), 'bulkmodel-cluster-exports-'));
    const producer = new BulkProducer({
      redis: { cluster: nodes },
      queue: names,
      prefix,
      logger: silentLogger,
    });
    const worker = new BulkWorker({
      redis: { cluster: nodes },
      queue: names,
      prefix,
      tables: [T],
      database: DATABASE_URL,
      exportDir,
      logger: silentLogger,
    });
    try {
      await worker.waitUntilReady();
      const rows = Array.from({ length: 300 }, (_, n) => ({ n, v: `v${n}` }));
      // Every kind of operation, on every queue (pickQueue by the operation's order).
      let k = 0;
      const picky = new BulkProducer({
        redis: { cluster: nodes },
        queue: names,
        prefix,
        pickQueue: () => names[k++ % names.length]!,
        logger: silentLogger,
      });
      try {
        for (let round = 0; round < 3; round++) {
          const base = round * 1000;
          const shifted = rows.map((r) => ({ ...r, n: r.n + base }));
          const a = await picky.bulkCreate(T, shifted.slice(0, 150), {
            batchSize: 40,
            returning: ['id', 'n'],
          });
          const b = await picky.copyFrom(T, shifted.slice(150), { batchSize: 40 });
          const c = await picky.updateFields(
            T,
            shifted.map((r) => ({ n: r.n, v: `u${r.n}` })),
            { key: 'n', fields: ['v'], batchSize: 50 },
          );
          expect((await a.done({ timeoutMs: 30_000 })).rows).toHaveLength(150);
          expect(await b.done({ timeoutMs: 30_000 })).toEqual({ count: 150 });
          expect((await c.done({ timeoutMs: 30_000 })).count).toBe(300);
          const d = await picky.update(
            T,
            { where: { n: [base, base + 1] }, set: { v: 'x' } },
            { batchSize: 1 },
          );
          expect(await d.done({ timeoutMs: 30_000 })).toEqual({ count: 2 });
          const e = await picky.copyTo(T, { path: `out-${round}.csv` });
          expect((await e.done({ timeoutMs: 30_000 })).count).toBe(300 * (round + 1));
        }
      } finally {
        await picky.close();
      }
      const keys = await keysBySlot();
      expect(keys.size).toBeGreaterThan(20);
      const slotsByQueue = new Map<string, Set<number>>();
      const nodesByQueue = new Map<string, Set<string>>();
      for (const [key, { slot, node }] of keys) {
        const q = names.find((n) => key.startsWith(`${prefix}:{${n}}:`));
        expect(q, `${key} is not under one queue's hash-tagged prefix`).toBeDefined();
        slotsByQueue.set(q!, (slotsByQueue.get(q!) ?? new Set()).add(slot));
        nodesByQueue.set(q!, (nodesByQueue.get(q!) ?? new Set()).add(node));
      }
      expect([...slotsByQueue.keys()].sort()).toEqual([...names].sort());
      for (const [q, slots] of slotsByQueue) expect([...slots], q).toHaveLength(1);
      const used = new Set([...nodesByQueue.values()].flatMap((s) => [...s]));
      expect(used.size).toBe(3);
      // bulkmodel's own keys are among them: records, chunk marks, index, events, catalog
      for (const part of [':bm:op:', ':bm:ops', ':bm:events', ':bm:catalog'])
        expect(
          [...keys.keys()].some((k) => k.includes(part)),
          part,
        ).toBe(true);
    } finally {
      await producer.close();
      await worker.close();
      rmSync(exportDir, { recursive: true, force: true });
    }
  });
});

describe('the CLI on a cluster', () => {
  it('load --workers 1 --redis-cluster: the workers it starts reach the cluster too', async () => {
    const T = tdb.t('loaded');
    await tdb.pool.query(`CREATE TABLE ${T} (id int PRIMARY KEY, name text)`);
    const f = join(mkdtempSync(join(tmpdir(), 'bulkmodel-cluster-load-')), 'x.csv');
    writeFileSync(
      f,
      `id,name\n${Array.from({ length: 500 }, (_, i) => `${i},"n ${i}"`).join('\n')}\n`,
    );
    const c = runCli(
      [
        'load',
        T,
        f,
        '--workers',
        '1',
        '--queue',
        `cl-load-${process.pid}`,
        '--prefix',
        prefix,
        '--database',
        DATABASE_URL,
        '--redis-cluster',
        nodes,
        '--batch-size',
        '100',
      ],
      { REDIS_URL: 'redis://127.0.0.1:1' }, // not used: the cluster flag wins
    );
    expect((await c.exited).code, c.output()).toBe(0);
    expect((await tdb.pool.query(`SELECT count(*)::int AS n FROM ${T}`)).rows[0].n).toBe(500);
  });

  it('a malformed node list is a usage error; an unreachable cluster says where', async () => {
    const bad = runCli(['status', '--redis-cluster', 'nohost']);
    expect((await bad.exited).code).toBe(2);
    expect(bad.output()).toContain('is not host:port');
    const both = runCli(['status', '--redis-cluster', nodes, '--redis', 'redis://127.0.0.1:6379']);
    expect((await both.exited).code).toBe(2);
    expect(both.output()).toContain('not both');
    const down = runCli(['status', '--redis-cluster', '127.0.0.1:1,127.0.0.1:2']);
    expect((await down.exited).code).toBe(3);
    expect(down.output()).toContain('cannot reach Redis at cluster 127.0.0.1:1,127.0.0.1:2');
  });
});
