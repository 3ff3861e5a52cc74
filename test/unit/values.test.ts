import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BulkError } from '../../src/core/errors.js';
import { JsonText } from '../../src/core/jsonText.js';
import { type ChunkPayload, validatePayload } from '../../src/queue/payload.js';
import { PAYLOAD_SCHEMA } from '../../src/queue/schema.js';
import {
  decodeRows,
  decodeValue,
  encodeRows,
  encodeValue,
  jsonSizeBound,
} from '../../src/queue/values.js';

/** Through the wire: encode, JSON text (what Redis holds), parse, decode. */
function roundTrip(v: unknown): unknown {
  return decodeValue(JSON.parse(JSON.stringify(encodeValue(v, 'v'))), 'v');
}

function rowsRoundTrip(rows: Record<string, unknown>[]): Record<string, unknown>[] {
  const enc = JSON.parse(JSON.stringify(encodeRows(rows, 0)));
  return decodeRows(enc.columns, enc.rows, 0, false, enc.jsonColumns);
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BulkError);
    return (err as BulkError).code;
  }
  throw new Error('expected a BulkError');
}

const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

describe('payload values', () => {
  it('BigInt beyond 2^53 (both signs, int8 limits) round trips exactly', () => {
    for (const b of [
      2n ** 53n + 1n,
      -(2n ** 53n) - 1n,
      9223372036854775807n,
      -9223372036854775808n,
      10n ** 40n,
      0n,
    ]) {
      const back = roundTrip(b);
      expect(typeof back).toBe('bigint');
      expect(back).toBe(b);
    }
  });

  it('Buffers with every byte value, empty Buffers and Uint8Array views round trip', () => {
    expect(roundTrip(ALL_BYTES)).toEqual(ALL_BYTES);
    expect(roundTrip(Buffer.alloc(0))).toEqual(Buffer.alloc(0));
    const view = new Uint8Array(ALL_BYTES.buffer, ALL_BYTES.byteOffset + 10, 5);
    expect(roundTrip(view)).toEqual(Buffer.from([10, 11, 12, 13, 14]));
  });

  it('Dates round trip to the millisecond; an invalid Date is INVALID_VALUE', () => {
    const d = new Date(Date.UTC(2001, 0, 2, 3, 4, 5, 678));
    const back = roundTrip(d);
    expect(back).toBeInstanceOf(Date);
    expect((back as Date).getTime()).toBe(d.getTime());
    expect(roundTrip(new Date(-62198755200000))).toEqual(new Date(-62198755200000));
    expect(code(() => encodeValue(new Date(Number.NaN), 'v'))).toBe('INVALID_VALUE');
  });

  it('NaN and ±Infinity round trip; finite numbers and -0 travel as numbers', () => {
    expect(roundTrip(Number.NaN)).toBeNaN();
    expect(roundTrip(Number.POSITIVE_INFINITY)).toBe(Number.POSITIVE_INFINITY);
    expect(roundTrip(Number.NEGATIVE_INFINITY)).toBe(Number.NEGATIVE_INFINITY);
    for (const n of [0, 1.5, -1e-300, 0.1 + 0.2, Number.MAX_SAFE_INTEGER, 2147483647])
      expect(roundTrip(n)).toBe(n);
  });

  it('strings that look like tags or JSON stay strings', () => {
    for (const s of ['{"$t":"bigint","v":"1"}', '$t', '', '\\N', '\u0000x', 'é😀\u2028']) {
      expect(roundTrip(s)).toBe(s);
    }
  });

  it('nested objects round trip, including keys "__proto__", "$t" and "v"', () => {
    const value = JSON.parse(
      '{"a":{"b":[1,null,{"__proto__":{"x":1}}]},"__proto__":"own","$t":"object","v":[1n]}'.replace(
        '1n',
        '"1"',
      ),
    );
    const back = roundTrip(value) as Record<string, unknown>;
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect(Object.keys(back)).toEqual(['a', '__proto__', '$t', 'v']);
    expect(Object.getOwnPropertyDescriptor(back, '__proto__')?.value).toBe('own');
    const inner = ((back.a as Record<string, unknown>).b as unknown[])[2] as Record<
      string,
      unknown
    >;
    expect(Object.getOwnPropertyDescriptor(inner, '__proto__')?.value).toEqual({ x: 1 });
    expect(JSON.stringify(back)).toBe(JSON.stringify(value));
    // no prototype was polluted on the way
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it('objects mixing tagged values round trip', () => {
    const v = { big: 2n ** 60n, buf: ALL_BYTES, when: new Date(0), nan: Number.NaN, deep: [[{}]] };
    expect(roundTrip(v)).toEqual(v);
  });

  it('arrays with nulls (and undefined holes, sent as null) round trip', () => {
    expect(roundTrip([null, 'a', null, [null, 1], []])).toEqual([null, 'a', null, [null, 1], []]);
    expect(roundTrip([1, undefined, 3])).toEqual([1, null, 3]);
  });

  it('refuses values JSON cannot carry: class instances, functions, symbols', () => {
    expect(code(() => encodeValue(new Map(), 'v'))).toBe('INVALID_VALUE');
    expect(code(() => encodeValue(() => 1, 'v'))).toBe('INVALID_VALUE');
    expect(code(() => encodeValue(Symbol('s'), 'v'))).toBe('INVALID_VALUE');
  });

  it('rows: column names once, absent columns stay absent, null stays null', () => {
    const rows = [
      { a: 1, b: null },
      { b: 'x', c: 2n ** 62n },
      { a: undefined, c: null },
    ];
    const enc = encodeRows(rows, 0);
    expect(enc.columns).toEqual(['a', 'b', 'c']);
    expect(enc.rows.every((r) => r.length === 3)).toBe(true);
    const back = rowsRoundTrip(rows);
    expect(back).toEqual([{ a: 1, b: null }, { b: 'x', c: 2n ** 62n }, { c: null }]);
    expect('a' in back[1]!).toBe(false);
    expect('a' in back[2]!).toBe(false);
  });

  it('rows: a column named "__proto__" is an own property after the trip', () => {
    const row = JSON.parse('{"__proto__":"p","id":1}');
    const back = rowsRoundTrip([row])[0]!;
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(back, '__proto__')?.value).toBe('p');
    expect(back.id).toBe(1);
  });

  it('rows that are not plain objects are INVALID_ROW', () => {
    expect(code(() => encodeRows([{ a: 1 }, [1, 2]], 0))).toBe('INVALID_ROW');
    expect(code(() => encodeRows([null], 5))).toBe('INVALID_ROW');
  });

  it('decode refuses bad tags with INVALID_PAYLOAD', () => {
    const bad: unknown[] = [
      { $t: 'nope', v: 1 },
      { v: 1 },
      { $t: 'bigint', v: 12 },
      { $t: 'bigint', v: '1.5' },
      { $t: 'bigint' },
      { $t: 'bytes', v: 'not base64!' },
      { $t: 'bytes', v: 3 },
      { $t: 'date', v: 'yesterday' },
      { $t: 'date', v: 0 },
      { $t: 'number', v: 'NaNa' },
      { $t: 'number', v: 1 },
      { $t: 'object', v: [1] },
      { $t: 'object', v: null },
      { $t: 'object', v: { a: { $t: 'bad' } } },
      [1, { $t: 'bogus' }],
    ];
    for (const b of bad) expect(code(() => decodeValue(b, 'v'))).toBe('INVALID_PAYLOAD');
    expect(code(() => decodeRows(['a', 'b'], [[1]], 0))).toBe('INVALID_PAYLOAD');
  });
});

function chunkPayload(): ChunkPayload {
  const enc = encodeRows([{ id: 1n, name: 'x' }], 0);
  return {
    v: 1,
    kind: 'bulkCreate',
    operationId: 'op-1',
    table: 'public.items',
    chunk: { index: 0, offset: 0 },
    options: { returning: true, batchSize: 10 },
    columns: enc.columns,
    rows: JSON.parse(JSON.stringify(enc.rows)),
  };
}

describe('json values in rows', () => {
  it('a plain object in a row travels as its JSON text, exactly what direct mode writes', () => {
    const payload = {
      a: [1, null, { b: 'tab\t"q"\\N 😀' }],
      __proto__x: 1,
      when: new Date(Date.UTC(2026, 0, 2)),
      nan: Number.NaN,
      skip: undefined,
    };
    const enc = encodeRows([{ id: 1, payload, list: [{ x: 1 }, 'y'] }], 0);
    // A column of json objects only: bare JSON text, the column listed in jsonColumns.
    expect(enc.rows[0]![1]).toBe(JSON.stringify(payload));
    expect(enc.jsonColumns).toEqual([1]);
    // In an array (a json[] column, or a jsonb column holding an array), element by element.
    expect(enc.rows[0]![2]).toEqual([{ $t: 'json', v: '{"x":1}' }, 'y']);
    const wire = JSON.parse(JSON.stringify(enc));
    // Anywhere but a writing worker, the text decodes to the parsed value.
    expect(decodeRows(wire.columns, wire.rows, 0, false, wire.jsonColumns)[0]!.payload).toEqual(
      JSON.parse(JSON.stringify(payload)),
    );
    // A worker keeps the text: JsonText, serialized back to the same JSON inside other values.
    const forWrite = decodeRows(wire.columns, wire.rows, 0, true, wire.jsonColumns)[0]!;
    expect(forWrite.payload).toBeInstanceOf(JsonText);
    expect((forWrite.payload as JsonText).text).toBe(JSON.stringify(payload));
    expect(JSON.stringify(forWrite.list)).toBe('[{"x":1},"y"]');
    // Rows read back from Postgres keep exact object tags (a BigInt inside stays a BigInt).
    expect(encodeRows([{ p: { n: 1n } }], 0, false).rows[0]![0]).toEqual({
      $t: 'object',
      v: { n: { $t: 'bigint', v: '1' } },
    });
    // Events and results re-encode a JsonText as the same tag.
    expect(encodeValue(forWrite.payload, 'p')).toEqual({ $t: 'json', v: JSON.stringify(payload) });
  });

  it('jsonColumns: only columns of json objects, nulls and absents; others keep their tags', () => {
    const rows = [
      { a: { k: 1 }, b: { k: 'x' }, c: null, d: 'text', e: { k: 2 } },
      { a: null, b: 'a JSON string', d: 'more' },
      { b: { k: '\t\n"\\' }, c: null, e: new JsonText('[1, 2]') },
    ];
    const enc = encodeRows(rows, 0);
    expect(enc.columns).toEqual(['a', 'b', 'c', 'd', 'e']);
    // a: objects and null; e: an object, absent, a JsonText. b mixes a string in; c, d hold none.
    expect(enc.jsonColumns).toEqual([0, 4]);
    expect(enc.rows[1]![0]).toBeNull();
    expect(enc.rows[1]![4]).toEqual({ $t: 'absent' });
    expect(enc.rows[2]![0]).toEqual({ $t: 'absent' });
    expect(enc.rows[2]![4]).toBe('[1, 2]');
    expect(enc.rows[0]![1]).toEqual({ $t: 'json', v: '{"k":"x"}' });
    expect(enc.rows[1]![1]).toBe('a JSON string');
    const back = rowsRoundTrip(rows);
    expect(back).toEqual([
      { a: { k: 1 }, b: { k: 'x' }, c: null, d: 'text', e: { k: 2 } },
      { a: null, b: 'a JSON string', d: 'more' },
      { b: { k: '\t\n"\\' }, c: null, e: [1, 2] },
    ]);
    expect('a' in back[2]!).toBe(false);
    // Exact object tags (rows read back from Postgres) never use jsonColumns.
    expect(encodeRows(rows.slice(0, 1), 0, false).jsonColumns).toBeUndefined();
  });

  it('a json value whose toJSON gives undefined is INVALID_VALUE, never sent as null', () => {
    const rows = [{ id: 1, p: { toJSON: () => undefined } }];
    expect(code(() => encodeRows(rows, 0))).toBe('INVALID_VALUE');
  });

  it('a "__proto__" column some rows lack is absent in those rows, not Object.prototype', () => {
    const withProto = JSON.parse('{"__proto__": {"x": 1}, "n": 1}');
    const enc = encodeRows([withProto, { n: 2 }], 0);
    expect(enc.columns).toEqual(['__proto__', 'n']);
    expect(enc.rows[1]![0]).toEqual({ $t: 'absent' });
    const back = rowsRoundTrip([withProto, { n: 2 }]);
    expect(Object.hasOwn(back[0]!, '__proto__')).toBe(true);
    expect(Object.getOwnPropertyDescriptor(back[0]!, '__proto__')?.value).toEqual({ x: 1 });
    expect(Object.hasOwn(back[1]!, '__proto__')).toBe(false);
    // Likewise any name Object.prototype has.
    const odd: Record<string, unknown>[] = [{ id: 1, constructor: 5, toString: 'x' }, { id: 2 }];
    const encOdd = encodeRows(odd, 0);
    expect(encOdd.rows[1]).toEqual([2, { $t: 'absent' }, { $t: 'absent' }]);
    expect(rowsRoundTrip(odd)).toEqual(odd);
  });

  it('jsonColumns: a value that is not JSON text, null or absent is INVALID_PAYLOAD', () => {
    for (const bad of [5, true, ['x'], { $t: 'json', v: '1' }, { $t: 'absent', v: 1 }, '{nope']) {
      expect(code(() => decodeRows(['id', 'p'], [[1, bad]], 0, false, [1]))).toBe(
        'INVALID_PAYLOAD',
      );
    }
    // Out of range, and refused by validatePayload before any row is decoded.
    expect(code(() => decodeRows(['p'], [['{}']], 0, true, [1]))).toBe('INVALID_PAYLOAD');
    const p = { ...chunkPayload(), jsonColumns: [chunkPayload().columns.length] };
    expect(code(() => validatePayload(p, 'chunk'))).toBe('INVALID_PAYLOAD');
    expect(code(() => validatePayload({ ...chunkPayload(), jsonColumns: [-1] }, 'chunk'))).toBe(
      'INVALID_PAYLOAD',
    );
    // Column 1 holds strings: valid. Column 0 holds a bigint tag: the schema alone cannot tell
    // (it names columns by index), validatePayload does.
    expect(validatePayload({ ...chunkPayload(), jsonColumns: [1] }, 'chunk')).toBeTruthy();
    const extra = chunkPayload();
    extra.rows[0]![1] = { $t: 'absent', v: 1 } as never;
    expect(code(() => validatePayload({ ...extra, jsonColumns: [1] }, 'chunk'))).toBe(
      'INVALID_PAYLOAD',
    );
    expect(code(() => validatePayload({ ...chunkPayload(), jsonColumns: [0] }, 'chunk'))).toBe(
      'INVALID_PAYLOAD',
    );
    // The worker's path leaves values to decodeRows, which refuses it as it decodes.
    const env = validatePayload({ ...chunkPayload(), jsonColumns: [0] }, 'chunk', {
      values: false,
    }) as ChunkPayload;
    expect(
      code(() => decodeRows(env.columns, env.rows as unknown[][], 0, true, env.jsonColumns)),
    ).toBe('INVALID_PAYLOAD');
  });

  it('what JSON.stringify refuses is INVALID_VALUE at enqueue; bad json tags are INVALID_PAYLOAD', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(code(() => encodeRows([{ p: cyclic }], 0))).toBe('INVALID_VALUE');
    expect(code(() => encodeRows([{ p: { n: 1n } }], 0))).toBe('INVALID_VALUE');
    expect(code(() => decodeValue({ $t: 'json', v: 5 }, 'v'))).toBe('INVALID_PAYLOAD');
    expect(code(() => decodeValue({ $t: 'json', v: '{nope' }, 'v'))).toBe('INVALID_PAYLOAD');
    expect(code(() => decodeValue({ $t: 'json' }, 'v'))).toBe('INVALID_PAYLOAD');
  });
});

