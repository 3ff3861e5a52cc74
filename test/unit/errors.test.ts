import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fromPgError, type PgErrorLike } from '../../src/core/errors.js';
import { parseTableName } from '../../src/core/meta.js';
import {
  BulkError,
  type BulkErrorCode,
  BulkProducer,
  ERROR_CODES,
  RETRIED,
  validatePayload,
} from '../../src/index.js';

const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
const documented = [...doc.matchAll(/^### ([A-Z_]+)$/gm)].map((m) => m[1]);

/** The doc's `### ` sections: the heading, and the text up to the next `### ` or `## ` heading. */
const sections = doc
  .split(/^(?=#{2,3} )/m)
  .filter((part) => part.startsWith('### '))
  .map((part) => {
    const nl = part.indexOf('\n');
    return {
      heading: (nl === -1 ? part.slice(4) : part.slice(4, nl)).trim(),
      lines:
        nl === -1
          ? []
          : part
              .slice(nl + 1)
              .trimEnd()
              .split('\n'),
    };
  });

function sectionOf(code: string): string[] {
  const found = sections.filter((s) => s.heading === code);
  expect(found, `sections headed ${code}`).toHaveLength(1);
  return found[0]!.lines;
}

const RETRIED_LINE = /^\*\*Retried:\*\* (yes|transient|no)\.(?: \S.*)?$/;
/** `**Example:**` and one code span (CommonMark: a run of backquotes opens and closes it). */
const EXAMPLE_LINE = /^\*\*Example:\*\* (`+)(.+?)\1$/;

/** The message a section's Example line shows, as the rendered code span reads. */
function exampleOf(code: string): string {
  const line = sectionOf(code).find((l) => l.startsWith('**Example:**'));
  const m = EXAMPLE_LINE.exec(line ?? '');
  expect(m, `${code}: ${line}`).not.toBeNull();
  const text = m![2]!;
  return text.length > 2 && text.startsWith(' ') && text.endsWith(' ') ? text.slice(1, -1) : text;
}

/** The BulkError `f` throws or returns. */
function raised(f: () => unknown): BulkError {
  let out: unknown;
  try {
    out = f();
  } catch (err) {
    out = err;
  }
  expect(out).toBeInstanceOf(BulkError);
  return out as BulkError;
}

/** A Postgres error as node-postgres gives it (COPY names the line in `where`), wrapped. */
const fromPg = (e: PgErrorLike) => () => fromPgError(e, { table: 'items' });

describe('error codes', () => {
  it('every code has a section in docs/errors.md', () => {
    for (const code of Object.keys(ERROR_CODES)) expect(documented, code).toContain(code);
  });

  it('docs/errors.md documents no code that does not exist', () => {
    for (const code of documented) expect(Object.keys(ERROR_CODES), code!).toContain(code);
  });

  it('every ### section of docs/errors.md is a code, documented once', () => {
    const headings = sections.map((s) => s.heading);
    for (const h of headings) expect(Object.keys(ERROR_CODES), h).toContain(h);
    expect(new Set(headings).size, 'a code documented twice').toBe(headings.length);
  });

  it("every code's section ends with its Retried line (as RETRIED says) and an Example", () => {
    for (const code of Object.keys(ERROR_CODES) as BulkErrorCode[]) {
      const retried = RETRIED[code];
      const lines = sectionOf(code);
      const retriedLines = lines.filter((l) => l.startsWith('**Retried:**'));
      expect(retriedLines, `${code}: Retried lines`).toHaveLength(1);
      expect(RETRIED_LINE.exec(retriedLines[0]!)?.[1], `${code}: ${retriedLines[0]}`).toBe(retried);
      const exampleLines = lines.filter((l) => l.startsWith('**Example:**'));
      expect(exampleLines, `${code}: Example lines`).toHaveLength(1);
      expect(exampleOf(code).trim(), `${code}: example message`).not.toBe('');
      const filled = lines.filter((l) => l.trim() !== '');
      expect(filled.slice(-2), `${code}: the section's last two paragraphs`).toEqual([
        retriedLines[0],
        exampleLines[0],
      ]);
    }
  });

  it('documented examples are the messages the code produces', () => {
    const at = 'COPY items, line 4';
    const cases: [BulkErrorCode, () => unknown][] = [
      ['INVALID_OPTION', () => new BulkProducer({ queu: 'a' } as never)],
      [
        'FILE_ERROR',
        () => {
          try {
            readFileSync('/no/such/dir/items.csv');
          } catch (err) {
            return fromPgError(err, { table: 'items' });
          }
        },
      ],
      ['INVALID_IDENTIFIER', () => parseTableName('public.items.price')],
      ['INVALID_PAYLOAD', () => validatePayload({ v: 4 }, 'chunk')],
      [
        'INTERNAL_ERROR',
        () => fromPgError(new RangeError('Maximum call stack size exceeded'), { table: 'items' }),
      ],
      [
        'NOT_NULL_VIOLATION',
        fromPg({
          code: '23502',
          message: 'null value in column "price" of relation "items" violates not-null constraint',
          column: 'price',
          detail: 'Failing row contains (4, Widget, null).',
          where: `${at}: "4\tWidget\t\\N"`,
        }),
      ],
      [
        'UNIQUE_VIOLATION',
        fromPg({
          code: '23505',
          message: 'duplicate key value violates unique constraint "items_pkey"',
          constraint: 'items_pkey',
          detail: 'Key (id)=(4) already exists.',
          where: at,
        }),
      ],
      [
        'FOREIGN_KEY_VIOLATION',
        fromPg({
          code: '23503',
          message:
            'insert or update on table "items" violates foreign key constraint "items_order_id_fkey"',
          constraint: 'items_order_id_fkey',
          where: at,
        }),
      ],
      [
        'CHECK_VIOLATION',
        fromPg({
          code: '23514',
          message: 'new row for relation "items" violates check constraint "items_price_check"',
          constraint: 'items_price_check',
          where: at,
        }),
      ],
      [
        'CONSTRAINT_VIOLATION',
        fromPg({
          code: '23P01',
          message: 'conflicting key value violates exclusion constraint "items_during_excl"',
          constraint: 'items_during_excl',
          where: at,
        }),
      ],
      [
        'DATA_ERROR',
        fromPg({
          code: '22007',
          message: 'invalid input syntax for type timestamp with time zone: "yesterday-ish"',
          where: `${at}, column created_at: "yesterday-ish"`,
        }),
      ],
      ['DATABASE_ERROR', fromPg({ code: '42501', message: 'permission denied for table items' })],
    ];
    for (const [code, produce] of cases) {
      const e = raised(produce);
      expect(e.code).toBe(code);
      expect(exampleOf(code), code).toBe(e.message);
    }
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

  it('an unknown code read back from JSON becomes INTERNAL_ERROR naming it, not a crash', () => {
    const unknown = BulkError.fromJSON({ code: 'NOPE', message: 'x' });
    expect(unknown.code).toBe('INTERNAL_ERROR');
    expect(unknown.message).toContain('"NOPE"');
    expect(BulkError.fromJSON(null).code).toBe('INTERNAL_ERROR');
  });
});
