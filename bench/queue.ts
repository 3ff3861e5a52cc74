import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { Queue } from 'bullmq';
import pg from 'pg';
import { type BulkClient, BulkProducer, silentLogger } from '../src/index.js';
import { type BenchRow, TABLE_DDL } from './data.js';
import type { CaseResult } from './stats.js';

const CLI = new URL('../src/cli/main.ts', import.meta.url).pathname;
/** The built CLI, as users run it (`npm run build`); the memory run prefers it. */
const BUILT_CLI = new URL('../dist/cli/main.js', import.meta.url).pathname;
const BUILT_INDEX = new URL('../dist/index.js', import.meta.url).pathname;

/** A `bulkmodel worker` child process; resolves once it consumes jobs. */
export async function startWorker(
  url: string,
  table: string,
  queue: string,
  concurrency = 4,
  built = false,
  nodeArgs: string[] = [],
  cliArgs: string[] = [],
): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      ...nodeArgs,
      ...(built ? [BUILT_CLI] : ['--import', 'tsx', CLI]),
      'worker',
      '--tables',
      table,
      '--queue',
      queue,
      '--concurrency',
      String(concurrency),
      ...cliArgs,
    ],
    {
      env: { ...process.env, DATABASE_URL: url },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  child.stderr!.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    const onData = (d: string) => {
      buf += d;
      if (buf.includes('worker started')) {
        child.stderr!.off('data', onData);
        child.stderr!.resume();
        resolve();
      }
    };
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`worker exited with ${code}: ${buf}`)));
  });
  return child;
}

export async function stopWorker(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await once(child, 'exit');
}

type Who = 'worker' | 'producer' | 'postgres' | 'redis';

/**
 * CPU time (ms) used so far by the worker, this process (the producer), every postgres process
 * and redis-server, from /proc (Linux): where each queue case spends the machine's two cores.
 */
