import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { BulkClient } from '../core/client.js';
import { BulkError } from '../core/errors.js';
import { silentLogger } from '../core/logger.js';
import { columnOf } from '../core/meta.js';
import { defaultOf } from '../core/settings.js';
import type { OnConflict } from '../core/sql/insert.js';
import type { Operation, OperationResult } from '../producer/operation.js';
import {
  BulkProducer,
  type QueueInsertOptions,
  type QueueUpdateFieldsOptions,
} from '../producer/producer.js';
import { queueNames } from '../queue/keys.js';
import { EXIT, flag, int, optionsHelp, parse, str, text } from './args.js';
import { fileFormat, type ReadProgress, readRows } from './fileFormats.js';
import { setHeapGrowth } from './heap.js';
import { LocalWorkers } from './localWorkers.js';
import { ProgressBar } from './progress.js';
import { backendOptions, checkServices, queueEnv } from './services.js';

export const LOAD_USAGE = `bulkmodel load — load a CSV or NDJSON file into a table through the queue

Usage: bulkmodel load <table> <file> [options]

The file is streamed (memory holds one chunk, whatever its size) and enqueued as one operation
(bulkCreate by default); workers write its chunks. A progress bar shows committed rows, rows/s,
and an ETA estimated from how much of the file has been read. The table's columns are read from
Postgres (--database) so that each field reaches its column with the right type.

Formats (by extension, or --format):
  .csv              header row of column names, then one record per row, as Postgres's
                    COPY ... CSV writes it: an unquoted empty field is NULL, a quoted "" the
                    empty string; every value in Postgres's text form ({a,NULL}, {"k":1},
                    t/f, \\x hex). Inserted records go to Postgres as they are in the file
                    (COPY parses them, as psql's \\copy would; with --update-fields they are
                    parsed here). A value Postgres refuses names its file line and column.
  .ndjson, .jsonl   one JSON object per line (a record may span lines); values read exactly:
                    numbers keep their digits, a json/jsonb field its JSON text; big integers
                    and numerics as numbers or strings; bytea as \\x hex; {"$json": "<text>"}
                    for json text that cannot stand as itself (docs/types.md)

In CSV a field is Postgres's text (as psql reads it): null in a jsonb column is the JSON null.
In NDJSON null is SQL NULL.

Options:
${optionsHelp('load')}

Each chunk commits on its own: if a chunk fails (a bad value, a constraint), the operation
fails with the error's code, table, column and row, and chunks committed before stay written.

Exit codes: 0 loaded, 1 the operation failed, 2 bad usage, 3 Postgres or Redis unreachable.

Examples:
  bulkmodel load items items.csv --workers 2
  bulkmodel load public.items items.ndjson --batch-size 10000
  bulkmodel load items prices.csv --update-fields price,updated_at --key sku
  bulkmodel load items items.csv --on-conflict update:name,price --key sku
  bulkmodel load items big.csv --copy --no-wait --operation-id items-2026-01-31
`;

function list(v: string | undefined, flag: string): string[] | undefined {
  if (v === undefined) return undefined;
  const names = v.split(',').map((s) => s.trim());
  if (names.some((n) => n === ''))
    throw new BulkError('INVALID_OPTION', `--${flag} takes a comma-separated list of column names`);
  return names;
}

function usage(message: string): BulkError {
  return new BulkError('INVALID_OPTION', `${message} (see bulkmodel load --help)`);
}

/** Warn when nothing serves the queues: the load would wait for workers that never come. */
async function warnIfNoWorkers(producer: BulkProducer, table: string) {
  let n = 0;
  for (const name of producer.queues) {
    const q = producer.backend.queue(name);
    try {
      n += await q.getWorkersCount();
    } finally {
      await q.close();
    }
  }
  const queue = producer.queues.join(',');
  if (n === 0)
    process.stderr.write(
      `no worker is connected to queue ${queue}: the rows wait until one starts ` +
        `(bulkmodel worker --tables ${table} --queue ${queue}), or pass --workers N\n`,
    );
}

