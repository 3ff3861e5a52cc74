import { isUtf8 } from 'node:buffer';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFromStdin } from 'pg-copy-streams';
import { type CsvDialect, copyCsvOptions } from '../csvDialect.js';
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
  /**
   * COPY text format (tab-separated, COPY escapes, \N for NULL) or CSV; every row ends with \n.
   * As text, or as its UTF-8 bytes (written as they are).
   */
  data: string | Buffer;
  /** The rows' indexes within the chunk, when the chunk has several groups. */
  rowIdx?: number[];
}

export interface CopyTextPlan {
  meta: TableMeta;
  /** Without onConflict: leave out the records Postgres refuses, up to maxErrors. */
  onError?: 'skip' | undefined;
  maxErrors?: number | undefined;
  format: 'text' | 'csv';
  /** CSV: the delimiter and NULL text, when not COPY's defaults (checked by checkCsvDialect). */
  csv?: CsvDialect | undefined;
  onConflict: OnConflict | undefined;
  /** CSV from a file: its line number of the chunk's first record (messages name file lines). */
  firstLine: number | undefined;
  /** Check, in the transaction, that the columns still have the types `meta` read. */
  verifyTypes?: boolean;
}

interface Prepared {
  chunk: Chunk;
  groups: { columns: ColumnMeta[]; group: CopyTextGroup }[];
}

/** What a scan of COPY data found: its records, or why Postgres would read it otherwise. */
export interface RecordScan {
  /** Records (rows), -1 when the last one has no newline or a quote is left open. */
  records: number;
  /**
   * An end-of-data marker: text format, an unescaped `\.` anywhere (Postgres stops reading
   * there); CSV, a record starting with `\.` then a line end. The rows after it would be
   * dropped without an error.
   */
  endMarker: boolean;
  /** A carriage return that would end a line (text: unescaped; CSV: outside quotes, not before \n). */
  bareCR: boolean;
}

const CHAR: Record<number, string> = { 10: '\n', 13: '\r', 34: '"', 92: '\\' };

/** COPY data as text (a chunk's bytes are decoded only where an error must name a line). */
export function textOf(data: string | Buffer): string {
  return typeof data === 'string' ? data : data.toString('utf8');
}

/**
 * Count the records of COPY data as Postgres reads them, in one pass over its characters (no
 * field parsing, linear in the data whatever it holds). Text format: a record ends at an
 * unescaped newline; a backslash escapes the character after it (a backslash-newline is data).
 * CSV: a newline inside quotes does not end a record; `\r\n` ends one as `\n` does.
 */
export function countRecords(data: string | Buffer, format: 'text' | 'csv'): RecordScan {
  // The next backslash or quote, newline and carriage return at or after i (-1: none left,
  // -2: not searched yet): each is searched for once per occurrence, with the engine's own
  // string search, so the scan is linear and fast whatever the data holds.
  // Text or its UTF-8 bytes: the characters that matter are ASCII, which UTF-8 never uses
  // inside another character, so the scan is the same over both.
  const text = typeof data === 'string' ? data : undefined;
  const bytes = typeof data === 'string' ? undefined : data;
  const code = (i: number): number => (text !== undefined ? text.charCodeAt(i) : bytes![i]!);
  const find = (c: number, from: number): number =>
    text !== undefined ? text.indexOf(CHAR[c]!, from) : bytes!.indexOf(c, from);
  let records = 0;
  let endMarker = false;
  let bareCR = false;
  const n = data.length;
  const special = format === 'text' ? 92 : 34; // backslash, quote
  let ns = -2;
  let nl = -2;
  let cr = -2;
  let i = 0;
  let end = 0; // just past the last record's newline
  let inQuote = false;
  for (;;) {
    if (format === 'csv' && i === end && i < n && code(i) === 92) {
      // `\.` then a line end (or the end of the data) at a record's start ends COPY data.
      if (code(i + 1) === 46) {
        const after = code(i + 2);
        if (i + 2 >= n || after === 10 || after === 13) endMarker = true;
      }
    }
    if (ns !== -1 && ns < i) ns = find(special, i);
    if (inQuote) {
      // CSV inside quotes: only the closing quote matters.
      if (ns === -1) break;
      inQuote = false;
      i = ns + 1;
      continue;
    }
    if (nl !== -1 && nl < i) nl = find(10, i);
    if (cr !== -1 && cr < i) cr = find(13, i);
    let next = ns;
    if (nl >= 0 && (next < 0 || nl < next)) next = nl;
    if (cr >= 0 && (next < 0 || cr < next)) next = cr;
    if (next < 0) break;
    if (next === ns) {
      if (format === 'csv') {
        inQuote = true;
        i = next + 1;
        continue;
      }
      // text: a backslash escapes the next character, whatever it is (a newline included)
      if (next + 1 >= n) return { records: -1, endMarker, bareCR };
      if (code(next + 1) === 46) endMarker = true;
      i = next + 2;
    } else if (next === nl) {
      records++;
      i = end = next + 1;
    } else {
      // text: an unescaped CR ends a line for COPY; CSV: outside quotes, unless before \n
      if (format === 'text' || code(next + 1) !== 10) bareCR = true;
      i = next + 1;
    }
  }
  return { records: inQuote || end !== n ? -1 : records, endMarker, bareCR };
}

