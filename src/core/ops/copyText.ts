import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFromStdin } from 'pg-copy-streams';
import type { DbClient } from '../db.js';
import { BulkError, fromPgError } from '../errors.js';
import { type ColumnMeta, columnOf, type TableMeta } from '../meta.js';
import type { Chunk, ChunkSteps } from '../runner.js';
import { buildStageTable } from '../sql/copy.js';
import { buildInsert, type OnConflict, stageSource } from '../sql/insert.js';

/**
 * Writing rows that arrive already in Postgres's COPY format (a queue chunk encoded by the
 * producer, or records of a CSV file): the data goes into `COPY ... FROM STDIN` as it is, no
 * value decoded or encoded again; Postgres parses. The ledger, the chunk's transaction and
 * ON CONFLICT (through a staging table) work as for rows.
 */

/** One COPY's worth of a chunk: columns in order, and the data of its rows. */
export interface CopyTextGroup {
  columns: string[];
  /** Rows (records) in `data`, checked before it is written (see countRecords). */
  rows: number;
  /** COPY text format (tab-separated, COPY escapes, \N for NULL) or CSV; every row ends with \n. */
  data: string;
  /** The rows' indexes within the chunk, when the chunk has several groups. */
  rowIdx?: number[];
}

export interface CopyTextPlan {
  meta: TableMeta;
  format: 'text' | 'csv';
  onConflict: OnConflict | undefined;
  /** CSV from a file: its line number of the chunk's first record (messages name file lines). */
  firstLine: number | undefined;
}

interface Prepared {
  chunk: Chunk;
  groups: { columns: ColumnMeta[]; group: CopyTextGroup }[];
}

/**
 * Records in COPY data, and whether one of them is `\.` alone, COPY's end-of-data marker (the
 * rows after it would be dropped without an error). Text format: one record per line. CSV: a
 * newline inside quotes does not end a record (a byte scan of quotes and newlines, no field
 * parsing).
 */
export function countRecords(
  data: string,
  format: 'text' | 'csv',
): { records: number; endMarker: boolean } {
  let records = 0;
  let endMarker = false;
  let start = 0;
  let i = 0;
  let inQuote = false;
  while (i < data.length) {
    if (format === 'csv') {
      if (inQuote) {
        const q = data.indexOf('"', i);
        if (q === -1) break;
        inQuote = false;
        i = q + 1;
        continue;
      }
      const q = data.indexOf('"', i);
      const nl = data.indexOf('\n', i);
      if (q !== -1 && (nl === -1 || q < nl)) {
        inQuote = true;
        i = q + 1;
        continue;
      }
      if (nl === -1) break;
      i = nl;
    } else {
      const nl = data.indexOf('\n', i);
      if (nl === -1) break;
      i = nl;
    }
    // data[start, i) is one record
    const len = i - start;
    if (
      (len === 2 || (len === 3 && data.charCodeAt(i - 1) === 13)) &&
      data.charCodeAt(start) === 92 &&
      data.charCodeAt(start + 1) === 46
    )
      endMarker = true;
    records++;
    i++;
    start = i;
  }
  if (start < data.length || inQuote) records = -1; // a record without its newline, or an open quote
  return { records, endMarker };
}

/** Stream a string into COPY in 64 KB pieces; errors name the row (or the file line). */
async function copyData(
  client: DbClient,
  sql: string,
  data: string,
  errorAt: Parameters<typeof fromPgError>[1],
): Promise<number> {
  const buf = Buffer.from(data, 'utf8');
  function* pieces() {
    for (let at = 0; at < buf.length; at += 1 << 16) yield buf.subarray(at, at + (1 << 16));
  }
  const stream = client.query(copyFromStdin(sql));
  stream.on('error', () => {}); // see copyIn: an error after the pipeline let go must not crash
  try {
    await pipeline(Readable.from(pieces(), { objectMode: false }), stream);
    return stream.rowCount;
  } catch (err) {
    throw fromPgError(err, errorAt);
  }
}

