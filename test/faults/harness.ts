import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { DATABASE_URL } from '../helpers.js';
import { until } from '../queueHelpers.js';

/**
 * Shared pieces of the fault suite: a seeded random source (the seed is printed; rerun with
 * FAULT_SEED=<seed> to get the same moments), worker child processes against any Redis and
 * Postgres URL, a Redis server of the test's own (AOF on, as production runs it), Postgres
 * restart helpers, and the expected/lost/duplicated count every trial reports.
 */

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The suite's base seed: FAULT_SEED, or a random one (printed, so a failure can be rerun). */
export function baseSeed(label: string): number {
  const seed = Number(process.env.FAULT_SEED ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`[${label}] seed ${seed} (rerun with FAULT_SEED=${seed})`);
  return seed;
}

export interface Rng {
  next(): number;
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number;
}

/** mulberry32: a small seeded PRNG, enough to pick kill moments reproducibly. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)) };
}

/** A trial's tally: rows it should leave, rows missing, rows present (or applied) more than once. */
export interface Tally {
  expected: number;
  lost: number;
  duplicated: number;
}

export function report(label: string, t: Tally, extra = ''): void {
  console.log(
    `[${label}] expected ${t.expected} lost ${t.lost} duplicated ${t.duplicated}${extra ? ` ${extra}` : ''}`,
  );
}

/**
 * Rows with `n` in [from, from+count) that an insert should have left: lost = values of n
 * missing, duplicated = rows beyond one per n (and rows outside the range).
 */
export async function tallyInsert(
  pool: pg.Pool,
  table: string,
  count: number,
  from = 0,
  where = 'true',
): Promise<Tally> {
  const r = await pool.query(
    `SELECT count(*)::int AS total,
            count(DISTINCT n) FILTER (WHERE n >= $1 AND n < $2)::int AS present
       FROM ${table} WHERE ${where}`,
    [from, from + count],
  );
  const { total, present } = r.rows[0] as { total: number; present: number };
  return { expected: count, lost: count - present, duplicated: total - present };
}

/**
 * For tables with a `writes` column bumped by a trigger on every UPDATE: rows that should have
 * been updated once (`cond` true), lost = not updated, duplicated = updated more than once.
 */
export async function tallyUpdate(
  pool: pg.Pool,
  table: string,
  expected: number,
  cond: string,
): Promise<Tally> {
  const r = await pool.query(
    `SELECT count(*) FILTER (WHERE writes = 1 AND (${cond}))::int AS once,
            count(*) FILTER (WHERE writes > 1)::int AS twice,
            count(*) FILTER (WHERE writes = 0)::int AS never,
            count(*) FILTER (WHERE writes >= 1 AND NOT (${cond}))::int AS wrong
       FROM ${table}`,
  );
  const x = r.rows[0] as { once: number; twice: number; never: number; wrong: number };
  return { expected, lost: expected - x.once - x.twice, duplicated: x.twice + x.wrong };
}

/** The trigger that counts UPDATEs per row (a chunk applied twice shows as writes = 2). */
export function writesTrigger(table: string, schema: string, name: string): string {
  const fn = `${schema}.bump_${name}`;
  return `
    CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN NEW.writes := OLD.writes + 1; RETURN NEW; END $$;
    CREATE TRIGGER bump BEFORE UPDATE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${fn}();`;
}

/** A free TCP port on loopback. */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const children = new Set<ChildProcess>();

/** A `bulkmodel worker` child process, against any Redis and Postgres. */
export interface Child {
  name: string;
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitForLog(re: RegExp, timeoutMs?: number): Promise<void>;
}

/** Spawn `node --import tsx <script> ...args` and collect its output. */
export function spawnNode(script: string, args: string[], env: Record<string, string> = {}): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('exit', (code, signal) => {
      children.delete(child);
      r({ code, signal });
    }),
  );
  let ended = false;
  void exited.then(() => {
    ended = true;
  });
  return {
    name: script,
    child,
    output: () => out,
    exited,
    async waitForLog(re, timeoutMs = 60_000) {
      await until(
        `${script} to log ${re}`,
        () => {
          if (re.test(out)) return true;
          if (ended) throw new Error(`${script} exited; it printed:\n${out.slice(-4000)}`);
          return false;
        },
        timeoutMs,
      );
    },
  };
}

export interface WorkerSpec {
  tables: string[];
  queue: string;
  prefix: string;
  redis: string;
  /** The worker's Redis flags, instead of `--redis <redis>` (a cluster: --redis-cluster). */
  redisArgs?: string[];
  database?: string;
  name: string;
  concurrency?: number;
  lockDurationMs?: number;
  exportDir?: string;
  args?: string[];
  /** Wait for the start line (default true). */
  wait?: boolean;
}

