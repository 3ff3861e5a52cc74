/**
 * npm run bench [-- --rows N] [--reps N] [--quick] [--only group-substring|queue|load|scale|memory]
 *   [--no-queue] [--no-memory] [--no-cluster]
 *
 * Compares bulkmodel with hand-written strategies side by side in one run: cases interleaved
 * over repetitions, median and min–max, ratio to each group's baseline. Every case is verified
 * (row count and a checksum of the table's content) so a wrong strategy cannot look fast.
 * Prints markdown and writes bench/results/latest.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { BulkClient, silentLogger } from '../src/index.js';
import * as base from './baselines.js';
import { type BenchRow, makeRows, makeUpdates, TABLE_DDL } from './data.js';
import { fileLoad, memoryRun, QueueBench } from './queue.js';
import { scaleBench } from './scale.js';
import { type CaseResult, markdown } from './stats.js';
import { checksum } from './verify.js';

const args = parseArgs({
  options: {
    rows: { type: 'string' },
    reps: { type: 'string' },
    quick: { type: 'boolean' },
    only: { type: 'string' },
    'no-queue': { type: 'boolean' },
    'no-memory': { type: 'boolean' },
    'no-cluster': { type: 'boolean' },
    'memory-rows': { type: 'string' },
  },
}).values;
const quick = !!args.quick;
const N = Number(args.rows ?? (quick ? 20_000 : 200_000));
const REPS = Number(args.reps ?? (quick ? 1 : 3));
const SMALL = Math.min(N, quick ? 2_000 : 20_000); // for the slow shapes (one statement per row, CASE WHEN)
const DB_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const SCHEMA = 'bulkmodel_bench';
const T = `${SCHEMA}.items`;
const REF = `${SCHEMA}.reference`;
/** The worker heap cap of docs/guides/deployment.md and docker-compose.yml. */
const WORKER_HEAP_MB = 192;

interface Case {
  group: string;
  name: string;
  baseline?: string;
  rows: number;
  note?: string;
  /** Prepare the table (not timed). */
  setup: () => Promise<void>;
  /** The timed work. */
  run: () => Promise<unknown>;
  /** Throws when the table does not hold what it should. */
  verify: () => Promise<void>;
}

const pool = new pg.Pool({ connectionString: DB_URL, max: 4 });
pool.on('error', () => {}); // an idle connection dropped by the server must not end the run
const db1 = new BulkClient({
  connectionString: DB_URL,
  logger: silentLogger,
  poolSize: 1,
  ledger: { schema: `${SCHEMA}_ledger` },
});
const db2 = new BulkClient({
  connectionString: DB_URL,
  logger: silentLogger,
  poolSize: 2,
  ledger: { schema: `${SCHEMA}_ledger` },
});

const rows = makeRows(N);
const small = rows.slice(0, SMALL);
const preEncoded = rows.map(base.copyLine).join('');
const halves = [rows.slice(0, Math.ceil(N / 2)), rows.slice(Math.ceil(N / 2))].map((h) =>
  h.map(base.copyLine).join(''),
) as [string, string];

/**
 * Write the previous cases' dirty pages out before timing the next case, so that a checkpoint
 * (every max_wal_size of WAL) does not land at random inside one case's timing. Needs a
 * superuser or pg_checkpoint; without, the cases run unsettled.
 */
let canCheckpoint = true;
async function settle(): Promise<void> {
  if (!canCheckpoint) return;
  try {
    await pool.query('CHECKPOINT');
  } catch (err) {
    if ((err as { code?: string }).code !== '42501') throw err;
    canCheckpoint = false;
    process.stderr.write('bench: CHECKPOINT not permitted; cases are not settled before timing\n');
  }
}

async function reset(): Promise<void> {
  await pool.query(`TRUNCATE ${T} RESTART IDENTITY`);
}

/** The checksum the table must have after loading `rs` (computed by COPY into a scratch table). */
const expectedCache = new Map<string, { rows: number; md5: string }>();
async function expectedOf(key: string, rs: BenchRow[]): Promise<{ rows: number; md5: string }> {
  let e = expectedCache.get(key);
  if (!e) {
    await pool.query(`TRUNCATE ${REF} RESTART IDENTITY`);
    await base.copyPreEncoded(pool, REF, rs.map(base.copyLine).join(''));
    e = await checksum(pool, REF);
    expectedCache.set(key, e);
  }
  return e;
}