export async function runLoad(argv: string[]): Promise<number> {
  const p = parse({ usage: LOAD_USAGE, command: 'load' }, argv);
  if (!p) return EXIT.ok;
  if (p.positionals.length !== 2) throw usage('load takes a table and a file');
  // Chunks pass through as strings of a megabyte or so: keep the heap near the live data
  // (as the worker does), so memory stays flat whatever the file's size.
  setHeapGrowth(undefined);
  const [table, file] = p.positionals as [string, string];
  const format = fileFormat(file, str(p, 'format'));
  const fields = list(str(p, 'update-fields'), 'update-fields');
  const key = list(str(p, 'key'), 'key');
  const conflictFlag = str(p, 'on-conflict');
  const batchSize = int(p, 'batchSize', 'load');
  const workers = int(p, 'workers', 'load');
  if (flag(p, 'wait') && flag(p, 'noWait')) throw usage('--wait and --no-wait exclude each other');
  const wait = !flag(p, 'noWait');
  if (str(p, 'concurrency') !== undefined && workers === 0)
    throw usage(
      '--concurrency sets the concurrency of the workers --workers starts; running workers have their own (bulkmodel worker --concurrency)',
    );
  const concurrency = int(p, 'concurrency', 'load');
  if (workers > 0 && !wait) throw usage('--workers needs --wait: the workers stop when load ends');
  if (fields && (flag(p, 'copy') || conflictFlag))
    throw usage('--update-fields updates existing rows; --copy and --on-conflict are for inserts');
  let onConflict: OnConflict | undefined;
  if (conflictFlag === 'ignore') {
    if (key) throw usage('--on-conflict ignore skips a conflict on any constraint; drop --key');
    onConflict = 'ignore';
  } else if (conflictFlag?.startsWith('update:')) {
    onConflict = { target: key ?? [], update: list(conflictFlag.slice(7), 'on-conflict') ?? [] };
  } else if (conflictFlag !== undefined) {
    throw usage(`--on-conflict must be ignore or update:col1,col2, got ${conflictFlag}`);
  } else if (key && !fields) {
    throw usage('--key goes with --update-fields or --on-conflict update:...');
  }
  const size = await stat(file).catch((err) => {
    throw usage(`cannot read ${file}: ${(err as Error).message}`);
  });
  const services = await checkServices(str(p, 'database'), p);
  const queue = queueNames(text(p, 'queue', 'load'), defaultOf('queue')).join(',');
  const prefix = text(p, 'prefix')!;

  // The table's columns shape the file's values; a wrong table or header fails here, before
  // anything is enqueued.
  const db = new BulkClient({
    connectionString: services.database,
    logger: silentLogger,
    poolSize: 1,
  });
  let meta: Awaited<ReturnType<BulkClient['meta']>>;
  try {
    meta = await db.meta(table);
  } finally {
    await db.close();
  }
  for (const c of fields ?? []) columnOf(meta, c);
  for (const c of key ?? []) columnOf(meta, c);
  if (onConflict && onConflict !== 'ignore' && onConflict.target.length === 0) {
    if (meta.primaryKey.length === 0)
      throw usage(`${meta.displayName} has no primary key: name the conflict target with --key`);
    onConflict.target = meta.primaryKey;
  }

  const local = new LocalWorkers(
    workers,
    [
      '--tables',
      table,
      '--queue',
      queue,
      ...(services.queue.backend === 'redis' ? ['--prefix', prefix] : []),
      '--concurrency',
      String(concurrency),
    ],
    { ...process.env, DATABASE_URL: services.database, ...queueEnv(services.queue) },
  );
  const producer = new BulkProducer({
    ...backendOptions(services.queue),
    queue,
    prefix,
    logger: silentLogger,
  });
  const progress: ReadProgress = { bytes: 0, rows: 0 };
  const t0 = Date.now();
  try {
    // The queue store first (QUEUE_SCHEMA when the Postgres backend's schema is missing).
    await producer.backend.prepare();
    if (workers === 0) await warnIfNoWorkers(producer, table);
    const id = str(p, 'operation-id') ?? randomUUID();
    const common = { batchSize, operationId: id };
    const enqueue = (): Promise<Operation> => {
      // A CSV file's records go to Postgres as they are in the file (COPY ... CSV parses them):
      // nothing is parsed here but where records end.
      if (format === 'csv' && !fields) {
        const stream = createReadStream(file);
        stream.on('data', (b) => {
          progress.bytes += b.length;
        });
        return producer.copyFromCsv(table, stream as AsyncIterable<Buffer>, {
          ...common,
          path: file,
          ...(onConflict ? { onConflict } : {}),
          onEnqueued: (e) => {
            progress.rows = e.rows;
          },
        });
      }
      const rows = readRows(file, format, meta, progress);
      if (fields) {
        const o: QueueUpdateFieldsOptions = { ...common, fields, ...(key ? { key } : {}) };
        return producer.updateFields(table, rows, o);
      }
      const o: QueueInsertOptions = { ...common, ...(onConflict ? { onConflict } : {}) };
      return flag(p, 'copy')
        ? producer.copyFrom(table, rows, o)
        : producer.bulkCreate(table, rows, o);
    };
    if (!wait) {
      await enqueue();
      process.stderr.write(
        `enqueued ${progress.rows.toLocaleString('en-US')} rows from ${file} as operation ${id}\n`,
      );
      process.stdout.write(`${id}\n`);
      return EXIT.ok;
    }
    const result = await local
      .race(follow(producer.operation(id), enqueue, progress, size.size, t0))
      .catch((err) => {
        // A row Postgres refused in the file's own bytes: name the file with its line.
        if (err instanceof BulkError && err.line !== undefined && !err.message.startsWith(file))
          err.message = `${file} line ${err.line}: ${err.message.replace(`; line ${err.line}`, '')}`;
        throw err;
      });
    const secs = (Date.now() - t0) / 1000;
    const what = fields ? 'updated' : 'loaded';
    const missing = result.missing?.length ? `, ${result.missing.length} keys matched no row` : '';
    process.stderr.write(
      `${what} ${result.count.toLocaleString('en-US')} of ${progress.rows.toLocaleString('en-US')} rows into ${meta.displayName} in ${secs.toFixed(1)} s${missing} (operation ${id})\n`,
    );
    return EXIT.ok;
  } finally {
    await producer.close();
    await local.stop();
  }
}

/** Enqueue while showing committed rows; the total is estimated from the bytes read until the file ends. */
async function follow(
  op: Operation,
  enqueue: () => Promise<Operation>,
  read: ReadProgress,
  fileBytes: number,
  t0: number,
): Promise<OperationResult> {
  const bar = new ProgressBar('load', undefined, t0);
  let done = 0;
  let enqueued = false;
  const refresh = () => {
    if (enqueued) bar.setTotal(read.rows);
    else if (read.bytes > 0 && read.rows > 0)
      bar.setTotal(Math.max(read.rows, Math.round((read.rows * fileBytes) / read.bytes)));
    bar.update(done);
  };
  op.on('progress', (e) => {
    done = Math.max(done, e.rowsDone);
    refresh();
  });
  const timer = setInterval(refresh, 1000);
  try {
    await enqueue();
    enqueued = true;
    refresh();
    const result = await op.done();
    bar.setTotal(read.rows);
    bar.finish(result.count);
    return result;
  } finally {
    clearInterval(timer);
  }
}
