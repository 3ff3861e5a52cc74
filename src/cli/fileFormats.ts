import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { extname } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip } from 'node:zlib';
import { parse as csvParser } from 'csv-parse';
import { type CsvDialect, isCsvNull } from '../core/csvDialect.js';
import { BulkError } from '../core/errors.js';
import { JsonSyntaxError, scanObject, skipWs } from '../core/jsonScan.js';
import { type ColumnMeta, columnOf, type TableMeta } from '../core/meta.js';
import { fromJsonField, fromTextField, JsonFieldProblem } from '../core/ndjson.js';
import { setOwn } from '../core/rows.js';
import type { Row } from '../core/signals.js';

export type FileFormat = 'csv' | 'tsv' | 'ndjson' | 'json';

const FORMATS: Record<string, FileFormat> = {
  csv: 'csv',
  tsv: 'tsv',
  tab: 'tsv',
  ndjson: 'ndjson',
  jsonl: 'ndjson',
  json: 'json',
};

/** The format named by --format, else by the file's extension (under a .gz). */
export function fileFormat(path: string, flag: string | undefined): FileFormat {
  if (flag !== undefined) {
    const f = FORMATS[flag.toLowerCase()];
    if (!f)
      throw new BulkError(
        'INVALID_OPTION',
        `--format must be csv, tsv, ndjson (or jsonl) or json, got ${JSON.stringify(flag)}`,
      );
    return f;
  }
  if (path === '-')
    throw new BulkError('INVALID_OPTION', 'reading standard input (-) needs --format');
  const f = FORMATS[extname(path.replace(/\.gz$/i, '')).slice(1).toLowerCase()];
  if (!f)
    throw new BulkError(
      'INVALID_OPTION',
      `cannot tell the format of ${path} from its extension: name it .csv, .tsv, .ndjson, .jsonl or .json (optionally .gz), or pass --format`,
    );
  return f;
}

/** Whether a file is gzip-compressed: by its name (.gz). */
export function isGzip(path: string): boolean {
  return /\.gz$/i.test(path);
}

/** What to read and how: the file (or - for standard input), its format and CSV dialect. */
export interface InputSpec {
  path: string;
  format: FileFormat;
  gzip: boolean;
  /** CSV and TSV: delimiter and NULL text (checkCsvDialect'd; TSV's delimiter is a tab). */
  csv: CsvDialect;
  /** CSV and TSV: the first record names the columns. */
  header: boolean;
  /**
   * CSV and TSV: the table columns the file's columns go to, in file order (a header's names
   * replaced; required without a header). JSON formats: the keys loaded (others ignored).
   */
  columns: string[] | undefined;
}

/** The name messages give the input. */
export function inputName(spec: InputSpec): string {
  return spec.path === '-' ? 'stdin' : spec.path;
}

/**
 * The input's bytes, decompressed when gzip; `progress.bytes` counts what was read from the
 * file itself (compressed), to compare with its size.
 */
