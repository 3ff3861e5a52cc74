import { BulkError } from './errors.js';
import { JsonText } from './jsonText.js';
import type { ColumnMeta, TableMeta, ValueKind } from './meta.js';

/**
 * Values to Postgres text literals. Every write path (INSERT, UPDATE, COPY) starts from the
 * literal Postgres's own input function reads, so one encoder per type serves them all, and a
 * value is checked once, in JS, where its row and column are still known.
 *
 * An encoder returns the literal, or null for SQL NULL. It throws ValueProblem for bad input;
 * the caller wraps it as a BulkError naming table, column and row.
 */
export class ValueProblem extends Error {
  /**
   * @param message says what is wrong without quoting the value (messages travel into logs and
   *   Redis); `shown` is the value, shortened, kept apart (BulkError's `value`).
   */
  constructor(
    message: string,
    readonly shown?: string,
  ) {
    super(message);
  }
}

/** A value as an error may show it when asked to: its first 40 characters. */
export function showValue(v: unknown): string {
  const s = typeof v === 'string' ? v : typeof v === 'bigint' ? `${v}n` : String(v);
  return JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);
}

export type Encoder = (value: unknown) => string | null;

const INT_RANGE: Record<'int2' | 'int4' | 'int8', [bigint, bigint]> = {
  int2: [-32768n, 32767n],
  int4: [-2147483648n, 2147483647n],
  int8: [-9223372036854775808n, 9223372036854775807n],
};

/** The same ranges as numbers, for values that are numbers. */
const INT_NUM_RANGE: Record<'int2' | 'int4', [number, number]> = {
  int2: [Number(INT_RANGE.int2[0]), Number(INT_RANGE.int2[1])],
  int4: [Number(INT_RANGE.int4[0]), Number(INT_RANGE.int4[1])],
};

const INT_TEXT = /^[+-]?\d+$/;
/** Integers written as Postgres writes them, up to 15 digits (always within 2^53). */
const SHORT_INT_TEXT = /^(?:0|-?[1-9]\d{0,14})$/;
/** Numbers as text, for numeric and float columns alike. */
const NUMERIC_TEXT =
  /^\s*[+-]?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|NaN|Infinity|inf)\s*$/i;
/** Boolean text Postgres reads, as files (CSV) carry it; other spellings ('yes', 'on') are refused. */
const BOOL_TEXT = new Map<string, 't' | 'f'>([
  ['t', 't'],
  ['true', 't'],
  ['1', 't'],
  ['f', 'f'],
  ['false', 'f'],
  ['0', 'f'],
]);

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (Buffer.isBuffer(v)) return 'Buffer';
  if (v instanceof Date) return 'Date';
  if (v instanceof JsonText) return 'object'; // a JSON object, to whoever sent it
  return typeof v;
}

function wrong(expected: string, v: unknown): never {
  throw new ValueProblem(`expected ${expected}, got ${typeName(v)}`);
}

/** Text that Postgres can store: no NUL byte, no lone surrogate (which UTF-8 cannot carry). */
export function checkText(s: string): string {
  if (s.indexOf('\u0000') !== -1)
    throw new ValueProblem('text contains a NUL byte (\\u0000), which Postgres cannot store');
  if (!s.isWellFormed())
    throw new ValueProblem('text contains a lone UTF-16 surrogate, which is not valid Unicode');
  return s;
}

