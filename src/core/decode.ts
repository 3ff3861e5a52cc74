import pg from 'pg';
import { parse as parseArray } from 'postgres-array';
import type { ColumnMeta } from './meta.js';

/** How rows read back are shaped. The defaults are node-postgres's. */
export interface DecodeOptions {
  /** 'date' (pg's default) gives Date objects (millisecond precision); 'string' keeps Postgres's text, microseconds included. */
  timestamps?: 'date' | 'string';
}

export type Decoder = (text: string | null) => unknown;

const identity = (s: string) => s;

function scalarParser(
  oid: number,
  col: { kind: string },
  opts: DecodeOptions,
): (s: string) => unknown {
  if (opts.timestamps === 'string' && (col.kind === 'timestamp' || col.kind === 'date'))
    return identity;
  return pg.types.getTypeParser(oid, 'text') as (s: string) => unknown;
}

/**
 * The decoder of one column, from Postgres's text form (what COPY TO and text-format results
 * carry) to the value node-postgres would give, using pg's own type parsers so that user
 * overrides (pg.types.setTypeParser) apply. Domains decode as their base type; arrays of enums
 * and domains decode as arrays, which pg alone leaves as strings.
 */
export function decoderFor(col: ColumnMeta, opts: DecodeOptions = {}): Decoder {
  if (col.isArray) {
    const elem = scalarParser(col.elemOid, { kind: col.elemKind }, opts);
    return (s) => (s === null ? null : parseArray(s, elem));
  }
  const p = scalarParser(col.baseOid, col, opts);
  return (s) => (s === null ? null : p(s));
}

/** pg's per-query type config that returns every value as its raw text, for us to decode by column. */
export const RAW_TEXT_TYPES = {
  getTypeParser: () => identity,
};
