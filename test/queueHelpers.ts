import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { Queue } from 'bullmq';
import { Cluster, Redis } from 'ioredis';
import type pg from 'pg';
import { BulkError, type RedisInput } from '../src/index.js';
import { PostgresBackend, type QueueBackend, RedisBackend } from '../src/queue/backend.js';
import { DATABASE_URL } from './helpers.js';

export const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
/**
 * The Redis Cluster the queue suite runs against when REDIS_CLUSTER is set (`npm run
 * test:cluster` starts one); else undefined, and the suite uses the single Redis at REDIS_URL.
 */
export const TEST_CLUSTER = process.env.REDIS_CLUSTER?.trim() || undefined;
/** What producers, workers and dashboards of the queue suite are given. */
export const TEST_REDIS: RedisInput = TEST_CLUSTER ? { cluster: TEST_CLUSTER } : REDIS_URL;
/**
 * The backend the queue suite runs on: Redis (default), or Postgres when
 * BULKMODEL_TEST_BACKEND=postgres (`npm run test:postgres`).
 */
export const ON_POSTGRES = process.env.BULKMODEL_TEST_BACKEND === 'postgres';
/**
 * On Postgres, the queue schema, in the run's own database (test/globalSetup.ts creates both,
 * and drops the database at the end).
 */
export const TEST_QUEUE_SCHEMA = 'bulkmodel_queue_test';
/** What producers, workers, event readers and dashboards of the queue suite are given. */
export const TEST_QUEUE: {
  redis?: RedisInput;
  backend?: 'postgres';
  queueDatabase?: string;
  queueSchema?: string;
} = ON_POSTGRES
  ? { backend: 'postgres', queueDatabase: DATABASE_URL, queueSchema: TEST_QUEUE_SCHEMA }
  : { redis: TEST_REDIS };
/** The CLI's flags for it. */
export const QUEUE_ARGS = ON_POSTGRES
  ? ['--backend', 'postgres', '--queue-database', DATABASE_URL, '--queue-schema', TEST_QUEUE_SCHEMA]
  : TEST_CLUSTER
    ? ['--redis-cluster', TEST_CLUSTER]
    : ['--redis', REDIS_URL];

/** `--prefix` for a CLI command: Redis only (on Postgres the CLI refuses it; the schema keeps queues apart). */
export function prefixArgs(prefix: string): string[] {
  return ON_POSTGRES ? [] : ['--prefix', prefix];
}

/** A raw client of the test Redis (a Cluster client on a cluster). */
export function rawRedis(): Redis | Cluster {
  if (!TEST_CLUSTER) return new Redis(REDIS_URL);
  const nodes = TEST_CLUSTER.split(',').map((n) => {
    const [host, port] = n.split(':');
    return { host: host!, port: Number(port) };
  });
  return new Cluster(nodes);
}

/** A backend of the test Redis for a test's own prefix (close it). */
export function testRedisBackend(prefix: string): RedisBackend {
  return new RedisBackend({ redis: TEST_REDIS, prefix });
}

/** A backend of the suite's store (Redis, or the test queue schema on Postgres); close it. */
export function testBackend(prefix: string): QueueBackend {
  if (ON_POSTGRES)
    return new PostgresBackend({ database: DATABASE_URL, schema: TEST_QUEUE_SCHEMA, poolSize: 2 });
  return testRedisBackend(prefix);
}

