import pg from 'pg';
import { SESSION_OPTIONS } from '../core/client.js';
import { copyCsvOptions } from '../core/csvDialect.js';
import { BulkError } from '../core/errors.js';
import { redact } from '../core/logger.js';
import { columnOf, loadTableMeta, type TableMeta } from '../core/meta.js';
import { copyData, copySkipping, type RejectedRecord } from '../core/ops/copyText.js';
import type { Row } from '../core/signals.js';
import { encodeCopyChunk } from '../producer/copyPayload.js';
import { csvChunks, csvHead } from '../producer/csvChunks.js';
import { atFileLine, type InputSpec, inputName, openInput, readRows } from './fileFormats.js';

/** The most problems a dry run lists. */
const MAX_SHOWN = 10;

/** Several problems of a sample, each a line to print. */
class Problems extends Error {
  constructor(
    readonly list: string[],
    readonly more: boolean,
  ) {
    super(list.join('\n'));
  }
}

export interface DryRun {
  database: string;
  table: string;
  spec: InputSpec;
  /** --create's statement, run inside the rolled-back transaction. */
  createSql: string | undefined;
  sample: number;
  /** What the load would do, in words. */
  action: string;
  /** The load inserts (so the sample is written, then rolled back); else rows are only read. */
  insert: boolean;
}

function show(spec: InputSpec): string {
  const bits: string[] = [spec.format];
  if (spec.gzip) bits.push('gzip');
  if (spec.format === 'csv' || spec.format === 'tsv') {
    bits.push(`delimiter ${JSON.stringify(spec.csv.delimiter ?? ',')}`);
    bits.push(
      `NULL ${spec.csv.null === undefined ? 'an unquoted empty field' : JSON.stringify(spec.csv.null)}`,
    );
    bits.push(spec.header ? 'a header row' : 'no header row');
  }
  return `${inputName(spec)} (${bits.join(', ')})`;
}

/**
 * `bulkmodel load --dry-run`: print what the load would do, then try the first `sample` rows
 * the way the load writes them (COPY of the file's own bytes for CSV and TSV, COPY of the
 * encoded rows otherwise) inside a transaction that is rolled back, with --create's table made
 * in it too. Prints the problems found with their file lines (CSV: up to ten, each record
 * Postgres refuses, as --on-error skip finds them; otherwise the first); writes nothing. Exit 0
 * when the sample went in, 1 when it did not.
 */
export async function dryRunLoad(o: DryRun): Promise<number> {
  const out = (line: string) => process.stdout.write(`${line}\n`);
  out('dry run: nothing is written');
  out(`input:    ${show(o.spec)}`);
  out(`table:    ${o.table}${o.createSql ? ' (created by --create)' : ''}`);
  out(`action:   ${o.action}`);
  const pool = new pg.Pool({ connectionString: o.database, options: SESSION_OPTIONS, max: 1 });
  pool.on('error', () => {});
  const client = await pool.connect();
  let problems: string[] = [];
  let tried = 0;
  try {
    await client.query('BEGIN');
    if (o.createSql) await client.query(o.createSql);
    const meta = await loadTableMeta(client, o.table);
    try {
      tried = await trySample(client, meta, o);
    } catch (err) {
      if (err instanceof Problems) {
        problems = err.list.map(redact);
        if (err.more) problems.push(`… and more (the first ${MAX_SHOWN} are shown)`);
      } else if (err instanceof BulkError) problems = [`${err.code}: ${redact(err.message)}`];
      else throw err;
    }
  } finally {
    await client.query('ROLLBACK').catch(() => {});
    client.release(true);
    await pool.end().catch(() => {});
  }
  if (problems.length > 0) {
    for (const p of problems) out(`problem:  ${p}`);
    return 1;
  }
  out(
    `ok:       the first ${tried.toLocaleString('en-US')} rows ${o.insert ? 'went in (rolled back)' : 'read and checked (an update is not tried)'}`,
  );
  return 0;
}

/** The rows tried; throws the first problem as a BulkError naming its file line. */
async function trySample(client: pg.PoolClient, meta: TableMeta, o: DryRun): Promise<number> {
  const { spec } = o;
  const path = inputName(spec);
  const progress = { bytes: 0, rows: 0 };
  if ((spec.format === 'csv' || spec.format === 'tsv') && o.insert) {
    const head = await csvHead(openInput(spec, progress), {
      header: spec.header,
      columns: spec.columns,
      path,
      delimiter: spec.csv.delimiter,
    });
    const cols = head.columns.map((n) => columnOf(meta, n));
    process.stdout.write(`columns:  ${cols.map((c) => `${c.name} ${c.typeSql}`).join(', ')}\n`);
    for await (const chunk of csvChunks(head.body, {
      batchSize: o.sample,
      firstLine: head.firstLine,
      path,
    })) {
      // Every problem of the sample, up to MAX_SHOWN, as --on-error skip would find them.
      const rejected: RejectedRecord[] = [];
      const sql = `COPY ${meta.sqlName} (${cols.map((c) => c.sqlName).join(', ')}) FROM STDIN${copyCsvOptions(spec.csv)}`;
      let more = false;
      try {
        await copySkipping(
          client,
          sql,
          chunk.data.toString('utf8'),
          'csv',
          { firstLine: chunk.firstLine },
          MAX_SHOWN,
          meta.displayName,
          rejected,
        );
      } catch (err) {
        if (!(err instanceof BulkError)) throw err;
        if (rejected.length < MAX_SHOWN) throw atFileLine(err, path, err.line);
        more = true;
      }
      if (rejected.length > 0) {
        const list = rejected.map((r) => `${r.code}: ${path} line ${r.line}: ${r.reason}`);
        throw new Problems(list, more);
      }
      return chunk.records;
    }
    return 0;
  }
  const lines: number[] = [];
  const rows: Row[] = [];
  for await (const row of readRows(spec, meta, progress, (_i, line) => lines.push(line))) {
    rows.push(row);
    if (rows.length >= o.sample) break;
  }
  if (!o.insert || rows.length === 0) return rows.length;
  const atRow = (err: unknown) =>
    err instanceof BulkError && err.row !== undefined ? atFileLine(err, path, lines[err.row]) : err;
  let encoded: ReturnType<typeof encodeCopyChunk>;
  try {
    encoded = encodeCopyChunk(meta, rows, 0);
  } catch (err) {
    throw atRow(err);
  }
  if (!encoded) return rows.length; // rows that carry no column: all defaults
  for (const g of encoded.groups) {
    const cols = g.columns.map((n) => columnOf(meta, n));
    await copyData(
      client,
      `COPY ${meta.sqlName} (${cols.map((c) => c.sqlName).join(', ')}) FROM STDIN`,
      g.data,
      {
        table: meta.displayName,
        rowIndexOfLine: (line: number) => (g.rowIdx ? (g.rowIdx[line - 1] ?? line - 1) : line - 1),
      },
    ).catch((err) => {
      throw atRow(err);
    });
  }
  return rows.length;
}
