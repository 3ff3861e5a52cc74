import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import pg from 'pg';
import { redact, silentLogger } from '../core/logger.js';
import type { Row } from '../core/signals.js';
import type { Operation, OperationResult } from '../producer/operation.js';
import { BulkProducer } from '../producer/producer.js';
import { int, optionsHelp, parse, str, text } from './args.js';
import { LocalWorkers } from './localWorkers.js';
import { ProgressBar } from './progress.js';
import { backendOptions, checkServices, prepareQueueStore, queueEnv } from './services.js';

const USAGE = `bulkmodel demo — see bulkmodel work end to end on local Postgres and Redis (or
Postgres alone, with --backend postgres)

Creates the table bulkmodel_demo.items, starts worker processes, enqueues N rows in one
operation (a progress bar shows rows/s and ETA), runs an updateFields over a tenth of them,
exports the table with copyTo, and prints a summary.

Usage: bulkmodel demo [--rows N] [--workers N] [--batch-size N] [--database URL]
                      [--redis URL | --redis-cluster NODES | --backend postgres]

Options:
${optionsHelp('demo')}

With --backend postgres the demo creates (or upgrades) the queue schema itself, as
\`bulkmodel migrate\` does.

Exit codes: 0 every row landed, 1 a step failed or a count is off, 2 bad usage,
3 Postgres or Redis unreachable.

Examples:
  bulkmodel demo --rows 20000
  bulkmodel demo --rows 20000 --backend postgres  # no Redis at all
  bulkmodel demo --workers 0 --queue bulkmodel    # with workers you started yourself
`;

const TABLE = 'bulkmodel_demo.items';

const WORDS = [
  'plain',
  'tab\there',
  'new\nline',
  'back\\slash',
  "quote'd",
  'emoji 😀',
  '中文',
  '\\N',
];

/** Demo rows, generated lazily: the producer's memory stays bounded whatever N is. */
async function* demoRows(n: number): AsyncGenerator<Row> {
  for (let i = 0; i < n; i++) {
    yield {
      name: `${WORDS[i % WORDS.length]} ${i}`,
      value: i,
      price: ((i % 100000) / 100).toFixed(2),
      tags: i % 7 === 0 ? ['a', null, 'c,d'] : ['x'],
      payload: { i, even: i % 2 === 0, note: WORDS[(i + 3) % WORDS.length] },
      created_at: new Date(Date.UTC(2026, 0, 1) + i * 1000),
      flag: i % 3 === 0,
    };
  }
}

async function* tenthUpdates(n: number): AsyncGenerator<Row> {
  for (let id = 1; id <= n; id += 10) yield { id: String(id), value: -id, name: `updated ${id}` };
}

async function follow(
  op: Operation,
  label: string,
  total: number,
  started: number,
  queue: string,
): Promise<{ result: OperationResult; secs: number }> {
  const bar = new ProgressBar(label, total, started);
  let last = Date.now();
  op.on('progress', (e) => {
    last = Date.now();
    bar.update(e.rowsDone);
  });
  // Say so when nothing moves: usually no worker serves this queue and table.
  const watchdog = setInterval(() => {
    if (Date.now() - last > 30_000) {
      process.stderr.write(
        `\nno progress for 30 s: is a worker running on queue ${queue} with --tables ${TABLE}?\n`,
      );
      last = Date.now();
    }
  }, 5000);
  try {
    const result = await op.done();
    return { result, secs: bar.finish(result.count) };
  } finally {
    clearInterval(watchdog);
  }
}