async function expectTable(key: string, rs: BenchRow[]): Promise<void> {
  const want = await expectedOf(key, rs);
  const got = await checksum(pool, T);
  if (got.rows !== want.rows || got.md5 !== want.md5) {
    throw new Error(
      `verification failed for ${key}: ${got.rows} rows ${got.md5}, expected ${want.rows} rows ${want.md5}`,
    );
  }
}

const loadAll = async () => {
  await reset();
  await base.copyPreEncoded(pool, T, preEncoded);
};

function insertCase(
  group: string,
  name: string,
  rs: BenchRow[],
  run: () => Promise<unknown>,
  extra: Partial<Case> = {},
): Case {
  return {
    group,
    name,
    rows: rs.length,
    setup: reset,
    run,
    verify: () => expectTable(`all:${rs.length}`, rs),
    ...extra,
  };
}

// Heterogeneous updates: ids are 1..N after a load with RESTART IDENTITY, row i has id i+1.
const updates = makeUpdates(rows.map((_, i) => String(i + 1)));
const smallUpdates = updates.filter((u) => Number(u.id) <= SMALL);
function applied(ups: { id: string; name: string; value: number }[], n: number): BenchRow[] {
  const out = rows.map((r) => ({ ...r }));
  for (const u of ups) Object.assign(out[Number(u.id) - 1]!, { name: u.name, value: u.value });
  return out.slice(0, n);
}
const updatedAll = applied(updates, N);

function updateCase(name: string, run: () => Promise<unknown>, extra: Partial<Case> = {}): Case {
  return {
    group: 'heterogeneous update (name and value of every row, by id, random order)',
    name,
    rows: N,
    setup: loadAll,
    run,
    verify: () => expectTable('updated-all', updatedAll),
    ...extra,
  };
}

const flagged = rows.map((r) => ({ ...r, flag: true }));