describe('jsonSizeBound', () => {
  it('is never below the UTF-8 size of the JSON text', () => {
    const values: unknown[] = [
      '',
      'plain',
      '"\\\u0000\u001f\n\t',
      '😀'.repeat(50),
      '\ud800 lone',
      'ünïcode é',
      -1.7976931348623157e308,
      5e-324,
      -0,
      true,
      null,
      [],
      {},
      [1, 'two', [null, { $t: 'json', v: '{"k":"\\"}' }]],
      { 'k"ey\u0001': ['x'], __proto__x: { $t: 'bigint', v: '-9223372036854775808' } },
      encodeRows([{ a: { deep: ['q"uote', '😀'] }, b: 1.5, c: null }], 0),
      -0.0000010000000000000002,
      [-1.2345678901234568e-300, Number('-0.0000012345678901234567')],
    ];
    for (const v of values) {
      const exact = Buffer.byteLength(JSON.stringify(v));
      expect(jsonSizeBound(v)).toBeGreaterThanOrEqual(exact);
    }
    // Anything serialized through toJSON is not bounded: the exact size is measured then.
    expect(jsonSizeBound({ d: new Date() })).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('validatePayload', () => {
  it('accepts a chunk, an operation and a seal payload under their own job names', () => {
    expect(validatePayload(chunkPayload(), 'chunk')).toBeTruthy();
    const op = { v: 1, kind: 'bulkCreate', operationId: 'op-1', table: 't', options: {} };
    expect(validatePayload(op, 'operation')).toBeTruthy();
    expect(validatePayload({ v: 1, operationId: 'op-1', seal: true }, 'seal')).toBeTruthy();
  });

  it('refuses a wrong or missing version', () => {
    for (const v of [2, 0, '1', undefined, null]) {
      expect(code(() => validatePayload({ ...chunkPayload(), v }, 'chunk'))).toBe(
        'INVALID_PAYLOAD',
      );
    }
    expect(code(() => validatePayload(null, 'chunk'))).toBe('INVALID_PAYLOAD');
    expect(code(() => validatePayload('text', 'chunk'))).toBe('INVALID_PAYLOAD');
  });

  it('refuses unknown fields, at the top, in options, in chunk and in tags', () => {
    expect(code(() => validatePayload({ ...chunkPayload(), extra: 1 }, 'chunk'))).toBe(
      'INVALID_PAYLOAD',
    );
    const p1 = chunkPayload();
    (p1.options as Record<string, unknown>).sql = 'DROP TABLE x';
    expect(code(() => validatePayload(p1, 'chunk'))).toBe('INVALID_PAYLOAD');
    const p2 = chunkPayload();
    (p2.chunk as Record<string, unknown>).extra = 1;
    expect(code(() => validatePayload(p2, 'chunk'))).toBe('INVALID_PAYLOAD');
    const p3 = chunkPayload();
    p3.rows[0]![0] = { $t: 'bigint', v: '1', x: 2 } as never;
    expect(code(() => validatePayload(p3, 'chunk'))).toBe('INVALID_PAYLOAD');
  });

  it('refuses rows of the wrong width', () => {
    const p = chunkPayload();
    p.rows.push(['only one']);
    expect(code(() => validatePayload(p, 'chunk'))).toBe('INVALID_PAYLOAD');
    const q = chunkPayload();
    q.rows[0]!.push('one too many');
    expect(code(() => validatePayload(q, 'chunk'))).toBe('INVALID_PAYLOAD');
  });

  it('refuses a payload under the wrong job name', () => {
    expect(code(() => validatePayload(chunkPayload(), 'operation'))).toBe('INVALID_PAYLOAD');
    expect(code(() => validatePayload(chunkPayload(), 'seal'))).toBe('INVALID_PAYLOAD');
    expect(code(() => validatePayload({ v: 1, operationId: 'op-1', seal: true }, 'chunk'))).toBe(
      'INVALID_PAYLOAD',
    );
    expect(code(() => validatePayload(chunkPayload(), 'something'))).toBe('INVALID_PAYLOAD');
  });

  it('refuses bad operation ids, negative chunk indexes, unknown kinds and bad tags', () => {
    for (const patch of [
      { operationId: 'has:colon' },
      { operationId: '' },
      { chunk: { index: -1, offset: 0 } },
      { kind: 'drop' },
      { table: '' },
      { columns: ['id', 'id'] },
    ]) {
      expect(code(() => validatePayload({ ...chunkPayload(), ...patch }, 'chunk'))).toBe(
        'INVALID_PAYLOAD',
      );
    }
    const p = chunkPayload();
    p.rows[0]![0] = { $t: 'bigint', v: '12a' };
    expect(code(() => validatePayload(p, 'chunk'))).toBe('INVALID_PAYLOAD');
  });
});

describe('published schema', () => {
  it('docs/payload.schema.json equals PAYLOAD_SCHEMA', () => {
    const published = JSON.parse(
      readFileSync(new URL('../../docs/payload.schema.json', import.meta.url), 'utf8'),
    );
    expect(published).toEqual(JSON.parse(JSON.stringify(PAYLOAD_SCHEMA)));
  });
});
