import { MAX_NESTING } from '../core/checks.js';
import { BulkError } from '../core/errors.js';
import { JsonText } from '../core/jsonText.js';
import { setOwn } from '../core/rows.js';

/**
 * Values in job payloads. JSON strings, finite numbers, booleans and null travel as themselves;
 * arrays as arrays of encoded values; everything JSON cannot hold exactly travels as a tag:
 *
 *   {"$t":"bigint","v":"9007199254740993"}   BigInt
 *   {"$t":"bytes","v":"<base64>"}            Buffer / Uint8Array
 *   {"$t":"date","v":"2026-01-02T03:04:05.678Z"}  Date
 *   {"$t":"number","v":"NaN" | "Infinity" | "-Infinity" | "-0"}
 *   {"$t":"object","v":{ "<key>": <encoded value>, ... }}  a plain object
 *   {"$t":"json","v":"<JSON text>"}          a json/jsonb column's object value, as JSON text
 *   {"$t":"absent"}                          the row does not carry this column (its default applies)
 *
 * Every plain object is tagged, so a JSON object in a payload is always a tag, never ambiguous.
 */
export type Encoded = string | number | boolean | null | Encoded[] | { $t: string; v?: unknown };

export const ABSENT: Encoded = { $t: 'absent' };

function numberTag(v: number): string {
  return Object.is(v, -0) ? '-0' : String(v);
}

/** Encode one JS value; `path` names it in errors. */
export function encodeValue(v: unknown, path: string, depth = 0): Encoded {
  if (depth > 64) throw new BulkError('INVALID_VALUE', `${path}: nested more than 64 deep`);
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return v;
    case 'number':
      // JSON has no -0 (JSON.stringify writes 0): it travels as a tag, like NaN and ±Infinity.
      return Number.isFinite(v) && !Object.is(v, -0) ? v : { $t: 'number', v: numberTag(v) };
    case 'bigint':
      return { $t: 'bigint', v: v.toString() };
    case 'undefined':
      return ABSENT;
    case 'object': {
      if (v === null) return null;
      if (Array.isArray(v))
        return v.map((x, i) =>
          x === undefined ? null : encodeValue(x, `${path}[${i}]`, depth + 1),
        );
      if (v instanceof Date) {
        if (Number.isNaN(v.getTime()))
          throw new BulkError('INVALID_VALUE', `${path}: invalid Date`);
        return { $t: 'date', v: v.toISOString() };
      }
      if (v instanceof Uint8Array)
        return {
          $t: 'bytes',
          v: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64'),
        };
      if (v instanceof JsonText) return { $t: 'json', v: v.text };
      // A value node-postgres can write (a PostgresInterval): its own text, which the worker
      // writes as it is.
      if (typeof (v as { toPostgres?: unknown }).toPostgres === 'function')
        return String((v as { toPostgres(): unknown }).toPostgres());
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) {
        throw new BulkError(
          'INVALID_VALUE',
          `${path}: ${proto?.constructor?.name ?? 'object'} instances cannot be sent; use plain objects`,
        );
      }
      const out: Record<string, Encoded> = {};
      for (const [k, x] of Object.entries(v))
        if (x !== undefined) setOwn(out, k, encodeValue(x, `${path}.${k}`, depth + 1));
      return { $t: 'object', v: out };
    }
    default:
      throw new BulkError('INVALID_VALUE', `${path}: a ${typeof v} cannot be sent`);
  }
}

/**
 * Encode a row's column value. A plain object can only be a json/jsonb value: it travels as its
 * JSON text (the `json` tag), exactly what direct mode writes (JSON.stringify), so the worker
 * writes that text without building the object again. Arrays are encoded element by element.
 */
export function encodeColumnValue(v: unknown, path: string, depth = 0): Encoded {
  if (v !== null && typeof v === 'object' && !(v instanceof Date) && !(v instanceof Uint8Array)) {
    if (Array.isArray(v)) {
      if (depth > 64) throw new BulkError('INVALID_VALUE', `${path}: nested more than 64 deep`);
      return v.map((x, i) =>
        x === undefined ? null : encodeColumnValue(x, `${path}[${i}]`, depth + 1),
      );
    }
    const proto = Object.getPrototypeOf(v);
    if (proto === Object.prototype || proto === null) {
      let text: string;
      try {
        text = JSON.stringify(v);
      } catch (e) {
        throw new BulkError(
          'INVALID_VALUE',
          `${path}: value cannot be serialized as JSON: ${(e as Error).message}`,
        );
      }
      // A toJSON that returns undefined: no JSON value at all (direct mode refuses it too).
      if (text === undefined)
        throw new BulkError(
          'INVALID_VALUE',
          `${path}: value has no JSON form (toJSON gave undefined)`,
        );
      return { $t: 'json', v: text };
    }
  }
  return encodeValue(v, path, depth);
}

