import pg from 'pg';
import { parse as parseArray } from 'postgres-array';
import { showValue } from '../core/encode.js';
import { BulkError } from '../core/errors.js';
import type { ColumnMeta, ValueKind } from '../core/meta.js';

/**
 * Values between files and the encoder. A CSV field is Postgres's text form of a value (what
 * `COPY ... CSV` writes); an NDJSON field is a JSON value. The core's encoder takes strings for
 * text, numbers, timestamps, dates, uuids, booleans and every other type Postgres parses from
 * text, so most fields pass as they are; only the types whose JS shape differs are converted
 * here: json/jsonb (the JSON value, not its text), bytea (a Buffer) and arrays (a JS array).
 */

const parseBytea = pg.types.getTypeParser(17, 'text') as (s: string) => Buffer;

function bad(col: ColumnMeta, where: string, what: string, value?: string): BulkError {
  return new BulkError('INVALID_VALUE', `${where}: column ${col.name}: ${what}`, {
    column: col.name,
    value: value === undefined ? undefined : showValue(value),
  });
}

function scalarFromText(kind: ValueKind, s: string, col: ColumnMeta, where: string): unknown {
  if (kind === 'json') {
    try {
      return JSON.parse(s);
    } catch {
      throw bad(col, where, 'not valid JSON', s);
    }
  }
  if (kind === 'bytea') return parseBytea(s);
  return s;
}

/** A CSV field (Postgres text form; null for an unquoted empty field) as the encoder takes it. */
export function fromCsvField(col: ColumnMeta, s: string | null, where: string): unknown {
  if (s === null) return null;
  if (col.isArray) {
    if (!s.startsWith('{') && !s.startsWith('[')) throw bad(col, where, 'not an array literal', s);
    return parseArray(s, (e: string) => scalarFromText(col.elemKind, e, col, where));
  }
  return scalarFromText(col.kind, s, col, where);
}

function bytesFromJson(v: unknown, col: ColumnMeta, where: string): unknown {
  if (typeof v === 'string') return parseBytea(v);
  // What JSON.stringify makes of a Buffer: { type: 'Buffer', data: [...] }.
  if (
    v !== null &&
    typeof v === 'object' &&
    (v as { type?: unknown }).type === 'Buffer' &&
    Array.isArray((v as { data?: unknown }).data)
  )
    return Buffer.from((v as { data: number[] }).data);
  throw bad(col, where, 'bytea takes a string (\\x hex) or a serialized Buffer');
}

function elemFromJson(kind: ValueKind, v: unknown, col: ColumnMeta, where: string): unknown {
  if (v === null) return null;
  if (Array.isArray(v) && kind !== 'json') return v.map((x) => elemFromJson(kind, x, col, where));
  return kind === 'bytea' ? bytesFromJson(v, col, where) : v;
}

/** An NDJSON field as the encoder takes it: JSON values as they are, bytea text to Buffers. */
export function fromJsonField(col: ColumnMeta, v: unknown, where: string): unknown {
  if (v === null || v === undefined) return v ?? null;
  if (col.isArray) {
    if (typeof v === 'string') return fromCsvField(col, v, where);
    return Array.isArray(v) ? v.map((x) => elemFromJson(col.elemKind, x, col, where)) : v;
  }
  if (col.kind === 'bytea') return bytesFromJson(v, col, where);
  return v;
}

function jsonScalar(kind: ValueKind, s: string): unknown {
  switch (kind) {
    case 'json':
      return JSON.parse(s);
    case 'bool':
      return s === 't';
    case 'int2':
    case 'int4':
      return Number(s);
    case 'float': {
      // NaN and ±Infinity have no JSON number: they stay strings, which the encoder reads back.
      const n = Number(s);
      return Number.isFinite(n) ? n : s;
    }
    default:
      // int8 and numeric as strings (exact beyond 2^53), timestamps with their microseconds,
      // bytea as \x hex, and every other type in Postgres's own text form.
      return s;
  }
}

/** Postgres's text form of a value (from COPY text output) as an NDJSON value, exactly. */
export function toJsonField(col: ColumnMeta, s: string | null): unknown {
  if (s === null) return null;
  if (col.isArray) return parseArray(s, (e: string) => jsonScalar(col.elemKind, e));
  return jsonScalar(col.kind, s);
}
