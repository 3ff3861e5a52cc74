import { storedError } from '../core/errors.js';

/**
 * The state bulkmodel keeps beside one BullMQ queue, behind one interface: operation records
 * and their index, chunk-done marks, the running jobs of each operation, catalog snapshots, the
 * events stream, pruning. Producer, worker, dashboard and CLI use only this (and BullMQ's own
 * classes); the Redis implementation is `RedisQueueState`. Every method is one atomic step of
 * the protocol, so that an implementation over another store (Postgres) can keep its meaning.
 */

/** States an operation moves through; the last three are final. */
export type OpState = 'enqueueing' | 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

export const FINAL_STATES: ReadonlySet<string> = new Set(['completed', 'failed', 'cancelled']);

/** An operation's record as stored. */
export interface OpRecord {
  id: string;
  kind: string;
  table: string;
  /** One of OpState; 'unknown' when a worker saw the operation before any producer recorded it. */
  state: string;
  /** Digest of what the producer enqueued (absent: no producer registered it). */
  identity?: string;
  /** The producer finished enqueueing it (totals known). */
  sealed: boolean;
  /** Rows are read back (returning). */
  returning: boolean;
  /**
   * How its chunks' rows were encoded: 'v1', or 'v2:<catalog fingerprint>' (COPY text for a
   * table catalog). Enqueueing the same id again encodes the same way, or is a conflict.
   */
  encoding?: string;
  rowsDone: number;
  chunksDone: number;
  /** Job attempts that failed transiently and were retried. */
  retries: number;
  totalRows?: number;
  totalChunks?: number;
  createdAt?: number;
  startedAt?: number;
  finishedAt?: number;
  /** The BulkError that failed it, as JSON (the first failure wins). */
  error?: string;
}