function intLiteral(kind: 'int2' | 'int4' | 'int8', v: unknown): string {
  let b: bigint;
  if (typeof v === 'number') {
    if (!Number.isInteger(v))
      throw new ValueProblem('expected an integer, got a fraction', showValue(v));
    if (!Number.isSafeInteger(v))
      throw new ValueProblem(
        'a number beyond 2^53 may have lost precision: pass a BigInt or a string',
        showValue(v),
      );
    if (kind !== 'int8' && (v < INT_NUM_RANGE[kind][0] || v > INT_NUM_RANGE[kind][1])) {
      throw new ValueProblem(`out of range for ${kind}`, showValue(v));
    }
    return String(v);
  }
  if (typeof v === 'string' && SHORT_INT_TEXT.test(v)) {
    // Canonical and short (keys read back from Postgres, CSV fields): no BigInt needed.
    if (kind === 'int8') return v;
    const n = Number(v);
    if (n < INT_NUM_RANGE[kind][0] || n > INT_NUM_RANGE[kind][1])
      throw new ValueProblem(`out of range for ${kind}`, showValue(v));
    return v;
  }
  if (typeof v === 'bigint') b = v;
  else if (typeof v === 'string' && INT_TEXT.test(v)) b = BigInt(v);
  else if (typeof v === 'string')
    throw new ValueProblem('a string that is not an integer', showValue(v));
  else wrong('an integer (number, BigInt or string)', v);
  const [lo, hi] = INT_RANGE[kind];
  if (b < lo || b > hi) throw new ValueProblem(`out of range for ${kind}`, showValue(b));
  return b.toString();
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** A Date as local time with its offset, exactly as node-postgres sends Dates. */
export function dateToLiteral(d: Date): string {
  const t = d.getTime();
  if (Number.isNaN(t)) throw new ValueProblem('invalid Date');
  const fullYear = d.getFullYear();
  const bc = fullYear < 1;
  const year = bc ? -fullYear + 1 : fullYear;
  // The exact offset of the local fields from UTC, in seconds: getTimezoneOffset() rounds to
  // minutes, and historical local mean times (before ~1900) have seconds in their offsets.
  const local = new Date(
    Date.UTC(
      2000,
      d.getMonth(),
      d.getDate(),
      d.getHours(),
      d.getMinutes(),
      d.getSeconds(),
      d.getMilliseconds(),
    ),
  );
  local.setUTCFullYear(fullYear);
  // At a Date's very end (year 275760) the local fields may not fit a Date in UTC: the offset
  // in minutes is the best there is.
  const off = Number.isNaN(local.getTime())
    ? -d.getTimezoneOffset() * 60
    : Math.round((local.getTime() - t) / 1000);
  const sign = off >= 0 ? '+' : '-';
  const a = Math.abs(off);
  const secs = a % 60 ? `:${pad(a % 60)}` : '';
  return (
    `${pad(year, 4)}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:` +
    `${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}${sign}${pad(Math.floor(a / 3600))}:${pad(Math.floor(a / 60) % 60)}${secs}${bc ? ' BC' : ''}`
  );
}

/**
 * JSON text for a json/jsonb value. For jsonb (`strict`), refusing what its parser refuses: an
 * escaped NUL (\u0000) or lone surrogate in a string. A json column stores the text as it is
 * and takes both; only text no UTF-8 can carry (a raw NUL, a raw lone surrogate) is refused.
 */
export function jsonLiteral(v: unknown, strict = true): string {
  if (v instanceof JsonText) {
    if (strict) checkJsonText(v.text);
    else checkText(v.text);
    return v.text;
  }
  let s: string | undefined;
  try {
    s = JSON.stringify(v);
  } catch (e) {
    throw new ValueProblem(`value cannot be serialized as JSON: ${(e as Error).message}`);
  }
  if (s === undefined) throw new ValueProblem(`${typeName(v)} is not a JSON value`);
  // JSON.stringify escapes NUL as \u0000 and lone surrogates as \udXXX; jsonb refuses both.
  if (strict && s.includes('\\u')) checkJsonStrings(v, 0);
  return s;
}

/** JSON text holds no NUL and no lone surrogate, raw or escaped (jsonb refuses both). */
function checkJsonText(t: string): void {
  checkText(t);
  // Escapes are rare: only then is the text parsed, to check its strings as below.
  if (t.includes('\\u')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(t);
    } catch {
      throw new ValueProblem('JsonText is not valid JSON');
    }
    checkJsonStrings(parsed, 0);
  }
}

function checkJsonStrings(v: unknown, depth: number): void {
  if (depth > 200) throw new ValueProblem('JSON nested too deeply');
  if (v instanceof JsonText) {
    checkJsonText(v.text);
  } else if (typeof v === 'string') {
    checkText(v);
  } else if (Array.isArray(v)) {
    for (const x of v) checkJsonStrings(x, depth + 1);
  } else if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      checkText(k);
      checkJsonStrings(x, depth + 1);
    }
  }
}