/**
 * The file line where the record holding Postgres's COPY line `pgLine` starts (see
 * csvRecordOfLine).
 */
export function csvFileLine(data: string, firstLine: number, pgLine: number): number {
  const rec = csvRecordOfLine(data, pgLine);
  // Past the data (it cannot be, for a line Postgres read from it): its last line.
  return firstLine + (rec ? rec.lineOffset : newlinesIn(data, 0, Math.max(0, data.length - 1)));
}

/**
 * The CSV record of `data` that holds Postgres's COPY line `pgLine`: its index, where it starts
 * and ends (past its newline), and how many file lines come before it in `data`; undefined when
 * no record of `data` does. Postgres counts a line per record plus the line breaks inside its
 * quotes, and before it knows the data's line ending (in the first record) it takes a carriage
 * return for one, after it a newline (checked against psql: a first record `"a\nb"` is one
 * line, `"a\r\nb"` two). A file line counts every newline.
 */
export function csvRecordOfLine(
  data: string,
  pgLine: number,
): { index: number; start: number; end: number; lineOffset: number } | undefined {
  let records = 0;
  let pg = 0;
  let lineOffset = 0; // file lines before the current record
  let start = 0;
  let innerFile = 0;
  let innerPg = 0;
  let inQuote = false;
  for (let i = 0; i < data.length; i++) {
    const c = data.charCodeAt(i);
    if (c === 34) inQuote = !inQuote;
    else if (inQuote) {
      if (c === 10) innerFile++;
      if (c === (records === 0 ? 13 : 10)) innerPg++;
    } else if (c === 10) {
      records++;
      pg += 1 + innerPg;
      if (pg >= pgLine) return { index: records - 1, start, end: i + 1, lineOffset };
      lineOffset += 1 + innerFile;
      innerFile = 0;
      innerPg = 0;
      start = i + 1;
    }
  }
  return undefined;
}

/**
 * A record a load skipped (onError 'skip'), and why, without its values: by its file line (CSV
 * from a file) or by its row index in the operation's input (rows a producer encoded).
 */
export interface RejectedRecord {
  line?: number;
  row?: number;
  code: string;
  reason: string;
}

/** Newlines in `s` between `from` and `to`. */
function newlinesIn(s: string, from: number, to: number): number {
  let n = 0;
  for (let i = s.indexOf('\n', from); i !== -1 && i < to; i = s.indexOf('\n', i + 1)) n++;
  return n;
}

/** Postgres refused a value or a row (classes 22 and 23): a record a skipping load can leave out. */
function isRecordError(err: unknown): err is BulkError {
  return err instanceof BulkError && /^2[23]/.test(err.pgCode ?? '');
}