export async function startWorkerAt(s: WorkerSpec): Promise<Child> {
  const c = spawnNode('src/cli/main.ts', [
    'worker',
    '--tables',
    s.tables.join(','),
    '--queue',
    s.queue,
    // Redis only: on the Postgres backend the CLI refuses --prefix (the schema keeps queues apart).
    ...(s.redisArgs?.includes('postgres') ? [] : ['--prefix', s.prefix]),
    '--database',
    s.database ?? DATABASE_URL,
    ...(s.redisArgs ?? ['--redis', s.redis]),
    '--name',
    s.name,
    '--concurrency',
    String(s.concurrency ?? 4),
    '--lock-duration',
    String(s.lockDurationMs ?? 30_000),
    ...(s.exportDir ? ['--export-dir', s.exportDir] : []),
    ...(s.args ?? []),
  ]);
  c.name = s.name;
  if (s.wait !== false) await c.waitForLog(/bulkmodel worker started/);
  return c;
}

/** SIGKILL a child and wait for it to be gone. */
export async function sigkill(c: Child): Promise<void> {
  if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
  await c.exited;
}

/** SIGTERM a child (graceful stop) and return its exit code. */
export async function stopChild(c: Child): Promise<number | null> {
  if (c.child.exitCode !== null || c.child.signalCode !== null) return c.child.exitCode;
  c.child.kill('SIGTERM');
  return (await c.exited).code;
}

/** SIGKILL every child this module started that is still running. */
export async function killChildren(): Promise<void> {
  const waits: Promise<unknown>[] = [];
  for (const c of children) {
    waits.push(new Promise((r) => c.once('exit', r)));
    c.kill('SIGKILL');
  }
  await Promise.all(waits);
}

/** A redis-server of the test's own: AOF on, no RDB snapshots, on a spare port. */
export interface OwnRedis {
  port: number;
  url: string;
  /** SIGKILL it (no shutdown save: what is in the AOF is what survives). */
  kill(): Promise<void>;
  /** Start it again on the same port and directory (replays the AOF). */
  start(): Promise<void>;
  /** Stop it for good and remove its directory. */
  close(): Promise<void>;
}

export async function startOwnRedis(): Promise<OwnRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'bulkmodel-redis-'));
  const port = await freePort();
  let proc: ChildProcess | undefined;
  const ping = async () => {
    try {
      const r = await run('redis-cli', ['-p', String(port), 'ping']);
      return r.stdout.trim() === 'PONG';
    } catch {
      return false;
    }
  };
  const start = async () => {
    proc = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--appendonly',
        'yes',
        '--appendfsync',
        'everysec',
        '--dir',
        dir,
        '--save',
        '',
        '--maxmemory-policy',
        'noeviction',
      ],
      { stdio: 'ignore' },
    );
    children.add(proc);
    const p = proc;
    p.on('exit', () => children.delete(p));
    await until(`redis on ${port}`, ping, 30_000);
  };
  const kill = async () => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await gone;
  };
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill,
    start,
    async close() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function pgIsReady(): Promise<boolean> {
  try {
    await run('pg_isready', ['-h', '127.0.0.1', '-p', '5432', '-q']);
    return true;
  } catch {
    return false;
  }
}

/** Wait (bounded) until Postgres accepts queries again; start it if it stayed down. */
export async function ensurePostgresUp(): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (await pgIsReady()) {
      const c = new pg.Client({ connectionString: DATABASE_URL });
      c.on('error', () => {});
      try {
        await c.connect();
        await c.query('SELECT 1');
        return;
      } catch {
        // starting up: try again
      } finally {
        await c.end().catch(() => {});
      }
    } else if (i % 100 === 50) {
      await run('pg_ctlcluster', ['--skip-systemctl-redirect', '15', 'main', 'start']).catch(
        () => {},
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('Postgres did not come back within 60 s');
}

export function restartPostgres(): Promise<unknown> {
  return run('pg_ctlcluster', ['--skip-systemctl-redirect', '15', 'main', 'restart']);
}

/** A query on a pool whose connections may have died with the server: retried a few times. */
export async function q<T = Record<string, unknown>>(
  pool: pg.Pool,
  text: string,
  values: unknown[] = [],
): Promise<T[]> {
  for (let i = 0; ; i++) {
    try {
      return (await pool.query(text, values)).rows as T[];
    } catch (err) {
      if (i >= 20) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
