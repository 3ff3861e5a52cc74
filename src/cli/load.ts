import { randomUUID } from 'node:crypto';
import { stat, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import pg from 'pg';
import { BulkClient } from '../core/client.js';
import { checkCsvDialect } from '../core/csvDialect.js';
import { BulkError, fromPgError } from '../core/errors.js';
import { silentLogger } from '../core/logger.js';
import { columnOf, type TableMeta } from '../core/meta.js';
import type { RejectedRecord } from '../core/ops/copyText.js';
import { defaultOf } from '../core/settings.js';
import type { Row } from '../core/signals.js';
import type { OnConflict } from '../core/sql/insert.js';
import { encodeCopyChunk } from '../producer/copyPayload.js';
import { csvChunks, csvHead } from '../producer/csvChunks.js';
import type { Operation, OperationResult } from '../producer/operation.js';
import {
  BulkProducer,
  type QueueInsertOptions,
  type QueueUpdateFieldsOptions,
} from '../producer/producer.js';
import { queueNames } from '../queue/keys.js';
import { EXIT, flag, int, optionsHelp, type Parsed, parse, str, text } from './args.js';
import { dryRunLoad } from './dryRun.js';
import {
  atFileLine,
  fileFormat,
  type InputSpec,
  inputName,
  isGzip,
  jsonRecords,
  openInput,
  type ReadProgress,
  readRows,
} from './fileFormats.js';
import { setHeapGrowth } from './heap.js';
import { createTableSql, inferColumns } from './infer.js';
import { LocalWorkers } from './localWorkers.js';
import { ProgressBar } from './progress.js';
import { backendOptions, checkServices, queueEnv } from './services.js';

export const LOAD_USAGE = `bulkmodel load — load a CSV, TSV, NDJSON or JSON file into a table through the queue

Usage: bulkmodel load <table> <file> [options]
       bulkmodel load <table> - --format <f> [options]      (standard input)

The file is streamed (memory holds one chunk, whatever its size) and enqueued as one operation
(bulkCreate by default); workers write its chunks. A progress bar shows committed rows, rows/s,
and an ETA estimated from how much of the file has been read. The table's columns are read from
Postgres (--database) so that each field reaches its column with the right type.

Formats (by extension, or --format; any of them gzip-compressed as <name>.gz):
  .csv              header row of column names, then one record per row, as Postgres's
                    COPY ... CSV writes it: an unquoted empty field is NULL (or --null's text),
                    a quoted "" the empty string; every value in Postgres's text form ({a,NULL},
                    {"k":1}, t/f, \\x hex). Inserted records go to Postgres as they are in the
                    file (COPY parses them, as psql's \\copy would; with --update-fields they
                    are parsed here). A value Postgres refuses names its file line and column.
  .tsv              the same with a tab between fields (--delimiter for another character)
  .ndjson, .jsonl   one JSON object per line (a record may span lines); values read exactly:
                    numbers keep their digits, a json/jsonb field its JSON text; big integers
                    and numerics as numbers or strings; bytea as \\x hex; {"$json": "<text>"}
                    for json text that cannot stand as itself (docs/types.md)
  .json             one JSON array of such objects ([{...}, {...}]), streamed object by object

In CSV a field is Postgres's text (as psql reads it): null in a jsonb column is the JSON null.
In NDJSON and JSON null is SQL NULL. Messages name file lines as an editor counts them
(1-based, the header and every line of a multi-line record counted).

--create makes the table first, from the header (CSV, TSV) or the keys (NDJSON, JSON), each
column typed from the first --sample rows: integer, bigint, numeric, boolean, date,
timestamptz, uuid, jsonb, else text; the statement is printed before it runs. --dry-run
prints the plan and tries the first --sample rows in a transaction it rolls back.

Options:
${optionsHelp('load')}

Each chunk commits on its own: if a chunk fails (a bad value, a constraint), the operation
fails with the error's code, table, column and file line, and chunks committed before stay
written: the load says how many rows had committed and which file lines they came from.
With --on-error skip a chunk leaves out the records Postgres refuses and writes the rest in
the same transaction (exactly once still); an NDJSON or JSON record that does not read (not an
object, a value its column cannot take) is left out before it is sent. The skipped records go
verbatim (after the header, for csv and tsv) to --rejects, in the input's format: load it
again once fixed. Their lines and reasons go to <rejects>.log.
(A foreign key is checked once the whole chunk is in, with no line to name: its violation
stops the load even with skip.)

Exit codes: 0 loaded, 1 the operation failed, 2 bad usage, 3 Postgres or Redis unreachable.

Examples:
  bulkmodel load items items.csv --workers 2
  bulkmodel load public.items items.ndjson --batch-size 10000
  bulkmodel load items prices.csv --update-fields price,updated_at --key sku
  bulkmodel load items items.csv --on-conflict update:name,price --key sku
  bulkmodel load items big.csv --copy --no-wait --operation-id items-2026-01-31
  bulkmodel load items messy.csv --on-error skip --rejects messy.rejects.csv
  bulkmodel load flights flights.tsv.gz --create --workers 2
  bulkmodel load movies movies.json --create --dry-run
  bulkmodel load items data.txt --format csv --delimiter ';' --null NA --no-header --columns sku,name
  zcat items.ndjson.gz | bulkmodel load items - --format ndjson
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

/** The input the flags describe: file or stdin, format, CSV dialect, header, columns. */
function inputOf(p: Parsed, file: string): InputSpec {
  const format = fileFormat(file, str(p, 'format'));
  const csvLike = format === 'csv' || format === 'tsv';
  for (const f of ['delimiter', 'null', 'header', 'no-header'])
    if (p.values[f] !== undefined && !csvLike) throw usage(`--${f} is for csv and tsv files`);
  if (flag(p, 'header') && flag(p, 'noHeader'))
    throw usage('--header and --no-header exclude each other');
  const header = !flag(p, 'noHeader');
  const columns = list(str(p, 'columns'), 'columns');
  if (csvLike && !header && !columns)
    throw usage('--no-header needs --columns: the table columns of the file, in order');
  let delimiter = str(p, 'delimiter') ?? (format === 'tsv' ? '\t' : ',');
  if (delimiter === '\\t' || delimiter.toLowerCase() === 'tab') delimiter = '\t';
  const nullText = str(p, 'null');
  return {
    path: file,
    format,
    gzip: isGzip(file),
    csv: csvLike
      ? checkCsvDialect(
          { delimiter, ...(nullText !== undefined ? { null: nullText } : {}) },
          'the file',
        )
      : {},
    header,
    columns,
  };
}

/** Line ranges as people read them: "2-5,001 and 6,002-8,001". */
function ranges(list: [number, number][]): string {
  const n = (x: number) => x.toLocaleString('en-US');
  const parts = list.map(([a, b]) => (a === b ? n(a) : `${n(a)}-${n(b)}`));
  return parts.length <= 1
    ? (parts[0] ?? '')
    : `${parts.slice(0, -1).join(', ')} and ${parts.at(-1)}`;
}

export async function runLoad(argv: string[]): Promise<number> {
  const p = parse({ usage: LOAD_USAGE, command: 'load' }, argv);
  if (!p) return EXIT.ok;
  if (p.positionals.length !== 2) throw usage('load takes a table and a file (or - for stdin)');
  // Chunks pass through as strings of a megabyte or so: keep the heap near the live data
  // (as the worker does), so memory stays flat whatever the file's size.
  setHeapGrowth(undefined);
  const [table, file] = p.positionals as [string, string];
  const spec = inputOf(p, file);
  const source = inputName(spec);
  const fields = list(str(p, 'update-fields'), 'update-fields');
  const key = list(str(p, 'key'), 'key');
  const conflictFlag = str(p, 'on-conflict');
  const batchSize = int(p, 'batchSize', 'load');
  const workers = int(p, 'workers', 'load');
  const sample = int(p, 'sample', 'load');
  const create = flag(p, 'create');
  const dryRun = flag(p, 'dryRun');
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
  if (create && fields) throw usage('--create makes a new table; --update-fields updates rows');
  const onError = text(p, 'onError', 'load');
  if (onError !== 'stop' && onError !== 'skip')
    throw usage(`--on-error must be stop or skip, got ${JSON.stringify(onError)}`);
  const skip = onError === 'skip';
  if (!skip && (str(p, 'max-errors') !== undefined || str(p, 'rejects') !== undefined))
    throw usage('--max-errors and --rejects go with --on-error skip');
  if (skip && (fields || conflictFlag))
    throw usage('--on-error skip is for plain inserts: not with --update-fields or --on-conflict');
  const maxErrors = int(p, 'maxErrors', 'load');
  const rejectsPath = str(p, 'rejects') ?? defaultRejects(file, spec);
  if (
    skip &&
    file !== '-' &&
    [rejectsPath, `${rejectsPath}.log`].map((f) => resolve(f)).includes(resolve(file))
  )
    throw usage('--rejects names the input file: the skipped records would overwrite it');
  if (create && conflictFlag?.startsWith('update:') && !key)
    throw usage(
      '--create makes a table without a primary key: name the conflict target with --key',
    );
  if (create && file === '-')
    throw usage(
      '--create reads the start of the file twice (to infer types, then to load): not stdin',
    );
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
  const size =
    file === '-'
      ? undefined
      : (
          await stat(file).catch((err) => {
            throw usage(`cannot read ${file}: ${(err as Error).message}`);
          })
        ).size;
  const services = await checkServices(str(p, 'database'), p);

  // --create: the table's columns from the header, typed from the first rows, shown first.
  let createSql: string | undefined;
  if (create) {
    const inferred = await inferColumns(spec, sample);
    createSql = createTableSql(table, inferred);
    process.stderr.write(
      `${dryRun ? 'would create' : 'creating'} the table (types from the first ${inferred.rows.toLocaleString('en-US')} rows):\n${createSql};\n`,
    );
  }
  if (dryRun) {
    const what = fields
      ? 'updateFields'
      : spec.format === 'csv' || spec.format === 'tsv'
        ? "copyFrom (COPY ... CSV, the file's bytes)"
        : flag(p, 'copy')
          ? 'copyFrom'
          : 'bulkCreate';
    return await dryRunLoad({
      database: services.database,
      table,
      spec,
      createSql,
      sample,
      action: what,
      insert: !fields,
    });
  }
  if (createSql) await createTable(services.database, createSql, table);
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
  // The file lines of each chunk (first and last record), to say which committed if it stops.
  const chunkLines: [number, number][] = [];
  // A skipping load of JSON records: the file line of each row sent, and the records the
  // reader (or the encoder) left out before sending.
  const rowLines: number[] = [];
  const readerSkips: Skipped[] = [];
  const toSkipped = (rejected: RejectedRecord[]): Skipped[] =>
    [
      ...readerSkips,
      ...rejected.map((r) => ({
        line: r.line ?? (r.row !== undefined ? rowLines[r.row] : undefined) ?? 0,
        code: r.code,
        reason: r.reason,
      })),
    ].sort((a, b) => a.line - b.line);
  const t0 = Date.now();
  const id = str(p, 'operation-id') ?? randomUUID();
  try {
    // The queue store first (QUEUE_SCHEMA when the Postgres backend's schema is missing).
    await producer.backend.prepare();
    if (workers === 0) await warnIfNoWorkers(producer, table);
    const common = { batchSize, operationId: id };
    const enqueue = (): Promise<Operation> => {
      // A CSV file's records go to Postgres as they are in the file (COPY ... CSV parses them):
      // nothing is parsed here but where records end.
      if ((spec.format === 'csv' || spec.format === 'tsv') && !fields) {
        return producer.copyFromCsv(table, openInput(spec, progress), {
          ...common,
          path: source,
          header: spec.header,
          ...(spec.columns ? { columns: spec.columns } : {}),
          ...spec.csv,
          ...(onConflict ? { onConflict } : {}),
          ...(skip ? { onError: 'skip' as const, maxErrors } : {}),
          onEnqueued: (e) => {
            progress.rows = e.rows;
            chunkLines[e.chunk] = [e.line, e.lastLine];
          },
        });
      }
      // The file line of each row the operation gets (skip: only the ones that read well).
      const placeRow = (index: number, line: number) => {
        const c = Math.floor(index / batchSize);
        if (index % batchSize === 0) chunkLines[c] = [line, line];
        else chunkLines[c]![1] = line;
        if (skip) rowLines[index] = line;
      };
      let lastLine = 0;
      const rows = skip
        ? keepEncodable(
            readRows(
              spec,
              meta,
              progress,
              (_i, line) => {
                lastLine = line;
              },
              (err, line) => readerSkips.push({ line, code: err.code, reason: err.message }),
            ),
            meta,
            (index) => placeRow(index, lastLine),
            (err) =>
              readerSkips.push({
                line: lastLine,
                code: err.code,
                reason: err.message.replace(/, row \d+/, ''),
              }),
          )
        : readRows(spec, meta, progress, placeRow);
      if (fields) {
        const o: QueueUpdateFieldsOptions = { ...common, fields, ...(key ? { key } : {}) };
        return producer.updateFields(table, rows, o);
      }
      const o: QueueInsertOptions = {
        ...common,
        ...(onConflict ? { onConflict } : {}),
        ...(skip ? { onError: 'skip' as const, maxErrors } : {}),
      };
      return flag(p, 'copy')
        ? producer.copyFrom(table, rows, o)
        : producer.bulkCreate(table, rows, o);
    };
    if (!wait) {
      await enqueue();
      process.stderr.write(
        `enqueued ${progress.rows.toLocaleString('en-US')} rows from ${source} as operation ${id}\n`,
      );
      process.stdout.write(`${id}\n`);
      return EXIT.ok;
    }
    const op = producer.operation(id);
    const result = await local.race(follow(op, enqueue, progress, size, t0)).catch(async (err) => {
      if (!(err instanceof BulkError)) throw err;
      // Where it stopped, as an editor counts lines: a value Postgres refused in the file's
      // own bytes carries its line; a row of a parsed file, its index.
      // (A skipping load sent only the rows that read: its own map says where each came from.)
      if (err.line === undefined && err.row !== undefined && skip && rowLines[err.row])
        err.line = rowLines[err.row];
      if (
        err.line === undefined &&
        err.row !== undefined &&
        spec.format !== 'csv' &&
        spec.format !== 'tsv' &&
        file !== '-'
      ) {
        const line = await lineOfRow(spec, meta, err.row).catch(() => undefined);
        if (line !== undefined) err.line = line;
      }
      atFileLine(err, source, err.line);
      await reportCommitted(
        op,
        chunkLines,
        progress,
        skip ? { path: rejectsPath, toSkipped } : undefined,
        spec,
      ).catch(() => {});
      throw err;
    });
    const rejected = skip ? toSkipped(result.rejected ?? []) : [];
    const wrote = rejected.length > 0 ? await writeRejects(spec, rejectsPath, rejected) : '';
    const secs = (Date.now() - t0) / 1000;
    const what = fields ? 'updated' : 'loaded';
    const missing = result.missing?.length ? `, ${result.missing.length} keys matched no row` : '';
    process.stderr.write(
      `${what} ${result.count.toLocaleString('en-US')} of ${progress.rows.toLocaleString('en-US')} rows into ${meta.displayName} in ${secs.toFixed(1)} s${missing} (operation ${id})\n`,
    );
    if (skip)
      process.stderr.write(
        rejected.length === 0
          ? 'rejected none\n'
          : `rejected ${rejected.length.toLocaleString('en-US')} records (file lines ${ranges(rejected.map((r) => [r.line, r.line]))}): ${wrote}\n`,
      );
    return EXIT.ok;
  } finally {
    await producer.close();
    await local.stop();
  }
}

/**
 * After a failed load: how many rows had committed (each chunk commits on its own) and which
 * file lines they came from, so that the rest can be loaded again without those.
 */
async function reportCommitted(
  op: Operation,
  chunkLines: [number, number][],
  progress: ReadProgress,
  skipping: { path: string; toSkipped: (r: RejectedRecord[]) => Skipped[] } | undefined,
  spec: InputSpec,
): Promise<void> {
  // Chunks in flight when it failed still commit or roll back: count once they have.
  const settled = await op.settle();
  const status = await op.status();
  if (status.rowsDone === 0 && settled) {
    process.stderr.write('nothing had committed: the table is as it was\n');
    return;
  }
  const done = await op.committedChunks();
  // With --on-error skip, the committed chunks' skipped records are not in the table: they
  // go to the rejects file, and out of the lines reported.
  const rejected = skipping ? skipping.toSkipped(await op.rejectedRecords()) : [];
  const skipped = [...new Set(rejected.map((r) => r.line))].sort((a, b) => a - b);
  const spans: [number, number][] = [];
  const add = (from: number, to: number) => {
    const prev = spans.at(-1);
    if (prev && prev[1] + 1 >= from) prev[1] = Math.max(prev[1], to);
    else spans.push([from, to]);
  };
  for (const i of done) {
    const lines = chunkLines[i];
    if (lines === undefined) continue;
    let from = lines[0];
    for (const r of skipped.filter((l) => l >= lines[0] && l <= lines[1])) {
      if (r > from) add(from, r - 1);
      from = r + 1;
    }
    if (from <= lines[1]) add(from, lines[1]);
  }
  const rows = status.rowsDone.toLocaleString('en-US');
  const of = progress.rows ? ` of ${progress.rows.toLocaleString('en-US')} read` : '';
  process.stderr.write(
    `${rows} rows${of} had committed before it stopped and stay in the table${spans.length ? ` (file lines ${ranges(spans)})` : ''}\n`,
  );
  if (skipping && rejected.length > 0) {
    const wrote = await writeRejects(spec, skipping.path, rejected);
    process.stderr.write(
      `those chunks skipped ${rejected.length.toLocaleString('en-US')} records (file lines ${ranges(rejected.map((r) => [r.line, r.line]))}): ${wrote}\n`,
    );
  }
}

/** The file line the record at `index` starts on (read again: only after a failure). */
async function lineOfRow(
  spec: InputSpec,
  meta: TableMeta,
  index: number,
): Promise<number | undefined> {
  let found: number | undefined;
  try {
    for await (const _ of readRows(spec, meta, { bytes: 0, rows: 0 }, (i, line) => {
      if (i === index) found = line;
    })) {
      if (found !== undefined) break;
    }
  } catch {
    // a later record that does not read: the line was found or is not to be found
  }
  return found;
}

/** Where skipped records go by default: items.csv(.gz) gives items.rejects.csv beside it. */
function defaultRejects(file: string, spec: InputSpec): string {
  const ext = `.${spec.format}`;
  if (file === '-') return `stdin.rejects${ext}`;
  const base = file.replace(/\.gz$/i, '').replace(/\.[^./]*$/, '');
  return `${base}.rejects${ext}`;
}

/**
 * The records a skipping load left out, verbatim and after the file's header (fix them and load
 * that file again), and beside it `<rejects>.log`: each one's file line, code and reason. The
 * records are read again from the file (the queue never carries row values); from stdin only
 * the log can be written.
 */
async function writeRejects(spec: InputSpec, path: string, rejected: Skipped[]): Promise<string> {
  const log = rejected.map((r) => `line ${r.line}: ${r.code}: ${r.reason}\n`).join('');
  await writeFile(`${path}.log`, log);
  if (spec.path === '-')
    return `lines and reasons in ${path}.log (stdin cannot be read again for the records)`;
  const want = new Set(rejected.map((r) => r.line));
  if (spec.format === 'ndjson' || spec.format === 'json') {
    // The records' own text, read again (lenient: a record that is not JSON is one of them).
    const texts: string[] = [];
    for await (const r of jsonRecords(spec, { bytes: 0, rows: 0 }, undefined, true))
      if (want.has(r.line)) texts.push(r.text);
    await writeFile(
      path,
      spec.format === 'json' ? `[\n${texts.join(',\n')}\n]\n` : `${texts.join('\n')}\n`,
    );
    return `${path}, reasons in ${path}.log`;
  }
  const out: Buffer[] = [];
  const head = await csvHead(openInput(spec, { bytes: 0, rows: 0 }), {
    header: spec.header,
    columns: spec.columns,
    path: inputName(spec),
    delimiter: spec.csv.delimiter,
  });
  if (head.header) out.push(head.header);
  for await (const c of csvChunks(head.body, {
    batchSize: 1,
    firstLine: head.firstLine,
    path: '',
  })) {
    if (want.has(c.firstLine)) out.push(c.data);
  }
  await writeFile(path, Buffer.concat(out));
  return `${path}, reasons in ${path}.log`;
}

/** A record a skipping load left out, by its file line. */
interface Skipped {
  line: number;
  code: string;
  reason: string;
}

/**
 * Rows whose values the producer's encoder takes (as COPY text): a row it refuses (a number
 * out of its column's range, say) is handed to `onBad` and left out, so that a skipping load
 * goes on; `onKept` is told each kept row's index in what goes to the operation.
 */
async function* keepEncodable(
  rows: AsyncIterable<Row>,
  meta: TableMeta,
  onKept: (index: number) => void,
  onBad: (err: BulkError) => void,
): AsyncGenerator<Row> {
  let index = 0;
  for await (const row of rows) {
    try {
      encodeCopyChunk(meta, [row], 0);
    } catch (err) {
      if (!(err instanceof BulkError)) throw err;
      onBad(err);
      continue;
    }
    onKept(index++);
    yield row;
  }
}

/** CREATE TABLE, or a clear error when it cannot (it exists: drop --create). */
async function createTable(database: string, sql: string, table: string): Promise<void> {
  const client = new pg.Client({ connectionString: database });
  client.on('error', () => {});
  await client.connect();
  try {
    await client.query(sql);
  } catch (err) {
    if ((err as { code?: string }).code === '42P07')
      throw usage(`${table} exists already: load into it without --create`);
    throw fromPgError(err, { table });
  } finally {
    await client.end().catch(() => {});
  }
}

/** Enqueue while showing committed rows; the total is estimated from the bytes read until the file ends. */
async function follow(
  op: Operation,
  enqueue: () => Promise<Operation>,
  read: ReadProgress,
  fileBytes: number | undefined,
  t0: number,
): Promise<OperationResult> {
  const bar = new ProgressBar('load', undefined, t0);
  let done = 0;
  let enqueued = false;
  const refresh = () => {
    if (enqueued) bar.setTotal(read.rows);
    else if (fileBytes !== undefined && read.bytes > 0 && read.rows > 0)
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