const G_INSERT1 = 'insert, 1 connection';
const G_INSERT2 = 'insert, 2 connections';
const cases: Case[] = [
  insertCase(G_INSERT1, 'COPY text, encoded before timing (ceiling)', rows, () =>
    base.copyPreEncoded(pool, T, preEncoded),
  ),
  insertCase(
    G_INSERT1,
    'COPY text, escaped while streaming',
    rows,
    () => base.copyStreaming(pool, T, rows),
    { baseline: 'COPY text, encoded before timing (ceiling)' },
  ),
  insertCase(
    G_INSERT1,
    'INSERT SELECT jsonb_to_recordset RETURNING id, 5k',
    rows,
    () => base.insertRecordset(pool, T, rows),
    { baseline: 'COPY text, encoded before timing (ceiling)' },
  ),
  insertCase(
    G_INSERT1,
    'multi-row VALUES, bind parameters, 1k',
    rows,
    () => base.insertValues(pool, T, rows),
    { baseline: 'COPY text, encoded before timing (ceiling)' },
  ),
  insertCase(
    G_INSERT1,
    'pg-promise helpers.insert, 5k',
    rows,
    () => base.insertPgPromise(DB_URL, T, rows),
    { baseline: 'COPY text, encoded before timing (ceiling)' },
  ),
  insertCase(
    G_INSERT1,
    'one INSERT per row, one transaction',
    small,
    () => base.insertPerRow(pool, T, small),
    {
      baseline: 'COPY text, encoded before timing (ceiling)',
      note: `${SMALL} rows`,
    },
  ),
  insertCase(G_INSERT1, 'bulkmodel bulkCreate', rows, () => db1.model(T).bulkCreate(rows), {
    baseline: 'COPY text, encoded before timing (ceiling)',
  }),
  insertCase(
    G_INSERT1,
    'bulkmodel bulkCreate returning keys',
    rows,
    () => db1.model(T).bulkCreate(rows, { returning: ['id'] }),
    {
      baseline: 'COPY text, encoded before timing (ceiling)',
    },
  ),
  insertCase(
    G_INSERT1,
    'bulkmodel bulkCreate returning rows',
    rows,
    () => db1.model(T).bulkCreate(rows, { returning: true }),
    {
      baseline: 'COPY text, encoded before timing (ceiling)',
    },
  ),
  insertCase(G_INSERT1, 'bulkmodel copyFrom', rows, () => db1.model(T).copyFrom(rows), {
    baseline: 'COPY text, encoded before timing (ceiling)',
  }),
  insertCase(
    G_INSERT1,
    'bulkmodel copyFrom returning keys',
    rows,
    () => db1.model(T).copyFrom(rows, { returning: ['id'] }),
    {
      baseline: 'COPY text, encoded before timing (ceiling)',
    },
  ),
  insertCase(G_INSERT2, 'COPY text, two connections, encoded before timing', rows, () =>
    Promise.all([base.copyPreEncoded(pool, T, halves[0]), base.copyPreEncoded(pool, T, halves[1])]),
  ),
  insertCase(
    G_INSERT2,
    'bulkmodel bulkCreate concurrent',
    rows,
    () => db2.model(T).bulkCreate(rows, { concurrent: true, maxConcurrentWorkers: 2 }),
    {
      baseline: 'COPY text, two connections, encoded before timing',
    },
  ),
  insertCase(
    G_INSERT2,
    'bulkmodel copyFrom concurrent',
    rows,
    () => db2.model(T).copyFrom(rows, { concurrent: true, maxConcurrentWorkers: 2 }),
    {
      baseline: 'COPY text, two connections, encoded before timing',
    },
  ),
  updateCase('UPDATE FROM temp table filled by COPY, 20k', () =>
    base.updateViaTempCopy(pool, T, updates),
  ),
  updateCase(
    'UPDATE FROM jsonb_to_recordset, 20k',
    () => base.updateViaRecordset(pool, T, updates),
    { baseline: 'UPDATE FROM temp table filled by COPY, 20k' },
  ),
  updateCase(
    'CASE WHEN per 1,000 rows (Django bulk_update shape)',
    () => base.updateCaseWhen(pool, T, smallUpdates),
    {
      baseline: 'UPDATE FROM temp table filled by COPY, 20k',
      rows: SMALL,
      note: `${SMALL} rows`,
      verify: () => expectTable(`updated-small:${SMALL}`, applied(smallUpdates, N)),
    },
  ),
  updateCase('bulkmodel updateFields', () => db1.model(T).updateFields(updates), {
    baseline: 'UPDATE FROM temp table filled by COPY, 20k',
  }),
  updateCase(
    'bulkmodel updateFields, 20k chunks',
    () => db1.model(T).updateFields(updates, { batchSize: 20000 }),
    {
      baseline: 'UPDATE FROM temp table filled by COPY, 20k',
    },
  ),
  updateCase(
    'bulkmodel updateFields concurrent (2)',
    () => db2.model(T).updateFields(updates, { concurrent: true, maxConcurrentWorkers: 2 }),
    {
      baseline: 'UPDATE FROM temp table filled by COPY, 20k',
    },
  ),
  {
    group: 'homogeneous update (every row)',
    name: 'one UPDATE statement',
    rows: N,
    setup: loadAll,
    run: () => base.updateAllPlain(pool, T),
    verify: () => expectTable('flagged', flagged),
  },
  {
    group: 'homogeneous update (every row)',
    name: 'bulkmodel update, default 20k-key batches',
    baseline: 'one UPDATE statement',
    rows: N,
    setup: loadAll,
    run: () => db1.model(T).update({ where: { value: { gte: 0 } }, set: { flag: true } }),
    verify: () => expectTable('flagged', flagged),
  },
  {
    group: 'homogeneous update (every row)',
    name: 'bulkmodel update concurrent (2)',
    baseline: 'one UPDATE statement',
    rows: N,
    setup: loadAll,
    run: () =>
      db2
        .model(T)
        .update(
          { where: { value: { gte: 0 } }, set: { flag: true } },
          { concurrent: true, maxConcurrentWorkers: 2 },
        ),
    verify: () => expectTable('flagged', flagged),
  },
  {
    group: 'read every row into objects',
    name: 'SELECT with pg type parsers',
    rows: N,
    setup: loadAll,
    run: async () => {
      const n = await base.selectAll(pool, T);
      if (n !== N) throw new Error(`read ${n} rows`);
    },
    verify: async () => {},
  },
  {
    group: 'read every row into objects',
    name: 'bulkmodel copyTo (decoded rows)',
    baseline: 'SELECT with pg type parsers',
    rows: N,
    setup: loadAll,
    run: async () => {
      let n = 0;
      for await (const _ of db1
        .model(T)
        .copyTo({ columns: ['name', 'value', 'price', 'tags', 'payload', 'created_at', 'flag'] }))
        n++;
      if (n !== N) throw new Error(`read ${n} rows`);
    },
    verify: async () => {},
  },
];

