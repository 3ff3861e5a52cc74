import type { Readable } from 'node:stream';
import { to as copyToStdout } from 'pg-copy-streams';
import { checkDefined, columnList } from '../checks.js';
import type { DbClient } from '../db.js';
import { type DecodeOptions, decoderFor } from '../decode.js';
import { BulkError, fromPgError } from '../errors.js';
import { type ColumnMeta, columnOf, type TableMeta } from '../meta.js';
import { type JsonWriter, jsonWriterFor } from '../ndjson.js';
import { setOwn } from '../rows.js';
import type { Engine } from '../runner.js';
import type { Row, Signals } from '../signals.js';
import { buildCopyOut } from '../sql/copy.js';
import { buildWhere, settingParams, type Where } from '../sql/where.js';

export interface CopyToOptions {
  /** Columns to read, in this order: one name or a list (default: all). */
  columns?: string[] | string;
  /** Structured filter, as for update(). */
  where?: Where;
  /**
   * 'rows' (default): decoded row objects. 'text' or 'csv': the raw COPY output as Buffers (CSV
   * has a header line). 'ndjson': one JSON object per row, as strings, every value exact
   * (see docs/types.md).
   */
  format?: 'rows' | 'text' | 'csv' | 'ndjson';
  signals?: boolean;
}

const ESC: Record<string, string> = {
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
  '\\': '\\',
};

/** Undo COPY text escaping (backslash sequences, octal and hex bytes). */
export function copyUnescape(s: string): string {
  if (s.indexOf('\\') === -1) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\' || i + 1 >= s.length) {
      out += c;
      continue;
    }
    const n = s[++i]!;
    if (n in ESC) out += ESC[n];
    else if (n >= '0' && n <= '7') {
      const m = /^[0-7]{1,3}/.exec(s.slice(i))![0];
      i += m.length - 1;
      out += String.fromCharCode(Number.parseInt(m, 8));
    } else if (n === 'x' && /^[0-9a-fA-F]/.test(s[i + 1] ?? '')) {
      const m = /^[0-9a-fA-F]{1,2}/.exec(s.slice(i + 1))![0];
      i += m.length;
      out += String.fromCharCode(Number.parseInt(m, 16));
    } else out += n;
  }
  return out;
}

/**
 * Split COPY text output into rows, across chunk boundaries, fields found in place (not split
 * into arrays); each field is handed over unescaped (null for \N), and a subclass makes a row.
 */
abstract class CopyTextSplitter<T> {
  private rest = '';
  constructor(private readonly width: number) {}

  /** The first tab at or after the last search's start in the current text (-1: none). */
  private tab = -1;
  private tabFrom = Number.POSITIVE_INFINITY;

  /** The first tab at or after `at`: each search resumes where the last one stopped. */
  private nextTab(text: string, at: number): number {
    if (at < this.tabFrom || (this.tab !== -1 && this.tab < at)) {
      this.tab = text.indexOf('\t', at);
      this.tabFrom = at;
    }
    return this.tab;
  }

  push(chunk: string, out: T[]): void {
    const text = this.rest + chunk;
    this.tabFrom = Number.POSITIVE_INFINITY; // a new text: nothing searched yet
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl === -1) break;
      out.push(this.line(text, start, nl));
      start = nl + 1;
    }
    this.rest = text.slice(start);
  }

  end(): void {
    if (this.rest.length > 0) throw new Error('COPY output ended in the middle of a row');
  }

  protected abstract begin(): void;
  protected abstract field(j: number, text: string | null): void;
  protected abstract finish(): T;

  /** The line of `text` from `start` to `end` (its newline). */
  private line(text: string, start: number, end: number): T {
    const last = this.width - 1;
    let at = start;
    this.begin();
    for (let j = 0; j <= last; j++) {
      const tab = this.nextTab(text, at);
      const stop = j === last ? end : tab;
      if (j === last ? tab !== -1 && tab < end : tab === -1 || tab > end)
        throw new Error(`a COPY output row does not have ${this.width} fields`);
      const f = text.slice(at, stop);
      this.field(j, f === '\\N' ? null : copyUnescape(f));
      at = stop + 1;
    }
    return this.finish();
  }
}

/** COPY text output to decoded rows. */
export class CopyTextParser extends CopyTextSplitter<Row> {
  private readonly decoders: ((s: string | null) => unknown)[];
  private readonly names: string[];
  /** Names a plain assignment sets as an own property (all but "__proto__"). */
  private readonly plain: boolean[];
  private row: Row = {};
  constructor(columns: ColumnMeta[], decode: DecodeOptions) {
    super(columns.length);
    this.decoders = columns.map((c) => decoderFor(c, decode));
    this.names = columns.map((c) => c.name);
    this.plain = this.names.map((n) => n !== '__proto__');
  }
  protected begin(): void {
    this.row = {};
  }
  protected field(j: number, text: string | null): void {
    const v = this.decoders[j]!(text);
    if (this.plain[j]) this.row[this.names[j]!] = v;
    else setOwn(this.row, this.names[j]!, v);
  }
  protected finish(): Row {
    return this.row;
  }
}

/** COPY text output to NDJSON lines (with their newlines): see core/ndjson.ts. */
export class CopyTextToNdjson extends CopyTextSplitter<string> {
  private readonly keys: string[];
  private readonly writers: JsonWriter[];
  private out = '';
  constructor(columns: ColumnMeta[]) {
    super(columns.length);
    this.keys = columns.map((c, j) => `${j === 0 ? '{' : ','}${JSON.stringify(c.name)}:`);
    this.writers = columns.map(jsonWriterFor);
  }
  protected begin(): void {
    this.out = '';
  }
  protected field(j: number, text: string | null): void {
    this.out += this.keys[j]! + this.writers[j]!(text);
  }
  protected finish(): string {
    return `${this.out || '{'}}\n`;
  }
}

