import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { BulkClient } from '../core/client.js';
import { BulkError } from '../core/errors.js';
import { silentLogger } from '../core/logger.js';
import { columnOf } from '../core/meta.js';
import { valuesCounted } from '../core/ops/copyTo.js';
import type { Where } from '../core/sql/where.js';
import { EXIT, optionsHelp, parse, str, text } from './args.js';
import { fileFormat, isGzip } from './fileFormats.js';
import { ProgressBar } from './progress.js';
import { checkPostgres } from './services.js';

export const EXPORT_USAGE = `bulkmodel export — write a table (or some of its rows) to a CSV or NDJSON file

Usage: bulkmodel export <table> <file> [options]
       bulkmodel export <table> - --format <f> [options]    (standard output)

Runs COPY ... TO STDOUT directly against Postgres and streams it into <file> on this machine
(no queue and no worker: the file lands where you run the command; to have a worker write a
file on its own disk, use producer.copyTo in code). The file is written as <file>.partial and
renamed when complete; a name ending in .gz is written gzip-compressed. A progress bar shows
rows and rows/s (on stderr).

Formats (by extension under a .gz, or --format):
  .csv              Postgres's own COPY ... CSV with a header row: NULL is an unquoted empty
                    field, the empty string is ""; every type in Postgres's text form
  .ndjson, .jsonl   one JSON object per row: json/jsonb as their JSON text exactly as stored,
                    booleans, int2/int4 and floats as numbers digit for digit (-0 kept; NaN
                    and ±Infinity as strings); bigint, numeric and money as strings (exact
                    beyond 2^53), timestamps as Postgres writes them (microseconds kept),
                    bytea as \\x hex, arrays as JSON arrays (with nulls), every other type as
                    Postgres's text (docs/types.md)

Both formats load back exactly with bulkmodel load.

Options:
${optionsHelp('export')}

Exit codes: 0 written, 1 failed, 2 bad usage, 3 Postgres unreachable.

Examples:
  bulkmodel export items items.csv
  bulkmodel export public.items recent.ndjson --where '{"created_at":{"gte":"2026-01-01"}}'
  bulkmodel export items names.csv --columns id,name
  bulkmodel export items items.ndjson.gz
  bulkmodel export items - --format csv | head
`;

function usage(message: string): BulkError {
  return new BulkError('INVALID_OPTION', `${message} (see bulkmodel export --help)`);
}

/** Raw CSV buffers, counting lines for the progress bar (a quoted newline counts too). */
async function* countedCsv(out: AsyncIterable<Buffer>, onLines: (n: number) => void) {
  for await (const b of out) {
    let n = 0;
    for (let i = b.indexOf(10); i !== -1; i = b.indexOf(10, i + 1)) n++;
    onLines(n);
    yield b;
  }
}

export async function runExport(argv: string[]): Promise<number> {
  const p = parse({ usage: EXPORT_USAGE, command: 'export' }, argv);
  if (!p) return EXIT.ok;
  if (p.positionals.length !== 2) throw usage('export takes a table and a file');
  const [table, file] = p.positionals as [string, string];
  const fmt = fileFormat(file, str(p, 'format'));
  if (fmt !== 'csv' && fmt !== 'ndjson')
    throw usage(
      `export writes csv or ndjson (.csv, .ndjson, .jsonl, each optionally .gz), not ${fmt}`,
    );
  const format: 'csv' | 'ndjson' = fmt;
  const toStdout = file === '-';
  const gzip = isGzip(file);
  const columnsFlag = str(p, 'columns');
  const columns = columnsFlag?.split(',').map((s) => s.trim());
  if (columns?.some((c) => c === '')) throw usage('--columns takes a comma-separated list');
  let where: Where | undefined;
  const whereFlag = str(p, 'where');
  if (whereFlag !== undefined) {
    try {
      where = JSON.parse(whereFlag) as Where;
    } catch (err) {
      throw usage(`--where is not valid JSON: ${(err as Error).message}`);
    }
    if (where === null || typeof where !== 'object' || Array.isArray(where))
      throw usage('--where must be a JSON object');
  }
  const url = text(p, 'database')!;
  const db = new BulkClient({ connectionString: url, logger: silentLogger, poolSize: 2 });
  const tmp = `${file}.partial`;
  let handle: FileHandle | undefined;
  try {
    await checkPostgres(url);
    const meta = await db.meta(table);
    const names = columns ?? meta.columns.map((c) => c.name);
    for (const c of names) columnOf(meta, c);
    const model = db.model(table);
    // Opened before the COPY starts: a directory that does not exist fails here, with nothing read.
    if (!toStdout) handle = await open(tmp, 'w');
    // Standard output, or the file, through gzip when its name ends in .gz.
    const sink = (): Writable[] => {
      const target = handle ? handle.createWriteStream() : process.stdout;
      return gzip ? [createGzip(), target] : [target];
    };
    const bar = new ProgressBar('export', undefined);
    let rows = 0;
    const opts = { columns: names, ...(where ? { where } : {}) };
    if (format === 'csv') {
      const out = model.copyTo({ ...opts, format: 'csv' });
      let lineCount = 0;
      const counted = countedCsv(
        valuesCounted(out as AsyncGenerator<Buffer, { count: number }>, (n) => {
          rows = n;
        }),
        (n) => {
          lineCount += n;
          bar.update(Math.max(0, lineCount - 1));
        },
      );
      await pipeline([Readable.from(counted), ...sink()]);
    } else {
      const out = model.copyTo({ ...opts, format: 'ndjson' });
      let lineCount = 0;
      const values = valuesCounted(out, (n) => {
        rows = n;
      });
      const gen = (async function* () {
        for await (const text of values) {
          let n = 0;
          for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
          lineCount += n;
          bar.update(lineCount);
          yield text;
        }
      })();
      await pipeline([Readable.from(gen), ...sink()]);
    }
    if (!toStdout) await rename(tmp, file);
    bar.finish(rows);
    process.stderr.write(
      `exported ${rows.toLocaleString('en-US')} rows of ${meta.displayName} to ${toStdout ? 'stdout' : file}\n`,
    );
    return EXIT.ok;
  } catch (err) {
    if (!toStdout) await rm(tmp, { force: true });
    throw err;
  } finally {
    await handle?.close().catch(() => {});
    await db.close();
  }
}