/** Where a group's records come from, to name a skipped one. */
export type SkipPlace =
  /** CSV from a file: the file line of the group's first record. */
  | { firstLine: number }
  /** COPY text a producer encoded: the operation's row index of the group's k-th record. */
  | { rowOf: (k: number) => number };

/** The text-format record holding COPY line `pgLine` (one line per record). */
function textRecordOfLine(
  data: string,
  pgLine: number,
): { index: number; start: number; end: number } | undefined {
  let start = 0;
  for (let k = 1; k < pgLine; k++) {
    const nl = data.indexOf('\n', start);
    if (nl === -1) return undefined;
    start = nl + 1;
  }
  const nl = data.indexOf('\n', start);
  if (nl === -1) return undefined;
  return { index: pgLine - 1, start, end: nl + 1 };
}

/**
 * COPY a group, leaving out the records Postgres refuses (onError 'skip'), in the chunk's
 * transaction. The data is a queue of segments, first the whole group; each is copied under a
 * savepoint. When Postgres refuses a record (its COPY line says which), the attempt is rolled
 * back, the record is set aside (CSV: by file line; COPY text: by the operation's row index),
 * and the records before and after it become segments of their own (those before went in once
 * already, and normally go in again; if not, they are split in turn). At most maxErrors
 * records are left out; one more fails the chunk with its own error.
 */
export async function copySkipping(
  client: DbClient,
  sql: string,
  data: string,
  format: 'text' | 'csv',
  place: SkipPlace,
  maxErrors: number,
  table: string,
  rejected: RejectedRecord[],
): Promise<number> {
  const first = 'firstLine' in place ? place.firstLine : 1;
  const segments: { data: string; line: number; base: number }[] = [{ data, line: first, base: 0 }];
  let count = 0;
  for (let seg = segments.shift(); seg !== undefined; seg = segments.shift()) {
    if (seg.data.length === 0) continue;
    const { data: rest, line: restLine, base } = seg;
    let pgLine: number | undefined;
    await client.query({ text: 'SAVEPOINT bulkmodel_skip' });
    try {
      count += await copyData(client, sql, rest, {
        table,
        ...('rowOf' in place
          ? {
              rowIndexOfLine: (l: number) => {
                pgLine = l;
                return place.rowOf(base + l - 1);
              },
            }
          : {
              fileLineOfLine: (l: number) => {
                pgLine = l;
                return csvFileLine(rest, restLine, l);
              },
            }),
      });
      await client.query({ text: 'RELEASE SAVEPOINT bulkmodel_skip' });
    } catch (err) {
      // (A rollback that fails, the connection lost, must not hide the error that caused it.)
      await client
        .query({ text: 'ROLLBACK TO SAVEPOINT bulkmodel_skip; RELEASE SAVEPOINT bulkmodel_skip' })
        .catch(() => {
          throw err;
        });
      if (!isRecordError(err) || pgLine === undefined) throw err;
      const rec = format === 'csv' ? csvRecordOfLine(rest, pgLine) : textRecordOfLine(rest, pgLine);
      // A line no record of the segment holds: not a record to leave out.
      if (rec === undefined) throw err;
      if (rejected.length >= maxErrors) {
        err.message = `${err.message} (after ${maxErrors} skipped records, the most one chunk may skip)`;
        throw err;
      }
      const reason = err.message.replace(/; (?:line|row) \d+$/, '');
      const lineOffset = 'lineOffset' in rec ? (rec.lineOffset as number) : 0;
      const line = restLine + lineOffset;
      rejected.push(
        'rowOf' in place
          ? { row: place.rowOf(base + rec.index), code: err.code, reason }
          : { line, code: err.code, reason },
      );
      segments.unshift(
        { data: rest.slice(0, rec.start), line: restLine, base },
        {
          data: rest.slice(rec.end),
          line: line + 1 + newlinesIn(rest, rec.start, rec.end - 1),
          base: base + rec.index + 1,
        },
      );
    }
  }
  return count;
}