function bad(path: string, what: string): never {
  throw new BulkError('INVALID_PAYLOAD', `${path}: ${what}`);
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BIGINT = /^-?\d+$/;

/** JSON strings, numbers, booleans and null decode to themselves (no path is built for them). */
function isScalar(e: unknown): boolean {
  return e === null || typeof e === 'string' || typeof e === 'number' || typeof e === 'boolean';
}

/**
 * Decode one payload value back to JS. `absent` is returned as undefined. A `json` tag is its
 * value parsed, or with `jsonText` a JsonText (for writing, without parsing it).
 */
export function decodeValue(
  e: unknown,
  path: string,
  depth = 0,
  jsonText = false,
  /** Deepest nesting accepted (a worker's --max-nesting). */
  maxDepth = MAX_NESTING,
): unknown {
  if (depth > maxDepth)
    throw new BulkError('LIMIT_EXCEEDED', `${path}: nested more than ${maxDepth} deep`);
  if (e === null || typeof e === 'string' || typeof e === 'boolean') return e;
  if (typeof e === 'number') return e;
  if (Array.isArray(e))
    return e.map((x, i) =>
      isScalar(x) && depth < maxDepth
        ? x
        : decodeValue(x, `${path}[${i}]`, depth + 1, jsonText, maxDepth),
    );
  if (typeof e !== 'object') bad(path, `unexpected ${typeof e}`);
  const t = e as { $t?: unknown; v?: unknown };
  for (const k in t)
    if (k !== '$t' && k !== 'v') bad(path, `unexpected key ${JSON.stringify(k)} in a value tag`);
  switch (t.$t) {
    case 'absent':
      return undefined;
    case 'bigint':
      if (typeof t.v !== 'string' || !BIGINT.test(t.v))
        bad(path, 'bigint tag needs a decimal string');
      return BigInt(t.v);
    case 'bytes':
      if (typeof t.v !== 'string' || !BASE64.test(t.v)) bad(path, 'bytes tag needs base64');
      return Buffer.from(t.v, 'base64');
    case 'date': {
      const d = typeof t.v === 'string' ? new Date(t.v) : new Date(Number.NaN);
      if (Number.isNaN(d.getTime())) bad(path, 'date tag needs an ISO timestamp');
      return d;
    }
    case 'json': {
      if (typeof t.v !== 'string') bad(path, 'json tag needs JSON text');
      return jsonValue(t.v, path, jsonText);
    }
    case 'number':
      if (t.v === 'NaN') return Number.NaN;
      if (t.v === '-0') return -0;
      if (t.v === 'Infinity') return Number.POSITIVE_INFINITY;
      if (t.v === '-Infinity') return Number.NEGATIVE_INFINITY;
      return bad(path, 'number tag needs NaN, Infinity, -Infinity or -0');
    case 'object': {
      if (t.v === null || typeof t.v !== 'object' || Array.isArray(t.v))
        bad(path, 'object tag needs an object');
      const out: Record<string, unknown> = {};
      const o = t.v as Record<string, unknown>;
      for (const k of Object.keys(o)) {
        const x = o[k];
        const d =
          isScalar(x) && depth < maxDepth
            ? x
            : decodeValue(x, `${path}.${k}`, depth + 1, jsonText, maxDepth);
        if (d !== undefined) setOwn(out, k, d);
      }
      return out;
    }
    default:
      return bad(path, `unknown tag ${JSON.stringify(t.$t)}`);
  }
}

/**
 * Rows to the compact form: column names once, then one array of values per row.
 *
 * With `jsonAsText`, a column whose values in these rows are all json objects (or null, or
 * absent) is listed in `jsonColumns` and its values travel as bare JSON text, without a `json`
 * tag around each: a worker parses a bare string about twice as fast as a tag object.
 */
export function encodeRows(
  rows: readonly unknown[],
  offset: number,
  /** json/jsonb objects as JSON text (the `json` tag); false: as `object` tags, exactly. */
  jsonAsText = true,
): { columns: string[]; rows: Encoded[][]; jsonColumns?: number[] } {
  const index = new Map<string, number>();
  const columns: string[] = [];
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    if (
      r === null ||
      typeof r !== 'object' ||
      Array.isArray(r) ||
      r instanceof Date ||
      r instanceof Uint8Array
    ) {
      throw new BulkError('INVALID_ROW', `row ${offset + i} is not a plain object`, {
        row: offset + i,
      });
    }
    for (const k in r as object) {
      if ((r as Record<string, unknown>)[k] !== undefined && !index.has(k)) {
        index.set(k, columns.length);
        columns.push(k);
      }
    }
  }
  // Per column: 0 no json value yet, 1 json values (and nulls, absents) only, 2 anything else.
  const json = jsonAsText ? new Uint8Array(columns.length) : undefined;
  // A row without its own "__proto__" (or "constructor", "toString", ...) would read what
  // Object.prototype has under that name: such columns are read as own properties only.
  const inherited = columns.map((c) => c in Object.prototype);
  const out: Encoded[][] = new Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i] as Record<string, unknown>;
    const vals: Encoded[] = new Array(columns.length);
    for (let j = 0; j < columns.length; j++) {
      const c = columns[j]!;
      const v = inherited[j] && !Object.hasOwn(r, c) ? undefined : r[c];
      // Strings, booleans, finite numbers and null travel as themselves (no error path built).
      const e =
        isScalar(v) && (typeof v !== 'number' || (Number.isFinite(v) && !Object.is(v, -0)))
          ? (v as Encoded)
          : v === undefined
            ? ABSENT
            : jsonAsText
              ? encodeColumnValue(v, `row ${offset + i}.${c}`)
              : encodeValue(v, `row ${offset + i}.${c}`);
      vals[j] = e;
      if (json !== undefined && json[j] !== 2 && e !== null) {
        const t = typeof e === 'object' && !Array.isArray(e) ? e.$t : undefined;
        if (t === 'json') json[j] = 1;
        else if (t !== 'absent') json[j] = 2;
      }
    }
    out[i] = vals;
  }
  const jsonColumns: number[] = [];
  if (json !== undefined)
    for (let j = 0; j < columns.length; j++) if (json[j] === 1) jsonColumns.push(j);
  if (jsonColumns.length === 0) return { columns, rows: out };
  for (const vals of out) {
    for (const j of jsonColumns) {
      const e = vals[j] as { $t: string; v?: unknown } | null;
      if (e !== null && e.$t === 'json') vals[j] = e.v as string;
    }
  }
  return { columns, rows: out, jsonColumns };
}

