import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BulkError, ERROR_CODES } from '../../src/index.js';

const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
const documented = [...doc.matchAll(/^### ([A-Z_]+)$/gm)].map((m) => m[1]);

describe('error codes', () => {
  it('every code has a section in docs/errors.md', () => {
    for (const code of Object.keys(ERROR_CODES)) expect(documented, code).toContain(code);
  });

  it('docs/errors.md documents no code that does not exist', () => {
    for (const code of documented) expect(Object.keys(ERROR_CODES), code!).toContain(code);
  });

  it('a BulkError survives JSON (how queue workers report to producers)', () => {
    const e = new BulkError('UNIQUE_VIOLATION', 'items: duplicate', {
      table: 'items',
      column: 'id',
      row: 3,
      pgCode: '23505',
      constraint: 'items_pkey',
    });
    const back = BulkError.fromJSON(JSON.parse(JSON.stringify(e)));
    expect(back).toBeInstanceOf(BulkError);
    expect(back.toJSON()).toEqual(e.toJSON());
  });

  it('an unknown code read back from JSON becomes DATABASE_ERROR, not a crash', () => {
    expect(BulkError.fromJSON({ code: 'NOPE', message: 'x' }).code).toBe('DATABASE_ERROR');
    expect(BulkError.fromJSON(null).code).toBe('DATABASE_ERROR');
  });
});