function cpuMs(workerPid: number): Record<Who, number> | undefined {
  const tick = 1000 / 100; // USER_HZ
  const out: Record<Who, number> = { worker: 0, producer: 0, postgres: 0, redis: 0 };
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return undefined;
  }
  for (const d of pids) {
    try {
      const pid = Number(d);
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ms = (Number(f[11]) + Number(f[12])) * tick;
      const who: Who | undefined =
        pid === workerPid
          ? 'worker'
          : pid === process.pid
            ? 'producer'
            : comm.startsWith('postgres')
              ? 'postgres'
              : comm.startsWith('redis')
                ? 'redis'
                : undefined;
      if (who) out[who] += ms;
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

/** Peak RSS of a live process, from /proc. */
export function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : Number.NaN;
}

/**
 * Through the queue, against the same operation in direct mode: drain (chunks already enqueued,
 * until the last commit) and end to end (from the producer's call until op.done()).
 */
export class QueueBench {
  /** CPU µs per row by process, per repetition, for the drain and end-to-end cases. */
  readonly cpu: Record<'drain' | 'e2e', Record<Who, number>[]> = { drain: [], e2e: [] };

  constructor(
    private readonly url: string,
    private readonly table: string,
    private readonly rows: BenchRow[],
    private readonly reps: number,
    private readonly reset: () => Promise<void>,
    private readonly verify: () => Promise<void>,
  ) {}

  private record(
    phase: 'drain' | 'e2e',
    a: Record<Who, number> | undefined,
    b: Record<Who, number> | undefined,
  ): void {
    if (!a || !b) return;
    const perRow = {} as Record<Who, number>;
    for (const k of Object.keys(a) as Who[]) perRow[k] = ((b[k] - a[k]) * 1000) / this.rows.length;
    this.cpu[phase].push(perRow);
  }

  /** Median CPU µs per row of each process in the queue cases, as a markdown table. */
  cpuMarkdown(): string {
    if (this.cpu.drain.length === 0) return '';
    const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    const cols: Who[] = ['producer', 'worker', 'postgres', 'redis'];
    const line = (phase: 'drain' | 'e2e', label: string) => {
      const v = cols.map((k) => med(this.cpu[phase].map((r) => r[k])));
      const total = v.reduce((x, y) => x + y, 0);
      return `| ${label} | ${v.map((x) => x.toFixed(1)).join(' | ')} | ${total.toFixed(1)} |`;
    };
    return [
      '\n\n### CPU per row in the queue cases (µs, median; from /proc: user + system time)\n',
      '| case | producer | worker | postgres | redis | total |',
      '|---|---:|---:|---:|---:|---:|',
      line('drain', 'queue drain'),
      line('e2e', 'queue end to end'),
    ].join('\n');
  }

  /**
   * The cases on one backend: Redis (the default), or Postgres (BullMQ's PostgreSQL backend and
   * bulkmodel's state in a queue schema of the run's own in the target database, no Redis).
   */
  async run(direct: BulkClient, backend: 'redis' | 'postgres' = 'redis'): Promise<CaseResult[]> {
    const onPg = backend === 'postgres';
    const queueName = `bench-${backend}-${process.pid}`;
    const group = `queue: bulkCreate with 1 worker process (default concurrency 4), producer in this process${onPg ? '; Postgres backend, no Redis' : ''}`;
    // A queue schema of this run's own, dropped at the end: runs never meet.
    const schema = `bench_queue_${process.pid}`;
    const worker = await startWorker(
      this.url,
      this.table,
      queueName,
      4,
      false,
      [],
      onPg
        ? ['--backend', 'postgres', '--queue-schema', schema, '--migrate']
        : ['--backend', 'redis'],
    );
    const where = onPg
      ? { backend: 'postgres' as const, database: this.url, queueSchema: schema, migrate: true }
      : { backend: 'redis' as const };
    const producer = new BulkProducer({ ...where, queue: queueName, logger: silentLogger });
    // Rows as JSON values (payload version 1), beside COPY text (version 2, the default).
    const producerV1 = new BulkProducer({
      ...where,
      queue: queueName,
      logger: silentLogger,
      payloadVersion: 1,
    });
    await producer.operations({ limit: 1 }); // the queue store is ready (and migrated)
    const queue = producer.backend.queue(queueName);
    const n = this.rows.length;
    const secs = {
      direct: [] as number[],
      drain: [] as number[],
      e2e: [] as number[],
      drainV1: [] as number[],
    };
    try {
      for (let rep = 0; rep < this.reps; rep++) {
        await this.reset();
        let t0 = performance.now();
        await direct.model(this.table).bulkCreate(this.rows);
        secs.direct.push((performance.now() - t0) / 1000);
        await this.verify();

        await this.reset();
        await queue.pause();
        const op = await producer.bulkCreate(this.table, this.rows);
        let c0 = cpuMs(worker.pid!);
        t0 = performance.now();
        await queue.resume();
        await op.done();
        secs.drain.push((performance.now() - t0) / 1000);
        if (!onPg) this.record('drain', c0, cpuMs(worker.pid!));
        await this.verify();

        await this.reset();
        await queue.pause();
        const op1 = await producerV1.bulkCreate(this.table, this.rows);
        t0 = performance.now();
        await queue.resume();
        await op1.done();
        secs.drainV1.push((performance.now() - t0) / 1000);
        await this.verify();

        await this.reset();
        c0 = cpuMs(worker.pid!);
        t0 = performance.now();
        await (await producer.bulkCreate(this.table, this.rows)).done();
        secs.e2e.push((performance.now() - t0) / 1000);
        if (!onPg) this.record('e2e', c0, cpuMs(worker.pid!));
        await this.verify();
        process.stderr.write(
          `  rep ${rep + 1} queue (${backend}): direct ${Math.round(n / secs.direct.at(-1)!)} / drain ${Math.round(n / secs.drain.at(-1)!)} (v1 ${Math.round(n / secs.drainV1.at(-1)!)}) / e2e ${Math.round(n / secs.e2e.at(-1)!)} rows/s\n`,
        );
      }
    } finally {
      await producer.close();
      await producerV1.close();
      await queue.obliterate({ force: true }).catch(() => {});
      await queue.close();
      await stopWorker(worker);
      if (onPg) {
        const pool = new pg.Pool({ connectionString: this.url, max: 1 });
        await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
        await pool.end();
      }
    }
    const base = 'direct mode bulkCreate, 1 connection';
    return [
      { group, name: base, rows: n, secs: secs.direct },
      {
        group,
        name: 'queue drain (enqueued before timing)',
        rows: n,
        secs: secs.drain,
        baseline: base,
      },
      {
        group,
        name: 'queue drain, rows as JSON values (payload version 1)',
        rows: n,
        secs: secs.drainV1,
        baseline: base,
      },
      {
        group,
        name: 'queue end to end (producer call to op.done())',
        rows: n,
        secs: secs.e2e,
        baseline: base,
      },
    ];
  }
}

/**
 * Peak RSS of a producer streaming `n` rows from an async iterable into the queue (a child
 * process, bench/memProducer.ts) and of the worker draining them.
 */
export async function memoryRun(
  url: string,
  n: number,
  /** Node flags for the worker, e.g. a heap cap. */
  workerNodeArgs: string[] = [],
  /** `bulkmodel worker` options, e.g. `--heap-growth 0`. */
  workerCliArgs: string[] = [],
): Promise<{
  rows: number;
  producerMb: number;
  workerMb: number;
  secs: number;
  workerRuns: string;
}> {
  const table = 'bulkmodel_bench.memory';
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  pool.on('error', () => {});
  await pool.query(TABLE_DDL(table));
  const queueName = `bench-mem-${process.pid}`;
  // The worker as users run it: the built CLI under plain node (tsx's loader alone holds
  // about 100 MB). Without a build (`npm run build`), the sources under tsx.
  const built = existsSync(BUILT_CLI) && existsSync(BUILT_INDEX);
  const worker = await startWorker(url, table, queueName, 4, built, workerNodeArgs, workerCliArgs);
  try {
    const t0 = performance.now();
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        new URL('./memProducer.ts', import.meta.url).pathname,
        table,
        queueName,
        String(n),
      ],
      {
        env: { ...process.env, DATABASE_URL: url },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    const [code] = await once(child, 'exit');
    if (code !== 0) throw new Error(`memory producer exited with ${code}`);
    const report = JSON.parse(out.trim().split('\n').at(-1)!) as { count: number; peakMb: number };
    const got = await pool.query(`SELECT count(*)::int AS n FROM ${table}`);
    if (report.count !== n || got.rows[0].n !== n)
      throw new Error(`memory run wrote ${got.rows[0].n} rows, expected ${n}`);
    return {
      rows: n,
      producerMb: report.peakMb,
      workerMb: peakRssMb(worker.pid!),
      secs: (performance.now() - t0) / 1000,
      workerRuns: `${['node', ...workerNodeArgs].join(' ')} ${built ? 'dist/cli/main.js' : '--import tsx src/cli/main.ts'} ${['worker', ...workerCliArgs].join(' ')}`,
    };
  } finally {
    await stopWorker(worker);
    await pool.query(`DROP TABLE IF EXISTS ${table}`);
    await pool.end();
    const q = new Queue(queueName, { connection: { host: '127.0.0.1', port: 6379 } });
    await q.obliterate({ force: true }).catch(() => {});
    await q.close();
  }
}

/**
 * A CSV file of the bench rows loaded by psql's \\copy and by `bulkmodel load` (the built CLI,
 * as users run it; two workers already running), into the same empty table, each verified by
 * checksum; with the load process's peak RSS.
 */
export async function fileLoad(
  url: string,
  table: string,
  rows: number,
  reps: number,
  reset: () => Promise<void>,
  verify: () => Promise<void>,
): Promise<{ results: CaseResult[]; loadRssMb: number[] }> {
  const group = 'file load: a CSV file of the rows, into an empty table';
  const cols = 'name, value, price, tags, payload, created_at, flag';
  const file = `/tmp/bulkmodel-bench-${process.pid}.csv`;
  const psql = (cmd: string) =>
    new Promise<void>((resolve, reject) => {
      const c = spawn('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', cmd], {
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      c.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`psql exited ${code}`))));
    });
  await psql(`\\copy (SELECT ${cols} FROM ${table}) to '${file}' csv header`);
  const built = existsSync(BUILT_CLI);
  const secs = { psql: [] as number[], load: [] as number[] };
  const rss: number[] = [];
  const queueName = `bench-load-${process.pid}`;
  const workers = [
    await startWorker(url, table, queueName),
    await startWorker(url, table, queueName),
  ];
  try {
    for (let rep = 0; rep < reps; rep++) {
      await reset();
      let t0 = performance.now();
      await psql(`\\copy ${table} (${cols}) from '${file}' csv header`);
      secs.psql.push((performance.now() - t0) / 1000);
      await verify();
      await reset();
      t0 = performance.now();
      const child = spawn(
        process.execPath,
        [
          ...(built ? [BUILT_CLI] : ['--import', 'tsx', CLI]),
          'load',
          table,
          file,
          '--queue',
          queueName,
          '--database',
          url,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let err = '';
      child.stderr!.on('data', (d) => {
        err += d;
      });
      let peak = 0;
      const timer = setInterval(() => {
        try {
          const mb = peakRssMb(child.pid!);
          if (Number.isFinite(mb)) peak = Math.max(peak, mb);
        } catch {}
      }, 20);
      const [code] = await once(child, 'exit');
      clearInterval(timer);
      if (code !== 0) throw new Error(`bulkmodel load exited ${code}: ${err}`);
      secs.load.push((performance.now() - t0) / 1000);
      rss.push(peak);
      await verify();
      process.stderr.write(
        `  rep ${rep + 1} file load: psql ${secs.psql.at(-1)!.toFixed(2)} s / bulkmodel load ${secs.load.at(-1)!.toFixed(2)} s (peak RSS ${peak} MB)\n`,
      );
    }
  } finally {
    for (const w of workers) await stopWorker(w);
    const q = new Queue(queueName, { connection: { host: '127.0.0.1', port: 6379 } });
    await q.obliterate({ force: true }).catch(() => {});
    await q.close();
    await import('node:fs/promises').then((fs) => fs.rm(file, { force: true }));
  }
  const base = 'psql \\copy ... from file csv header';
  return {
    results: [
      { group, name: base, rows, secs: secs.psql },
      {
        group,
        name: `bulkmodel load (${built ? 'dist/cli/main.js' : 'tsx'}), 2 workers running`,
        rows,
        secs: secs.load,
        baseline: base,
      },
    ],
    loadRssMb: rss,
  };
}