/**
 * The compact form back to row objects (absent columns left out). `jsonText`: json values as
 * JsonText, for a worker that writes them (see decodeValue). `jsonColumns`: columns whose
 * values are bare JSON text, null or the absent tag (see encodeRows).
 */
export function decodeRows(
  columns: string[],
  rows: unknown[][],
  offset: number,
  jsonText = false,
  jsonColumns: readonly number[] = [],
  maxDepth = MAX_NESTING,
): Record<string, unknown>[] {
  const plain = columns.map((c) => c !== '__proto__');
  const isJson = columns.map(() => false);
  for (const j of jsonColumns) {
    if (!Number.isInteger(j) || j < 0 || j >= columns.length)
      bad('jsonColumns', `${j} is not the index of a column`);
    isJson[j] = true;
  }
  return rows.map((vals, i) => {
    if (!Array.isArray(vals) || vals.length !== columns.length)
      bad(`row ${offset + i}`, `expected ${columns.length} values`);
    const row: Record<string, unknown> = {};
    for (let j = 0; j < columns.length; j++) {
      const e = vals[j];
      const v = isJson[j]
        ? decodeJsonColumn(e, `row ${offset + i}.${columns[j]}`, jsonText)
        : isScalar(e)
          ? e
          : decodeValue(e, `row ${offset + i}.${columns[j]}`, 0, jsonText, maxDepth);
      if (v === undefined) continue;
      if (plain[j]) row[columns[j]!] = v;
      else setOwn(row, columns[j]!, v);
    }
    return row;
  });
}

/** JSON text as a JsonText (to be written as it is) or parsed. */
function jsonValue(text: string, path: string, jsonText: boolean): unknown {
  if (jsonText) return new JsonText(text);
  try {
    return JSON.parse(text);
  } catch {
    return bad(path, 'json value holds text that is not JSON');
  }
}

/** Exactly the absent tag, `{"$t": "absent"}`. */
function isAbsentTag(e: unknown): boolean {
  return (
    e !== null &&
    typeof e === 'object' &&
    !Array.isArray(e) &&
    (e as { $t?: unknown }).$t === 'absent' &&
    Object.keys(e).length === 1
  );
}

/** What a `jsonColumns` column may hold: JSON text, null, or the absent tag. */
export function isJsonColumnValue(e: unknown): boolean {
  return typeof e === 'string' || e === null || isAbsentTag(e);
}

/** A value of a `jsonColumns` column: JSON text, null, or the absent tag. */
function decodeJsonColumn(e: unknown, path: string, jsonText: boolean): unknown {
  if (typeof e === 'string') return jsonValue(e, path, jsonText);
  if (e === null) return null;
  if (isAbsentTag(e)) return undefined;
  return bad(path, 'a value of a jsonColumns column must be JSON text, null or the absent tag');
}

/**
 * An upper bound of the UTF-8 size of JSON.stringify(v), without building the text: a string's
 * code unit takes at most 6 bytes (an escape like \u001f), a number at most 25 characters. Lets
 * the producer check a chunk against its size limit without serializing it a second time
 * (BullMQ serializes it to store it).
 */
export function jsonSizeBound(v: unknown): number {
  switch (typeof v) {
    case 'string':
      return 6 * v.length + 2;
    case 'number':
      return 25; // -0.0000010000000000000002
    case 'boolean':
      return 5;
    case 'object': {
      if (v === null) return 4;
      if (Array.isArray(v)) {
        let n = 2 + v.length;
        for (const x of v) n += jsonSizeBound(x);
        return n;
      }
      const o = v as Record<string, unknown>;
      if (typeof o.toJSON === 'function') return Number.POSITIVE_INFINITY; // serialized otherwise
      let n = 2;
      for (const k of Object.keys(o)) n += 6 * k.length + 4 + jsonSizeBound(o[k]);
      return n;
    }
    default:
      return 4; // undefined and functions are left out or written as null
  }
}
