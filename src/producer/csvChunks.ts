import { parse as parseCsv } from 'csv-parse/sync';
import { BulkError } from '../core/errors.js';

/**
 * CSV split into chunks of whole records without parsing a field: a byte scan that only tracks
 * whether it is inside quotes (`"` toggles; an escaped `""` toggles twice), so a newline inside
 * a quoted field never ends a record. Postgres parses the fields (COPY ... CSV); the scan only
 * finds where records end, counts them, and refuses what COPY would silently misread: a record
 * that is `\.` alone (COPY's end-of-data marker, which would drop every record after it).
 */

export interface CsvChunk {
  /** The chunk's records, as bytes of the file (UTF-8), each ending with its newline. */
  data: Buffer;
  /** Records in it. */
  records: number;
  /** File line (1-based, as an editor counts) of its first record. */
  firstLine: number;
  /** File line its last record ends on. */
  lastLine: number;
}

/** The longest record (or header) the scan holds: past it the file is refused, not buffered. */
export const MAX_RECORD_BYTES = 64 * 1024 * 1024;

export interface CsvSplitOptions {
  /** Records per chunk. */
  batchSize: number;
  /** Longest record. Default MAX_RECORD_BYTES. */
  maxRecordBytes?: number;
  /** Byte of the field delimiter (`,` or a tab); only quotes and newlines matter to the scan. */
  quote?: number;
}

const NL = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const LF = Buffer.from('\n');

/**
 * Scan `buf` from `from` for the end of records; returns the offsets just past each record's
 * newline, and the quote state at the end. `inQuote`: the state at `from`. Linear: the next
 * quote and the next newline are each searched once per occurrence.
 */
export function recordEnds(
  buf: Buffer,
  from: number,
  inQuote: boolean,
  quote = QUOTE,
): { ends: number[]; inQuote: boolean } {
  const ends: number[] = [];
  let i = from;
  let q = inQuote;
  // The next quote and newline at or after i (-1: none left; -2: not searched yet).
  let nq = -2;
  let nl = -2;
  while (i < buf.length) {
    if (nq !== -1 && nq < i) nq = buf.indexOf(quote, i);
    if (q) {
      if (nq === -1) return { ends, inQuote: true };
      q = false;
      i = nq + 1;
      continue;
    }
    if (nl !== -1 && nl < i) nl = buf.indexOf(NL, i);
    if (nq !== -1 && (nl === -1 || nq < nl)) {
      q = true;
      i = nq + 1;
      continue;
    }
    if (nl === -1) return { ends, inQuote: false };
    ends.push(nl + 1);
    i = nl + 1;
  }
  return { ends, inQuote: q };
}

/** Newlines in `buf` between `from` and `to` (a record's physical lines, less one). */
function newlines(buf: Buffer, from: number, to: number): number {
  let n = 0;
  for (let i = buf.indexOf(NL, from); i !== -1 && i < to; i = buf.indexOf(NL, i + 1)) n++;
  return n;
}

/**
 * Whether the record `buf[from, to)` starts with `\.` and a line end: COPY's end-of-data marker
 * (a carriage return after it ends the data too, whatever follows).
 */
function isEndMarker(buf: Buffer, from: number, to: number): boolean {
  if (to - from < 2 || buf[from] !== 0x5c || buf[from + 1] !== 0x2e) return false;
  return to - from === 2 || buf[from + 2] === NL || buf[from + 2] === CR;
}

/**
 * Chunks of `batchSize` records from a stream of CSV bytes, starting at file line `firstLine`
 * (the line after the header). The last record may lack its newline: one is added. Memory
 * holds one chunk and the record being read.
 */
export async function* csvChunks(
  source: AsyncIterable<Buffer>,
  options: CsvSplitOptions & { firstLine: number; path: string },
): AsyncGenerator<CsvChunk> {
  const { batchSize } = options;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let records = 0;
  let line = options.firstLine;
  let chunkLine = line;
  // The unfinished record: pieces of earlier buffers (scanned already), joined once it ends.
  let carry: Buffer[] = [];
  let carryBytes = 0;
  let inQuote = false;
  const maxRecord = options.maxRecordBytes ?? MAX_RECORD_BYTES;
  // Records that follow one another in one buffer are kept as one run, not one piece each.
  let run: Buffer | undefined;
  let runStart = 0;
  let runEnd = 0;
  const endRun = () => {
    if (run) pending.push(run.subarray(runStart, runEnd));
    run = undefined;
  };
  const take = (): CsvChunk => {
    endRun();
    const data = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    const out = { data, records, firstLine: chunkLine, lastLine: line - 1 };
    pending = [];
    pendingBytes = 0;
    records = 0;
    chunkLine = line;
    return out;
  };
  const push = (buf: Buffer, from: number, to: number) => {
    if (isEndMarker(buf, from, to))
      throw new BulkError(
        'INVALID_ROW',
        `${options.path} line ${line}: a record that starts with \\. and a line end ends COPY data in Postgres (the rows after it would be lost): quote it ("\\.") to load it as a value`,
      );
    // A record ending in CRLF is given to COPY ending in LF: COPY wants one line ending per
    // file, and files mix them (a CRLF inside quotes is data, and stays).
    const crlf = to - from >= 2 && buf[to - 2] === CR && buf[to - 1] === NL;
    const end = crlf ? to - 2 : to;
    if (run !== buf || runEnd !== from) {
      endRun();
      run = buf;
      runStart = from;
    }
    runEnd = end;
    pendingBytes += end - from;
    if (crlf) {
      endRun();
      pending.push(LF);
      pendingBytes += 1;
    }
    records++;
    line += newlines(buf, from, to);
  };
  for await (const chunk of source) {
    // Only the new bytes are scanned: the quote state carries the scan across pieces.
    const r = recordEnds(chunk, 0, inQuote, options.quote);
    inQuote = r.inQuote;
    let start = 0;
    for (const end of r.ends) {
      if (carry.length > 0) {
        const rec = Buffer.concat([...carry, chunk.subarray(0, end)]);
        carry = [];
        carryBytes = 0;
        push(rec, 0, rec.length);
      } else push(chunk, start, end);
      start = end;
      if (records >= batchSize) yield take();
    }
    if (start < chunk.length) {
      // Copy the tail: it must not pin the whole piece it came from.
      carry.push(Buffer.from(chunk.subarray(start)));
      carryBytes += chunk.length - start;
      if (carryBytes > maxRecord)
        throw new BulkError(
          'INVALID_ROW',
          `${options.path} line ${line}: a record longer than ${maxRecord} bytes${inQuote ? ' (a quote that never closes?)' : ''}`,
        );
    }
  }
  if (carryBytes > 0) {
    if (inQuote)
      throw new BulkError(
        'INVALID_ROW',
        `${options.path} line ${line}: the file ends inside a quoted field`,
      );
    const last = Buffer.concat([...carry, Buffer.from('\n')]);
    push(last, 0, last.length);
  }
  if (records > 0) yield take();
}