/**
 * The values of a copyTo iteration, with its count handed to `onCount` at the end. Closing this
 * iteration early (a consumer that failed, a pipeline torn down) closes the copyTo one too, so that
 * its connection goes back to the pool instead of waiting on a yield forever.
 */
export async function* valuesCounted<T>(
  out: AsyncGenerator<T, { count: number }>,
  onCount: (count: number) => void,
): AsyncGenerator<T, void> {
  let finished = false;
  try {
    for (;;) {
      const r = await out.next();
      if (r.done) {
        finished = true;
        onCount(r.value.count);
        return;
      }
      yield r.value;
    }
  } finally {
    if (!finished) await out.return({ count: 0 });
  }
}

export interface CopyToContext {
  engine: Engine;
  signals: Signals | null;
  decode: DecodeOptions;
  /** The table's metadata, loaded when the iteration starts. */
  meta: () => Promise<TableMeta>;
  operationId: string;
}

function planCopyTo(meta: TableMeta, opts: CopyToOptions) {
  const format = opts.format ?? 'rows';
  if (!['rows', 'text', 'csv', 'ndjson'].includes(format)) {
    throw new BulkError(
      'INVALID_OPTION',
      `format must be 'rows', 'text', 'csv' or 'ndjson', got ${String(format)}`,
      { table: meta.displayName },
    );
  }
  const columns = (
    columnList(opts.columns, 'columns', meta.displayName) ?? meta.columns.map((c) => c.name)
  ).map((n) => columnOf(meta, n));
  if (opts.where !== undefined) checkDefined(opts.where, 'where', meta.displayName);
  const where = buildWhere(meta, opts.where, settingParams, 't');
  const sql = buildCopyOut(meta, columns, where.sql, format === 'csv' ? 'csv' : 'text');
  return { format, columns, where, sql };
}

/** Start COPY TO on a client in a read-only transaction; filter values travel as local settings. */
async function startCopy(client: DbClient, sql: string, values: unknown[]): Promise<Readable> {
  await client.query({ text: 'BEGIN READ ONLY' });
  for (let n = 0; n < values.length; n++) {
    await client.query({
      text: 'SELECT set_config($1, $2, true)',
      values: [`bulkmodel.w${n}`, values[n]],
    });
  }
  const stream = client.query(copyToStdout(sql)) as unknown as Readable;
  // As for COPY FROM: an error after the consumer stopped listening must not crash the process.
  stream.on('error', () => {});
  return stream;
}

/**
 * Stream a table out with COPY TO STDOUT. The client is held until the iteration ends; backpressure
 * comes from the stream (a slow consumer pauses the socket). Breaking out early, or any error,
 * destroys the client instead of returning it to the pool.
 */
export async function* copyToIterate(
  ctx: CopyToContext,
  opts: CopyToOptions,
): AsyncGenerator<Row | Buffer | string, { count: number }> {
  const meta = await ctx.meta();
  const plan = planCopyTo(meta, opts);
  const base = {
    table: meta.displayName,
    operationId: ctx.operationId,
    chunkIndex: -1,
    batchSize: 0,
  };
  const colNames = plan.columns.map((c) => c.name);
  if (ctx.signals)
    await ctx.signals.emitPre('preCopyTo', { ...base, columns: colNames, where: opts.where });
  const client = await ctx.engine.pool.connect();
  const onError = () => {};
  client.on('error', onError);
  let ok = false;
  let count = 0;
  let stream: Readable | undefined;
  try {
    stream = await startCopy(client, plan.sql, plan.where.values);
    if (plan.format === 'rows') {
      const parser = new CopyTextParser(plan.columns, ctx.decode);
      const rows: Row[] = [];
      stream.setEncoding('utf8');
      for await (const chunk of stream) {
        parser.push(chunk as string, rows);
        for (const r of rows) {
          count++;
          yield r;
        }
        rows.length = 0;
      }
      parser.end();
    } else if (plan.format === 'ndjson') {
      const writer = new CopyTextToNdjson(plan.columns);
      const lines: string[] = [];
      stream.setEncoding('utf8');
      for await (const chunk of stream) {
        writer.push(chunk as string, lines);
        if (lines.length === 0) continue;
        count += lines.length;
        // One string per COPY chunk: the consumer writes it as it is.
        yield lines.join('');
        lines.length = 0;
      }
      writer.end();
    } else {
      for await (const chunk of stream) yield chunk as Buffer;
      // Lines are no measure of rows (CSV quotes newlines): Postgres reports the row count.
      count = (stream as unknown as { rowCount: number }).rowCount;
    }
    await client.query({ text: 'COMMIT' });
    ok = true;
  } catch (err) {
    throw fromPgError(err, { table: meta.displayName });
  } finally {
    // Back to the pool without our listener; a destroyed connection keeps it (it may still
    // report its end, and an unheard error event would crash the process).
    if (ok) {
      client.removeListener('error', onError);
      client.release();
    } else {
      stream?.destroy();
      client.release(new Error('copyTo did not finish'));
    }
  }
  if (ctx.signals)
    await ctx.signals.emitPost('postCopyTo', {
      ...base,
      columns: colNames,
      where: opts.where,
      count,
    });
  return { count };
}
