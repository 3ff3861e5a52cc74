import { describe, expect, it } from 'vitest';
import { BulkError, storedError } from '../../src/core/errors.js';
import { statusOf } from '../../src/queue/state.js';

describe('the error an operation ended with, from what the queue keeps', () => {
  it('a stored BulkError comes back with its code and fields', () => {
    const stored = JSON.stringify(
      new BulkError('CHECK_VIOLATION', 'items: a row fails items_price_check', {
        table: 'items',
        row: 3,
        constraint: 'items_price_check',
      }).toJSON(),
    );
    const e = storedError(stored, 'ignored', 'op-1');
    expect(e).toMatchObject({ code: 'CHECK_VIOLATION', table: 'items', row: 3 });
  });

  it("what it cannot read is INTERNAL_ERROR saying so, never the database's", () => {
    expect(storedError('{not json', null, 'op-1')).toMatchObject({
      code: 'INTERNAL_ERROR',
      message: 'operation op-1 failed, and its error record is not readable',
    });
    const future = storedError(JSON.stringify({ code: 'NEWER_CODE', message: 'm' }), null, 'op-1');
    expect(future.code).toBe('INTERNAL_ERROR');
    expect(future.message).toBe('an error of unknown code "NEWER_CODE": m');
    // Not a prototype's name either.
    expect(storedError(JSON.stringify({ code: 'toString' }), null, 'x').code).toBe(
      'INTERNAL_ERROR',
    );
    expect(BulkError.fromJSON(null).code).toBe('INTERNAL_ERROR');
    // Only the detail fields, each of its own type.
    const e = BulkError.fromJSON({
      code: 'UNIQUE_VIOLATION',
      message: 'm',
      row: 'x',
      line: 5,
      table: 7,
      column: 'c',
      cause: { evil: true },
      __proto__: { polluted: true },
    });
    expect(e).toMatchObject({ code: 'UNIQUE_VIOLATION', line: 5, column: 'c' });
    expect(e.row).toBeUndefined();
    expect(e.table).toBeUndefined();
    expect(e.cause).toBeUndefined();
  });

  it('without a record: the job failure reason, coded by a worker or BullMQ’s own', () => {
    expect(storedError(null, 'UNIQUE_VIOLATION: items: duplicate key', 'op-1')).toMatchObject({
      code: 'UNIQUE_VIOLATION',
      message: 'items: duplicate key',
    });
    const lost = storedError(undefined, 'job stalled more than allowable limit', 'op-1');
    expect(lost.code).toBe('WORKER_LOST');
    expect(lost.message).toContain('job stalled more than allowable limit');
    expect(storedError(undefined, 'NOT_A_CODE: x', 'op-1').code).toBe('INTERNAL_ERROR');
    expect(storedError(undefined, undefined, 'op-1').message).toBe(
      'operation op-1 failed: no reason was recorded',
    );
  });

  it('a status shows the same code', () => {
    const base = {
      id: 'op-1',
      kind: 'bulkCreate',
      table: 'items',
      state: 'failed',
      sealed: true,
      returning: false,
      rowsDone: 0,
      chunksDone: 0,
      retries: 0,
    };
    expect(statusOf({ ...base, error: '{oops' }, 'q').error?.code).toBe('INTERNAL_ERROR');
    expect(
      statusOf({ ...base, error: JSON.stringify({ code: 'TIMEOUT', message: 't' }) }, 'q').error,
    ).toEqual({ code: 'TIMEOUT', message: 't' });
  });
});
