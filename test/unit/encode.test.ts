import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  copyEscape,
  dateToLiteral,
  encoderFor,
  jsonLiteral,
  ValueProblem,
  valueError,
} from '../../src/core/encode.js';
import { JsonText } from '../../src/core/jsonText.js';
import type { ColumnMeta, TableMeta, ValueKind } from '../../src/core/meta.js';
import { BulkError } from '../../src/index.js';
import { HOSTILE_TEXT, type TestDb, testDb } from '../helpers.js';

function col(kind: ValueKind, over: Partial<ColumnMeta> = {}): ColumnMeta {
  return {
    name: 'c',
    sqlName: '"c"',
    typeSql: 'text',
    castSql: 'text',
    baseOid: 25,
    kind,
    isArray: false,
    elemOid: 0,
    elemKind: 'other',
    notNull: false,
    hasDefault: false,
    identity: '',
    generated: false,
    defaultExpr: null,
    ...over,
  };
}
const enc = (kind: ValueKind) => encoderFor(col(kind));
const arr = (elemKind: ValueKind) => encoderFor(col('other', { isArray: true, elemKind }));

function problem(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValueProblem);
    return (err as Error).message;
  }
  throw new Error('expected a ValueProblem');
}

describe('integers', () => {
  it.each([
    ['int2', -32768, 32767, -32769, 32768],
    ['int4', -2147483648, 2147483647, -2147483649, 2147483648],
  ] as const)('%s range', (kind, lo, hi, below, above) => {
    const e = enc(kind);
    expect(e(lo)).toBe(String(lo));
    expect(e(hi)).toBe(String(hi));
    expect(e(String(hi))).toBe(String(hi));
    expect(e(BigInt(lo))).toBe(String(lo));
    problem(() => e(below));
    problem(() => e(above));
    problem(() => e(String(above)));
    problem(() => e(String(below)));
    problem(() => e(BigInt(below)));
    // Strings take a short path when already canonical, the BigInt path otherwise.
    expect(e(String(lo))).toBe(String(lo));
    expect(e('0')).toBe('0');
    expect(e('-0')).toBe('0');
    expect(e('007')).toBe('7');
    expect(e('+12')).toBe('12');
    problem(() => e(`0${above}`));
  });

  it('int8: BigInt and strings beyond 2^53 exactly; unsafe numbers refused', () => {
    const e = enc('int8');
    expect(e(2n ** 63n - 1n)).toBe('9223372036854775807');
    expect(e(-(2n ** 63n))).toBe('-9223372036854775808');
    expect(e('9007199254740993')).toBe('9007199254740993');
    expect(e('+12')).toBe('12');
    expect(e('999999999999999')).toBe('999999999999999');
    expect(e('-0999999999999999')).toBe('-999999999999999');
    expect(e(Number.MAX_SAFE_INTEGER)).toBe('9007199254740991');
    problem(() => e(2n ** 63n));
    problem(() => e('9223372036854775808'));
    problem(() => e(2 ** 53));
    problem(() => e(1.5));
    problem(() => e(Number.NaN));
  });

  it('refuses what is not an integer', () => {
    const e = enc('int4');
    for (const v of ['1.0', 'abc', ' 1', '1 ', '', '0x10', true, {}, [], new Date()])
      problem(() => e(v));
  });
});

describe('numbers', () => {
  it('numeric keeps strings exact; NaN and infinities', () => {
    const e = enc('numeric');
    const many = '-123456789012345678901234567890.123456789012345678901234567890';
    expect(e(many)).toBe(many);
    expect(e(1.25)).toBe('1.25');
    expect(e(10n ** 30n)).toBe(`1${'0'.repeat(30)}`);
    expect(e(Number.NaN)).toBe('NaN');
    expect(e(Number.POSITIVE_INFINITY)).toBe('Infinity');
    expect(e(Number.NEGATIVE_INFINITY)).toBe('-Infinity');
    expect(e('1e-5')).toBe('1e-5');
    expect(e('.5')).toBe('.5');
    for (const v of ['abc', '1,5', '', true, [1]]) problem(() => e(v));
  });

  it('float', () => {
    const e = enc('float');
    expect(e(0.1 + 0.2)).toBe('0.30000000000000004');
    expect(e(Number.NaN)).toBe('NaN');
    expect(e(Number.POSITIVE_INFINITY)).toBe('Infinity');
    expect(e(Number.NEGATIVE_INFINITY)).toBe('-Infinity');
    expect(e('-1.5e300')).toBe('-1.5e300');
    for (const v of ['x', true, {}]) problem(() => e(v));
  });
});

