import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../core/logger.js';
import type { QueueKeys } from '../producer/redis.js';

/** What BulkWorker reports about each job it runs (prom-client metrics implement it). */
export interface WorkerMetricsHook {
  /** A chunk (or a whole update/copyTo operation) committed `rows` rows in `seconds`. */
  jobCompleted(e: {
    table: string;
    kind: string;
    job: string;
    rows: number;
    seconds: number;
  }): void;
  /** A job failed: `transient` ones are retried by BullMQ, others fail their operation. */
  jobFailed(e: {
    table: string;
    kind: string;
    job: string;
    code: string;
    transient: boolean;
  }): void;
}

interface JobInfo {
  operationId: string;
  /** The table as the job names it (checked against the payload schema): for log lines. */
  table: string;
  /** The allowed table as the catalog names it, '' when not resolved: the metrics label. */
  label: string;
  kind: string;
}

/** A job's name as a metric label: one of bulkmodel's, else 'other' (names come from jobs). */
function jobLabel(job: Job): string {
  return job.name === 'chunk' || job.name === 'operation' || job.name === 'seal'
    ? job.name
    : 'other';
}

/**
 * Mark an operation started (first job wins) and index it, so that its record is pruned even
 * when no producer registered it; returns its totals when this call was the first.
 */
const MARK_STARTED = `
if redis.call('hsetnx', KEYS[1], 'startedAt', ARGV[1]) == 0 then return false end
redis.call('zadd', KEYS[2], 'NX', ARGV[1], ARGV[2])
return redis.call('hmget', KEYS[1], 'totalRows', 'totalChunks')`;

function num(v: string | null | undefined): number | undefined {
  return v === null || v === undefined || v === '' ? undefined : Number(v);
}

/**
 * Logs one line when an operation's first job starts and one when it ends (first worker to see
 * it wins, through HSETNX on the operation's hash), and feeds the metrics hook.
 */
export class JobObserver {
  constructor(
    private readonly redis: Redis,
    private readonly keys: QueueKeys,
    private readonly logger: Logger,
    private readonly metrics: WorkerMetricsHook | undefined,
  ) {}

  /** Before a chunk or operation job runs: the first one marks and logs the operation's start. */
  async started(job: Job, op: JobInfo): Promise<void> {
    const now = String(Date.now());
    const first = (await this.redis.eval(
      MARK_STARTED,
      2,
      this.keys.op(op.operationId),
      this.keys.ops,
      now,
      op.operationId,
    )) as (string | null)[] | null;
    if (!first) return;
    const [totalRows, totalChunks] = first;
    this.logger.info(
      {
        operationId: op.operationId,
        table: op.table,
        kind: op.kind,
        job: jobLabel(job),
        totalRows: num(totalRows),
        totalChunks: num(totalChunks),
      },
      'operation started',
    );
  }

  completed(job: Job, op: JobInfo, out: unknown, startedMs: number): void {
    const rows = (out as { count?: number } | null)?.count ?? 0;
    // The parent of a chunked operation writes nothing itself: its rows were counted per chunk.
    const writes = job.name === 'chunk' || op.kind === 'update' || op.kind === 'copyTo';
    if (writes)
      this.metrics?.jobCompleted({
        table: op.label,
        kind: op.kind,
        job: jobLabel(job),
        rows,
        seconds: (performance.now() - startedMs) / 1000,
      });
    // The count comes from the job's result: the op hash may be marked a moment later.
    if (job.name === 'operation') void this.ended(op, 'completed', undefined, rows).catch(() => {});
  }

  failed(job: Job, op: Partial<JobInfo>, code: string, transient: boolean, final: boolean): void {
    this.metrics?.jobFailed({
      table: op.label ?? '',
      kind: op.kind ?? '',
      job: jobLabel(job),
      code,
      transient: transient && !final,
    });
    if (final && op.operationId && code !== 'CANCELLED')
      void this.ended(op as JobInfo, 'failed', code).catch(() => {});
  }

  /** One line per operation end, with its numbers. */
  private async ended(op: JobInfo, state: string, code?: string, count?: number): Promise<void> {
    const key = this.keys.op(op.operationId);
    if ((await this.redis.hsetnx(key, 'endLogged', '1')) !== 1) return;
    const f = await this.redis.hmget(
      key,
      'rowsDone',
      'chunksDone',
      'totalRows',
      'totalChunks',
      'retries',
      'createdAt',
      'startedAt',
    );
    const [rowsDone, chunksDone, totalRows, totalChunks, retries, createdAt, startedAt] =
      f.map(num);
    const now = Date.now();
    const ms = startedAt ? now - startedAt : undefined;
    const line = {
      operationId: op.operationId,
      table: op.table,
      kind: op.kind,
      state,
      ...(code ? { code } : {}),
      rowsDone: count ?? rowsDone ?? 0,
      totalRows,
      chunksDone: chunksDone ?? 0,
      totalChunks,
      retries: retries ?? 0,
      durationMs: ms,
      queuedMs: createdAt && startedAt ? startedAt - createdAt : undefined,
      rowsPerSec:
        ms && (count ?? rowsDone) ? Math.round(((count ?? rowsDone)! * 1000) / ms) : undefined,
    };
    if (state === 'failed') this.logger.warn(line, 'operation failed');
    else this.logger.info(line, 'operation completed');
  }
}
