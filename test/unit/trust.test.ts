import { mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkDefined, columnList, findProblem } from '../../src/core/checks.js';
import { BulkError, fromPgError, hideValues } from '../../src/core/errors.js';
import { redact } from '../../src/core/logger.js';
import { checkExportFileName } from '../../src/queue/payload.js';
import { canonicalName } from '../../src/worker/allowlist.js';
import { sweepStaleTemps } from '../../src/worker/export.js';
import { checkChunk, checkDepth, DEFAULT_LIMITS, resolveLimits } from '../../src/worker/limits.js';

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err) {
    if (err instanceof BulkError) return err.code;
    throw err;
  }
  return undefined;
}

describe('redact', () => {
  it('hides any password, a raw @ in it included', () => {
    expect(redact('postgres://app:p@ss@db:5432/app')).toBe('postgres://app:***@db:5432/app');
    expect(redact('redis://:s3@cr@t@cache:6379 and more')).toBe('redis://:***@cache:6379 and more');
    expect(redact('postgres://a:b@c/d')).toBe('postgres://a:***@c/d');
    expect(redact("postgres://u:pa'ss@h/db")).toBe('postgres://u:***@h/db');
  });
  it('never swallows the next field of a JSON line', () => {
    const line = JSON.stringify({ url: 'postgres://u:pw@h/db', who: 'a@b' });
    expect(redact(line)).toBe(JSON.stringify({ url: 'postgres://u:***@h/db', who: 'a@b' }));
  });
  it('leaves URLs without a password alone', () => {
    expect(redact('postgres://app@db/app')).toBe('postgres://app@db/app');
    expect(redact('postgres://app@db/app?sslmode=require')).toBe(
      'postgres://app@db/app?sslmode=require',
    );
  });
  it('hides a password given as a parameter (libpq takes ?password= and ?sslpassword=)', () => {
    expect(redact('postgres://app@db/app?password=s3cr3t&sslmode=require')).toBe(
      'postgres://app@db/app?password=***&sslmode=require',
    );
    expect(redact('postgresql:///app?host=/run/pg&sslpassword=k3y')).toBe(
      'postgresql:///app?host=/run/pg&sslpassword=***',
    );
    const line = JSON.stringify({ url: 'postgres://h/db?password=pw', next: 1 });
    expect(redact(line)).toBe(JSON.stringify({ url: 'postgres://h/db?password=***', next: 1 }));
  });
});

describe('row values out of messages', () => {
  it('hides quoted values, keeps quoted names', () => {
    expect(hideValues('invalid input syntax for type integer: "secret"')).toBe(
      'invalid input syntax for type integer: (value hidden)',
    );
    expect(hideValues('value "99999999999" is out of range for type integer')).toBe(
      'value (value hidden) is out of range for type integer',
    );
    const named = 'null value in column "code" of relation "m" violates not-null constraint';
    expect(hideValues(named)).toBe(named);
    const uniq = 'duplicate key value violates unique constraint "m_code_key"';
    expect(hideValues(uniq)).toBe(uniq);
  });

  it('hides values that hold quotes themselves (Postgres does not escape them)', () => {
    expect(hideValues('invalid input value for enum mood: "The "key" to success"')).toBe(
      'invalid input value for enum mood: (value hidden)',
    );
    expect(hideValues('value "1" "key" 2" is out of range for type integer')).toBe(
      'value (value hidden) is out of range for type integer',
    );
    expect(hideValues('"1e999" is out of range for type double precision')).toBe(
      '(value hidden) is out of range for type double precision',
    );
    expect(hideValues('custom: user "bob" has key "s3" and more')).toBe(
      'custom: user (value hidden) and more',
    );
    expect(hideValues('invalid byte sequence for encoding "UTF8": 0xe9 0x20')).toBe(
      'invalid byte sequence for encoding "UTF8": (bytes hidden)',
    );
  });

  it("a Postgres error's detail stays on the error, out of its message and of toJSON()", () => {
    const e = fromPgError(
      {
        code: '23505',
        message: 'duplicate key value violates unique constraint "m_code_key"',
        detail: 'Key (code)=(secret-1) already exists.',
        constraint: 'm_code_key',
      },
      { table: 'm' },
    );
    expect(e.code).toBe('UNIQUE_VIOLATION');
    expect(e.message).not.toContain('secret-1');
    expect(e.detail).toContain('secret-1');
    expect(JSON.stringify(e.toJSON())).not.toContain('secret-1');
    expect(e.toJSON({ values: true }).detail).toContain('secret-1');
    expect(e.toJSON().constraint).toBe('m_code_key');
  });
});