function scalar(kind: ValueKind, v: unknown, jsonb = true): string {
  switch (kind) {
    case 'text':
      if (typeof v !== 'string') wrong('a string', v);
      return checkText(v);
    case 'int2':
    case 'int4':
    case 'int8':
      return intLiteral(kind, v);
    case 'float':
      if (typeof v === 'number') return floatText(v);
      if (typeof v === 'string' && NUMERIC_TEXT.test(v)) return v;
      if (typeof v === 'bigint') return v.toString();
      return wrong('a number', v);
    case 'numeric':
      if (typeof v === 'number') {
        if (Number.isNaN(v)) return 'NaN';
        if (!Number.isFinite(v)) return v > 0 ? 'Infinity' : '-Infinity';
        return String(v);
      }
      if (typeof v === 'bigint') return v.toString();
      if (typeof v === 'string' && NUMERIC_TEXT.test(v)) return v;
      if (typeof v === 'string')
        throw new ValueProblem('a string that is not a number', showValue(v));
      return wrong('a number, BigInt or numeric string', v);
    case 'bool':
      if (typeof v === 'boolean') return v ? 't' : 'f';
      if (typeof v === 'string') {
        const b = BOOL_TEXT.get(v.toLowerCase());
        if (b) return b;
        throw new ValueProblem(
          'a string that is not a boolean (t, f, true, false, 1, 0)',
          showValue(v),
        );
      }
      return wrong('a boolean or one of the strings t, f, true, false, 1, 0', v);
    case 'bytea':
      if (v instanceof Uint8Array)
        return `\\x${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}`;
      return wrong('a Buffer or Uint8Array', v);
    case 'json':
      return jsonLiteral(v, jsonb);
    case 'timestamp':
    case 'date':
      if (v instanceof Date) return dateToLiteral(v);
      if (typeof v === 'string') return checkText(v);
      // node-postgres reads 'infinity' and '-infinity' as ±Infinity
      if (v === Number.POSITIVE_INFINITY) return 'infinity';
      if (v === Number.NEGATIVE_INFINITY) return '-infinity';
      return wrong('a Date or an ISO string', v);
    case 'money':
      // Postgres's own text ('$1,234.56', as lc_monetary writes and reads it), or a number.
      if (typeof v === 'string') return checkText(v);
      if (typeof v === 'number' && Number.isFinite(v)) return String(v);
      if (typeof v === 'bigint') return v.toString();
      return wrong('a string or a finite number', v);
    case 'interval':
      if (typeof v === 'string') return checkText(v);
      // node-postgres reads an interval as a PostgresInterval, which writes itself back
      // exactly (microseconds kept) through the toPostgres() every pg value type may have.
      if (hasToPostgres(v)) return checkText(String(v.toPostgres()));
      return wrong('a string or an interval object (toPostgres)', v);
    case 'point': {
      if (typeof v === 'string') return checkText(v);
      const p = objectOf(v);
      if (isXY(p)) return `(${floatText(p.x)},${floatText(p.y)})`;
      return wrong('a string or { x, y }', v);
    }
    case 'circle': {
      if (typeof v === 'string') return checkText(v);
      v = objectOf(v);
      if (isXY(v) && typeof (v as { radius?: unknown }).radius === 'number') {
        const r = (v as unknown as { radius: number }).radius;
        return `<(${floatText(v.x)},${floatText(v.y)}),${floatText(r)}>`;
      }
      return wrong('a string or { x, y, radius }', v);
    }
    case 'uuid':
      if (typeof v !== 'string') wrong('a string', v);
      return checkText(v);
    default:
      if (typeof v === 'string') return checkText(v);
      if (typeof v === 'number' || typeof v === 'bigint') return String(v);
      if (typeof v === 'boolean') return v ? 't' : 'f';
      if (v instanceof Date) return dateToLiteral(v);
      if (hasToPostgres(v)) return checkText(String(v.toPostgres()));
      return wrong('a string', v);
  }
}

/** A float's text: -0 keeps its sign, NaN and ±Infinity as Postgres spells them. */
function floatText(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return 'Infinity';
  if (v === Number.NEGATIVE_INFINITY) return '-Infinity';
  return Object.is(v, -0) ? '-0' : String(v);
}

