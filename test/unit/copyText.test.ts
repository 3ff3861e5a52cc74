import { describe, expect, it } from 'vitest';
import type { ColumnMeta } from '../../src/core/meta.js';
import { CopyTextParser } from '../../src/core/ops/copyTo.js';
import type { Row } from '../../src/core/signals.js';

/** Text columns (oid 25) and one int4 (oid 23): enough to check splitting and unescaping. */
function col(name: string, oid = 25): ColumnMeta {
  return {
    name,
    sqlName: `"${name}"`,
    typeSql: oid === 25 ? 'text' : 'integer',
    castSql: oid === 25 ? 'text' : 'integer',
    baseOid: oid,
    kind: oid === 25 ? 'text' : 'int',
    isArray: false,
    elemOid: 0,
    elemKind: 'text',
    notNull: false,
    hasDefault: false,
    identity: '',
    generated: false,
    defaultExpr: null,
  } as ColumnMeta;
}

const COLS = [col('a'), col('n', 23), col('b')];
const TEXT =
  'tab\\there\t1\tnew\\nline\n' +
  '\\N\t-2\t\n' +
  'back\\\\slash \\\\N\t3\t\\N\n' +
  'emoji 😀 "q" \\x41\\101\t4\tlast\n';
const EXPECTED: Row[] = [
  { a: 'tab\there', n: 1, b: 'new\nline' },
  { a: null, n: -2, b: '' },
  { a: 'back\\slash \\N', n: 3, b: null },
  { a: 'emoji 😀 "q" AA', n: 4, b: 'last' },
];

describe('CopyTextParser', () => {
  it('decodes rows whatever the pieces the output arrives in', () => {
    for (const size of [1, 2, 3, 7, 16, TEXT.length]) {
      const p = new CopyTextParser(COLS, {});
      const out: Row[] = [];
      for (let i = 0; i < TEXT.length; i += size) p.push(TEXT.slice(i, i + size), out);
      p.end();
      expect(out).toEqual(EXPECTED);
    }
  });

  it('one column: every line is one field; a tab is one field too many', () => {
    const p = new CopyTextParser([col('a')], {});
    const out: Row[] = [];
    p.push('x\n\\N\n\nlast \\t\n', out);
    expect(out).toEqual([{ a: 'x' }, { a: null }, { a: '' }, { a: 'last \t' }]);
    expect(() => p.push('a\tb\n', [])).toThrow(/does not have 1 fields/);
  });

  it('a column named "__proto__" is an own property, not the row\'s prototype', () => {
    const p = new CopyTextParser([col('__proto__'), col('n', 23)], {});
    const out: Row[] = [];
    p.push('x\t1\n', out);
    expect(Object.getOwnPropertyDescriptor(out[0]!, '__proto__')?.value).toBe('x');
    expect(Object.getPrototypeOf(out[0]!)).toBe(Object.prototype);
    expect(out[0]!.n).toBe(1);
  });

  it('refuses a row with too few or too many fields, and output cut mid-row', () => {
    for (const bad of ['x\t1\n', 'x\t1\ty\tz\n', 'x\n', 'x\t1\na\tb\tc\n', 'a\t1\tb\nx\t1\n']) {
      const p = new CopyTextParser(COLS, {});
      expect(() => p.push(bad, [])).toThrow(/does not have 3 fields/);
    }
    const p = new CopyTextParser(COLS, {});
    const out: Row[] = [];
    p.push('x\t1\ty\nx\t2', out);
    expect(out).toEqual([{ a: 'x', n: 1, b: 'y' }]);
    expect(() => p.end()).toThrow(/middle of a row/);
  });
});