describe('checks on filters and option lists', () => {
  it('finds undefined anywhere, and nesting past the limit, without recursion', () => {
    expect(findProblem({ a: 1, b: { eq: undefined } }, 'where')).toEqual({
      path: 'where.b.eq',
      problem: 'undefined',
    });
    expect(findProblem({ a: [1, undefined] }, 'where')?.path).toBe('where.a[1]');
    let deep: unknown = 1;
    for (let i = 0; i < 200_000; i++) deep = [deep];
    expect(findProblem({ a: deep }, 'where')?.problem).toBe('too deep');
    expect(findProblem({ a: new Date(), b: Buffer.from('x'), c: null }, 'where')).toBeUndefined();
    expect(code(() => checkDefined({ id: undefined }, 'where'))).toBe('INVALID_OPTION');
  });

  it('a column list takes one name or a non-empty list of names', () => {
    expect(columnList('id', 'columns')).toEqual(['id']);
    expect(columnList(['a', 'b'], 'columns')).toEqual(['a', 'b']);
    expect(columnList(undefined, 'columns')).toBeUndefined();
    for (const bad of [[], [''], '', 5, [1], null, {}])
      expect(code(() => columnList(bad, 'columns'))).toBe('INVALID_OPTION');
  });
});

describe('export file names', () => {
  it('plain names pass', () => {
    for (const ok of ['items.csv', 'a b.ndjson', 'é😀.csv', '..x'.replace('..', 'x.'), 'x..y'])
      expect(checkExportFileName(ok)).toBe(ok);
  });
  it('paths, dot-files, control characters and long names are INVALID_OPTION', () => {
    for (const bad of [
      '',
      '.',
      '..',
      '.hidden',
      '../x',
      'a/b',
      'a\\b',
      '/etc/passwd',
      'x\u0000y',
      'a\nb',
      'a\u007f',
      'a\ud800',
      'x'.repeat(256),
      'é'.repeat(128),
      5,
      undefined,
    ])
      expect(code(() => checkExportFileName(bad))).toBe('INVALID_OPTION');
  });
});

describe('worker limits', () => {
  it('defaults match the producer and are checked', () => {
    expect(resolveLimits(undefined)).toEqual(DEFAULT_LIMITS);
    expect(resolveLimits({ maxChunks: 10 }).maxChunks).toBe(10);
    expect(code(() => resolveLimits({ maxChunks: 0 }))).toBe('INVALID_OPTION');
    expect(code(() => resolveLimits({ nope: 1 } as never))).toBe('INVALID_OPTION');
  });

  it('a 200,000-deep job is LIMIT_EXCEEDED before any validator recurses', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 200_000; i++) deep = { $t: 'object', v: { k: deep } };
    expect(
      code(() => checkDepth({ update: { where: { a: deep } } }, 'operation', DEFAULT_LIMITS)),
    ).toBe('LIMIT_EXCEEDED');
    expect(
      code(() => checkDepth({ rows: [[[1, [2, [3]]]]] }, 'chunk', DEFAULT_LIMITS)),
    ).toBeUndefined();
  });

  it('chunk index, offset and rows are bounded', () => {
    const chunk = (index: number, rows: number, batchSize?: number, offset = 0) =>
      ({
        chunk: { index, offset },
        options: batchSize === undefined ? {} : { batchSize },
        rows: Array.from({ length: rows }, () => [1]),
      }) as never;
    expect(code(() => checkChunk(chunk(2 ** 31 - 1, 1), DEFAULT_LIMITS))).toBe('LIMIT_EXCEEDED');
    expect(code(() => checkChunk(chunk(999_999, 1), DEFAULT_LIMITS))).toBeUndefined();
    expect(code(() => checkChunk(chunk(0, 1, undefined, 2 ** 60), DEFAULT_LIMITS))).toBe(
      'LIMIT_EXCEEDED',
    );
    expect(code(() => checkChunk(chunk(0, 10, 1), DEFAULT_LIMITS))).toBe('PAYLOAD_TOO_LARGE');
    expect(code(() => checkChunk(chunk(0, 10), { ...DEFAULT_LIMITS, maxChunkRows: 5 }))).toBe(
      'PAYLOAD_TOO_LARGE',
    );
  });
});

describe('canonical table names', () => {
  it('one spelling per table; dotted names stay apart', () => {
    expect(canonicalName({ schema: 'public', name: 'items' })).toBe('public.items');
    expect(canonicalName({ schema: 'a.b', name: 'c' })).toBe('"a.b".c');
    expect(canonicalName({ schema: 'a', name: 'b.c' })).toBe('a."b.c"');
    expect(canonicalName({ schema: 's', name: 'We"ird' })).toBe('s."We""ird"');
  });
});

describe('export directory housekeeping', () => {
  it('removes only stale temporary files of killed exports, nothing else', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bm-sweep-'));
    try {
      const stale = '.bulkmodel-00000000-0000-4000-8000-000000000001.partial';
      const fresh = '.bulkmodel-00000000-0000-4000-8000-000000000002.partial';
      for (const n of [stale, fresh, 'items.csv', '.bulkmodel-x.partial'])
        writeFileSync(join(dir, n), 'x');
      const old = new Date(Date.now() - 2 * 3600_000);
      for (const n of [stale, 'items.csv', '.bulkmodel-x.partial'])
        utimesSync(join(dir, n), old, old);
      expect(await sweepStaleTemps({ dir, overwrite: false }, 3600_000)).toBe(1);
      expect(readdirSync(dir).sort()).toEqual([fresh, '.bulkmodel-x.partial', 'items.csv'].sort());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