export function openInput(spec: InputSpec, progress: ReadProgress): AsyncIterable<Buffer> {
  const raw: Readable = spec.path === '-' ? process.stdin : createReadStream(spec.path);
  // Bytes are counted as they pass, never with a 'data' listener: that would start the
  // stream flowing before its reader is there, and the first pieces would be lost.
  const count = new Transform({
    transform(chunk: Buffer, _enc, done) {
      progress.bytes += chunk.length;
      done(null, chunk);
    },
  });
  raw.on('error', (err) => count.destroy(err));
  if (!spec.gzip) return raw.pipe(count) as AsyncIterable<Buffer>;
  const gunzip = createGunzip();
  count.on('error', (err) => gunzip.destroy(err));
  const out = count.pipe(gunzip);
  raw.pipe(count);
  return (async function* () {
    try {
      for await (const b of out) yield b as Buffer;
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      if (code.startsWith('Z_'))
        throw new BulkError(
          'FILE_ERROR',
          `${inputName(spec)}: not a gzip file, or a damaged one (${(err as Error).message})`,
        );
      throw err;
    } finally {
      raw.destroy();
    }
  })();
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
  let partsLength = 0;
  for await (const chunk of chunks) {
    const text = decoder.write(chunk);
    let start = 0;
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      parts.push(text.slice(start, nl));
      yield parts.length === 1 ? parts[0]! : parts.join('');
      parts = [];
      partsLength = 0;
      start = nl + 1;
    }
    if (start < text.length) {
      parts.push(text.slice(start));
      partsLength += text.length - start;
      if (partsLength > MAX_RECORD)
        throw new BulkError(
          'INVALID_ROW',
          `a line longer than ${MAX_RECORD} characters (is it NDJSON, one object per line?)`,
        );
    }
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
 * Rows of a CSV (or TSV) file as Postgres's COPY CSV reads it: a header row of column names
 * unless `header` is off; an unquoted field equal to the NULL text (default: empty) is NULL,
 * a quoted one never is. Streamed: memory holds one record.
 */
async function* csvRows(
  spec: InputSpec,
  meta: TableMeta,
  progress: ReadProgress,
  onRecord: RecordHook | undefined,
): AsyncGenerator<Row> {
  const path = inputName(spec);
  const parser = csvParser({
    bom: true,
    relax_column_count: false,
    record_delimiter: ['\r\n', '\n'],
    delimiter: spec.csv.delimiter ?? ',',
    info: onRecord !== undefined,
    cast: (value, ctx) => (isCsvNull(spec.csv, value, ctx.quoting) ? null : value) as string,
  });
  const source = openInput(spec, progress);
  const feed = (async () => {
    // Leaving the loop (a parser destroyed because its reader stopped) closes the source.
    for await (const b of source) {
      if (parser.destroyed) return;
      if (!parser.write(b)) await Promise.race([once(parser, 'drain'), once(parser, 'close')]);
    }
    if (!parser.destroyed) parser.end();
  })();
  feed.catch((err) => parser.destroy(err));
  let lastLine = 0;
  let cols: ColumnMeta[] | undefined =
    spec.header || !spec.columns ? undefined : header(meta, spec.columns, path);
  if (!spec.header && !cols)
    throw new BulkError(
      'INVALID_OPTION',
      `${path}: without a header row, name the columns (--columns)`,
    );
  try {
    for await (const item of parser as AsyncIterable<
      (string | null)[] | { record: (string | null)[]; info: { lines: number } }
    >) {
      const record = Array.isArray(item) ? item : item.record;
      if (!cols) {
        if (!Array.isArray(item)) lastLine = item.info.lines;
        const names = record.map((n) => n ?? '');
        if (spec.columns && spec.columns.length !== names.length)
          throw new BulkError(
            'INVALID_OPTION',
            `${path}: --columns names ${spec.columns.length} columns and the header ${names.length}`,
          );
        cols = header(meta, spec.columns ?? names, path);
        continue;
      }
      const row: Row = {};
      for (let j = 0; j < cols.length; j++) {
        const col = cols[j]!;
        setOwn(row, col.name, fromTextField(col, record[j] ?? null));
      }
      if (onRecord && !Array.isArray(item)) {
        // info.lines is where the record ended: it started after the previous one.
        onRecord(progress.rows, lastLine + 1);
        lastLine = item.info.lines;
      }
      progress.rows++;
      yield row;
    }
  } catch (err) {
    // A file that cannot be read stays a file error (FILE_ERROR in the CLI), not a bad row.
    if (err instanceof BulkError || (err as { syscall?: unknown }).syscall) throw err;
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
    parser.destroy();
  }
  if (!cols) throw new BulkError('INVALID_ROW', `${path}: empty file, expected a header row`);
}

/** Told each record's index and the file line it starts on (for messages after the load). */
export type RecordHook = (index: number, line: number) => void;

/** A JSON object's text scanned (INVALID_ROW naming `where` when it is not one). */
function scanRecord(
  text: string,
  where: string,
  table: string | undefined,
): ReturnType<typeof scanObject> {
  try {
    const rec = scanObject(text, 0);
    if (skipWs(text, rec.end) !== text.length)
      throw new JsonSyntaxError('more after the object', rec.end);
    return rec;
  } catch (err) {
    throw new BulkError(
      'INVALID_ROW',
      `${where}: ${err instanceof JsonSyntaxError ? `not a JSON object (${err.message})` : 'not valid JSON'}`,
      { table },
    );
  }
}

/** A JSON object's fields as a row: keys are columns (only `pick`'s, when given). */
function rowOfFields(
  fields: ReturnType<typeof scanObject>['fields'],
  where: string,
  meta: TableMeta,
  colOf: (k: string) => ColumnMeta,
  pick: Set<string> | undefined,
): Row {
  const row: Row = {};
  for (const [k, f] of fields) {
    if (pick && !pick.has(k)) continue;
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
  return row;
}

/** Columns by name, looked up once each. */
function columnCache(meta: TableMeta): (k: string) => ColumnMeta {
  const cols = new Map<string, ColumnMeta>();
  return (k) => {
    let c = cols.get(k);
    if (!c) {
      c = columnOf(meta, k);
      cols.set(k, c);
    }
    return c;
  };
}

/**
 * Rows of an NDJSON file: one JSON object per record (blank lines skipped). Values are read
 * exactly (core/ndjson.ts): numbers keep their digits, json values their JSON text. A record
 * starts on its own line and may span lines (a json value's whitespace); messages name the
 * line it starts on.
 */
async function* ndjsonRecords(
  spec: InputSpec,
  progress: ReadProgress,
  table: string | undefined,
  lenient: boolean,
): AsyncGenerator<JsonRecord> {
  const path = inputName(spec);
  let n = 0;
  let text = '';
  let first = 0;
  let framer: JsonFramer | undefined;
  for await (let line of lines(openInput(spec, progress))) {
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
          { table },
        );
      // A record spanning lines is scanned once it has closed.
      if (!framer!.feed(line)) continue;
    }
    const where = `${path} line ${first}`;
    let rec: ReturnType<typeof scanObject> | undefined;
    try {
      rec = scanObject(text, 0);
    } catch (err) {
      if (err instanceof JsonSyntaxError && err.incomplete && framer === undefined) {
        // The record goes on: follow its brackets from here, line by line.
        framer = new JsonFramer();
        framer.feed(text);
        continue;
      }
    }
    const whole = text;
    text = '';
    framer = undefined;
    // Not an object, or more after it: scanRecord says which, naming the line.
    let bad: BulkError | undefined;
    try {
      if (rec === undefined || skipWs(whole, rec.end) !== whole.length)
        rec = scanRecord(whole, where, table);
    } catch (err) {
      if (!lenient) throw err;
      bad = err as BulkError;
    }
    yield bad || !rec
      ? { fields: new Map(), line: first, text: whole, ...(bad ? { bad } : {}) }
      : { fields: rec.fields, line: first, text: whole };
  }
  if (text !== '')
    throw new BulkError(
      'INVALID_ROW',
      `${path} line ${first}: the file ends inside a JSON object`,
      {
        table,
      },
    );
}

