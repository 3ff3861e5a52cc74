import { randomUUID } from 'node:crypto';
import { BulkError } from './errors.js';
import { defaultOf, SETTINGS } from './settings.js';

/** Options every write method takes. */
export interface WriteOptions {
  /**
   * Rows per chunk; each chunk commits in its own transaction. Default 20,000 in direct mode,
   * 5,000 per job through the queue.
   */
  batchSize?: number;
  /** Write chunks on several connections at once. Default false. */
  concurrent?: boolean;
  /** With `concurrent`: chunks in flight for this call. Default 4 (capped client-wide). */
  maxConcurrentWorkers?: number;
  /** Send signals for this call. Default true. */
  signals?: boolean;
  /** 'chunk' (default): each chunk commits alone. 'operation': the whole call in one transaction. */
  transaction?: 'chunk' | 'operation';
  /** Name the operation: a call repeated with the same id skips chunks that already committed. */
  operationId?: string;
  /**
   * With `operationId`: a digest of what the call writes (1-200 characters of your choosing),
   * kept with each committed chunk. A call repeated under the same id with another fingerprint
   * fails with CHUNK_CONFLICT instead of skipping those chunks as done. Queue workers set it
   * from each job's content.
   */
  fingerprint?: string;
  /** Called after each committed chunk with totals so far. */
  onProgress?: (progress: { chunks: number; rows: number }) => void;
}

/** Column names as options take them: one name, or a list. */
export type Columns = string | readonly string[];

/** `onConflict` as options take it: 'ignore', or the conflict target and the columns to update. */
export type OnConflictOption = 'ignore' | { target: Columns; update?: Columns };

export interface InsertLikeOptions extends WriteOptions {
  /** true: every column; names: those columns; false (default): nothing. Rows pair to input by key. */
  returning?: boolean | Columns;
  onConflict?: OnConflictOption;
  /** Columns that pair returned rows to input rows (default: the conflict target, else the primary key). */
  key?: Columns;
}

export interface ResolvedWrite {
  batchSize: number;
  concurrency: number;
  signals: boolean;
  transaction: 'chunk' | 'operation';
  operationId: string;
  /** The id was generated here, so its ledger rows can go when the call ends. */
  ephemeralId: boolean;
  fingerprint: string | undefined;
  onProgress: ((p: { chunks: number; rows: number }) => void) | undefined;
}

/**
 * Direct mode: 20,000-row chunks. Each chunk is a transaction (a commit, a ledger row, a few
 * round trips); at 5,000 rows those cost bulkCreate ~10% and updateFields ~25% of their speed
 * (`npm run bench`), and 20,000 rows of a wide table are still only tens of MB in memory.
 */
export const DEFAULT_BATCH_SIZE = 20_000;
/** Through the queue a chunk is a job stored in Redis: 5,000 rows keep it near 1 MB. */
export const QUEUE_DEFAULT_BATCH_SIZE = defaultOf('batchSize');
export const DEFAULT_MAX_CONCURRENT_WORKERS = 4;
/** The largest batchSize any call takes (direct or queued). */
export const MAX_BATCH_SIZE: number = SETTINGS.batchSize.max;
const OP_ID = /^[A-Za-z0-9._-]{1,200}$/;

/** Operation ids: 1-200 letters, digits and ._- (BullMQ job ids cannot hold ':'). */
export function isOperationId(id: unknown): id is string {
  return typeof id === 'string' && OP_ID.test(id);
}

/**
 * An operation id, when given, as every layer checks it: the producer at enqueue, the worker's
 * core again (a job is untrusted input), direct mode at the call. INVALID_OPTION otherwise.
 */
export function checkOperationId(id: unknown): void {
  if (id !== undefined && !isOperationId(id)) {
    throw new BulkError(
      'INVALID_OPTION',
      'operationId must be 1-200 characters of letters, digits and ._-',
    );
  }
}

function positiveInt(name: string, v: unknown, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    throw new BulkError(
      'INVALID_OPTION',
      `${name} must be an integer from 1 to ${max}, got ${String(v)}`,
    );
  }
  return v;
}

/** Options every write takes; each method adds its own (`INSERT_OPTIONS`, ...). */
const COMMON = [
  'batchSize',
  'concurrent',
  'maxConcurrentWorkers',
  'signals',
  'transaction',
  'operationId',
  'fingerprint',
  'onProgress',
];
export const INSERT_OPTIONS: readonly string[] = ['returning', 'onConflict', 'key'];
export const BULK_CREATE_OPTIONS: readonly string[] = [...INSERT_OPTIONS, 'strategy'];

/** Check and default the common options; `extra` names the method's own options. */
export function resolveWrite(
  opts: WriteOptions = {},
  extra: readonly string[] = [],
): ResolvedWrite {
  if (opts === null || typeof opts !== 'object')
    throw new BulkError('INVALID_OPTION', 'options must be an object');
  for (const k of Object.keys(opts)) {
    if (!COMMON.includes(k) && !extra.includes(k)) {
      throw new BulkError('INVALID_OPTION', `unknown option ${JSON.stringify(k)}`);
    }
  }
  const batchSize =
    opts.batchSize === undefined
      ? DEFAULT_BATCH_SIZE
      : positiveInt('batchSize', opts.batchSize, MAX_BATCH_SIZE);
  const maxWorkers =
    opts.maxConcurrentWorkers === undefined
      ? DEFAULT_MAX_CONCURRENT_WORKERS
      : positiveInt('maxConcurrentWorkers', opts.maxConcurrentWorkers, 1000);
  const transaction = opts.transaction ?? 'chunk';
  if (transaction !== 'chunk' && transaction !== 'operation') {
    throw new BulkError(
      'INVALID_OPTION',
      `transaction must be 'chunk' or 'operation', got ${String(transaction)}`,
    );
  }
  checkOperationId(opts.operationId);
  if (
    opts.fingerprint !== undefined &&
    (typeof opts.fingerprint !== 'string' ||
      opts.fingerprint.length === 0 ||
      opts.fingerprint.length > 200)
  ) {
    throw new BulkError('INVALID_OPTION', 'fingerprint must be a string of 1-200 characters');
  }
  return {
    batchSize,
    concurrency: opts.concurrent && transaction === 'chunk' ? maxWorkers : 1,
    signals: opts.signals !== false,
    transaction,
    operationId: opts.operationId ?? randomUUID(),
    ephemeralId: opts.operationId === undefined,
    fingerprint: opts.fingerprint,
    onProgress: opts.onProgress,
  };
}
