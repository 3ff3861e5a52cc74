import type { Job } from 'bullmq';
import type { Logger } from '../core/logger.js';
import type { QueueState } from '../queue/state.js';

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
 * Logs one line when an operation's first job starts and one when it ends (first worker to see
 * it wins, through HSETNX on the operation's hash), and feeds the metrics hook.
 */
export class JobObserver {
  constructor(
    private readonly state: QueueState,
    private readonly logger: Logger,
    private readonly metrics: WorkerMetricsHook | undefined,
    private readonly workerName: string,
  ) {}

  /**
   * Before a chunk or operation job runs: recorded as running here (the dashboard shows it);
   * the first job of an operation also marks (the operation is indexed, so that its record is
   * pruned even when no producer registered it) and logs the operation's start.
   */
  async started(job: Job, op: JobInfo): Promise<void> {
    const { first, totalRows, totalChunks } = await this.state.jobStarted(
      op.operationId,
      job.id ?? '',
      this.workerName,
    );
    if (!first) return;
    this.logger.info(
      {
        operationId: op.operationId,
        table: op.table,
        kind: op.kind,
        job: jobLabel(job),
        totalRows,
        totalChunks,
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
    if (!(await this.state.claimEndLog(op.operationId))) return;
    const r = await this.state.record(op.operationId);
    const { rowsDone, chunksDone, totalRows, totalChunks, retries, createdAt, startedAt } = r ?? {};
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