/** Stream COPY data into COPY in 64 KB pieces; errors name the row (or the file line). */
export async function copyData(
  client: DbClient,
  sql: string,
  data: string | Buffer,
  errorAt: Parameters<typeof fromPgError>[1],
): Promise<number> {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
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

/**
 * The chunk's columns still have the types the data was encoded for. Run after the COPY, in its
 * transaction: COPY holds the table's lock from before it read the column types, so a type
 * change cannot fall between this check and the commit, and one committed before is seen here.
 */
async function verifyTypes(
  client: DbClient,
  meta: TableMeta,
  groups: Prepared['groups'],
): Promise<void> {
  const cols = new Map<string, ColumnMeta>();
  for (const g of groups) for (const c of g.columns) cols.set(c.name, c);
  const r = await client.query({
    text: `SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS t
             FROM pg_catalog.pg_attribute a
            WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY ($2)`,
    values: [meta.oid, [...cols.keys()]],
  });
  const now = new Map((r.rows as { attname: string; t: string }[]).map((x) => [x.attname, x.t]));
  for (const c of cols.values())
    if (now.get(c.name) !== c.typeSql)
      throw new BulkError(
        'CATALOG_MISMATCH',
        `${meta.displayName}.${c.name} is ${now.get(c.name) ?? 'gone'}, not ${c.typeSql} as the chunk was encoded for: nothing written; enqueue the operation again`,
        { table: meta.displayName, column: c.name },
      );
}

/** COPY read another number of rows than the group declares (and its scan counted). */
function misread(table: string, declared: number, took: number): BulkError {
  return new BulkError(
    'INVALID_PAYLOAD',
    `${table}: a COPY group declares ${declared} rows and Postgres read ${took}: nothing written`,
    { table },
  );
}

export function copyTextSteps(
  plan: CopyTextPlan,
  groups: CopyTextGroup[],
): ChunkSteps<Prepared, { count: number; rejected?: RejectedRecord[] }> {
  const { meta } = plan;
  const table = meta.displayName;
  const opts = plan.format === 'csv' ? copyCsvOptions(plan.csv) : '';
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
      const rejected: RejectedRecord[] = [];
      for (let gi = 0; gi < p.groups.length; gi++) {
        const { group: g, columns } = p.groups[gi]!;
        const offset = p.chunk.offset;
        const errorAt = {
          table,
          ...(plan.firstLine !== undefined
            ? {
                fileLineOfLine: (line: number) =>
                  plan.format === 'csv'
                    ? csvFileLine(textOf(g.data), plan.firstLine!, line)
                    : plan.firstLine! + line - 1,
              }
            : {
                rowIndexOfLine: (line: number) =>
                  offset + (g.rowIdx ? (g.rowIdx[line - 1] ?? line - 1) : line - 1),
              }),
        };
        const names = columns.map((c) => c.sqlName).join(', ');
        if (gi === p.groups.length - 1) setImmediate(hooks.busy);
        if (plan.onError === 'skip' && plan.onConflict === undefined) {
          count += await copySkipping(
            client,
            `COPY ${meta.sqlName} (${names}) FROM STDIN${opts}`,
            textOf(g.data),
            plan.format,
            plan.format === 'csv'
              ? { firstLine: plan.firstLine ?? 1 }
              : { rowOf: (k: number) => offset + (g.rowIdx ? (g.rowIdx[k] ?? k) : k) },
            plan.maxErrors ?? 0,
            table,
            rejected,
          );
          continue;
        }
        if (plan.onConflict === undefined) {
          const took = await copyData(
            client,
            `COPY ${meta.sqlName} (${names}) FROM STDIN${opts}`,
            g.data,
            errorAt,
          );
          // Fewer is possible (a BEFORE trigger may skip rows); more never is.
          if (took > g.rows) throw misread(table, g.rows, took);
          count += took;
          continue;
        }
        // ON CONFLICT needs an INSERT: COPY into a staging table of the same column types, then
        // move the rows. (Its ordinal column `i` stays empty: nothing is returned.)
        const stage = `bulkmodel_stage_${gi}`;
        await client.query({ text: buildStageTable(stage, columns) });
        const stageCols = columns.map((_, j) => `c${j}`).join(', ');
        const staged = await copyData(
          client,
          `COPY ${stage} (${stageCols}) FROM STDIN${opts}`,
          g.data,
          {
            ...errorAt,
            // Errors name the table's column, not the staging table's c<j>.
            columnName: (name: string) => {
              const m = /^c(\d+)$/.exec(name);
              return (m && columns[Number(m[1])]?.name) || name;
            },
          },
        );
        if (staged !== g.rows) throw misread(table, g.rows, staged);
        const r = await client.query({
          text: buildInsert(meta, columns, stageSource(stage, columns), {
            onConflict: plan.onConflict,
          }),
        });
        count += r.rowCount ?? 0;
        await client.query({ text: `DROP TABLE ${stage}` });
      }
      if (plan.verifyTypes) await verifyTypes(client, meta, p.groups);
      // The ledger keeps what was left out, so that a replay reports the same records.
      if (rejected.length > 0) return { result: { count, rejected }, ledger: { count, rejected } };
      return { result: { count }, ledger: { count } };
    },
    signalsBusy: true,
    async recover(_c, _p, value) {
      const v = (value ?? {}) as { count?: unknown; rejected?: unknown };
      const count = typeof v.count === 'number' ? v.count : 0;
      return Array.isArray(v.rejected)
        ? { count, rejected: v.rejected as RejectedRecord[] }
        : { count };
    },
  };
}

