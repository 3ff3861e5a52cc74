import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fromPgError } from '../../src/core/errors.js';
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

  it("errors that are not the database's are not DATABASE_ERROR", () => {
    const ctx = { table: 'items' };
    expect(fromPgError(new RangeError('Maximum call stack size exceeded'), ctx).code).toBe(
      'INTERNAL_ERROR',
    );
    expect(fromPgError(new TypeError('Cannot read properties of undefined'), ctx).code).toBe(
      'INTERNAL_ERROR',
    );
    // Node's own, with codes of their own, are JavaScript's too.
    const range = Object.assign(new RangeError('The value is out of range'), {
      code: 'ERR_OUT_OF_RANGE',
    });
    expect(fromPgError(range, ctx).code).toBe('INTERNAL_ERROR');
    expect(fromPgError(new SyntaxError('Unexpected token'), ctx).code).toBe('INTERNAL_ERROR');
    const enoent = Object.assign(new Error("ENOENT: no such file or directory, open '/x/y.csv'"), {
      code: 'ENOENT',
      syscall: 'open',
      path: '/x/y.csv',
    });
    const file = fromPgError(enoent, ctx);
    expect(file.code).toBe('FILE_ERROR');
    expect(file.message).toContain('/x/y.csv');
    // The driver's failures stay the database's (and are retried when transient).
    const reset = Object.assign(new Error('read ECONNRESET'), {
      code: 'ECONNRESET',
      syscall: 'read',
    });
    expect(fromPgError(reset, ctx).code).toBe('DATABASE_ERROR');
    expect(fromPgError(new Error('Connection terminated unexpectedly'), ctx).code).toBe(
      'DATABASE_ERROR',
    );
    expect(fromPgError({ code: '40P01', message: 'deadlock detected' }, ctx).code).toBe(
      'DATABASE_ERROR',
    );
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