/** A BullMQ Queue of the test Redis, keyed as bulkmodel keys it (closing it closes its connection). */
export function bullQueue(queue: string, prefix: string): Queue {
  const b = testBackend(prefix);
  const q = b.queue(queue);
  const close = q.close.bind(q);
  q.close = async () => {
    await close();
    await b.close();
  };
  return q;
}
const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** A BullMQ key prefix of its own for one test file, so runs never collide. */
export function runPrefix(name: string): string {
  return `bmtest-${name}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

let queueSeq = 0;
/** A queue name of its own for one test. */
export function queueName(label: string): string {
  // Queue names are letters, digits, '.', '_' and '-' (checkQueueName): a label may be prose.
  const safe = label.replace(/[^A-Za-z0-9_.-]+/g, '-').slice(0, 60);
  return `${safe}-${++queueSeq}-${randomBytes(2).toString('hex')}`;
}

/** Poll `check` until it returns a value other than undefined/false, or fail after `timeoutMs`. */
export async function until<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A `bulkmodel worker` child process. */
export interface WorkerProcess {
  name: string;
  child: ChildProcess;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves when a log line matches. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<void>;
  /** Resolves with the exit code (null when killed by a signal) and signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const live = new Set<ChildProcess>();

/** Run the CLI (`node --import tsx src/cli/main.ts ...`) and collect what it prints. */
export function runCli(
  args: string[],
  env: Record<string, string> = {},
  nodeArgs: string[] = [],
  /** What the CLI reads on its standard input (none: stdin is closed). */
  input?: string | Buffer,
): { child: ChildProcess; output(): string; exited: WorkerProcess['exited'] } {
  const child = spawn(
    process.execPath,
    [...nodeArgs, '--import', 'tsx', 'src/cli/main.ts', ...args],
    {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    },
  );
  if (input !== undefined) child.stdin!.end(input);
  live.add(child);
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('exit', (code, signal) => {
      live.delete(child);
      r({ code, signal });
    }),
  );
  return { child, output: () => out, exited };
}

export interface StartWorkerOptions {
  tables: string[];
  queue: string;
  prefix: string;
  name?: string;
  concurrency?: number;
  lockDurationMs?: number;
  args?: string[];
}

let workerSeq = 0;
/** Start `bulkmodel worker` and wait until it consumes jobs. */
export async function startWorker(o: StartWorkerOptions): Promise<WorkerProcess> {
  const name = o.name ?? `w${++workerSeq}`;
  const args = [
    'worker',
    '--tables',
    o.tables.join(','),
    '--queue',
    o.queue,
    ...prefixArgs(o.prefix),
    '--database',
    DATABASE_URL,
    ...QUEUE_ARGS,
    '--name',
    name,
    '--concurrency',
    String(o.concurrency ?? 4),
    ...(o.lockDurationMs ? ['--lock-duration', String(o.lockDurationMs)] : []),
    ...(o.args ?? []),
  ];
  const c = runCli(args);
  const wp: WorkerProcess = {
    name,
    child: c.child,
    output: c.output,
    exited: c.exited,
    async waitForLog(re, timeoutMs = 30_000) {
      let ended = false;
      void c.exited.then(() => {
        ended = true;
      });
      await until(
        `worker ${name} to log ${re}`,
        () => {
          if (re.test(c.output())) return true;
          if (ended) throw new Error(`worker ${name} exited; it printed:\n${c.output()}`);
          return false;
        },
        timeoutMs,
      );
    },
  };
  await wp.waitForLog(/bulkmodel worker started/);
  return wp;
}

/** Stop a worker gracefully (SIGTERM) and return its exit code. */
export async function stopWorker(w: WorkerProcess): Promise<number | null> {
  if (w.child.exitCode !== null || w.child.signalCode !== null) return w.child.exitCode;
  w.child.kill('SIGTERM');
  return (await w.exited).code;
}

/** SIGKILL every child still running (a test that failed half way). */
export async function killAll(): Promise<void> {
  const waits: Promise<unknown>[] = [];
  for (const c of live) {
    waits.push(new Promise((r) => c.once('exit', r)));
    c.kill('SIGKILL');
  }
  await Promise.all(waits);
}

/** Remove a queue and everything bulkmodel keeps beside it. */
export async function obliterate(queue: string, prefix: string): Promise<void> {
  const q = bullQueue(queue, prefix);
  try {
    await q.obliterate({ force: true });
  } finally {
    await q.close();
  }
  if (ON_POSTGRES) return; // the file's queue schema is dropped after its tests
  const b = testRedisBackend(prefix);
  try {
    await deleteKeys(`${b.keys(queue).qualified}:*`);
  } finally {
    await b.close();
  }
}

/**
 * Delete every key matching a pattern (the test's own prefix), on every node of a cluster.
 * Nothing to do on Postgres, where the queue schema goes with the file.
 */
export async function deleteKeys(pattern: string): Promise<void> {
  if (ON_POSTGRES) return;
  const r = rawRedis();
  try {
    let nodes: Redis[] = [r as Redis];
    if (r instanceof Cluster) {
      await new Promise<void>((res) => r.once('ready', () => res()));
      nodes = r.nodes('master');
    }
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        // One DEL per key: on a cluster, keys of several slots cannot go in one.
        const p = node.pipeline();
        for (const k of keys) p.del(k);
        if (keys.length) await p.exec();
      } while (cursor !== '0');
    }
  } finally {
    r.disconnect();
  }
}

/** The rejection of a promise, asserted to be a BulkError. */
export async function rejection(p: Promise<unknown>): Promise<BulkError> {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof BulkError))
      throw new Error(`expected a BulkError, got ${String((err as Error)?.stack ?? err)}`);
    return err;
  }
  throw new Error('expected a rejection');
}

/** Lock a table against writes in a transaction of its own until `release()` is called. */
export async function lockTable(
  pool: pg.Pool,
  table: string,
): Promise<{ release(): Promise<void>; waiting(): Promise<number> }> {
  const client = await pool.connect();
  await client.query('BEGIN');
  await client.query(`LOCK TABLE ${table} IN EXCLUSIVE MODE`);
  return {
    async release() {
      await client.query('COMMIT');
      client.release();
    },
    /** Backends waiting for this lock (chunks in flight, blocked). */
    async waiting() {
      const r = await pool.query(
        'SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND relation = $1::regclass',
        [table],
      );
      return r.rows[0].n as number;
    },
  };
}