/**
 * Rows of a JSON file holding one array of objects (`[{...}, {...}]`, as many tools export),
 * streamed: each object is cut out by a scan that follows strings and brackets (memory holds
 * one object), then read as an NDJSON record is. Messages name the line an object starts on.
 */
async function* jsonArrayRecords(
  spec: InputSpec,
  progress: ReadProgress,
  table: string | undefined,
  lenient: boolean,
): AsyncGenerator<JsonRecord> {
  const path = inputName(spec);
  const bad = (line: number, what: string) =>
    new BulkError('INVALID_ROW', `${path} line ${line}: ${what}`, { table });
  const decoder = new StringDecoder('utf8');
  // before: the '['; item: before an object or ']'; inside: in an object; after: ',' or ']'
  let state: 'before' | 'item' | 'inside' | 'after' | 'end' = 'before';
  let line = 1;
  let first = 0;
  let depth = 0;
  let inString = false;
  let escaped = false;
  let parts: string[] = [];
  let size = 0;
  let bom = true;
  let afterComma = false;
  const ws = (c: number) => c === 32 || c === 9 || c === 10 || c === 13;
  for await (const chunk of openInput(spec, progress)) {
    let t = decoder.write(chunk);
    if (bom && t.length > 0) {
      bom = false;
      if (t.charCodeAt(0) === 0xfeff) t = t.slice(1);
    }
    let start = 0;
    for (let i = 0; i < t.length; i++) {
      const c = t.charCodeAt(i);
      if (state === 'inside') {
        if (c === 10) line++;
        if (inString) {
          if (escaped) escaped = false;
          else if (c === 92) escaped = true;
          else if (c === 34) inString = false;
          continue;
        }
        if (c === 34) inString = true;
        else if (c === 123 || c === 91) depth++;
        else if (c === 125 || c === 93) {
          if (--depth > 0) continue;
          parts.push(t.slice(start, i + 1));
          const text = parts.length === 1 ? parts[0]! : parts.join('');
          parts = [];
          size = 0;
          let fields: JsonRecord['fields'];
          try {
            fields = scanRecord(text, `${path} line ${first}`, table).fields;
          } catch (bad) {
            if (!lenient) throw bad;
            yield { fields: new Map(), line: first, text, bad: bad as BulkError };
            state = 'after';
            continue;
          }
          yield { fields, line: first, text };
          state = 'after';
        }
        continue;
      }
      if (c === 10) line++;
      if (ws(c)) continue;
      if (state === 'before') {
        if (c !== 91) throw bad(line, 'a JSON file must hold one array of objects ([{...}, ...])');
        state = 'item';
      } else if (state === 'item' || state === 'after') {
        if (c === 93 && !afterComma) state = 'end';
        else if (state === 'after' && c === 44) {
          state = 'item';
          afterComma = true;
        } else if (state === 'item' && c === 123) {
          state = 'inside';
          afterComma = false;
          depth = 1;
          first = line;
          start = i;
        } else throw bad(line, state === 'item' ? 'expected an object' : "expected ',' or ']'");
      } else throw bad(line, 'more after the array');
    }
    if (state === 'inside') {
      parts.push(t.slice(start));
      size += t.length - start;
      if (size > MAX_RECORD)
        throw bad(first, `an object longer than ${MAX_RECORD} characters (one that never closes?)`);
    }
  }
  if ((state as string) !== 'end')
    throw bad(
      state === 'inside' ? first : line,
      state === 'before' ? 'empty file, expected a JSON array' : 'the file ends inside the array',
    );
}

