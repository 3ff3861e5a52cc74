import { createReadStream } from 'node:fs';
import { extname } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { parse as csvParser } from 'csv-parse';
import { BulkError } from '../core/errors.js';
import { JsonSyntaxError, scanObject, skipWs } from '../core/jsonScan.js';
import { type ColumnMeta, columnOf, type TableMeta } from '../core/meta.js';
import { fromJsonField, fromTextField, JsonFieldProblem } from '../core/ndjson.js';
import { setOwn } from '../core/rows.js';
import type { Row } from '../core/signals.js';

export type FileFormat = 'csv' | 'ndjson';

/** The format named by --format, else by the file's extension (.csv; .ndjson or .jsonl). */
export function fileFormat(path: string, flag: string | undefined): FileFormat {
  const f = (flag ?? extname(path).slice(1)).toLowerCase();
  if (f === 'csv') return 'csv';
  if (f === 'ndjson' || f === 'jsonl') return 'ndjson';
  throw new BulkError(
    'INVALID_OPTION',
    flag === undefined
      ? `cannot tell the format of ${path} from its extension: name it .csv, .ndjson or .jsonl, or pass --format csv|ndjson`
      : `--format must be csv or ndjson, got ${JSON.stringify(flag)}`,
  );
}

/** How far the reading got: bytes of the file and rows handed on. */
export interface ReadProgress {
  bytes: number;
  rows: number;
}

/** Lines split on \n only (a JSON string may hold U+2028 or a raw \r), decoded as UTF-8 across chunks. */
export async function* lines(chunks: AsyncIterable<Buffer>): AsyncGenerator<string> {
  const decoder = new StringDecoder('utf8');
  // The unfinished line, in pieces: a long line is joined once, not once per chunk.
  let parts: string[] = [];
  for await (const chunk of chunks) {
    const text = decoder.write(chunk);
    let start = 0;
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      parts.push(text.slice(start, nl));
      yield parts.length === 1 ? parts[0]! : parts.join('');
      parts = [];
      start = nl + 1;
    }
    if (start < text.length) parts.push(text.slice(start));
  }
  const end = decoder.end();
  if (end) parts.push(end);
  if (parts.length > 0) yield parts.join('');
}

/** The longest NDJSON record read (a file whose object never closes is refused, not held). */
const MAX_RECORD = 64 * 1024 * 1024;

/**
 * Whether JSON text fed line by line has closed its top-level value: brackets counted outside
 * strings, each line looked at once (a record spanning lines costs no more than one line).
 */
class JsonFramer {
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** Feed one line; true when the value closed in it. */
  feed(line: string): boolean {
    for (let i = 0; i < line.length; i++) {
      const c = line.charCodeAt(i);
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === 92) this.escaped = true;
        else if (c === 34) this.inString = false;
      } else if (c === 34) this.inString = true;
      else if (c === 123 || c === 91) this.depth++;
      else if (c === 125 || c === 93) {
        this.depth--;
        if (this.depth === 0) return true;
      }
    }
    return false;
  }
}

function counted(path: string, progress: ReadProgress): AsyncIterable<Buffer> {
  const stream = createReadStream(path);
  stream.on('data', (b) => {
    progress.bytes += b.length;
  });
  return stream as AsyncIterable<Buffer>;
}

function header(meta: TableMeta, names: string[], path: string): ColumnMeta[] {
  if (names.length === 0 || names.some((n) => n === ''))
    throw new BulkError('INVALID_ROW', `${path}: the header row must name every column`, {
      table: meta.displayName,
    });
  if (new Set(names).size !== names.length)
    throw new BulkError('INVALID_ROW', `${path}: the header row names a column twice`, {
      table: meta.displayName,
    });
  return names.map((n) => columnOf(meta, n));
}

/**
 * Rows of a CSV file as Postgres's COPY CSV writes it: a header row of column names; an unquoted
 * empty field is NULL, a quoted one ("") the empty string. Streamed: memory holds one record.
 */