async function main(): Promise<void> {
  await pool.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
  await pool.query(TABLE_DDL(T));
  await pool.query(TABLE_DDL(REF));
  const onlyQueue = args.only === 'queue';
  const onlyMemory = args.only === 'memory';
  const selected =
    onlyQueue || onlyMemory
      ? []
      : cases.filter(
          (c) => !args.only || c.group.includes(args.only) || c.name.includes(args.only),
        );
  const results = new Map<Case, number[]>();
  const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'cpu'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
  process.stderr.write(`bench: ${N} rows, ${REPS} repetitions, ${machine}\n`);
  for (let rep = 0; rep < REPS; rep++) {
    for (const c of selected) {
      await c.setup();
      await settle();
      const t0 = performance.now();
      await c.run();
      const secs = (performance.now() - t0) / 1000;
      await c.verify();
      const list = results.get(c) ?? [];
      list.push(secs);
      results.set(c, list);
      process.stderr.write(
        `  rep ${rep + 1} ${c.group} / ${c.name}: ${Math.round(c.rows / secs).toLocaleString('en-US')} rows/s\n`,
      );
    }
  }
  const out: CaseResult[] = selected.map((c) => ({
    group: c.group,
    name: c.name,
    rows: c.rows,
    secs: results.get(c)!,
    ...(c.baseline ? { baseline: c.baseline } : {}),
    ...(c.note ? { note: c.note } : {}),
  }));
  let cpuMd = '';
  if (!args['no-queue'] && !onlyMemory && (!args.only || onlyQueue)) {
    const qb = new QueueBench(DB_URL, T, rows, REPS, reset, () => expectTable(`all:${N}`, rows));
    out.push(...(await qb.run(db1)));
    cpuMd = qb.cpuMarkdown();
    // The same cases with no Redis: BullMQ's PostgreSQL backend, in this run, beside Redis's.
    out.push(...(await qb.run(db1, 'postgres')));
  }
  let loadMd = '';
  if (!args['no-queue'] && !onlyMemory && (!args.only || onlyQueue || args.only === 'load')) {
    await reset();
    await db1.model(T).bulkCreate(rows);
    const fl = await fileLoad(DB_URL, T, N, REPS, reset, () => expectTable(`all:${N}`, rows));
    out.push(...fl.results);
    loadMd = `\n\nPeak RSS of \`bulkmodel load\`: ${fl.loadRssMb.map((m) => `${m} MB`).join(', ')}.`;
  }
  let scaleMd = '';
  if (!args['no-queue'] && !onlyMemory && (!args.only || args.only === 'scale')) {
    const sc = await scaleBench(
      DB_URL,
      T,
      rows,
      REPS,
      reset,
      () => expectTable(`all:${N}`, rows),
      !args['no-cluster'],
    );
    out.push(...sc.results);
    scaleMd = sc.note;
  }
  // Three times: the worker as it starts by default (--heap-growth 100), with V8's own heap
  // growth (which grows freely on a machine with memory to spare), and with the heap cap
  // docs/guides/deployment.md and docker-compose.yml give workers.
  let memory: Awaited<ReturnType<typeof memoryRun>>[] | undefined;
  if (!args['no-memory'] && !quick && (!args.only || onlyMemory)) {
    const n = Number(args['memory-rows'] ?? 2_000_000);
    memory = [
      await memoryRun(DB_URL, n),
      await memoryRun(DB_URL, n, [], ['--heap-growth', '0']),
      await memoryRun(DB_URL, n, [`--max-old-space-size=${WORKER_HEAP_MB}`]),
    ];
  }
  const memoryMd = memory
    ? `\n\n### memory (peak RSS, ${memory[0]!.rows} rows streamed)\n\n| process | peak RSS |\n|---|---:|\n${memory
        .map(
          (m) =>
            `| producer (async iterable into the queue, tsx) | ${m.producerMb} MB |\n| worker draining them (\`${m.workerRuns}\`, concurrency 4) | ${m.workerMb} MB |\n`,
        )
        .join('')}`
    : '';
  const md = `Rows: ${N}; repetitions: ${REPS}; machine: ${machine}; Postgres ${(await pool.query('SHOW server_version')).rows[0].server_version}.\n${markdown(out)}${cpuMd}${loadMd}${scaleMd}${memoryMd}`;
  process.stdout.write(`${md}\n`);
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(
    new URL('./results/latest.json', import.meta.url),
    `${JSON.stringify({ date: new Date().toISOString(), rows: N, reps: REPS, machine, results: out, memory }, null, 2)}\n`,
  );
  writeFileSync(new URL('./results/latest.md', import.meta.url), `${md}\n`);
}

main()
  .catch((err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exitCode = 1;
  })
  .finally(async () => {
    await db1.close();
    await db2.close();
    // Leave nothing behind in the database the bench was pointed at.
    await pool
      .query(
        `DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE; DROP SCHEMA IF EXISTS ${SCHEMA}_ledger CASCADE`,
      )
      .catch(() => {});
    await pool.end();
  });
