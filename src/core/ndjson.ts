import pg from 'pg';
import { parse as parseArray } from 'postgres-array';
import { type JsonSlice, jsonArrayItems, scanObject, skipWs } from './jsonScan.js';
import { JsonText } from './jsonText.js';
import type { ColumnMeta, ValueKind } from './meta.js';

/**
 * NDJSON, one definition both ways, from and to Postgres's text form of each value, so that a
 * file written by `export` (or a queued copyTo) loads back exactly:
 *
 * | column | written as |
 * |---|---|
 * | boolean | `true` / `false` |
 * | smallint, integer, real, double precision | a JSON number, digit for digit (`-0` kept); NaN and ±Infinity as strings |
 * | bigint, numeric, money | a string of Postgres's text (exact for any reader, also past 2^53) |
 * | json, jsonb | the JSON text itself, as Postgres stores it (a json value's key order and duplicate keys kept); wrapped as `{"$json": "<text>"}` when it cannot stand as itself (see below) |
 * | bytea | a string, `\x` and hex |
 * | arrays | a JSON array of the elements, each written as above; an array with lower bounds other than 1 as its text |
 * | every other type | a string of Postgres's text |
 *
 * Read back, numbers keep their text (never a float in between) and json values their JSON
 * text. A json value whose text cannot stand in a record as itself is written as a string in
 * a `{"$json": ...}` object, which reading unwraps: the JSON `null` (a record's `null` is SQL
 * NULL), text with line breaks or with whitespace around the value (a `json` column keeps
 * both), and an object whose only key is `$json`. Records are read whole, so a hand-written
 * record may also span lines.
 */

const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;
const INTEGER = /^-?\d+$/;

/** Whether json text must be wrapped to stand in a record exactly (see above). */
function mustWrap(text: string): boolean {
  if (text === 'null' || /[\n\r]/.test(text)) return true;
  const first = text.charCodeAt(0);
  const last = text.charCodeAt(text.length - 1);
  if (first === 32 || first === 9 || last === 32 || last === 9) return true;
  return first === 123 && isWrapper(text) !== undefined;
}

/** The wrapped text when `text` is a `{"$json": "<text>"}` object (and nothing more), else undefined. */
function isWrapper(text: string): string | undefined {
  if (!text.includes('"$json"')) return undefined;
  try {
    const { fields, end } = scanObject(text, 0);
    const v = fields.get('$json');
    if (fields.size !== 1 || v?.type !== 'string' || skipWs(text, end) !== text.length)
      return undefined;
    return v.value() as string;
  } catch {
    return undefined;
  }
}

function jsonToRecord(text: string): string {
  return mustWrap(text) ? `{"$json":${JSON.stringify(text)}}` : text;
}

function scalarToJson(kind: ValueKind, s: string): string {
  switch (kind) {
    case 'bool':
      return s === 't' ? 'true' : 'false';
    case 'int2':
    case 'int4':
    case 'float':
      return JSON_NUMBER.test(s) ? s : JSON.stringify(s);
    case 'json':
      return jsonToRecord(s);
    default:
      return JSON.stringify(s);
  }
}

/** JSON text of one value from Postgres's text form (null: SQL NULL). */
export type JsonWriter = (text: string | null) => string;

export function jsonWriterFor(col: ColumnMeta): JsonWriter {
  if (col.isArray && col.elemDelim && col.elemDelim !== ',') {
    // (box[]: elements split by ';', which no JSON array form keeps apart): the literal.
    return (s) => (s === null ? 'null' : JSON.stringify(s));
  }
  if (col.isArray) {
    const kind = col.elemKind;
    const elem = (e: unknown): string =>
      e === null
        ? 'null'
        : Array.isArray(e)
          ? `[${e.map(elem).join(',')}]`
          : scalarToJson(kind, e as string);
    return (s) => {
      if (s === null) return 'null';
      // Lower bounds ('[0:2]={...}') have no JSON array form: the literal, as a string.
      if (s.charCodeAt(0) === 91) return JSON.stringify(s);
      const items = parseArray(s, (x) => x);
      // A json array of more than one dimension would read back as json arrays: the literal.
      if (kind === 'json' && items.some(Array.isArray)) return JSON.stringify(s);
      return elem(items);
    };
  }
  const kind = col.kind;
  return (s) => (s === null ? 'null' : scalarToJson(kind, s));
}