async function* csvRows(
  path: string,
  meta: TableMeta,
  progress: ReadProgress,
): AsyncGenerator<Row> {
  const parser = csvParser({
    bom: true,
    relax_column_count: false,
    record_delimiter: ['\r\n', '\n'],
    cast: (value, ctx) => (value === '' && !ctx.quoting ? null : value) as string,
  });
  const source = createReadStream(path);
  source.on('data', (b) => {
    progress.bytes += b.length;
  });
  source.on('error', (err) => parser.destroy(err));
  source.pipe(parser);
  let cols: ColumnMeta[] | undefined;
  try {
    for await (const record of parser as AsyncIterable<(string | null)[]>) {
      if (!cols) {
        cols = header(
          meta,
          record.map((n) => n ?? ''),
          path,
        );
        continue;
      }
      const row: Row = {};
      for (let j = 0; j < cols.length; j++) {
        const col = cols[j]!;
        setOwn(row, col.name, fromTextField(col, record[j] ?? null));
      }
      progress.rows++;
      yield row;
    }
  } catch (err) {
    if (err instanceof BulkError) throw err;
    // csv-parse ends its messages with the field's text (`..., value is "..."`): row values
    // stay out of messages.
    const msg = String((err as Error)?.message ?? err)
      .replace(/,? value is ".*$/s, '')
      .replace(/got ".*" at line/s, 'got another character at line');
    throw new BulkError('INVALID_ROW', `${path}: ${msg}`, {
      table: meta.displayName,
      cause: err,
    });
  } finally {
    source.destroy();
  }
  if (!cols) throw new BulkError('INVALID_ROW', `${path}: empty file, expected a header row`);
}

/**
 * Rows of an NDJSON file: one JSON object per record (blank lines skipped). Values are read
 * exactly (core/ndjson.ts): numbers keep their digits, json values their JSON text. A record
 * starts on its own line and may span lines (a json value's whitespace); messages name the
 * line it starts on.
 */
async function* ndjsonRows(
  path: string,
  meta: TableMeta,
  progress: ReadProgress,
): AsyncGenerator<Row> {
  let n = 0;
  let text = '';
  let first = 0;
  let framer: JsonFramer | undefined;
  const cols = new Map<string, ColumnMeta>();
  const colOf = (k: string) => {
    let c = cols.get(k);
    if (!c) {
      c = columnOf(meta, k);
      cols.set(k, c);
    }
    return c;
  };
  for await (let line of lines(counted(path, progress))) {
    n++;
    if (n === 1 && line.charCodeAt(0) === 0xfeff) line = line.slice(1); // a UTF-8 BOM
    if (text === '') {
      if (line.trim() === '') continue;
      first = n;
      text = line;
    } else {
      text += `\n${line}`;
      if (text.length > MAX_RECORD)
        throw new BulkError(
          'INVALID_ROW',
          `${path} line ${first}: a record longer than ${MAX_RECORD} characters (an object that never closes?)`,
          { table: meta.displayName },
        );
      // A record spanning lines is scanned once it has closed.
      if (!framer!.feed(line)) continue;
    }
    const where = `${path} line ${first}`;
    let rec: ReturnType<typeof scanObject>;
    try {
      rec = scanObject(text, 0);
      if (skipWs(text, rec.end) !== text.length)
        throw new JsonSyntaxError('more after the object', rec.end);
    } catch (err) {
      if (err instanceof JsonSyntaxError && err.incomplete && framer === undefined) {
        // The record goes on: follow its brackets from here, line by line.
        framer = new JsonFramer();
        framer.feed(text);
        continue;
      }
      throw new BulkError(
        'INVALID_ROW',
        `${where}: ${err instanceof JsonSyntaxError ? `not a JSON object (${err.message})` : 'not valid JSON'}`,
        { table: meta.displayName },
      );
    }
    text = '';
    framer = undefined;
    const row: Row = {};
    for (const [k, f] of rec.fields) {
      const col = colOf(k);
      try {
        setOwn(row, k, fromJsonField(col, f));
      } catch (err) {
        // (Never the value: messages name file line and column.)
        throw new BulkError(
          'INVALID_VALUE',
          `${where}: column ${col.name}: ${err instanceof JsonFieldProblem ? err.message : 'not valid JSON'}`,
          { table: meta.displayName, column: col.name },
        );
      }
    }
    progress.rows++;
    yield row;
  }
  if (text !== '')
    throw new BulkError(
      'INVALID_ROW',
      `${path} line ${first}: the file ends inside a JSON object`,
      {
        table: meta.displayName,
      },
    );
}

/** The rows of a CSV or NDJSON file, streamed, with values shaped for the table's columns. */
export function readRows(
  path: string,
  format: FileFormat,
  meta: TableMeta,
  progress: ReadProgress,
): AsyncGenerator<Row> {
  return format === 'csv' ? csvRows(path, meta, progress) : ndjsonRows(path, meta, progress);
}