/** A value that writes itself as Postgres text, as node-postgres's own values may (intervals). */
function hasToPostgres(v: unknown): v is { toPostgres(): unknown } {
  return (
    v !== null &&
    typeof v === 'object' &&
    typeof (v as { toPostgres?: unknown }).toPostgres === 'function'
  );
}

/** An object given as JSON text (how a queue carries a plain object) as the object. */
function objectOf(v: unknown): unknown {
  if (!(v instanceof JsonText)) return v;
  try {
    return JSON.parse(v.text);
  } catch {
    return undefined;
  }
}

function isXY(v: unknown): v is { x: number; y: number } {
  return (
    v !== null &&
    typeof v === 'object' &&
    typeof (v as { x?: unknown }).x === 'number' &&
    typeof (v as { y?: unknown }).y === 'number'
  );
}

/** Quote one element of an array literal. */
const ARRAY_SPECIAL = /[\\"]/;
function arrayElem(lit: string): string {
  return ARRAY_SPECIAL.test(lit) ? `"${lit.replace(/[\\"]/g, '\\$&')}"` : `"${lit}"`;
}

function arrayLiteral(
  kind: ValueKind,
  v: unknown[],
  depth: number,
  delim = ',',
  jsonb = true,
): string {
  if (depth > 6) throw new ValueProblem('array nested more than 6 deep');
  let out = '{';
  for (let i = 0; i < v.length; i++) {
    if (i > 0) out += delim;
    const x = v[i];
    if (x === null || x === undefined) out += 'NULL';
    else if (Array.isArray(x) && kind !== 'json')
      out += arrayLiteral(kind, x, depth + 1, delim, jsonb);
    else out += arrayElem(scalar(kind, x, jsonb));
  }
  return `${out}}`;
}

/** The encoder of one column. */
export function encoderFor(col: ColumnMeta): Encoder {
  // json and jsonb share a kind; only jsonb refuses \u0000 and lone surrogate escapes.
  const jsonb = !/^json(\[\])?$/.test(col.castSql);
  if (col.isArray) {
    const ek = col.elemKind;
    const delim = col.elemDelim ?? ',';
    return (v) => {
      if (v === null) return null;
      // An array literal as Postgres writes it: how an array with lower bounds other than 1
      // ('[0:2]={7,8,9}') is read back, since a JS array cannot hold its bounds.
      if (typeof v === 'string') return checkText(v);
      if (!Array.isArray(v)) wrong('an array', v);
      return arrayLiteral(ek, v, 0, delim, jsonb);
    };
  }
  const k = col.kind;
  return (v) => (v === null ? null : scalar(k, v, jsonb));
}

const encoderCache = new WeakMap<ColumnMeta, Encoder>();

export function cachedEncoder(col: ColumnMeta): Encoder {
  let e = encoderCache.get(col);
  if (!e) {
    e = encoderFor(col);
    encoderCache.set(col, e);
  }
  return e;
}

/** Wrap an encoder failure as the BulkError users see. */
/** `row` is undefined for values that belong to no row (filters, update's `set`). */
export function valueError(
  meta: TableMeta,
  col: string,
  row: number | undefined,
  err: unknown,
): BulkError {
  if (err instanceof BulkError) return err;
  const msg = err instanceof ValueProblem ? err.message : String((err as Error)?.message ?? err);
  const at = row === undefined ? '' : `, row ${row}`;
  return new BulkError('INVALID_VALUE', `${meta.displayName}.${col}${at}: ${msg}`, {
    table: meta.displayName,
    column: col,
    row,
    value: err instanceof ValueProblem ? err.shown : undefined,
    cause: err instanceof ValueProblem ? undefined : err,
  });
}

/** Escape a literal for COPY text format; null is \N. */
export function copyEscape(lit: string | null): string {
  if (lit === null) return '\\N';
  // Fast path: most values hold none of the four specials.
  if (!/[\\\n\r\t]/.test(lit)) return lit;
  return lit.replace(/[\\\n\r\t]/g, (c) =>
    c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t',
  );
}