/** One NDJSON line (without its newline) from a row's fields in Postgres's text form. */
export function ndjsonLineWriter(columns: ColumnMeta[]): (fields: (string | null)[]) => string {
  const keys = columns.map((c) => `${JSON.stringify(c.name)}:`);
  const writers = columns.map(jsonWriterFor);
  return (fields) => {
    let out = '{';
    for (let j = 0; j < writers.length; j++) {
      if (j > 0) out += ',';
      out += keys[j]! + writers[j]!(fields[j] ?? null);
    }
    return `${out}}`;
  };
}

const parseBytea = pg.types.getTypeParser(17, 'text') as (s: string) => Buffer;

/** Problems reading an NDJSON value, said without the value. */
export class JsonFieldProblem extends Error {}

function needString(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new JsonFieldProblem(`expected ${what}`);
  return v;
}

/** A JSON scalar or string for a column of this kind, as the encoder takes it, exactly. */
function scalarFromJson(kind: ValueKind, f: JsonSlice): unknown {
  if (f.type === 'null') return null;
  switch (kind) {
    case 'json':
      // Its own text, exactly (never parsed into a JS value and serialized again).
      return new JsonText((f.type === 'object' ? isWrapper(f.text) : undefined) ?? f.text);
    case 'int2':
    case 'int4':
    case 'int8':
      // An integer written another way by another tool (1.0, 1E2, -0.0) is that integer; a
      // fraction stays as written, for the encoder to refuse.
      if (f.type === 'number' && !INTEGER.test(f.text)) {
        const n = Number(f.text);
        return Number.isSafeInteger(n) ? String(n) : f.text;
      }
      return f.type === 'number' ? f.text : f.value();
    case 'float':
    case 'numeric':
    case 'money':
      // A number keeps its digits; a string ("NaN", "12345678901234567890") is Postgres text.
      return f.type === 'number' ? f.text : f.value();
    case 'bytea': {
      const v = f.value();
      if (typeof v === 'string') return parseBytea(v);
      // What JSON.stringify makes of a Buffer: { type: 'Buffer', data: [...] }.
      const o = v as { type?: unknown; data?: unknown } | null;
      if (o && o.type === 'Buffer' && Array.isArray(o.data)) return Buffer.from(o.data as number[]);
      throw new JsonFieldProblem('bytea takes a string (\\x hex) or a serialized Buffer');
    }
    default:
      return f.value();
  }
}

function elementsFromJson(kind: ValueKind, f: JsonSlice, depth: number): unknown {
  if (f.type === 'null') return null;
  if (f.type === 'array' && (kind !== 'json' || depth === 0)) {
    if (depth > 6) throw new JsonFieldProblem('array nested more than 6 deep');
    return jsonArrayItems(f).map((x) =>
      x.type === 'array' && kind !== 'json'
        ? elementsFromJson(kind, x, depth + 1)
        : scalarFromJson(kind, x),
    );
  }
  return scalarFromJson(kind, f);
}

/**
 * An NDJSON field (its JSON text, located by the scanner) as the encoder takes it, exactly:
 * the inverse of jsonWriterFor. An array column also takes a string, as an array literal.
 */
export function fromJsonField(col: ColumnMeta, f: JsonSlice): unknown {
  if (f.type === 'null') return null;
  if (col.isArray) {
    if (f.type === 'string') return needString(f.value(), 'an array or an array literal');
    if (f.type !== 'array') throw new JsonFieldProblem('expected an array');
    return elementsFromJson(col.elemKind, f, 0);
  }
  return scalarFromJson(col.kind, f);
}

/**
 * A field in Postgres's text form (a CSV file's field, as `COPY ... CSV` writes it) as the
 * encoder takes it, exactly: the text itself for every type the encoder reads from text, json
 * as its JSON text (a string would be stored as a JSON string), bytea as its bytes.
 */
export function fromTextField(col: ColumnMeta, s: string | null): unknown {
  if (s === null) return null;
  if (col.isArray) return s; // an array literal, written as it is
  if (col.kind === 'json') return new JsonText(s);
  if (col.kind === 'bytea') return parseBytea(s);
  return s;
}