/** One JSON object of a file: its fields (exact text) and the line it starts on. */
export interface JsonRecord {
  fields: ReturnType<typeof scanObject>['fields'];
  line: number;
  /** The record's text, as in the file. */
  text: string;
  /** Lenient reading: why this record is not a JSON object (its fields are then empty). */
  bad?: BulkError;
}

/** The objects of an NDJSON or JSON-array file, in order. */
export function jsonRecords(
  spec: InputSpec,
  progress: ReadProgress,
  table?: string,
  lenient = false,
): AsyncGenerator<JsonRecord> {
  return spec.format === 'json'
    ? jsonArrayRecords(spec, progress, table, lenient)
    : ndjsonRecords(spec, progress, table, lenient);
}

/** Rows of an NDJSON or JSON-array file: each object's keys are columns. */
async function* jsonRows(
  spec: InputSpec,
  meta: TableMeta,
  progress: ReadProgress,
  onRecord: RecordHook | undefined,
  onBad: BadHook | undefined,
): AsyncGenerator<Row> {
  const colOf = columnCache(meta);
  const pick = spec.columns ? new Set(spec.columns) : undefined;
  const path = inputName(spec);
  for await (const r of jsonRecords(spec, progress, meta.displayName, onBad !== undefined)) {
    if (r.bad) {
      onBad!(r.bad, r.line);
      continue;
    }
    let row: Row;
    try {
      row = rowOfFields(r.fields, `${path} line ${r.line}`, meta, colOf, pick);
    } catch (err) {
      if (!onBad || !(err instanceof BulkError)) throw err;
      onBad(err, r.line);
      continue;
    }
    onRecord?.(progress.rows, r.line);
    progress.rows++;
    yield row;
  }
}

/** Told a record a skipping read left out (JSON formats): why, and its file line. */
export type BadHook = (err: BulkError, line: number) => void;

/**
 * The rows of a file, streamed, with values shaped for the table's columns. With `onBad`
 * (JSON formats), a record that is not an object or holds a value its column cannot take is
 * handed to it and left out, instead of stopping the read.
 */
export function readRows(
  spec: InputSpec,
  meta: TableMeta,
  progress: ReadProgress,
  onRecord?: RecordHook,
  onBad?: BadHook,
): AsyncGenerator<Row> {
  switch (spec.format) {
    case 'csv':
    case 'tsv':
      return csvRows(spec, meta, progress, onRecord);
    case 'ndjson':
    case 'json':
      return jsonRows(spec, meta, progress, onRecord, onBad);
  }
}

/**
 * An error's message naming the file line where it happened (`items.csv line 7: ...`), as an
 * editor counts lines, instead of Postgres's COPY line or an input row index.
 */
export function atFileLine(err: BulkError, source: string, line: number | undefined): BulkError {
  if (line === undefined) return err;
  err.line = line;
  let m = err.message.replace(`; line ${line}`, '');
  if (err.row !== undefined) m = m.replace(`, row ${err.row}`, '').replace(`; row ${err.row}`, '');
  err.message = m.startsWith(`${source} line `) ? m : `${source} line ${line}: ${m}`;
  return err;
}