/**
 * The column names of a CSV stream (its first record, parsed as CSV: names may be quoted) and
 * the rest of the stream, starting at the line after it. Without a header, `columns` names them.
 */
export async function csvHead(
  source: AsyncIterable<Buffer>,
  o: {
    header: boolean;
    columns: string[] | undefined;
    path: string;
    delimiter?: string | undefined;
  },
): Promise<{
  columns: string[];
  body: AsyncIterable<Buffer>;
  firstLine: number;
  /** The header record as in the file (BOM left out, its line end kept); none without one. */
  header?: Buffer;
}> {
  const it = source[Symbol.asyncIterator]();
  if (!o.header) {
    if (!o.columns)
      throw new BulkError('INVALID_OPTION', `${o.path}: without a header row, name the columns`);
    // A UTF-8 BOM is the file's, not the first field's.
    let first = true;
    async function* noBom(): AsyncGenerator<Buffer> {
      for (;;) {
        const next = await it.next();
        if (next.done) return;
        let b = next.value;
        if (first) {
          first = false;
          if (b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) b = b.subarray(3);
        }
        yield b;
      }
    }
    return { columns: o.columns, body: noBom(), firstLine: 1 };
  }
  const pieces: Buffer[] = [];
  let size = 0;
  let end = -1;
  let inQuote = false;
  let done = false;
  while (end === -1) {
    const next = await it.next();
    let piece: Buffer;
    if (next.done) {
      if (size === 0)
        throw new BulkError('INVALID_ROW', `${o.path}: empty file, expected a header row`);
      done = true;
      piece = Buffer.from('\n');
    } else piece = next.value;
    // Only the new piece is scanned, from the quote state the earlier ones left.
    const scanned = recordEnds(piece, 0, inQuote);
    inQuote = scanned.inQuote;
    if (scanned.ends.length > 0) end = size + scanned.ends[0]!;
    pieces.push(piece);
    size += piece.length;
    if (end === -1 && done)
      throw new BulkError('INVALID_ROW', `${o.path} line 1: the header never ends`);
    if (end === -1 && size > 1 << 20)
      throw new BulkError(
        'INVALID_ROW',
        `${o.path} line 1: a header longer than 1 MB${inQuote ? ' (a quote that never closes?)' : ''}`,
      );
  }
  const buf = Buffer.concat(pieces, size);
  let headerBytes = buf.subarray(0, end);
  if (headerBytes[0] === 0xef && headerBytes[1] === 0xbb && headerBytes[2] === 0xbf)
    headerBytes = headerBytes.subarray(3); // a UTF-8 BOM
  let names: string[];
  try {
    names =
      (
        parseCsv(headerBytes, {
          relax_column_count: true,
          delimiter: o.delimiter ?? ',',
        }) as string[][]
      )[0] ?? [];
  } catch {
    throw new BulkError('INVALID_ROW', `${o.path} line 1: the header is not valid CSV`);
  }
  if (names.length === 0 || names.some((n) => n === ''))
    throw new BulkError('INVALID_ROW', `${o.path} line 1: the header must name every column`);
  // Given columns name the table columns the file's go to, in order: the header's are replaced.
  if (o.columns && o.columns.length !== names.length)
    throw new BulkError(
      'INVALID_OPTION',
      `${o.path}: ${o.columns.length} columns given for a header of ${names.length} (${names.join(', ')})`,
    );
  if (o.columns) names = o.columns;
  const rest = buf.subarray(end);
  const headerLines = newlines(buf, 0, end);
  async function* body(): AsyncGenerator<Buffer> {
    if (rest.length > 0) yield rest;
    for (;;) {
      const next = await it.next();
      if (next.done) return;
      yield next.value;
    }
  }
  return { columns: names, body: body(), firstLine: 1 + headerLines, header: headerBytes };
}