/**
 * Check a chunk's groups before anything is written: well-formed Unicode, declared row counts
 * match the data as Postgres will read it, no end-of-data marker or stray carriage return,
 * columns named once, and the groups' row indexes together a permutation of the chunk's rows.
 * (Columns against the catalog: in prepare.) Returns the chunk's rows.
 */
export function checkCopyGroups(
  groups: CopyTextGroup[],
  format: 'text' | 'csv',
  table: string,
): number {
  const bad = (message: string) =>
    new BulkError('INVALID_PAYLOAD', `${table}: ${message}`, { table });
  let total = 0;
  for (const g of groups) {
    if (new Set(g.columns).size !== g.columns.length)
      throw bad('a COPY group names a column twice');
    if (typeof g.data === 'string' ? !g.data.isWellFormed() : !isUtf8(g.data))
      throw bad(
        typeof g.data === 'string'
          ? 'COPY data holds a lone UTF-16 surrogate (not Unicode)'
          : 'COPY data is not valid UTF-8',
      );
    const { records, endMarker, bareCR } = countRecords(g.data, format);
    if (endMarker)
      throw bad(
        format === 'text'
          ? 'COPY data holds an unescaped \\. (the end-of-data marker): rows after it would be dropped'
          : 'COPY data holds a record that starts with \\. and a line end (the end-of-data marker)',
      );
    if (bareCR)
      throw bad(
        format === 'text'
          ? 'COPY data holds an unescaped carriage return (write it \\r)'
          : 'CSV data holds a carriage return outside quotes that does not end a line with \\n',
      );
    if (records !== g.rows)
      throw bad(
        `a COPY group declares ${g.rows} rows and holds ${records < 0 ? 'an unterminated record' : records}`,
      );
    if (g.rowIdx && g.rowIdx.length !== g.rows) throw bad("rowIdx does not match the group's rows");
    total += records;
  }
  if (groups.length > 1 || groups[0]?.rowIdx) {
    // Every row of the chunk exactly once: results and errors are placed by these indexes.
    const seen = new Uint8Array(total);
    for (const g of groups) {
      if (!g.rowIdx) throw bad('a chunk of several COPY groups needs rowIdx in each');
      for (const r of g.rowIdx) {
        if (!Number.isInteger(r) || r < 0 || r >= total || seen[r])
          throw bad(`rowIdx is not a permutation of the chunk's ${total} rows`);
        seen[r] = 1;
      }
    }
  }
  return total;
}
