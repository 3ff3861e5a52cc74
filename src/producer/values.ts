import { BulkError } from '../core/errors.js';
import { JsonText } from '../core/jsonText.js';

/**
 * Values in job payloads. JSON strings, finite numbers, booleans and null travel as themselves;
 * arrays as arrays of encoded values; everything JSON cannot hold exactly travels as a tag:
 *
 *   {"$t":"bigint","v":"9007199254740993"}   BigInt
 *   {"$t":"bytes","v":"<base64>"}            Buffer / Uint8Array
 *   {"$t":"date","v":"2026-01-02T03:04:05.678Z"}  Date
 *   {"$t":"number","v":"NaN" | "Infinity" | "-Infinity"}
 *   {"$t":"object","v":{ "<key>": <encoded value>, ... }}  a plain object
 *   {"$t":"json","v":"<JSON text>"}          a json/jsonb column's object value, as JSON text
 *   {"$t":"absent"}                          the row does not carry this column (its default applies)
 *
 * Every plain object is tagged, so a JSON object in a payload is always a tag, never ambiguous.
 */
export type Encoded = string | number | boolean | null | Encoded[] | { $t: string; v?: unknown };

export const ABSENT: Encoded = { $t: 'absent' };

/** Encode one JS value; `path` names it in errors. */
export function encodeValue(v: unknown, path: string, depth = 0): Encoded {
  if (depth > 64) throw new BulkError('INVALID_VALUE', `${path}: nested more than 64 deep`);
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return v;
    case 'number':
      return Number.isFinite(v) ? v : { $t: 'number', v: String(v) };
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
      return { $t: 'json', v: text };
    }
  }
  return encodeValue(v, path, depth);
}

function bad(path: string, what: string): never {
  throw new BulkError('INVALID_PAYLOAD', `${path}: ${what}`);
}

/** Assign as an own property, even for the key "__proto__" (a legal JSON key and column name). */
function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === '__proto__')
    Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
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
export function decodeValue(e: unknown, path: string, depth = 0, jsonText = false): unknown {
  if (depth > 64) bad(path, 'nested more than 64 deep');
  if (e === null || typeof e === 'string' || typeof e === 'boolean') return e;
  if (typeof e === 'number') return e;
  if (Array.isArray(e))
    return e.map((x, i) =>
      isScalar(x) && depth < 64 ? x : decodeValue(x, `${path}[${i}]`, depth + 1, jsonText),
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
      if (jsonText) return new JsonText(t.v);
      try {
        return JSON.parse(t.v);
      } catch {
        return bad(path, 'json tag holds text that is not JSON');
      }
    }
    case 'number':
      if (t.v === 'NaN') return Number.NaN;
      if (t.v === 'Infinity') return Number.POSITIVE_INFINITY;
      if (t.v === '-Infinity') return Number.NEGATIVE_INFINITY;
      return bad(path, 'number tag needs NaN, Infinity or -Infinity');
    case 'object': {
      if (t.v === null || typeof t.v !== 'object' || Array.isArray(t.v))
        bad(path, 'object tag needs an object');
      const out: Record<string, unknown> = {};
      const o = t.v as Record<string, unknown>;
      for (const k of Object.keys(o)) {
        const x = o[k];
        const d =
          isScalar(x) && depth < 64 ? x : decodeValue(x, `${path}.${k}`, depth + 1, jsonText);
        if (d !== undefined) setOwn(out, k, d);
      }
      return out;
    }
    default:
      return bad(path, `unknown tag ${JSON.stringify(t.$t)}`);
  }
}

/** Rows to the compact form: column names once, then one array of values per row. */
export function encodeRows(
  rows: readonly unknown[],
  offset: number,
  /** json/jsonb objects as JSON text (the `json` tag); false: as `object` tags, exactly. */
  jsonAsText = true,
): { columns: string[]; rows: Encoded[][] } {
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
  const out: Encoded[][] = new Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i] as Record<string, unknown>;
    const vals: Encoded[] = new Array(columns.length);
    for (let j = 0; j < columns.length; j++) {
      const c = columns[j]!;
      const v = r[c];
      // Strings, booleans, finite numbers and null travel as themselves (no error path built).
      vals[j] =
        isScalar(v) && (typeof v !== 'number' || Number.isFinite(v))
          ? (v as Encoded)
          : v === undefined
            ? ABSENT
            : jsonAsText
              ? encodeColumnValue(v, `row ${offset + i}.${c}`)
              : encodeValue(v, `row ${offset + i}.${c}`);
    }
    out[i] = vals;
  }
  return { columns, rows: out };
}

/**
 * The compact form back to row objects (absent columns left out). `jsonText`: json values as
 * JsonText, for a worker that writes them (see decodeValue).
 */
export function decodeRows(
  columns: string[],
  rows: unknown[][],
  offset: number,
  jsonText = false,
): Record<string, unknown>[] {
  const plain = columns.map((c) => c !== '__proto__');
  return rows.map((vals, i) => {
    if (!Array.isArray(vals) || vals.length !== columns.length)
      bad(`row ${offset + i}`, `expected ${columns.length} values`);
    const row: Record<string, unknown> = {};
    for (let j = 0; j < columns.length; j++) {
      const e = vals[j];
      const v = isScalar(e) ? e : decodeValue(e, `row ${offset + i}.${columns[j]}`, 0, jsonText);
      if (v === undefined) continue;
      if (plain[j]) row[columns[j]!] = v;
      else setOwn(row, columns[j]!, v);
    }
    return row;
  });
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