export function copyTextSteps(
  plan: CopyTextPlan,
  groups: CopyTextGroup[],
): ChunkSteps<Prepared, { count: number }> {
  const { meta } = plan;
  const table = meta.displayName;
  const opts = plan.format === 'csv' ? ' (FORMAT csv)' : '';
  return {
    async prepare(chunk) {
      return {
        chunk,
        groups: groups.map((g) => ({
          group: g,
          columns: g.columns.map((n) => {
            const c = columnOf(meta, n);
            if (c.generated || c.identity === 'a')
              throw new BulkError('READ_ONLY_COLUMN', `${table}.${n} cannot be written`, {
                table,
                column: n,
              });
            return c;
          }),
        })),
      };
    },
    async write(client, p, hooks) {
      let count = 0;
      for (let gi = 0; gi < p.groups.length; gi++) {
        const { group: g, columns } = p.groups[gi]!;
        const offset = p.chunk.offset;
        const errorAt = {
          table,
          ...(plan.firstLine !== undefined
            ? { fileLineOfLine: (line: number) => plan.firstLine! + line - 1 }
            : {
                rowIndexOfLine: (line: number) =>
                  offset + (g.rowIdx ? (g.rowIdx[line - 1] ?? line - 1) : line - 1),
              }),
        };
        const names = columns.map((c) => c.sqlName).join(', ');
        if (gi === p.groups.length - 1) setImmediate(hooks.busy);
        if (plan.onConflict === undefined) {
          count += await copyData(
            client,
            `COPY ${meta.sqlName} (${names}) FROM STDIN${opts}`,
            g.data,
            errorAt,
          );
          continue;
        }
        // ON CONFLICT needs an INSERT: COPY into a staging table of the same column types, then
        // move the rows. (Its ordinal column `i` stays empty: nothing is returned.)
        const stage = `bulkmodel_stage_${gi}`;
        await client.query({ text: buildStageTable(stage, columns) });
        const stageCols = columns.map((_, j) => `c${j}`).join(', ');
        await copyData(client, `COPY ${stage} (${stageCols}) FROM STDIN${opts}`, g.data, errorAt);
        const r = await client.query({
          text: buildInsert(meta, columns, stageSource(stage, columns), {
            onConflict: plan.onConflict,
          }),
        });
        count += r.rowCount ?? 0;
        await client.query({ text: `DROP TABLE ${stage}` });
      }
      return { result: { count }, ledger: { count } };
    },
    signalsBusy: true,
    async recover(_c, _p, value) {
      const v = (value ?? {}) as { count?: unknown };
      return { count: typeof v.count === 'number' ? v.count : 0 };
    },
  };
}

/**
 * Check a chunk's groups before anything is written: declared row counts match the data, no
 * end-of-data marker, columns named once. (Columns against the catalog: in prepare.)
 */
export function checkCopyGroups(
  groups: CopyTextGroup[],
  format: 'text' | 'csv',
  table: string,
): number {
  let total = 0;
  for (const g of groups) {
    if (new Set(g.columns).size !== g.columns.length)
      throw new BulkError('INVALID_PAYLOAD', `${table}: a COPY group names a column twice`, {
        table,
      });
    const { records, endMarker } = countRecords(g.data, format);
    if (endMarker)
      throw new BulkError(
        'INVALID_PAYLOAD',
        `${table}: COPY data holds a record that is \\. alone, which would end it early`,
        { table },
      );
    if (records !== g.rows)
      throw new BulkError(
        'INVALID_PAYLOAD',
        `${table}: a COPY group declares ${g.rows} rows and holds ${records < 0 ? 'an unterminated record' : records}`,
        { table },
      );
    if (g.rowIdx && g.rowIdx.length !== g.rows)
      throw new BulkError('INVALID_PAYLOAD', `${table}: rowIdx does not match the group's rows`, {
        table,
      });
    total += records;
  }
  return total;
}
