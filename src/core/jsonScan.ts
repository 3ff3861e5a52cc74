/**
 * A JSON scanner that locates values instead of building them: each field of a record is its
 * exact text in the source, so numbers keep every digit and json values their own text
 * (whitespace, key order, duplicate keys). Containers are skipped by counting brackets outside
 * strings, without recursion (a deeply nested value cannot overflow the stack); their syntax
 * is checked when a value is built from them (`value()`) or by Postgres (json columns).
 */

export type JsonType = 'object' | 'array' | 'string' | 'number' | 'true' | 'false' | 'null';

export interface JsonSlice {
  type: JsonType;
  /** The value's text, exactly as in the source. */
  text: string;
  /** The value as JSON.parse builds it. */
  value(): unknown;
}

export class JsonSyntaxError extends Error {
  constructor(
    message: string,
    /** Offset in the source where the problem is. */
    readonly at: number,
    /** The source ended before the value did: more text may complete it. */
    readonly incomplete = false,
  ) {
    super(message);
  }
}

function slice(type: JsonType, text: string): JsonSlice {
  return { type, text, value: () => JSON.parse(text) };
}

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

export function skipWs(src: string, at: number): number {
  while (at < src.length && WS.has(src.charCodeAt(at))) at++;
  return at;
}

/** The end (exclusive) of the string starting at `at` (a quote). */
function stringEnd(src: string, at: number): number {
  let i = at + 1;
  for (;;) {
    const q = src.indexOf('"', i);
    if (q === -1) throw new JsonSyntaxError('unterminated string', at, true);
    // An escaped quote is preceded by an odd number of backslashes.
    let b = q - 1;
    while (b > at && src.charCodeAt(b) === 92) b--;
    if ((q - 1 - b) % 2 === 0) return q + 1;
    i = q + 1;
  }
}

/** Locate the value starting at `at` (no leading whitespace); returns it and its end. */
export function scanValue(src: string, at: number): { value: JsonSlice; end: number } {
  const c = src[at];
  if (c === '"') {
    const end = stringEnd(src, at);
    return { value: slice('string', src.slice(at, end)), end };
  }
  if (c === '{' || c === '[') {
    let depth = 0;
    let i = at;
    while (i < src.length) {
      const ch = src.charCodeAt(i);
      if (ch === 34) {
        i = stringEnd(src, i);
        continue;
      }
      if (ch === 123 || ch === 91) depth++;
      else if (ch === 125 || ch === 93) {
        depth--;
        if (depth === 0) {
          const end = i + 1;
          return { value: slice(c === '{' ? 'object' : 'array', src.slice(at, end)), end };
        }
      }
      i++;
    }
    throw new JsonSyntaxError(`unterminated ${c === '{' ? 'object' : 'array'}`, at, true);
  }
  for (const lit of ['true', 'false', 'null'] as const) {
    if (src.startsWith(lit, at)) return { value: slice(lit, lit), end: at + lit.length };
  }
  if (at >= src.length) throw new JsonSyntaxError('expected a JSON value', at, true);
  NUMBER.lastIndex = at;
  const m = NUMBER.exec(src);
  if (m && m[0].length > 0) return { value: slice('number', m[0]), end: at + m[0].length };
  throw new JsonSyntaxError('expected a JSON value', at);
}

/**
 * One JSON object starting at `at` (after whitespace): its fields in order (a key given twice:
 * the last one, as JSON.parse keeps it) and where it ends.
 */
export function scanObject(
  src: string,
  at: number,
): { fields: Map<string, JsonSlice>; end: number } {
  const fail = (what: string, i: number) => new JsonSyntaxError(what, i, i >= src.length);
  let i = skipWs(src, at);
  if (src[i] !== '{') throw fail('expected a JSON object', i);
  const fields = new Map<string, JsonSlice>();
  i = skipWs(src, i + 1);
  if (src[i] === '}') return { fields, end: i + 1 };
  for (;;) {
    if (src[i] !== '"') throw fail('expected a key (a string)', i);
    const keyEnd = stringEnd(src, i);
    let key: string;
    try {
      key = JSON.parse(src.slice(i, keyEnd)) as string;
    } catch {
      throw new JsonSyntaxError('invalid key', i);
    }
    i = skipWs(src, keyEnd);
    if (src[i] !== ':') throw fail("expected ':'", i);
    i = skipWs(src, i + 1);
    const { value, end } = scanValue(src, i);
    fields.delete(key);
    fields.set(key, value);
    i = skipWs(src, end);
    if (src[i] === ',') {
      i = skipWs(src, i + 1);
      continue;
    }
    if (src[i] === '}') return { fields, end: i + 1 };
    throw fail("expected ',' or '}'", i);
  }
}

/** The items of an array slice, each located in its text. */
export function jsonArrayItems(a: JsonSlice): JsonSlice[] {
  const src = a.text;
  const out: JsonSlice[] = [];
  let i = skipWs(src, 1);
  if (src[i] === ']') return out;
  for (;;) {
    const { value, end } = scanValue(src, i);
    out.push(value);
    i = skipWs(src, end);
    if (src[i] === ',') {
      i = skipWs(src, i + 1);
      continue;
    }
    if (src[i] === ']') return out;
    throw new JsonSyntaxError("expected ',' or ']'", i);
  }
}
