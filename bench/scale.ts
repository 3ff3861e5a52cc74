import type { ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BulkProducer, type RedisInput, silentLogger } from '../src/index.js';
import { RedisBackend } from '../src/queue/backend.js';
import type { BenchRow } from './data.js';
import { startWorker, stopWorker } from './queue.js';
import type { CaseResult } from './stats.js';

const run = promisify(execFile);
const SCRIPT = new URL('../scripts/redis-cluster.sh', import.meta.url).pathname;

/** One configuration: its worker processes on a queue of their own, on one Redis or the cluster. */
interface Setup {
  name: string;
  workers: number;
  redis: RedisInput;
  cliArgs: string[];
  queue: string;
  children: ChildProcess[];
  producer?: BulkProducer;
  backend?: RedisBackend;
}

/**
 * Queue drain with 1, 2 and 4 worker processes (concurrency 4 each) on one Redis, and with 1
 * and 4 on a three-master Redis Cluster (started for the run by scripts/redis-cluster.sh):
 * chunks enqueued while the queue is paused, timed from resume to the operation's end. Every
 * configuration has its workers running from the start, on a queue of its own; cases are
 * interleaved over the repetitions. On two cores more workers cannot add much: this shows
 * whether they cost throughput (lock contention, Redis round trips), and what the cluster costs.
 */
export async function scaleBench(
  url: string,
  table: string,
  rows: BenchRow[],
  reps: number,
  reset: () => Promise<void>,
  verify: () => Promise<void>,
  withCluster: boolean,
): Promise<{ results: CaseResult[]; note: string }> {
  const group =
    'queue drain by worker processes (concurrency 4 each), one Redis and a Redis Cluster';
  const single = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
  let clusterDir: string | undefined;
  let nodes: string | undefined;
  let note = '';
  if (withCluster) {
    clusterDir = mkdtempSync(join(tmpdir(), 'bulkmodel-bench-cluster-'));
    try {
      const { stdout } = await run(SCRIPT, ['start', clusterDir], {
        env: { ...process.env, REDIS_CLUSTER_BASE_PORT: '32001' },
      });
      nodes = /REDIS_CLUSTER=(\S+)/.exec(stdout)?.[1];
    } catch (err) {
      note = `\n\n(No Redis Cluster: ${String((err as Error).message).split('\n')[0]}; cluster cases skipped.)`;
      await run(SCRIPT, ['stop', clusterDir]).catch(() => {});
      clusterDir = undefined;
    }
  }
  const setups: Setup[] = [];
  const add = (name: string, workers: number, redis: RedisInput, cliArgs: string[]) =>
    setups.push({
      name,
      workers,
      redis,
      cliArgs,
      queue: `bench-scale-${setups.length}-${process.pid}`,
      children: [],
    });
  add('1 worker, one Redis', 1, single, ['--redis', single]);
  add('2 workers, one Redis', 2, single, ['--redis', single]);
  add('4 workers, one Redis', 4, single, ['--redis', single]);
  if (nodes) {
    add('1 worker, Redis Cluster (3 masters)', 1, { cluster: nodes }, ['--redis-cluster', nodes]);
    add('4 workers, Redis Cluster (3 masters)', 4, { cluster: nodes }, ['--redis-cluster', nodes]);
  }
  const secs = new Map<Setup, number[]>();
  try {
    for (const s of setups) {
      s.children = await Promise.all(
        Array.from({ length: s.workers }, () =>
          startWorker(url, table, s.queue, 4, false, [], s.cliArgs),
        ),
      );
      s.producer = new BulkProducer({ redis: s.redis, queue: s.queue, logger: silentLogger });
      s.backend = new RedisBackend({ redis: s.redis });
      secs.set(s, []);
    }
    for (let rep = 0; rep < reps; rep++) {
      for (const s of setups) {
        await reset();
        const q = s.backend!.queue(s.queue);
        try {
          await q.pause();
          const op = await s.producer!.bulkCreate(table, rows);
          const t0 = performance.now();
          await q.resume();
          await op.done();
          secs.get(s)!.push((performance.now() - t0) / 1000);
        } finally {
          await q.close();
        }
        await verify();
        process.stderr.write(
          `  rep ${rep + 1} scale / ${s.name}: ${Math.round(rows.length / secs.get(s)!.at(-1)!).toLocaleString('en-US')} rows/s\n`,
        );
      }
    }
  } finally {
    for (const s of setups) {
      await s.producer?.close();
      const q = s.backend?.queue(s.queue);
      await q?.obliterate({ force: true }).catch(() => {});
      await q?.close();
      await s.backend?.close();
      for (const c of s.children) await stopWorker(c);
    }
    if (clusterDir) await run(SCRIPT, ['stop', clusterDir]).catch(() => {});
  }
  const base = setups[0]!.name;
  return {
    results: setups.map((s) => ({
      group,
      name: s.name,
      rows: rows.length,
      secs: secs.get(s)!,
      ...(s.name === base ? {} : { baseline: base }),
    })),
    note,
  };
}
