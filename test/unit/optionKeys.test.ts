import { describe, expect, it } from 'vitest';
import { nearest } from '../../src/core/optionKeys.js';
import {
  BulkClient,
  BulkEvents,
  BulkProducer,
  BulkWorker,
  isBulkError,
  startDashboard,
} from '../../src/index.js';

/** The error a constructor throws, asserted to be INVALID_OPTION. */
function refusal(make: () => unknown): string {
  try {
    make();
  } catch (err) {
    expect(isBulkError(err) && err.code, String(err)).toBe('INVALID_OPTION');
    return (err as Error).message;
  }
  throw new Error('expected INVALID_OPTION');
}

describe('constructor options: a misspelled key is refused, naming the nearest known one', () => {
  it('BulkProducer, BulkWorker, BulkEvents, BulkClient', () => {
    expect(refusal(() => new BulkProducer({ queu: 'a' } as never))).toBe(
      'BulkProducer: unknown option "queu" (did you mean "queue"?)',
    );
    expect(refusal(() => new BulkWorker({ tables: ['t'], concurency: 2 } as never))).toContain(
      '"concurency" (did you mean "concurrency"?)',
    );
    expect(refusal(() => new BulkEvents({ grup: 'g' } as never))).toContain(
      '(did you mean "group"?)',
    );
    expect(refusal(() => new BulkClient({ connectionStrng: 'x' } as never))).toContain(
      '(did you mean "connectionString"?)',
    );
    // Nothing close: no guess.
    expect(refusal(() => new BulkProducer({ xyzzy: 1 } as never))).toBe(
      'BulkProducer: unknown option "xyzzy"',
    );
    expect(refusal(() => new BulkProducer('redis://x' as never))).toContain('must be an object');
  });

  it('startDashboard (exported from the package, loading the dashboard on call)', async () => {
    await expect(startDashboard({ prot: 3000 } as never)).rejects.toMatchObject({
      code: 'INVALID_OPTION',
      message: 'startDashboard: unknown option "prot" (did you mean "port"?)',
    });
  });

  it('nearest() guesses only what is close', () => {
    expect(nearest('batchsize', ['batchSize', 'returning'])).toBe('batchSize');
    expect(nearest('tabels', ['tables', 'name'])).toBe('tables');
    expect(nearest('zzz', ['tables', 'name'])).toBeUndefined();
  });
});
