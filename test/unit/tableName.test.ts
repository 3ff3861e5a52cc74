import { describe, expect, it } from 'vitest';
import { quoteIdent } from '../../src/core/ident.js';
import { parseTableName } from '../../src/core/meta.js';
import { BulkError } from '../../src/index.js';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BulkError);
    return (err as BulkError).code;
  }
  return undefined;
}

describe('parseTableName', () => {
  it.each([
    ['items', { schema: null, name: 'items', quoted: false }],
    ['public.items', { schema: 'public', name: 'items', quoted: false }],
    ['Items', { schema: null, name: 'Items', quoted: false }],
    ['_x$1', { schema: null, name: '_x$1', quoted: false }],
    ['"we""ird"', { schema: null, name: 'we"ird', quoted: true }],
    ['"a.b"', { schema: null, name: 'a.b', quoted: true }],
    ['"my schema"."my; table"', { schema: 'my schema', name: 'my; table', quoted: true }],
    ['s."T"', { schema: 's', name: 'T', quoted: true }],
  ])('%s', (input, expected) => {
    expect(parseTableName(input)).toEqual(expected);
  });

  it.each([
    'items; drop table x',
    'a.b.c',
    '"a"."b"."c"',
    '',
    '.items',
    'items.',
    'a..b',
    '"unterminated',
    'a"b"',
    'items--',
    'items /* x */',
    ' items',
    '1items',
    'x'.repeat(201),
    "items' OR '1'='1",
    '"a"b',
  ])('refuses %j as INVALID_IDENTIFIER', (input) => {
    expect(code(() => parseTableName(input))).toBe('INVALID_IDENTIFIER');
  });

  it('refuses non-strings', () => {
    expect(code(() => parseTableName(5 as unknown as string))).toBe('INVALID_IDENTIFIER');
    expect(code(() => parseTableName(null as unknown as string))).toBe('INVALID_IDENTIFIER');
  });
});

describe('quoteIdent', () => {
  it('always quotes and doubles quotes', () => {
    expect(quoteIdent('items')).toBe('"items"');
    expect(quoteIdent('name"; drop table x; --')).toBe('"name""; drop table x; --"');
    expect(quoteIdent('')).toBe('""');
  });
});
