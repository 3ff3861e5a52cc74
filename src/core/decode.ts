import pg from 'pg';
import { parse as parseArray } from 'postgres-array';
import { BulkError } from './errors.js';
import { JsonText } from './jsonText.js';
import type { ColumnMeta } from './meta.js';

/** How rows read back are shaped. The defaults are node-postgres's. */
export interface DecodeOptions {
  /**
   * 'date' (pg's default) gives Date objects (millisecond precision; a value beyond a Date's
   * range, year 275760, is its text); 'string' keeps Postgres's text, microseconds included.
   */
  timestamps?: 'date' | 'string';
  /**
   * 'value' (pg's default): json/jsonb as the JavaScript value JSON.parse gives (numbers past
   * 2^53 or with more digits than a double holds are rounded; a json column's whitespace and
   * duplicate keys are lost). 'text': a JsonText holding Postgres's text exactly, which every
   * write takes back as it is.
   */
  json?: 'value' | 'text';
  /**
   * 'pg' (node-postgres's default): interval as a PostgresInterval, point as { x, y }, circle
   * as { x, y, radius }; 'text': their text, as Postgres writes it. Either writes back exactly
   * in direct mode; through a queue, text does (a payload cannot carry a -0 inside an object).
   */
  objects?: 'pg' | 'text';
}

/** Every type exactly, in shapes any path carries: what the CLI and the queue read with. */
export const EXACT: Readonly<DecodeOptions> = {
  timestamps: 'string',
  json: 'text',
  objects: 'text',
};

const OBJECT_KINDS: ReadonlySet<string> = new Set(['interval', 'point', 'circle']);

const DECODE_VALUES: Record<keyof DecodeOptions, readonly string[]> = {
  timestamps: ['date', 'string'],
  json: ['value', 'text'],
  objects: ['pg', 'text'],
};

/** Check a `decode` option: a misspelt one would silently read the lossy shapes. */
export function resolveDecode(opts: unknown): DecodeOptions {
  if (opts === undefined) return {};
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts))
    throw new BulkError('INVALID_OPTION', 'decode must be an object (for example EXACT)');
  const out: DecodeOptions = {};
  for (const [k, v] of Object.entries(opts)) {
    const allowed = DECODE_VALUES[k as keyof DecodeOptions];
    if (!allowed)
      throw new BulkError(
        'INVALID_OPTION',
        `decode: unknown option ${JSON.stringify(k)} (timestamps, json, objects)`,
      );
    if (v === undefined) continue;
    if (!allowed.includes(v as string))
      throw new BulkError(
        'INVALID_OPTION',
        `decode.${k} must be ${allowed.map((a) => `'${a}'`).join(' or ')}`,
      );
    (out as Record<string, unknown>)[k] = v;
  }
  return out;
}

export type Decoder = (text: string | null) => unknown;

const identity = (s: string) => s;

const jsonText = (s: string) => new JsonText(s);

function scalarParser(
  oid: number,
  col: { kind: string },
  opts: DecodeOptions,
): (s: string) => unknown {
  const isTime = col.kind === 'timestamp' || col.kind === 'date';
  if (opts.timestamps === 'string' && isTime) return identity;
  if (opts.json === 'text' && col.kind === 'json') return jsonText;
  if (opts.objects === 'text' && OBJECT_KINDS.has(col.kind)) return identity;
  const parse = pg.types.getTypeParser(oid, 'text') as (s: string) => unknown;
  if (!isTime) return parse;
  // pg gives an Invalid Date past a Date's range (year 275760): keep the text instead, which
  // can be written back.
  return (s) => {
    const v = parse(s);
    return v instanceof Date && Number.isNaN(v.getTime()) ? s : v;
  };
}

/**
 * The decoder of one column, from Postgres's text form (what COPY TO and text-format results
 * carry) to the value node-postgres would give, using pg's own type parsers so that user
 * overrides (pg.types.setTypeParser) apply. Domains decode as their base type; arrays of enums
 * and domains decode as arrays, which pg alone leaves as strings.
 */
/** What a decoder needs of a column: its type. */
export type ColumnType = Pick<
  ColumnMeta,
  'baseOid' | 'kind' | 'isArray' | 'elemOid' | 'elemKind' | 'elemDelim'
>;

/** A column's type as a queue worker passes it on with the text of returned rows. */
export function columnType(c: ColumnMeta): ColumnType {
  return {
    baseOid: c.baseOid,
    kind: c.kind,
    isArray: c.isArray,
    elemOid: c.elemOid,
    elemKind: c.elemKind,
    ...(c.elemDelim && c.elemDelim !== ',' ? { elemDelim: c.elemDelim } : {}),
  };
}

export function decoderFor(col: ColumnType, opts: DecodeOptions = {}): Decoder {
  if (col.isArray) {
    // Elements split by another delimiter (box: `;`) have no parser here: the array's text.
    if (col.elemDelim && col.elemDelim !== ',') return (s) => s;
    const elem = scalarParser(col.elemOid, { kind: col.elemKind }, opts);
    // An array with lower bounds other than 1 ('[0:2]={7,8,9}') stays its text: a JS array
    // cannot hold the bounds, and the text writes back exactly.
    return (s) => (s === null ? null : s.charCodeAt(0) === 91 ? s : parseArray(s, elem));
  }
  const p = scalarParser(col.baseOid, col, opts);
  return (s) => (s === null ? null : p(s));
}

/** pg's per-query type config that returns every value as its raw text, for us to decode by column. */
export const RAW_TEXT_TYPES = {
  getTypeParser: () => identity,
};