describe('scalars', () => {
  it('bool takes booleans, and the strings t/f/true/false/1/0 in any case (as files carry them)', () => {
    expect(enc('bool')(true)).toBe('t');
    expect(enc('bool')(false)).toBe('f');
    for (const v of ['t', 'T', 'true', 'TRUE', 'True', '1']) expect(enc('bool')(v)).toBe('t');
    for (const v of ['f', 'F', 'false', 'FALSE', 'False', '0']) expect(enc('bool')(v)).toBe('f');
    // Numbers, and strings Postgres would read but files rarely hold, stay refused.
    for (const v of [
      1,
      0,
      '',
      ' t',
      'yes',
      'on',
      'y',
      '2',
      'truth',
      'null',
      'constructor',
      '__proto__',
    ])
      problem(() => enc('bool')(v));
  });

  it('bytea: Buffer and Uint8Array (views respected) as \\x hex', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    expect(enc('bytea')(all)).toBe(`\\x${all.toString('hex')}`);
    expect(enc('bytea')(Buffer.alloc(0))).toBe('\\x');
    expect(enc('bytea')(new Uint8Array([1, 2, 3, 4]).subarray(1, 3))).toBe('\\x0203');
    for (const v of ['\\x00', [1, 2], 5]) problem(() => enc('bytea')(v));
  });

  it('text refuses NUL bytes and lone surrogates, keeps everything else', () => {
    for (const s of HOSTILE_TEXT) expect(enc('text')(s)).toBe(s);
    expect(enc('text')('😀')).toBe('😀');
    expect(problem(() => enc('text')('a\u0000b'))).toMatch(/NUL/);
    expect(problem(() => enc('text')('a\ud800'))).toMatch(/surrogate/);
    expect(problem(() => enc('text')('\udc00a'))).toMatch(/surrogate/);
    for (const v of [5, true, {}, Buffer.from('x')]) problem(() => enc('text')(v));
  });

  it('null is SQL NULL for every kind', () => {
    for (const k of ['text', 'int4', 'json', 'bytea', 'timestamp'] as ValueKind[])
      expect(enc(k)(null)).toBeNull();
    expect(arr('text')(null)).toBeNull();
  });

  it('timestamps: Dates with their offset, strings as given', () => {
    const d = new Date(Date.UTC(2001, 1, 3, 4, 5, 6, 7));
    const off = -d.getTimezoneOffset();
    const lit = dateToLiteral(d);
    expect(new Date(lit).getTime()).toBe(d.getTime());
    if (off === 0) expect(lit).toBe('2001-02-03T04:05:06.007+00:00');
    expect(enc('timestamp')('2024-02-29 23:59:59.123456+00')).toBe('2024-02-29 23:59:59.123456+00');
    problem(() => enc('timestamp')(new Date(Number.NaN)));
    problem(() => enc('timestamp')(12345));
    expect(enc('date')('2024-02-29')).toBe('2024-02-29');
  });
});

describe('json', () => {
  it('a value is the JSON value itself; a string is a JSON string', () => {
    expect(jsonLiteral({ a: [1, null, 'x'] })).toBe('{"a":[1,null,"x"]}');
    expect(jsonLiteral('{"a":1}')).toBe('"{\\"a\\":1}"');
    expect(jsonLiteral('plain')).toBe('"plain"');
    expect(jsonLiteral(1.5)).toBe('1.5');
    expect(jsonLiteral(false)).toBe('false');
    expect(jsonLiteral([])).toBe('[]');
    // a literal backslash-u in text is fine: it is not an escape for NUL
    expect(jsonLiteral('a\\u0000')).toBe('"a\\\\u0000"');
  });

  it('JsonText is written as its text, with the same checks on its strings', () => {
    expect(jsonLiteral(new JsonText('{"a": [1, null]}'))).toBe('{"a": [1, null]}');
    expect(jsonLiteral(new JsonText('"a\\\\u0000"'))).toBe('"a\\\\u0000"');
    expect(jsonLiteral([new JsonText('{"x":1}'), 2])).toBe('[{"x":1},2]');
    problem(() => jsonLiteral(new JsonText('{"a": "x\\u0000"}')));
    problem(() => jsonLiteral(new JsonText('["\\ud800"]')));
    problem(() => jsonLiteral(new JsonText('{"\\udc00": 1}')));
    problem(() => jsonLiteral(new JsonText('{"a": "\\u0000"')));
    // raw, unescaped: a lone surrogate or a NUL in the text itself
    problem(() => jsonLiteral(new JsonText('"\ud800"')));
    problem(() => jsonLiteral(new JsonText('"a\u0000"')));
    // nested inside another JSON value (a queue worker's json[] or a jsonb array)
    problem(() => jsonLiteral([new JsonText('{"a": "x\\u0000"}')]));
    problem(() => jsonLiteral([new JsonText('{"b": "\\udc00"}')]));
    problem(() => jsonLiteral({ k: new JsonText('["\ud800"]') }));
  });

  it('refuses NUL, lone surrogates (values and keys), BigInt, undefined, cycles', () => {
    problem(() => jsonLiteral({ a: 'x\u0000' }));
    problem(() => jsonLiteral(['\ud800']));
    problem(() => jsonLiteral({ 'k\udc00': 1 }));
    problem(() => jsonLiteral({ deep: [{ deeper: ['\u0000'] }] }));
    problem(() => jsonLiteral(1n));
    problem(() => jsonLiteral(undefined));
    const cyc: Record<string, unknown> = {};
    cyc.self = cyc;
    problem(() => jsonLiteral(cyc));
    expect(jsonLiteral('😀')).toBe('"😀"');
  });
});