export async function runDemo(argv: string[]): Promise<number> {
  const p = parse({ usage: USAGE, command: 'demo' }, argv);
  if (!p) return 0;
  const rows = int(p, 'rows', 'demo');
  const workers = int(p, 'workers', 'demo');
  const queue = text(p, 'queue', 'demo')!;
  const batchSize = int(p, 'batchSize', 'demo');
  const exportDir = resolve(text(p, 'exportDir', 'demo')!);
  const services = await checkServices(str(p, 'database'), p);
  await prepareQueueStore(services.queue, true);
  if (workers > 0) await mkdir(exportDir, { recursive: true });

  const admin = new pg.Client({ connectionString: services.database });
  await admin.connect();
  await admin.query(`CREATE SCHEMA IF NOT EXISTS bulkmodel_demo;
    DROP TABLE IF EXISTS ${TABLE};
    CREATE TABLE ${TABLE} (
      id bigserial PRIMARY KEY, name text NOT NULL, value integer, price numeric(12,2),
      tags text[], payload jsonb, created_at timestamptz, flag boolean NOT NULL DEFAULT false)`);

  process.stderr.write(
    `bulkmodel demo: ${rows.toLocaleString('en-US')} rows into ${TABLE} with ${workers} worker processes\n`,
  );
  const env = { ...process.env, DATABASE_URL: services.database, ...queueEnv(services.queue) };
  const local = new LocalWorkers(
    workers,
    ['--tables', TABLE, '--queue', queue, '--export-dir', exportDir, '--export-overwrite'],
    env,
  );
  const producer = new BulkProducer({
    ...backendOptions(services.queue),
    queue,
    logger: silentLogger,
  });
  try {
    const t0 = Date.now();
    const load = await producer.bulkCreate(TABLE, demoRows(rows), { batchSize });
    const enqueueSecs = (Date.now() - t0) / 1000;
    const loaded = await local.race(follow(load, 'load       ', rows, t0, queue));
    const loadStatus = await load.status();

    const updates = Math.ceil(rows / 10);
    const t1 = Date.now();
    const upd = await producer.updateFields(TABLE, tenthUpdates(rows), {
      batchSize,
      fields: ['value', 'name'],
    });
    const updated = await local.race(follow(upd, 'update     ', updates, t1, queue));

    const t2 = Date.now();
    const exp = await producer.copyTo(TABLE, { path: 'items.csv', format: 'csv' });
    const exported = await local.race(follow(exp, 'export     ', rows, t2, queue));

    const check = await admin.query(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE value < 0)::int AS updated FROM ${TABLE}`,
    );
    const totalSecs = (Date.now() - t0) / 1000;
    const pgFlag = services.queue.backend === 'postgres' ? ' --backend postgres' : '';
    const rate = (n: number, s: number) =>
      `${Math.round(n / Math.max(s, 0.001)).toLocaleString('en-US')} rows/s`;
    process.stderr.write(
      [
        '',
        'summary',
        `  load        ${loaded.result.count.toLocaleString('en-US')} rows in ${loaded.secs.toFixed(1)} s end to end (${rate(loaded.result.count, loaded.secs)}), ${loadStatus.totalChunks} chunks, ${loadStatus.retries} retries; enqueueing took ${enqueueSecs.toFixed(1)} s`,
        `  update      ${updated.result.count.toLocaleString('en-US')} rows in ${updated.secs.toFixed(1)} s (${rate(updated.result.count, updated.secs)}), ${updated.result.missing?.length ?? 0} keys missing`,
        `  export      ${exported.result.count.toLocaleString('en-US')} rows to ${exported.result.path} in ${exported.secs.toFixed(1)} s`,
        `  table       ${check.rows[0].n.toLocaleString('en-US')} rows, ${check.rows[0].updated.toLocaleString('en-US')} updated (expected ${rows.toLocaleString('en-US')} and ${updates.toLocaleString('en-US')})`,
        `  total       ${totalSecs.toFixed(1)} s`,
        '',
        `Look at it: psql ${redact(services.database)} -c 'SELECT * FROM ${TABLE} LIMIT 5'`,
        `Operations:  bulkmodel status --queue ${queue}${pgFlag}`,
        `Dashboard:   bulkmodel dashboard --queue ${queue}${pgFlag}   then open http://127.0.0.1:3000`,
        '',
      ].join('\n'),
    );
    const ok =
      check.rows[0].n === rows &&
      check.rows[0].updated === updates &&
      exported.result.count === rows;
    return ok ? 0 : 1;
  } finally {
    await producer.close();
    await admin.end();
    await local.stop();
  }
}
