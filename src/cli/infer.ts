import { parse as parseCsv } from 'csv-parse';
import { isCsvNull } from '../core/csvDialect.js';
import { BulkError } from '../core/errors.js';
import { quoteIdent } from '../core/ident.js';
import type { JsonSlice } from '../core/jsonScan.js';
import { parseTableName } from '../core/meta.js';
import { type InputSpec, inputName, jsonRecords, openInput } from './fileFormats.js';

/**
 * Column types for `bulkmodel load --create`, inferred from the first rows of a file (as
 * csvkit's `csvsql --create` and DuckDB's `read_csv` do): each column gets the narrowest of
 * integer, bigint, numeric, boolean, date, timestamptz, uuid, jsonb that every non-null value
 * of the sample fits, else text. Only spellings Postgres reads the same way are taken (a value
 * the inferred type would read differently falls back to text): the table accepts what psql's
 * `\copy` of the same file accepts.
 */
export type Inferred =
  | 'integer'
  | 'bigint'
  | 'numeric'
  | 'boolean'
  | 'date'
  | 'timestamptz'
  | 'uuid'
  | 'jsonb'
  | 'text';

const INT = /^[+-]?\d+$/;
const NUMERIC = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE]([+-]?\d+))?$/;
const BOOL = /^(?:t|f|true|false)$/i;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
// Hours, minutes, seconds and offsets in the ranges Postgres takes (an offset up to ±15:59).
const TIMESTAMP =
  /^\d{4}-\d{2}-\d{2}[ T](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?(?:Z|[+-](?:0\d|1[0-5])(?::?[0-5]\d)?)?$/i;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const INT4 = 2_147_483_647n;
const INT8 = 9_223_372_036_854_775_807n;

/** The types a text value fits, narrowest first (one bit each). */
function fitsText(v: string): Set<Inferred> {
  const out = new Set<Inferred>(['text']);
  if (INT.test(v)) {
    const n = BigInt(v);
    const abs = n < 0n ? -n : n;
    if (abs <= INT4) out.add('integer');
    if (abs <= INT8) out.add('bigint');
    out.add('numeric');
  } else {
    // numeric takes exponents within ±1000 only.
    const m = NUMERIC.exec(v);
    if (m && (m[1] === undefined || Math.abs(Number(m[1])) <= 1000)) out.add('numeric');
  }
  if (BOOL.test(v)) out.add('boolean');
  if (DATE.test(v) && validDate(v)) out.add('date');
  if ((DATE.test(v) || TIMESTAMP.test(v)) && validDate(v.slice(0, 10))) out.add('timestamptz');
  if (UUID.test(v)) out.add('uuid');
  const c = v.trimStart()[0];
  // jsonb refuses \u0000 and lone surrogates: any such escape leaves the column text.
  if ((c === '{' || c === '[') && !/\\u(?:0000|[dD][89a-fA-F])/.test(v)) {
    try {
      JSON.parse(v);
      out.add('jsonb');
    } catch {}
  }
  return out;
}

function validDate(v: string): boolean {
  const [y, m, d] = v.split('-').map(Number) as [number, number, number];
  const t = new Date(Date.UTC(y, m - 1, d));
  return t.getUTCFullYear() === y && t.getUTCMonth() === m - 1 && t.getUTCDate() === d;
}

const ORDER: Inferred[] = [
  'boolean',
  'integer',
  'bigint',
  'numeric',
  'date',
  'timestamptz',
  'uuid',
  'jsonb',
  'text',
];

/** One column's evidence: the types every value so far fits. */
class Evidence {
  fits: Set<Inferred> | undefined;
  add(types: Set<Inferred>): void {
    if (!this.fits) this.fits = types;
    else for (const t of this.fits) if (!types.has(t)) this.fits.delete(t);
  }
  get type(): Inferred {
    if (!this.fits) return 'text'; // only NULLs seen
    return ORDER.find((t) => this.fits!.has(t)) ?? 'text';
  }
}

/** A JSON value's types: numbers by their text, strings as CSV text is, others as themselves. */
function fitsJson(f: JsonSlice): Set<Inferred> {
  if (f.type === 'true' || f.type === 'false') return new Set(['boolean', 'text']);
  if (f.type === 'number') {
    const s = fitsText(f.text);
    for (const t of ['boolean', 'date', 'timestamptz', 'uuid', 'jsonb'] as const) s.delete(t);
    return s;
  }
  if (f.type === 'string') {
    const s = fitsText(f.value() as string);
    s.delete('jsonb'); // a string is a string, even one holding JSON
    s.delete('boolean'); // "true" as a string stays text, as a JSON true is a boolean
    for (const t of ['integer', 'bigint', 'numeric'] as const) s.delete(t);
    return s;
  }
  return new Set(['jsonb', 'text']);
}

export interface Inference {
  columns: { name: string; type: Inferred }[];
  rows: number;
}

/** Columns and types from the first `sample` records of the input. */
export async function inferColumns(spec: InputSpec, sample: number): Promise<Inference> {
  if (spec.format === 'csv' || spec.format === 'tsv') return inferCsv(spec, sample);
  return inferJson(spec, sample);
}

async function inferCsv(spec: InputSpec, sample: number): Promise<Inference> {
  const parser = parseCsv({
    bom: true,
    delimiter: spec.csv.delimiter ?? ',',
    record_delimiter: ['\r\n', '\n'],
    relax_column_count: true,
    to: sample + (spec.header ? 1 : 0),
    cast: (value, ctx) => (isCsvNull(spec.csv, value, ctx.quoting) ? null : value) as string,
  });
  const progress = { bytes: 0, rows: 0 };
  const source = openInput(spec, progress);
  const feed = (async () => {
    for await (const b of source) {
      if (parser.destroyed || parser.writableEnded) break;
      parser.write(b);
    }
    if (!parser.writableEnded) parser.end();
  })();
  feed.catch((err) => parser.destroy(err));
  let names: string[] | undefined = spec.header ? undefined : spec.columns;
  const evidence: Evidence[] = [];
  let rows = 0;
  try {
    for await (const rec of parser as AsyncIterable<(string | null)[]>) {
      if (!names) {
        names = rec.map((n) => n ?? '');
        if (spec.columns) names = spec.columns;
        continue;
      }
      rows++;
      rec.forEach((v, j) => {
        evidence[j] ??= new Evidence();
        if (v !== null) evidence[j]!.add(fitsText(v));
      });
    }
  } catch (err) {
    if (err instanceof BulkError || (err as { syscall?: unknown }).syscall) throw err;
    throw new BulkError(
      'INVALID_ROW',
      `${inputName(spec)}: cannot read it as CSV: ${(err as Error).message.replace(/,? value is ".*$/s, '')}`,
    );
  }
  if (!names)
    throw new BulkError('INVALID_ROW', `${inputName(spec)}: empty file, expected a header row`);
  return {
    columns: names.map((name, j) => ({ name, type: evidence[j]?.type ?? 'text' })),
    rows,
  };
}

async function inferJson(spec: InputSpec, sample: number): Promise<Inference> {
  const names: string[] = [];
  const evidence = new Map<string, Evidence>();
  let rows = 0;
  // The records as the load cuts them out; a record that is not an object stops both.
  for await (const { fields } of jsonRecords(spec, { bytes: 0, rows: 0 })) {
    rows++;
    for (const [k, f] of fields) {
      if (spec.columns && !spec.columns.includes(k)) continue;
      let e = evidence.get(k);
      if (!e) {
        e = new Evidence();
        evidence.set(k, e);
        names.push(k);
      }
      if (f.type !== 'null') e.add(fitsJson(f));
    }
    if (rows >= sample) break;
  }
  if (names.length === 0)
    throw new BulkError(
      'INVALID_ROW',
      `${inputName(spec)}: no object with a key in the first ${sample} records`,
    );
  return { columns: names.map((name) => ({ name, type: evidence.get(name)!.type })), rows };
}

/** CREATE TABLE for the inferred columns (names quoted as they are in the file). */
export function createTableSql(table: string, inf: Inference): string {
  const t = parseTableName(table);
  const name = t.schema ? `${quoteIdent(t.schema)}.${quoteIdent(t.name)}` : quoteIdent(t.name);
  const seen = new Set<string>();
  for (const c of inf.columns) {
    if (c.name === '')
      throw new BulkError(
        'INVALID_ROW',
        'every column needs a name in the header to create the table',
      );
    if (Buffer.byteLength(c.name) > 63)
      throw new BulkError(
        'INVALID_ROW',
        `the column name ${JSON.stringify(c.name.slice(0, 20))}… is longer than Postgres's 63 bytes: rename it, or create the table yourself`,
      );
    if (seen.has(c.name))
      throw new BulkError('INVALID_ROW', `the header names ${JSON.stringify(c.name)} twice`);
    seen.add(c.name);
  }
  const cols = inf.columns.map((c) => `  ${quoteIdent(c.name)} ${c.type}`).join(',\n');
  return `CREATE TABLE ${name} (\n${cols}\n)`;
}