/** A stored number (a Redis string, a Postgres bigint as text), or undefined. */
export function storedNumber(v: string | number | null | undefined): number | undefined {
  if (v === null || v === undefined || v === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

/** The fields of a record as a store holds them (absent: null). */
export interface StoredRecord {
  kind: string | null;
  table: string | null;
  state: string | null;
  identity: string | null;
  sealed: boolean;
  returning: boolean;
  encoding: string | null;
  rowsDone: string | number | null;
  chunksDone: string | number | null;
  retries: string | number | null;
  totalRows: string | number | null;
  totalChunks: string | number | null;
  createdAt: string | number | null;
  startedAt: string | number | null;
  finishedAt: string | number | null;
  error: string | null;
}

/** An OpRecord from the stored fields, the same for every store. */
export function toOpRecord(id: string, f: StoredRecord): OpRecord {
  const r: OpRecord = {
    id,
    kind: f.kind ?? '',
    table: f.table ?? '',
    state: f.state ?? 'unknown',
    sealed: f.sealed,
    returning: f.returning,
    rowsDone: storedNumber(f.rowsDone) ?? 0,
    chunksDone: storedNumber(f.chunksDone) ?? 0,
    retries: storedNumber(f.retries) ?? 0,
  };
  if (f.identity !== null) r.identity = f.identity;
  if (f.encoding !== null) r.encoding = f.encoding;
  Object.assign(r, storedTotals(f.totalRows, f.totalChunks));
  const optional = {
    createdAt: storedNumber(f.createdAt),
    startedAt: storedNumber(f.startedAt),
    finishedAt: storedNumber(f.finishedAt),
  };
  for (const [k, v] of Object.entries(optional))
    if (v !== undefined) (r as unknown as Record<string, number>)[k] = v;
  if (f.error !== null) r.error = f.error;
  return r;
}

/** The totals a sealed operation stored (absent before the seal), as numbers. */
export function storedTotals(
  totalRows: string | number | null | undefined,
  totalChunks: string | number | null | undefined,
): { totalRows?: number; totalChunks?: number } {
  const out: { totalRows?: number; totalChunks?: number } = {};
  const rows = storedNumber(totalRows);
  const chunks = storedNumber(totalChunks);
  if (rows !== undefined) out.totalRows = rows;
  if (chunks !== undefined) out.totalChunks = chunks;
  return out;
}

/** An operation's counters after a chunk was counted. */
export interface Counters {
  rowsDone: number;
  chunksDone: number;
  totalRows?: number;
  totalChunks?: number;
}

/** One entry of the events stream. */
export interface StoredEvent {
  /** Position in the stream (increasing). */
  id: string;
  /** Milliseconds since the epoch it was published at. */
  time: number;
  name: string;
  operationId: string;
  /** The event, encoded (src/queue/values.ts) as JSON. */
  data: string;
}

export interface EventReaderOptions {
  /** Read as a consumer group: each event to one consumer, at least once. */
  group?: string;
  consumer?: string;
  /** Without a group: '$' (default) only new events; '0' what the stream holds. */
  from?: string;
  /** How long one read waits for events. Default 1000 ms. */
  blockMs?: number;
}

/** A reader of one queue's events stream, with a connection of its own. */
export interface EventReader {
  /** Position the reader: events published once this resolves are read. */
  open(): Promise<void>;
  /** The next events, waiting up to blockMs; [] when none came. */
  read(): Promise<StoredEvent[]>;
  /** Acknowledge an event read in a group. */
  ack(id: string): Promise<void>;
  /** End the reader; a read in progress ends at once. */
  close(): void;
}

export interface QueueState {
  /** The queue's name. */
  readonly queue: string;

  // The producer's steps.
  /**
   * Record an operation under its id unless one is recorded: `created` says whether this call
   * made it; otherwise the earlier record's identity, seal and state are returned.
   */
  register(
    id: string,
    identity: string,
    fields: { kind: string; table: string; returning: boolean; encoding?: string },
  ): Promise<{
    created: boolean;
    identity: string | null;
    sealed: boolean;
    state: string | null;
    encoding: string | null;
  }>;
  /** The fingerprint recorded for a chunk (when enqueued under a given id), and the state. */
  chunkFingerprint(id: string, index: number): Promise<{ fp: string | null; state: string | null }>;
  setChunkFingerprint(id: string, index: number, fp: string): Promise<void>;
  /** The operation's state, or null when there is no record. */
  stateOf(id: string): Promise<string | null>;
  /** Seal: totals known, 'enqueueing' becomes 'queued' (unless a worker moved it on). */
  seal(id: string, totals: { totalRows: number; totalChunks: number } | undefined): Promise<void>;

  // Anyone's.
  /** The record, or null. */
  record(id: string): Promise<OpRecord | null>;
  /** The `limit` most recent records, newest first. */
  records(limit: number): Promise<OpRecord[]>;
  /**
   * Move to a final state (with a finish time, and an error or count) unless it is final
   * already. Returns whether it moved.
   */
  finish(
    id: string,
    to: 'completed' | 'failed' | 'cancelled',
    extra?: { error?: string; rowsDone?: number },
  ): Promise<boolean>;
  /**
   * Record why an operation failed (the first error is kept) and move it to failed. Returns
   * whether this call did both (and so should announce it).
   */
  fail(id: string, error: string): Promise<boolean>;

  // The worker's steps.
  /**
   * A job of the operation starts on `worker`: recorded as running it; the first job of the
   * operation also marks its start (and returns the totals then known, else null).
   */
  jobStarted(
    id: string,
    jobId: string,
    worker: string,
  ): Promise<{ first: boolean; totalRows?: number; totalChunks?: number }>;
  /** A job of the operation is no longer running here (failed, or an operation job ended). */
  jobEnded(id: string, jobId: string): Promise<void>;
  /**
   * Count a committed chunk once (a replay does not count twice), move the operation to running
   * unless it is final, mark its job ended, and read the counters: one atomic step.
   */
  chunkDone(id: string, index: number, rows: number, jobId: string): Promise<Counters>;
  /** The indexes of the chunks counted as done (committed), in order. */
  doneChunks(id: string): Promise<number[]>;
  /** One more transient failure retried. */
  countRetry(id: string): Promise<void>;
  /** Whether this call is the first to log the operation's end. */
  claimEndLog(id: string): Promise<boolean>;
  /** An export's file and count, kept so that a replay of its job finds it made. */
  setExport(id: string, identity: string, count: number): Promise<void>;
  getExport(id: string, identity: string): Promise<number | undefined>;
  /** Running jobs' workers of these operations, by operation id. */
  activeWorkers(ids: readonly string[]): Promise<Map<string, string[]>>;
  /** Forget records created before `cutoffMs` (epoch ms); returns how many. */
  prune(cutoffMs: number): Promise<number>;

  // Chunk data (payload version 3): a chunk's COPY data, kept beside its job.
  /**
   * Store a chunk's data unless some is stored for it already (the first enqueue's stays, as
   * BullMQ keeps the first job of an id); the producer does so before it adds the chunk's job.
   */
  putChunkData(id: string, index: number, data: Buffer): Promise<void>;
  /**
   * A chunk's data: its bytes, null when none is stored, or its size when it is over
   * `maxBytes` (then not read). One round trip.
   */
  chunkData(
    id: string,
    index: number,
    maxBytes: number,
  ): Promise<Buffer | null | { bytes: number }>;
  /**
   * Forget a chunk's data (its job completed, or was refused), or with no index all of the
   * operation's (it ended); prune forgets what is left.
   */
  dropChunkData(id: string, index?: number): Promise<void>;

  // Catalog snapshots (workers publish, producers read).
  publishSnapshot(names: readonly string[], snapshotJson: string): Promise<void>;
  snapshot(table: string): Promise<string | null>;
  /**
   * A worker process announces itself (JSON: host, pid, concurrency, queues, start time),
   * kept beside the catalog snapshots as `worker:<name>` (no table name can be that); the
   * dashboard's worker table reads it.
   */
  announceWorker(name: string, infoJson: string): Promise<void>;
  /** What the named workers announced, by name. */
  workerInfo(names: readonly string[]): Promise<Map<string, string>>;

  // Events.
  /** Append an event (the stream is trimmed to about maxLen). */
  publish(name: string, operationId: string, data: string, maxLen: number): Promise<void>;
  /** The newest `count` events, newest first. */
  recentEvents(count: number): Promise<StoredEvent[]>;
  /** A reader of the stream (a connection of its own). */
  eventReader(options: EventReaderOptions): EventReader;
}

export interface OperationStatus
  extends Pick<
    OpRecord,
    | 'id'
    | 'kind'
    | 'table'
    | 'state'
    | 'rowsDone'
    | 'chunksDone'
    | 'retries'
    | 'totalRows'
    | 'totalChunks'
    | 'createdAt'
    | 'startedAt'
    | 'finishedAt'
  > {
  /** The queue it is on. */
  queue: string;
  /** What failed it: its code and message. */
  error?: { code: string; message: string };
}

/** A stored record as a status. */
export function statusOf(r: OpRecord, queue: string): OperationStatus {
  const s: OperationStatus = {
    id: r.id,
    queue,
    kind: r.kind,
    table: r.table,
    state: r.state,
    rowsDone: r.rowsDone,
    chunksDone: r.chunksDone,
    retries: r.retries,
  };
  const optional = {
    totalRows: r.totalRows,
    totalChunks: r.totalChunks,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
  };
  for (const [k, v] of Object.entries(optional))
    if (v !== undefined) (s as unknown as Record<string, number>)[k] = v;
  if (r.error) {
    const e = storedError(r.error, undefined, r.id);
    s.error = { code: e.code, message: e.message };
  }
  return s;
}
