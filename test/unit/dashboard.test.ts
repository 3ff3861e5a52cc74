import { describe, expect, it } from 'vitest';
import { BulkError } from '../../src/index.js';
import {
  assertSafeBinding,
  credentialsFromEnv,
  isLoopback,
  sameSecret,
} from '../../src/worker/dashboard/access.js';
import { RateTracker } from '../../src/worker/dashboard/rates.js';
import { summarizeJobData, summarizeReturnValue } from '../../src/worker/dashboard/summary.js';

describe('dashboard access rules', () => {
  it('knows loopback hosts', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]'])
      expect(isLoopback(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'example.com', '127.0.0.1.evil.com'])
      expect(isLoopback(h), h).toBe(false);
  });

  it('refuses a non-loopback binding without credentials', () => {
    expect(() => assertSafeBinding('0.0.0.0', undefined)).toThrow(BulkError);
    expect(() => assertSafeBinding('0.0.0.0', { user: 'u', password: 'p' })).not.toThrow();
    expect(() => assertSafeBinding('127.0.0.1', undefined)).not.toThrow();
  });

  it('takes both credentials or neither', () => {
    expect(credentialsFromEnv({})).toBeUndefined();
    expect(
      credentialsFromEnv({ BULKMODEL_DASHBOARD_USER: 'u', BULKMODEL_DASHBOARD_PASSWORD: 'p' }),
    ).toEqual({ user: 'u', password: 'p' });
    expect(() => credentialsFromEnv({ BULKMODEL_DASHBOARD_USER: 'u' })).toThrow(BulkError);
  });

  it('compares secrets of any length', () => {
    expect(sameSecret('abc', 'abc')).toBe(true);
    expect(sameSecret('abc', 'abd')).toBe(false);
    expect(sameSecret('abc', 'abcd')).toBe(false);
    expect(sameSecret('', '')).toBe(true);
  });
});

describe('job summaries', () => {
  it('a chunk becomes counts, an operation stays whole', () => {
    const chunk = {
      v: 1,
      kind: 'bulkCreate',
      operationId: 'op',
      table: 't',
      chunk: { index: 0, offset: 0 },
      options: {},
      columns: ['a', 'b'],
      rows: [
        [1, 'x'],
        [2, 'y'],
      ],
    };
    const s = summarizeJobData(chunk) as Record<string, unknown>;
    expect(s).toMatchObject({ operationId: 'op', rows: 2, columns: ['a', 'b'] });
    expect(s.bytes).toBe(Buffer.byteLength(JSON.stringify(chunk)));
    const parent = { v: 1, kind: 'update', operationId: 'op', table: 't', options: {} };
    expect(summarizeJobData(parent)).toBe(parent);
    expect(summarizeJobData(null)).toBeNull();
    // COPY data (version 2) shows as its size; a version 3 job holds none and stays whole.
    const copy = {
      v: 2,
      operationId: 'op',
      format: 'text',
      groups: [{ columns: ['a'], rows: 2, data: 'secret ü\nx\n' }],
    };
    expect(summarizeJobData(copy)).toEqual({
      v: 2,
      operationId: 'op',
      format: 'text',
      groups: [{ columns: ['a'], rows: 2, bytes: 12 }],
    });
    // Version 3: no data in the job; its digest (of row values) is left out too.
    const v3 = { v: 3, data: { bytes: 9, sha256: 'x' }, groups: [{ columns: ['a'], rows: 1 }] };
    expect(summarizeJobData(v3)).toEqual({
      v: 3,
      data: { bytes: 9 },
      groups: [{ columns: ['a'], rows: 1 }],
    });
    // What a hostile writer leaves in a failed job's data does not break the list.
    expect(summarizeJobData({ groups: [{ data: 'x' }, null, 7, ['y']], data: 'z' })).toEqual({
      groups: [{ bytes: 1 }, null, 7, ['y']],
      data: {},
    });
  });

  it('returned rows and missing keys are counted', () => {
    expect(
      summarizeReturnValue({ index: 0, count: 2, columns: ['id'], rows: [[1], [2]] }),
    ).toMatchObject({ index: 0, count: 2, returnedRows: 2 });
    expect(summarizeReturnValue({ count: 1, missing: [{ id: 1 }, { id: 2 }] })).toMatchObject({
      count: 1,
      missingKeys: 2,
    });
    expect(summarizeReturnValue({ count: 3, chunks: 1 })).toEqual({ count: 3, chunks: 1 });
  });
});

describe('RateTracker', () => {
  it('measures over the recent window once it spans a second', () => {
    const r = new RateTracker(10_000, 1_000);
    expect(r.sample('a', 0, 0)).toBeUndefined();
    expect(r.sample('a', 500, 500)).toBeUndefined();
    expect(r.sample('a', 1000, 1000)).toBe(1000);
    // 1000 rows/s for 10 s, then 3000 rows/s: after 10 s more only the new pace counts
    for (let t = 2000; t <= 10_000; t += 1000) r.sample('a', t, t);
    let rate: number | undefined;
    for (let t = 11_000; t <= 20_000; t += 1000) rate = r.sample('a', 10_000 + (t - 10_000) * 3, t);
    expect(rate).toBe(3000);
    r.keepOnly(new Set());
    expect(r.sample('a', 0, 30_000)).toBeUndefined();
  });
});
