import { checkOnConflictShape, columnList } from '../core/checks.js';
import { BulkError } from '../core/errors.js';
import { defaultOf, SETTINGS } from '../core/settings.js';

/**
 * The most records one chunk may skip: each costs a subtransaction and a copy of the records
 * around it again, so a job (anyone's who can write the queue) must not ask for a million.
 */
const MAX_SKIPPED: number = SETTINGS.maxErrors.max;

import {
  type Columns,
  checkOperationId,
  MAX_BATCH_SIZE,
  type OnConflictOption,
} from '../core/options.js';
import type { Where } from '../core/sql/where.js';
import type { PayloadOptions } from '../queue/payload.js';

/** Options of queued writes: as in direct mode, but the chunks run on the workers. */
export interface QueueWriteOptions {
  batchSize?: number;
  signals?: boolean;
  /** Makes enqueue idempotent: the same id enqueues once (letters, digits, ._-). */
  operationId?: string;
  /**
   * Accepted for parity with direct mode. In queue mode the parallelism of an operation is
   * the workers' (`--concurrency` times the number of workers); these do not limit it.
   */
  concurrent?: boolean;
  maxConcurrentWorkers?: number;
}

export interface QueueInsertOptions extends QueueWriteOptions {
  /**
   * bulkCreate and copyFrom: 'skip' leaves out the rows Postgres refuses (each chunk at most
   * `maxErrors`, default 100) and writes the rest in the chunk's own transaction; the result's
   * `rejected` lists them by row index, code and reason. Rows travel as COPY text (payload
   * versions 2 and 3) for it: not with returning or onConflict, and a worker must have published the
   * table's catalog (the producer waits up to 30 s for one). Default 'stop'.
   */
  onError?: 'stop' | 'skip';
  maxErrors?: number;
  returning?: boolean | Columns;
  onConflict?: OnConflictOption;
  key?: Columns;
}

export interface QueueUpdateFieldsOptions extends QueueWriteOptions {
  fields?: Columns;
  key?: Columns;
}

/** Options of `copyFromCsv`: COPY semantics, rows as the file's own CSV bytes. */
export interface QueueCsvOptions {
  /**
   * The table columns the file's columns go to, in order. With `header` (the default) the first
   * record names them, and `columns`, if given, replaces those names (as many); without a
   * header, `columns` is required.
   */
  columns?: Columns;
  /** The first record is a header of column names. Default true. */
  header?: boolean;
  /** The field delimiter: one ASCII character (a tab for TSV). Default ','. */
  delimiter?: string;
  /** The text of NULL (unquoted). Default: an unquoted empty field; a quoted "" is always ''. */
  null?: string;
  /**
   * 'stop' (default): a record Postgres refuses fails its chunk and the operation. 'skip': the
   * chunk leaves it out and writes the rest (in the same transaction, so exactly once still);
   * the result's `rejected` lists each by file line, code and reason. Not with onConflict.
   */
  onError?: 'stop' | 'skip';
  /** With onError 'skip': the most records one chunk may leave out; one more fails it. Default 100. */
  maxErrors?: number;
  /** The source's name in messages (`items.csv line 7`). Default 'input'. */
  path?: string;
  /**
   * Told the records and bytes enqueued so far, after each chunk (a progress bar), and the
   * chunk's index and the file lines of its first and last records.
   */
  onEnqueued?: (progress: {
    rows: number;
    bytes: number;
    chunk: number;
    line: number;
    lastLine: number;
  }) => void;
  batchSize?: number;
  signals?: boolean;
  operationId?: string;
  onConflict?: OnConflictOption;
}

export interface QueueCopyToOptions {
  /** File the worker writes (inside its export directory). */
  path: string;
  format?: 'csv' | 'text' | 'ndjson';
  columns?: string[] | string;
  where?: Where;
  operationId?: string;
  signals?: boolean;
}

const KNOWN = new Set([
  'batchSize',
  'signals',
  'operationId',
  'concurrent',
  'maxConcurrentWorkers',
  'returning',
  'onConflict',
  'key',
  'fields',
  'transaction',
  'onError',
  'maxErrors',
]);

/** Column names as options take them: one name, or a non-empty array of names. */
export function checkNames(v: unknown, what: string): string[] | undefined {
  return columnList(v, what);
}

/** Check a queued write's options and keep what the payload carries. */
export function payloadOptions(o: QueueInsertOptions & QueueUpdateFieldsOptions): PayloadOptions {
  if (o === null || typeof o !== 'object')
    throw new BulkError('INVALID_OPTION', 'options must be an object');
  for (const k of Object.keys(o)) {
    if (!KNOWN.has(k)) throw new BulkError('INVALID_OPTION', `unknown option ${JSON.stringify(k)}`);
  }
  if ((o as { transaction?: string }).transaction === 'operation') {
    throw new BulkError(
      'INVALID_OPTION',
      "transaction: 'operation' needs direct mode (one connection); queued chunks commit one by one",
    );
  }
  checkOperationId(o.operationId);
  const out: PayloadOptions = {};
  if (o.onError !== undefined && o.onError !== 'stop' && o.onError !== 'skip')
    throw new BulkError(
      'INVALID_OPTION',
      `onError must be 'stop' or 'skip', got ${String(o.onError)}`,
    );
  if (
    o.maxErrors !== undefined &&
    (!Number.isInteger(o.maxErrors) || o.maxErrors < 0 || o.maxErrors > MAX_SKIPPED)
  )
    throw new BulkError('INVALID_OPTION', `maxErrors must be an integer from 0 to ${MAX_SKIPPED}`);
  if (o.onError === 'skip') {
    if (o.onConflict !== undefined || o.returning)
      throw new BulkError(
        'INVALID_OPTION',
        "onError 'skip' does not go with onConflict or returning",
      );
    out.onError = 'skip';
    out.maxErrors = o.maxErrors ?? defaultOf('maxErrors');
  } else if (o.maxErrors !== undefined)
    throw new BulkError('INVALID_OPTION', "maxErrors goes with onError 'skip'");
  if (o.batchSize !== undefined) {
    if (!Number.isInteger(o.batchSize) || o.batchSize < 1 || o.batchSize > MAX_BATCH_SIZE) {
      throw new BulkError(
        'INVALID_OPTION',
        `batchSize must be an integer from 1 to ${MAX_BATCH_SIZE}`,
      );
    }
    out.batchSize = o.batchSize;
  }
  if (o.signals === false) out.signals = false;
  // As in direct mode: null or false is none; [] the pairing keys only.
  const ret = o.returning as unknown;
  if (ret !== undefined && ret !== null && ret !== false) {
    out.returning =
      ret === true
        ? true
        : Array.isArray(ret) && ret.length === 0
          ? []
          : checkNames(ret, 'returning')!;
  }
  checkOnConflictShape(o.onConflict);
  if (o.onConflict !== undefined) {
    if (o.onConflict === 'ignore') out.onConflict = 'ignore';
    else if (o.onConflict && typeof o.onConflict === 'object') {
      const update = o.onConflict.update;
      out.onConflict = {
        target: checkNames(o.onConflict.target, 'onConflict.target')!,
        update:
          update === undefined || (Array.isArray(update) && update.length === 0)
            ? []
            : checkNames(update, 'onConflict.update')!,
      };
    } else
      throw new BulkError('INVALID_OPTION', "onConflict must be 'ignore' or { target, update }");
  }
  const key = checkNames(o.key, 'key');
  if (key) out.key = key;
  const fields = checkNames(o.fields, 'fields');
  if (fields) out.fields = fields;
  return out;
}