describe('arrays', () => {
  it('quotes every element, NULL elements, nested arrays', () => {
    expect(arr('text')(['a', null, 'q"uote', 'back\\slash', '{x,y}', 'NULL', '', ' s '])).toBe(
      '{"a",NULL,"q\\"uote","back\\\\slash","{x,y}","NULL",""," s "}',
    );
    expect(
      arr('int4')([
        [1, 2],
        [3, null],
      ]),
    ).toBe('{{"1","2"},{"3",NULL}}');
    expect(arr('int4')([])).toBe('{}');
    expect(arr('bytea')([Buffer.from([0, 255])])).toBe('{"\\\\x00ff"}');
    expect(arr('json')([{ a: 'x"y' }, null, 'str', [1, 2]])).toBe(
      '{"{\\"a\\":\\"x\\\\\\"y\\"}",NULL,"\\"str\\"","[1,2]"}',
    );
  });

  it('refuses non-arrays and bad elements; a string is an array literal, as Postgres writes it', () => {
    expect(arr('text')('{a,"b c"}')).toBe('{a,"b c"}');
    expect(arr('int4')('[0:1]={7,8}')).toBe('[0:1]={7,8}');
    problem(() => arr('text')(5));
    problem(() => arr('text')('a\u0000'));
    problem(() => arr('int4')([1, 'x']));
    problem(() => arr('text')(['ok', 'a\u0000']));
    problem(() => arr('int2')([70000]));
  });
});

describe('copyEscape', () => {
  it('escapes the four COPY specials and nothing else', () => {
    expect(copyEscape(null)).toBe('\\N');
    expect(copyEscape('\\N')).toBe('\\\\N');
    expect(copyEscape('\\.')).toBe('\\\\.');
    expect(copyEscape('a\tb\nc\rd\\e')).toBe('a\\tb\\nc\\rd\\\\e');
    expect(copyEscape('plain, "quoted" {x}')).toBe('plain, "quoted" {x}');
    expect(copyEscape('')).toBe('');
    expect(copyEscape('\u0001\u2028😀')).toBe('\u0001\u2028😀');
  });
});

describe('valueError', () => {
  it('names table, column and row', () => {
    const meta = { displayName: 's.items' } as TableMeta;
    const e = valueError(meta, 'n', 4, new ValueProblem('bad'));
    expect(e).toBeInstanceOf(BulkError);
    expect(e).toMatchObject({ code: 'INVALID_VALUE', table: 's.items', column: 'n', row: 4 });
  });
});

describe('literals Postgres reads back as the input', () => {
  let tdb: TestDb;
  beforeAll(async () => {
    tdb = await testDb('enc');
  });
  afterAll(() => tdb.close());

  const cases: [string, ColumnMeta, unknown, unknown?][] = [
    ['text[]', col('other', { isArray: true, elemKind: 'text' }), [...HOSTILE_TEXT, null]],
    [
      'int4[]',
      col('other', { isArray: true, elemKind: 'int4' }),
      [
        [1, null],
        [null, -3],
      ],
    ],
    ['int8', col('int8'), 2n ** 62n + 1n, String(2n ** 62n + 1n)],
    ['numeric', col('numeric'), '1234567890.0987654321000', '1234567890.0987654321000'],
    ['float8', col('float'), Number.NaN],
    ['bytea', col('bytea'), Buffer.from(Array.from({ length: 256 }, (_, i) => i))],
    ['jsonb', col('json'), { s: HOSTILE_TEXT, n: [1.5, null, true], '': 'empty key' }],
    ['jsonb', col('json'), '{"not":"parsed"}'],
    [
      'jsonb[]',
      col('other', { isArray: true, elemKind: 'json' }),
      [{ a: 'x"y\\' }, null, 'str', [1]],
    ],
    [
      'bytea[]',
      col('other', { isArray: true, elemKind: 'bytea' }),
      [Buffer.from([0, 92, 34]), null],
    ],
    ['bool[]', col('other', { isArray: true, elemKind: 'bool' }), [true, false, null]],
  ];
  it.each(cases)('%s', async (type, c, value, expected) => {
    const lit = encoderFor(c)(value);
    const r = await tdb.pool.query(`SELECT $1::${type} AS v`, [lit]);
    expect(r.rows[0].v).toEqual(expected ?? value);
  });
});
