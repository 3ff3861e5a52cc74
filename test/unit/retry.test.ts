import { describe, expect, it } from 'vitest';
import { BulkClient } from '../../src/core/client.js';
import {
  backoffDelayMs,
  DEFAULT_RETRY,
  type RetryPolicy,
  resolveRetry,
  TRANSIENT_RULES,
  transientRule,
  withRetry,
} from '../../src/core/retry.js';
import { BulkError, silentLogger } from '../../src/index.js';

/** mulberry32: a small seeded generator, so jitter is reproducible. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pgError = (code: string, message = `pg error ${code}`) =>
  Object.assign(new Error(message), { code });

const fast: RetryPolicy = { ...DEFAULT_RETRY, initialDelayMs: 1, maxDelayMs: 4, maxElapsedMs: 40 };

describe('transientRule: the policy table', () => {
  it.each([
    ['08000', 'connection exception'],
    ['08003', 'connection exception'],
    ['08006', 'connection exception'],
    ['08P01', 'connection exception'],
    ['57P01', 'admin shutdown'],
    ['57P02', 'crash shutdown'],
    ['57P03', 'cannot connect now (starting up or shutting down)'],
    ['40001', 'serialization failure'],
    ['40P01', 'deadlock detected'],
  ])('SQLSTATE %s is transient (%s)', (code, why) => {
    expect(transientRule(pgError(code))?.why).toBe(why);
  });

  it.each(['ECONNRESET', 'ECONNREFUSED'])('Node error %s is transient', (code) => {
    expect(transientRule(pgError(code))).toBeDefined();
  });

  it('driver errors without a code are transient by message', () => {
    expect(transientRule(new Error('Connection terminated unexpectedly'))).toBeDefined();
    expect(transientRule(new Error('timeout exceeded when trying to connect'))).toBeDefined();
  });

  it.each([
    ['23505', 'unique violation'],
    ['23502', 'not null violation'],
    ['22P02', 'invalid text representation'],
    ['42P01', 'undefined table'],
    ['40000', 'transaction rollback (not a serialization failure)'],
    ['57014', 'query canceled'],
  ])('SQLSTATE %s is permanent (%s)', (code) => {
    expect(transientRule(pgError(code))).toBeUndefined();
  });

  it('a class rule matches only its class', () => {
    expect(transientRule(pgError('0800'))).toBeUndefined(); // not a SQLSTATE
    expect(transientRule(pgError('18000'))).toBeUndefined();
  });

  it('BulkError validation codes are permanent, whatever their cause', () => {
    for (const code of [
      'INVALID_VALUE',
      'UNKNOWN_COLUMN',
      'INVALID_OPTION',
      'SIGNAL_REJECTED',
      'UNIQUE_VIOLATION',
      'CONNECTION_FAILED',
      'RETRIES_EXHAUSTED',
    ] as const) {
      const e = new BulkError(code, 'x', { cause: pgError('ECONNRESET') });
      expect(transientRule(e), code).toBeUndefined();
    }
  });

  it('a wrapped database error keeps its SQLSTATE or its cause', () => {
    expect(transientRule(new BulkError('DATABASE_ERROR', 'x', { pgCode: '40P01' }))).toBeDefined();
    expect(
      transientRule(new BulkError('DATABASE_ERROR', 'x', { pgCode: '42601' })),
    ).toBeUndefined();
    expect(
      transientRule(new BulkError('DATABASE_ERROR', 'x', { cause: pgError('ECONNREFUSED') })),
    ).toBeDefined();
  });

  it('custom rules replace the table', () => {
    expect(transientRule(pgError('40P01'), [])).toBeUndefined();
    expect(transientRule(pgError('55P03'), [{ sqlstate: '55P03', why: 'lock' }])?.why).toBe('lock');
    expect(TRANSIENT_RULES.length).toBeGreaterThan(0);
  });
});

describe('backoffDelayMs', () => {
  it('stays within [1, min(max, initial * 2^attempt)] and doubles its ceiling', () => {
    const policy: RetryPolicy = { ...DEFAULT_RETRY, initialDelayMs: 100, maxDelayMs: 5000 };
    const random = seeded(42);
    for (let attempt = 0; attempt < 40; attempt++) {
      const cap = Math.min(5000, 100 * 2 ** attempt);
      for (let i = 0; i < 50; i++) {
        const d = backoffDelayMs(attempt, policy, random);
        expect(d).toBeGreaterThanOrEqual(1);
        expect(d).toBeLessThanOrEqual(cap);
        expect(Number.isInteger(d)).toBe(true);
      }
    }
    expect(backoffDelayMs(0, policy, () => 0.999999)).toBe(99);
    expect(backoffDelayMs(3, policy, () => 0.999999)).toBe(799);
    expect(backoffDelayMs(30, policy, () => 0.999999)).toBe(4999);
    expect(backoffDelayMs(1000, policy, () => 0)).toBe(1);
  });

  it('is reproducible with a seeded random (full jitter)', () => {
    const a = Array.from({ length: 10 }, (_, i) => backoffDelayMs(i, DEFAULT_RETRY, seeded(7)));
    const b = Array.from({ length: 10 }, (_, i) => backoffDelayMs(i, DEFAULT_RETRY, seeded(7)));
    expect(a).toEqual(b);
  });
});

describe('withRetry', () => {
  it('retries a transient failure and returns the eventual result', async () => {
    let calls = 0;
    const retried: string[] = [];
    const out = await withRetry(
      async () => {
        calls++;
        if (calls < 3) throw pgError(calls === 1 ? '57P01' : 'ECONNRESET');
        return 'ok';
      },
      fast,
      { onRetry: (i) => retried.push(i.why), random: seeded(1) },
    );
    expect(out).toBe('ok');
    expect(calls).toBe(3);
    expect(retried).toEqual(['admin shutdown', 'connection reset']);
  });

  it('never retries a permanent error', async () => {
    for (const err of [
      pgError('23505'),
      pgError('22P02'),
      new BulkError('INVALID_VALUE', 'bad value'),
      new TypeError('boom'),
    ]) {
      let calls = 0;
      await expect(
        withRetry(async () => {
          calls++;
          throw err;
        }, fast),
      ).rejects.toBe(err);
      expect(calls).toBe(1);
    }
  });

  it('gives up with CONNECTION_FAILED within maxElapsedMs for a connection failure', async () => {
    let slept = 0;
    let calls = 0;
    const err = await withRetry(
      async () => {
        calls++;
        throw pgError('ECONNREFUSED');
      },
      fast,
      { onRetry: (i) => (slept += i.delayMs), random: seeded(3) },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BulkError);
    expect((err as BulkError).code).toBe('CONNECTION_FAILED');
    expect((err as BulkError).cause).toMatchObject({ code: 'ECONNREFUSED' });
    expect(calls).toBeGreaterThan(1);
    // The planned backoff never exceeds the budget.
    expect(slept).toBeLessThanOrEqual(fast.maxElapsedMs);
  });

  it('gives up with RETRIES_EXHAUSTED for deadlocks and serialization failures', async () => {
    for (const code of ['40P01', '40001']) {
      const err = await withRetry(async () => {
        throw pgError(code);
      }, fast).catch((e: unknown) => e);
      expect((err as BulkError).code).toBe('RETRIES_EXHAUSTED');
      expect((err as BulkError).pgCode).toBe(code);
    }
  });

  it('maxElapsedMs 0 turns retries off', async () => {
    let calls = 0;
    const err = await withRetry(
      async () => {
        calls++;
        throw pgError('57P01');
      },
      { ...fast, maxElapsedMs: 0 },
    ).catch((e: unknown) => e);
    expect(calls).toBe(1);
    expect((err as BulkError).code).toBe('CONNECTION_FAILED');
  });

  it('an aborted signal stops retrying and rethrows the failure itself', async () => {
    const stop = new AbortController();
    let calls = 0;
    const boom = pgError('57P01');
    const p = withRetry(
      async () => {
        calls++;
        if (calls === 2) stop.abort();
        throw boom;
      },
      { ...fast, maxElapsedMs: 60_000, initialDelayMs: 1, maxDelayMs: 1 },
      { signal: stop.signal },
    );
    await expect(p).rejects.toBe(boom);
    expect(calls).toBe(2);
  });
});

describe('resolveRetry and the BulkClient retry option', () => {
  it('merges over the defaults and rejects bad values with INVALID_OPTION', () => {
    expect(resolveRetry({ maxElapsedMs: 5 })).toEqual({ ...DEFAULT_RETRY, maxElapsedMs: 5 });
    for (const bad of [
      { maxElapsedMs: -1 },
      { initialDelayMs: Number.NaN },
      { maxDelayMs: 1, initialDelayMs: 10 },
      { rules: 'all' },
      { rules: [{ why: 'matches nothing' }] },
      { retries: 3 },
    ]) {
      expect(() => resolveRetry(bad as never), JSON.stringify(bad)).toThrow(
        expect.objectContaining({ code: 'INVALID_OPTION' }),
      );
    }
  });

  it('is configurable per BulkClient', async () => {
    // Nothing listens on port 1: every connect is refused (ECONNREFUSED, transient by default).
    const url = 'postgres://postgres@127.0.0.1:1/none';
    const patient = new BulkClient({
      connectionString: url,
      logger: silentLogger,
      retry: { initialDelayMs: 1, maxDelayMs: 2, maxElapsedMs: 30 },
    });
    const noRetry = new BulkClient({
      connectionString: url,
      logger: silentLogger,
      retry: { rules: [] },
    });
    try {
      expect(patient.engine.retry).toMatchObject({ initialDelayMs: 1, maxElapsedMs: 30 });
      expect(patient.engine.retry.rules).toBe(TRANSIENT_RULES);
      await expect(patient.model('items').bulkCreate([{ a: 1 }])).rejects.toMatchObject({
        code: 'CONNECTION_FAILED',
      });
      // With no transient rules the first refusal fails the call as it is, not retried.
      const err = await noRetry
        .model('items')
        .bulkCreate([{ a: 1 }])
        .catch((e: unknown) => e);
      expect(err).not.toMatchObject({ code: 'CONNECTION_FAILED' });
      expect(transientRule(err)).toBeDefined(); // it *would* be transient under the defaults
      expect(() => new BulkClient({ connectionString: url, retry: { maxDelayMs: -5 } })).toThrow(
        expect.objectContaining({ code: 'INVALID_OPTION' }),
      );
    } finally {
      await patient.close();
      await noRetry.close();
    }
  });
});
